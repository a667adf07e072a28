//! `beam-peer`: run a Rust node in a BEAM cluster, or a whole demo cluster.
//!
//! - `beam-peer demo`: a real three-node cluster in one process on the embedded
//!   EPMD (no BEAM needed): pings, gen_server calls, messages, links, monitors
//!   and a node going down, each checked and reported.
//! - `beam-peer node --name N --cookie C [--join M]...`: a node with `echo` and
//!   `sink`, running until Ctrl-C.
//! - `beam-peer ping`, `beam-peer names`, `beam-peer epmd`: small tools.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use beam_peer::{term, Dest, Node, NodeConfig, NodeEvent};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "beam-peer",
    version,
    about = "A Rust peer node for Erlang/Elixir clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a cluster of Rust nodes on the embedded EPMD and exercise it.
    Demo {
        /// How many nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value = "beam_peer_demo")]
        cookie: String,
        /// Messages to stream to a remote `sink`.
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
    },
    /// Run one node with `echo` and `sink` registered, until Ctrl-C.
    Node {
        #[arg(long)]
        name: String,
        #[arg(long)]
        cookie: Option<String>,
        #[arg(long)]
        hidden: bool,
        /// Nodes to connect to at start.
        #[arg(long)]
        join: Vec<String>,
        /// Microseconds a connection's reader polls its socket after
        /// request/response traffic before it sleeps (0: never; the
        /// library's default, 200, when not given).
        #[arg(long)]
        busy_poll_us: Option<u64>,
        /// Microseconds a connection's reader lets a stream of small
        /// messages gather between reads (0: never; the library's default,
        /// 1000, when not given).
        #[arg(long)]
        read_coalesce_us: Option<u64>,
    },
    /// Run one Horde.Registry member (`members: :auto`) with an echo server
    /// registered under KEY; prints register/unregister events until Ctrl-C.
    Registry {
        #[arg(long)]
        name: String,
        #[arg(long)]
        cookie: Option<String>,
        /// A node whose cluster to join (repeatable).
        #[arg(long)]
        join: Vec<String>,
        #[arg(long, default_value = "Elixir.MyApp.Registry")]
        registry: String,
        #[arg(long, default_value = "rust-echo")]
        key: String,
    },
    /// Ping a node (prints pong or pang).
    Ping {
        node: String,
        #[arg(long, default_value = "beam_peer_ping@127.0.0.1")]
        name: String,
        #[arg(long)]
        cookie: Option<String>,
    },
    /// List the names registered in EPMD.
    Names {
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run the embedded EPMD alone.
    Epmd {
        #[arg(long)]
        port: Option<u16>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    beam_peer::demo::init_logging();
    match Cli::parse().command {
        Command::Demo {
            nodes,
            cookie,
            messages,
        } => demo(nodes.max(2), &cookie, messages).await,
        Command::Node {
            name,
            cookie,
            hidden,
            join,
            busy_poll_us,
            read_coalesce_us,
        } => {
            let mut config = NodeConfig::new(name).hidden(hidden);
            if let Some(us) = busy_poll_us {
                config = config.busy_poll(std::time::Duration::from_micros(us));
            }
            if let Some(us) = read_coalesce_us {
                config = config.read_coalesce(std::time::Duration::from_micros(us));
            }
            if let Some(c) = cookie {
                config = config.cookie(c);
            }
            let node = Node::start(config).await.context("starting the node")?;
            beam_peer::demo::start_echo_and_sink(&node)?;
            let mut events = node.subscribe();
            for peer in &join {
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
                    }
                }
            }
            node.shutdown();
            Ok(())
        }
        Command::Registry {
            name,
            cookie,
            join,
            registry,
            key,
        } => {
            let mut config = NodeConfig::new(name);
            if let Some(c) = cookie {
                config = config.cookie(c);
            }
            beam_peer::demo::run_registry_member(config, &join, &registry, &key)
                .await
                .map_err(|e| anyhow::anyhow!(e))
        }
        Command::Ping { node, name, cookie } => {
            let mut config = NodeConfig::new(name).hidden(true);
            if let Some(c) = cookie {
                config = config.cookie(c);
            }
            let me = Node::start(config).await?;
            let pong = me.ping(&node).await;
            println!("{}", if pong { "pong" } else { "pang" });
            me.shutdown();
            if !pong {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Names { port } => {
            let port = port.unwrap_or_else(beam_peer::epmd::epmd_port);
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            for (name, p) in beam_peer::epmd::names(addr).await? {
                println!("name {name} at port {p}");
            }
            Ok(())
        }
        Command::Epmd { port } => {
            let port = port.unwrap_or_else(beam_peer::epmd::epmd_port);
            let epmd = beam_peer::epmd::EmbeddedEpmd::bind(std::net::SocketAddr::from((
                [0, 0, 0, 0],
                port,
            )))
            .await
            .with_context(|| format!("binding EPMD on port {port}"))?;
            println!("epmd listening on {}", epmd.local_addr());
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
    }
}

fn step(label: &str, ok: bool, detail: String) -> anyhow::Result<()> {
    println!("[{}] {label}: {detail}", if ok { " ok " } else { "FAIL" });
    if ok {
        Ok(())
    } else {
        bail!("{label} failed")
    }
}

async fn demo(count: usize, cookie: &str, messages: usize) -> anyhow::Result<()> {
    let run = std::process::id();
    println!(
        "starting {count} Rust nodes on 127.0.0.1 (EPMD port {})",
        beam_peer::epmd::epmd_port()
    );
    let mut nodes = Vec::new();
    for i in 0..count {
        let name = format!("demo{i}_{run}@127.0.0.1");
        let node = Node::start(NodeConfig::new(&name).cookie(cookie))
            .await
            .with_context(|| format!("starting {name}"))?;
        beam_peer::demo::start_echo_and_sink(&node)?;
        nodes.push(node);
    }
    let names: Vec<String> = nodes.iter().map(|n| n.name().to_string()).collect();
    let epmd = std::net::SocketAddr::from(([127, 0, 0, 1], beam_peer::epmd::epmd_port()));
    let registered = beam_peer::epmd::names(epmd).await?;
    let all_registered = names.iter().all(|n| {
        let alive = n.split('@').next().unwrap_or_default();
        registered.iter().any(|(r, _)| r == alive)
    });
    step(
        "EPMD registration",
        all_registered,
        format!("{} names registered", registered.len()),
    )?;

    let first = nodes[0].clone();
    let mut events = first.subscribe();
    for peer in &names[1..] {
        let t = Instant::now();
        let pong = first.ping(peer).await;
        step(
            &format!("ping {peer}"),
            pong,
            format!("pong in {:?}", t.elapsed()),
        )?;
    }

    let mut me = first.process();
    let target = names[count - 1].clone();
    let request = beam_peer::tup![
        term::atom("hello"),
        term::binary("from Rust"),
        term::int(42)
    ];
    let t = Instant::now();
    let reply = me
        .call(
            Dest::Remote("echo".into(), target.clone()),
            request.clone(),
            Duration::from_secs(5),
        )
        .await;
    step(
        &format!("gen_server call to echo on {target}"),
        reply.as_ref() == Ok(&request),
        format!(
            "{:?} in {:?}",
            reply.as_ref().map(|t| t.to_string()),
            t.elapsed()
        ),
    )?;

    let t = Instant::now();
    let sink = Dest::Remote("sink".into(), names[1].clone());
    for i in 0..messages {
        me.send(
            sink.clone(),
            beam_peer::tup![term::atom("m"), term::int(i as i64)],
        );
    }
    me.send(
        sink,
        beam_peer::tup![term::atom("report"), term::Term::Pid(me.pid().clone())],
    );
    let count_msg = me
        .receive_match(
            |m| matches!(term::as_tuple(m), Some([t, _]) if term::is_atom(t, "count")),
            Some(Duration::from_secs(60)),
        )
        .await?;
    let got = count_msg
        .as_ref()
        .and_then(|m| term::as_tuple(m).and_then(|e| term::as_i64(&e[1])))
        .unwrap_or(-1);
    let secs = t.elapsed().as_secs_f64();
    step(
        &format!("{messages} messages to sink on {}", names[1]),
        got == messages as i64,
        format!("{got} counted, {:.0} msgs/s", messages as f64 / secs),
    )?;

    // A process on the last node, linked and monitored from the first.
    let last = nodes[count - 1].clone();
    let victim = last.spawn(|mut p| async move {
        let _ = p.receive().await;
        beam_peer::ProcessExit::Normal
    });
    let mut watcher = first.process();
    watcher.trap_exit(true);
    watcher.link(&victim);
    let mref = watcher.monitor(&victim);
    tokio::time::sleep(Duration::from_millis(100)).await;
    last.exit_process(&victim, term::atom("demo_kill"));
    let mut saw_exit = false;
    let mut saw_down = false;
    while !(saw_exit && saw_down) {
        match watcher.receive_timeout(Duration::from_secs(5)).await? {
            Some(m) => match term::as_tuple(&m) {
                Some([t, _, r]) if term::is_atom(t, "EXIT") => {
                    saw_exit = term::is_atom(r, "demo_kill")
                }
                Some([t, r, _, _, reason]) if term::is_atom(t, "DOWN") => {
                    saw_down = r == &term::Term::Reference(Box::new(mref.clone()))
                        && term::is_atom(reason, "demo_kill")
                }
                _ => {}
            },
            None => break,
        }
    }
    step(
        "link and monitor across nodes",
        saw_exit && saw_down,
        format!("EXIT seen: {saw_exit}, DOWN seen: {saw_down}"),
    )?;

    // Take the last node down; the first sees nodedown.
    last.shutdown();
    let t = Instant::now();
    let mut down = false;
    while t.elapsed() < Duration::from_secs(10) {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Ok(NodeEvent::Down { node, reason })) if node == target => {
                down = true;
                println!("       nodedown {node} ({reason})");
                break;
            }
            Ok(Ok(_)) => {}
            _ => break,
        }
    }
    step(
        &format!("nodedown of {target} seen"),
        down,
        format!("after {:?}", t.elapsed()),
    )?;
    for n in &nodes {
        n.shutdown();
    }
    println!("demo finished: all checks passed");
    Ok(())
}
