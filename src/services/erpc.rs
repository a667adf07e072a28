//! erpc emulation: `erpc:call/4,5` (and so `rpc:call/4,5` on OTP 23+) arrives as a
//! SPAWN_REQUEST for `erpc:execute_call/4`. We run the Rust function registered
//! for `{M, F, Arity}` and answer as a process that ran and exited would:
//! SPAWN_REPLY with a pid, then MONITOR_P_EXIT `{ResRef, return, Value}`.
//! Anything we cannot run is refused with SPAWN_REPLY `notsup`, never silence.

use crate::dist::message::Message;
use crate::dist::message::{Mfa, PidOrAtom};

use crate::dist::handshake::PeerInfo;
use crate::node::{Node, RpcError};
use crate::term::{self, FixInteger, List, Pid, Reference, Term};

/// SPAWN_REPLY flag: the monitor the requester asked for is in place.
const SPAWN_REPLY_MONITOR: i32 = 2;

/// The functions every node answers.
pub(crate) fn register_builtins(node: &Node) {
    fn alive(node: &Node, args: Vec<Term>) -> Result<Term, RpcError> {
        match args.as_slice() {
            [Term::Pid(p)] if p.node.name == node.name() => {
                Ok(term::atom(if node.is_process_alive(p) {
                    "true"
                } else {
                    "false"
                }))
            }
            [Term::Pid(_)] => Err(RpcError::Error(term::atom("badarg"))),
            _ => Err(RpcError::Error(term::atom("badarg"))),
        }
    }
    node.register_function("erlang", "is_process_alive", 1, alive);
    node.register_function("Elixir.Process", "alive?", 1, alive);
    node.register_function("erlang", "node", 0, |n, _| Ok(term::atom(n.name())));
    node.register_function("erlang", "nodes", 0, |n, _| {
        Ok(term::list(
            n.visible_nodes().iter().map(|s| term::atom(s)).collect(),
        ))
    });
    node.register_function("erlang", "whereis", 1, |n, args| match args.as_slice() {
        [Term::Atom(a)] => Ok(n
            .whereis(&a.name)
            .map(Term::Pid)
            .unwrap_or_else(|| term::atom("undefined"))),
        _ => Err(RpcError::Error(term::atom("badarg"))),
    });
    node.register_function("erlang", "registered", 0, |n, _| {
        Ok(term::list(
            n.registered().iter().map(|s| term::atom(s)).collect(),
        ))
    });
}

/// Runs `M:F(A)` from terms; `None` when no Rust function is registered for it.
pub(crate) fn apply(node: &Node, m: &Term, f: &Term, a: &Term) -> Option<Result<Term, RpcError>> {
    let (m, f) = (term::as_atom(m)?, term::as_atom(f)?);
    let args = term::as_list(a)?;
    let func = node.function(m, f, args.len())?;
    Some(func(node, args))
}

pub(crate) fn class_and_reason(e: RpcError) -> (&'static str, Term) {
    match e {
        RpcError::Error(r) => ("error", r),
        RpcError::Exit(r) => ("exit", r),
        RpcError::Throw(r) => ("throw", r),
    }
}

/// Handles one SPAWN_REQUEST from `peer`.
pub(crate) fn spawn_request(
    node: &Node,
    peer: &PeerInfo,
    req_id: Reference,
    from: Pid,
    mfa: Mfa,
    opts: List,
    args: List,
) {
    let refuse = |why: &str| {
        tracing::debug!(peer = %peer.name, module = %mfa.module.name, function = %mfa.function.name, why, "spawn request refused with notsup");
        node.send_control(
            &peer.name,
            Message::spawn_reply(
                req_id.clone(),
                from.clone(),
                FixInteger::from(0),
                PidOrAtom::Atom(term::Atom::from("notsup")),
            ),
        );
    };
    if mfa.module.name != "erpc" || mfa.function.name != "execute_call" || args.elements.len() != 4
    {
        return refuse("only erpc:execute_call/4 is emulated");
    }
    let [res_ref, m, f, a] = [
        &args.elements[0],
        &args.elements[1],
        &args.elements[2],
        &args.elements[3],
    ];
    let Some(outcome) = apply(node, m, f, a) else {
        return refuse("no Rust function registered for this MFA");
    };
    let wants_monitor = opts.elements.iter().any(|o| term::is_atom(o, "monitor"));
    // A pid that names "the process that ran the call"; it is never alive, so a
    // late monitor or link to it gets noproc.
    let fake = node.process();
    let fake_pid = fake.pid().clone();
    drop(fake);
    let flags = if wants_monitor {
        SPAWN_REPLY_MONITOR
    } else {
        0
    };
    node.send_control(
        &peer.name,
        Message::spawn_reply(
            req_id.clone(),
            from.clone(),
            FixInteger::from(flags),
            PidOrAtom::Pid(fake_pid.clone()),
        ),
    );
    if wants_monitor {
        let result = match outcome {
            Ok(v) => crate::tup![res_ref.clone(), term::atom("return"), v],
            Err(RpcError::Error(r)) => {
                crate::tup![res_ref.clone(), term::atom("error"), r, term::nil()]
            }
            Err(RpcError::Exit(r)) => crate::tup![res_ref.clone(), term::atom("exit"), r],
            Err(RpcError::Throw(r)) => crate::tup![res_ref.clone(), term::atom("throw"), r],
        };
        node.send_control(
            &peer.name,
            Message::payload_monitor_p_exit(PidOrAtom::Pid(fake_pid), from, req_id, result),
        );
    }
}
