//! `cluster` against real libcluster 3.3 on an Elixir node: Gossip with a
//! secret finds a Rust node and is found by it (each direction checked on
//! its own), a Rust node with the wrong secret stays out, and libcluster's
//! Epmd strategy listing the Rust node connects to it, and the reverse.
//!
//! Needs libcluster's compiled modules (BEAM_PEER_HORDE_EBIN lists them
//! with Horde's); without them each test prints one SKIPPED line. The
//! `#[ignore]`d recorder writes tests/fixtures/libcluster/, which
//! tests/cluster_wire.rs decodes everywhere.
//!
//! The Elixir node is driven through a hidden Rust node (`ctl`), so the only
//! visible connections are the ones the strategies make.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beam_peer::cluster::{
    Cluster, ClusterEvent, ClusterEventKind, ConnectOutcome, EpmdConfig, GossipConfig, HookFuture,
    Hooks, Strategy, Topology,
};
use beam_peer::term;
use beam_peer::{Node, NodeConfig, NodeEvent};
use common::{eventually, Beam};

const T: Duration = Duration::from_secs(20);

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("beam_peer=info")
        .with_test_writer()
        .try_init();
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

struct Live {
    beam: Beam,
    ctl: Node,
    epmd: u16,
}

/// An Elixir node with libcluster loaded, and a hidden Rust node to drive it.
async fn elixir(test: &str) -> Option<Live> {
    let ebins = common::horde_or_skip(test)?;
    // By path, not by file: the matrix's ebin paths are as seen inside its root.
    if !ebins
        .iter()
        .any(|e| e.to_string_lossy().contains("libcluster"))
    {
        println!("SKIPPED {test}: libcluster is not among BEAM_PEER_HORDE_EBIN's directories");
        return None;
    }
    let epmd = common::free_port();
    let ctl = common::rust_node_with(
        NodeConfig::new(format!("{}@127.0.0.1", common::unique("ctl"))).hidden(true),
        epmd,
    )
    .await;
    let beam = Beam::start_elixir("lc_ex", common::COOKIE, epmd, &ebins, &["libcluster"]);
    Some(Live { beam, ctl, epmd })
}

impl Live {
    /// Starts `Cluster.Supervisor` with `topologies` (Elixir source).
    async fn libcluster(&self, topologies: &str, bindings: Vec<(&str, term::Term)>) {
        let mut p = self.ctl.process();
        let code = format!(
            "{{:ok, _}} = :beam_peer_ctl.keep(fn -> Cluster.Supervisor.start_link([{topologies}, [name: :beam_peer_lc]]) end); :ok"
        );
        common::eval_elixir(&mut p, &self.beam.name, &code, bindings).await;
    }

    async fn elixir_nodes(&self) -> Vec<String> {
        let mut p = self.ctl.process();
        let t = common::eval_elixir(&mut p, &self.beam.name, "Node.list()", vec![]).await;
        term::as_list(&t)
            .unwrap_or_default()
            .iter()
            .filter_map(term::as_atom)
            .map(str::to_string)
            .collect()
    }
}

fn gossip_topology(port: u16, secret: &str) -> Strategy {
    Strategy::Gossip(GossipConfig {
        port,
        multicast_if: Some(Ipv4Addr::LOCALHOST),
        secret: Some(secret.into()),
        ..GossipConfig::default()
    })
}

const ELIXIR_GOSSIP: &str = "[gossip: [strategy: Cluster.Strategy.Gossip, config: [port: port, multicast_if: \"127.0.0.1\", secret: secret]]]";

/// Hooks that record who the strategy would connect to and connect to
/// nobody: any connection that appears was made by the other side.
#[derive(Clone, Default)]
struct Observe(Arc<Mutex<Vec<String>>>);

impl Hooks for Observe {
    fn connect(&self, _node: &Node, peer: &str) -> HookFuture {
        self.0.lock().unwrap().push(peer.to_string());
        Box::pin(async { ConnectOutcome::Failed("observing only".into()) })
    }
    fn disconnect(&self, _node: &Node, _peer: &str) -> Result<bool, String> {
        Ok(false)
    }
    fn list_nodes(&self, _node: &Node) -> Vec<String> {
        vec![]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcluster_gossip_with_a_secret_and_rust_gossip_find_each_other_both_ways() {
    logs();
    let Some(live) =
        elixir("libcluster_gossip_with_a_secret_and_rust_gossip_find_each_other_both_ways").await
    else {
        return;
    };
    let port = free_udp_port();
    let secret = "beam-peer-live-secret";
    live.libcluster(
        ELIXIR_GOSSIP,
        vec![
            ("port", term::int(port.into())),
            ("secret", term::binary(secret.as_bytes())),
        ],
    )
    .await;

    // A Rust node that hears but never connects: Elixir must decode our
    // heartbeat and connect to us, and we must decode Elixir's.
    let rust = common::rust_node("lc_rs", live.epmd).await;
    let mut node_events = rust.subscribe();
    let seen = Observe::default();
    let c = Cluster::start(
        &rust,
        vec![Topology::new("gossip", gossip_topology(port, secret)).hooks(seen.clone())],
    )
    .await
    .unwrap();
    let up = tokio::time::timeout(T, async {
        loop {
            if let Ok(NodeEvent::Up { node, .. }) = node_events.recv().await {
                if node == live.beam.name {
                    break;
                }
            }
        }
    })
    .await;
    assert!(
        up.is_ok(),
        "libcluster on Elixir never connected to the Rust node"
    );
    eventually!(
        T,
        seen.0.lock().unwrap().contains(&live.beam.name),
        "the Rust node never decoded Elixir's heartbeat: {:?}",
        seen.0.lock().unwrap()
    );
    assert!(live.elixir_nodes().await.contains(&rust.name().to_string()));
    drop(c);

    // And a Rust node with the default hooks joins through its own connect.
    let joiner = common::rust_node("lc_join", live.epmd).await;
    let jc = Cluster::start(
        &joiner,
        vec![Topology::new("gossip", gossip_topology(port, secret))],
    )
    .await
    .unwrap();
    eventually!(
        T,
        joiner.is_connected(&live.beam.name),
        "joiner not connected"
    );
    drop(jc);
    joiner.shutdown();
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_node_with_the_wrong_secret_stays_out_of_a_libcluster_gossip_cluster() {
    logs();
    let Some(live) =
        elixir("a_rust_node_with_the_wrong_secret_stays_out_of_a_libcluster_gossip_cluster").await
    else {
        return;
    };
    let port = free_udp_port();
    live.libcluster(
        ELIXIR_GOSSIP,
        vec![
            ("port", term::int(port.into())),
            ("secret", term::binary(&b"right"[..])),
        ],
    )
    .await;
    // The wrong one starts first, so its first heartbeat reaches Elixir
    // before the right one's does.
    let wrong = common::rust_node("lc_wrong", live.epmd).await;
    let wc = Cluster::start(
        &wrong,
        vec![Topology::new("gossip", gossip_topology(port, "wrong"))],
    )
    .await
    .unwrap();
    let mut wrong_events = wc.subscribe();
    let right = common::rust_node("lc_right", live.epmd).await;
    let rc = Cluster::start(
        &right,
        vec![Topology::new("gossip", gossip_topology(port, "right"))],
    )
    .await
    .unwrap();
    eventually!(
        T,
        right.is_connected(&live.beam.name),
        "the right secret did not join"
    );
    let foreign = tokio::time::timeout(T, async {
        loop {
            if let Ok(ClusterEvent {
                kind: ClusterEventKind::ForeignGossip { .. },
                ..
            }) = wrong_events.recv().await
            {
                break;
            }
        }
    })
    .await;
    assert!(
        foreign.is_ok(),
        "the wrong-secret node never heard (and refused) Elixir's heartbeat"
    );
    assert!(!wrong.is_connected(&live.beam.name));
    assert!(!live
        .elixir_nodes()
        .await
        .contains(&wrong.name().to_string()));
    drop((wc, rc));
    wrong.shutdown();
    right.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcluster_epmd_hosts_listing_the_rust_node_connect_and_the_reverse() {
    logs();
    let Some(live) =
        elixir("libcluster_epmd_hosts_listing_the_rust_node_connect_and_the_reverse").await
    else {
        return;
    };
    // Elixir's Epmd strategy names the Rust node.
    let rust = common::rust_node("lc_epmd_rs", live.epmd).await;
    live.libcluster(
        "[epmd: [strategy: Cluster.Strategy.Epmd, config: [hosts: [host]]]]",
        vec![("host", term::atom(rust.name()))],
    )
    .await;
    eventually!(
        T,
        rust.is_connected(&live.beam.name),
        "libcluster's Epmd did not connect"
    );

    // The Rust Epmd strategy names the Elixir node.
    let other = common::rust_node("lc_epmd_rs2", live.epmd).await;
    let c = Cluster::start(
        &other,
        vec![Topology::new(
            "epmd",
            Strategy::Epmd(EpmdConfig {
                hosts: vec![live.beam.name.clone()],
                timeout: None,
            }),
        )],
    )
    .await
    .unwrap();
    eventually!(
        T,
        other.is_connected(&live.beam.name),
        "the Rust Epmd strategy did not connect"
    );
    assert!(live
        .elixir_nodes()
        .await
        .contains(&other.name().to_string()));
    drop(c);
    other.shutdown();
    rust.shutdown();
}

/// One datagram sent to the gossip group on `port` (bound as libcluster binds).
fn gossip_listener(port: u16) -> std::net::UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())
        .unwrap();
    s.join_multicast_v4(&Ipv4Addr::new(233, 252, 1, 32), &Ipv4Addr::LOCALHOST)
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.into()
}

/// Records what libcluster's Gossip sends, without and with a secret, into
/// tests/fixtures/libcluster/ (`cargo nextest run --test cluster_live
/// --run-ignored only`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn record_libcluster_gossip_packets() {
    let Some(live) = elixir("record_libcluster_gossip_packets").await else {
        return;
    };
    let (plain_port, secret_port) = (free_udp_port(), free_udp_port());
    let plain = gossip_listener(plain_port);
    let secret = gossip_listener(secret_port);
    live.libcluster(
        "[plain: [strategy: Cluster.Strategy.Gossip, config: [port: pp, multicast_if: \"127.0.0.1\"]], secret: [strategy: Cluster.Strategy.Gossip, config: [port: sp, multicast_if: \"127.0.0.1\", secret: \"fixture-secret\"]]]",
        vec![("pp", term::int(plain_port.into())), ("sp", term::int(secret_port.into()))],
    )
    .await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/libcluster");
    std::fs::create_dir_all(&dir).unwrap();
    let mut buf = [0u8; 2048];
    let v = common::beam_versions().expect("versions");
    let tag = format!("otp{}", v.otp);
    for (sock, name) in [(&plain, "plain"), (&secret, "secret")] {
        let (n, _) = sock.recv_from(&mut buf).expect("a heartbeat");
        std::fs::write(dir.join(format!("gossip_{name}_{tag}.bin")), &buf[..n]).unwrap();
    }
    std::fs::write(
        dir.join(format!("gossip_{tag}.txt")),
        format!(
            "node {}\nsecret fixture-secret\nOTP {} Elixir {} libcluster 3.3.3\n",
            live.beam.name,
            v.otp,
            v.elixir.as_deref().unwrap_or("?")
        ),
    )
    .unwrap();
}
