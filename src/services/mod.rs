//! What every BEAM node expects to find on a peer.
//!
//! - `net_kernel` answers `{is_auth, Node}` so `net_adm:ping/1` gets `pong`;
//! - `global_name_server` answers each `init_connect` with `in_sync`, so
//!   `global:sync()` returns on every BEAM node while we hold no global names;
//! - `rex` answers old-style `{call, M, F, A, GL}` requests;
//! - [`erpc`] emulates `erpc:call/4` for functions implemented in Rust (a table
//!   any Rust code can add to) and answers everything else with `undef`, as a
//!   BEAM node without that module does.
//!
//! - [`pg`]: process groups, OTP's `pg` protocol; the default scope `pg`
//!   runs on every node.
//!
//! None of these ever stays silent: a peer that asks gets an answer or a refusal,
//! because every remote caller on the BEAM waits forever otherwise.

pub mod erpc;
pub mod introspection;
pub mod pg;

use crate::node::{Dest, Node, RpcError};
use crate::process::gen_server::{self, CallReply, Flow, GenServer, StartOptions};
use crate::process::Process;
use crate::term::{self, Term};

/// Starts the services on a freshly started node.
pub(crate) fn start(node: &Node) {
    erpc::register_builtins(node);
    introspection::register(node);
    for (name, result) in [
        (
            "net_kernel",
            gen_server::start(node, NetKernel, StartOptions::named("net_kernel")),
        ),
        (
            "global_name_server",
            gen_server::start(
                node,
                GlobalNameServer,
                StartOptions::named("global_name_server"),
            ),
        ),
        (
            "rex",
            gen_server::start(node, Rex, StartOptions::named("rex")),
        ),
    ] {
        if let Err(e) = result {
            tracing::error!(service = name, error = %e, "service did not start");
        }
    }
    if let Err(e) = pg::default_scope(node) {
        tracing::error!(service = pg::DEFAULT_SCOPE, error = %e, "service did not start");
    }
}

struct NetKernel;

impl GenServer for NetKernel {
    async fn handle_call(
        &mut self,
        request: Term,
        _from: Term,
        process: &mut Process,
    ) -> CallReply {
        match term::as_tuple(&request) {
            Some([tag, _node]) if term::is_atom(tag, "is_auth") => {
                CallReply::Reply(term::atom("yes"))
            }
            _ => match term::as_atom(&request) {
                Some("nodename") => CallReply::Reply(term::atom(process.node().name())),
                Some("longnames") => CallReply::Reply(term::atom(
                    if process
                        .node()
                        .name()
                        .split('@')
                        .nth(1)
                        .is_some_and(|h| h.contains('.'))
                    {
                        "true"
                    } else {
                        "false"
                    },
                )),
                Some("ticktime") => CallReply::Reply(term::int(
                    process.node().config().net_ticktime.as_secs() as i64,
                )),
                _ => {
                    tracing::debug!(request = %request.in_node(process.node().name()), "net_kernel: unsupported call");
                    CallReply::Reply(term::atom("ignored"))
                }
            },
        }
    }
}

struct GlobalNameServer;

impl GenServer for GlobalNameServer {
    async fn handle_call(
        &mut self,
        request: Term,
        _from: Term,
        _process: &mut Process,
    ) -> CallReply {
        tracing::debug!(request = %request, "global_name_server: unsupported call");
        CallReply::Reply(term::atom("ok"))
    }

    async fn handle_cast(&mut self, request: Term, process: &mut Process) -> Flow {
        // `{init_connect, Vsn, Node, InitMsg}`: the peer starts its global sync with
        // us. We own no global names, so we are in sync at once.
        if let Some([tag, _vsn, peer, _init]) = term::as_tuple(&request) {
            if term::is_atom(tag, "init_connect") {
                if let Some(peer) = term::as_atom(peer) {
                    let me = process.node().name().to_string();
                    // Only over the connection the request came on: a late
                    // init_connect must not reopen a connection that closed.
                    process.send_noconnect(
                        Dest::Remote("global_name_server".into(), peer.to_string()),
                        crate::tup![
                            term::atom("$gen_cast"),
                            crate::tup![term::atom("in_sync"), term::atom(&me), term::atom("true")]
                        ],
                    );
                }
            }
        }
        Flow::Continue
    }
}

struct Rex;

impl GenServer for Rex {
    async fn handle_call(
        &mut self,
        request: Term,
        _from: Term,
        process: &mut Process,
    ) -> CallReply {
        CallReply::Reply(rex_apply(process.node(), &request))
    }

    async fn handle_info(&mut self, msg: Term, process: &mut Process) -> Flow {
        // `{From, {call, M, F, A, GL}}` answered with `{rex, Reply}`.
        if let Some([Term::Pid(from), request]) = term::as_tuple(&msg) {
            let reply = rex_apply(process.node(), request);
            process.send(from, crate::tup![term::atom("rex"), reply]);
        }
        Flow::Continue
    }
}

fn rex_apply(node: &Node, request: &Term) -> Term {
    let badrpc = |why: Term| crate::tup![term::atom("badrpc"), why];
    let exit = |reason: Term| badrpc(crate::tup![term::atom("EXIT"), reason]);
    let Some([tag, m, f, a, _gl]) = term::as_tuple(request) else {
        return badrpc(term::atom("notsup"));
    };
    if !term::is_atom(tag, "call") {
        return badrpc(term::atom("notsup"));
    }
    // What `catch apply(M, F, A)` gives in the BEAM's rex, wrapped as rex wraps it.
    match erpc::apply(node, m, f, a) {
        erpc::Applied::Ran(Ok(v)) => v,
        erpc::Applied::Ran(Err(RpcError::Throw(v))) => v,
        erpc::Applied::Ran(Err(RpcError::Exit(r))) => exit(r),
        erpc::Applied::Ran(Err(RpcError::Error(r))) => exit(crate::tup![r, term::nil()]),
        erpc::Applied::Undef(stack) => exit(crate::tup![term::atom("undef"), stack]),
        erpc::Applied::Badarg(stack) => exit(crate::tup![term::atom("badarg"), stack]),
    }
}
