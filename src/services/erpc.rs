//! erpc emulation: `erpc:call/4,5` (and so `rpc:call/4,5` on OTP 23+) arrives as a
//! SPAWN_REQUEST for `erpc:execute_call/4`. We run the Rust function registered
//! for `{M, F, Arity}` and answer as a process that ran and exited would:
//! SPAWN_REPLY with a pid, then MONITOR_P_EXIT `{ResRef, return, Value}`.
//!
//! A function nobody registered is answered as a BEAM node without that module
//! answers: the process "ran" and raised `undef`, so `erpc:call` raises
//! `error:{exception, undef, [{M, F, Args, []}]}` and `rpc:call` returns
//! `{badrpc, {'EXIT', {undef, [...]}}}` (shapes captured from OTP 25). A
//! SPAWN_REQUEST for any other MFA (`spawn/4` to us) gets a pid whose process
//! exits at once with `{undef, [{M, F, Args, []}]}`, to its monitor and link.
//! This module never leaves a request unanswered: a BEAM caller waits forever
//! otherwise.

use crate::dist::message::Message;
use crate::dist::message::{Mfa, PidOrAtom};

use crate::dist::handshake::PeerInfo;
use crate::node::{Node, RpcError};
use crate::term::{self, FixInteger, List, Pid, Reference, Term};

/// SPAWN_REPLY flag: the link the requester asked for is in place.
const SPAWN_REPLY_LINK: i32 = 1;
/// SPAWN_REPLY flag: the monitor the requester asked for is in place.
const SPAWN_REPLY_MONITOR: i32 = 2;

/// The functions every node answers, as `(module, function, arity)`; the
/// README lists the same.
pub const BUILTINS: &[(&str, &str, usize)] = &[
    ("erlang", "is_process_alive", 1),
    ("Elixir.Process", "alive?", 1),
    ("erlang", "node", 0),
    ("erlang", "nodes", 0),
    ("erlang", "whereis", 1),
    ("erlang", "registered", 0),
];

/// Registers [`BUILTINS`] on `node`.
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

/// How a call of `M:F(A)` ended, in the terms a BEAM process that ran
/// `apply(M, F, A)` would see.
pub(crate) enum Applied {
    /// The function returned, or raised what it raised.
    Ran(Result<Term, RpcError>),
    /// No Rust function is registered for `{M, F, length(A)}`: `undef`, with
    /// the stack a BEAM gives (`[{M, F, A, []}]`).
    Undef(Term),
    /// `M` or `F` is not an atom, or `A` not a proper list: `apply/3` raises
    /// `badarg` with this stack.
    Badarg(Term),
}

/// Runs `M:F(A)` from terms.
pub(crate) fn apply(node: &Node, m: &Term, f: &Term, a: &Term) -> Applied {
    let stack_entry = |module: &Term, function: &Term| {
        term::list(vec![crate::tup![
            module.clone(),
            function.clone(),
            a.clone(),
            term::nil()
        ]])
    };
    let (Some(mn), Some(fname), Some(args)) =
        (term::as_atom(m), term::as_atom(f), term::as_list(a))
    else {
        return Applied::Badarg(stack_entry(&term::atom("erlang"), &term::atom("apply")));
    };
    match node.function(mn, fname, args.len()) {
        Some(func) => Applied::Ran(func(node, args)),
        None => Applied::Undef(stack_entry(m, f)),
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
    let wants = |name: &str| {
        opts.elements.iter().any(|o| {
            term::is_atom(o, name)
                || matches!(term::as_tuple(o), Some([t, _]) if term::is_atom(t, name))
        })
    };
    let (wants_monitor, wants_link) = (wants("monitor"), wants("link"));
    // How the "process" ends: the exit reason it dies with.
    let reason = match (
        mfa.module.name.as_str(),
        mfa.function.name.as_str(),
        args.elements.as_slice(),
    ) {
        ("erpc", "execute_call", [res_ref, m, f, a]) => match apply(node, m, f, a) {
            Applied::Ran(Ok(v)) => crate::tup![res_ref.clone(), term::atom("return"), v],
            Applied::Ran(Err(RpcError::Error(r))) => {
                crate::tup![res_ref.clone(), term::atom("error"), r, term::nil()]
            }
            Applied::Ran(Err(RpcError::Exit(r))) => {
                crate::tup![res_ref.clone(), term::atom("exit"), r]
            }
            Applied::Ran(Err(RpcError::Throw(r))) => {
                crate::tup![res_ref.clone(), term::atom("throw"), r]
            }
            Applied::Undef(stack) => {
                tracing::debug!(peer = %peer.name, module = %m, function = %f, args = %a, "erpc call of a function we do not have: undef");
                crate::tup![
                    res_ref.clone(),
                    term::atom("error"),
                    term::atom("undef"),
                    stack
                ]
            }
            Applied::Badarg(stack) => {
                crate::tup![
                    res_ref.clone(),
                    term::atom("error"),
                    term::atom("badarg"),
                    stack
                ]
            }
        },
        // `erpc:cast/4`: the result goes nowhere.
        ("erpc", "execute_cast", [m, f, a]) => match apply(node, m, f, a) {
            Applied::Ran(_) => term::atom("normal"),
            Applied::Undef(stack) => crate::tup![term::atom("undef"), stack],
            Applied::Badarg(stack) => crate::tup![term::atom("badarg"), stack],
        },
        _ => {
            let args = Term::List(args.clone());
            tracing::debug!(peer = %peer.name, module = %mfa.module, function = %mfa.function, args = %args, "spawn of a function we do not have: undef");
            crate::tup![
                term::atom("undef"),
                term::list(vec![crate::tup![
                    Term::Atom(mfa.module.clone()),
                    Term::Atom(mfa.function.clone()),
                    args,
                    term::nil()
                ]])
            ]
        }
    };
    // A pid that names "the process that ran the call"; it is never alive, so a
    // late monitor or link to it gets noproc.
    let fake = node.process();
    let fake_pid = fake.pid().clone();
    drop(fake);
    let flags = (if wants_monitor {
        SPAWN_REPLY_MONITOR
    } else {
        0
    }) | (if wants_link { SPAWN_REPLY_LINK } else { 0 });
    node.send_control(
        &peer.name,
        Message::spawn_reply(
            req_id.clone(),
            from.clone(),
            FixInteger::from(flags),
            PidOrAtom::Pid(fake_pid.clone()),
        ),
    );
    // A process that exits `normal` sends no exit signal through a link.
    if wants_link && !term::is_atom(&reason, "normal") {
        node.send_control(
            &peer.name,
            Message::payload_exit(fake_pid.clone(), from.clone(), reason.clone()),
        );
    }
    if wants_monitor {
        node.send_control(
            &peer.name,
            Message::payload_monitor_p_exit(PidOrAtom::Pid(fake_pid), from, req_id, reason),
        );
    }
}
