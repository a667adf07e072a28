//! `Horde.Registry` as a Rust member: a registry that Elixir members and Rust
//! members share.
//!
//! [`start`] runs one member on a node: a process registered as the registry
//! name `R` (a gen_server answering the calls Horde's registry answers) and a
//! process registered as `R.Crdt` that BEAM DeltaCrdt replicas sync with.
//! Both are one state machine ([`state::RegistryState`]): the `R.Crdt`
//! process only forwards its mailbox to the registry process, so CRDT joins
//! and registry decisions happen in one order, with no window in which the
//! tables and the CRDT disagree.
//!
//! Reads ([`Registry::lookup`], [`Registry::keys`], [`Registry::select`], ...)
//! never wait for the registry process: they read the tables it writes, as
//! Horde reads its ETS tables. Writes go through the registry process.
//!
//! What it must never do: stop on a peer's bad term (malformed CRDT entries
//! are logged and skipped), or block its node.

pub mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::crdt::process::{now_ns, perform};
use crate::crdt::sync::{Action, Config, MapSetPolicy, Replica};
use crate::horde::{crdt_name, member};
use crate::node::{Dest, NameRegistry, Node, NodeEvent, RegisterError, Via};
use crate::process::{Process, ProcessExit};
use crate::term::{self, Pid, Term};

pub use state::{Effect, Entry, RegistryEvent, RegistryState, Tables};

/// Who the members are.
#[derive(Debug, Clone, PartialEq)]
pub enum Members {
    /// Every visible node of the cluster, this one included, following
    /// nodeup/nodedown (Horde's `members: :auto`).
    Auto,
    /// Fixed members: `{R, node}` tuples or bare names (on this node).
    /// Change them with [`Registry::set_members`].
    List(Vec<Term>),
}

/// How to start a registry member.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// The registry's name, an Elixir module atom such as `Elixir.MyApp.Registry`.
    pub name: String,
    pub members: Members,
    /// Milliseconds between CRDT syncs (Horde: 300).
    pub sync_interval: u64,
    /// Registered names of processes told `{:register, R, key, pid, value}`
    /// and `{:unregister, R, key, pid}` (Horde's `listeners`).
    pub listeners: Vec<String>,
    /// Initial meta entries (Horde's `meta`).
    pub meta: Vec<(Term, Term)>,
    /// The `MapSet` form of the CRDT's values: by default the form of the
    /// Elixir members (see [`MapSetPolicy`]).
    pub mapset: MapSetPolicy,
    /// How long the names registered through a member that left the
    /// cluster stay in the CRDT (hidden from lookups) before this member
    /// drops them; zero, Horde's behaviour and the default, drops them at
    /// once. See [`RegistryOptions::lost_member_grace`].
    pub lost_member_grace: Duration,
}

impl RegistryOptions {
    /// `members: :auto`, Horde's sync interval.
    pub fn new(name: impl Into<String>) -> Self {
        RegistryOptions {
            name: name.into(),
            members: Members::Auto,
            sync_interval: 300,
            listeners: Vec::new(),
            meta: Vec::new(),
            mapset: MapSetPolicy::default(),
            lost_member_grace: Duration::ZERO,
        }
    }

    /// Keep the names of a member that left for `grace` before dropping
    /// them. Horde drops them at once, so after a netsplit heals every name
    /// registered before the split through the other side is gone on every
    /// member, its process still running (each side's removals win the
    /// merge; Horde #258). With a grace longer than the split, both sides
    /// keep them and lookups find them again after the heal; meanwhile
    /// lookups skip them (their member is not in the cluster). A dead
    /// member's names go when the grace ends. Elixir members still drop at
    /// once, and their removals reach us at the heal: this helps clusters
    /// whose members are all Rust.
    pub fn lost_member_grace(mut self, grace: Duration) -> Self {
        self.lost_member_grace = grace;
        self
    }

    pub fn members(mut self, members: Members) -> Self {
        self.members = members;
        self
    }

    pub fn sync_interval(mut self, ms: u64) -> Self {
        self.sync_interval = ms;
        self
    }

    /// How the CRDT picks its `MapSet` form (see [`MapSetPolicy`]).
    pub fn mapset(mut self, policy: MapSetPolicy) -> Self {
        self.mapset = policy;
        self
    }

    pub fn listener(mut self, name: impl Into<String>) -> Self {
        self.listeners.push(name.into());
        self
    }

    pub fn meta(mut self, key: Term, value: Term) -> Self {
        self.meta.push((key, value));
        self
    }
}

/// Errors of registry operations.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// Horde's `{:error, {:already_registered, pid}}`.
    #[error("the key is already registered by {0}")]
    AlreadyRegistered(Pid),
    #[error("the registry has stopped")]
    Stopped,
}

/// Errors starting a registry.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot register {name}: {source}")]
    Name { name: String, source: RegisterError },
}

enum Command {
    Register {
        key: Term,
        value: Term,
        pid: Pid,
        reply: oneshot::Sender<Result<(), RegistryError>>,
    },
    Unregister {
        key: Term,
        pid: Pid,
        reply: oneshot::Sender<()>,
    },
    UpdateValue {
        key: Term,
        pid: Pid,
        update: Box<dyn FnOnce(&Term) -> Term + Send>,
        reply: oneshot::Sender<Option<(Term, Term)>>,
    },
    PutMeta {
        key: Term,
        value: Term,
        reply: oneshot::Sender<()>,
    },
    DeleteMeta {
        key: Term,
        reply: oneshot::Sender<()>,
    },
    SetMembers {
        members: Vec<Term>,
        reply: oneshot::Sender<()>,
    },
    Members(oneshot::Sender<Vec<Term>>),
}

/// A cheap handle to a running registry member.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Shared>,
    tx: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<RegistryEvent>,
}

/// What readers need without asking the registry process.
struct Shared {
    name: String,
    node: Node,
    pid: Pid,
    tables: Arc<RwLock<Tables>>,
}

impl Shared {
    fn tables(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Horde's lookup: the key's holder if its member is in the cluster and
    /// the process is alive (here: a local process that exists, or one on
    /// a node we are connected to; Horde asks the remote node, which fails
    /// the same way once it is gone).
    fn lookup(&self, key: &Term) -> Option<(Pid, Term)> {
        let (pid, value) = {
            let t = self.tables();
            let e = t.lookup(key)?;
            (e.pid.clone(), e.value.clone())
        };
        self.alive(&pid).then_some((pid, value))
    }

    fn alive(&self, pid: &Pid) -> bool {
        if pid.node.name == self.node.name() {
            self.node.is_process_alive(pid)
        } else {
            self.node.is_connected(&pid.node.name)
        }
    }
}

impl NameRegistry for Shared {
    fn whereis_name(&self, name: &Term) -> Option<Pid> {
        self.lookup(name).map(|(pid, _)| pid)
    }
}

impl Registry {
    /// The registry name `R`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The pid of the registry process (registered as `R`).
    pub fn pid(&self) -> &Pid {
        &self.inner.pid
    }

    /// `{R, node}`: this member as Horde names it.
    pub fn member(&self) -> Term {
        member(&self.inner.name, self.inner.node.name())
    }

    /// Registers `pid` under `key` with `value` (Horde's `register/3`, for
    /// any local or remote pid). A key another live process holds gives
    /// [`RegistryError::AlreadyRegistered`]. A local process is linked to
    /// the registry: when it exits, its keys go. When two members register
    /// one key concurrently, both calls succeed and the CRDT's loser later
    /// receives the exit signal `{:name_conflict, {key, value}, R, winner}`.
    pub async fn register(&self, key: Term, value: Term, pid: &Pid) -> Result<(), RegistryError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Register {
            key,
            value,
            pid: pid.clone(),
            reply,
        })?;
        rx.await.map_err(|_| RegistryError::Stopped)?
    }

    /// Removes `key` if `pid` holds it.
    pub async fn unregister(&self, key: Term, pid: &Pid) -> Result<(), RegistryError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Unregister {
            key,
            pid: pid.clone(),
            reply,
        })?;
        rx.await.map_err(|_| RegistryError::Stopped)
    }

    /// The process under `key` and its value.
    pub fn lookup(&self, key: &Term) -> Option<(Pid, Term)> {
        self.inner.lookup(key)
    }

    /// The process under `key`.
    pub fn whereis(&self, key: &Term) -> Option<Pid> {
        self.inner.whereis_name(key)
    }

    /// `{:via, Horde.Registry, {R, key}}`: a destination for `send`, `call`
    /// and `monitor`, resolved when used.
    pub fn via(&self, key: Term) -> Dest {
        Dest::Via(Via::new(self.inner.clone(), key))
    }

    /// Keys `pid` holds.
    pub fn keys(&self, pid: &Pid) -> Vec<Term> {
        self.inner.tables().keys_of(pid)
    }

    /// Number of registered keys.
    pub fn count(&self) -> usize {
        self.inner.tables().count()
    }

    /// Horde's `match/4`: `[(pid, value)]` under `key` whose value matches.
    pub fn match_values(&self, key: &Term, matches: impl Fn(&Term) -> bool) -> Vec<(Pid, Term)> {
        self.inner
            .tables()
            .entry(key)
            .filter(|e| matches(&e.value))
            .map(|e| vec![(e.pid.clone(), e.value.clone())])
            .unwrap_or_default()
    }

    /// Horde's `count_match/4`.
    pub fn count_match(&self, key: &Term, matches: impl Fn(&Term) -> bool) -> usize {
        self.match_values(key, matches).len()
    }

    /// Horde's `select/2`: `f(key, pid, value)` over every registration,
    /// keeping what it returns.
    pub fn select<T>(&self, mut f: impl FnMut(&Term, &Pid, &Term) -> Option<T>) -> Vec<T> {
        self.inner
            .tables()
            .iter()
            .filter_map(|(k, e)| f(k, &e.pid, &e.value))
            .collect()
    }

    /// Horde's `dispatch/3`: calls `f` with `[(pid, value)]` when `key` is
    /// registered (without the liveness check of lookup, as Horde).
    pub fn dispatch(&self, key: &Term, f: impl FnOnce(&[(Pid, Term)])) {
        let entry = self
            .inner
            .tables()
            .entry(key)
            .map(|e| (e.pid.clone(), e.value.clone()));
        if let Some(e) = entry {
            f(&[e]);
        }
    }

    /// Horde's `update_value/3` for the key `pid` holds: `Some((new, old))`,
    /// or `None` when `pid` does not hold `key`.
    pub async fn update_value(
        &self,
        key: Term,
        pid: &Pid,
        update: impl FnOnce(&Term) -> Term + Send + 'static,
    ) -> Result<Option<(Term, Term)>, RegistryError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::UpdateValue {
            key,
            pid: pid.clone(),
            update: Box::new(update),
            reply,
        })?;
        rx.await.map_err(|_| RegistryError::Stopped)
    }

    pub fn meta(&self, key: &Term) -> Option<Term> {
        self.inner.tables().meta(key).cloned()
    }

    pub async fn put_meta(&self, key: Term, value: Term) -> Result<(), RegistryError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::PutMeta { key, value, reply })?;
        rx.await.map_err(|_| RegistryError::Stopped)
    }

    pub async fn delete_meta(&self, key: Term) -> Result<(), RegistryError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::DeleteMeta { key, reply })?;
        rx.await.map_err(|_| RegistryError::Stopped)
    }

    /// Horde's `Horde.Cluster.members/1`: `{R, node}` tuples.
    pub async fn members(&self) -> Result<Vec<Term>, RegistryError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Members(reply))?;
        rx.await.map_err(|_| RegistryError::Stopped)
    }

    /// Horde's `Horde.Cluster.set_members/2`.
    pub async fn set_members(&self, members: Vec<Term>) -> Result<(), RegistryError> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::SetMembers { members, reply })?;
        rx.await.map_err(|_| RegistryError::Stopped)
    }

    /// Every register and unregister this member sees, from any member.
    pub fn subscribe(&self) -> broadcast::Receiver<RegistryEvent> {
        self.events.subscribe()
    }

    fn command(&self, c: Command) -> Result<(), RegistryError> {
        self.tx.send(c).map_err(|_| RegistryError::Stopped)
    }
}

/// Starts a registry member on `node`: `R` and `R.Crdt` are registered, the
/// CRDT starts syncing with the members. The member runs while a handle to
/// it (any clone of the returned [`Registry`]) exists, or until its node
/// shuts down; the processes registered through it are linked to it, as in
/// Horde.
pub fn start(node: &Node, opts: RegistryOptions) -> Result<Registry, StartError> {
    let crdt = crdt_name(&opts.name);
    let (fwd_tx, fwd_rx) = mpsc::unbounded_channel();
    let forwarder = node.spawn(move |mut p| async move {
        loop {
            match p.receive().await {
                Ok(msg) => {
                    if fwd_tx.send(msg).is_err() {
                        return ProcessExit::Normal;
                    }
                }
                Err(e) => return e.into(),
            }
        }
    });
    let node_id = i64::from(rand::random::<u32>() % 1_000_000_000) + 1;
    let cfg = Config::horde(
        node_id,
        Term::Pid(forwarder.clone()),
        Some(crate::tup![term::atom(&crdt), term::atom(node.name())]),
    );
    let mut cfg = cfg;
    cfg.sync_interval = opts.sync_interval;
    cfg.mapset = opts.mapset;
    let state = RegistryState::new(&opts.name, node.name(), Replica::new(cfg))
        .lost_member_grace(opts.lost_member_grace.as_millis() as u64);
    let tables = state.tables();
    let (tx, rx) = mpsc::unbounded_channel();
    let (events, _) = broadcast::channel(4096);
    let node_events = matches!(opts.members, Members::Auto).then(|| node.subscribe());
    let driver = Driver {
        state,
        opts: opts.clone(),
        events: events.clone(),
        forwarder: forwarder.clone(),
    };
    let pid = node.spawn(move |p| driver.run(p, fwd_rx, rx, node_events));
    node.link(&pid, &forwarder);
    let named = node
        .register(&opts.name, &pid)
        .map_err(|source| (opts.name.clone(), source))
        .and_then(|()| {
            node.register(&crdt, &forwarder)
                .map_err(|source| (crdt.clone(), source))
        });
    if let Err((name, source)) = named {
        node.exit_process(&pid, term::atom("shutdown"));
        return Err(StartError::Name { name, source });
    }
    Ok(Registry {
        inner: Arc::new(Shared {
            name: opts.name,
            node: node.clone(),
            pid,
            tables,
        }),
        tx,
        events,
    })
}

/// The registry process: runs the state machine and carries out its effects.
struct Driver {
    state: RegistryState,
    opts: RegistryOptions,
    events: broadcast::Sender<RegistryEvent>,
    forwarder: Pid,
}

impl Driver {
    async fn run(
        mut self,
        mut p: Process,
        mut crdt_inbox: mpsc::UnboundedReceiver<Term>,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut node_events: Option<broadcast::Receiver<NodeEvent>>,
    ) -> ProcessExit {
        p.trap_exit(true);
        let initial = match &self.opts.members {
            Members::Auto => self.auto_members(&p),
            Members::List(l) => {
                let mut l = l.clone();
                l.push(self.state.me().clone());
                l
            }
        };
        let mut effects = self.state.set_initial_members(&initial, now_ns());
        if matches!(self.opts.members, Members::Auto) {
            effects.extend(self.state.set_members_from_nodes(&initial, now_ns()));
        }
        self.carry_out(&mut p, effects);
        for (k, v) in std::mem::take(&mut self.opts.meta) {
            let effects = self.state.put_meta(k, v, now_ns());
            self.carry_out(&mut p, effects);
        }
        let started = Instant::now();
        let interval = Duration::from_millis(self.opts.sync_interval.max(1));
        let mut next_tick = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            if now >= next_tick {
                // A due sync goes first however busy the mailbox is, as the
                // BEAM's `:sync` timer message queues among the others.
                next_tick = now + interval;
                let effects = self.state.tick(started.elapsed().as_millis() as u64);
                self.carry_out(&mut p, effects);
                continue;
            }
            let effects = tokio::select! {
                m = p.receive_match(|_| true, Some(next_tick - now)) => match m {
                    Err(e) => return e.into(),
                    Ok(None) => Vec::new(),
                    Ok(Some(msg)) => match self.mailbox(&mut p, &msg) {
                        Ok(effects) => effects,
                        Err(exit) => return exit,
                    },
                },
                Some(msg) = crdt_inbox.recv() => match self.state.crdt_message(&msg) {
                    Ok(effects) => effects,
                    Err(e) => {
                        tracing::debug!(registry = %self.opts.name, error = %e, msg = %msg, "CRDT message dropped");
                        Vec::new()
                    }
                },
                c = commands.recv() => match c {
                    None => return ProcessExit::Normal,
                    Some(c) => self.command(&p, c),
                },
                e = next_event(&mut node_events) => {
                    if let Err(broadcast::error::RecvError::Closed) = e {
                        node_events = None;
                    }
                    match e {
                        Ok(NodeEvent::Up { hidden: true, .. }) => Vec::new(),
                        _ => {
                            let members = self.auto_members(&p);
                            self.state.set_members_from_nodes(&members, now_ns())
                        }
                    }
                }
            };
            self.carry_out(&mut p, effects);
        }
    }

    /// A message to `R`: gen_server calls, exits of linked processes, DOWNs
    /// of the CRDT's neighbour monitors.
    fn mailbox(&mut self, p: &mut Process, msg: &Term) -> Result<Vec<Effect>, ProcessExit> {
        let parts = term::as_tuple(msg).unwrap_or(&[]);
        match parts {
            [tag, from, request] if term::is_atom(tag, "$gen_call") => {
                let (reply, effects) = self.call(&p.pid().clone(), request);
                p.reply(from, reply);
                Ok(effects)
            }
            [tag, Term::Pid(pid), reason] if term::is_atom(tag, "EXIT") => {
                if pid == &self.forwarder {
                    return Err(ProcessExit::from(reason.clone()));
                }
                Ok(self.state.process_exited(pid).1)
            }
            [tag, ..] if term::is_atom(tag, "DOWN") => {
                Ok(self.state.crdt_message(msg).unwrap_or_default())
            }
            _ => {
                tracing::debug!(registry = %self.opts.name, msg = %msg, "unexpected message dropped");
                Ok(Vec::new())
            }
        }
    }

    /// The gen_server calls Horde's registry answers.
    fn call(&mut self, self_pid: &Pid, request: &Term) -> (Term, Vec<Effect>) {
        let ok = term::atom("ok");
        let parts = term::as_tuple(request).unwrap_or(&[]);
        match (term::as_atom(request), parts) {
            (Some("members"), _) => (term::list(self.state.members()), Vec::new()),
            (_, [tag, members]) if term::is_atom(tag, "set_members") => {
                match term::as_list(members) {
                    Some(members) => (ok, self.state.set_members(&members, now_ns())),
                    None => (bad_call(request), Vec::new()),
                }
            }
            (_, [tag, key, value, Term::Pid(pid)]) if term::is_atom(tag, "register") => {
                let effects =
                    self.state
                        .register(key.clone(), value.clone(), pid.clone(), now_ns());
                (crate::tup![ok, Term::Pid(self_pid.clone())], effects)
            }
            (_, [tag, key, Term::Pid(pid), value]) if term::is_atom(tag, "update_value") => {
                let (_, effects) = self.state.update_value(key, pid, value.clone(), now_ns());
                (ok, effects)
            }
            (_, [tag, key, Term::Pid(pid)]) if term::is_atom(tag, "unregister") => {
                (ok, self.state.unregister(key, pid))
            }
            (_, [tag, key, value]) if term::is_atom(tag, "put_meta") => (
                ok,
                self.state.put_meta(key.clone(), value.clone(), now_ns()),
            ),
            (_, [tag, key]) if term::is_atom(tag, "delete_meta") => {
                (ok, self.state.delete_meta(key))
            }
            _ => {
                tracing::warn!(registry = %self.opts.name, request = %request, "unknown call refused");
                (bad_call(request), Vec::new())
            }
        }
    }

    /// A command from a Rust [`Registry`] handle.
    fn command(&mut self, p: &Process, c: Command) -> Vec<Effect> {
        match c {
            Command::Register {
                key,
                value,
                pid,
                reply,
            } => {
                let holder = self.state.read().lookup(&key).map(|e| e.pid.clone());
                if let Some(holder) = holder.filter(|h| h != &pid && self.alive(p, h)) {
                    let _ = reply.send(Err(RegistryError::AlreadyRegistered(holder)));
                    return Vec::new();
                }
                let effects = self.state.register(key, value, pid, now_ns());
                let _ = reply.send(Ok(()));
                effects
            }
            Command::Unregister { key, pid, reply } => {
                let effects = self.state.unregister(&key, &pid);
                let _ = reply.send(());
                effects
            }
            Command::UpdateValue {
                key,
                pid,
                update,
                reply,
            } => {
                let old = self
                    .state
                    .read()
                    .entry(&key)
                    .filter(|e| e.pid == pid)
                    .map(|e| e.value.clone());
                let Some(old) = old else {
                    let _ = reply.send(None);
                    return Vec::new();
                };
                let new = update(&old);
                let (_, effects) = self.state.update_value(&key, &pid, new.clone(), now_ns());
                let _ = reply.send(Some((new, old)));
                effects
            }
            Command::PutMeta { key, value, reply } => {
                let effects = self.state.put_meta(key, value, now_ns());
                let _ = reply.send(());
                effects
            }
            Command::DeleteMeta { key, reply } => {
                let effects = self.state.delete_meta(&key);
                let _ = reply.send(());
                effects
            }
            Command::SetMembers { members, reply } => {
                let effects = self.state.set_members(&members, now_ns());
                let _ = reply.send(());
                effects
            }
            Command::Members(reply) => {
                let _ = reply.send(self.state.members());
                Vec::new()
            }
        }
    }

    fn alive(&self, p: &Process, pid: &Pid) -> bool {
        let node = p.node();
        if pid.node.name == node.name() {
            node.is_process_alive(pid)
        } else {
            node.is_connected(&pid.node.name)
        }
    }

    /// `{R, n}` for this node and every visible node (Horde's NodeListener).
    fn auto_members(&self, p: &Process) -> Vec<Term> {
        let node = p.node();
        std::iter::once(node.name().to_string())
            .chain(node.visible_nodes())
            .map(|n| member(&self.opts.name, &n))
            .collect()
    }

    fn carry_out(&mut self, p: &mut Process, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Crdt(action) => {
                    let state = &mut self.state;
                    match perform(p, action, &mut |t, r| state.bind_monitor(t, r)) {
                        None | Some(Action::Persist) | Some(Action::Diffs(_)) => {}
                        Some(other) => tracing::debug!(?other, "registry: CRDT action ignored"),
                    }
                }
                Effect::Link(pid) => p.link(&pid),
                Effect::Exit { pid, reason } => p.exit(&pid, reason),
                Effect::Event(e) => {
                    for listener in &self.opts.listeners {
                        p.send(Dest::Name(listener.clone()), e.to_term(&self.opts.name));
                    }
                    let _ = self.events.send(e);
                }
            }
        }
    }
}

/// The next node event, or never when not following nodes.
async fn next_event(
    events: &mut Option<broadcast::Receiver<NodeEvent>>,
) -> Result<NodeEvent, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn bad_call(request: &Term) -> Term {
    crate::tup![
        term::atom("error"),
        crate::tup![term::atom("unknown_call"), request.clone()]
    ]
}
