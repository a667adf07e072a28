//! CRDT sync benchmark (issue 4), side by side with real DeltaCrdt on the BEAM.
//!
//! Three replicas on three nodes on 127.0.0.1, real distribution connections,
//! one writer, Horde's `sync_interval` (300 ms; `BENCH_CRDT_SYNC_MS`). For each
//! key count N (`BENCH_CRDT_KEYS`, default 1000,10000,100000), each side runs
//! the same two clusters one after the other:
//! - periodic: N puts on the first replica before the replicas know each
//!   other ("writes": until the writer has applied them); then each is given
//!   the two others as neighbours, and "converge" is the time until both
//!   others have reported every key added (then all three maps are
//!   compared), "CPU" what the three nodes used meanwhile. (Writing while
//!   the replicas sync makes every round during the writes compare a large
//!   difference, on both sides; that run time varies too much to compare.)
//! - manual (a sync interval of an hour; the driver sends each replica the
//!   `:sync` message its timer would send): the same writes, synced by
//!   `:sync` to the writer until converged; then (b) `BENCH_CRDT_IDLE_ROUNDS`
//!   times `:sync` to all three, i.e. one idle sync interval of the cluster
//!   (six rounds: each replica with each neighbour), bytes until the wire is
//!   quiet; then (c) one existing key changed on the writer and `:sync` to it,
//!   bytes until both others have the new value and the wire is quiet.
//!
//! Bytes are everything the three nodes write to the sockets between them
//! (frame headers and ticks included): `Node::connection_stats` on the Rust
//! side, `inet:getstat(Port, [send_oct])` of the dist ports on the BEAM side
//! (erlang/src/beam_peer_crdt_bench.erl, driven from a fourth BEAM node whose
//! own traffic is not counted).
//!
//! The Rust replicas cut their diff messages at the library's default depth
//! (`BENCH_CRDT_DIFF_DEPTH` overrides it; 8 is exactly what DeltaCrdt sends).
//!
//! The BEAM side needs DeltaCrdt, MerkleMap and telemetry: set
//! `BEAM_PEER_HORDE_EBIN` to their colon-separated ebin directories. Without
//! it the BEAM column is skipped with one line. Run with `scripts/bench.sh`.

/// See the `mimalloc` feature in Cargo.toml: the program allocates as the
/// `beam-peer` binary does.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use beam_peer::crdt::process::{self, CrdtHandle, CrdtOptions};
use beam_peer::crdt::Diff;
use beam_peer::term::{self, Term};
use beam_peer::{Dest, Node, NodeConfig, Process};

mod common;
use common::{compile_erlang, env_or, start_until_ready};

const COOKIE: &str = "beam_peer_crdt_bench";
/// The sync interval of the manual clusters: never reached during a run.
const MANUAL_INTERVAL_MS: u64 = 3_600_000;
/// The wire counts as quiet after this long without a byte.
const QUIET: Duration = Duration::from_millis(300);
const LIMIT: Duration = Duration::from_secs(900);

/// The same keys and values as `beam_peer_crdt_bench:key/1` and `value/1`.
fn key(i: usize) -> Term {
    beam_peer::tup![term::atom("key"), term::binary(format!("name-{i}"))]
}

fn value(i: usize) -> Term {
    beam_peer::tup![term::binary(format!("value-{i}")), term::int(i as i64)]
}

fn changed_value(i: usize) -> Term {
    beam_peer::tup![term::binary("changed"), term::int(i as i64)]
}

#[derive(Debug, Default, Clone)]
struct Figures {
    write_ms: f64,
    converge_ms: f64,
    /// CPU time the three nodes used from setting neighbours to convergence.
    cpu_ms: u64,
    idle_bytes: u64,
    idle_min: u64,
    idle_max: u64,
    one_key_bytes: u64,
    one_key_ms: f64,
}

impl Figures {
    fn line(&self, side: &str, n: usize) -> String {
        format!(
            "crdt_{side} n={n} write_ms={:.1} converge_ms={:.1} cpu_ms={} idle_bytes={} idle_min={} idle_max={} one_key_bytes={} one_key_ms={:.1}",
            self.write_ms, self.converge_ms, self.cpu_ms, self.idle_bytes, self.idle_min, self.idle_max,
            self.one_key_bytes, self.one_key_ms
        )
    }

    fn parse(line: &str) -> Option<(usize, Figures)> {
        let mut n = None;
        let mut f = Figures::default();
        for kv in line.split_whitespace().skip(1) {
            let (k, v) = kv.split_once('=')?;
            match k {
                "n" => n = v.parse().ok(),
                "write_ms" => f.write_ms = v.parse().ok()?,
                "converge_ms" => f.converge_ms = v.parse().ok()?,
                "cpu_ms" => f.cpu_ms = v.parse().ok()?,
                "idle_bytes" => f.idle_bytes = v.parse().ok()?,
                "idle_min" => f.idle_min = v.parse().ok()?,
                "idle_max" => f.idle_max = v.parse().ok()?,
                "one_key_bytes" => f.one_key_bytes = v.parse().ok()?,
                "one_key_ms" => f.one_key_ms = v.parse().ok()?,
                _ => {}
            }
        }
        Some((n?, f))
    }
}

// ---------------------------------------------------------------- Rust side

/// Three Rust nodes, one replica each, neighbours of each other.
struct Cluster {
    nodes: Vec<Node>,
    replicas: Vec<CrdtHandle>,
    /// Keys each replica has reported added (its `subscribe` stream).
    added: Vec<Arc<AtomicUsize>>,
    /// One process per node to send `:sync` from (a local send).
    senders: Vec<Process>,
    name: String,
}

impl Cluster {
    async fn start(epmd_port: u16, tag: &str, sync_ms: u64) -> Cluster {
        let name = format!("Elixir.BenchCrdt.{tag}");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let node = Node::start(
                NodeConfig::new(format!("crdt_{tag}_{i}_{}@127.0.0.1", std::process::id()))
                    .cookie(COOKIE)
                    .discovery(beam_peer::Discovery::Epmd { port: epmd_port }),
            )
            .await
            .expect("node starts");
            nodes.push(node);
        }
        let mut replicas = Vec::new();
        let mut added = Vec::new();
        for node in &nodes {
            let mut opts = CrdtOptions::new(&name);
            opts.sync_interval = sync_ms;
            if let Some(depth) = diff_depth() {
                opts.diff_depth = depth;
            }
            let handle = process::start(node, opts).expect("replica starts");
            // Only the two readers are waited on. A subscriber on the writer
            // would receive one diff per put and lag behind them.
            added.push(if replicas.is_empty() {
                Arc::new(AtomicUsize::new(0))
            } else {
                count_added(&handle)
            });
            replicas.push(handle);
        }
        // Connected now, so that no handshake falls inside a measurement.
        for (i, a) in nodes.iter().enumerate() {
            for b in &nodes[i + 1..] {
                a.connect(b.name()).await.expect("nodes connect");
            }
        }
        let senders = nodes.iter().map(|n| n.process()).collect();
        Cluster {
            nodes,
            replicas,
            added,
            senders,
            name,
        }
    }

    /// Makes the three neighbours of each other; each starts a round with
    /// the two others at once.
    fn set_neighbours(&self) {
        for (i, r) in self.replicas.iter().enumerate() {
            let others = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, n)| beam_peer::tup![term::atom(&self.name), term::atom(n.name())])
                .collect();
            r.set_neighbours(others).expect("alive");
        }
    }

    fn sync(&self, i: usize) {
        self.senders[i].send(Dest::Name(self.name.clone()), term::atom("sync"));
    }

    fn bytes(&self) -> u64 {
        self.nodes
            .iter()
            .flat_map(|n| n.connection_stats())
            .map(|(_, s)| s.bytes_out)
            .sum()
    }

    async fn write(&self, n: usize) {
        for i in 1..=n {
            self.replicas[0].put(key(i), value(i)).expect("alive");
        }
        // Commands run in order: this returns once every put is applied.
        let last = self.replicas[0].get(key(n)).await.expect("alive");
        assert_eq!(last, Some(value(n)));
    }

    /// Until replica i has reported `target` keys added, for every (i,
    /// target); with `kick`, `:sync` goes to the writer at once and then
    /// every `kick` ms, as its timer would send it.
    async fn wait_added(&self, targets: &[(usize, usize)], kick: Option<u64>) {
        let start = Instant::now();
        let mut next_kick = Instant::now();
        loop {
            if let Some(every) = kick {
                if Instant::now() >= next_kick {
                    self.sync(0);
                    next_kick = Instant::now() + Duration::from_millis(every);
                }
            }
            if targets
                .iter()
                .all(|(i, t)| self.added[*i].load(Ordering::Relaxed) >= *t)
            {
                return;
            }
            assert!(start.elapsed() < LIMIT, "{}: not converged", self.name);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Until no byte has crossed between the three for [`QUIET`].
    async fn wait_quiet(&self) {
        let mut last = self.bytes();
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.bytes();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= QUIET {
                return;
            }
        }
    }

    async fn same_everywhere(&self, n: usize) {
        let first = self.replicas[0].read().await.expect("alive");
        assert_eq!(first.len(), n, "{}: writer has every key", self.name);
        for r in &self.replicas[1..] {
            assert!(
                r.read().await.expect("alive") == first,
                "{}: replicas differ",
                self.name
            );
        }
    }

    fn stop(self) {
        for n in &self.nodes {
            n.shutdown();
        }
    }
}

/// `BENCH_CRDT_DIFF_DEPTH`: merkle levels per diff step on the Rust side
/// (8 sends exactly what DeltaCrdt sends); unset, the library default.
fn diff_depth() -> Option<u32> {
    std::env::var("BENCH_CRDT_DIFF_DEPTH").ok()?.parse().ok()
}

/// Counts `{:add, ..}` diffs of one replica, as the BEAM side's `on_diffs`.
fn count_added(handle: &CrdtHandle) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let mut rx = handle.subscribe();
    let (c, h) = (count.clone(), handle.clone());
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(diffs) => {
                    let adds = diffs
                        .iter()
                        .filter(|d| matches!(d, Diff::Add { .. }))
                        .count();
                    c.fetch_add(adds, Ordering::Relaxed);
                }
                // Every key is added once except the one changed at the end,
                // and that is never lagged behind: the key count is the count.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if let Ok(map) = h.read().await {
                        c.store(map.len(), Ordering::Relaxed);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    count
}

/// CPU milliseconds this process (the three Rust nodes, and the idle anchor
/// node) has used, from /proc/self/stat (user + system, in clock ticks of
/// 10 ms); 0 where that file does not exist.
fn process_cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the
    // 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    ticks * 10
}

async fn rust_side(epmd_port: u16, n: usize, sync_ms: u64, idle_rounds: usize) -> Figures {
    let mut f = Figures::default();
    // Periodic cluster: convergence.
    let c = Cluster::start(epmd_port, &format!("P{n}"), sync_ms).await;
    let t0 = Instant::now();
    c.write(n).await;
    let tw = Instant::now();
    let cpu0 = process_cpu_ms();
    c.set_neighbours();
    c.wait_added(&[(1, n), (2, n)], None).await;
    let tc = Instant::now();
    f.cpu_ms = process_cpu_ms().saturating_sub(cpu0);
    c.same_everywhere(n).await;
    c.stop();
    f.write_ms = (tw - t0).as_secs_f64() * 1000.0;
    f.converge_ms = (tc - tw).as_secs_f64() * 1000.0;

    // Manual cluster: bytes.
    let c = Cluster::start(epmd_port, &format!("M{n}"), MANUAL_INTERVAL_MS).await;
    c.write(n).await;
    c.set_neighbours();
    c.wait_added(&[(1, n), (2, n)], Some(sync_ms)).await;
    c.wait_quiet().await;
    c.same_everywhere(n).await;
    let mut idle = Vec::new();
    for _ in 0..idle_rounds.max(1) {
        let b0 = c.bytes();
        for i in 0..3 {
            c.sync(i);
        }
        c.wait_quiet().await;
        idle.push(c.bytes() - b0);
    }
    let changed = n / 2 + 1;
    let (ab, ac) = (
        c.added[1].load(Ordering::Relaxed),
        c.added[2].load(Ordering::Relaxed),
    );
    let b1 = c.bytes();
    let t1 = Instant::now();
    c.replicas[0]
        .put(key(changed), changed_value(changed))
        .expect("alive");
    // Applied before the `:sync` (as DeltaCrdt.put, a call, is on the BEAM).
    let now = c.replicas[0].get(key(changed)).await.expect("alive");
    assert_eq!(now, Some(changed_value(changed)));
    c.wait_added(&[(1, ab + 1), (2, ac + 1)], Some(sync_ms))
        .await;
    let t2 = Instant::now();
    c.wait_quiet().await;
    f.one_key_bytes = c.bytes() - b1;
    f.one_key_ms = (t2 - t1).as_secs_f64() * 1000.0;
    c.same_everywhere(n).await;
    for r in &c.replicas {
        assert_eq!(
            r.get(key(changed)).await.expect("alive"),
            Some(changed_value(changed))
        );
    }
    c.stop();
    f.idle_bytes = idle.iter().sum::<u64>() / idle.len() as u64;
    f.idle_min = idle.iter().copied().min().unwrap_or(0);
    f.idle_max = idle.iter().copied().max().unwrap_or(0);
    f
}

// ---------------------------------------------------------------- BEAM side

fn have(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Why the BEAM column cannot run, if it cannot.
fn beam_unavailable() -> Option<String> {
    let ebin = std::env::var("BEAM_PEER_HORDE_EBIN").unwrap_or_default();
    if ebin.trim().is_empty() {
        return Some(
            "BEAM_PEER_HORDE_EBIN is not set (colon-separated ebin dirs of delta_crdt, merkle_map, telemetry)"
                .into(),
        );
    }
    if !have("erl", &["-noshell", "-eval", "halt()."]) {
        return Some("erl not found (apt-get install erlang-nox)".into());
    }
    if !have("elixir", &["-e", ":ok"]) {
        return Some("elixir not found (apt-get install elixir)".into());
    }
    None
}

fn beam_side(
    epmd_port: u16,
    counts: &[usize],
    sync_ms: u64,
    idle_rounds: usize,
) -> Vec<(usize, Figures)> {
    let helper = compile_erlang("beam_peer_crdt_bench", &["beam_peer_crdt_bench.erl"]);
    let ebin = std::env::var("BEAM_PEER_HORDE_EBIN").unwrap_or_default();
    let mut guards = Vec::new();
    let mut names = Vec::new();
    for i in 0..3 {
        let name = format!("crdt_beam_{i}_{}@127.0.0.1", std::process::id());
        let mut cmd = Command::new("elixir");
        cmd.args([
            "--name",
            &name,
            "--cookie",
            COOKIE,
            "--erl",
            "-start_epmd false",
        ]);
        for dir in ebin.split(':').filter(|d| !d.is_empty()) {
            cmd.arg("-pa").arg(dir);
        }
        cmd.arg("-pa")
            .arg(&helper)
            .args(["--no-halt", "-e", ":beam_peer_crdt_bench.node_ready()"])
            .env("ERL_EPMD_PORT", epmd_port.to_string());
        guards.push(start_until_ready(cmd, None, Duration::from_secs(60)));
        names.push(name);
    }
    let nodes = names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(",");
    let counts_list = counts
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let code = format!(
        "io:format(\"ready~n\"), \
         beam_peer_crdt_bench:main([{nodes}], [{counts_list}], {sync_ms}, {idle_rounds}), \
         io:format(\"done~n\"), halt()."
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let mut cmd = Command::new("erl");
    cmd.args([
        "-name",
        &format!("crdt_beam_driver_{}@127.0.0.1", std::process::id()),
        "-setcookie",
        COOKIE,
        "-noshell",
        // Hidden: not part of global's mesh between the three.
        "-hidden",
        "-start_epmd",
        "false",
    ])
    .arg("-pa")
    .arg(&helper)
    .args(["-eval", &code])
    .env("ERL_EPMD_PORT", epmd_port.to_string());
    let _driver = start_until_ready(cmd, Some(tx), Duration::from_secs(60));
    let mut out = Vec::new();
    for line in rx.iter() {
        if line == "done" {
            break;
        }
        match line
            .starts_with("crdt_beam ")
            .then(|| Figures::parse(&line))
            .flatten()
        {
            Some(fig) => {
                eprintln!("{line}");
                out.push(fig);
            }
            None => eprintln!("[beam driver] {line}"),
        }
    }
    drop(guards);
    let _ = std::fs::remove_dir_all(&helper);
    out
}

// ---------------------------------------------------------------- table

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing.
    if !std::env::args().any(|a| a == "--bench") {
        println!("crdt bench: pass --bench (scripts/bench.sh) to run");
        return;
    }
    beam_peer::demo::init_logging();
    let counts: Vec<usize> = env_or("BENCH_CRDT_KEYS", "1000,10000,100000".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let sync_ms: u64 = env_or("BENCH_CRDT_SYNC_MS", 300);
    let idle_rounds: usize = env_or("BENCH_CRDT_IDLE_ROUNDS", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let epmd_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let depth = diff_depth().unwrap_or(CrdtOptions::new("x").diff_depth);
    println!(
        "crdt bench: 3 replicas on 3 nodes, one writer, sync_interval {sync_ms} ms, keys {counts:?}, {idle_rounds} idle intervals; diff depth Rust {depth} (BEAM 8); 2-core machine"
    );
    let (anchor, rust): (Node, Vec<(usize, Figures)>) = rt.block_on(async {
        // Owns the embedded EPMD every node (Rust and BEAM) registers in.
        let anchor = Node::start(
            NodeConfig::new(format!("crdt_bench_epmd_{}@127.0.0.1", std::process::id()))
                .cookie(COOKIE)
                .discovery(beam_peer::Discovery::Epmd { port: epmd_port }),
        )
        .await
        .expect("anchor node");
        let mut out = Vec::new();
        for &n in &counts {
            let f = rust_side(epmd_port, n, sync_ms, idle_rounds).await;
            eprintln!("{}", f.line("rust", n));
            out.push((n, f));
        }
        (anchor, out)
    });
    let beam = match beam_unavailable() {
        Some(why) => {
            println!("SKIPPED BEAM column of the crdt bench: {why}");
            Vec::new()
        }
        // The anchor's embedded EPMD keeps running on the runtime's threads.
        None => beam_side(epmd_port, &counts, sync_ms, idle_rounds),
    };
    let beam_of = |n: usize| beam.iter().find(|(m, _)| *m == n).map(|(_, f)| f.clone());
    let cell = |v: Option<f64>, prec: usize| match v {
        Some(v) => format!("{v:.prec$}"),
        None => "-".into(),
    };
    let ratio = |b: Option<f64>, r: f64| match b {
        Some(b) if r > 0.0 => format!("{:.2}x", b / r),
        _ => "-".into(),
    };

    println!();
    println!("time (ms)          N puts on one replica alone        converged once neighbours set     puts + convergence              CPU of the 3 nodes converging");
    println!(
        "{:>8} {:>12} {:>10} {:>8} {:>12} {:>10} {:>8} {:>12} {:>10} {:>8} {:>12} {:>10} {:>8}",
        "keys",
        "BEAM",
        "Rust",
        "ratio",
        "BEAM",
        "Rust",
        "ratio",
        "BEAM",
        "Rust",
        "ratio",
        "BEAM",
        "Rust",
        "ratio"
    );
    for (n, r) in &rust {
        let b = beam_of(*n);
        let bw = b.as_ref().map(|b| b.write_ms);
        let bc = b.as_ref().map(|b| b.converge_ms);
        let bt = b.as_ref().map(|b| b.write_ms + b.converge_ms);
        let rt_ = r.write_ms + r.converge_ms;
        let bcpu = b.as_ref().map(|b| b.cpu_ms as f64);
        let rcpu = r.cpu_ms as f64;
        println!(
            "{n:>8} {:>12} {:>10.1} {:>8} {:>12} {:>10.1} {:>8} {:>12} {:>10.1} {:>8} {:>12} {:>10.0} {:>8}",
            cell(bw, 1),
            r.write_ms,
            ratio(bw, r.write_ms),
            cell(bc, 1),
            r.converge_ms,
            ratio(bc, r.converge_ms),
            cell(bt, 1),
            rt_,
            ratio(bt, rt_),
            cell(bcpu, 0),
            rcpu,
            ratio(bcpu, rcpu),
        );
    }
    println!("ratio = times as fast as the BEAM (above 1.00x is faster; for CPU: times as little)");
    println!();
    println!("bytes on the wire  idle sync interval (6 rounds)     per idle round          one changed key (2 rounds)   key synced (ms)");
    println!(
        "{:>8} {:>12} {:>10} {:>12} {:>10} {:>14} {:>12} {:>8} {:>8}",
        "keys", "BEAM", "Rust", "BEAM", "Rust", "BEAM", "Rust", "BEAM", "Rust"
    );
    for (n, r) in &rust {
        let b = beam_of(*n);
        let num =
            |f: fn(&Figures) -> u64| b.as_ref().map(|b| f(b).to_string()).unwrap_or("-".into());
        println!(
            "{n:>8} {:>12} {:>10} {:>12} {:>10} {:>14} {:>12} {:>8} {:>8.1}",
            num(|f| f.idle_bytes),
            r.idle_bytes,
            num(|f| f.idle_bytes / 6),
            r.idle_bytes / 6,
            num(|f| f.one_key_bytes),
            r.one_key_bytes,
            cell(b.as_ref().map(|b| b.one_key_ms), 1),
            r.one_key_ms,
        );
    }
    let spread: Vec<String> = rust
        .iter()
        .map(|(n, r)| format!("{n}: {}..{}", r.idle_min, r.idle_max))
        .chain(
            beam.iter()
                .map(|(n, b)| format!("BEAM {n}: {}..{}", b.idle_min, b.idle_max)),
        )
        .collect();
    println!(
        "idle interval min..max (Rust, then BEAM): {}",
        spread.join(", ")
    );
    anchor.shutdown();
}
