//! Cluster formation as libcluster 3.3 does it: topologies, each a strategy
//! (Epmd, ErlangHosts, LocalEpmd, Gossip, DNSPoll, Kubernetes.DNS, Kubernetes,
//! Kubernetes.DNSSRV) that finds nodes and connects to them through
//! `connect` / `disconnect` / `list_nodes` hooks.
//!
//! This module owns the topologies' tasks (one per topology: its poll timer,
//! its gossip socket, its retries) and the [`ClusterEvent`] stream. The
//! decisions are sans-I/O in [`membership`] (candidates in, connects and
//! disconnects out, back-off per node), the gossip datagram in [`packet`],
//! the keys in [`config`], the lookups in [`discovery`]. What it must never
//! do: stop the node or another topology over one bad packet, host or
//! answer; disconnect a hidden node or one it never named; or log the same
//! wrong-secret packet more than once per sender.
//!
//! ```no_run
//! # async fn run(node: beam_peer::Node) -> Result<(), beam_peer::cluster::ClusterError> {
//! use beam_peer::cluster::{Cluster, GossipConfig, Strategy, Topology};
//! let gossip = GossipConfig { secret: Some("s3cret".into()), ..GossipConfig::default() };
//! let cluster = Cluster::start(&node, vec![Topology::new("gossip", Strategy::Gossip(gossip))]).await?;
//! let mut events = cluster.subscribe(); // ClusterEvent { topology, kind }
//! # Ok(()) }
//! ```

pub mod config;
pub mod discovery;
mod driver;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod membership;
pub mod packet;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use crate::node::Node;

pub use config::{
    ConfigError, DnsPollConfig, EpmdConfig, ErlangHostsConfig, GossipConfig, KubernetesConfig,
    KubernetesDnsConfig, KubernetesDnsSrvConfig, LocalEpmdConfig, LookupMode, NameMode, Strategy,
    Value,
};
pub use membership::{Backoff, ConnectOutcome};

/// A boxed future, as the connect hook returns one.
pub type HookFuture = Pin<Box<dyn Future<Output = ConnectOutcome> + Send + 'static>>;

/// libcluster's `connect`, `disconnect` and `list_nodes` MFAs, as one trait.
/// The defaults ([`NodeHooks`]) are `net_kernel:connect_node/1`,
/// `erlang:disconnect_node/1` and `erlang:nodes(connected)`.
pub trait Hooks: Send + Sync + 'static {
    fn connect(&self, node: &Node, peer: &str) -> HookFuture;
    /// `Ok(true)` disconnected, `Ok(false)` was not connected.
    fn disconnect(&self, node: &Node, peer: &str) -> Result<bool, String>;
    fn list_nodes(&self, node: &Node) -> Vec<String>;
}

/// The default hooks: the node's own connect, disconnect and connected nodes.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeHooks;

impl Hooks for NodeHooks {
    fn connect(&self, node: &Node, peer: &str) -> HookFuture {
        let node = node.clone();
        let peer = peer.to_string();
        Box::pin(async move {
            match node.connect(&peer).await {
                Ok(()) => ConnectOutcome::Connected,
                Err(crate::node::ConnectError::ShuttingDown) => ConnectOutcome::Ignored,
                Err(e) => ConnectOutcome::Failed(e.to_string()),
            }
        })
    }

    fn disconnect(&self, node: &Node, peer: &str) -> Result<bool, String> {
        Ok(node.disconnect(peer))
    }

    fn list_nodes(&self, node: &Node) -> Vec<String> {
        node.nodes()
    }
}

/// One topology: a name (libcluster's topology key), a strategy, the hooks
/// and the back-off of its retries.
#[derive(Clone)]
pub struct Topology {
    pub name: String,
    pub strategy: Strategy,
    pub hooks: Arc<dyn Hooks>,
    pub backoff: Backoff,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("name", &self.name)
            .field("strategy", &self.strategy.name())
            .finish()
    }
}

impl Topology {
    pub fn new(name: impl Into<String>, strategy: Strategy) -> Topology {
        Topology {
            name: name.into(),
            strategy,
            hooks: Arc::new(NodeHooks),
            backoff: Backoff::default(),
        }
    }

    pub fn hooks(mut self, hooks: impl Hooks) -> Topology {
        self.hooks = Arc::new(hooks);
        self
    }

    pub fn backoff(mut self, backoff: Backoff) -> Topology {
        self.backoff = backoff;
        self
    }
}

/// What a topology did, with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEvent {
    pub topology: String,
    pub kind: ClusterEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEventKind {
    /// libcluster: "connected to :node".
    Connected {
        node: String,
    },
    /// libcluster: "unable to connect to :node"; `failures` in a row so far.
    ConnectFailed {
        node: String,
        reason: String,
        failures: u32,
    },
    /// libcluster: "disconnected from :node" (the strategy stopped naming it).
    Disconnected {
        node: String,
    },
    DisconnectFailed {
        node: String,
        reason: String,
    },
    /// A gossip packet did not decrypt with our secret (first one per sender).
    ForeignGossip {
        from: std::net::SocketAddr,
    },
}

/// Why topologies could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("topology {topology:?}: {message}")]
    Start { topology: String, message: String },
    #[error("two topologies are named {0:?}")]
    DuplicateName(String),
}

/// The running topologies of one node. Dropping it (or [`Cluster::stop`])
/// stops them; the connections they made stay.
pub struct Cluster {
    events: broadcast::Sender<ClusterEvent>,
    tasks: Vec<(String, AbortHandle)>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("topologies", &self.topologies())
            .finish()
    }
}

impl Cluster {
    /// Starts every topology on `node`. A strategy that cannot start at all
    /// (a gossip port that cannot be bound, a resolver that cannot be made)
    /// is an error and nothing is left running.
    pub async fn start(node: &Node, topologies: Vec<Topology>) -> Result<Cluster, ClusterError> {
        let mut names = std::collections::BTreeSet::new();
        for t in &topologies {
            if !names.insert(t.name.clone()) {
                return Err(ClusterError::DuplicateName(t.name.clone()));
            }
        }
        let (events, _) = broadcast::channel(1024);
        let mut cluster = Cluster {
            events,
            tasks: Vec::new(),
        };
        for t in topologies {
            let name = t.name.clone();
            let task = driver::spawn(node.clone(), t, cluster.events.clone())
                .await
                .map_err(|message| ClusterError::Start {
                    topology: name.clone(),
                    message,
                })?;
            cluster.tasks.push((name, task));
        }
        Ok(cluster)
    }

    /// Every topology's connects and disconnects from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.events.subscribe()
    }

    pub fn topologies(&self) -> Vec<String> {
        self.tasks.iter().map(|(n, _)| n.clone()).collect()
    }

    pub fn stop(&self) {
        for (_, t) in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
