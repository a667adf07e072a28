//! The node: the root value every other part hangs off.
//!
//! A [`Node`] owns the process table ([`table`]), the mailboxes of its processes,
//! the distribution connections to its peers, the EPMD registration and the node
//! events. It routes every signal: a send to a local pid goes straight into the
//! mailbox; a send to a pid on another node goes to that node's connection,
//! connecting first when there is none (as the BEAM does).
//!
//! What it must never do: block while holding its locks, trust a term from the
//! network (every control message is checked and at worst dropped), or let one
//! peer's bad input touch another peer.

pub mod info;
mod local_hash;
mod rpc;
mod shutdown;
pub mod table;
pub mod trace;

pub use rpc::RpcCallError;
pub use shutdown::{HookFuture, ShutdownHook};

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::dist::message::Message;
use crate::dist::message::PidOrAtom;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::dist::connection::{self, ConnectionHandle, ConnectionStats};
use crate::dist::handshake::{HandshakeConfig, PeerInfo, ServerStatus};
use crate::process::{Process, ProcessExit};
use crate::term::{self, Pid, Reference, Term};
use table::{Effect, MonitorObject, ProcessTable, Signal};

pub use table::RegisterError;

/// How peers find each other.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// Register in and look peers up through EPMD on this port; when none answers,
    /// run an embedded EPMD in-process (real `erl` nodes can use it too).
    Epmd { port: u16 },
    /// No EPMD (`-no_epmd` / `-erl_epmd_port` style): we listen on `listen_port`
    /// and every peer is expected on `peer_port`, unless `peers` names its address.
    Fixed {
        peer_port: u16,
        peers: HashMap<String, SocketAddr>,
    },
}

/// Everything needed to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// `name@host` (long or short). A bare `name` gets `@` and this machine's host name.
    pub name: String,
    /// The cookie; `None` reads `~/.erlang.cookie`.
    pub cookie: Option<String>,
    /// Hidden nodes are not published to peers' `nodes()` and do not form meshes.
    pub hidden: bool,
    /// Seconds of silence after which a peer is declared down (BEAM default 60).
    pub net_ticktime: Duration,
    pub discovery: Discovery,
    /// The address the distribution listener binds to.
    pub listen_addr: IpAddr,
    /// 0 picks a free port.
    pub listen_port: u16,
    /// Messages whose encoded size is above this go out in fragments, so one large
    /// message does not stall small ones behind it.
    pub fragment_size: usize,
    /// The largest message we accept from a peer (after reassembly).
    pub max_message_size: usize,
    /// How long a connection attempt (lookup, TCP, handshake) may take.
    pub connect_timeout: Duration,
    /// After a read that brought a few messages (request/response traffic),
    /// a connection's reader may keep polling its socket for a while before
    /// it sleeps, like the BEAM's scheduler busy wait (`+sbwt`): the next
    /// request is then read the moment it lands instead of after a wake-up.
    /// Streaming peers are read in batches without it. By default
    /// ([`BusyPoll::Adaptive`](crate::dist::BusyPoll)) each connection
    /// decides from what it observes on this machine: never with one core;
    /// otherwise only while polling measurably shortens its turns (on a
    /// small machine the poll can take the core a peer on the same host
    /// needs), with a window that adapts (see `dist::poll`).
    /// [`BusyPoll::Fixed`](crate::dist::BusyPoll) polls that long after
    /// every such read (costs up to that much CPU per quiet spell); zero
    /// turns polling off.
    pub busy_poll: crate::dist::BusyPoll,
    /// Whether a connection's reader, after a read that brought a stream
    /// of small messages, waits a timer tick before its next read so the
    /// stream arrives in batches instead of one TCP segment and one wake-up
    /// per message (fewer segments cost a BEAM sender less too). By default
    /// ([`ReadCoalesce::Adaptive`](crate::dist::ReadCoalesce)) each
    /// connection measures whether its peer's streams run faster that way
    /// or followed at once (a peer that batches its own writes, as a
    /// `beam-peer` node does, runs faster followed); see `dist::coalesce`.
    /// Request/response traffic and large reads are never paused.
    pub read_coalesce: crate::dist::ReadCoalesce,
    /// The most bytes encoded for one connection and not yet
    /// taken by its writer. A peer that stops reading fills its socket and
    /// then this queue; past the bound the connection is closed
    /// (`send_queue_limit`) instead of growing without end. The BEAM's
    /// `dist_buf_busy_limit` (1 MiB by default) suspends senders at that
    /// point; our sends never wait, so this is the drop point, set well
    /// above any burst a reading peer leaves queued. One message larger
    /// than the bound still goes when nothing else waits.
    pub max_send_queue: usize,
    /// Distribution over TLS, as `erl -proto_dist inet_tls` runs it: every
    /// connection, accepted or opened, is TLS first (see `dist::tls`).
    /// `None` (the default) is plain TCP.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::dist::tls::TlsConfig>,
}

impl NodeConfig {
    pub fn new(name: impl Into<String>) -> Self {
        NodeConfig {
            name: name.into(),
            cookie: None,
            hidden: false,
            net_ticktime: Duration::from_secs(60),
            discovery: Discovery::Epmd {
                port: crate::epmd::epmd_port(),
            },
            listen_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            listen_port: 0,
            fragment_size: 64 * 1024,
            max_message_size: 1 << 30,
            connect_timeout: Duration::from_secs(7),
            busy_poll: crate::dist::BusyPoll::Adaptive,
            read_coalesce: crate::dist::ReadCoalesce::Adaptive,
            max_send_queue: 64 << 20,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    pub fn cookie(mut self, cookie: impl Into<String>) -> Self {
        self.cookie = Some(cookie.into());
        self
    }

    pub fn hidden(mut self, hidden: bool) -> Self {
        self.hidden = hidden;
        self
    }

    pub fn net_ticktime(mut self, t: Duration) -> Self {
        self.net_ticktime = t;
        self
    }

    pub fn discovery(mut self, d: Discovery) -> Self {
        self.discovery = d;
        self
    }

    pub fn listen(mut self, addr: IpAddr, port: u16) -> Self {
        self.listen_addr = addr;
        self.listen_port = port;
        self
    }

    pub fn fragment_size(mut self, bytes: usize) -> Self {
        self.fragment_size = bytes.max(1024);
        self
    }

    /// Polls for a fixed `window` instead of deciding per connection (see
    /// [`NodeConfig::busy_poll`]); `Duration::ZERO` turns polling off.
    pub fn busy_poll(mut self, window: Duration) -> Self {
        self.busy_poll = crate::dist::BusyPoll::Fixed(window);
        self
    }

    /// Each connection decides whether and how long to poll from what it
    /// observes (the default; see [`NodeConfig::busy_poll`]).
    pub fn busy_poll_adaptive(mut self) -> Self {
        self.busy_poll = crate::dist::BusyPoll::Adaptive;
        self
    }

    /// Pause this long after every stream read, whatever the peer
    /// (see [`NodeConfig::read_coalesce`]); `Duration::ZERO` never pauses.
    pub fn read_coalesce(mut self, pause: Duration) -> Self {
        self.read_coalesce = crate::dist::ReadCoalesce::Fixed(pause);
        self
    }

    /// Each connection measures whether to pause (the default; see
    /// [`NodeConfig::read_coalesce`]).
    pub fn read_coalesce_adaptive(mut self) -> Self {
        self.read_coalesce = crate::dist::ReadCoalesce::Adaptive;
        self
    }

    /// See [`NodeConfig::max_send_queue`].
    pub fn max_send_queue(mut self, bytes: usize) -> Self {
        self.max_send_queue = bytes;
        self
    }

    /// Runs distribution over TLS (see [`NodeConfig::tls`]).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::dist::tls::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// Node-level events: a peer came up or went down, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    Up { node: String, hidden: bool },
    Down { node: String, reason: String },
}

/// Errors starting a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid node name {0:?}: expected name@host")]
    InvalidName(String),
    #[error("no cookie given and ~/.erlang.cookie could not be read: {0}")]
    NoCookie(std::io::Error),
    #[error("cannot listen for distribution on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("EPMD: {0}")]
    Epmd(#[from] crate::epmd::EpmdError),
}

/// Why a connection to a peer could not be made.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ConnectError {
    #[error("invalid node name {0:?}")]
    InvalidName(String),
    #[error("node {0} is not registered in EPMD")]
    NotRegistered(String),
    #[error("cannot reach {node}: {reason}")]
    Unreachable { node: String, reason: String },
    #[error("handshake with {node} failed: {reason}")]
    Handshake { node: String, reason: String },
    #[error("connecting to {0} timed out")]
    Timeout(String),
    #[error("the node is shutting down")]
    ShuttingDown,
    /// Our attempt lost a simultaneous connect; the peer's own connection to us
    /// completes the pending connection instead.
    #[error("simultaneous connect with {0}: the peer's attempt wins")]
    SimultaneousLost(String),
}

/// A function callable from peers through erpc and rex.
pub type RpcFunction =
    Arc<dyn Fn(&Node, Vec<Term>) -> Result<Term, RpcError> + Send + Sync + 'static>;

/// How a Rust-implemented rpc function failed; reported to the caller as the
/// matching Erlang exception class.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcError {
    Error(Term),
    Exit(Term),
    Throw(Term),
}

struct Slot {
    mailbox: mpsc::UnboundedSender<Signal>,
    task: Option<AbortHandle>,
    meta: Arc<info::ProcMeta>,
    /// A mailbox owned by Rust code ([`Node::process`]) rather than a task.
    owned: bool,
}

impl Slot {
    fn send(&self, signal: Signal) -> bool {
        to_mailbox(&self.mailbox, &self.meta, signal)
    }
}

/// `signal` into a process's mailbox, counted and traced as a delivery.
#[inline]
fn to_mailbox(
    mailbox: &mpsc::UnboundedSender<Signal>,
    meta: &info::ProcMeta,
    signal: Signal,
) -> bool {
    let message = match &signal {
        Signal::Message(m) => {
            // One relaxed load when nobody traces the process.
            meta.trace.received(m);
            true
        }
        Signal::Exited(_) => false,
    };
    // Counted before the send: the receiver's count-out can then never
    // come first (the channel orders the two), so the counter never
    // goes below zero and never drifts.
    if message {
        meta.delivered();
    }
    let ok = mailbox.send(signal).is_ok();
    if !ok && message {
        meta.undelivered();
    }
    ok
}

/// Where the last registered name a connection's reader delivered to led:
/// the process's mailbox, held weakly (a process whose slot is gone must
/// see its mailbox closed), and the count of name changes it was found
/// at. While no name has changed since, a stream of sends to one name is
/// delivered without the process table's lock or its two lookups.
#[derive(Default)]
pub(crate) struct NameCache {
    last: Option<CachedName>,
}

struct CachedName {
    name: term::Atom,
    epoch: u64,
    mailbox: mpsc::WeakUnboundedSender<Signal>,
    meta: Arc<info::ProcMeta>,
}

impl ProcState {
    /// `msg` into the mailbox of local process `id`; false when there is none.
    fn deliver(&self, id: Option<u32>, msg: Term) -> bool {
        match id.and_then(|n| self.slots.get(&n)) {
            Some(slot) => slot.send(Signal::Message(msg)),
            None => false,
        }
    }
}

struct ProcState {
    table: ProcessTable,
    slots: HashMap<u32, Slot, local_hash::LocalHash>,
}

enum PeerState {
    Up(ConnectionHandle),
    Pending {
        attempt: u64,
        queue: Vec<Message>,
        waiters: Vec<oneshot::Sender<Result<(), ConnectError>>>,
    },
}

type Peers = HashMap<String, PeerState, foldhash::fast::RandomState>;

pub(crate) struct Inner {
    name: String,
    creation: u32,
    cookie: String,
    flags: u64,
    pub(crate) config: NodeConfig,
    next_number: AtomicU32,
    next_ref: AtomicU64,
    next_attempt: AtomicU64,
    procs: Mutex<ProcState>,
    /// The process table's count of name changes (see [`NameCache`]).
    names_epoch: Arc<AtomicU64>,
    /// By node name, hashed with a randomly seeded fast hasher: every
    /// remote send looks its peer up here.
    peers: Mutex<Peers>,
    events: broadcast::Sender<NodeEvent>,
    functions: RwLock<HashMap<(String, String, usize), RpcFunction>>,
    listen_port: u16,
    background: Mutex<Vec<AbortHandle>>,
    _epmd: Mutex<Option<crate::epmd::EmbeddedEpmd>>,
    _registration: Mutex<Option<crate::epmd::Registration>>,
    shutting_down: std::sync::atomic::AtomicBool,
    warn_limit: Mutex<crate::warn_limit::WarnLimit<String>>,
    /// The pg scopes running on this node, by name (`services::pg::scope`).
    pub(crate) pg_scopes: Mutex<HashMap<String, crate::services::pg::Pg>>,
    /// What a graceful stop runs first (`shutdown`).
    hooks: Mutex<shutdown::Hooks>,
    /// Peers refused until unblocked (`Node::block`).
    blocked: shutdown::Blocked,
    any_blocked: std::sync::atomic::AtomicBool,
}

/// A running node. Cheap to clone; every clone is the same node.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.name)
            .finish()
    }
}

fn read_cookie_file() -> Result<String, std::io::Error> {
    let home = std::env::var_os("HOME")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "HOME is not set"))?;
    let path = std::path::Path::new(&home).join(".erlang.cookie");
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim().to_string())
}

fn local_host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Splits `name@host`.
pub fn split_node_name(node: &str) -> Option<(&str, &str)> {
    let (name, host) = node.split_once('@')?;
    if name.is_empty() || host.is_empty() || host.contains('@') {
        return None;
    }
    Some((name, host))
}

impl Node {
    /// Starts a node: binds the distribution listener, registers in EPMD (starting
    /// the embedded one when none answers), and starts the services every BEAM
    /// node expects (`net_kernel`, `global_name_server`, `rex`).
    pub async fn start(mut config: NodeConfig) -> Result<Node, NodeError> {
        if !config.name.contains('@') {
            config.name = format!("{}@{}", config.name, local_host_name());
        }
        let (alive, _host) = split_node_name(&config.name)
            .ok_or_else(|| NodeError::InvalidName(config.name.clone()))?;
        let alive = alive.to_string();
        let cookie = match &config.cookie {
            Some(c) => c.clone(),
            None => read_cookie_file().map_err(NodeError::NoCookie)?,
        };
        let addr = SocketAddr::new(config.listen_addr, config.listen_port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::Listen { addr, source })?;
        let listen_port = listener
            .local_addr()
            .map_err(|source| NodeError::Listen { addr, source })?
            .port();

        let mut embedded = None;
        let mut registration = None;
        let creation = match &config.discovery {
            Discovery::Epmd { port } => {
                let entry = crate::epmd::NodeEntry::new(&alive, listen_port, config.hidden);
                let (emb, reg) = register_in_epmd(*port, &entry).await?;
                embedded = emb;
                let creation = reg.creation;
                registration = Some(reg);
                creation
            }
            Discovery::Fixed { .. } => rand::random::<u32>() | 1,
        };

        let table = ProcessTable::new(&config.name, creation);
        let names_epoch = table.names_epoch();
        let (events, _) = broadcast::channel(1024);
        let flags = crate::dist::flags::offered(config.hidden);
        let inner = Arc::new(Inner {
            name: config.name.clone(),
            creation,
            cookie,
            flags,
            config,
            next_number: AtomicU32::new(1),
            next_ref: AtomicU64::new(1),
            next_attempt: AtomicU64::new(1),
            procs: Mutex::new(ProcState {
                table,
                slots: HashMap::default(),
            }),
            names_epoch,
            peers: Mutex::new(Peers::default()),
            events,
            functions: RwLock::new(HashMap::new()),
            listen_port,
            background: Mutex::new(Vec::new()),
            _epmd: Mutex::new(embedded),
            _registration: Mutex::new(registration),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            warn_limit: Mutex::default(),
            pg_scopes: Mutex::new(HashMap::new()),
            hooks: Mutex::default(),
            blocked: Mutex::default(),
            any_blocked: std::sync::atomic::AtomicBool::new(false),
        });
        let node = Node { inner };
        let acceptor = tokio::spawn(connection::accept_loop(node.downgrade(), listener));
        node.add_background(acceptor.abort_handle());
        if let Discovery::Epmd { port } = node.inner.config.discovery {
            let keeper = tokio::spawn(keep_registered(node.downgrade(), port, alive));
            node.add_background(keeper.abort_handle());
        }
        crate::services::start(&node);
        #[cfg(feature = "tls")]
        let transport = match &node.config().tls {
            Some(tls) => format!("TLS ({})", tls.summary()),
            None => "TCP".to_string(),
        };
        #[cfg(not(feature = "tls"))]
        let transport = "TCP";
        tracing::info!(node = %node.name(), port = listen_port, creation, %transport, "node started");
        Ok(node)
    }

    pub(crate) fn downgrade(&self) -> WeakNode {
        WeakNode(Arc::downgrade(&self.inner))
    }

    fn add_background(&self, h: AbortHandle) {
        if let Ok(mut b) = self.inner.background.lock() {
            b.push(h);
        }
    }

    /// This node's full name, `name@host`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn creation(&self) -> u32 {
        self.inner.creation
    }

    pub fn cookie(&self) -> &str {
        &self.inner.cookie
    }

    pub fn is_hidden(&self) -> bool {
        self.inner.config.hidden
    }

    /// The TCP port the distribution listener accepts on.
    pub fn listen_port(&self) -> u16 {
        self.inner.listen_port
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    pub(crate) fn handshake_config(&self) -> HandshakeConfig {
        HandshakeConfig {
            name: self.inner.name.clone(),
            creation: self.inner.creation,
            flags: self.inner.flags,
            cookie: self.inner.cookie.clone(),
        }
    }

    /// Subscribes to nodeup/nodedown events.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// The peers we have a connection to (visible and hidden).
    pub fn nodes(&self) -> Vec<String> {
        match self.inner.peers.lock() {
            Ok(p) => p
                .iter()
                .filter(|(_, s)| matches!(s, PeerState::Up(_)))
                .map(|(n, _)| n.clone())
                .collect(),
            Err(_) => vec![],
        }
    }

    /// The peers we are connected to that are visible (as `nodes()` on the BEAM).
    pub fn visible_nodes(&self) -> Vec<String> {
        match self.inner.peers.lock() {
            Ok(p) => p
                .iter()
                .filter_map(|(n, s)| match s {
                    PeerState::Up(h) if h.peer.flags & crate::dist::flags::PUBLISHED != 0 => {
                        Some(n.clone())
                    }
                    _ => None,
                })
                .collect(),
            Err(_) => vec![],
        }
    }

    /// Bytes and control messages moved on each live connection since its
    /// handshake, by peer name in name order. A peer's counters start from
    /// zero when it reconnects.
    pub fn connection_stats(&self) -> Vec<(String, ConnectionStats)> {
        let mut out: Vec<(String, ConnectionStats)> = match self.inner.peers.lock() {
            Ok(p) => p
                .iter()
                .filter_map(|(n, s)| match s {
                    PeerState::Up(h) => Some((n.clone(), h.stats())),
                    PeerState::Pending { .. } => None,
                })
                .collect(),
            Err(_) => vec![],
        };
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Estimated bytes queued towards `node` and not yet taken by the
    /// connection's writer; `None` when not connected. Sends never wait,
    /// and a queue past [`NodeConfig::max_send_queue`] closes the
    /// connection: a program that sends bursts larger than that waits for
    /// this to fall first, as a BEAM process is suspended on a busy
    /// distribution port.
    pub fn send_queue_bytes(&self, node: &str) -> Option<usize> {
        match self.inner.peers.lock().ok()?.get(node)? {
            PeerState::Up(h) => Some(h.queued_bytes()),
            PeerState::Pending { .. } => None,
        }
    }

    pub fn is_connected(&self, node: &str) -> bool {
        matches!(
            self.inner
                .peers
                .lock()
                .ok()
                .as_deref()
                .and_then(|p| p.get(node)),
            Some(PeerState::Up(_))
        )
    }

    // ---------------------------------------------------------------- refs

    /// A new reference on this node.
    pub fn make_ref(&self) -> Reference {
        let n = self.inner.next_ref.fetch_add(1, Ordering::Relaxed);
        Reference {
            node: term::Atom::from(self.inner.name.as_str()),
            id: vec![
                (n & 0x3ffff) as u32,
                ((n >> 18) & 0xffff_ffff) as u32,
                (n >> 50) as u32 ^ 0x5eed,
            ],
            creation: self.inner.creation,
        }
    }

    // ---------------------------------------------------------------- processes

    fn lock_procs(&self) -> std::sync::MutexGuard<'_, ProcState> {
        // A panic while holding this lock would be a bug in this module; keep
        // serving rather than poisoning every later caller.
        self.inner
            .procs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn allocate(&self, owned: bool) -> (Pid, mpsc::UnboundedReceiver<Signal>, Arc<info::ProcMeta>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let meta = Arc::new(info::ProcMeta::default());
        let mut st = self.lock_procs();
        loop {
            let n =
                self.inner.next_number.fetch_add(1, Ordering::Relaxed) & table::MAX_LOCAL_NUMBER;
            if n == 0 || st.table.contains_id(n) {
                continue;
            }
            let pid = st.table.insert(n);
            st.slots.insert(
                n,
                Slot {
                    mailbox: tx,
                    task: None,
                    meta: meta.clone(),
                    owned,
                },
            );
            return (pid, rx, meta);
        }
    }

    /// A new process whose mailbox the caller owns (like a C node's mbox). The
    /// process exits with `normal` when the [`Process`] is dropped.
    pub fn process(&self) -> Process {
        let (pid, rx, meta) = self.allocate(true);
        Process::new(self.clone(), pid, rx, meta, true)
    }

    /// Spawns a process running `f`. The future's output is the exit reason;
    /// a panic exits with `{panic, Message}`.
    pub fn spawn<F, Fut>(&self, f: F) -> Pid
    where
        F: FnOnce(Process) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ProcessExit> + Send + 'static,
    {
        self.spawn_opts(f, None, false)
    }

    /// Spawns a process linked to `link_to`.
    pub fn spawn_link<F, Fut>(&self, link_to: &Pid, f: F) -> Pid
    where
        F: FnOnce(Process) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ProcessExit> + Send + 'static,
    {
        self.spawn_opts(f, Some(link_to.clone()), false)
    }

    pub(crate) fn spawn_opts<F, Fut>(&self, f: F, link_to: Option<Pid>, trap_exit: bool) -> Pid
    where
        F: FnOnce(Process) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ProcessExit> + Send + 'static,
    {
        let (pid, rx, meta) = self.allocate(false);
        if trap_exit {
            self.set_trap_exit(&pid, true);
        }
        if let Some(other) = &link_to {
            self.link(&pid, other);
        }
        let node = self.clone();
        let process = Process::new(node.clone(), pid.clone(), rx, meta, false);
        let guard = ExitGuard {
            node: node.clone(),
            pid: pid.clone(),
            reason: None,
        };
        let handle = tokio::spawn(async move {
            let mut guard = guard;
            let reason = f(process).await;
            guard.reason = Some(reason.into_term());
        });
        let mut st = self.lock_procs();
        if let Some(n) = st.table.local_id(&pid) {
            if let Some(slot) = st.slots.get_mut(&n) {
                slot.task = Some(handle.abort_handle());
            }
        } else {
            // It exited (or was killed) before we could record its task.
            handle.abort();
        }
        pid
    }

    pub fn is_process_alive(&self, pid: &Pid) -> bool {
        self.lock_procs().table.is_alive(pid)
    }

    /// Every live process of this node (`erlang:processes/0`).
    pub fn processes(&self) -> Vec<Pid> {
        self.lock_procs().table.all_pids()
    }

    /// Number of live local processes.
    pub fn process_count(&self) -> usize {
        self.lock_procs().table.len()
    }

    pub fn register(&self, name: &str, pid: &Pid) -> Result<(), RegisterError> {
        let mut st = self.lock_procs();
        let n = st.table.local_id(pid).ok_or(RegisterError::NoProc)?;
        st.table.register(n, name)
    }

    pub fn unregister(&self, name: &str) -> bool {
        self.lock_procs().table.unregister(name)
    }

    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.lock_procs().table.whereis(name)
    }

    pub fn registered(&self) -> Vec<String> {
        self.lock_procs().table.registered()
    }

    /// What `erlang:process_info/2` reports for a local process; `None`
    /// when it is not alive (or not ours).
    pub fn process_info(&self, pid: &Pid) -> Option<info::ProcessInfo> {
        let st = self.lock_procs();
        let n = st.table.local_id(pid)?;
        let slot = st.slots.get(&n)?;
        let t = st.table.info(n)?;
        let queued = slot.meta.queue_len();
        Some(info::ProcessInfo {
            pid: pid.clone(),
            memory: info::bookkeeping_bytes(
                t.links.len(),
                t.monitors.len() + t.monitored_by.len(),
                queued,
            ),
            registered_name: t.name,
            initial_call: info::initial_call_of(&slot.meta, slot.owned),
            status: info::status_of(&slot.meta),
            message_queue_len: queued,
            reductions: info::work_of(&slot.meta),
            links: t.links,
            monitors: t.monitors,
            monitored_by: t.monitored_by,
            trap_exit: t.trap_exit,
        })
    }

    /// Names what a local process runs, for `process_info`'s `initial_call`
    /// and `current_function` (only the first name given counts). Returns
    /// false when the process is not alive.
    pub fn set_initial_call(&self, pid: &Pid, mfa: info::Mfa) -> bool {
        let st = self.lock_procs();
        match st.table.local_id(pid).and_then(|n| st.slots.get(&n)) {
            Some(slot) => {
                slot.meta.set_initial_call(mfa);
                true
            }
            None => false,
        }
    }

    /// `erlang:trace(Pid, How, Flags)` for a local process: turns `flags`
    /// on (reported to `tracer`, which may be on another node) or off.
    /// Tracing stops by itself when the tracer exits or its node goes.
    pub fn trace(
        &self,
        pid: &Pid,
        on: bool,
        flags: trace::TraceFlags,
        tracer: Option<Pid>,
    ) -> Result<(), trace::TraceError> {
        // The hook is set outside the table's lock (see `trace::set`).
        let meta = {
            let st = self.lock_procs();
            st.table
                .local_id(pid)
                .and_then(|n| st.slots.get(&n))
                .map(|s| s.meta.clone())
        };
        let meta = meta.ok_or(trace::TraceError::NoProc)?;
        trace::set(self, pid, &meta, on, flags, tracer)
    }

    /// `erlang:trace_info(Pid, flags | tracer)` for a local process: `None`
    /// when it is not alive, `Some(None)` when it is not traced.
    pub fn trace_info(&self, pid: &Pid) -> Option<Option<(trace::TraceFlags, Pid)>> {
        let st = self.lock_procs();
        let n = st.table.local_id(pid)?;
        Some(st.slots.get(&n)?.meta.trace.info())
    }

    pub fn set_trap_exit(&self, pid: &Pid, on: bool) -> bool {
        let mut st = self.lock_procs();
        match st.table.local_id(pid) {
            Some(n) => st.table.set_trap_exit(n, on),
            None => false,
        }
    }

    pub(crate) fn add_alias(&self, pid: &Pid, reference: &Reference) {
        let mut st = self.lock_procs();
        if let Some(n) = st.table.local_id(pid) {
            st.table.add_alias(n, reference);
        }
    }

    pub(crate) fn remove_alias(&self, pid: &Pid, reference: &Reference) {
        let mut st = self.lock_procs();
        if let Some(n) = st.table.local_id(pid) {
            st.table.remove_alias(n, reference);
        }
    }

    /// Applies table effects: local deliveries and aborts under the lock we hold,
    /// remote control messages after it is released.
    fn apply(&self, st: &mut ProcState, effects: Vec<Effect>, remote: &mut Vec<(String, Message)>) {
        for effect in effects {
            match effect {
                Effect::Deliver { to, signal } => {
                    if let Some(slot) = st.slots.get(&to) {
                        slot.send(signal);
                    }
                }
                Effect::Abort { id } => {
                    if let Some(slot) = st.slots.remove(&id) {
                        if let Some(task) = slot.task {
                            task.abort();
                        }
                    }
                }
                Effect::RemoteLinkExit { from, to, reason } => {
                    let node = to.node.name.to_string();
                    remote.push((node, exit_message_for(from, to, reason)));
                }
                Effect::RemoteDown {
                    from,
                    to,
                    reference,
                    reason,
                } => {
                    let from_proc = match from {
                        Term::Pid(p) => PidOrAtom::Pid(p),
                        Term::Atom(a) => PidOrAtom::Atom(a),
                        _ => continue,
                    };
                    let node = to.node.name.to_string();
                    remote.push((
                        node,
                        Message::monitor_p_exit(from_proc, to, reference, reason),
                    ));
                }
                Effect::RemoteDemonitor {
                    from,
                    target,
                    node,
                    reference,
                } => {
                    let to_proc = match target {
                        Term::Pid(p) => PidOrAtom::Pid(p),
                        Term::Atom(a) => PidOrAtom::Atom(a),
                        _ => continue,
                    };
                    remote.push((node, Message::demonitor_p(from, to_proc, reference)));
                }
                Effect::Gone { .. } => {}
            }
        }
    }

    /// Runs a table operation and carries out its effects.
    fn with_table<R>(&self, f: impl FnOnce(&mut ProcessTable) -> (R, Vec<Effect>)) -> R {
        let mut remote = Vec::new();
        let result = {
            let mut st = self.lock_procs();
            let (result, effects) = f(&mut st.table);
            self.apply(&mut st, effects, &mut remote);
            result
        };
        for (node, msg) in remote {
            self.send_control_existing(&node, msg);
        }
        result
    }

    /// The process `pid` ends with `reason` (idempotent).
    pub fn exit_process(&self, pid: &Pid, reason: Term) {
        self.with_table(|t| match t.local_id(pid) {
            Some(n) => ((), t.terminate(n, reason)),
            None => ((), vec![]),
        });
    }

    /// Sends the exit signal `exit(to, reason)` from `from`.
    pub fn exit(&self, from: &Pid, to: &Pid, reason: Term) {
        if to.node.name == self.inner.name {
            self.with_table(|t| match t.local_id(to) {
                Some(n) => ((), t.exit_signal(n, from.clone(), reason)),
                None => ((), vec![]),
            });
        } else {
            self.route(&to.node.name, true, |flags| {
                if flags & crate::dist::flags::EXIT_PAYLOAD != 0 {
                    Message::payload_exit2(from.clone(), to.clone(), reason)
                } else {
                    Message::exit2(from.clone(), to.clone(), reason)
                }
            });
        }
    }

    /// Links two processes, `from` being local.
    pub fn link(&self, from: &Pid, to: &Pid) {
        let remote = to.node.name != self.inner.name;
        let linked = self.with_table(|t| match t.local_id(from) {
            Some(n) => (true, t.link(n, to)),
            None => (false, vec![]),
        });
        if linked && remote {
            self.send_control(&to.node.name, Message::link(from.clone(), to.clone()));
        }
    }

    /// Removes a link, `from` being local. Remote peers get UNLINK_ID when they
    /// support it, so a concurrent exit cannot be lost or duplicated.
    pub fn unlink(&self, from: &Pid, to: &Pid) {
        self.with_table(|t| {
            if let Some(n) = t.local_id(from) {
                t.unlink(n, to);
            }
            ((), vec![])
        });
        if to.node.name != self.inner.name {
            self.route(&to.node.name, false, |flags| {
                if flags & crate::dist::flags::UNLINK_ID != 0 {
                    let id = self.inner.next_ref.fetch_add(1, Ordering::Relaxed);
                    Message::unlink_id(term::int(id as i64), from.clone(), to.clone())
                } else {
                    Message::unlink(from.clone(), to.clone())
                }
            });
        }
    }

    /// `from` (local) monitors `target`. A missing local target gives a `DOWN`
    /// with `noproc` at once; a remote one is asked with MONITOR_P.
    pub fn monitor(&self, from: &Pid, target: &Dest) -> Reference {
        let reference = self.make_ref();
        let resolved;
        let target = match target {
            Dest::Via(v) => match v.whereis() {
                Some(pid) => {
                    resolved = Dest::Pid(pid);
                    &resolved
                }
                None => {
                    let down = crate::tup![
                        term::atom("DOWN"),
                        Term::Reference(Box::new(reference.clone())),
                        term::atom("process"),
                        v.name().clone(),
                        term::atom("noproc")
                    ];
                    self.deliver_local(from, down);
                    return reference;
                }
            },
            other => other,
        };
        match target {
            Dest::Via(_) => {}
            Dest::Pid(p) if p.node.name == self.inner.name => {
                let r = reference.clone();
                self.with_table(|t| match t.local_id(from) {
                    Some(n) => {
                        let tid = t.local_id(p);
                        (
                            (),
                            t.monitor_local(n, tid, MonitorObject::Pid(p.clone()), r),
                        )
                    }
                    None => ((), vec![]),
                });
            }
            Dest::Name(name) => {
                self.monitor_local_name(from, name, &reference);
            }
            Dest::Remote(name, node) if node == &self.inner.name => {
                self.monitor_local_name(from, name, &reference);
            }
            Dest::Pid(p) => {
                let node = p.node.name.clone();
                self.with_table(|t| {
                    if let Some(n) = t.local_id(from) {
                        t.monitor_remote(
                            n,
                            MonitorObject::Pid(p.clone()),
                            &node,
                            reference.clone(),
                        );
                    }
                    ((), vec![])
                });
                self.send_control(
                    &node,
                    Message::monitor_p(from.clone(), PidOrAtom::Pid(p.clone()), reference.clone()),
                );
            }
            Dest::Remote(name, node) => {
                self.with_table(|t| {
                    if let Some(n) = t.local_id(from) {
                        t.monitor_remote(
                            n,
                            MonitorObject::Name(name.clone(), node.clone()),
                            node,
                            reference.clone(),
                        );
                    }
                    ((), vec![])
                });
                self.send_control(
                    node,
                    Message::monitor_p(
                        from.clone(),
                        PidOrAtom::Atom(term::Atom::from(name.as_str())),
                        reference.clone(),
                    ),
                );
            }
        }
        reference
    }

    fn monitor_local_name(&self, from: &Pid, name: &str, reference: &Reference) {
        let me = self.inner.name.clone();
        self.with_table(|t| match t.local_id(from) {
            Some(n) => {
                let tid = t.name_id(name);
                (
                    (),
                    t.monitor_local(
                        n,
                        tid,
                        MonitorObject::Name(name.to_string(), me),
                        reference.clone(),
                    ),
                )
            }
            None => ((), vec![]),
        });
    }

    /// Cancels a monitor held by local `from`.
    pub fn demonitor(&self, from: &Pid, reference: &Reference) {
        let remote = self.with_table(|t| match t.local_id(from) {
            Some(n) => (t.demonitor(n, reference), vec![]),
            None => (None, vec![]),
        });
        if let Some((target, node)) = remote {
            let to_proc = match target {
                Term::Pid(p) => PidOrAtom::Pid(p),
                Term::Atom(a) => PidOrAtom::Atom(a),
                _ => return,
            };
            self.send_control_existing(
                &node,
                Message::demonitor_p(from.clone(), to_proc, reference.clone()),
            );
        }
    }

    // ---------------------------------------------------------------- sending

    /// Delivers a message to a local process by number; false when it is gone.
    fn deliver_local(&self, pid: &Pid, msg: Term) -> bool {
        let st = self.lock_procs();
        st.deliver(st.table.local_id(pid), msg)
    }

    /// Delivers `msg` to each of the local `pids` under one lock (a fanout
    /// to thousands of subscribers takes the process table once, not once
    /// per subscriber). Returns the pids that are not alive.
    pub(crate) fn deliver_local_all<'a>(
        &self,
        pids: impl IntoIterator<Item = &'a Pid>,
        msg: &Term,
    ) -> Vec<Pid> {
        let st = self.lock_procs();
        pids.into_iter()
            .filter(|pid| !st.deliver(st.table.local_id(pid), msg.clone()))
            .cloned()
            .collect()
    }

    /// [`Node::deliver_by_name`] through a reader's [`NameCache`].
    fn deliver_by_cached_name(
        &self,
        peer: &PeerInfo,
        name: term::Atom,
        msg: Term,
        names: &mut NameCache,
    ) {
        // Acquire: pairs with the table's count after a change, so an
        // unchanged count means the change is not made yet, not unseen.
        let epoch = self.inner.names_epoch.load(Ordering::Acquire);
        if let Some(c) = &names.last {
            if c.epoch == epoch && c.name == name {
                if let Some(mailbox) = c.mailbox.upgrade() {
                    to_mailbox(&mailbox, &c.meta, Signal::Message(msg));
                    return;
                }
            }
        }
        let st = self.lock_procs();
        let slot = st.table.name_id(&name.name).and_then(|n| st.slots.get(&n));
        let Some(slot) = slot else {
            names.last = None;
            tracing::trace!(name = %name.name, from = %peer.name, "send to unregistered name dropped");
            return;
        };
        names.last = Some(CachedName {
            name,
            // Read again under the lock: the count that goes with this
            // lookup.
            epoch: self.inner.names_epoch.load(Ordering::Relaxed),
            mailbox: slot.mailbox.downgrade(),
            meta: slot.meta.clone(),
        });
        slot.send(Signal::Message(msg));
    }

    fn deliver_by_name(&self, name: &str, msg: Term) -> bool {
        let st = self.lock_procs();
        st.deliver(st.table.name_id(name), msg)
    }

    fn deliver_by_alias(&self, alias: &Reference, msg: Term) -> bool {
        let st = self.lock_procs();
        st.deliver(st.table.alias_owner(alias), msg)
    }

    /// Sends `msg` to `to`. `from` is needed by the wire for sends by name to
    /// another node; local sends never fail (like `!`, a dead target drops it).
    pub fn send(&self, from: &Pid, to: &Dest, msg: Term) {
        self.send_with(from, to, msg, true);
    }

    /// `erlang:send(Dest, Msg, [noconnect])`: a message for a node we are not
    /// connected to is dropped instead of opening a connection. Replies to a
    /// peer use this, so a late reply never resurrects a closed connection.
    pub fn send_noconnect(&self, from: &Pid, to: &Dest, msg: Term) {
        self.send_with(from, to, msg, false);
    }

    fn send_with(&self, from: &Pid, to: &Dest, msg: Term, connect: bool) {
        match to {
            Dest::Via(v) => match v.whereis() {
                Some(pid) => self.send_with(from, &Dest::Pid(pid), msg, connect),
                None => {
                    tracing::debug!(name = ?v.name(), "send to an unregistered via name dropped")
                }
            },
            Dest::Pid(p) if p.node.name == self.inner.name => {
                self.deliver_local(p, msg);
            }
            Dest::Pid(p) => {
                // The form depends on the peer's flags, read under the same lock
                // that routes the message (one lock per send).
                self.route(&p.node.name, connect, |flags| {
                    if flags & crate::dist::flags::SEND_SENDER != 0 {
                        Message::send_sender(from.clone(), p.clone(), msg)
                    } else {
                        Message::send(p.clone(), msg)
                    }
                });
            }
            Dest::Name(name) => {
                self.deliver_by_name(name, msg);
            }
            Dest::Remote(name, node) if node == &self.inner.name => {
                self.deliver_by_name(name, msg);
            }
            // Built where the encoder takes it: a `Message` is the size of
            // its largest variant, and every move of it a copy.
            Dest::Remote(name, node) => self.route(node, connect, |_| {
                Message::reg_send(from.clone(), term::Atom::from(name.as_str()), msg)
            }),
        }
    }

    /// Sends to a process alias (a reference), local or remote.
    pub fn send_alias(&self, from: &Pid, alias: &Reference, msg: Term) {
        if alias.node.name == self.inner.name {
            self.deliver_by_alias(alias, msg);
        } else {
            self.send_control(
                &alias.node.name,
                Message::alias_send(from.clone(), alias.clone(), msg),
            );
        }
    }

    /// Answers a gen_server call whose `From` is `{Pid, Tag}`. With an OTP 24+
    /// alias tag `[alias|Ref]` the reply goes to the alias, so a caller that
    /// already gave up never sees it.
    pub fn reply(&self, replier: &Pid, from: &Term, reply: Term) {
        let Some([to, tag]) = term::as_tuple(from).and_then(|e| <&[Term; 2]>::try_from(e).ok())
        else {
            tracing::debug!(from = %from.in_node(self.name()), "gen reply to a malformed From; dropped");
            return;
        };
        let msg = crate::tup![tag.clone(), reply];
        if let Some(alias) = alias_of_tag(tag) {
            let peer_alias_ok = alias.node.name == self.inner.name
                || self.peer_has(&alias.node.name, crate::dist::flags::ALIAS);
            if peer_alias_ok {
                self.send_alias(replier, alias, msg);
                return;
            }
        }
        if let Term::Pid(p) = to {
            self.send(replier, &Dest::Pid(p.clone()), msg);
        }
    }

    fn peer_has(&self, node: &str, flag: u64) -> bool {
        match self
            .inner
            .peers
            .lock()
            .ok()
            .as_deref()
            .and_then(|p| p.get(node))
        {
            Some(PeerState::Up(h)) => h.peer.flags & flag != 0,
            // Not yet connected: every peer we accept is OTP 25+, which has them.
            _ => true,
        }
    }

    /// Sends a control message to `node`, connecting first when needed. Messages
    /// queued during the connect go out in order once it is up.
    pub(crate) fn send_control(&self, node: &str, msg: Message) {
        self.route(node, true, |_| msg);
    }

    /// Sends only over an existing or pending connection (signals that make no
    /// sense to deliver by auto-connecting, like a DEMONITOR or an unlink ack).
    fn send_control_existing(&self, node: &str, msg: Message) {
        self.route(node, false, |_| msg);
    }

    /// Routes the control message `build` makes from the peer's distribution
    /// flags. A peer not connected yet is assumed to have every flag: every peer
    /// we accept is OTP 25 or later. With `connect`, an unknown peer is dialled
    /// and the message waits in its queue.
    fn route(&self, node: &str, connect: bool, build: impl FnOnce(u64) -> Message) {
        if node == self.inner.name || self.inner.shutting_down.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut peers) = self.inner.peers.lock() else {
            return;
        };
        match peers.get_mut(node) {
            // Cut off (`block`): not even a connection still open carries it.
            Some(PeerState::Up(_)) if self.is_blocked(node) => {}
            Some(PeerState::Up(h)) => {
                // Encoded by this thread, but not under the node's peer
                // table: senders to other peers (or this one) go on meanwhile.
                let outbox = h.outbox();
                let msg = build(h.peer.flags);
                drop(peers);
                outbox.send(msg);
            }
            Some(PeerState::Pending { queue, .. }) => queue.push(build(!0)),
            None if connect => {
                let attempt = self.open_pending(&mut peers, node, vec![build(!0)], vec![]);
                drop(peers);
                self.spawn_connect(node.to_string(), attempt);
            }
            None => {}
        }
    }

    /// Records a new pending connection to `node` and returns its attempt id;
    /// the caller starts the connect once the lock is released.
    fn open_pending(
        &self,
        peers: &mut Peers,
        node: &str,
        queue: Vec<Message>,
        waiters: Vec<oneshot::Sender<Result<(), ConnectError>>>,
    ) -> u64 {
        let attempt = self.inner.next_attempt.fetch_add(1, Ordering::Relaxed);
        peers.insert(
            node.to_string(),
            PeerState::Pending {
                attempt,
                queue,
                waiters,
            },
        );
        attempt
    }

    fn spawn_connect(&self, node: String, attempt: u64) {
        let weak = self.downgrade();
        let timeout = self.inner.config.connect_timeout;
        if self.is_blocked(&node) {
            let reason = "blocked (Node::block)".to_string();
            self.connect_failed(
                &node,
                attempt,
                ConnectError::Unreachable {
                    node: node.clone(),
                    reason,
                },
            );
            return;
        }
        tokio::spawn(async move {
            let result = match tokio::time::timeout(
                timeout,
                connection::connect(weak.clone(), node.clone(), attempt),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(ConnectError::Timeout(node.clone())),
            };
            match result {
                Ok(()) => {}
                Err(ConnectError::SimultaneousLost(_)) => {
                    // The peer is connecting to us right now; its handshake takes
                    // over our pending entry. Give up only if it never arrives.
                    tokio::time::sleep(timeout).await;
                    if let Some(n) = weak.upgrade() {
                        n.connect_failed(&node, attempt, ConnectError::Timeout(node.clone()));
                    }
                }
                Err(e) => {
                    if let Some(n) = weak.upgrade() {
                        n.connect_failed(&node, attempt, e);
                    }
                }
            }
        });
    }

    /// Connects to `node` (no-op when connected). Like `net_kernel:connect_node/1`.
    pub async fn connect(&self, node: &str) -> Result<(), ConnectError> {
        if split_node_name(node).is_none() {
            return Err(ConnectError::InvalidName(node.to_string()));
        }
        if node == self.inner.name {
            return Ok(());
        }
        let rx = {
            let Ok(mut peers) = self.inner.peers.lock() else {
                return Err(ConnectError::ShuttingDown);
            };
            let (tx, rx) = oneshot::channel();
            match peers.get_mut(node) {
                Some(PeerState::Up(_)) => return Ok(()),
                Some(PeerState::Pending { waiters, .. }) => waiters.push(tx),
                None => {
                    let attempt = self.open_pending(&mut peers, node, vec![], vec![tx]);
                    drop(peers);
                    self.spawn_connect(node.to_string(), attempt);
                }
            }
            rx
        };
        rx.await.unwrap_or(Err(ConnectError::ShuttingDown))
    }

    /// Joins the cluster `seed` belongs to: connects to `seed`, asks its
    /// `rex` for `erlang:nodes()` and connects to each of those, as the
    /// BEAM's `global` meshes a cluster. Returns the nodes connected to
    /// (the seed first); a node that cannot be reached is skipped. Only the
    /// seed's connection is an error.
    pub async fn join(&self, seed: &str) -> Result<Vec<String>, ConnectError> {
        self.connect(seed).await?;
        let mut joined = vec![seed.to_string()];
        let mut p = self.process();
        let req = crate::tup![
            term::atom("call"),
            term::atom("erlang"),
            term::atom("nodes"),
            term::nil(),
            Term::Pid(p.pid().clone())
        ];
        let others = match p
            .call(
                Dest::Remote("rex".into(), seed.into()),
                req,
                Duration::from_secs(10),
            )
            .await
        {
            Ok(t) => term::as_list(&t).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(%seed, error = %e, "join: the seed did not list its nodes");
                Vec::new()
            }
        };
        for other in others.iter().filter_map(term::as_atom) {
            if other == self.inner.name || other == seed {
                continue;
            }
            match self.connect(other).await {
                Ok(()) => joined.push(other.to_string()),
                Err(e) => tracing::warn!(node = %other, error = %e, "join: cannot connect"),
            }
        }
        Ok(joined)
    }

    /// `net_adm:ping/1`: connects and asks the peer's `net_kernel` `{is_auth, Node}`.
    pub async fn ping(&self, node: &str) -> bool {
        if self.connect(node).await.is_err() {
            return false;
        }
        let mut p = self.process();
        let req = crate::tup![term::atom("is_auth"), term::atom(&self.inner.name)];
        matches!(
            p.call(Dest::Remote("net_kernel".into(), node.into()), req, Duration::from_secs(10))
                .await,
            Ok(ref t) if term::is_atom(t, "yes")
        )
    }

    /// Closes the connection to `node` (the peer sees nodedown).
    pub fn disconnect(&self, node: &str) -> bool {
        let handle = match self.inner.peers.lock() {
            Ok(p) => match p.get(node) {
                Some(PeerState::Up(h)) => Some(h.clone()),
                _ => None,
            },
            Err(_) => None,
        };
        match handle {
            Some(h) => {
                h.close();
                self.connection_down(node, h.id, "disconnect".into());
                true
            }
            None => false,
        }
    }

    // ------------------------------------------------------- connection events

    /// Server side of a handshake: the peer named itself; decide like
    /// net_kernel does. An accepted incoming handshake becomes the pending
    /// connection to that peer (so our own connects wait for it instead of
    /// racing it), and simultaneous connects are resolved by comparing names:
    /// the node with the greater name keeps its outgoing attempt.
    /// Returns the status and, when accepted, the attempt id to complete with.
    pub(crate) fn accept_status(&self, peer: &str) -> (ServerStatus, Option<u64>) {
        if self.inner.shutting_down.load(Ordering::Relaxed)
            || peer == self.inner.name
            || self.is_blocked(peer)
        {
            return (ServerStatus::NotAllowed, None);
        }
        let Ok(mut peers) = self.inner.peers.lock() else {
            return (ServerStatus::NotAllowed, None);
        };
        let fresh = self.inner.next_attempt.fetch_add(1, Ordering::Relaxed);
        match peers.get_mut(peer) {
            None => {
                peers.insert(
                    peer.to_string(),
                    PeerState::Pending {
                        attempt: fresh,
                        queue: vec![],
                        waiters: vec![],
                    },
                );
                (ServerStatus::Ok, Some(fresh))
            }
            // The peer restarted (or lost the connection before we noticed): the
            // new connection replaces the old one if the peer confirms.
            Some(PeerState::Up(_)) => (ServerStatus::Alive, None),
            Some(PeerState::Pending { attempt, .. }) => {
                if self.inner.name.as_str() > peer {
                    (ServerStatus::Nok, None)
                } else {
                    // Theirs wins: our outgoing attempt is orphaned (its result
                    // will be ignored) and this handshake completes the entry.
                    *attempt = fresh;
                    (ServerStatus::OkSimultaneous, Some(fresh))
                }
            }
        }
    }

    /// A handshake completed. `attempt` is set for our outgoing connects; an
    /// outgoing attempt orphaned by a simultaneous incoming one is refused
    /// while that one is pending or up, and kept if it failed.
    pub(crate) fn connection_up(&self, handle: ConnectionHandle, attempt: Option<u64>) -> bool {
        let name = handle.peer.name.clone();
        let hidden = handle.peer.flags & crate::dist::flags::PUBLISHED == 0;
        let mut old = None;
        let waiters = {
            let Ok(mut peers) = self.inner.peers.lock() else {
                return false;
            };
            let (queue, waiters) = match peers.remove(&name) {
                Some(PeerState::Pending {
                    attempt: current,
                    queue,
                    waiters,
                }) => {
                    if let Some(a) = attempt {
                        if a != current {
                            peers.insert(
                                name,
                                PeerState::Pending {
                                    attempt: current,
                                    queue,
                                    waiters,
                                },
                            );
                            return false;
                        }
                    }
                    (queue, waiters)
                }
                Some(PeerState::Up(h)) => {
                    if attempt.is_some() {
                        peers.insert(name, PeerState::Up(h));
                        return false;
                    }
                    // The peer restarted and reconnected before we noticed.
                    old = Some(h);
                    (vec![], vec![])
                }
                // An outgoing attempt orphaned by a simultaneous incoming
                // one whose handshake then failed (or nothing pending at all
                // for an incoming one). The peer has this connection up and
                // nothing else connects the two, so it stays: refusing it
                // would show the peer a nodeup and at once a nodedown.
                None => {
                    if attempt.is_some() && self.inner.shutting_down.load(Ordering::Relaxed) {
                        return false;
                    }
                    (vec![], vec![])
                }
            };
            for msg in queue {
                handle.send(msg);
            }
            peers.insert(name.clone(), PeerState::Up(handle));
            waiters
        };
        if let Some(h) = old {
            h.close();
            self.node_down_effects(&name);
            let _ = self.inner.events.send(NodeEvent::Down {
                node: name.clone(),
                reason: "connection replaced".into(),
            });
        }
        for w in waiters {
            let _ = w.send(Ok(()));
        }
        tracing::info!(peer = %name, hidden, "nodeup");
        let _ = self.inner.events.send(NodeEvent::Up { node: name, hidden });
        true
    }

    /// True while `attempt` is still the pending connection to `node` (not
    /// orphaned by a simultaneous incoming connection, not completed).
    pub(crate) fn attempt_is_current(&self, node: &str, attempt: u64) -> bool {
        matches!(
            self.inner.peers.lock().ok().as_deref().and_then(|p| p.get(node)),
            Some(PeerState::Pending { attempt: a, .. }) if *a == attempt
        )
    }

    /// Our outgoing connect to `node` (attempt `attempt`) failed. Logged at
    /// WARN (rate-limited per node) only when nobody is waiting for the
    /// result: a caller of [`Node::connect`] gets the error as a value and
    /// reports it itself, so a failure is written once.
    pub(crate) fn connect_failed(&self, node: &str, attempt: u64, err: ConnectError) {
        let Some(waiters) = self.take_pending(node, attempt) else {
            return;
        };
        // Logged before the waiters hear of it, so their own report comes after.
        if waiters.is_empty() {
            crate::peer_warn!(self, node, peer = node, error = %err, "connect to {node} failed");
        } else {
            tracing::debug!(peer = node, error = %err, waiting = waiters.len(), "connect to {node} failed");
        }
        self.fail_waiters(node, waiters, err);
    }

    /// An incoming handshake from `node` that had become our pending
    /// connection to it failed; the acceptor logs it (in its own words).
    pub(crate) fn incoming_failed(&self, node: &str, attempt: u64, err: ConnectError) {
        if let Some(waiters) = self.take_pending(node, attempt) {
            self.fail_waiters(node, waiters, err);
        }
    }

    /// Every waiter of a failed connection gets `err`; links and monitors set
    /// up meanwhile see noconnection, as on the BEAM.
    fn fail_waiters(
        &self,
        node: &str,
        waiters: Vec<oneshot::Sender<Result<(), ConnectError>>>,
        err: ConnectError,
    ) {
        for w in waiters {
            let _ = w.send(Err(err.clone()));
        }
        self.node_down_effects(node);
    }

    /// Removes the pending connection `attempt` to `node` and returns its
    /// waiters, or `None` when `attempt` is no longer the pending one.
    fn take_pending(
        &self,
        node: &str,
        attempt: u64,
    ) -> Option<Vec<oneshot::Sender<Result<(), ConnectError>>>> {
        let waiters = {
            let mut peers = self.inner.peers.lock().ok()?;
            match peers.get(node) {
                Some(PeerState::Pending { attempt: a, .. }) if *a == attempt => {
                    match peers.remove(node) {
                        Some(PeerState::Pending { waiters, queue, .. }) => {
                            if !queue.is_empty() {
                                tracing::debug!(
                                    peer = node,
                                    dropped = queue.len(),
                                    "connect failed; queued signals dropped"
                                );
                            }
                            waiters
                        }
                        _ => vec![],
                    }
                }
                _ => return None,
            }
        };
        Some(waiters)
    }

    /// Whether a WARN about the misbehaving peer `key` (an address or a node
    /// name) may be written now: `Some(n)` with the number of lines about it
    /// left out before, `None` to leave this one out (see `warn_limit`).
    pub(crate) fn warn_allowed(&self, key: &str) -> Option<u64> {
        let mut limit = self.inner.warn_limit.lock().ok()?;
        match limit.check(key.to_string(), std::time::Instant::now()) {
            crate::warn_limit::Verdict::Log { suppressed } => Some(suppressed),
            crate::warn_limit::Verdict::Suppress => None,
        }
    }

    /// The connection `conn_id` to `node` ended.
    pub(crate) fn connection_down(&self, node: &str, conn_id: u64, reason: String) {
        {
            let Ok(mut peers) = self.inner.peers.lock() else {
                return;
            };
            match peers.get(node) {
                Some(PeerState::Up(h)) if h.id == conn_id => {
                    peers.remove(node);
                }
                _ => return,
            }
        }
        tracing::info!(peer = node, %reason, "nodedown");
        self.node_down_effects(node);
        let _ = self.inner.events.send(NodeEvent::Down {
            node: node.to_string(),
            reason,
        });
    }

    fn node_down_effects(&self, node: &str) {
        self.with_table(|t| ((), t.node_down(node)));
    }

    // ------------------------------------------------------- incoming signals

    /// Handles one control message from `peer`. Never panics; anything that does
    /// not fit is logged and dropped.
    /// A send from `peer` (decoded by `codec::decode_send_cached`): its
    /// message into the recipient's mailbox, as [`Node::handle_control`]
    /// delivers the sends.
    pub(crate) fn deliver_received(
        &self,
        peer: &PeerInfo,
        to: crate::dist::codec::Recipient,
        msg: Term,
        names: &mut NameCache,
    ) {
        use crate::dist::codec::Recipient;
        match to {
            Recipient::Pid(pid) => {
                self.deliver_local(&pid, msg);
            }
            Recipient::Name(name) => self.deliver_by_cached_name(peer, name, msg, names),
            Recipient::Alias(alias) => {
                self.deliver_by_alias(&alias, msg);
            }
        }
    }

    pub(crate) fn handle_control(&self, peer: &PeerInfo, msg: Message) {
        match msg {
            Message::Send(m) => {
                self.deliver_local(&m.to_pid, m.message);
            }
            Message::SendTt(m) => {
                self.deliver_local(&m.to_pid, m.message);
            }
            Message::SendSender(m) => {
                self.deliver_local(&m.to_pid, m.message);
            }
            Message::SendSenderTt(m) => {
                self.deliver_local(&m.to_pid, m.message);
            }
            Message::RegSend(m) => {
                if !self.deliver_by_name(&m.to_name.name, m.message) {
                    tracing::trace!(name = %m.to_name.name, from = %peer.name, "send to unregistered name dropped");
                }
            }
            Message::RegSendTt(m) => {
                self.deliver_by_name(&m.to_name.name, m.message);
            }
            Message::AliasSend(m) => {
                self.deliver_by_alias(&m.alias, m.message);
            }
            Message::AliasSendTt(m) => {
                self.deliver_by_alias(&m.alias, m.message);
            }
            Message::Link(m) => self.remote_link(peer, m.from_pid, m.to_pid),
            Message::Unlink(m) => self.remote_unlink(m.from_pid, m.to_pid),
            Message::UnlinkId(m) => {
                self.remote_unlink(m.from_pid.clone(), m.to_pid.clone());
                self.send_control_existing(
                    &peer.name,
                    Message::unlink_id_ack(m.id, m.to_pid, m.from_pid),
                );
            }
            Message::UnlinkIdAck(_) => {}
            Message::Exit(m) => self.remote_link_exit(m.from_pid, m.to_pid, m.reason),
            Message::ExitTt(m) => self.remote_link_exit(m.from_pid, m.to_pid, m.reason),
            Message::PayloadExit(m) => self.remote_link_exit(m.from_pid, m.to_pid, m.reason),
            Message::PayloadExitTt(m) => self.remote_link_exit(m.from_pid, m.to_pid, m.reason),
            Message::Exit2(m) => self.exit(&m.from_pid, &m.to_pid, m.reason),
            Message::Exit2Tt(m) => self.exit(&m.from_pid, &m.to_pid, m.reason),
            Message::PayloadExit2(m) => self.exit(&m.from_pid, &m.to_pid, m.reason),
            Message::PayloadExit2Tt(m) => self.exit(&m.from_pid, &m.to_pid, m.reason),
            Message::MonitorP(m) => self.remote_monitor(peer, m.from_pid, m.to_proc, m.reference),
            Message::DemonitorP(m) => self.with_table(|t| {
                let target = match &m.to_proc {
                    PidOrAtom::Pid(p) => t.local_id(p),
                    PidOrAtom::Atom(a) => t.name_id(&a.name),
                };
                if let Some(n) = target {
                    t.remote_demonitor(n, &m.reference);
                }
                ((), vec![])
            }),
            Message::MonitorPExit(m) => {
                self.remote_down(peer, m.from_proc, m.to_pid, m.reference, m.reason)
            }
            Message::PayloadMonitorPExit(m) => {
                self.remote_down(peer, m.from_proc, m.to_pid, m.reference, m.reason)
            }
            Message::SpawnRequest(m) => crate::services::erpc::spawn_request(
                self, peer, m.req_id, m.from_pid, m.mfa, m.opt_list, m.arg_list,
            ),
            Message::SpawnRequestTt(m) => crate::services::erpc::spawn_request(
                self, peer, m.req_id, m.from_pid, m.mfa, m.opt_list, m.arg_list,
            ),
            Message::SpawnReply(m) => self.spawn_reply(peer, m.req_id, m.to_pid, m.result),
            Message::SpawnReplyTt(m) => self.spawn_reply(peer, m.req_id, m.to_pid, m.result),
            Message::GroupLeader(_) | Message::NodeLink(_) | Message::Tick => {}
        }
    }

    /// SPAWN_REPLY to one of our spawn requests ([`Node::rpc`]). A refusal
    /// drops the monitor that was waiting for the process and tells the
    /// requester `{spawn_reply, ReqId, error, Reason}`; a spawned pid needs
    /// nothing (its DOWN carries the result).
    fn spawn_reply(&self, peer: &PeerInfo, request: Reference, to: Pid, result: PidOrAtom) {
        let PidOrAtom::Atom(reason) = result else {
            return;
        };
        let known = self.with_table(|t| {
            let id = t.local_id(&to);
            (id.and_then(|n| t.demonitor(n, &request)).is_some(), vec![])
        });
        if !known {
            tracing::debug!(peer = %peer.name, "SPAWN_REPLY for a request we never made; dropped");
            return;
        }
        let msg = rpc::spawn_refused_message(&request, Term::Atom(reason));
        self.deliver_local(&to, msg);
    }

    fn remote_link(&self, peer: &PeerInfo, from: Pid, to: Pid) {
        let ok = self.with_table(|t| (t.remote_link(&from, &to), vec![]));
        if !ok {
            // The BEAM answers a link to a dead process with an exit `noproc`.
            let msg = exit_message_for(to, from, term::atom("noproc"));
            self.send_control_existing(&peer.name, msg);
        }
    }

    fn remote_unlink(&self, from: Pid, to: Pid) {
        self.with_table(|t| {
            t.remote_unlink(&from, &to);
            ((), vec![])
        });
    }

    fn remote_link_exit(&self, from: Pid, to: Pid, reason: Term) {
        self.with_table(|t| match t.local_id(&to) {
            Some(n) => ((), t.link_exit(n, from, reason)),
            None => ((), vec![]),
        });
    }

    fn remote_monitor(&self, peer: &PeerInfo, from: Pid, to: PidOrAtom, reference: Reference) {
        let me = self.inner.name.clone();
        let ok = self.with_table(|t| {
            let (target, object) = match &to {
                PidOrAtom::Pid(p) => (t.local_id(p), MonitorObject::Pid(p.clone())),
                PidOrAtom::Atom(a) => (
                    t.name_id(&a.name),
                    MonitorObject::Name(String::from(a.name.as_str()), me),
                ),
            };
            match target {
                Some(n) => (
                    t.remote_monitor(&from, n, object, reference.clone()),
                    vec![],
                ),
                None => (false, vec![]),
            }
        });
        if !ok {
            // Every remote gen call monitors first and would wait forever without this.
            self.send_control_existing(
                &peer.name,
                Message::monitor_p_exit(to, from, reference, term::atom("noproc")),
            );
        }
    }

    fn remote_down(
        &self,
        _peer: &PeerInfo,
        _from: PidOrAtom,
        to: Pid,
        reference: Reference,
        reason: Term,
    ) {
        self.with_table(|t| ((), t.remote_down(&to, &reference, reason)));
    }

    // ------------------------------------------------------- rpc functions

    /// Makes `module:function/arity` callable from peers through erpc and rex.
    pub fn register_function(
        &self,
        module: &str,
        function: &str,
        arity: usize,
        f: impl Fn(&Node, Vec<Term>) -> Result<Term, RpcError> + Send + Sync + 'static,
    ) {
        if let Ok(mut fs) = self.inner.functions.write() {
            fs.insert((module.into(), function.into(), arity), Arc::new(f));
        }
    }

    pub(crate) fn function(
        &self,
        module: &str,
        function: &str,
        arity: usize,
    ) -> Option<RpcFunction> {
        self.inner
            .functions
            .read()
            .ok()?
            .get(&(module.to_string(), function.to_string(), arity))
            .cloned()
    }

    // ------------------------------------------------------- shutdown

    /// Stops the node gracefully, as `init:stop/0`: runs the shutdown hooks
    /// ([`Node::on_shutdown`]: a supervisor member hands its children over)
    /// while every connection is still up, then closes every connection
    /// (peers see nodedown), stops the listener and leaves EPMD. Without
    /// hooks it closes at once; with hooks it returns at once and closes
    /// once they have run (each bounded by its limit). What was queued to a
    /// connection is still written by its writer task, but only while the
    /// runtime runs: a program about to exit awaits [`Node::stop`] instead.
    pub fn shutdown(&self) {
        if !self.has_shutdown_hooks() {
            self.close_everything();
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let node = self.clone();
                rt.spawn(async move {
                    node.run_shutdown_hooks().await;
                    node.close_everything();
                });
            }
            Err(_) => {
                tracing::warn!(node = %self.name(), "shutdown outside a runtime: hooks skipped");
                self.close_everything();
            }
        }
    }

    /// Closes every connection at once, running no shutdown hook, as
    /// `erlang:halt/0`: to the peers this node vanished (a test's stand-in
    /// for `kill -9` of an in-process node).
    pub fn halt(&self) {
        self.close_everything();
    }

    /// [`Node::shutdown`], waiting for it: runs the shutdown hooks (each
    /// for at most its own limit), closes, and waits until every connection
    /// has written what was queued to it, for at most `timeout`. A program
    /// that exits right after its last sends (a member that handed its
    /// children over, say) must wait for this: its runtime ends with the
    /// program, and unwritten frames with it.
    pub async fn stop(&self, timeout: Duration) {
        self.run_shutdown_hooks().await;
        let handles = self.close_everything();
        // The writers run on their own; waiting for each in turn waits
        // for the slowest.
        let flushed = async {
            for h in &handles {
                h.closed().await;
            }
        };
        if tokio::time::timeout(timeout, flushed).await.is_err() {
            tracing::warn!(
                node = %self.name(),
                ?timeout,
                "stop: some connections had not written everything queued to them"
            );
        }
    }

    fn close_everything(&self) -> Vec<ConnectionHandle> {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let handles: Vec<ConnectionHandle> = match self.inner.peers.lock() {
            Ok(mut p) => p
                .drain()
                .filter_map(|(_, s)| match s {
                    PeerState::Up(h) => Some(h),
                    _ => None,
                })
                .collect(),
            Err(_) => vec![],
        };
        for h in &handles {
            h.close();
        }
        if let Ok(mut b) = self.inner.background.lock() {
            for h in b.drain(..) {
                h.abort();
            }
        }
        let slots: Vec<Slot> = {
            let mut st = self.lock_procs();
            st.slots.drain().map(|(_, s)| s).collect()
        };
        for s in slots {
            if let Some(t) = s.task {
                t.abort();
            }
        }
        if let Ok(mut r) = self.inner._registration.lock() {
            r.take();
        }
        if let Ok(mut e) = self.inner._epmd.lock() {
            if let Some(e) = e.take() {
                e.shutdown();
            }
        }
        handles
    }
}

/// Registers in the EPMD on `port`, starting the embedded one when none answers.
/// An EPMD that goes away between our probe and our request (another process's
/// embedded EPMD shutting down) is retried a few times.
async fn register_in_epmd(
    port: u16,
    entry: &crate::epmd::NodeEntry,
) -> Result<(Option<crate::epmd::EmbeddedEpmd>, crate::epmd::Registration), crate::epmd::EpmdError>
{
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let mut last = None;
    for attempt in 0..5u64 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
        }
        let embedded = match crate::epmd::ensure_epmd(port).await {
            Ok(e) => e,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        if embedded.is_some() {
            // At WARN: other nodes on this host now depend on this process
            // for their names until it stops, which nobody asked for.
            tracing::warn!(
                port,
                "no EPMD answered; this node started the embedded EPMD on that port \
                 (it serves every node on this host until this node stops)"
            );
        }
        match crate::epmd::register(addr, entry).await {
            Ok(reg) => return Ok((embedded, reg)),
            Err(e @ crate::epmd::EpmdError::RegistrationRefused { .. }) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(crate::epmd::EpmdError::ClosedEarly))
}

/// Watches our EPMD registration. When the EPMD goes away (say, the embedded EPMD
/// of another process that exited), register again, starting an embedded EPMD
/// if nobody else does. The node keeps its creation: pids already handed out
/// stay valid.
async fn keep_registered(weak: WeakNode, port: u16, alive: String) {
    loop {
        let reg = {
            let Some(node) = weak.upgrade() else { return };
            let taken = node
                .inner
                ._registration
                .lock()
                .ok()
                .and_then(|mut r| r.take());
            drop(node);
            taken
        };
        let Some(mut reg) = reg else { return };
        reg.closed().await;
        tracing::warn!(port, "EPMD connection lost; registering again");
        drop(reg);
        let Some(node) = weak.upgrade() else { return };
        if node.inner.shutting_down.load(Ordering::Relaxed) {
            return;
        }
        let entry =
            crate::epmd::NodeEntry::new(&alive, node.inner.listen_port, node.inner.config.hidden);
        drop(node);
        let mut delay = Duration::from_millis(100);
        let (embedded, reg) = loop {
            match register_in_epmd(port, &entry).await {
                Ok(x) => break x,
                Err(e) => {
                    tracing::warn!(port, error = %e, "EPMD registration failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        let Some(node) = weak.upgrade() else { return };
        if let Ok(mut r) = node.inner._registration.lock() {
            *r = Some(reg);
        }
        if embedded.is_some() {
            if let Ok(mut e) = node.inner._epmd.lock() {
                *e = embedded;
            }
        }
    }
}

/// `[alias|Ref]` (or `[[alias|Ref]|_]`) gen call tags carry the caller's alias.
fn alias_of_tag(tag: &Term) -> Option<&Reference> {
    match tag {
        Term::ImproperList(l) => {
            let head = l.elements.first()?;
            if term::is_atom(head, "alias") && l.elements.len() == 1 {
                if let Term::Reference(r) = &*l.last {
                    return Some(r);
                }
            }
            if l.elements.len() == 1 || !term::is_atom(head, "alias") {
                return alias_of_tag(head);
            }
            None
        }
        Term::List(l) if l.elements.len() > 1 => alias_of_tag(&l.elements[0]),
        _ => None,
    }
}

fn exit_message_for(from: Pid, to: Pid, reason: Term) -> Message {
    // PAYLOAD_EXIT carries any reason term; every peer we accept has EXIT_PAYLOAD.
    Message::payload_exit(from, to, reason)
}

/// A weak reference to a node, held by its own background tasks so a dropped
/// node is not kept alive by its listener.
#[derive(Clone)]
pub(crate) struct WeakNode(std::sync::Weak<Inner>);

impl WeakNode {
    pub(crate) fn upgrade(&self) -> Option<Node> {
        self.0.upgrade().map(|inner| Node { inner })
    }
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Dest {
    Pid(Pid),
    /// A name registered on this node.
    Name(String),
    /// `{Name, Node}`
    Remote(String, String),
    /// A name held by a process registry (Erlang's `{via, Module, Name}`),
    /// resolved when the message is sent.
    Via(Via),
}

/// A process registry that can resolve names to pids, such as
/// [`crate::horde::registry::Registry`].
pub trait NameRegistry: Send + Sync {
    /// The pid registered under `name`, if any (Erlang's `whereis_name/1`).
    fn whereis_name(&self, name: &Term) -> Option<Pid>;
}

/// `{via, Registry, Name}`: a name to resolve through a [`NameRegistry`].
#[derive(Clone)]
pub struct Via {
    registry: Arc<dyn NameRegistry>,
    name: Term,
}

impl Via {
    pub fn new(registry: Arc<dyn NameRegistry>, name: Term) -> Via {
        Via { registry, name }
    }

    pub fn name(&self) -> &Term {
        &self.name
    }

    /// The pid the name resolves to now.
    pub fn whereis(&self) -> Option<Pid> {
        self.registry.whereis_name(&self.name)
    }
}

impl std::fmt::Debug for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Via({:?})", self.name)
    }
}

impl PartialEq for Via {
    fn eq(&self, other: &Via) -> bool {
        Arc::ptr_eq(&self.registry, &other.registry) && self.name == other.name
    }
}

impl From<Via> for Dest {
    fn from(v: Via) -> Self {
        Dest::Via(v)
    }
}

impl From<Pid> for Dest {
    fn from(p: Pid) -> Self {
        Dest::Pid(p)
    }
}

impl From<&Pid> for Dest {
    fn from(p: &Pid) -> Self {
        Dest::Pid(p.clone())
    }
}

impl From<&str> for Dest {
    fn from(name: &str) -> Self {
        Dest::Name(name.to_string())
    }
}

impl From<(&str, &str)> for Dest {
    fn from((name, node): (&str, &str)) -> Self {
        Dest::Remote(name.to_string(), node.to_string())
    }
}

/// Exits the process with the recorded reason when its task ends, panics or is
/// aborted (the abort case is a no-op: the table already removed it).
struct ExitGuard {
    node: Node,
    pid: Pid,
    reason: Option<Term>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let reason = match self.reason.take() {
            Some(r) => r,
            None if std::thread::panicking() => {
                crate::tup![term::atom("panic"), term::binary("process panicked")]
            }
            None => term::atom("killed"),
        };
        self.node.exit_process(&self.pid, reason);
    }
}

/// A node on 127.0.0.1 for unit tests, its EPMD port a free one nobody
/// listens on (the node needs none to run alone).
#[cfg(test)]
pub(crate) async fn test_node(name: &str, cookie: &str) -> Node {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("addr").port()
    };
    Node::start(
        crate::NodeConfig::new(format!("{name}_{}@127.0.0.1", std::process::id()))
            .cookie(cookie)
            .listen("127.0.0.1".parse().expect("ip"), 0)
            .discovery(crate::Discovery::Epmd { port }),
    )
    .await
    .expect("node starts")
}

#[cfg(test)]
mod name_cache_tests {
    use super::*;
    use crate::dist::codec::Recipient;

    async fn node(name: &str) -> Node {
        test_node(name, "names").await
    }

    async fn next(p: &mut Process) -> Option<Term> {
        p.receive_timeout(Duration::from_millis(20))
            .await
            .expect("alive")
    }

    /// Sends by name through a reader's cache go where the name leads at
    /// the time: to the same process while no name changes, to the new
    /// owner after the name moves, nowhere once it is gone; and a process
    /// the cache led to still finds its mailbox closed when it is killed.
    #[tokio::test]
    async fn cached_names_follow_registrations() {
        let n = node("names").await;
        let peer = PeerInfo {
            name: "peer@127.0.0.1".into(),
            flags: 0,
            creation: 1,
            version: 6,
        };
        let mut cache = NameCache::default();
        let mut send = |i: i64| {
            n.deliver_received(
                &peer,
                Recipient::Name(term::Atom::from("target")),
                term::int(i),
                &mut cache,
            )
        };
        let mut first = n.process();
        first.register("target").expect("free name");
        send(1);
        send(2);
        assert_eq!(next(&mut first).await, Some(term::int(1)));
        assert_eq!(next(&mut first).await, Some(term::int(2)));
        assert!(n.unregister("target"));
        let mut second = n.process();
        second.register("target").expect("free name");
        send(3);
        assert_eq!(next(&mut second).await, Some(term::int(3)));
        assert_eq!(next(&mut first).await, None);
        drop(second);
        send(4);
        assert_eq!(next(&mut first).await, None);
        // Registered again, reached through the cache, then killed: its
        // mailbox closes (the cache holds it weakly).
        first.register("target").expect("free name");
        send(5);
        assert_eq!(next(&mut first).await, Some(term::int(5)));
        n.exit(first.pid(), &first.pid().clone(), term::atom("kill"));
        let end = first.receive_timeout(Duration::from_secs(5)).await;
        assert!(end.is_err(), "killed, not {end:?}");
        send(6);
    }
}
