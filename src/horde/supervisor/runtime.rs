//! A `Horde.DynamicSupervisor` member as processes on a node.
//!
//! [`start`] registers the three names a BEAM member has: `S` (the
//! supervisor server), `S.Crdt` (the DeltaCrdt replica BEAM members sync
//! with) and `S.ProcessesSupervisor` (which members ask for
//! `which_children` / `count_children`). All three are one process's
//! mailboxes ([`SupervisorState`], a [`Replica`] and [`Children`] driven in
//! one order): the other two names belong to forwarders, so no CRDT diff,
//! call or child exit is ever seen out of order.
//!
//! Children are Rust processes started by workers registered by module
//! name ([`SupervisorOptions::worker`]); a child spec whose module has no
//! worker here fails to start with `{:error, {:no_rust_worker, module}}`
//! (the member that placed it gets that answer; a failover of such a child
//! onto this member is logged and the child is lost — see the issue's
//! open questions).
//!
//! [`Supervisor::stop`] leaves gracefully, as Horde on `:init.stop()`: the
//! member is written `:shutting_down` (and, unlike Horde, that is synced to
//! every neighbour first), its children are stopped and each written
//! `{nil, spec}` for the others to restart, and it leaves once a sync round
//! that started after the last write was acknowledged by every neighbour.
//!
//! State hand-off, which Horde leaves to user code: a worker registered
//! with [`SupervisorOptions::worker_with_state`] gets a [`ChildState`] at
//! every start, with what the child last saved under
//! `{:child_state, {M, F, A}}` in this supervisor's CRDT (Horde members
//! ignore keys they do not know, and an Elixir child can read and write the
//! same key through `S.Crdt`). `S` answers a call of that key with the
//! value this member holds (`nil` if none).
//!
//! Not done yet (issue 16): waiting for each child's `shutdown` timeout
//! (children get the exit signal; the member does not kill them later),
//! stopping the whole member on lost quorum or restart intensity (we stop
//! its children only), [`Node::shutdown`] calling `stop` (the
//! `beam-peer supervisor` member does on SIGTERM).
//!
//! What it must never do: stop on a peer's bad term, or block its node.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};

use crate::crdt::awlww_map::OrdTerm;
use crate::crdt::process::{now_ns, perform};
use crate::crdt::sync::{Action, Config, Replica};
use crate::horde::{crdt_name, member};
use crate::node::{Dest, Node, NodeEvent, RegisterError};
use crate::process::{Process, ProcessExit};
use crate::term::{self, Pid, Term};

use super::children::{ChildEffect, Children, ChildrenOptions};
use super::codec::{ChildSpec, Member, Shutdown, ValidChild};
use super::distribution::DistributionStrategy;
use super::state::{Effect, Redistribution, Settings, SupervisorState, Ttl};

/// Starts a child: given the node and the start arguments, a linked-to-be
/// process, or the error reason Horde would answer with.
pub type Worker = Arc<dyn Fn(&Node, Vec<Term>, ChildState) -> Result<Pid, Term> + Send + Sync>;

/// The CRDT key of a child's hand-off state: `{:child_state, {M, F, A}}`,
/// from its spec's `start`. Keyed by what the child is rather than by its
/// Horde id, which a failover replaces, and readable by an Elixir child
/// that knows only its own module and arguments (see the README). Children
/// with the same `start` share one state, as they share one placement.
pub fn child_state_key(module: &str, function: &str, args: &[Term]) -> Term {
    crate::tup![
        term::atom("child_state"),
        crate::tup![
            term::atom(module),
            term::atom(function),
            term::list(args.to_vec())
        ]
    ]
}

/// The message a child's [`ChildState::save`] sends its member.
const SAVE_STATE: &str = "$beam_peer_save_child_state";

/// A child's hand-off state, given to its worker at every start: what it
/// (or its previous incarnation, on whichever member, Rust or Elixir) last
/// saved, and the means to save anew. A save is a write to the
/// supervisor's CRDT, replicated with its sync: saved on a graceful stop
/// (before the child exits) it reaches the child's next member with the
/// child itself; saved as it goes (a checkpoint), it survives a `kill -9`
/// of this node up to the last sync. The state goes when the child ends
/// for good (`terminate_child`, or an exit its restart type does not
/// restart).
#[derive(Clone)]
pub struct ChildState {
    node: Node,
    member: Pid,
    key: Term,
    restored: Option<Term>,
}

impl ChildState {
    /// The state last saved for this child, if any.
    pub fn restored(&self) -> Option<&Term> {
        self.restored.as_ref()
    }

    /// The CRDT key it is saved under ([`child_state_key`]).
    pub fn key(&self) -> &Term {
        &self.key
    }

    /// Saves `state` for the child's next incarnation, from the child's
    /// own process `from` (the member takes saves from its children only).
    pub fn save(&self, from: &Pid, state: Term) {
        let msg = crate::tup![
            term::atom(SAVE_STATE),
            Term::Pid(from.clone()),
            self.key.clone(),
            state
        ];
        self.node.send(from, &Dest::Pid(self.member.clone()), msg);
    }
}

/// Who the members are.
#[derive(Debug, Clone, PartialEq)]
pub enum Members {
    /// Every visible node, this one included (Horde's `members: :auto`).
    Auto,
    /// `{S, node}` tuples or bare names (on this node).
    List(Vec<Term>),
}

/// How to start a member, in Horde's words.
#[derive(Clone)]
pub struct SupervisorOptions {
    /// `S`, e.g. `Elixir.MyApp.DistributedSupervisor`.
    pub name: String,
    pub members: Members,
    pub distribution_strategy: DistributionStrategy,
    pub process_redistribution: Redistribution,
    pub proxy_message_ttl: Ttl,
    pub max_restarts: usize,
    pub max_seconds: i64,
    /// `delta_crdt_options: [sync_interval: ms]` (Horde: 300).
    pub sync_interval: u64,
    workers: HashMap<String, Worker>,
}

impl SupervisorOptions {
    /// `members: :auto`, `UniformDistribution`, Horde's defaults.
    pub fn new(name: impl Into<String>) -> Self {
        SupervisorOptions {
            name: name.into(),
            members: Members::Auto,
            distribution_strategy: DistributionStrategy::Uniform,
            process_redistribution: Redistribution::Passive,
            proxy_message_ttl: Ttl::Infinity,
            max_restarts: 3,
            max_seconds: 5,
            sync_interval: 300,
            workers: HashMap::new(),
        }
    }

    pub fn members(mut self, members: Members) -> Self {
        self.members = members;
        self
    }

    pub fn distribution_strategy(mut self, s: DistributionStrategy) -> Self {
        self.distribution_strategy = s;
        self
    }

    pub fn process_redistribution(mut self, r: Redistribution) -> Self {
        self.process_redistribution = r;
        self
    }

    pub fn sync_interval(mut self, ms: u64) -> Self {
        self.sync_interval = ms;
        self
    }

    /// Children whose `start` names `module` (`Elixir.MyApp.Worker`) run as
    /// the process `start` returns.
    pub fn worker(
        mut self,
        module: impl Into<String>,
        start: impl Fn(&Node, Vec<Term>) -> Result<Pid, Term> + Send + Sync + 'static,
    ) -> Self {
        self.workers.insert(
            module.into(),
            Arc::new(move |node, args, _| start(node, args)),
        );
        self
    }

    /// As [`SupervisorOptions::worker`], for a worker that hands its state
    /// over: `start` gets the child's [`ChildState`] too.
    pub fn worker_with_state(
        mut self,
        module: impl Into<String>,
        start: impl Fn(&Node, Vec<Term>, ChildState) -> Result<Pid, Term> + Send + Sync + 'static,
    ) -> Self {
        self.workers.insert(module.into(), Arc::new(start));
        self
    }
}

/// Errors starting a member.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot register {name}: {source}")]
    Name { name: String, source: RegisterError },
}

/// The member is gone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the supervisor has stopped")]
pub struct Stopped;

/// A handle to a running member.
#[derive(Clone)]
pub struct Supervisor {
    name: String,
    node: Node,
    pid: Pid,
    commands: Arc<mpsc::UnboundedSender<Command>>,
}

/// What a handle asks of the member's process.
enum Command {
    /// Leave gracefully; answered once done.
    Stop(tokio::sync::oneshot::Sender<()>),
    /// Every member this one knows, with its status.
    Statuses(tokio::sync::oneshot::Sender<Vec<Member>>),
}

impl Supervisor {
    /// `{S, node}`.
    pub fn member(&self) -> Term {
        member(&self.name, self.node.name())
    }

    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// Horde's `start_child/2`: placed by the strategy, proxied to the
    /// chosen member as Horde does. The reply term as Horde gives it.
    pub async fn start_child(&self, spec: ChildSpec, timeout: Duration) -> Result<Term, Stopped> {
        self.call(
            crate::tup![term::atom("start_child"), spec.into_term()],
            timeout,
        )
        .await
    }

    /// Horde's `terminate_child/2`.
    pub async fn terminate_child(&self, pid: &Pid, timeout: Duration) -> Result<Term, Stopped> {
        self.call(
            crate::tup![term::atom("terminate_child"), Term::Pid(pid.clone())],
            timeout,
        )
        .await
    }

    /// Horde's `Horde.Cluster.members/1`.
    pub async fn members(&self, timeout: Duration) -> Result<Term, Stopped> {
        self.call(term::atom("members"), timeout).await
    }

    /// Every member this one knows of, with the status it has for it (what
    /// the strategy places by; not a Horde call).
    pub async fn member_statuses(&self) -> Result<Vec<Member>, Stopped> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.commands
            .send(Command::Statuses(tx))
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Leaves gracefully (see the module docs); returns once the member has
    /// handed its children over and stopped. `Err` if it was already gone.
    pub async fn stop(&self) -> Result<(), Stopped> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.commands.send(Command::Stop(tx)).map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Any call Horde's server answers, as a BEAM caller would make it.
    pub async fn call(&self, request: Term, timeout: Duration) -> Result<Term, Stopped> {
        let mut p = self.node.process();
        p.call(Dest::Pid(self.pid.clone()), request, timeout)
            .await
            .map_err(|_| Stopped)
    }
}

/// Starts a member on `node`. It runs while a handle exists or until the
/// node shuts down.
pub fn start(node: &Node, opts: SupervisorOptions) -> Result<Supervisor, StartError> {
    let crdt = crdt_name(&opts.name);
    let procs = format!("{}.ProcessesSupervisor", opts.name);
    let (crdt_tx, crdt_rx) = mpsc::unbounded_channel();
    let (procs_tx, procs_rx) = mpsc::unbounded_channel();
    let crdt_fwd = forwarder(node, crdt_tx);
    let procs_fwd = forwarder(node, procs_tx);
    let node_id = i64::from(rand::random::<u32>() % 1_000_000_000) + 1;
    let mut cfg = Config::horde(
        node_id,
        Term::Pid(crdt_fwd.clone()),
        Some(crate::tup![term::atom(&crdt), term::atom(node.name())]),
    );
    cfg.sync_interval = opts.sync_interval;
    let settings = Settings {
        distribution_strategy: opts.distribution_strategy,
        process_redistribution: opts.process_redistribution,
        proxy_message_ttl: opts.proxy_message_ttl,
    };
    let state = SupervisorState::new(
        &opts.name,
        node.name(),
        settings,
        Box::new(rand::random::<u128>),
    );
    let children = Children::new(ChildrenOptions {
        max_restarts: opts.max_restarts,
        max_seconds: opts.max_seconds,
        ..Default::default()
    });
    let (keep_tx, keep_rx) = mpsc::unbounded_channel();
    let node_events = matches!(opts.members, Members::Auto).then(|| node.subscribe());
    let driver = Driver {
        stopping: None,
        state,
        replica: Replica::new(cfg),
        children,
        opts: opts.clone(),
        crdt_forwarder: crdt_fwd.clone(),
        forwarders: vec![crdt_fwd.clone(), procs_fwd.clone()],
        member_refs: Default::default(),
        started: Instant::now(),
        queue: VecDeque::new(),
    };
    let pid = node.spawn(move |p| driver.run(p, crdt_rx, procs_rx, keep_rx, node_events));
    node.link(&pid, &crdt_fwd);
    node.link(&pid, &procs_fwd);
    let named = [
        (opts.name.clone(), &pid),
        (crdt, &crdt_fwd),
        (procs, &procs_fwd),
    ]
    .into_iter()
    .try_for_each(|(name, p)| {
        node.register(&name, p)
            .map_err(|source| StartError::Name { name, source })
    });
    if let Err(e) = named {
        node.exit_process(&pid, term::atom("shutdown"));
        return Err(e);
    }
    Ok(Supervisor {
        name: opts.name,
        node: node.clone(),
        pid,
        commands: Arc::new(keep_tx),
    })
}

fn forwarder(node: &Node, tx: mpsc::UnboundedSender<Term>) -> Pid {
    node.spawn(move |mut p| async move {
        loop {
            match p.receive().await {
                Ok(msg) => {
                    if tx.send(msg).is_err() {
                        return ProcessExit::Normal;
                    }
                }
                Err(e) => return e.into(),
            }
        }
    })
}

/// One step of work, queued so effects run in order.
enum Work {
    Effect(Effect),
    Child(ChildEffect),
    Crdt(Vec<Action>),
}

struct Stopping {
    done: tokio::sync::oneshot::Sender<()>,
    step: StopStep,
    wait: SyncWait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopStep {
    /// Syncing the `:shutting_down` status.
    Status,
    /// Waiting for the children's exits.
    Children,
    /// Syncing the relinquished children.
    Final,
}

/// Waiting for one full sync round that began after the last write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncWait {
    /// Rounds begun before it are still running.
    OldRounds,
    /// Waiting for a tick to begin a round with every neighbour (checked
    /// right after each tick, before any answer can arrive).
    FreshRound,
    /// Waiting for those rounds' acks.
    Acked,
}

impl SyncWait {
    fn done(&mut self, quiet: bool, lonely: bool) -> bool {
        match *self {
            SyncWait::OldRounds if quiet => {
                *self = SyncWait::FreshRound;
                lonely
            }
            SyncWait::FreshRound if !quiet => {
                *self = SyncWait::Acked;
                false
            }
            SyncWait::Acked => quiet,
            _ => false,
        }
    }
}

struct Driver {
    stopping: Option<Stopping>,
    state: SupervisorState,
    replica: Replica,
    children: Children,
    opts: SupervisorOptions,
    forwarders: Vec<Pid>,
    /// The process registered as `S.Crdt`.
    crdt_forwarder: Pid,
    /// Monitor reference -> member `{S, node}`.
    member_refs: std::collections::BTreeMap<OrdTerm, Term>,
    started: Instant,
    queue: VecDeque<Work>,
}

impl Driver {
    async fn run(
        mut self,
        mut p: Process,
        mut crdt_inbox: mpsc::UnboundedReceiver<Term>,
        mut procs_inbox: mpsc::UnboundedReceiver<Term>,
        mut keep: mpsc::UnboundedReceiver<Command>,
        mut node_events: Option<broadcast::Receiver<NodeEvent>>,
    ) -> ProcessExit {
        p.trap_exit(true);
        let initial = match &self.opts.members {
            Members::Auto => self.auto_members(&p),
            Members::List(l) => {
                let mut l = l.clone();
                let me = self.state.me().clone();
                if !l.contains(&me) && !l.contains(&term::atom(&self.opts.name)) {
                    l.insert(0, me);
                }
                l
            }
        };
        let e = self.state.init(Some(&initial));
        self.effects(&mut p, e);
        let interval = Duration::from_millis(self.opts.sync_interval.max(1));
        let mut next_tick = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            if now >= next_tick {
                next_tick = now + interval;
                let actions = self.replica.tick(self.started.elapsed().as_millis() as u64);
                self.queue.push_back(Work::Crdt(actions));
                self.drain(&mut p);
                // Checked before any answer can arrive: a round this tick
                // began is seen outstanding here.
                if self.stop_done(&p) {
                    return self.stopped();
                }
                continue;
            }
            tokio::select! {
                m = p.receive_match(|_| true, Some(next_tick - now)) => match m {
                    Err(e) => return e.into(),
                    Ok(None) => {}
                    Ok(Some(msg)) => {
                        if let Err(exit) = self.mailbox(&msg) {
                            return exit;
                        }
                    }
                },
                Some(msg) = crdt_inbox.recv() => self.crdt_message(&msg),
                Some(msg) = procs_inbox.recv() => self.processes_supervisor(&p, &msg),
                c = keep.recv(), if self.stopping.is_none() => match c {
                    None => {
                        // The last handle is gone: the children and the
                        // two forwarders (linked) go with the member.
                        self.stop_children(&p);
                        return ProcessExit::from(term::atom("shutdown"));
                    }
                    Some(Command::Stop(done)) => self.begin_stop(done),
                    Some(Command::Statuses(tx)) => {
                        let _ = tx.send(self.state.members());
                    }
                },
                e = next_event(&mut node_events) => {
                    if let Err(broadcast::error::RecvError::Closed) = e {
                        node_events = None;
                    }
                    if !matches!(e, Ok(NodeEvent::Up { hidden: true, .. })) {
                        let members = self.auto_members(&p);
                        let e = self.state.set_members_call(&members);
                        self.queue.extend(e.into_iter().map(Work::Effect));
                    }
                }
            }
            self.drain(&mut p);
            if self.stop_done(&p) {
                return self.stopped();
            }
        }
    }

    /// A graceful stop is complete: answer `stop` and leave.
    fn stopped(&mut self) -> ProcessExit {
        if let Some(Stopping { done, .. }) = self.stopping.take() {
            let _ = done.send(());
        }
        ProcessExit::from(term::atom("shutdown"))
    }

    /// Graceful stop, step 1: the member is written `:shutting_down`.
    fn begin_stop(&mut self, done: tokio::sync::oneshot::Sender<()>) {
        let e = self.state.begin_shutdown();
        self.queue.extend(e.into_iter().map(Work::Effect));
        self.stopping = Some(Stopping {
            done,
            step: StopStep::Status,
            wait: SyncWait::OldRounds,
        });
    }

    /// The rest of a graceful stop; true once it is complete.
    /// 2. A sync round begun after that write is acknowledged by every
    ///    neighbour, so every member knows this one is shutting down before
    ///    it sees a relinquished child (else a member that still takes it
    ///    for alive may leave the child to it, and nobody starts it; Horde
    ///    has that race, made likely by children not yet synced).
    /// 3. Every child is stopped; each exit writes it `{nil, spec}`.
    /// 4. Once they are all gone, another round is acknowledged.
    fn stop_done(&mut self, p: &Process) -> bool {
        let quiet = self.replica.outstanding().next().is_none();
        let lonely = self.replica.neighbours().next().is_none();
        let Some(stopping) = &mut self.stopping else {
            return false;
        };
        match stopping.step {
            StopStep::Status => {
                if stopping.wait.done(quiet, lonely) {
                    stopping.step = StopStep::Children;
                    self.stop_children(p);
                }
                false
            }
            StopStep::Children => {
                if self.children.is_empty() && self.queue.is_empty() {
                    stopping.step = StopStep::Final;
                    stopping.wait = SyncWait::OldRounds;
                }
                false
            }
            StopStep::Final => stopping.wait.done(quiet, lonely),
        }
    }

    /// A message to `S`.
    fn mailbox(&mut self, msg: &Term) -> Result<(), ProcessExit> {
        let parts = term::as_tuple(msg).unwrap_or(&[]);
        let effects = match parts {
            [tag, from, request] if term::is_atom(tag, "$gen_call") => {
                match term::as_tuple(request) {
                    // Ours, not Horde's: a child's hand-off state as this
                    // member's replica holds it (`nil` when none).
                    Some([t, _]) if term::is_atom(t, "child_state") => vec![Effect::Reply {
                        to: from.clone(),
                        reply: self
                            .replica
                            .get(request)
                            .cloned()
                            .unwrap_or_else(|| term::atom("nil")),
                    }],
                    _ => self.state.call(from.clone(), request),
                }
            }
            [tag, request] if term::is_atom(tag, "$gen_cast") => self.state.cast(request),
            [tag, Term::Pid(pid), reason] if term::is_atom(tag, "EXIT") => {
                if self.forwarders.contains(pid) {
                    return Err(ProcessExit::from(reason.clone()));
                }
                let child = self.children.get(pid).cloned();
                let e = if self.stopping.is_some() {
                    self.children.stopped_on_shutdown(pid)
                } else {
                    let now = self.started.elapsed().as_secs() as i64;
                    self.children.exited(pid, reason, now)
                };
                let disowned = e.iter().any(|c| {
                    matches!(c, ChildEffect::Notify(m)
                        if term::as_tuple(m).and_then(|t| t.first()).is_some_and(|t| term::is_atom(t, "disown_child_process")))
                });
                self.queue.extend(e.into_iter().map(Work::Child));
                match child {
                    // Gone for good: so is its hand-off state.
                    Some(c) if disowned => vec![forget_state(&c)],
                    _ => Vec::new(),
                }
            }
            [tag, r, ..] if term::is_atom(tag, "DOWN") => {
                match self.member_refs.remove(&OrdTerm(r.clone())) {
                    Some(name) => self.state.member_down(&name),
                    None => {
                        if let Ok(actions) = self.replica.handle_message(msg) {
                            self.queue.push_back(Work::Crdt(actions));
                        }
                        Vec::new()
                    }
                }
            }
            [tag, Term::Pid(pid), key, state] if term::is_atom(tag, SAVE_STATE) => {
                if self.children.contains(pid) {
                    vec![Effect::Put {
                        key: key.clone(),
                        value: state.clone(),
                    }]
                } else {
                    tracing::debug!(supervisor = %self.opts.name, %pid, "child state save from a non-child dropped");
                    Vec::new()
                }
            }
            [tag, Term::Pid(pid)] if term::is_atom(tag, "$gen_restart") => {
                let now = self.started.elapsed().as_secs() as i64;
                let e = self.children.retry(pid, now);
                self.queue.extend(e.into_iter().map(Work::Child));
                Vec::new()
            }
            _ => self.state.info(msg),
        };
        self.queue.extend(effects.into_iter().map(Work::Effect));
        Ok(())
    }

    /// A message to `S.Crdt`, or the DOWN of a member (see
    /// [`Effect::Monitor`] in [`Driver::effect`]).
    fn crdt_message(&mut self, msg: &Term) {
        if let Some([tag, r, ..]) = term::as_tuple(msg) {
            if term::is_atom(tag, "DOWN") {
                if let Some(name) = self.member_refs.remove(&OrdTerm(r.clone())) {
                    let e = self.state.member_down(&name);
                    self.queue.extend(e.into_iter().map(Work::Effect));
                    return;
                }
            }
        }
        match self.replica.handle_message(msg) {
            Ok(actions) => self.queue.push_back(Work::Crdt(actions)),
            Err(e) => {
                tracing::debug!(supervisor = %self.opts.name, error = %e, "CRDT message dropped")
            }
        }
    }

    /// A message to `S.ProcessesSupervisor`: the calls members make.
    fn processes_supervisor(&mut self, p: &Process, msg: &Term) {
        let Some([tag, from, request]) = term::as_tuple(msg) else {
            return;
        };
        if !term::is_atom(tag, "$gen_call") {
            return;
        }
        let reply = match term::as_atom(request) {
            Some("which_children") => self.children.which_children(),
            Some("count_children") => self.children.count_children(),
            _ => crate::tup![
                term::atom("error"),
                crate::tup![term::atom("unknown_call"), request.clone()]
            ],
        };
        p.reply(from, reply);
    }

    fn effects(&mut self, p: &mut Process, effects: Vec<Effect>) {
        self.queue.extend(effects.into_iter().map(Work::Effect));
        self.drain(p);
    }

    fn drain(&mut self, p: &mut Process) {
        while let Some(w) = self.queue.pop_front() {
            match w {
                Work::Effect(e) => self.effect(p, e),
                Work::Child(c) => self.child_effect(p, c),
                Work::Crdt(actions) => {
                    for action in actions {
                        let replica = &mut self.replica;
                        match perform(p, action, &mut |t, r| replica.bind_monitor(t, r)) {
                            Some(Action::Diffs(diffs)) => {
                                let e = self.state.crdt_update(&diffs);
                                self.queue.extend(e.into_iter().map(Work::Effect));
                            }
                            None | Some(Action::Persist) => {}
                            Some(other) => {
                                tracing::debug!(?other, "supervisor: CRDT action ignored")
                            }
                        }
                    }
                }
            }
        }
    }

    fn effect(&mut self, p: &mut Process, e: Effect) {
        match e {
            Effect::Put { key, value } => {
                let a = self.replica.put(key, value, now_ns());
                self.queue.push_back(Work::Crdt(a));
            }
            Effect::Delete { key } => {
                let a = self.replica.delete(key);
                self.queue.push_back(Work::Crdt(a));
            }
            Effect::SetNeighbours(n) => {
                let a = self.replica.set_neighbours(n);
                self.queue.push_back(Work::Crdt(a));
            }
            Effect::Monitor(name) => {
                if &name == self.state.me() {
                    return;
                }
                if let Some(dest) = crate::crdt::process::dest_of(&name) {
                    // Watched from `S.Crdt`'s forwarder, so the DOWN queues
                    // behind every CRDT message the member sent before it
                    // went: a leaving member's last sync (its relinquished
                    // children) is joined before it is taken for dead and
                    // its children restarted. A DOWN to `S` itself could
                    // overtake them (another inbox), and each would then
                    // be started twice.
                    let r = p.node().monitor(&self.crdt_forwarder, &dest);
                    self.member_refs
                        .insert(OrdTerm(Term::Reference(Box::new(r))), name);
                }
            }
            Effect::StartChild { spec, reply_to } => {
                let result = self.start(p, &spec);
                let e = self.state.child_started(spec, &result, reply_to);
                self.queue.extend(e.into_iter().map(Work::Effect));
            }
            Effect::TerminateChild { id, reply_to } => {
                let reply = match self.children.terminate_by_id(&id) {
                    Some((pid, child)) => {
                        p.exit(&pid, shutdown_reason(child.shutdown));
                        self.queue.push_back(Work::Effect(forget_state(&child)));
                        term::atom("ok")
                    }
                    None => crate::tup![term::atom("error"), term::atom("not_found")],
                };
                p.reply(&reply_to, reply);
            }
            Effect::ExitSignal { pid, reason } => p.exit(&pid, reason),
            Effect::StopLocalChildren => self.stop_children(p),
            Effect::Reply { to, reply } => p.reply(&to, reply),
            Effect::Send { to, msg } => match crate::crdt::process::dest_of(&to) {
                Some(dest) => p.send(dest, msg),
                None => tracing::debug!(%to, "send to a non-member dropped"),
            },
            Effect::WhichChildren {
                supervisors,
                reply_to,
            } => self.gather(p, supervisors, reply_to, true),
            Effect::CountChildren {
                supervisors,
                reply_to,
            } => self.gather(p, supervisors, reply_to, false),
        }
    }

    fn child_effect(&mut self, p: &mut Process, c: ChildEffect) {
        match c {
            ChildEffect::Restart {
                old,
                module,
                function,
                args,
            } => {
                let result = self.spawn(p, &module, &function, args);
                let e = self.children.restart_result(&old, &result);
                self.queue.extend(e.into_iter().map(Work::Child));
            }
            ChildEffect::Notify(msg) => {
                let e = self.state.cast(&msg);
                self.queue.extend(e.into_iter().map(Work::Effect));
            }
            ChildEffect::RetryRestart(pid) => {
                p.send(
                    Dest::Pid(p.pid().clone()),
                    crate::tup![term::atom("$gen_restart"), Term::Pid(pid)],
                );
            }
            ChildEffect::Shutdown => {
                tracing::warn!(supervisor = %self.opts.name, "restart intensity reached: children stopped");
                self.stop_children(p);
            }
        }
    }

    /// Starts a child under the processes supervisor: Horde's reply term.
    fn start(&mut self, p: &mut Process, spec: &ChildSpec) -> Term {
        let child = match self.children.prepare_start(spec) {
            Ok(c) => c,
            Err(reason) => return crate::tup![term::atom("error"), reason],
        };
        let args = self.children.start_args(&child);
        let result = self.spawn(p, &child.module.clone(), &child.function.clone(), args);
        if let Some([_, Term::Pid(pid)]) = term::as_tuple(&result) {
            self.children.started(child, pid.clone());
        }
        result
    }

    /// Runs the module's worker: `{:ok, pid}` (linked) or `{:error, reason}`.
    fn spawn(&mut self, p: &mut Process, module: &str, function: &str, args: Vec<Term>) -> Term {
        let Some(worker) = self.opts.workers.get(module).cloned() else {
            tracing::warn!(supervisor = %self.opts.name, module, "no Rust worker for this module");
            return crate::tup![
                term::atom("error"),
                crate::tup![term::atom("no_rust_worker"), term::atom(module)]
            ];
        };
        let key = child_state_key(module, function, &args);
        let state = ChildState {
            node: p.node().clone(),
            member: p.pid().clone(),
            restored: self.replica.get(&key).cloned(),
            key,
        };
        match worker(p.node(), args, state) {
            Ok(pid) => {
                p.link(&pid);
                crate::tup![term::atom("ok"), Term::Pid(pid)]
            }
            Err(reason) => crate::tup![term::atom("error"), reason],
        }
    }

    fn stop_children(&mut self, p: &Process) {
        for (pid, child) in self.children.all() {
            p.exit(&pid, shutdown_reason(child.shutdown));
        }
    }

    /// `which_children` / `count_children` over every member's processes
    /// supervisor, in a task of its own (a member that does not answer is
    /// skipped after a while, where Horde waits forever).
    fn gather(&mut self, p: &Process, supervisors: Vec<Term>, reply_to: Term, which: bool) {
        let request = term::atom(if which {
            "which_children"
        } else {
            "count_children"
        });
        let own = match which {
            true => self.children.which_children(),
            false => self.children.count_children(),
        };
        let me = p.node().name().to_string();
        let node = p.node().clone();
        let answers: Vec<(Term, Option<Term>)> = supervisors
            .into_iter()
            .map(|s| {
                let local = term::as_tuple(&s)
                    .and_then(|t| t.get(1))
                    .and_then(term::as_atom)
                    == Some(me.as_str());
                let pre = local.then(|| own.clone());
                (s, pre)
            })
            .collect();
        tokio::spawn(async move {
            let mut q = node.process();
            let mut results = Vec::new();
            for (s, pre) in answers {
                let r = match pre {
                    Some(r) => Some(r),
                    None => match crate::crdt::process::dest_of(&s) {
                        Some(dest) => q
                            .call(dest, request.clone(), Duration::from_secs(5))
                            .await
                            .ok(),
                        None => None,
                    },
                };
                results.extend(r);
            }
            let reply = if which {
                term::list(
                    results
                        .iter()
                        .filter_map(term::as_list)
                        .flatten()
                        .filter_map(|c| match term::as_tuple(&c) {
                            Some([_, pid, ty, mods]) => Some(crate::tup![
                                term::atom("undefined"),
                                pid.clone(),
                                ty.clone(),
                                mods.clone()
                            ]),
                            _ => None,
                        })
                        .collect(),
                )
            } else {
                let mut sums: Vec<(String, i64)> = Vec::new();
                for r in &results {
                    let pairs = match r {
                        Term::Map(m) => m.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                        _ => term::as_list(r)
                            .unwrap_or_default()
                            .iter()
                            .filter_map(|kv| match term::as_tuple(kv) {
                                Some([k, v]) => Some((k.clone(), v.clone())),
                                _ => None,
                            })
                            .collect::<Vec<_>>(),
                    };
                    for (k, v) in pairs {
                        let (Some(k), Some(v)) = (term::as_atom(&k), term::as_i64(&v)) else {
                            continue;
                        };
                        match sums.iter_mut().find(|(n, _)| n == k) {
                            Some((_, s)) => *s += v,
                            None => sums.push((k.to_string(), v)),
                        }
                    }
                }
                Term::Map(
                    sums.into_iter()
                        .map(|(k, v)| (term::atom(&k), term::int(v)))
                        .collect::<Vec<_>>()
                        .into(),
                )
            };
            q.reply(&reply_to, reply);
        });
    }

    fn auto_members(&self, p: &Process) -> Vec<Term> {
        let node = p.node();
        std::iter::once(node.name().to_string())
            .chain(node.visible_nodes())
            .map(|n| member(&self.opts.name, &n))
            .collect()
    }
}

/// Deletes a child's hand-off state ([`child_state_key`]).
fn forget_state(child: &ValidChild) -> Effect {
    Effect::Delete {
        key: child_state_key(&child.module, &child.function, &child.args),
    }
}

fn shutdown_reason(s: Shutdown) -> Term {
    match s {
        Shutdown::BrutalKill => term::atom("kill"),
        _ => term::atom("shutdown"),
    }
}

async fn next_event(
    events: &mut Option<broadcast::Receiver<NodeEvent>>,
) -> Result<NodeEvent, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
