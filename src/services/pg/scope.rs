//! One `pg` scope as a sans-I/O state machine: what OTP's `pg` server is on
//! a BEAM node (OTP 23-27 protocol), minus the process.
//!
//! What it owns: which local processes joined which groups (with
//! repetitions: a process may join a group several times and must leave it
//! as often), what each peer scope last told us about its node's groups,
//! the merged view `get_members` reads, and the scope and group monitors of
//! local watchers. Every input is a method call and every effect an
//! [`Effect`] for the runtime (sends, monitors, notifications).
//!
//! The protocol, as OTP's `pg` speaks it:
//! - a scope starting, and every nodeup, sends `{discover, ScopePid}` to
//!   `{Scope, Node}`;
//! - `{discover, Peer}` (and OTP 26+'s `{discover, Peer, Vsn}`) is answered
//!   with the cast `{sync, ScopePid, [{Group, Pids}]}` of all local members;
//!   a peer not known yet is monitored and sent our own `{discover, ..}`;
//! - `{sync, Peer, Groups}` replaces all we knew of that peer's groups;
//! - `{join, Peer, Group, PidOrPids}` and `{leave, Peer, PidOrPids, Groups}`
//!   update it, and are ignored from a peer we have not synced with;
//! - a peer scope's DOWN (`noconnection` too) drops all its groups.
//!
//! What it must never do: send a peer scope anything but these messages
//! (a BEAM scope that receives anything else crashes and loses its
//! members), panic on a peer's term, or change state for a message it
//! rejects.

use std::collections::HashMap;

use crate::term::{self, Pid, Reference, Term};

/// An effect for the runtime to carry out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send `msg` to `to` (a pid, or a `{Scope, Node}` tuple). With
    /// `noconnect`, only over a connection that is already up.
    Send {
        to: Term,
        msg: Term,
        noconnect: bool,
    },
    /// Monitor a process (a peer scope, a joined local process or a
    /// watcher); its DOWN comes back through [`Scope::handle_message`].
    Monitor(Pid),
    /// The last reason to monitor this process is gone.
    Demonitor(Pid),
}

/// Why a message was not taken. Nothing changed and nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgError {
    #[error("not a pg message")]
    Unknown,
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// The members of one group: every member, and those on this node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupMembers {
    pub all: Vec<Pid>,
    pub local: Vec<Pid>,
}

/// A watcher of the whole scope or of one group.
#[derive(Debug, Clone)]
struct Watcher {
    pid: Pid,
    /// `None`: the whole scope.
    group: Option<Term>,
}

/// One pg scope; see the module docs.
#[derive(Debug, Clone)]
pub struct Scope {
    name: String,
    me: Pid,
    /// Local members: per process, the groups it joined, with repetitions.
    local: HashMap<Pid, Vec<Term>>,
    /// Per peer scope pid, what it told us: group → pids.
    remote: HashMap<Pid, HashMap<Term, Vec<Pid>>>,
    view: HashMap<Term, GroupMembers>,
    watchers: HashMap<Reference, Watcher>,
    /// Groups whose members changed since [`Scope::take_changed`].
    changed: Vec<Term>,
}

impl Scope {
    /// A scope registered as `name`, run by the process `me`.
    pub fn new(name: impl Into<String>, me: Pid) -> Scope {
        Scope {
            name: name.into(),
            me,
            local: HashMap::new(),
            remote: HashMap::new(),
            view: HashMap::new(),
            watchers: HashMap::new(),
            changed: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `pg:get_members/2`.
    pub fn members(&self, group: &Term) -> Vec<Pid> {
        self.view
            .get(group)
            .map(|g| g.all.clone())
            .unwrap_or_default()
    }

    /// `pg:get_local_members/2`.
    pub fn local_members(&self, group: &Term) -> Vec<Pid> {
        self.view
            .get(group)
            .map(|g| g.local.clone())
            .unwrap_or_default()
    }

    /// `pg:which_groups/1`: every group with a member anywhere.
    pub fn groups(&self) -> Vec<Term> {
        self.view.keys().cloned().collect()
    }

    /// The members of `group` as they are now (for a shared read table).
    pub fn group(&self, group: &Term) -> Option<&GroupMembers> {
        self.view.get(group)
    }

    /// The peer scopes we are synced with.
    pub fn peers(&self) -> impl Iterator<Item = &Pid> {
        self.remote.keys()
    }

    /// Groups whose members changed since the last call, each once.
    pub fn take_changed(&mut self) -> Vec<Term> {
        let mut out = std::mem::take(&mut self.changed);
        let mut seen = std::collections::HashSet::new();
        out.retain(|g| seen.insert(g.clone()));
        out
    }

    // ---- start and nodeup ---------------------------------------------------

    /// What a starting scope does: `{discover, self()}` to the scope of the
    /// same name on every node it knows.
    pub fn start(&self, nodes: &[String]) -> Vec<Effect> {
        nodes.iter().map(|n| self.discover_to(n, false)).collect()
    }

    /// A node came up: discover its scope (over that connection only).
    pub fn nodeup(&self, node: &str) -> Vec<Effect> {
        if node == self.me.node.name.as_str() {
            return Vec::new();
        }
        vec![self.discover_to(node, true)]
    }

    fn discover_to(&self, node: &str, noconnect: bool) -> Effect {
        Effect::Send {
            to: crate::tup![term::atom(&self.name), term::atom(node)],
            msg: crate::tup![term::atom("discover"), Term::Pid(self.me.clone())],
            noconnect,
        }
    }

    // ---- local joins and leaves ---------------------------------------------

    /// `pg:join(Scope, Group, PidOrPids)` for local processes. `pids` is
    /// sent to peers in the shape given: one pid alone, or a list.
    pub fn join(&mut self, group: Term, pids: PidOrPids) -> Vec<Effect> {
        let mut out = Vec::new();
        for pid in pids.iter() {
            match self.local.get_mut(pid) {
                Some(groups) => groups.push(group.clone()),
                None => {
                    self.local.insert(pid.clone(), vec![group.clone()]);
                    out.push(Effect::Monitor(pid.clone()));
                }
            }
        }
        let list = pids.to_vec();
        {
            let g = self.view.entry(group.clone()).or_default();
            g.all.splice(0..0, list.iter().cloned());
            g.local.splice(0..0, list.iter().cloned());
        }
        self.changed.push(group.clone());
        out.extend(self.notify("join", &group, &list));
        let msg = crate::tup![
            term::atom("join"),
            Term::Pid(self.me.clone()),
            group,
            pids.to_term()
        ];
        out.extend(self.broadcast(msg));
        out
    }

    /// `pg:leave(Scope, Group, PidOrPids)`: `None` (`not_joined`) when none
    /// of `pids` had joined `group`.
    pub fn leave(&mut self, group: &Term, pids: PidOrPids) -> Option<Vec<Effect>> {
        let mut out = Vec::new();
        let mut left = Vec::new();
        for pid in pids.iter() {
            let Some(groups) = self.local.get_mut(pid) else {
                continue;
            };
            let Some(at) = groups.iter().position(|g| g == group) else {
                continue;
            };
            groups.remove(at);
            if groups.is_empty() {
                self.local.remove(pid);
                out.extend(self.unwatch_if_done(pid));
            }
            left.push(pid.clone());
        }
        if left.is_empty() {
            return None;
        }
        self.drop_members(group, &left, true);
        out.extend(self.notify("leave", group, &left));
        let msg = crate::tup![
            term::atom("leave"),
            Term::Pid(self.me.clone()),
            pids.to_term(),
            term::list(vec![group.clone()])
        ];
        out.extend(self.broadcast(msg));
        Some(out)
    }

    // ---- monitors of local watchers -------------------------------------------

    /// `pg:monitor_scope/1` for `watcher`: the scope's groups now; from then
    /// on `{reference, join | leave, Group, Pids}` messages.
    pub fn monitor_scope(
        &mut self,
        watcher: Pid,
        reference: Reference,
    ) -> (HashMap<Term, Vec<Pid>>, Vec<Effect>) {
        let groups = self
            .view
            .iter()
            .map(|(g, m)| (g.clone(), m.all.clone()))
            .collect();
        let effects = self.watch(watcher, reference, None);
        (groups, effects)
    }

    /// `pg:monitor/2` for `watcher`: the group's members now, then its
    /// join and leave notifications.
    pub fn monitor_group(
        &mut self,
        watcher: Pid,
        reference: Reference,
        group: Term,
    ) -> (Vec<Pid>, Vec<Effect>) {
        let members = self.members(&group);
        let effects = self.watch(watcher, reference, Some(group));
        (members, effects)
    }

    fn watch(&mut self, pid: Pid, reference: Reference, group: Option<Term>) -> Vec<Effect> {
        let new = !self.watchers.values().any(|w| w.pid == pid);
        self.watchers.insert(
            reference,
            Watcher {
                pid: pid.clone(),
                group,
            },
        );
        if new && !self.local.contains_key(&pid) {
            vec![Effect::Monitor(pid)]
        } else {
            Vec::new()
        }
    }

    /// `pg:demonitor/2`: false when `reference` is no monitor of ours.
    pub fn demonitor(&mut self, reference: &Reference) -> (bool, Vec<Effect>) {
        match self.watchers.remove(reference) {
            None => (false, Vec::new()),
            Some(w) => (true, self.unwatch_if_done(&w.pid)),
        }
    }

    fn unwatch_if_done(&self, pid: &Pid) -> Vec<Effect> {
        let watching = self.watchers.values().any(|w| &w.pid == pid);
        if watching || self.local.contains_key(pid) {
            Vec::new()
        } else {
            vec![Effect::Demonitor(pid.clone())]
        }
    }

    fn notify(&self, what: &str, group: &Term, pids: &[Pid]) -> Vec<Effect> {
        self.watchers
            .iter()
            .filter(|(_, w)| w.group.as_ref().is_none_or(|g| g == group))
            .map(|(r, w)| Effect::Send {
                to: Term::Pid(w.pid.clone()),
                msg: crate::tup![
                    Term::Reference(Box::new(r.clone())),
                    term::atom(what),
                    group.clone(),
                    term::list(pids.iter().cloned().map(Term::Pid).collect())
                ],
                noconnect: false,
            })
            .collect()
    }

    fn broadcast(&self, msg: Term) -> Vec<Effect> {
        self.remote
            .keys()
            .map(|peer| Effect::Send {
                to: Term::Pid(peer.clone()),
                msg: msg.clone(),
                noconnect: false,
            })
            .collect()
    }

    // ---- messages from peers (and DOWNs) ------------------------------------

    /// A message to the scope process: a peer's discover, sync, join or
    /// leave, or the DOWN of something we monitor. `Err` leaves everything
    /// as it was.
    pub fn handle_message(&mut self, msg: &Term) -> Result<Vec<Effect>, PgError> {
        let parts = term::as_tuple(msg).ok_or(PgError::Unknown)?;
        let tag = parts
            .first()
            .and_then(term::as_atom)
            .ok_or(PgError::Unknown)?;
        match (tag, &parts[1..]) {
            ("discover", [Term::Pid(peer)]) | ("discover", [Term::Pid(peer), _]) => {
                Ok(self.discover(peer))
            }
            ("$gen_cast", [inner]) => match term::as_tuple(inner) {
                Some([t, Term::Pid(peer), groups]) if term::is_atom(t, "sync") => {
                    let groups = parse_groups(groups)?;
                    Ok(self.sync(peer, groups))
                }
                _ => Err(PgError::Unknown),
            },
            ("join", [Term::Pid(peer), group, pids]) => {
                let pids = PidOrPids::from_term(pids)?;
                Ok(self.remote_join(peer, group, pids))
            }
            ("leave", [Term::Pid(peer), pids, groups]) => {
                let pids = PidOrPids::from_term(pids)?;
                let groups = term::as_list(groups).ok_or(PgError::Malformed("group list"))?;
                Ok(self.remote_leave(peer, &pids.to_vec(), &groups))
            }
            ("DOWN", [_ref, kind, Term::Pid(pid), _reason]) if term::is_atom(kind, "process") => {
                Ok(self.down(pid))
            }
            _ => Err(PgError::Unknown),
        }
    }

    fn discover(&mut self, peer: &Pid) -> Vec<Effect> {
        let mut out = vec![Effect::Send {
            to: Term::Pid(peer.clone()),
            msg: crate::tup![
                term::atom("$gen_cast"),
                crate::tup![
                    term::atom("sync"),
                    Term::Pid(self.me.clone()),
                    self.local_groups_term()
                ]
            ],
            noconnect: false,
        }];
        if !self.remote.contains_key(peer) {
            self.remote.insert(peer.clone(), HashMap::new());
            out.push(Effect::Monitor(peer.clone()));
            out.push(Effect::Send {
                to: Term::Pid(peer.clone()),
                msg: crate::tup![term::atom("discover"), Term::Pid(self.me.clone())],
                noconnect: true,
            });
        }
        out
    }

    /// `[{Group, Pids}]` of every local member, repetitions kept.
    fn local_groups_term(&self) -> Term {
        let mut groups: Vec<(Term, Vec<Term>)> = Vec::new();
        for (pid, joined) in &self.local {
            for g in joined {
                match groups.iter_mut().find(|(k, _)| k == g) {
                    Some((_, pids)) => pids.push(Term::Pid(pid.clone())),
                    None => groups.push((g.clone(), vec![Term::Pid(pid.clone())])),
                }
            }
        }
        term::list(
            groups
                .into_iter()
                .map(|(g, pids)| crate::tup![g, term::list(pids)])
                .collect(),
        )
    }

    fn sync(&mut self, peer: &Pid, groups: Vec<(Term, Vec<Pid>)>) -> Vec<Effect> {
        let mut out = Vec::new();
        let old = match self.remote.remove(peer) {
            Some(old) => old,
            None => {
                out.push(Effect::Monitor(peer.clone()));
                HashMap::new()
            }
        };
        let mut old = old;
        let mut new = HashMap::new();
        for (group, pids) in groups {
            match old.remove(&group) {
                Some(before) if before == pids => {}
                Some(before) => {
                    // Replace what that peer had in the group, quietly, as pg.
                    self.drop_members(&group, &before, false);
                    let g = self.view.entry(group.clone()).or_default();
                    g.all.splice(0..0, pids.iter().cloned());
                    self.changed.push(group.clone());
                }
                None => out.extend(self.add_remote(&group, &pids)),
            }
            new.entry(group).or_insert_with(Vec::new).extend(pids);
        }
        for (group, pids) in old {
            out.extend(self.remove_remote(&group, &pids));
        }
        self.remote.insert(peer.clone(), new);
        out
    }

    fn remote_join(&mut self, peer: &Pid, group: &Term, pids: PidOrPids) -> Vec<Effect> {
        let Some(known) = self.remote.get_mut(peer) else {
            return Vec::new();
        };
        let list = pids.to_vec();
        let entry = known.entry(group.clone()).or_default();
        entry.splice(0..0, list.iter().cloned());
        self.add_remote(group, &list)
    }

    fn remote_leave(&mut self, peer: &Pid, pids: &[Pid], groups: &[Term]) -> Vec<Effect> {
        let Some(known) = self.remote.get_mut(peer) else {
            return Vec::new();
        };
        for g in groups {
            if let Some(have) = known.get_mut(g) {
                for p in pids {
                    if let Some(at) = have.iter().position(|x| x == p) {
                        have.remove(at);
                    }
                }
                if have.is_empty() {
                    known.remove(g);
                }
            }
        }
        let mut out = Vec::new();
        for g in groups {
            out.extend(self.remove_remote(g, pids));
        }
        out
    }

    fn add_remote(&mut self, group: &Term, pids: &[Pid]) -> Vec<Effect> {
        let g = self.view.entry(group.clone()).or_default();
        g.all.splice(0..0, pids.iter().cloned());
        self.changed.push(group.clone());
        self.notify("join", group, pids)
    }

    fn remove_remote(&mut self, group: &Term, pids: &[Pid]) -> Vec<Effect> {
        if !self.view.contains_key(group) {
            return Vec::new();
        }
        self.drop_members(group, pids, false);
        self.notify("leave", group, pids)
    }

    /// Removes one occurrence of each of `pids` from the group (and from
    /// its local members when `local`); an empty group goes.
    fn drop_members(&mut self, group: &Term, pids: &[Pid], local: bool) {
        let Some(g) = self.view.get_mut(group) else {
            return;
        };
        for p in pids {
            if let Some(at) = g.all.iter().position(|x| x == p) {
                g.all.remove(at);
            }
            if local {
                if let Some(at) = g.local.iter().position(|x| x == p) {
                    g.local.remove(at);
                }
            }
        }
        if g.all.is_empty() {
            self.view.remove(group);
        }
        self.changed.push(group.clone());
    }

    fn down(&mut self, pid: &Pid) -> Vec<Effect> {
        let mut out = Vec::new();
        if let Some(groups) = self.local.remove(pid) {
            // A local member exited: it leaves every group it joined.
            for g in &groups {
                self.drop_members(g, std::slice::from_ref(pid), true);
                out.extend(self.notify("leave", g, std::slice::from_ref(pid)));
            }
            let msg = crate::tup![
                term::atom("leave"),
                Term::Pid(self.me.clone()),
                Term::Pid(pid.clone()),
                term::list(groups)
            ];
            out.extend(self.broadcast(msg));
        }
        if let Some(groups) = self.remote.remove(pid) {
            // A peer scope (or its node) went away: its groups go with it.
            for (g, pids) in groups {
                out.extend(self.remove_remote(&g, &pids));
            }
        }
        self.watchers.retain(|_, w| &w.pid != pid);
        out
    }
}

/// One pid or a list of pids, kept in the shape it came in (peers get the
/// same shape back, as pg sends it).
#[derive(Debug, Clone, PartialEq)]
pub enum PidOrPids {
    One(Pid),
    Many(Vec<Pid>),
}

impl PidOrPids {
    fn iter(&self) -> impl Iterator<Item = &Pid> {
        match self {
            PidOrPids::One(p) => std::slice::from_ref(p).iter(),
            PidOrPids::Many(v) => v.iter(),
        }
    }

    fn to_vec(&self) -> Vec<Pid> {
        self.iter().cloned().collect()
    }

    fn to_term(&self) -> Term {
        match self {
            PidOrPids::One(p) => Term::Pid(p.clone()),
            PidOrPids::Many(v) => term::list(v.iter().cloned().map(Term::Pid).collect()),
        }
    }

    fn from_term(t: &Term) -> Result<PidOrPids, PgError> {
        match t {
            Term::Pid(p) => Ok(PidOrPids::One(p.clone())),
            _ => Ok(PidOrPids::Many(pid_list(t)?)),
        }
    }
}

fn pid_list(t: &Term) -> Result<Vec<Pid>, PgError> {
    term::as_list(t)
        .ok_or(PgError::Malformed("pid list"))?
        .into_iter()
        .map(|p| match p {
            Term::Pid(p) => Ok(p),
            _ => Err(PgError::Malformed("pid list")),
        })
        .collect()
}

fn parse_groups(t: &Term) -> Result<Vec<(Term, Vec<Pid>)>, PgError> {
    term::as_list(t)
        .ok_or(PgError::Malformed("sync group list"))?
        .iter()
        .map(|entry| match term::as_tuple(entry) {
            Some([group, pids]) => Ok((group.clone(), pid_list(pids)?)),
            _ => Err(PgError::Malformed("sync group entry")),
        })
        .collect()
}
