//! Small servers shared by the CLI, the examples, the tests and the benchmarks.
//!
//! - [`Echo`]: a gen_server that replies with the request term unchanged.
//! - `Sink`: counts every `{m, _}` it receives; on `{report, Pid}` sends
//!   `{count, N}` to Pid and resets N.

pub mod pubsub_echo;
pub mod supervisor_member;

use crate::process::gen_server::{CallReply, GenServer};
use crate::process::{Process, ProcessExit};
use crate::term::{self, Term};

/// Replies to every call with the request itself.
pub struct Echo;

impl GenServer for Echo {
    async fn handle_call(&mut self, request: Term, _from: Term, _p: &mut Process) -> CallReply {
        CallReply::Reply(request)
    }
}

/// The sink loop, run as a plain process (it is hot: no gen_server dispatch).
pub async fn sink(mut p: Process) -> ProcessExit {
    let mut count: i64 = 0;
    loop {
        let msg = match p.receive().await {
            Ok(m) => m,
            Err(e) => return e.into(),
        };
        match term::as_tuple(&msg) {
            Some([tag, _]) if term::is_atom(tag, "m") => count += 1,
            Some([tag, Term::Pid(to)]) if term::is_atom(tag, "report") => {
                p.send(to, crate::tup![term::atom("count"), term::int(count)]);
                count = 0;
            }
            _ => {}
        }
    }
}

/// Starts `echo` and `sink` on `node`, registered under those names.
pub fn start_echo_and_sink(node: &crate::Node) -> Result<(), crate::gen_server::StartError> {
    crate::gen_server::start(node, Echo, crate::StartOptions::named("echo"))?;
    let sink = node.spawn(sink);
    node.register("sink", &sink)?;
    Ok(())
}

/// Starts `count` more echo servers on `node`, registered as `echo_1` ..
/// `echo_<count>` (the benchmarks' many callers each call their own).
pub fn start_echoes(node: &crate::Node, count: usize) -> Result<(), crate::gen_server::StartError> {
    for i in 1..=count {
        crate::gen_server::start(node, Echo, crate::StartOptions::named(&format!("echo_{i}")))?;
    }
    Ok(())
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings), for the CLI and
/// the examples. A library never installs a subscriber by itself.
///
/// Colour only when stderr is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>): a log sent to a file or a pipe stays plain text.
#[cfg(feature = "cli")]
pub fn init_logging() {
    use std::io::IsTerminal;
    let colour = log_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}

/// Whether log lines get ANSI colour: only on a terminal, and not when
/// `NO_COLOR` is set to anything but the empty string.
#[cfg(any(feature = "cli", test))]
fn log_colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// What [`start_registry_member`] can fail on.
#[derive(Debug, thiserror::Error)]
pub enum RegistryDemoError {
    #[error(transparent)]
    Registry(#[from] crate::horde::registry::StartError),
    #[error(transparent)]
    Echo(#[from] crate::gen_server::StartError),
}

/// The `horde_registry` example and `beam-peer registry`: starts the Horde
/// registry `registry` (`members: :auto`) and an [`Echo`] server registered
/// in it under the binary `key` (value `nil`). A key someone else already
/// holds is reported and left to them. The events come from before the
/// echo server registers, so its own registration is the first.
pub async fn start_registry_member(
    node: &crate::Node,
    registry: &str,
    key: &str,
) -> Result<
    (
        crate::horde::registry::Registry,
        tokio::sync::broadcast::Receiver<crate::horde::registry::RegistryEvent>,
    ),
    RegistryDemoError,
> {
    use crate::horde::registry::{self, RegistryError, RegistryOptions};
    let reg = registry::start(node, RegistryOptions::new(registry))?;
    let events = reg.subscribe();
    let echo = crate::gen_server::start(node, Echo, crate::StartOptions::default())?;
    match reg
        .register(term::binary(key.as_bytes()), term::atom("nil"), &echo)
        .await
    {
        Err(RegistryError::AlreadyRegistered(pid)) => {
            println!(
                "{key} is already registered by {}",
                pid.in_node(node.name())
            )
        }
        Err(e) => tracing::warn!(error = %e, "registering echo"),
        Ok(()) => {}
    }
    Ok((reg, events))
}

/// The whole `horde_registry` example and `beam-peer registry`: starts a
/// node, joins each seed's cluster, starts the registry member of
/// [`start_registry_member`], prints `ready NODE port PORT` and every
/// register/unregister event until Ctrl-C.
pub async fn run_registry_member(
    config: crate::NodeConfig,
    seeds: &[String],
    registry: &str,
    key: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let node = crate::Node::start(config).await?;
    for seed in seeds {
        let joined = node.join(seed).await?;
        println!("joined {}", joined.join(" "));
    }
    let (_registry, events) = start_registry_member(&node, registry, key).await?;
    println!("ready {} port {}", node.name(), node.listen_port());
    tokio::select! {
        _ = print_registry_events(events, node.name()) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    node.shutdown();
    Ok(())
}

/// Prints every register/unregister event of `events` as one line, until
/// the registry stops; pids as the node `local` prints them (`<0.6.0>` for
/// its own).
pub async fn print_registry_events(
    mut events: tokio::sync::broadcast::Receiver<crate::horde::registry::RegistryEvent>,
    local: &str,
) {
    use crate::horde::registry::RegistryEvent;
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(RegistryEvent::Register { key, pid, value }) => {
                println!(
                    "register {} {} {}",
                    show_key(&key),
                    pid.in_node(local),
                    value.in_node(local)
                )
            }
            Ok(RegistryEvent::Unregister { key, pid }) => {
                println!("unregister {} {}", show_key(&key), pid.in_node(local))
            }
            Err(RecvError::Lagged(n)) => println!("({n} events not shown)"),
            Err(RecvError::Closed) => return,
        }
    }
}

/// A UTF-8 binary as an Elixir string, anything else as Erlang prints it.
fn show_key(key: &Term) -> String {
    match key {
        Term::Binary(b) => match std::str::from_utf8(&b.bytes) {
            Ok(s) => format!("{s:?}"),
            Err(_) => key.to_string(),
        },
        _ => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::log_colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsStr::new(""))));
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(!log_colour(false, None));
        assert!(!log_colour(false, Some(OsStr::new(""))));
    }
}
