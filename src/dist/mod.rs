//! One distribution connection: handshake, framing, fragments, ticks, control messages.
//!
//! The handshake ([`handshake`]) and the frame codec ([`codec`]) are sans-I/O state
//! machines: bytes in, bytes and events out, no sockets and no clocks. Only
//! [`connection`] touches tokio.

pub mod codec;
pub mod connection;
pub mod flags;
pub mod handshake;
pub mod message;

pub use connection::ConnectionStats;
