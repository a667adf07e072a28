//! Horde.Registry benchmark, side by side with real Horde on this machine.
//!
//! For N keys (default 1,000 and 10,000; `BENCH_REGISTRY_KEYS=1000,10000`):
//! one process on member A registers N keys one after the other; measured are
//! the time to register them all and the time until all N are visible on
//! member B (another node, over a real dist connection). The Rust pair runs in
//! this process; the Horde pair runs `erlang/bench/horde_registry_bench.exs`
//! on two Elixir nodes when `BEAM_PEER_HORDE_EBIN` lists Horde's ebin
//! directories (one clear skip line otherwise). Ratios are "times as fast as
//! Horde". Run with `scripts/bench.sh`.

/// See the `mimalloc` feature in Cargo.toml: the program allocates as the
/// `beam-peer` binary does.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use beam_peer::horde::registry::{self, RegistryOptions};
use beam_peer::term;
use beam_peer::{Discovery, Node, NodeConfig};

mod common;
use common::free_port;

const COOKIE: &str = "beam_peer_bench";

async fn rust_pair(n: usize, epmd: u16, round: usize) -> (f64, f64) {
    let start = |who: &str| {
        Node::start(
            NodeConfig::new(format!(
                "bench_{who}{round}_{}@127.0.0.1",
                std::process::id()
            ))
            .cookie(COOKIE)
            .discovery(Discovery::Epmd { port: epmd }),
        )
    };
    let a = start("a").await.expect("node a");
    let b = start("b").await.expect("node b");
    b.join(a.name()).await.expect("b joins a");
    let name = format!("Elixir.BenchReg{round}");
    let ra = registry::start(&a, RegistryOptions::new(&name)).expect("registry a");
    let rb = registry::start(&b, RegistryOptions::new(&name)).expect("registry b");
    while ra.members().await.map(|m| m.len()).unwrap_or(0) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let holder = a.process();
    let t0 = Instant::now();
    for i in 0..n {
        ra.register(
            term::binary(format!("key-{i}")),
            term::int(i as i64),
            holder.pid(),
        )
        .await
        .expect("registers");
    }
    let registered = t0.elapsed().as_secs_f64();
    while rb.count() < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let visible = t0.elapsed().as_secs_f64();
    a.shutdown();
    b.shutdown();
    (registered, visible)
}

/// `horde N registered visible` lines from the Elixir script.
fn horde(ns: &[usize], epmd: u16) -> Option<Vec<(usize, f64, f64)>> {
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
        "horde_registry_bench.exs",
        "bench_horde",
        COOKIE,
        &ebins,
        epmd,
    );
    cmd.args(ns.iter().map(|n| n.to_string()));
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<(usize, f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["horde", n, r, v] => Some((n.parse().ok()?, r.parse().ok()?, v.parse().ok()?)),
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

fn main() {
    let ns: Vec<usize> = std::env::var("BENCH_REGISTRY_KEYS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let epmd = free_port();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Owns the embedded EPMD for both the Rust nodes and the Elixir ones.
    let _epmd = rt
        .block_on(beam_peer::epmd::EmbeddedEpmd::bind(
            std::net::SocketAddr::from(([127, 0, 0, 1], epmd)),
        ))
        .expect("embedded EPMD");
    let rust: Vec<(usize, f64, f64)> = ns
        .iter()
        .enumerate()
        .map(|(round, &n)| {
            let (r, v) = rt.block_on(rust_pair(n, epmd, round));
            (n, r, v)
        })
        .collect();
    let horde = horde(&ns, epmd);
    println!();
    println!(
        "Horde.Registry: register N keys on member A, until all visible on member B (seconds)"
    );
    println!(
        "{:>7} | {:>12} {:>12} | {:>12} {:>12} | {:>9} {:>9} | {:>14}",
        "keys",
        "Rust reg",
        "Rust visible",
        "Horde reg",
        "Horde vis",
        "ratio reg",
        "ratio vis",
        "Rust us/key"
    );
    for (n, r, v) in &rust {
        let h = horde
            .as_ref()
            .and_then(|h| h.iter().find(|row| row.0 == *n));
        let (hr, hv, rr, rv) = match h {
            Some((_, hr, hv)) => (
                format!("{hr:.3}"),
                format!("{hv:.3}"),
                format!("{:.1}x", hr / r),
                format!("{:.1}x", hv / v),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "{n:>7} | {r:>12.3} {v:>12.3} | {hr:>12} {hv:>12} | {rr:>9} {rv:>9} | {:>14.1}",
            r / *n as f64 * 1e6
        );
    }
}
