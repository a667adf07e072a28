//! The child and counts a supervisor start load uses: shared by
//! `benches/horde_supervisor.rs` and `examples/supervisor_starts.rs`, so the
//! bench's figures and the callgrind counts measure the same work.
#![allow(dead_code)]

use std::time::Duration;

use beam_peer::horde::supervisor::{ChildSpec, MemberStatus, Supervisor};
use beam_peer::process::gen_server::{CallReply, GenServer};
use beam_peer::term::{self, Pid, Term};
use beam_peer::{Node, Process};

pub const WORKER: &str = "Elixir.BeamPeerBench.Worker";

/// Answers every call with `:pong`.
pub struct Pong;

impl GenServer for Pong {
    async fn handle_call(&mut self, _: Term, _: Term, _: &mut Process) -> CallReply {
        CallReply::Reply(term::atom("pong"))
    }
}

/// The Rust worker for [`WORKER`]: a [`Pong`].
pub fn worker(node: &Node, _args: Vec<Term>) -> Result<Pid, Term> {
    beam_peer::gen_server::start(node, Pong, Default::default())
        .map_err(|e| term::binary(e.to_string().into_bytes()))
}

/// `%{id: arg, start: {WORKER, :start_link, [arg]}}`.
pub fn spec(arg: i64) -> ChildSpec {
    ChildSpec::new(
        term::int(arg),
        WORKER,
        "start_link",
        vec![term::int(arg)],
        [],
    )
}

/// A member's `get_telemetry` count `key`, -1 when it does not answer.
pub async fn telemetry_count(s: &Supervisor, key: &str, timeout: Duration) -> i64 {
    match s.call(term::atom("get_telemetry"), timeout).await {
        Ok(Term::Map(m)) => m
            .map
            .get(&term::atom(key))
            .and_then(term::as_i64)
            .unwrap_or(-1),
        _ => -1,
    }
}

/// Waits until each of `members` sees all of them alive.
pub async fn all_alive(members: &[&Supervisor]) {
    for s in members {
        while !s.member_statuses().await.is_ok_and(|m| {
            m.iter().filter(|m| m.status == MemberStatus::Alive).count() == members.len()
        }) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
