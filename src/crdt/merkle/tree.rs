//! The tree itself: node shapes, locations, insertion, deletion and lazy
//! rehashing, with exactly the shapes and stale markers merkle_map 0.2.2
//! produces (both are visible on the wire and in recorded states).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::crdt::awlww_map::{term_cmp, OrdTerm};
use crate::term::phash2::{phash2_range, Hash2};
use crate::term::{binary, nil, Map, Term};

/// Bits in a key hash, and so the deepest level a leaf can sit at. Inner
/// nodes live at levels `0..KEY_BITS`; their children one level further.
pub const KEY_BITS: u32 = 32;

/// `phash2(_, 2^32)`: the range merkle_map hashes everything into.
const HASH_RANGE: u64 = 1 << KEY_BITS;

/// A stored node hash: `None` is upstream's `[]`, meaning "not computed yet"
/// (after a put or delete on the path) or, for a branch, "empty".
pub type Hash = Option<u32>;

/// `phash2(term, 2^32)`, the 32-bit value merkle_map stores as `<<h::32>>`.
pub fn hash_of(term: &Term) -> u32 {
    phash2_range(term, HASH_RANGE)
}

/// The tree position of `key`: its hash read MSB first.
pub fn key_hash(key: &Term) -> u32 {
    hash_of(key)
}

/// An inner node's hash: `phash2({left_hash, right_hash}, 2^32)` with each
/// side `[]` or `<<h::32>>`, without building the tuple.
pub fn inner_hash(left: Hash, right: Hash) -> u32 {
    let side = |h: Hash2, x: Hash| match x {
        None => h.nil(),
        Some(x) => h.binary(&x.to_be_bytes()),
    };
    // make_hash2 is below 2^32, so the range leaves it as it is.
    side(side(Hash2::new().tuple(2), left), right).finish()
}

/// The term a [`Hash`](type@Hash) is on the wire: `[]` or a 4-byte big-endian binary.
pub fn hash_term(hash: Hash) -> Term {
    match hash {
        None => nil(),
        Some(h) => binary(h.to_be_bytes()),
    }
}

/// Bit `level` (MSB first) of a 32-bit key hash; `None` past the last bit.
pub fn bit(key_hash: u32, level: u32) -> Option<u8> {
    (level < KEY_BITS).then(|| ((key_hash >> (KEY_BITS - 1 - level)) & 1) as u8)
}

/// A path from the root: up to 32 directions, 0 = left, 1 = right. On the
/// wire it is a bitstring of exactly `len` bits (`<<>>` for the root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Loc {
    /// The directions, left-aligned: direction `i` is bit `31 - i`. Bits past
    /// `len` are always zero, so derived equality is path equality.
    path: u32,
    len: u8,
}

impl Loc {
    /// The root, `<<>>`.
    pub const ROOT: Loc = Loc { path: 0, len: 0 };

    /// A location from its first `len` bits of `path` (left-aligned, MSB
    /// first); `None` when `len > 32`.
    pub fn new(path: u32, len: u32) -> Option<Loc> {
        match len {
            0 => Some(Loc::ROOT),
            1..=KEY_BITS => Some(Loc {
                path: path & (u32::MAX << (KEY_BITS - len)),
                len: len as u8,
            }),
            _ => None,
        }
    }

    /// Number of directions (the bitstring's `bit_size`).
    pub fn len(self) -> u32 {
        u32::from(self.len)
    }

    /// True for the root location.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The directions, left-aligned in a `u32`.
    pub fn path(self) -> u32 {
        self.path
    }

    /// Direction `i`, if the location is that long.
    pub fn bit(self, i: u32) -> Option<u8> {
        (i < self.len()).then(|| bit(self.path, i)).flatten()
    }

    /// One step further. Saturates at 32 directions: only inner nodes have
    /// children and they sit at levels below 32, so a well-formed tree never
    /// asks for a 33rd direction.
    pub(super) fn child(self, direction: u8) -> Loc {
        if self.len() >= KEY_BITS {
            return self;
        }
        let shift = KEY_BITS - 1 - self.len();
        Loc {
            path: self.path | (u32::from(direction & 1) << shift),
            len: self.len + 1,
        }
    }
}

/// A tree or subtree, with the four shapes merkle_map uses:
/// `[]`, `{hash, left, right}`, `{hash, {key_hash, %{k => v}}}` and, only in
/// subtrees cut for a diff, `{:partial, location}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Node {
    #[default]
    Empty,
    Inner(Box<Inner>),
    Leaf(Box<Leaf>),
    /// Where a diff subtree was cut: the sender has an inner node here and
    /// will send that subtree if asked. Never part of a [`super::MerkleMap`].
    Partial(Loc),
}

/// `{hash, left, right}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Inner {
    pub hash: Hash,
    pub left: Node,
    pub right: Node,
}

/// `{hash, {<<key_hash::32>>, %{key => value, ...}}}`. Several keys share a
/// leaf only when their 32-bit hashes collide. Keys are kept in Erlang term
/// order, which is `Map.keys/1` order for maps of up to 32 keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    pub hash: Hash,
    pub key_hash: u32,
    /// Shared, so the copies `cut` makes for diff messages cost no more
    /// than a reference count; `put`/`delete` copy it only while shared.
    pub contents: Arc<LeafContents>,
}

/// A leaf's pairs, keys in Erlang term order. Nearly every leaf holds one
/// key (more only when 32-bit key hashes collide), so a sorted vector: a
/// B-tree node would reserve room for eleven pairs, over a kilobyte per
/// key of a large map.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LeafContents(Vec<(OrdTerm, Term)>);

impl LeafContents {
    fn find(&self, key: &Term) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| term_cmp(&k.0, key))
    }

    pub fn get(&self, key: &Term) -> Option<&Term> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains(&self, key: &Term) -> bool {
        self.find(key).is_ok()
    }

    /// Inserts or replaces; the value replaced, if any.
    pub fn insert(&mut self, key: OrdTerm, value: Term) -> Option<Term> {
        match self.find(&key.0) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &Term) -> Option<Term> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&OrdTerm, &Term)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &OrdTerm> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<BTreeMap<OrdTerm, Term>> for LeafContents {
    /// Already in key order and without repeats.
    fn from(map: BTreeMap<OrdTerm, Term>) -> Self {
        LeafContents(map.into_iter().collect())
    }
}

impl Leaf {
    /// `phash2(contents_term(), 2^32)`, computed from the contents in place.
    pub fn contents_hash(&self) -> u32 {
        Hash2::new()
            .map(self.contents.iter().map(|(k, v)| (&k.0, v)))
            .finish()
    }

    /// The leaf's contents as the map term upstream hashes and ships.
    pub fn contents_term(&self) -> Term {
        let map: crate::term::TermMap = self
            .contents
            .iter()
            .map(|(k, v)| (k.0.clone(), v.clone()))
            .collect();
        Term::Map(Map::from(map))
    }
}

impl Node {
    /// The stored hash; `[]` for the empty tree and for partial markers.
    pub fn hash(&self) -> Hash {
        match self {
            Node::Inner(i) => i.hash,
            Node::Leaf(l) => l.hash,
            Node::Empty | Node::Partial(_) => None,
        }
    }

    /// True when the node's own hash is `[]` although it is not empty: what
    /// upstream refuses to diff ("Must call MerkleMap.update_hashes/1").
    pub fn is_stale(&self) -> bool {
        matches!(self, Node::Inner(_) | Node::Leaf(_)) && self.hash().is_none()
    }

    /// The child in `direction` of an inner node.
    fn child_mut(inner: &mut Inner, direction: u8) -> &mut Node {
        if direction == 0 {
            &mut inner.left
        } else {
            &mut inner.right
        }
    }

    /// Inserts `key => value` at key hash `kh`; `level` is this node's depth.
    /// Every node on the way gets a `[]` hash; a leaf that has to move down
    /// to make room keeps its hash, as upstream's split does.
    /// True when `key` was not in the tree before.
    pub(super) fn put(&mut self, kh: u32, level: u32, key: OrdTerm, value: Term) -> bool {
        match self {
            Node::Empty | Node::Partial(_) => {
                *self = Node::Leaf(Box::new(Leaf {
                    hash: None,
                    key_hash: kh,
                    contents: Arc::new(LeafContents(vec![(key, value)])),
                }));
                true
            }
            Node::Inner(inner) => {
                inner.hash = None;
                // Inner nodes never sit at level 32 in trees this module
                // builds or accepts, so the bit always exists.
                match bit(kh, level) {
                    Some(d) => Node::child_mut(inner, d).put(kh, level + 1, key, value),
                    None => false,
                }
            }
            Node::Leaf(leaf) if leaf.key_hash == kh => {
                leaf.hash = None;
                Arc::make_mut(&mut leaf.contents)
                    .insert(key, value)
                    .is_none()
            }
            Node::Leaf(leaf) => {
                // Two different hashes differ somewhere within 32 bits, so a
                // resident leaf is only met at a level that still has a bit.
                let Some(resident_dir) = bit(leaf.key_hash, level) else {
                    return false;
                };
                let resident = std::mem::take(self);
                let (left, right) = if resident_dir == 0 {
                    (resident, Node::Empty)
                } else {
                    (Node::Empty, resident)
                };
                *self = Node::Inner(Box::new(Inner {
                    hash: None,
                    left,
                    right,
                }));
                self.put(kh, level, key, value)
            }
        }
    }

    /// Removes `key` (hash `kh`). The leaf reached is rewritten even when it
    /// does not hold `key` (its hash becomes `[]`), and an inner node left
    /// with only one leaf and an empty side is replaced by that leaf, exactly
    /// as upstream, so the shape after any history equals a fresh build.
    /// True when `key` was in the tree.
    pub(super) fn delete(&mut self, kh: u32, level: u32, key: &Term) -> bool {
        match self {
            Node::Empty | Node::Partial(_) => false,
            Node::Leaf(leaf) => {
                let removed = Arc::make_mut(&mut leaf.contents).remove(key).is_some();
                if leaf.contents.is_empty() {
                    *self = Node::Empty;
                } else {
                    leaf.hash = None;
                }
                removed
            }
            Node::Inner(inner) => {
                inner.hash = None;
                let removed = match bit(kh, level) {
                    Some(d) => Node::child_mut(inner, d).delete(kh, level + 1, key),
                    None => false,
                };
                let collapse = match (&inner.left, &inner.right) {
                    (Node::Empty, Node::Empty) => Some(Node::Empty),
                    (Node::Empty, Node::Leaf(_)) => Some(std::mem::take(&mut inner.right)),
                    (Node::Leaf(_), Node::Empty) => Some(std::mem::take(&mut inner.left)),
                    _ => None,
                };
                if let Some(replacement) = collapse {
                    *self = replacement;
                }
                removed
            }
        }
    }

    /// The value stored for `key` (hash `kh`): one walk down the hash path.
    pub(super) fn get(&self, kh: u32, key: &Term) -> Option<&Term> {
        let loc = Loc::new(kh, KEY_BITS)?;
        match self.find(loc) {
            Node::Leaf(leaf) if leaf.key_hash == kh => leaf.contents.get(key),
            _ => None,
        }
    }

    /// Every key/value pair, in no particular order.
    pub(super) fn collect_pairs<'a>(&'a self, out: &mut Vec<(&'a Term, &'a Term)>) {
        match self {
            Node::Empty | Node::Partial(_) => {}
            Node::Leaf(l) => out.extend(l.contents.iter().map(|(k, v)| (&k.0, v))),
            Node::Inner(i) => {
                i.left.collect_pairs(out);
                i.right.collect_pairs(out);
            }
        }
    }

    /// Fills in every `[]` hash and returns this node's hash. A node that
    /// already has a hash is trusted without looking below it: that is what
    /// keeps a rehash after k updates at O(k * depth), and what upstream does.
    pub(super) fn update_hashes(&mut self) -> Hash {
        match self {
            Node::Empty | Node::Partial(_) => None,
            Node::Inner(inner) => {
                if inner.hash.is_none() {
                    let l = inner.left.update_hashes();
                    let r = inner.right.update_hashes();
                    inner.hash = Some(inner_hash(l, r));
                }
                inner.hash
            }
            Node::Leaf(leaf) => {
                if leaf.hash.is_none() {
                    leaf.hash = Some(leaf.contents_hash());
                }
                leaf.hash
            }
        }
    }

    /// The node found by following `loc` from here, stopping early at a
    /// leaf or an empty branch (upstream's `find_subtree`).
    pub(super) fn find(&self, loc: Loc) -> &Node {
        let mut node = self;
        let mut i = 0;
        while let Node::Inner(inner) = node {
            match loc.bit(i) {
                Some(0) => node = &inner.left,
                Some(_) => node = &inner.right,
                None => break,
            }
            i += 1;
        }
        node
    }

    /// A copy of this node as found at `loc`, cut `depth` levels down:
    /// inner nodes at the cut become `{:partial, their location}`, leaves
    /// are kept whole wherever they are (upstream's `get_subtree`).
    pub(super) fn cut(&self, loc: Loc, depth: u32) -> Node {
        match self {
            Node::Empty => Node::Empty,
            Node::Leaf(l) => Node::Leaf(l.clone()),
            Node::Partial(p) => Node::Partial(*p),
            Node::Inner(_) if depth == 0 => Node::Partial(loc),
            Node::Inner(i) => Node::Inner(Box::new(Inner {
                hash: i.hash,
                left: i.left.cut(loc.child(0), depth - 1),
                right: i.right.cut(loc.child(1), depth - 1),
            })),
        }
    }

    /// Keys in upstream's traversal order (`MerkleTree.keys/1`): right
    /// branch before left, each leaf's keys in term order.
    pub(super) fn collect_keys<'a>(&'a self, out: &mut Vec<&'a Term>) {
        match self {
            Node::Empty | Node::Partial(_) => {}
            Node::Leaf(l) => out.extend(l.contents.keys().map(|k| &k.0)),
            Node::Inner(i) => {
                i.right.collect_keys(out);
                i.left.collect_keys(out);
            }
        }
    }

    /// Depth of the deepest leaf or empty branch (upstream's `max_depth`).
    pub fn max_depth(&self) -> u32 {
        match self {
            Node::Inner(i) => 1 + i.left.max_depth().max(i.right.max_depth()),
            _ => 0,
        }
    }
}
