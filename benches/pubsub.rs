//! Phoenix.PubSub benchmark, side by side with real Phoenix.PubSub on this
//! machine. Measured, on three nodes of one PubSub:
//! - fanout: one broadcast from node A until all of S subscribers (default
//!   10,000; `BENCH_PUBSUB_SUBSCRIBERS`), spread over the three nodes, have it;
//! - rate: M broadcasts (default 100,000; `BENCH_PUBSUB_MESSAGES`) from A
//!   until one subscriber on node B has them all, as messages per second.
//!
//! The Rust nodes run in this process; the Elixir side runs
//! `erlang/bench/pubsub_bench.exs` (a node and two `:peer` nodes) when
//! `BEAM_PEER_HORDE_EBIN` lists Phoenix.PubSub's ebin directory (one clear
//! skip line otherwise). Each side runs `BENCH_PUBSUB_REPEATS` times (3);
//! the best and the median run are shown, with the ratio "times as fast as
//! Phoenix.PubSub". Run with `scripts/bench.sh`.

/// See the `mimalloc` feature in Cargo.toml: the program allocates as the
/// `beam-peer` binary does.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use beam_peer::pubsub::{PubSub, PG_SCOPE};
use beam_peer::services::pg;
use beam_peer::term;
use beam_peer::{Discovery, Node, NodeConfig};

mod common;
use common::{env_or, free_port, median};

const COOKIE: &str = "beam_peer_bench";

/// (fanout seconds, messages per second) for one Rust run.
async fn rust_run(subs: usize, msgs: usize, epmd: u16, round: usize) -> (f64, f64) {
    let start = |who: &str| {
        Node::start(
            NodeConfig::new(format!(
                "bench_ps_{who}{round}_{}@127.0.0.1",
                std::process::id()
            ))
            .cookie(COOKIE)
            .discovery(Discovery::Epmd { port: epmd }),
        )
    };
    let nodes = [
        start("a").await.expect("node a"),
        start("b").await.expect("node b"),
        start("c").await.expect("node c"),
    ];
    for n in &nodes[1..] {
        n.join(nodes[0].name()).await.expect("joins");
    }
    let name = format!("Elixir.BenchPubSub{round}");
    let mut pubsubs = Vec::new();
    for n in &nodes {
        pubsubs.push(PubSub::start(n, &name).await.expect("PubSub"));
    }
    let scope = pg::scope(&nodes[0], PG_SCOPE).expect("scope");
    let adapter = term::atom(&format!("{name}.Adapter"));
    while scope.get_members(&adapter).len() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Fanout: subscriber processes spread over the nodes; the last to get
    // the message notes the time.
    let got = Arc::new(AtomicUsize::new(0));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let share = subs / 3;
    let counts = [subs - 2 * share, share, share];
    for ((node, ps), count) in nodes.iter().zip(&pubsubs).zip(counts) {
        for _ in 0..count {
            let (got, done) = (got.clone(), done_tx.clone());
            let pid = node.spawn(move |mut p| async move {
                let _ = p.receive().await;
                if got.fetch_add(1, Ordering::AcqRel) + 1 == subs {
                    let _ = done.send(Instant::now());
                }
                beam_peer::ProcessExit::Normal
            });
            ps.subscribe(&pid, "fanout", None);
        }
    }
    let t0 = Instant::now();
    pubsubs[0].broadcast("fanout", term::atom("go"));
    let last = done_rx.recv().await.expect("all got it");
    let fanout = (last - t0).as_secs_f64();

    // Rate: one subscriber on b, m broadcasts from a.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let counter = nodes[1].spawn(move |mut p| async move {
        for _ in 0..msgs {
            if p.receive().await.is_err() {
                break;
            }
        }
        let _ = tx.send(Instant::now());
        beam_peer::ProcessExit::Normal
    });
    pubsubs[1].subscribe(&counter, "rate", None);
    let t0 = Instant::now();
    for i in 0..msgs {
        pubsubs[0].broadcast("rate", term::int(i as i64));
    }
    let t1 = rx.await.expect("all messages");
    let rate = msgs as f64 / (t1 - t0).as_secs_f64();
    for n in &nodes {
        n.shutdown();
    }
    (fanout, rate)
}

/// (fanout seconds, messages per second) for one Phoenix.PubSub run.
fn phoenix_run(subs: usize, msgs: usize, epmd: u16, ebins: &str) -> Option<(f64, f64)> {
    let mut cmd = common::elixir_script("pubsub_bench.exs", "bench_phx", COOKIE, ebins, epmd);
    cmd.args([subs.to_string(), msgs.to_string()]);
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |what: &str| {
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["pubsub", w, v] if *w == what => v.parse::<f64>().ok(),
                _ => None,
            }
        })
    };
    match (field("fanout"), field("rate")) {
        (Some(f), Some(r)) => Some((f, r)),
        _ => {
            println!(
                "Phoenix.PubSub run gave no figures: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
    }
}

fn main() {
    let subs: usize = env_or("BENCH_PUBSUB_SUBSCRIBERS", 10_000);
    let msgs: usize = env_or("BENCH_PUBSUB_MESSAGES", 100_000);
    let repeats: usize = env_or("BENCH_PUBSUB_REPEATS", 3);
    let epmd = free_port();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Owns the embedded EPMD for both the Rust nodes and the Elixir ones.
    let _epmd = rt
        .block_on(beam_peer::epmd::EmbeddedEpmd::bind(
            std::net::SocketAddr::from(([127, 0, 0, 1], epmd)),
        ))
        .expect("embedded EPMD");
    let ebins = std::env::var("BEAM_PEER_HORDE_EBIN")
        .ok()
        .filter(|s| !s.is_empty());
    if ebins.is_none() {
        println!("SKIPPED Phoenix.PubSub column: BEAM_PEER_HORDE_EBIN is not set (it must list phoenix_pubsub's ebin)");
    }
    let (mut rust, mut phx) = (Vec::new(), Vec::new());
    // Interleaved, so a slow spell of the shared machine hits both sides.
    for round in 0..repeats {
        rust.push(rt.block_on(rust_run(subs, msgs, epmd, round)));
        if let Some(e) = &ebins {
            phx.extend(phoenix_run(subs, msgs, epmd, e));
        }
    }
    let best = |v: &[(f64, f64)]| {
        (
            v.iter().map(|r| r.0).fold(f64::INFINITY, f64::min),
            v.iter().map(|r| r.1).fold(0.0, f64::max),
        )
    };
    let med = |v: &[(f64, f64)]| {
        (
            median(v.iter().map(|r| r.0).collect()),
            median(v.iter().map(|r| r.1).collect()),
        )
    };
    println!();
    println!(
        "PubSub on 3 nodes: one broadcast to {subs} subscribers (ms), and {msgs} broadcasts to one remote subscriber (msgs/s); {repeats} runs"
    );
    println!(
        "{:>8} | {:>12} {:>12} {:>7} | {:>12} {:>12} {:>7}",
        "", "Rust fanout", "Phx fanout", "ratio", "Rust rate", "Phx rate", "ratio"
    );
    for (label, pick) in [
        ("best", &best as &dyn Fn(&[(f64, f64)]) -> (f64, f64)),
        ("median", &med),
    ] {
        let (rf, rr) = pick(&rust);
        let (pf, pr, ratio_f, ratio_r) = if phx.is_empty() {
            (
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
            )
        } else {
            let (pf, pr) = pick(&phx);
            (
                format!("{:.2}", pf * 1e3),
                format!("{pr:.0}"),
                format!("{:.2}x", pf / rf),
                format!("{:.2}x", rr / pr),
            )
        };
        println!(
            "{label:>8} | {:>12.2} {pf:>12} {ratio_f:>7} | {rr:>12.0} {pr:>12} {ratio_r:>7}",
            rf * 1e3
        );
    }
}
