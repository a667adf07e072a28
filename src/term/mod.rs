//! Erlang terms: the term types (`types`), the external format (`etf`),
//! `erlang:phash2` (`phash2`), Elixir conventions (`elixir`), conversions
//! from and to the `eetf` crate's terms (`eetf`, with the `eetf` feature), plus short
//! constructors and matchers used everywhere else.
//!
//! This module never does I/O and never panics on a term that came from the network.

#[cfg(feature = "eetf")]
pub mod eetf;
pub mod elixir;
pub mod etf;
pub mod parse;
pub mod phash2;
mod types;

pub use types::{
    Atom, BigInteger, Binary, BitBinary, ByteList, ExternalFun, FixInteger, Float, ImproperList,
    InNode, InternalFun, List, Map, MapHasher, NonFiniteFloat, Pid, Port, Reference, Term, TermMap,
    Tuple,
};

/// An atom term.
pub fn atom(name: &str) -> Term {
    Term::Atom(Atom::from(name))
}

/// A tuple term.
pub fn tuple(elements: Vec<Term>) -> Term {
    Term::Tuple(Tuple::from(elements))
}

/// A proper list term.
pub fn list(elements: Vec<Term>) -> Term {
    Term::List(List::from(elements))
}

/// The empty list `[]`.
pub fn nil() -> Term {
    Term::List(List::nil())
}

/// An integer term, small or big as the value needs.
pub fn int(value: i64) -> Term {
    if let Ok(v) = i32::try_from(value) {
        Term::FixInteger(FixInteger::from(v))
    } else {
        Term::BigInteger(BigInteger::from(value))
    }
}

/// A binary term.
pub fn binary(bytes: impl Into<Vec<u8>>) -> Term {
    Term::Binary(Binary::from(bytes.into()))
}

/// The atom's text when `term` is an atom.
pub fn as_atom(term: &Term) -> Option<&str> {
    match term {
        Term::Atom(a) => Some(a.name.as_str()),
        _ => None,
    }
}

/// The elements when `term` is a tuple.
pub fn as_tuple(term: &Term) -> Option<&[Term]> {
    match term {
        Term::Tuple(t) => Some(t.elements.as_slice()),
        _ => None,
    }
}

/// The elements when `term` is a proper list (`[]` included). Strings sent as
/// `STRING_EXT` come back as a list of small integers.
pub fn as_list(term: &Term) -> Option<Vec<Term>> {
    match term {
        Term::List(l) => Some(l.elements.clone()),
        Term::ByteList(b) => Some(b.bytes.iter().map(|&x| int(i64::from(x))).collect()),
        _ => None,
    }
}

/// The value when `term` is an integer that fits in an `i64`.
pub fn as_i64(term: &Term) -> Option<i64> {
    match term {
        Term::FixInteger(i) => Some(i64::from(i.value)),
        Term::BigInteger(b) => i64::try_from(&b.value).ok(),
        _ => None,
    }
}

/// True when `term` is the atom `name`.
pub fn is_atom(term: &Term, name: &str) -> bool {
    as_atom(term) == Some(name)
}

/// Builds a tuple from a list of terms: `tup![atom("ok"), int(1)]`.
#[macro_export]
macro_rules! tup {
    ($($e:expr),* $(,)?) => {
        $crate::term::tuple(vec![$($e),*])
    };
}

/// True when `term` nests at most `limit` levels deep (the term itself is
/// level 1). Iterative, so checking a hostile term cannot overflow the stack
/// (its recursive `Drop` or comparison later might: that is what the limit is for).
pub fn depth_within(term: &Term, limit: usize) -> bool {
    let mut stack: Vec<(&Term, usize)> = vec![(term, 1)];
    while let Some((t, depth)) = stack.pop() {
        if depth > limit {
            return false;
        }
        let d = depth + 1;
        match t {
            Term::List(l) => stack.extend(l.elements.iter().map(|e| (e, d))),
            Term::ImproperList(l) => {
                stack.extend(l.elements.iter().map(|e| (e, d)));
                stack.push((&l.last, d));
            }
            Term::Tuple(t) => stack.extend(t.elements.iter().map(|e| (e, d))),
            Term::Map(m) => {
                for (k, v) in &m.map {
                    stack.push((k, d));
                    stack.push((v, d));
                }
            }
            Term::InternalFun(f) => {
                let vars = match f.as_ref() {
                    InternalFun::Old { free_vars, .. } | InternalFun::New { free_vars, .. } => {
                        free_vars
                    }
                };
                stack.extend(vars.iter().map(|e| (e, d)));
            }
            _ => {}
        }
    }
    true
}

/// Random terms for tests that compare two paths over the same terms.
#[cfg(test)]
pub(crate) mod testgen {
    use super::*;

    /// A xorshift generator, so failures reproduce.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A term up to `depth` levels of containers deep, of every shape the
    /// hash and the encoder distinguish.
    pub(crate) fn term(rng: &mut Rng, depth: u32) -> Term {
        let kinds = if depth == 0 { 8 } else { 14 };
        match rng.below(kinds) {
            0 => int(rng.below(300) as i64 - 20),
            1 => int(rng.next() as i64 >> rng.below(64)),
            2 => Term::BigInteger(BigInteger {
                value: num_bigint::BigInt::from(rng.next() as i64)
                    * num_bigint::BigInt::from(rng.next())
                    * num_bigint::BigInt::from(rng.next()),
            }),
            3 => atom(["ok", "", "héllo", "key", "Ω"][rng.below(5) as usize]),
            4 => binary((0..rng.below(30)).map(|i| i as u8).collect::<Vec<u8>>()),
            5 => Term::ByteList(ByteList::from(
                (0..rng.below(6)).map(|i| i as u8).collect::<Vec<u8>>(),
            )),
            6 => Term::Float(Float {
                value: rng.next() as f64 / 3.0 - 1e18,
            }),
            7 => nil(),
            8 | 9 => list((0..rng.below(6)).map(|_| term(rng, depth - 1)).collect()),
            10 => tuple((0..rng.below(5)).map(|_| term(rng, depth - 1)).collect()),
            11 => Term::Map(Map {
                map: (0..rng.below(5))
                    .map(|_| (term(rng, depth - 1), term(rng, depth - 1)))
                    .collect(),
            }),
            12 => Term::ImproperList(ImproperList::from((
                (0..=rng.below(3)).map(|_| term(rng, depth - 1)).collect(),
                term(rng, depth - 1),
            ))),
            _ => {
                // One deep chain, past the recursion bounds of the fast paths.
                let mut t = term(rng, 1);
                for i in 0..rng.below(150) {
                    t = match i % 3 {
                        0 => list(vec![int(1), t]),
                        1 => tuple(vec![t]),
                        _ => Term::Map(Map::from([(int(i as i64), t)])),
                    };
                }
                t
            }
        }
    }
}
