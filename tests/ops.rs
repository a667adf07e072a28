//! The operator's commands (`beam-peer status`, `ps`, `info`, `kill`,
//! `send`, `trace`, `registry --node`, `supervisor --node`) run as a user runs them,
//! against two real `erl` nodes and one Rust node on a private EPMD port;
//! tables and `--json` are checked for the real values. Every OS process a
//! test starts is killed by pid when it ends.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use beam_peer::term::{self, Term};
use beam_peer::{Dest, Node};
use common::{eval, q, Beam, COOKIE};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_beam-peer");

macro_rules! require_erl {
    ($name:expr) => {
        if !common::have_erl($name) {
            return;
        }
    };
}

/// Two erl nodes that see each other and a Rust node (with `echo` and
/// `sink`) that sees both. `dist_auto_connect once` keeps a link the test
/// cuts cut, and without overlapping-partition prevention `global` leaves
/// the other links alone.
struct Cluster {
    rust: Node,
    a: Beam,
    b: Beam,
    port: u16,
}

async fn cluster() -> Cluster {
    let port = common::free_port();
    let rust = common::rust_node("ops_rust", port).await;
    beam_peer::demo::start_echo_and_sink(&rust).expect("echo and sink");
    let flags = [
        "-kernel",
        "prevent_overlapping_partitions",
        "false",
        "-kernel",
        "dist_auto_connect",
        "once",
    ];
    let a = Beam::start("ops_a", COOKIE, port, &flags);
    let b = Beam::start("ops_b", COOKIE, port, &flags);
    rust.connect(&a.name).await.expect("rust reaches a");
    rust.connect(&b.name).await.expect("rust reaches b");
    let mut p = rust.process();
    let v = eval(&mut p, &a.name, &format!("net_adm:ping({}).", q(&b.name))).await;
    assert!(term::is_atom(&v, "pong"), "{v}");
    Cluster { rust, a, b, port }
}

impl Cluster {
    fn run(&self, args: &[&str]) -> Output {
        run(args, self.port)
    }

    fn node_args<'a>(&'a self, node: &'a str) -> Vec<&'a str> {
        vec!["--node", node, "--cookie", COOKIE]
    }

    /// A command that must succeed; its stdout.
    fn ok(&self, cmd: &str, node: &str, rest: &[&str]) -> String {
        let mut args = vec![cmd];
        args.extend(self.node_args(node));
        args.extend(rest);
        let out = self.run(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("$ beam-peer {}\n{stdout}", args.join(" "));
        assert!(
            out.status.success(),
            "beam-peer {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn json(&self, cmd: &str, node: &str, rest: &[&str]) -> Value {
        let mut rest = rest.to_vec();
        rest.push("--json");
        let text = self.ok(cmd, node, &rest);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }
}

fn run(args: &[&str], port: u16) -> Output {
    Command::new(BIN)
        .args(args)
        .env("ERL_EPMD_PORT", port.to_string())
        .output()
        .expect("beam-peer runs")
}

/// Rows of a table whose first column is `first`.
fn rows_with<'a>(table: &'a str, needle: &str) -> Vec<&'a str> {
    table.lines().filter(|l| l.contains(needle)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ps_lists_code_server_on_beam_and_echo_and_sink_on_rust() {
    require_erl!("ps_lists_code_server_on_beam_and_echo_and_sink_on_rust");
    let c = cluster().await;
    let table = c.ok("ps", &c.a.name, &[]);
    assert!(table.starts_with("PID"), "{table}");
    let line = rows_with(&table, "code_server");
    assert!(
        line.iter().any(|l| l.contains("code_server:loop/1")),
        "{table}"
    );
    let rust = c.rust.name().to_string();
    let table = c.ok("ps", &rust, &[]);
    for name in ["echo", "sink", "net_kernel", "rex"] {
        assert_eq!(
            rows_with(&table, &format!(" {name} ")).len(),
            1,
            "{name}: {table}"
        );
    }
    let echo = c.rust.whereis("echo").expect("echo");
    assert!(
        table.contains(&format!("<0.{}.{}>", echo.id, echo.serial)),
        "{table}"
    );
    // --all --json: both erl nodes' code_server and the Rust echo, filtered.
    let v = c.json("ps", &c.a.name, &["--all", "--filter", "code_server"]);
    let rows = v.as_array().expect("a list");
    let mut nodes: Vec<&str> = rows.iter().filter_map(|r| r["node"].as_str()).collect();
    nodes.sort();
    let mut want = vec![c.a.name.as_str(), c.b.name.as_str()];
    want.sort();
    assert_eq!(nodes, want, "{v}");
    assert!(rows.iter().all(|r| r["name"] == "code_server"), "{v}");
    assert!(rows
        .iter()
        .all(|r| r["reductions"].as_i64().unwrap_or(0) > 0));
    let v = c.json("ps", &rust, &["--sort", "mq", "--limit", "3"]);
    assert_eq!(v.as_array().map(Vec::len), Some(3), "{v}");
    let v = c.json("ps", &rust, &["--filter", "Echo"]);
    assert_eq!(v[0]["name"], "echo", "{v}");
    assert_eq!(v[0]["initial_call"], "beam_peer::demo::Echo:init/1", "{v}");
    c.rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_info_and_send_on_either_kind_of_node() {
    require_erl!("kill_info_and_send_on_either_kind_of_node");
    let c = cluster().await;
    let mut p = c.rust.process();
    eval(
        &mut p,
        &c.a.name,
        "register(victim, spawn(fun() -> receive after infinity -> ok end end)), ok.",
    )
    .await;
    // info of a BEAM process, through another node.
    let v = c.json("info", &c.b.name, &["--on", &c.a.name.clone(), "victim"]);
    assert_eq!(v["registered_name"], "victim", "{v}");
    assert_eq!(v["status"], "waiting", "{v}");
    assert_eq!(v["node"], c.a.name.as_str(), "{v}");
    // kill on the BEAM node: the name is gone.
    let out = c.ok("kill", &c.a.name, &["victim"]);
    assert!(out.contains("(victim)") && out.contains("exited"), "{out}");
    let v = eval(&mut p, &c.a.name, "whereis(victim).").await;
    assert!(term::is_atom(&v, "undefined"), "{v}");
    // kill on the Rust node, by pid, with a reason.
    let rust = c.rust.name().to_string();
    let sink = c.rust.whereis("sink").expect("sink");
    let pid = format!("<0.{}.{}>", sink.id, sink.serial);
    let v = c.json(
        "kill",
        &c.a.name,
        &["--on", &rust, &pid, "--reason", "{shutdown, ops}"],
    );
    assert_eq!(v["exited"], true, "{v}");
    assert_eq!(v["reason"], "{shutdown,ops}", "{v}");
    assert!(c.rust.whereis("sink").is_none(), "sink is gone");
    // send: the term arrives as parsed.
    let mut inbox = c.rust.process();
    inbox.register("inbox").expect("registers");
    let out = c.ok(
        "send",
        &rust,
        &[
            "inbox",
            "{hello, [1, 2.5, <<\"bin\">>], 'Quoted', #{k => \"ab\"}}",
        ],
    );
    assert!(out.starts_with("sent {hello,"), "{out}");
    let got = inbox
        .receive_timeout(Duration::from_secs(5))
        .await
        .expect("alive")
        .expect("the message arrived");
    assert_eq!(
        got,
        term::parse::parse("{hello, [1, 2.5, <<\"bin\">>], 'Quoted', #{k => \"ab\"}}")
            .expect("parses")
    );
    // info of a Rust process: the message is still waiting.
    inbox.send(Dest::Pid(inbox.pid().clone()), term::atom("self"));
    let table = c.ok("info", &rust, &["inbox"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("message_queue_len") && l.ends_with(" 1")),
        "{table}"
    );
    c.rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_partition_a_disconnect_makes() {
    require_erl!("status_names_the_partition_a_disconnect_makes");
    let c = cluster().await;
    let rust = c.rust.name().to_string();
    let v = c.json("status", &c.a.name, &[]);
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{v}");
    for n in nodes {
        assert_eq!(n["reachable"], true, "{v}");
        assert!(n["processes"].as_i64().unwrap_or(0) > 0, "{v}");
        assert!(n["memory"].as_i64().unwrap_or(0) > 0, "{v}");
        let kind = n["kind"].as_str().unwrap_or("");
        if n["node"] == rust.as_str() {
            assert_eq!(kind, "Rust", "{v}");
        } else {
            assert!(kind.starts_with("BEAM OTP "), "{v}");
        }
    }
    assert_eq!(v["partitions"], serde_json::json!([]), "{v}");
    let mut p = c.rust.process();
    let cut = eval(
        &mut p,
        &c.a.name,
        &format!("erlang:disconnect_node({}).", q(&c.b.name)),
    )
    .await;
    assert!(term::is_atom(&cut, "true"), "{cut}");
    // The cut is seen from the Rust node too (it still sees both).
    let v = c.json("status", &rust, &[]);
    let parts = v["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 1, "{v}");
    let mut pair = [
        parts[0]["a"].as_str().unwrap_or(""),
        parts[0]["b"].as_str().unwrap_or(""),
    ];
    pair.sort();
    let mut want = [c.a.name.as_str(), c.b.name.as_str()];
    want.sort();
    assert_eq!(pair, want, "{v}");
    assert_eq!(parts[0]["a_sees_b"], false);
    assert_eq!(parts[0]["b_sees_a"], false);
    let table = c.ok("status", &rust, &[]);
    assert!(
        table.contains(&format!("partition: {} <-/-> {}", want[0], want[1])),
        "{table}"
    );
    assert!(table.contains("NO"), "{table}");
    c.rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_clear_error_and_exit_1() {
    require_erl!("bad_input_is_one_clear_error_and_exit_1");
    let c = cluster().await;
    let rust = c.rust.name().to_string();
    let ghost = format!("{}@127.0.0.1", common::unique("ghost"));
    let fails = |args: &[&str], want: &str| {
        let out = c.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    };
    fails(&["ps", "--node", &ghost, "--cookie", COOKIE], "pang");
    fails(
        &["status", "--node", &c.a.name, "--cookie", "not-the-cookie"],
        "cookie",
    );
    fails(
        &["send", "--node", &rust, "--cookie", COOKIE, "echo", "{a, b"],
        "column 6",
    );
    fails(
        &[
            "info", "--node", &rust, "--cookie", COOKIE, "--on", &ghost, "<0.1.0>",
        ],
        "not in the cluster",
    );
    fails(
        &[
            "kill",
            "--node",
            &c.b.name,
            "--cookie",
            COOKIE,
            "nobody_here",
        ],
        "nobody_here is not registered on",
    );
    fails(
        &["info", "--node", &rust, "--cookie", COOKIE, "<0.99999.0>"],
        "is not alive",
    );
    fails(
        &[
            "kill", "--node", &rust, "--cookie", COOKIE, "echo", "--reason", "Bad",
        ],
        "column 1",
    );
    // trace: pang, a name nobody has, a dead pid, a node not in the cluster.
    fails(
        &["trace", "--node", &ghost, "--cookie", COOKIE, "echo"],
        "pang",
    );
    fails(
        &[
            "trace",
            "--node",
            &c.a.name,
            "--cookie",
            COOKIE,
            "nobody_here",
        ],
        "nobody_here is not registered on",
    );
    fails(
        &["trace", "--node", &rust, "--cookie", COOKIE, "<0.99999.0>"],
        "is not alive",
    );
    fails(
        &[
            "trace",
            "--node",
            &c.a.name,
            "--cookie",
            COOKIE,
            "<0.32000.0>",
        ],
        "is not alive",
    );
    fails(
        &[
            "info",
            "--node",
            &c.a.name,
            "--cookie",
            COOKIE,
            "<0.99999999.0>",
        ],
        "is not alive",
    );
    fails(
        &[
            "trace", "--node", &rust, "--cookie", COOKIE, "--on", &ghost, "echo",
        ],
        "not in the cluster",
    );
    c.rust.shutdown();
}

/// A Rust member's Horde registry and supervisor, read through it: the
/// member answers the calls Horde's own API makes (`:members`, and
/// `DeltaCrdt.to_map/1` on `R.Crdt`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_and_supervisor_through_a_rust_member() {
    let port = common::free_port();
    let rust = common::rust_node("ops_horde", port).await;
    beam_peer::demo::start_echo_and_sink(&rust).expect("echo and sink");
    let registry = beam_peer::horde::registry::start(
        &rust,
        beam_peer::horde::registry::RegistryOptions::new("Elixir.Ops.Registry"),
    )
    .expect("registry starts");
    let echo = rust.whereis("echo").expect("echo");
    registry
        .register(
            term::binary(b"rust-echo".to_vec()),
            term::atom("hello"),
            &echo,
        )
        .await
        .expect("registers");
    let opts = beam_peer::demo::supervisor_member::MemberOptions::new("Elixir.Ops.Sup");
    let sup = beam_peer::demo::supervisor_member::start_member(&rust, &opts).expect("starts");
    let started = sup
        .start_child(
            beam_peer::demo::supervisor_member::child_spec(7),
            Duration::from_secs(10),
        )
        .await
        .expect("answers");
    let Some([ok, Term::Pid(child)]) = term::as_tuple(&started) else {
        panic!("{started}")
    };
    assert!(term::is_atom(ok, "ok"), "{started}");
    let name = rust.name().to_string();
    let base = ["--node", name.as_str(), "--cookie", COOKIE];
    let out = run(
        &[&["registry", "Elixir.Ops.Registry"], &base[..]].concat(),
        port,
    );
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{table}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    let echo_text = format!("<0.{}.{}>", echo.id, echo.serial);
    assert!(
        rows_with(&table, "\"rust-echo\"")
            .iter()
            .any(|l| l.contains(&echo_text) && l.contains(&name) && l.contains("hello")),
        "{table}"
    );
    assert!(table.contains(&format!("members: {name}")), "{table}");
    let out = run(
        &[&["registry", "Elixir.Ops.Registry", "--json"], &base[..]].concat(),
        port,
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["entries"][0]["pid"], echo_text.as_str(), "{v}");
    assert_eq!(v["entries"][0]["value"], "hello", "{v}");
    // The supervisor: this member alive, the child with its pid and start.
    let child_text = format!("<0.{}.{}>", child.id, child.serial);
    let mut seen;
    common::eventually!(
        Duration::from_secs(10),
        {
            let out = run(
                &[&["supervisor", "Elixir.Ops.Sup"], &base[..]].concat(),
                port,
            );
            seen = String::from_utf8_lossy(&out.stdout).into_owned();
            seen.contains(&child_text)
        },
        "the child is listed: {seen}"
    );
    assert!(
        rows_with(&seen, &name).iter().any(|l| l.ends_with("alive")),
        "{seen}"
    );
    assert!(
        rows_with(&seen, &child_text)
            .iter()
            .any(|l| l.contains("Elixir.MyApp.Worker") && l.contains("[7]")),
        "{seen}"
    );
    let out = run(
        &[&["supervisor", "Elixir.Ops.Sup", "--json"], &base[..]].concat(),
        port,
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["members"][0]["status"], "alive", "{v}");
    assert_eq!(v["children"][0]["pid"], child_text.as_str(), "{v}");
    // A name that is no member here is one clear error.
    let out = run(&[&["registry", "Elixir.Nope"], &base[..]].concat(), port);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not running on"));
    rust.shutdown();
}

/// A `beam-peer trace` running in the background: its stdout and stderr
/// lines as they come, killed by pid if the test ends first.
struct Tracer {
    child: std::process::Child,
    out: std::sync::mpsc::Receiver<String>,
    err: std::sync::mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

impl Tracer {
    fn start(c: &Cluster, node: &str, rest: &[&str]) -> Tracer {
        let mut args = vec!["trace"];
        args.extend(c.node_args(node));
        args.extend(rest);
        println!("$ beam-peer {}", args.join(" "));
        let mut child = Command::new(BIN)
            .args(&args)
            .env("ERL_EPMD_PORT", c.port.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("beam-peer trace starts");
        let lines = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for l in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let out = lines(Box::new(child.stdout.take().expect("stdout")));
        let err = lines(Box::new(child.stderr.take().expect("stderr")));
        Tracer {
            child,
            out,
            err,
            stdout: vec![],
            stderr: vec![],
        }
    }

    fn pump(&mut self) {
        while let Ok(l) = self.out.try_recv() {
            println!("trace| {l}");
            self.stdout.push(l);
        }
        while let Ok(l) = self.err.try_recv() {
            println!("trace! {l}");
            self.stderr.push(l);
        }
    }

    /// Waits (up to 20 s) for a line of stdout (`err` false) or stderr
    /// matching `f`, and returns it.
    async fn line(&mut self, err: bool, what: &str, f: impl Fn(&str) -> bool) -> String {
        let mut found;
        common::eventually!(
            Duration::from_secs(20),
            {
                self.pump();
                let lines = if err { &self.stderr } else { &self.stdout };
                found = lines.iter().find(|l| f(l)).cloned();
                found.is_some()
            },
            "{what}: stdout {:?} stderr {:?}",
            self.stdout,
            self.stderr
        );
        found.unwrap_or_default()
    }

    /// Tracing has started: the header is on stderr.
    async fn started(&mut self) {
        self.line(true, "the trace starts", |l| l.starts_with("tracing "))
            .await;
    }

    /// kill -9: no clean-up of its own.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn interrupt(&self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
    }

    /// Waits (up to 20 s) for the command to end; its exit code.
    async fn ended(&mut self) -> Option<i32> {
        let mut code;
        common::eventually!(
            Duration::from_secs(20),
            {
                code = self.child.try_wait().ok().flatten().map(|s| s.code());
                code.is_some()
            },
            "beam-peer trace ends"
        );
        // Whatever it printed last.
        while let Ok(l) = self.out.recv_timeout(Duration::from_secs(5)) {
            println!("trace| {l}");
            self.stdout.push(l);
        }
        while let Ok(l) = self.err.recv_timeout(Duration::from_secs(5)) {
            println!("trace! {l}");
            self.stderr.push(l);
        }
        code.flatten()
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `{flags, Flags}` of a process on a BEAM node, from the node itself.
async fn beam_trace_flags(p: &mut beam_peer::Process, node: &str, name: &str) -> Term {
    eval(
        p,
        node,
        &format!("erlang:trace_info(whereis({name}), flags)."),
    )
    .await
}

/// A BEAM process the test controls, traced through OTP's `erlang:trace/3`
/// (a relay the command starts there): what it receives and sends, as
/// lines; a second tracer refused while the first runs; Ctrl-C ends it
/// and leaves the process untraced, and so does `kill -9` of the command;
/// a trace ends when the process exits, and with an error when its node
/// goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_a_beam_process_receive_send_ctrl_c_and_exit() {
    require_erl!("trace_a_beam_process_receive_send_ctrl_c_and_exit");
    let mut c = cluster().await;
    let mut p = c.rust.process();
    eval(
        &mut p,
        &c.a.name,
        "register(tr_echo, spawn(fun L() -> receive stop -> ok; {From, M} -> From ! {echo, M}, L() end end)), ok.",
    )
    .await;
    let mut t = Tracer::start(&c, &c.a.name, &["tr_echo"]);
    t.started().await;
    // One tracer per process: a second trace says who holds it.
    let out = c.run(&[
        "trace", "--node", &c.a.name, "--cookie", COOKIE, "tr_echo", "--for", "5",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is already traced by"), "{err}");
    let me = p.pid().clone();
    let me_text = format!("<{}.{}.{}>", c.rust.name(), me.id, me.serial);
    p.send(
        Dest::Remote("tr_echo".into(), c.a.name.clone()),
        beam_peer::tup![Term::Pid(me.clone()), term::atom("hello")],
    );
    let got = p
        .receive_timeout(Duration::from_secs(10))
        .await
        .expect("alive")
        .expect("the echo answers");
    assert_eq!(
        got,
        beam_peer::tup![term::atom("echo"), term::atom("hello")]
    );
    let recv = t
        .line(false, "the receive", |l| l.contains(" receive "))
        .await;
    assert!(recv.ends_with(&format!("{{{me_text},hello}}")), "{recv}");
    let send = t.line(false, "the send", |l| l.contains(" send ")).await;
    assert!(
        send.contains(&format!(" send    {me_text}  {{echo,hello}}")),
        "{send}"
    );
    // HH:MM:SS.micros first.
    assert_eq!(send.as_bytes()[2], b':', "{send}");
    assert_eq!(send.as_bytes()[8], b'.', "{send}");
    let v = beam_trace_flags(&mut p, &c.a.name, "tr_echo").await;
    assert_ne!(v.to_string(), "{flags,[]}", "traced while it runs");
    t.interrupt();
    assert_eq!(t.ended().await, Some(0), "{:?}", t.stderr);
    assert!(
        t.stderr.iter().any(|l| l.contains("stopped (Ctrl-C)")),
        "{:?}",
        t.stderr
    );
    let v = beam_trace_flags(&mut p, &c.a.name, "tr_echo").await;
    assert_eq!(v.to_string(), "{flags,[]}", "no longer traced");
    // Killed outright, the command cleans nothing up: the relay sees our
    // hidden node's connection go and turns tracing off itself.
    let mut t = Tracer::start(&c, &c.a.name, &["tr_echo"]);
    t.started().await;
    let v = beam_trace_flags(&mut p, &c.a.name, "tr_echo").await;
    assert_ne!(v.to_string(), "{flags,[]}", "traced again");
    t.kill9();
    let mut flags;
    common::eventually!(
        Duration::from_secs(20),
        {
            flags = beam_trace_flags(&mut p, &c.a.name, "tr_echo").await;
            flags.to_string() == "{flags,[]}"
        },
        "untraced after the tracer was killed: {flags}"
    );
    // Traced until it exits: the trace says so and ends by itself, as JSON.
    let mut t = Tracer::start(&c, &c.a.name, &["tr_echo", "--json"]);
    t.started().await;
    p.send(
        Dest::Remote("tr_echo".into(), c.a.name.clone()),
        term::atom("stop"),
    );
    assert_eq!(t.ended().await, Some(0), "{:?}", t.stderr);
    let lines: Vec<Value> = t
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["direction"], "receive");
    assert_eq!(lines[0]["message"], "stop");
    assert_eq!(lines[1]["direction"], "exit");
    assert_eq!(lines[1]["reason"], "normal");
    assert!(t.stderr.iter().any(|l| l.contains("exited (normal)")));
    // The traced process's node goes away mid-trace: one clear error.
    eval(
        &mut p,
        &c.b.name,
        "register(tr_idle, spawn(fun() -> receive after infinity -> ok end end)), ok.",
    )
    .await;
    let mut t = Tracer::start(&c, &c.b.name, &["tr_idle"]);
    t.started().await;
    c.b.kill9();
    assert_eq!(t.ended().await, Some(1), "{:?}", t.stderr);
    assert!(
        t.stderr
            .iter()
            .any(|l| l.contains(&format!("lost the connection to {}", c.b.name))),
        "{:?}",
        t.stderr
    );
    c.rust.shutdown();
}

/// `echo` on the Rust node, traced natively: a gen_server call shows as
/// the `$gen_call` received and the reply sent; `--for` ends it and the
/// process is no longer traced; a Rust process that exits ends its trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_a_rust_process_for_a_while_and_until_it_exits() {
    require_erl!("trace_a_rust_process_for_a_while_and_until_it_exits");
    let c = cluster().await;
    let rust = c.rust.name().to_string();
    let echo = c.rust.whereis("echo").expect("echo");
    let mut t = Tracer::start(&c, &c.a.name, &["--on", &rust, "echo", "--for", "3"]);
    t.started().await;
    let mut p = c.rust.process();
    let me_text = format!("<0.{}.{}>", p.pid().id, p.pid().serial);
    let r = p
        .call(
            Dest::Name("echo".into()),
            term::parse::parse("{hello, rust}").expect("parses"),
            Duration::from_secs(5),
        )
        .await
        .expect("echo answers");
    assert_eq!(r.to_string(), "{hello,rust}");
    let recv = t.line(false, "the call", |l| l.contains(" receive ")).await;
    assert!(
        recv.contains(&format!("{{'$gen_call',{{{me_text},[alias|#Ref<0."))
            && recv.ends_with("{hello,rust}}"),
        "{recv}"
    );
    let send = t.line(false, "the reply", |l| l.contains(" send ")).await;
    assert!(
        send.contains(&format!(" send    {me_text}  {{[alias|#Ref<0."))
            && send.ends_with("{hello,rust}}"),
        "{send}"
    );
    assert_eq!(t.ended().await, Some(0), "{:?}", t.stderr);
    assert!(
        t.stderr.iter().any(|l| l.contains("--for expired")),
        "{:?}",
        t.stderr
    );
    assert_eq!(c.rust.trace_info(&echo), Some(None), "no longer traced");
    // Killed outright: the Rust node sees the tracer's node go.
    let mut t = Tracer::start(&c, &rust, &["echo"]);
    t.started().await;
    assert!(c.rust.trace_info(&echo).is_some_and(|t| t.is_some()));
    t.kill9();
    assert!(
        common::wait_until(Duration::from_secs(20), || c.rust.trace_info(&echo)
            == Some(None))
        .await,
        "untraced after the tracer was killed"
    );
    // A process that ends after one message.
    let short = c.rust.spawn(|mut p: beam_peer::Process| async move {
        let _ = p.receive().await;
        beam_peer::ProcessExit::Reason(term::atom("done"))
    });
    c.rust.register("tr_short", &short).expect("registers");
    let mut t = Tracer::start(&c, &rust, &["tr_short", "--json"]);
    t.started().await;
    p.send(Dest::Name("tr_short".into()), term::atom("bye"));
    assert_eq!(t.ended().await, Some(0), "{:?}", t.stderr);
    let lines: Vec<Value> = t
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["message"], "bye");
    assert_eq!(lines[1]["direction"], "exit");
    assert_eq!(lines[1]["reason"], "done");
    c.rust.shutdown();
}
