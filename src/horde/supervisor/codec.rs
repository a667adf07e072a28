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
//! Child specs are Elixir child-spec maps as `Supervisor.child_spec/2`
//! leaves them: `%{id: _, start: {m, f, args}}` plus whichever of `restart`,
//! `shutdown`, `type`, `modules` (and any other key) the user gave; Horde
//! stores them unchanged but for `:id`, which it replaces by a random integer
//! below 2^128 before placing the child. Defaults are filled only when a
//! child is started ([`ChildSpec::validate`], as `Horde.ProcessesSupervisor`
//! does), never in the stored map: the map's `phash2` decides placement.
//!
//! What it never does: panic or guess on a term from the network. A value
//! of the wrong shape is a [`CodecError`], and the caller decides to log and
//! skip it.

use crate::horde::crdt_neighbour;
use crate::term::{self, elixir, List, Pid, Term};

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

/// A member name as Horde writes it in keys: `{S, node}`, two atoms.
fn member_name(what: &'static str, t: &Term) -> Result<Term, CodecError> {
    match crdt_neighbour(t) {
        Some(_) => Ok(t.clone()),
        None => Err(CodecError::new(what, "member is not {name, node}", t)),
    }
}

/// A supervisor CRDT key.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    /// `{:member, {S, node}}`.
    Member(Term),
    /// `{:member_node_info, {S, node}}`.
    MemberNodeInfo(Term),
    /// `{:process, child_id}`.
    Process(Term),
}

impl Key {
    pub fn to_term(&self) -> Term {
        let (tag, x) = match self {
            Key::Member(m) => ("member", m),
            Key::MemberNodeInfo(m) => ("member_node_info", m),
            Key::Process(id) => ("process", id),
        };
        crate::tup![term::atom(tag), x.clone()]
    }

    pub fn from_term(t: &Term) -> Result<Key, CodecError> {
        let Some([tag, x]) = term::as_tuple(t) else {
            return Err(CodecError::new("key", "not a pair", t));
        };
        match term::as_atom(tag) {
            Some("member") => Ok(Key::Member(member_name("key", x)?)),
            Some("member_node_info") => Ok(Key::MemberNodeInfo(member_name("key", x)?)),
            Some("process") => Ok(Key::Process(x.clone())),
            _ => Err(CodecError::new("key", "unknown kind", t)),
        }
    }
}

/// `restart` of a child spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always restarted (the default).
    Permanent,
    /// Restarted unless it exits `:normal`, `:shutdown` or `{:shutdown, _}`.
    Transient,
    /// Never restarted.
    Temporary,
}

impl Restart {
    pub fn as_atom(&self) -> &'static str {
        match self {
            Restart::Permanent => "permanent",
            Restart::Transient => "transient",
            Restart::Temporary => "temporary",
        }
    }
}

/// `shutdown` of a child spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    BrutalKill,
    Infinity,
    /// Milliseconds (> 0) between the `:shutdown` exit signal and `:kill`.
    Timeout(u64),
}

impl Shutdown {
    pub fn to_term(&self) -> Term {
        match self {
            Shutdown::BrutalKill => term::atom("brutal_kill"),
            Shutdown::Infinity => term::atom("infinity"),
            Shutdown::Timeout(ms) => term::int(i64::try_from(*ms).unwrap_or(i64::MAX)),
        }
    }
}

/// `type` of a child spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildType {
    Worker,
    Supervisor,
}

impl ChildType {
    pub fn as_atom(&self) -> &'static str {
        match self {
            ChildType::Worker => "worker",
            ChildType::Supervisor => "supervisor",
        }
    }
}

/// A child spec the processes supervisor can start: the spec map with its
/// defaults filled in (Horde's `{id, start, restart, shutdown, type, modules}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidChild {
    pub id: Term,
    pub module: String,
    pub function: String,
    pub args: Vec<Term>,
    pub restart: Restart,
    pub shutdown: Shutdown,
    pub child_type: ChildType,
    /// `[module]` by default, or `:dynamic`.
    pub modules: Term,
}

/// An Elixir child-spec map, kept as the term it is (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct ChildSpec(Term);

impl ChildSpec {
    /// A spec map: a map with an `:id`. Nothing else is checked here; Horde
    /// stores and places any such map, and only starting it looks further
    /// ([`ChildSpec::validate`]).
    pub fn from_term(t: &Term) -> Result<ChildSpec, CodecError> {
        ChildSpec::from_owned(t.clone())
    }

    /// [`ChildSpec::from_term`] of a term the caller gives up (no copy).
    pub fn from_owned(t: Term) -> Result<ChildSpec, CodecError> {
        match &t {
            Term::Map(m) if m.map.contains_key(&term::atom("id")) => Ok(ChildSpec(t)),
            Term::Map(_) => Err(CodecError::new("child spec", "no :id", &t)),
            _ => Err(CodecError::new("child spec", "not a map", &t)),
        }
    }

    /// `%{id: id, start: {module, function, args}}` with the given extra
    /// fields (`restart`, `shutdown`, `type`, `modules`, ...).
    pub fn new(
        id: Term,
        module: &str,
        function: &str,
        args: Vec<Term>,
        fields: impl IntoIterator<Item = (&'static str, Term)>,
    ) -> ChildSpec {
        let mut map = crate::term::TermMap::default();
        map.insert(term::atom("id"), id);
        map.insert(
            term::atom("start"),
            crate::tup![term::atom(module), term::atom(function), term::list(args)],
        );
        for (k, v) in fields {
            map.insert(term::atom(k), v);
        }
        ChildSpec(Term::Map(map.into()))
    }

    pub fn as_term(&self) -> &Term {
        &self.0
    }

    pub fn into_term(self) -> Term {
        self.0
    }

    fn get(&self, key: &str) -> Option<&Term> {
        match &self.0 {
            Term::Map(m) => m.map.get(&term::atom(key)),
            _ => None,
        }
    }

    /// The `:id` (a random integer once Horde has placed the child).
    pub fn id(&self) -> &Term {
        // `from_term` and `new` guarantee the key; the fallback is never used.
        static NIL: std::sync::OnceLock<Term> = std::sync::OnceLock::new();
        self.get("id")
            .unwrap_or_else(|| NIL.get_or_init(elixir::nil_atom))
    }

    /// The same spec under another `:id` (Horde's `randomize_child_id`).
    pub fn with_id(&self, id: Term) -> ChildSpec {
        let mut t = self.0.clone();
        if let Term::Map(m) = &mut t {
            m.map.insert(term::atom("id"), id);
        }
        ChildSpec(t)
    }

    /// `start`'s module, when it is `{module, function, args}`.
    pub fn start_module(&self) -> Option<&str> {
        match term::as_tuple(self.get("start")?)? {
            [m, _, _] => term::as_atom(m),
            _ => None,
        }
    }

    /// What `Horde.ProcessesSupervisor` checks before starting a child,
    /// with the same defaults (`restart: :permanent`, `type: :worker`,
    /// `shutdown: 5000` for a worker and `:infinity` for a supervisor,
    /// `modules: [module]`). `Err` is the reason term Horde answers with
    /// (`{:invalid_mfa, start}`, `{:invalid_restart_type, r}`,
    /// `{:invalid_shutdown, s}`, `{:invalid_child_type, t}`,
    /// `{:invalid_modules, m}`), or `{:invalid_child_spec, spec}` for a map
    /// without `start: {m, _, _}`. Horde does not survive that one, nor a
    /// `type` other than `:worker`/`:supervisor` (it picks the shutdown
    /// default by type first): those are `{:invalid_child_type, t}` here.
    pub fn validate(&self) -> Result<ValidChild, Term> {
        let invalid = |tag: &str, t: &Term| crate::tup![term::atom(tag), t.clone()];
        let start = self.get("start");
        let Some([m, f, a]) = start.and_then(term::as_tuple) else {
            return Err(invalid("invalid_child_spec", &self.0));
        };
        let start = start.cloned().unwrap_or_else(elixir::nil_atom);
        let type_term = self
            .get("type")
            .cloned()
            .unwrap_or_else(|| term::atom("worker"));
        let child_type = match term::as_atom(&type_term) {
            Some("worker") => Some(ChildType::Worker),
            Some("supervisor") => Some(ChildType::Supervisor),
            _ => None,
        };
        let restart_term = self
            .get("restart")
            .cloned()
            .unwrap_or_else(|| term::atom("permanent"));
        let shutdown_term = self
            .get("shutdown")
            .cloned()
            .unwrap_or_else(|| match child_type {
                Some(ChildType::Supervisor) => term::atom("infinity"),
                _ => term::int(5000),
            });
        let modules = self
            .get("modules")
            .cloned()
            .unwrap_or_else(|| term::list(vec![m.clone()]));
        // Horde checks in this order and answers with the first failure.
        let (Some(module), Some(function), Some(args)) =
            (term::as_atom(m), term::as_atom(f), term::as_list(a))
        else {
            return Err(invalid("invalid_mfa", &start));
        };
        let restart = match term::as_atom(&restart_term) {
            Some("permanent") => Restart::Permanent,
            Some("transient") => Restart::Transient,
            Some("temporary") => Restart::Temporary,
            _ => return Err(invalid("invalid_restart_type", &restart_term)),
        };
        let shutdown = match &shutdown_term {
            Term::Atom(a) if a.name == "brutal_kill" => Shutdown::BrutalKill,
            Term::Atom(a) if a.name == "infinity" => Shutdown::Infinity,
            Term::FixInteger(i) if i.value > 0 => Shutdown::Timeout(i.value as u64),
            Term::BigInteger(b) if b.value > 0.into() => {
                Shutdown::Timeout(u64::try_from(&b.value).unwrap_or(u64::MAX))
            }
            _ => return Err(invalid("invalid_shutdown", &shutdown_term)),
        };
        let Some(child_type) = child_type else {
            return Err(invalid("invalid_child_type", &type_term));
        };
        let modules_ok = term::is_atom(&modules, "dynamic")
            || term::as_list(&modules)
                .is_some_and(|l| l.iter().all(|x| term::as_atom(x).is_some()));
        if !modules_ok {
            return Err(invalid("invalid_modules", &modules));
        }
        Ok(ValidChild {
            id: self.id().clone(),
            module: module.to_string(),
            function: function.to_string(),
            args,
            restart,
            shutdown,
            child_type,
            modules,
        })
    }
}

/// The value under `{:process, child_id}`.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessValue {
    /// `{member, child_spec, pid}`: running on `member`.
    Running {
        member: Term,
        spec: ChildSpec,
        pid: Pid,
    },
    /// `{nil, child_spec}`: given up by its member; the member the strategy
    /// picks starts it.
    Relinquished { spec: ChildSpec },
}

impl ProcessValue {
    pub fn spec(&self) -> &ChildSpec {
        match self {
            ProcessValue::Running { spec, .. } | ProcessValue::Relinquished { spec } => spec,
        }
    }

    pub fn to_term(&self) -> Term {
        match self {
            ProcessValue::Running { member, spec, pid } => {
                crate::tup![
                    member.clone(),
                    spec.as_term().clone(),
                    Term::Pid(pid.clone())
                ]
            }
            ProcessValue::Relinquished { spec } => {
                crate::tup![elixir::nil_atom(), spec.as_term().clone()]
            }
        }
    }

    /// `{member, spec, pid}` of a running child, built with one copy of
    /// each part (what a member writes at every start).
    pub fn running_term(member: &Term, spec: &ChildSpec, pid: &Pid) -> Term {
        crate::tup![
            member.clone(),
            spec.as_term().clone(),
            Term::Pid(pid.clone())
        ]
    }

    /// [`ProcessValue::from_term`] of a term the caller gives up: the spec
    /// is moved out, not copied.
    pub fn from_owned(t: Term) -> Result<ProcessValue, CodecError> {
        let Term::Tuple(mut tuple) = t else {
            return ProcessValue::from_term(&t);
        };
        match tuple.elements.as_mut_slice() {
            [member, spec, Term::Pid(pid)] => Ok(ProcessValue::Running {
                member: member_name("process", member)?,
                pid: pid.clone(),
                spec: ChildSpec::from_owned(std::mem::replace(spec, Term::List(List::nil())))?,
            }),
            [nil, spec] if elixir::is_nil(nil) => Ok(ProcessValue::Relinquished {
                spec: ChildSpec::from_owned(std::mem::replace(spec, Term::List(List::nil())))?,
            }),
            _ => ProcessValue::from_term(&Term::Tuple(tuple)),
        }
    }

    pub fn from_term(t: &Term) -> Result<ProcessValue, CodecError> {
        match term::as_tuple(t) {
            Some([member, spec, Term::Pid(pid)]) => Ok(ProcessValue::Running {
                member: member_name("process", member)?,
                spec: ChildSpec::from_term(spec)?,
                pid: pid.clone(),
            }),
            Some([nil, spec]) if elixir::is_nil(nil) => Ok(ProcessValue::Relinquished {
                spec: ChildSpec::from_term(spec)?,
            }),
            _ => Err(CodecError::new(
                "process",
                "not {member, spec, pid} or {nil, spec}",
                t,
            )),
        }
    }
}

/// One CRDT entry, key and value read together.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// `{:member, m} => 1`.
    Member(Term),
    /// `{:member_node_info, m} => %Member{}`.
    MemberNodeInfo(Term, Member),
    /// `{:process, id} => value`.
    Process(Term, ProcessValue),
}

impl Entry {
    pub fn key(&self) -> Key {
        match self {
            Entry::Member(m) => Key::Member(m.clone()),
            Entry::MemberNodeInfo(m, _) => Key::MemberNodeInfo(m.clone()),
            Entry::Process(id, _) => Key::Process(id.clone()),
        }
    }

    /// The value term as Horde writes it.
    pub fn value(&self) -> Term {
        match self {
            Entry::Member(_) => term::int(1),
            Entry::MemberNodeInfo(_, info) => info.to_term(),
            Entry::Process(_, v) => v.to_term(),
        }
    }

    pub fn from_terms(key: &Term, value: &Term) -> Result<Entry, CodecError> {
        match Key::from_term(key)? {
            Key::Member(m) if term::as_i64(value) == Some(1) => Ok(Entry::Member(m)),
            Key::Member(_) => Err(CodecError::new("member", "value is not 1", value)),
            Key::MemberNodeInfo(m) => Ok(Entry::MemberNodeInfo(m, Member::from_term(value)?)),
            Key::Process(id) => Ok(Entry::Process(id, ProcessValue::from_term(value)?)),
        }
    }
}

#[cfg(test)]
mod tests;
