//! Conversions between [`eetf::Term`] (the `eetf` crate's terms, which much
//! Rust code for the BEAM is written against) and our [`Term`], both ways,
//! behind the `eetf` feature.
//!
//! The two types have the same variants and fields (ours were named after
//! eetf's), so each conversion is a walk that moves every value across; the
//! only differences are that our floats are finite (the BEAM has no other)
//! and that our side bounds nesting as our decoder does, so a term handed to
//! us from eetf cannot be deeper than one we would accept from the network.
//! This module never encodes or decodes bytes: that stays in `term::etf`.

use super::{
    Atom, BigInteger, Binary, BitBinary, ByteList, ExternalFun, FixInteger, Float, ImproperList,
    InternalFun, List, Map, Pid, Port, Reference, Term, Tuple,
};

/// Why an [`eetf::Term`] has no [`Term`] equivalent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FromEetfError {
    #[error("float {0} is not finite; Erlang floats are")]
    NonFiniteFloat(String),
    #[error("term nests deeper than {} levels", super::etf::MAX_DEPTH)]
    TooDeep,
}

impl TryFrom<eetf::Term> for Term {
    type Error = FromEetfError;
    fn try_from(t: eetf::Term) -> Result<Term, FromEetfError> {
        from_eetf(t, super::etf::MAX_DEPTH)
    }
}

impl From<Term> for eetf::Term {
    fn from(t: Term) -> eetf::Term {
        to_eetf(t)
    }
}

fn atom_from(a: eetf::Atom) -> Atom {
    Atom::from(a.name.as_str())
}

fn atom_to(a: Atom) -> eetf::Atom {
    eetf::Atom::from(a.name.as_str())
}

fn pid_from(p: eetf::Pid) -> Pid {
    Pid::new(atom_from(p.node), p.id, p.serial, p.creation)
}

fn pid_to(p: Pid) -> eetf::Pid {
    eetf::Pid {
        node: atom_to(p.node),
        id: p.id,
        serial: p.serial,
        creation: p.creation,
    }
}

fn from_eetf(t: eetf::Term, depth: usize) -> Result<Term, FromEetfError> {
    let depth = depth.checked_sub(1).ok_or(FromEetfError::TooDeep)?;
    let all = |v: Vec<eetf::Term>| -> Result<Vec<Term>, FromEetfError> {
        v.into_iter().map(|e| from_eetf(e, depth)).collect()
    };
    Ok(match t {
        eetf::Term::Atom(a) => Term::Atom(atom_from(a)),
        eetf::Term::FixInteger(i) => Term::FixInteger(FixInteger::from(i.value)),
        eetf::Term::BigInteger(b) => Term::BigInteger(BigInteger { value: b.value }),
        eetf::Term::Float(f) => Term::Float(
            Float::try_from(f.value)
                .map_err(|_| FromEetfError::NonFiniteFloat(f.value.to_string()))?,
        ),
        eetf::Term::Pid(p) => Term::Pid(pid_from(p)),
        eetf::Term::Port(p) => Term::Port(Port {
            node: atom_from(p.node),
            id: p.id,
            creation: p.creation,
        }),
        eetf::Term::Reference(r) => Term::Reference(Box::new(Reference {
            node: atom_from(r.node),
            id: r.id,
            creation: r.creation,
        })),
        eetf::Term::ExternalFun(f) => Term::ExternalFun(Box::new(ExternalFun {
            module: atom_from(f.module),
            function: atom_from(f.function),
            arity: f.arity,
        })),
        eetf::Term::InternalFun(f) => Term::InternalFun(Box::new(match *f {
            eetf::InternalFun::Old {
                module,
                pid,
                free_vars,
                index,
                uniq,
            } => InternalFun::Old {
                module: atom_from(module),
                pid: pid_from(pid),
                free_vars: all(free_vars)?,
                index,
                uniq,
            },
            eetf::InternalFun::New {
                module,
                arity,
                pid,
                free_vars,
                index,
                uniq,
                old_index,
                old_uniq,
            } => InternalFun::New {
                module: atom_from(module),
                arity,
                pid: pid_from(pid),
                free_vars: all(free_vars)?,
                index,
                uniq,
                old_index,
                old_uniq,
            },
        })),
        eetf::Term::Binary(b) => Term::Binary(Binary::from(b.bytes)),
        eetf::Term::BitBinary(b) => Term::BitBinary(BitBinary {
            bytes: b.bytes,
            tail_bits_size: b.tail_bits_size,
        }),
        eetf::Term::ByteList(b) => Term::ByteList(ByteList { bytes: b.bytes }),
        eetf::Term::List(l) => Term::List(List::from(all(l.elements)?)),
        eetf::Term::ImproperList(l) => Term::ImproperList(ImproperList::from((
            all(l.elements)?,
            from_eetf(*l.last, depth)?,
        ))),
        eetf::Term::Tuple(t) => Term::Tuple(Tuple::from(all(t.elements)?)),
        eetf::Term::Map(m) => Term::Map(
            m.map
                .into_iter()
                .map(|(k, v)| Ok((from_eetf(k, depth)?, from_eetf(v, depth)?)))
                .collect::<Result<Map, FromEetfError>>()?,
        ),
    })
}

fn to_eetf(t: Term) -> eetf::Term {
    let all = |v: Vec<Term>| -> Vec<eetf::Term> { v.into_iter().map(to_eetf).collect() };
    match t {
        Term::Atom(a) => eetf::Term::Atom(atom_to(a)),
        Term::FixInteger(i) => eetf::Term::FixInteger(eetf::FixInteger::from(i.value)),
        Term::BigInteger(b) => eetf::Term::BigInteger(eetf::BigInteger { value: b.value }),
        Term::Float(f) => eetf::Term::Float(eetf::Float { value: f.value }),
        Term::Pid(p) => eetf::Term::Pid(pid_to(p)),
        Term::Port(p) => eetf::Term::Port(eetf::Port {
            node: atom_to(p.node),
            id: p.id,
            creation: p.creation,
        }),
        Term::Reference(r) => eetf::Term::Reference(Box::new(eetf::Reference {
            node: atom_to(r.node),
            id: r.id,
            creation: r.creation,
        })),
        Term::ExternalFun(f) => eetf::Term::ExternalFun(Box::new(eetf::ExternalFun {
            module: atom_to(f.module),
            function: atom_to(f.function),
            arity: f.arity,
        })),
        Term::InternalFun(f) => eetf::Term::InternalFun(Box::new(match *f {
            InternalFun::Old {
                module,
                pid,
                free_vars,
                index,
                uniq,
            } => eetf::InternalFun::Old {
                module: atom_to(module),
                pid: pid_to(pid),
                free_vars: all(free_vars),
                index,
                uniq,
            },
            InternalFun::New {
                module,
                arity,
                pid,
                free_vars,
                index,
                uniq,
                old_index,
                old_uniq,
            } => eetf::InternalFun::New {
                module: atom_to(module),
                arity,
                pid: pid_to(pid),
                free_vars: all(free_vars),
                index,
                uniq,
                old_index,
                old_uniq,
            },
        })),
        Term::Binary(b) => eetf::Term::Binary(eetf::Binary::from(b.bytes.to_vec())),
        Term::BitBinary(b) => eetf::Term::BitBinary(eetf::BitBinary {
            bytes: b.bytes,
            tail_bits_size: b.tail_bits_size,
        }),
        Term::ByteList(b) => eetf::Term::ByteList(eetf::ByteList { bytes: b.bytes }),
        Term::List(l) => eetf::Term::List(eetf::List::from(all(l.elements))),
        Term::ImproperList(l) => eetf::Term::ImproperList(eetf::ImproperList {
            elements: all(l.elements),
            last: Box::new(to_eetf(*l.last)),
        }),
        Term::Tuple(t) => eetf::Term::Tuple(eetf::Tuple::from(all(t.elements))),
        Term::Map(m) => eetf::Term::Map(eetf::Map {
            map: m
                .map
                .into_iter()
                .map(|(k, v)| (to_eetf(k), to_eetf(v)))
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_floats_and_deep_terms_are_refused() {
        let nan = eetf::Term::Float(eetf::Float { value: f64::NAN });
        assert!(matches!(
            Term::try_from(nan),
            Err(FromEetfError::NonFiniteFloat(_))
        ));
        let mut deep = eetf::Term::from(eetf::Atom::from("x"));
        for _ in 0..super::super::etf::MAX_DEPTH {
            deep = eetf::Term::from(eetf::Tuple::from(vec![deep]));
        }
        assert_eq!(Term::try_from(deep), Err(FromEetfError::TooDeep));
    }
}
