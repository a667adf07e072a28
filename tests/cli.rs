//! The `beam-peer` command as a user runs it: each test starts the built
//! binary (and, where it needs one, a Rust node in the test) on a private
//! EPMD port, reads what it prints and kills every process it started.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use beam_peer::{Discovery, Node, NodeConfig};
use common::COOKIE;

const BIN: &str = env!("CARGO_BIN_EXE_beam-peer");

/// A `beam-peer` run to its end, with `ERL_EPMD_PORT` set to `epmd_port`.
fn run(args: &[&str], epmd_port: u16) -> Output {
    Command::new(BIN)
        .args(args)
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .env_remove("NO_COLOR")
        .output()
        .expect("beam-peer runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A long-running `beam-peer` (node, epmd) whose stdout and stderr lines
/// arrive on channels; killed (by pid) when dropped.
struct Running {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Running {
    fn start(args: &[&str], epmd_port: u16, env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(BIN)
            .args(args)
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("beam-peer starts");
        let lines = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    println!("[beam-peer] {line}");
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().expect("stdout")));
        let stderr = lines(Box::new(child.stderr.take().expect("stderr")));
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// The first line of `rx` that `pred` accepts, and every line before it.
    fn wait_for(
        rx: &mpsc::Receiver<String>,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    let done = pred(&line);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no {what}; saw {seen:?}"),
            }
        }
    }

    fn ready(&self) -> (String, u16) {
        let lines = Self::wait_for(&self.stdout, "ready line", |l| l.starts_with("ready "));
        let last = lines.last().expect("a line");
        let parts: Vec<&str> = last.split_whitespace().collect();
        match parts.as_slice() {
            ["ready", name, "port", port] => (name.to_string(), port.parse().expect("port")),
            _ => panic!("unexpected ready line {last:?}"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_parallel_pings_without_names_all_get_pong() {
    let port = common::free_port();
    let target = common::rust_node("ping_target", port).await;
    let pings: Vec<_> = (0..4)
        .map(|_| {
            Command::new(BIN)
                .args(["ping", target.name(), "--cookie", COOKIE])
                .env("ERL_EPMD_PORT", port.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("beam-peer ping starts")
        })
        .collect();
    for ping in pings {
        let out = ping.wait_with_output().expect("ping ends");
        assert_eq!(text(&out.stdout).trim(), "pong", "{}", text(&out.stderr));
        assert!(out.status.success());
    }
    target.shutdown();
}

#[test]
fn malformed_arguments_are_refused_with_a_message() {
    let port = common::free_port();
    for (args, says) in [
        (&["ping", "rusty"][..], "has no host"),
        (&["ping", "@127.0.0.1"], "empty"),
        (
            &["ping", "a@127.0.0.1", "--timeout", "five"],
            "not a duration",
        ),
        (&["ping", "a@127.0.0.1", "--timeout", "5"], "give a unit"),
        (
            &["ping", "a@127.0.0.1", "--timeout", "0s"],
            "more than zero",
        ),
        (&["ping", "a@127.0.0.1", "--name", "bad name"], "letters"),
        (&["node", "--listen", "nonsense"], "ADDR:PORT"),
        (&["node", "--listen", "127.0.0.1:70000"], "ADDR:PORT"),
        (&["node", "--no-epmd"], "--listen"),
        (
            &["node", "--no-epmd", "--listen", "127.0.0.1:0"],
            "fixed port",
        ),
        (&["node", "--peer-port", "5"], "--no-epmd"),
        (
            &[
                "node",
                "--no-epmd",
                "--listen",
                "127.0.0.1:1",
                "--peer",
                "x@h",
            ],
            "NAME=ADDR:PORT",
        ),
        (&["node", "--join", "nohost"], "has no host"),
        (&["names", "--port", "http"], "invalid value"),
        (&["names", "--host", "nowhere.invalid"], "cannot resolve"),
        (&["demo", "--nodes", "1"], "2..=64"),
    ] {
        let out = run(args, port);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn every_option_has_help_text() {
    for cmd in [
        "demo",
        "node",
        "registry",
        "supervisor",
        "ping",
        "names",
        "epmd",
        "status",
        "ps",
        "info",
        "kill",
        "send",
        "top",
    ] {
        let out = run(&[cmd, "--help"], common::free_port());
        let help = text(&out.stdout);
        assert!(out.status.success(), "{cmd}");
        // Each option line (`  --x <X>   text`, or `-h, --help ...`) has text after it.
        for line in help.lines().filter(|l| l.trim_start().starts_with('-')) {
            let words: Vec<&str> = line.split("  ").filter(|w| !w.trim().is_empty()).collect();
            assert!(words.len() >= 2, "{cmd}: option without help: {line:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_timeout_bounds_a_ping_of_a_node_that_does_not_answer() {
    // A listener that accepts and never speaks: without the timeout the
    // handshake would wait for the library's default (7 s) instead.
    let port = common::free_port();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let silent_port = silent.local_addr().expect("addr").port();
    let _epmd = beam_peer::epmd::EmbeddedEpmd::bind(([127, 0, 0, 1], port).into())
        .await
        .expect("epmd");
    let _reg = beam_peer::epmd::register(
        ([127, 0, 0, 1], port).into(),
        &beam_peer::epmd::NodeEntry::new("silent", silent_port, false),
    )
    .await
    .expect("register");
    let out = tokio::task::spawn_blocking(move || {
        run(
            &[
                "ping",
                "silent@127.0.0.1",
                "--cookie",
                COOKIE,
                "--timeout",
                "300ms",
            ],
            port,
        )
    })
    .await
    .expect("joined");
    assert_eq!(
        text(&out.stdout).trim(),
        "pang",
        "{:?} {}",
        out.status,
        text(&out.stderr)
    );
    assert!(!out.status.success());
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_without_epmd_listens_on_its_fixed_port() {
    let epmd_port = common::free_port();
    let listen = common::free_port();
    let name = format!("{}@127.0.0.1", common::unique("fixed"));
    let node = Running::start(
        &[
            "node",
            "--name",
            &name,
            "--cookie",
            COOKIE,
            "--no-epmd",
            "--listen",
            &format!("127.0.0.1:{listen}"),
        ],
        epmd_port,
        &[],
    );
    assert_eq!(node.ready(), (name.clone(), listen));
    // Nothing registered anywhere: no EPMD answers on the node's EPMD port.
    assert!(beam_peer::epmd::names(([127, 0, 0, 1], epmd_port).into())
        .await
        .is_err());
    // A Rust node without EPMD either finds it on that port.
    let me = Node::start(
        NodeConfig::new(format!("{}@127.0.0.1", common::unique("fixed_peer")))
            .cookie(COOKIE)
            .discovery(Discovery::Fixed {
                peer_port: listen,
                peers: Default::default(),
            }),
    )
    .await
    .expect("starts");
    assert!(me.ping(&name).await);
    me.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_asks_the_given_host_and_port() {
    let port = common::free_port();
    let node = common::rust_node("listed", port).await;
    let alive = node.name().split('@').next().expect("alive").to_string();
    let out = tokio::task::spawn_blocking(move || {
        run(
            &["names", "--host", "localhost", "--port", &port.to_string()],
            1,
        )
    })
    .await
    .expect("joined");
    let listed = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        listed.contains(&format!("name {alive} at port")),
        "{listed}"
    );
    node.shutdown();
}

#[test]
fn epmd_on_a_taken_port_says_what_holds_it() {
    let port = common::free_port();
    let first = Running::start(&["epmd", "--port", &port.to_string()], port, &[]);
    Running::wait_for(&first.stdout, "listening line", |l| l.contains("listening"));
    let second = run(&["epmd", "--port", &port.to_string()], port);
    assert!(!second.status.success());
    let err = text(&second.stderr);
    assert!(err.contains("an EPMD already answers there"), "{err}");
    drop(first);

    let other = std::net::TcpListener::bind("0.0.0.0:0").expect("listener");
    let taken = other.local_addr().expect("addr").port();
    let out = run(&["epmd", "--port", &taken.to_string()], taken);
    let err = text(&out.stderr);
    assert!(err.contains("in use by another program"), "{err}");
}

#[test]
fn a_node_that_starts_the_embedded_epmd_warns_with_its_port_without_colour() {
    let port = common::free_port();
    // stderr is a pipe here: no ANSI escapes, whatever RUST_LOG asks for.
    let node = Running::start(&["node", "--cookie", COOKIE], port, &[("RUST_LOG", "info")]);
    let lines = Running::wait_for(&node.stderr, "embedded EPMD warning", |l| {
        l.contains("WARN") && l.contains("embedded EPMD") && l.contains(&port.to_string())
    });
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "colour in a pipe: {lines:?}"
    );
    let (name, _) = node.ready();
    assert!(
        name.starts_with("beam_peer_node_"),
        "unique default name: {name}"
    );
}

impl Running {
    /// Kills the process and returns every stderr line it wrote.
    fn stderr_to_the_end(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut lines = Vec::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(10)) {
            lines.push(l);
        }
        lines
    }
}

#[test]
fn junk_connections_from_one_address_get_a_few_warnings_and_a_count() {
    let port = common::free_port();
    // DEBUG shows the lines left out at WARN, so the test knows when every
    // connection was handled without waiting for a time.
    let node = Running::start(
        &["node", "--cookie", COOKIE],
        port,
        &[("RUST_LOG", "beam_peer=debug")],
    );
    let (_, listen) = node.ready();
    let junk = 40;
    for _ in 0..junk {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", listen)).expect("connects");
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    let mut rejected = Vec::new();
    while rejected.len() < junk {
        let line = node
            .stderr
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("only {} rejections logged: {rejected:?}", rejected.len()));
        if line.contains("incoming handshake from 127.0.0.1:") && line.contains("rejected") {
            rejected.push(line);
        }
    }
    let warned = rejected.iter().filter(|l| l.contains(" WARN ")).count();
    assert_eq!(warned, 5, "{rejected:#?}");
    assert!(rejected.iter().all(|l| !l.contains("connect failed")));
}

#[test]
fn a_failed_join_is_reported_once() {
    let port = common::free_port();
    let node = Running::start(
        &["node", "--cookie", COOKIE, "--join", "nobody@127.0.0.1"],
        port,
        &[],
    );
    node.ready();
    let lines = node.stderr_to_the_end();
    let about: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("nobody@127.0.0.1"))
        .collect();
    assert_eq!(about.len(), 1, "{lines:#?}");
    assert!(
        about[0].starts_with("cannot connect to nobody@127.0.0.1"),
        "{about:?}"
    );
}

/// An `erl` without EPMD (`-erl_epmd_port P -start_epmd false`), as
/// `e_..@127.0.0.2` listening on 127.0.0.2:P (so it can share P with a
/// node on 127.0.0.1), evaluating `eval`; its stdout lines arrive on a
/// channel, and it is killed (by pid) when dropped.
struct FixedErl {
    child: Child,
    name: String,
    stdout: mpsc::Receiver<String>,
}

impl FixedErl {
    fn start(port: u16, eval: &str) -> FixedErl {
        let name = format!("{}@127.0.0.2", common::unique("e"));
        let mut child = common::beam_tool("erl")
            .args(["-name", &name, "-setcookie", COOKIE, "-noshell"])
            .args(["-erl_epmd_port", &port.to_string(), "-start_epmd", "false"])
            .args(["-kernel", "inet_dist_use_interface", "{127,0,0,2}"])
            .args(["-eval", eval])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("erl starts");
        let out = child.stdout.take().expect("stdout");
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                println!("[erl] {line}");
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        FixedErl {
            child,
            name,
            stdout,
        }
    }
}

impl Drop for FixedErl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn no_epmd_node_and_a_real_erl_on_fixed_ports_reach_each_other() {
    if !common::have_erl("no_epmd_node_and_a_real_erl_on_fixed_ports_reach_each_other") {
        return;
    }
    let epmd_port = common::free_port(); // nothing ever listens there
    let port = common::free_port();
    let rust = format!("{}@127.0.0.1", common::unique("fixed"));
    let listen = format!("127.0.0.1:{port}");
    let fixed = ["--cookie", COOKIE, "--no-epmd", "--listen", &listen];

    // erl -> Rust: erl finds us on the port it was given, as it finds any peer.
    let node = Running::start(
        &[&["node", "--name", &rust][..], &fixed].concat(),
        epmd_port,
        &[],
    );
    node.ready();
    let erl = FixedErl::start(
        port,
        &format!(
            "io:format(\"~p ~p~n\", [net_adm:ping('{rust}'), gen_server:call({{echo, '{rust}'}}, hi)]), \
             halt()."
        ),
    );
    let said = Running::wait_for(&erl.stdout, "erl's answer", |_| true);
    assert_eq!(said, ["pong hi"]);
    drop(erl);
    drop(node);

    // Rust -> erl: --join finds erl on our own port, at the host its name gives.
    let erl = FixedErl::start(port, "io:format(\"up~n\"), receive never -> ok end.");
    Running::wait_for(&erl.stdout, "erl's up line", |l| l == "up");
    let join = [&["node", "--name", &rust, "--join", &erl.name][..], &fixed].concat();
    let node = Running::start(&join, epmd_port, &[]);
    let lines = Running::wait_for(&node.stdout, "ready line", |l| l.starts_with("ready "));
    assert!(
        lines.contains(&format!("connected to {}", erl.name)),
        "{lines:?}"
    );
}

fn topology_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{}.toml", common::unique(name)));
    std::fs::write(&path, text).expect("topology file written");
    path
}

#[test]
fn a_topology_file_with_an_unknown_key_is_refused_naming_file_and_key() {
    let port = common::free_port();
    let file = topology_file(
        "bad_topology",
        "[topologies.gossip]\nstrategy = \"Gossip\"\n[topologies.gossip.config]\nprot = 45892\n",
    );
    let f = file.to_str().unwrap();
    let out = run(&["node", "--cookie", COOKIE, "--topology", f], port);
    let _ = std::fs::remove_file(&file);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(f) && err.contains("\"prot\"") && err.contains("topologies.gossip"),
        "{err}"
    );
}

#[test]
fn two_nodes_with_a_gossip_topology_file_find_each_other() {
    let port = common::free_port();
    let gossip_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port");
    let file = topology_file(
        "gossip_topology",
        &format!(
            "[topologies.gossip]\nstrategy = \"Gossip\"\n[topologies.gossip.config]\nport = {gossip_port}\nmulticast_if = \"127.0.0.1\"\nsecret = \"cli-secret\"\n"
        ),
    );
    let f = file.to_str().unwrap();
    let a = Running::start(&["node", "--cookie", COOKIE, "--topology", f], port, &[]);
    let (a_name, _) = a.ready();
    let b = Running::start(&["node", "--cookie", COOKIE, "--topology", f], port, &[]);
    let (b_name, _) = b.ready();
    Running::wait_for(&a.stdout, "nodeup of b", |l| {
        l == format!("nodeup {b_name}")
    });
    Running::wait_for(&b.stdout, "nodeup of a", |l| {
        l == format!("nodeup {a_name}")
    });
    let _ = std::fs::remove_file(&file);
}
