//! A fixed load of small messages between two Rust nodes in two OS processes,
//! for counting the CPU work of each side per message (run both under
//! `valgrind --tool=callgrind`, twice with different counts, and divide the
//! difference by the difference in messages: startup and handshake cancel).
//!
//! The stream is the dist bench's (`benches/dist.rs`): `{m, I}` sent by
//! name to `sink` on the target, then `{report, Pid}` answered by
//! `{count, N}`. Busy polling and read coalescing are off on both sides, so
//! neither spins nor sleeps on a clock that valgrind slows down.
//!
//! ```text
//! dist_load target PORT              # runs until its peer disconnects
//! dist_load send PORT TARGET_PORT N  # N messages after a warm-up, then exits
//! ```

/// See the `mimalloc` feature in Cargo.toml: received messages are
/// allocated on one thread and freed on another.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use beam_peer::term::{self, Term};
use beam_peer::{Dest, Discovery, Node, NodeConfig, NodeEvent};

const COOKIE: &str = "dist_load";
const TARGET: &str = "dist_load_target@127.0.0.1";
const SENDER: &str = "dist_load_sender@127.0.0.1";

fn config(name: &str, port: u16, peer: (&str, u16)) -> NodeConfig {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    NodeConfig::new(name)
        .cookie(COOKIE)
        .listen(localhost, port)
        .discovery(Discovery::Fixed {
            peer_port: peer.1,
            peers: HashMap::from([(peer.0.to_string(), SocketAddr::new(localhost, peer.1))]),
        })
        .busy_poll(Duration::ZERO)
        .read_coalesce(Duration::ZERO)
}

/// Streams `n` messages to `sink` and waits for its count.
async fn stream(node: &Node, p: &mut beam_peer::Process, n: usize) -> anyhow::Result<()> {
    let sink = Dest::Remote("sink".into(), TARGET.into());
    for i in 0..n {
        if i % 1024 == 0 {
            while node.send_queue_bytes(TARGET).unwrap_or(0) > 8 << 20 {
                tokio::task::yield_now().await;
            }
        }
        p.send_to(&sink, beam_peer::tup![term::atom("m"), term::int(i as i64)]);
    }
    p.send(
        sink,
        beam_peer::tup![term::atom("report"), Term::Pid(p.pid().clone())],
    );
    let count_of =
        |m: &Term| matches!(term::as_tuple(m), Some([c, _]) if term::is_atom(c, "count"));
    let got = p
        .receive_match(count_of, Some(Duration::from_secs(600)))
        .await?
        .context("no count")?;
    let counted = term::as_tuple(&got).and_then(|e| term::as_i64(&e[1]));
    if counted != Some(n as i64) {
        bail!("sink counted {counted:?} of {n}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    beam_peer::demo::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> anyhow::Result<&str> {
        args.get(i)
            .map(String::as_str)
            .context("usage: dist_load target PORT | send PORT TARGET_PORT N")
    };
    match arg(0)? {
        "target" => {
            let port: u16 = arg(1)?.parse()?;
            let node = Node::start(config(TARGET, port, (SENDER, 0))).await?;
            beam_peer::demo::start_echo_and_sink(&node)?;
            let mut events = node.subscribe();
            println!("ready");
            loop {
                if let Ok(NodeEvent::Down { .. }) = events.recv().await {
                    break;
                }
            }
            node.shutdown();
        }
        "send" => {
            let port: u16 = arg(1)?.parse()?;
            let target_port: u16 = arg(2)?.parse()?;
            let n: usize = arg(3)?.parse()?;
            let node = Node::start(config(SENDER, port, (TARGET, target_port))).await?;
            node.connect(TARGET).await?;
            let mut p = node.process();
            stream(&node, &mut p, 2_000).await?;
            let start = Instant::now();
            stream(&node, &mut p, n).await?;
            println!("{n} messages in {:?}", start.elapsed());
            node.disconnect(TARGET);
            node.shutdown();
        }
        other => bail!("unknown role {other}"),
    }
    Ok(())
}
