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
//! name ([`SupervisorOptions::worker`]). A child whose module has no worker
//! here runs on a BEAM node of the cluster that has the module, supervised
//! from this member ([`super::on_beam`]); when no node has it, the start
//! fails with `{:error, {:no_rust_worker, module}}` (the member that placed
//! it gets that answer; a failover start of such a child is logged and the
//! child given up, its entry deleted, as Horde gives up a failed one).
//!
//! Failover ids: a dead member's child restarts here under its own id,
//! overwriting the dead member's `{:process, id}` entry (Horde 0.10 deletes
//! it and picks a new random id; see [`SupervisorState`]'s doc for why we do
//! not). A Horde member reads the overwrite as the child moving to this
//! member: one child, as with its own failover.
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
//! A graceful stop of the node ([`Node::stop`], [`Node::shutdown`]) runs
//! [`Supervisor::stop`] first, through the node's shutdown hooks, for at
//! most [`SupervisorOptions::shutdown`].
//!
//! As a Horde member, the whole member stops when its quorum is lost while
//! it runs children (`UniformQuorumDistribution`) or when more than
//! `max_restarts` restarts happen within `max_seconds`: it is written
//! `:shutting_down`, its children are stopped and relinquished (the one
//! that broke the restart limit is not: its entry still names this member,
//! whose death then restarts it elsewhere), one last sync is sent, and its
//! processes exit with `:shutdown`. Horde's parent supervisor may start it
//! again; here the program does, if it wants (monitor [`Supervisor::pid`]).
//!
//! A child the member stops (its own stop, or `terminate_child`) gets the
//! exit signal its spec's `shutdown` says, as an OTP supervisor sends it:
//! `kill` for `:brutal_kill`, else `shutdown`; a Rust child still running
//! after `shutdown` milliseconds is then killed (never for `:infinity`). A
//! BEAM-hosted child's parent there does the same.
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
use super::on_beam::{BeamStarts, STOP_TAG};
use super::state::{Effect, Redistribution, Settings, SupervisorState, Ttl};

/// Starts a child: given the node and the start arguments, a linked-to-be
/// process, or the error reason Horde would answer with.
pub type Worker = Arc<dyn Fn(&Node, Vec<Term>, ChildState) -> Result<Pid, Term> + Send + Sync>;

/// The CRDT key of a child's hand-off state: `{:child_state, {M, F, A}}`,
/// from its spec's `start`. Keyed by what the child is rather than by its
/// Horde id, which a Horde member's failover replaces, and readable by an
/// Elixir child
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
    /// `shutdown`: how long a graceful stop of the node waits for this
    /// member to hand its children over (default 30 s).
    pub shutdown: Duration,
    workers: HashMap<String, WorkerStart>,
}

/// A registered worker: one that takes no [`ChildState`] is started without
/// one being looked up and built (its key, its saved state) at each start.
#[derive(Clone)]
enum WorkerStart {
    Plain(PlainWorker),
    WithState(Worker),
}

/// A worker's start function that takes no [`ChildState`].
type PlainWorker = Arc<dyn Fn(&Node, Vec<Term>) -> Result<Pid, Term> + Send + Sync>;

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
            shutdown: Duration::from_secs(30),
            workers: HashMap::new(),
        }
    }

    /// `max_restarts` within `max_seconds`: more stop the whole member.
    pub fn max_restarts(mut self, max_restarts: usize, max_seconds: i64) -> Self {
        self.max_restarts = max_restarts;
        self.max_seconds = max_seconds;
        self
    }

    /// See [`SupervisorOptions::shutdown`].
    pub fn shutdown(mut self, limit: Duration) -> Self {
        self.shutdown = limit;
        self
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
        self.workers
            .insert(module.into(), WorkerStart::Plain(Arc::new(start)));
        self
    }

    /// As [`SupervisorOptions::worker`], for a worker that hands its state
    /// over: `start` gets the child's [`ChildState`] too.
    pub fn worker_with_state(
        mut self,
        module: impl Into<String>,
        start: impl Fn(&Node, Vec<Term>, ChildState) -> Result<Pid, Term> + Send + Sync + 'static,
    ) -> Self {
        self.workers
            .insert(module.into(), WorkerStart::WithState(Arc::new(start)));
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
    /// Caller processes of finished calls, idle, for the next calls: a
    /// process per call (allocated, registered, torn down) cost as much as
    /// a tenth of a child's start.
    callers: Arc<std::sync::Mutex<Vec<Process>>>,
}

/// How many idle caller processes a [`Supervisor`] keeps (as many calls
/// run at once without making new ones).
const IDLE_CALLERS: usize = 4;

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
        let idle = self.callers.lock().ok().and_then(|mut c| c.pop());
        let mut p = idle.unwrap_or_else(|| self.node.process());
        let r = p.call(Dest::Pid(self.pid.clone()), request, timeout).await;
        // Kept only when nothing of this call can still arrive: a late
        // reply after a timeout would sit in the next call's mailbox.
        if r.is_ok() && p.is_idle() {
            if let Ok(mut c) = self.callers.lock() {
                if c.len() < IDLE_CALLERS {
                    c.push(p);
                }
            }
        }
        r.map_err(|_| Stopped)
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
    // A member takes writes all along (every start, exit and restart):
    // rounds that cost only what changed, not the whole map.
    cfg.size_aware_steps = true;
    // Writes go to Rust members as they happen (one state message per
    // sync) instead of being found by rounds that walk to each of them.
    cfg.push_writes = true;
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
    // The node's graceful stop hands the children over first. A channel of
    // its own: the hook must not count as a handle keeping the member up.
    let (stop_tx, stop_rx) = mpsc::unbounded_channel::<tokio::sync::oneshot::Sender<()>>();
    let hook = node.on_shutdown(
        format!("Horde.DynamicSupervisor {}", opts.name),
        opts.shutdown,
        move || async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if stop_tx.send(tx).is_ok() {
                let _ = rx.await;
            }
        },
    );
    let node_events = matches!(opts.members, Members::Auto).then(|| node.subscribe());
    let driver = Driver {
        stopping: None,
        keep_closed: false,
        beam: BeamStarts::default(),
        beam_parents: HashMap::new(),
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
    let owner = node.clone();
    let pid = node.spawn(move |p| async move {
        let exit = driver
            .run(p, crdt_rx, procs_rx, keep_rx, stop_rx, node_events)
            .await;
        owner.remove_shutdown_hook(hook);
        exit
    });
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
        node.remove_shutdown_hook(hook);
        node.exit_process(&pid, term::atom("shutdown"));
        return Err(e);
    }
    Ok(Supervisor {
        name: opts.name,
        node: node.clone(),
        pid,
        commands: Arc::new(keep_tx),
        callers: Default::default(),
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
    /// Answered once the member is gone (graceful stops only).
    done: Vec<tokio::sync::oneshot::Sender<()>>,
    step: StopStep,
    wait: SyncWait,
    /// A member that stops on its own (lost quorum, restart intensity)
    /// waits this long at most for its children, then for the last sync:
    /// across a partition, neither may ever come.
    deadline: Option<tokio::time::Instant>,
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
    /// Every [`Supervisor`] handle is gone (the member then stops, unless
    /// a graceful stop is already under way).
    keep_closed: bool,
    /// Children without a Rust worker, started on BEAM nodes.
    beam: BeamStarts,
    /// Child pid -> its parent on the BEAM node ([`super::on_beam`]).
    beam_parents: HashMap<Pid, Pid>,
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
        mut stop_requests: mpsc::UnboundedReceiver<tokio::sync::oneshot::Sender<()>>,
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
        self.effects(&mut p, e).await;
        let interval = Duration::from_millis(self.opts.sync_interval.max(1));
        let mut next_tick = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            if now >= next_tick {
                next_tick = now + interval;
                let actions = self.replica.tick(self.started.elapsed().as_millis() as u64);
                self.queue.push_back(Work::Crdt(actions));
                self.drain(&mut p).await;
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
                Some(done) = stop_requests.recv() => self.begin_stop(&p, done),
                c = keep.recv(), if !self.keep_closed => match c {
                    None if self.stopping.is_some() => self.keep_closed = true,
                    None => {
                        // The last handle is gone: the children and the
                        // two forwarders (linked) go with the member.
                        self.stop_children(&p);
                        return ProcessExit::from(term::atom("shutdown"));
                    }
                    Some(Command::Stop(done)) => self.begin_stop(&p, done),
                    Some(Command::Statuses(tx)) => {
                        let _ = tx.send(self.state.members());
                    }
                },
                e = next_event(&mut node_events) => {
                    if let Err(broadcast::error::RecvError::Closed) = e {
                        node_events = None;
                    }
                    if let Ok(NodeEvent::Down { node, .. }) = &e {
                        self.beam.forget(node);
                    }
                    if !matches!(e, Ok(NodeEvent::Up { hidden: true, .. })) {
                        let members = self.auto_members(&p);
                        let e = self.state.set_members_call(&members);
                        self.queue.extend(e.into_iter().map(Work::Effect));
                    }
                }
            }
            self.drain(&mut p).await;
            if self.stop_done(&p) {
                return self.stopped();
            }
        }
    }

    /// A graceful stop is complete: answer `stop` and leave.
    fn stopped(&mut self) -> ProcessExit {
        if let Some(Stopping { done, .. }) = self.stopping.take() {
            for d in done {
                let _ = d.send(());
            }
        }
        ProcessExit::from(term::atom("shutdown"))
    }

    /// Graceful stop, step 1: the member is written `:shutting_down`. A
    /// stop asked for while one is under way waits for that one.
    fn begin_stop(&mut self, p: &Process, done: tokio::sync::oneshot::Sender<()>) {
        if let Some(s) = &mut self.stopping {
            s.done.push(done);
            return;
        }
        let _ = p;
        let e = self.state.begin_shutdown();
        self.queue.extend(e.into_iter().map(Work::Effect));
        // A child that exits from now on is handed over, not restarted.
        self.children.begin_stop();
        self.stopping = Some(Stopping {
            done: vec![done],
            step: StopStep::Status,
            wait: SyncWait::OldRounds,
            deadline: None,
        });
    }

    /// The member stops on its own, as a Horde member whose processes
    /// supervisor stopped (lost quorum, restart intensity): written
    /// `:shutting_down`, children stopped at once and relinquished, a last
    /// sync (bounded: the others may be out of reach), then gone.
    fn stop_member(&mut self, p: &Process, why: &str) {
        tracing::warn!(supervisor = %self.opts.name, why, "the member stops");
        let e = self.state.begin_shutdown();
        self.queue.extend(e.into_iter().map(Work::Effect));
        self.children.begin_stop();
        let deadline = Some(tokio::time::Instant::now() + self.opts.shutdown);
        match &mut self.stopping {
            // A graceful stop still syncing the status: on to the children.
            Some(s) if s.step == StopStep::Status => {
                s.step = StopStep::Children;
                s.deadline = deadline;
            }
            Some(_) => return,
            None => {
                self.stopping = Some(Stopping {
                    done: Vec::new(),
                    step: StopStep::Children,
                    wait: SyncWait::OldRounds,
                    deadline,
                })
            }
        }
        self.stop_children(p);
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
        let sync_interval = Duration::from_millis(self.opts.sync_interval);
        let Some(stopping) = &mut self.stopping else {
            return false;
        };
        let late = stopping
            .deadline
            .is_some_and(|d| tokio::time::Instant::now() >= d);
        match stopping.step {
            StopStep::Status => {
                if stopping.wait.done(quiet, lonely) {
                    stopping.step = StopStep::Children;
                    self.stop_children(p);
                }
                false
            }
            StopStep::Children => {
                if (self.children.is_empty() || late) && self.queue.is_empty() {
                    stopping.step = StopStep::Final;
                    stopping.wait = SyncWait::OldRounds;
                    if stopping.deadline.is_some() {
                        let last_sync = (sync_interval * 4).max(Duration::from_secs(1));
                        stopping.deadline = Some(tokio::time::Instant::now() + last_sync);
                    }
                }
                false
            }
            StopStep::Final => stopping.wait.done(quiet, lonely) || late,
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
                self.beam_parents.remove(pid);
                let now = self.started.elapsed().as_secs() as i64;
                let e = self.children.exited(pid, reason, now);
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

    async fn effects(&mut self, p: &mut Process, effects: Vec<Effect>) {
        self.queue.extend(effects.into_iter().map(Work::Effect));
        self.drain(p).await;
    }

    async fn drain(&mut self, p: &mut Process) {
        while let Some(w) = self.queue.pop_front() {
            match w {
                Work::Effect(e) => self.effect(p, e).await,
                Work::Child(c) => self.child_effect(p, c).await,
                Work::Crdt(actions) => {
                    for action in actions {
                        let replica = &mut self.replica;
                        match perform(p, action, &mut |t, r| replica.bind_monitor(t, r)) {
                            Some(Action::Diffs(diffs)) => {
                                let e = self.state.crdt_update(diffs);
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

    async fn effect(&mut self, p: &mut Process, e: Effect) {
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
                let result = self.start(p, &spec).await;
                let e = self.state.child_started(spec, &result, reply_to);
                self.queue.extend(e.into_iter().map(Work::Effect));
            }
            Effect::TerminateChild { id, reply_to } => {
                let reply = match self.children.terminate_by_id(&id) {
                    Some((pid, child)) => {
                        self.stop_child(p, pid.clone(), child.shutdown);
                        self.queue.push_back(Work::Effect(forget_state(&child)));
                        term::atom("ok")
                    }
                    None => crate::tup![term::atom("error"), term::atom("not_found")],
                };
                p.reply(&reply_to, reply);
            }
            Effect::ExitSignal { pid, reason } => self.signal_child(p, &pid, reason),
            Effect::DropDuplicate { id } => {
                if let Some((pid, child)) = self.children.terminate_by_id(&id) {
                    tracing::info!(supervisor = %self.opts.name, %id, "a child the CRDT gives to another member stops here");
                    self.signal_child(p, &pid, shutdown_reason(child.shutdown));
                    self.state.duplicate_stopped();
                }
            }
            Effect::StopMember => self.stop_member(p, "quorum lost"),
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
            Effect::EndResurfaced { member, pid } => end_resurfaced(p, member, pid),
        }
    }

    async fn child_effect(&mut self, p: &mut Process, c: ChildEffect) {
        match c {
            ChildEffect::Restart {
                old,
                module,
                function,
                args,
            } => {
                let shutdown = self
                    .children
                    .get(&old)
                    .map(|c| c.shutdown)
                    .unwrap_or(Shutdown::Timeout(5000));
                let result = self.spawn(p, &module, &function, args, shutdown).await;
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
            ChildEffect::Shutdown => self.stop_member(p, "restart intensity reached"),
        }
    }

    /// Starts a child under the processes supervisor: Horde's reply term.
    async fn start(&mut self, p: &mut Process, spec: &ChildSpec) -> Term {
        let child = match self.children.prepare_start(spec) {
            Ok(c) => c,
            Err(reason) => return crate::tup![term::atom("error"), reason],
        };
        let args = self.children.start_args(&child);
        let result = self
            .spawn(
                p,
                &child.module.clone(),
                &child.function.clone(),
                args,
                child.shutdown,
            )
            .await;
        if let Some([_, Term::Pid(pid)]) = term::as_tuple(&result) {
            self.children.started(child, pid.clone());
        }
        result
    }

    /// Runs the module's worker, or else starts the child on a BEAM node
    /// that has the module ([`super::on_beam`]): `{:ok, pid}` (linked) or
    /// `{:error, reason}`.
    async fn spawn(
        &mut self,
        p: &mut Process,
        module: &str,
        function: &str,
        args: Vec<Term>,
        shutdown: Shutdown,
    ) -> Term {
        let Some(worker) = self.opts.workers.get(module).cloned() else {
            return self
                .spawn_on_beam(p, module, function, args, shutdown)
                .await;
        };
        let started = match worker {
            WorkerStart::Plain(start) => start(p.node(), args),
            WorkerStart::WithState(start) => {
                let key = child_state_key(module, function, &args);
                let state = ChildState {
                    node: p.node().clone(),
                    member: p.pid().clone(),
                    restored: self.replica.get(&key).cloned(),
                    key,
                };
                start(p.node(), args, state)
            }
        };
        match started {
            Ok(pid) => {
                p.link(&pid);
                crate::tup![term::atom("ok"), Term::Pid(pid)]
            }
            Err(reason) => crate::tup![term::atom("error"), reason],
        }
    }

    /// A child with no Rust worker, started on the first BEAM node (of
    /// the other members', then any visible one) that has its function.
    async fn spawn_on_beam(
        &mut self,
        p: &mut Process,
        module: &str,
        function: &str,
        args: Vec<Term>,
        shutdown: Shutdown,
    ) -> Term {
        let me = p.node().name().to_string();
        let mut nodes: Vec<String> = self
            .state
            .members()
            .iter()
            .filter(|m| m.status == super::MemberStatus::Alive)
            .filter_map(|m| {
                let n = term::as_tuple(&m.name)?.get(1)?;
                term::as_atom(n).map(str::to_string)
            })
            .filter(|n| n != &me)
            .collect();
        let mut others = p.node().visible_nodes();
        others.sort();
        for n in others {
            if !nodes.contains(&n) {
                nodes.push(n);
            }
        }
        let node = p.node().clone();
        let owner = p.pid().clone();
        let started = self
            .beam
            .start(
                &node,
                &nodes,
                &owner,
                module,
                function,
                &args,
                &shutdown.to_term(),
                BEAM_START_TIMEOUT,
            )
            .await;
        match started {
            Ok(Some(s)) => {
                tracing::debug!(supervisor = %self.opts.name, module, child = %s.child, "started on a BEAM node");
                // Linked here too: the child's own exit reason reaches the
                // member (its parent's would not tell a crash from a stop).
                p.link(&s.child);
                self.beam_parents.insert(s.child.clone(), s.parent);
                crate::tup![term::atom("ok"), Term::Pid(s.child)]
            }
            Ok(None) => {
                tracing::warn!(supervisor = %self.opts.name, module, function, "no Rust worker and no BEAM node with this function");
                crate::tup![
                    term::atom("error"),
                    crate::tup![term::atom("no_rust_worker"), term::atom(module)]
                ]
            }
            Err(reply) if term::is_atom(&reply, "ignore") => reply,
            Err(reply) => match term::as_tuple(&reply) {
                Some([e, _]) if term::is_atom(e, "error") => reply,
                _ => crate::tup![term::atom("error"), reply],
            },
        }
    }

    /// An exit signal to a child, as its supervisor sends it. A child on a
    /// BEAM node gets it from its parent there (a trapping GenServer takes
    /// an exit signal for a stop only from its parent); `kill` goes
    /// straight.
    fn signal_child(&self, p: &Process, pid: &Pid, reason: Term) {
        match self.beam_parents.get(pid) {
            Some(parent) if !term::is_atom(&reason, "kill") => p.send(
                Dest::Pid(parent.clone()),
                crate::tup![term::atom(STOP_TAG), Term::Pid(p.pid().clone()), reason],
            ),
            _ => p.exit(pid, reason),
        }
    }

    fn stop_children(&mut self, p: &Process) {
        for (pid, child) in self.children.all() {
            self.stop_child(p, pid, child.shutdown);
        }
    }

    /// Stops a child as its supervisor does: the exit signal `shutdown`
    /// calls for, then, for a Rust child given `shutdown` milliseconds,
    /// `kill` if it still runs when they are up. The kill comes from a timer
    /// of its own, so it also comes when the member is gone by then.
    fn stop_child(&self, p: &Process, pid: Pid, shutdown: Shutdown) {
        self.signal_child(p, &pid, shutdown_reason(shutdown));
        let Shutdown::Timeout(ms) = shutdown else {
            return;
        };
        if self.beam_parents.contains_key(&pid) {
            return;
        }
        let node = p.node().clone();
        let member = p.pid().clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if node.is_process_alive(&pid) {
                tracing::debug!(child = %pid, ms, "child still running after its shutdown time: killed");
                node.exit(&member, &pid, term::atom("kill"));
            }
        });
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

/// How long a BEAM node may take to start a child (the member waits, as
/// Horde's server waits for its processes supervisor).
const BEAM_START_TIMEOUT: Duration = Duration::from_secs(5);

/// [`Effect::EndResurfaced`]: a `{:terminate_child, pid}` call to the
/// member running a copy of a child that ended here, from a process of its
/// own so the member's loop never waits on a peer.
fn end_resurfaced(p: &Process, member: Term, pid: Pid) {
    let Some(dest) = crate::crdt::process::dest_of(&member) else {
        tracing::debug!(%member, "a resurfaced child on a non-member left alone");
        return;
    };
    let node = p.node().clone();
    tokio::spawn(async move {
        let mut q = node.process();
        let request = crate::tup![term::atom("terminate_child"), Term::Pid(pid.clone())];
        match q.call(dest, request, Duration::from_secs(5)).await {
            Ok(r) => {
                tracing::info!(%member, %pid, reply = %r, "a child ended here ran again after a netsplit: ended there")
            }
            Err(e) => {
                tracing::info!(%member, %pid, error = %e, "a child ended here ran again after a netsplit: its member did not answer")
            }
        }
    });
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
