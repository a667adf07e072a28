//! `Horde.DynamicSupervisorImpl`'s decisions as a sans-I/O state machine.
//!
//! What it owns: the member's view of the supervisor CRDT (members, their
//! info, every child's entry) and every decision Horde 0.10 makes from it:
//! where a new child goes (start here, or proxy to the chosen member), who
//! restarts a dead member's children (only the member the strategy now
//! picks, so exactly one member does it cluster-wide), who starts a
//! relinquished child,
//! refusing children while shutting down, `:active` redistribution, quorum
//! loss (the whole member stops, see [`Effect::StopMember`]), and the answers to every call, cast and proxied operation.
//!
//! What it never does: I/O, reading a clock, drawing random numbers (child
//! ids and the random strategy's number come from the `random` source given
//! to [`SupervisorState::new`]), or trusting a CRDT value (a malformed one
//! is logged and skipped). Effects come back as [`Effect`]s, in the order
//! Horde performs them.
//!
//! How a runtime drives it:
//! - every `{:crdt_update, diffs}` of the member's CRDT, its own writes
//!   included (DeltaCrdt reports those too), goes to [`SupervisorState::crdt_update`];
//! - [`Effect::Put`]/[`Effect::Delete`] go to the CRDT; their diffs come back
//!   later through `crdt_update`, as in Horde;
//! - [`Effect::StartChild`] is answered with [`SupervisorState::child_started`]
//!   before anything else is fed in (Horde's start is a blocking call to its
//!   processes supervisor);
//! - a DOWN of a [`Effect::Monitor`]ed member goes to
//!   [`SupervisorState::member_down`].
//!
//! Child ids: a new child gets a random id at `start_child`, as in Horde;
//! a relinquished child (graceful hand-over, `:active` redistribution) and,
//! unlike Horde 0.10, a dead member's child keep theirs. Horde deletes a
//! dead member's entry and restarts the child under a new random id; here
//! the restart overwrites the entry under the same id, so when both sides
//! of a netsplit restart each other's children, the copies share one key
//! and, once healed, the CRDT names one member and the other stops its copy
//! (see `update_process`). Horde members read the overwritten entry as the
//! child moving to its new member, so they see one child.
//!
//! Kept from Horde on purpose, since every member must decide alike:
//! `members` (from `{:member, _}`) and `members_info` (from
//! `{:member_node_info, _}`) are separate, and only members in both are
//! placed on; a relinquished `{nil, spec}` entry leaves the old running entry
//! in the local table until someone restarts the child (the member that
//! will restart it drops it at once, see `update_process`).
//!
//! Not kept: Horde's `terminate_child` forgets the child's id but keeps
//! its pid's mapping, one entry for every child ever terminated on the
//! member (a soak's heap grew with each). Here the mapping goes with the
//! child. No placement or restart reads it; a later `terminate_child`
//! of that pid answers `{:error, :not_found}` either way, and here it can
//! no longer reach a newer child that reuses the id.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::crdt::awlww_map::{Diff, KeyMap, OrdTerm};
use crate::horde::{crdt_neighbour, member};
use crate::term::{self, BigInteger, Pid, Term};

use super::codec::{ChildSpec, Key, Member, MemberStatus, ProcessValue};
use super::distribution::{DistributionStrategy, Placement, RingCache};

/// Horde's `process_redistribution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redistribution {
    /// Children stay where they run until they exit (Horde's default).
    #[default]
    Passive,
    /// On membership changes, children that now belong elsewhere are told
    /// `{:shutdown, :process_redistribution}` and restart on their member.
    Active,
}

/// Horde's `proxy_message_ttl`: how often a proxied operation may be
/// forwarded again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ttl {
    #[default]
    Infinity,
    Hops(i64),
}

impl Ttl {
    fn decrement(self) -> Ttl {
        match self {
            Ttl::Infinity => Ttl::Infinity,
            Ttl::Hops(n) => Ttl::Hops(n - 1),
        }
    }

    fn from_term(t: &Term) -> Option<Ttl> {
        if term::is_atom(t, "infinity") {
            return Some(Ttl::Infinity);
        }
        term::as_i64(t).map(Ttl::Hops)
    }
}

/// What the supervisor decides with.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub distribution_strategy: DistributionStrategy,
    pub process_redistribution: Redistribution,
    pub proxy_message_ttl: Ttl,
}

/// What the runtime must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// `DeltaCrdt.put(S.Crdt, key, value)`.
    Put { key: Term, value: Term },
    /// `DeltaCrdt.delete(S.Crdt, key)`.
    Delete { key: Term },
    /// `{:set_neighbours, [{S.Crdt, node}]}` to the member's own CRDT.
    SetNeighbours(Vec<Term>),
    /// `Process.monitor({S, node})`; its DOWN goes to
    /// [`SupervisorState::member_down`].
    Monitor(Term),
    /// Start `spec` under the local processes supervisor (validated as
    /// [`ChildSpec::validate`] does), then call
    /// [`SupervisorState::child_started`] with the result and `reply_to`.
    StartChild {
        spec: ChildSpec,
        reply_to: Option<Term>,
    },
    /// Terminate the local child with this id and answer `reply_to` with
    /// the processes supervisor's reply (`:ok` or `{:error, :not_found}`).
    TerminateChild { id: Term, reply_to: Term },
    /// `Process.exit(pid, reason)` from the processes supervisor.
    ExitSignal { pid: Pid, reason: Term },
    /// Stop the local child with this id, if it still runs, as a duplicate:
    /// no restart, no CRDT write, its hand-off state kept (the copy the
    /// CRDT names runs on). Then call
    /// [`SupervisorState::duplicate_stopped`] if one was stopped. Not
    /// Horde's: see `update_process`.
    DropDuplicate { id: Term },
    /// The member stops, as a Horde member whose processes supervisor
    /// stopped (quorum lost with local children; restart intensity is the
    /// processes supervisor's own): every local child is stopped and
    /// relinquished (`{nil, spec}`), one last sync goes out, and `S`,
    /// `S.Crdt` and `S.ProcessesSupervisor` exit with `:shutdown` (their
    /// peers' monitors then see it `:dead`). In Horde the member's parent
    /// may start it afresh; here the program does (monitor the member's pid).
    /// The member was already written `:shutting_down` (Horde writes that
    /// only as it exits, after the `{nil, spec}` entries).
    StopMember,
    /// `GenServer.reply(to, reply)`.
    Reply { to: Term, reply: Term },
    /// A plain message `msg` to the member `{S, node}` (a proxied operation).
    Send { to: Term, msg: Term },
    /// Ask `:which_children` of each `{S.ProcessesSupervisor, node}`, skip
    /// those that fail, and answer `reply_to` with the concatenation, each
    /// `{_, pid, type, modules}` as `{:undefined, pid, type, modules}`.
    WhichChildren {
        supervisors: Vec<Term>,
        reply_to: Term,
    },
    /// Ask `:count_children` of each, skip those that fail, and answer
    /// `reply_to` with the per-key sums as a map.
    CountChildren {
        supervisors: Vec<Term>,
        reply_to: Term,
    },
    /// A child this member terminated runs again on `member` (a copy that
    /// member started under the same id while it was cut off from here):
    /// call `{:terminate_child, pid}` on `member`, as a user's
    /// `terminate_child` there would (Horde members answer it too), and
    /// log the answer. Not Horde's: see `update_process`.
    EndResurfaced { member: Term, pid: Pid },
}

/// How many ids of children terminated here a member remembers, to end a
/// copy that surfaces again after a netsplit (see `update_process`).
pub const ENDED_REMEMBERED: usize = 10_000;

/// A child id's 64-bit fingerprint for the ended set. SipHash with fixed
/// keys: the same id gives the same fingerprint for the life of the
/// process, which is all the set needs (it is never sent or stored). An
/// id that was never ended matches one of the 10,000 remembered with odds
/// of about 5 in 10^16 per lookup; the cost would be that one child ended.
fn fingerprint(id: &Term) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// A running child as the member's table has it.
#[derive(Debug, Clone, PartialEq)]
struct Running {
    member: Term,
    spec: ChildSpec,
    pid: Pid,
}

/// Why a member starts a child in another member's place (see
/// `SupervisorState::taking_over`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TakeOver {
    /// Its member died: given up if the start fails, as Horde does.
    Failover,
    /// Its member relinquished it (redistribution, shutdown).
    Relinquished,
}

/// One `Horde.DynamicSupervisor` member.
pub struct SupervisorState {
    name: String,
    node: String,
    me: Term,
    settings: Settings,
    random: Box<dyn FnMut() -> u128 + Send>,
    /// `{:member, _}` entries (and `set_members`).
    members: BTreeSet<OrdTerm>,
    /// `{:member_node_info, _}` entries (and placeholders).
    members_info: BTreeMap<OrdTerm, Member>,
    /// By id, hashed (a B-tree compared ids a few dozen times per start);
    /// read in id order where an order shows.
    processes_by_id: KeyMap<Running>,
    /// Hashed with foldhash (SipHash of a pid was a measurable part of
    /// every start).
    process_pid_to_id: HashMap<Pid, Term, foldhash::fast::RandomState>,
    local_process_count: i64,
    waiting_for_quorum: Vec<Term>,
    monitored: BTreeSet<OrdTerm>,
    /// Children this member decided to start in another member's place,
    /// until the start's answer: a dead member's (restarted under their
    /// own id, see `handoff_processes`) and relinquished ones. A
    /// relinquished `{nil, spec}` entry can be reported twice before our
    /// own entry replaces it (a push and a sync round bringing it in one
    /// batch), and each report would start another copy.
    taking_over: BTreeMap<OrdTerm, TakeOver>,
    /// Fingerprints of the ids of the children terminated here, the
    /// latest [`ENDED_REMEMBERED`] (the queue holds them oldest first):
    /// 8 bytes each where the id terms took ~150 (see [`fingerprint`]).
    ended: HashSet<u64>,
    ended_order: VecDeque<u64>,
    shutting_down: bool,
    /// The ttl of the proxied operation from this `reply_to`, kept after
    /// it was handled, as Horde keeps it.
    proxy_operation_ttl: Option<(Term, Ttl)>,
    /// The placement ring of the current alive members.
    ring: RingCache,
    /// [`SupervisorState::members`] as last computed, kept until `members`
    /// or `members_info` change (each start places by it).
    members_now: Option<Arc<Vec<Member>>>,
}

impl SupervisorState {
    /// A member `name` on `node`. `random` gives numbers in `0..2^128`
    /// (`0` is read as 2^128, so ids are `1..=2^128` as `:rand.uniform/1`).
    pub fn new(
        name: &str,
        node: &str,
        settings: Settings,
        random: Box<dyn FnMut() -> u128 + Send>,
    ) -> SupervisorState {
        SupervisorState {
            name: name.to_string(),
            node: node.to_string(),
            me: member(name, node),
            settings,
            random,
            members: BTreeSet::new(),
            members_info: BTreeMap::new(),
            processes_by_id: KeyMap::new(),
            process_pid_to_id: HashMap::default(),
            local_process_count: 0,
            waiting_for_quorum: Vec::new(),
            monitored: BTreeSet::new(),
            taking_over: BTreeMap::new(),
            ended: HashSet::new(),
            ended_order: VecDeque::new(),
            shutting_down: false,
            proxy_operation_ttl: None,
            ring: RingCache::default(),
            members_now: None,
        }
    }

    /// Start-up: the member announces itself `:alive`, then takes its
    /// initial members (`None` for none yet, as `members: :auto` before the
    /// node list is known).
    pub fn init(&mut self, members: Option<&[Term]>) -> Vec<Effect> {
        let mut out = Vec::new();
        self.set_own_node_status(&mut out);
        if let Some(members) = members {
            self.set_members(members, &mut out);
        }
        out
    }

    /// `{S, node}` of this member.
    pub fn me(&self) -> &Term {
        &self.me
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// The members placed on: those with a `{:member, _}` entry, with their
    /// info (Horde's `members/1`), in name order.
    pub fn members(&self) -> Vec<Member> {
        self.members
            .iter()
            .filter_map(|m| self.members_info.get(m).cloned())
            .collect()
    }

    /// `has_quorum?` of [`SupervisorState::members`].
    pub fn has_quorum(&self) -> bool {
        self.settings
            .distribution_strategy
            .has_quorum(&self.members())
    }

    /// Children running on this member: `(id, pid)`.
    pub fn local_children(&self) -> Vec<(Term, Pid)> {
        self.running_in_id_order()
            .into_iter()
            .filter(|(_, r)| r.member == self.me)
            .map(|(id, r)| (id.0.clone(), r.pid.clone()))
            .collect()
    }

    /// `(id, member, pid)` of every child the table holds.
    pub fn children(&self) -> Vec<(Term, Term, Pid)> {
        self.running_in_id_order()
            .into_iter()
            .map(|(id, r)| (id.0.clone(), r.member.clone(), r.pid.clone()))
            .collect()
    }

    pub fn local_process_count(&self) -> i64 {
        self.local_process_count
    }

    // ---- inputs ---------------------------------------------------------------

    /// `{:set_members, members}` (call or message): `{S, node}` tuples or
    /// bare names on this node.
    pub fn set_members_call(&mut self, members: &[Term]) -> Vec<Effect> {
        let mut out = Vec::new();
        self.set_members(members, &mut out);
        out
    }

    /// Graceful shutdown begins (`:horde_shutting_down`): the member is
    /// written `:shutting_down` and refuses new children; its children are
    /// then stopped and relinquished by the processes supervisor.
    pub fn begin_shutdown(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        self.shutting_down = true;
        self.set_own_node_status(&mut out);
        out
    }

    /// A gen_server call `request` from `from`.
    pub fn call(&mut self, from: Term, request: &Term) -> Vec<Effect> {
        let mut out = Vec::new();
        self.handle_call(from, request, &mut out);
        out
    }

    /// A gen_server cast.
    pub fn cast(&mut self, msg: &Term) -> Vec<Effect> {
        let mut out = Vec::new();
        match term::as_tuple(msg) {
            Some([tag, id, Term::Pid(pid)]) if term::is_atom(tag, "update_child_pid") => {
                self.set_child_pid(id, pid, &mut out);
            }
            Some([tag, id]) if term::is_atom(tag, "relinquish_child_process") => {
                if let Some(r) = self.processes_by_id.get(id) {
                    let value = ProcessValue::Relinquished {
                        spec: r.spec.clone(),
                    };
                    out.push(Effect::Put {
                        key: Key::Process(r.spec.id().clone()).to_term(),
                        value: value.to_term(),
                    });
                }
            }
            Some([tag, id]) if term::is_atom(tag, "disown_child_process") => {
                if let Some(r) = self.processes_by_id.remove(id) {
                    out.push(Effect::Delete {
                        key: Key::Process(id.clone()).to_term(),
                    });
                    self.process_pid_to_id.remove(&r.pid);
                    self.local_process_count -= 1;
                }
            }
            _ => tracing::debug!(supervisor = %self.name, %msg, "unknown cast dropped"),
        }
        out
    }

    /// A plain message to `S`: `{:proxy_operation, msg, reply_to}` (with an
    /// optional ttl), `{:set_members, _}`, `{:processes_updated, reply_to}`.
    pub fn info(&mut self, msg: &Term) -> Vec<Effect> {
        let mut out = Vec::new();
        match term::as_tuple(msg) {
            Some([tag, op, reply_to]) if term::is_atom(tag, "proxy_operation") => {
                self.proxy_operation(op, reply_to, Ttl::Infinity, &mut out);
            }
            Some([tag, op, reply_to, ttl]) if term::is_atom(tag, "proxy_operation") => {
                match Ttl::from_term(ttl) {
                    Some(ttl) => self.proxy_operation(op, reply_to, ttl, &mut out),
                    None => tracing::warn!(supervisor = %self.name, %msg, "bad ttl, dropped"),
                }
            }
            Some([tag, members]) if term::is_atom(tag, "set_members") => {
                match term::as_list(members) {
                    Some(members) => self.set_members(&members, &mut out),
                    None => tracing::warn!(supervisor = %self.name, %msg, "bad set_members"),
                }
            }
            Some([tag, reply_to]) if term::is_atom(tag, "processes_updated") => {
                if self.shutting_down {
                    out.push(reply(reply_to, term::atom("ok")));
                }
            }
            _ => tracing::debug!(supervisor = %self.name, %msg, "unexpected message dropped"),
        }
        out
    }

    /// `{:crdt_update, diffs}`.
    /// Owned, so a child's entry from another member is taken apart
    /// without copying its spec.
    pub fn crdt_update(&mut self, diffs: impl Into<Vec<Diff>>) -> Vec<Effect> {
        let diffs: Vec<Diff> = diffs.into();
        let mut out = Vec::new();
        for d in &diffs {
            self.update_member(d);
        }
        let membership_changed = diffs.iter().any(|d| {
            let key = match d {
                Diff::Add { key, .. } | Diff::Remove { key } => key,
            };
            // Parsed only when it is one, as it was always parsed here.
            is_member_key(key) && Key::from_term(key).is_ok()
        });
        for d in diffs {
            self.update_process(d, &mut out);
        }
        if membership_changed {
            self.monitor_supervisors(&mut out);
            self.set_own_node_status(&mut out);
            self.handle_quorum_change(&mut out);
            self.set_crdt_neighbours(&mut out);
            self.handoff_processes(&mut out);
        }
        out
    }

    /// The runtime stopped a duplicate ([`Effect::DropDuplicate`]): one
    /// child fewer runs here.
    pub fn duplicate_stopped(&mut self) {
        self.local_process_count -= 1;
    }

    /// The DOWN of a monitored member `{S, node}`: it is written `:dead`.
    pub fn member_down(&mut self, name: &Term) -> Vec<Effect> {
        let mut out = Vec::new();
        if !self.monitored.remove(&OrdTerm(name.clone())) {
            return out;
        }
        out.push(Effect::Put {
            key: Key::MemberNodeInfo(name.clone()).to_term(),
            value: Member::new(name.clone(), MemberStatus::Dead).to_term(),
        });
        self.set_own_node_status(&mut out);
        out
    }

    /// The answer to [`Effect::StartChild`]: the processes supervisor's
    /// reply (`{:ok, pid}`, `{:ok, pid, info}`, `{:error, e}` or `:ignore`).
    pub fn child_started(
        &mut self,
        spec: ChildSpec,
        result: &Term,
        reply_to: Option<Term>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let failover =
            self.taking_over.remove(&OrdTerm(spec.id().clone())) == Some(TakeOver::Failover);
        let started = matches!(
            term::as_tuple(result),
            Some([ok, Term::Pid(_)]) | Some([ok, Term::Pid(_), _]) if term::is_atom(ok, "ok")
        );
        if failover && !started {
            // The failover start failed (or was ignored): the child is
            // given up, as Horde, which deleted the dead member's entry
            // before its start, gives it up.
            self.forget(spec.id());
            out.push(Effect::Delete {
                key: Key::Process(spec.id().clone()).to_term(),
            });
        }
        let reply_term = match term::as_tuple(result) {
            Some([ok, Term::Pid(pid)]) | Some([ok, Term::Pid(pid), _])
                if term::is_atom(ok, "ok") =>
            {
                self.update_state_with_child(spec, pid.clone(), &mut out);
                result.clone()
            }
            Some([err, _]) if term::is_atom(err, "error") => result.clone(),
            _ if term::is_atom(result, "ignore") => result.clone(),
            _ => crate::tup![term::atom("error"), result.clone()],
        };
        if let Some(to) = reply_to {
            out.push(reply(&to, reply_term));
        }
        out
    }

    // ---- calls ------------------------------------------------------------------

    fn handle_call(&mut self, from: Term, request: &Term, out: &mut Vec<Effect>) {
        let parts = term::as_tuple(request).unwrap_or(&[]);
        match (term::as_atom(request), parts) {
            (Some("horde_shutting_down"), _) => {
                out.extend(self.begin_shutdown());
                out.push(reply(&from, term::atom("ok")));
            }
            (Some("get_telemetry"), _) => {
                let t = Term::Map(
                    vec![
                        (
                            term::atom("global_supervised_process_count"),
                            term::int(self.processes_by_id.len() as i64),
                        ),
                        (
                            term::atom("local_supervised_process_count"),
                            term::int(self.local_process_count),
                        ),
                    ]
                    .into(),
                );
                out.push(reply(&from, t));
            }
            (Some("wait_for_quorum"), _) => {
                if self.has_quorum() {
                    out.push(reply(&from, term::atom("ok")));
                } else {
                    self.waiting_for_quorum.insert(0, from);
                }
            }
            (Some("members"), _) => {
                let names = self.members.iter().map(|m| m.0.clone()).collect();
                out.push(reply(&from, term::list(names)));
            }
            (Some("which_children"), _) => out.push(Effect::WhichChildren {
                supervisors: self.processes_supervisors(),
                reply_to: from,
            }),
            (Some("count_children"), _) => out.push(Effect::CountChildren {
                supervisors: self.processes_supervisors(),
                reply_to: from,
            }),
            (_, [tag, members]) if term::is_atom(tag, "set_members") => {
                match term::as_list(members) {
                    Some(members) => {
                        self.set_members(&members, out);
                        out.push(reply(&from, term::atom("ok")));
                    }
                    None => out.push(reply(&from, bad_call(request))),
                }
            }
            (_, [tag, Term::Pid(pid)]) if term::is_atom(tag, "terminate_child") => {
                self.terminate_child(from, request, pid, out);
            }
            (_, [tag, spec]) if term::is_atom(tag, "start_child") => {
                self.start_child(from, request, spec, out);
            }
            _ => {
                tracing::warn!(supervisor = %self.name, %request, "unknown call refused");
                out.push(reply(&from, bad_call(request)));
            }
        }
    }

    fn start_child(&mut self, from: Term, msg: &Term, spec: &Term, out: &mut Vec<Effect>) {
        if self.shutting_down {
            out.push(reply(
                &from,
                error2("shutting_down", term::binary("this node is shutting down.")),
            ));
            return;
        }
        if !matches!(spec, Term::Map(_)) {
            // Horde's `Map.put/3` would crash its server on this.
            let e = crate::tup![term::atom("invalid_child_spec"), spec.clone()];
            out.push(reply(&from, crate::tup![term::atom("error"), e]));
            return;
        }
        let ttl_expired = self.proxy_message_ttl(&from) == Ttl::Hops(0);
        let id = self.random_id();
        let Ok(spec) = ChildSpec::from_owned(with_id(spec, id)) else {
            return;
        };
        let members = self.members_now();
        let random = (self.random)() as u64;
        let chosen = Placement::cached(
            self.settings.distribution_strategy,
            &members,
            &mut self.ring,
        )
        .choose_node(spec.as_term(), random)
        .map(|m| m.name.clone());
        match chosen {
            Ok(name) if name == self.me || ttl_expired => out.push(Effect::StartChild {
                spec,
                reply_to: Some(from),
            }),
            Ok(other) => self.proxy_to_node(&other, msg, from, out),
            Err(e) => out.push(reply(&from, crate::tup![term::atom("error"), e.reason()])),
        }
    }

    fn terminate_child(&mut self, from: Term, msg: &Term, pid: &Pid, out: &mut Vec<Effect>) {
        let entry = self
            .process_pid_to_id
            .get(pid)
            .and_then(|id| self.processes_by_id.get(id))
            .cloned();
        match entry {
            Some(r) if r.member == self.me => {
                // Horde deletes the entry after the child stopped and
                // before it answers; the runtime terminates and answers
                // in one step, so the delete goes first.
                let id = r.spec.id().clone();
                self.forget(&id);
                self.local_process_count -= 1;
                self.remember_ended(&id);
                out.push(Effect::Delete {
                    key: Key::Process(id.clone()).to_term(),
                });
                out.push(Effect::TerminateChild { id, reply_to: from });
            }
            Some(r) => self.proxy_to_node(&r.member, msg, from, out),
            None => out.push(reply(
                &from,
                crate::tup![term::atom("error"), term::atom("not_found")],
            )),
        }
    }

    fn proxy_operation(&mut self, op: &Term, reply_to: &Term, ttl: Ttl, out: &mut Vec<Effect>) {
        self.proxy_operation_ttl = Some((reply_to.clone(), ttl.decrement()));
        self.handle_call(reply_to.clone(), op, out);
    }

    fn proxy_to_node(
        &mut self,
        node_name: &Term,
        msg: &Term,
        reply_to: Term,
        out: &mut Vec<Effect>,
    ) {
        if let Some((from, Ttl::Hops(0))) = &self.proxy_operation_ttl {
            if from == &reply_to {
                let kind = term::as_tuple(msg)
                    .and_then(|p| p.first())
                    .and_then(term::as_atom)
                    .unwrap_or("");
                out.push(reply(
                    &reply_to,
                    crate::tup![
                        term::atom("error"),
                        term::atom("proxy_operation_ttl_expired"),
                        term::binary(format!(
                            "a proxied {kind} message was discard because its TTL expired"
                        ))
                    ],
                ));
                return;
            }
        }
        if self.is_alive(node_name) {
            let msg = match self.proxy_message_ttl(&reply_to) {
                Ttl::Infinity => crate::tup![term::atom("proxy_operation"), msg.clone(), reply_to],
                Ttl::Hops(n) => crate::tup![
                    term::atom("proxy_operation"),
                    msg.clone(),
                    reply_to,
                    term::int(n)
                ],
            };
            out.push(Effect::Send {
                to: node_name.clone(),
                msg,
            });
        } else {
            out.push(reply(
                &reply_to,
                error2(
                    "node_dead_or_shutting_down",
                    term::binary(
                        "the node responsible for this process is shutting down or dead, try again soon",
                    ),
                ),
            ));
        }
    }

    fn proxy_message_ttl(&self, reply_to: &Term) -> Ttl {
        match &self.proxy_operation_ttl {
            Some((from, ttl)) if from == reply_to => *ttl,
            _ => self.settings.proxy_message_ttl,
        }
    }

    // ---- CRDT updates -------------------------------------------------------------

    fn update_member(&mut self, diff: &Diff) {
        let (key, value) = match diff {
            Diff::Add { key, value } => (key, Some(value)),
            Diff::Remove { key } => (key, None),
        };
        if !is_member_key(key) {
            // A child's entry (nearly every diff): not parsed, so its id is
            // not copied, here.
            return;
        }
        // A membership entry: the cached member list is stale.
        self.members_now = None;
        match (Key::from_term(key), value) {
            // Horde takes the entry only when its value is 1.
            (Ok(Key::Member(m)), Some(v)) if term::as_i64(v) == Some(1) => {
                self.members.insert(OrdTerm(m.clone()));
                self.members_info
                    .entry(OrdTerm(m.clone()))
                    .or_insert_with(|| Member::new(m, MemberStatus::Uninitialized));
            }
            (Ok(Key::Member(m)), None) => {
                self.members.remove(&OrdTerm(m));
            }
            (Ok(Key::MemberNodeInfo(m)), Some(v)) => match Member::from_term(v) {
                Ok(info) => {
                    self.members_info.insert(OrdTerm(m), info);
                }
                Err(e) => {
                    tracing::warn!(supervisor = %self.name, error = %e, "member info skipped")
                }
            },
            (Ok(Key::MemberNodeInfo(m)), None) => {
                self.members_info.remove(&OrdTerm(m));
            }
            _ => {}
        }
    }

    /// A `{:process, id}` diff. Unlike Horde (which since 0.8 leaves
    /// duplicates to `Horde.Registry`), the CRDT decides who runs a child:
    /// when the entry of a child running here is removed by another member
    /// (a Horde member took this one for dead and restarted the child under
    /// a new id), or is overwritten naming another member (a member of the
    /// other side of a netsplit restarted it under its id, or two members
    /// started the same relinquished entry, e.g. a re-joining member that
    /// took a stale `{nil, spec}` while it still saw only itself alive),
    /// the local copy is a duplicate and stops
    /// ([`Effect::DropDuplicate`]). Every member sees the same converged
    /// entry, so exactly one copy is left.
    ///
    /// A terminated child stays ended. The CRDT's delete removes only the
    /// entries it saw, so a copy that a member cut off by a netsplit
    /// restarted under the child's id (its own write, unseen here)
    /// survives the heal and would run on, and fail over again with its
    /// member (found by the chaos soak). The member that terminated the
    /// child remembers its id ([`ENDED_REMEMBERED`]) and, when such an
    /// entry arrives, ends that copy through its member
    /// ([`Effect::EndResurfaced`]), deletes an entry naming a member that
    /// is gone, and never starts a relinquished one.
    fn update_process(&mut self, diff: Diff, out: &mut Vec<Effect>) {
        match diff {
            Diff::Add { key, value } => {
                let Ok(Key::Process(id)) = Key::from_term(&key) else {
                    return;
                };
                if self.holds_as_running_here(&id, &value) {
                    // Our own write of a child we already hold (every
                    // start comes back here): parsing the spec again
                    // would change nothing.
                    return;
                }
                match ProcessValue::from_owned(value) {
                    Ok(ProcessValue::Relinquished { .. }) if self.was_ended(&id) => {
                        // Relinquished on the other side of a netsplit
                        // after it ended here: it stays ended.
                        self.forget(&id);
                        out.push(Effect::Delete { key: key.clone() });
                    }
                    Ok(ProcessValue::Relinquished { spec }) => {
                        if self.choose(&spec) == Some(self.me.clone())
                            && !self.taking_over.contains_key(&OrdTerm(id.clone()))
                        {
                            // Horde starts it right here and holds it as its
                            // own from then on; the start is an effect carried
                            // out later, so the old member's entry goes now,
                            // or a death of that member in the same update
                            // would restart the child a second time.
                            self.forget(&id);
                            self.taking_over
                                .insert(OrdTerm(id.clone()), TakeOver::Relinquished);
                            out.push(Effect::StartChild {
                                spec,
                                reply_to: None,
                            });
                        }
                    }
                    Ok(ProcessValue::Running { member, pid, .. })
                        if self.was_ended(&id) && !self.is_alive(&member) =>
                    {
                        // Ended here and resurfaced naming a member that is
                        // gone: delete the entry (its dot is seen now), so
                        // no failover starts the child again.
                        self.forget(&id);
                        out.push(Effect::Delete { key: key.clone() });
                        out.push(Effect::EndResurfaced { member, pid });
                    }
                    Ok(ProcessValue::Running { member, spec, pid }) => {
                        if self.was_ended(&id) {
                            out.push(Effect::EndResurfaced {
                                member: member.clone(),
                                pid: pid.clone(),
                            });
                        }
                        let k = OrdTerm(id.clone());
                        if let Some(old) = self.processes_by_id.get(&k) {
                            self.process_pid_to_id.remove(&old.pid);
                            if old.member == self.me && member != self.me {
                                out.push(Effect::DropDuplicate { id: id.clone() });
                            }
                        }
                        self.process_pid_to_id.insert(pid.clone(), id);
                        self.processes_by_id
                            .insert(k, Running { member, spec, pid });
                    }
                    Err(e) => {
                        tracing::warn!(supervisor = %self.name, error = %e, "process entry skipped")
                    }
                }
            }
            Diff::Remove { key } => {
                let Ok(Key::Process(id)) = Key::from_term(&key) else {
                    return;
                };
                // Our own deletes (terminate, disown) left the table first.
                let ours = self
                    .processes_by_id
                    .get(&id)
                    .is_some_and(|r| r.member == self.me);
                self.forget(&id);
                if ours {
                    out.push(Effect::DropDuplicate { id });
                }
            }
        }
    }

    /// A child terminated here: its id is remembered (the latest
    /// [`ENDED_REMEMBERED`]), see `update_process`.
    fn remember_ended(&mut self, id: &Term) {
        let f = fingerprint(id);
        if self.ended.insert(f) {
            self.ended_order.push_back(f);
        }
        while self.ended_order.len() > ENDED_REMEMBERED {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }

    fn was_ended(&self, id: &Term) -> bool {
        !self.ended.is_empty() && self.ended.contains(&fingerprint(id))
    }

    /// A member in `members` whose info says `:alive`.
    fn is_alive(&self, m: &Term) -> bool {
        self.members.contains(&OrdTerm(m.clone()))
            && self
                .members_info
                .get(&OrdTerm(m.clone()))
                .is_some_and(|i| i.status == MemberStatus::Alive)
    }

    /// `value` is `{me, _, pid}` and the table already holds child `id`
    /// as running here with that pid: the entry this member wrote for it.
    fn holds_as_running_here(&self, id: &Term, value: &Term) -> bool {
        let Some([member, _, Term::Pid(pid)]) = term::as_tuple(value) else {
            return false;
        };
        *member == self.me
            && self
                .processes_by_id
                .get(id)
                .is_some_and(|r| r.member == self.me && r.pid == *pid)
    }

    /// Drops a child from the table (not from the CRDT).
    fn forget(&mut self, id: &Term) {
        if let Some(old) = self.processes_by_id.remove(id) {
            self.process_pid_to_id.remove(&old.pid);
        }
    }

    /// Horde's `set_members`: the listed members replace the old ones
    /// (their known info kept), removed ones leave the CRDT, new ones join it.
    fn set_members(&mut self, members: &[Term], out: &mut Vec<Effect>) {
        let new: BTreeSet<OrdTerm> = members
            .iter()
            .filter_map(|m| {
                let q = self.qualify(m);
                if q.is_none() {
                    tracing::warn!(supervisor = %self.name, member = %m, "bad member skipped");
                }
                q.map(OrdTerm)
            })
            .collect();
        let new_info: BTreeMap<OrdTerm, Member> =
            new.iter()
                .map(|m| {
                    let info =
                        self.members_info.get(m).cloned().unwrap_or_else(|| {
                            Member::new(m.0.clone(), MemberStatus::Uninitialized)
                        });
                    (m.clone(), info)
                })
                .collect();
        for removed in self.members.difference(&new) {
            out.push(Effect::Delete {
                key: Key::Member(removed.0.clone()).to_term(),
            });
            out.push(Effect::Delete {
                key: Key::MemberNodeInfo(removed.0.clone()).to_term(),
            });
        }
        for added in new.difference(&self.members) {
            out.push(Effect::Put {
                key: Key::Member(added.0.clone()).to_term(),
                value: term::int(1),
            });
        }
        self.members = new;
        self.members_info = new_info;
        self.members_now = None;
        self.monitor_supervisors(out);
        self.handle_quorum_change(out);
        self.set_crdt_neighbours(out);
    }

    fn monitor_supervisors(&mut self, out: &mut Vec<Effect>) {
        for m in self.members() {
            let k = OrdTerm(m.name.clone());
            if m.status == MemberStatus::Alive && !self.monitored.contains(&k) {
                self.monitored.insert(k);
                out.push(Effect::Monitor(m.name));
            }
        }
    }

    fn node_info(&self) -> Member {
        let status = if self.shutting_down {
            MemberStatus::ShuttingDown
        } else {
            MemberStatus::Alive
        };
        Member::new(self.me.clone(), status)
    }

    fn set_own_node_status(&mut self, out: &mut Vec<Effect>) {
        let info = self.node_info();
        let me = OrdTerm(self.me.clone());
        if self.members_info.get(&me) == Some(&info) {
            return;
        }
        out.push(Effect::Put {
            key: Key::MemberNodeInfo(self.me.clone()).to_term(),
            value: info.to_term(),
        });
        self.members_info.insert(me, info);
        self.members_now = None;
    }

    fn handle_quorum_change(&mut self, out: &mut Vec<Effect>) {
        if self.has_quorum() {
            for from in std::mem::take(&mut self.waiting_for_quorum) {
                out.push(reply(&from, term::atom("ok")));
            }
        } else if !self.shutting_down && self.processes_by_id.values().any(|r| r.member == self.me)
        {
            // Written first, so a member that sees a relinquished child
            // also sees this one is no longer alive to take it.
            self.shutting_down = true;
            self.set_own_node_status(out);
            out.push(Effect::StopMember);
        }
    }

    fn set_crdt_neighbours(&mut self, out: &mut Vec<Effect>) {
        let neighbours = self
            .members
            .iter()
            .filter(|m| m.0 != self.me)
            .filter_map(|m| crdt_neighbour(&m.0))
            .collect();
        out.push(Effect::SetNeighbours(neighbours));
    }

    /// Re-places every child after a membership change.
    fn handoff_processes(&mut self, out: &mut Vec<Effect>) {
        let members = self.members();
        let placement = Placement::cached(
            self.settings.distribution_strategy,
            &members,
            &mut self.ring,
        );
        let children: Vec<Running> = self
            .running_in_id_order()
            .into_iter()
            .map(|(_, r)| r.clone())
            .collect();
        for child in children {
            // Horde draws anew for every child (the random strategy only).
            let random = (self.random)() as u64;
            let Ok(chosen) = placement.choose_node(child.spec.as_term(), random) else {
                continue;
            };
            let chosen = &chosen.name;
            if &child.member == chosen {
                continue;
            }
            if child.member == self.me {
                if self.settings.process_redistribution == Redistribution::Active {
                    self.handoff_child(&child.spec, out);
                }
            } else if chosen == &self.me {
                let dead = self
                    .members_info
                    .get(&OrdTerm(child.member.clone()))
                    .is_some_and(|m| m.status == MemberStatus::Dead);
                if dead && self.was_ended(child.spec.id()) {
                    // A resurfaced copy of a child ended here whose
                    // member died before it could be ended there.
                    self.forget(child.spec.id());
                    out.push(Effect::Delete {
                        key: Key::Process(child.spec.id().clone()).to_term(),
                    });
                } else if dead {
                    // Not Horde's: Horde 0.10 deletes the entry and starts
                    // the child under a new random id. Here it keeps its id,
                    // and the start overwrites the dead member's entry. When
                    // the "dead" member was only cut off (a netsplit), both
                    // sides' copies then share one key: once healed, the
                    // CRDT's last writer names one member and the other
                    // stops its copy (`update_process`). Under new ids both
                    // copies would be legitimate entries and run for good.
                    self.taking_over
                        .insert(OrdTerm(child.spec.id().clone()), TakeOver::Failover);
                    out.push(Effect::StartChild {
                        spec: child.spec.clone(),
                        reply_to: None,
                    });
                }
            }
        }
    }

    fn handoff_child(&mut self, spec: &ChildSpec, out: &mut Vec<Effect>) {
        if let Some(r) = self.processes_by_id.get(spec.id()) {
            // Once it exited, the processes supervisor casts
            // `{:relinquish_child_process, id}` and the child is written
            // `{nil, spec}` for its new member to start.
            out.push(Effect::ExitSignal {
                pid: r.pid.clone(),
                reason: crate::tup![term::atom("shutdown"), term::atom("process_redistribution")],
            });
            self.local_process_count -= 1;
        }
    }

    fn update_state_with_child(&mut self, spec: ChildSpec, pid: Pid, out: &mut Vec<Effect>) {
        let id = spec.id().clone();
        out.push(Effect::Put {
            key: Key::Process(id.clone()).to_term(),
            value: ProcessValue::running_term(&self.me, &spec, &pid),
        });
        self.processes_by_id.insert(
            OrdTerm(id.clone()),
            Running {
                member: self.me.clone(),
                spec,
                pid: pid.clone(),
            },
        );
        self.process_pid_to_id.insert(pid, id);
        self.local_process_count += 1;
    }

    fn set_child_pid(&mut self, id: &Term, new_pid: &Pid, out: &mut Vec<Effect>) {
        let k = OrdTerm(id.clone());
        let Some(r) = self.processes_by_id.get_mut(&k) else {
            return;
        };
        let value = ProcessValue::Running {
            member: self.me.clone(),
            spec: r.spec.clone(),
            pid: new_pid.clone(),
        };
        out.push(Effect::Put {
            key: Key::Process(r.spec.id().clone()).to_term(),
            value: value.to_term(),
        });
        let old = std::mem::replace(&mut r.pid, new_pid.clone());
        self.process_pid_to_id.insert(new_pid.clone(), id.clone());
        self.process_pid_to_id.remove(&old);
    }

    // ---- helpers --------------------------------------------------------------------

    fn choose(&mut self, spec: &ChildSpec) -> Option<Term> {
        let members = self.members_now();
        let random = (self.random)() as u64;
        Placement::cached(
            self.settings.distribution_strategy,
            &members,
            &mut self.ring,
        )
        .choose_node(spec.as_term(), random)
        .ok()
        .map(|m| m.name.clone())
    }

    /// Every child the table holds, by id in term order.
    fn running_in_id_order(&self) -> Vec<(&OrdTerm, &Running)> {
        let mut all: Vec<(&OrdTerm, &Running)> = self.processes_by_id.iter().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }

    /// [`SupervisorState::members`], computed once per membership change.
    fn members_now(&mut self) -> Arc<Vec<Member>> {
        if let Some(m) = &self.members_now {
            return m.clone();
        }
        let m = Arc::new(self.members());
        self.members_now = Some(m.clone());
        m
    }

    fn random_id(&mut self) -> Term {
        let r = (self.random)();
        let value = if r == 0 {
            num_bigint::BigInt::from(1) << 128
        } else {
            num_bigint::BigInt::from(r)
        };
        match i64::try_from(&value) {
            Ok(v) => term::int(v),
            Err(_) => Term::BigInteger(BigInteger { value }),
        }
    }

    /// `{S.ProcessesSupervisor, node}` of every member placed on.
    fn processes_supervisors(&self) -> Vec<Term> {
        self.members()
            .iter()
            .filter_map(|m| match term::as_tuple(&m.name) {
                Some([name, node]) => Some(crate::tup![
                    term::atom(&format!("{}.ProcessesSupervisor", term::as_atom(name)?)),
                    node.clone()
                ]),
                _ => None,
            })
            .collect()
    }

    fn qualify(&self, m: &Term) -> Option<Term> {
        match m {
            Term::Atom(a) => Some(member(&a.name, &self.node)),
            _ => crdt_neighbour(m).map(|_| m.clone()),
        }
    }
}

/// `{:member, _}` or `{:member_node_info, _}`, told apart without parsing
/// (or copying) the rest.
fn is_member_key(key: &Term) -> bool {
    matches!(term::as_tuple(key), Some([tag, _])
        if term::is_atom(tag, "member") || term::is_atom(tag, "member_node_info"))
}

fn reply(to: &Term, reply: Term) -> Effect {
    Effect::Reply {
        to: to.clone(),
        reply,
    }
}

/// `{:error, {tag, detail}}`.
fn error2(tag: &str, detail: Term) -> Term {
    crate::tup![term::atom("error"), crate::tup![term::atom(tag), detail]]
}

fn with_id(spec: &Term, id: Term) -> Term {
    let mut t = spec.clone();
    if let Term::Map(m) = &mut t {
        m.map.insert(term::atom("id"), id);
    }
    t
}

fn bad_call(request: &Term) -> Term {
    crate::tup![
        term::atom("error"),
        crate::tup![term::atom("unknown_call"), request.clone()]
    ]
}

#[cfg(test)]
mod tests;
