//! `Horde.Registry`'s decisions as a sans-I/O state machine.
//!
//! What it owns: the member's DeltaCrdt [`Replica`] and the tables Horde keeps
//! in ETS next to it (keys, pids, members, meta), which it alone writes, from
//! the read diffs of the replica, exactly as Horde 0.10's `RegistryImpl`
//! does from `{:crdt_update, diffs}`. Conflicts, exits of registered
//! processes and departed members are all decided locally from the CRDT, so
//! every member reaches the same answer without asking anyone.
//!
//! What it never does: I/O, reading a clock (write timestamps and the time are
//! passed in), or trusting a CRDT value's shape (a malformed entry is logged
//! and skipped, never stored). Effects come back as [`Effect`]s for the
//! runtime to carry out in order.
//!
//! CRDT contents, as Horde writes them (R is the registry name):
//! - `{:member, {R, node}} => 1` for every member;
//! - `{:key, key} => {{R, node_of_registering_member}, pid, value}`;
//! - `{:registry, meta_key} => meta_value`.
//!
//! Deliberate differences from Horde 0.10, both on misuse only: `unregister`
//! and `update_value` for a key another process holds are no-ops (Horde
//! deletes the key from the CRDT whoever owns it, and checks the owner of
//! `update_value` only in the caller).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::crdt::awlww_map::{Diff, OrdTerm};
use crate::crdt::sync::{Action, Replica, SyncError};
use crate::horde::{crdt_neighbour, member};
use crate::term::{self, Pid, Term};

/// One registration: who holds `key`, through which member, with which value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `{R, node}` of the member the process registered through.
    pub member: Term,
    pub pid: Pid,
    pub value: Term,
}

/// The member's local view, fed by the CRDT (Horde's ETS tables).
#[derive(Debug, Default)]
pub struct Tables {
    keys: BTreeMap<OrdTerm, Entry>,
    pids: HashMap<Pid, BTreeSet<OrdTerm>>,
    members: BTreeSet<OrdTerm>,
    meta: BTreeMap<OrdTerm, Term>,
}

impl Tables {
    /// The entry under `key` if its member is still in the cluster
    /// (Horde's lookup ignores keys of members it no longer has).
    pub fn lookup(&self, key: &Term) -> Option<&Entry> {
        self.keys
            .get(&OrdTerm(key.clone()))
            .filter(|e| self.members.contains(&OrdTerm(e.member.clone())))
    }

    /// The entry under `key`, whatever its member.
    pub fn entry(&self, key: &Term) -> Option<&Entry> {
        self.keys.get(&OrdTerm(key.clone()))
    }

    /// Keys `pid` holds, in term order (Horde's pids table).
    pub fn keys_of(&self, pid: &Pid) -> Vec<Term> {
        self.pids
            .get(pid)
            .map(|keys| keys.iter().map(|k| k.0.clone()).collect())
            .unwrap_or_default()
    }

    /// Number of registered keys.
    pub fn count(&self) -> usize {
        self.keys.len()
    }

    /// Every `(key, entry)`, keys in Erlang term order.
    pub fn iter(&self) -> impl Iterator<Item = (&Term, &Entry)> {
        self.keys.iter().map(|(k, e)| (&k.0, e))
    }

    pub fn meta(&self, key: &Term) -> Option<&Term> {
        self.meta.get(&OrdTerm(key.clone()))
    }

    /// Members this member has seen added to the CRDT and not removed.
    pub fn members(&self) -> impl Iterator<Item = &Term> {
        self.members.iter().map(|m| &m.0)
    }

    pub fn is_member(&self, member: &Term) -> bool {
        self.members.contains(&OrdTerm(member.clone()))
    }

    fn add_key_to_pid(&mut self, pid: &Pid, key: &Term) {
        self.pids
            .entry(pid.clone())
            .or_default()
            .insert(OrdTerm(key.clone()));
    }

    fn remove_key_from_pid(&mut self, pid: &Pid, key: &Term) {
        if let Some(keys) = self.pids.get_mut(pid) {
            keys.remove(&OrdTerm(key.clone()));
            if keys.is_empty() {
                self.pids.remove(pid);
            }
        }
    }
}

/// A register or unregister seen by this member, as Horde tells its
/// listeners.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryEvent {
    Register { key: Term, pid: Pid, value: Term },
    Unregister { key: Term, pid: Pid },
}

impl RegistryEvent {
    /// `{:register, R, key, pid, value}` / `{:unregister, R, key, pid}`, the
    /// message Horde sends to each named listener.
    pub fn to_term(&self, registry: &str) -> Term {
        match self {
            RegistryEvent::Register { key, pid, value } => crate::tup![
                term::atom("register"),
                term::atom(registry),
                key.clone(),
                Term::Pid(pid.clone()),
                value.clone()
            ],
            RegistryEvent::Unregister { key, pid } => crate::tup![
                term::atom("unregister"),
                term::atom(registry),
                key.clone(),
                Term::Pid(pid.clone())
            ],
        }
    }
}

/// What the runtime must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A replica action: `Send`, `Monitor`, `Demonitor` or `Persist`
    /// (read diffs never leave the state machine).
    Crdt(Action),
    /// Link the registry process to a local registered process.
    Link(Pid),
    /// `Process.exit(pid, reason)` from the registry process.
    Exit {
        pid: Pid,
        reason: Term,
    },
    Event(RegistryEvent),
}

/// One `Horde.Registry` member.
pub struct RegistryState {
    name: String,
    node: String,
    me: Term,
    replica: Replica,
    /// Horde's `state.members`: what `set_members` diffs against.
    members: BTreeSet<OrdTerm>,
    tables: Arc<RwLock<Tables>>,
    /// Members that left the cluster and when (ms, the sync timer's
    /// clock): their keys are hidden from lookups at once and dropped from
    /// the CRDT once `lost_member_grace` has passed (see
    /// [`RegistryState::lost_member_grace`]).
    lost: BTreeMap<OrdTerm, u64>,
    lost_member_grace: u64,
    now: u64,
    /// `members: :auto`: the members this node's own view of the cluster
    /// lists (one per visible node), as of its last node event, and that
    /// event's timestamp; `None` with explicit members.
    view: Option<(BTreeSet<OrdTerm>, i64)>,
}

impl RegistryState {
    /// A member named `name` on `node` around `replica` (configured with the
    /// `name.Crdt` process's pid and name).
    pub fn new(name: &str, node: &str, replica: Replica) -> RegistryState {
        RegistryState {
            name: name.to_string(),
            node: node.to_string(),
            me: member(name, node),
            replica,
            members: BTreeSet::new(),
            tables: Arc::default(),
            lost: BTreeMap::new(),
            lost_member_grace: 0,
            now: 0,
            view: None,
        }
    }

    /// How long (ms) the keys of a member that left stay in the CRDT,
    /// hidden from lookups, before this member drops them. Horde drops
    /// them at once (0, the default here too): after a netsplit heals,
    /// those removals win the merge and every name registered before the
    /// split through the other side is gone on every member (Horde #258),
    /// although its process still runs. A member that comes back within
    /// the grace keeps its names; a dead one's go when it ends (and its
    /// processes' links and lookups' liveness checks hide them before).
    pub fn lost_member_grace(mut self, ms: u64) -> Self {
        self.lost_member_grace = ms;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `{R, node}` of this member.
    pub fn me(&self) -> &Term {
        &self.me
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The tables, shared with readers that must not wait for the registry
    /// process (lookups).
    pub fn tables(&self) -> Arc<RwLock<Tables>> {
        self.tables.clone()
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Horde's `:members` reply: the member set this member works with.
    pub fn members(&self) -> Vec<Term> {
        self.members.iter().map(|m| m.0.clone()).collect()
    }

    /// Start-up with explicit members (or `:auto`'s first list): every one
    /// is written to the CRDT and becomes a sync neighbour.
    pub fn set_initial_members(&mut self, members: &[Term], ts: i64) -> Vec<Effect> {
        let members: Vec<Term> = members.iter().filter_map(|m| self.qualify(m)).collect();
        let mut actions = Vec::new();
        for m in &members {
            actions.extend(self.replica.put(member_key(m), term::int(1), ts));
        }
        {
            let mut t = self.write();
            for m in &members {
                t.members.insert(OrdTerm(m.clone()));
            }
        }
        actions.extend(
            self.replica
                .set_neighbours(members.iter().filter_map(crdt_neighbour).collect()),
        );
        self.run(actions)
    }

    /// `{:set_members, members}`: members not listed are dropped from the
    /// CRDT (and with them, on every member, the keys registered through
    /// them); new ones are added; the CRDT syncs with all of them.
    pub fn set_members(&mut self, members: &[Term], ts: i64) -> Vec<Effect> {
        let new: BTreeSet<OrdTerm> = members
            .iter()
            .filter_map(|m| self.qualify(m))
            .map(OrdTerm)
            .collect();
        let mut actions = Vec::new();
        for removed in self.members.difference(&new) {
            actions.extend(self.replica.delete(member_key(&removed.0)));
        }
        for added in new.difference(&self.members) {
            actions.extend(self.replica.put(member_key(&added.0), term::int(1), ts));
        }
        actions.extend(self.replica.set_neighbours(self.neighbours_of(&new)));
        self.members = new;
        self.run(actions)
    }

    /// `members: :auto`'s [`set_members`](Self::set_members) after a node
    /// event (and at start-up): `members` is this node's own view of the
    /// cluster, which it also keeps. A removal of one of those members
    /// that comes from another member (whose view lacked it) is then
    /// undone here rather than followed, see `member_removed`.
    pub fn set_members_from_nodes(&mut self, members: &[Term], ts: i64) -> Vec<Effect> {
        let view = members
            .iter()
            .filter_map(|m| self.qualify(m))
            .map(OrdTerm)
            .collect();
        self.view = Some((view, ts));
        self.set_members(members, ts)
    }

    /// `{:register, key, value, pid}`: link and write the key.
    /// No conflict check: that is the caller's (`Horde.Registry.register`
    /// looks up first); a concurrent holder loses by the CRDT's rule.
    ///
    /// The link is made wherever `pid` lives, as Horde's registry does for
    /// this call: a process on a node that runs no member (registered
    /// through us) would otherwise keep its keys after it died, and only a
    /// lookup's liveness check (its node still connected) would hide them.
    /// Its exit, `noconnection` included, takes its keys everywhere.
    pub fn register(&mut self, key: Term, value: Term, pid: Pid, ts: i64) -> Vec<Effect> {
        let mut out = vec![Effect::Link(pid.clone())];
        let v = crate::tup![self.me.clone(), Term::Pid(pid), value];
        let actions = self.replica.put(key_key(&key), v, ts);
        out.extend(self.run(actions));
        out
    }

    /// `{:unregister, key, pid}`. A no-op unless `pid` holds `key` here.
    pub fn unregister(&mut self, key: &Term, pid: &Pid) -> Vec<Effect> {
        if self.read().entry(key).map(|e| &e.pid) != Some(pid) {
            return Vec::new();
        }
        let actions = self.replica.delete(key_key(key));
        let mut out = self.run(actions);
        self.unregister_local(key, Some(pid), &mut out);
        out
    }

    /// `{:update_value, key, pid, value}`; `false` (and nothing written)
    /// unless `pid` holds `key` here.
    pub fn update_value(
        &mut self,
        key: &Term,
        pid: &Pid,
        value: Term,
        ts: i64,
    ) -> (bool, Vec<Effect>) {
        if self.read().entry(key).map(|e| &e.pid) != Some(pid) {
            return (false, Vec::new());
        }
        let v = crate::tup![self.me.clone(), Term::Pid(pid.clone()), value];
        let actions = self.replica.put(key_key(key), v, ts);
        (true, self.run(actions))
    }

    /// `{:put_meta, key, value}`.
    pub fn put_meta(&mut self, key: Term, value: Term, ts: i64) -> Vec<Effect> {
        self.write()
            .meta
            .insert(OrdTerm(key.clone()), value.clone());
        let actions = self.replica.put(meta_key(&key), value, ts);
        self.run(actions)
    }

    /// `{:delete_meta, key}`.
    pub fn delete_meta(&mut self, key: &Term) -> Vec<Effect> {
        self.write().meta.remove(&OrdTerm(key.clone()));
        let actions = self.replica.delete(meta_key(key));
        self.run(actions)
    }

    /// `{:EXIT, pid, _}` of a linked process: its keys leave the CRDT.
    /// `false` if the pid held nothing here (an unrelated exit).
    pub fn process_exited(&mut self, pid: &Pid) -> (bool, Vec<Effect>) {
        let keys = self.write().pids.remove(pid);
        let Some(keys) = keys else {
            return (false, Vec::new());
        };
        let keys: Vec<Term> = keys.into_iter().map(|k| k.0).collect();
        let mut actions = Vec::new();
        for key in &keys {
            actions.extend(self.replica.delete(key_key(key)));
        }
        let mut out = Vec::new();
        for key in keys {
            let mut t = self.write();
            if t.keys.get(&OrdTerm(key.clone())).map(|e| &e.pid) == Some(pid) {
                t.keys.remove(&OrdTerm(key.clone()));
                out.push(Effect::Event(RegistryEvent::Unregister {
                    key,
                    pid: pid.clone(),
                }));
            }
        }
        out.extend(self.run(actions));
        (true, out)
    }

    /// A message to `R.Crdt` (sync traffic) or a DOWN of one of its
    /// neighbour monitors. On `Err` nothing changed.
    pub fn crdt_message(&mut self, msg: &Term) -> Result<Vec<Effect>, SyncError> {
        let actions = self.replica.handle_message(msg)?;
        Ok(self.run(actions))
    }

    /// The sync timer (`now` in ms, any monotonic origin).
    pub fn tick(&mut self, now: u64) -> Vec<Effect> {
        self.now = self.now.max(now);
        let mut out = Vec::new();
        let expired: Vec<OrdTerm> = self
            .lost
            .iter()
            .filter(|(_, &since)| self.now.saturating_sub(since) >= self.lost_member_grace)
            .map(|(m, _)| m.clone())
            .collect();
        let mut actions = Vec::new();
        for m in expired {
            self.lost.remove(&m);
            actions.extend(self.drop_member_keys(&m.0, &mut out));
        }
        actions.extend(self.replica.tick(now));
        out.extend(self.run(actions));
        out
    }

    /// Records a neighbour monitor's reference (see [`Replica::bind_monitor`]).
    pub fn bind_monitor(&mut self, target: &Term, monitor_ref: Term) {
        self.replica.bind_monitor(target, monitor_ref);
    }

    // ---- applying the replica's diffs ---------------------------------------

    /// Carries out replica actions; read diffs are applied here and may
    /// cause more replica work (dropping a departed member's keys).
    fn run(&mut self, actions: Vec<Action>) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Diffs(diffs) => {
                    for diff in diffs {
                        queue.extend(self.apply_diff(diff, &mut out));
                    }
                }
                other => out.push(Effect::Crdt(other)),
            }
        }
        out
    }

    fn apply_diff(&mut self, diff: Diff, out: &mut Vec<Effect>) -> Vec<Action> {
        let (crdt_key, value) = match diff {
            Diff::Add { key, value } => (key, Some(value)),
            Diff::Remove { key } => (key, None),
        };
        let Some([kind, key]) = term::as_tuple(&crdt_key) else {
            tracing::warn!(registry = %self.name, key = %crdt_key, "CRDT key of unknown shape skipped");
            return Vec::new();
        };
        match (term::as_atom(kind), value) {
            (Some("member"), Some(_)) => self.member_added(key),
            (Some("member"), None) => self.member_removed(key, out),
            (Some("key"), Some(v)) => {
                self.key_added(key, &v, out);
                Vec::new()
            }
            (Some("key"), None) => {
                self.unregister_local(key, None, out);
                Vec::new()
            }
            (Some("registry"), Some(v)) => {
                self.write().meta.insert(OrdTerm(key.clone()), v);
                Vec::new()
            }
            (Some("registry"), None) => {
                self.write().meta.remove(&OrdTerm(key.clone()));
                Vec::new()
            }
            _ => {
                tracing::warn!(registry = %self.name, key = %crdt_key, "CRDT key of unknown kind skipped");
                Vec::new()
            }
        }
    }

    fn member_added(&mut self, m: &Term) -> Vec<Action> {
        if crdt_neighbour(m).is_none() {
            tracing::warn!(registry = %self.name, member = %m, "malformed member skipped");
            return Vec::new();
        }
        self.members.insert(OrdTerm(m.clone()));
        self.write().members.insert(OrdTerm(m.clone()));
        // Back within the grace: its keys were never dropped.
        self.lost.remove(&OrdTerm(m.clone()));
        let neighbours = self.neighbours_of(&self.members);
        self.replica.set_neighbours(neighbours)
    }

    fn member_removed(&mut self, m: &Term, out: &mut Vec<Effect>) -> Vec<Action> {
        // Removed by another member while this node still sees it: at the
        // heal of a split, a member that sees one node come back before
        // another syncs its removal of the other (made at its nodedown)
        // to members that never lost it. Followed, that removal would drop
        // the keys of a member that never left, those registered during
        // the split too (observed here, so the drop wins everywhere).
        // Horde follows it; we write the member back and keep its keys.
        // The remover writes it again itself once it sees the node.
        if let Some((view, ts)) = &self.view {
            if view.contains(&OrdTerm(m.clone())) {
                let ts = *ts;
                return self.replica.put(member_key(m), term::int(1), ts);
            }
        }
        // Hidden from lookups at once (they skip keys of members not in
        // the cluster); dropped now or when the grace ends.
        self.write().members.remove(&OrdTerm(m.clone()));
        self.members.remove(&OrdTerm(m.clone()));
        if self.lost_member_grace > 0 {
            self.lost.insert(OrdTerm(m.clone()), self.now);
            return Vec::new();
        }
        self.drop_member_keys(m, out)
    }

    /// Drops every key registered through member `m` (Horde's removal of a
    /// departed member's keys).
    fn drop_member_keys(&mut self, m: &Term, out: &mut Vec<Effect>) -> Vec<Action> {
        if self.members.contains(&OrdTerm(m.clone())) {
            return Vec::new();
        }
        let removed: Vec<(Term, Pid)> = {
            let t = self.write();
            t.keys
                .iter()
                .filter(|(_, e)| &e.member == m)
                .map(|(k, e)| (k.0.clone(), e.pid.clone()))
                .collect()
        };
        let mut actions = Vec::new();
        for (key, pid) in removed {
            actions.extend(self.replica.delete(key_key(&key)));
            self.unregister_local(&key, Some(&pid), out);
        }
        actions
    }

    fn key_added(&mut self, key: &Term, v: &Term, out: &mut Vec<Effect>) {
        let Some((member, pid, value)) = parse_key_value(v) else {
            tracing::warn!(registry = %self.name, key = %key, value = %v, "malformed registration skipped");
            return;
        };
        if self.is_local(&pid) {
            out.push(Effect::Link(pid.clone()));
        }
        let loser = {
            let mut t = self.write();
            t.add_key_to_pid(&pid, key);
            t.keys
                .get(&OrdTerm(key.clone()))
                .filter(|e| e.pid != pid)
                .cloned()
        };
        if let Some(loser) = loser {
            // Two processes under one key: the CRDT picked `pid`; the other
            // learns it lost, on whichever node it lives.
            self.unregister_local(key, Some(&loser.pid), out);
            let reason = crate::tup![
                term::atom("name_conflict"),
                crate::tup![key.clone(), loser.value.clone()],
                term::atom(&self.name),
                Term::Pid(pid.clone())
            ];
            out.push(Effect::Exit {
                pid: loser.pid,
                reason,
            });
        }
        self.write().keys.insert(
            OrdTerm(key.clone()),
            Entry {
                member,
                pid: pid.clone(),
                value: value.clone(),
            },
        );
        out.push(Effect::Event(RegistryEvent::Register {
            key: key.clone(),
            pid,
            value,
        }));
    }

    /// Forgets `key` locally (held by `pid`, or by anyone when `None`).
    fn unregister_local(&mut self, key: &Term, pid: Option<&Pid>, out: &mut Vec<Effect>) {
        let mut t = self.write();
        let k = OrdTerm(key.clone());
        let holder = match (t.keys.get(&k), pid) {
            (Some(e), Some(p)) if &e.pid == p => Some(e.pid.clone()),
            (Some(e), None) => Some(e.pid.clone()),
            _ => None,
        };
        if let Some(p) = pid {
            t.remove_key_from_pid(p, key);
        }
        if let Some(holder) = holder {
            t.keys.remove(&k);
            t.remove_key_from_pid(&holder, key);
            out.push(Effect::Event(RegistryEvent::Unregister {
                key: key.clone(),
                pid: holder,
            }));
        }
    }

    fn neighbours_of(&self, members: &BTreeSet<OrdTerm>) -> Vec<Term> {
        members
            .iter()
            .filter(|m| m.0 != self.me)
            .filter_map(|m| crdt_neighbour(&m.0))
            .collect()
    }

    /// Horde's `fully_qualified_name`: `{name, node}` as given, a bare name
    /// on this node.
    fn qualify(&self, m: &Term) -> Option<Term> {
        match m {
            Term::Atom(a) => Some(member(&a.name, &self.node)),
            _ => crdt_neighbour(m).map(|_| m.clone()),
        }
    }

    fn is_local(&self, pid: &Pid) -> bool {
        pid.node.name == self.node
    }
}

fn member_key(m: &Term) -> Term {
    crate::tup![term::atom("member"), m.clone()]
}

fn key_key(k: &Term) -> Term {
    crate::tup![term::atom("key"), k.clone()]
}

fn meta_key(k: &Term) -> Term {
    crate::tup![term::atom("registry"), k.clone()]
}

/// `{member, pid, value}` of a `{:key, _}` entry.
fn parse_key_value(v: &Term) -> Option<(Term, Pid, Term)> {
    match term::as_tuple(v)? {
        [member, Term::Pid(pid), value] if crdt_neighbour(member).is_some() => {
            Some((member.clone(), pid.clone(), value.clone()))
        }
        _ => None,
    }
}
