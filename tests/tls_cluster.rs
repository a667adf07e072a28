//! Rust-only distribution over TLS (no BEAM needed): a cluster of three
//! TLS nodes with the Horde-compatible registry running over it, a plain
//! node and a rogue-CA node kept out of it, and `beam-peer ping
//! --ssl-dist-optfile` reading OTP's optfile (refusing options it does not
//! support, by name).

mod common;

use std::process::Command;
use std::time::Duration;

use beam_peer::horde::registry::{self, RegistryOptions};
use beam_peer::term::{self, Term};
use beam_peer::{Node, NodeConfig, ServerNameIndication, TlsConfig, TlsOptions, TlsVersion};
use common::certs::{self, Ca, Leaf};

const T: Duration = Duration::from_secs(10);

/// Our library API, not an optfile: both sides with `leaf`, `verify_peer`
/// and `fail_if_no_peer_cert`, TLS 1.3 and 1.2.
fn tls(leaf: &Leaf, ca: &std::path::Path) -> TlsConfig {
    let side = || {
        TlsOptions::new()
            .certfile(&leaf.cert)
            .keyfile(&leaf.key)
            .cacertfile(ca)
            .verify_peer(true)
            .versions(&[TlsVersion::Tls13, TlsVersion::Tls12])
    };
    TlsConfig::new(side().fail_if_no_peer_cert(true), side()).expect("TLS config")
}

async fn node(prefix: &str, port: u16, tls: Option<TlsConfig>) -> Node {
    let mut config = NodeConfig::new(format!("{}@127.0.0.1", common::unique(prefix)));
    if let Some(t) = tls {
        config = config.tls(t);
    }
    common::rust_node_with(config, port).await
}

fn key(s: &str) -> Term {
    term::binary(s.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tls_nodes_run_the_registry_and_keep_others_out() {
    let dir = certs::dir("tls_cluster");
    let ca = Ca::new(&dir, "ca");
    let port = common::free_port();
    let mut nodes = Vec::new();
    for name in ["tls_a", "tls_b", "tls_c"] {
        nodes.push(node(name, port, Some(tls(&ca.leaf(name), &ca.cert))).await);
    }
    for n in &nodes[1..] {
        n.join(nodes[0].name()).await.expect("joins over TLS");
    }
    // b and c meet through a (the mesh), over TLS too.
    assert!(common::wait_until(T, || nodes.iter().all(|n| n.visible_nodes().len() == 2)).await);

    let name = format!("Elixir.{}", common::unique("TlsReg"));
    let mut regs = Vec::new();
    for n in &nodes {
        regs.push(
            registry::start(n, RegistryOptions::new(&name).sync_interval(50))
                .expect("registry starts"),
        );
    }
    let mut servers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let echo = beam_peer::gen_server::start(n, beam_peer::demo::Echo, Default::default())
            .expect("echo starts");
        regs[i]
            .register(key(&format!("echo-{i}")), term::int(i as i64), &echo)
            .await
            .expect("registers");
        servers.push(echo);
    }
    assert!(
        common::wait_until(T, || regs.iter().all(|r| r.count() == 3)).await,
        "every member sees three keys over TLS: {:?}",
        regs.iter().map(|r| r.count()).collect::<Vec<_>>()
    );
    let mut p = nodes[2].process();
    let reply = p
        .call(regs[2].via(key("echo-0")), term::atom("over_tls"), T)
        .await
        .expect("a via call from c to a's server");
    assert_eq!(reply, term::atom("over_tls"));
    // A 10 MB call between two members.
    let big = term::binary(vec![42u8; 10_000_000]);
    let reply = p
        .call(regs[2].via(key("echo-1")), big.clone(), T)
        .await
        .expect("10 MB via call from c to b");
    assert!(reply == big, "10 MB came back intact");

    // Kept out: a plain-TCP node, and a TLS node whose CA we do not trust.
    let plain = node("plain", port, None).await;
    assert!(
        !plain.ping(nodes[0].name()).await,
        "plain TCP to a TLS node"
    );
    assert!(
        !nodes[0].ping(plain.name()).await,
        "a TLS node to plain TCP"
    );
    let rogue_ca = Ca::new(&dir, "rogue_ca");
    // It trusts our CA: only our checks keep it out.
    let rogue = node("rogue", port, Some(tls(&rogue_ca.leaf("rogue"), &ca.cert))).await;
    assert!(!rogue.ping(nodes[1].name()).await, "rogue -> member");
    let err = nodes[1]
        .connect(rogue.name())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not signed by a CA in our cacertfile"),
        "{err}"
    );
    // The cluster never saw them and still works.
    for n in &nodes {
        assert_eq!(n.visible_nodes().len(), 2, "{:?}", n.visible_nodes());
    }
    regs[1]
        .unregister(key("echo-1"), &servers[1])
        .await
        .expect("unregisters");
    assert!(
        common::wait_until(T, || regs
            .iter()
            .all(|r| r.lookup(&key("echo-1")).is_none()))
        .await
    );
    for n in nodes.iter().chain([&plain, &rogue]) {
        n.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beam_peer_ping_reads_otps_optfile_and_refuses_what_it_cannot_honour() {
    let dir = certs::dir("tls_cli");
    let ca = Ca::new(&dir, "ca");
    let port = common::free_port();
    let target = node("tls_target", port, Some(tls(&ca.leaf("target"), &ca.cert))).await;
    let leaf = ca.leaf("cli");
    let good = certs::optfile_for(&dir, "cli", &leaf, &ca.cert, &[]);
    let ping = |optfile: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_beam-peer"))
            .args(["ping", "--cookie", common::COOKIE, "--ssl-dist-optfile"])
            .arg(optfile)
            .arg(target.name())
            .env("ERL_EPMD_PORT", port.to_string())
            .output()
            .expect("beam-peer runs")
    };
    let out = ping(&good);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("pong"),
        "{stdout} {out:?}"
    );

    let bad = certs::optfile_for(&dir, "bad", &leaf, &ca.cert, &["{ciphers, \"AES128-SHA\"}"]);
    let out = ping(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains("ciphers") && stderr.contains("not supported"),
        "the refusal names the option: {stderr}"
    );
    // Without the optfile it is a plain node: refused.
    let out = Command::new(env!("CARGO_BIN_EXE_beam-peer"))
        .args(["ping", "--cookie", common::COOKIE, target.name()])
        .env("ERL_EPMD_PORT", port.to_string())
        .output()
        .expect("beam-peer runs");
    assert!(!out.status.success(), "{out:?}");
    target.shutdown();
}

/// One side's options with `leaf`, checking peers against `ca`.
fn side(leaf: &Leaf, ca: &std::path::Path) -> TlsOptions {
    TlsOptions::new()
        .certfile(&leaf.cert)
        .keyfile(&leaf.key)
        .cacertfile(ca)
        .verify_peer(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_names_and_client_addresses_are_checked_as_otp_does() {
    let dir = certs::dir("tls_names");
    let ca = Ca::new(&dir, "ca");
    let port = common::free_port();
    // A server whose certificate names only other.example, not 127.0.0.1.
    let elsewhere = ca.leaf_for_host("elsewhere", "other.example");
    let server = node(
        "named",
        port,
        Some(
            TlsConfig::new(side(&elsewhere, &ca.cert), side(&elsewhere, &ca.cert)).expect("config"),
        ),
    )
    .await;
    let client = |sni: ServerNameIndication| {
        let leaf = ca.leaf("client");
        TlsConfig::new(
            side(&leaf, &ca.cert),
            side(&leaf, &ca.cert).server_name_indication(sni),
        )
        .expect("config")
    };
    // By default the host part of the node name, 127.0.0.1, must be named.
    let plain_name = node(
        "by_host",
        port,
        Some(client(ServerNameIndication::NodeHost)),
    )
    .await;
    let err = plain_name
        .connect(server.name())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not valid for name"), "{err}");
    // server_name_indication: the name to check instead, or none.
    let by_sni = node(
        "by_sni",
        port,
        Some(client(ServerNameIndication::Name("other.example".into()))),
    )
    .await;
    assert!(
        by_sni.ping(server.name()).await,
        "checked against other.example"
    );
    let unchecked = node("no_sni", port, Some(client(ServerNameIndication::Disable))).await;
    assert!(unchecked.ping(server.name()).await, "name check disabled");

    // {verify_fun, {inet_tls_dist, verify_client, _}}: a client's
    // certificate must name the address it connects from.
    let leaf = ca.leaf("strict");
    let strict = node(
        "strict",
        port,
        Some(
            TlsConfig::new(
                side(&leaf, &ca.cert).verify_client_address(true),
                side(&leaf, &ca.cert),
            )
            .expect("config"),
        ),
    )
    .await;
    assert!(
        !server.ping(strict.name()).await,
        "other.example's cert from 127.0.0.1"
    );
    assert!(
        plain_name.ping(strict.name()).await,
        "a cert naming 127.0.0.1"
    );
    for n in [&server, &plain_name, &by_sni, &unchecked, &strict] {
        n.shutdown();
    }
}
