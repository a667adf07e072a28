//! Horde's distribution strategies: which member runs a child.
//!
//! What it owns: the choice `Horde.DistributionStrategy.choose_node/2` and
//! `has_quorum?/1` make from a child spec and the member list, for the three
//! strategies Horde 0.10 ships, bit for bit, so a Rust member and a BEAM
//! member looking at the same CRDT pick the same member for every child:
//!
//! - [`DistributionStrategy::Uniform`] (`Horde.UniformDistribution`): a
//!   libring `HashRing` of the alive members' names, 128 points each, keyed
//!   by the child spec's identifier (its `phash2` without `:id`);
//! - [`DistributionStrategy::UniformQuorum`] (`Horde.UniformQuorumDistribution`):
//!   the same ring, but only while a majority of the members is alive;
//! - [`DistributionStrategy::UniformRandom`] (`Horde.UniformRandomDistribution`):
//!   any alive member. Horde shuffles with the BEAM's own random state, so
//!   no peer can reproduce its pick: parity for this strategy is by
//!   membership only (both sides choose *an alive member*, and both fail
//!   when there is none). The caller passes the random number in.
//!
//! What it never does: I/O, randomness of its own, or panicking on a child
//! spec from the network (a spec that is not a map is an error value, where
//! Horde's `Map.drop/2` would raise in the member's server).
//!
//! One case we do not reproduce: with more than 32 alive members, Elixir's
//! `Map.keys/1` lists them in the order of the map's hash trie, not in term
//! order, and that order decides which member keeps a ring point two members
//! both hash to. We add members in term order always; the owners differ only
//! for keys landing on such a shared point (about `n² · 128² / 2³³` of the
//! ring for `n` members).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::crdt::awlww_map::{term_cmp, OrdTerm};
use crate::term::phash2::{phash2, phash2_range, Hash2};
use crate::term::{self, Term};

use super::codec::{Member, MemberStatus};

/// The ring's key space: libring hashes into `0..2^32 - 1` (its
/// `trunc(:math.pow(2, 32) - 1)`), one short of the full 32 bits.
pub const HASH_RANGE: u64 = (1 << 32) - 1;

/// Points each member gets on the ring (libring's default weight, which
/// Horde uses).
pub const WEIGHT: u32 = 128;

/// Why no member was chosen, as Horde says it (`{:error, reason}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChooseError {
    /// `:no_alive_nodes`: no member has status `:alive`.
    #[error("no alive members")]
    NoAliveNodes,
    /// `:quorum_not_met` (quorum strategy only).
    #[error("quorum not met")]
    QuorumNotMet,
    /// The child spec is not a map; Horde would crash on it.
    #[error("the child spec is not a map")]
    BadChildSpec,
}

impl ChooseError {
    /// The reason term of Horde's `{:error, reason}`. [`ChooseError::BadChildSpec`]
    /// has no Horde counterpart; it reads `{:bad_child_spec, "..."}`.
    pub fn reason(&self) -> Term {
        match self {
            ChooseError::NoAliveNodes => term::atom("no_alive_nodes"),
            ChooseError::QuorumNotMet => term::atom("quorum_not_met"),
            ChooseError::BadChildSpec => crate::tup![
                term::atom("bad_child_spec"),
                term::binary("a child spec must be a map")
            ],
        }
    }
}

/// A distribution strategy, named by its Horde module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DistributionStrategy {
    /// `Horde.UniformDistribution`, Horde's default.
    #[default]
    Uniform,
    /// `Horde.UniformQuorumDistribution`.
    UniformQuorum,
    /// `Horde.UniformRandomDistribution`.
    UniformRandom,
}

impl DistributionStrategy {
    /// The strategy a module atom names (`Elixir.Horde.UniformDistribution`, ...).
    pub fn from_module(module: &str) -> Option<DistributionStrategy> {
        match module {
            "Elixir.Horde.UniformDistribution" => Some(DistributionStrategy::Uniform),
            "Elixir.Horde.UniformQuorumDistribution" => Some(DistributionStrategy::UniformQuorum),
            "Elixir.Horde.UniformRandomDistribution" => Some(DistributionStrategy::UniformRandom),
            _ => None,
        }
    }

    /// The module atom's text.
    pub fn module(&self) -> &'static str {
        match self {
            DistributionStrategy::Uniform => "Elixir.Horde.UniformDistribution",
            DistributionStrategy::UniformQuorum => "Elixir.Horde.UniformQuorumDistribution",
            DistributionStrategy::UniformRandom => "Elixir.Horde.UniformRandomDistribution",
        }
    }

    /// `choose_node(child_spec, members)`. `random` is used by
    /// [`DistributionStrategy::UniformRandom`] only. For many children over
    /// one member list, build a [`Placement`] once instead.
    pub fn choose_node<'m>(
        &self,
        child_spec: &Term,
        members: &'m [Member],
        random: u64,
    ) -> Result<&'m Member, ChooseError> {
        Placement::new(*self, members).choose_node(child_spec, random)
    }

    /// `has_quorum?(members)`.
    pub fn has_quorum(&self, members: &[Member]) -> bool {
        match self {
            DistributionStrategy::UniformQuorum => quorum(members),
            _ => true,
        }
    }
}

/// The majority rule of `UniformQuorumDistribution`: among the members that
/// are not `:shutting_down`, more than half are `:alive`; an even count of
/// them first loses its smallest name (so two halves of a split never both
/// have quorum). No members, or only shutting-down ones, is no quorum.
fn quorum(members: &[Member]) -> bool {
    let mut voters: Vec<&Member> = members
        .iter()
        .filter(|m| m.status != MemberStatus::ShuttingDown)
        .collect();
    if voters.len().is_multiple_of(2) && !voters.is_empty() {
        // Stable, by name in term order, as `Enum.sort_by/2`: the member
        // dropped is the first of the smallest name.
        voters.sort_by(|a, b| term_cmp(&a.name, &b.name));
        voters.remove(0);
    }
    if voters.is_empty() {
        return false;
    }
    let alive = voters
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .count();
    // alive / count > 0.5, without floats.
    2 * alive > voters.len()
}

/// The identifier a child spec is placed by: `phash2` (range 2^27) of the
/// spec map without its `:id`, so a child keeps its place when Horde gives
/// it a new random id.
pub fn identifier(child_spec: &Term) -> Result<u32, ChooseError> {
    let Term::Map(m) = child_spec else {
        return Err(ChooseError::BadChildSpec);
    };
    let id = term::atom("id");
    if !m.map.contains_key(&id) {
        return Ok(phash2(child_spec));
    }
    let pairs: Vec<(&Term, &Term)> = m.map.iter().filter(|(k, _)| **k != id).collect();
    Ok(Hash2::new().map(pairs.into_iter()).finish() & ((1 << 27) - 1))
}

/// The ring point of a key: `phash2(key, 2^32 - 1)`.
pub fn key_point(key: &Term) -> u32 {
    phash2_range(key, HASH_RANGE)
}

/// A libring `HashRing`: each node added gets [`WEIGHT`] points at
/// `phash2({node, i}, 2^32 - 1)` for `i` in `1..=128`; a point already taken
/// stays with the node that took it first; a key belongs to the node of
/// the first point at or above its own, wrapping to the lowest point.
#[derive(Debug, Clone, Default)]
pub struct HashRing {
    nodes: Vec<Term>,
    /// point -> index into `nodes`.
    points: BTreeMap<u32, usize>,
}

impl HashRing {
    /// An empty ring.
    pub fn new() -> HashRing {
        HashRing::default()
    }

    /// Adds `node` (a no-op when it is already on the ring).
    pub fn add_node(&mut self, node: &Term) {
        if self.nodes.iter().any(|n| term_cmp(n, node).is_eq()) {
            return;
        }
        let index = self.nodes.len();
        self.nodes.push(node.clone());
        for i in 1..=WEIGHT {
            let h = Hash2::new()
                .tuple(2)
                .term(node)
                .term(&term::int(i64::from(i)))
                .finish();
            let point = (u64::from(h) % HASH_RANGE) as u32;
            self.points.entry(point).or_insert(index);
        }
    }

    /// The nodes in the order they were added.
    pub fn nodes(&self) -> &[Term] {
        &self.nodes
    }

    /// Every point and its node, by point.
    pub fn points(&self) -> impl Iterator<Item = (u32, &Term)> {
        self.points.iter().map(|(p, i)| (*p, &self.nodes[*i]))
    }

    /// The node owning `point`; `None` on an empty ring.
    pub fn point_to_node(&self, point: u32) -> Option<&Term> {
        let (_, index) = self
            .points
            .range(point..)
            .next()
            .or_else(|| self.points.iter().next())?;
        self.nodes.get(*index)
    }

    /// The node owning `key`. libring hashes an atom key by its external
    /// form instead; Horde's keys are integers, and this ring does not
    /// take atoms apart that way.
    pub fn key_to_node(&self, key: &Term) -> Option<&Term> {
        self.point_to_node(key_point(key))
    }
}

/// The ring of the last alive-member list a member placed by, kept so that
/// placing one child after another builds it once per membership instead
/// of once per child (128 `phash2`s and map inserts per member each time,
/// which was most of a `start_child`'s own work).
#[derive(Debug, Clone, Default)]
pub struct RingCache {
    /// The alive members' names in term order: the ring depends on nothing
    /// else.
    names: Vec<OrdTerm>,
    ring: Arc<HashRing>,
}

/// One strategy applied to one member list, ready to place many children
/// (the ring is built once; Horde builds it per call, to the same result).
#[derive(Debug, Clone)]
pub struct Placement<'m> {
    strategy: DistributionStrategy,
    /// The alive members, in list order.
    alive: Vec<&'m Member>,
    quorum: bool,
    ring: Arc<HashRing>,
    /// Ring node index -> the member Horde answers with for that name (the
    /// last alive one in the list, as `Map.new/2` keeps).
    owners: Vec<&'m Member>,
}

impl<'m> Placement<'m> {
    pub fn new(strategy: DistributionStrategy, members: &'m [Member]) -> Placement<'m> {
        Placement::build(strategy, members, &mut RingCache::default())
    }

    /// [`Placement::new`], with the ring taken from `cache` when the alive
    /// members are the ones it was built for (and kept there otherwise).
    pub fn cached(
        strategy: DistributionStrategy,
        members: &'m [Member],
        cache: &mut RingCache,
    ) -> Placement<'m> {
        Placement::build(strategy, members, cache)
    }

    fn build(
        strategy: DistributionStrategy,
        members: &'m [Member],
        cache: &mut RingCache,
    ) -> Placement<'m> {
        let alive: Vec<&Member> = members
            .iter()
            .filter(|m| m.status == MemberStatus::Alive)
            .collect();
        let mut ring = Arc::default();
        let mut owners = Vec::new();
        if strategy != DistributionStrategy::UniformRandom {
            // By name, one per name (the last in the list, as a map built
            // from it keeps), without copying any name: this runs per start.
            let mut by_name: Vec<&Member> = Vec::with_capacity(alive.len());
            for m in &alive {
                match by_name.binary_search_by(|b| term_cmp(&b.name, &m.name)) {
                    Ok(i) => by_name[i] = *m,
                    Err(i) => by_name.insert(i, *m),
                }
            }
            let same = cache.names.len() == by_name.len()
                && cache
                    .names
                    .iter()
                    .zip(&by_name)
                    .all(|(a, b)| term_cmp(&a.0, &b.name).is_eq());
            if !same {
                let mut built = HashRing::new();
                for m in &by_name {
                    built.add_node(&m.name);
                }
                cache.names = by_name.iter().map(|m| OrdTerm(m.name.clone())).collect();
                cache.ring = Arc::new(built);
            }
            ring = cache.ring.clone();
            owners = by_name;
        }
        Placement {
            strategy,
            quorum: strategy.has_quorum(members),
            alive,
            ring,
            owners,
        }
    }

    pub fn strategy(&self) -> DistributionStrategy {
        self.strategy
    }

    /// `has_quorum?` of the member list.
    pub fn has_quorum(&self) -> bool {
        self.quorum
    }

    /// The ring of the alive members (empty for the random strategy).
    pub fn ring(&self) -> &HashRing {
        &self.ring
    }

    /// `choose_node(child_spec, members)`; `random` picks among the alive
    /// members for [`DistributionStrategy::UniformRandom`] and is ignored
    /// otherwise.
    pub fn choose_node(&self, child_spec: &Term, random: u64) -> Result<&'m Member, ChooseError> {
        match self.strategy {
            DistributionStrategy::UniformRandom => {
                if self.alive.is_empty() {
                    return Err(ChooseError::NoAliveNodes);
                }
                Ok(self.alive[(random % self.alive.len() as u64) as usize])
            }
            DistributionStrategy::UniformQuorum if !self.quorum => Err(ChooseError::QuorumNotMet),
            DistributionStrategy::Uniform | DistributionStrategy::UniformQuorum => {
                // Horde hashes the spec before looking at the members, but
                // a spec it cannot hash crashes it either way.
                let id = identifier(child_spec)?;
                if self.owners.is_empty() {
                    return Err(ChooseError::NoAliveNodes);
                }
                let point = key_point(&term::int(i64::from(id)));
                let (_, index) = self
                    .ring
                    .points
                    .range(point..)
                    .next()
                    .or_else(|| self.ring.points.iter().next())
                    .ok_or(ChooseError::NoAliveNodes)?;
                self.owners
                    .get(*index)
                    .copied()
                    .ok_or(ChooseError::NoAliveNodes)
            }
        }
    }
}

#[cfg(test)]
mod tests;
