//! Every term `Horde.DynamicSupervisor` keeps in its CRDT, built and read in
//! one place.
//!
//! What it owns: the keys and values as Horde 0.10 writes them (S is the
//! supervisor name, a member is `{S, node}`):
//! - `{:member, member} => 1`;
//! - `{:member_node_info, member} => %Horde.DynamicSupervisor.Member{name: member, status: s}`
//!   (the struct has exactly these two fields), `s` one of `:uninitialized`,
//!   `:alive`, `:shutting_down`, `:dead`;
//! - `{:process, child_id} => {member, child_spec, pid}` for a running
//!   child, or `{nil, child_spec}` for one its member relinquished.
//!
//! What it never does: panic or guess on a term from the network. A value
//! of the wrong shape is a [`CodecError`], and the caller decides to log and
//! skip it.

use crate::term::{self, elixir, Term};

/// The Elixir module of a member's info struct.
pub const MEMBER_STRUCT: &str = "Elixir.Horde.DynamicSupervisor.Member";

/// A member's status, as `%Horde.DynamicSupervisor.Member{}` has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// Known from `{:member, _}` or `set_members`, not yet heard from.
    Uninitialized,
    Alive,
    /// Leaving gracefully: takes no new children, relinquishes its own.
    ShuttingDown,
    /// Its supervisor went down (written by the member that saw the DOWN).
    Dead,
}

impl MemberStatus {
    pub fn as_atom(&self) -> &'static str {
        match self {
            MemberStatus::Uninitialized => "uninitialized",
            MemberStatus::Alive => "alive",
            MemberStatus::ShuttingDown => "shutting_down",
            MemberStatus::Dead => "dead",
        }
    }

    pub fn from_atom(name: &str) -> Option<MemberStatus> {
        match name {
            "uninitialized" => Some(MemberStatus::Uninitialized),
            "alive" => Some(MemberStatus::Alive),
            "shutting_down" => Some(MemberStatus::ShuttingDown),
            "dead" => Some(MemberStatus::Dead),
            _ => None,
        }
    }
}

/// `%Horde.DynamicSupervisor.Member{name, status}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// `{S, node}` (any term, as Horde places by the name it is given).
    pub name: Term,
    pub status: MemberStatus,
}

impl Member {
    pub fn new(name: Term, status: MemberStatus) -> Member {
        Member { name, status }
    }

    /// The struct term.
    pub fn to_term(&self) -> Term {
        elixir::StructBuilder::new(MEMBER_STRUCT)
            .field("name", self.name.clone())
            .field("status", term::atom(self.status.as_atom()))
            .build()
    }

    /// Reads the struct: a map whose `__struct__` is the Member module, with
    /// a `name` and a known `status`.
    pub fn from_term(t: &Term) -> Result<Member, CodecError> {
        if !elixir::is_struct(t, MEMBER_STRUCT) {
            return Err(CodecError::new(
                "member info",
                "not a %Horde.DynamicSupervisor.Member{}",
                t,
            ));
        }
        let name = elixir::struct_field(t, "name")
            .ok_or_else(|| CodecError::new("member info", "no name", t))?;
        let status = elixir::struct_field(t, "status")
            .and_then(term::as_atom)
            .and_then(MemberStatus::from_atom)
            .ok_or_else(|| CodecError::new("member info", "no known status", t))?;
        Ok(Member::new(name.clone(), status))
    }
}

/// A CRDT key or value of the wrong shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed {what}: {why} in {term}")]
pub struct CodecError {
    pub what: &'static str,
    pub why: &'static str,
    /// The offending term, shortened for logs.
    pub term: String,
}

impl CodecError {
    fn new(what: &'static str, why: &'static str, t: &Term) -> CodecError {
        let mut text = format!("{t}");
        if text.len() > 200 {
            let mut cut = 200;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        CodecError {
            what,
            why,
            term: text,
        }
    }
}
