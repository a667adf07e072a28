//! The Erlang term as the external format carries it: one Rust value per
//! ETF shape, owned, with no I/O and no encoding logic (that is `etf`).
//!
//! The names and fields follow the `eetf` crate's (which the project started
//! on) so code reads the same, but the representation is chosen for a node
//! that decodes and hashes terms all day:
//! - an atom is a [`SmolStr`]: the text of any atom up to 23 bytes (nearly
//!   all of them) lives inline, so decoding one allocates nothing and cloning
//!   a long one (`'Elixir.DeltaCrdt.CausalCrdt.Diff'`) is a reference-count
//!   increment;
//! - a map of up to 16 pairs is a vector of pairs searched by comparison,
//!   a larger one a hash map with `foldhash`'s randomly seeded hasher rather
//!   than SipHash ([`TermMap`]); either hashes the same whatever its order
//!   (`eetf`'s did not: two equal maps could hash differently).
//!
//! Recursive values (lists, tuples, maps, funs) are dropped and compared by
//! recursion; code that accepts terms from the network bounds their depth
//! (`term::depth_within`) before keeping them.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};

use num_bigint::BigInt;
use smol_str::SmolStr;

/// The hasher of [`Map`]'s table: fast, seeded at random per map, so keys a
/// peer chose cannot be made to collide on purpose.
pub type MapHasher = foldhash::fast::RandomState;

/// The pairs of a [`Map`], with the part of `HashMap`'s interface the crate
/// uses.
///
/// Nearly every map on the wire is small (a struct, a few options, a
/// CRDT's dots): up to [`TermMap::SMALL`] pairs are kept in a plain vector
/// and found by comparison, as the BEAM keeps maps of up to 32 keys in a
/// flat array. Decoding one is then one allocation and no hashing, and
/// iterating it walks contiguous memory. A map that grows past that moves
/// to a hash table for good.
#[derive(Clone, Default)]
pub struct TermMap {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    Small(Vec<(Term, Term)>),
    Large(HashMap<Term, Term, MapHasher>),
}

impl Default for Repr {
    fn default() -> Repr {
        Repr::Small(Vec::new())
    }
}

impl TermMap {
    /// Most pairs kept in the vector. Above it a lookup costs more by
    /// comparison than by hashing, and decoding a map (which checks each
    /// key against those before it) grows quadratically.
    pub const SMALL: usize = 16;

    pub fn new() -> TermMap {
        TermMap::default()
    }

    /// An empty map with room for `n` pairs.
    pub fn with_capacity(n: usize) -> TermMap {
        let repr = if n <= Self::SMALL {
            Repr::Small(Vec::with_capacity(n))
        } else {
            Repr::Large(HashMap::with_capacity_and_hasher(n, MapHasher::default()))
        };
        TermMap { repr }
    }

    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Small(v) => v.len(),
            Repr::Large(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &Term) -> Option<&Term> {
        match &self.repr {
            Repr::Small(v) => v.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            Repr::Large(m) => m.get(key),
        }
    }

    pub fn get_mut(&mut self, key: &Term) -> Option<&mut Term> {
        match &mut self.repr {
            Repr::Small(v) => v.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            Repr::Large(m) => m.get_mut(key),
        }
    }

    pub fn contains_key(&self, key: &Term) -> bool {
        self.get(key).is_some()
    }

    /// Puts `value` under `key`; returns the value it replaced.
    pub fn insert(&mut self, key: Term, value: Term) -> Option<Term> {
        match &mut self.repr {
            Repr::Small(v) => {
                if let Some((_, old)) = v.iter_mut().find(|(k, _)| *k == key) {
                    return Some(std::mem::replace(old, value));
                }
                if v.len() < Self::SMALL {
                    v.push((key, value));
                    return None;
                }
                let mut m = HashMap::with_capacity_and_hasher(v.len() * 2, MapHasher::default());
                m.extend(std::mem::take(v));
                m.insert(key, value);
                self.repr = Repr::Large(m);
                None
            }
            Repr::Large(m) => m.insert(key, value),
        }
    }

    pub fn remove(&mut self, key: &Term) -> Option<Term> {
        match &mut self.repr {
            Repr::Small(v) => {
                let i = v.iter().position(|(k, _)| k == key)?;
                Some(v.swap_remove(i).1)
            }
            Repr::Large(m) => m.remove(key),
        }
    }

    /// The pairs, in no particular order.
    pub fn iter(&self) -> Iter<'_> {
        match &self.repr {
            Repr::Small(v) => Iter::Small(v.iter()),
            Repr::Large(m) => Iter::Large(m.iter()),
        }
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Term> {
        let (small, large) = match &mut self.repr {
            Repr::Small(v) => (Some(v.iter_mut().map(|(_, v)| v)), None),
            Repr::Large(m) => (None, Some(m.values_mut())),
        };
        small
            .into_iter()
            .flatten()
            .chain(large.into_iter().flatten())
    }

    pub fn keys(&self) -> impl Iterator<Item = &Term> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &Term> {
        self.iter().map(|(_, v)| v)
    }
}

/// The pairs of a [`TermMap`], borrowed.
pub enum Iter<'a> {
    Small(std::slice::Iter<'a, (Term, Term)>),
    Large(std::collections::hash_map::Iter<'a, Term, Term>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Term, &'a Term);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Small(it) => it.next().map(|(k, v)| (k, v)),
            Iter::Large(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Small(it) => it.size_hint(),
            Iter::Large(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// The pairs of a [`TermMap`], owned.
pub enum IntoIter {
    Small(std::vec::IntoIter<(Term, Term)>),
    Large(std::collections::hash_map::IntoIter<Term, Term>),
}

impl Iterator for IntoIter {
    type Item = (Term, Term);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            IntoIter::Small(it) => it.next(),
            IntoIter::Large(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            IntoIter::Small(it) => it.size_hint(),
            IntoIter::Large(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for IntoIter {}

impl IntoIterator for TermMap {
    type Item = (Term, Term);
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        match self.repr {
            Repr::Small(v) => IntoIter::Small(v.into_iter()),
            Repr::Large(m) => IntoIter::Large(m.into_iter()),
        }
    }
}

impl<'a> IntoIterator for &'a TermMap {
    type Item = (&'a Term, &'a Term);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl Extend<(Term, Term)> for TermMap {
    fn extend<I: IntoIterator<Item = (Term, Term)>>(&mut self, pairs: I) {
        for (k, v) in pairs {
            self.insert(k, v);
        }
    }
}

impl FromIterator<(Term, Term)> for TermMap {
    fn from_iter<I: IntoIterator<Item = (Term, Term)>>(pairs: I) -> TermMap {
        let pairs = pairs.into_iter();
        let mut m = TermMap::with_capacity(pairs.size_hint().0);
        m.extend(pairs);
        m
    }
}

/// `map[&key]`, as `HashMap` has it: panics when `key` is absent.
impl std::ops::Index<&Term> for TermMap {
    type Output = Term;

    fn index(&self, key: &Term) -> &Term {
        self.get(key).expect("key in map")
    }
}

/// Equal when they hold the same pairs, whatever their order or layout.
impl PartialEq for TermMap {
    fn eq(&self, other: &TermMap) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for TermMap {}

impl fmt::Debug for TermMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Any Erlang term.
#[derive(Debug, PartialEq, Eq, Hash, Clone)]
pub enum Term {
    Atom(Atom),
    FixInteger(FixInteger),
    BigInteger(BigInteger),
    Float(Float),
    Pid(Pid),
    Port(Port),
    Reference(Box<Reference>),
    ExternalFun(Box<ExternalFun>),
    InternalFun(Box<InternalFun>),
    Binary(Binary),
    BitBinary(BitBinary),
    /// A list of bytes sent as `STRING_EXT`; the same Erlang value as the
    /// [`List`] of those integers.
    ByteList(ByteList),
    List(List),
    ImproperList(ImproperList),
    Tuple(Tuple),
    Map(Map),
}

/// An atom: its text, UTF-8.
#[derive(Debug, PartialEq, Eq, Hash, Clone, PartialOrd, Ord)]
pub struct Atom {
    pub name: SmolStr,
}

impl Atom {
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl From<&str> for Atom {
    fn from(name: &str) -> Atom {
        Atom {
            name: SmolStr::new(name),
        }
    }
}

impl From<String> for Atom {
    fn from(name: String) -> Atom {
        Atom {
            name: SmolStr::from(name),
        }
    }
}

impl From<&String> for Atom {
    fn from(name: &String) -> Atom {
        Atom::from(name.as_str())
    }
}

impl From<SmolStr> for Atom {
    fn from(name: SmolStr) -> Atom {
        Atom { name }
    }
}

/// An integer that fits the external format's 32-bit `INTEGER_EXT`.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
pub struct FixInteger {
    pub value: i32,
}

macro_rules! fix_from {
    ($($t:ty),*) => {$(
        impl From<$t> for FixInteger {
            fn from(value: $t) -> FixInteger {
                FixInteger { value: i32::from(value) }
            }
        }
    )*};
}
fix_from!(i8, u8, i16, u16, i32);

/// An integer of any size.
#[derive(Debug, PartialEq, Eq, Hash, Clone)]
pub struct BigInteger {
    pub value: BigInt,
}

macro_rules! big_from {
    ($($t:ty),*) => {$(
        impl From<$t> for BigInteger {
            fn from(value: $t) -> BigInteger {
                BigInteger { value: BigInt::from(value) }
            }
        }
    )*};
}
big_from!(i8, u8, i16, u16, i32, u32, i64, u64, i128, u128, isize, usize);

impl From<&FixInteger> for BigInteger {
    fn from(i: &FixInteger) -> BigInteger {
        BigInteger::from(i.value)
    }
}

/// A float. The external format has no NaN or infinity; -0.0 and 0.0 are
/// equal here (and hash alike), as `==` has them on the BEAM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Float {
    pub value: f64,
}

impl Eq for Float {}

impl Hash for Float {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let bits = if self.value == 0.0 {
            0
        } else {
            self.value.to_bits()
        };
        bits.hash(state);
    }
}

/// The float is not finite, so no BEAM can hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a float term must be finite")]
pub struct NonFiniteFloat;

impl TryFrom<f64> for Float {
    type Error = NonFiniteFloat;
    fn try_from(value: f64) -> Result<Float, NonFiniteFloat> {
        if value.is_finite() {
            Ok(Float { value })
        } else {
            Err(NonFiniteFloat)
        }
    }
}

impl TryFrom<f32> for Float {
    type Error = NonFiniteFloat;
    fn try_from(value: f32) -> Result<Float, NonFiniteFloat> {
        Float::try_from(f64::from(value))
    }
}

/// A process identifier.
#[derive(Debug, PartialEq, Eq, Hash, Clone)]
pub struct Pid {
    pub node: Atom,
    pub id: u32,
    pub serial: u32,
    pub creation: u32,
}

impl Pid {
    pub fn new(node: impl Into<Atom>, id: u32, serial: u32, creation: u32) -> Pid {
        Pid {
            node: node.into(),
            id,
            serial,
            creation,
        }
    }
}

/// A port identifier.
#[derive(Debug, PartialEq, Eq, Hash, Clone)]
pub struct Port {
    pub node: Atom,
    pub id: u64,
    pub creation: u32,
}

/// A reference: up to five 32-bit id words (three on most nodes).
#[derive(Debug, PartialEq, Eq, Hash, Clone)]
pub struct Reference {
    pub node: Atom,
    pub id: Vec<u32>,
    pub creation: u32,
}

impl From<(&str, u32)> for Reference {
    fn from((node, id): (&str, u32)) -> Reference {
        Reference {
            node: Atom::from(node),
            id: vec![id],
            creation: 0,
        }
    }
}

impl From<(&str, Vec<u32>)> for Reference {
    fn from((node, id): (&str, Vec<u32>)) -> Reference {
        Reference {
            node: Atom::from(node),
            id,
            creation: 0,
        }
    }
}

/// `fun Module:Function/Arity`.
#[derive(Debug, PartialEq, Eq, Hash, Clone)]
pub struct ExternalFun {
    pub module: Atom,
    pub function: Atom,
    pub arity: u8,
}

impl From<(&str, &str, u8)> for ExternalFun {
    fn from((module, function, arity): (&str, &str, u8)) -> ExternalFun {
        ExternalFun {
            module: Atom::from(module),
            function: Atom::from(function),
            arity,
        }
    }
}

/// A local fun with its environment.
#[derive(Debug, PartialEq, Eq, Hash, Clone)]
pub enum InternalFun {
    /// `FUN_EXT`, which OTP 23 and later no longer decode.
    Old {
        module: Atom,
        pid: Pid,
        free_vars: Vec<Term>,
        index: i32,
        uniq: i32,
    },
    /// `NEW_FUN_EXT`.
    New {
        module: Atom,
        arity: u8,
        pid: Pid,
        free_vars: Vec<Term>,
        index: u32,
        uniq: [u8; 16],
        old_index: i32,
        old_uniq: i32,
    },
}

/// The bytes of a [`Binary`]: up to [`Binary::INLINE`] of them are kept in
/// the term itself, more on the heap.
pub type BinaryBytes = smallvec::SmallVec<[u8; Binary::INLINE]>;

/// A binary (a whole number of bytes).
///
/// Most binaries on the wire are short (keys, names, ids), and a short one
/// lives inside the term: decoding it allocates nothing and reading it
/// follows no pointer. A term is 48 bytes whatever it holds, so the room
/// is there already.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Default)]
pub struct Binary {
    pub bytes: BinaryBytes,
}

impl Binary {
    /// Longest binary kept inline.
    pub const INLINE: usize = 32;

    /// The bytes as a vector, taking them: free when they were on the heap.
    pub fn into_vec(self) -> Vec<u8> {
        self.bytes.into_vec()
    }
}

impl From<&[u8]> for Binary {
    fn from(bytes: &[u8]) -> Binary {
        Binary {
            bytes: BinaryBytes::from_slice(bytes),
        }
    }
}

impl From<Vec<u8>> for Binary {
    /// Keeps the vector's allocation when the bytes do not fit inline.
    fn from(bytes: Vec<u8>) -> Binary {
        Binary {
            bytes: BinaryBytes::from_vec(bytes),
        }
    }
}

/// A bitstring whose last byte holds `tail_bits_size` bits (1..=8),
/// right-aligned.
#[derive(Debug, PartialEq, Eq, Hash, Clone)]
pub struct BitBinary {
    pub bytes: Vec<u8>,
    pub tail_bits_size: u8,
}

impl From<(Vec<u8>, u8)> for BitBinary {
    fn from((bytes, tail_bits_size): (Vec<u8>, u8)) -> BitBinary {
        BitBinary {
            bytes,
            tail_bits_size,
        }
    }
}

impl From<Binary> for BitBinary {
    fn from(binary: Binary) -> BitBinary {
        BitBinary {
            bytes: binary.into_vec(),
            tail_bits_size: 8,
        }
    }
}

/// A proper list of integers 0..=255, as `STRING_EXT` carries it.
#[derive(Debug, PartialEq, Eq, Hash, Clone)]
pub struct ByteList {
    pub bytes: Vec<u8>,
}

impl From<Vec<u8>> for ByteList {
    fn from(bytes: Vec<u8>) -> ByteList {
        ByteList { bytes }
    }
}

impl From<&str> for ByteList {
    fn from(text: &str) -> ByteList {
        ByteList {
            bytes: text.as_bytes().to_vec(),
        }
    }
}

/// A proper list; `[]` when empty.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Default)]
pub struct List {
    pub elements: Vec<Term>,
}

impl List {
    /// `[]`.
    pub fn nil() -> List {
        List::default()
    }

    pub fn is_nil(&self) -> bool {
        self.elements.is_empty()
    }
}

impl From<Vec<Term>> for List {
    fn from(elements: Vec<Term>) -> List {
        List { elements }
    }
}

/// `[E1, E2, ... | Last]` where `Last` is not a proper list.
#[derive(Debug, PartialEq, Eq, Hash, Clone)]
pub struct ImproperList {
    pub elements: Vec<Term>,
    pub last: Box<Term>,
}

impl From<(Vec<Term>, Term)> for ImproperList {
    fn from((elements, last): (Vec<Term>, Term)) -> ImproperList {
        ImproperList {
            elements,
            last: Box::new(last),
        }
    }
}

/// A tuple.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Default)]
pub struct Tuple {
    pub elements: Vec<Term>,
}

impl From<Vec<Term>> for Tuple {
    fn from(elements: Vec<Term>) -> Tuple {
        Tuple { elements }
    }
}

/// A map.
#[derive(Debug, PartialEq, Eq, Clone, Default)]
pub struct Map {
    pub map: TermMap,
}

impl Map {
    /// An empty map with room for `n` pairs.
    pub fn with_capacity(n: usize) -> Map {
        Map {
            map: TermMap::with_capacity(n),
        }
    }
}

impl Hash for Map {
    /// The same for equal maps whatever order their tables iterate in: each
    /// pair is hashed alone (with one fixed hasher) and the results summed.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let fixed = foldhash::fast::FixedState::with_seed(0x5eed_f00d);
        let sum = self
            .map
            .iter()
            .fold(0u64, |acc, pair| acc.wrapping_add(fixed.hash_one(pair)));
        state.write_usize(self.map.len());
        state.write_u64(sum);
    }
}

impl FromIterator<(Term, Term)> for Map {
    fn from_iter<I: IntoIterator<Item = (Term, Term)>>(pairs: I) -> Map {
        Map {
            map: pairs.into_iter().collect(),
        }
    }
}

impl<const N: usize> From<[(Term, Term); N]> for Map {
    fn from(pairs: [(Term, Term); N]) -> Map {
        pairs.into_iter().collect()
    }
}

impl From<Vec<(Term, Term)>> for Map {
    fn from(pairs: Vec<(Term, Term)>) -> Map {
        pairs.into_iter().collect()
    }
}

impl From<TermMap> for Map {
    fn from(map: TermMap) -> Map {
        Map { map }
    }
}

impl<S: BuildHasher> From<HashMap<Term, Term, S>> for Map {
    fn from(pairs: HashMap<Term, Term, S>) -> Map {
        pairs.into_iter().collect()
    }
}

macro_rules! term_from {
    ($($variant:ident),*) => {$(
        impl From<$variant> for Term {
            fn from(x: $variant) -> Term {
                Term::$variant(x.into())
            }
        }
    )*};
}
term_from!(
    Atom,
    FixInteger,
    BigInteger,
    Float,
    Pid,
    Port,
    Reference,
    ExternalFun,
    InternalFun,
    Binary,
    BitBinary,
    ByteList,
    List,
    ImproperList,
    Tuple,
    Map
);

// Display: Erlang syntax, for logs and error messages.
//
// Plain `Display` knows no node, so it writes every pid, port and reference
// with its node's name where the BEAM writes a number (`<app@host.6.0>`):
// that number is an index private to the printing node and would say
// nothing in a log. [`Term::in_node`] and friends print as the node `local`
// would: its own pids as `<0.6.0>`, as `erl` prints them.

/// A term, pid, port or reference shown in Erlang syntax as seen from one
/// node; see [`Term::in_node`].
pub struct InNode<'a, T: ?Sized> {
    value: &'a T,
    local: Option<&'a str>,
}

impl Term {
    /// Shows the term as the node named `local` prints it: its own pids,
    /// ports and references with node number 0 (`<0.6.0>`), other nodes'
    /// with their node's name (`<app@host.6.0>`).
    pub fn in_node<'a>(&'a self, local: &'a str) -> InNode<'a, Term> {
        InNode {
            value: self,
            local: Some(local),
        }
    }
}

impl Pid {
    /// The pid as the node named `local` prints it: `<0.Id.Serial>` when it
    /// is one of that node's, `<node.Id.Serial>` otherwise.
    pub fn in_node<'a>(&'a self, local: &'a str) -> InNode<'a, Pid> {
        InNode {
            value: self,
            local: Some(local),
        }
    }
}

impl Reference {
    /// The reference as the node named `local` prints it (`#Ref<0.…>` for its own).
    pub fn in_node<'a>(&'a self, local: &'a str) -> InNode<'a, Reference> {
        InNode {
            value: self,
            local: Some(local),
        }
    }
}

impl fmt::Display for InNode<'_, Term> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_term(f, self.value, self.local)
    }
}

impl fmt::Display for InNode<'_, Pid> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_pid(f, self.value, self.local)
    }
}

impl fmt::Display for InNode<'_, Reference> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_ref(f, self.value, self.local)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_term(f, self, None)
    }
}

/// The node part of a pid, port or reference: `0` for `local`'s own.
fn node_part<'a>(node: &'a Atom, local: Option<&str>) -> &'a str {
    if local == Some(node.name.as_str()) {
        "0"
    } else {
        &node.name
    }
}

fn write_pid(f: &mut fmt::Formatter<'_>, p: &Pid, local: Option<&str>) -> fmt::Result {
    write!(f, "<{}.{}.{}>", node_part(&p.node, local), p.id, p.serial)
}

fn write_ref(f: &mut fmt::Formatter<'_>, r: &Reference, local: Option<&str>) -> fmt::Result {
    write!(f, "#Ref<{}", node_part(&r.node, local))?;
    for id in r.id.iter().rev() {
        write!(f, ".{id}")?;
    }
    f.write_str(">")
}

fn write_term(f: &mut fmt::Formatter<'_>, t: &Term, local: Option<&str>) -> fmt::Result {
    match t {
        Term::Atom(x) => fmt::Display::fmt(x, f),
        Term::FixInteger(x) => write!(f, "{}", x.value),
        Term::BigInteger(x) => write!(f, "{}", x.value),
        Term::Float(x) => fmt::Display::fmt(x, f),
        Term::Pid(x) => write_pid(f, x, local),
        Term::Port(x) => write!(f, "#Port<{}.{}>", node_part(&x.node, local), x.id),
        Term::Reference(x) => write_ref(f, x, local),
        Term::ExternalFun(x) => write!(f, "fun {}:{}/{}", x.module, x.function, x.arity),
        Term::InternalFun(x) => match &**x {
            InternalFun::Old {
                module,
                index,
                uniq,
                ..
            } => write!(f, "#Fun<{module}.{index}.{uniq}>"),
            InternalFun::New {
                module,
                index,
                old_uniq,
                ..
            } => write!(f, "#Fun<{module}.{index}.{old_uniq}>"),
        },
        Term::Binary(x) => fmt::Display::fmt(x, f),
        Term::BitBinary(x) => fmt_bits(f, &x.bytes, x.tail_bits_size),
        Term::ByteList(x) => {
            if !x.bytes.is_empty() && x.bytes.iter().all(|b| (b' '..=b'~').contains(b)) {
                write!(f, "{:?}", String::from_utf8_lossy(&x.bytes))
            } else {
                fmt_seq(f, "[", x.bytes.iter(), "]")
            }
        }
        Term::List(x) => write_elems(f, "[", &x.elements, "]", local),
        Term::ImproperList(x) if x.elements.is_empty() => write_term(f, &x.last, local),
        Term::ImproperList(x) => {
            write_elems(f, "[", &x.elements, "|", local)?;
            write_term(f, &x.last, local)?;
            f.write_str("]")
        }
        Term::Tuple(x) => write_elems(f, "{", &x.elements, "}", local),
        Term::Map(x) => write_map(f, x, local),
    }
}

fn write_elems(
    f: &mut fmt::Formatter<'_>,
    open: &str,
    elems: &[Term],
    close: &str,
    local: Option<&str>,
) -> fmt::Result {
    f.write_str(open)?;
    for (i, x) in elems.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write_term(f, x, local)?;
    }
    f.write_str(close)
}

fn write_map(f: &mut fmt::Formatter<'_>, m: &Map, local: Option<&str>) -> fmt::Result {
    f.write_str("#{")?;
    for (i, (k, v)) in m.map.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write_term(f, k, local)?;
        f.write_str(" => ")?;
        write_term(f, v, local)?;
    }
    f.write_str("}")
}

fn fmt_seq<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    open: &str,
    items: impl Iterator<Item = T>,
    close: &str,
) -> fmt::Result {
    f.write_str(open)?;
    for (i, x) in items.enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{x}")?;
    }
    f.write_str(close)
}

fn fmt_bits(f: &mut fmt::Formatter<'_>, bytes: &[u8], tail_bits: u8) -> fmt::Result {
    let printable = !bytes.is_empty()
        && tail_bits == 8
        && bytes
            .iter()
            .all(|b| (b' '..=b'~').contains(b) && *b != b'"' && *b != b'\\');
    if printable {
        return write!(f, "<<\"{}\">>", String::from_utf8_lossy(bytes));
    }
    f.write_str("<<")?;
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        if i + 1 == bytes.len() && tail_bits < 8 {
            write!(f, "{b}:{tail_bits}")?;
        } else {
            write!(f, "{b}")?;
        }
    }
    f.write_str(">>")
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bare = self.name.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@');
        if bare {
            f.write_str(&self.name)
        } else {
            f.write_str("'")?;
            for c in self.name.chars() {
                match c {
                    '\'' => f.write_str("\\'")?,
                    '\\' => f.write_str("\\\\")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("'")
        }
    }
}

impl fmt::Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.value)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_pid(f, self, None)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_ref(f, self, None)
    }
}

impl fmt::Display for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_map(f, self, None)
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_elems(f, "{", &self.elements, "}", None)
    }
}

impl fmt::Display for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_elems(f, "[", &self.elements, "]", None)
    }
}

impl fmt::Display for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_bits(f, &self.bytes, 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(t: &Term) -> u64 {
        foldhash::fast::FixedState::with_seed(1).hash_one(t)
    }

    #[test]
    fn equal_maps_hash_alike_whatever_their_order() {
        let pairs: Vec<(Term, Term)> = (0..50)
            .map(|i| (Term::from(FixInteger::from(i)), Term::from(Atom::from("v"))))
            .collect();
        let forward: Map = pairs.iter().cloned().collect();
        let backward: Map = pairs.iter().rev().cloned().collect();
        assert_eq!(forward, backward);
        assert_eq!(hash_of(&Term::Map(forward)), hash_of(&Term::Map(backward)));
    }

    #[test]
    fn a_map_keeps_its_pairs_across_the_move_to_a_hash_table() {
        let int = |i: i32| Term::from(FixInteger::from(i));
        let mut grown = TermMap::new();
        let n = TermMap::SMALL as i32 * 3;
        for i in 0..n {
            assert_eq!(grown.insert(int(i), int(-i)), None);
            assert_eq!(grown.insert(int(i), int(i)), Some(int(-i)), "replaced");
            assert_eq!(grown.len(), i as usize + 1);
        }
        for i in 0..n {
            assert_eq!(grown.get(&int(i)), Some(&int(i)));
        }
        assert_eq!(grown.get(&int(n)), None);
        // Equal whatever the layout: the same pairs kept small.
        let mut small = TermMap::new();
        for i in 0..4 {
            small.insert(int(i), int(i));
        }
        let mut shrunk = grown.clone();
        for i in 4..n {
            assert_eq!(shrunk.remove(&int(i)), Some(int(i)));
        }
        assert_eq!(shrunk.remove(&int(n)), None);
        assert_eq!(shrunk, small);
        assert_eq!(
            hash_of(&Term::Map(shrunk.into())),
            hash_of(&Term::Map(small.clone().into()))
        );
        // Order does not matter to equality; values do.
        let backward: TermMap = (0..4).rev().map(|i| (int(i), int(i))).collect();
        assert_eq!(backward, small);
        let mut other = small.clone();
        *other.get_mut(&int(3)).expect("present") = int(7);
        assert_ne!(other, small);
        assert_eq!(other.values().filter(|v| **v == int(7)).count(), 1);
    }

    #[test]
    fn short_atoms_are_inline() {
        let a = Atom::from("Elixir.Horde.Registry");
        assert!(!a.name.is_heap_allocated());
    }

    #[test]
    fn display_is_erlang_syntax() {
        let t = Term::from(Tuple::from(vec![
            Term::from(Atom::from("ok")),
            Term::from(Atom::from("Elixir.Foo")),
            Term::from(Binary::from(&b"name"[..])),
            Term::from(List::from(vec![Term::from(FixInteger::from(1))])),
            Term::from(Float { value: 1.0 }),
        ]));
        assert_eq!(t.to_string(), "{ok,'Elixir.Foo',<<\"name\">>,[1],1.0}");
    }

    #[test]
    fn pids_ports_and_refs_print_as_their_node_prints_them() {
        let ours = Pid::new("a@h", 6, 0, 1);
        let theirs = Pid::new("b@h", 88, 1, 1);
        let r = Reference {
            node: Atom::from("a@h"),
            id: vec![3, 2, 1],
            creation: 1,
        };
        let port = Port {
            node: Atom::from("b@h"),
            id: 7,
            creation: 1,
        };
        assert_eq!(ours.in_node("a@h").to_string(), "<0.6.0>");
        assert_eq!(theirs.in_node("a@h").to_string(), "<b@h.88.1>");
        assert_eq!(ours.to_string(), "<a@h.6.0>");
        assert_eq!(r.in_node("a@h").to_string(), "#Ref<0.1.2.3>");
        assert_eq!(r.to_string(), "#Ref<a@h.1.2.3>");
        let t = Term::from(Tuple::from(vec![
            Term::Pid(ours.clone()),
            Term::from(List::from(vec![Term::Pid(theirs.clone())])),
            Term::Map(Map::from([(
                Term::Port(port),
                Term::Reference(Box::new(r)),
            )])),
            Term::ImproperList(ImproperList::from((
                vec![Term::Pid(ours.clone())],
                Term::Pid(ours),
            ))),
        ]));
        assert_eq!(
            t.in_node("a@h").to_string(),
            "{<0.6.0>,[<b@h.88.1>],#{#Port<b@h.7> => #Ref<0.1.2.3>},[<0.6.0>|<0.6.0>]}"
        );
        assert_eq!(
            t.in_node("b@h").to_string(),
            "{<a@h.6.0>,[<0.88.1>],#{#Port<0.7> => #Ref<a@h.1.2.3>},[<a@h.6.0>|<a@h.6.0>]}"
        );
    }
}
