//! `erlang:phash2/1,2` computed bit for bit as the BEAM does.
//!
//! Horde (and anything else that places keys on a ring or builds merkle
//! trees) uses `erlang:phash2`, so a peer that wants to agree with BEAM
//! nodes about placement must produce the very same 32-bit values. This
//! module reimplements the emulator's portable term hash (`make_hash2` in
//! `erts/emulator/beam/utils.c`) for every term the wire can carry, as it
//! behaves on a 64-bit emulator (OTP 25 verified against a real `erl`).
//!
//! How the hash works, in short:
//!
//! * The running state is one `u32`. Most terms fold themselves in with one
//!   or two rounds of Bob Jenkins' 96-bit `mix`, keyed by a per-type
//!   constant (a multiple of the golden-ratio constant).
//! * Atoms are hashed by a value the emulator stores with the atom: the
//!   `hashpjw` hash of its text, where two-byte UTF-8 sequences of Latin-1
//!   characters are folded back to the Latin-1 byte (so `'é'` hashes like it
//!   did before atoms became UTF-8).
//! * Integers in the signed 28-bit range are hashed as 32-bit values; all
//!   other integers (including 64-bit "small" integers) are hashed by their
//!   magnitude in 64-bit digits, with a constant that encodes the sign.
//! * Runs of byte-sized integers inside lists are packed four to a word,
//!   which is why `"abc"` and `[97, 98, 99]` hash alike but differently from
//!   a list of the same bytes interrupted by another term.
//! * Map pairs are hashed independently and combined with XOR, so the
//!   result does not depend on iteration order (`HashMap` order here,
//!   flatmap or HAMT order on the BEAM).
//! * Pids, ports and references hash only their number (pid: the id field,
//!   port: the 64-bit id as two 32-bit halves, reference: the first id
//!   word); node name, creation and pid serial do not take part, so a pid
//!   hashes the same on its own node (internal pid) and elsewhere.
//! * Export funs hash arity, module and function; local funs hash the
//!   number of free variables, the module, the fun's `index` (not
//!   `old_index`) and `old_uniq`, then the free variables in order. The
//!   MD5 `uniq`, the arity and the creator pid do not take part. (OTP 25
//!   refuses to decode the old `FUN_EXT`; `InternalFun::Old` is hashed as
//!   if its `index`/`uniq` were the new fields, which no BEAM can confirm.)
//! * Flatmaps (<= 32 keys) and HAMT maps (> 32 keys) hash identically.
//!
//! The result is independent of how a `Term` happens to be shaped: an
//! integer is an integer whether `FixInteger` or `BigInteger`, a string is
//! a list whether `ByteList` or `List`, and `ImproperList`s whose tail is
//! itself a list (or that have no elements) hash as the list they denote.
//!
//! The traversal uses an explicit work stack, like the C code, so arbitrarily
//! deep terms hash without recursion. All arithmetic is wrapping `u32`
//! arithmetic, as in C, so no input can make it panic.

use super::Term;
use crate::term::BigInteger;

/// The golden-ratio constant and its multiples (mod 2^32) used as
/// per-type keys. Each is `GOLDEN * n` for the `n` in its name.
const GOLDEN: u32 = 0x9e37_79b9;
const GOLDEN_2: u32 = GOLDEN.wrapping_mul(2);
const GOLDEN_3: u32 = GOLDEN.wrapping_mul(3);
const GOLDEN_4: u32 = GOLDEN.wrapping_mul(4);
const GOLDEN_5: u32 = GOLDEN.wrapping_mul(5);
const GOLDEN_6: u32 = GOLDEN.wrapping_mul(6);
const GOLDEN_7: u32 = GOLDEN.wrapping_mul(7);
const GOLDEN_9: u32 = GOLDEN.wrapping_mul(9);
const GOLDEN_10: u32 = GOLDEN.wrapping_mul(10);
const GOLDEN_11: u32 = GOLDEN.wrapping_mul(11);
const GOLDEN_12: u32 = GOLDEN.wrapping_mul(12);
const GOLDEN_13: u32 = GOLDEN.wrapping_mul(13);
const GOLDEN_14: u32 = GOLDEN.wrapping_mul(14);
const GOLDEN_15: u32 = GOLDEN.wrapping_mul(15);
const GOLDEN_16: u32 = GOLDEN.wrapping_mul(16);
const GOLDEN_19: u32 = GOLDEN.wrapping_mul(19);

/// What `[]` contributes when it is the very first thing hashed.
const NIL_FIRST: u32 = 3_468_870_702;
/// The emulator's internal type number for `[]`, hashed when `[]` is not
/// the first thing seen (e.g. the tail of every proper list).
const NIL_TYPE_NUMBER: u32 = 2;

/// `erlang:phash2/1`: the hash reduced to the range `0..2^27`.
pub fn phash2(term: &Term) -> u32 {
    make_hash2(term) & ((1 << 27) - 1)
}

/// `erlang:phash2/2`: the hash reduced to `0..range`.
///
/// The BEAM accepts `1 <= range <= 2^32` and raises `badarg` otherwise; this
/// function never fails, so a `range` of 0 is treated as 1 and anything
/// above 2^32 as 2^32.
pub fn phash2_range(term: &Term, range: u64) -> u32 {
    let hash = make_hash2(term);
    let range = range.clamp(1, 1 << 32);
    // For range == 2^32 this is the identity, as in the BEAM.
    (u64::from(hash) % range) as u32
}

/// The full 32-bit `make_hash2` value, before any range reduction.
pub fn make_hash2(term: &Term) -> u32 {
    let mut h = Hasher::default();
    h.term_fast(term, 0);
    h.hash
}

/// `make_hash2` of a tuple or map whose parts live elsewhere, without
/// building the term: the parts are fed in the order the term would be
/// hashed. For example the hash of `{A, B}` is
/// `Hash2::new().tuple(2).term(&a).term(&b).finish()`, and the hash of a
/// map is `Hash2::new().map(pairs).finish()` for its pairs in any order.
/// Each step gives exactly what hashing the built term would.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hash2 {
    hash: u32,
}

impl Hash2 {
    pub fn new() -> Hash2 {
        Hash2::default()
    }

    /// The header of a tuple of `arity` elements; the elements follow.
    pub fn tuple(mut self, arity: usize) -> Hash2 {
        let mut h = self.hasher();
        h.mix1(arity as u32, GOLDEN_9);
        self.hash = h.hash;
        self
    }

    /// One whole term.
    pub fn term(mut self, term: &Term) -> Hash2 {
        let mut h = self.hasher();
        h.term_fast(term, 0);
        self.hash = h.hash;
        self
    }

    /// One binary.
    pub fn binary(mut self, bytes: &[u8]) -> Hash2 {
        let mut h = self.hasher();
        h.bits(bytes, 0);
        self.hash = h.hash;
        self
    }

    /// `[]`.
    pub fn nil(mut self) -> Hash2 {
        let mut h = self.hasher();
        h.step(Node::Nil);
        self.hash = h.hash;
        self
    }

    /// A whole map, given as its pairs (each key once, any order).
    pub fn map<'a>(mut self, pairs: impl ExactSizeIterator<Item = (&'a Term, &'a Term)>) -> Hash2 {
        let mut h = self.hasher();
        h.mix1(pairs.len() as u32, GOLDEN_16);
        if pairs.len() == 0 {
            self.hash = h.hash;
            return self;
        }
        let mut xor = 0u32;
        for (k, v) in pairs {
            // A pair is hashed from 0: its key, then its value.
            let mut pair = Hasher::default();
            pair.stack.push(Work::Node(node_of(v)));
            pair.run(node_of(k));
            xor ^= pair.hash;
        }
        h.mix1(xor, GOLDEN_19);
        self.hash = h.hash;
        self
    }

    /// The full 32-bit value, as [`make_hash2`].
    pub fn finish(self) -> u32 {
        self.hash
    }

    fn hasher<'a>(self) -> Hasher<'a> {
        Hasher {
            hash: self.hash,
            xor_pairs: 0,
            stack: Vec::new(),
        }
    }
}
/// Nesting hashed by plain recursion; a subterm deeper than this is handed
/// to the explicit work stack ([`Hasher::run`]), so no input can overflow
/// the Rust stack while the common shallow term needs no stack allocation.
const MAX_RECURSION: u32 = 64;

/// The hash the emulator stores with an atom: `hashpjw` over the UTF-8
/// text, with two-byte sequences starting 0xC2/0xC3 folded into the single
/// Latin-1 byte they encode.
pub fn atom_hash(name: &str) -> u32 {
    // One pass for ASCII text, nearly every atom: nothing to fold. The first
    // byte past ASCII sends the whole text to the folding loop.
    let mut h = 0u32;
    for &v in name.as_bytes() {
        if v >= 0x80 {
            return atom_hash_folding(name.as_bytes());
        }
        h = (h << 4).wrapping_add(u32::from(v));
        // `hashpjw` folds the top nibble back in when it is set; when it is
        // clear both terms are 0, so no branch is needed.
        let g = h & 0xF000_0000;
        h = (h ^ (g >> 24)) ^ g;
    }
    h
}

/// [`atom_hash`] for any text: Latin-1 characters written as two UTF-8
/// bytes are folded back to one.
fn atom_hash_folding(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let mut v = bytes[i];
        i += 1;
        if i < bytes.len() && (v & 0xFE) == 0xC2 && (bytes[i] & 0xC0) == 0x80 {
            // The C code keeps this in a byte, so the high bits of the lead
            // byte fall off and only the Latin-1 code point remains.
            v = (v << 6) | (bytes[i] & 0x3F);
            i += 1;
        }
        h = (h << 4).wrapping_add(u32::from(v));
        let g = h & 0xF000_0000;
        h = (h ^ (g >> 24)) ^ g;
    }
    h
}

/// Bob Jenkins' 96-bit mix; `c` carries the running hash and is the result.
#[inline]
fn mix(a: u32, b: u32, c: u32) -> u32 {
    mix3(a, b, c).2
}

/// Jenkins' lookup2 hash of a byte block, seeded with `init`; used for
/// binaries.
fn block_hash(bytes: &[u8], init: u32) -> u32 {
    let word = |k: &[u8]| u32::from_le_bytes([k[0], k[1], k[2], k[3]]);
    let (mut a, mut b, mut c) = (GOLDEN, GOLDEN, init);
    let mut chunks = bytes.chunks_exact(12);
    for k in &mut chunks {
        a = a.wrapping_add(word(&k[0..4]));
        b = b.wrapping_add(word(&k[4..8]));
        c = c.wrapping_add(word(&k[8..12]));
        let (na, nb, nc) = mix3(a, b, c);
        a = na;
        b = nb;
        c = nc;
    }
    // The binary size is truncated to 32 bits by the emulator too.
    c = c.wrapping_add(bytes.len() as u32);
    // The tail: up to 11 bytes, little-endian into a, b and the upper three
    // bytes of c (its low byte was taken by the length).
    let mut tail = [0u8; 12];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    a = a.wrapping_add(word(&tail[0..4]));
    b = b.wrapping_add(word(&tail[4..8]));
    c = c.wrapping_add(word(&tail[8..12]) << 8);
    mix3(a, b, c).2
}

/// The full mix, returning all three words (the block hash carries them
/// from block to block).
#[inline(always)]
fn mix3(mut a: u32, mut b: u32, mut c: u32) -> (u32, u32, u32) {
    a = a.wrapping_sub(b).wrapping_sub(c) ^ (c >> 13);
    b = b.wrapping_sub(c).wrapping_sub(a) ^ (a << 8);
    c = c.wrapping_sub(a).wrapping_sub(b) ^ (b >> 13);
    a = a.wrapping_sub(b).wrapping_sub(c) ^ (c >> 12);
    b = b.wrapping_sub(c).wrapping_sub(a) ^ (a << 16);
    c = c.wrapping_sub(a).wrapping_sub(b) ^ (b >> 5);
    a = a.wrapping_sub(b).wrapping_sub(c) ^ (c >> 3);
    b = b.wrapping_sub(c).wrapping_sub(a) ^ (a << 10);
    c = c.wrapping_sub(a).wrapping_sub(b) ^ (b >> 15);
    (a, b, c)
}

/// An integer as the hash sees it: either within the signed 28-bit range
/// (hashed as a 32-bit value) or a sign and magnitude in 64-bit digits,
/// least significant first (the emulator's bignum layout; 64-bit smalls
/// outside 28 bits are hashed the same way). Integers that fit an `i64`
/// carry their single digit inline, so hashing them never allocates.
enum IntRepr<'b> {
    Small28(i32),
    Word { negative: bool, magnitude: u64 },
    Big(&'b BigInteger),
}

const SMALL28_MIN: i64 = -(1 << 27);
const SMALL28_MAX: i64 = (1 << 27) - 1;

#[inline]
fn int_repr_i64<'b>(v: i64) -> IntRepr<'b> {
    if (SMALL28_MIN..=SMALL28_MAX).contains(&v) {
        IntRepr::Small28(v as i32)
    } else {
        IntRepr::Word {
            negative: v < 0,
            magnitude: v.unsigned_abs(),
        }
    }
}

fn int_repr_big(b: &BigInteger) -> IntRepr<'_> {
    // A bignum of one 64-bit digit is hashed as that digit, read straight
    // from the magnitude; one that also fits an `i64` goes through the
    // small-integer path, which decides whether it is a 28-bit small on the
    // BEAM (the external format may still carry such a value as a bignum).
    let magnitude = b.value.magnitude();
    if magnitude.bits() > 64 {
        return IntRepr::Big(b);
    }
    let m = magnitude.iter_u64_digits().next().unwrap_or(0);
    let negative = b.value.sign() == num_bigint::Sign::Minus;
    match i64::try_from(m) {
        Ok(v) => int_repr_i64(if negative { -v } else { v }),
        Err(_) => IntRepr::Word {
            negative,
            magnitude: m,
        },
    }
}

/// The value of a list element when it is an integer in `0..=255`: such
/// elements are packed four to a word by the list hashing.
fn as_byte(term: &Term) -> Option<u8> {
    match skip_empty_improper(term) {
        Term::FixInteger(i) => u8::try_from(i.value).ok(),
        Term::BigInteger(b) => u8::try_from(&b.value).ok(),
        _ => None,
    }
}

/// The cells of one list value: `List` and `ImproperList` hold
/// terms, `ByteList` (`STRING_EXT`) holds bytes.
#[derive(Clone, Copy)]
enum Cells<'a> {
    Terms(&'a [Term]),
    Bytes(&'a [u8]),
}

impl Cells<'_> {
    fn len(&self) -> usize {
        match self {
            Cells::Terms(t) => t.len(),
            Cells::Bytes(b) => b.len(),
        }
    }
}

/// A position inside a non-empty run of cons cells: `cells[idx..]`, then
/// `tail` (`None` is `[]`). `idx < cells.len()` always holds.
#[derive(Clone, Copy)]
struct ListPos<'a> {
    cells: Cells<'a>,
    idx: usize,
    tail: Option<&'a Term>,
}

/// A term as the hash walks it: `Term` has several shapes for one Erlang
/// list (`List`, `ByteList`, `ImproperList` whose tail is again a list), so
/// they are normalised into "a cons cell at some position" or `[]`.
#[derive(Clone, Copy)]
enum Node<'a> {
    Nil,
    Cons(ListPos<'a>),
    /// A byte-sized integer taken out of a `ByteList` cell.
    Byte(u8),
    /// Any non-list term.
    Other(&'a Term),
}

/// An `ImproperList` without elements is nothing but its tail.
fn skip_empty_improper(mut term: &Term) -> &Term {
    while let Term::ImproperList(l) = term {
        if !l.elements.is_empty() {
            break;
        }
        term = &l.last;
    }
    term
}

/// Normalises a term into what the BEAM would see: `[]`, a cons cell, or
/// another term.
fn node_of(term: &Term) -> Node<'_> {
    match skip_empty_improper(term) {
        Term::List(l) if l.elements.is_empty() => Node::Nil,
        Term::List(l) => Node::Cons(ListPos {
            cells: Cells::Terms(&l.elements),
            idx: 0,
            tail: None,
        }),
        Term::ByteList(b) if b.bytes.is_empty() => Node::Nil,
        Term::ByteList(b) => Node::Cons(ListPos {
            cells: Cells::Bytes(&b.bytes),
            idx: 0,
            tail: None,
        }),
        Term::ImproperList(l) => Node::Cons(ListPos {
            cells: Cells::Terms(&l.elements),
            idx: 0,
            tail: Some(&l.last),
        }),
        other => Node::Other(other),
    }
}

/// The CDR of the cons cell at `pos`.
fn cdr<'a>(pos: ListPos<'a>) -> Node<'a> {
    if pos.idx + 1 < pos.cells.len() {
        Node::Cons(ListPos {
            idx: pos.idx + 1,
            ..pos
        })
    } else {
        match pos.tail {
            None => Node::Nil,
            Some(t) => node_of(t),
        }
    }
}

/// The CAR of the cons cell at `pos`.
fn car<'a>(pos: ListPos<'a>) -> Node<'a> {
    match pos.cells {
        Cells::Terms(t) => node_of(&t[pos.idx]),
        Cells::Bytes(b) => Node::Byte(b[pos.idx]),
    }
}

/// The byte value of the CAR at `pos`, if it is a byte-sized integer.
fn car_byte(pos: &ListPos<'_>) -> Option<u8> {
    match pos.cells {
        Cells::Terms(t) => as_byte(&t[pos.idx]),
        Cells::Bytes(b) => Some(b[pos.idx]),
    }
}

/// One round of `mix` of `x` and `y` keyed by `key` into the running value
/// `hash`.
#[inline(always)]
fn mix_in(hash: u32, x: u32, y: u32, key: u32) -> u32 {
    mix(key.wrapping_add(x), key.wrapping_add(y), hash)
}

/// An integer, as [`Hasher::int`] hashes it.
#[inline(always)]
fn int_in(hash: u32, repr: IntRepr<'_>) -> u32 {
    match repr {
        IntRepr::Small28(v) if v < 0 => {
            // Mixed twice: the magnitude, then the two's complement value.
            let h = mix_in(hash, v.unsigned_abs(), 0, GOLDEN);
            mix_in(h, v as u32, 0, GOLDEN)
        }
        IntRepr::Small28(v) => mix_in(hash, v as u32, 0, GOLDEN),
        IntRepr::Word {
            negative,
            magnitude,
        } => {
            let key = if negative { GOLDEN_10 } else { GOLDEN_11 };
            mix_in(hash, magnitude as u32, (magnitude >> 32) as u32, key)
        }
        IntRepr::Big(b) => {
            let negative = b.value.sign() == num_bigint::Sign::Minus;
            let key = if negative { GOLDEN_10 } else { GOLDEN_11 };
            b.value
                .magnitude()
                .iter_u64_digits()
                .fold(hash, |h, d| mix_in(h, d as u32, (d >> 32) as u32, key))
        }
    }
}

/// An atom: its stored hash taken as is while the running value is still 0
/// (a bare atom, or the first atom of a map key), mixed in otherwise.
#[inline(always)]
fn atom_in(hash: u32, name: &str) -> u32 {
    let h = atom_hash(name);
    if hash == 0 {
        h
    } else {
        mix_in(hash, h, 0, GOLDEN_3)
    }
}

/// A float; -0.0 hashes as 0.0.
#[inline(always)]
fn float_in(hash: u32, value: f64) -> u32 {
    let bits = if value == 0.0 { 0 } else { value.to_bits() };
    mix_in(hash, (bits >> 32) as u32, bits as u32, GOLDEN_12)
}

/// A bitstring: `bytes` holds whole bytes, except that when `tail_bits` is
/// 1..=7 the last byte holds only that many bits.
///
/// `BitBinary` keeps those bits right-aligned (the decoder shifts them down
/// from the high end where the external format puts them, the encoder shifts
/// them back up and so drops anything above them). The emulator hashes the
/// same value: the tail bits shifted down.
#[inline]
fn bits_in(hash: u32, bytes: &[u8], tail_bits: u8) -> u32 {
    match bytes.split_last() {
        Some((&last, whole)) if (1..8).contains(&tail_bits) => mix_in(
            block_hash(whole, GOLDEN_13.wrapping_add(hash)),
            u32::from(tail_bits),
            u32::from(last & ((1u8 << tail_bits) - 1)),
            GOLDEN_15,
        ),
        _ => binary_in(hash, bytes),
    }
}

/// A binary (whole bytes), and a bitstring's whole bytes.
#[inline]
fn binary_in(hash: u32, bytes: &[u8]) -> u32 {
    let seed = GOLDEN_13.wrapping_add(hash);
    if bytes.is_empty() {
        seed
    } else {
        block_hash(bytes, seed)
    }
}

/// Hashes `term` completely onto the running value `hash`, straight from its
/// own shape where it is one of the common ones (no [`Node`] built per
/// element, a proper list's bytes packed in one loop); everything else goes
/// to the general [`Hasher`]. Gives exactly what `Hasher::node(node_of(term))`
/// gives.
///
/// The value travels in registers from call to call: the hash is one long
/// chain of dependent `mix` rounds, and a round-trip through memory at every
/// call would lengthen each link.
fn fast(hash: u32, term: &Term, depth: u32) -> u32 {
    if depth >= MAX_RECURSION {
        return general(hash, term, depth);
    }
    match term {
        Term::FixInteger(i) => int_in(hash, int_repr_i64(i64::from(i.value))),
        Term::BigInteger(b) => int_in(hash, int_repr_big(b)),
        Term::Atom(a) => atom_in(hash, &a.name),
        Term::Binary(b) => binary_in(hash, &b.bytes),
        Term::Float(f) => float_in(hash, f.value),
        Term::Pid(p) => mix_in(hash, p.id, 0, GOLDEN_5),
        Term::Tuple(t) => {
            let mut h = mix_in(hash, t.elements.len() as u32, 0, GOLDEN_9);
            for e in &t.elements {
                h = fast(h, e, depth + 1);
            }
            h
        }
        Term::List(l) => proper_list(hash, &l.elements, depth),
        Term::Map(m) => {
            let h = mix_in(hash, m.map.len() as u32, 0, GOLDEN_16);
            if m.map.is_empty() {
                return h;
            }
            // Each pair is hashed from 0, key then value; the pairs are
            // combined by XOR so their order does not matter.
            let mut pairs = 0u32;
            for (k, v) in &m.map {
                pairs ^= fast(fast(0, k, depth + 1), v, depth + 1);
            }
            mix_in(h, pairs, 0, GOLDEN_19)
        }
        _ => general(hash, term, depth),
    }
}

/// A proper list (`[]` when `elements` is empty): runs of byte-sized
/// elements packed four to a word as [`Hasher::byte_run`] does, every other
/// element hashed in place, then the closing `[]`.
fn proper_list(mut hash: u32, elements: &[Term], depth: u32) -> u32 {
    let (mut word, mut count) = (0u32, 0u32);
    for e in elements {
        let byte = match e {
            Term::FixInteger(i) => u8::try_from(i.value).ok(),
            _ => as_byte(e),
        };
        match byte {
            Some(b) => {
                word = (word << 8).wrapping_add(u32::from(b));
                count += 1;
                if count == 4 {
                    hash = mix_in(hash, word, 0, GOLDEN_4);
                    (word, count) = (0, 0);
                }
            }
            None => {
                if count > 0 {
                    hash = mix_in(hash, word, 0, GOLDEN_4);
                    (word, count) = (0, 0);
                }
                hash = fast(hash, e, depth + 1);
            }
        }
    }
    if count > 0 {
        hash = mix_in(hash, word, 0, GOLDEN_4);
    }
    nil_in(hash)
}

/// `[]`: like an atom, a constant while the running value is still 0.
#[inline(always)]
fn nil_in(hash: u32) -> u32 {
    if hash == 0 {
        NIL_FIRST
    } else {
        mix_in(hash, NIL_TYPE_NUMBER, 0, GOLDEN_2)
    }
}

/// The general path for `term`: every shape, with the explicit work stack
/// below [`MAX_RECURSION`].
fn general(hash: u32, term: &Term, depth: u32) -> u32 {
    let mut h = Hasher {
        hash,
        ..Hasher::default()
    };
    if depth >= MAX_RECURSION {
        h.run(node_of(term));
    } else {
        h.node(node_of(term), depth);
    }
    h.hash
}

/// Pending work on the explicit stack.
enum Work<'a> {
    /// Hash this term next.
    Node(Node<'a>),
    /// A map key and value have been hashed: fold them into the pair XOR.
    MapPair,
    /// All pairs of a map are done: restore the outer state and fold in
    /// the XOR of the pairs.
    MapEnd { outer_hash: u32, outer_xor: u32 },
}

/// A run of byte-sized list elements, packed four to a word: each full
/// word, and the part-filled last one, is mixed in.
#[derive(Default)]
struct BytePack {
    word: u32,
    count: u32,
}

impl BytePack {
    #[inline]
    fn push(&mut self, h: &mut Hasher<'_>, b: u8) {
        self.word = (self.word << 8).wrapping_add(u32::from(b));
        self.count += 1;
        if self.count == 4 {
            self.flush(h);
        }
    }

    #[inline]
    fn flush(&mut self, h: &mut Hasher<'_>) {
        if self.count > 0 {
            h.mix1(self.word, GOLDEN_4);
            *self = BytePack::default();
        }
    }
}

#[derive(Default)]
struct Hasher<'a> {
    hash: u32,
    /// XOR of the pair hashes of the map being hashed.
    xor_pairs: u32,
    stack: Vec<Work<'a>>,
}

impl<'a> Hasher<'a> {
    #[inline]
    fn mix2(&mut self, x: u32, y: u32, key: u32) {
        self.hash = mix_in(self.hash, x, y, key);
    }

    #[inline]
    fn mix1(&mut self, x: u32, key: u32) {
        self.mix2(x, 0, key);
    }

    /// Hashes `term` completely by [`fast`], which keeps the running value
    /// in a register rather than in `self`.
    #[inline]
    fn term_fast(&mut self, term: &'a Term, depth: u32) {
        self.hash = fast(self.hash, term, depth);
    }

    /// Hashes `node` completely (the general path): recursion for nesting up
    /// to [`MAX_RECURSION`], the explicit stack below that.
    #[inline]
    fn node(&mut self, node: Node<'a>, depth: u32) {
        match node {
            Node::Nil | Node::Byte(_) => {
                // Leaves: no children to continue with.
                let _ = self.step(node);
            }
            Node::Cons(pos) => self.list_rec(pos, depth),
            // The most common leaves, without the depth check and the
            // second dispatch of `term_rec`.
            Node::Other(Term::FixInteger(i)) => self.int(int_repr_i64(i64::from(i.value))),
            Node::Other(Term::Atom(a)) => self.atom(&a.name),
            Node::Other(term) => self.term_rec(term, depth),
        }
    }

    /// An atom, as [`atom_in`].
    #[inline]
    fn atom(&mut self, name: &str) {
        self.hash = atom_in(self.hash, name);
    }

    fn term_rec(&mut self, term: &'a Term, depth: u32) {
        if depth >= MAX_RECURSION {
            self.run(Node::Other(term));
            return;
        }
        match term {
            Term::Tuple(_) | Term::Map(_) => self.term_fast(term, depth),
            Term::List(_) | Term::ByteList(_) | Term::ImproperList(_) => {
                // `node_of` never maps a list back to `Node::Other`.
                match node_of(term) {
                    Node::Other(_) => self.run(Node::Other(term)),
                    n => self.node(n, depth),
                }
            }
            // Leaves, and funs (rare: their free variables take the stack).
            _ => {
                if let Some(next) = self.term(term) {
                    self.run(next);
                }
            }
        }
    }

    /// The list starting at `pos`, by recursion into its elements.
    fn list_rec(&mut self, pos: ListPos<'a>, depth: u32) {
        if depth >= MAX_RECURSION {
            self.run(Node::Cons(pos));
            return;
        }
        let mut node = Node::Cons(pos);
        loop {
            match node {
                Node::Cons(pos) => match self.byte_run(pos) {
                    Node::Cons(p) => {
                        self.node(car(p), depth + 1);
                        node = cdr(p);
                    }
                    end => node = end,
                },
                end => {
                    self.node(end, depth + 1);
                    return;
                }
            }
        }
    }

    /// The slow path: hashes `node` completely with the explicit work stack
    /// (which is empty on entry and on return), like the C code.
    fn run(&mut self, node: Node<'a>) {
        let mut next = Some(node);
        loop {
            match next.take() {
                Some(node) => next = self.step(node),
                None => match self.stack.pop() {
                    None => return,
                    Some(Work::Node(node)) => next = Some(node),
                    Some(Work::MapPair) => {
                        self.xor_pairs ^= self.hash;
                        self.hash = 0;
                    }
                    Some(Work::MapEnd {
                        outer_hash,
                        outer_xor,
                    }) => {
                        self.hash = outer_hash;
                        let pairs = self.xor_pairs;
                        self.mix1(pairs, GOLDEN_19);
                        self.xor_pairs = outer_xor;
                    }
                },
            }
        }
    }

    /// Hashes one node; returns the node to continue with directly (the
    /// first child), leaving the rest on the stack.
    fn step(&mut self, node: Node<'a>) -> Option<Node<'a>> {
        match node {
            Node::Nil => {
                self.hash = nil_in(self.hash);
                None
            }
            Node::Byte(b) => {
                self.int(IntRepr::Small28(i32::from(b)));
                None
            }
            Node::Cons(pos) => self.list(pos),
            Node::Other(term) => self.term(term),
        }
    }

    fn int(&mut self, repr: IntRepr<'_>) {
        self.hash = int_in(self.hash, repr);
    }

    /// Hashes the list starting at `pos`: a run of byte-sized elements is
    /// packed into words; the first other element is returned for hashing
    /// with the rest of the list pushed behind it.
    fn list(&mut self, pos: ListPos<'a>) -> Option<Node<'a>> {
        match self.byte_run(pos) {
            Node::Cons(p) => {
                self.stack.push(Work::Node(cdr(p)));
                Some(car(p))
            }
            // The list ended (in `[]` or an improper tail) inside the run.
            end => Some(end),
        }
    }

    /// Packs the run of byte-sized elements starting at `pos` four to a
    /// word; returns the cons cell of the first other element, or the end
    /// of the list (`[]` or an improper tail) when the run reaches it.
    #[inline]
    fn byte_run(&mut self, mut pos: ListPos<'a>) -> Node<'a> {
        let mut pack = BytePack::default();
        let stop = loop {
            let Some(b) = car_byte(&pos) else {
                break Node::Cons(pos);
            };
            pack.push(self, b);
            match cdr(pos) {
                Node::Cons(p) => pos = p,
                end => break end,
            }
        };
        pack.flush(self);
        stop
    }

    fn term(&mut self, term: &'a Term) -> Option<Node<'a>> {
        match term {
            Term::Atom(a) => {
                self.atom(&a.name);
                None
            }
            Term::FixInteger(i) => {
                self.int(int_repr_i64(i64::from(i.value)));
                None
            }
            Term::BigInteger(b) => {
                self.int(int_repr_big(b));
                None
            }
            Term::Float(f) => {
                self.hash = float_in(self.hash, f.value);
                None
            }
            Term::Binary(b) => {
                self.bits(&b.bytes, 0);
                None
            }
            Term::BitBinary(b) => {
                self.bits(&b.bytes, b.tail_bits_size);
                None
            }
            Term::Pid(p) => {
                self.mix1(p.id, GOLDEN_5);
                None
            }
            Term::Port(p) => {
                self.mix2(p.id as u32, (p.id >> 32) as u32, GOLDEN_6);
                None
            }
            Term::Reference(r) => {
                self.mix1(r.id.first().copied().unwrap_or(0), GOLDEN_7);
                None
            }
            Term::ExternalFun(f) => {
                self.mix2(u32::from(f.arity), atom_hash(&f.module.name), GOLDEN);
                self.mix1(atom_hash(&f.function.name), GOLDEN_14);
                None
            }
            Term::InternalFun(f) => {
                let (module, free_vars, index, uniq) = match &**f {
                    crate::term::InternalFun::New {
                        module,
                        free_vars,
                        index,
                        old_uniq,
                        ..
                    } => (module, free_vars, *index, *old_uniq as u32),
                    // Not decodable by current BEAMs; hashed by analogy.
                    crate::term::InternalFun::Old {
                        module,
                        free_vars,
                        index,
                        uniq,
                        ..
                    } => (module, free_vars, *index as u32, *uniq as u32),
                };
                self.mix2(free_vars.len() as u32, atom_hash(&module.name), GOLDEN);
                self.mix2(index, uniq, GOLDEN);
                self.sequence(free_vars)
            }
            Term::Tuple(t) => {
                self.mix1(t.elements.len() as u32, GOLDEN_9);
                self.sequence(&t.elements)
            }
            Term::Map(m) => {
                self.mix1(m.map.len() as u32, GOLDEN_16);
                if m.map.is_empty() {
                    return None;
                }
                self.stack.push(Work::MapEnd {
                    outer_hash: self.hash,
                    outer_xor: self.xor_pairs,
                });
                self.hash = 0;
                self.xor_pairs = 0;
                for (k, v) in &m.map {
                    self.stack.push(Work::MapPair);
                    self.stack.push(Work::Node(node_of(v)));
                    self.stack.push(Work::Node(node_of(k)));
                }
                None
            }
            // Lists never reach here: `node_of` turned them into `Nil`/`Cons`.
            Term::List(_) | Term::ByteList(_) | Term::ImproperList(_) => Some(node_of(term)),
        }
    }

    /// Queues `terms` to be hashed in order; returns the first.
    fn sequence(&mut self, terms: &'a [Term]) -> Option<Node<'a>> {
        let (first, rest) = terms.split_first()?;
        self.stack
            .extend(rest.iter().rev().map(|t| Work::Node(node_of(t))));
        Some(node_of(first))
    }

    /// A bitstring, as [`bits_in`].
    fn bits(&mut self, bytes: &[u8], tail_bits: u8) {
        self.hash = bits_in(self.hash, bytes, tail_bits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, binary, int, list, nil, tuple};

    #[test]
    fn simple_values_match_the_beam() {
        // Recorded from OTP 25 with erlang:phash2(X, 1 bsl 32).
        let cases: Vec<(Term, u32)> = vec![
            (nil(), 3468870702),
            (tuple(vec![]), 221703996),
            (list(vec![nil()]), 499070068),
            (tuple(vec![nil()]), 1775079505),
            (atom("a"), 97),
            (atom("héllo"), 7799599),
            (int(0), 3175731469),
            (int(1), 539485162),
            (int(-1), 1117813597),
            (Term::Float(crate::term::Float { value: 1.0 }), 3029937084),
            (Term::Float(crate::term::Float { value: 0.0 }), 423528920),
            (Term::Float(crate::term::Float { value: -0.0 }), 423528920),
            (binary(vec![]), 147926629),
        ];
        for (term, expected) in cases {
            assert_eq!(make_hash2(&term), expected, "{term}");
        }
    }

    #[test]
    fn an_integer_hashes_alike_carried_small_or_as_a_bignum() {
        // The BEAM hashes the value, not the external form it came in; the
        // digit read straight from a bignum's magnitude must agree with the
        // `i64` path at every boundary it decides on.
        let mut values: Vec<i128> = vec![0, 1, -1, 255, 256, i128::from(u64::MAX)];
        for bits in [27, 28, 31, 32, 63, 64] {
            let p = 1i128 << bits;
            values.extend([p - 1, p, p + 1, -p - 1, -p, -p + 1]);
        }
        for v in values {
            let b = crate::term::BigInteger::from(v);
            let reference = match i64::try_from(v) {
                Ok(small) => int_in(0, int_repr_i64(small)),
                Err(_) => int_in(0, IntRepr::Big(&b)),
            };
            let big = Term::BigInteger(b.clone());
            assert_eq!(fast(0, &big, 0), reference, "{v}");
            if let Ok(small) = i64::try_from(v) {
                assert_eq!(phash2(&big), phash2(&int(small)), "{v}");
            }
        }
    }

    /// Drops a term without recursion (`crate::term::Term`'s drop recurses).
    fn dismantle(t: Term) {
        let mut stack = vec![t];
        while let Some(t) = stack.pop() {
            match t {
                Term::List(l) => stack.extend(l.elements),
                Term::Tuple(x) => stack.extend(x.elements),
                _ => {}
            }
        }
    }

    #[test]
    fn deep_nesting_uses_no_recursion() {
        // Values recorded from OTP 25 (tests/fixtures/phash2/corpus.txt).
        let mut deep_list = nil();
        let mut deep_tuple = tuple(vec![]);
        for _ in 0..100_000 {
            deep_list = list(vec![deep_list]);
            deep_tuple = tuple(vec![deep_tuple]);
        }
        assert_eq!(make_hash2(&deep_list), 4276146740);
        assert_eq!(make_hash2(&deep_tuple), 2747071206);
        dismantle(deep_list);
        dismantle(deep_tuple);
    }

    #[test]
    fn hash2_in_parts_equals_hashing_the_built_term() {
        let parts = [
            nil(),
            atom("partial"),
            int(-5),
            binary(vec![1, 2, 3, 4]),
            tuple(vec![atom("key"), binary("name-1")]),
            list(vec![int(1), atom("a"), binary("x")]),
        ];
        for a in &parts {
            for b in &parts {
                let built = make_hash2(&tuple(vec![a.clone(), b.clone()]));
                assert_eq!(Hash2::new().tuple(2).term(a).term(b).finish(), built);
                let pairs = [(a.clone(), b.clone()), (b.clone(), int(7))];
                let map = Term::Map(crate::term::Map::from(
                    pairs
                        .iter()
                        .cloned()
                        .collect::<std::collections::HashMap<_, _>>(),
                ));
                if let Term::Map(m) = &map {
                    let by_parts = Hash2::new().map(m.map.iter()).finish();
                    assert_eq!(by_parts, make_hash2(&map), "{map}");
                    // Inside a tuple too: the outer state is kept.
                    let inner = make_hash2(&tuple(vec![a.clone(), map.clone()]));
                    assert_eq!(
                        Hash2::new().tuple(2).term(a).map(m.map.iter()).finish(),
                        inner
                    );
                }
            }
        }
        let empty = Term::Map(crate::term::Map::from(std::collections::HashMap::<
            Term,
            Term,
        >::new()));
        assert_eq!(
            Hash2::new().map(std::iter::empty()).finish(),
            make_hash2(&empty)
        );
        for h in [None, Some(0u32), Some(0xdead_beef)] {
            let as_term = |h: Option<u32>| h.map_or(nil(), |x| binary(x.to_be_bytes().to_vec()));
            let built = make_hash2(&tuple(vec![as_term(h), as_term(Some(3))]));
            let mut p = Hash2::new().tuple(2);
            p = match h {
                None => p.nil(),
                Some(x) => p.binary(&x.to_be_bytes()),
            };
            assert_eq!(p.binary(&3u32.to_be_bytes()).finish(), built);
        }
    }

    #[test]
    fn recursion_and_the_work_stack_agree() {
        let mut rng = crate::term::testgen::Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let t = crate::term::testgen::term(&mut rng, 4);
            let mut slow = Hasher::default();
            slow.run(node_of(&t));
            let mut by_node = Hasher::default();
            by_node.node(node_of(&t), 0);
            assert_eq!(make_hash2(&t), slow.hash, "{t}");
            assert_eq!(by_node.hash, slow.hash, "{t}");
        }
    }

    #[test]
    fn ranges() {
        let t = atom("héllo"); // make_hash2 = 7799599
        assert_eq!(phash2(&t), 7799599 & ((1 << 27) - 1));
        assert_eq!(phash2_range(&t, 1), 0);
        assert_eq!(phash2_range(&t, 1000), 7799599 % 1000);
        assert_eq!(phash2_range(&t, 1 << 32), 7799599);
        // Out of the BEAM's accepted range: clamped, never a panic.
        assert_eq!(phash2_range(&t, 0), 0);
        assert_eq!(phash2_range(&t, u64::MAX), 7799599);
    }

    #[test]
    fn atom_hash_of_ascii_takes_the_plain_loop_to_the_same_value() {
        for name in [
            "",
            "ok",
            "Elixir.DeltaCrdt.CausalCrdt.Diff",
            &"z".repeat(255),
        ] {
            assert_eq!(
                atom_hash(name),
                atom_hash_folding(name.as_bytes()),
                "{name}"
            );
        }
    }

    #[test]
    fn atom_hash_folds_latin1_back_from_utf8() {
        assert_eq!(atom_hash("ÿ"), 255);
        assert_eq!(atom_hash("é"), 0xE9);
        // Only C2/C3 lead bytes are folded; other sequences hash bytewise.
        assert_ne!(atom_hash("Ω"), 0x3A9);
        assert_eq!(atom_hash(""), 0);
    }

    #[test]
    fn shapes_the_beam_never_sends_do_not_panic() {
        let odd = vec![
            Term::BitBinary(crate::term::BitBinary::from((vec![], 5))),
            Term::BitBinary(crate::term::BitBinary::from((vec![1, 2], 0))),
            Term::BitBinary(crate::term::BitBinary::from((vec![1, 2], 200))),
            Term::Reference(Box::new(crate::term::Reference {
                node: crate::term::Atom::from("a@b"),
                id: vec![],
                creation: 0,
            })),
            Term::Port(crate::term::Port {
                node: crate::term::Atom::from("a@b"),
                id: u64::MAX,
                creation: u32::MAX,
            }),
            Term::ImproperList(crate::term::ImproperList::from((
                vec![],
                Term::ImproperList(crate::term::ImproperList::from((vec![], nil()))),
            ))),
            Term::InternalFun(Box::new(crate::term::InternalFun::Old {
                module: crate::term::Atom::from("m"),
                pid: crate::term::Pid::new("a@b", 1, 2, 3),
                free_vars: vec![int(i64::MIN), int(i64::MAX)],
                index: -1,
                uniq: i32::MIN,
            })),
            Term::FixInteger(crate::term::FixInteger::from(i32::MIN)),
        ];
        for t in &odd {
            let _ = (make_hash2(t), phash2(t), phash2_range(t, 7));
        }
        // An empty-element improper list is its tail: here `[]`.
        assert_eq!(make_hash2(&odd[5]), make_hash2(&nil()));
    }
}
