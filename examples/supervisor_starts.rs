//! A fixed load of `start_child` calls through one `Horde.DynamicSupervisor`
//! member of a two-member Rust cluster in this process, for counting the
//! CPU work per start (run under `valgrind --tool=callgrind` twice with
//! different counts and divide the difference by the difference in starts:
//! start-up and the cluster forming cancel; `scripts/supervisor_cpu.sh`).
//!
//! As `benches/horde_supervisor.rs`' start line: one caller on member A
//! starts N children in a row, the ring places them on both members (half
//! proxied to B). Unlike the bench it then waits until both members' CRDTs
//! hold all N, so each start's sync work is counted too, and exits without
//! a teardown (which is not start work). Busy polling and
//! read coalescing are off, so nothing spins or sleeps on a clock that
//! valgrind slows down.
//!
//! ```text
//! supervisor_starts N [SYNC_MS]   # SYNC_MS default 300
//! ```

/// See the `mimalloc` feature in Cargo.toml: the program allocates as the
/// `beam-peer` binary does.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use beam_peer::horde::supervisor::{self, Supervisor};
use beam_peer::term::{self};
use beam_peer::{Discovery, Node, NodeConfig};

const COOKIE: &str = "supervisor_starts";
#[path = "../benches/common/supervisor_load.rs"]
mod supervisor_load;
use supervisor_load::{all_alive, spec, telemetry_count, worker, WORKER};

async fn global(s: &Supervisor) -> i64 {
    telemetry_count(
        s,
        "global_supervised_process_count",
        Duration::from_secs(60),
    )
    .await
}

async fn run(n: i64, sync_ms: u64) -> anyhow::Result<()> {
    let epmd = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let _epmd =
        beam_peer::epmd::EmbeddedEpmd::bind(std::net::SocketAddr::from(([127, 0, 0, 1], epmd)))
            .await
            .context("embedded EPMD")?;
    let start = |who: &str| {
        Node::start(
            NodeConfig::new(format!("sup_starts_{who}_{}@127.0.0.1", std::process::id()))
                .cookie(COOKIE)
                .discovery(Discovery::Epmd { port: epmd })
                .busy_poll(Duration::ZERO)
                .read_coalesce(Duration::ZERO),
        )
    };
    let a = start("a").await.context("node a")?;
    let b = start("b").await.context("node b")?;
    b.join(a.name()).await.context("b joins a")?;
    let opts = || {
        supervisor::SupervisorOptions::new("Elixir.SupStarts")
            .sync_interval(sync_ms)
            .worker(WORKER, worker)
    };
    let sa = supervisor::start(&a, opts())?;
    let sb = supervisor::start(&b, opts())?;
    all_alive(&[&sa, &sb]).await;
    let t0 = Instant::now();
    for i in 0..n {
        let r = sa
            .start_child(spec(i), Duration::from_secs(60))
            .await
            .map_err(|_| anyhow::anyhow!("member A stopped"))?;
        if !matches!(term::as_tuple(&r), Some([ok, _]) if term::is_atom(ok, "ok")) {
            bail!("start {i}: {r}");
        }
    }
    let started = t0.elapsed();
    for s in [&sa, &sb] {
        while global(s).await != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!(
        "{n} starts: {:.3} s, both members hold all after {:.3} s",
        started.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    // Out without a teardown: dropping every child's state is not start
    // work, and whether a member saw the other halt first (and handed
    // every child over) would vary from run to run.
    std::process::exit(0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: i64 = args
        .first()
        .context("usage: supervisor_starts N [SYNC_MS]")?
        .parse()?;
    let sync_ms: u64 = match args.get(1) {
        Some(s) => s.parse()?,
        None => 300,
    };
    tokio::runtime::Runtime::new()?.block_on(run(n, sync_ms))
}
