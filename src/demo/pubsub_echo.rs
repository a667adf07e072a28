//! The PubSub echo member that `examples/pubsub.rs` runs: a Phoenix.PubSub
//! member that subscribes to `"events"` and answers every message `M` it
//! gets there by broadcasting `{:echo, M}` on `"echo"`.

use crate::pubsub::{PubSub, PubSubOptions};
use crate::term;

/// Starts a node from `config`, joins `seeds`, runs the echo member of the
/// PubSub `pubsub` (`pool_size` adapter workers), prints `ready NODE`, one
/// line per event it echoes, and runs until Ctrl-C or SIGTERM.
pub async fn run(
    config: crate::NodeConfig,
    seeds: &[String],
    pubsub: &str,
    pool_size: usize,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let node = crate::Node::start(config).await?;
    for seed in seeds {
        let joined = node.join(seed).await?;
        println!("joined {}", joined.join(" "));
    }
    let ps = PubSub::start_with(&node, PubSubOptions::new(pubsub).pool_size(pool_size)).await?;
    let mut me = node.process();
    ps.subscribe(me.pid(), "events", None);
    println!("ready {}", node.name());
    let mut term_signal =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            m = me.receive() => {
                let Ok(event) = m else { break };
                println!("event {event}");
                ps.broadcast_from(me.pid(), "echo", crate::tup![term::atom("echo"), event]);
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term_signal.recv() => break,
        }
    }
    node.shutdown();
    Ok(())
}
