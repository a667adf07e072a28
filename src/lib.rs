//! beam_peer: a Rust node that joins Erlang/Elixir (BEAM) clusters as a real peer.
//!
//! Layers, each using only the ones below it:
//! - [`term`]: Erlang terms, the external term format (ETF), constructors and matchers.
//! - [`epmd`]: the EPMD client and the embedded EPMD used when none is running.
//! - [`dist`]: one connection: handshake, framing, fragments, ticks, control messages.
//! - [`node`]: the process table, names, links, monitors, routing, node events.
//! - [`process`]: mailboxes, selective receive, exit signals, gen_server-style servers.
//! - [`services`]: what every BEAM node expects to find (net_kernel, global, erpc, rex, pg).
//! - [`cluster`]: topologies as libcluster forms clusters (Epmd, LocalEpmd, Gossip, DNS, Kubernetes), with reconnects.
//! - [`pubsub`]: Phoenix.PubSub (PG2 adapter) topics shared with Elixir nodes.
//!
//! Beside the layers, `warn_limit` (crate-private, sans-I/O) keeps a peer that
//! misbehaves from filling the log; `epmd` and `dist` both use it.
//!
//! ```no_run
//! use beam_peer::{Node, NodeConfig, term};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::new("rust@127.0.0.1").cookie("secret")).await?;
//! assert!(node.ping("erl@127.0.0.1").await);
//! let mut me = node.process();
//! let reply = me
//!     .call(("my_server", "erl@127.0.0.1"), term::atom("hello"), std::time::Duration::from_secs(5))
//!     .await?;
//! # Ok(()) }
//! ```

pub mod cluster;
pub mod crdt;
pub mod demo;
pub mod dist;
pub mod epmd;
pub mod horde;
pub mod node;
pub mod process;
pub mod pubsub;
pub mod runtime;
pub mod services;
pub mod term;
mod warn_limit;

pub use node::{
    ConnectError, Dest, Discovery, Node, NodeConfig, NodeError, NodeEvent, RpcCallError, RpcError,
};
pub use process::gen_server::{self, CallReply, Flow, GenServer, StartOptions};
pub use process::{CallError, Exited, Process, ProcessExit};
pub use term::Term;

#[cfg(feature = "tls")]
pub use dist::tls::{ServerNameIndication, TlsConfig, TlsError, TlsOptions, TlsVersion, Verify};
