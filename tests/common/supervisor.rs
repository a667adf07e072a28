//! Children for the Horde.DynamicSupervisor suites: a trivial gen_server
//! started as a child, watched until it exits, and its child spec.
#![allow(dead_code)]

use beam_peer::horde::supervisor::ChildSpec;
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
    ChildSpec::new(
        term::int(arg),
        module,
        "start_link",
        vec![term::int(arg)],
        [],
    )
}
