//! `term::phash2` checked against the BEAM.
//!
//! * `corpus_matches_recorded_beam_values` needs no Erlang: it replays
//!   `tests/fixtures/phash2/corpus.txt`, tricky terms whose `phash2` values
//!   were recorded from a real `erl`.
//! * `random_terms_match_erl` starts one `erl` running
//!   `erlang/phash2_oracle.erl`, sends it 100,000 seeded random terms (as our
//!   encoder, `term::etf`, writes them) and compares `phash2/1`, `phash2/2`
//!   for several ranges and `make_hash2` with ours. It also checks both ways
//!   of the external format: the BEAM must decode our bytes to the term we
//!   meant, and our decoder must read the BEAM's re-encodings of it
//!   (`term_to_binary/1`, with latin-1 atoms, and with `minor_version` 2) back
//!   to that term. It reports where our bytes differ from `term_to_binary/1`.
//!   Without `erl` it prints a skip line and passes.
//! * `regenerate_corpus` (ignored) rewrites the corpus from `erl`.
//!
//! `PHASH2_ORACLE_TERMS` and `PHASH2_ORACLE_SEED` override the term count and
//! the seed.
//!
//! Releases covered: OTP 25 / Elixir 1.14 (Debian bookworm, the main run)
//! and OTP 27 / Elixir 1.18 (Debian trixie, `scripts/matrix.sh trixie`);
//! the binary prints the releases it ran against. Where the releases
//! differ, a test checks what the release it talks to does.

mod common;

use beam_peer::term::phash2::{make_hash2, phash2, phash2_range};
use beam_peer::term::{
    Atom, BigInteger, Binary, BitBinary, ByteList, ExternalFun, FixInteger, Float, ImproperList,
    InternalFun, List, Map, Pid, Port, Reference, Term, Tuple,
};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const RANGES: [u64; 7] = [1, 2, 7, 1000, 1 << 27, (1 << 32) - 1, 1 << 32];
const DEFAULT_TERMS: usize = 100_000;
const DEFAULT_SEED: u64 = 0x5eed_0fbe_a11a;
const BATCH: usize = 2_000;
const DEEP: usize = 100_000;

// ---------------------------------------------------------------------------
// Deterministic RNG (SplitMix64): the same seed gives the same terms on every
// machine, so a failure can be replayed.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`); the tiny modulo bias does not matter here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn upto(&mut self, n: usize) -> usize {
        self.below(n as u64 + 1) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------
// Term construction helpers.

fn atom(name: &str) -> Term {
    Term::Atom(Atom::from(name))
}

fn float(value: f64) -> Term {
    Term::Float(Float { value })
}

/// An integer term from limbs (most significant first), negated if asked.
fn int_from_limbs(limbs: &[u64], negative: bool) -> Term {
    let mut v = BigInteger::from(0u64).value;
    for &l in limbs {
        v = (v << 64usize) + BigInteger::from(l).value;
    }
    if negative {
        v = -v;
    }
    normal_int(BigInteger { value: v })
}

/// Small values as `FixInteger` (what the wire carries), others as bignums.
fn normal_int(b: BigInteger) -> Term {
    match i32::try_from(&b.value) {
        Ok(v) => Term::FixInteger(FixInteger::from(v)),
        Err(_) => Term::BigInteger(b),
    }
}

fn i128_term(v: i128) -> Term {
    let mag = v.unsigned_abs();
    int_from_limbs(&[(mag >> 64) as u64, mag as u64], v < 0)
}

fn list(elements: Vec<Term>) -> Term {
    Term::List(List::from(elements))
}

fn tuple(elements: Vec<Term>) -> Term {
    Term::Tuple(Tuple::from(elements))
}

fn improper(elements: Vec<Term>, last: Term) -> Term {
    Term::ImproperList(ImproperList::from((elements, last)))
}

fn map(pairs: Vec<(Term, Term)>) -> Term {
    Term::Map(Map::from(pairs.into_iter().collect::<HashMap<_, _>>()))
}

// ---------------------------------------------------------------------------
// Random term generation.

const LOCAL_NODE: &str = "nonode@nohost";

struct Gen {
    rng: Rng,
    atoms: Vec<String>,
    nodes: Vec<&'static str>,
    ints: Vec<Term>,
    floats: Vec<f64>,
    fun_uniqs: Vec<[u8; 16]>,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        let mut rng = Rng(seed);
        let mut atoms: Vec<String> = [
            "",
            "a",
            "ok",
            "error",
            "true",
            "false",
            "nil",
            "undefined",
            "héllo",
            "日本",
            "ÿ",
            "é",
            "Ω",
            "😀",
            "ß\u{80}\u{a0}",
            "Привет",
            "a b",
            "'quoted'",
            "\u{c2}",
            "ĀĂ",
            "nonode@nohost",
            "Elixir.Horde.Registry",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        atoms.push("x".repeat(255));
        atoms.push("é".repeat(255));
        atoms.push("日".repeat(255));
        atoms.push("ab".repeat(100));
        // Random names from pools of 1-, 2-, 3- and 4-byte UTF-8 characters.
        let pools: [&[char]; 4] = [
            &[
                'a', 'b', 'z', 'A', '_', '0', '9', '@', '.', ' ', '\'', '\u{7f}', '\u{1}',
            ],
            &[
                'é', 'ÿ', 'À', 'ß', '\u{80}', '\u{a0}', '\u{bf}', 'Ā', 'Ж', 'ω', '\u{7ff}',
            ],
            &['日', '本', '\u{800}', '\u{ffff}', '€', '\u{e000}'],
            &['😀', '\u{10000}', '\u{10ffff}'],
        ];
        for _ in 0..600 {
            let len = if rng.chance(5) {
                rng.upto(255)
            } else {
                rng.upto(12)
            };
            let name: String = (0..len)
                .map(|_| {
                    let pool = if rng.chance(60) {
                        pools[0]
                    } else {
                        *rng.pick(&pools)
                    };
                    *rng.pick(pool)
                })
                .collect();
            atoms.push(name);
        }

        let mut ints = Vec::new();
        for (lo, hi) in [(0, 300), (-300, 0)] {
            for v in [lo, hi] {
                ints.push(i128_term(v));
            }
        }
        for p in [
            7u32, 8, 15, 16, 26, 27, 28, 31, 32, 33, 47, 58, 59, 60, 61, 62, 63, 64, 65, 96, 120,
        ] {
            let base = 1i128 << p;
            for d in [-1i128, 0, 1] {
                ints.push(i128_term(base + d));
                ints.push(i128_term(-(base + d)));
            }
        }
        ints.push(i128_term(i128::MAX));
        ints.push(i128_term(i128::MIN + 1));

        let floats = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            0.1,
            1e300,
            -1e300,
            1e-300,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            9007199254740992.0,
            -9007199254740993.0,
            4294967296.0,
            134217728.0,
            3.0,
            100.0,
            std::f64::consts::PI,
        ];
        let fun_uniqs = (0..4)
            .map(|_| {
                let mut u = [0u8; 16];
                u.iter_mut().for_each(|b| *b = rng.next() as u8);
                u
            })
            .collect();
        Gen {
            rng,
            atoms,
            nodes: vec![
                LOCAL_NODE,
                LOCAL_NODE,
                "a@b",
                "node1@host",
                "erl@127.0.0.1",
                "horde_1@10.0.0.7",
                "ñode@höst",
                "日本@host",
            ],
            ints,
            floats,
            fun_uniqs,
        }
    }

    fn atom(&mut self) -> Term {
        let i = self.rng.below(self.atoms.len() as u64) as usize;
        atom(&self.atoms[i].clone())
    }

    fn int(&mut self) -> Term {
        let t = match self.rng.below(10) {
            0..=2 => Term::FixInteger(FixInteger::from(self.rng.below(256) as i32)),
            3 => Term::FixInteger(FixInteger::from(self.rng.next() as i32)),
            4 => {
                // Anywhere in the 28-bit small range.
                let v = (self.rng.below(1 << 28) as i32) - (1 << 27);
                Term::FixInteger(FixInteger::from(v))
            }
            5 => {
                let v = self.rng.next() as i64 >> self.rng.below(64);
                normal_int(BigInteger::from(v))
            }
            6 => {
                let max = if self.rng.chance(10) { 40 } else { 4 };
                let n = 1 + self.rng.upto(max);
                let limbs: Vec<u64> = (0..n).map(|_| self.rng.next()).collect();
                let neg = self.rng.chance(50);
                int_from_limbs(&limbs, neg)
            }
            _ => {
                let i = self.rng.below(self.ints.len() as u64) as usize;
                self.ints[i].clone()
            }
        };
        // The wire may carry small values as bignums too; the BEAM
        // normalises them, so the hash must not care.
        match t {
            Term::FixInteger(f) if self.rng.chance(3) => Term::BigInteger(BigInteger::from(&f)),
            t => t,
        }
    }

    fn float(&mut self) -> Term {
        match self.rng.below(4) {
            0 => {
                let i = self.rng.below(self.floats.len() as u64) as usize;
                float(self.floats[i])
            }
            1 => float((self.rng.next() as i64 >> self.rng.below(64)) as f64),
            _ => loop {
                let f = f64::from_bits(self.rng.next());
                if f.is_finite() {
                    break float(f);
                }
            },
        }
    }

    fn bytes(&mut self) -> Vec<u8> {
        let len = match self.rng.below(100) {
            0 => self.rng.upto(2000),
            1..=10 => self.rng.upto(100),
            _ => self.rng.upto(16),
        };
        (0..len).map(|_| self.rng.next() as u8).collect()
    }

    fn bitstring(&mut self) -> Term {
        let mut bytes = self.bytes();
        if bytes.is_empty() {
            bytes.push(self.rng.next() as u8);
        }
        let tail = 1 + self.rng.below(8) as u8;
        if tail < 8 && self.rng.chance(50) {
            // `BitBinary` keeps the tail bits right-aligned; keep the unused
            // high bits clear half the time and garbage the other half.
            let last = bytes.last_mut().unwrap();
            *last &= (1u8 << tail) - 1;
        }
        Term::BitBinary(BitBinary::from((bytes, tail)))
    }

    fn node(&mut self) -> (String, u32) {
        let node = self.rng.pick(&self.nodes).to_string();
        let creation = if node == LOCAL_NODE {
            0
        } else {
            let random = self.rng.next() as u32;
            *self
                .rng
                .pick(&[0, 1, 2, 3, 4, 0x1234_5678, u32::MAX, random])
        };
        (node, creation)
    }

    fn pid(&mut self) -> Pid {
        let (node, creation) = self.node();
        let (id, serial) = if node == LOCAL_NODE {
            // Local pids must fit the emulator's 15-bit number, 13-bit serial.
            (
                self.rng.below(1 << 15) as u32,
                self.rng.below(1 << 13) as u32,
            )
        } else if self.rng.chance(50) {
            (
                self.rng.below(1 << 15) as u32,
                self.rng.below(1 << 13) as u32,
            )
        } else {
            (self.rng.next() as u32, self.rng.next() as u32)
        };
        Pid::new(node, id, serial, creation)
    }

    fn port(&mut self) -> Port {
        let (node, creation) = self.node();
        let id = if node == LOCAL_NODE {
            self.rng.below(1 << 28)
        } else {
            match self.rng.below(3) {
                0 => self.rng.below(1 << 28),
                1 => self.rng.next() >> 32,
                _ => self.rng.next(),
            }
        };
        Port {
            node: Atom::from(node),
            id,
            creation,
        }
    }

    fn reference(&mut self) -> Reference {
        let (node, creation) = self.node();
        let words = if node == LOCAL_NODE {
            1 + self.rng.upto(2)
        } else {
            1 + self.rng.upto(4)
        };
        let mut id: Vec<u32> = (0..words).map(|_| self.rng.next() as u32).collect();
        if node == LOCAL_NODE || self.rng.chance(30) {
            // Real references keep only 18 bits in the first word.
            id[0] &= (1 << 18) - 1;
        }
        Reference {
            node: Atom::from(node),
            id,
            creation,
        }
    }

    fn fun(&mut self, depth: usize) -> Term {
        if self.rng.chance(40) {
            let module = Atom::from(self.atom_name());
            let function = Atom::from(self.atom_name());
            let arity = self.rng.below(256) as u8;
            return Term::ExternalFun(Box::new(ExternalFun {
                module,
                function,
                arity,
            }));
        }
        let module = Atom::from(self.atom_name());
        let uniq = *self.rng.pick(&self.fun_uniqs.clone());
        let index = self.rng.below(20) as u32;
        // The VM keeps one fun entry per (module, uniq, index) and reuses its
        // arity, old_index and old_uniq, so derive those from the key.
        let key = make_hash2(&tuple(vec![
            Term::Atom(module.clone()),
            Term::Binary(Binary::from(uniq.to_vec())),
            Term::FixInteger(FixInteger::from(index as i32)),
        ]));
        let old_index = if key.is_multiple_of(2) {
            index as i32
        } else {
            index as i32 + 100
        };
        let old_uniq = (key >> 4) as i32 - (1 << 26);
        let n = self.rng.upto(4);
        let free_vars = (0..n).map(|_| self.term(depth + 1)).collect();
        let pid = self.pid();
        Term::InternalFun(Box::new(InternalFun::New {
            module,
            arity: (key >> 20) as u8,
            pid,
            free_vars,
            index,
            uniq,
            old_index,
            old_uniq,
        }))
    }

    fn atom_name(&mut self) -> String {
        match self.atom() {
            Term::Atom(a) => a.name.to_string(),
            _ => unreachable!(),
        }
    }

    /// How many elements a tuple or list gets: mostly a few, sometimes
    /// dozens, near the root occasionally hundreds (LARGE_TUPLE_EXT).
    fn children(&mut self, depth: usize) -> usize {
        match (depth, self.rng.below(50)) {
            (0, 0) => self.rng.upto(300),
            (0 | 1, 1..=4) => self.rng.upto(40),
            _ => self.rng.upto(4),
        }
    }

    fn list(&mut self, depth: usize) -> Term {
        match self.rng.below(8) {
            // A string: all byte-sized integers.
            0 => {
                let bytes = self.bytes();
                if self.rng.chance(50) {
                    Term::ByteList(ByteList::from(bytes))
                } else {
                    list(
                        bytes
                            .into_iter()
                            .map(|b| Term::FixInteger(FixInteger::from(b)))
                            .collect(),
                    )
                }
            }
            // Byte runs interrupted by other terms.
            1 | 2 => {
                let n = self.children(depth);
                let elems = (0..n)
                    .map(|_| {
                        if self.rng.chance(75) {
                            Term::FixInteger(FixInteger::from(self.rng.below(256) as i32))
                        } else {
                            self.term(depth + 1)
                        }
                    })
                    .collect();
                list(elems)
            }
            // Improper lists, including tails that are lists themselves.
            3 | 4 => {
                let n = self.rng.upto(5);
                let elems = (0..n).map(|_| self.term(depth + 1)).collect();
                let tail = match self.rng.below(4) {
                    0 => self.list(depth + 1),
                    _ => self.term(depth + 1),
                };
                improper(elems, tail)
            }
            // Small integers, some negative: such a list must not go out as
            // STRING_EXT.
            5 if self.rng.chance(10) => {
                let n = 1 + self.rng.upto(5);
                list(
                    (0..n)
                        .map(|_| Term::FixInteger(FixInteger::from(self.rng.below(260) as i32 - 3)))
                        .collect(),
                )
            }
            _ => {
                let n = self.children(depth);
                list((0..n).map(|_| self.term(depth + 1)).collect())
            }
        }
    }

    fn map(&mut self, depth: usize) -> Term {
        // Around the 32-key line between flatmaps and HAMTs, and well past it.
        let n = match (depth, self.rng.below(20)) {
            (0 | 1, 0 | 1) => 30 + self.rng.upto(10),
            (0 | 1, 2) => 33 + self.rng.upto(100),
            _ => self.rng.upto(4),
        };
        // Big maps get small keys and values to keep terms small.
        let depth = if n > 8 { depth + 3 } else { depth };
        let mut pairs: Vec<(Term, Term)> = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.term(depth + 2);
            // Keys equal as Erlang terms would collapse on the BEAM.
            if pairs.iter().any(|(k2, _)| same_term(&k, k2)) {
                continue;
            }
            let v = self.term(depth + 1);
            pairs.push((k, v));
        }
        map(pairs)
    }

    fn leaf(&mut self) -> Term {
        match self.rng.below(16) {
            0..=2 => self.atom(),
            3..=6 => self.int(),
            7 | 8 => self.float(),
            9 => Term::Binary(Binary::from(self.bytes())),
            10 => self.bitstring(),
            11 => Term::Pid(self.pid()),
            12 => Term::Port(self.port()),
            13 => Term::Reference(Box::new(self.reference())),
            14 => list(vec![]),
            _ => tuple(vec![]),
        }
    }

    fn term(&mut self, depth: usize) -> Term {
        if depth >= 5 || self.rng.chance(30 + 12 * depth as u64) {
            return self.leaf();
        }
        match self.rng.below(10) {
            0..=2 => self.list(depth),
            3..=5 => {
                let n = self.children(depth);
                tuple((0..n).map(|_| self.term(depth + 1)).collect())
            }
            6 | 7 => self.map(depth),
            8 => self.fun(depth),
            _ => self.leaf(),
        }
    }
}

// ---------------------------------------------------------------------------
// Term equality as Erlang's `=:=` sees it (OTP 25: 0.0 =:= -0.0), across
// the several `Term` shapes one Erlang term can take.

enum Elem<'a> {
    T(&'a Term),
    B(u8),
}

/// A list-like term as its elements and its non-list tail (`None` is `[]`).
fn flatten(mut t: &Term) -> Option<(Vec<Elem<'_>>, Option<&Term>)> {
    let mut elems = Vec::new();
    let mut seen_list = false;
    loop {
        match t {
            Term::List(l) => {
                elems.extend(l.elements.iter().map(Elem::T));
                return Some((elems, None));
            }
            Term::ByteList(b) => {
                elems.extend(b.bytes.iter().map(|&x| Elem::B(x)));
                return Some((elems, None));
            }
            Term::ImproperList(l) => {
                elems.extend(l.elements.iter().map(Elem::T));
                seen_list |= !l.elements.is_empty();
                t = &l.last;
            }
            other if seen_list => return Some((elems, Some(other))),
            _ => return None,
        }
    }
}

fn int_value(t: &Term) -> Option<BigInteger> {
    match t {
        Term::FixInteger(f) => Some(BigInteger::from(f)),
        Term::BigInteger(b) => Some(b.clone()),
        _ => None,
    }
}

/// A bitstring as whole bytes and, when the bit size is not a multiple of
/// 8, the number and value of the trailing bits.
type Bits<'a> = (&'a [u8], Option<(u8, u8)>);

fn bits_of(t: &Term) -> Option<Bits<'_>> {
    match t {
        Term::Binary(b) => Some((&b.bytes, None)),
        Term::BitBinary(b) => match b.bytes.split_last() {
            Some((&last, init)) if (1..8).contains(&b.tail_bits_size) => Some((
                init,
                Some((b.tail_bits_size, last & ((1 << b.tail_bits_size) - 1))),
            )),
            _ => Some((&b.bytes, None)),
        },
        _ => None,
    }
}

fn trim_zeros(id: &[u32]) -> &[u32] {
    let n = id.iter().rposition(|&w| w != 0).map_or(0, |i| i + 1);
    &id[..n]
}

fn same_pid(a: &Pid, b: &Pid) -> bool {
    a == b
}

/// An `ImproperList` without elements is just its tail.
fn strip_empty_improper(mut t: &Term) -> &Term {
    while let Term::ImproperList(l) = t {
        if !l.elements.is_empty() {
            break;
        }
        t = &l.last;
    }
    t
}

/// OTP 26 and later do not keep a local fun's creator pid when they decode
/// one (it comes back as a pid of their own), so it cannot come back as sent.
fn creator_pid_dropped() -> bool {
    common::beam_versions().is_some_and(|v| v.otp >= 26)
}

fn same_term(a: &Term, b: &Term) -> bool {
    let (a, b) = (strip_empty_improper(a), strip_empty_improper(b));
    if let (Some(x), Some(y)) = (int_value(a), int_value(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (bits_of(a), bits_of(b)) {
        return x == y;
    }
    let (la, lb) = (flatten(a), flatten(b));
    if la.is_some() || lb.is_some() {
        let (Some((ea, ta)), Some((eb, tb))) = (la, lb) else {
            return false;
        };
        let elem_eq = |x: &Elem<'_>, y: &Elem<'_>| match (x, y) {
            (Elem::B(p), Elem::B(q)) => p == q,
            (Elem::B(p), Elem::T(t)) | (Elem::T(t), Elem::B(p)) => {
                int_value(strip_empty_improper(t)).is_some_and(|v| v == BigInteger::from(*p))
            }
            (Elem::T(s), Elem::T(t)) => same_term(s, t),
        };
        return ea.len() == eb.len()
            && ea.iter().zip(&eb).all(|(x, y)| elem_eq(x, y))
            && match (ta, tb) {
                (None, None) => true,
                (Some(x), Some(y)) => same_term(x, y),
                _ => false,
            };
    }
    match (a, b) {
        (Term::Atom(x), Term::Atom(y)) => x == y,
        (Term::Float(x), Term::Float(y)) => x.value == y.value,
        (Term::Pid(x), Term::Pid(y)) => same_pid(x, y),
        (Term::Port(x), Term::Port(y)) => x == y,
        (Term::Reference(x), Term::Reference(y)) => {
            x.node == y.node && x.creation == y.creation && trim_zeros(&x.id) == trim_zeros(&y.id)
        }
        (Term::ExternalFun(x), Term::ExternalFun(y)) => x == y,
        (Term::InternalFun(x), Term::InternalFun(y)) => match (&**x, &**y) {
            (
                InternalFun::New {
                    module: m1,
                    arity: a1,
                    pid: p1,
                    free_vars: f1,
                    index: i1,
                    uniq: u1,
                    old_index: oi1,
                    old_uniq: ou1,
                },
                InternalFun::New {
                    module: m2,
                    arity: a2,
                    pid: p2,
                    free_vars: f2,
                    index: i2,
                    uniq: u2,
                    old_index: oi2,
                    old_uniq: ou2,
                },
            ) => {
                m1 == m2
                    && a1 == a2
                    && (same_pid(p1, p2) || creator_pid_dropped())
                    && (i1, u1, oi1, ou1) == (i2, u2, oi2, ou2)
                    && f1.len() == f2.len()
                    && f1.iter().zip(f2).all(|(s, t)| same_term(s, t))
            }
            _ => x == y,
        },
        (Term::Tuple(x), Term::Tuple(y)) => {
            x.elements.len() == y.elements.len()
                && x.elements
                    .iter()
                    .zip(&y.elements)
                    .all(|(s, t)| same_term(s, t))
        }
        (Term::Map(x), Term::Map(y)) => {
            x.map.len() == y.map.len()
                && x.map.iter().all(|(k, v)| {
                    y.map
                        .iter()
                        .any(|(k2, v2)| same_term(k, k2) && same_term(v, v2))
                })
        }
        _ => false,
    }
}

/// Drops a term without recursion: `beam_peer::term::Term`'s own drop recurses and
/// would overflow the stack on very deep terms.
fn dismantle(t: Term) {
    let mut stack = vec![t];
    while let Some(t) = stack.pop() {
        match t {
            Term::List(l) => stack.extend(l.elements),
            Term::ImproperList(l) => {
                stack.extend(l.elements);
                stack.push(*l.last);
            }
            Term::Tuple(x) => stack.extend(x.elements),
            Term::Map(m) => m.map.into_iter().for_each(|(k, v)| {
                stack.push(k);
                stack.push(v);
            }),
            Term::InternalFun(f) => {
                if let InternalFun::New { free_vars, .. } = *f {
                    stack.extend(free_vars);
                }
            }
            _ => {}
        }
    }
}

fn encode(t: &Term) -> Vec<u8> {
    // Our encoder (term::etf), the one the node sends with.
    beam_peer::term::etf::to_binary(t).unwrap_or_else(|e| panic!("cannot encode {}: {e}", show(t)))
}

fn decode(bytes: &[u8]) -> Result<Term, String> {
    beam_peer::term::etf::from_binary(bytes).map_err(|e| e.to_string())
}

/// A short printable form of a term for failure messages.
fn show(t: &Term) -> String {
    let s = format!("{t}");
    if s.len() > 400 {
        let cut = (0..=400)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}... ({} chars)", &s[..cut], s.len())
    } else {
        s
    }
}

// ---------------------------------------------------------------------------
// Terms nested far deeper than our decoder admits (`term::etf::MAX_DEPTH`),
// with their ETF written by hand so the bytes erl hashes do not depend on our
// encoder (`random_terms_match_erl` checks our encoder writes the same bytes).

/// `[[[...[]...]]]`, `depth` lists deep.
fn deep_list(depth: usize) -> (Term, Vec<u8>) {
    let mut t = list(vec![]);
    for _ in 0..depth {
        t = list(vec![t]);
    }
    let mut etf = vec![131];
    for _ in 0..depth {
        etf.extend([108, 0, 0, 0, 1]);
    }
    etf.extend(std::iter::repeat_n(106, depth + 1));
    (t, etf)
}

/// `{{{...{}...}}}`, `depth` tuples deep.
fn deep_tuple(depth: usize) -> (Term, Vec<u8>) {
    let mut t = tuple(vec![]);
    for _ in 0..depth {
        t = tuple(vec![t]);
    }
    let mut etf = vec![131];
    for _ in 0..depth {
        etf.extend([104, 1]);
    }
    etf.extend([104, 0]);
    (t, etf)
}

/// Cycles through `{1, X}`, `[a | X]`, `#{k => X}` and `[X, 7]`.
fn deep_mixed(depth: usize) -> (Term, Vec<u8>) {
    let mut t = atom("leaf");
    for i in 0..depth {
        t = match i % 4 {
            0 => tuple(vec![Term::FixInteger(FixInteger::from(1)), t]),
            1 => improper(vec![atom("a")], t),
            2 => map(vec![(atom("k"), t)]),
            _ => list(vec![t, Term::FixInteger(FixInteger::from(7))]),
        };
    }
    let mut etf = vec![131];
    for i in (0..depth).rev() {
        match i % 4 {
            0 => etf.extend([104, 2, 97, 1]),
            1 => etf.extend([108, 0, 0, 0, 1, 119, 1, b'a']),
            2 => etf.extend([116, 0, 0, 0, 1, 119, 1, b'k']),
            _ => etf.extend([108, 0, 0, 0, 2]),
        }
    }
    etf.extend([119, 4, b'l', b'e', b'a', b'f']);
    for i in 0..depth {
        if i % 4 == 3 {
            etf.extend([97, 7, 106]);
        }
    }
    (t, etf)
}

fn deep_term(name: &str, depth: usize) -> Option<(Term, Vec<u8>)> {
    match name {
        "deep_list" => Some(deep_list(depth)),
        "deep_tuple" => Some(deep_tuple(depth)),
        "deep_mixed" => Some(deep_mixed(depth)),
        _ => None,
    }
}

const DEEP_NAMES: [&str; 3] = ["deep_list", "deep_tuple", "deep_mixed"];

/// Terms with many elements or bytes.
fn large_terms() -> Vec<(&'static str, Term)> {
    let bytes: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 + i / 251) as u8).collect();
    vec![
        ("1 MB binary", Term::Binary(Binary::from(bytes.clone()))),
        (
            "1 MB bitstring",
            Term::BitBinary(BitBinary::from((bytes[..1_000_001].to_vec(), 5))),
        ),
        (
            "100k-element tuple",
            tuple((0..100_000).map(|i| i128_term(i * 1_000_003)).collect()),
        ),
        (
            "100k-element byte list",
            list(
                (0..100_000)
                    .map(|i| Term::FixInteger(FixInteger::from((i % 256) as u8)))
                    .collect(),
            ),
        ),
        (
            "100k-element mixed list",
            list(
                (0..100_000)
                    .map(|i| match i % 5 {
                        0 => atom("x"),
                        1 => Term::FixInteger(FixInteger::from(i % 300)),
                        2 => float(f64::from(i)),
                        3 => list(vec![]),
                        _ => Term::FixInteger(FixInteger::from(i % 256)),
                    })
                    .collect(),
            ),
        ),
        (
            "10k-key map",
            map((0..10_000).map(|i| (i128_term(i), i128_term(-i))).collect()),
        ),
        // Longer than STRING_EXT's u16 length: must go out as LIST_EXT.
        (
            "70k-byte ByteList",
            Term::ByteList(ByteList::from(vec![b'x'; 70_000])),
        ),
    ]
}

// ---------------------------------------------------------------------------
// Hand-picked terms kept in the corpus.

fn tricky_terms() -> Vec<(String, Term)> {
    let mut v: Vec<(String, Term)> = Vec::new();
    let mut add = |desc: &str, t: Term| v.push((desc.to_string(), t));
    add("nil", list(vec![]));
    add("empty tuple", tuple(vec![]));
    add("empty map", map(vec![]));
    add("empty binary", Term::Binary(Binary::from(vec![])));
    add(
        "empty bitstring",
        Term::BitBinary(BitBinary::from((vec![], 0))),
    );
    for p in [27u32, 28, 31, 32, 59, 60, 63, 64, 65, 100] {
        let b = 1i128 << p;
        for d in [-1i128, 0, 1] {
            add(&format!("2^{p}{d:+}"), i128_term(b + d));
            add(&format!("-(2^{p}{d:+})"), i128_term(-(b + d)));
        }
    }
    add("0", i128_term(0));
    add("-1", i128_term(-1));
    add("255", i128_term(255));
    add("256", i128_term(256));
    add("small as bignum", Term::BigInteger(BigInteger::from(5i32)));
    add(
        "-2^27 as bignum",
        Term::BigInteger(BigInteger::from(-(1i64 << 27))),
    );
    add("2^200", int_from_limbs(&[1, 0, 0, 0], false));
    add("-(2^256-1)", int_from_limbs(&[u64::MAX; 4], true));
    for f in [
        0.0,
        -0.0,
        1.0,
        -1.0,
        1e300,
        -1e300,
        5e-324,
        0.1,
        2.0f64.powi(53),
    ] {
        add(&format!("float {f:e}"), float(f));
    }
    for a in [
        "a",
        "héllo",
        "日本",
        "ÿ",
        "\u{80}",
        "Ω",
        "😀",
        "",
        "Elixir.Horde",
    ] {
        add(&format!("atom {a}"), atom(a));
    }
    add("atom 255 é", atom(&"é".repeat(255)));
    add("atom 255 日", atom(&"日".repeat(255)));
    add(
        "binary 1..=13",
        Term::Binary(Binary::from((1..=13).collect::<Vec<u8>>())),
    );
    add("binary 12", Term::Binary(Binary::from(vec![7u8; 12])));
    add(
        "binary 1000",
        Term::Binary(Binary::from((0..1000).map(|i| i as u8).collect::<Vec<_>>())),
    );
    add("<<5:3>>", Term::BitBinary(BitBinary::from((vec![5], 3))));
    add(
        "<<1,2,1:1>>",
        Term::BitBinary(BitBinary::from((vec![1, 2, 1], 1))),
    );
    add(
        "<<1,2,127:7>>",
        Term::BitBinary(BitBinary::from((vec![1, 2, 127], 7))),
    );
    add(
        "bits 8 = binary",
        Term::BitBinary(BitBinary::from((vec![1, 2, 3], 8))),
    );
    add("string abc", Term::ByteList(ByteList::from("abc")));
    add("string abcd", Term::ByteList(ByteList::from("abcd")));
    add("string abcde", Term::ByteList(ByteList::from("abcde")));
    add(
        "list of bytes",
        list(
            (0..9)
                .map(|i| Term::FixInteger(FixInteger::from(i * 30)))
                .collect(),
        ),
    );
    add(
        "bytes interrupted",
        list(vec![
            Term::FixInteger(FixInteger::from(1)),
            Term::FixInteger(FixInteger::from(2)),
            atom("x"),
            Term::FixInteger(FixInteger::from(3)),
            Term::FixInteger(FixInteger::from(256)),
            Term::FixInteger(FixInteger::from(4)),
        ]),
    );
    add("[1|2]", improper(vec![i128_term(1)], i128_term(2)));
    add(
        "[a|[]] improper shape",
        improper(vec![atom("a")], list(vec![])),
    );
    add(
        "[1,2|\"ab\"]",
        improper(
            vec![i128_term(1), i128_term(2)],
            Term::ByteList(ByteList::from("ab")),
        ),
    );
    add("[[]]", list(vec![list(vec![])]));
    add("{[]}", tuple(vec![list(vec![])]));
    add("{a}", tuple(vec![atom("a")]));
    add("{a, a}", tuple(vec![atom("a"), atom("a")]));
    add("tuple 300", tuple((0..300).map(i128_term).collect()));
    add("#{a => 1}", map(vec![(atom("a"), i128_term(1))]));
    add("#{[] => []}", map(vec![(list(vec![]), list(vec![]))]));
    for n in [31, 32, 33, 64, 200] {
        add(
            &format!("map {n} keys"),
            map((0..n).map(|i| (i128_term(i), atom("v"))).collect()),
        );
    }
    add(
        "nested maps",
        map(vec![
            (
                atom("inner"),
                map((0..40)
                    .map(|i| (i128_term(i), map(vec![(atom("x"), i128_term(i))])))
                    .collect()),
            ),
            (map(vec![(atom("k"), atom("v"))]), list(vec![])),
        ]),
    );
    add("pid local", Term::Pid(Pid::new(LOCAL_NODE, 42, 3, 0)));
    add("pid remote", Term::Pid(Pid::new("a@b", 42, 3, 7)));
    add(
        "pid remote big id",
        Term::Pid(Pid::new("a@b", u32::MAX, u32::MAX, u32::MAX)),
    );
    add(
        "port remote",
        Term::Port(Port {
            node: Atom::from("a@b"),
            id: 77,
            creation: 1,
        }),
    );
    add(
        "port remote 64-bit",
        Term::Port(Port {
            node: Atom::from("a@b"),
            id: 0x1_2345_6789,
            creation: 1,
        }),
    );
    add(
        "ref remote",
        Term::Reference(Box::new(Reference {
            node: Atom::from("a@b"),
            id: vec![9, 8, 7],
            creation: 2,
        })),
    );
    add(
        "ref local 1 word",
        Term::Reference(Box::new(Reference {
            node: Atom::from(LOCAL_NODE),
            id: vec![9],
            creation: 0,
        })),
    );
    add(
        "ref remote 5 words",
        Term::Reference(Box::new(Reference {
            node: Atom::from("x@y"),
            id: vec![1, 2, 3, 4, 5],
            creation: 3,
        })),
    );
    add(
        "export fun",
        Term::ExternalFun(Box::new(ExternalFun {
            module: Atom::from("lists"),
            function: Atom::from("map"),
            arity: 2,
        })),
    );
    add(
        "local fun with env",
        Term::InternalFun(Box::new(InternalFun::New {
            module: Atom::from("m"),
            arity: 1,
            pid: Pid::new(LOCAL_NODE, 9, 0, 0),
            free_vars: vec![i128_term(5), atom("x"), list(vec![])],
            index: 3,
            uniq: [7; 16],
            old_index: 3,
            old_uniq: 12345,
        })),
    );
    add(
        "local fun index != old_index",
        Term::InternalFun(Box::new(InternalFun::New {
            module: Atom::from("m2"),
            arity: 0,
            pid: Pid::new("a@b", 9, 0, 1),
            free_vars: vec![],
            index: 4,
            uniq: [8; 16],
            old_index: 40,
            old_uniq: -5,
        })),
    );
    v
}

// ---------------------------------------------------------------------------
// The erl process.

struct Erl {
    child: Child,
    sock: TcpStream,
}

impl Erl {
    /// Compiles the oracle, starts `erl` and waits for it to connect back;
    /// `None` when Erlang is not installed.
    fn start() -> Option<Erl> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("phash2_oracle");
        std::fs::create_dir_all(&out).expect("create oracle build dir");
        let erlc = common::beam_tool("erlc")
            .arg("-o")
            .arg(&out)
            .arg(root.join("erlang/phash2_oracle.erl"))
            .status();
        match erlc {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("running erlc: {e}"),
            Ok(s) => assert!(s.success(), "erlc failed on erlang/phash2_oracle.erl"),
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind oracle listener");
        let port = listener.local_addr().unwrap().port().to_string();
        let child = common::beam_tool("erl")
            .args(["-noinput", "-noshell", "-pa"])
            .arg(&out)
            .args(["-s", "phash2_oracle", "main", &port])
            .stdin(Stdio::null())
            .spawn();
        let mut child = match child {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("starting erl: {e}"),
            Ok(c) => c,
        };
        // Accept without blocking forever if erl dies on the way up.
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let sock = loop {
            match listener.accept() {
                Ok((sock, _)) => break sock,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("erl exited before connecting: {status}");
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!("erl did not connect within 60 s");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        sock.set_nonblocking(false).unwrap();
        sock.set_nodelay(true).unwrap();
        Some(Erl { child, sock })
    }

    fn call(&mut self, request: &[u8]) -> Vec<u8> {
        let mut framed = (request.len() as u32).to_be_bytes().to_vec();
        framed.extend(request);
        self.sock.write_all(&framed).expect("write to erl");
        let mut len = [0u8; 4];
        self.sock
            .read_exact(&mut len)
            .expect("read reply length from erl");
        let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
        self.sock
            .read_exact(&mut reply)
            .expect("read reply from erl");
        reply
    }

    /// Sends `(mode, etf)` items; returns one result per item.
    fn hash_batch(&mut self, items: &[(u8, &[u8])]) -> Vec<Result<BeamResult, String>> {
        let mut req = vec![0u8];
        req.extend((items.len() as u32).to_be_bytes());
        for (mode, etf) in items {
            req.push(*mode);
            req.extend((etf.len() as u32).to_be_bytes());
            req.extend(*etf);
        }
        let reply = self.call(&req);
        let mut r = Reader(&reply);
        let out: Vec<_> = items
            .iter()
            .map(|_| match r.u8() {
                0 => {
                    let phash2_1 = r.u32();
                    let ranged: Vec<u32> = RANGES.iter().map(|_| r.u32()).collect();
                    let n = r.u32() as usize;
                    let default_etf = r.take(n).to_vec();
                    let n = r.u32() as usize;
                    let utf8_etf = r.take(n).to_vec();
                    Ok(BeamResult {
                        phash2_1,
                        ranged,
                        default_etf,
                        utf8_etf,
                    })
                }
                _ => {
                    let n = r.u32() as usize;
                    Err(String::from_utf8_lossy(r.take(n)).into_owned())
                }
            })
            .collect();
        assert!(r.0.is_empty(), "trailing bytes in erl reply");
        out
    }

    /// Terms made natively by the VM: (etf, make_hash2, phash2/1).
    fn native_samples(&mut self) -> Vec<(Vec<u8>, u32, u32)> {
        let reply = self.call(&[1]);
        let mut r = Reader(&reply);
        let mut out = Vec::new();
        while !r.0.is_empty() {
            let n = r.u32() as usize;
            let etf = r.take(n).to_vec();
            out.push((etf, r.u32(), r.u32()));
        }
        out
    }
}

impl Drop for Erl {
    fn drop(&mut self) {
        // Kill exactly the process we started, then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct BeamResult {
    phash2_1: u32,
    /// `phash2(T, R)` for each of `RANGES`; the last (2^32) is `make_hash2`.
    ranged: Vec<u32>,
    /// `term_to_binary(T)`: OTP 25 writes atoms as latin-1 `ATOM_EXT`
    /// where they fit.
    default_etf: Vec<u8>,
    /// `term_to_binary(T, [{minor_version, 2}])`: UTF-8 atoms.
    utf8_etf: Vec<u8>,
}

impl BeamResult {
    fn full(&self) -> u32 {
        *self.ranged.last().unwrap()
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().unwrap())
    }
}

/// Our values for every reduction erl computed, as mismatch descriptions.
fn compare(t: &Term, beam: &BeamResult) -> Vec<String> {
    let mut diffs = Vec::new();
    let full = make_hash2(t);
    if full != beam.full() {
        diffs.push(format!("make_hash2 ours {full} beam {}", beam.full()));
    }
    if phash2(t) != beam.phash2_1 {
        diffs.push(format!(
            "phash2/1 ours {} beam {}",
            phash2(t),
            beam.phash2_1
        ));
    }
    for (r, &b) in RANGES.iter().zip(&beam.ranged) {
        let ours = phash2_range(t, *r);
        if ours != b {
            diffs.push(format!("phash2/2 range {r} ours {ours} beam {b}"));
        }
    }
    diffs
}

/// The direct children of a term, with list tails as whole sublists.
fn children(t: &Term) -> Vec<Term> {
    match t {
        Term::List(l) if !l.elements.is_empty() => {
            let mut c = l.elements.clone();
            c.push(list(l.elements[1..].to_vec()));
            c
        }
        Term::ImproperList(l) if !l.elements.is_empty() => {
            let mut c = l.elements.clone();
            c.push((*l.last).clone());
            c.push(improper(l.elements[1..].to_vec(), (*l.last).clone()));
            c
        }
        Term::Tuple(x) => x.elements.clone(),
        Term::Map(m) => m
            .map
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone(), map(vec![(k.clone(), v.clone())])])
            .collect(),
        Term::InternalFun(f) => match &**f {
            InternalFun::New { free_vars, .. } => free_vars.clone(),
            InternalFun::Old { free_vars, .. } => free_vars.clone(),
        },
        _ => Vec::new(),
    }
}

/// Walks down from a mismatching term to the smallest subterm that still
/// mismatches, so a failure names the term type at fault.
fn smallest_failing_subterm(erl: &mut Erl, t: &Term) -> Option<Term> {
    let mut current = t.clone();
    'down: loop {
        let kids: Vec<Term> = children(&current);
        let encoded: Vec<Vec<u8>> = kids.iter().map(encode).collect();
        let items: Vec<(u8, &[u8])> = encoded.iter().map(|e| (1u8, e.as_slice())).collect();
        for (k, r) in kids.iter().zip(erl.hash_batch(&items)) {
            if let Ok(beam) = r {
                if make_hash2(k) != beam.full() {
                    current = k.clone();
                    continue 'down;
                }
            }
        }
        return Some(current);
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What kind of childless term `t` is, for the encoding-difference report.
fn leaf_kind(t: &Term) -> Option<String> {
    let kind = match t {
        Term::Atom(a) if a.name.chars().all(|c| (c as u32) < 128) => "ASCII atom",
        Term::Atom(a) if a.name.chars().all(|c| (c as u32) < 256) => "latin-1 atom",
        Term::Atom(_) => "non-latin-1 atom",
        Term::FixInteger(_) => "FixInteger",
        Term::BigInteger(b) if i32::try_from(&b.value).is_ok() => "BigInteger holding an i32",
        Term::BigInteger(_) => "BigInteger",
        Term::Float(_) => "float",
        Term::Pid(_) => "pid",
        Term::Port(p) if p.id >= 1 << 28 => "port id >= 2^28",
        Term::Port(_) => "port",
        Term::Reference(r) if r.id.len() < 3 && r.node.name == LOCAL_NODE => {
            "local reference < 3 words"
        }
        Term::Reference(_) => "reference",
        Term::ExternalFun(_) => "export fun",
        Term::Binary(_) => "binary",
        Term::BitBinary(b) if b.bytes.is_empty() => "empty BitBinary",
        Term::BitBinary(b) if b.tail_bits_size == 8 => "BitBinary with 8 tail bits",
        Term::BitBinary(_) => "bitstring",
        Term::ByteList(b) if b.bytes.is_empty() => "empty ByteList",
        Term::ByteList(_) => "ByteList",
        Term::List(l) if l.elements.is_empty() => "[]",
        Term::Tuple(x) if x.elements.is_empty() => "{}",
        Term::Map(m) if m.map.is_empty() => "#{}",
        Term::ImproperList(l) if l.elements.is_empty() => "ImproperList without elements",
        _ => return None,
    };
    Some(kind.to_string())
}

fn tag_name(tag: u8) -> &'static str {
    match tag {
        70 => "NEW_FLOAT",
        77 => "BIT_BINARY",
        88 => "NEW_PID",
        89 => "NEW_PORT",
        90 => "NEWER_REFERENCE",
        97 => "SMALL_INTEGER",
        98 => "INTEGER",
        100 => "ATOM(latin1)",
        104 => "SMALL_TUPLE",
        105 => "LARGE_TUPLE",
        106 => "NIL",
        107 => "STRING",
        108 => "LIST",
        109 => "BINARY",
        110 => "SMALL_BIG",
        111 => "LARGE_BIG",
        112 => "NEW_FUN",
        113 => "EXPORT",
        116 => "MAP",
        118 => "ATOM_UTF8",
        119 => "SMALL_ATOM_UTF8",
        120 => "V4_PORT",
        _ => "?",
    }
}

#[test]
fn random_terms_match_erl() {
    let Some(mut erl) = Erl::start() else {
        println!("phash2 oracle: SKIPPED, `erl`/`erlc` not found on PATH");
        return;
    };
    let started = Instant::now();
    let count: usize = env_or("PHASH2_ORACLE_TERMS", DEFAULT_TERMS);
    let seed: u64 = env_or("PHASH2_ORACLE_SEED", DEFAULT_SEED);
    let mut failures: Vec<String> = Vec::new();
    let mut fail = |msg: String| {
        if failures.len() < 20 {
            eprintln!("MISMATCH {msg}");
        }
        failures.push(msg);
    };
    let mut checked = 0usize;

    // 1. Terms only a running VM makes.
    for (etf, full, p1) in erl.native_samples() {
        let t = decode(&etf).unwrap_or_else(|e| panic!("we cannot decode BEAM term {etf:?}: {e}"));
        if make_hash2(&t) != full || phash2(&t) != p1 {
            fail(format!(
                "native term {}: make_hash2 ours {} beam {full}, phash2 ours {} beam {p1}",
                show(&t),
                make_hash2(&t),
                phash2(&t)
            ));
        }
        checked += 1;
    }

    // 2. The corpus terms, through the same path as the random ones.
    // 3. Random terms.
    let mut gen = Gen::new(seed);
    let mut terms: Vec<Term> = tricky_terms().into_iter().map(|(_, t)| t).collect();
    let tricky = terms.len();
    terms.extend((0..count).map(|_| gen.term(0)));

    let mut encoding_diffs: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut identical = 0usize;
    let mut identical_utf8 = 0usize;
    let mut etf_bytes = 0usize;
    let (mut t_encode, mut t_erl, mut t_check) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for chunk in terms.chunks(BATCH) {
        let t0 = Instant::now();
        let encoded: Vec<Vec<u8>> = chunk.iter().map(encode).collect();
        etf_bytes += encoded.iter().map(Vec::len).sum::<usize>();
        let items: Vec<(u8, &[u8])> = encoded.iter().map(|e| (0u8, e.as_slice())).collect();
        let t1 = Instant::now();
        let results = erl.hash_batch(&items);
        let t2 = Instant::now();
        t_encode += t1 - t0;
        t_erl += t2 - t1;
        for ((t, ours_etf), result) in chunk.iter().zip(&encoded).zip(results) {
            checked += 1;
            let beam = match result {
                Ok(b) => b,
                Err(e) => {
                    fail(format!(
                        "erl could not decode our bytes ({e}) for {}",
                        show(t)
                    ));
                    continue;
                }
            };
            // The BEAM's re-encodings of what it decoded from our bytes, read
            // back with our decoder: both must be the term we meant (so erl
            // decoded our bytes right and we decode the BEAM's right), and our
            // hash of each must agree with the BEAM's.
            let mut as_meant = true;
            for (how, etf) in [
                ("term_to_binary/1", &beam.default_etf),
                ("term_to_binary(T, [{minor_version, 2}])", &beam.utf8_etf),
            ] {
                let seen = match decode(etf) {
                    Ok(s) => s,
                    Err(e) => {
                        fail(format!("we cannot decode {how} of {} ({e})", show(t)));
                        as_meant = false;
                        continue;
                    }
                };
                if make_hash2(&seen) != beam.full() {
                    fail(format!(
                        "make_hash2 of BEAM-encoded ({how}) {} ours {} beam {}",
                        show(&seen),
                        make_hash2(&seen),
                        beam.full()
                    ));
                }
                if !same_term(t, &seen) {
                    fail(format!(
                        "our bytes of {} came back through {how} as {}",
                        show(t),
                        show(&seen)
                    ));
                    as_meant = false;
                }
            }
            if !as_meant {
                continue;
            }
            let diffs = compare(t, &beam);
            if !diffs.is_empty() {
                let culprit = smallest_failing_subterm(&mut erl, t).map_or(String::new(), |s| {
                    format!("; smallest failing subterm: {}", show(&s))
                });
                fail(format!("{} for {}{culprit}", diffs.join(", "), show(t)));
            }
            if *ours_etf == beam.utf8_etf {
                identical_utf8 += 1;
            }
            if *ours_etf == beam.default_etf {
                identical += 1;
            } else {
                // Containers differ wherever any element does (and maps by
                // order), so classify only terms without children.
                let key = match leaf_kind(t) {
                    Some(kind) if kind.starts_with("ImproperList") => {
                        format!("{kind}: ours LIST_EXT with 0 elements vs BEAM the tail itself")
                    }
                    Some(kind) => format!(
                        "{kind}: ours {} vs BEAM {}{}",
                        tag_name(ours_etf[1]),
                        tag_name(beam.default_etf[1]),
                        if *ours_etf == beam.utf8_etf {
                            " (same bytes as with minor_version 2)"
                        } else {
                            ""
                        }
                    ),
                    None => "containers (any differing element, map order)".to_string(),
                };
                let e = encoding_diffs.entry(key).or_insert_with(|| (0, show(t)));
                e.0 += 1;
            }
        }
        t_check += t2.elapsed();
    }

    // 4. Deep nesting: hand-written ETF, which our encoder must reproduce.
    for name in DEEP_NAMES {
        let (t, etf) = deep_term(name, DEEP).unwrap();
        if encode(&t) != etf {
            fail(format!(
                "our encoding of {name} {DEEP} differs from the hand-written ETF"
            ));
        }
        let result = erl.hash_batch(&[(1, &etf)]).pop().unwrap();
        match result {
            Ok(beam) => {
                for d in compare(&t, &beam) {
                    fail(format!("{d} for {name} {DEEP}"));
                }
            }
            Err(e) => fail(format!("erl could not decode {name}: {e}")),
        }
        dismantle(t);
        checked += 1;
    }

    // 5. Wide and long terms.
    let large = large_terms();
    let encoded: Vec<Vec<u8>> = large.iter().map(|(_, t)| encode(t)).collect();
    let items: Vec<(u8, &[u8])> = encoded.iter().map(|e| (1u8, e.as_slice())).collect();
    for ((name, t), result) in large.iter().zip(erl.hash_batch(&items)) {
        match result {
            Ok(beam) => {
                for d in compare(t, &beam) {
                    fail(format!("{d} for {name}"));
                }
            }
            Err(e) => fail(format!("erl could not decode {name}: {e}")),
        }
        checked += 1;
    }
    println!(
        "phash2 oracle: checked {checked} terms ({tricky} corpus, {count} random with seed {seed:#x}, \
         native samples, {} deep, {} large) in {:.1?}",
        DEEP_NAMES.len(),
        large.len(),
        started.elapsed()
    );
    println!(
        "phash2 oracle: {etf_bytes} bytes of ETF; encode {t_encode:.1?}, erl {t_erl:.1?}, \
         checks {t_check:.1?}"
    );
    println!(
        "phash2 oracle: our bytes identical to term_to_binary/1 for {identical} terms; \
         where they differ (count, example):"
    );
    for (k, (n, example)) in &encoding_diffs {
        println!("  {k}: {n}, e.g. {example}");
    }
    println!(
        "phash2 oracle: our bytes identical to term_to_binary(T, [{{minor_version, 2}}]) \
         for {identical_utf8} terms"
    );
    assert!(
        failures.is_empty(),
        "{} mismatches; first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

// ---------------------------------------------------------------------------
// The recorded corpus.

fn corpus_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/phash2/corpus.txt")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn corpus_matches_recorded_beam_values() {
    let text = std::fs::read_to_string(corpus_path()).expect("read corpus");
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // <etf:HEX | deep:NAME:DEPTH> <make_hash2> <phash2/1> # description
        let data = line.split('#').next().unwrap();
        let fields: Vec<&str> = data.split_whitespace().collect();
        let [what, full, p1] = fields[..] else {
            panic!("bad corpus line: {line}");
        };
        let full: u32 = full.parse().expect("make_hash2 value");
        let p1: u32 = p1.parse().expect("phash2/1 value");
        let term = if let Some(h) = what.strip_prefix("etf:") {
            decode(&unhex(h)).unwrap_or_else(|e| panic!("corpus etf does not decode: {e}: {line}"))
        } else if let Some(spec) = what.strip_prefix("deep:") {
            let (name, depth) = spec.split_once(':').expect("deep:NAME:DEPTH");
            deep_term(name, depth.parse().expect("depth"))
                .expect("known deep term")
                .0
        } else {
            panic!("bad corpus line: {line}");
        };
        let ours = (make_hash2(&term), phash2(&term));
        // phash2/2 for any range follows from the full value.
        let ranged_ok = RANGES
            .iter()
            .all(|&r| u64::from(phash2_range(&term, r)) == u64::from(full) % r);
        if ours != (full, p1) || !ranged_ok {
            failures.push(format!("{line}: ours {ours:?}"));
        }
        dismantle(term);
        checked += 1;
    }
    println!("phash2 corpus: checked {checked} recorded terms");
    assert!(checked >= 100, "corpus too small: {checked}");
    assert!(
        failures.is_empty(),
        "corpus mismatches:\n{}",
        failures.join("\n")
    );
}

/// Rewrites the corpus from a real erl:
/// `cargo test --test phash2_oracle -- --ignored regenerate_corpus`.
#[test]
#[ignore = "rewrites tests/fixtures/phash2/corpus.txt from a real erl"]
fn regenerate_corpus() {
    let mut erl = Erl::start().expect("erl is needed to regenerate the corpus");
    let mut out = String::from(
        "# erlang:phash2 values recorded from a real erl by\n\
         # `cargo test --test phash2_oracle -- --ignored regenerate_corpus`.\n\
         # Line: <etf:HEX | deep:NAME:DEPTH> <phash2(T, 2^32)> <phash2(T)> # description\n",
    );
    out.push_str(&format!(
        "# OTP release of the recording: see the erl used; {}\n",
        otp_release()
    ));
    let tricky = tricky_terms();
    let encoded: Vec<Vec<u8>> = tricky.iter().map(|(_, t)| encode(t)).collect();
    let items: Vec<(u8, &[u8])> = encoded.iter().map(|e| (0u8, e.as_slice())).collect();
    for (((desc, _), etf), r) in tricky.iter().zip(&encoded).zip(erl.hash_batch(&items)) {
        let r = r.unwrap_or_else(|e| panic!("erl rejected {desc}: {e}"));
        out.push_str(&format!(
            "etf:{} {} {} # {desc}\n",
            hex(etf),
            r.full(),
            r.phash2_1
        ));
    }
    for (etf, full, p1) in erl.native_samples() {
        let t = decode(&etf).expect("decode native sample");
        out.push_str(&format!(
            "etf:{} {full} {p1} # native: {}\n",
            hex(&etf),
            describe(&t)
        ));
    }
    let mut gen = Gen::new(0xc0_ffee);
    let random: Vec<Term> = (0..100).map(|_| gen.term(0)).collect();
    let encoded: Vec<Vec<u8>> = random.iter().map(encode).collect();
    let items: Vec<(u8, &[u8])> = encoded.iter().map(|e| (0u8, e.as_slice())).collect();
    for (etf, r) in encoded.iter().zip(erl.hash_batch(&items)) {
        let r = r.expect("erl decodes random term");
        out.push_str(&format!(
            "etf:{} {} {} # random\n",
            hex(etf),
            r.full(),
            r.phash2_1
        ));
    }
    for name in DEEP_NAMES {
        let (t, etf) = deep_term(name, DEEP).unwrap();
        dismantle(t);
        let r = erl
            .hash_batch(&[(1, &etf)])
            .pop()
            .unwrap()
            .expect("erl decodes deep term");
        out.push_str(&format!(
            "deep:{name}:{DEEP} {} {} # {name} {DEEP} levels\n",
            r.full(),
            r.phash2_1
        ));
    }
    std::fs::create_dir_all(corpus_path().parent().unwrap()).unwrap();
    std::fs::write(corpus_path(), out).unwrap();
}

/// A one-line, bounded description of a term for a corpus comment.
fn describe(t: &Term) -> String {
    let s: String = format!("{t}").escape_debug().collect();
    let s: String = s.chars().take(100).collect();
    s.replace('#', "%")
}

fn otp_release() -> String {
    common::beam_tool("erl")
        .args(["-noshell", "-eval", "io:format(\"OTP ~s, ERTS ~s\", [erlang:system_info(otp_release), erlang:system_info(version)]), halt()."])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
