//! `pg` process groups, wire-compatible with OTP's `pg` (OTP 23-27): Rust
//! processes join groups that BEAM nodes see in `pg:get_members/2`, and
//! Rust code sees the members BEAM processes joined.
//!
//! Each scope is a process registered under the scope's name that speaks
//! pg's protocol with the scope of the same name on every visible node
//! ([`scope::Scope`] holds the protocol; this module runs it). Reads
//! ([`Pg::get_members`], [`Pg::which_groups`]) never wait for the scope
//! process: they read the table it writes, as pg reads its ETS table.
//! Joins and leaves go through the scope process, in order.
//!
//! The default scope `pg` runs on every node; [`scope`] starts others on
//! demand (Phoenix.PubSub uses `Elixir.Phoenix.PubSub`).
//!
//! What it must never do: stop on a peer's bad message (it is logged and
//! dropped; answering it would crash a BEAM scope), or let a joined
//! process outlive its membership (local members are monitored, and a
//! member that exits leaves every group, on every node).

pub mod scope;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::node::{Dest, Node, NodeEvent, RegisterError};
use crate::process::{Process, ProcessExit};
use crate::term::{Pid, Reference, Term};
pub use scope::{Effect, GroupMembers, PgError, PidOrPids, Scope};

/// The scope OTP's kernel starts as `pg` (`start_pg`), which we always run.
pub const DEFAULT_SCOPE: &str = "pg";

type Table = Arc<RwLock<HashMap<Term, GroupMembers>>>;

enum Command {
    Join(Term, PidOrPids, oneshot::Sender<()>),
    Leave(Term, PidOrPids, oneshot::Sender<bool>),
    MonitorScope(Pid, oneshot::Sender<(Reference, HashMap<Term, Vec<Pid>>)>),
    MonitorGroup(Pid, Term, oneshot::Sender<(Reference, Vec<Pid>)>),
    Demonitor(Reference, oneshot::Sender<bool>),
}

/// Why a pg operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PgCallError {
    /// pg only joins processes of its own node (`{nolocal, Pid}`).
    #[error("{0} is not a process of this node")]
    NotLocal(Pid),
    #[error("the pg scope has stopped")]
    Stopped,
}

/// A running scope. Cheap to clone.
#[derive(Clone)]
pub struct Pg {
    name: String,
    pid: Pid,
    node: String,
    table: Table,
    tx: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg").field("scope", &self.name).finish()
    }
}

/// The scope `name` on `node`, started the first time it is asked for.
pub fn scope(node: &Node, name: &str) -> Result<Pg, RegisterError> {
    let mut scopes = node
        .inner
        .pg_scopes
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(pg) = scopes.get(name) {
        return Ok(pg.clone());
    }
    let pg = start(node, name)?;
    scopes.insert(name.to_string(), pg.clone());
    Ok(pg)
}

/// The default scope `pg`.
pub fn default_scope(node: &Node) -> Result<Pg, RegisterError> {
    scope(node, DEFAULT_SCOPE)
}

fn start(node: &Node, name: &str) -> Result<Pg, RegisterError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let table: Table = Arc::default();
    let events = node.subscribe();
    let t = table.clone();
    let scope_name = name.to_string();
    let pid = node.spawn(move |p| async move { run(p, scope_name, t, rx, events).await });
    node.register(name, &pid)?;
    Ok(Pg {
        name: name.to_string(),
        pid,
        node: node.name().to_string(),
        table,
        tx,
    })
}

impl Pg {
    /// The scope's name (its registered name on every node).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scope process.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    fn local(&self, pids: &PidOrPids) -> Result<(), PgCallError> {
        let bad = match pids {
            PidOrPids::One(p) => (p.node.name.as_str() != self.node).then(|| p.clone()),
            PidOrPids::Many(v) => v
                .iter()
                .find(|p| p.node.name.as_str() != self.node)
                .cloned(),
        };
        bad.map_or(Ok(()), |p| Err(PgCallError::NotLocal(p)))
    }

    /// `pg:join(Scope, Group, Pid)`: done (and visible to
    /// [`Pg::get_members`]) when it returns. A process may join a group
    /// several times and must then leave it as often.
    pub async fn join(&self, group: Term, pid: &Pid) -> Result<(), PgCallError> {
        self.join_many(group, PidOrPids::One(pid.clone())).await
    }

    /// `pg:join/3` with a pid or a list of pids.
    pub async fn join_many(&self, group: Term, pids: PidOrPids) -> Result<(), PgCallError> {
        self.local(&pids)?;
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Join(group, pids, tx))
            .map_err(|_| PgCallError::Stopped)?;
        rx.await.map_err(|_| PgCallError::Stopped)
    }

    /// `pg:leave(Scope, Group, Pid)`: `Ok(false)` is pg's `not_joined`.
    pub async fn leave(&self, group: Term, pid: &Pid) -> Result<bool, PgCallError> {
        self.leave_many(group, PidOrPids::One(pid.clone())).await
    }

    /// `pg:leave/3` with a pid or a list of pids.
    pub async fn leave_many(&self, group: Term, pids: PidOrPids) -> Result<bool, PgCallError> {
        self.local(&pids)?;
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Leave(group, pids, tx))
            .map_err(|_| PgCallError::Stopped)?;
        rx.await.map_err(|_| PgCallError::Stopped)
    }

    /// `pg:get_members/2`: every member on every node, in no set order.
    pub fn get_members(&self, group: &Term) -> Vec<Pid> {
        self.read(|t| t.get(group).map(|g| g.all.clone()).unwrap_or_default())
    }

    /// `pg:get_local_members/2`.
    pub fn get_local_members(&self, group: &Term) -> Vec<Pid> {
        self.read(|t| t.get(group).map(|g| g.local.clone()).unwrap_or_default())
    }

    /// `pg:which_groups/1`.
    pub fn which_groups(&self) -> Vec<Term> {
        self.read(|t| t.keys().cloned().collect())
    }

    fn read<R>(&self, f: impl FnOnce(&HashMap<Term, GroupMembers>) -> R) -> R {
        f(&self.table.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// `pg:monitor_scope/1` for `watcher`: the groups now, and from then on
    /// `{Ref, join | leave, Group, Pids}` messages to `watcher`.
    pub async fn monitor_scope(
        &self,
        watcher: &Pid,
    ) -> Result<(Reference, HashMap<Term, Vec<Pid>>), PgCallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::MonitorScope(watcher.clone(), tx))
            .map_err(|_| PgCallError::Stopped)?;
        rx.await.map_err(|_| PgCallError::Stopped)
    }

    /// `pg:monitor/2` for `watcher`: the group's members now, then its
    /// join and leave messages.
    pub async fn monitor(
        &self,
        watcher: &Pid,
        group: Term,
    ) -> Result<(Reference, Vec<Pid>), PgCallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::MonitorGroup(watcher.clone(), group, tx))
            .map_err(|_| PgCallError::Stopped)?;
        rx.await.map_err(|_| PgCallError::Stopped)
    }

    /// `pg:demonitor/2`: false when `reference` was not a monitor.
    pub async fn demonitor(&self, reference: &Reference) -> Result<bool, PgCallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Demonitor(reference.clone(), tx))
            .map_err(|_| PgCallError::Stopped)?;
        rx.await.map_err(|_| PgCallError::Stopped)
    }
}

async fn run(
    mut p: Process,
    name: String,
    table: Table,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut events: broadcast::Receiver<NodeEvent>,
) -> ProcessExit {
    let mut scope = Scope::new(name.clone(), p.pid().clone());
    let mut monitors: HashMap<Pid, Reference> = HashMap::new();
    let first = scope.start(&p.node().visible_nodes());
    carry_out(&mut p, &mut scope, &table, &mut monitors, first);
    loop {
        let effects = tokio::select! {
            m = p.receive() => match m {
                Err(e) => return e.into(),
                Ok(msg) => {
                    if let Some(pid) = down_of(&msg) {
                        monitors.remove(&pid);
                    }
                    match scope.handle_message(&msg) {
                        Ok(effects) => effects,
                        Err(e) => {
                            tracing::debug!(scope = %name, error = %e, message = %msg, "pg message dropped");
                            Vec::new()
                        }
                    }
                }
            },
            c = commands.recv() => match c {
                // Every handle is gone: nobody can join or read any more.
                None => return ProcessExit::Normal,
                Some(Command::Join(group, pids, reply)) => {
                    let effects = scope.join(group, pids);
                    carry_out(&mut p, &mut scope, &table, &mut monitors, effects);
                    let _ = reply.send(());
                    Vec::new()
                }
                Some(Command::Leave(group, pids, reply)) => {
                    let effects = scope.leave(&group, pids);
                    let left = effects.is_some();
                    carry_out(&mut p, &mut scope, &table, &mut monitors, effects.unwrap_or_default());
                    let _ = reply.send(left);
                    Vec::new()
                }
                Some(Command::MonitorScope(watcher, reply)) => {
                    let r = p.node().make_ref();
                    let (groups, effects) = scope.monitor_scope(watcher, r.clone());
                    let _ = reply.send((r, groups));
                    effects
                }
                Some(Command::MonitorGroup(watcher, group, reply)) => {
                    let r = p.node().make_ref();
                    let (members, effects) = scope.monitor_group(watcher, r.clone(), group);
                    let _ = reply.send((r, members));
                    effects
                }
                Some(Command::Demonitor(r, reply)) => {
                    let (was, effects) = scope.demonitor(&r);
                    let _ = reply.send(was);
                    effects
                }
            },
            e = events.recv() => match e {
                Ok(NodeEvent::Up { node, hidden: false }) => scope.nodeup(&node),
                Ok(_) => Vec::new(),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // A missed nodeup only delays discovery until that node's
                    // own scope discovers us; say so.
                    tracing::warn!(scope = %name, missed = n, "pg missed node events");
                    Vec::new()
                }
                Err(broadcast::error::RecvError::Closed) => return ProcessExit::Normal,
            },
        };
        carry_out(&mut p, &mut scope, &table, &mut monitors, effects);
    }
}

/// The pid a `{'DOWN', Ref, process, Pid, Reason}` message is about.
fn down_of(msg: &Term) -> Option<Pid> {
    match crate::term::as_tuple(msg)? {
        [tag, _, kind, Term::Pid(pid), _]
            if crate::term::is_atom(tag, "DOWN") && crate::term::is_atom(kind, "process") =>
        {
            Some(pid.clone())
        }
        _ => None,
    }
}

fn carry_out(
    p: &mut Process,
    scope: &mut Scope,
    table: &Table,
    monitors: &mut HashMap<Pid, Reference>,
    effects: Vec<Effect>,
) {
    for effect in effects {
        match effect {
            Effect::Send { to, msg, noconnect } => {
                let Some(dest) = crate::crdt::process::dest_of(&to) else {
                    continue;
                };
                if noconnect {
                    p.send_noconnect(dest, msg);
                } else {
                    p.send(dest, msg);
                }
            }
            Effect::Monitor(pid) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = monitors.entry(pid) {
                    let r = p.monitor(Dest::Pid(slot.key().clone()));
                    slot.insert(r);
                }
            }
            Effect::Demonitor(pid) => {
                if let Some(r) = monitors.remove(&pid) {
                    p.demonitor(&r, true);
                }
            }
        }
    }
    let changed = scope.take_changed();
    if changed.is_empty() {
        return;
    }
    let mut t = table.write().unwrap_or_else(|e| e.into_inner());
    for g in changed {
        match scope.group(&g) {
            Some(members) => {
                t.insert(g, members.clone());
            }
            None => {
                t.remove(&g);
            }
        }
    }
}

#[cfg(test)]
mod tests;
