//! Rust-only cluster formation (no BEAM anywhere): three nodes with Gossip
//! form a full mesh without seeds, three with Epmd hosts, three with
//! LocalEpmd, three with DNSPoll / Kubernetes.DNS / Kubernetes.DNSSRV
//! against a DNS server this test runs on a loopback port, and a dropped
//! connection comes back by itself.

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beam_peer::cluster::{
    Cluster, ClusterEvent, ClusterEventKind, DnsPollConfig, EpmdConfig, GossipConfig,
    KubernetesDnsConfig, KubernetesDnsSrvConfig, LocalEpmdConfig, Strategy, Topology,
};
use beam_peer::{Discovery, Node, NodeConfig};
use common::eventually;

const T: Duration = Duration::from_secs(20);

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("beam_peer=info")
        .with_test_writer()
        .try_init();
}

fn others(nodes: &[Node], me: &Node) -> BTreeSet<String> {
    nodes
        .iter()
        .filter(|n| n.name() != me.name())
        .map(|n| n.name().to_string())
        .collect()
}

fn meshed(nodes: &[Node]) -> bool {
    nodes
        .iter()
        .all(|n| n.nodes().into_iter().collect::<BTreeSet<_>>() == others(nodes, n))
}

/// A UDP port free on 127.0.0.1 a moment ago: each run gossips on its own.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

fn gossip(port: u16, secret: &str) -> Strategy {
    Strategy::Gossip(GossipConfig {
        port,
        multicast_if: Some(Ipv4Addr::LOCALHOST),
        secret: Some(secret.into()),
        ..GossipConfig::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gossip_nodes_form_a_full_mesh_and_a_wrong_secret_stays_out() {
    logs();
    let epmd = common::free_port();
    let port = free_udp_port();
    let mut nodes = Vec::new();
    let mut clusters = Vec::new();
    for i in 0..3 {
        let n = common::rust_node(&format!("gossip{i}"), epmd).await;
        let c = Cluster::start(&n, vec![Topology::new("gossip", gossip(port, "s3cret"))])
            .await
            .expect("gossip starts");
        nodes.push(n);
        clusters.push(c);
    }
    let mut events = clusters[0].subscribe();
    eventually!(
        T,
        meshed(&nodes),
        "no full mesh: {:?}",
        nodes.iter().map(|n| n.nodes()).collect::<Vec<_>>()
    );

    // Same multicast group and port, another secret: heard, refused, logged once.
    let stranger = common::rust_node("gossip_stranger", epmd).await;
    let sc = Cluster::start(
        &stranger,
        vec![Topology::new("gossip", gossip(port, "other"))],
    )
    .await
    .expect("gossip starts");
    let mut stranger_events = sc.subscribe();
    let foreign = tokio::time::timeout(T, async {
        loop {
            match events.recv().await {
                Ok(ClusterEvent {
                    kind: ClusterEventKind::ForeignGossip { from },
                    topology,
                }) => break (topology, from),
                Ok(_) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
    .expect("the stranger's heartbeat reached node 0 and was refused");
    assert_eq!(foreign.0, "gossip");
    // And the stranger refused ours.
    tokio::time::timeout(T, async {
        while !matches!(
            stranger_events.recv().await,
            Ok(ClusterEvent {
                kind: ClusterEventKind::ForeignGossip { .. },
                ..
            })
        ) {}
    })
    .await
    .expect("node 0's heartbeats reached the stranger and were refused");
    assert!(stranger.nodes().is_empty(), "{:?}", stranger.nodes());
    for n in &nodes {
        assert!(!n.is_connected(stranger.name()));
    }
    drop(sc);
    stranger.shutdown();
    drop(clusters);
    for n in nodes {
        n.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_epmd_nodes_mesh_and_a_dropped_connection_comes_back() {
    logs();
    let epmd = common::free_port();
    let names: Vec<String> = (0..3)
        .map(|i| format!("{}@127.0.0.1", common::unique(&format!("epmd{i}"))))
        .collect();
    let mut nodes = Vec::new();
    let mut clusters = Vec::new();
    for name in &names {
        let n = common::rust_node_with(NodeConfig::new(name.clone()), epmd).await;
        // libcluster's default `timeout: :infinity`: connect at start only.
        // A node not up yet, or dropped later, is retried on its back-off.
        let s = Strategy::Epmd(EpmdConfig {
            hosts: names.clone(),
            timeout: None,
        });
        clusters.push(
            Cluster::start(&n, vec![Topology::new("epmd", s)])
                .await
                .unwrap(),
        );
        nodes.push(n);
    }
    eventually!(T, meshed(&nodes), "no full mesh");

    // Both sides hear the nodedown and retry: whichever is first connects,
    // the other finds the connection there.
    let mut events0 = clusters[0].subscribe();
    let mut events1 = clusters[1].subscribe();
    assert!(nodes[0].disconnect(nodes[1].name()));
    let connected = |ev: Result<ClusterEvent, _>, peer: &str| matches!(&ev, Ok(ClusterEvent { kind: ClusterEventKind::Connected { node }, .. }) if node == peer);
    eventually!(
        T,
        connected(events0.try_recv(), nodes[1].name())
            || connected(events1.try_recv(), nodes[0].name()),
        "neither node 0 nor node 1 reconnected"
    );
    assert!(nodes[0].is_connected(nodes[1].name()));
    drop(clusters);
    for n in nodes {
        n.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_epmd_meshes_every_node_of_the_host_and_two_topologies_run_at_once() {
    logs();
    let epmd = common::free_port();
    let mut nodes = Vec::new();
    let mut clusters = Vec::new();
    for i in 0..3 {
        let n = common::rust_node(&format!("local{i}"), epmd).await;
        let local = Strategy::LocalEpmd(LocalEpmdConfig {
            polling_interval: Duration::from_millis(300),
        });
        // A second topology beside it, naming nobody: both run, one event stream.
        let empty = Strategy::Epmd(EpmdConfig {
            hosts: vec![],
            timeout: Some(Duration::from_millis(300)),
        });
        let c = Cluster::start(
            &n,
            vec![Topology::new("local", local), Topology::new("none", empty)],
        )
        .await
        .unwrap();
        assert_eq!(c.topologies(), ["local", "none"]);
        clusters.push(c);
        nodes.push(n);
    }
    eventually!(T, meshed(&nodes), "no full mesh");

    // A hidden node (a remote shell, say) in the same EPMD is connected by
    // LocalEpmd like any other, and never disconnected.
    let hidden = common::rust_node_with(
        NodeConfig::new(format!("{}@127.0.0.1", common::unique("hidden"))).hidden(true),
        epmd,
    )
    .await;
    eventually!(
        T,
        nodes.iter().all(|n| n.is_connected(hidden.name())),
        "hidden node not reached"
    );

    // A dropped node comes back within a polling interval or so, connected
    // again by whichever side's poll comes first.
    let mut events0 = clusters[0].subscribe();
    let mut events2 = clusters[2].subscribe();
    assert!(nodes[2].disconnect(nodes[0].name()));
    eventually!(T, nodes[2].is_connected(nodes[0].name()), "no reconnect");
    let reconnected = |ev: Result<ClusterEvent, _>, peer: &str| matches!(&ev, Ok(ClusterEvent { topology, kind: ClusterEventKind::Connected { node } }) if topology == "local" && node == peer);
    eventually!(
        T,
        reconnected(events2.try_recv(), nodes[0].name())
            || reconnected(events0.try_recv(), nodes[2].name()),
        "no Connected event for the reconnect"
    );
    drop(clusters);
    hidden.shutdown();
    for n in nodes {
        n.shutdown();
    }
}

/// A tiny authoritative DNS server for the tests: A records and SRV records
/// by name, over UDP on a loopback port, changeable while it runs.
/// Records by name, shared between the test and the server task.
type Records<T> = Arc<Mutex<Vec<(String, Vec<T>)>>>;

#[derive(Clone, Default)]
struct Zone {
    a: Records<Ipv4Addr>,
    srv: Records<String>,
}

impl Zone {
    fn set_a(&self, name: &str, ips: &[Ipv4Addr]) {
        let mut a = self.a.lock().unwrap();
        a.retain(|(n, _)| n != name);
        a.push((name.to_string(), ips.to_vec()));
    }
    fn set_srv(&self, name: &str, targets: &[&str]) {
        let mut s = self.srv.lock().unwrap();
        s.retain(|(n, _)| n != name);
        s.push((
            name.to_string(),
            targets.iter().map(|t| t.to_string()).collect(),
        ));
    }

    async fn serve(self) -> SocketAddr {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                if let Some(reply) = self.answer(&buf[..n]) {
                    let _ = sock.send_to(&reply, from).await;
                }
            }
        });
        addr
    }

    fn answer(&self, q: &[u8]) -> Option<Vec<u8>> {
        if q.len() < 12 {
            return None;
        }
        let mut pos = 12;
        let mut labels = Vec::new();
        loop {
            let len = usize::from(*q.get(pos)?);
            pos += 1;
            if len == 0 {
                break;
            }
            labels.push(String::from_utf8_lossy(q.get(pos..pos + len)?).to_lowercase());
            pos += len;
        }
        let qtype = u16::from_be_bytes([*q.get(pos)?, *q.get(pos + 1)?]);
        let question = &q[12..pos + 4];
        let name = labels.join(".");
        let mut answers: Vec<(u16, Vec<u8>)> = Vec::new();
        let mut known = false;
        if let Some((_, ips)) = self.a.lock().unwrap().iter().find(|(n, _)| *n == name) {
            known = true;
            if qtype == 1 {
                answers.extend(ips.iter().map(|ip| (1, ip.octets().to_vec())));
            }
        }
        if let Some((_, targets)) = self.srv.lock().unwrap().iter().find(|(n, _)| *n == name) {
            known = true;
            if qtype == 33 {
                for t in targets {
                    let mut rdata = vec![0, 10, 0, 100, 0x11, 0x94]; // priority, weight, port
                    for l in t.trim_end_matches('.').split('.') {
                        rdata.push(l.len() as u8);
                        rdata.extend_from_slice(l.as_bytes());
                    }
                    rdata.push(0);
                    answers.push((33, rdata));
                }
            }
        }
        let rcode = if known { 0 } else { 3 };
        let mut r = Vec::new();
        r.extend_from_slice(&q[0..2]);
        r.extend_from_slice(&[0x85, 0x80 | rcode]);
        r.extend_from_slice(&[0, 1]);
        r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0]);
        r.extend_from_slice(question);
        for (kind, rdata) in answers {
            r.extend_from_slice(&[0xC0, 0x0C]);
            r.extend_from_slice(&kind.to_be_bytes());
            r.extend_from_slice(&[0, 1, 0, 0, 0, 0]);
            r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            r.extend_from_slice(&rdata);
        }
        Some(r)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_poll_and_kubernetes_dns_strategies_mesh_the_nodes_their_records_name() {
    logs();
    let ips = [
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
        Ipv4Addr::new(127, 0, 0, 4),
    ];
    let zone = Zone::default();
    zone.set_a("nodes.test", &ips);
    zone.set_a("app-headless.default.svc.cluster.local", &ips);
    zone.set_srv(
        "app-headless.default.svc.cluster.local",
        &["127.0.0.2.", "127.0.0.3.", "127.0.0.4."],
    );
    let dns = zone.clone().serve().await;
    // The pods' way: one name per address, every node on the same port,
    // no EPMD; a basename unique to this run.
    let app = common::unique("app");
    let port = common::free_port();
    let poll = Duration::from_millis(300);
    let strategies = [
        Strategy::DnsPoll(DnsPollConfig {
            query: "nodes.test".into(),
            node_basename: app.clone(),
            polling_interval: poll,
            nameservers: vec![dns],
        }),
        Strategy::KubernetesDns(KubernetesDnsConfig {
            service: "app-headless.default.svc.cluster.local".into(),
            application_name: app.clone(),
            polling_interval: poll,
            nameservers: vec![dns],
        }),
        Strategy::KubernetesDnsSrv(KubernetesDnsSrvConfig {
            service: "app-headless".into(),
            namespace: "default".into(),
            application_name: app.clone(),
            polling_interval: poll,
            cluster_domain: Some("cluster.local.".into()),
            nameservers: vec![dns],
        }),
    ];
    let mut nodes = Vec::new();
    let mut clusters = Vec::new();
    for (ip, s) in ips.iter().zip(strategies) {
        let config = NodeConfig::new(format!("{app}@{ip}"))
            .cookie(common::COOKIE)
            .listen((*ip).into(), port)
            .discovery(Discovery::Fixed {
                peer_port: port,
                peers: Default::default(),
            });
        let n = Node::start(config).await.expect("node starts");
        let name = s.name();
        clusters.push(
            Cluster::start(&n, vec![Topology::new(name, s)])
                .await
                .unwrap(),
        );
        nodes.push(n);
    }
    eventually!(
        T,
        meshed(&nodes),
        "no full mesh: {:?}",
        nodes.iter().map(|n| n.nodes()).collect::<Vec<_>>()
    );

    // 127.0.0.4 leaves the records: DNSPoll disconnects from it, as libcluster does.
    drop(clusters.pop());
    let mut events = clusters[0].subscribe();
    zone.set_a("nodes.test", &ips[..2]);
    zone.set_a("app-headless.default.svc.cluster.local", &ips[..2]);
    let gone = format!("{app}@127.0.0.4");
    tokio::time::timeout(T, async {
        loop {
            if let Ok(ClusterEvent {
                kind: ClusterEventKind::Disconnected { node },
                topology,
            }) = events.recv().await
            {
                assert_eq!(topology, "DNSPoll");
                if node == gone {
                    break;
                }
            }
        }
    })
    .await
    .expect("DNSPoll disconnected the node that left its records");
    eventually!(
        T,
        !nodes[0].is_connected(&gone) && !nodes[1].is_connected(&gone),
        "still connected to {gone}"
    );
    assert!(nodes[0].is_connected(nodes[1].name()));
    drop(clusters);
    for n in nodes {
        n.shutdown();
    }
}

/// What real libcluster 3.3.3 Gossip nodes sent (recorded by
/// tests/cluster_live.rs's `record_libcluster_gossip_packets`): each decodes
/// to the sender, with its secret and only with it.
#[test]
fn libcluster_gossip_packets_recorded_from_real_nodes_decode() {
    use beam_peer::cluster::packet::{decode, Key, PacketError};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/libcluster");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.unwrap().path();
        let Some(tag) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("gossip_"))
            .and_then(|n| n.strip_suffix(".txt"))
        else {
            continue;
        };
        let meta = std::fs::read_to_string(&path).unwrap();
        let field = |k: &str| {
            meta.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("{k} in {}", path.display()))
        };
        let (node, secret) = (field("node "), field("secret "));
        let plain = std::fs::read(dir.join(format!("gossip_plain_{tag}.bin"))).unwrap();
        let sealed = std::fs::read(dir.join(format!("gossip_secret_{tag}.bin"))).unwrap();
        let key = Key::from_secret(&secret);
        assert_eq!(
            decode(&plain, None).as_deref(),
            Ok(node.as_str()),
            "{tag} plain"
        );
        assert_eq!(
            decode(&sealed, Some(&key)).as_deref(),
            Ok(node.as_str()),
            "{tag} secret"
        );
        assert!(decode(&sealed, Some(&Key::from_secret("wrong")))
            .unwrap_err()
            .is_secret_mismatch());
        assert!(decode(&plain, Some(&key)).unwrap_err().is_secret_mismatch());
        assert_eq!(decode(&sealed, None), Err(PacketError::NoPrelude));
        // 16 bytes of IV, then whole AES blocks.
        assert_eq!((sealed.len() - 16) % 16, 0);
        checked += 1;
    }
    assert!(checked > 0, "no fixtures in {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erlang_hosts_connects_every_node_in_the_epmd_of_each_listed_host() {
    use beam_peer::cluster::ErlangHostsConfig;
    logs();
    let epmd = common::free_port();
    let file = std::env::temp_dir().join(format!("{}.hosts.erlang", common::unique("hosts")));
    std::fs::write(&file, "% the hosts\n'127.0.0.1'.\n").unwrap();
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(common::rust_node(&format!("hosts{i}"), epmd).await);
    }
    let s = Strategy::ErlangHosts(ErlangHostsConfig {
        timeout: Some(Duration::from_millis(300)),
        hosts_file: Some(file.clone()),
    });
    let c = Cluster::start(&nodes[0], vec![Topology::new("hosts", s)])
        .await
        .unwrap();
    eventually!(
        T,
        nodes[0].nodes().into_iter().collect::<BTreeSet<_>>() == others(&nodes, &nodes[0]),
        "node 0 did not connect to every node in the EPMD: {:?}",
        nodes[0].nodes()
    );
    drop(c);
    let _ = std::fs::remove_file(&file);
    for n in nodes {
        n.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_broadcast_only_meshes_on_the_loopback_broadcast_address() {
    logs();
    let epmd = common::free_port();
    let port = free_udp_port();
    let mut nodes = Vec::new();
    let mut clusters = Vec::new();
    for i in 0..2 {
        let n = common::rust_node(&format!("bcast{i}"), epmd).await;
        let s = Strategy::Gossip(GossipConfig {
            port,
            multicast_addr: Ipv4Addr::new(127, 255, 255, 255),
            broadcast_only: true,
            ..GossipConfig::default()
        });
        clusters.push(
            Cluster::start(&n, vec![Topology::new("bcast", s)])
                .await
                .unwrap(),
        );
        nodes.push(n);
    }
    eventually!(T, meshed(&nodes), "no mesh over broadcast");
    drop(clusters);
    for n in nodes {
        n.shutdown();
    }
}

/// A local stand-in for the Kubernetes API server: HTTPS with the test CA's
/// certificate for `localhost`, answering every request with `body` (a
/// response shaped as the API's EndpointsList) and keeping each request's head.
async fn fake_api_server(body: String) -> (u16, Arc<Mutex<Vec<String>>>) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubernetes");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body, seen) = (acceptor.clone(), body.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                // Chunked, as the API server sends lists.
                let mut reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for chunk in body.as_bytes().chunks(100) {
                    reply.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    reply.extend_from_slice(chunk);
                    reply.extend_from_slice(b"\r\n");
                }
                reply.extend_from_slice(b"0\r\n\r\n");
                let _ = tls.write_all(&reply).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_api_strategy_connects_the_endpoints_of_its_selector() {
    use beam_peer::cluster::{KubernetesConfig, LookupMode, NameMode};
    logs();
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubernetes");
    let body = std::fs::read_to_string(fixtures.join("endpoints.json")).unwrap();
    let (api_port, requests) = fake_api_server(body).await;
    // The pod's service-account directory.
    let sa = std::env::temp_dir().join(common::unique("serviceaccount"));
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), "test-token\n").unwrap();
    std::fs::write(sa.join("namespace"), "testns").unwrap();
    std::fs::copy(fixtures.join("ca.crt"), sa.join("ca.crt")).unwrap();

    // The endpoints name 127.0.0.2/3/4 with basename myapp: three pods.
    let port = common::free_port();
    let mut nodes = Vec::new();
    for ip in [[127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4]] {
        let ip = Ipv4Addr::from(ip);
        let config = NodeConfig::new(format!("myapp@{ip}"))
            .cookie(common::COOKIE)
            .listen(ip.into(), port)
            .discovery(Discovery::Fixed {
                peer_port: port,
                peers: Default::default(),
            });
        nodes.push(Node::start(config).await.expect("node starts"));
    }
    let s = Strategy::Kubernetes(KubernetesConfig {
        selector: "app=myapp".into(),
        node_basename: "myapp".into(),
        namespace: None,
        service_name: None,
        cluster_name: "cluster".into(),
        ip_lookup_mode: LookupMode::Endpoints,
        master: format!("localhost:{api_port}."),
        service_account_path: sa.clone(),
        mode: NameMode::Ip,
        polling_interval: Duration::from_millis(300),
    });
    let c = Cluster::start(&nodes[0], vec![Topology::new("k8s", s)])
        .await
        .unwrap();
    eventually!(
        T,
        nodes[0].nodes().into_iter().collect::<BTreeSet<_>>() == others(&nodes, &nodes[0]),
        "node 0 did not connect to the endpoints: {:?}",
        nodes[0].nodes()
    );
    let head = requests.lock().unwrap()[0].clone();
    assert!(
        head.starts_with(
            "GET /api/v1/namespaces/testns/endpoints?labelSelector=app=myapp HTTP/1.1\r\n"
        ),
        "{head}"
    );
    assert!(
        head.contains("Authorization: Bearer test-token\r\n"),
        "{head}"
    );
    drop(c);
    let _ = std::fs::remove_dir_all(&sa);
    for n in nodes {
        n.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_without_a_ca_refuses_to_poll_unverified() {
    use beam_peer::cluster::{KubernetesConfig, LookupMode, NameMode};
    let c = KubernetesConfig {
        selector: "app=x".into(),
        node_basename: "x".into(),
        namespace: Some("ns".into()),
        service_name: None,
        cluster_name: "cluster".into(),
        ip_lookup_mode: LookupMode::Pods,
        master: "localhost:1.".into(),
        service_account_path: std::env::temp_dir().join(common::unique("no_sa")),
        mode: NameMode::Ip,
        polling_interval: Duration::from_secs(5),
    };
    let e = beam_peer::cluster::kubernetes::fetch(&c).await.unwrap_err();
    assert!(e.contains("ca.crt") && e.contains("unverified"), "{e}");
}
