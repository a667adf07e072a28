//! Horde-compatible cluster services built on [`crate::crdt`].
//!
//! A Horde member is identified by `{Name, node}` and keeps its state in one
//! DeltaCrdt replica registered as `Name.Crdt`. This layer keeps the same CRDT
//! keys and values as Horde 0.10 and makes the same decisions from them, so
//! every member, Rust or BEAM, reaches the same answer on its own.
//!
//! - [`registry`]: `Horde.Registry` (unique keys, name conflicts, members).
//! - [`supervisor`]: `Horde.DynamicSupervisor` (distribution strategies,
//!   CRDT terms, the member's decisions, and a first runtime).

pub mod registry;
pub mod supervisor;

use crate::term::{self, Term};

/// The DeltaCrdt process name of a Horde member named `name`
/// (`Elixir.MyApp.Registry` → `Elixir.MyApp.Registry.Crdt`).
pub fn crdt_name(name: &str) -> String {
    format!("{name}.Crdt")
}

/// A member as Horde writes it: `{Name, node}`.
pub fn member(name: &str, node: &str) -> Term {
    crate::tup![term::atom(name), term::atom(node)]
}

/// `{Name, node}` → `{Name.Crdt, node}`, the neighbour the CRDT syncs with.
/// `None` for a term that is not a member tuple.
pub fn crdt_neighbour(member: &Term) -> Option<Term> {
    match term::as_tuple(member)? {
        [name, node] => Some(crate::tup![
            term::atom(&crdt_name(term::as_atom(name)?)),
            term::atom(term::as_atom(node)?)
        ]),
        _ => None,
    }
}

/// The node of a member tuple.
pub fn member_node(member: &Term) -> Option<&str> {
    match term::as_tuple(member)? {
        [_, node] => term::as_atom(node),
        _ => None,
    }
}
