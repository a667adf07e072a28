//! The process table: every local process, its registered name, its links, the
//! monitors it holds and the monitors held on it, and its aliases.
//!
//! This is a sans-I/O state machine. Each operation returns the [`Effect`]s it
//! causes (a signal for a local mailbox, a control message for a remote node, a
//! task to abort) and the owner ([`crate::node::Node`]) carries them out. It never
//! touches a socket or a clock, so the whole link/monitor/exit semantics is unit
//! tested here from terms alone.
//!
//! Exit semantics follow the BEAM:
//! - a *link exit* (the linked process died) kills the receiver unless the reason
//!   is `normal`, or is turned into `{'EXIT', From, Reason}` when it traps exits;
//! - an *exit signal* (`exit/2`) with reason `kill` kills untrappably with reason
//!   `killed`; `normal` is ignored unless sent by the process to itself;
//! - every monitor of a dying process gets `{'DOWN', Ref, process, Object, Reason}`.

use std::collections::{HashMap, HashSet};

use super::local_hash::LocalHash;

use crate::term::{self, Pid, Reference, Term};

/// A monitor or alias reference, reduced to what identifies it. Made for
/// every monitor, demonitor and alias look-up (a remote `gen_server:call`
/// makes two), so without allocating: the node's name is shared, not
/// formatted into a new string, and the id words are kept inline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefKey {
    pub node: smol_str::SmolStr,
    pub id: RefId,
}

/// A reference's id words: inline up to the five a BEAM reference has at
/// most (the decoder refuses more), on the heap beyond (only a reference
/// built by hand can have more). Each length has one form, so equal ids
/// compare and hash equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RefId {
    Inline { len: u8, words: [u32; 5] },
    Long(Box<[u32]>),
}

impl From<&[u32]> for RefId {
    fn from(id: &[u32]) -> Self {
        let mut words = [0; 5];
        match words.get_mut(..id.len()) {
            Some(head) => {
                head.copy_from_slice(id);
                RefId::Inline {
                    len: id.len() as u8,
                    words,
                }
            }
            None => RefId::Long(id.into()),
        }
    }
}

impl From<&Reference> for RefKey {
    fn from(r: &Reference) -> Self {
        RefKey {
            node: r.node.name.clone(),
            id: RefId::from(&r.id[..]),
        }
    }
}

/// What a mailbox receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// An ordinary message (including `DOWN` and trapped `EXIT` messages).
    Message(Term),
    /// The process has been terminated with this reason; its mailbox is closed.
    Exited(Term),
}

/// How a monitored process was named by the one monitoring it: a `DOWN` message
/// carries the same form back.
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorObject {
    Pid(Pid),
    /// `{Name, Node}`
    Name(String, String),
}

impl MonitorObject {
    pub fn to_term(&self) -> Term {
        match self {
            MonitorObject::Pid(p) => Term::Pid(p.clone()),
            MonitorObject::Name(n, node) => crate::tup![term::atom(n), term::atom(node)],
        }
    }
}

/// A monitor held by a local process on some target.
#[derive(Debug, Clone)]
struct OutgoingMonitor {
    reference: Reference,
    object: MonitorObject,
    /// The node the target lives on (ours or a peer).
    target_node: String,
    /// The target's pid when known (a local target by name resolves at once).
    target_pid: Option<Pid>,
}

/// A monitor some process (local or remote) holds on a local process.
#[derive(Debug, Clone)]
struct IncomingMonitor {
    watcher: Pid,
    reference: Reference,
    object: MonitorObject,
}

/// Effects for the owner to carry out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Push a signal into a local mailbox.
    Deliver { to: u32, signal: Signal },
    /// Abort the task running the process (it was killed by a signal).
    Abort { id: u32 },
    /// Send a link-exit to a remote linked process (EXIT / PAYLOAD_EXIT).
    RemoteLinkExit { from: Pid, to: Pid, reason: Term },
    /// Tell a remote watcher its monitor fired (MONITOR_P_EXIT).
    RemoteDown {
        /// The pid or the registered name of the dead process, as the watcher gave it.
        from: Term,
        to: Pid,
        reference: Reference,
        reason: Term,
    },
    /// Cancel a monitor a dead local process held on a remote one (DEMONITOR_P).
    RemoteDemonitor {
        from: Pid,
        target: Term,
        node: String,
        reference: Reference,
    },
    /// The process has left the table (observers may clean up their own state).
    Gone { pid: Pid, reason: Term },
}

enum Outcome {
    Ignore,
    Deliver(Effect),
    Die(Term),
}

struct Entry {
    trap_exit: bool,
    name: Option<String>,
    links: HashSet<Pid, Fast>,
    monitors_out: HashMap<RefKey, OutgoingMonitor, Fast>,
    monitors_in: HashMap<RefKey, IncomingMonitor, Fast>,
    aliases: HashSet<RefKey, Fast>,
}

/// foldhash (randomly seeded) for the per-process sets and the alias
/// table: every gen_server call adds and removes a monitor and an alias,
/// and SipHash of a reference or a pid (its node's name) was a measurable
/// part of each.
type Fast = foldhash::fast::RandomState;

/// One process's entry as `process_info` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryInfo {
    pub name: Option<String>,
    pub trap_exit: bool,
    pub links: Vec<Pid>,
    /// The monitors it holds, by the object it named.
    pub monitors: Vec<MonitorObject>,
    /// The watchers of the monitors held on it (a watcher with two
    /// monitors is listed twice, as on the BEAM).
    pub monitored_by: Vec<Pid>,
}

/// The process table of one node.
pub struct ProcessTable {
    node: String,
    creation: u32,
    entries: HashMap<u32, Entry, LocalHash>,
    names: HashMap<String, u32, LocalHash>,
    aliases: HashMap<RefKey, u32, Fast>,
    /// Counts changes to `names` (a registration, an unregistration, a named
    /// process's end), shared with readers that remember where a name led
    /// ([`crate::node::NameCache`]): an unchanged count, read without the
    /// table's lock, says the name still leads there.
    names_epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Why a name could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("name {0} is already registered")]
    NameTaken(String),
    #[error("process already has the name {0}")]
    AlreadyNamed(String),
    #[error("no such process")]
    NoProc,
}

impl ProcessTable {
    pub fn new(node: &str, creation: u32) -> Self {
        ProcessTable {
            node: node.to_string(),
            creation,
            entries: HashMap::default(),
            names: HashMap::default(),
            aliases: HashMap::default(),
            names_epoch: Default::default(),
        }
    }

    /// See `names_epoch`: changes to `names` are counted here, under the
    /// lock the table is kept under.
    pub fn names_epoch(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.names_epoch.clone()
    }

    fn names_changed(&self) {
        self.names_epoch
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Number of live processes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The local id of `pid` when it names a live process of this node incarnation.
    pub fn local_id(&self, pid: &Pid) -> Option<u32> {
        if pid.node.name != self.node || pid.creation != self.creation {
            return None;
        }
        let n = local_number(pid)?;
        self.entries.contains_key(&n).then_some(n)
    }

    pub fn is_alive(&self, pid: &Pid) -> bool {
        self.local_id(pid).is_some()
    }

    pub fn pid_of(&self, id: u32) -> Option<Pid> {
        self.entries.contains_key(&id).then(|| self.make_pid(id))
    }

    fn make_pid(&self, n: u32) -> Pid {
        let (id, serial) = pid_fields(n);
        Pid::new(self.node.as_str(), id, serial, self.creation)
    }

    /// Adds a process under local number `n` (the owner allocates numbers and
    /// never reuses a live one).
    pub fn insert(&mut self, n: u32) -> Pid {
        self.entries.insert(
            n,
            Entry {
                trap_exit: false,
                name: None,
                links: HashSet::default(),
                monitors_out: HashMap::default(),
                monitors_in: HashMap::default(),
                aliases: HashSet::default(),
            },
        );
        self.make_pid(n)
    }

    pub fn contains_id(&self, id: u32) -> bool {
        self.entries.contains_key(&id)
    }

    pub fn set_trap_exit(&mut self, id: u32, on: bool) -> bool {
        match self.entries.get_mut(&id) {
            Some(e) => std::mem::replace(&mut e.trap_exit, on),
            None => false,
        }
    }

    pub fn register(&mut self, id: u32, name: &str) -> Result<(), RegisterError> {
        if self.names.contains_key(name) {
            return Err(RegisterError::NameTaken(name.to_string()));
        }
        let entry = self.entries.get_mut(&id).ok_or(RegisterError::NoProc)?;
        if let Some(existing) = &entry.name {
            return Err(RegisterError::AlreadyNamed(existing.clone()));
        }
        entry.name = Some(name.to_string());
        self.names.insert(name.to_string(), id);
        self.names_changed();
        Ok(())
    }

    pub fn unregister(&mut self, name: &str) -> bool {
        match self.names.remove(name) {
            Some(id) => {
                self.names_changed();
                if let Some(e) = self.entries.get_mut(&id) {
                    e.name = None;
                }
                true
            }
            None => false,
        }
    }

    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.names.get(name).and_then(|&id| self.pid_of(id))
    }

    pub fn name_id(&self, name: &str) -> Option<u32> {
        self.names.get(name).copied()
    }

    pub fn registered(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }

    pub fn all_pids(&self) -> Vec<Pid> {
        self.entries
            .iter()
            .map(|(&id, _)| self.make_pid(id))
            .collect()
    }

    // ----- aliases -----

    pub fn add_alias(&mut self, id: u32, reference: &Reference) {
        let key = RefKey::from(reference);
        if let Some(e) = self.entries.get_mut(&id) {
            e.aliases.insert(key.clone());
            self.aliases.insert(key, id);
        }
    }

    pub fn remove_alias(&mut self, id: u32, reference: &Reference) {
        let key = RefKey::from(reference);
        if self.aliases.get(&key) == Some(&id) {
            self.aliases.remove(&key);
        }
        if let Some(e) = self.entries.get_mut(&id) {
            e.aliases.remove(&key);
        }
    }

    pub fn alias_owner(&self, reference: &Reference) -> Option<u32> {
        self.aliases.get(&RefKey::from(reference)).copied()
    }

    // ----- links -----

    /// A local process links to `other` (local or remote). For a local `other`
    /// that is gone, the caller gets the `noproc` exit like the BEAM sends it.
    pub fn link(&mut self, id: u32, other: &Pid) -> Vec<Effect> {
        let Some(me) = self.pid_of(id) else {
            return vec![];
        };
        if other == &me {
            return vec![];
        }
        if other.node.name == self.node {
            match self.local_id(other) {
                Some(oid) => {
                    if let Some(e) = self.entries.get_mut(&id) {
                        e.links.insert(other.clone());
                    }
                    if let Some(e) = self.entries.get_mut(&oid) {
                        e.links.insert(me);
                    }
                    vec![]
                }
                None => self.link_exit(id, other.clone(), term::atom("noproc")),
            }
        } else {
            if let Some(e) = self.entries.get_mut(&id) {
                e.links.insert(other.clone());
            }
            vec![]
        }
    }

    /// A remote process asked to link to a local one. Returns false when the local
    /// one does not exist (the caller answers with an EXIT `noproc`).
    pub fn remote_link(&mut self, from: &Pid, to: &Pid) -> bool {
        match self.local_id(to) {
            Some(id) => {
                if let Some(e) = self.entries.get_mut(&id) {
                    e.links.insert(from.clone());
                }
                true
            }
            None => false,
        }
    }

    /// Removes the link between `id` and `other` on our side (both ends when local).
    pub fn unlink(&mut self, id: u32, other: &Pid) {
        let me = self.pid_of(id);
        if let Some(e) = self.entries.get_mut(&id) {
            e.links.remove(other);
        }
        if let (Some(oid), Some(me)) = (self.local_id(other), me) {
            if let Some(e) = self.entries.get_mut(&oid) {
                e.links.remove(&me);
            }
        }
    }

    /// Removes a link a remote process held on a local one.
    pub fn remote_unlink(&mut self, from: &Pid, to: &Pid) {
        if let Some(id) = self.local_id(to) {
            if let Some(e) = self.entries.get_mut(&id) {
                e.links.remove(from);
            }
        }
    }

    /// What `process_info` reports from the table for local process `id`.
    pub fn info(&self, id: u32) -> Option<EntryInfo> {
        let e = self.entries.get(&id)?;
        let mut monitored_by: Vec<Pid> =
            e.monitors_in.values().map(|m| m.watcher.clone()).collect();
        monitored_by.dedup();
        Some(EntryInfo {
            name: e.name.clone(),
            trap_exit: e.trap_exit,
            links: e.links.iter().cloned().collect(),
            monitors: e.monitors_out.values().map(|m| m.object.clone()).collect(),
            monitored_by,
        })
    }

    pub fn links_of(&self, id: u32) -> Vec<Pid> {
        self.entries
            .get(&id)
            .map(|e| e.links.iter().cloned().collect())
            .unwrap_or_default()
    }

    // ----- monitors -----

    /// A local process monitors a local target. Returns the effects (a `DOWN`
    /// with `noproc` at once when the target does not exist).
    pub fn monitor_local(
        &mut self,
        watcher: u32,
        target: Option<u32>,
        object: MonitorObject,
        reference: Reference,
    ) -> Vec<Effect> {
        let Some(watcher_pid) = self.pid_of(watcher) else {
            return vec![];
        };
        match target.and_then(|t| self.pid_of(t).map(|p| (t, p))) {
            Some((tid, tpid)) => {
                let key = RefKey::from(&reference);
                if let Some(e) = self.entries.get_mut(&tid) {
                    e.monitors_in.insert(
                        key.clone(),
                        IncomingMonitor {
                            watcher: watcher_pid,
                            reference: reference.clone(),
                            object: object.clone(),
                        },
                    );
                }
                if let Some(e) = self.entries.get_mut(&watcher) {
                    e.monitors_out.insert(
                        key,
                        OutgoingMonitor {
                            reference,
                            object,
                            target_node: self.node.clone(),
                            target_pid: Some(tpid),
                        },
                    );
                }
                vec![]
            }
            None => vec![Effect::Deliver {
                to: watcher,
                signal: Signal::Message(down_message(&reference, &object, term::atom("noproc"))),
            }],
        }
    }

    /// Records a monitor a local process holds on a remote target (the MONITOR_P
    /// itself is sent by the owner).
    pub fn monitor_remote(
        &mut self,
        watcher: u32,
        object: MonitorObject,
        target_node: &str,
        reference: Reference,
    ) {
        let target_pid = match &object {
            MonitorObject::Pid(p) => Some(p.clone()),
            MonitorObject::Name(..) => None,
        };
        if let Some(e) = self.entries.get_mut(&watcher) {
            e.monitors_out.insert(
                RefKey::from(&reference),
                OutgoingMonitor {
                    reference,
                    object,
                    target_node: target_node.to_string(),
                    target_pid,
                },
            );
        }
    }

    /// A remote process monitors a local one (MONITOR_P). Returns false when the
    /// target does not exist: the owner answers MONITOR_P_EXIT `noproc`.
    pub fn remote_monitor(
        &mut self,
        watcher: &Pid,
        target: u32,
        object: MonitorObject,
        reference: Reference,
    ) -> bool {
        match self.entries.get_mut(&target) {
            Some(e) => {
                e.monitors_in.insert(
                    RefKey::from(&reference),
                    IncomingMonitor {
                        watcher: watcher.clone(),
                        reference,
                        object,
                    },
                );
                true
            }
            None => false,
        }
    }

    /// Removes a monitor a local process holds. Returns the remote target (pid or
    /// name term) and its node when a DEMONITOR_P must be sent.
    pub fn demonitor(&mut self, watcher: u32, reference: &Reference) -> Option<(Term, String)> {
        let key = RefKey::from(reference);
        let out = self.entries.get_mut(&watcher)?.monitors_out.remove(&key)?;
        if out.target_node == self.node {
            if let Some(tid) = out.target_pid.as_ref().and_then(|p| self.local_id(p)) {
                if let Some(e) = self.entries.get_mut(&tid) {
                    e.monitors_in.remove(&key);
                }
            }
            None
        } else {
            let target = match &out.object {
                MonitorObject::Pid(p) => Term::Pid(p.clone()),
                MonitorObject::Name(n, _) => term::atom(n),
            };
            Some((target, out.target_node))
        }
    }

    /// A remote watcher cancelled its monitor on a local process (DEMONITOR_P).
    pub fn remote_demonitor(&mut self, target: u32, reference: &Reference) {
        if let Some(e) = self.entries.get_mut(&target) {
            e.monitors_in.remove(&RefKey::from(reference));
        }
    }

    /// A monitor held by a local process fired remotely (MONITOR_P_EXIT). Returns
    /// the DOWN delivery, or nothing when the monitor is unknown (demonitored).
    pub fn remote_down(
        &mut self,
        watcher: &Pid,
        reference: &Reference,
        reason: Term,
    ) -> Vec<Effect> {
        let Some(id) = self.local_id(watcher) else {
            return vec![];
        };
        let key = RefKey::from(reference);
        let Some(out) = self
            .entries
            .get_mut(&id)
            .and_then(|e| e.monitors_out.remove(&key))
        else {
            return vec![];
        };
        vec![Effect::Deliver {
            to: id,
            signal: Signal::Message(down_message(&out.reference, &out.object, reason)),
        }]
    }

    // ----- exits -----

    /// A link-exit from `from` reached local process `id` (the linked process died).
    pub fn link_exit(&mut self, id: u32, from: Pid, reason: Term) -> Vec<Effect> {
        match self.link_exit_outcome(id, &from, reason) {
            Outcome::Ignore => vec![],
            Outcome::Deliver(e) => vec![e],
            Outcome::Die(r) => self.terminate(id, r),
        }
    }

    fn link_exit_outcome(&mut self, id: u32, from: &Pid, reason: Term) -> Outcome {
        let Some(entry) = self.entries.get_mut(&id) else {
            return Outcome::Ignore;
        };
        entry.links.remove(from);
        if entry.trap_exit {
            Outcome::Deliver(Effect::Deliver {
                to: id,
                signal: Signal::Message(exit_message(from, reason)),
            })
        } else if term::is_atom(&reason, "normal") {
            Outcome::Ignore
        } else {
            Outcome::Die(reason)
        }
    }

    /// An exit signal (`exit(Pid, Reason)`) from `from` reached local process `id`.
    pub fn exit_signal(&mut self, id: u32, from: Pid, reason: Term) -> Vec<Effect> {
        let Some(me) = self.pid_of(id) else {
            return vec![];
        };
        let Some(entry) = self.entries.get(&id) else {
            return vec![];
        };
        if term::is_atom(&reason, "kill") {
            return self.terminate(id, term::atom("killed"));
        }
        if entry.trap_exit {
            return vec![Effect::Deliver {
                to: id,
                signal: Signal::Message(exit_message(&from, reason)),
            }];
        }
        if term::is_atom(&reason, "normal") && from != me {
            return vec![];
        }
        self.terminate(id, reason)
    }

    /// The process ends with `reason`: it leaves the table, and every link and
    /// monitor it was part of fires. Local cascades are followed to the end.
    pub fn terminate(&mut self, id: u32, reason: Term) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut work = vec![(id, reason)];
        while let Some((id, reason)) = work.pop() {
            let Some(entry) = self.entries.remove(&id) else {
                continue;
            };
            let me = self.make_pid(id);
            if let Some(name) = &entry.name {
                self.names.remove(name);
                self.names_changed();
            }
            for key in &entry.aliases {
                self.aliases.remove(key);
            }
            effects.push(Effect::Deliver {
                to: id,
                signal: Signal::Exited(reason.clone()),
            });
            effects.push(Effect::Abort { id });
            for other in entry.links {
                if other.node.name == self.node {
                    if let Some(oid) = self.local_id(&other) {
                        // Cascades go through the work list, not recursion, so a
                        // long chain of links cannot exhaust the stack.
                        match self.link_exit_outcome(oid, &me, reason.clone()) {
                            Outcome::Ignore => {}
                            Outcome::Deliver(e) => effects.push(e),
                            Outcome::Die(r) => work.push((oid, r)),
                        }
                    }
                } else {
                    effects.push(Effect::RemoteLinkExit {
                        from: me.clone(),
                        to: other,
                        reason: reason.clone(),
                    });
                }
            }
            // Monitors held on this process.
            for (_, m) in entry.monitors_in {
                if m.watcher.node.name == self.node {
                    if let Some(wid) = self.local_id(&m.watcher) {
                        let key = RefKey::from(&m.reference);
                        if let Some(w) = self.entries.get_mut(&wid) {
                            w.monitors_out.remove(&key);
                        }
                        effects.push(Effect::Deliver {
                            to: wid,
                            signal: Signal::Message(down_message(
                                &m.reference,
                                &m.object,
                                reason.clone(),
                            )),
                        });
                    }
                } else {
                    let from = match &m.object {
                        MonitorObject::Name(n, _) => term::atom(n),
                        MonitorObject::Pid(_) => Term::Pid(me.clone()),
                    };
                    effects.push(Effect::RemoteDown {
                        from,
                        to: m.watcher,
                        reference: m.reference,
                        reason: reason.clone(),
                    });
                }
            }
            // Monitors this process held: cancel them.
            for (key, m) in entry.monitors_out {
                if m.target_node == self.node {
                    if let Some(tid) = m.target_pid.as_ref().and_then(|p| self.local_id(p)) {
                        if let Some(t) = self.entries.get_mut(&tid) {
                            t.monitors_in.remove(&key);
                        }
                    }
                } else {
                    let target = match &m.object {
                        MonitorObject::Pid(p) => Term::Pid(p.clone()),
                        MonitorObject::Name(n, _) => term::atom(n),
                    };
                    effects.push(Effect::RemoteDemonitor {
                        from: me.clone(),
                        target,
                        node: m.target_node,
                        reference: m.reference,
                    });
                }
            }
            effects.push(Effect::Gone {
                pid: me,
                reason: reason.clone(),
            });
        }
        effects
    }

    /// The connection to `node` is gone: every link to a process there delivers
    /// `noconnection`, every monitor on a process there fires with `noconnection`,
    /// and monitors held from there are forgotten.
    pub fn node_down(&mut self, node: &str) -> Vec<Effect> {
        let reason = term::atom("noconnection");
        let ids: Vec<u32> = self.entries.keys().copied().collect();
        let mut effects = Vec::new();
        for id in ids {
            let Some(entry) = self.entries.get_mut(&id) else {
                continue;
            };
            entry.monitors_in.retain(|_, m| m.watcher.node.name != node);
            let downs: Vec<OutgoingMonitor> = {
                let keys: Vec<RefKey> = entry
                    .monitors_out
                    .iter()
                    .filter(|(_, m)| m.target_node == node)
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.iter()
                    .filter_map(|k| entry.monitors_out.remove(k))
                    .collect()
            };
            let dead_links: Vec<Pid> = entry
                .links
                .iter()
                .filter(|p| p.node.name == node)
                .cloned()
                .collect();
            for m in downs {
                effects.push(Effect::Deliver {
                    to: id,
                    signal: Signal::Message(down_message(&m.reference, &m.object, reason.clone())),
                });
            }
            for other in dead_links {
                effects.extend(self.link_exit(id, other, reason.clone()));
            }
        }
        effects
    }
}

/// The largest local process number: 15 bits of id and 13 of serial, the layout
/// every OTP release can encode.
pub const MAX_LOCAL_NUMBER: u32 = (1 << 28) - 1;

/// The (id, serial) of a pid for local number `n`.
pub fn pid_fields(n: u32) -> (u32, u32) {
    (n & 0x7fff, (n >> 15) & 0x1fff)
}

/// The local number of a pid's (id, serial), when they fit our layout.
pub fn local_number(pid: &Pid) -> Option<u32> {
    (pid.id <= 0x7fff && pid.serial <= 0x1fff).then_some((pid.serial << 15) | pid.id)
}

/// `{'DOWN', Ref, process, Object, Reason}`
pub fn down_message(reference: &Reference, object: &MonitorObject, reason: Term) -> Term {
    crate::tup![
        term::atom("DOWN"),
        Term::Reference(Box::new(reference.clone())),
        term::atom("process"),
        object.to_term(),
        reason
    ]
}

/// `{'EXIT', From, Reason}`
pub fn exit_message(from: &Pid, reason: Term) -> Term {
    crate::tup![term::atom("EXIT"), Term::Pid(from.clone()), reason]
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "rust@127.0.0.1";

    fn table() -> ProcessTable {
        ProcessTable::new(NODE, 7)
    }

    fn r(n: u32) -> Reference {
        Reference {
            node: NODE.into(),
            id: vec![n, 0, 0],
            creation: 7,
        }
    }

    fn remote_pid(n: u32) -> Pid {
        Pid::new("erl@127.0.0.1", n, 0, 3)
    }

    fn delivered(effects: &[Effect], id: u32) -> Vec<Signal> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Deliver { to, signal } if *to == id => Some(signal.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reference_keys_are_equal_exactly_when_the_references_are() {
        let key = |node: &str, id: Vec<u32>| {
            RefKey::from(&Reference {
                node: node.into(),
                id,
                creation: 1,
            })
        };
        assert_eq!(key(NODE, vec![1, 2, 3]), key(NODE, vec![1, 2, 3]));
        assert_ne!(key(NODE, vec![1, 2, 3]), key(NODE, vec![1, 2, 4]));
        assert_ne!(key(NODE, vec![1, 2]), key(NODE, vec![1, 2, 0]));
        assert_ne!(key(NODE, vec![1]), key("other@host", vec![1]));
        // Longer than a BEAM's (built by hand): kept whole.
        let long: Vec<u32> = (0..7).collect();
        assert_eq!(key(NODE, long.clone()), key(NODE, long.clone()));
        assert_ne!(key(NODE, long), key(NODE, (0..5).collect()));
        let set: HashSet<RefKey> = [key(NODE, vec![1, 2, 3]), key(NODE, vec![1, 2, 3])].into();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn link_exit_kills_unless_normal_or_trapped() {
        let mut t = table();
        let a = t.insert(1);
        let b = t.insert(2);
        let c = t.insert(3);
        assert!(t.link(1, &b).is_empty());
        assert!(t.link(1, &c).is_empty());
        t.set_trap_exit(3, true);
        let fx = t.terminate(1, term::atom("boom"));
        assert_eq!(
            delivered(&fx, 2),
            vec![Signal::Exited(term::atom("boom"))],
            "b dies with a's reason"
        );
        assert_eq!(
            delivered(&fx, 3),
            vec![Signal::Message(exit_message(&a, term::atom("boom")))]
        );
        assert!(!t.is_alive(&a) && !t.is_alive(&b) && t.is_alive(&c));
    }

    #[test]
    fn normal_link_exit_is_ignored() {
        let mut t = table();
        let _a = t.insert(1);
        let b = t.insert(2);
        t.link(1, &b);
        t.terminate(1, term::atom("normal"));
        assert!(t.is_alive(&b));
        assert!(t.links_of(2).is_empty());
    }

    #[test]
    fn kill_is_untrappable_and_links_see_killed() {
        let mut t = table();
        let a = t.insert(1);
        let b = t.insert(2);
        t.set_trap_exit(1, true);
        t.set_trap_exit(2, true);
        t.link(1, &b);
        let fx = t.exit_signal(1, b.clone(), term::atom("kill"));
        assert_eq!(
            delivered(&fx, 1),
            vec![Signal::Exited(term::atom("killed"))]
        );
        assert_eq!(
            delivered(&fx, 2),
            vec![Signal::Message(exit_message(&a, term::atom("killed")))]
        );
    }

    #[test]
    fn monitor_of_missing_process_is_noproc_at_once() {
        let mut t = table();
        let _a = t.insert(1);
        let obj = MonitorObject::Name("nobody".into(), NODE.into());
        let fx = t.monitor_local(1, None, obj.clone(), r(1));
        assert_eq!(
            delivered(&fx, 1),
            vec![Signal::Message(down_message(
                &r(1),
                &obj,
                term::atom("noproc")
            ))]
        );
    }

    #[test]
    fn monitors_fire_and_demonitor_cancels() {
        let mut t = table();
        let _a = t.insert(1);
        let b = t.insert(2);
        let obj = MonitorObject::Pid(b.clone());
        t.monitor_local(1, Some(2), obj.clone(), r(1));
        t.monitor_local(1, Some(2), obj.clone(), r(2));
        assert_eq!(t.demonitor(1, &r(2)), None);
        let fx = t.terminate(2, term::atom("bye"));
        assert_eq!(
            delivered(&fx, 1),
            vec![Signal::Message(down_message(
                &r(1),
                &obj,
                term::atom("bye")
            ))]
        );
    }

    #[test]
    fn remote_relations_fire_on_exit() {
        let mut t = table();
        let a = t.insert(1);
        let w = remote_pid(5);
        assert!(t.remote_link(&w, &a));
        assert!(t.remote_monitor(&w, 1, MonitorObject::Name("svc".into(), NODE.into()), r(9)));
        t.monitor_remote(1, MonitorObject::Pid(remote_pid(6)), "erl@127.0.0.1", r(10));
        let fx = t.terminate(1, term::atom("shutdown"));
        assert!(fx.contains(&Effect::RemoteLinkExit {
            from: a.clone(),
            to: w.clone(),
            reason: term::atom("shutdown")
        }));
        assert!(fx.contains(&Effect::RemoteDown {
            from: term::atom("svc"),
            to: w.clone(),
            reference: r(9),
            reason: term::atom("shutdown")
        }));
        assert!(fx
            .iter()
            .any(|e| matches!(e, Effect::RemoteDemonitor { .. })));
    }

    #[test]
    fn node_down_gives_noconnection_to_links_and_monitors() {
        let mut t = table();
        let a = t.insert(1);
        let b = t.insert(2);
        t.set_trap_exit(2, true);
        let peer = remote_pid(5);
        t.link(1, &peer);
        t.link(2, &peer);
        t.monitor_remote(2, MonitorObject::Pid(peer.clone()), "erl@127.0.0.1", r(3));
        let fx = t.node_down("erl@127.0.0.1");
        assert_eq!(
            delivered(&fx, 1),
            vec![Signal::Exited(term::atom("noconnection"))]
        );
        let got = delivered(&fx, 2);
        assert!(got.contains(&Signal::Message(down_message(
            &r(3),
            &MonitorObject::Pid(peer.clone()),
            term::atom("noconnection")
        ))));
        assert!(got.contains(&Signal::Message(exit_message(
            &peer,
            term::atom("noconnection")
        ))));
        assert!(!t.is_alive(&a) && t.is_alive(&b));
    }

    #[test]
    fn stale_pid_is_not_alive() {
        let mut t = table();
        let a = t.insert(1);
        t.terminate(1, term::atom("normal"));
        let a2 = t.insert(1 + (1 << 15));
        assert!(!t.is_alive(&a));
        assert!(t.is_alive(&a2));
    }

    #[test]
    fn names_and_aliases() {
        let mut t = table();
        let a = t.insert(1);
        t.insert(2);
        t.register(1, "echo").unwrap();
        assert_eq!(
            t.register(2, "echo"),
            Err(RegisterError::NameTaken("echo".into()))
        );
        assert_eq!(t.whereis("echo"), Some(a));
        t.add_alias(1, &r(4));
        assert_eq!(t.alias_owner(&r(4)), Some(1));
        t.terminate(1, term::atom("normal"));
        assert_eq!(t.whereis("echo"), None);
        assert_eq!(t.alias_owner(&r(4)), None);
    }

    #[test]
    fn long_link_chain_terminates_without_recursion_limits() {
        let mut t = table();
        let n = 20_000u32;
        let pids: Vec<Pid> = (1..=n).map(|i| t.insert(i)).collect();
        for i in 1..n {
            t.link(i, &pids[i as usize]);
        }
        t.terminate(1, term::atom("boom"));
        assert!(t.is_empty());
    }
}
