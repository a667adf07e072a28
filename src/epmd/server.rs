//! Embedded EPMD: a tokio task that behaves like the real `epmd` towards
//! clients (our own and `erl`'s `erl_epmd`).
//!
//! Semantics kept from epmd: a node is registered exactly as long as the
//! connection that sent its `ALIVE2_REQ` stays open; a taken name gets result
//! 1 (creation 99, like epmd); `PORT_PLEASE2` and `NAMES` answer and close;
//! `ALIVE2_REQ` is only accepted from the local host. A bad request closes
//! that one connection; the server keeps serving everyone else.
//!
//! Connections are capped ([`MAX_CONNECTIONS`]). At the cap, the oldest
//! connection still waiting for its request is closed to make room: a
//! client that opens connections and leaves them idle cannot shut every
//! other node out for the request timeout (epmd itself refuses new
//! connections until its idle ones time out). Registrations are never
//! closed for room.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::proto::{self, Alive2Resp, Port2Resp, ProtoError, Request};
use super::{EpmdError, NodeEntry};

/// epmd's default `-packet_timeout`: how long a client may take to send its
/// request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Cap on simultaneous connections so a flood cannot exhaust descriptors.
const MAX_CONNECTIONS: usize = 1024;
/// What epmd puts in the creation field of a refused registration.
const REFUSED_CREATION: u16 = 99;

/// An EPMD server running as a tokio task. Stops on [`shutdown`](Self::shutdown)
/// or drop; registrations it holds end with it.
#[derive(Debug)]
pub struct EmbeddedEpmd {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl EmbeddedEpmd {
    /// Binds `addr` and spawns the accept loop on the current tokio runtime.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = Arc::new(State {
            registry: Mutex::new(Registry::new()),
            // NAMES_RESP must carry the port clients connect to: erl_epmd
            // discards the listing if it differs from its ERL_EPMD_PORT.
            port: local_addr.port(),
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            idle: Mutex::default(),
            warn_limit: Mutex::default(),
        });
        tracing::info!(%local_addr, "embedded EPMD listening");
        tokio::spawn(accept_loop(listener, state, shutdown_rx));
        Ok(EmbeddedEpmd {
            local_addr,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes every connection, which unregisters every
    /// node. Idempotent.
    pub fn shutdown(&self) {
        if !self.shutdown.send_replace(true) {
            tracing::info!(local_addr = %self.local_addr, "embedded EPMD shutting down");
        }
    }
}

impl Drop for EmbeddedEpmd {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// If an EPMD answers on 127.0.0.1:`port`, returns `Ok(None)`. Otherwise binds
/// an embedded one on 0.0.0.0:`port` and returns it. If that bind loses a race
/// with another process, waits for the winner to answer and returns `Ok(None)`.
pub async fn ensure_epmd(port: u16) -> Result<Option<EmbeddedEpmd>, EpmdError> {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    if epmd_answers(loopback).await {
        return Ok(None);
    }
    match EmbeddedEpmd::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await {
        Ok(epmd) => Ok(Some(epmd)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            // Someone bound the port between our probe and our bind; it may
            // not be accepting yet.
            for delay_ms in [20, 50, 100, 200, 400] {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                if epmd_answers(loopback).await {
                    return Ok(None);
                }
            }
            tracing::warn!(
                port,
                "EPMD port is taken by something that does not answer as EPMD"
            );
            Err(EpmdError::Io(e))
        }
        Err(e) => Err(EpmdError::Io(e)),
    }
}

/// True if something on `addr` answers `NAMES_REQ` like an EPMD.
async fn epmd_answers(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), super::names(addr)).await,
        Ok(Ok(_))
    )
}

struct State {
    registry: Mutex<Registry>,
    port: u16,
    connections: Arc<Semaphore>,
    /// Connections that have not sent their request yet, oldest first, each
    /// with what closes it (see [`make_room`]).
    idle: Mutex<std::collections::BTreeMap<u64, Arc<tokio::sync::Notify>>>,
    /// A client that keeps sending junk gets a few WARN lines, not one each.
    warn_limit: Mutex<crate::warn_limit::WarnLimit<String>>,
}

impl State {
    /// See `Node::warn_allowed`.
    fn warn_allowed(&self, key: &str) -> Option<u64> {
        let mut limit = self.warn_limit.lock().ok()?;
        match limit.check(key.to_string(), std::time::Instant::now()) {
            crate::warn_limit::Verdict::Log { suppressed } => Some(suppressed),
            crate::warn_limit::Verdict::Suppress => None,
        }
    }

    fn idle(&self) -> MutexGuard<'_, std::collections::BTreeMap<u64, Arc<tokio::sync::Notify>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // The lock is never held across an await or a panic-prone call, but
        // recover from poisoning anyway rather than take the server down.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Registered {
    entry: NodeEntry,
    conn: u64,
}

struct Registry {
    /// In registration order; NAMES lists newest first, as epmd does.
    nodes: Vec<Registered>,
    next_creation: u32,
}

impl Registry {
    fn new() -> Self {
        Registry {
            nodes: Vec::new(),
            // Random start so a restarted EPMD does not hand out the creation
            // a previous incarnation of the same node had.
            next_creation: rand::random(),
        }
    }

    fn take_creation(&mut self) -> u32 {
        loop {
            let c = self.next_creation;
            self.next_creation = self.next_creation.wrapping_add(1);
            // 0 means "unknown creation" to old nodes; never hand it out.
            if c != 0 {
                return c;
            }
        }
    }

    fn register(&mut self, entry: NodeEntry, conn: u64) -> Option<u32> {
        if self.nodes.iter().any(|n| n.entry.name == entry.name) {
            return None;
        }
        let creation = self.take_creation();
        self.nodes.push(Registered { entry, conn });
        Some(creation)
    }

    fn unregister(&mut self, name: &str, conn: u64) {
        self.nodes
            .retain(|n| !(n.entry.name == name && n.conn == conn));
    }

    fn lookup(&self, name: &str) -> Option<&NodeEntry> {
        self.nodes
            .iter()
            .find(|n| n.entry.name == name)
            .map(|n| &n.entry)
    }
}

/// At the connection cap: closes the oldest connection still waiting for
/// its request and takes its place; `None` when none waits (every slot is a
/// registration or a reply under way) or its task did not end in time.
async fn make_room(state: &Arc<State>) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let (_, oldest) = state.idle().pop_first()?;
    oldest.notify_one();
    tokio::time::timeout(
        Duration::from_secs(1),
        state.connections.clone().acquire_owned(),
    )
    .await
    .ok()?
    .ok()
}

/// Removes a registration when its connection's task ends, however it ends
/// (client close, error, server shutdown, task abort).
struct RegistrationGuard {
    state: Arc<State>,
    name: String,
    conn: u64,
}

impl Drop for RegistrationGuard {
    fn drop(&mut self) {
        tracing::debug!(name = %self.name, "EPMD: unregistering");
        self.state.registry().unregister(&self.name, self.conn);
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next_conn: u64 = 0;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|&stop| stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::warn!(error = %e, "embedded EPMD: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match state.connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => match make_room(&state).await {
                Some(p) => p,
                None => {
                    crate::peer_warn!(state, &peer.ip().to_string(), %peer, "embedded EPMD: too many connections, dropping one from {peer}");
                    continue;
                }
            },
        };
        next_conn += 1;
        let conn = next_conn;
        let state = state.clone();
        let mut shutdown = shutdown.clone();
        let evict = Arc::new(tokio::sync::Notify::new());
        state.idle().insert(conn, evict.clone());
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                result = serve(stream, peer, &state, conn) => {
                    if let Err(e) = result {
                        crate::peer_warn!(state, &peer.ip().to_string(), %peer, error = %e, "embedded EPMD: closing the connection from {peer}");
                    }
                }
                _ = evict.notified() => {
                    crate::peer_warn!(state, &peer.ip().to_string(), %peer, "embedded EPMD: at the connection cap; closed the oldest idle connection, from {peer}");
                }
                _ = shutdown.wait_for(|&stop| stop) => {}
            }
            state.idle().remove(&conn);
        });
    }
    tracing::debug!("embedded EPMD: accept loop stopped");
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("bad request: {0}")]
    Proto(#[from] ProtoError),
    #[error("no complete request within {REQUEST_TIMEOUT:?}")]
    Timeout,
    #[error("connection closed in the middle of a request")]
    Partial,
    #[error("bytes after the request")]
    TrailingBytes,
    #[error("ALIVE2_REQ from non-local address")]
    NotLocal,
}

async fn read_request(stream: &mut TcpStream) -> Result<Request, ConnError> {
    // Bounded: decode_request refuses lengths over MAX_REQUEST_LEN as soon as
    // the header is in, so the buffer never exceeds a few KiB.
    let mut buf = Vec::with_capacity(64);
    loop {
        if let Some((req, used)) = proto::decode_request(&buf)? {
            // A client must send one request and wait for the reply; epmd
            // drops connections that send more.
            if used != buf.len() {
                return Err(ConnError::TrailingBytes);
            }
            return Ok(req);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(ConnError::Partial);
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    state: &Arc<State>,
    conn: u64,
) -> Result<(), ConnError> {
    let req = tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream))
        .await
        .map_err(|_| ConnError::Timeout)??;
    // Served from here on (a registration for as long as it lives): no
    // longer closed to make room.
    state.idle().remove(&conn);
    let mut out = Vec::new();
    match req {
        Request::Names => {
            let nodes: Vec<(String, u16)> = state
                .registry()
                .nodes
                .iter()
                .rev()
                .map(|n| (n.entry.name.clone(), n.entry.port))
                .collect();
            proto::encode_names_resp(
                u32::from(state.port),
                nodes.iter().map(|(n, p)| (n.as_str(), *p)),
                &mut out,
            );
            finish(stream, &out).await
        }
        Request::PortPlease2 { name } => {
            let found = state.registry().lookup(&name).cloned();
            tracing::debug!(%name, found = found.is_some(), "EPMD: PORT_PLEASE2");
            let resp = match found {
                Some(entry) => Port2Resp::Found(entry),
                None => Port2Resp::NotFound { result: 1 },
            };
            proto::encode_port2_resp(&resp, &mut out)?;
            // erl_epmd waits for the close before it returns the answer.
            finish(stream, &out).await
        }
        Request::Alive2(entry) => {
            if !is_local(peer, stream.local_addr()?) {
                return Err(ConnError::NotLocal);
            }
            let name = entry.name.clone();
            let old_style = entry.highest_version < 6;
            let registered = state.registry().register(entry, conn);
            let Some(creation) = registered else {
                tracing::info!(%name, %peer, "EPMD: name already registered, refusing");
                let resp = if old_style {
                    Alive2Resp::Old {
                        result: 1,
                        creation: REFUSED_CREATION,
                    }
                } else {
                    Alive2Resp::X {
                        result: 1,
                        creation: u32::from(REFUSED_CREATION),
                    }
                };
                proto::encode_alive2_resp(&resp, &mut out);
                return finish(stream, &out).await;
            };
            // From here on, however this task ends, the name is released.
            let _guard = RegistrationGuard {
                state: state.clone(),
                name: name.clone(),
                conn,
            };
            tracing::info!(%name, creation, %peer, "EPMD: registered");
            let resp = if old_style {
                // Pre-OTP-23 nodes only understand creations 1..=3.
                Alive2Resp::Old {
                    result: 0,
                    creation: (creation % 3 + 1) as u16,
                }
            } else {
                Alive2Resp::X {
                    result: 0,
                    creation,
                }
            };
            proto::encode_alive2_resp(&resp, &mut out);
            // One write: erl_epmd matches the 6 reply bytes as one chunk.
            stream.write_all(&out).await?;
            // The connection is the registration. The node never sends
            // anything else, so EOF, an error or any byte all end it.
            let mut scratch = [0u8; 64];
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => Ok(()),
                Ok(_) => Err(ConnError::TrailingBytes),
            }
        }
    }
}

/// Writes a final reply, then closes with FIN so the client reads it all.
async fn finish(mut stream: TcpStream, reply: &[u8]) -> Result<(), ConnError> {
    stream.write_all(reply).await?;
    stream.shutdown().await?;
    Ok(())
}

/// epmd only takes registrations from 127.0.0.0/8 or from the host's own
/// address; anything else could hijack node names.
fn is_local(peer: SocketAddr, local: SocketAddr) -> bool {
    let peer_ip = peer.ip().to_canonical();
    let local_ip = local.ip().to_canonical();
    peer_ip.is_loopback() || peer_ip == local_ip
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_are_distinct_and_nonzero() {
        let mut r = Registry::new();
        r.next_creation = u32::MAX - 1;
        let a = r.register(NodeEntry::new("a", 1, false), 1).unwrap();
        let b = r.register(NodeEntry::new("b", 2, false), 2).unwrap();
        let c = r.register(NodeEntry::new("c", 3, false), 3).unwrap();
        assert_eq!((a, b, c), (u32::MAX - 1, u32::MAX, 1));
    }

    #[test]
    fn duplicate_refused_and_unregister_checks_connection() {
        let mut r = Registry::new();
        assert!(r.register(NodeEntry::new("a", 1, false), 1).is_some());
        assert!(r.register(NodeEntry::new("a", 2, false), 2).is_none());
        // A stale connection must not remove someone else's registration.
        r.unregister("a", 2);
        assert_eq!(r.lookup("a").map(|e| e.port), Some(1));
        r.unregister("a", 1);
        assert!(r.lookup("a").is_none());
    }

    /// Found by the chaos suite: 1,024 connections opened and left idle
    /// used to shut every later client out for the request timeout (60 s):
    /// no lookup, no registration.
    #[tokio::test]
    async fn idle_connections_at_the_cap_make_room_for_new_clients() {
        let epmd = EmbeddedEpmd::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("binds");
        let addr = epmd.local_addr();
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS + 100 {
            idle.push(TcpStream::connect(addr).await.expect("connects"));
        }
        // A registration and a lookup still go through, and the
        // registration survives more idle connections after it.
        let mut reg = TcpStream::connect(addr).await.expect("connects");
        let mut req = Vec::new();
        proto::encode_request(
            &Request::Alive2(NodeEntry::new("held", 4242, false)),
            &mut req,
        )
        .expect("encodes");
        reg.write_all(&req).await.expect("alive2");
        let mut resp = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), reg.read_exact(&mut resp))
            .await
            .expect("ALIVE2 answered")
            .expect("reads");
        // ALIVE2_X_RESP (118) or ALIVE2_RESP (121), result 0.
        assert!(matches!(resp[..2], [118 | 121, 0]), "registered: {resp:?}");
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.expect("connects"));
        }
        let found = tokio::time::timeout(
            Duration::from_secs(10),
            crate::epmd::port_please(addr, "held"),
        )
        .await
        .expect("PORT_PLEASE answered")
        .expect("lookup");
        assert_eq!(found.map(|e| e.port), Some(4242));
    }

    #[test]
    fn locality() {
        let local: SocketAddr = "10.0.0.5:4369".parse().unwrap();
        assert!(is_local("127.0.0.1:1".parse().unwrap(), local));
        assert!(is_local("127.1.2.3:1".parse().unwrap(), local));
        assert!(is_local("10.0.0.5:1".parse().unwrap(), local));
        assert!(is_local("[::ffff:127.0.0.1]:1".parse().unwrap(), local));
        assert!(!is_local("10.0.0.6:1".parse().unwrap(), local));
    }
}
