//! Dots and causal contexts as DeltaCrdt 0.6.4 keeps them.
//!
//! A dot `{node_id, counter}` names one write. DeltaCrdt carries "which dots
//! have I seen" in two shapes, and its join behaves differently for each:
//! - a [`DotSet`] (an Elixir `MapSet` of dots): exact; what `add`/`remove`
//!   deltas carry;
//! - a [`Context`] (an Elixir map `node_id => max counter`): compressed; what
//!   every replica state and every sync message carries. It claims every
//!   counter up to the maximum, gaps included.
//!
//! [`Dots`] is either shape; its `union` and `covers` follow DeltaCrdt exactly
//! (a union with any compressed side compresses). This module owns these
//! values and their wire terms; it knows nothing about keys or values.

use std::collections::BTreeMap;

use super::elixir;
use super::CrdtTermError;
use crate::term::{as_i64, as_tuple, int, tuple, Map, Term};

/// A replica id: DeltaCrdt draws it from `1..=1_000_000_000` at process start.
/// Kept signed so any integer a peer sends compares as the BEAM compares it.
pub type NodeId = i64;
/// A per-replica write counter; the first write of a replica is 1.
pub type Counter = i64;

/// One write: `{node_id, counter}` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dot {
    pub node: NodeId,
    pub counter: Counter,
}

impl Dot {
    pub fn new(node: NodeId, counter: Counter) -> Self {
        Dot { node, counter }
    }

    /// `{node_id, counter}`.
    pub fn to_term(&self) -> Term {
        tuple(vec![int(self.node), int(self.counter)])
    }

    pub fn from_term(term: &Term) -> Result<Self, CrdtTermError> {
        const AT: &str = "dot";
        match as_tuple(term) {
            Some([node, counter]) => Ok(Dot {
                node: int_field(node, AT)?,
                counter: int_field(counter, AT)?,
            }),
            _ => Err(CrdtTermError::Shape {
                at: AT,
                expected: "a {node_id, counter} tuple",
            }),
        }
    }
}

/// An exact set of dots (an Elixir `MapSet` of `{node_id, counter}`), in
/// order. A sorted vector: a key's entry nearly always has one dot, and a
/// B-tree node would reserve room for eleven.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DotSet(Vec<Dot>);

impl DotSet {
    pub fn new() -> Self {
        DotSet::default()
    }

    /// True when `dot` was not in the set.
    pub fn insert(&mut self, dot: Dot) -> bool {
        match self.0.binary_search(&dot) {
            Ok(_) => false,
            Err(i) => {
                self.0.insert(i, dot);
                true
            }
        }
    }

    pub fn contains(&self, dot: &Dot) -> bool {
        self.0.binary_search(dot).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Dot> {
        self.0.iter()
    }

    /// Adds every dot of `other`.
    pub fn extend(&mut self, other: &DotSet) {
        for d in &other.0 {
            self.insert(*d);
        }
    }

    /// The dots of `self` that `other` does not cover.
    pub fn uncovered_by(&self, other: &(impl Covers + ?Sized)) -> DotSet {
        DotSet(
            self.0
                .iter()
                .filter(|d| !other.covers(d))
                .copied()
                .collect(),
        )
    }

    /// The dots in both sets.
    pub fn intersection(&self, other: &DotSet) -> DotSet {
        DotSet(
            self.0
                .iter()
                .filter(|d| other.contains(d))
                .copied()
                .collect(),
        )
    }

    /// The largest counter per node: the compressed context these dots imply.
    /// Gaps are lost, exactly as in DeltaCrdt.
    pub fn compress(&self) -> Context {
        let mut ctx = Context::new();
        ctx.absorb(self);
        ctx
    }

    /// `MapSet.new([{node, counter}, ...])` in the Elixir 1.14 form (see
    /// [`DotSet::to_term_in`]), the form of the recorded fixtures.
    pub fn to_term(&self) -> Term {
        self.to_term_in(elixir::MapSetForm::Versioned)
    }

    /// `MapSet.new([{node, counter}, ...])` as an Elixir release of `form`
    /// builds it: a BEAM replica hashes its own form, so ours must match.
    pub fn to_term_in(&self, form: elixir::MapSetForm) -> Term {
        elixir::build_mapset(form, self.0.iter().map(Dot::to_term))
    }

    pub fn from_term(term: &Term) -> Result<Self, CrdtTermError> {
        let elements = elixir::match_mapset(term).ok_or(CrdtTermError::Shape {
            at: "dot set",
            expected: "a MapSet",
        })?;
        let mut set = DotSet::new();
        for element in elements {
            if !set.insert(Dot::from_term(element)?) {
                return Err(CrdtTermError::DuplicateKey { at: "dot set" });
            }
        }
        Ok(set)
    }
}

impl FromIterator<Dot> for DotSet {
    fn from_iter<I: IntoIterator<Item = Dot>>(iter: I) -> Self {
        let mut dots: Vec<Dot> = iter.into_iter().collect();
        dots.sort_unstable();
        dots.dedup();
        DotSet(dots)
    }
}

/// A compressed causal context: per node, the largest counter seen. It
/// covers every dot of that node up to and including that counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Context(BTreeMap<NodeId, Counter>);

impl Context {
    pub fn new() -> Self {
        Context::default()
    }

    /// The largest counter seen from `node`, 0 when none (as DeltaCrdt's
    /// `Map.get(ctx, node, 0)`).
    pub fn max(&self, node: NodeId) -> Counter {
        self.0.get(&node).copied().unwrap_or(0)
    }

    /// The dot `node`'s next write gets: one past the largest seen.
    /// Saturates rather than overflows: a counter at `i64::MAX` can only come
    /// from a hostile peer, and a repeated dot is better than a panic.
    pub fn next_dot(&self, node: NodeId) -> Dot {
        Dot::new(node, self.max(node).saturating_add(1))
    }

    /// True when `dot.counter <= max(dot.node)`. Like DeltaCrdt, a counter
    /// of 0 or below counts as covered even for an unknown node.
    pub fn covers(&self, dot: &Dot) -> bool {
        self.max(dot.node) >= dot.counter
    }

    /// True when [`Context::insert`] of `dot` would leave this context as
    /// it is: `dot.node` is listed with a counter of at least `dot.counter`.
    pub fn absorbs(&self, dot: &Dot) -> bool {
        self.0.get(&dot.node).is_some_and(|&max| dot.counter <= max)
    }

    /// Raises `dot.node`'s maximum to `dot.counter` when that is larger.
    pub fn insert(&mut self, dot: Dot) {
        let max = self.0.entry(dot.node).or_insert(dot.counter);
        if dot.counter > *max {
            *max = dot.counter;
        }
    }

    /// Per-node maximum with `other`.
    pub fn merge(&mut self, other: &Context) {
        for (&node, &counter) in &other.0 {
            self.insert(Dot::new(node, counter));
        }
    }

    /// Folds an exact dot set in, keeping only per-node maxima.
    pub fn absorb(&mut self, dots: &DotSet) {
        for dot in dots.iter() {
            self.insert(*dot);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (NodeId, Counter)> + '_ {
        self.0.iter().map(|(&n, &c)| (n, c))
    }

    /// Keeps the nodes whose `(node, max)` `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(NodeId, Counter) -> bool) {
        self.0.retain(|&n, &mut c| keep(n, c));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `%{node_id => max_counter}`.
    pub fn to_term(&self) -> Term {
        let map = self.0.iter().map(|(&n, &c)| (int(n), int(c))).collect();
        Term::Map(Map { map })
    }

    pub fn from_term(term: &Term) -> Result<Self, CrdtTermError> {
        const AT: &str = "context";
        let Term::Map(m) = term else {
            return Err(CrdtTermError::Shape {
                at: AT,
                expected: "a map node_id => counter",
            });
        };
        let mut ctx = BTreeMap::new();
        for (node, counter) in &m.map {
            if ctx
                .insert(int_field(node, AT)?, int_field(counter, AT)?)
                .is_some()
            {
                return Err(CrdtTermError::DuplicateKey { at: AT });
            }
        }
        Ok(Context(ctx))
    }
}

impl FromIterator<(NodeId, Counter)> for Context {
    fn from_iter<I: IntoIterator<Item = (NodeId, Counter)>>(iter: I) -> Self {
        let mut ctx = Context::new();
        for (node, counter) in iter {
            ctx.insert(Dot::new(node, counter));
        }
        ctx
    }
}

/// What a replica can vouch it has seen, exactly: per node, every counter up
/// to a contiguous prefix, and the counters seen beyond it.
///
/// DeltaCrdt keeps only a [`Context`], and folds every dot it meets into it:
/// a local write that removes `{x, 49}` makes it claim `{x, 43..48}` too,
/// dots it never received. Those then count as removed: their entries are
/// refused when they arrive, and their keys' absence is shipped to peers as
/// a delete (the loss of delta_crdt_ex #65). A replica that keeps `Seen`
/// instead judges every incoming entry by what it really saw, and claims on
/// the wire only what it can vouch for (see `crdt::sync`).
///
/// Memory: the dots beyond a node's prefix are kept one by one until the
/// gap below them is filled. A gap fills when the missing dots arrive, or
/// when a peer vouches that it has seen them and holds exactly our entries
/// (see [`Seen::fill_to`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    nodes: BTreeMap<NodeId, NodeSeen>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct NodeSeen {
    /// Every counter in `1..=prefix` was seen.
    prefix: Counter,
    /// Counters seen above `prefix + 1` (never `prefix + 1` itself).
    beyond: std::collections::BTreeSet<Counter>,
}

impl NodeSeen {
    /// Moves the counters that became contiguous into the prefix.
    fn compact(&mut self) {
        while let Some(&first) = self.beyond.first() {
            if first > self.prefix.saturating_add(1) {
                break;
            }
            self.beyond.pop_first();
            self.prefix = self.prefix.max(first);
        }
    }
}

impl Seen {
    pub fn new() -> Self {
        Seen::default()
    }

    /// Whether `dot` was seen. As a [`Context`], a counter of 0 or below
    /// counts as seen.
    pub fn contains(&self, dot: &Dot) -> bool {
        if dot.counter <= 0 {
            return true;
        }
        self.nodes
            .get(&dot.node)
            .is_some_and(|n| dot.counter <= n.prefix || n.beyond.contains(&dot.counter))
    }

    /// Records `dot` as seen; true when it was not seen before.
    pub fn insert(&mut self, dot: Dot) -> bool {
        if self.contains(&dot) {
            return false;
        }
        let n = self.nodes.entry(dot.node).or_default();
        n.beyond.insert(dot.counter);
        n.compact();
        true
    }

    /// Records every counter of `node` up to `counter` as seen.
    pub fn fill_to(&mut self, node: NodeId, counter: Counter) {
        if counter <= 0 {
            return;
        }
        let n = self.nodes.entry(node).or_default();
        if counter > n.prefix {
            n.prefix = counter;
            n.beyond = n.beyond.split_off(&counter.saturating_add(1));
            n.compact();
        }
    }

    /// The contiguous prefix of `node`: every counter up to it was seen.
    pub fn prefix_of(&self, node: NodeId) -> Counter {
        self.nodes.get(&node).map_or(0, |n| n.prefix)
    }

    /// Per node, the contiguous prefix: the compressed context this replica
    /// can vouch for without knowing which keys it is about.
    pub fn prefix(&self) -> Context {
        self.nodes
            .iter()
            .filter(|(_, n)| n.prefix > 0)
            .map(|(&node, n)| (node, n.prefix))
            .collect()
    }

    /// Per node, the largest counter seen: what DeltaCrdt's context would
    /// hold (without the dots it claims and never saw).
    pub fn max(&self) -> Context {
        self.nodes
            .iter()
            .map(|(&node, n)| (node, n.beyond.last().copied().unwrap_or(n.prefix)))
            .filter(|&(_, c)| c > 0)
            .collect()
    }

    /// How many dots are held one by one above a gap: zero once every gap
    /// has been filled.
    pub fn beyond_gaps(&self) -> usize {
        self.nodes.values().map(|n| n.beyond.len()).sum()
    }
}

/// What can say whether a dot was seen: a [`Dots`] as DeltaCrdt judges it,
/// or a [`Seen`].
pub trait Covers {
    fn covers(&self, dot: &Dot) -> bool;
}

impl Covers for Dots {
    fn covers(&self, dot: &Dot) -> bool {
        Dots::covers(self, dot)
    }
}

impl Covers for Seen {
    fn covers(&self, dot: &Dot) -> bool {
        self.contains(dot)
    }
}

/// The `dots` field of an AWLWWMap: exact in deltas, compressed in states.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dots {
    Set(DotSet),
    Context(Context),
}

impl Default for Dots {
    /// A fresh replica's state: an empty compressed context (DeltaCrdt
    /// compresses right after `new()`).
    fn default() -> Self {
        Dots::Context(Context::new())
    }
}

impl Dots {
    /// Whether this context has seen `dot`: exact membership for a set,
    /// `counter <= max` for a compressed context.
    pub fn covers(&self, dot: &Dot) -> bool {
        match self {
            Dots::Set(s) => s.contains(dot),
            Dots::Context(c) => c.covers(dot),
        }
    }

    /// DeltaCrdt's union: two sets give their set union; anything involving
    /// a compressed context gives a compressed context (per-node maximum).
    pub fn union(&self, other: &Dots) -> Dots {
        match (self, other) {
            (Dots::Set(a), Dots::Set(b)) => {
                let mut s = a.clone();
                s.extend(b);
                Dots::Set(s)
            }
            (Dots::Context(a), Dots::Context(b)) => {
                let mut c = a.clone();
                c.merge(b);
                Dots::Context(c)
            }
            (Dots::Context(c), Dots::Set(s)) | (Dots::Set(s), Dots::Context(c)) => {
                let mut c = c.clone();
                c.absorb(s);
                Dots::Context(c)
            }
        }
    }

    /// The compressed form (a set loses its gaps).
    pub fn compress(&self) -> Context {
        match self {
            Dots::Set(s) => s.compress(),
            Dots::Context(c) => c.clone(),
        }
    }

    /// The next dot for `node`. DeltaCrdt compresses a set first (and logs
    /// that it is slow); the result is the same.
    pub fn next_dot(&self, node: NodeId) -> Dot {
        match self {
            Dots::Set(s) => s.compress().next_dot(node),
            Dots::Context(c) => c.next_dot(node),
        }
    }

    /// A MapSet (Elixir 1.14 form) for a set, a plain map for a compressed
    /// context.
    pub fn to_term(&self) -> Term {
        self.to_term_in(elixir::MapSetForm::Versioned)
    }

    /// A MapSet of `form` for a set, a plain map for a compressed context.
    pub fn to_term_in(&self, form: elixir::MapSetForm) -> Term {
        match self {
            Dots::Set(s) => s.to_term_in(form),
            Dots::Context(c) => c.to_term(),
        }
    }

    /// A MapSet is a dot set; any other map is a compressed context.
    pub fn from_term(term: &Term) -> Result<Self, CrdtTermError> {
        if elixir::match_struct(term, elixir::MAPSET).is_some() {
            DotSet::from_term(term).map(Dots::Set)
        } else {
            Context::from_term(term).map(Dots::Context)
        }
    }
}

/// An integer field that must fit in an `i64`.
pub(super) fn int_field(term: &Term, at: &'static str) -> Result<i64, CrdtTermError> {
    match term {
        Term::FixInteger(_) | Term::BigInteger(_) => {
            as_i64(term).ok_or(CrdtTermError::IntRange { at })
        }
        _ => Err(CrdtTermError::Shape {
            at,
            expected: "an integer",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_keeps_gaps_and_compacts_when_they_fill() {
        let mut s = Seen::new();
        assert!(s.contains(&Dot::new(1, 0)));
        assert!(s.insert(Dot::new(1, 1)));
        assert!(s.insert(Dot::new(1, 3)));
        assert!(!s.insert(Dot::new(1, 3)));
        assert!(!s.contains(&Dot::new(1, 2)));
        assert_eq!(s.prefix(), [(1, 1)].into_iter().collect());
        assert_eq!(s.max(), [(1, 3)].into_iter().collect());
        assert_eq!(s.beyond_gaps(), 1);
        assert!(s.insert(Dot::new(1, 2)));
        assert_eq!(s.prefix(), [(1, 3)].into_iter().collect());
        assert_eq!(s.beyond_gaps(), 0);
        s.insert(Dot::new(2, 5));
        s.insert(Dot::new(2, 9));
        assert_eq!(s.prefix_of(2), 0);
        assert_eq!(s.prefix(), [(1, 3)].into_iter().collect());
        s.fill_to(2, 6);
        assert_eq!(s.prefix_of(2), 6);
        assert!(s.contains(&Dot::new(2, 4)));
        assert!(!s.contains(&Dot::new(2, 7)));
        assert!(s.contains(&Dot::new(2, 9)));
        s.fill_to(2, 8);
        assert_eq!(s.prefix_of(2), 9);
        assert_eq!(s.beyond_gaps(), 0);
        s.fill_to(2, 3);
        assert_eq!(s.prefix_of(2), 9);
    }

    #[test]
    fn compressed_context_covers_up_to_max_including_gaps() {
        let ctx: Context = [(1, 3)].into_iter().collect();
        assert!(ctx.covers(&Dot::new(1, 1)));
        assert!(ctx.covers(&Dot::new(1, 3)));
        assert!(!ctx.covers(&Dot::new(1, 4)));
        assert!(!ctx.covers(&Dot::new(2, 1)));
        // DeltaCrdt compares against a default of 0.
        assert!(ctx.covers(&Dot::new(2, 0)));
    }

    #[test]
    fn next_dot_is_one_past_max() {
        let ctx: Context = [(7, 2)].into_iter().collect();
        assert_eq!(ctx.next_dot(7), Dot::new(7, 3));
        assert_eq!(ctx.next_dot(8), Dot::new(8, 1));
        let set: DotSet = [Dot::new(7, 5), Dot::new(7, 1)].into_iter().collect();
        assert_eq!(Dots::Set(set).next_dot(7), Dot::new(7, 6));
        let full: Context = [(7, i64::MAX)].into_iter().collect();
        assert_eq!(full.next_dot(7), Dot::new(7, i64::MAX));
    }

    #[test]
    fn union_compresses_unless_both_are_sets() {
        let a: DotSet = [Dot::new(1, 1), Dot::new(1, 3)].into_iter().collect();
        let b: DotSet = [Dot::new(2, 2)].into_iter().collect();
        let u = Dots::Set(a.clone()).union(&Dots::Set(b.clone()));
        assert_eq!(
            u,
            Dots::Set(
                [Dot::new(1, 1), Dot::new(1, 3), Dot::new(2, 2)]
                    .into_iter()
                    .collect()
            )
        );
        assert!(!u.covers(&Dot::new(1, 2)));
        let ctx: Context = [(1, 2), (3, 1)].into_iter().collect();
        let u = Dots::Context(ctx.clone()).union(&Dots::Set(a.clone()));
        assert_eq!(u, Dots::Set(a).union(&Dots::Context(ctx)));
        assert_eq!(u, Dots::Context([(1, 3), (3, 1)].into_iter().collect()));
        assert!(u.covers(&Dot::new(1, 2)));
    }

    #[test]
    fn wire_round_trip_and_rejects() {
        let set: DotSet = [Dot::new(1, 1), Dot::new(1_000_000_000, 99)]
            .into_iter()
            .collect();
        let d = Dots::Set(set);
        assert_eq!(Dots::from_term(&d.to_term()), Ok(d));
        let c = Dots::Context([(5, 1 << 40)].into_iter().collect());
        assert_eq!(Dots::from_term(&c.to_term()), Ok(c));
        assert!(Dots::from_term(&crate::term::atom("nope")).is_err());
        let bad_dot = elixir::build_mapset(elixir::MapSetForm::Versioned, [tuple(vec![int(1)])]);
        assert!(Dots::from_term(&bad_dot).is_err());
        let bad_ctx = Term::Map(Map {
            map: [(crate::term::atom("x"), int(1))].into_iter().collect(),
        });
        assert!(Dots::from_term(&bad_ctx).is_err());
    }
}
