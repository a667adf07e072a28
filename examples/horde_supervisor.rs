//! A Horde.DynamicSupervisor member in Rust (`members: :auto`,
//! UniformDistribution) with a Rust worker for `Elixir.MyApp.Worker`: its
//! `start_link(arg)` starts a gen_server answering `:ping` with
//! `{:pong, arg, node}`. Prints `start ARG PID` / `stop ARG` for each child
//! that starts or stops here; with `--start K` starts K children (args
//! 1001..1000+K) once another member is listed. Runs until killed; on
//! Ctrl-C or SIGTERM it hands its children over to the other members first.
//!
//! cargo run --release --example horde_supervisor -- --name a@127.0.0.1 --cookie c
//! cargo run --release --example horde_supervisor -- --name b@127.0.0.1 --cookie c --join a@127.0.0.1 --start 100
//!
//! From Elixir (with `{Horde.DynamicSupervisor, name: MyApp.DistributedSupervisor,
//! strategy: :one_for_one, members: :auto}` started and `MyApp.Worker` defined):
//!   Horde.DynamicSupervisor.which_children(MyApp.DistributedSupervisor)

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
    /// The supervisor's name, as the Elixir module atom.
    #[arg(long, default_value = "Elixir.MyApp.DistributedSupervisor")]
    supervisor: String,
    /// Children to start (args 1001..1000+K) once another member is listed.
    #[arg(long, default_value_t = 0)]
    start: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    beam_peer::demo::init_logging();
    let args = Args::parse();
    let mut config = beam_peer::NodeConfig::new(args.name);
    if let Some(c) = args.cookie {
        config = config.cookie(c);
    }
    let mut opts = beam_peer::demo::supervisor_member::MemberOptions::new(args.supervisor);
    opts.start = args.start;
    beam_peer::demo::supervisor_member::run(config, &args.join, opts)
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
