//! `beam-peer`: run a Rust node in a BEAM cluster, or a whole demo cluster.
//!
//! - `beam-peer demo`: a real three-node cluster in one process on the embedded
//!   EPMD (no BEAM needed): pings, gen_server calls, messages, links, monitors
//!   and a node going down, each checked and reported.
//! - `beam-peer node [--name N] [--cookie C] [--join M]... [--topology FILE]`: a
//!   node with `echo` and `sink`, running until Ctrl-C; `--listen` and
//!   `--no-epmd` for fixed ports; `--topology` forms the cluster as libcluster does.
//! - `beam-peer registry`: a Horde.Registry member.
//! - `beam-peer pubsub`: a Phoenix.PubSub echo member.
//! - `beam-peer supervisor`: a Horde.DynamicSupervisor member with a Rust worker.
//! - `beam-peer ping`, `beam-peer names`, `beam-peer epmd`: small tools.
//! - `beam-peer status|ps|info|kill|send|trace|top --node NODE`, and `registry R` /
//!   `supervisor S` with `--node`: the operator's commands ([`ops`]), each
//!   joining the cluster as a hidden node.
//!
//! This file only parses the command line (`args` checks each value) and
//! hands over to the library; it never prints a node's own errors twice: a
//! failure the library returns is printed here once, and the library logs
//! only what no caller is told about.

mod args;
mod demo;
mod ops;
mod topology;

/// See the `mimalloc` feature in Cargo.toml: received messages are
/// allocated on one thread and freed on another.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use beam_peer::{Discovery, Node, NodeConfig, NodeEvent};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "beam-peer",
    version,
    about = "A Rust peer node for Erlang/Elixir clusters",
    after_help = "Logs go to stderr, filtered by RUST_LOG (default: warn), e.g. RUST_LOG=beam_peer=debug. \
                  Colour only when stderr is a terminal and NO_COLOR is unset."
)]
struct Cli {
    /// Runtime worker threads (1: one thread). Default: the
    /// BEAM_PEER_WORKER_THREADS environment variable, else one thread where
    /// this process may use at most 2 cores and one per core beyond (see
    /// `beam_peer::runtime`).
    #[arg(long, global = true, value_name = "N")]
    worker_threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

/// The options of every command that starts a node to join a cluster.
#[derive(Args)]
struct NodeOpts {
    /// This node's name, `alive@host` or a bare `alive` (this machine's host
    /// name is added). Default: a unique `beam_peer_..._<pid>_<random>@127.0.0.1`.
    #[arg(long, value_name = "NAME", value_parser = args::own_node_name)]
    name: Option<String>,
    /// The distribution cookie. Default: the contents of ~/.erlang.cookie,
    /// as erl reads it.
    #[arg(long, value_name = "COOKIE")]
    cookie: Option<String>,
    /// Distribution over TLS, as `erl -proto_dist inet_tls -ssl_dist_optfile
    /// FILE`: FILE is OTP's own optfile (`[{server, Opts}, {client, Opts}].`),
    /// the one the cluster's BEAM nodes use. Options beam_peer does not
    /// support are refused at start, by name.
    #[arg(long, value_name = "FILE")]
    ssl_dist_optfile: Option<std::path::PathBuf>,
}

impl NodeOpts {
    fn config(self, prefix: &str, host: Option<&str>) -> anyhow::Result<NodeConfig> {
        let name = self.name.unwrap_or_else(|| args::unique_name(prefix, host));
        let mut config = NodeConfig::new(name);
        if let Some(c) = self.cookie {
            config = config.cookie(c);
        }
        if let Some(f) = self.ssl_dist_optfile {
            // The error names the file and the option; no context needed.
            config = config.tls(beam_peer::TlsConfig::from_optfile(&f)?);
        }
        Ok(config)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Start a cluster of Rust nodes on the embedded EPMD and exercise it.
    Demo {
        /// How many nodes (at least 2).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..=64))]
        nodes: u16,
        /// The cookie the demo nodes share.
        #[arg(long, default_value = "beam_peer_demo")]
        cookie: String,
        /// Messages to stream to a remote `sink`.
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
    },
    /// Run one node with `echo` and `sink` registered, until Ctrl-C.
    Node {
        #[command(flatten)]
        node: NodeOpts,
        /// Hidden: not in peers' `nodes()`, no mesh with their other peers.
        #[arg(long)]
        hidden: bool,
        /// A node to connect to at start (repeatable).
        #[arg(long, value_name = "NODE", value_parser = args::full_node_name)]
        join: Vec<String>,
        /// libcluster topologies in TOML ([topologies.NAME] with `strategy`
        /// and a `config` table of libcluster's keys), run until Ctrl-C.
        #[arg(long, value_name = "FILE")]
        topology: Option<std::path::PathBuf>,
        /// The address and port the distribution listener binds to
        /// (default 0.0.0.0 and a free port).
        #[arg(long, value_name = "ADDR:PORT", value_parser = args::socket_addr)]
        listen: Option<SocketAddr>,
        /// Run without EPMD, as `erl -erl_epmd_port P -no_epmd` does: needs
        /// `--listen` with a port, and expects every peer on that same port
        /// unless `--peer-port` or `--peer` says otherwise.
        #[arg(long, requires = "listen")]
        no_epmd: bool,
        /// With `--no-epmd`: the port peers listen on (default: our own).
        #[arg(long, value_name = "PORT", requires = "no_epmd")]
        peer_port: Option<u16>,
        /// With `--no-epmd`: where one peer listens (repeatable).
        #[arg(long, value_name = "NODE=ADDR:PORT", value_parser = args::peer_addr, requires = "no_epmd")]
        peer: Vec<(String, SocketAddr)>,
        /// Microseconds a connection's reader polls its socket after
        /// request/response traffic before it sleeps (0: never). Not given:
        /// each connection decides from what it observes (the cores this
        /// process may use, and whether polling shortens its turns).
        #[arg(long, value_name = "US")]
        busy_poll_us: Option<u64>,
        /// Microseconds a connection's reader lets a stream of small
        /// messages gather between reads (0: never). Not given: each
        /// connection measures whether its peer's streams run faster with a
        /// 1 ms pause or without.
        #[arg(long, value_name = "US")]
        read_coalesce_us: Option<u64>,
        /// Also start N echo servers, registered as echo_1 .. echo_N (for
        /// benchmarks with many callers).
        #[arg(long, value_name = "N", default_value_t = 0)]
        echo_servers: usize,
    },
    /// Run one Horde.Registry member (`members: :auto`) with an echo server
    /// registered under KEY; prints register/unregister events until Ctrl-C.
    /// With --node: reads the registry R (or --registry) through the member
    /// on NODE instead (members and every key, pid, node and value) and exits.
    Registry {
        /// With --node: the registry to read (default: --registry).
        #[arg(value_name = "R", requires = "read_through")]
        inspect: Option<String>,
        /// Read the registry through the member on this node, as a hidden node.
        #[arg(long = "node", value_name = "NODE", value_parser = args::full_node_name)]
        read_through: Option<String>,
        /// With --node: JSON instead of tables.
        #[arg(long, requires = "read_through")]
        json: bool,
        #[command(flatten)]
        node: NodeOpts,
        /// A node whose cluster to join (repeatable).
        #[arg(long, value_name = "NODE", value_parser = args::full_node_name)]
        join: Vec<String>,
        /// The registry's name, as the BEAM spells the module.
        #[arg(long, default_value = "Elixir.MyApp.Registry")]
        registry: String,
        /// The key the echo server is registered under (a binary).
        #[arg(long, default_value = "rust-echo")]
        key: String,
    },
    /// Run one Phoenix.PubSub member that answers every message M on the
    /// topic "events" by broadcasting {:echo, M} on "echo"; prints each
    /// event until Ctrl-C or SIGTERM.
    Pubsub {
        #[command(flatten)]
        node: NodeOpts,
        /// A node whose cluster to join (repeatable).
        #[arg(long, value_name = "NODE", value_parser = args::full_node_name)]
        join: Vec<String>,
        /// The PubSub's name, as the BEAM spells the module.
        #[arg(long, default_value = "Elixir.MyApp.PubSub")]
        pubsub: String,
        /// Adapter workers per node (Phoenix's pool_size; use the Elixir nodes' setting).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        pool_size: u16,
    },
    /// Run one Horde.DynamicSupervisor member (`members: :auto`,
    /// UniformDistribution) with a Rust worker for Elixir.MyApp.Worker
    /// (`start_link(arg)`: a gen_server answering :ping with
    /// {:pong, arg, node}); prints `start ARG PID` / `stop ARG` for each
    /// child here; on Ctrl-C or SIGTERM hands its children over and leaves.
    /// With --node: reads the supervisor S (or --supervisor) through the
    /// member on NODE instead (members with their statuses, every child
    /// with its member, pid and start) and exits.
    Supervisor {
        /// With --node: the supervisor to read (default: --supervisor).
        #[arg(value_name = "S", requires = "read_through")]
        inspect: Option<String>,
        /// Read the supervisor through the member on this node, as a hidden node.
        #[arg(long = "node", value_name = "NODE", value_parser = args::full_node_name)]
        read_through: Option<String>,
        /// With --node: JSON instead of tables.
        #[arg(long, requires = "read_through")]
        json: bool,
        #[command(flatten)]
        node: NodeOpts,
        /// A node whose cluster to join (repeatable).
        #[arg(long, value_name = "NODE", value_parser = args::full_node_name)]
        join: Vec<String>,
        /// The supervisor's name, as the BEAM spells the module.
        #[arg(long, default_value = "Elixir.MyApp.DistributedSupervisor")]
        supervisor: String,
        /// Start K children (args 1001..1000+K) once another member is listed.
        #[arg(long, value_name = "K", default_value_t = 0)]
        start: usize,
        /// The CRDT's sync interval in ms (Horde's delta_crdt_options).
        #[arg(long, value_name = "MS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
        sync_interval: u64,
    },
    /// Every node of the cluster as each node sees it: kind, uptime,
    /// processes, memory, the connection matrix and the partitions.
    Status {
        #[command(flatten)]
        ops: ops::OpsOpts,
    },
    /// The processes of NODE (or of every node with --all).
    Ps {
        #[command(flatten)]
        ops: ops::OpsOpts,
        /// Every node of the cluster, not only NODE.
        #[arg(long)]
        all: bool,
        /// Busiest first by this measure.
        #[arg(long, value_enum, default_value = "reductions")]
        sort: ops::SortBy,
        /// At most N processes.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Only processes whose pid, name or function contains TEXT.
        #[arg(long, value_name = "TEXT")]
        filter: Option<String>,
    },
    /// One process in detail: PID_OR_NAME is <0.ID.SERIAL> or a registered name.
    Info {
        #[command(flatten)]
        ops: ops::OpsOpts,
        #[arg(value_name = "PID_OR_NAME")]
        target: String,
        /// The node the process is on (default: --node).
        #[arg(long, value_name = "NODE", value_parser = args::full_node_name)]
        on: Option<String>,
    },
    /// Sends an exit signal to a process (reason `kill` unless --reason).
    Kill {
        #[command(flatten)]
        ops: ops::OpsOpts,
        #[arg(value_name = "PID_OR_NAME")]
        target: String,
        /// The node the process is on (default: --node).
        #[arg(long, value_name = "NODE", value_parser = args::full_node_name)]
        on: Option<String>,
        /// The exit reason, a term in Erlang syntax.
        #[arg(long, value_name = "TERM", default_value = "kill")]
        reason: String,
    },
    /// Sends a message (a term in Erlang syntax) to a process.
    Send {
        #[command(flatten)]
        ops: ops::OpsOpts,
        #[arg(value_name = "PID_OR_NAME")]
        target: String,
        #[arg(value_name = "TERM")]
        message: String,
        /// The node the process is on (default: --node).
        #[arg(long, value_name = "NODE", value_parser = args::full_node_name)]
        on: Option<String>,
    },
    /// The messages a process sends and receives, a line each as they
    /// happen (time, direction, peer, message), until --for expires,
    /// Ctrl-C, or the process exits. Tracing is turned off on the way out.
    Trace {
        #[command(flatten)]
        ops: ops::OpsOpts,
        #[arg(value_name = "PID_OR_NAME")]
        target: String,
        /// The node the process is on (default: --node).
        #[arg(long, value_name = "NODE", value_parser = args::full_node_name)]
        on: Option<String>,
        /// Stop after this long: seconds (10, 0.5) or a duration (500ms, 1m).
        /// Default: until Ctrl-C.
        #[arg(long = "for", value_name = "SECONDS", value_parser = ops::trace::seconds)]
        for_: Option<Duration>,
    },
    /// A live view of the cluster: nodes with their health and the busiest
    /// processes across nodes, every second. Tab switches node, s the sort,
    /// k kills the selected process (after y), q quits.
    Top {
        #[command(flatten)]
        ops: ops::OpsOpts,
    },
    /// Ping a node: prints pong (exit 0) or pang (exit 1).
    Ping {
        /// The node to ping, `alive@host`.
        #[arg(value_name = "NODE", value_parser = args::full_node_name)]
        target: String,
        #[command(flatten)]
        node: NodeOpts,
        /// How long to wait for the answer (e.g. 500ms, 5s).
        #[arg(long, value_name = "DURATION", default_value = "7s", value_parser = args::duration)]
        timeout: Duration,
    },
    /// List the names registered in an EPMD.
    Names {
        /// The EPMD's host (name or address).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// The EPMD's port (default: ERL_EPMD_PORT, else 4369).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run the embedded EPMD alone, until Ctrl-C.
    Epmd {
        /// The port to listen on, on every address (default: ERL_EPMD_PORT, else 4369).
        #[arg(long)]
        port: Option<u16>,
    },
}

fn main() -> std::process::ExitCode {
    beam_peer::demo::init_logging();
    let cli = Cli::parse();
    let choice = beam_peer::runtime::choose(cli.worker_threads);
    tracing::debug!(%choice, "runtime");
    let result = beam_peer::runtime::build(choice)
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(run(cli.command)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with every cause, and no backtrace even under
            // RUST_BACKTRACE: these are the user's errors, not ours.
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo {
            nodes,
            cookie,
            messages,
        } => demo::run(usize::from(nodes), &cookie, messages).await,
        Command::Node {
            node,
            hidden,
            join,
            topology,
            listen,
            no_epmd,
            peer_port,
            peer,
            busy_poll_us,
            read_coalesce_us,
            echo_servers,
        } => {
            let mut config = node
                .config("beam_peer_node", Some("127.0.0.1"))?
                .hidden(hidden);
            if let Some(addr) = listen {
                config = config.listen(addr.ip(), addr.port());
            }
            if no_epmd {
                let port = listen.map(|a| a.port()).unwrap_or(0);
                if port == 0 {
                    anyhow::bail!("--no-epmd needs a fixed port: --listen ADDR:PORT with PORT > 0");
                }
                config = config.discovery(Discovery::Fixed {
                    peer_port: peer_port.unwrap_or(port),
                    peers: peer.into_iter().collect(),
                });
            }
            if let Some(us) = busy_poll_us {
                config = config.busy_poll(Duration::from_micros(us));
            }
            if let Some(us) = read_coalesce_us {
                config = config.read_coalesce(Duration::from_micros(us));
            }
            // Read before the node starts, so a bad file costs no EPMD entry.
            let topologies = match &topology {
                Some(file) => topology::read(file).map_err(anyhow::Error::msg)?,
                None => vec![],
            };
            run_node(config, &join, topologies, echo_servers).await
        }
        Command::Registry {
            inspect,
            read_through: Some(through),
            json,
            node,
            registry,
            ..
        } => {
            let opts = ops::OpsOpts::reading_through(through, node.cookie, json);
            with_session(&opts, |s| async move {
                ops::horde::registry(&s, &inspect.unwrap_or(registry))
                    .await
                    .map(|()| s)
            })
            .await
        }
        Command::Supervisor {
            inspect,
            read_through: Some(through),
            json,
            node,
            supervisor,
            ..
        } => {
            let opts = ops::OpsOpts::reading_through(through, node.cookie, json);
            with_session(&opts, |s| async move {
                ops::horde::supervisor(&s, &inspect.unwrap_or(supervisor))
                    .await
                    .map(|()| s)
            })
            .await
        }
        Command::Top { ops } => {
            with_session(&ops, |s| async move { ops::top::run(&s).await.map(|()| s) }).await
        }
        Command::Status { ops } => {
            with_session(&ops, |s| async move { ops::status(&s).await.map(|()| s) }).await
        }
        Command::Ps {
            ops,
            all,
            sort,
            limit,
            filter,
        } => {
            let o = ops::PsOpts {
                all,
                sort,
                limit,
                filter,
            };
            with_session(&ops, |s| async move { ops::ps(&s, &o).await.map(|()| s) }).await
        }
        Command::Info { ops, target, on } => {
            with_session(&ops, |s| async move {
                ops::info(&s, &target, on.as_deref()).await.map(|()| s)
            })
            .await
        }
        Command::Kill {
            ops,
            target,
            on,
            reason,
        } => {
            with_session(&ops, |s| async move {
                ops::kill(&s, &target, on.as_deref(), &reason)
                    .await
                    .map(|()| s)
            })
            .await
        }
        Command::Trace {
            ops,
            target,
            on,
            for_,
        } => {
            with_session(&ops, |s| async move {
                ops::trace::trace(&s, &target, on.as_deref(), for_)
                    .await
                    .map(|()| s)
            })
            .await
        }
        Command::Send {
            ops,
            target,
            message,
            on,
        } => {
            // A malformed term is refused before joining anything.
            beam_peer::term::parse::parse(&message)
                .map_err(|e| anyhow::anyhow!("the message {message:?}: {e}"))?;
            with_session(&ops, |s| async move {
                ops::send(&s, &target, on.as_deref(), &message)
                    .await
                    .map(|()| s)
            })
            .await
        }
        Command::Registry {
            node,
            join,
            registry,
            key,
            ..
        } => {
            let config = node.config("beam_peer_registry", Some("127.0.0.1"))?;
            beam_peer::demo::run_registry_member(config, &join, &registry, &key)
                .await
                .map_err(|e| anyhow::anyhow!(e))
        }
        Command::Pubsub {
            node,
            join,
            pubsub,
            pool_size,
        } => {
            let config = node.config("beam_peer_pubsub", Some("127.0.0.1"))?;
            beam_peer::demo::pubsub_echo::run(config, &join, &pubsub, usize::from(pool_size))
                .await
                .map_err(|e| anyhow::anyhow!(e))
        }
        Command::Supervisor {
            node,
            join,
            supervisor,
            start,
            sync_interval,
            ..
        } => {
            use beam_peer::demo::supervisor_member::{self, MemberOptions};
            let config = node.config("beam_peer_supervisor", Some("127.0.0.1"))?;
            let mut opts = MemberOptions::new(supervisor);
            opts.start = start;
            opts.sync_interval = sync_interval;
            supervisor_member::run(config, &join, opts)
                .await
                .map_err(|e| anyhow::anyhow!(e))
        }
        Command::Ping {
            target,
            node,
            timeout,
        } => {
            let mut config = node
                .config("beam_peer_ping", args::host_like(&target))?
                .hidden(true);
            config.connect_timeout = timeout;
            let me = Node::start(config)
                .await
                .context("starting the pinging node")?;
            let pong = tokio::time::timeout(timeout, me.ping(&target))
                .await
                .unwrap_or(false);
            println!("{}", if pong { "pong" } else { "pang" });
            me.shutdown();
            if !pong {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Names { host, port } => {
            let port = port.unwrap_or_else(beam_peer::epmd::epmd_port);
            // IPv4 first: EPMD (and our embedded one) listens on IPv4 only
            // unless told otherwise, while `localhost` often resolves to ::1 first.
            let addr = tokio::net::lookup_host((host.as_str(), port))
                .await
                .ok()
                .and_then(|a| a.min_by_key(|a| a.is_ipv6()))
                .with_context(|| format!("cannot resolve the host {host:?}"))?;
            let names = beam_peer::epmd::names(addr)
                .await
                .with_context(|| format!("asking the EPMD at {addr}"))?;
            for (name, p) in names {
                println!("name {name} at port {p}");
            }
            Ok(())
        }
        Command::Epmd { port } => {
            let port = port.unwrap_or_else(beam_peer::epmd::epmd_port);
            let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            let epmd = match beam_peer::epmd::EmbeddedEpmd::bind(addr).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    anyhow::bail!("{}", who_holds(port).await)
                }
                Err(e) => return Err(e).with_context(|| format!("binding EPMD on port {port}")),
            };
            println!("epmd listening on {}", epmd.local_addr());
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
    }
}

/// Joins through `opts.node`, runs `f`, and leaves (the hidden node shuts
/// down whether `f` succeeded or not).
async fn with_session<F, Fut>(opts: &ops::OpsOpts, f: F) -> anyhow::Result<()>
where
    F: FnOnce(ops::Session) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ops::Session>>,
{
    let s = ops::Session::join(opts).await?;
    let node = s.node.clone();
    let r = f(s).await;
    node.shutdown();
    r.map(|s| s.finish())
}

/// `beam-peer node`: starts the node, connects to each `join` (a failure is
/// printed once, here), prints `ready` and node events until Ctrl-C.
async fn run_node(
    config: NodeConfig,
    join: &[String],
    topologies: Vec<beam_peer::cluster::Topology>,
    echo_servers: usize,
) -> anyhow::Result<()> {
    use beam_peer::cluster::{Cluster, ClusterEventKind};
    let node = Node::start(config).await.context("starting the node")?;
    beam_peer::demo::start_echo_and_sink(&node)?;
    beam_peer::demo::start_echoes(&node, echo_servers)?;
    let mut events = node.subscribe();
    let cluster = Cluster::start(&node, topologies)
        .await
        .context("starting the topologies")?;
    let mut cluster_events = cluster.subscribe();
    for peer in join {
        match node.connect(peer).await {
            Ok(()) => println!("connected to {peer}"),
            Err(e) => eprintln!("cannot connect to {peer}: {e}"),
        }
    }
    println!("ready {} port {}", node.name(), node.listen_port());
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            ev = events.recv() => match ev {
                Ok(NodeEvent::Up { node, .. }) => println!("nodeup {node}"),
                Ok(NodeEvent::Down { node, reason }) => println!("nodedown {node} ({reason})"),
                Err(_) => {}
            },
            Ok(ev) = cluster_events.recv() => match ev.kind {
                ClusterEventKind::Connected { node } => println!("cluster {} connected {node}", ev.topology),
                ClusterEventKind::Disconnected { node } => println!("cluster {} disconnected {node}", ev.topology),
                _ => {}
            }
        }
    }
    drop(cluster);
    node.shutdown();
    Ok(())
}

/// Says what holds `port` when the embedded EPMD cannot bind it: an EPMD
/// (ours or the BEAM's) answers there, or some other program holds it.
async fn who_holds(port: u16) -> String {
    let probe = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    match tokio::time::timeout(Duration::from_secs(2), beam_peer::epmd::names(probe)).await {
        Ok(Ok(names)) => format!(
            "port {port} is taken: an EPMD already answers there (maybe the embedded EPMD \
             of one of our nodes, or the BEAM's epmd) with {} registered name(s); \
             `beam-peer names --port {port}` lists them. Nodes can use it as it is.",
            names.len()
        ),
        _ => format!(
            "port {port} is in use by another program that does not answer as an EPMD; \
             choose another with --port or ERL_EPMD_PORT"
        ),
    }
}

/// The error and its causes on one line, leaving out a cause whose text the
/// line already holds (library errors often print their source too).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}
