//! Test support: real `erl` peers started and killed by pid, unique names and
//! ports, and a way to evaluate Erlang code on a peer through a gen_server call.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use beam_peer::term::{self, Term};
use beam_peer::{Dest, Node, NodeConfig, Process};

pub const COOKIE: &str = "beam_peer_test_cookie";

/// True when `erl` is on PATH. When it is not, a test prints one skip line and
/// returns, unless BEAM_PEER_REQUIRE_ERL=1 (set by scripts/test.sh) makes that a failure.
pub fn have_erl(test: &str) -> bool {
    let found = Command::new("erl")
        .args(["-noshell", "-eval", "halt()."])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("BEAM_PEER_REQUIRE_ERL").as_deref() == Ok("1") {
            panic!("{test}: erl is required (BEAM_PEER_REQUIRE_ERL=1) but not found");
        }
        println!("SKIPPED {test}: erl not found on PATH (apt-get install erlang-nox)");
    }
    found
}

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The compiled test-peer modules (erlang/src/*.erl), built once per test binary.
pub fn ctl_ebin() -> PathBuf {
    static EBIN: OnceLock<PathBuf> = OnceLock::new();
    EBIN.get_or_init(|| {
        let out =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ebin_{}", std::process::id()));
        std::fs::create_dir_all(&out).expect("ebin dir");
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("erlang/src/beam_peer_ctl.erl");
        let status = Command::new("erlc")
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .status()
            .expect("erlc runs");
        assert!(status.success(), "erlc failed on {}", src.display());
        out
    })
    .clone()
}

/// A real BEAM node started by a test; killed (by pid) when dropped.
pub struct Beam {
    child: Option<Child>,
    pub name: String,
    /// The EPMD port the node registered with.
    pub epmd_port: u16,
}

impl Beam {
    /// Starts `erl -name PREFIX_..@127.0.0.1` using the EPMD on `epmd_port`.
    pub fn start(prefix: &str, cookie: &str, epmd_port: u16, extra: &[&str]) -> Beam {
        let alive = unique(prefix);
        let name = format!("{alive}@127.0.0.1");
        let mut cmd = Command::new("erl");
        cmd.args([
            "-name",
            &name,
            "-setcookie",
            cookie,
            "-noshell",
            "-start_epmd",
            "false",
        ])
        .arg("-pa")
        .arg(ctl_ebin())
        .args(extra)
        .args(["-s", "beam_peer_ctl", "start"])
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("erl starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("ready ") {
                    let _ = tx.send(());
                }
                println!("[erl] {line}");
            }
        });
        let beam = Beam {
            child: Some(child),
            name,
            epmd_port,
        };
        rx.recv_timeout(Duration::from_secs(30))
            .expect("erl node printed ready");
        beam
    }

    pub fn os_pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// kill -9
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.os_pid().to_string()])
            .status();
    }
}

impl Drop for Beam {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts a Rust node `PREFIX_..@127.0.0.1` on the EPMD at `epmd_port` (the
/// embedded one is started when none answers there).
pub async fn rust_node(prefix: &str, epmd_port: u16) -> Node {
    rust_node_with(
        NodeConfig::new(format!("{}@127.0.0.1", unique(prefix))),
        epmd_port,
    )
    .await
}

pub async fn rust_node_with(config: NodeConfig, epmd_port: u16) -> Node {
    let mut config = config.discovery(beam_peer::Discovery::Epmd { port: epmd_port });
    if config.cookie.is_none() {
        config = config.cookie(COOKIE);
    }
    Node::start(config).await.expect("rust node starts")
}

/// Evaluates Erlang expressions on `beam` (through its `ctl` gen_server) and
/// returns the value; panics with the exception when evaluation raised.
pub async fn eval(p: &mut Process, beam: &str, code: &str) -> Term {
    let req = beam_peer::tup![
        term::atom("eval"),
        Term::ByteList(term::ByteList::from(code))
    ];
    let reply = p
        .call(
            Dest::Remote("ctl".into(), beam.into()),
            req,
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("eval on {beam} failed: {e}: {code}"));
    match term::as_tuple(&reply) {
        Some([ok, v]) if term::is_atom(ok, "ok") => v.clone(),
        _ => panic!("eval on {beam} raised {reply}: {code}"),
    }
}

/// Waits until `f` is true, checking every 20 ms, up to `limit`.
pub async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// An Erlang atom literal for `text` (quoted).
pub fn q(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The usual pair: a Rust node (with `echo` and `sink`) that starts the embedded
/// EPMD on a private port, and a real `erl` node registered in it.
pub async fn rust_and_beam() -> (Node, Beam) {
    let port = free_port();
    let rust = rust_node("rust", port).await;
    beam_peer::demo::start_echo_and_sink(&rust).expect("echo and sink");
    let beam = Beam::start("erl", COOKIE, port, &[]);
    (rust, beam)
}
