//! Children for the Horde.DynamicSupervisor suites: a trivial gen_server
//! started as a child, watched until it exits, and its child spec.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beam_peer::horde::supervisor::{ChildSpec, Supervisor};
use beam_peer::process::gen_server::{CallReply, GenServer};
use beam_peer::term::{self, Pid, Term};
use beam_peer::{Node, Process, ProcessExit};

/// Answers every call with `:pong`.
pub struct Pong;

impl GenServer for Pong {
    async fn handle_call(&mut self, _: Term, _: Term, _: &mut Process) -> CallReply {
        CallReply::Reply(term::atom("pong"))
    }
}

/// Starts a [`Pong`] child on `node`; `on_start` runs with its pid before
/// anything can see it exit, `on_exit` with it once it has exited (from a
/// process monitoring it).
pub fn start_watched(
    node: &Node,
    on_start: impl FnOnce(&Pid),
    on_exit: impl FnOnce(&Pid) + Send + 'static,
) -> Result<Pid, Term> {
    let pid = beam_peer::gen_server::start(node, Pong, Default::default())
        .map_err(|e| term::binary(e.to_string().into_bytes()))?;
    on_start(&pid);
    let watched = pid.clone();
    node.spawn(move |mut p| async move {
        let r = Term::Reference(Box::new(p.monitor(&watched)));
        let down = p
            .receive_match(
                |m| matches!(term::as_tuple(m), Some([t, x, ..]) if term::is_atom(t, "DOWN") && x == &r),
                None,
            )
            .await;
        if down.is_ok() {
            on_exit(&watched);
        }
        ProcessExit::Normal
    });
    Ok(pid)
}

/// `%{id: arg, start: {module, :start_link, [arg]}}`.
pub fn spec(module: &str, arg: i64) -> ChildSpec {
    spec_with(module, arg, [])
}

/// [`spec`] with more fields (`shutdown`, `restart`, ...).
pub fn spec_with(
    module: &str,
    arg: i64,
    fields: impl IntoIterator<Item = (&'static str, Term)>,
) -> ChildSpec {
    ChildSpec::new(
        term::int(arg),
        module,
        "start_link",
        vec![term::int(arg)],
        fields,
    )
}

/// `(event, arg, node)`: `start` or `stop` of child `arg` on `node`.
pub type Events = Arc<Mutex<Vec<(&'static str, i64, String)>>>;

/// [`start_watched`], recording `("start", arg, node)` and later
/// `("stop", arg, node)` in `events`.
pub fn start_recorded(node: &Node, events: &Events, arg: i64) -> Result<Pid, Term> {
    let (started, stopped) = (events.clone(), events.clone());
    let (here, at) = (node.name().to_string(), node.name().to_string());
    start_watched(
        node,
        move |_| started.lock().unwrap().push(("start", arg, at)),
        move |_| stopped.lock().unwrap().push(("stop", arg, here)),
    )
}

/// A member's `get_telemetry` entry `key` (`global_supervised_process_count`,
/// `local_supervised_process_count`, ...).
pub async fn telemetry(s: &Supervisor, key: &str) -> Option<Term> {
    match s
        .call(term::atom("get_telemetry"), Duration::from_secs(5))
        .await
    {
        Ok(Term::Map(m)) => m.map.get(&term::atom(key)).cloned(),
        _ => None,
    }
}

/// A member's `global_supervised_process_count`.
pub async fn global_count(s: &Supervisor) -> Option<i64> {
    term::as_i64(&telemetry(s, "global_supervised_process_count").await?)
}

/// The live children: start argument -> (node, pid) of each live process
/// (an argument with none running has no entry).
pub type Live = Arc<Mutex<BTreeMap<i64, Vec<(String, Pid)>>>>;

/// A worker whose children ([`Pong`]s) are in `live` from their start
/// until they exit; `note(arg, node)` runs at each start.
pub fn live_worker(
    live: Live,
    note: impl Fn(i64, &str) + Send + Sync + 'static,
) -> impl Fn(&Node, Vec<Term>) -> Result<Pid, Term> + Send + Sync {
    move |node, args| {
        let arg = args.first().and_then(term::as_i64).unwrap_or(-1);
        let here = node.name().to_string();
        note(arg, &here);
        let (started, exited) = (live.clone(), live.clone());
        start_watched(
            node,
            move |pid| {
                started
                    .lock()
                    .unwrap()
                    .entry(arg)
                    .or_default()
                    .push((here, pid.clone()));
            },
            move |pid| {
                let mut live = exited.lock().unwrap();
                if let Some(v) = live.get_mut(&arg) {
                    v.retain(|(_, p)| p != pid);
                    if v.is_empty() {
                        // Gone, not kept empty: the soak's heap figure
                        // counts what this map holds.
                        live.remove(&arg);
                    }
                }
            },
        )
    }
}

/// How many processes run each child on the nodes `on` selects.
pub fn live_counts(live: &Live, on: impl Fn(&str) -> bool) -> BTreeMap<i64, usize> {
    live.lock()
        .unwrap()
        .iter()
        .map(|(a, v)| (*a, v.iter().filter(|(n, _)| on(n)).count()))
        .collect()
}
