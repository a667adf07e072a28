//! The `Horde.DynamicSupervisor` member that `examples/horde_supervisor.rs`
//! and `beam-peer supervisor` run: `members: :auto`, `UniformDistribution`,
//! a Rust worker for `Elixir.MyApp.Worker` whose `start_link(arg)` starts a
//! gen_server answering `:ping` with `{:pong, arg, node}`. It also counts:
//! `:bump` adds one and answers the new count, `:count` answers it; the
//! count is the child's hand-off state ([`supervisor::ChildState`]), saved
//! on every bump, so a child that moves (graceful hand-over, or failover
//! after a `kill -9` once the save was synced) counts on from where it was.
//!
//! It prints one line per event, for people and for tests that read them:
//! `ready NODE`, `start ARG PID` when a child starts on this member (first
//! start or restart), `stop ARG` when one stops here, and with `start` set
//! `started K` once it has started its K children (after it saw another member alive). On Ctrl-C or SIGTERM it
//! leaves gracefully ([`Supervisor::stop`]: its children are handed over to
//! the other members) and prints `stopped`.

use std::time::Duration;

use crate::horde::supervisor::{self, ChildSpec, MemberStatus, Supervisor, SupervisorOptions};
use crate::process::gen_server::{CallReply, GenServer};
use crate::process::{Process, ProcessExit};
use crate::term::{self, Pid, Term};

/// The module the worker is registered for.
pub const WORKER_MODULE: &str = "Elixir.MyApp.Worker";

/// What a member is asked to do.
#[derive(Debug, Clone)]
pub struct MemberOptions {
    /// The supervisor's name, e.g. `Elixir.MyApp.DistributedSupervisor`.
    pub supervisor: String,
    /// Children to start (arguments 1001..=1000+start) once another member
    /// is alive.
    pub start: usize,
    /// `delta_crdt_options: [sync_interval: ms]`.
    pub sync_interval: u64,
}

impl MemberOptions {
    pub fn new(supervisor: impl Into<String>) -> Self {
        MemberOptions {
            supervisor: supervisor.into(),
            start: 0,
            sync_interval: 300,
        }
    }
}

/// The worker's gen_server.
struct Pong {
    arg: Term,
    count: i64,
    state: supervisor::ChildState,
}

impl GenServer for Pong {
    async fn handle_call(&mut self, request: Term, _from: Term, p: &mut Process) -> CallReply {
        if term::is_atom(&request, "ping") {
            CallReply::Reply(crate::tup![
                term::atom("pong"),
                self.arg.clone(),
                term::atom(p.node().name())
            ])
        } else if term::is_atom(&request, "bump") {
            self.count += 1;
            self.state.save(p.pid(), term::int(self.count));
            CallReply::Reply(term::int(self.count))
        } else if term::is_atom(&request, "count") {
            CallReply::Reply(term::int(self.count))
        } else {
            CallReply::Reply(crate::tup![
                term::atom("error"),
                crate::tup![term::atom("unknown_call"), request]
            ])
        }
    }
}

/// `Elixir.MyApp.Worker.start_link(arg)` in Rust: starts the gen_server and
/// prints `start ARG PID`, then `stop ARG` when it is gone.
pub fn start_worker(
    node: &crate::Node,
    args: Vec<Term>,
    state: supervisor::ChildState,
) -> Result<Pid, Term> {
    let arg = args.into_iter().next().unwrap_or_else(|| term::atom("nil"));
    // A state that is not a count (written by someone else) starts from 0.
    let count = state.restored().and_then(term::as_i64).unwrap_or(0);
    let pong = Pong {
        arg: arg.clone(),
        count,
        state,
    };
    let pid = crate::gen_server::start(node, pong, Default::default())
        .map_err(|e| term::binary(e.to_string().into_bytes()))?;
    println!("start {arg} {}", pid.in_node(node.name()));
    let watched = pid.clone();
    node.spawn(move |mut p| async move {
        let r = p.monitor(&watched);
        let down = p
            .receive_match(
                |m| matches!(term::as_tuple(m), Some([t, x, ..]) if term::is_atom(t, "DOWN") && x == &Term::Reference(Box::new(r.clone()))),
                None,
            )
            .await;
        if down.is_ok() {
            println!("stop {arg}");
        }
        ProcessExit::Normal
    });
    Ok(pid)
}

/// The child spec of argument `arg`: `%{id: arg, start: {MyApp.Worker,
/// :start_link, [arg]}}`.
pub fn child_spec(arg: i64) -> ChildSpec {
    ChildSpec::new(
        term::int(arg),
        WORKER_MODULE,
        "start_link",
        vec![term::int(arg)],
        [],
    )
}

/// Starts the member on `node`.
pub fn start_member(
    node: &crate::Node,
    opts: &MemberOptions,
) -> Result<Supervisor, supervisor::StartError> {
    supervisor::start(
        node,
        SupervisorOptions::new(&opts.supervisor)
            .sync_interval(opts.sync_interval)
            .worker_with_state(WORKER_MODULE, start_worker),
    )
}

/// Waits until the member sees another member alive, then starts its
/// children (printing any that fails) and prints `started K`.
async fn start_children(sup: Supervisor, count: usize) {
    let me = sup.member();
    loop {
        match sup.member_statuses().await {
            Ok(m)
                if m.iter()
                    .any(|m| m.name != me && m.status == MemberStatus::Alive) =>
            {
                break
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => return,
        }
    }
    let mut started = 0;
    for arg in 1001..=1000 + count as i64 {
        match sup
            .start_child(child_spec(arg), Duration::from_secs(30))
            .await
        {
            Ok(reply) => match term::as_tuple(&reply) {
                Some([ok, Term::Pid(_)]) if term::is_atom(ok, "ok") => started += 1,
                _ => println!("start_child {arg} failed {reply}"),
            },
            Err(_) => return,
        }
    }
    println!("started {started}");
}

/// Starts a node from `config`, joins `seeds`, runs the member until
/// Ctrl-C or SIGTERM, then leaves gracefully.
pub async fn run(
    config: crate::NodeConfig,
    seeds: &[String],
    opts: MemberOptions,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let node = crate::Node::start(config).await?;
    for seed in seeds {
        let joined = node.join(seed).await?;
        println!("joined {}", joined.join(" "));
    }
    let mut term_signal =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let sup = start_member(&node, &opts)?;
    println!("ready {}", node.name());
    let starter = (opts.start > 0).then(|| tokio::spawn(start_children(sup.clone(), opts.start)));
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term_signal.recv() => {}
    }
    if let Some(s) = starter {
        s.abort();
    }
    let handed_over = sup.stop().await.is_ok();
    // The last sync messages of the hand-over may still be queued.
    node.stop(Duration::from_secs(5)).await;
    if handed_over {
        println!("stopped");
    }
    Ok(())
}
