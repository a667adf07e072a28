//! The introspection functions BEAM tools call on a node through erpc/rpc,
//! answered for this Rust node: `erlang:processes/0`, `erlang:process_info/1,2`,
//! `erlang:nodes/1`, `erlang:memory/0,1`, `erlang:system_info/1` (the keys
//! tools ask), `erlang:statistics/1` (`wall_clock`, `runtime`, `run_queue`),
//! `erlang:exit/2`, `erlang:list_to_pid/1` (how a tool names a pid it read
//! as text), and `erlang:trace/3` / `erlang:trace_info/2` for the `send`,
//! `'receive'`, `procs` (exit only) and `timestamp` flags, with a
//! `{tracer, Pid}` that may be on another node (see [`crate::node::trace`]). `node/0`, `nodes/0`, `registered/0` and `whereis/1` are in
//! [`super::erpc`].
//!
//! What `process_info` reports for a Rust process, and what each measure is,
//! is documented on [`crate::node::info::ProcessInfo`].
//!
//! What it must never do: make up an answer it cannot measure. Keys and
//! arguments we do not answer raise `badarg`, as the BEAM does for a key it
//! does not know; `otp_release` and friends say what we are, not an OTP
//! release we are not.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::node::info::{Mfa, ProcessInfo};
use crate::node::trace::TraceFlags;
use crate::node::{Node, RpcError};
use crate::term::{self, Term};

/// The introspection functions, as `(module, function, arity)`.
pub const FUNCTIONS: &[(&str, &str, usize)] = &[
    ("erlang", "processes", 0),
    ("erlang", "nodes", 1),
    ("erlang", "system_info", 1),
    ("erlang", "statistics", 1),
    ("erlang", "exit", 2),
    ("erlang", "process_info", 1),
    ("erlang", "process_info", 2),
    ("erlang", "memory", 0),
    ("erlang", "memory", 1),
    ("erlang", "list_to_pid", 1),
    ("erlang", "trace", 3),
    ("erlang", "trace_info", 2),
];

/// The items `process_info/1` lists, in the BEAM's order (those we have).
const DEFAULT_ITEMS: &[&str] = &[
    "registered_name",
    "current_function",
    "initial_call",
    "status",
    "message_queue_len",
    "links",
    "dictionary",
    "trap_exit",
    "priority",
    "reductions",
];

/// Every item [`item`] answers.
const KNOWN_ITEMS: &[&str] = &[
    "registered_name",
    "current_function",
    "initial_call",
    "status",
    "message_queue_len",
    "memory",
    "reductions",
    "links",
    "monitors",
    "monitored_by",
    "trap_exit",
    "dictionary",
    "priority",
];

fn mfa_term(m: &Mfa) -> Term {
    crate::tup![
        term::atom(&m.module),
        term::atom(&m.function),
        term::int(i64::from(m.arity))
    ]
}

/// One `{Item, Value}` of `process_info/2`, `None` for an item we do not answer.
fn item(info: &ProcessInfo, item: &str) -> Option<Term> {
    let pids = |v: &[crate::term::Pid]| term::list(v.iter().cloned().map(Term::Pid).collect());
    let value = match item {
        "registered_name" => match &info.registered_name {
            Some(n) => term::atom(n),
            None => term::nil(),
        },
        "current_function" | "initial_call" => mfa_term(&info.initial_call),
        "status" => term::atom(info.status.as_atom()),
        "message_queue_len" => term::int(info.message_queue_len as i64),
        "memory" => term::int(info.memory as i64),
        "reductions" => term::int(info.reductions as i64),
        "links" => pids(&info.links),
        "monitors" => term::list(
            info.monitors
                .iter()
                .map(|m| crate::tup![term::atom("process"), m.to_term()])
                .collect(),
        ),
        "monitored_by" => pids(&info.monitored_by),
        "trap_exit" => term::atom(if info.trap_exit { "true" } else { "false" }),
        // Rust processes have no process dictionary and one priority.
        "dictionary" => term::nil(),
        "priority" => term::atom("normal"),
        _ => return None,
    };
    Some(crate::tup![term::atom(item), value])
}

/// `erlang:process_info/2` for a local pid: `undefined` when it is dead,
/// `{Item, Value}` for one item (`[]` for `registered_name` without a name,
/// as the BEAM answers), a list for a list of items.
fn process_info(n: &Node, pid: &crate::term::Pid, items: Option<&Term>) -> Result<Term, RpcError> {
    if pid.node.name != n.name() {
        return Err(badarg());
    }
    // The items are checked before the process: a bad item is badarg even
    // for a dead pid, as on the BEAM.
    let (names, single) = match items {
        None => (DEFAULT_ITEMS.iter().map(|s| s.to_string()).collect(), false),
        Some(Term::Atom(a)) => (vec![a.name.to_string()], true),
        Some(list) => {
            let l = term::as_list(list).ok_or_else(badarg)?;
            let names = l
                .iter()
                .map(|t| term::as_atom(t).map(str::to_string).ok_or_else(badarg))
                .collect::<Result<Vec<_>, _>>()?;
            (names, false)
        }
    };
    if let Some(bad) = names.iter().find(|x| !KNOWN_ITEMS.contains(&x.as_str())) {
        tracing::debug!(item = %bad, "process_info item we do not answer");
        return Err(badarg());
    }
    let Some(info) = n.process_info(pid) else {
        return Ok(term::atom("undefined"));
    };
    if single {
        if names[0] == "registered_name" && info.registered_name.is_none() {
            return Ok(term::nil());
        }
        return item(&info, &names[0]).ok_or_else(badarg);
    }
    let mut out = Vec::with_capacity(names.len());
    for name in &names {
        // process_info/1 leaves registered_name out for an unnamed process.
        if items.is_none() && name == "registered_name" && info.registered_name.is_none() {
            continue;
        }
        out.push(item(&info, name).ok_or_else(badarg)?);
    }
    Ok(term::list(out))
}

/// This OS process's resident memory in bytes, from `/proc/self/status`.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `erlang:memory/0`'s categories that we measure: `total` is the OS
/// process's resident memory, `processes` (and `processes_used`) the sum of
/// the processes' bookkeeping bytes, `system` the rest. The BEAM's atom,
/// binary, code and ets categories have no counterpart here and are left
/// out rather than made up; `memory/1` raises badarg for them.
fn memory(n: &Node) -> Vec<(&'static str, i64)> {
    let procs: usize = n
        .processes()
        .iter()
        .filter_map(|p| n.process_info(p))
        .map(|i| i.memory)
        .sum();
    let total = resident_bytes().unwrap_or(procs as u64).max(procs as u64) as i64;
    let procs = procs as i64;
    vec![
        ("total", total),
        ("processes", procs),
        ("processes_used", procs),
        ("system", total - procs),
    ]
}

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
            "logical_processors" | "schedulers" | "schedulers_online" => {
                Ok(term::int(crate::runtime::available_cores() as i64))
            }
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
    node.register_function("erlang", "process_info", 1, |n, args| {
        match args.as_slice() {
            [Term::Pid(p)] => process_info(n, p, None),
            _ => Err(badarg()),
        }
    });
    node.register_function("erlang", "process_info", 2, |n, args| {
        match args.as_slice() {
            [Term::Pid(p), items] => process_info(n, p, Some(items)),
            _ => Err(badarg()),
        }
    });
    node.register_function("erlang", "memory", 0, |n, _| {
        Ok(term::list(
            memory(n)
                .into_iter()
                .map(|(k, v)| crate::tup![term::atom(k), term::int(v)])
                .collect(),
        ))
    });
    node.register_function("erlang", "memory", 1, |n, args| {
        let all = memory(n);
        let value = |k: &str| all.iter().find(|(name, _)| *name == k).map(|(_, v)| *v);
        match args.as_slice() {
            [Term::Atom(a)] => value(&a.name).map(term::int).ok_or_else(badarg),
            [list] => {
                let keys = term::as_list(list).ok_or_else(badarg)?;
                let mut out = Vec::with_capacity(keys.len());
                for k in &keys {
                    let name = term::as_atom(k).ok_or_else(badarg)?;
                    let v = value(name).ok_or_else(badarg)?;
                    out.push(crate::tup![term::atom(name), term::int(v)]);
                }
                Ok(term::list(out))
            }
            _ => Err(badarg()),
        }
    });
    // "<0.I.S>" names a process of this node, as on the BEAM; a tool that
    // read a pid as text gets the live pid back.
    node.register_function("erlang", "list_to_pid", 1, |n, args| {
        let text = match args.as_slice() {
            [t] => term::elixir::as_charlist(t).ok_or_else(badarg)?,
            _ => return Err(badarg()),
        };
        let (id, serial) = parse_local_pid(&text).ok_or_else(badarg)?;
        Ok(Term::Pid(crate::term::Pid::new(
            n.name(),
            id,
            serial,
            n.creation(),
        )))
    });
    node.register_function("erlang", "trace", 3, |n, args| trace(n, &args));
    node.register_function("erlang", "trace_info", 2, |n, args| trace_info(n, &args));
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

/// `erlang:trace(Pid, How, Flags)`: `1` (the processes matched), or
/// `badarg` as the BEAM raises it: for a pid that is not a live process of
/// ours, a flag we do not trace, turning tracing on without a tracer (the
/// erpc process calling us is no tracer to keep), or a process another
/// tracer already traces.
fn trace(n: &Node, args: &[Term]) -> Result<Term, RpcError> {
    let [Term::Pid(p), how, flags] = args else {
        return Err(badarg());
    };
    let on = match term::as_atom(how) {
        Some("true") => true,
        Some("false") => false,
        _ => return Err(badarg()),
    };
    let (flags, tracer) = TraceFlags::parse(flags).map_err(|flag| {
        tracing::debug!(%flag, "trace flag we do not answer");
        badarg()
    })?;
    match n.trace(p, on, flags, tracer) {
        Ok(()) => Ok(term::int(1)),
        Err(e) => {
            tracing::debug!(pid = %p, error = %e, "erlang:trace refused");
            Err(badarg())
        }
    }
}

/// `erlang:trace_info(Pid, flags | tracer)`: `undefined` for a dead
/// process, `{flags, []}` / `{tracer, []}` for an untraced one.
fn trace_info(n: &Node, args: &[Term]) -> Result<Term, RpcError> {
    let [Term::Pid(p), Term::Atom(item)] = args else {
        return Err(badarg());
    };
    if p.node.name != n.name() {
        return Err(badarg());
    }
    let Some(traced) = n.trace_info(p) else {
        return Ok(term::atom("undefined"));
    };
    let value = match (item.name.as_str(), traced) {
        ("flags", Some((f, _))) => f.to_term(),
        ("tracer", Some((_, t))) => Term::Pid(t),
        ("flags" | "tracer", None) => term::nil(),
        _ => return Err(badarg()),
    };
    Ok(crate::tup![Term::Atom(item.clone()), value])
}

/// `<0.I.S>` as `(I, S)`; a node index other than 0 is another node's pid.
fn parse_local_pid(text: &str) -> Option<(u32, u32)> {
    let inner = text.strip_prefix('<')?.strip_suffix('>')?;
    let mut parts = inner.split('.');
    let (node, id, serial) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || node != "0" {
        return None;
    }
    Some((id.parse().ok()?, serial.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_pid_text() {
        assert_eq!(parse_local_pid("<0.80.0>"), Some((80, 0)));
        for bad in ["<1.80.0>", "<0.80>", "0.80.0", "<0.x.0>", "<0.1.2.3>"] {
            assert_eq!(parse_local_pid(bad), None, "{bad}");
        }
    }
}
