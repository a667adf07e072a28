//! A Horde.Registry member in Rust. Starts the registry `R` with
//! `members: :auto`, registers an `echo` gen_server (replies with the request
//! term) under the key `"rust-echo"`, prints every register/unregister event
//! it sees, and runs until killed. With `--join NODE` it joins that node's
//! cluster (Elixir members with Horde, or other Rust members); without, it is
//! one member of a Rust-only cluster others can join.
//!
//! cargo run --release --example horde_registry -- --name a@127.0.0.1 --cookie c
//! cargo run --release --example horde_registry -- --name b@127.0.0.1 --cookie c --join a@127.0.0.1 --key rust-echo-b
//!
//! From Elixir (with Horde.Registry `MyApp.Registry` started, `members: :auto`):
//!   GenServer.call({:via, Horde.Registry, {MyApp.Registry, "rust-echo"}}, :hello)

/// See the `mimalloc` feature in Cargo.toml: the program allocates as the
/// `beam-peer` binary does.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    name: String,
    #[arg(long)]
    cookie: Option<String>,
    /// A node of the cluster to join (repeatable).
    #[arg(long)]
    join: Vec<String>,
    #[arg(long, default_value = "Elixir.MyApp.Registry")]
    registry: String,
    /// The key the echo server registers under.
    #[arg(long, default_value = "rust-echo")]
    key: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    beam_peer::demo::init_logging();
    let args = Args::parse();
    let mut config = beam_peer::NodeConfig::new(args.name);
    if let Some(c) = args.cookie {
        config = config.cookie(c);
    }
    beam_peer::demo::run_registry_member(config, &args.join, &args.registry, &args.key)
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
