//! merkle_map 0.2.2's `MerkleMap`, as DeltaCrdt 0.6.4 uses it to find which
//! keys two replicas disagree on.
//!
//! This module owns the map, its hash tree, the lazy rehash, the partial-diff
//! rounds (`prepare_partial_diff`, `continue_partial_diff`, `truncate_diff`)
//! and the wire terms of `%MerkleMap{}`, `%MerkleMap.MerkleTree{}` and
//! `%MerkleMap.MerkleTree.Diff{}`. Trees, hashes, key orders and continuations
//! are bit for bit what the BEAM library computes, because a continuation
//! travels between BEAM and Rust replicas inside DeltaCrdt's `{:diff, Diff}`
//! messages and each side compares its own tree against the other's.
//!
//! It never decides what a key's value is (DeltaCrdt stores the AWLWWMap
//! entry of each key here, see [`crate::crdt::awlww_map::AwLwwMap::entries_term`]),
//! never sends anything, and never panics on a peer's term: malformed input
//! is an error value, with bounded recursion (trees are at most 32 levels).
//!
//! ## The tree
//! A key sits at the path given by `phash2(key, 2^32)` read as 32 bits, MSB
//! first, 0 = left; a leaf sits at the shallowest level where it is alone, so
//! the shape depends only on the keys. Keys whose 32-bit hashes collide share
//! one leaf. A leaf's hash is `phash2(%{key => value, ...}, 2^32)`, an inner
//! node's is `phash2({left_hash, right_hash}, 2^32)` with `[]` for an empty
//! branch; all are stored as 4-byte big-endian binaries.
//!
//! `put` and `delete` only mark their path stale (`[]`); `update_hashes`
//! recomputes the stale nodes and nothing else. DeltaCrdt calls it before
//! every diff, and diffs refuse stale trees, as upstream does.

mod diff;
mod tree;
mod wire;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use crate::crdt::awlww_map::{term_cmp, OrdTerm};
use crate::term::Term;

pub use diff::arith_eq;
pub use tree::{hash_term, key_hash, Hash, Inner, Leaf, LeafContents, Loc, Node, KEY_BITS};
pub use wire::{DIFF_STRUCT, MERKLE_MAP_STRUCT, MERKLE_TREE_STRUCT};

use diff::{Cursor, Item};

/// The subtree depth DeltaCrdt asks for in every diff round.
pub const DELTA_CRDT_DIFF_DEPTH: u32 = 8;

/// Why a diff step could not run. Upstream raises (and the CausalCrdt
/// process restarts) in each of these cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The local tree, or a received subtree, has a `[]` hash at its top.
    #[error("hashes not calculated: call update_hashes first")]
    StaleHashes,
    /// A diff depth of 0 (upstream requires `depth > 0`).
    #[error("diff depth must be positive")]
    ZeroDepth,
    /// Comparing a leaf with an inner node needed a 33rd hash bit: only a
    /// received tree with inner nodes 32 levels down can cause this.
    #[error("received tree is deeper than 32 levels at a leaf comparison")]
    HashBitsExhausted,
    /// A key of the form `{:partial, x}` turned up among the differing keys;
    /// upstream takes it for a location and fails unless `x` is one.
    #[error("key {{:partial, _}} is not a valid location")]
    PartialKey,
}

/// A diff in progress: `%MerkleMap.MerkleTree.Diff{keys, trees}`. `keys`
/// holds differing keys found so far (duplicates included: a leaf compared
/// against several cut subtrees is listed once per subtree); `trees` the
/// sender's subtrees at the locations still to compare.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartialDiff {
    pub keys: Vec<Term>,
    pub trees: Vec<(Loc, Node)>,
}

/// What `continue_partial_diff` returns: `{:continue, diff}` or `{:ok, keys}`.
#[derive(Debug, Clone, PartialEq)]
pub enum DiffStep {
    Continue(PartialDiff),
    Done(Vec<Term>),
}

impl PartialDiff {
    /// `MerkleMap.truncate_diff(diff, n)`: the first `n` keys, then as many
    /// trees as the keys left room for. DeltaCrdt applies it to every
    /// continuation it sends unless `max_sync_size` is `:infinite`.
    pub fn truncate(&self, n: usize) -> PartialDiff {
        let keys: Vec<Term> = self.keys.iter().take(n).cloned().collect();
        let trees = self.trees.iter().take(n - keys.len()).cloned().collect();
        PartialDiff { keys, trees }
    }
}

/// A map whose contents are summarised by a hash tree; see the module docs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MerkleMap {
    /// The tree's leaves hold every pair: upstream's separate `map` field
    /// is rebuilt from them for the wire (`to_term`), not kept as a second
    /// copy of every key and value.
    tree: Node,
    len: usize,
}

impl MerkleMap {
    /// `MerkleMap.new()`: empty, tree `[]`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts every pair in order (`MerkleMap.new(enum)`), hashes left stale.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Term, Term)>) -> Self {
        let mut mm = Self::new();
        for (k, v) in pairs {
            mm.put(k, v);
        }
        mm
    }

    /// `MerkleMap.put/3`. O(depth) plus hashing the key; the path is left
    /// stale even when the value did not change, as upstream.
    pub fn put(&mut self, key: Term, value: Term) {
        let kh = key_hash(&key);
        if self.tree.put(kh, 0, OrdTerm(key), value) {
            self.len += 1;
        }
    }

    /// `MerkleMap.delete/2`. The path is marked stale even when `key` is
    /// absent, as upstream.
    pub fn delete(&mut self, key: &Term) {
        let kh = key_hash(key);
        if self.tree.delete(kh, 0, key) {
            self.len -= 1;
        }
    }

    /// The value stored for `key`.
    pub fn get(&self, key: &Term) -> Option<&Term> {
        self.tree.get(key_hash(key), key)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Key/value pairs in Erlang term order of the keys.
    pub fn iter(&self) -> impl Iterator<Item = (&Term, &Term)> {
        let mut pairs = Vec::with_capacity(self.len);
        self.tree.collect_pairs(&mut pairs);
        pairs.sort_by(|a, b| term_cmp(a.0, b.0));
        pairs.into_iter()
    }

    /// `MerkleMap.update_hashes/1`: computes the stale hashes only.
    pub fn update_hashes(&mut self) {
        self.tree.update_hashes();
    }

    /// The top node's hash: `None` (`[]`) for an empty map or before
    /// `update_hashes`.
    pub fn root_hash(&self) -> Hash {
        self.tree.hash()
    }

    /// True when every hash is computed (no `update_hashes` pending).
    pub fn hashes_current(&self) -> bool {
        !self.tree.is_stale()
    }

    /// The tree.
    pub fn tree(&self) -> &Node {
        &self.tree
    }

    /// `MerkleTree.keys/1`: keys in the tree's traversal order.
    pub fn tree_keys(&self) -> Vec<&Term> {
        let mut out = Vec::with_capacity(self.len);
        self.tree.collect_keys(&mut out);
        out
    }

    /// `MerkleTree.max_depth/1`.
    pub fn max_depth(&self) -> u32 {
        self.tree.max_depth()
    }

    /// `MerkleTree.subtree/3`: our node at `loc` (or the leaf or empty
    /// branch met on the way), cut `depth` levels down.
    pub fn subtree(&self, loc: Loc, depth: u32) -> Result<Node, MerkleError> {
        self.check_ready(depth)?;
        Ok(self.tree.find(loc).cut(loc, depth))
    }

    /// `MerkleMap.prepare_partial_diff(mm, depth)`: the first message of a
    /// sync round, our top `depth` levels.
    pub fn prepare_partial_diff(&self, depth: u32) -> Result<PartialDiff, MerkleError> {
        Ok(PartialDiff {
            keys: Vec::new(),
            trees: vec![(Loc::ROOT, self.subtree(Loc::ROOT, depth)?)],
        })
    }

    /// `MerkleMap.continue_partial_diff(diff, mm, depth)`: compares each of
    /// the peer's subtrees with ours at the same location. Differences found
    /// in full are appended to the keys; where either side was cut, our
    /// subtree at that location goes into the next continuation.
    ///
    /// Comparing equal subtrees stops at their equal top hashes, so the work
    /// is proportional to the differences, not to the map.
    pub fn continue_partial_diff(
        &self,
        partial: &PartialDiff,
        depth: u32,
    ) -> Result<DiffStep, MerkleError> {
        Ok(self
            .continue_partial_diff_settling(partial, depth, false, 0)?
            .0)
    }

    /// [`MerkleMap::continue_partial_diff`], except that where the peer's
    /// side is empty our keys are listed whole instead of cut: a replica
    /// that has nothing under a location gets our keys there in one step,
    /// not after further steps that ship our subtrees (values included)
    /// and come back with the same keys. Upstream peers take the result as
    /// any other: the keys go into `get_diff` or a shipped state.
    ///
    /// With a finished step comes, for each of its keys, whether it was
    /// listed here from our side where the peer's side was empty (keys
    /// carried over from earlier steps are not marked).
    pub fn continue_partial_diff_listing_own(
        &self,
        partial: &PartialDiff,
        depth: u32,
    ) -> Result<(DiffStep, Vec<bool>), MerkleError> {
        self.continue_partial_diff_settling(partial, depth, true, 0)
    }

    /// [`MerkleMap::continue_partial_diff`] (or, with `list_own`,
    /// [`MerkleMap::continue_partial_diff_listing_own`]), except that our
    /// subtrees for the next step that start above level `settle` are cut
    /// there rather than `depth` levels down: above the level where nodes
    /// still hold a few keys each, a cut subtree is hashes only, and the
    /// step after it ships the leaves under the nodes that differ alone,
    /// not every leaf under a wider location. Upstream peers compare any
    /// subtree they get. `settle` 0 is no such cut.
    pub fn continue_partial_diff_settling(
        &self,
        partial: &PartialDiff,
        depth: u32,
        list_own: bool,
        settle: u32,
    ) -> Result<(DiffStep, Vec<bool>), MerkleError> {
        self.check_ready(depth)?;
        let mut items = Vec::new();
        for (loc, theirs) in &partial.trees {
            // Upstream checks the top of both compared subtrees.
            if theirs.is_stale() || self.tree.find(*loc).is_stale() {
                return Err(MerkleError::StaleHashes);
            }
            let mut ours = Cursor::own(&self.tree, *loc, depth);
            if list_own {
                ours = ours.listing_whole();
            }
            diff::diff(ours, Cursor::peer(theirs), loc.len(), &mut items)?;
        }
        let mut keys = partial.keys.clone();
        let mut own_only = vec![false; keys.len()];
        let mut locs = Vec::new();
        for item in items {
            let (k, ours) = match item {
                Item::Partial(loc) => {
                    locs.push(loc);
                    continue;
                }
                Item::Key(k) => (k, false),
                Item::OwnOnly(k) => (k, true),
            };
            // Upstream separates locations from keys by the shape
            // `{:partial, _}`, so such a key is taken for a location.
            match wire::partial_key_loc(k) {
                Some(Ok(loc)) => locs.push(loc),
                Some(Err(())) => return Err(MerkleError::PartialKey),
                None => {
                    keys.push(k.clone());
                    own_only.push(ours);
                }
            }
        }
        if locs.is_empty() {
            return Ok((DiffStep::Done(keys), own_only));
        }
        let trees = locs
            .into_iter()
            .map(|loc| {
                let d = match settle.checked_sub(loc.len()) {
                    Some(above) if above > 0 => depth.min(above),
                    _ => depth,
                };
                (loc, self.tree.find(loc).cut(loc, d))
            })
            .collect();
        Ok((DiffStep::Continue(PartialDiff { keys, trees }), Vec::new()))
    }

    /// `MerkleMap.diff_keys/2`: every key whose value differs (or that one
    /// side lacks), compared in one pass, in upstream's order.
    pub fn diff_keys(&self, other: &MerkleMap) -> Result<Vec<Term>, MerkleError> {
        if self.tree.is_stale() || other.tree.is_stale() {
            return Err(MerkleError::StaleHashes);
        }
        let mut items = Vec::new();
        let whole = |n| Cursor::own(n, Loc::ROOT, u32::MAX);
        diff::diff(whole(&self.tree), whole(&other.tree), 0, &mut items)?;
        Ok(items
            .into_iter()
            .filter_map(|i| match i {
                Item::Key(k) | Item::OwnOnly(k) => Some(k.clone()),
                Item::Partial(_) => None,
            })
            .collect())
    }

    /// `MerkleMap.equal?/2`: top hashes (or both empty) equal.
    pub fn equal(&self, other: &MerkleMap) -> Result<bool, MerkleError> {
        if self.tree.is_stale() || other.tree.is_stale() {
            return Err(MerkleError::StaleHashes);
        }
        Ok(match (&self.tree, &other.tree) {
            (Node::Empty, Node::Empty) => true,
            (Node::Leaf(a), Node::Leaf(b)) => a.hash == b.hash,
            (Node::Inner(a), Node::Inner(b)) => a.hash == b.hash,
            _ => false,
        })
    }

    fn check_ready(&self, depth: u32) -> Result<(), MerkleError> {
        if depth == 0 {
            return Err(MerkleError::ZeroDepth);
        }
        if self.tree.is_stale() {
            return Err(MerkleError::StaleHashes);
        }
        Ok(())
    }
}
