//! A Phoenix.PubSub member in Rust: subscribes to `"events"` and, for every
//! message M it receives there, broadcasts `{:echo, M}` on `"echo"`, so
//! Elixir subscribers of `"echo"` hear it. Runs until killed.
//!
//! cargo run --release --example pubsub -- --name rust@127.0.0.1 --cookie c --join app@127.0.0.1
//!
//! From Elixir (with `{Phoenix.PubSub, name: MyApp.PubSub}` started):
//!   Phoenix.PubSub.subscribe(MyApp.PubSub, "echo")
//!   Phoenix.PubSub.broadcast(MyApp.PubSub, "events", :hello)
//!   flush()  # {:echo, :hello}

/// See the `mimalloc` feature in Cargo.toml: the program allocates as the
/// `beam-peer` binary does.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// This node's name, `name@host`.
    #[arg(long)]
    name: String,
    /// The cookie (default: ~/.erlang.cookie).
    #[arg(long)]
    cookie: Option<String>,
    /// A node of the cluster to join (repeatable).
    #[arg(long)]
    join: Vec<String>,
    /// The PubSub's name, as the Elixir module atom.
    #[arg(long, default_value = "Elixir.MyApp.PubSub")]
    pubsub: String,
    /// Phoenix's pool_size; use the Elixir nodes' setting.
    #[arg(long, default_value_t = 1)]
    pool_size: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    beam_peer::demo::init_logging();
    let args = Args::parse();
    let mut config = beam_peer::NodeConfig::new(args.name);
    if let Some(c) = args.cookie {
        config = config.cookie(c);
    }
    beam_peer::demo::pubsub_echo::run(config, &args.join, &args.pubsub, args.pool_size)
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
