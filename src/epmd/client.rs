//! EPMD client: one short TCP connection per query, one long-lived connection
//! per registration (epmd unregisters a node when that connection closes).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::proto::{self, Port2Resp, ProtoError, Request};
use super::{EpmdError, NodeEntry};

/// Bound on each whole query. `erl_epmd` waits 10 s for replies too.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// A `NAMES_RESP` is read to EOF; cap it so a hostile peer cannot make us
/// buffer forever. 1 MiB is thousands of nodes.
const MAX_NAMES_RESP: usize = 1 << 20;

/// A live registration. The TCP connection to the EPMD is the registration:
/// dropping this value closes it and the EPMD forgets the node.
#[derive(Debug)]
pub struct Registration {
    /// Creation the EPMD assigned; goes into this node's pids, ports, refs.
    pub creation: u32,
    name: String,
    stream: TcpStream,
}

impl Registration {
    /// The registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Resolves when the EPMD ends the registration by closing the
    /// connection (for example because it was restarted); the node should
    /// then register again. Cancel-safe.
    pub async fn closed(&mut self) {
        let mut scratch = [0u8; 64];
        loop {
            match self.stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                // EPMD never sends anything on this connection; ignore noise.
                Ok(_) => continue,
            }
        }
    }
}

async fn with_timeout<T>(
    fut: impl std::future::Future<Output = Result<T, EpmdError>>,
) -> Result<T, EpmdError> {
    tokio::time::timeout(QUERY_TIMEOUT, fut)
        .await
        .map_err(|_| EpmdError::Timeout)?
}

async fn send_request(addr: SocketAddr, req: &Request) -> Result<TcpStream, EpmdError> {
    let mut frame = Vec::new();
    proto::encode_request(req, &mut frame).map_err(EpmdError::InvalidRequest)?;
    let mut stream = TcpStream::connect(addr).await?;
    // Requests are one small frame; don't let Nagle delay it.
    stream.set_nodelay(true)?;
    stream.write_all(&frame).await?;
    Ok(stream)
}

/// Reads until `decode` yields a complete reply. The decoders bound every
/// length they read, so the buffer cannot grow past a few KiB.
async fn read_reply<T>(
    stream: &mut TcpStream,
    decode: impl Fn(&[u8]) -> Result<Option<(T, usize)>, ProtoError>,
) -> Result<T, EpmdError> {
    let mut buf = Vec::with_capacity(64);
    loop {
        if let Some((reply, _used)) = decode(&buf).map_err(EpmdError::MalformedReply)? {
            return Ok(reply);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(EpmdError::ClosedEarly);
        }
    }
}

/// Registers `entry` with the EPMD at `addr` (`ALIVE2_REQ`). The node stays
/// registered while the returned [`Registration`] is alive.
pub async fn register(addr: SocketAddr, entry: &NodeEntry) -> Result<Registration, EpmdError> {
    with_timeout(async {
        let mut stream = send_request(addr, &Request::Alive2(entry.clone())).await?;
        let resp = read_reply(&mut stream, proto::decode_alive2_resp).await?;
        if resp.result() != 0 {
            return Err(EpmdError::RegistrationRefused {
                name: entry.name.clone(),
                result: resp.result(),
            });
        }
        tracing::debug!(name = %entry.name, creation = resp.creation(), %addr, "registered with EPMD");
        Ok(Registration {
            creation: resp.creation(),
            name: entry.name.clone(),
            stream,
        })
    })
    .await
}

/// Looks up node `name` (the part before `@`) at the EPMD at `addr`.
/// `Ok(None)` when the EPMD does not know it.
pub async fn port_please(addr: SocketAddr, name: &str) -> Result<Option<NodeEntry>, EpmdError> {
    with_timeout(async {
        let req = Request::PortPlease2 {
            name: name.to_owned(),
        };
        let mut stream = send_request(addr, &req).await?;
        match read_reply(&mut stream, proto::decode_port2_resp).await? {
            Port2Resp::Found(entry) => Ok(Some(entry)),
            Port2Resp::NotFound { .. } => Ok(None),
        }
    })
    .await
}

/// Lists `(name, port)` of every node registered at the EPMD at `addr`.
pub async fn names(addr: SocketAddr) -> Result<Vec<(String, u16)>, EpmdError> {
    with_timeout(async {
        let mut stream = send_request(addr, &Request::Names).await?;
        // The reply ends when the EPMD closes the connection.
        let mut buf = Vec::with_capacity(256);
        loop {
            if buf.len() > MAX_NAMES_RESP {
                return Err(EpmdError::MalformedReply(ProtoError::Malformed {
                    what: "NAMES_RESP",
                    why: "larger than 1 MiB",
                }));
            }
            if stream.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        // erl_epmd treats a close without any bytes as an empty listing.
        if buf.is_empty() {
            return Ok(Vec::new());
        }
        match proto::decode_names_resp(&buf).map_err(EpmdError::MalformedReply)? {
            Some(resp) => Ok(resp.nodes),
            None => Err(EpmdError::ClosedEarly),
        }
    })
    .await
}
