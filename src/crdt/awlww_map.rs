//! DeltaCrdt's `AWLWWMap` (delta_crdt 0.6.4), as a plain value.
//!
//! State: a causal context (`dots`) and, per key, a map from `{value, timestamp}`
//! to the set of dots that wrote it. This module owns the operations (`add`,
//! `remove`, `clear`), the key-restricted `join`, `read`, the diffs DeltaCrdt
//! derives from a join, and the `%DeltaCrdt.AWLWWMap{}` wire term. It never
//! reads a clock, draws a node id, or talks to anyone: callers pass
//! timestamps and node ids in and ship the returned values themselves.
//!
//! Every rule mirrors upstream, quirks included, because a BEAM replica
//! applying the same join must reach the same state:
//! - an entry survives a join when both sides hold its dot, or one side
//!   holds it and the other side's context does not cover it;
//! - the joined context is the union of both *whole* contexts, even when
//!   only some keys are joined (a replica with an exact [`Seen`] joins
//!   through [`AwLwwMap::apply_exact`] instead, which judges and records by
//!   that; see `crdt::sync`);
//! - keys outside the join's key list are not joined: the right-hand side's
//!   entries for such a key replace the left-hand side's wholesale;
//! - a read picks, per key, the entry with the largest timestamp; among
//!   equal timestamps the first in the BEAM's map iteration order, which for
//!   a key with at most 32 entries is the smallest `{value, ts}` in term order.
//!
//! Map keys are Erlang terms compared with [`term_cmp`] (exact term order,
//! so `1` and `1.0` are distinct keys, as in an Elixir map).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::dots::{int_field, Context, Covers, Dot, DotSet, Dots, NodeId, Seen};
use super::elixir::{self, MapSetForm};
use super::CrdtTermError;
use crate::term::{as_tuple, atom, int, tuple, BigInteger, InternalFun, List, Map, Term};

#[cfg(test)]
mod beam_oracle;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// The Elixir module name of the state struct.
pub const STRUCT_NAME: &str = "Elixir.DeltaCrdt.AWLWWMap";

/// The deepest key or value `from_term` accepts. [`term_cmp`] recurses once
/// per nesting level, so a peer must not be able to pick the depth.
pub const MAX_TERM_DEPTH: usize = 512;

/// A term ordered by [`term_cmp`]; equality is Erlang's `=:=`.
#[derive(Debug, Clone)]
pub struct OrdTerm(pub Term);

impl PartialEq for OrdTerm {
    fn eq(&self, other: &Self) -> bool {
        term_cmp(&self.0, &other.0) == Ordering::Equal
    }
}
impl Eq for OrdTerm {}
impl PartialOrd for OrdTerm {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdTerm {
    fn cmp(&self, other: &Self) -> Ordering {
        term_cmp(&self.0, &other.0)
    }
}
impl From<Term> for OrdTerm {
    fn from(term: Term) -> Self {
        OrdTerm(term)
    }
}

/// Looks a plain `&Term` up in a map keyed by [`OrdTerm`] without cloning
/// it: `map.get(by_term(&key))`. Ordered exactly as [`OrdTerm`].
pub trait TermKey {
    fn term(&self) -> &Term;
}

impl TermKey for Term {
    fn term(&self) -> &Term {
        self
    }
}

impl TermKey for OrdTerm {
    fn term(&self) -> &Term {
        &self.0
    }
}

impl<'a> std::borrow::Borrow<dyn TermKey + 'a> for OrdTerm {
    fn borrow(&self) -> &(dyn TermKey + 'a) {
        self
    }
}

impl PartialEq for dyn TermKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        term_cmp(self.term(), other.term()) == Ordering::Equal
    }
}
impl Eq for dyn TermKey + '_ {}
impl PartialOrd for dyn TermKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for dyn TermKey + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        term_cmp(self.term(), other.term())
    }
}

/// `term` as a lookup key for maps keyed by [`OrdTerm`].
pub fn by_term(term: &Term) -> &(dyn TermKey + '_) {
    term
}

/// A borrowed term for hash lookups without a clone: hashed by
/// `make_hash2` (computed once), equal when [`term_cmp`] says so. Terms
/// that are `=:=` hash alike, so this agrees with the ordered maps here.
#[derive(Debug, Clone, Copy)]
struct Keyed<'a> {
    hash: u32,
    term: &'a Term,
}

impl<'a> Keyed<'a> {
    fn new(term: &'a Term) -> Self {
        Keyed {
            hash: crate::term::phash2::make_hash2(term),
            term,
        }
    }
}

/// [`Keyed`] already carries a hash: the map uses it as it is.
#[derive(Default)]
struct KeyedHasher(u64);

impl std::hash::Hasher for KeyedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u32(&mut self, h: u32) {
        // Spread into the high bits too: hashbrown takes its tag from them.
        self.0 = u64::from(h).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type KeyedMap<'a, V> = HashMap<Keyed<'a>, V, std::hash::BuildHasherDefault<KeyedHasher>>;

/// Drops every key `=:=` to an earlier one, keeping the first of each in
/// place: one hash per key, where sorting compared each key a dozen times.
pub fn dedup_keys(keys: &mut Vec<Term>) {
    let keep: Vec<bool> = {
        let mut seen: KeyedMap<'_, ()> =
            KeyedMap::with_capacity_and_hasher(keys.len(), Default::default());
        keys.iter()
            .map(|k| seen.insert(Keyed::new(k), ()).is_none())
            .collect()
    };
    let mut i = 0;
    keys.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}

impl PartialEq for Keyed<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && term_cmp(self.term, other.term) == Ordering::Equal
    }
}
impl Eq for Keyed<'_> {}
impl std::hash::Hash for Keyed<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u32(self.hash);
    }
}

/// A key of [`KeyMap`]: the term with its `make_hash2`, computed once.
#[derive(Debug, Clone)]
pub struct HashedKey {
    hash: u32,
    key: OrdTerm,
}

impl PartialEq for HashedKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}
impl Eq for HashedKey {}
impl std::hash::Hash for HashedKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `Keyed` does, so either finds the other.
        state.write_u32(self.hash);
    }
}
impl hashbrown::Equivalent<HashedKey> for Keyed<'_> {
    fn equivalent(&self, k: &HashedKey) -> bool {
        self.hash == k.hash && term_cmp(self.term, &k.key.0) == Ordering::Equal
    }
}

/// The keys of a state and what each holds, found by hash: a lookup costs
/// one `make_hash2` of the key and, almost always, one comparison, where an
/// ordered map compared the key with a few dozen others (`term_cmp` was the
/// largest cost of a large join). Keys equal under `=:=` hash alike (that is
/// what `make_hash2` is built for), so this agrees with [`OrdTerm`]'s
/// equality. Iteration order is unspecified.
///
/// `make_hash2` has no secret seed: keys that differ only where `phash2`
/// does not look (two pids with the same number on different nodes, two
/// references with the same first word) share a hash, and a map full of
/// such keys is searched linearly. The BEAM's own maps share that property;
/// a peer that could send such keys could also run code on any BEAM member.
#[derive(Debug, Clone)]
pub struct KeyMap<V> {
    map: hashbrown::HashMap<HashedKey, V, std::hash::BuildHasherDefault<KeyedHasher>>,
}

/// Empty, for any value type (a derive would ask `V: Default`).
impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap {
            map: Default::default(),
        }
    }
}

impl<V> KeyMap<V> {
    pub fn new() -> Self {
        KeyMap {
            map: hashbrown::HashMap::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, key: &(impl TermKey + ?Sized)) -> Option<&V> {
        self.map.get(&Keyed::new(key.term()))
    }

    /// [`KeyMap::get`] with the key's hash already computed.
    fn get_keyed(&self, key: &Keyed<'_>) -> Option<&V> {
        self.map.get(key)
    }

    fn get_mut_keyed(&mut self, key: &Keyed<'_>) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    fn remove_keyed(&mut self, key: &Keyed<'_>) -> Option<V> {
        self.map.remove(key)
    }

    fn insert_keyed(&mut self, key: &Keyed<'_>, value: V) -> Option<V> {
        let key = HashedKey {
            hash: key.hash,
            key: OrdTerm(key.term.clone()),
        };
        self.map.insert(key, value)
    }

    pub fn get_mut(&mut self, key: &(impl TermKey + ?Sized)) -> Option<&mut V> {
        self.map.get_mut(&Keyed::new(key.term()))
    }

    pub fn contains_key(&self, key: &(impl TermKey + ?Sized)) -> bool {
        self.get(key).is_some()
    }

    pub fn insert(&mut self, key: OrdTerm, value: V) -> Option<V> {
        let hash = crate::term::phash2::make_hash2(&key.0);
        self.map.insert(HashedKey { hash, key }, value)
    }

    pub fn remove(&mut self, key: &(impl TermKey + ?Sized)) -> Option<V> {
        self.map.remove(&Keyed::new(key.term()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&OrdTerm, &V)> {
        self.into_iter()
    }

    /// The pairs with each key's hash, as the `*_keyed` methods take them.
    fn iter_keyed(&self) -> impl Iterator<Item = (Keyed<'_>, &V)> {
        self.map.iter().map(|(k, v)| {
            let keyed = Keyed {
                hash: k.hash,
                term: &k.key.0,
            };
            (keyed, v)
        })
    }

    pub fn keys(&self) -> impl Iterator<Item = &OrdTerm> {
        self.map.keys().map(|k| &k.key)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }

    /// Keeps the values `keep` says to keep (it may change them).
    pub fn retain(&mut self, mut keep: impl FnMut(&mut V) -> bool) {
        self.map.retain(|_, v| keep(v));
    }
}

impl<V: PartialEq> PartialEq for KeyMap<V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}
impl<V: Eq> Eq for KeyMap<V> {}

#[cfg(test)]
impl<V> std::ops::Index<&OrdTerm> for KeyMap<V> {
    type Output = V;
    /// Panics when `key` is absent, as `BTreeMap`'s index does (tests only).
    fn index(&self, key: &OrdTerm) -> &V {
        self.get(key).expect("key in KeyMap")
    }
}

impl<V> FromIterator<(OrdTerm, V)> for KeyMap<V> {
    fn from_iter<I: IntoIterator<Item = (OrdTerm, V)>>(pairs: I) -> Self {
        let mut m = KeyMap::new();
        for (k, v) in pairs {
            m.insert(k, v);
        }
        m
    }
}

impl<V, const N: usize> From<[(OrdTerm, V); N]> for KeyMap<V> {
    fn from(pairs: [(OrdTerm, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl<'a, V> IntoIterator for &'a KeyMap<V> {
    type Item = (&'a OrdTerm, &'a V);
    type IntoIter = std::iter::Map<
        hashbrown::hash_map::Iter<'a, HashedKey, V>,
        fn((&'a HashedKey, &'a V)) -> (&'a OrdTerm, &'a V),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.map.iter().map(|(k, v)| (&k.key, v))
    }
}

/// One written value: the `{value, timestamp}` tuple DeltaCrdt keys entries by.
/// Field order makes the derived order the tuple's term order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamped {
    pub value: OrdTerm,
    /// The writer's `System.monotonic_time(:nanosecond)`: often a large negative number.
    pub ts: i64,
}

impl Stamped {
    pub fn to_term(&self) -> Term {
        tuple(vec![self.value.0.clone(), int(self.ts)])
    }

    fn from_term(term: &Term) -> Result<Self, CrdtTermError> {
        const AT: &str = "entry";
        match as_tuple(term) {
            Some([value, ts]) => {
                check_depth(value)?;
                Ok(Stamped {
                    value: OrdTerm(value.clone()),
                    ts: int_field(ts, AT)?,
                })
            }
            _ => Err(CrdtTermError::Shape {
                at: AT,
                expected: "a {value, timestamp} tuple",
            }),
        }
    }
}

/// All entries of one key: `%{{value, ts} => MapSet of dots}`.
pub type Entries = litemap::LiteMap<Stamped, DotSet>;

/// An AWLWWMap state or delta. States carry a compressed context
/// ([`Dots::Context`]); deltas from `add`/`remove` carry an exact set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwLwwMap {
    pub dots: Dots,
    pub value: KeyMap<Entries>,
}

/// A change of a key's raw entries between two states: what DeltaCrdt feeds
/// its MerkleMap (`put(key, entries)` / `delete(key)`).
#[derive(Debug, Clone, PartialEq)]
pub enum RawChange {
    /// `entries` is the key's `%{{value, ts} => MapSet}` wire term.
    Put {
        key: Term,
        entries: Term,
    },
    Delete {
        key: Term,
    },
}

/// A change of a key's read value: what DeltaCrdt hands to `on_diffs`.
#[derive(Debug, Clone, PartialEq)]
pub enum Diff {
    Add { key: Term, value: Term },
    Remove { key: Term },
}

impl Diff {
    /// `{:add, key, value}` or `{:remove, key}`.
    pub fn to_term(&self) -> Term {
        match self {
            Diff::Add { key, value } => tuple(vec![atom("add"), key.clone(), value.clone()]),
            Diff::Remove { key } => tuple(vec![atom("remove"), key.clone()]),
        }
    }
}

/// What joining a delta into a state changed, in the order DeltaCrdt reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinOutcome {
    /// For the MerkleMap: keys whose raw entries changed.
    pub raw: Vec<RawChange>,
    /// For `on_diffs`: keys among those whose read value changed.
    pub diffs: Vec<Diff>,
}

impl AwLwwMap {
    /// A fresh replica's state: empty, with an empty compressed context.
    pub fn new() -> Self {
        AwLwwMap::default()
    }

    /// The delta that sets `key` to `value` as a write by `node` at `ts`: it
    /// removes every dot now under `key` and adds one new dot.
    pub fn add(&self, key: Term, value: Term, node: NodeId, ts: i64) -> AwLwwMap {
        let key = OrdTerm(key);
        let removal = self.removal_of(&key.0);
        let dot = self.dots.next_dot(node);
        let stamped = Stamped {
            value: OrdTerm(value),
            ts,
        };
        // Upstream puts the new dot into whatever dots the same {value, ts}
        // already had; those are all in `removal` too, so the union below is
        // the same set.
        let mut add_dots: DotSet = self
            .value
            .get(&key)
            .and_then(|e| e.get(&stamped))
            .cloned()
            .unwrap_or_default();
        add_dots.insert(dot);
        let addition = AwLwwMap {
            dots: Dots::Set(add_dots),
            value: KeyMap::from([(
                key.clone(),
                Entries::from_iter([(stamped, DotSet::from_iter([dot]))]),
            )]),
        };
        match &removal.dots {
            Dots::Set(s) if s.is_empty() => addition,
            // Going through the real join keeps upstream's behaviour even for
            // a malformed state whose entries already hold the new dot.
            _ => removal.join_ord(&addition, &[key]),
        }
    }

    /// The delta that removes `key`: every dot under it, and no values.
    /// `node` is unused, as upstream; every operation takes it.
    pub fn remove(&self, key: &Term, _node: NodeId) -> AwLwwMap {
        self.removal_of(key)
    }

    /// The delta that removes everything this state has seen: the whole
    /// context with no values. Join it with every current key to apply it.
    /// (DeltaCrdt 0.6.4 defines this but its process cannot run it: operations
    /// there must name a key.)
    pub fn clear(&self, _node: NodeId) -> AwLwwMap {
        AwLwwMap {
            dots: self.dots.clone(),
            value: KeyMap::new(),
        }
    }

    fn removal_of(&self, key: &Term) -> AwLwwMap {
        let mut dots = DotSet::new();
        for set in self
            .value
            .get(by_term(key))
            .into_iter()
            .flat_map(|e| e.values())
        {
            dots.extend(set);
        }
        AwLwwMap {
            dots: Dots::Set(dots),
            value: KeyMap::new(),
        }
    }

    /// DeltaCrdt's `join(self, other, keys)`. Only `keys` are joined entry by
    /// entry; for any other key `other`'s entries (if any) replace `self`'s.
    /// The context is always the union of both contexts.
    pub fn join(&self, other: &AwLwwMap, keys: &[Term]) -> AwLwwMap {
        let keys: Vec<OrdTerm> = keys.iter().cloned().map(OrdTerm).collect();
        self.join_ord(other, &keys)
    }

    fn join_ord(&self, other: &AwLwwMap, keys: &[OrdTerm]) -> AwLwwMap {
        let listed: BTreeSet<&OrdTerm> = keys.iter().collect();
        let mut value: KeyMap<Entries> = KeyMap::new();
        for (k, e) in self.value.iter().chain(other.value.iter()) {
            if !listed.contains(k) {
                value.insert(k.clone(), e.clone());
            }
        }
        for key in listed {
            let joined = join_entries(
                self.value.get(key),
                &self.dots,
                other.value.get(key),
                &other.dots,
            );
            if !joined.is_empty() {
                value.insert(key.clone(), joined);
            }
        }
        AwLwwMap {
            dots: self.dots.union(&other.dots),
            value,
        }
    }

    /// Every key this map holds, in term order.
    pub fn keys(&self) -> Vec<Term> {
        let mut keys: Vec<&OrdTerm> = self.value.keys().collect();
        keys.sort();
        keys.into_iter().map(|k| k.0.clone()).collect()
    }

    /// This state with its values cut down to `keys` and its whole context:
    /// what a sync sends for a list of differing keys.
    pub fn slice(&self, keys: &[Term]) -> AwLwwMap {
        let value = keys
            .iter()
            .filter_map(|k| {
                let e = self.value.get(by_term(k))?.clone();
                Some((OrdTerm(k.clone()), e))
            })
            .collect();
        AwLwwMap {
            dots: self.dots.clone(),
            value,
        }
    }

    /// True when `context` has seen one of the dots of `key`'s entries: a
    /// state with that context and no entries for `key` would remove them.
    pub fn seen_by(&self, key: &Term, context: &Dots) -> bool {
        self.value.get(by_term(key)).is_some_and(|entries| {
            entries
                .values()
                .any(|dots| dots.iter().any(|d| context.covers(d)))
        })
    }

    /// The current value of `key`, if any.
    pub fn get(&self, key: &Term) -> Option<&Term> {
        self.value
            .get(by_term(key))
            .and_then(winner)
            .map(|s| &s.value.0)
    }

    /// Every key's current value. A key whose entries are empty (only a
    /// malformed peer produces one; upstream's read would crash on it) reads
    /// as absent.
    pub fn read(&self) -> BTreeMap<OrdTerm, Term> {
        self.value
            .iter()
            .filter_map(|(k, e)| Some((k.clone(), winner(e)?.value.0.clone())))
            .collect()
    }

    /// The current values of those of `keys` that are present.
    pub fn read_keys(&self, keys: &[Term]) -> BTreeMap<OrdTerm, Term> {
        keys.iter()
            .filter_map(|k| Some((OrdTerm(k.clone()), self.get(k)?.clone())))
            .collect()
    }

    /// The raw entries of `key` as their wire term (MapSets in the Elixir
    /// 1.14 form; see [`AwLwwMap::entries_term_in`]).
    pub fn entries_term(&self, key: &Term) -> Option<Term> {
        self.entries_term_in(key, MapSetForm::Versioned)
    }

    /// The raw entries of `key` as their wire term with MapSets of `form`:
    /// what the MerkleMap of a BEAM replica of that form hashes.
    pub fn entries_term_in(&self, key: &Term, form: MapSetForm) -> Option<Term> {
        self.value
            .get(by_term(key))
            .map(|e| entries_to_term(e, form))
    }

    /// The MapSet form of the first well-formed MapSet in a state or delta
    /// term a peer sent: the form that peer's Elixir builds, since a BEAM
    /// replica rebuilds every entry it joins in its own form. `None` when
    /// the term holds no MapSet (an empty state, or a context only).
    pub fn mapset_form_of(term: &Term) -> Option<MapSetForm> {
        let fields = elixir::match_struct(term, STRUCT_NAME)?;
        let Term::Map(values) = elixir::field(fields, "value")? else {
            return None;
        };
        values.map.values().find_map(|entries| match entries {
            Term::Map(e) => e.map.values().find_map(MapSetForm::of),
            _ => None,
        })
    }

    /// Joins `delta` into this state for `keys` and reports what changed,
    /// as DeltaCrdt does on every operation and every received sync.
    ///
    /// The result is exactly `*self = self.join(delta, keys)` with the
    /// changes [`raw_changes`] and [`diffs`] report for it (in the order, and
    /// with the repetitions, of `keys`), but computed in place: only the
    /// listed keys and `delta`'s own keys are touched, so a one-key operation
    /// on a map of n keys costs O(log n) instead of a copy of the map.
    pub fn apply(&mut self, delta: &AwLwwMap, keys: &[Term]) -> JoinOutcome {
        self.apply_in(delta, keys, MapSetForm::Versioned)
    }

    /// [`AwLwwMap::apply`], reporting raw entries with MapSets of `form`.
    pub fn apply_in(&mut self, delta: &AwLwwMap, keys: &[Term], form: MapSetForm) -> JoinOutcome {
        self.apply_with(Cow::Borrowed(delta), keys, form, None)
    }

    /// [`AwLwwMap::apply_in`] of a delta the caller gives up: a key new
    /// here that keeps all of its entries takes them from the delta
    /// instead of copying them (every local write, most of a peer's push).
    pub fn apply_in_owned(
        &mut self,
        delta: AwLwwMap,
        keys: &[Term],
        form: MapSetForm,
    ) -> JoinOutcome {
        self.apply_with(Cow::Owned(delta), keys, form, None)
    }

    /// [`AwLwwMap::apply_in`] for a replica that keeps an exact [`Seen`]
    /// next to this state instead of trusting its compressed context:
    /// - our side of the join is judged by `seen`, so an entry whose dot we
    ///   never received is taken even when `self.dots` (or a peer's
    ///   context) claims it;
    /// - `seen` takes the dots of the delta's entries, and all of an exact
    ///   delta's dots (a local `add`/`remove`), but never a peer's
    ///   compressed context: its claims about keys it did not send are not
    ///   ours to make;
    /// - every dot a key loses here (ours removed, theirs refused) is
    ///   recorded in `tombstones`, so the removal can be vouched for per key
    ///   when that key is shipped later;
    /// - `self.dots` becomes the per-node maximum of `seen`.
    pub fn apply_exact(
        &mut self,
        delta: &AwLwwMap,
        keys: &[Term],
        form: MapSetForm,
        seen: &mut Seen,
        tombstones: &mut Tombstones,
    ) -> JoinOutcome {
        self.apply_with(Cow::Borrowed(delta), keys, form, Some((seen, tombstones)))
    }

    /// [`AwLwwMap::apply_exact`] of a delta the caller gives up (see
    /// [`AwLwwMap::apply_in_owned`]).
    pub fn apply_exact_owned(
        &mut self,
        delta: AwLwwMap,
        keys: &[Term],
        form: MapSetForm,
        seen: &mut Seen,
        tombstones: &mut Tombstones,
    ) -> JoinOutcome {
        self.apply_with(Cow::Owned(delta), keys, form, Some((seen, tombstones)))
    }

    fn apply_with(
        &mut self,
        mut delta: Cow<'_, AwLwwMap>,
        keys: &[Term],
        form: MapSetForm,
        mut exact: Option<(&mut Seen, &mut Tombstones)>,
    ) -> JoinOutcome {
        /// What changed for one distinct key: its new entries as a term
        /// (`None`: deleted) and its read change (`Some(None)`: removed).
        struct Change {
            entries: Option<Term>,
            read: Option<Option<Term>>,
        }
        let nil = atom("nil");
        // Each distinct listed key is joined once, against the state before
        // the join (a key's join reads only its own entries and the two
        // contexts, which change last); `seen` maps it to its change, if any.
        let mut seen: KeyedMap<'_, Option<usize>> =
            KeyedMap::with_capacity_and_hasher(keys.len(), Default::default());
        let mut changes: Vec<Change> = Vec::new();
        let mut order: Vec<Option<usize>> = Vec::with_capacity(keys.len());
        let mut taken_dots: Vec<Dot> = Vec::new();
        for key in keys {
            let keyed = Keyed::new(key);
            // A single key (every local operation) cannot repeat.
            let several = keys.len() > 1;
            if let Some(&at) = several.then(|| seen.get(&keyed)).flatten() {
                order.push(at);
                continue;
            }
            let old = self.value.get_keyed(&keyed);
            let theirs = delta.value.get_keyed(&keyed);
            // Equal entries join to themselves whatever the contexts (every
            // dot is on both sides): nothing to compute or report. An entry
            // with no dots (only a malformed peer sends one) would be
            // dropped by any join, so it takes the general path.
            let unchanged = match (old, theirs) {
                (Some(o), _) if o.values().any(|d| d.is_empty()) => false,
                (Some(_), Some(_)) => old == theirs,
                // Nothing on their side: ours stays unless their context has
                // seen one of our dots (a delete). The common case when a
                // replica with nothing ships its "values" for our keys.
                (Some(o), None) => o
                    .values()
                    .all(|d| d.iter().all(|dot| !delta.dots.covers(dot))),
                (None, _) => false,
            };
            // A key new here whose incoming dots are all unseen here keeps
            // their entries exactly as they are: taken from an owned delta
            // below instead of copied (nothing is lost, so no tombstone).
            let whole = !unchanged
                && old.is_none()
                && matches!(delta, Cow::Owned(_))
                && theirs.is_some_and(|only| {
                    only.values().all(|d| {
                        !d.is_empty()
                            && match &exact {
                                Some((seen, _)) => d.iter().all(|dot| !seen.covers(dot)),
                                None => d.iter().all(|dot| !self.dots.covers(dot)),
                            }
                    })
                });
            let joined = if unchanged || whole {
                Entries::new()
            } else {
                match &exact {
                    Some((seen, _)) => join_entries(old, &**seen, theirs, &delta.dots),
                    None => join_entries(old, &self.dots, theirs, &delta.dots),
                }
            };
            if let (Some((_, tombs)), false, false) = (&mut exact, unchanged, whole) {
                record_losses(tombs, &keyed, [old, theirs], &joined);
            }
            let joined = match &mut delta {
                Cow::Owned(d) if whole => {
                    let taken = d
                        .value
                        .get_mut_keyed(&keyed)
                        .map(std::mem::take)
                        .unwrap_or_default();
                    // Their dots are seen below from the delta's entries,
                    // which no longer hold these.
                    if exact.is_some() {
                        taken_dots.extend(taken.values().flat_map(|d| d.iter()).copied());
                    }
                    taken
                }
                _ => joined,
            };
            let new = (!joined.is_empty()).then_some(&joined);
            let at = if unchanged || old == new {
                None
            } else {
                let n = read_entries(new).unwrap_or(&nil);
                let o = read_entries(old).unwrap_or(&nil);
                let read = if term_cmp(o, n) == Ordering::Equal {
                    None
                } else if term_cmp(n, &nil) == Ordering::Equal {
                    Some(None)
                } else {
                    Some(Some(n.clone()))
                };
                let entries = new.map(|e| entries_to_term(e, form));
                // The key is cloned only when it is new here.
                let existed = old.is_some();
                match (existed, joined.is_empty()) {
                    (true, true) => {
                        self.value.remove_keyed(&keyed);
                    }
                    (true, false) => {
                        if let Some(slot) = self.value.get_mut_keyed(&keyed) {
                            *slot = joined;
                        }
                    }
                    (false, false) => {
                        self.value.insert_keyed(&keyed, joined);
                    }
                    (false, true) => {}
                }
                changes.push(Change { entries, read });
                Some(changes.len() - 1)
            };
            if several {
                seen.insert(keyed, at);
            }
            order.push(at);
        }
        // Keys the delta carries but the join does not list: its entries
        // replace ours wholesale, as upstream's `Map.merge`.
        // The delta's keys carry their hashes: none is computed again.
        for (k, e) in delta.value.iter_keyed() {
            let listed = match keys {
                [only] => term_cmp(only, k.term) == Ordering::Equal,
                _ => seen.contains_key(&k),
            };
            if !listed {
                self.value.insert_keyed(&k, e.clone());
            }
        }
        match exact {
            None => self.dots = self.dots.union(&delta.dots),
            Some((seen, _)) => {
                // Raised in place: a local write must not copy the context.
                let mut max = match std::mem::take(&mut self.dots) {
                    Dots::Context(c) => c,
                    Dots::Set(_) => seen.max(),
                };
                let mut see = |dot: Dot| {
                    if seen.insert(dot) {
                        max.insert(dot);
                    }
                };
                for entries in delta.value.values() {
                    entries
                        .values()
                        .flat_map(|d| d.iter())
                        .for_each(|d| see(*d));
                }
                taken_dots.into_iter().for_each(&mut see);
                if let Dots::Set(set) = &delta.dots {
                    set.iter().for_each(|d| see(*d));
                }
                self.dots = Dots::Context(max);
            }
        }
        // Reported per position of `keys`, each with the key as given there
        // (`5` and a big-encoded `5` are one key but two terms); a change's
        // terms move into its last position and are copied for earlier ones.
        let mut uses = vec![0usize; changes.len()];
        for i in order.iter().flatten() {
            uses[*i] += 1;
        }
        let mut out = JoinOutcome::default();
        for (key, at) in keys.iter().zip(order) {
            let Some(i) = at else {
                continue;
            };
            uses[i] -= 1;
            let c = &mut changes[i];
            let (entries, read) = if uses[i] == 0 {
                (c.entries.take(), c.read.take())
            } else {
                (c.entries.clone(), c.read.clone())
            };
            out.raw.push(match entries {
                None => RawChange::Delete { key: key.clone() },
                Some(entries) => RawChange::Put {
                    key: key.clone(),
                    entries,
                },
            });
            match read {
                None => {}
                Some(None) => out.diffs.push(Diff::Remove { key: key.clone() }),
                Some(Some(value)) => out.diffs.push(Diff::Add {
                    key: key.clone(),
                    value,
                }),
            }
        }
        out
    }

    /// `%DeltaCrdt.AWLWWMap{dots: ..., value: %{key => %{{v, ts} => MapSet}}}`.
    /// `slice(keys)` with context `dots`, straight to its wire term: what a
    /// replica ships at the end of a round, without copying the entries
    /// into an intermediate map first.
    /// MapSets are built in `form`.
    pub fn slice_term(&self, keys: &[Term], dots: Term, form: MapSetForm) -> Term {
        let value = keys
            .iter()
            .filter_map(|k| {
                let e = self.value.get(by_term(k))?;
                Some((k.clone(), entries_to_term(e, form)))
            })
            .collect();
        elixir::build_struct(
            STRUCT_NAME,
            vec![("dots", dots), ("value", Term::Map(Map { map: value }))],
        )
    }

    /// The state term with MapSets in the Elixir 1.14 form (see
    /// [`AwLwwMap::to_term_in`]).
    pub fn to_term(&self) -> Term {
        self.to_term_in(MapSetForm::Versioned)
    }

    /// `%DeltaCrdt.AWLWWMap{}` with every MapSet built in `form`.
    pub fn to_term_in(&self, form: MapSetForm) -> Term {
        let value = self
            .value
            .iter()
            .map(|(k, e)| (k.0.clone(), entries_to_term(e, form)))
            .collect();
        elixir::build_struct(
            STRUCT_NAME,
            vec![
                ("dots", self.dots.to_term_in(form)),
                ("value", Term::Map(Map { map: value })),
            ],
        )
    }

    /// Parses a state or delta sent by a peer. Never panics; rejects any
    /// shape DeltaCrdt would not produce, integers beyond `i64`, keys that
    /// collide under `=:=`, and terms deeper than [`MAX_TERM_DEPTH`].
    pub fn from_term(term: &Term) -> Result<Self, CrdtTermError> {
        let fields = elixir::match_struct(term, STRUCT_NAME).ok_or(CrdtTermError::Shape {
            at: "state",
            expected: "a %DeltaCrdt.AWLWWMap{} struct",
        })?;
        let missing = |at| CrdtTermError::Shape {
            at,
            expected: "the field to be present",
        };
        let dots = Dots::from_term(elixir::field(fields, "dots").ok_or(missing("dots"))?)?;
        let Term::Map(values) = elixir::field(fields, "value").ok_or(missing("value"))? else {
            return Err(CrdtTermError::Shape {
                at: "value",
                expected: "a map",
            });
        };
        let mut value = KeyMap::new();
        for (key, entries) in &values.map {
            check_depth(key)?;
            if value
                .insert(OrdTerm(key.clone()), entries_from_term(entries)?)
                .is_some()
            {
                return Err(CrdtTermError::DuplicateKey { at: "value" });
            }
        }
        Ok(AwLwwMap { dots, value })
    }
}

/// Per key, the largest counter of each node among the dots that key lost
/// in a join: what a replica keeping a [`Seen`] can vouch was removed under
/// that key (see `crdt::sync`). Entries at or below the replica's vouched
/// prefix say nothing the prefix does not, and are dropped by
/// [`prune_tombstones`].
pub type Tombstones = KeyMap<Context>;

/// Records in `tombs` every dot the sides held under the key that `joined`
/// no longer holds.
fn record_losses<const N: usize>(
    tombs: &mut Tombstones,
    key: &Keyed<'_>,
    sides: [Option<&Entries>; N],
    joined: &Entries,
) {
    let kept = |d: &Dot| joined.values().any(|set| set.contains(d));
    let mut lost = sides
        .into_iter()
        .flatten()
        .flat_map(|e| e.values())
        .flat_map(|set| set.iter())
        .filter(|d| !kept(d))
        .peekable();
    if lost.peek().is_none() {
        return;
    }
    let lost: Vec<Dot> = lost.copied().collect();
    let ctx = match tombs.get_mut_keyed(key) {
        Some(ctx) => ctx,
        None => {
            tombs.insert_keyed(key, Context::new());
            match tombs.get_mut_keyed(key) {
                Some(ctx) => ctx,
                None => return,
            }
        }
    };
    for d in lost {
        ctx.insert(d);
    }
}

/// Drops what `prefix` already vouches for from `tombs`, and the keys left
/// with nothing.
pub fn prune_tombstones(tombs: &mut Tombstones, prefix: &Context) {
    tombs.retain(|ctx| {
        ctx.retain(|node, counter| counter > prefix.max(node));
        !ctx.is_empty()
    });
}

/// One key's entries after a join: an entry's dot stays when both sides
/// hold it, or when one side holds it and the other side has not seen it.
fn join_entries(
    e1: Option<&Entries>,
    c1: &(impl Covers + ?Sized),
    e2: Option<&Entries>,
    c2: &(impl Covers + ?Sized),
) -> Entries {
    // One side without entries (a key new to a replica, the bulk of a first
    // sync): the other side's dots stay unless the empty side has seen them.
    match (e1, e2) {
        (None, Some(only)) => return uncovered_entries(only, c1),
        (Some(only), None) => return uncovered_entries(only, c2),
        _ => {}
    }
    let empty = Entries::new();
    let (e1, e2) = (e1.unwrap_or(&empty), e2.unwrap_or(&empty));
    let no_dots = DotSet::new();
    let stamps: BTreeSet<&Stamped> = e1.keys().chain(e2.keys()).collect();
    let mut out = Entries::new();
    for stamped in stamps {
        let s1 = e1.get(stamped).unwrap_or(&no_dots);
        let s2 = e2.get(stamped).unwrap_or(&no_dots);
        let mut kept = s1.intersection(s2);
        kept.extend(&s1.uncovered_by(c2));
        kept.extend(&s2.uncovered_by(c1));
        if !kept.is_empty() {
            out.insert(stamped.clone(), kept);
        }
    }
    out
}

/// [`join_entries`] against a side with no entries and context `seen`:
/// each entry keeps the dots `seen` does not cover, and goes when none is left.
fn uncovered_entries(entries: &Entries, seen: &(impl Covers + ?Sized)) -> Entries {
    entries
        .iter()
        .filter_map(|(stamped, dots)| {
            let kept = dots.uncovered_by(seen);
            (!kept.is_empty()).then(|| (stamped.clone(), kept))
        })
        .collect()
}

/// The entry a read returns: the largest timestamp, and on a tie the first
/// in iteration order (upstream's `Enum.max_by` keeps the first maximum).
fn winner(entries: &Entries) -> Option<&Stamped> {
    let mut best: Option<&Stamped> = None;
    for stamped in entries.keys() {
        if best.is_none_or(|b| stamped.ts > b.ts) {
            best = Some(stamped);
        }
    }
    best
}

/// The value a read returns for a key with these entries.
fn read_entries(entries: Option<&Entries>) -> Option<&Term> {
    entries.and_then(winner).map(|s| &s.value.0)
}

/// Keys among `keys` whose raw entries differ between `old` and `new`, in
/// the order (and with the repetitions) of `keys`.
pub fn raw_changes(old: &AwLwwMap, new: &AwLwwMap, keys: &[Term]) -> Vec<RawChange> {
    keys.iter()
        .filter_map(
            |key| match (old.value.get(by_term(key)), new.value.get(by_term(key))) {
                (o, n) if o == n => None,
                (_, None) => Some(RawChange::Delete { key: key.clone() }),
                (_, Some(e)) => Some(RawChange::Put {
                    key: key.clone(),
                    entries: entries_to_term(e, MapSetForm::Versioned),
                }),
            },
        )
        .collect()
}

/// The `on_diffs` list for `keys` between `old` and `new`. As upstream,
/// a value equal to the atom `nil` is indistinguishable from no value: a
/// key whose new value is `nil` is reported removed.
pub fn diffs(old: &AwLwwMap, new: &AwLwwMap, keys: &[Term]) -> Vec<Diff> {
    let nil = atom("nil");
    keys.iter()
        .filter_map(|key| {
            let o = old.get(key).unwrap_or(&nil);
            let n = new.get(key).unwrap_or(&nil);
            if term_cmp(o, n) == Ordering::Equal {
                None
            } else if term_cmp(n, &nil) == Ordering::Equal {
                Some(Diff::Remove { key: key.clone() })
            } else {
                Some(Diff::Add {
                    key: key.clone(),
                    value: n.clone(),
                })
            }
        })
        .collect()
}

fn entries_to_term(entries: &Entries, form: MapSetForm) -> Term {
    let map = entries
        .iter()
        .map(|(s, dots)| (s.to_term(), dots.to_term_in(form)))
        .collect();
    Term::Map(Map { map })
}

fn entries_from_term(term: &Term) -> Result<Entries, CrdtTermError> {
    let Term::Map(m) = term else {
        return Err(CrdtTermError::Shape {
            at: "entries",
            expected: "a map {value, ts} => MapSet",
        });
    };
    let mut entries = Entries::new();
    for (stamped, dots) in &m.map {
        if entries
            .insert(Stamped::from_term(stamped)?, DotSet::from_term(dots)?)
            .is_some()
        {
            return Err(CrdtTermError::DuplicateKey { at: "entries" });
        }
    }
    Ok(entries)
}

/// Rejects terms nesting deeper than [`MAX_TERM_DEPTH`], without recursing.
fn check_depth(term: &Term) -> Result<(), CrdtTermError> {
    if crate::term::depth_within(term, MAX_TERM_DEPTH) {
        Ok(())
    } else {
        Err(CrdtTermError::TooDeep {
            limit: MAX_TERM_DEPTH,
        })
    }
}

// ---- Erlang term order ----------------------------------------------------

/// Erlang's exact term order (the order of map keys, where `=:=` is
/// equality): number < atom < reference < fun < port < pid < tuple < map
/// < nil < list < bitstring; any integer sorts before any float; equal
/// integers are equal whatever their encoding; a byte list equals the list
/// of its bytes. Exact for everything DeltaCrdt and Horde store except the
/// relative order of two different references, funs, ports or pids of
/// different nodes, which is a stable best effort (it only matters to
/// break a timestamp tie). Recurses once per nesting level.
pub fn term_cmp(a: &Term, b: &Term) -> Ordering {
    // The shapes map keys are made of, compared before the general path
    // (kept out of line: its large frame made every call cost as much).
    match (a, b) {
        (Term::Atom(x), Term::Atom(y)) => x.name.as_bytes().cmp(y.name.as_bytes()),
        (Term::Binary(x), Term::Binary(y)) => x.bytes.cmp(&y.bytes),
        (Term::FixInteger(x), Term::FixInteger(y)) => x.value.cmp(&y.value),
        // Horde's child ids: `{:process, id}` keys, the table of children.
        (Term::BigInteger(x), Term::BigInteger(y)) => x.value.cmp(&y.value),
        (Term::Tuple(x), Term::Tuple(y)) => x
            .elements
            .len()
            .cmp(&y.elements.len())
            .then_with(|| cmp_seq(&x.elements, &y.elements)),
        _ => term_cmp_general(a, b),
    }
}

/// [`term_cmp`] for every other pair of shapes.
#[inline(never)]
fn term_cmp_general(a: &Term, b: &Term) -> Ordering {
    let (a, b) = (peel(a), peel(b));
    let (ra, rb) = (rank(a), rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Term::Atom(x), Term::Atom(y)) => x.name.as_bytes().cmp(y.name.as_bytes()),
        (Term::Tuple(x), Term::Tuple(y)) => x
            .elements
            .len()
            .cmp(&y.elements.len())
            .then_with(|| cmp_seq(&x.elements, &y.elements)),
        (Term::Map(x), Term::Map(y)) => cmp_maps(&x.map, &y.map),
        (Term::Pid(x), Term::Pid(y)) => x
            .node
            .name
            .cmp(&y.node.name)
            .then(x.serial.cmp(&y.serial))
            .then(x.id.cmp(&y.id))
            .then(x.creation.cmp(&y.creation)),
        (Term::Port(x), Term::Port(y)) => x
            .node
            .name
            .cmp(&y.node.name)
            .then(x.id.cmp(&y.id))
            .then(x.creation.cmp(&y.creation)),
        (Term::Reference(x), Term::Reference(y)) => x
            .node
            .name
            .cmp(&y.node.name)
            .then(x.id.len().cmp(&y.id.len()))
            .then_with(|| x.id.iter().rev().cmp(y.id.iter().rev()))
            .then(x.creation.cmp(&y.creation)),
        _ => match ra {
            Rank::Number => cmp_numbers(a, b),
            Rank::Fun => cmp_funs(a, b),
            Rank::Nil => Ordering::Equal,
            Rank::List => cmp_lists(a, b),
            Rank::Bitstring => cmp_bits(a, b),
            // Same rank implies same variant for the remaining ranks.
            _ => Ordering::Equal,
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Number,
    Atom,
    Reference,
    Fun,
    Port,
    Pid,
    Tuple,
    Map,
    Nil,
    List,
    Bitstring,
}

/// `[| x]` (an improper list with no elements) is just `x`.
fn peel(mut t: &Term) -> &Term {
    while let Term::ImproperList(l) = t {
        if !l.elements.is_empty() {
            break;
        }
        t = &l.last;
    }
    t
}

fn rank(t: &Term) -> Rank {
    match t {
        Term::FixInteger(_) | Term::BigInteger(_) | Term::Float(_) => Rank::Number,
        Term::Atom(_) => Rank::Atom,
        Term::Reference(_) => Rank::Reference,
        Term::ExternalFun(_) | Term::InternalFun(_) => Rank::Fun,
        Term::Port(_) => Rank::Port,
        Term::Pid(_) => Rank::Pid,
        Term::Tuple(_) => Rank::Tuple,
        Term::Map(_) => Rank::Map,
        Term::List(l) if l.elements.is_empty() => Rank::Nil,
        Term::ByteList(l) if l.bytes.is_empty() => Rank::Nil,
        Term::List(_) | Term::ByteList(_) | Term::ImproperList(_) => Rank::List,
        Term::Binary(_) | Term::BitBinary(_) => Rank::Bitstring,
    }
}

fn cmp_seq(a: &[Term], b: &[Term]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match term_cmp(x, y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

fn cmp_numbers(a: &Term, b: &Term) -> Ordering {
    match (a, b) {
        (Term::Float(x), Term::Float(y)) => {
            x.value.partial_cmp(&y.value).unwrap_or(Ordering::Equal)
        }
        // Exact order: every integer sorts before every float.
        (Term::Float(_), _) => Ordering::Greater,
        (_, Term::Float(_)) => Ordering::Less,
        (Term::FixInteger(x), Term::FixInteger(y)) => x.value.cmp(&y.value),
        // Compared in place: Horde's child ids are 128-bit integers, and a
        // copy of each side made every lookup of a child allocate twice.
        (Term::BigInteger(x), Term::BigInteger(y)) => x.value.cmp(&y.value),
        (Term::FixInteger(x), Term::BigInteger(y)) => cmp_small_big(i64::from(x.value), &y.value),
        (Term::BigInteger(x), Term::FixInteger(y)) => {
            cmp_small_big(i64::from(y.value), &x.value).reverse()
        }
        _ => big(a).value.cmp(&big(b).value),
    }
}

/// `a` against `b`, without making a big integer of `a`.
fn cmp_small_big(a: i64, b: &num_bigint::BigInt) -> Ordering {
    match i64::try_from(b) {
        Ok(b) => a.cmp(&b),
        Err(_) if b.sign() == num_bigint::Sign::Minus => Ordering::Greater,
        Err(_) => Ordering::Less,
    }
}

fn big(t: &Term) -> BigInteger {
    match t {
        Term::FixInteger(i) => BigInteger::from(i64::from(i.value)),
        Term::BigInteger(b) => b.clone(),
        _ => BigInteger::from(0i64),
    }
}

/// Maps: by size, then keys in order, then values in key order.
fn cmp_maps(a: &crate::term::TermMap, b: &crate::term::TermMap) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| {
        // Most comparisons are of equal maps built alike (an entry's value
        // against the same value from a peer), their pairs in the same
        // order: equal pair by pair means equal, with nothing sorted. Any
        // other pair of maps takes the sorted comparison below.
        if a.iter().zip(b.iter()).all(|((ka, va), (kb, vb))| {
            term_cmp(ka, kb) == Ordering::Equal && term_cmp(va, vb) == Ordering::Equal
        }) {
            return Ordering::Equal;
        }
        let (ka, kb) = (sorted_entries(a), sorted_entries(b));
        for ((x, _), (y, _)) in ka.iter().zip(&kb) {
            match term_cmp(x, y) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        for ((_, x), (_, y)) in ka.iter().zip(&kb) {
            match term_cmp(x, y) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        Ordering::Equal
    })
}

fn sorted_entries(m: &crate::term::TermMap) -> Vec<(&Term, &Term)> {
    let mut kv: Vec<(&Term, &Term)> = m.iter().collect();
    kv.sort_by(|x, y| term_cmp(x.0, y.0));
    kv
}

fn cmp_funs(a: &Term, b: &Term) -> Ordering {
    match (a, b) {
        (Term::ExternalFun(x), Term::ExternalFun(y)) => x
            .module
            .name
            .cmp(&y.module.name)
            .then(x.function.name.cmp(&y.function.name))
            .then(x.arity.cmp(&y.arity)),
        (Term::InternalFun(x), Term::InternalFun(y)) => cmp_internal_funs(x, y),
        (Term::InternalFun(_), _) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

fn cmp_internal_funs(a: &InternalFun, b: &InternalFun) -> Ordering {
    use InternalFun::{New, Old};
    match (a, b) {
        (
            New {
                module: m1,
                uniq: u1,
                index: i1,
                free_vars: v1,
                ..
            },
            New {
                module: m2,
                uniq: u2,
                index: i2,
                free_vars: v2,
                ..
            },
        ) => m1
            .name
            .cmp(&m2.name)
            .then(i1.cmp(i2))
            .then(u1.cmp(u2))
            .then_with(|| v1.len().cmp(&v2.len()))
            .then_with(|| cmp_seq(v1, v2)),
        (
            Old {
                module: m1,
                index: i1,
                uniq: u1,
                free_vars: v1,
                ..
            },
            Old {
                module: m2,
                index: i2,
                uniq: u2,
                free_vars: v2,
                ..
            },
        ) => m1
            .name
            .cmp(&m2.name)
            .then(i1.cmp(i2))
            .then(u1.cmp(u2))
            .then_with(|| v1.len().cmp(&v2.len()))
            .then_with(|| cmp_seq(v1, v2)),
        (Old { .. }, New { .. }) => Ordering::Less,
        (New { .. }, Old { .. }) => Ordering::Greater,
    }
}

/// The empty list, the tail of every proper list.
static NIL: Term = Term::List(List {
    elements: Vec::new(),
});

/// A list's elements (byte lists and nested improper tails flattened) and
/// its final tail (`[]` for a proper list).
fn flatten_list(mut t: &Term) -> (Vec<Term>, &Term) {
    let mut out = Vec::new();
    loop {
        match t {
            Term::List(l) => {
                out.extend(l.elements.iter().cloned());
                return (out, &NIL);
            }
            Term::ByteList(l) => {
                out.extend(l.bytes.iter().map(|&b| int(i64::from(b))));
                return (out, &NIL);
            }
            Term::ImproperList(l) => {
                out.extend(l.elements.iter().cloned());
                t = &l.last;
            }
            other => return (out, other),
        }
    }
}

fn cmp_lists(a: &Term, b: &Term) -> Ordering {
    let (ea, ta) = flatten_list(a);
    let (eb, tb) = flatten_list(b);
    for (x, y) in ea.iter().zip(&eb) {
        match term_cmp(x, y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    // Where one list runs out, its tail meets the other's next cons cell.
    match ea.len().cmp(&eb.len()) {
        Ordering::Equal => term_cmp(ta, tb),
        Ordering::Less => rank(ta).cmp(&Rank::List).then(Ordering::Less),
        Ordering::Greater => Rank::List.cmp(&rank(tb)).then(Ordering::Greater),
    }
}

/// Bits MSB first and the bit length. `BitBinary` keeps a partial last
/// byte's bits in its low end; shift them back to the high end (only that
/// case copies).
fn bits(t: &Term) -> (Cow<'_, [u8]>, usize) {
    match t {
        Term::Binary(b) => (Cow::Borrowed(&b.bytes), b.bytes.len() * 8),
        Term::BitBinary(b) if !b.bytes.is_empty() => {
            let tail = usize::from(b.tail_bits_size.clamp(1, 8));
            let mut bytes = b.bytes.clone();
            if let Some(last) = bytes.last_mut() {
                *last <<= 8 - tail;
            }
            let len = (bytes.len() - 1) * 8 + tail;
            (Cow::Owned(bytes), len)
        }
        _ => (Cow::Borrowed(&[]), 0),
    }
}

fn cmp_bits(a: &Term, b: &Term) -> Ordering {
    // Two binaries (the usual key): byte order, then the shorter first.
    if let (Term::Binary(x), Term::Binary(y)) = (a, b) {
        return x.bytes.cmp(&y.bytes);
    }
    let ((xa, la), (xb, lb)) = (bits(a), bits(b));
    let common = la.min(lb);
    let whole = common / 8;
    match xa[..whole].cmp(&xb[..whole]) {
        Ordering::Equal => {}
        o => return o,
    }
    for i in whole * 8..common {
        let bit = |x: &[u8]| (x[i / 8] >> (7 - i % 8)) & 1;
        match bit(&xa).cmp(&bit(&xb)) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    la.cmp(&lb)
}
