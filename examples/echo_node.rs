//! A Rust node with two registered processes, for interop tests and benchmarks:
//! `echo` (a gen_server replying with the request) and `sink` (counts `{m, _}`,
//! answers `{report, Pid}` with `{count, N}`). Runs until killed.
//!
//! cargo run --release --example echo_node -- --name rust@127.0.0.1 --cookie secret

/// See the `mimalloc` feature in Cargo.toml: the program allocates as the
/// `beam-peer` binary does.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    name: String,
    #[arg(long)]
    cookie: Option<String>,
    #[arg(long)]
    hidden: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    beam_peer::demo::init_logging();
    let args = Args::parse();
    let mut config = beam_peer::NodeConfig::new(args.name).hidden(args.hidden);
    if let Some(c) = args.cookie {
        config = config.cookie(c);
    }
    let node = beam_peer::Node::start(config)
        .await
        .context("starting the node")?;
    beam_peer::demo::start_echo_and_sink(&node).context("starting echo and sink")?;
    println!("ready {} port {}", node.name(), node.listen_port());
    tokio::signal::ctrl_c().await?;
    node.shutdown();
    Ok(())
}
