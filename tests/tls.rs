//! Distribution over TLS against real `erl -proto_dist inet_tls` nodes
//! (OTP's `inet_tls_dist`), with certificates each test makes: both
//! directions of connection, pings, gen_server calls and 10 MB messages
//! both ways; rogue, expired and missing certificates refused in both
//! directions with a log line naming the reason, a plain-TCP node refused,
//! and the node serving its good peers throughout.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use beam_peer::term::{self, Term};
use beam_peer::{Dest, Node, NodeConfig, TlsConfig};
use common::certs::{self, Ca, Leaf};
use common::{eval, eventually, q, Beam, COOKIE};

const T: Duration = Duration::from_secs(20);

macro_rules! require_erl {
    ($name:expr) => {
        if !common::have_erl($name) {
            return;
        }
    };
}

/// Every log line of this test binary, for tests that check what was said.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        // Debug, so lines the per-address rate limit moves there are seen.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("beam_peer=debug")
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .try_init();
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(b)?;
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether a log line contains every one of `parts`.
fn logged(parts: &[&str]) -> bool {
    let text = logs()
        .lock()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    text.lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

/// A Rust node on TLS from an OTP optfile, on the EPMD at `epmd_port`.
async fn tls_node(prefix: &str, epmd_port: u16, optfile: &Path) -> Node {
    let tls = TlsConfig::from_optfile(optfile).expect("optfile reads");
    let node = common::rust_node_with(
        NodeConfig::new(format!("{}@127.0.0.1", common::unique(prefix))).tls(tls),
        epmd_port,
    )
    .await;
    beam_peer::demo::start_echo_and_sink(&node).expect("echo and sink");
    node
}

/// `erl -proto_dist inet_tls -ssl_dist_optfile F`, pinging `ping` at start
/// when given (so that connection is the one erl opens).
fn tls_erl(epmd_port: u16, optfile: &Path, ping: Option<&str>) -> Beam {
    start_erl(epmd_port, Some(optfile), ping.map(|n| (n, None)))
}

/// An erl node (TLS with `optfile`, else plain TCP) that pings `node` at
/// start and writes `pong` or `pang` to `answer` when given.
fn start_erl(epmd_port: u16, optfile: Option<&Path>, ping: Option<(&str, Option<&Path>)>) -> Beam {
    let mut extra = Vec::new();
    if let Some(f) = optfile {
        extra.extend([
            "-proto_dist".to_string(),
            "inet_tls".to_string(),
            "-ssl_dist_optfile".to_string(),
            f.display().to_string(),
        ]);
    }
    match ping {
        Some((node, None)) => {
            extra.push("-eval".into());
            extra.push(format!("net_adm:ping({})", q(node)));
        }
        Some((node, Some(answer))) => {
            extra.push("-eval".into());
            extra.push(format!(
                "file:write_file({:?}, atom_to_list(net_adm:ping({})))",
                answer.display().to_string(),
                q(node)
            ));
        }
        None => {}
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    Beam::start("erl_tls", COOKIE, epmd_port, &extra)
}

/// What an erl node with `optfile` (plain TCP without) got when it pinged
/// `rust` at start, and the node (for our attempts to reach it).
fn erl_ping_answer(
    pki: &Pki,
    name: &str,
    epmd_port: u16,
    optfile: Option<&Path>,
    rust: &str,
) -> (Beam, String) {
    let answer = pki.dir.join(format!("{name}.answer"));
    let beam = start_erl(epmd_port, optfile, Some((rust, Some(&answer))));
    // Written before the node printed ready.
    let got = std::fs::read_to_string(&answer).unwrap_or_default();
    (beam, got)
}

struct Pki {
    dir: PathBuf,
    ca: Ca,
}

impl Pki {
    fn new(test: &str) -> Pki {
        let dir = certs::dir(test);
        let ca = Ca::new(&dir, "ca");
        Pki { dir, ca }
    }

    /// A leaf of our CA and the optfile that uses it both ways.
    fn node(&self, name: &str, extra: &[&str]) -> (Leaf, PathBuf) {
        let leaf = self.ca.leaf(name);
        let f = certs::optfile_for(&self.dir, name, &leaf, &self.ca.cert, extra);
        (leaf, f)
    }
}

/// That the BEAM runs its connection to `rust` through a TLS distribution
/// controller (a process; plain TCP's is a port).
async fn beam_sees_tls(p: &mut beam_peer::Process, beam: &str, rust: &str) {
    let v = eval(
        p,
        beam,
        &format!(
            "{{_, C}} = lists:keyfind({}, 1, erlang:system_info(dist_ctrl)), is_pid(C).",
            q(rust)
        ),
    )
    .await;
    assert!(term::is_atom(&v, "true"), "erl's controller for us: {v}");
}

/// BEAM -> Rust and Rust -> BEAM: pings, gen_server calls, 10 MB each way.
async fn exercise(rust: &Node, beam: &str) {
    let mut p = rust.process();
    let v = eval(&mut p, beam, &format!("net_adm:ping({}).", q(rust.name()))).await;
    assert!(term::is_atom(&v, "pong"), "erl pings Rust over TLS: {v}");
    assert!(rust.ping(beam).await, "Rust pings erl over TLS");
    beam_sees_tls(&mut p, beam, rust.name()).await;
    // BEAM -> Rust gen_server call, small and 10 MB (the echo sends it back).
    let v = eval(
        &mut p,
        beam,
        &format!(
            "gen_server:call({{echo, {}}}, {{hello, tls}}, 5000).",
            q(rust.name())
        ),
    )
    .await;
    assert_eq!(v.to_string(), "{hello,tls}");
    let v = eval(
        &mut p,
        beam,
        &format!(
            "B = binary:copy(<<7,1,2,3,4>>, 2000000), R = gen_server:call({{echo, {}}}, B, 60000), {{byte_size(R), R =:= B}}.",
            q(rust.name())
        ),
    )
    .await;
    assert_eq!(
        v.to_string(),
        "{10000000,true}",
        "10 MB BEAM -> Rust -> BEAM"
    );
    // Rust -> BEAM gen_server call carrying 10 MB: ctl answers {unknown, Request}.
    let big: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
    let reply = p
        .call(
            Dest::Remote("ctl".into(), beam.to_string()),
            term::binary(big.clone()),
            Duration::from_secs(60),
        )
        .await
        .expect("10 MB call to erl's ctl");
    match term::as_tuple(&reply) {
        Some([tag, Term::Binary(b)]) if term::is_atom(tag, "unknown") => {
            assert!(b.bytes[..] == big[..], "10 MB came back intact")
        }
        _ => panic!("unexpected reply to the 10 MB call"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otp_tls_node_and_rust_connect_both_ways_call_and_move_10mb() {
    require_erl!("otp_tls_node_and_rust_connect_both_ways_call_and_move_10mb");
    logs();
    let pki = Pki::new("tls_both_ways");
    let (_, rust_conf) = pki.node("rust", &[]);
    let (_, erl_conf) = pki.node("erl", &[]);
    let port = common::free_port();
    let rust = tls_node("rust_tls", port, &rust_conf).await;

    // erl opens the connection (we are the TLS server).
    let beam = tls_erl(port, &erl_conf, Some(rust.name()));
    eventually!(
        T,
        rust.is_connected(&beam.name),
        "erl connected to us at start"
    );
    exercise(&rust, &beam.name).await;

    // We open it (we are the TLS client).
    assert!(rust.disconnect(&beam.name));
    eventually!(T, !rust.is_connected(&beam.name), "disconnected");
    assert!(rust.ping(&beam.name).await, "Rust connects to erl over TLS");
    exercise(&rust, &beam.name).await;
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_only_on_our_side_connects_both_ways() {
    require_erl!("tls13_only_on_our_side_connects_both_ways");
    logs();
    let pki = Pki::new("tls13");
    // We take TLS 1.3 only; erl offers both: a connection is TLS 1.3.
    let (_, rust_conf) = pki.node("rust", &["{versions, ['tlsv1.3']}"]);
    let (_, erl_conf) = pki.node("erl", &["{versions, ['tlsv1.3', 'tlsv1.2']}"]);
    let port = common::free_port();
    let rust = tls_node("rust_tls13", port, &rust_conf).await;
    let beam = tls_erl(port, &erl_conf, Some(rust.name()));
    eventually!(
        T,
        rust.is_connected(&beam.name),
        "erl connected to us at start"
    );
    let mut p = rust.process();
    beam_sees_tls(&mut p, &beam.name, rust.name()).await;
    let v = eval(
        &mut p,
        &beam.name,
        &format!("net_adm:ping({}).", q(rust.name())),
    )
    .await;
    assert!(term::is_atom(&v, "pong"));
    assert!(rust.disconnect(&beam.name));
    eventually!(T, !rust.is_connected(&beam.name), "disconnected");
    assert!(
        rust.ping(&beam.name).await,
        "Rust connects to erl over TLS 1.3"
    );
    let v = eval(
        &mut p,
        &beam.name,
        &format!(
            "gen_server:call({{echo, {}}}, tls13, 5000).",
            q(rust.name())
        ),
    )
    .await;
    assert!(term::is_atom(&v, "tls13"), "{v}");
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_and_plain_tcp_are_refused_and_good_peers_keep_working() {
    require_erl!("bad_certificates_and_plain_tcp_are_refused_and_good_peers_keep_working");
    logs();
    let pki = Pki::new("tls_refused");
    let (_, rust_conf) = pki.node("rust", &[]);
    let (_, good_conf) = pki.node("good", &[]);
    let port = common::free_port();
    let rust = tls_node("rust_guard", port, &rust_conf).await;
    let good = tls_erl(port, &good_conf, Some(rust.name()));
    eventually!(T, rust.is_connected(&good.name), "the good erl connected");

    // A rogue CA's node: it trusts our CA, so only our checks stand between.
    let rogue_ca = Ca::new(&pki.dir, "rogue_ca");
    let rogue_leaf = rogue_ca.leaf("rogue");
    let rogue_conf = certs::optfile_for(&pki.dir, "rogue", &rogue_leaf, &pki.ca.cert, &[]);
    // It connects to us: we refuse its client certificate.
    let (rogue, v) = erl_ping_answer(&pki, "rogue", port, Some(&rogue_conf), rust.name());
    assert_eq!(v, "pang", "the rogue's ping is refused");
    eventually!(
        T,
        logged(&[
            "incoming handshake",
            "rejected",
            "not signed by a CA in our cacertfile"
        ]),
        "a log line names the unknown issuer"
    );
    // We connect to it: we refuse its server certificate.
    assert!(
        !rust.ping(&rogue.name).await,
        "we refuse the rogue's server"
    );
    let err = rust.connect(&rogue.name).await.unwrap_err().to_string();
    assert!(
        err.contains("not signed by a CA in our cacertfile"),
        "{err}"
    );
    assert!(logged(&[
        "TLS connection to",
        &rogue.name,
        "unknown issuer"
    ]));

    // An expired certificate from our own CA.
    let expired = pki.ca.expired_leaf("expired");
    let expired_conf = certs::optfile_for(&pki.dir, "expired", &expired, &pki.ca.cert, &[]);
    let (old, v) = erl_ping_answer(&pki, "expired", port, Some(&expired_conf), rust.name());
    assert_eq!(v, "pang");
    eventually!(
        T,
        logged(&["rejected", "has expired"]),
        "a log line says expired"
    );
    let err = rust.connect(&old.name).await.unwrap_err().to_string();
    assert!(err.contains("has expired"), "{err}");

    // A client without a certificate (fail_if_no_peer_cert).
    let anon_conf = certs::optfile(
        &pki.dir.join("anon.conf"),
        certs::Side {
            leaf: Some(&pki.ca.leaf("anon_server")),
            ca: &pki.ca.cert,
            extra: &[],
        },
        certs::Side {
            leaf: None,
            ca: &pki.ca.cert,
            extra: &[],
        },
    );
    let (_anon, v) = erl_ping_answer(&pki, "anon", port, Some(&anon_conf), rust.name());
    assert_eq!(v, "pang");
    eventually!(
        T,
        logged(&["rejected", "presented no certificate"]),
        "a log line says no certificate"
    );

    // A plain-TCP node.
    let (_plain, v) = erl_ping_answer(&pki, "plain", port, None, rust.name());
    assert_eq!(v, "pang");
    eventually!(
        T,
        logged(&["rejected", "does not speak TLS"]),
        "a log line says the peer is not TLS"
    );

    // Throughout, the good peer was served, and still is.
    assert!(rust.is_connected(&good.name));
    exercise(&rust, &good.name).await;
    assert!(!rust.is_connected(&rogue.name) && !rust.is_connected(&old.name));
    rust.shutdown();
}
