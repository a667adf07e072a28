//! The tokio edge of one distribution connection: the handshake driver, then one
//! reader task and one writer task per peer.
//!
//! The reader turns bytes into frames ([`codec::FrameDecoder`]), frames into
//! control messages, and hands each to the node. A malformed frame closes this
//! connection only; an unknown or undecodable control message is logged and
//! dropped. Silence for `net_ticktime` declares the peer down. After
//! request/response traffic it may poll the socket for a short while before
//! it sleeps, as BEAM schedulers busy-wait, so the next request is read
//! without a wake-up; whether and how long is decided per connection from
//! what it observes ([`crate::dist::poll`],
//! [`NodeConfig::busy_poll`](crate::NodeConfig::busy_poll)); streams are left
//! to readiness wake-ups. The fragments of a large
//! binary are read from the socket straight into the buffer the binary is
//! gathered in.
//!
//! A message is encoded by the thread that sends it, into the connection's
//! [`Outbox`] (as a BEAM process encodes into its distribution entry's
//! queue); the writer task takes all that is there in one write, ticks when
//! idle, and sends messages above the fragment size in fragments
//! interleaved with the small ones, so one 10 MB message does not stall
//! everything behind it.
//!
//! What is encoded for a connection and not yet taken by its writer is
//! bounded ([`NodeConfig::max_send_queue`](crate::NodeConfig::max_send_queue),
//! counted in bytes by [`SendQueue`]): a peer that stops reading
//! fills its socket, the writer blocks, and the queue would otherwise grow
//! without end. The BEAM suspends senders past `dist_buf_busy_limit`; our
//! sends do not wait, so a connection over the bound is closed
//! (`send_queue_limit`), its queue dropped, and every other peer goes on as
//! before. A writer blocked on a full socket still checks that the peer is
//! alive, so a peer that stops reading and writing is down after
//! `net_ticktime` like a silent one.
//!
//! Both count what they move ([`ConnectionStats`]): bytes written to and read
//! from the socket after the handshake (frame headers and ticks included) and
//! control messages. The counters are plain relaxed atomics, one add per write
//! or read, and the node reports them per peer (`Node::connection_stats`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::dist::message::Message;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::dist::coalesce::{CoalescePolicy, CoalesceReport, StreamRead};
use crate::dist::codec::{self, Fragmenter, Frame, FrameDecoder, InPlace};
use crate::dist::flags;
use crate::dist::handshake::{Handshake, HandshakeError, HandshakeEvent, PeerInfo, ServerStatus};
use crate::dist::poll::{Found, PollPolicy, PollReport, Read};
use crate::dist::transport::{Transport, TryRead};

/// What a client handshake reports when the peer refused it because its own
/// simultaneous connect to us wins.
const NOK: &str = "nok: the peer's simultaneous connection wins";
/// Why we answered an incoming handshake `nok`: our own connection to that
/// peer (up, or winning a simultaneous connect) is the one that stays. The
/// normal end of a race, not a fault.
const OURS_WINS: &str = "nok: our connection to the peer stays";
use crate::node::{split_node_name, ConnectError, Discovery, Node, WeakNode};

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Most room the reader makes at once for a frame it has not fully read.
const MAX_READ_RESERVE: usize = 16 << 20;

/// What the writer's batch buffer starts with (and is given again after a
/// large message took it).
const BATCH_CAPACITY: usize = 64 * 1024;

/// Binaries at least this large (and above the fragment size) are sent from
/// their own memory instead of being copied into the encoded message.
const MIN_DETACHED_BINARY: usize = 64 * 1024;

/// A write buffer that grew past four times this (a huge unfragmented
/// message, or what piled up behind a full socket) is not kept.
const BATCH_LIMIT: usize = 256 * 1024;

/// The reason a connection closed for [`SendQueue`]'s bound is reported with.
pub const SEND_QUEUE_LIMIT: &str = "send_queue_limit";

/// What [`SendQueue::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// Queued.
    Yes,
    /// This message would pass the bound: the connection must close now.
    Overflow,
    /// The connection already went over the bound; the message is dropped.
    Closed,
}

/// The bytes of the frames encoded for one connection and not yet taken by
/// its writer task, and their bound. Plain atomics: senders book, the
/// writer releases, nobody waits.
#[derive(Debug)]
struct SendQueue {
    limit: usize,
    queued: std::sync::atomic::AtomicUsize,
    over: std::sync::atomic::AtomicBool,
}

impl SendQueue {
    fn new(limit: usize) -> Self {
        SendQueue {
            limit,
            queued: Default::default(),
            over: Default::default(),
        }
    }

    /// Books `size` bytes, just encoded for the writer (booked whatever the
    /// answer: the writer releases what it takes). A message larger than
    /// the bound is still taken when nothing else waits (a healthy
    /// connection can carry it); past the bound the connection is over it
    /// for good.
    fn admit(&self, size: usize) -> Admit {
        let before = self.queued.fetch_add(size, Ordering::Relaxed);
        if self.over.load(Ordering::Relaxed) {
            return Admit::Closed;
        }
        if before > 0 && before.saturating_add(size) > self.limit {
            return if self.over.swap(true, Ordering::Relaxed) {
                Admit::Closed
            } else {
                Admit::Overflow
            };
        }
        Admit::Yes
    }

    /// Over the bound: the connection is closing.
    fn is_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// The writer took `size` booked bytes.
    fn taken(&self, size: usize) {
        self.queued.fetch_sub(size, Ordering::Relaxed);
    }

    fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// What one connection has moved since its handshake completed: every byte
/// written to or read from the socket (length headers, distribution headers
/// and ticks included; the handshake itself not), and the control messages
/// sent and received (a fragmented message counts once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub messages_in: u64,
    /// What the reader's poll policy has decided so far (summed over
    /// connections by `+`, the largest window kept).
    pub poll: PollReport,
    /// What the reader's coalescing has decided so far (summed the same
    /// way).
    pub coalesce: CoalesceReport,
    /// Bytes encoded for the connection and not yet taken by its
    /// writer (see [`NodeConfig::max_send_queue`](crate::NodeConfig::max_send_queue)).
    pub queued_bytes: u64,
}

impl std::ops::Add for ConnectionStats {
    type Output = ConnectionStats;
    fn add(self, o: ConnectionStats) -> ConnectionStats {
        ConnectionStats {
            bytes_out: self.bytes_out + o.bytes_out,
            bytes_in: self.bytes_in + o.bytes_in,
            messages_out: self.messages_out + o.messages_out,
            messages_in: self.messages_in + o.messages_in,
            poll: self.poll + o.poll,
            coalesce: self.coalesce + o.coalesce,
            queued_bytes: self.queued_bytes + o.queued_bytes,
        }
    }
}

/// The live counters behind [`ConnectionStats`], shared by the reader, the
/// writer and the node's handle.
#[derive(Debug, Default)]
struct Counters {
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    messages_in: AtomicU64,
    decisions: std::sync::Mutex<(PollReport, CoalesceReport)>,
}

impl Counters {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ConnectionStats {
        ConnectionStats {
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            poll: self.decisions.lock().map(|d| d.0).unwrap_or_default(),
            coalesce: self.decisions.lock().map(|d| d.1).unwrap_or_default(),
            queued_bytes: 0,
        }
    }

    /// Records the poll policy's and the coalescing's decisions so far
    /// (the reader's lock alone, but for a rare stats reader).
    fn publish_decisions(&self, poll: PollReport, coalesce: CoalesceReport) {
        if let Ok(mut d) = self.decisions.lock() {
            *d = (poll, coalesce);
        }
    }
}

/// A cheap handle to a live connection, held by the node.
#[derive(Clone)]
pub struct ConnectionHandle {
    pub(crate) id: u64,
    pub(crate) peer: PeerInfo,
    /// Dropped by the writer when it ends; [`ConnectionHandle::close`] sends
    /// on it (messages go through [`Outbox`], not this channel).
    tx: mpsc::UnboundedSender<()>,
    counters: std::sync::Arc<Counters>,
    outbox: std::sync::Arc<Outbox>,
}

/// Where a connection's messages are encoded: by the sending thread, into
/// whole frames the writer task only has to write (as a BEAM process
/// encodes what it sends into the distribution entry's queue). A message
/// then costs no channel hop and no move of the decoded [`Message`] between
/// tasks, and senders on several threads encode at once.
///
/// Everything a message's encoding depends on (the atom cache our headers
/// fill, fragments in flight per sender) is in [`Writer`], under the same
/// lock as the encoded frames, so frames reach the socket in the order
/// their headers were written.
pub(crate) struct Outbox {
    pending: std::sync::Mutex<Pending>,
    /// Wakes the writer task when there is something to write.
    ready: tokio::sync::Notify,
    queue: SendQueue,
    liveness: std::sync::Arc<Liveness>,
    peer: String,
}

/// What senders encoded and the writer has not taken yet.
struct Pending {
    writer: Writer,
    /// Whole frames, in order.
    out: Vec<u8>,
}

impl Outbox {
    /// Nothing will take what is encoded here any more: later sends are
    /// dropped (as by a closed channel), not piled up until the node hears
    /// that the connection is down, and what is queued is let go.
    fn writer_gone(&self) {
        self.queue.over.store(true, Ordering::Relaxed);
        if let Ok(mut p) = self.pending.lock() {
            p.out = Vec::new();
            p.writer.streams.clear();
        }
    }

    /// Encodes `msg` for the writer, unless the connection went over its
    /// send queue's bound (then it is closing and the message is dropped).
    #[inline]
    pub(crate) fn send(&self, msg: Message) {
        if self.queue.is_over() {
            return;
        }
        let (admitted, idle) = {
            let Ok(mut p) = self.pending.lock() else {
                return;
            };
            let p = &mut *p;
            let idle = p.out.is_empty() && p.writer.streams.is_empty();
            let booked = p.writer.push(msg, &mut p.out);
            // Booked before the writer can take (and release) the bytes.
            (self.queue.admit(booked), idle)
        };
        match admitted {
            Admit::Yes => {
                // The writer takes all there is at once: only the first
                // message after it did needs to wake it.
                if idle {
                    self.ready.notify_one();
                }
            }
            Admit::Overflow => {
                tracing::warn!(
                    peer = %self.peer,
                    queued = self.queue.queued(),
                    limit = self.queue.limit,
                    "{} does not take what we send (send queue over its limit); closing the connection",
                    self.peer
                );
                self.liveness.down(SEND_QUEUE_LIMIT);
            }
            Admit::Closed => {}
        }
    }
}

impl ConnectionHandle {
    /// What the connection has moved so far.
    pub(crate) fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            queued_bytes: self.queued_bytes() as u64,
            ..self.counters.snapshot()
        }
    }

    /// See [`ConnectionStats::queued_bytes`].
    pub(crate) fn queued_bytes(&self) -> usize {
        self.outbox.queue.queued()
    }

    pub(crate) fn send(&self, msg: Message) {
        self.outbox.send(msg)
    }

    /// Where to encode messages for this connection, to keep once the
    /// node's peer table is unlocked (sends do not encode under it).
    pub(crate) fn outbox(&self) -> std::sync::Arc<Outbox> {
        self.outbox.clone()
    }

    pub(crate) fn close(&self) {
        let _ = self.tx.send(());
    }

    /// Resolves once the writer is gone: it has written everything queued
    /// before a [`ConnectionHandle::close`] (or the socket failed).
    pub(crate) async fn closed(&self) {
        self.tx.closed().await
    }
}

/// Accepts incoming connections until the node is gone.
pub(crate) async fn accept_loop(weak: WeakNode, listener: tokio::net::TcpListener) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(node) = weak.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            match accept_one(node.clone(), stream, addr).await {
                Ok(()) => {}
                Err(e) if e == OURS_WINS => {
                    tracing::debug!(%addr, "incoming handshake from {addr} refused: {e}")
                }
                // Per address, not per connection: a peer that retries or
                // sends junk in a loop gets a few lines and a count.
                Err(e) => crate::peer_warn!(
                    node,
                    &addr.ip().to_string(),
                    peer = %addr,
                    error = %e,
                    "incoming handshake from {addr} rejected"
                ),
            }
        });
    }
}

/// Runs the server side of one incoming connection (the TLS handshake
/// first, when the node runs TLS), within the node's `connect_timeout`.
async fn accept_one(node: Node, stream: TcpStream, addr: SocketAddr) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + node.config().connect_timeout;
    #[cfg(feature = "tls")]
    if let Some(tls) = node.config().tls.clone() {
        let stream = tokio::time::timeout_at(deadline, tls.acceptor().accept(stream))
            .await
            .map_err(|_| "TLS handshake timed out".to_string())?
            .map_err(|e| crate::dist::tls::describe(&e))?;
        tls.check_client_address(stream.get_ref().1.peer_certificates(), addr.ip())?;
        return accept_dist(
            node,
            crate::dist::transport::TlsStream::from(stream),
            deadline,
        )
        .await;
    }
    let _ = addr;
    accept_dist(node, stream, deadline).await
}

/// The distribution handshake of an accepted connection, by `deadline`.
async fn accept_dist<S: Transport>(
    node: Node,
    mut stream: S,
    deadline: Instant,
) -> Result<(), String> {
    let mut hs = Handshake::server(node.handshake_config(), rand::random());
    if S::FOUR_BYTE_HANDSHAKE {
        hs = hs.with_four_byte_lengths();
    }
    let mut accepted = None;
    // The timeout is taken here, not around this function: once the peer's
    // name is accepted this handshake is the node's pending connection to it,
    // and a peer that stalls after that must release it below like any other
    // failure. Dropped from outside, it would stay pending, and every later
    // connect to that node would wait on it forever.
    let outcome = tokio::time::timeout_at(
        deadline,
        drive_handshake(&node, &mut stream, &mut hs, &mut accepted, None),
    )
    .await
    .unwrap_or_else(|_| Err("handshake timed out".to_string()));
    match outcome {
        Ok((peer, leftover)) => {
            let attempt = accepted.map(|(_, a)| a);
            start(node, stream, peer, leftover, attempt);
            Ok(())
        }
        Err(e) => {
            // We had made this handshake the pending connection to the peer;
            // release it so waiting senders fail instead of hanging.
            if let Some((name, attempt)) = accepted {
                node.incoming_failed(
                    &name,
                    attempt,
                    ConnectError::Handshake {
                        node: name.clone(),
                        reason: e.clone(),
                    },
                );
            }
            Err(e)
        }
    }
}

/// Connects to `peer` for the node's pending attempt `attempt`.
pub(crate) async fn connect(
    weak: WeakNode,
    peer: String,
    attempt: u64,
) -> Result<(), ConnectError> {
    let node = weak.upgrade().ok_or(ConnectError::ShuttingDown)?;
    let (alive, host) =
        split_node_name(&peer).ok_or_else(|| ConnectError::InvalidName(peer.clone()))?;
    let unreachable = |reason: String| ConnectError::Unreachable {
        node: peer.clone(),
        reason,
    };
    let (addr, version) = match &node.config().discovery {
        Discovery::Epmd { port } => {
            let ip = resolve(host, *port).await.map_err(unreachable)?.ip();
            let epmd = SocketAddr::new(ip, *port);
            let entry = crate::epmd::port_please(epmd, alive)
                .await
                .map_err(|e| unreachable(format!("EPMD at {epmd}: {e}")))?
                .ok_or_else(|| ConnectError::NotRegistered(peer.clone()))?;
            (SocketAddr::new(ip, entry.port), entry.highest_version)
        }
        Discovery::Fixed { peer_port, peers } => match peers.get(&peer) {
            Some(a) => (*a, 6),
            None => (resolve(host, *peer_port).await.map_err(unreachable)?, 6),
        },
    };
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| unreachable(format!("{addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    #[cfg(feature = "tls")]
    if let Some(tls) = node.config().tls.clone() {
        let failed = |reason: String| {
            // Said here as well as to the caller: a refused certificate is
            // a security event, and a ping's caller only learns `pang`.
            crate::peer_warn!(node, &peer, peer = %peer, error = %reason, "TLS connection to {peer} failed");
            ConnectError::Handshake {
                node: peer.clone(),
                reason,
            }
        };
        let name = tls.server_name(host).map_err(failed)?;
        let stream = tls
            .connector()
            .connect(name, stream)
            .await
            .map_err(|e| failed(crate::dist::tls::describe(&e)))?;
        let stream = crate::dist::transport::TlsStream::from(stream);
        return dial_dist(node, stream, peer, attempt, version).await;
    }
    dial_dist(node, stream, peer, attempt, version).await
}

/// The distribution handshake of a connection we opened to `peer`.
async fn dial_dist<S: Transport>(
    node: Node,
    mut stream: S,
    peer: String,
    attempt: u64,
    version: u16,
) -> Result<(), ConnectError> {
    let mut hs = Handshake::client(node.handshake_config(), rand::random(), version.clamp(5, 6));
    if S::FOUR_BYTE_HANDSHAKE {
        hs = hs.with_four_byte_lengths();
    }
    let (info, leftover) = drive_handshake(
        &node,
        &mut stream,
        &mut hs,
        &mut None,
        Some((&peer, attempt)),
    )
    .await
    .map_err(|reason| {
        if reason == NOK {
            ConnectError::SimultaneousLost(peer.clone())
        } else {
            ConnectError::Handshake {
                node: peer.clone(),
                reason,
            }
        }
    })?;
    if info.name != peer {
        return Err(ConnectError::Handshake {
            node: peer.clone(),
            reason: format!("peer answered as {}", info.name),
        });
    }
    start(node, stream, info, leftover, Some(attempt));
    Ok(())
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    // Prefer IPv4: EPMD and most BEAM nodes listen there.
    let all: Vec<SocketAddr> = addrs.by_ref().collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or_else(|| all.first())
        .copied()
        .ok_or_else(|| format!("{host} has no address"))
}

/// Runs a handshake to completion. On the server side, `accepted` receives the
/// peer's name and the pending-connection attempt the node opened for it.
async fn drive_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    node: &Node,
    stream: &mut S,
    hs: &mut Handshake,
    accepted: &mut Option<(String, u64)>,
    dialing: Option<(&str, u64)>,
) -> Result<(PeerInfo, Vec<u8>), String> {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut refused = None;
        while let Some(event) = hs.poll_event() {
            match event {
                HandshakeEvent::PeerNamed { name, .. } => {
                    let (status, attempt) = node.accept_status(&name);
                    if let Some(a) = attempt {
                        *accepted = Some((name.clone(), a));
                    }
                    hs.set_status(status);
                    match status {
                        ServerStatus::Nok => refused = Some(OURS_WINS.to_string()),
                        ServerStatus::NotAllowed => {
                            refused = Some(format!("{name} refused: {status:?}"))
                        }
                        _ => {}
                    }
                }
                HandshakeEvent::Completed { peer, leftover } => {
                    let out = hs.take_output();
                    if !out.is_empty() {
                        stream.write_all(&out).await.map_err(|e| e.to_string())?;
                        stream.flush().await.map_err(|e| e.to_string())?;
                    }
                    return Ok((peer, leftover));
                }
            }
        }
        let out = hs.take_output();
        if !out.is_empty() {
            stream.write_all(&out).await.map_err(|e| e.to_string())?;
            // TLS holds records it could not write yet until flushed.
            stream.flush().await.map_err(|e| e.to_string())?;
        }
        if let Some(why) = refused {
            return Err(why);
        }
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(hs.connection_closed().to_string());
        }
        if let Some((peer, attempt)) = dialing {
            hs.set_alive_answer(node.attempt_is_current(peer, attempt));
        }
        if let Err(e) = hs.receive(&buf[..n]) {
            if matches!(&e, HandshakeError::Refused(status) if status == "nok") {
                return Err(NOK.to_string());
            }
            return Err(e.to_string());
        }
    }
}

fn start<S: Transport>(
    node: Node,
    stream: S,
    peer: PeerInfo,
    leftover: Vec<u8>,
    attempt: Option<u64>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
    let counters = std::sync::Arc::new(Counters::default());
    let liveness = std::sync::Arc::new(Liveness::default());
    // What both sides offered: a peer that offers the atom cache to a node
    // that did not must still get no references (a BEAM does not check,
    // and crashes on them).
    let common = peer.common_flags(node.handshake_config().flags);
    let outbox = std::sync::Arc::new(Outbox {
        pending: std::sync::Mutex::new(Pending {
            writer: Writer::new(node.config().fragment_size, common),
            out: Vec::with_capacity(BATCH_CAPACITY),
        }),
        ready: tokio::sync::Notify::new(),
        queue: SendQueue::new(node.config().max_send_queue),
        liveness: liveness.clone(),
        peer: peer.name.clone(),
    });
    let handle = ConnectionHandle {
        id,
        peer: peer.clone(),
        tx,
        counters: counters.clone(),
        outbox: outbox.clone(),
    };
    let (read_half, write_half) = stream.split();
    // The writer starts first so that messages queued while connecting, flushed by
    // `connection_up`, find it running.
    let ticktime = node.config().net_ticktime;
    let writer_peer = peer.name.clone();
    let writer_counters = counters.clone();
    tokio::spawn(async move {
        if let Err(e) = write_loop(write_half, rx, outbox.clone(), writer_counters, ticktime).await
        {
            tracing::debug!(peer = %writer_peer, error = %e, "writer ended");
        }
        outbox.writer_gone();
    });
    if !node.connection_up(handle.clone(), attempt) {
        handle.close();
        return;
    }
    tokio::spawn(async move {
        let reason = read_loop(&node, read_half, &peer, leftover, liveness, &counters).await;
        handle.close();
        let s = counters.snapshot();
        tracing::debug!(peer = %peer.name, bytes_out = s.bytes_out, bytes_in = s.bytes_in,
            messages_out = s.messages_out, messages_in = s.messages_in,
            poll = %s.poll, coalesce = %s.coalesce, "connection ended");
        node.connection_down(&peer.name, id, reason);
    });
}

async fn read_loop<R: TryRead>(
    node: &Node,
    mut read: R,
    peer: &PeerInfo,
    leftover: Vec<u8>,
    liveness: std::sync::Arc<Liveness>,
    counters: &Counters,
) -> String {
    let mut buf = BytesMut::with_capacity(codec::READ_CHUNK);
    Counters::add(&counters.bytes_in, leftover.len());
    buf.extend_from_slice(&leftover);
    let mut decoder = FrameDecoder::new(node.config().max_message_size);
    let mut names = crate::node::NameCache::default();
    let cores = crate::runtime::available_cores();
    let mut policy = PollPolicy::new(node.config().busy_poll, cores).desynchronized(rand::random());
    let one_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread;
    let mut coalesce = CoalescePolicy::new(node.config().read_coalesce);
    // How the bytes of the last read were found, when that read completed,
    // and how large it was: what the poll policy and the coalescing learn
    // from.
    let mut found = Found::Woken {
        polled: Duration::ZERO,
    };
    let mut read_at = std::time::Instant::now();
    let mut previous_read_at = read_at;
    let mut last_read = 0;
    // Messages the writer had sent at the last read: what we answered
    // since tells a stream from traffic we reply to.
    let mut sent_before = counters.messages_out.load(Ordering::Relaxed);
    loop {
        let mut frames = 0;
        // MONITOR_P and DEMONITOR_P frames of this read: a caller's
        // `gen_server:call` brings both around its request (BEAM and Rust
        // callers alike), a stream of sends neither.
        let mut monitors = 0;
        loop {
            match decoder.decode_in_place(&mut buf) {
                Ok(Some(InPlace::Frame(Frame::Tick))) => {}
                Ok(Some(frame)) => {
                    frames += 1;
                    Counters::add(&counters.messages_in, 1);
                    let decoded = match frame {
                        InPlace::Body(body) => {
                            let bytes = &buf[body.clone()];
                            // Nearly every message is a send: delivered
                            // straight from its parts.
                            let decoded = match codec::decode_send_cached(bytes, decoder.atoms()) {
                                Some((to, msg)) => {
                                    node.deliver_received(peer, to, msg, &mut names);
                                    None
                                }
                                None => Some(codec::decode_other_cached(bytes, decoder.atoms())),
                            };
                            FrameDecoder::consume(&mut buf, &body);
                            match decoded {
                                Some(decoded) => decoded,
                                None => continue,
                            }
                        }
                        InPlace::Frame(Frame::Message(body)) => {
                            codec::decode_control_cached(&body, decoder.atoms())
                        }
                        InPlace::Frame(Frame::Split { body, hole }) => {
                            codec::decode_control_with_hole(&body, hole, decoder.atoms())
                        }
                        InPlace::Frame(Frame::Tick) => continue,
                    };
                    match decoded {
                        Ok(msg) => {
                            monitors += usize::from(matches!(
                                msg,
                                Message::MonitorP(_) | Message::DemonitorP(_)
                            ));
                            node.handle_control(peer, msg)
                        }
                        Err(e) => {
                            crate::peer_warn!(node, &peer.name, peer = %peer.name, error = %e, "undecodable control message from {} dropped", peer.name);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    crate::peer_warn!(node, &peer.name, peer = %peer.name, error = %e, "malformed frame from {}; closing the connection", peer.name);
                    return format!("malformed frame: {e}");
                }
            }
        }
        // Room for the whole unfinished frame when it is announced (so a
        // 64 KiB fragment is read in place, not copied into a new buffer
        // half-way through), else for a good read. Up-front room for a large
        // frame is capped: its length is peer input; beyond the cap the
        // buffer grows as bytes arrive.
        let missing = decoder.bytes_needed(&buf).saturating_sub(buf.len());
        let spare = buf.capacity() - buf.len();
        if spare < missing.max(16 * 1024) {
            buf.reserve(missing.clamp(codec::READ_CHUNK, MAX_READ_RESERVE));
        }
        let sent = counters.messages_out.load(Ordering::Relaxed);
        let answered = sent.saturating_sub(sent_before);
        sent_before = sent;
        let poll = policy.after_read(Read {
            messages: frames,
            interval: read_at.saturating_duration_since(previous_read_at),
            found,
            answered,
        });
        let pause = coalesce.after_read(StreamRead {
            messages: frames,
            monitors,
            bytes: last_read,
            interval: read_at.saturating_duration_since(previous_read_at),
            answered,
        });
        counters.publish_decisions(policy.report(), coalesce.report());
        found = Found::Woken {
            polled: Duration::ZERO,
        };
        if let Some(pause) = pause {
            // Let the stream gather: see `dist::coalesce`.
            tokio::time::sleep(pause).await;
        } else if let Some(window) = poll {
            // Processes woken by what was just delivered run first (the
            // LIFO slot they sit in cannot be stolen while we poll).
            tokio::task::yield_now().await;
            let started = std::time::Instant::now();
            loop {
                let (got, direct) = {
                    let (mut target, direct) = read_target(&mut decoder, &mut buf);
                    (read.try_read_now(&mut target), direct)
                };
                match got {
                    Ok(0) => return "connection_closed".into(),
                    Ok(n) => {
                        took(&mut decoder, direct, n, counters, &liveness);
                        last_read = n;
                        previous_read_at = read_at;
                        read_at = std::time::Instant::now();
                        found = Found::Polled(read_at - started);
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let polled = started.elapsed();
                        if polled >= window {
                            found = Found::Woken { polled };
                            break;
                        }
                        if one_thread {
                            // The runtime's only thread: a spin would hold
                            // every other connection and process of the
                            // node for the whole window.
                            tokio::task::yield_now().await;
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                    Err(e) => return read_error(&e),
                }
            }
            if matches!(found, Found::Polled(_)) {
                continue;
            }
        }
        tokio::select! {
            r = async {
                let (mut target, direct) = read_target(&mut decoder, &mut buf);
                (read.read_buf(&mut target).await, direct)
            } => match r {
                (Ok(0), _) => return "connection_closed".into(),
                (Ok(n), direct) => {
                    took(&mut decoder, direct, n, counters, &liveness);
                    last_read = n;
                    previous_read_at = read_at;
                    read_at = std::time::Instant::now();
                }
                (Err(e), _) => return read_error(&e),
            },
            _ = liveness.timed_out.notified() => return liveness.reason(),
        }
    }
}

/// Why a read ended the connection. A peer that closes a TLS connection
/// without `close_notify` (the BEAM's TLS distribution does, when it
/// disconnects) has closed it like a TCP peer: said the same way.
fn read_error(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return "connection_closed".into();
    }
    format!("read error: {e}")
}

/// Where the reader's next read goes, and whether that is straight into the
/// large binary being gathered: bytes that belong inside it go there; until
/// its next fragment's header is known, only up to that header is read into
/// `buf` (see [`FrameDecoder::read_limit`]).
fn read_target<'a>(
    decoder: &'a mut FrameDecoder,
    buf: &'a mut BytesMut,
) -> (bytes::buf::Limit<&'a mut (dyn BufMut + Send)>, bool) {
    let limit = decoder.read_limit(buf).unwrap_or(usize::MAX);
    match decoder.direct_target() {
        Some((gathered, max)) => (
            BufMut::limit(gathered as &mut (dyn BufMut + Send), max),
            true,
        ),
        None => (BufMut::limit(buf as &mut (dyn BufMut + Send), limit), false),
    }
}

/// Books `n` bytes the reader just took from the socket: as filled into
/// the decoder's gathered binary when they were read `direct`ly into it, and
/// in the counters and the liveness flag either way.
fn took(
    decoder: &mut FrameDecoder,
    direct: bool,
    n: usize,
    counters: &Counters,
    liveness: &Liveness,
) {
    if direct {
        decoder.direct_filled(n);
    }
    Counters::add(&counters.bytes_in, n);
    liveness.heard.store(true, Ordering::Relaxed);
}

/// The process a control message speaks for. Signals between one pair of
/// processes must arrive in the order sent, so a message never overtakes an
/// earlier one from the same sender that is still going out in fragments.
fn sender_of(msg: &Message) -> Option<&crate::term::Pid> {
    Some(match msg {
        Message::Link(m) => &m.from_pid,
        Message::Exit(m) => &m.from_pid,
        Message::Unlink(m) => &m.from_pid,
        Message::RegSend(m) => &m.from_pid,
        Message::Exit2(m) => &m.from_pid,
        Message::RegSendTt(m) => &m.from_pid,
        Message::MonitorP(m) => &m.from_pid,
        Message::DemonitorP(m) => &m.from_pid,
        Message::SendSender(m) => &m.from_pid,
        Message::SendSenderTt(m) => &m.from_pid,
        Message::PayloadExit(m) => &m.from_pid,
        Message::PayloadExit2(m) => &m.from_pid,
        Message::UnlinkId(m) => &m.from_pid,
        Message::UnlinkIdAck(m) => &m.from_pid,
        Message::AliasSend(m) => &m.from_pid,
        _ => return None,
    })
}

/// Shared between a connection's reader and writer: the reader notes that it
/// heard from the peer; the writer's ticker checks that every tick interval, so
/// no timer is armed per read.
#[derive(Default)]
struct Liveness {
    heard: std::sync::atomic::AtomicBool,
    /// Ends the reader (and so the connection): the peer timed out, or
    /// [`Liveness::down`] said why else.
    timed_out: tokio::sync::Notify,
    /// Set by [`Liveness::down`]; `net_tick_timeout` when empty.
    reason: std::sync::Mutex<Option<&'static str>>,
    /// Wakes a writer blocked on a full socket when the connection is closed.
    abort_writer: tokio::sync::Notify,
}

impl Liveness {
    /// Closes the connection for `reason`: the reader ends (the node is
    /// told), and the writer stops even mid-write.
    fn down(&self, reason: &'static str) {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert(reason);
        }
        self.timed_out.notify_one();
        self.abort_writer.notify_one();
    }

    /// Why the reader was told to end.
    fn reason(&self) -> String {
        self.reason
            .lock()
            .ok()
            .and_then(|r| *r)
            .unwrap_or("net_tick_timeout")
            .to_string()
    }

    /// One tick interval passed: four in a row without a byte from the
    /// peer and it is down, as for the BEAM.
    fn tick(&self, silent_ticks: &mut u32) {
        if self.heard.swap(false, Ordering::Relaxed) {
            *silent_ticks = 0;
        } else {
            *silent_ticks += 1;
            if *silent_ticks >= 4 {
                self.timed_out.notify_one();
                // A writer blocked on a peer that stopped reading would
                // otherwise hold the connection forever.
                self.abort_writer.notify_one();
                *silent_ticks = 0;
            }
        }
    }
}

enum Item {
    Frame(Bytes),
    Fragments(Fragmenter),
}

impl Item {
    /// The bytes its frames will carry (fragments' headers not counted).
    fn len(&self) -> usize {
        match self {
            Item::Frame(b) => b.len(),
            Item::Fragments(f) => f.remaining_bytes(),
        }
    }
}

/// A frame leaving a stream: whole, or a fragment's header and its payload
/// (slices of the message's body), written together without joining them.
enum OutFrame {
    Whole(Bytes),
    Fragment(codec::FragmentHead, Vec<Bytes>),
}

impl OutFrame {
    /// What [`Writer::push`] booked for this frame: all of a whole frame, the
    /// payload of a fragment (the message's bytes, without the fragment's
    /// header).
    fn payload_len(&self) -> usize {
        match self {
            OutFrame::Whole(b) => b.len(),
            OutFrame::Fragment(_, p) => p.iter().map(Bytes::len).sum(),
        }
    }

    /// The frame's bytes, in order, in as many pieces as it is held in.
    fn parts(&self) -> impl Iterator<Item = &[u8]> {
        let (first, rest): (&[u8], &[Bytes]) = match self {
            OutFrame::Whole(b) => (b, &[]),
            OutFrame::Fragment(h, p) => (h.as_ref(), p),
        };
        std::iter::once(first).chain(rest.iter().map(|b| &b[..]))
    }
}

/// Frames from one sender that must go out in order, behind a large message.
struct Stream {
    sender: Option<crate::term::Pid>,
    items: VecDeque<Item>,
}

impl Stream {
    fn next_frame(&mut self) -> Option<OutFrame> {
        while let Some(item) = self.items.front_mut() {
            match item {
                Item::Frame(_) => {
                    if let Some(Item::Frame(f)) = self.items.pop_front() {
                        return Some(OutFrame::Whole(f));
                    }
                }
                Item::Fragments(f) => match f.next_frame_parts() {
                    Some((head, payload)) => {
                        if f.remaining_frames() == 0 {
                            self.items.pop_front();
                        }
                        return Some(OutFrame::Fragment(head, payload));
                    }
                    None => {
                        self.items.pop_front();
                    }
                },
            }
        }
        None
    }
}

/// What [`Writer::encode_referring`] came to.
enum Referred {
    /// The frame is in the batch: where its body starts, and no detached
    /// binaries.
    Framed((usize, Vec<(usize, Bytes)>)),
    /// Not encoded (the connection has no atom cache, or the encoding was
    /// not for this message).
    NotApplicable,
    /// Too large for one frame, or not encodable: nothing written.
    Failed,
}

struct Writer {
    fragment_size: usize,
    fragments: bool,
    /// Every frame carries a distribution header (see [`Writer::header`]).
    headered: bool,
    /// With DIST_HDR_ATOM_CACHE: what our headers have put in the peer's
    /// cache, and the encoding of the message at hand.
    atom_cache: Option<crate::term::etf::Referencing<codec::OutAtomCache>>,
    next_sequence: u64,
    /// Streams with a large message in flight, served round-robin one frame each.
    streams: VecDeque<Stream>,
    /// Control messages encoded since the counters last took them.
    pushed: usize,
}

impl Writer {
    /// The writer of a connection on which `common` flags are in force
    /// (offered by both sides).
    fn new(fragment_size: usize, common: u64) -> Self {
        Writer {
            fragment_size,
            fragments: common & flags::FRAGMENTS != 0,
            headered: common & (flags::FRAGMENTS | flags::DIST_HDR_ATOM_CACHE) != 0,
            atom_cache: (common & flags::DIST_HDR_ATOM_CACHE != 0)
                .then(crate::term::etf::Referencing::default),
            next_sequence: 1,
            streams: VecDeque::new(),
            pushed: 0,
        }
    }

    /// The frame header after the length prefix: with FRAGMENTS or
    /// DIST_HDR_ATOM_CACHE negotiated the BEAM requires a distribution header
    /// on every frame (a pass-through frame kills the connection); with
    /// neither, pass-through is the only form it accepts. This is the header
    /// of a frame that makes no atom cache references.
    fn header(&self) -> &'static [u8] {
        if self.headered {
            &codec::NORMAL_DIST_HEADER
        } else {
            &[codec::PASS_THROUGH]
        }
    }

    /// Encodes `msg` and queues it: straight into the batch `out` when its
    /// sender has nothing still going out in fragments (the common case: no
    /// buffer of its own, no copy), behind that sender's fragments otherwise.
    /// Returns the bytes it queued, as the writer task releases them
    /// ([`OutFrame::payload_len`] of each frame taken, and what it takes
    /// from `out`).
    #[inline]
    fn push(&mut self, msg: Message, out: &mut Vec<u8>) -> usize {
        let sender = sender_of(&msg).cloned();
        if sender.is_some() {
            if let Some(i) = self.streams.iter().position(|s| s.sender == sender) {
                let mut own = Vec::with_capacity(128);
                // Written after frames pushed later: no atom cache references
                // (see `encode`).
                let Some((body_start, detached)) = self.encode(msg, &mut own, false) else {
                    return 0;
                };
                let item = self.item(Bytes::from(own), body_start, detached);
                let booked = item.len();
                self.streams[i].items.push_back(item);
                return booked;
            }
        }
        let start = out.len();
        let Some((body_start, detached)) = self.encode(msg, out, true) else {
            return 0;
        };
        if self.one_frame(out.len() - body_start, &detached) {
            return out.len() - start;
        }
        // Too large for one frame: the body leaves the batch without a copy;
        // the small frames before it (at most one batch) are copied back.
        let whole = Bytes::from(std::mem::replace(out, Vec::with_capacity(BATCH_CAPACITY)));
        out.extend_from_slice(&whole[..start]);
        let detached = detached
            .into_iter()
            .map(|(at, b)| (at - start, b))
            .collect();
        let item = self.item(whole.slice(start..), body_start - start, detached);
        let booked = item.len();
        self.streams.push_back(Stream {
            sender,
            items: VecDeque::from([item]),
        });
        booked
    }

    /// Appends `msg` to `out` as one whole frame (length prefix, header,
    /// body), encoding the body in place behind room for the prefix and
    /// header. With FRAGMENTS, binaries too large for one fragment are left
    /// out of `out` and returned with the offsets their contents belong at:
    /// they go to the socket from their own memory (the frame's length
    /// prefix then does not count them; such a message always leaves in
    /// fragments, which carry their own). Returns where the body starts;
    /// `None` when the message could not be encoded (logged, `out` left as
    /// it was).
    ///
    /// With the atom cache negotiated, a message that fits one frame and is
    /// written in the order encoded (`in_order`: not queued behind a
    /// sender's fragments) refers to its atoms through the cache: the
    /// peer's cache changes as our headers arrive, so a header must never
    /// reach it after a later one that relies on it.
    fn encode(
        &mut self,
        msg: Message,
        out: &mut Vec<u8>,
        in_order: bool,
    ) -> Option<(usize, Vec<(usize, Bytes)>)> {
        let mut refer = in_order;
        if refer {
            // A send straight from its fields; anything else (or a send too
            // large for one frame: then no second try) as terms below.
            match self.encode_referring(out, |body| codec::encode_send_referencing(&msg, body)) {
                Referred::Framed(encoded) => return Some(encoded),
                Referred::Failed => refer = false,
                Referred::NotApplicable => {}
            }
        }
        let (ctrl, payload) = match codec::control_terms(msg) {
            Ok(terms) => terms,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode control message; dropped");
                return None;
            }
        };
        if refer {
            let encoded = self.encode_referring(out, |body| {
                Some(codec::encode_terms_referencing(
                    &ctrl,
                    payload.as_ref(),
                    body,
                ))
            });
            if let Referred::Framed(encoded) = encoded {
                return Some(encoded);
            }
        }
        let start = out.len();
        let header = self.header();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(header);
        let body_start = out.len();
        let min_detached = if self.fragments {
            self.fragment_size.max(MIN_DETACHED_BINARY)
        } else {
            usize::MAX
        };
        let encoded =
            codec::encode_terms_into_detached(ctrl, payload, !self.headered, out, min_detached);
        let len = out.len() - start - 4;
        match (encoded, u32::try_from(len)) {
            (Ok(detached), Ok(len)) => {
                out[start..start + 4].copy_from_slice(&len.to_be_bytes());
                self.pushed += 1;
                Some((body_start, detached))
            }
            (Err(e), _) => {
                tracing::warn!(error = %e, "cannot encode control message; dropped");
                out.truncate(start);
                None
            }
            (Ok(_), Err(_)) => {
                tracing::warn!(
                    bytes = len,
                    "control message too large for one frame; dropped"
                );
                out.truncate(start);
                None
            }
        }
    }

    /// [`encode`](Self::encode) with atom cache references, into `out` as
    /// one whole frame, the body by `encode` (`None`: not for this message).
    /// Nothing is written without the atom cache, or for a message too large
    /// for one frame (its atoms then go as text).
    fn encode_referring(
        &mut self,
        out: &mut Vec<u8>,
        encode: impl FnOnce(
            &mut crate::term::etf::Referencing<codec::OutAtomCache>,
        ) -> Option<Result<(), codec::ControlError>>,
    ) -> Referred {
        let Some(body) = self.atom_cache.as_mut() else {
            return Referred::NotApplicable;
        };
        body.start(self.fragment_size.min(u32::MAX as usize / 2));
        let Some(encoded) = encode(body) else {
            return Referred::NotApplicable;
        };
        if encoded.is_err() || body.too_large() {
            // Its atoms go as text instead: the peer's cache must not miss
            // what this encoding put in ours.
            body.atoms.abort();
            return Referred::Failed;
        }
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&codec::NORMAL_DIST_HEADER[..2]);
        body.atoms.write_refs(out);
        let body_start = out.len();
        out.extend_from_slice(&body.buf);
        // At most a fragment's size plus the header: far below 4 GiB.
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        self.pushed += 1;
        Referred::Framed((body_start, Vec::new()))
    }

    /// Whether a body of `body_len` bytes, with `detached` binaries left out
    /// of it, goes out as one whole frame rather than in fragments.
    fn one_frame(&self, body_len: usize, detached: &[(usize, Bytes)]) -> bool {
        detached.is_empty() && (!self.fragments || body_len <= self.fragment_size)
    }

    /// A whole frame as `encode` made it (body at `body_start`, `detached`
    /// binaries at their offsets) as the item that sends it: fragments when
    /// the body is above the fragment size or binaries were left out, else
    /// the frame unchanged.
    fn item(&mut self, frame: Bytes, body_start: usize, detached: Vec<(usize, Bytes)>) -> Item {
        if self.one_frame(frame.len() - body_start, &detached) {
            return Item::Frame(frame);
        }
        let mut parts = Vec::with_capacity(2 * detached.len() + 1);
        let mut at = body_start;
        for (offset, binary) in detached {
            parts.push(frame.slice(at..offset));
            parts.push(binary);
            at = offset;
        }
        parts.push(frame.slice(at..));
        let seq = self.next_sequence;
        self.next_sequence += 1;
        Item::Fragments(Fragmenter::from_parts(seq, parts, self.fragment_size))
    }

    /// The next frame of the next stream in turn (round-robin between senders).
    fn next_fragment(&mut self) -> Option<OutFrame> {
        let mut stream = self.streams.pop_front()?;
        let frame = stream.next_frame();
        if !stream.items.is_empty() {
            self.streams.push_back(stream);
        }
        frame
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut write: W,
    mut closed: mpsc::UnboundedReceiver<()>,
    outbox: std::sync::Arc<Outbox>,
    counters: std::sync::Arc<Counters>,
    ticktime: Duration,
) -> std::io::Result<()> {
    let liveness = outbox.liveness.clone();
    // The batch being written, swapped with the outbox's: neither is
    // allocated again while the connection lives.
    let mut out: Vec<u8> = Vec::with_capacity(BATCH_CAPACITY);
    let tick_every = (ticktime / 4).max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + tick_every, tick_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut wrote_since_tick = false;
    let mut closing = false;
    let mut silent_ticks = 0u32;

    loop {
        // Everything the senders encoded so far (small messages share one
        // write), and the next fragment of a large message in turn.
        let (fragment, pushed) = {
            let Ok(mut p) = outbox.pending.lock() else {
                return Err(std::io::Error::other("a sender panicked while encoding"));
            };
            let p = &mut *p;
            std::mem::swap(&mut out, &mut p.out);
            (
                p.writer.next_fragment(),
                std::mem::take(&mut p.writer.pushed),
            )
        };
        Counters::add(&counters.messages_out, pushed);
        let booked = out.len() + fragment.as_ref().map_or(0, OutFrame::payload_len);
        if booked == 0 {
            if closing {
                let _ = write.shutdown().await;
                return Ok(());
            }
            // Biased: polled in this order, without drawing a random
            // number per wake-up (one per message a caller waits for).
            tokio::select! {
                biased;
                () = outbox.ready.notified() => {}
                // Closed (or every handle gone): what is queued still goes out.
                _ = closed.recv() => closing = true,
                _ = ticker.tick() => {
                    if !wrote_since_tick {
                        out.extend_from_slice(&codec::TICK);
                    }
                    wrote_since_tick = false;
                    liveness.tick(&mut silent_ticks);
                }
            }
            if out.is_empty() {
                continue;
            }
        }
        outbox.queue.taken(booked);
        // The batch and the next fragment (its header and its payload, a
        // slice of the message) go out in one vectored write: a fragment's
        // 64 KiB are never copied into the batch.
        let total = out.len()
            + fragment
                .iter()
                .flat_map(OutFrame::parts)
                .map(<[u8]>::len)
                .sum::<usize>();
        // A peer that stops reading blocks this write for good: the ticker
        // still checks that it is alive meanwhile, and a close (the send
        // queue over its bound, the reader gone) ends it.
        {
            // On the stack: a batch and a fragment's header and payload
            // slices (one per binary it spans) fit, with no allocation per
            // write.
            let mut parts: smallvec::SmallVec<[&[u8]; 8]> = smallvec::smallvec![&out[..]];
            parts.extend(fragment.iter().flat_map(OutFrame::parts));
            let writing = write_all_parts(&mut write, &mut parts);
            tokio::pin!(writing);
            loop {
                tokio::select! {
                    biased;
                    r = &mut writing => {
                        r?;
                        break;
                    }
                    _ = liveness.abort_writer.notified() => {
                        return Err(std::io::Error::other("connection closed while writing"));
                    }
                    _ = ticker.tick() => liveness.tick(&mut silent_ticks),
                }
            }
        }
        // A TLS stream takes plaintext into its session and may keep
        // encrypted records back when the socket is full; unflushed, they
        // would wait for the next write (a tick, 15 s away). On TCP this is
        // a no-op: nothing is buffered above the socket.
        write.flush().await?;
        Counters::add(&counters.bytes_out, total);
        out.clear();
        wrote_since_tick = true;
        if out.capacity() > 4 * BATCH_LIMIT {
            // One huge unfragmented message (a peer without FRAGMENTS), or
            // what piled up while the socket was full, must not keep its
            // buffer for the connection's life.
            out = Vec::with_capacity(BATCH_CAPACITY);
        }
    }
}

/// Writes every byte of `parts`, in order, with as few (vectored) writes as
/// the socket allows.
async fn write_all_parts<W: AsyncWrite + Unpin>(
    write: &mut W,
    parts: &mut [&[u8]],
) -> std::io::Result<()> {
    loop {
        let Some(first) = parts.iter().position(|p| !p.is_empty()) else {
            return Ok(());
        };
        let slices: smallvec::SmallVec<[std::io::IoSlice<'_>; 8]> = parts[first..]
            .iter()
            .map(|p| std::io::IoSlice::new(p))
            .collect();
        let mut n = write.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        for p in parts.iter_mut() {
            let k = n.min(p.len());
            *p = &p[k..];
            n -= k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{self, Pid, Term};

    fn pid(id: u32) -> Pid {
        Pid::new("a@host", id, 0, 1)
    }

    fn msg(from: u32, payload: Term) -> Message {
        Message::reg_send(pid(from), term::Atom::from("sink"), payload)
    }

    #[test]
    fn the_send_queue_is_bounded_and_overflows_once() {
        let q = SendQueue::new(1000);
        // One message above the bound still goes on an empty queue.
        assert_eq!(q.admit(5000), Admit::Yes);
        q.taken(5000);
        for _ in 0..10 {
            assert_eq!(q.admit(100), Admit::Yes);
        }
        assert_eq!(q.queued(), 1000);
        assert_eq!(q.admit(1), Admit::Overflow);
        assert!(q.is_over());
        // Over for good (senders check `is_over` before encoding; one that
        // encoded meanwhile is booked until the writer takes it).
        assert_eq!(q.admit(1), Admit::Closed);
        q.taken(500);
        assert_eq!(q.admit(1), Admit::Closed);
        assert_eq!(q.queued(), 503);
    }

    fn writer(fragments: bool) -> Writer {
        Writer::new(100, if fragments { flags::FRAGMENTS } else { 0 })
    }

    #[test]
    fn only_flags_both_sides_offered_shape_what_we_write() {
        // A peer offering the atom cache to a node that did not: no references.
        let peer = PeerInfo {
            name: "erl@h".into(),
            flags: flags::OFFERED,
            creation: 1,
            version: 6,
        };
        let w = Writer::new(
            65536,
            peer.common_flags(flags::OFFERED & !flags::DIST_HDR_ATOM_CACHE),
        );
        assert!(w.atom_cache.is_none() && w.fragments);
        let w = Writer::new(65536, peer.common_flags(flags::OFFERED));
        assert!(w.atom_cache.is_some());
    }

    #[test]
    fn the_atom_cache_alone_also_asks_for_headers() {
        let w = Writer::new(65536, flags::DIST_HDR_ATOM_CACHE);
        assert!(w.headered && !w.fragments);
        assert_eq!(w.header(), &codec::NORMAL_DIST_HEADER);
        let w = Writer::new(65536, 0);
        assert_eq!(w.header(), &[codec::PASS_THROUGH]);
    }

    /// Everything the writer would put on the socket: the batch, then the
    /// streams' frames in turn.
    fn drain(w: &mut Writer, out: &mut Vec<u8>) -> Vec<u8> {
        let mut wire = std::mem::take(out);
        while let Some(f) = w.next_fragment() {
            for p in f.parts() {
                wire.extend_from_slice(p);
            }
        }
        wire
    }

    /// The messages on `wire`, and how many arrived split (large binaries
    /// gathered apart).
    fn received_split(wire: &[u8]) -> (Vec<(u32, Term)>, usize) {
        let mut splits = 0;
        let mut buf = BytesMut::from(wire);
        let mut dec = FrameDecoder::default();
        let mut got = Vec::new();
        while let Some(frame) = dec.decode(&mut buf).expect("well-formed") {
            let decoded = match frame {
                Frame::Message(body) => codec::decode_control_cached(&body, dec.atoms()),
                Frame::Split { body, hole } => {
                    splits += 1;
                    codec::decode_control_with_hole(&body, hole, dec.atoms())
                }
                Frame::Tick => continue,
            };
            match decoded.expect("decodes") {
                Message::RegSend(m) => got.push((m.from_pid.id, m.message)),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(buf.is_empty());
        (got, splits)
    }

    fn received(wire: &[u8]) -> Vec<(u32, Term)> {
        received_split(wire).0
    }

    #[test]
    fn frames_built_in_place_equal_the_codec_frames() {
        for fragments in [true, false] {
            let mut w = writer(fragments);
            let mut out = Vec::new();
            let m = msg(1, term::atom("hello"));
            w.push(m.clone(), &mut out);
            let expected = if fragments {
                codec::dist_header_frame(&codec::encode_control_headered(m).expect("encodes"))
            } else {
                codec::pass_through_frame(&codec::encode_control(m).expect("encodes"))
            };
            assert_eq!(out, expected.to_vec());
            assert_eq!(w.pushed, 1);
        }
    }

    #[test]
    fn large_messages_are_fragmented_and_order_per_sender_is_kept() {
        let big = |n: u8| term::binary(vec![n; 1000]);
        let mut w = writer(true);
        let mut out = Vec::new();
        w.push(msg(1, term::int(1)), &mut out);
        w.push(msg(1, big(2)), &mut out);
        w.push(msg(1, term::int(3)), &mut out);
        w.push(msg(2, term::int(4)), &mut out);
        w.push(msg(2, big(5)), &mut out);
        w.push(msg(2, big(6)), &mut out);
        w.push(msg(3, term::int(7)), &mut out);
        assert_eq!(w.pushed, 7);
        let got = received(&drain(&mut w, &mut out));
        assert_eq!(got.len(), 7);
        // Small messages from senders with nothing in flight are not held back.
        assert_eq!(
            got[..3],
            [(1, term::int(1)), (2, term::int(4)), (3, term::int(7))]
        );
        for sender in [1, 2] {
            let order: Vec<&Term> = got
                .iter()
                .filter(|(s, _)| *s == sender)
                .map(|(_, t)| t)
                .collect();
            let expected = if sender == 1 {
                vec![term::int(1), big(2), term::int(3)]
            } else {
                vec![term::int(4), big(5), big(6)]
            };
            assert_eq!(order, expected.iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn atom_cache_references_reach_the_peer_in_the_order_they_rely_on() {
        let mut w = Writer::new(100, flags::FRAGMENTS | flags::DIST_HDR_ATOM_CACHE);
        let mut out = Vec::new();
        let tagged = |tag: &str, n: i64| crate::tup![term::atom(tag), term::int(n)];
        let big = |tag: &str| crate::tup![term::atom(tag), term::binary(vec![7; 1000])];
        // Sender 1's "later" message is queued behind its fragments, so it is
        // written after sender 2's, which were encoded after it: it must not
        // fill a slot that those name.
        let sent = [
            (1, tagged("first", 1)),
            (1, big("large")),
            (1, tagged("later", 2)),
            (2, tagged("later", 3)),
            (2, tagged("first", 4)),
            (3, tagged("later", 5)),
        ];
        for (from, payload) in &sent {
            w.push(msg(*from, payload.clone()), &mut out);
        }
        let batch_len = out.len();
        let wire = drain(&mut w, &mut out);
        // The batch's frames refer to their atoms: a header with references.
        assert_eq!(&wire[4..6], &[131, 68]);
        assert!(wire[6] > 0, "references in the first frame's header");
        assert!(batch_len < wire.len());
        let got = received(&wire);
        assert_eq!(got.len(), sent.len());
        for sender in [1, 2, 3] {
            let theirs = |v: &[(u32, Term)]| -> Vec<Term> {
                v.iter()
                    .filter(|(s, _)| *s == sender)
                    .map(|(_, t)| t.clone())
                    .collect()
            };
            assert_eq!(theirs(&got), theirs(&sent));
        }
    }

    #[test]
    fn large_binaries_go_out_from_their_own_memory() {
        let big = |n: u8| term::binary(vec![n; 200_000]);
        let mut map = term::Map::from([(big(1), big(2))]);
        map.map.insert(term::int(3), big(4));
        let payloads = vec![
            big(5),
            crate::tup![term::atom("$gen_call"), term::int(1), big(6)],
            term::list(vec![big(7), term::int(8), big(9)]),
            Term::Map(map),
        ];
        let mut w = writer(true);
        let mut out = Vec::new();
        for p in &payloads {
            w.push(msg(1, term::int(0)), &mut out);
            w.push(msg(1, p.clone()), &mut out);
        }
        w.push(msg(2, term::int(10)), &mut out);
        let (got, splits) = received_split(&drain(&mut w, &mut out));
        // Each message's first large binary is gathered apart on arrival.
        assert_eq!(splits, 4);
        let mut expected = vec![(1, term::int(0))];
        for p in payloads {
            expected.extend([(1, p), (1, term::int(0))]);
        }
        expected.pop();
        let from_1: Vec<(u32, Term)> = got.iter().filter(|(s, _)| *s == 1).cloned().collect();
        assert_eq!(from_1, expected);
        assert!(got.contains(&(2, term::int(10))));
    }

    #[test]
    fn without_fragments_large_messages_stay_whole() {
        let mut w = writer(false);
        let mut out = Vec::new();
        w.push(msg(1, term::binary(vec![9; 1000])), &mut out);
        assert!(w.streams.is_empty());
        let got = received(&drain(&mut w, &mut out));
        assert_eq!(got, vec![(1, term::binary(vec![9; 1000]))]);
    }
}
