//! `Phoenix.PubSub` (2.x, PG2 adapter) as a Rust member: Rust processes
//! subscribe to topics that Elixir nodes broadcast on, and Rust broadcasts
//! reach Elixir subscribers.
//!
//! The PG2 adapter's wire contract, which this module keeps:
//! - each node runs `pool_size` adapter workers, registered under the group
//!   atoms `<PubSub>.Adapter`, `<PubSub>.Adapter_2` .. `_N`, each a member
//!   of the `pg` group of its own name in the scope `Elixir.Phoenix.PubSub`;
//! - a broadcast picks one group (`phash2(publisher, N)`) and sends
//!   `{:forward_to_local, topic, message, dispatcher}` to every member of it
//!   on other nodes; the receiving worker dispatches to its local
//!   subscribers, which get the bare message;
//! - `direct_broadcast` sends the same to `{group, node}`.
//!
//! One publisher always goes through one group, so its messages reach each
//! node in the order sent, as in Elixir.
//!
//! What it must never do: stop a worker on an unexpected message (the PG2
//! worker ignores them too), or deliver to a subscriber that has exited.
//! A custom dispatcher module named in a message from Elixir cannot run
//! here: such messages are delivered as the default dispatcher does (and
//! logged once per dispatcher).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use crate::node::{Dest, Node, RegisterError};
use crate::process::ProcessExit;
use crate::services::pg::{self, Pg, PgCallError};
use crate::term::{self, Pid, Term};

/// The pg scope Phoenix.PubSub 2.x runs on every node.
pub const PG_SCOPE: &str = "Elixir.Phoenix.PubSub";

/// The dispatcher Phoenix.PubSub uses unless told otherwise.
pub const DEFAULT_DISPATCHER: &str = "Elixir.Phoenix.PubSub";

/// How to start a PubSub member.
#[derive(Debug, Clone)]
pub struct PubSubOptions {
    /// The PubSub's name, an Elixir module atom such as `Elixir.MyApp.PubSub`.
    pub name: String,
    /// Adapter workers (and pg groups) per node, Phoenix's `pool_size`
    /// (default 1). Should match the Elixir nodes' setting.
    pub pool_size: usize,
}

impl PubSubOptions {
    pub fn new(name: impl Into<String>) -> Self {
        PubSubOptions {
            name: name.into(),
            pool_size: 1,
        }
    }

    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }
}

/// Why a PubSub operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PubSubError {
    #[error("a PubSub name is taken on this node: {0}")]
    Register(#[from] RegisterError),
    #[error("pg: {0}")]
    Pg(#[from] PgCallError),
}

/// Subscribers per topic, with their metadata.
type Subscribers = Arc<RwLock<HashMap<Vec<u8>, Vec<(Pid, Term)>>>>;

/// A running PubSub member. Cheap to clone.
#[derive(Clone)]
pub struct PubSub {
    name: String,
    node: Node,
    scope: Pg,
    /// The adapter groups, in Phoenix's order; `workers[i]` runs `groups[i]`.
    groups: Vec<String>,
    /// The same as atoms, the pg group names.
    group_atoms: Vec<Term>,
    /// The group this handle's own broadcasts take (chosen once, by the
    /// first worker's pid, as Phoenix chooses by the publisher).
    own_group: usize,
    workers: Vec<Pid>,
    subscribers: Subscribers,
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub").field("name", &self.name).finish()
    }
}

/// The adapter group names of `name` for `pool_size` workers, as the PG2
/// adapter names them: `<name>.Adapter`, then `<name>.Adapter_2` ...
pub fn adapter_groups(name: &str, pool_size: usize) -> Vec<String> {
    let adapter = format!("{name}.Adapter");
    (1..=pool_size.max(1))
        .map(|i| {
            if i == 1 {
                adapter.clone()
            } else {
                format!("{adapter}_{i}")
            }
        })
        .collect()
}

impl PubSub {
    /// `Phoenix.PubSub` named `name` with `pool_size: 1`.
    pub async fn start(node: &Node, name: &str) -> Result<PubSub, PubSubError> {
        PubSub::start_with(node, PubSubOptions::new(name)).await
    }

    pub async fn start_with(node: &Node, opts: PubSubOptions) -> Result<PubSub, PubSubError> {
        let scope = pg::scope(node, PG_SCOPE)?;
        let groups = adapter_groups(&opts.name, opts.pool_size);
        let subscribers: Subscribers = Arc::default();
        let warned: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut workers = Vec::with_capacity(groups.len());
        for group in &groups {
            let subs = subscribers.clone();
            let warned = warned.clone();
            let name = opts.name.clone();
            let pid = node.spawn(move |mut p| async move {
                loop {
                    let msg = match p.receive().await {
                        Ok(m) => m,
                        Err(e) => return ProcessExit::from(e),
                    };
                    match term::as_tuple(&msg) {
                        Some([tag, Term::Binary(topic), message, dispatcher])
                            if term::is_atom(tag, "forward_to_local") =>
                        {
                            note_dispatcher(&warned, &name, dispatcher);
                            dispatch(p.node(), &subs, &topic.bytes, None, message);
                        }
                        // The PG2 worker ignores anything else; so do we.
                        _ => tracing::debug!(pubsub = %name, message = %msg, "PubSub worker ignored a message"),
                    }
                }
            });
            node.register(group, &pid)?;
            scope.join(term::atom(group), &pid).await?;
            workers.push(pid);
        }
        let group_atoms = groups.iter().map(|g| term::atom(g)).collect();
        let own_group = group_of(&workers[0], groups.len());
        Ok(PubSub {
            name: opts.name,
            node: node.clone(),
            scope,
            groups,
            group_atoms,
            own_group,
            workers,
            subscribers,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Phoenix.PubSub.subscribe/3` for the local process `pid`: it gets
    /// every message broadcast on `topic` from then on. A process that
    /// subscribes twice gets each message twice, as in Phoenix.
    pub fn subscribe(&self, pid: &Pid, topic: &str, metadata: Option<Term>) {
        let mut subs = self.subscribers.write().unwrap_or_else(|e| e.into_inner());
        subs.entry(topic.as_bytes().to_vec())
            .or_default()
            .push((pid.clone(), metadata.unwrap_or_else(|| term::atom("nil"))));
    }

    /// `Phoenix.PubSub.unsubscribe/2`: every subscription of `pid` to `topic`.
    pub fn unsubscribe(&self, pid: &Pid, topic: &str) {
        let mut subs = self.subscribers.write().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = subs.get_mut(topic.as_bytes()) {
            list.retain(|(p, _)| p != pid);
            if list.is_empty() {
                subs.remove(topic.as_bytes());
            }
        }
    }

    /// The local subscribers of `topic` (exited ones already left out).
    pub fn subscribers(&self, topic: &str) -> Vec<Pid> {
        let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
        subs.get(topic.as_bytes())
            .map(|l| {
                l.iter()
                    .filter(|(p, _)| self.node.is_process_alive(p))
                    .map(|(p, _)| p.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `Phoenix.PubSub.broadcast/3`: every subscriber on every node. This
    /// handle's broadcasts all take one adapter group, so they reach each
    /// node in the order sent.
    pub fn broadcast(&self, topic: &str, message: Term) {
        self.remote(self.own_group, topic, &message);
        self.local(topic, None, &message);
    }

    /// `Phoenix.PubSub.broadcast_from/4`: every subscriber but `from`
    /// (elsewhere every subscriber, as Phoenix does). The group is chosen
    /// by `from`, as Phoenix chooses it by the publishing process.
    pub fn broadcast_from(&self, from: &Pid, topic: &str, message: Term) {
        self.remote(group_of(from, self.groups.len()), topic, &message);
        self.local(topic, Some(from), &message);
    }

    /// `Phoenix.PubSub.local_broadcast/3`: this node's subscribers only.
    pub fn local_broadcast(&self, topic: &str, message: Term) {
        self.local(topic, None, &message);
    }

    /// `Phoenix.PubSub.local_broadcast_from/4`.
    pub fn local_broadcast_from(&self, from: &Pid, topic: &str, message: Term) {
        self.local(topic, Some(from), &message);
    }

    fn local(&self, topic: &str, from: Option<&Pid>, message: &Term) {
        dispatch(
            &self.node,
            &self.subscribers,
            topic.as_bytes(),
            from,
            message,
        );
    }

    /// `Phoenix.PubSub.direct_broadcast/4`: the subscribers on `node` only.
    pub fn direct_broadcast(&self, node: &str, topic: &str, message: Term) {
        if node == self.node.name() {
            return self.local_broadcast(topic, message);
        }
        let group = self.own_group;
        self.node.send(
            &self.workers[group],
            &Dest::Remote(self.groups[group].clone(), node.to_string()),
            forward(topic, message),
        );
    }

    /// `{:forward_to_local, ..}` to every member of group `i` on other nodes.
    fn remote(&self, i: usize, topic: &str, message: &Term) {
        let me = self.node.name();
        let msg = forward(topic, message.clone());
        for member in self.scope.get_members(&self.group_atoms[i]) {
            if member.node.name.as_str() != me {
                self.node
                    .send(&self.workers[i], &Dest::Pid(member), msg.clone());
            }
        }
    }
}

impl PubSub {
    /// Publishes this node's view of the cluster on `topic`, as cluster
    /// managers do by hand: `{:beam_peer_cluster, :nodeup, observer, node}`
    /// and `{:beam_peer_cluster, :nodedown, observer, node, reason}`
    /// (`reason` a string), `observer` being this node. Every node that
    /// publishes says what it saw, so a subscriber hears each change once
    /// per publishing node. Runs until the node shuts down.
    pub fn publish_cluster_events(&self, topic: &str) {
        let me = self.clone();
        let topic = topic.to_string();
        let mut events = self.node.subscribe();
        tokio::spawn(async move {
            use crate::node::NodeEvent;
            use tokio::sync::broadcast::error::RecvError;
            let observer = term::atom(me.node.name());
            loop {
                let event = match events.recv().await {
                    Ok(NodeEvent::Up { node, .. }) => crate::tup![
                        term::atom("beam_peer_cluster"),
                        term::atom("nodeup"),
                        observer.clone(),
                        term::atom(&node)
                    ],
                    Ok(NodeEvent::Down { node, reason }) => crate::tup![
                        term::atom("beam_peer_cluster"),
                        term::atom("nodedown"),
                        observer.clone(),
                        term::atom(&node),
                        term::binary(reason.into_bytes())
                    ],
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(pubsub = %me.name, missed = n, "cluster events not published");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                me.broadcast(&topic, event);
            }
        });
    }

    /// Publishes `registry`'s registrations on `topic` as Horde tells its
    /// listeners: `{:register, R, key, pid, value}` and `{:unregister, R,
    /// key, pid}`. Only registrations of this node's processes are
    /// published here, so each reaches a subscriber once when every member
    /// publishes. Runs until the registry stops.
    pub fn publish_registry_events(
        &self,
        registry: &crate::horde::registry::Registry,
        topic: &str,
    ) {
        use crate::horde::registry::RegistryEvent;
        let me = self.clone();
        let topic = topic.to_string();
        let name = registry.name().to_string();
        let mut events = registry.subscribe();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(e) => {
                        let (RegistryEvent::Register { pid, .. }
                        | RegistryEvent::Unregister { pid, .. }) = &e;
                        if pid.node.name.as_str() == me.node.name() {
                            me.broadcast(&topic, e.to_term(&name));
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(pubsub = %me.name, registry = %name, missed = n, "registry events not published");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }
}

/// Phoenix's `elem(groups, :erlang.phash2(publisher, size))`.
fn group_of(publisher: &Pid, groups: usize) -> usize {
    let n = groups.max(1) as u64;
    (crate::term::phash2::phash2_range(&Term::Pid(publisher.clone()), n) as usize).min(groups - 1)
}

fn forward(topic: &str, message: Term) -> Term {
    crate::tup![
        term::atom("forward_to_local"),
        term::binary(topic.as_bytes().to_vec()),
        message,
        term::atom(DEFAULT_DISPATCHER)
    ]
}

/// Logs, once per PubSub and dispatcher, that a custom dispatcher was
/// asked for and the default one's delivery was used.
fn note_dispatcher(warned: &Mutex<HashSet<String>>, pubsub: &str, dispatcher: &Term) {
    let name = term::as_atom(dispatcher).unwrap_or("?");
    if name == DEFAULT_DISPATCHER {
        return;
    }
    let mut seen = warned.lock().unwrap_or_else(|e| e.into_inner());
    if seen.insert(name.to_string()) {
        tracing::warn!(%pubsub, dispatcher = name, "custom PubSub dispatcher cannot run on a Rust node; its messages are delivered as the default dispatcher does");
    }
}

/// The default dispatcher: `message` to every local subscriber of `topic`
/// but `from`. Subscribers that exited are dropped on the way.
fn dispatch(node: &Node, subs: &Subscribers, topic: &[u8], from: Option<&Pid>, message: &Term) {
    let dead = {
        let read = subs.read().unwrap_or_else(|e| e.into_inner());
        let Some(list) = read.get(topic) else {
            return;
        };
        node.deliver_local_all(
            list.iter().map(|(p, _)| p).filter(|p| Some(*p) != from),
            message,
        )
    };
    if dead.is_empty() {
        return;
    }
    let dead: HashSet<Pid> = dead.into_iter().collect();
    let mut write = subs.write().unwrap_or_else(|e| e.into_inner());
    if let Some(list) = write.get_mut(topic) {
        list.retain(|(p, _)| !dead.contains(p));
        if list.is_empty() {
            write.remove(topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_groups_are_named_as_phoenix_names_them() {
        assert_eq!(
            adapter_groups("Elixir.MyApp.PubSub", 3),
            [
                "Elixir.MyApp.PubSub.Adapter",
                "Elixir.MyApp.PubSub.Adapter_2",
                "Elixir.MyApp.PubSub.Adapter_3"
            ]
        );
        assert_eq!(adapter_groups("Elixir.P", 0), ["Elixir.P.Adapter"]);
    }

    #[test]
    fn the_forwarded_message_is_the_pg2_adapters() {
        assert_eq!(
            forward("t", term::atom("m")),
            crate::tup![
                term::atom("forward_to_local"),
                term::binary(b"t".to_vec()),
                term::atom("m"),
                term::atom("Elixir.Phoenix.PubSub")
            ]
        );
    }
}
