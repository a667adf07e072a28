//! Small servers shared by the CLI, the examples, the tests and the benchmarks.
//!
//! - [`Echo`]: a gen_server that replies with the request term unchanged.
//! - [`Sink`]: counts every `{m, _}` it receives; on `{report, Pid}` sends
//!   `{count, N}` to Pid and resets N.

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

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings), for the CLI and
/// the examples. A library never installs a subscriber by itself.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}
