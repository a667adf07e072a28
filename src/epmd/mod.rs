//! EPMD: the client, and the embedded EPMD used when none is running.
//!
//! This module owns everything between a node and the Erlang Port Mapper
//! Daemon:
//! - [`proto`]: the sans-I/O wire codec (no sockets, no logging);
//! - the client: [`register`] (keeps the node registered for as long as the
//!   returned [`Registration`] lives), [`port_please`], [`names`];
//! - [`EmbeddedEpmd`]: a small EPMD server, good enough for real `erl` nodes,
//!   and [`ensure_epmd`], which starts one only when nothing answers.
//!
//! What it must never do: speak the distribution protocol (that is `dist`),
//! panic or allocate unboundedly on bytes from the network, kill or replace an
//! EPMD it did not start, or keep a node registered after its
//! [`Registration`] is dropped.

mod client;
pub mod proto;
mod server;

pub use client::{names, port_please, register, Registration};
pub use server::{ensure_epmd, EmbeddedEpmd};

/// The port EPMD listens on unless told otherwise.
pub const DEFAULT_EPMD_PORT: u16 = 4369;

/// `ERL_EPMD_PORT` from the environment (as `erl` and `epmd` read it), else
/// [`DEFAULT_EPMD_PORT`]. An unparsable value is ignored with a warning.
pub fn epmd_port() -> u16 {
    match std::env::var("ERL_EPMD_PORT") {
        Ok(s) => match s.trim().parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => {
                tracing::warn!(value = %s, "ignoring invalid ERL_EPMD_PORT");
                DEFAULT_EPMD_PORT
            }
        },
        Err(_) => DEFAULT_EPMD_PORT,
    }
}

/// One node as EPMD knows it: what `ALIVE2_REQ` registers and `PORT2_RESP`
/// returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    /// The part of the node name before `@`.
    pub name: String,
    /// The TCP port the node accepts distribution connections on.
    pub port: u16,
    /// Hidden nodes (node type 72) are not part of the fully connected mesh.
    pub hidden: bool,
    /// 0 = TCP/IPv4, the only value in use.
    pub protocol: u8,
    /// Highest distribution protocol version; 6 since OTP 23.
    pub highest_version: u16,
    /// Lowest distribution protocol version; OTP 23..25 announce 5.
    pub lowest_version: u16,
    /// Opaque extra data, usually empty.
    pub extra: Vec<u8>,
}

impl NodeEntry {
    /// A TCP node speaking distribution versions 5..=6, as OTP 23+ announces.
    pub fn new(name: &str, port: u16, hidden: bool) -> Self {
        NodeEntry {
            name: name.to_owned(),
            port,
            hidden,
            protocol: 0,
            highest_version: 6,
            lowest_version: 5,
            extra: Vec::new(),
        }
    }
}

/// Everything that can go wrong talking to an EPMD.
#[derive(Debug, thiserror::Error)]
pub enum EpmdError {
    #[error("EPMD I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out waiting for EPMD")]
    Timeout,
    #[error("malformed reply from EPMD: {0}")]
    MalformedReply(#[source] proto::ProtoError),
    #[error("EPMD closed the connection before a complete reply")]
    ClosedEarly,
    /// Our own argument cannot be put on the wire (empty or overlong name, ...).
    #[error("invalid EPMD request: {0}")]
    InvalidRequest(#[source] proto::ProtoError),
    /// EPMD answered `ALIVE2` with a non-zero result. epmd gives no reason;
    /// in practice the name is already registered.
    #[error("EPMD refused to register {name:?} (result {result}); the name is probably taken")]
    RegistrationRefused { name: String, result: u8 },
}
