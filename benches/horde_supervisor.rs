//! Horde.DynamicSupervisor benchmark, side by side with real Horde on this
//! machine, two members each (the Rust pair in this process, the Horde pair
//! an Elixir node and a `:peer` of it, `erlang/bench/horde_supervisor_bench.exs`,
//! when `BEAM_PEER_HORDE_EBIN` lists Horde's ebin directories; one clear
//! skip line otherwise). Both sides use the same sync interval
//! (`BENCH_SUP_SYNC_MS`, default Horde's 300) and a trivial gen_server child.
//!
//! - start: one process on member A calls `start_child` N times in a row
//!   (`BENCH_SUP_STARTS`, default 1000,10000); children land on both
//!   members by the ring, half of them proxied. Seconds for all N. Then
//!   again with member B's node on a thread and runtime of its own, so
//!   that every exchange between the members crosses threads, as between
//!   two processes (Horde's pair is two OS processes). The bytes the Rust
//!   members exchanged during each run are printed: a run shorter than the
//!   sync interval may or may not contain a CRDT sync round, and one that
//!   does also ships the new children to the other member, which about
//!   doubles its time (10,000 starts at 300 ms, measured: 0.24-0.29 s
//!   without, 0.45-0.59 s with).
//! - failover: children are started until member B holds K
//!   (`BENCH_SUP_FAILOVERS`, default 200,2000), then B vanishes (Horde:
//!   `kill -9` of its OS process; Rust: `Node::halt`, its sockets closed at
//!   once as the kernel closes a killed process's), and the time until A
//!   runs every child is measured. Both wait for A's CRDT to hold every
//!   child first (a child B started after its last sync dies with it).
//!   Horde's members are listed statically for this case: with
//!   `members: :auto` it never restarted B's children (see the script).
//! - idle: with N children (`BENCH_SUP_IDLE`, default 10000) settled, the
//!   bytes on the wire between the two members, both ways, per idle sync
//!   interval (averaged over `BENCH_SUP_IDLE_INTERVALS`, default 5).
//!
//! The Rust pair shares one process and the runtime `beam-peer` would run
//! on here ([`beam_peer::runtime`]; `BEAM_PEER_WORKER_THREADS` sets it):
//! on a 2-core machine one thread, so a proxied start's round trip between
//! the members costs no thread wake-up (with tokio's default of a worker
//! per core, 10,000 starts took 0.59-0.67 s here against 0.28-0.29 s).
//!
//! Ratios are "times as fast as Horde" (and Horde's bytes over ours). Run
//! with `scripts/bench.sh`.

/// See the `mimalloc` feature in Cargo.toml: the program allocates as the
/// `beam-peer` binary does.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use beam_peer::horde::supervisor::{self, Supervisor};
use beam_peer::term::{self};
use beam_peer::{Discovery, Node, NodeConfig};

mod common;
use common::supervisor_load::{all_alive, spec, telemetry_count, worker, WORKER};
use common::{env_or, free_port};

const COOKIE: &str = "beam_peer_bench";

async fn local(s: &Supervisor) -> i64 {
    telemetry_count(s, "local_supervised_process_count", Duration::from_secs(30)).await
}

async fn global(s: &Supervisor) -> i64 {
    telemetry_count(
        s,
        "global_supervised_process_count",
        Duration::from_secs(30),
    )
    .await
}

/// Member B's node on a thread and runtime of its own (see [`pair`]),
/// stopped when this is dropped.
struct Apart(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Apart {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

/// Two fresh members, A and B, on two fresh nodes. With `apart`, B's node
/// runs on a thread and runtime of its own (as a second process would have
/// its own), so every exchange between the members crosses threads; else
/// both share the bench's runtime.
async fn pair(
    epmd: u16,
    tag: &str,
    sync_ms: u64,
    apart: bool,
) -> (Node, Node, Supervisor, Supervisor, Option<Apart>) {
    let config = move |who: &str| {
        NodeConfig::new(format!(
            "bench_sup_{tag}_{who}_{}@127.0.0.1",
            std::process::id()
        ))
        .cookie(COOKIE)
        .discovery(Discovery::Epmd { port: epmd })
    };
    let name = format!("Elixir.BenchSup_{tag}");
    let opts = move |name: &str| {
        supervisor::SupervisorOptions::new(name)
            .sync_interval(sync_ms)
            .worker(WORKER, worker)
    };
    let a = Node::start(config("a")).await.expect("node a");
    let sa = supervisor::start(&a, opts(&name)).expect("member a");
    let member_b = {
        let (b_config, a_name, name) = (config("b"), a.name().to_string(), name.clone());
        async move {
            let b = Node::start(b_config).await.expect("node b");
            b.join(&a_name).await.expect("b joins a");
            let sb = supervisor::start(&b, opts(&name)).expect("member b");
            (b, sb)
        }
    };
    let (b, sb, guard) = if apart {
        // B's connection tasks must be spawned on B's runtime: B joins A
        // from there.
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = beam_peer::runtime::build(beam_peer::runtime::choose(None)).expect("runtime");
            rt.block_on(async move {
                let _ = ready_tx.send(member_b.await);
                let _ = stopped.await;
            });
        });
        let (b, sb) = ready.await.expect("member b on its thread");
        (b, sb, Some(Apart(Some(stop))))
    } else {
        let (b, sb) = member_b.await;
        (b, sb, None)
    };
    all_alive(&[&sa, &sb]).await;
    (a, b, sa, sb, guard)
}

/// Seconds for `n` starts through member A, and the bytes A and B
/// exchanged meanwhile: the proxied starts, plus whatever CRDT sync rounds
/// fell inside the run (each ships the children the other member has not
/// seen yet).
async fn rust_start(epmd: u16, n: usize, sync_ms: u64, apart: bool) -> (f64, u64) {
    let tag = format!("start{n}{}", if apart { "apart" } else { "" });
    let (a, b, sa, _sb, _apart) = pair(epmd, &tag, sync_ms, apart).await;
    let t0 = Instant::now();
    for i in 0..n as i64 {
        let r = sa
            .start_child(spec(i), Duration::from_secs(30))
            .await
            .expect("answered");
        assert!(
            matches!(term::as_tuple(&r), Some([ok, _]) if term::is_atom(ok, "ok")),
            "{r}"
        );
    }
    let t = t0.elapsed().as_secs_f64();
    let bytes = a
        .connection_stats()
        .into_iter()
        .filter(|(peer, _)| peer.as_str() == b.name())
        .map(|(_, s)| s.bytes_in + s.bytes_out)
        .sum();
    a.halt();
    b.halt();
    (t, bytes)
}

async fn rust_failover(epmd: u16, k: i64, sync_ms: u64) -> f64 {
    let (a, b, sa, sb, _) = pair(epmd, &format!("failover{k}"), sync_ms, false).await;
    let mut total = 0;
    while local(&sb).await < k {
        total += 1;
        sa.start_child(spec(total), Duration::from_secs(30))
            .await
            .expect("answered");
    }
    while global(&sa).await != total {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let t0 = Instant::now();
    b.halt();
    drop(sb);
    while local(&sa).await != total {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let t = t0.elapsed().as_secs_f64();
    a.halt();
    t
}

async fn rust_idle(epmd: u16, n: usize, intervals: u32, sync_ms: u64) -> u64 {
    let (a, b, sa, sb, _) = pair(epmd, &format!("idle{n}"), sync_ms, false).await;
    for i in 0..n as i64 {
        sa.start_child(spec(i), Duration::from_secs(30))
            .await
            .expect("answered");
    }
    while global(&sb).await != n as i64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(sync_ms * 4)).await;
    let bytes = || {
        a.connection_stats()
            .into_iter()
            .map(|(_, s)| s.bytes_in + s.bytes_out)
            .sum::<u64>()
    };
    let b0 = bytes();
    tokio::time::sleep(Duration::from_millis(sync_ms * u64::from(intervals))).await;
    let per = (bytes() - b0) / u64::from(intervals);
    a.halt();
    b.halt();
    per
}

/// `(kind, n, value)` lines from the Elixir script.
fn horde(
    epmd: u16,
    starts: &str,
    failovers: &str,
    idle: &str,
    intervals: u32,
    sync_ms: u64,
) -> Option<Vec<(String, i64, f64)>> {
    let ebins = std::env::var("BEAM_PEER_HORDE_EBIN")
        .ok()
        .filter(|s| !s.is_empty());
    let Some(ebins) = ebins else {
        println!(
            "SKIPPED Horde column: BEAM_PEER_HORDE_EBIN is not set (Horde's ebin directories)"
        );
        return None;
    };
    let mut cmd = common::elixir_script(
        "horde_supervisor_bench.exs",
        "bench_horde_sup",
        COOKIE,
        &ebins,
        epmd,
    );
    cmd.args([
        starts.to_string(),
        failovers.to_string(),
        idle.to_string(),
        intervals.to_string(),
        sync_ms.to_string(),
    ]);
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<(String, i64, f64)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [kind, n, v] => Some((kind.to_string(), n.parse().ok()?, v.parse().ok()?)),
                _ => None,
            }
        })
        .collect();
    if rows.is_empty() {
        println!(
            "Horde run gave no figures: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(rows)
}

fn counts(var: &str, default: &str) -> (String, Vec<i64>) {
    let s = std::env::var(var).unwrap_or_else(|_| default.into());
    let v = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
    (s, v)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let (starts_s, starts) = counts("BENCH_SUP_STARTS", "1000,10000");
    let (failovers_s, failovers) = counts("BENCH_SUP_FAILOVERS", "200,2000");
    let (idle_s, idle) = counts("BENCH_SUP_IDLE", "10000");
    let intervals: u32 = env_or("BENCH_SUP_IDLE_INTERVALS", 5);
    let sync_ms: u64 = env_or("BENCH_SUP_SYNC_MS", 300);
    let epmd = free_port();
    // The runtime `beam-peer` chooses on this machine (`beam_peer::runtime`:
    // one thread up to 2 cores, one per core beyond), both members on it.
    let choice = beam_peer::runtime::choose(None);
    let rt = beam_peer::runtime::build(choice).expect("runtime");
    // The EPMD on a thread of its own, as a system's epmd is a process of
    // its own: a one-thread runtime serves nothing between `block_on`s, and
    // Horde's nodes register while the Rust pair is idle.
    let (epmd_ready, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = beam_peer::runtime::build(beam_peer::runtime::RuntimeChoice {
            cores: 1,
            worker_threads: 1,
            overridden: true,
        })
        .expect("EPMD runtime");
        rt.block_on(async {
            let bound = beam_peer::epmd::EmbeddedEpmd::bind(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                epmd,
            )))
            .await;
            let ok = bound.is_ok();
            let _ = epmd_ready.send(ok);
            if let Ok(_epmd) = bound {
                std::future::pending::<()>().await;
            }
        });
    });
    assert!(ready.recv().unwrap_or(false), "embedded EPMD");
    println!("load average before: {}", load());
    let mut rust: Vec<(String, i64, f64)> = Vec::new();
    let mut start_bytes: Vec<(&str, i64, u64)> = Vec::new();
    for (kind, apart) in [("start", false), ("start apart", true)] {
        for &n in &starts {
            let (t, bytes) = rt.block_on(rust_start(epmd, n as usize, sync_ms, apart));
            rust.push((kind.into(), n, t));
            start_bytes.push((kind, n, bytes));
        }
    }
    for &k in &failovers {
        rust.push((
            "failover".into(),
            k,
            rt.block_on(rust_failover(epmd, k, sync_ms)),
        ));
    }
    for &n in &idle {
        let b = rt.block_on(rust_idle(epmd, n as usize, intervals, sync_ms));
        rust.push(("idle".into(), n, b as f64));
    }
    let horde = horde(epmd, &starts_s, &failovers_s, &idle_s, intervals, sync_ms);
    println!("load average after: {}", load());
    println!();
    println!("Horde.DynamicSupervisor, two members, sync interval {sync_ms} ms");
    println!("Rust pair: one process, {choice}");
    println!(
        "{:<36} | {:>12} | {:>12} | {:>10}",
        "case", "Rust", "Horde", "ratio"
    );
    for (kind, n, v) in &rust {
        // Horde's members are two OS processes either way.
        let horde_kind = if kind == "start apart" { "start" } else { kind };
        let h = horde
            .as_ref()
            .and_then(|h| h.iter().find(|r| r.0 == horde_kind && r.1 == *n))
            .map(|r| r.2);
        let (label, rv, hv) = match kind.as_str() {
            "start" => (
                format!("start {n} children (s)"),
                format!("{v:.3}"),
                h.map(|h| format!("{h:.3}")),
            ),
            "start apart" => (
                format!("start {n}, B on its own thread (s)"),
                format!("{v:.3}"),
                h.map(|h| format!("{h:.3}")),
            ),
            "failover" => (
                format!("failover of {n} children (s)"),
                format!("{v:.3}"),
                h.map(|h| format!("{h:.3}")),
            ),
            _ => (
                format!("idle bytes/interval, {n} children"),
                format!("{v:.0}"),
                h.map(|h| format!("{h:.0}")),
            ),
        };
        let ratio = h
            .filter(|_| *v > 0.0)
            .map(|h| format!("{:.1}x", h / v))
            .unwrap_or_else(|| "-".into());
        println!(
            "{label:<36} | {rv:>12} | {:>12} | {ratio:>10}",
            hv.unwrap_or_else(|| "-".into())
        );
    }
    // A start run shorter than the sync interval may or may not contain a
    // sync round; one that does also ships the children to the other
    // member, and takes about twice as long. Said, so a slow line is read
    // for what it is.
    println!("bytes between the Rust members during each start run (10,000 starts: ~1.0-1.3 MB without a sync round inside the run, 3.5-4.8 MB with one):");
    for (kind, n, bytes) in &start_bytes {
        println!("  {kind} {n}: {:.2} MB", *bytes as f64 / 1e6);
    }
}
