//! The introspection functions BEAM tools call on a node through erpc/rpc,
//! answered for this Rust node: `erlang:processes/0`, `erlang:nodes/1`,
//! `erlang:system_info/1` (the keys tools ask), `erlang:statistics/1`
//! (`wall_clock`, `runtime`, `run_queue`) and `erlang:exit/2`.
//!
//! What it must never do: make up an answer it cannot measure. Keys and
//! arguments we do not answer raise `badarg`, as the BEAM does for a key it
//! does not know; `otp_release` and friends say what we are, not an OTP
//! release we are not.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::node::{Node, RpcError};
use crate::term::{self, Term};

/// The introspection functions, as `(module, function, arity)`.
pub const FUNCTIONS: &[(&str, &str, usize)] = &[
    ("erlang", "processes", 0),
    ("erlang", "nodes", 1),
    ("erlang", "system_info", 1),
    ("erlang", "statistics", 1),
    ("erlang", "exit", 2),
];

/// What we are, where the BEAM answers with its OTP release.
pub const WHAT_WE_ARE: &str = concat!("beam_peer ", env!("CARGO_PKG_VERSION"));

fn badarg() -> RpcError {
    RpcError::Error(term::atom("badarg"))
}

/// This process's CPU time (user + system) in milliseconds, from
/// `/proc/self/stat`; `None` where that cannot be read.
fn cpu_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    // Clock ticks: 100 per second on every Linux this runs on.
    Some((utime + stime) * 10)
}

pub(crate) fn register(node: &Node) {
    node.register_function("erlang", "processes", 0, |n, _| {
        Ok(term::list(
            n.processes().into_iter().map(Term::Pid).collect(),
        ))
    });
    node.register_function("erlang", "nodes", 1, |n, args| {
        let kinds: Vec<Term> = match args.as_slice() {
            [Term::Atom(a)] => vec![Term::Atom(a.clone())],
            [list] => term::as_list(list).ok_or_else(badarg)?,
            _ => return Err(badarg()),
        };
        let mut out: Vec<String> = Vec::new();
        let visible = n.visible_nodes();
        for k in &kinds {
            let add: Vec<String> = match term::as_atom(k) {
                Some("visible") => visible.clone(),
                Some("hidden") => n
                    .nodes()
                    .into_iter()
                    .filter(|x| !visible.contains(x))
                    .collect(),
                Some("connected") => n.nodes(),
                Some("this") => vec![n.name().to_string()],
                Some("known") => std::iter::once(n.name().to_string())
                    .chain(n.nodes())
                    .collect(),
                _ => return Err(badarg()),
            };
            for x in add {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
        }
        Ok(term::list(out.iter().map(|s| term::atom(s)).collect()))
    });
    node.register_function("erlang", "system_info", 1, |n, args| {
        let key = match args.as_slice() {
            [Term::Atom(a)] => a.name.to_string(),
            _ => return Err(badarg()),
        };
        match key.as_str() {
            "process_count" => Ok(term::int(n.process_count() as i64)),
            "otp_release" | "version" => Ok(term::elixir::charlist(WHAT_WE_ARE)),
            "system_version" => Ok(term::elixir::charlist(&format!(
                "{WHAT_WE_ARE} (a Rust node, not an OTP release)\n"
            ))),
            "logical_processors" | "schedulers" | "schedulers_online" => Ok(term::int(
                std::thread::available_parallelism().map_or(1, |p| p.get()) as i64,
            )),
            _ => Err(badarg()),
        }
    });
    // wall_clock and runtime answer {Total, SinceLastCall} in ms, as the BEAM.
    let started = Instant::now();
    let last = Arc::new(Mutex::new((0u64, 0u64)));
    node.register_function("erlang", "statistics", 1, move |_, args| {
        let key = match args.as_slice() {
            [Term::Atom(a)] => a.name.to_string(),
            _ => return Err(badarg()),
        };
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        match key.as_str() {
            "wall_clock" => {
                let now = started.elapsed().as_millis() as u64;
                let since = now.saturating_sub(last.0);
                last.0 = now;
                Ok(crate::tup![term::int(now as i64), term::int(since as i64)])
            }
            "runtime" => {
                let now = cpu_ms().ok_or_else(badarg)?;
                let since = now.saturating_sub(last.1);
                last.1 = now;
                Ok(crate::tup![term::int(now as i64), term::int(since as i64)])
            }
            // Rust processes are tokio tasks: none is counted as waiting to run.
            "run_queue" => Ok(term::int(0)),
            _ => Err(badarg()),
        }
    });
    node.register_function("erlang", "exit", 2, |n, args| match args.as_slice() {
        [Term::Pid(p), reason] if p.node.name == n.name() => {
            // From a process that is gone at once, as the erpc process is.
            let from = n.process();
            n.exit(from.pid(), p, reason.clone());
            Ok(term::atom("true"))
        }
        _ => Err(badarg()),
    });
}
