//! Wire terms: `%MerkleMap{}`, `%MerkleMap.MerkleTree{}`,
//! `%MerkleMap.MerkleTree.Diff{}`, tree nodes and locations.
//!
//! Decoding never panics and never recurses more than the 33 levels a tree
//! can have; stored keys and values are depth-checked because the term order
//! used to keep them sorted recurses into them.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::tree::{bit, Hash, Inner, Leaf, Loc, Node, KEY_BITS};
use super::{key_hash, DiffStep, MerkleMap, PartialDiff};
use crate::crdt::awlww_map::{term_cmp, OrdTerm, MAX_TERM_DEPTH};
use crate::crdt::CrdtTermError;
use crate::term::elixir::{self, StructBuilder};
use crate::term::{as_list, as_tuple, atom, is_atom, list, nil, tuple, BitBinary, Map, Term};

/// `MerkleMap`.
pub const MERKLE_MAP_STRUCT: &str = "MerkleMap";
/// `MerkleMap.MerkleTree`.
pub const MERKLE_TREE_STRUCT: &str = "MerkleMap.MerkleTree";
/// `MerkleMap.MerkleTree.Diff`.
pub const DIFF_STRUCT: &str = "MerkleMap.MerkleTree.Diff";

fn shape(at: &'static str, expected: &'static str) -> CrdtTermError {
    CrdtTermError::Shape { at, expected }
}

// ---- locations ----------------------------------------------------------

impl Loc {
    /// The bitstring: a binary when the length is a whole number of bytes
    /// (as `term_to_binary` encodes it), else a bit binary.
    pub fn to_term(self) -> Term {
        let nbytes = self.len().div_ceil(8) as usize;
        let mut bytes = self.path().to_be_bytes()[..nbytes].to_vec();
        let tail = (self.len() % 8) as u8;
        if tail == 0 {
            return Term::Binary(bytes.into());
        }
        // `BitBinary` keeps the bits of a partial last byte in its low end.
        if let Some(last) = bytes.last_mut() {
            *last >>= 8 - tail;
        }
        Term::BitBinary(BitBinary::from((bytes, tail)))
    }

    /// A location of at most 32 bits. Longer bitstrings are rejected: no
    /// tree has inner nodes that deep, so no honest peer sends one.
    pub fn from_term(term: &Term) -> Result<Loc, CrdtTermError> {
        const AT: &str = "location";
        let err = || shape(AT, "a bitstring of at most 32 bits");
        let (bytes, len) = match term {
            Term::Binary(b) => (b.bytes.to_vec(), b.bytes.len() * 8),
            Term::BitBinary(b) if b.bytes.is_empty() => (Vec::new(), 0),
            Term::BitBinary(b) if (1..=8).contains(&b.tail_bits_size) => {
                let tail = b.tail_bits_size;
                let mut bytes = b.bytes.clone();
                if let Some(last) = bytes.last_mut() {
                    *last = last.checked_shl(u32::from(8 - tail)).unwrap_or(0);
                }
                let len = (bytes.len() - 1) * 8 + usize::from(tail);
                (bytes, len)
            }
            _ => return Err(err()),
        };
        if len > KEY_BITS as usize {
            return Err(err());
        }
        let mut word = [0u8; 4];
        word[..bytes.len()].copy_from_slice(&bytes);
        Loc::new(u32::from_be_bytes(word), len as u32).ok_or_else(err)
    }
}

/// For a key shaped `{:partial, x}`: `Some(Ok(loc))` when `x` is a location,
/// `Some(Err(()))` when not; `None` for any other key.
pub(super) fn partial_key_loc(key: &Term) -> Option<Result<Loc, ()>> {
    match as_tuple(key) {
        Some([tag, loc]) if is_atom(tag, "partial") => Some(Loc::from_term(loc).map_err(|_| ())),
        _ => None,
    }
}

// ---- nodes ----------------------------------------------------------------

fn hash_from_term(term: &Term) -> Result<Hash, CrdtTermError> {
    match term {
        Term::List(l) if l.elements.is_empty() => Ok(None),
        Term::Binary(b) if b.bytes.len() == 4 => Ok(Some(u32::from_be_bytes([
            b.bytes[0], b.bytes[1], b.bytes[2], b.bytes[3],
        ]))),
        _ => Err(shape("node hash", "[] or a 4-byte binary")),
    }
}

fn is_nil_term(term: &Term) -> bool {
    match term {
        Term::List(l) => l.elements.is_empty(),
        Term::ByteList(b) => b.bytes.is_empty(),
        _ => false,
    }
}

impl Node {
    /// The node as upstream writes it.
    pub fn to_term(&self) -> Term {
        match self {
            Node::Empty => nil(),
            Node::Inner(i) => tuple(vec![
                super::hash_term(i.hash),
                i.left.to_term(),
                i.right.to_term(),
            ]),
            Node::Leaf(l) => tuple(vec![
                super::hash_term(l.hash),
                tuple(vec![
                    Term::Binary(l.key_hash.to_be_bytes().to_vec().into()),
                    l.contents_term(),
                ]),
            ]),
            Node::Partial(loc) => tuple(vec![atom("partial"), loc.to_term()]),
        }
    }

    /// A node found at depth `level`: inner nodes are accepted above level
    /// 32 only, which bounds the recursion.
    pub fn from_term(term: &Term, level: u32) -> Result<Node, CrdtTermError> {
        if is_nil_term(term) {
            return Ok(Node::Empty);
        }
        match as_tuple(term) {
            Some([h, l, r]) => {
                if level >= KEY_BITS {
                    return Err(shape("merkle tree", "at most 32 levels of inner nodes"));
                }
                Ok(Node::Inner(Box::new(Inner {
                    hash: hash_from_term(h)?,
                    left: Node::from_term(l, level + 1)?,
                    right: Node::from_term(r, level + 1)?,
                })))
            }
            Some([tag, loc]) if is_atom(tag, "partial") => Ok(Node::Partial(Loc::from_term(loc)?)),
            Some([h, body]) => {
                let Some([kh, contents]) = as_tuple(body) else {
                    return Err(shape("leaf", "{key_hash, contents}"));
                };
                let key_hash = match kh {
                    Term::Binary(b) if b.bytes.len() == 4 => {
                        u32::from_be_bytes([b.bytes[0], b.bytes[1], b.bytes[2], b.bytes[3]])
                    }
                    _ => return Err(shape("leaf", "a 4-byte key hash")),
                };
                let Term::Map(m) = contents else {
                    return Err(shape("leaf", "a map of contents"));
                };
                if m.map.is_empty() {
                    return Err(shape("leaf", "at least one key"));
                }
                Ok(Node::Leaf(Box::new(Leaf {
                    hash: hash_from_term(h)?,
                    key_hash,
                    contents: std::sync::Arc::new(ordered_map(&m.map, "leaf")?.into()),
                })))
            }
            _ => Err(shape("merkle tree", "[], {hash, l, r} or {hash, leaf}")),
        }
    }
}

/// `%MerkleMap.MerkleTree{tree: node}`.
pub fn tree_struct(node: &Node) -> Term {
    StructBuilder::new(MERKLE_TREE_STRUCT)
        .field("tree", node.to_term())
        .build()
}

/// The node inside `%MerkleMap.MerkleTree{tree: node}`, found at `level`.
pub fn tree_from_struct(term: &Term, level: u32) -> Result<Node, CrdtTermError> {
    if !elixir::is_struct(term, MERKLE_TREE_STRUCT) {
        return Err(shape("merkle tree", "%MerkleMap.MerkleTree{}"));
    }
    let tree = elixir::struct_field(term, "tree").ok_or(shape("merkle tree", "a tree field"))?;
    Node::from_term(tree, level)
}

/// A map term's pairs, keys depth-checked and in term order; two keys that
/// are the same Erlang key (possible only from a non-BEAM encoder) are an error.
fn ordered_map(
    map: &crate::term::TermMap,
    at: &'static str,
) -> Result<BTreeMap<OrdTerm, Term>, CrdtTermError> {
    let mut out = BTreeMap::new();
    for (k, v) in map {
        check_depth(k)?;
        check_depth(v)?;
        if out.insert(OrdTerm(k.clone()), v.clone()).is_some() {
            return Err(CrdtTermError::DuplicateKey { at });
        }
    }
    Ok(out)
}

/// Rejects terms nesting deeper than [`MAX_TERM_DEPTH`], without recursing.
fn check_depth(term: &Term) -> Result<(), CrdtTermError> {
    // The root counts as level 0 here, hence one more level than the limit.
    if crate::term::depth_within(term, MAX_TERM_DEPTH + 1) {
        Ok(())
    } else {
        Err(CrdtTermError::TooDeep {
            limit: MAX_TERM_DEPTH,
        })
    }
}

// ---- diffs ----------------------------------------------------------------

/// A list's elements, borrowed (what [`as_list`] gives, without copying a
/// proper list).
fn list_items(term: &Term) -> Option<std::borrow::Cow<'_, [Term]>> {
    match term {
        Term::List(l) => Some(std::borrow::Cow::Borrowed(&l.elements[..])),
        _ => as_list(term).map(std::borrow::Cow::Owned),
    }
}

impl PartialDiff {
    /// `%MerkleMap.MerkleTree.Diff{keys: [...], trees: [{loc, %MerkleTree{}}]}`.
    pub fn to_term(&self) -> Term {
        let trees = self
            .trees
            .iter()
            .map(|(loc, node)| tuple(vec![loc.to_term(), tree_struct(node)]))
            .collect();
        StructBuilder::new(DIFF_STRUCT)
            .field("keys", list(self.keys.clone()))
            .field("trees", list(trees))
            .build()
    }

    pub fn from_term(term: &Term) -> Result<PartialDiff, CrdtTermError> {
        const AT: &str = "merkle diff";
        if !elixir::is_struct(term, DIFF_STRUCT) {
            return Err(shape(AT, "%MerkleMap.MerkleTree.Diff{}"));
        }
        let field = |name| elixir::struct_field(term, name).ok_or(shape(AT, "keys and trees"));
        let keys = as_list(field("keys")?).ok_or(shape(AT, "a list of keys"))?;
        for k in &keys {
            check_depth(k)?;
        }
        // Borrowed: the trees hold every leaf the step carries, values
        // included, and a copy of them all only to walk them cost as much
        // as decoding them.
        let trees = list_items(field("trees")?)
            .ok_or(shape(AT, "a list of trees"))?
            .iter()
            .map(|entry| match as_tuple(entry) {
                Some([loc, tree]) => {
                    let loc = Loc::from_term(loc)?;
                    Ok((loc, tree_from_struct(tree, loc.len())?))
                }
                _ => Err(shape(AT, "{location, %MerkleMap.MerkleTree{}} entries")),
            })
            .collect::<Result<_, _>>()?;
        Ok(PartialDiff { keys, trees })
    }
}

impl DiffStep {
    /// `{:continue, diff}` or `{:ok, keys}`.
    pub fn to_term(&self) -> Term {
        match self {
            DiffStep::Continue(d) => tuple(vec![atom("continue"), d.to_term()]),
            DiffStep::Done(keys) => tuple(vec![atom("ok"), list(keys.clone())]),
        }
    }

    pub fn from_term(term: &Term) -> Result<DiffStep, CrdtTermError> {
        match as_tuple(term) {
            Some([tag, d]) if is_atom(tag, "continue") => {
                Ok(DiffStep::Continue(PartialDiff::from_term(d)?))
            }
            Some([tag, keys]) if is_atom(tag, "ok") => {
                let keys = as_list(keys).ok_or(shape("diff step", "a list of keys"))?;
                for k in &keys {
                    check_depth(k)?;
                }
                Ok(DiffStep::Done(keys))
            }
            _ => Err(shape("diff step", "{:continue, diff} or {:ok, keys}")),
        }
    }
}

// ---- the map --------------------------------------------------------------

impl MerkleMap {
    /// `%MerkleMap{map: %{...}, merkle_tree: %MerkleMap.MerkleTree{tree: ...}}`,
    /// stale hashes included.
    pub fn to_term(&self) -> Term {
        let map: crate::term::TermMap = self.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        StructBuilder::new(MERKLE_MAP_STRUCT)
            .field("map", Term::Map(Map::from(map)))
            .field("merkle_tree", tree_struct(&self.tree))
            .build()
    }

    /// Accepts the struct as merkle_map builds it: besides the shapes, every
    /// leaf must sit on its key hash's path, hold only keys of that hash, and
    /// the leaves together must hold exactly `map`. Anything else is an
    /// error, since later puts and deletes rely on it. Stored hashes are
    /// taken as they are (`[]` included).
    pub fn from_term(term: &Term) -> Result<MerkleMap, CrdtTermError> {
        const AT: &str = "merkle map";
        if !elixir::is_struct(term, MERKLE_MAP_STRUCT) {
            return Err(shape(AT, "%MerkleMap{}"));
        }
        let Some(Term::Map(m)) = elixir::struct_field(term, "map") else {
            return Err(shape(AT, "a map field"));
        };
        let map = ordered_map(&m.map, AT)?;
        let tree_term =
            elixir::struct_field(term, "merkle_tree").ok_or(shape(AT, "a merkle_tree field"))?;
        let tree = tree_from_struct(tree_term, 0)?;
        let mut seen = 0usize;
        check_placement(&tree, Loc::ROOT, &map, &mut seen)?;
        if seen != map.len() {
            return Err(shape(AT, "a tree holding exactly the map's keys"));
        }
        Ok(MerkleMap {
            tree,
            len: map.len(),
        })
    }
}

fn check_placement(
    node: &Node,
    loc: Loc,
    map: &BTreeMap<OrdTerm, Term>,
    seen: &mut usize,
) -> Result<(), CrdtTermError> {
    const AT: &str = "merkle map";
    match node {
        Node::Empty => Ok(()),
        Node::Partial(_) => Err(shape(AT, "a whole tree (no partial markers)")),
        Node::Inner(i) => {
            check_placement(&i.left, loc.child(0), map, seen)?;
            check_placement(&i.right, loc.child(1), map, seen)
        }
        Node::Leaf(l) => {
            let on_path = (0..loc.len()).all(|i| bit(l.key_hash, i) == loc.bit(i));
            if !on_path {
                return Err(shape(AT, "leaves on their key hash's path"));
            }
            for (k, v) in l.contents.iter() {
                if key_hash(&k.0) != l.key_hash {
                    return Err(shape(AT, "leaf keys matching the leaf's key hash"));
                }
                match map.get(k) {
                    Some(mv) if term_cmp(mv, v) == Ordering::Equal => *seen += 1,
                    _ => return Err(shape(AT, "a tree holding exactly the map's keys")),
                }
            }
            Ok(())
        }
    }
}
