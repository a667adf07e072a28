//! beam_peer: a Rust node that joins Erlang/Elixir (BEAM) clusters as a real peer.
//!
//! Layers, each using only the ones below it:
//! - [`term`]: Erlang terms (re-exported from `eetf`), constructors and matchers.
//! - [`epmd`]: the EPMD client and the embedded EPMD used when none is running.
//! - [`dist`]: one connection: handshake, framing, fragments, ticks, control messages.
//! - [`node`]: the process table, names, links, monitors, routing, node events.
//! - [`process`]: mailboxes, selective receive, exit signals, gen_server-style servers.
//! - [`services`]: what every BEAM node expects to find (net_kernel, global, erpc, rex).

pub mod dist;
pub mod epmd;
pub mod node;
pub mod process;
pub mod services;
pub mod term;



pub use term::Term;
