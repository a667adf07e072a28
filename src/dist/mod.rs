//! One distribution connection: handshake, framing, fragments, ticks, control messages,
//! over TCP or TLS ([`tls`], with the `tls` feature).
//!
//! The handshake ([`handshake`]) and the frame codec ([`codec`]) are sans-I/O state
//! machines: bytes in, bytes and events out, no sockets and no clocks. Only
//! [`connection`] (and `transport`, the TCP or TLS stream under it) touches tokio.

pub mod coalesce;
pub mod codec;
pub mod connection;
mod experiment;
pub mod flags;
pub mod handshake;
pub mod message;
pub mod poll;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;

pub use coalesce::{CoalesceReport, ReadCoalesce};
pub use connection::ConnectionStats;
pub use poll::{BusyPoll, PollReport};
