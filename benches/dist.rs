//! Distribution benchmarks, side by side with the BEAM on this machine.
//!
//! Four pairs measured in one run, each with the same work:
//! - BEAM -> BEAM: an `erl` driver against an `erl` target running the Erlang
//!   twin of our `echo`/`sink` (erlang/src/beam_peer_echo.erl);
//! - BEAM -> Rust: the same `erl` driver against a `beam-peer node` process;
//! - Rust -> BEAM: a Rust node doing the same work against the `erl` target;
//! - Rust -> Rust: the same Rust node against the `beam-peer node`.
//!
//! Lines: small-message throughput to `sink` (msgs/s) with the CPU time the
//! sending and the receiving OS process spent per message of that stream
//! (for Rust -> X the sender is this process, whose node is the driver),
//! `gen_server:call` round trip p50/p99 to `echo` (µs), 10 MB `echo` round
//! trip (ms), and many callers at once: `BENCH_CALLERS` (100) processes,
//! caller I doing `BENCH_CALLS_EACH` (1000) calls in a row to its own server
//! `echo_I` (calls/s over all of them, and the p99 of every call). Ratios
//! are "times as fast as BEAM -> BEAM" (above 1 is faster; on the CPU
//! lines, less CPU). Run with `scripts/bench.sh`.
//!
//! With the tables: the cores this process may use, and what each
//! connection's poll policy decided (`dist::poll`): the client node's from
//! its connection statistics, the `beam-peer node`'s from its debug log.
//!
//! Then the same over TLS (`-proto_dist inet_tls` on the BEAM nodes, an OTP
//! optfile for ours, certificates made here; `BENCH_DIST_TLS=0` skips it).

/// See the `mimalloc` feature in Cargo.toml: received messages are
/// allocated on one thread and freed on another.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beam_peer::term::{self, Term};
use beam_peer::{Dest, Node, NodeConfig};

#[path = "../tests/common/certs.rs"]
#[allow(dead_code)]
mod certs;
mod common;
use common::{compile_erlang, cpu_seconds, env_or, free_port, start_until_ready};

const COOKIE: &str = "beam_peer_bench";

/// The Rust drivers wait while more than this is queued towards the
/// target (the BEAM's `dist_buf_busy_limit` is 1 MiB; ours a larger 8 MiB,
/// well under the 64 MiB bound that closes a connection).
const SEND_PACE_BYTES: usize = 8 << 20;

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    msgs_per_sec: f64,
    /// CPU time per message of the stream: the sending and the receiving
    /// OS process (every thread, user and system).
    sender_cpu_ns: f64,
    receiver_cpu_ns: f64,
    call_p50_us: f64,
    call_p99_us: f64,
    big_rtt_ms: f64,
    many_calls_per_sec: f64,
    many_p99_us: f64,
}

/// The work of one driver run.
#[derive(Debug, Clone, Copy)]
struct Work {
    msgs: usize,
    calls: usize,
    big: usize,
    /// Concurrent callers, and the calls each makes in a row.
    callers: usize,
    calls_each: usize,
}

/// One line of the table.
struct Line {
    label: &'static str,
    figure: fn(&Figures) -> f64,
    higher_is_better: bool,
}

const LINES: [Line; 8] = [
    Line {
        label: "small messages (msgs/s)",
        figure: |f| f.msgs_per_sec,
        higher_is_better: true,
    },
    Line {
        label: "  sender CPU per message (ns)",
        figure: |f| f.sender_cpu_ns,
        higher_is_better: false,
    },
    Line {
        label: "  receiver CPU per message (ns)",
        figure: |f| f.receiver_cpu_ns,
        higher_is_better: false,
    },
    Line {
        label: "gen_server:call p50 (us)",
        figure: |f| f.call_p50_us,
        higher_is_better: false,
    },
    Line {
        label: "gen_server:call p99 (us)",
        figure: |f| f.call_p99_us,
        higher_is_better: false,
    },
    Line {
        label: "10 MB echo round trip (ms)",
        figure: |f| f.big_rtt_ms,
        higher_is_better: false,
    },
    Line {
        label: "100 callers x 100 servers (calls/s)",
        figure: |f| f.many_calls_per_sec,
        higher_is_better: true,
    },
    Line {
        label: "  their call p99 (us)",
        figure: |f| f.many_p99_us,
        higher_is_better: false,
    },
];

/// The best of several runs' values of one line.
fn best(values: Vec<f64>, higher_is_better: bool) -> f64 {
    let pick = if higher_is_better { f64::max } else { f64::min };
    values.into_iter().reduce(pick).unwrap_or(0.0)
}

/// The median of several runs' values of one line: what a typical run
/// gives, where the best is what a run undisturbed by the rest of the
/// machine can give. Both are shown, as a pair whose best runs differ less
/// than its typical ones (or the other way round) is worth knowing about.
fn median(values: Vec<f64>, _higher_is_better: bool) -> f64 {
    common::median(values)
}

/// One side-by-side table of the three pairs' runs, each line summed up by
/// `summary` ([`best`] or [`median`]), with ratios to BEAM->BEAM.
/// The lines for each pair (`columns`: label and runs), with ratios against
/// the first.
fn table(title: &str, summary: fn(Vec<f64>, bool) -> f64, columns: &[(&str, &[Figures])]) {
    println!();
    print!("{title:<34} {:>14}", columns[0].0);
    for (label, _) in &columns[1..] {
        print!(" {label:>14} {:>7}", "ratio");
    }
    println!();
    for Line {
        label,
        figure,
        higher_is_better,
    } in LINES
    {
        let line = |runs: &[Figures]| summary(runs.iter().map(figure).collect(), higher_is_better);
        let b = line(columns[0].1);
        print!("{label:<34} {b:>14.1}");
        for (_, runs) in &columns[1..] {
            let x = line(runs);
            let r = if higher_is_better { x / b } else { b / x };
            print!(" {x:>14.1} {r:>6.2}x");
        }
        println!();
    }
}

fn parse_figures(line: &str) -> Option<Figures> {
    let mut f = Figures::default();
    for kv in line.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        let v: f64 = v.parse().ok()?;
        match k {
            "msgs_per_sec" => f.msgs_per_sec = v,
            "sender_cpu_ns" => f.sender_cpu_ns = v,
            "call_p50_us" => f.call_p50_us = v,
            "call_p99_us" => f.call_p99_us = v,
            "big_rtt_ms" => f.big_rtt_ms = v,
            "many_calls_per_sec" => f.many_calls_per_sec = v,
            "many_p99_us" => f.many_p99_us = v,
            _ => {}
        }
    }
    Some(f)
}

/// Runs the Erlang driver against `target` (whose OS process is
/// `target_pid`), reading the target's CPU time when the driver says its
/// stream starts and ends.
fn beam_driver(
    ebin: &PathBuf,
    extra: &[String],
    epmd_port: u16,
    (target, target_pid): (&str, u32),
    w: Work,
) -> Figures {
    let Work {
        msgs,
        calls,
        big,
        callers,
        calls_each,
    } = w;
    let name = format!(
        "bench_driver_{}_{}@127.0.0.1",
        std::process::id(),
        free_port()
    );
    let code = format!(
        "R = beam_peer_bench:run('{target}', {msgs}, {calls}, {big}, {callers}, {calls_each}), \
         io:format(\"msgs_per_sec=~p sender_cpu_ns=~p call_p50_us=~p call_p99_us=~p big_rtt_ms=~p \
                     many_calls_per_sec=~p many_p99_us=~p~n\", \
           [float(maps:get(K, R)) || K <- [msgs_per_sec, sender_cpu_ns, call_p50_us, \
                                           call_p99_us, big_rtt_ms, many_calls_per_sec, \
                                           many_p99_us]]), halt()."
    );
    let mut driver = Command::new("erl")
        .args([
            "-name",
            &name,
            "-setcookie",
            COOKIE,
            "-noshell",
            "-start_epmd",
            "false",
        ])
        .arg("-pa")
        .arg(ebin)
        .args(extra)
        .args(["-eval", &code])
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("erl driver");
    let stdout = driver.stdout.take().expect("driver stdout");
    let (mut text, mut figures) = (String::new(), None);
    let (mut cpu_start, mut cpu_end) = (0.0, 0.0);
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        match line.as_str() {
            "stream_start" => cpu_start = cpu_seconds(target_pid),
            "stream_end" => cpu_end = cpu_seconds(target_pid),
            l if l.starts_with("msgs_per_sec=") => figures = parse_figures(l),
            _ => {}
        }
        text.push_str(&line);
        text.push('\n');
    }
    let _ = driver.wait();
    let mut f =
        figures.unwrap_or_else(|| panic!("driver against {target} printed no figures:\n{text}"));
    f.receiver_cpu_ns = (cpu_end - cpu_start) * 1e9 / msgs.max(1) as f64;
    f
}

/// The Rust twin of the Erlang driver, run by `node` (this OS process)
/// against `target` (OS process `target_pid`).
async fn rust_driver(node: &Node, (target, target_pid): (&str, u32), w: Work) -> Figures {
    let Work {
        msgs,
        calls,
        big,
        callers,
        calls_each,
    } = w;
    let mut p = node.process();
    let echo = Dest::Remote("echo".into(), target.into());
    let sink = Dest::Remote("sink".into(), target.into());
    let t = Duration::from_secs(60);
    p.call(echo.clone(), term::atom("warm"), t)
        .await
        .expect("warm up");
    let count_of =
        |m: &Term| matches!(term::as_tuple(m), Some([c, _]) if term::is_atom(c, "count"));
    // Throughput: reset, stream, report.
    p.send(
        sink.clone(),
        beam_peer::tup![term::atom("report"), Term::Pid(p.pid().clone())],
    );
    p.receive_match(count_of, Some(t)).await.expect("alive");
    let cpu = || (cpu_seconds(std::process::id()), cpu_seconds(target_pid));
    let cpu_start = cpu();
    let start = Instant::now();
    for i in 0..msgs {
        // As a BEAM sender is suspended on a busy distribution port: a
        // burst past the send queue's bound would close the connection.
        if i % 1024 == 0 {
            while node.send_queue_bytes(target).unwrap_or(0) > SEND_PACE_BYTES {
                tokio::task::yield_now().await;
            }
        }
        p.send_to(&sink, beam_peer::tup![term::atom("m"), term::int(i as i64)]);
    }
    p.send(
        sink.clone(),
        beam_peer::tup![term::atom("report"), Term::Pid(p.pid().clone())],
    );
    let got = p
        .receive_match(count_of, Some(t))
        .await
        .expect("alive")
        .expect("count");
    let secs = start.elapsed().as_secs_f64();
    let cpu_end = cpu();
    let n = term::as_tuple(&got)
        .and_then(|e| term::as_i64(&e[1]))
        .unwrap_or(-1);
    assert_eq!(n, msgs as i64, "sink counted every message");
    // Calls.
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        let req = beam_peer::tup![term::atom("x"), term::int(i as i64)];
        let s = Instant::now();
        let r = p.call(echo.clone(), req.clone(), t).await.expect("call");
        times.push(s.elapsed().as_nanos() as f64 / 1000.0);
        assert_eq!(r, req);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: usize| times[((calls * q) / 100).saturating_sub(1).min(calls - 1)];
    // 10 MB round trips.
    let bin = term::binary(
        (0..10 * 1024 * 1024)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    // One uncounted round first, as the Erlang driver does: the first 10 MB
    // through a fresh connection pays for buffers on both sides.
    p.call(echo.clone(), bin.clone(), t)
        .await
        .expect("big warm-up");
    let mut big_times = Vec::new();
    for _ in 0..big {
        let s = Instant::now();
        let r = p
            .call(echo.clone(), bin.clone(), t)
            .await
            .expect("big call");
        big_times.push(s.elapsed().as_secs_f64() * 1000.0);
        assert!(r == bin);
    }
    big_times.sort_by(|a, b| a.total_cmp(b));
    let (many_calls_per_sec, many_p99_us) =
        rust_many_callers(node, &mut p, target, callers, calls_each).await;
    Figures {
        msgs_per_sec: msgs as f64 / secs,
        sender_cpu_ns: (cpu_end.0 - cpu_start.0) * 1e9 / msgs.max(1) as f64,
        receiver_cpu_ns: (cpu_end.1 - cpu_start.1) * 1e9 / msgs.max(1) as f64,
        call_p50_us: pct(50),
        call_p99_us: pct(99),
        big_rtt_ms: big_times[(big.max(1) - 1) / 2],
        many_calls_per_sec,
        many_p99_us,
    }
}

/// `callers` processes of `node` at once, caller I doing `calls_each` calls
/// in a row to `echo_I` on `target`: calls per second over all, and the p99
/// of every call (us). As the Erlang driver's `many/3`.
async fn rust_many_callers(
    node: &Node,
    p: &mut beam_peer::Process,
    target: &str,
    callers: usize,
    calls_each: usize,
) -> (f64, f64) {
    if callers == 0 {
        return (0.0, 0.0);
    }
    let t = Duration::from_secs(60);
    let servers: Vec<Dest> = (1..=callers)
        .map(|i| Dest::Remote(format!("echo_{i}"), target.to_string()))
        .collect();
    // Each server answers once before the clock starts.
    for s in &servers {
        let req = beam_peer::tup![term::atom("x"), term::int(0)];
        assert_eq!(p.call(s.clone(), req.clone(), t).await.expect("warm"), req);
    }
    let start = Instant::now();
    let runs: Vec<_> = servers
        .into_iter()
        .map(|server| {
            let mut p = node.process();
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(calls_each);
                for i in 0..calls_each {
                    let req = beam_peer::tup![term::atom("x"), term::int(i as i64)];
                    let s = Instant::now();
                    let r = p.call(server.clone(), req.clone(), t).await.expect("call");
                    times.push(s.elapsed().as_nanos() as f64 / 1000.0);
                    assert_eq!(r, req);
                }
                times
            })
        })
        .collect();
    let mut times = Vec::with_capacity(callers * calls_each);
    for run in runs {
        times.extend(run.await.expect("caller"));
    }
    let secs = start.elapsed().as_secs_f64();
    times.sort_by(|a, b| a.total_cmp(b));
    let n = times.len();
    (
        n as f64 / secs,
        times[((n * 99) / 100).saturating_sub(1).min(n - 1)],
    )
}

/// Runs blocking bench work (waiting for an OS process) off the runtime's
/// threads: on a one-thread runtime it would stop the client node, and the
/// embedded EPMD that node serves, until it returned.
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking bench work")
}

/// [`beam_driver`] off the runtime's threads ([`off_runtime`]).
async fn beam_driver_off_runtime(
    ebin: &Path,
    extra: &[String],
    epmd_port: u16,
    (target, target_pid): (&str, u32),
    w: Work,
) -> Figures {
    let (ebin, extra, target) = (ebin.to_path_buf(), extra.to_vec(), target.to_string());
    off_runtime(move || beam_driver(&ebin, &extra, epmd_port, (&target, target_pid), w)).await
}

/// A `beam-peer node` target with `callers` echo servers more, logging
/// how each connection ended (with its poll policy's decisions) to a pipe
/// read into the returned list.
fn start_rust_target(
    name: &str,
    epmd_port: u16,
    callers: usize,
    extra: &[std::ffi::OsString],
) -> (common::Guard, Arc<Mutex<Vec<String>>>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beam-peer"));
    cmd.args(["node", "--name", name, "--cookie", COOKIE])
        .args(["--echo-servers", &callers.to_string()])
        .args(extra)
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .env("RUST_LOG", "warn,beam_peer::dist::connection=debug")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped());
    let mut guard = start_until_ready(cmd, None, Duration::from_secs(30));
    let ended = Arc::new(Mutex::new(Vec::new()));
    let stderr = guard.0.stderr.take().expect("target stderr");
    let into = ended.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("connection ended") {
                if let Ok(mut v) = into.lock() {
                    v.push(line);
                }
            } else if !line.contains("DEBUG") {
                eprintln!("[beam-peer] {line}");
            }
        }
    });
    (guard, ended)
}

/// The peer and the poll decisions of a "connection ended" log line.
fn ended_summary(line: &str) -> String {
    let field = |key: &str| {
        line.split_once(key)
            .map(|(_, rest)| rest.split(" bytes_out").next().unwrap_or(rest).trim())
            .unwrap_or("")
    };
    let peer = field("peer=");
    let poll = line
        .split_once("poll=")
        .map(|(_, rest)| rest.split(" coalesce=").next().unwrap_or(rest).trim())
        .unwrap_or("");
    let coalesce = line
        .split_once("coalesce=")
        .map(|(_, rest)| rest.trim_end_matches(" connection ended").trim())
        .unwrap_or("");
    format!("{peer}: poll {poll}; coalescing {coalesce}")
}

/// Prints the machine's cores and the poll and coalescing decisions of the client node's
/// connections and of the target's connections that ended so far.
fn print_decisions(client: &Node, target_ended: &Mutex<Vec<String>>) {
    // `beam-peer node` chooses as this process does (same machine, same
    // rule, unless BEAM_PEER_WORKER_THREADS or --worker-threads says).
    println!(
        "\nheuristics: {} (beam_peer::runtime; the client node and `beam-peer node` alike)",
        beam_peer::runtime::choose(None)
    );
    for (peer, stats) in client.connection_stats() {
        println!(
            "  client -> {peer}: poll {}; coalescing {}",
            stats.poll, stats.coalesce
        );
    }
    if let Ok(lines) = target_ended.lock() {
        for l in lines.iter() {
            println!("  beam-peer node, from {}", ended_summary(l));
        }
    }
}

/// The four pairs over TLS: every node with the same CA-signed certificate
/// setup, `verify_peer` both ways, TLS 1.2 (OTP's distribution default).
async fn tls_pairs(ebin: &PathBuf, epmd_port: u16, work: Work, repeats: usize) {
    let dir = certs::dir("bench_tls");
    let ca = certs::Ca::new(&dir, "ca");
    let leaf = ca.leaf("node");
    let optfile = certs::optfile_for(&dir, "node", &leaf, &ca.cert, &[]);
    let tls_args: Vec<String> = [
        "-proto_dist",
        "inet_tls",
        "-ssl_dist_optfile",
        &optfile.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let id = std::process::id();
    let client = Node::start(
        NodeConfig::new(format!("bench_tls_client_{id}@127.0.0.1"))
            .cookie(COOKIE)
            .discovery(beam_peer::Discovery::Epmd { port: epmd_port })
            .tls(beam_peer::TlsConfig::from_optfile(&optfile).expect("bench optfile")),
    )
    .await
    .expect("TLS client node");
    let beam_target = format!("bench_tls_beam_{id}@127.0.0.1");
    let mut cmd = Command::new("erl");
    cmd.args([
        "-name",
        &beam_target,
        "-setcookie",
        COOKIE,
        "-noshell",
        "-start_epmd",
        "false",
    ])
    .arg("-pa")
    .arg(ebin)
    .args(&tls_args)
    .args(["-eval", &beam_target_code(work.callers)])
    .env("ERL_EPMD_PORT", epmd_port.to_string());
    let beam_guard =
        off_runtime(move || start_until_ready(cmd, None, Duration::from_secs(30))).await;
    let beam = (beam_target.as_str(), beam_guard.0.id());
    let rust_target = format!("bench_tls_rust_{id}@127.0.0.1");
    let (rust_guard, ended) = {
        let (name, callers) = (rust_target.clone(), work.callers);
        let extra = vec![
            "--ssl-dist-optfile".into(),
            optfile.clone().into_os_string(),
        ];
        off_runtime(move || start_rust_target(&name, epmd_port, callers, &extra)).await
    };
    let rust = (rust_target.as_str(), rust_guard.0.id());
    let (mut bbs, mut brs, mut rbs, mut rrs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeats {
        bbs.push(beam_driver_off_runtime(ebin, &tls_args, epmd_port, beam, work).await);
        brs.push(beam_driver_off_runtime(ebin, &tls_args, epmd_port, rust, work).await);
        for (target, into) in [(beam, &mut rbs), (rust, &mut rrs)] {
            let (node, name, pid) = (client.clone(), target.0.to_string(), target.1);
            let run = tokio::spawn(async move { rust_driver(&node, (&name, pid), work).await });
            into.push(run.await.expect("rust driver over TLS"));
        }
    }
    let columns = [
        ("BEAM->BEAM tls", &bbs[..]),
        ("BEAM->Rust tls", &brs[..]),
        ("Rust->BEAM tls", &rbs[..]),
        ("Rust->Rust tls", &rrs[..]),
    ];
    println!("\nover TLS 1.2 (verify_peer both ways), {repeats} interleaved runs per pair");
    table("best run per line (TLS)", best, &columns);
    table("median run per line (TLS)", median, &columns);
    print_decisions(&client, &ended);
    client.shutdown();
    drop((beam_guard, rust_guard));
    let _ = std::fs::remove_dir_all(&dir);
}

/// What an `erl` target evaluates: `echo`, `sink` and `echo_1..echo_N`.
fn beam_target_code(callers: usize) -> String {
    format!("beam_peer_echo:start(), beam_peer_echo:start_many({callers}), io:format(\"ready~n\").")
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run
    // only when asked to bench.
    if !std::env::args().any(|a| a == "--bench") {
        println!("dist bench: pass --bench (scripts/bench.sh) to run");
        return;
    }
    if !common::have_erl() {
        println!("SKIPPED dist bench: erl not found (apt-get install erlang-nox)");
        return;
    }
    let work = Work {
        msgs: env_or("BENCH_MESSAGES", 1_000_000usize),
        calls: env_or("BENCH_CALLS", 20_000usize),
        big: env_or("BENCH_BIG_ROUNDS", 7usize),
        callers: env_or("BENCH_CALLERS", 100usize),
        calls_each: env_or("BENCH_CALLS_EACH", 1_000usize),
    };
    // The runtime `beam-peer node` chooses on this machine (see
    // `beam_peer::runtime`), so that Rust->Rust compares like with like.
    let choice = beam_peer::runtime::choose(None);
    let cores = choice.cores;
    let rt = beam_peer::runtime::build(choice).expect("runtime");
    let epmd_port = free_port();
    let ebin = compile_erlang(
        "beam_peer_bench_ebin",
        &["beam_peer_echo.erl", "beam_peer_bench.erl"],
    );
    rt.block_on(async {
        // The client node also starts the embedded EPMD everyone registers in.
        let client = Node::start(
            NodeConfig::new(format!("bench_client_{}@127.0.0.1", std::process::id()))
                .cookie(COOKIE)
                .discovery(beam_peer::Discovery::Epmd { port: epmd_port }),
        )
        .await
        .expect("client node");

        let beam_target = format!("bench_beam_{}@127.0.0.1", std::process::id());
        let mut cmd = Command::new("erl");
        cmd.args(["-name", &beam_target, "-setcookie", COOKIE, "-noshell", "-start_epmd", "false"])
            .arg("-pa")
            .arg(&ebin)
            .args(["-eval", &beam_target_code(work.callers)])
            .env("ERL_EPMD_PORT", epmd_port.to_string());
        let beam_guard = off_runtime(move || start_until_ready(cmd, None, Duration::from_secs(30))).await;
        let beam = (beam_target.as_str(), beam_guard.0.id());

        let rust_target = format!("bench_rust_{}@127.0.0.1", std::process::id());
        // Extra `beam-peer node` flags (e.g. `--read-coalesce-us 0`), to
        // compare a setting against the defaults on this machine.
        let extra: Vec<std::ffi::OsString> = std::env::var("BENCH_TARGET_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(Into::into)
            .collect();
        let (rust_guard, ended) = {
            let (name, callers) = (rust_target.clone(), work.callers);
            off_runtime(move || start_rust_target(&name, epmd_port, callers, &extra)).await
        };
        let rust = (rust_target.as_str(), rust_guard.0.id());

        println!("dist bench: {} messages, {} calls, {} x 10 MB round trips, {} callers x {} calls; {cores}-core machine, OTP {}",
            work.msgs, work.calls, work.big, work.callers, work.calls_each,
            String::from_utf8_lossy(&Command::new("erl").args(["-noshell", "-eval", "io:format(\"~s\", [erlang:system_info(otp_release)]), halt()."]).output().map(|o| o.stdout).unwrap_or_default()));
        // Each pair runs `repeats` times, interleaved. On a shared 2-core
        // machine a run is only ever slowed down (by the other processes, or
        // by how the sender's kernel happens to batch its writes into
        // segments), so the best figure per line estimates what each pair
        // can do and the median what a typical run gives; both are printed.
        let repeats: usize = env_or("BENCH_DIST_REPEATS", 5usize).max(1);
        let (mut bbs, mut brs, mut rbs, mut rrs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeats {
            bbs.push(beam_driver_off_runtime(&ebin, &[], epmd_port, beam, work).await);
            brs.push(beam_driver_off_runtime(&ebin, &[], epmd_port, rust, work).await);
            // On a runtime worker, as a node's processes run (the BEAM
            // driver is a process on a scheduler too); from `block_on` every
            // send and reply would cross threads.
            for (target, into) in [(beam, &mut rbs), (rust, &mut rrs)] {
                let (node, name, pid) = (client.clone(), target.0.to_string(), target.1);
                let run = tokio::spawn(async move { rust_driver(&node, (&name, pid), work).await });
                into.push(run.await.expect("rust driver"));
            }
        }
        println!("{repeats} interleaved runs per pair (BENCH_DIST_REPEATS)");
        let columns = [
            ("BEAM->BEAM", &bbs[..]),
            ("BEAM->Rust", &brs[..]),
            ("Rust->BEAM", &rbs[..]),
            ("Rust->Rust", &rrs[..]),
        ];
        table("best run per line", best, &columns);
        table("median run per line", median, &columns);
        println!("\nratio = times as fast as BEAM->BEAM (above 1.00x is faster; for CPU, less used)");
        print_decisions(&client, &ended);
        if std::env::var("BENCH_DIST_TLS").as_deref() != Ok("0") {
            drop((beam_guard, rust_guard));
            tls_pairs(&ebin, epmd_port, work, repeats).await;
        }
        // Last: its embedded EPMD serves the TLS pairs too.
        client.shutdown();
    });
    let _ = std::fs::remove_dir_all(&ebin);
}
