//! The tokio edge of a topology: one task that polls its source on the
//! strategy's interval (or listens for and sends gossip heartbeats), runs
//! the connects the [`Membership`] decides, feeds it their results and the
//! node's nodedowns, logs each connect and disconnect as libcluster logs it
//! (`[libcluster:TOPOLOGY] connected to :"node"`), and publishes the same as
//! [`ClusterEvent`]s.

use std::collections::{BTreeSet, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;

use super::discovery;
use super::membership::{Action, ConnectOutcome, Membership, View};
use super::packet::{self, Key};
use super::{ClusterEvent, ClusterEventKind, GossipConfig, Strategy, Topology};
use crate::node::{Discovery, Node, NodeEvent};

/// Where a polling topology's candidates come from.
enum Source {
    Hosts(Vec<String>),
    HostsFile(Option<std::path::PathBuf>),
    LocalEpmd,
    #[cfg(feature = "dns")]
    Ips {
        dns: discovery::Dns,
        query: String,
        basename: String,
        aaaa: bool,
    },
    #[cfg(feature = "kubernetes")]
    Kubernetes(super::KubernetesConfig),
    #[cfg(feature = "dns")]
    Srv {
        dns: discovery::Dns,
        name: String,
        basename: String,
    },
}

struct Gossip {
    socket: UdpSocket,
    to: SocketAddr,
    key: Option<Key>,
    /// Senders whose packets did not decode with our secret, logged once each.
    foreign: ForeignSenders,
}

// One value per topology, for the task's life: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Poll {
        source: Source,
        interval: Option<Duration>,
        forget_missing: bool,
    },
    Gossip(Gossip),
}

pub(super) async fn spawn(
    node: Node,
    t: Topology,
    events: broadcast::Sender<ClusterEvent>,
) -> Result<AbortHandle, String> {
    let kind = match &t.strategy {
        Strategy::Epmd(c) => Kind::Poll {
            source: Source::Hosts(c.hosts.clone()),
            interval: c.timeout,
            forget_missing: false,
        },
        Strategy::ErlangHosts(c) => {
            let path = c.hosts_file.clone().or_else(discovery::find_hosts_file);
            if path.is_none() {
                tracing::warn!(
                    "[libcluster:{}] couldn't find .hosts.erlang file - not joining cluster",
                    t.name
                );
            }
            Kind::Poll {
                source: Source::HostsFile(path),
                interval: c.timeout,
                forget_missing: false,
            }
        }
        Strategy::LocalEpmd(c) => {
            if !matches!(node.config().discovery, Discovery::Epmd { .. }) {
                return Err("LocalEpmd needs a node that uses EPMD".into());
            }
            Kind::Poll {
                source: Source::LocalEpmd,
                interval: Some(c.polling_interval),
                forget_missing: false,
            }
        }
        Strategy::Gossip(c) => Kind::Gossip(open_gossip(c)?),
        #[cfg(feature = "dns")]
        Strategy::DnsPoll(c) => Kind::Poll {
            source: Source::Ips {
                dns: discovery::Dns::new(&c.nameservers)?,
                query: c.query.clone(),
                basename: c.node_basename.clone(),
                aaaa: true,
            },
            interval: Some(c.polling_interval),
            forget_missing: true,
        },
        #[cfg(feature = "dns")]
        Strategy::KubernetesDns(c) => Kind::Poll {
            source: Source::Ips {
                dns: discovery::Dns::new(&c.nameservers)?,
                query: c.service.clone(),
                basename: c.application_name.clone(),
                aaaa: false,
            },
            interval: Some(c.polling_interval),
            forget_missing: true,
        },
        #[cfg(feature = "dns")]
        Strategy::KubernetesDnsSrv(c) => {
            let domain = c
                .cluster_domain
                .clone()
                .or_else(|| std::env::var("CLUSTER_DOMAIN").ok())
                .unwrap_or_else(|| "cluster.local.".into());
            Kind::Poll {
                source: Source::Srv {
                    dns: discovery::Dns::new(&c.nameservers)?,
                    name: format!("{}.{}.svc.{}", c.service, c.namespace, domain),
                    basename: c.application_name.clone(),
                },
                interval: Some(c.polling_interval),
                forget_missing: true,
            }
        }
        #[cfg(feature = "kubernetes")]
        Strategy::Kubernetes(c) => Kind::Poll {
            source: Source::Kubernetes(c.clone()),
            interval: Some(c.polling_interval),
            forget_missing: true,
        },
        #[cfg(not(feature = "kubernetes"))]
        Strategy::Kubernetes(_) => {
            return Err("the Kubernetes strategy needs beam_peer's `kubernetes` feature".into())
        }
        #[cfg(not(feature = "dns"))]
        Strategy::DnsPoll(_) | Strategy::KubernetesDns(_) | Strategy::KubernetesDnsSrv(_) => {
            return Err("the DNS strategies need beam_peer's `dns` feature".into())
        }
    };
    let retry_on_timer = !matches!(kind, Kind::Gossip(_));
    let seed = rand::random::<u64>();
    let membership = Membership::new(node.name(), t.backoff, retry_on_timer, seed);
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let runner = Runner {
        node,
        t,
        m: membership,
        events,
        results_tx,
    };
    let task = tokio::spawn(runner.run(kind, results_rx));
    Ok(task.abort_handle())
}

/// Binds the gossip socket as libcluster opens it: `reuseaddr`, SO_REUSEPORT,
/// `broadcast`, and unless `broadcast_only` multicast TTL, loop and
/// membership of `multicast_addr` on `multicast_if` (else any interface).
fn open_gossip(c: &GossipConfig) -> Result<Gossip, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err =
        |what: &str, e: std::io::Error| format!("gossip socket on port {}: {what}: {e}", c.port);
    let s =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| err("open", e))?;
    s.set_reuse_address(true).map_err(|e| err("reuseaddr", e))?;
    #[cfg(unix)]
    s.set_reuse_port(true).map_err(|e| err("reuseport", e))?;
    s.set_broadcast(true).map_err(|e| err("broadcast", e))?;
    s.bind(&SocketAddrV4::new(c.if_addr, c.port).into())
        .map_err(|e| err(&format!("bind {}", c.if_addr), e))?;
    if !c.broadcast_only {
        let iface = c.multicast_if.unwrap_or(Ipv4Addr::UNSPECIFIED);
        if let Some(i) = c.multicast_if {
            s.set_multicast_if_v4(&i)
                .map_err(|e| err("multicast_if", e))?;
        }
        s.set_multicast_ttl_v4(c.multicast_ttl)
            .map_err(|e| err("multicast_ttl", e))?;
        s.set_multicast_loop_v4(true)
            .map_err(|e| err("multicast_loop", e))?;
        s.join_multicast_v4(&c.multicast_addr, &iface)
            .map_err(|e| err(&format!("join {} on {iface}", c.multicast_addr), e))?;
    }
    s.set_nonblocking(true).map_err(|e| err("nonblocking", e))?;
    let socket = UdpSocket::from_std(s.into()).map_err(|e| err("register", e))?;
    Ok(Gossip {
        socket,
        to: SocketAddr::V4(SocketAddrV4::new(c.multicast_addr, c.port)),
        key: c.secret.as_deref().map(Key::from_secret),
        foreign: ForeignSenders::default(),
    })
}

/// The senders whose gossip did not decode with our secret: each is logged
/// the first time only. Bounded, so a flood from spoofed addresses cannot
/// grow it; past the bound nobody new is logged.
#[derive(Default)]
struct ForeignSenders(HashSet<SocketAddr>);

impl ForeignSenders {
    const MAX: usize = 1024;

    fn first_time(&mut self, from: SocketAddr) -> bool {
        self.0.len() < Self::MAX && self.0.insert(from)
    }
}

struct Runner {
    node: Node,
    t: Topology,
    m: Membership,
    events: broadcast::Sender<ClusterEvent>,
    results_tx: mpsc::UnboundedSender<(String, ConnectOutcome)>,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

impl Runner {
    async fn run(
        mut self,
        mut kind: Kind,
        mut results: mpsc::UnboundedReceiver<(String, ConnectOutcome)>,
    ) {
        let mut node_events = self.node.subscribe();
        let mut next_poll = match &kind {
            Kind::Poll { .. } => Some(Instant::now()),
            Kind::Gossip(_) => None,
        };
        // libcluster sends the first heartbeat at once, then after a random
        // 1..5000 ms each time.
        let mut next_heartbeat = match &kind {
            Kind::Gossip(_) => Some(Instant::now()),
            Kind::Poll { .. } => None,
        };
        let mut buf = vec![0u8; 65536];
        loop {
            let wake = self.m.next_wake();
            let recv = async {
                match &kind {
                    Kind::Gossip(g) => g.socket.recv_from(&mut buf).await,
                    Kind::Poll { .. } => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep_until(next_poll) => {
                    if let Kind::Poll { source, interval, forget_missing } = &kind {
                        let found = self.candidates(source).await;
                        let now = Instant::now();
                        let actions = match found {
                            Some(c) => self.m.poll(c, &self.view(), now, *forget_missing),
                            // A failed lookup forgets nothing: the answer is unknown, not empty.
                            None => self.m.retry_due(&self.view(), now),
                        };
                        self.act(actions);
                        next_poll = interval.map(|i| now + i);
                    }
                }
                _ = sleep_until(wake) => {
                    let actions = self.m.retry_due(&self.view(), Instant::now());
                    self.act(actions);
                }
                _ = sleep_until(next_heartbeat) => {
                    if let Kind::Gossip(g) = &kind {
                        let iv: [u8; 16] = rand::random();
                        let datagram = packet::encode(self.node.name(), g.key.as_ref(), iv);
                        tracing::trace!("[libcluster:{}] heartbeat", self.t.name);
                        if let Err(e) = g.socket.send_to(&datagram, g.to).await {
                            tracing::debug!(topology = %self.t.name, error = %e, "heartbeat not sent");
                        }
                    }
                    let wait = rand::random_range(1..=5_000u64);
                    next_heartbeat = Some(Instant::now() + Duration::from_millis(wait));
                }
                got = recv => {
                    if let (Ok((n, from)), Kind::Gossip(g)) = (got, &mut kind) {
                        let datagram = buf[..n].to_vec();
                        self.heartbeat(g, &datagram, from);
                    }
                }
                Some((peer, outcome)) = results.recv() => self.result(&peer, outcome),
                ev = node_events.recv() => match ev {
                    Ok(NodeEvent::Down { node, .. }) => self.m.node_down(&node, Instant::now()),
                    Ok(NodeEvent::Up { .. }) => {}
                    // Missed nodedowns: treat every named node that is not
                    // connected as dropped, so none waits for a poll that
                    // may never come (Epmd without `timeout`).
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let view = self.view();
                        let now = Instant::now();
                        let missing: Vec<String> = self
                            .m
                            .known()
                            .filter(|n| !view.connected.contains(*n) && self.m.failures(n) == 0)
                            .map(str::to_string)
                            .collect();
                        for n in missing {
                            self.m.node_down(&n, now);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    }

    fn view(&self) -> View {
        let connected: BTreeSet<String> = self.t.hooks.list_nodes(&self.node).into_iter().collect();
        let visible: BTreeSet<String> = self.node.visible_nodes().into_iter().collect();
        let hidden = self
            .node
            .nodes()
            .into_iter()
            .filter(|n| !visible.contains(n))
            .collect();
        View { connected, hidden }
    }

    /// The source's nodes now; `None` when it could not answer (logged).
    async fn candidates(&self, source: &Source) -> Option<Vec<String>> {
        let topology = &self.t.name;
        let epmd_port = match self.node.config().discovery {
            Discovery::Epmd { port } => port,
            Discovery::Fixed { .. } => crate::epmd::epmd_port(),
        };
        match source {
            Source::Hosts(hosts) => Some(hosts.clone()),
            Source::HostsFile(None) => Some(vec![]),
            Source::HostsFile(Some(path)) => {
                let hosts = match discovery::read_hosts_file(path) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::warn!("[libcluster:{topology}] cannot read the hosts file: {e}");
                        return None;
                    }
                };
                let mut nodes = Vec::new();
                for host in hosts {
                    match discovery::epmd_nodes(&host, epmd_port).await {
                        Ok(n) => nodes.extend(n),
                        Err(e) => tracing::debug!("[libcluster:{topology}] {e}"),
                    }
                }
                Some(nodes)
            }
            Source::LocalEpmd => {
                let host = crate::node::split_node_name(self.node.name())
                    .map(|(_, h)| h.to_string())
                    .unwrap_or_default();
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, epmd_port));
                match crate::epmd::names(addr).await {
                    Ok(names) => Some(
                        names
                            .into_iter()
                            .map(|(n, _)| format!("{n}@{host}"))
                            .collect(),
                    ),
                    Err(e) => {
                        tracing::warn!("[libcluster:{topology}] local EPMD: {e}");
                        None
                    }
                }
            }
            #[cfg(feature = "dns")]
            Source::Ips {
                dns,
                query,
                basename,
                aaaa,
            } => {
                tracing::debug!("[libcluster:{topology}] polling dns for '{query}'");
                match dns.ips(query, *aaaa).await {
                    Ok(ips) => Some(
                        ips.into_iter()
                            .map(|ip| discovery::ip_node(basename, ip))
                            .collect(),
                    ),
                    Err(e) => {
                        tracing::error!(
                            "[libcluster:{topology}] lookup against {query} failed: {e}"
                        );
                        None
                    }
                }
            }
            #[cfg(feature = "kubernetes")]
            Source::Kubernetes(c) => match super::kubernetes::fetch(c).await {
                Ok(nodes) => Some(nodes),
                Err(e) => {
                    tracing::error!("[libcluster:{topology}] request to kubernetes failed!: {e}");
                    None
                }
            },
            #[cfg(feature = "dns")]
            Source::Srv {
                dns,
                name,
                basename,
            } => match dns.srv_targets(name).await {
                Ok(targets) => Some(
                    targets
                        .iter()
                        .map(|t| discovery::srv_node(basename, t))
                        .collect(),
                ),
                Err(e) => {
                    tracing::error!("[libcluster:{topology}] lookup against {name} failed: {e}");
                    None
                }
            },
        }
    }

    fn heartbeat(&mut self, g: &mut Gossip, datagram: &[u8], from: SocketAddr) {
        match packet::decode(datagram, g.key.as_ref()) {
            Ok(peer) => {
                if peer == self.node.name() {
                    return;
                }
                tracing::trace!(
                    "[libcluster:{}] received heartbeat from {peer}",
                    self.t.name
                );
                let view = self.view();
                if let Some(a) = self.m.heard(&peer, &view, Instant::now()) {
                    self.act(vec![a]);
                }
            }
            Err(e) if e.is_secret_mismatch() => {
                if g.foreign.first_time(from) {
                    tracing::warn!(
                        "[libcluster:{}] ignoring gossip from {from}: {e} (a node with another \
                         secret, or none; further packets from it are ignored silently)",
                        self.t.name
                    );
                    self.emit(ClusterEventKind::ForeignGossip { from });
                }
            }
            Err(e) => {
                tracing::debug!(topology = %self.t.name, %from, error = %e, "gossip packet ignored")
            }
        }
    }

    fn act(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Connect(peer) => {
                    let fut = self.t.hooks.connect(&self.node, &peer);
                    let tx = self.results_tx.clone();
                    tokio::spawn(async move {
                        let outcome = fut.await;
                        let _ = tx.send((peer, outcome));
                    });
                }
                Action::Disconnect(peer) => self.disconnect(&peer),
            }
        }
    }

    fn disconnect(&mut self, peer: &str) {
        let t = &self.t.name;
        match self.t.hooks.disconnect(&self.node, peer) {
            Ok(true) => {
                tracing::info!("[libcluster:{t}] disconnected from :\"{peer}\"");
                self.emit(ClusterEventKind::Disconnected { node: peer.into() });
            }
            Ok(false) => tracing::warn!(
                "[libcluster:{t}] disconnect from :\"{peer}\" failed because we're already disconnected"
            ),
            Err(reason) => {
                tracing::warn!("[libcluster:{t}] disconnect from :\"{peer}\" failed with: {reason}");
                self.emit(ClusterEventKind::DisconnectFailed {
                    node: peer.into(),
                    reason,
                });
            }
        }
    }

    fn result(&mut self, peer: &str, outcome: ConnectOutcome) {
        let before = self.m.failures(peer);
        self.m.connect_result(peer, &outcome, Instant::now());
        let t = &self.t.name;
        match outcome {
            ConnectOutcome::Connected => {
                if before > 0 {
                    tracing::info!(
                        failures = before,
                        "[libcluster:{t}] connected to :\"{peer}\""
                    );
                } else {
                    tracing::info!("[libcluster:{t}] connected to :\"{peer}\"");
                }
                self.emit(ClusterEventKind::Connected { node: peer.into() });
            }
            ConnectOutcome::Failed(_) | ConnectOutcome::Ignored => {
                let failures = self.m.failures(peer).max(before + 1);
                let reason = match &outcome {
                    ConnectOutcome::Failed(r) => r.clone(),
                    _ => "not part of network".to_string(),
                };
                // The first failure in a row at WARN, as libcluster logs it;
                // the retries behind it at DEBUG, so a node that is gone for
                // good does not fill the log.
                if failures <= 1 {
                    match outcome {
                        ConnectOutcome::Ignored => tracing::warn!(
                            "[libcluster:{t}] unable to connect to :\"{peer}\": not part of network"
                        ),
                        _ => {
                            tracing::warn!(%reason, "[libcluster:{t}] unable to connect to :\"{peer}\"")
                        }
                    }
                } else {
                    tracing::debug!(failures, %reason, "[libcluster:{t}] unable to connect to :\"{peer}\"");
                }
                self.emit(ClusterEventKind::ConnectFailed {
                    node: peer.into(),
                    reason,
                    failures,
                });
            }
        }
    }

    fn emit(&self, kind: ClusterEventKind) {
        let _ = self.events.send(ClusterEvent {
            topology: self.t.name.clone(),
            kind,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_foreign_sender_is_logged_once_and_the_set_is_bounded() {
        let mut f = ForeignSenders::default();
        let a: SocketAddr = "127.0.0.1:45892".parse().unwrap();
        assert!(f.first_time(a));
        for _ in 0..100 {
            assert!(!f.first_time(a));
        }
        for port in 0..ForeignSenders::MAX as u16 * 2 {
            f.first_time(SocketAddr::from(([10, 0, 0, 1], port)));
        }
        assert_eq!(f.0.len(), ForeignSenders::MAX);
    }
}
