//! Comparing two trees, and the partial-diff rounds DeltaCrdt runs with it.
//!
//! The output order is part of the protocol: the key list is truncated to
//! `max_sync_size` and partial locations become the next message's subtrees
//! in the order found. Upstream builds nested lists of wrapped keys, flattens
//! and reverses them; worked through, that gives the orders implemented
//! directly here:
//! - both sides inner: differences under the right branches, then the left;
//! - a whole subtree listed: right branch first, each leaf's keys in term order;
//! - two leaves: keys only the second leaf has, then keys of the first leaf
//!   whose value differs (by `==`) from the second's (a missing value counts
//!   as `nil`, so a key mapped to `nil` on one side only is not reported);
//! - a leaf against an inner node: where the leaf's next hash bit is 0, the
//!   inner node's right branch (listed whole) then the left branch against the
//!   leaf; where it is 1, the right branch against the leaf then the left
//!   branch listed whole. The inner node's branch is the first operand.

use std::cmp::Ordering;

use super::tree::{bit, Hash, Inner, Leaf, Loc, Node};
use super::MerkleError;
use crate::crdt::awlww_map::term_cmp;
use crate::term::{atom, BigInteger, Term};

#[cfg(test)]
thread_local! {
    /// Pairs of nodes compared on this thread: lets tests check that a diff
    /// does work proportional to the differences, not to the map.
    pub(super) static VISITS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One entry of a diff result before partial locations are split off.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Item<'a> {
    Key(&'a Term),
    /// A key of ours listed whole where the peer's side is empty (only
    /// when listing whole, see [`Cursor::listing_whole`]).
    OwnOnly(&'a Term),
    Partial(Loc),
}

/// A position in a tree while comparing. On our own side `budget` is the
/// number of levels left before the subtree upstream would have cut (an inner
/// node met with no budget left is a `{:partial, loc}`), so we compare without
/// materialising the cut copy. On the peer's side the tree is already cut and
/// the budget is unlimited.
#[derive(Clone, Copy)]
pub(super) struct Cursor<'a> {
    node: &'a Node,
    loc: Loc,
    budget: Option<u32>,
    /// Where the other side has nothing, list our keys whole instead of
    /// stopping at the cut (see [`Cursor::listing_whole`]).
    list_whole: bool,
}

enum View<'a> {
    Empty,
    Leaf(&'a Leaf, Cursor<'a>),
    Inner(Hash, Cursor<'a>, Cursor<'a>),
    Partial(Loc),
}

impl<'a> Cursor<'a> {
    /// Our own subtree at `loc`, cut `depth` levels down.
    pub(super) fn own(root: &'a Node, loc: Loc, depth: u32) -> Self {
        Cursor {
            node: root.find(loc),
            loc,
            budget: Some(depth),
            list_whole: false,
        }
    }

    /// Where the peer's side is empty (or a leaf beside our inner node), our
    /// keys there are listed whole rather than cut into `{:partial, loc}`
    /// locations. Upstream would send our subtree on and the peer would
    /// answer with exactly those keys: the same result, one or more round
    /// trips and a copy of our values on the wire later. Not what upstream
    /// sends, so off where a test compares with recorded upstream steps.
    pub(super) fn listing_whole(mut self) -> Self {
        self.list_whole = true;
        self
    }

    /// A subtree received from a peer.
    pub(super) fn peer(node: &'a Node) -> Self {
        Cursor {
            node,
            loc: Loc::ROOT,
            budget: None,
            list_whole: false,
        }
    }

    fn view(self) -> View<'a> {
        match self.node {
            Node::Empty => View::Empty,
            Node::Leaf(l) => View::Leaf(l, self),
            Node::Partial(p) => View::Partial(*p),
            Node::Inner(_) if self.budget == Some(0) => View::Partial(self.loc),
            Node::Inner(i) => {
                let (l, r) = self.children(i);
                View::Inner(i.hash, l, r)
            }
        }
    }

    fn children(self, inner: &'a Inner) -> (Cursor<'a>, Cursor<'a>) {
        let budget = self.budget.map(|b| b.saturating_sub(1));
        // Peer subtrees carry their own partial locations; only our side
        // needs to track where it is.
        let step = |d| match self.budget {
            Some(_) => self.loc.child(d),
            None => self.loc,
        };
        (
            Cursor {
                node: &inner.left,
                loc: step(0),
                budget,
                list_whole: self.list_whole,
            },
            Cursor {
                node: &inner.right,
                loc: step(1),
                budget,
                list_whole: self.list_whole,
            },
        )
    }
}

/// Everything under `c`, as a side missing on the other end. With
/// `list_whole`, our own side is listed below where its cut would end.
fn list_all<'a>(mut c: Cursor<'a>, out: &mut Vec<Item<'a>>) {
    if c.list_whole && c.budget.is_some() {
        c.budget = Some(u32::MAX);
    }
    match c.view() {
        View::Empty => {}
        // Listed whole, our side holds keys the peer has none of there.
        View::Leaf(l, _) if c.list_whole && c.budget.is_some() => {
            out.extend(l.contents.keys().map(|k| Item::OwnOnly(&k.0)))
        }
        View::Leaf(l, _) => out.extend(l.contents.keys().map(|k| Item::Key(&k.0))),
        View::Partial(p) => out.push(Item::Partial(p)),
        View::Inner(_, l, r) => {
            list_all(r, out);
            list_all(l, out);
        }
    }
}

/// Upstream's `diff_keys(t1, t2, level)`: the keys (and cut locations)
/// where `a` and `b` may differ. `level` is the depth of `a` and `b`, used
/// to pick a leaf's hash bit when it meets an inner node.
pub(super) fn diff<'a>(
    a: Cursor<'a>,
    b: Cursor<'a>,
    level: u32,
    out: &mut Vec<Item<'a>>,
) -> Result<(), MerkleError> {
    #[cfg(test)]
    VISITS.with(|v| v.set(v.get() + 1));
    // Arms in upstream's clause order: it decides e.g. that an empty side
    // lists the other side whole even when that side is only a partial marker.
    match (a.view(), b.view()) {
        (View::Empty, _) => list_all(b, out),
        (_, View::Empty) => list_all(a, out),
        (View::Inner(h1, ..), View::Inner(h2, ..)) if h1 == h2 => {}
        (View::Inner(_, l1, r1), View::Inner(_, l2, r2)) => {
            diff(r1, r2, level + 1, out)?;
            diff(l1, l2, level + 1, out)?;
        }
        (_, View::Partial(p)) | (View::Partial(p), _) => out.push(Item::Partial(p)),
        (View::Leaf(x, _), View::Leaf(y, _)) if x.hash == y.hash => {}
        (View::Leaf(x, _), View::Leaf(y, _)) => leaf_diff(x, y, out),
        (View::Inner(_, l, r), View::Leaf(leaf, lc))
        | (View::Leaf(leaf, lc), View::Inner(_, l, r)) => {
            match bit(leaf.key_hash, level).ok_or(MerkleError::HashBitsExhausted)? {
                0 => {
                    list_all(r, out);
                    diff(l, lc, level + 1, out)?;
                }
                _ => {
                    diff(r, lc, level + 1, out)?;
                    list_all(l, out);
                }
            }
        }
    }
    Ok(())
}

fn leaf_diff<'a>(x: &'a Leaf, y: &'a Leaf, out: &mut Vec<Item<'a>>) {
    out.extend(
        y.contents
            .keys()
            .filter(|k| !x.contents.contains(&k.0))
            .map(|k| Item::Key(&k.0)),
    );
    let nil = atom("nil");
    for (k, v1) in x.contents.iter() {
        let v2 = y.contents.get(&k.0).unwrap_or(&nil);
        if !arith_eq(v1, v2) {
            out.push(Item::Key(&k.0));
        }
    }
}

// ---- Erlang `==` ------------------------------------------------------------

/// Erlang's `==`: like `=:=` except that an integer and a float with the same
/// value are equal, at any depth (map keys excepted: they stay exact).
/// Recursion is bounded by the depth checks applied to every stored term.
pub fn arith_eq(a: &Term, b: &Term) -> bool {
    match (a, b) {
        (Term::Float(x), Term::Float(y)) => x.value == y.value,
        (Term::Float(f), i @ (Term::FixInteger(_) | Term::BigInteger(_)))
        | (i @ (Term::FixInteger(_) | Term::BigInteger(_)), Term::Float(f)) => {
            float_eq_int(f.value, i)
        }
        (Term::Tuple(x), Term::Tuple(y)) => {
            x.elements.len() == y.elements.len()
                && x.elements
                    .iter()
                    .zip(&y.elements)
                    .all(|(p, q)| arith_eq(p, q))
        }
        (Term::Map(x), Term::Map(y)) => {
            if x.map.len() != y.map.len() {
                return false;
            }
            let (sx, sy) = (sorted_pairs(&x.map), sorted_pairs(&y.map));
            sx.iter()
                .zip(&sy)
                .all(|((k1, v1), (k2, v2))| term_cmp(k1, k2) == Ordering::Equal && arith_eq(v1, v2))
        }
        (
            Term::List(_) | Term::ImproperList(_) | Term::ByteList(_),
            Term::List(_) | Term::ImproperList(_) | Term::ByteList(_),
        ) => list_eq(a, b),
        _ => term_cmp(a, b) == Ordering::Equal,
    }
}

/// A map's pairs with keys in term order.
pub(super) fn sorted_pairs(m: &crate::term::TermMap) -> Vec<(&Term, &Term)> {
    let mut v: Vec<(&Term, &Term)> = m.iter().collect();
    v.sort_by(|p, q| term_cmp(p.0, q.0));
    v
}

/// A list's cells, byte lists expanded, then its tail (`None` for `[]`).
fn list_parts(mut t: &Term) -> (Vec<Term>, Option<Term>) {
    let mut elems = Vec::new();
    loop {
        match t {
            Term::List(l) => {
                elems.extend(l.elements.iter().cloned());
                return (elems, None);
            }
            Term::ByteList(l) => {
                elems.extend(l.bytes.iter().map(|&b| crate::term::int(i64::from(b))));
                return (elems, None);
            }
            Term::ImproperList(l) => {
                elems.extend(l.elements.iter().cloned());
                t = &l.last;
            }
            other => return (elems, Some(other.clone())),
        }
    }
}

fn list_eq(a: &Term, b: &Term) -> bool {
    let ((ea, ta), (eb, tb)) = (list_parts(a), list_parts(b));
    let tails_eq = match (&ta, &tb) {
        (None, None) => true,
        (Some(x), Some(y)) => arith_eq(x, y),
        _ => false,
    };
    ea.len() == eb.len() && ea.iter().zip(&eb).all(|(x, y)| arith_eq(x, y)) && tails_eq
}

/// `f == i` for a float and an integer: only an integral float can equal an
/// integer, and then exactly when its integer value does.
fn float_eq_int(f: f64, i: &Term) -> bool {
    if !f.is_finite() || f.fract() != 0.0 {
        return false;
    }
    let as_big = |t: &Term| match t {
        Term::FixInteger(x) => BigInteger::from(i64::from(x.value)).value,
        Term::BigInteger(x) => x.value.clone(),
        _ => BigInteger::from(0i64).value,
    };
    integral_f64_to_big(f) == as_big(i)
}

/// The exact integer value of a finite integral `f64`.
fn integral_f64_to_big(f: f64) -> num_bigint::BigInt {
    let bits = f.to_bits();
    let negative = bits >> 63 == 1;
    let exponent = ((bits >> 52) & 0x7ff) as i64;
    let fraction = bits & ((1u64 << 52) - 1);
    if exponent == 0 {
        // Zero or subnormal; only zero is integral.
        return num_bigint::BigInt::from(0);
    }
    let mantissa = fraction | (1u64 << 52);
    let shift = exponent - 1075;
    let magnitude = if shift >= 0 {
        num_bigint::BigInt::from(mantissa) << (shift as usize)
    } else {
        num_bigint::BigInt::from(mantissa >> ((-shift) as u32).min(63))
    };
    if negative {
        -magnitude
    } else {
        magnitude
    }
}
