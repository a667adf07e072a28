//! Calling functions on other nodes as `erpc:call/5` does.
//!
//! The caller's side of erpc: a SPAWN_REQUEST for `erpc:execute_call/4`
//! with a monitor, then the spawned process's DOWN, whose reason carries the
//! result (`{Ref, return, Value}`) or the exception (`{Ref, Class, Reason,
//! Stack}`, `{Ref, throw | exit, Reason}` from our own nodes). Works against
//! BEAM nodes and Rust nodes alike, since both answer that request.
//!
//! What it owns: the request's lifetime (one short-lived process with a
//! mailbox per call) and the reading of the answer. It never waits past the
//! caller's timeout, never panics on what a peer answers (any shape it does
//! not know is [`RpcCallError::Unexpected`]), and never leaves a monitor
//! behind: a timed-out or failed call demonitors.

use std::time::Duration;

use super::table::MonitorObject;
use super::Node;
use crate::dist::message::{Message, Mfa};
use crate::term::{self, FixInteger, List, Reference, Term};

/// Why a remote call did not return a value. Each is distinct, as erpc's
/// own errors are.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RpcCallError {
    /// The function raised: `erpc:call` would raise `{exception, Reason, Stack}`
    /// (class `error`), or throw/exit it again.
    #[error("{class}: {reason:?}")]
    Exception {
        class: String,
        reason: Term,
        stack: Term,
    },
    /// No answer within the timeout (`{erpc, timeout}`).
    #[error("rpc timed out")]
    Timeout,
    /// The node could not be reached or went down (`{erpc, noconnection}`).
    #[error("no connection to the node")]
    NoConnection,
    /// The node refused the spawn (`{erpc, notsup}` and the like).
    #[error("the node refused the call: {0:?}")]
    Refused(Term),
    /// The process running the call died without a result (`{erpc, {exit, R}}`
    /// shapes): killed, or another reason the call did not set.
    #[error("the call's process exited: {0:?}")]
    Exit(Term),
}

impl Node {
    /// `erpc:call(node, module, function, args, timeout)`. `module` and
    /// `function` are atom texts (`"Elixir.MapSet"`, `"new"`). A call to this
    /// node runs the Rust function registered for it.
    pub async fn rpc(
        &self,
        node: &str,
        module: &str,
        function: &str,
        args: Vec<Term>,
        timeout: Duration,
    ) -> Result<Term, RpcCallError> {
        if node == self.name() {
            return self.rpc_local(module, function, args);
        }
        match tokio::time::timeout(timeout, self.connect(node)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(RpcCallError::NoConnection),
            Err(_) => return Err(RpcCallError::Timeout),
        }
        let mut me = self.process();
        let request = self.make_ref();
        let result_ref = self.make_ref();
        let pid = me.pid().clone();
        // The DOWN of the spawned process comes back under the request's
        // reference; recording it as our monitor on that node also turns a
        // nodedown into DOWN `noconnection`.
        self.with_table(|t| {
            if let Some(n) = t.local_id(&pid) {
                t.monitor_remote(
                    n,
                    MonitorObject::Name("erpc".into(), node.to_string()),
                    node,
                    request.clone(),
                );
            }
            ((), vec![])
        });
        self.send_control(
            node,
            Message::spawn_request(
                request.clone(),
                pid.clone(),
                pid.clone(),
                Mfa {
                    module: term::Atom::from("erpc"),
                    function: term::Atom::from("execute_call"),
                    arity: FixInteger::from(4),
                },
                List::from(vec![term::atom("monitor")]),
                List::from(vec![
                    Term::Reference(Box::new(result_ref.clone())),
                    term::atom(module),
                    term::atom(function),
                    term::list(args),
                ]),
            ),
        );
        let req = Term::Reference(Box::new(request.clone()));
        let answer = me
            .receive_match(
                |m| match term::as_tuple(m) {
                    Some([tag, r, ..]) => {
                        (term::is_atom(tag, "DOWN") || term::is_atom(tag, "spawn_reply"))
                            && r == &req
                    }
                    _ => false,
                },
                Some(timeout),
            )
            .await;
        let Ok(Some(answer)) = answer else {
            me.demonitor(&request, true);
            return Err(RpcCallError::Timeout);
        };
        let result = Term::Reference(Box::new(result_ref));
        match term::as_tuple(&answer) {
            Some([_, _, status, reason]) if term::is_atom(status, "error") => {
                Err(RpcCallError::Refused(reason.clone()))
            }
            Some([_, _, _process, _object, reason]) => read_result(&result, reason),
            _ => Err(RpcCallError::Exit(answer.clone())),
        }
    }

    /// `erpc:cast(node, module, function, args)`: runs it there and asks for
    /// nothing back; a node that cannot run it says nothing either. `false`
    /// when the node cannot be reached.
    pub async fn rpc_cast(
        &self,
        node: &str,
        module: &str,
        function: &str,
        args: Vec<Term>,
    ) -> bool {
        if node == self.name() {
            let _ = self.rpc_local(module, function, args);
            return true;
        }
        if self.connect(node).await.is_err() {
            return false;
        }
        // The requester only needs to exist: the reply (a pid) is dropped.
        let me = self.process();
        self.send_control(
            node,
            Message::spawn_request(
                self.make_ref(),
                me.pid().clone(),
                me.pid().clone(),
                Mfa {
                    module: term::Atom::from("erpc"),
                    function: term::Atom::from("execute_cast"),
                    arity: FixInteger::from(3),
                },
                List::from(Vec::new()),
                List::from(vec![
                    term::atom(module),
                    term::atom(function),
                    term::list(args),
                ]),
            ),
        );
        true
    }

    /// `erpc:multicall(nodes, module, function, args, timeout)`: the same
    /// call on every node at once, each answer in the order of `nodes`.
    pub async fn multicall(
        &self,
        nodes: &[String],
        module: &str,
        function: &str,
        args: Vec<Term>,
        timeout: Duration,
    ) -> Vec<(String, Result<Term, RpcCallError>)> {
        let calls = nodes.iter().map(|n| {
            let (node, args) = (self.clone(), args.clone());
            let n = n.clone();
            let (m, f) = (module.to_string(), function.to_string());
            tokio::spawn(async move {
                let r = node.rpc(&n, &m, &f, args, timeout).await;
                (n, r)
            })
        });
        let mut out = Vec::with_capacity(nodes.len());
        for (call, n) in calls.collect::<Vec<_>>().into_iter().zip(nodes) {
            out.push(match call.await {
                Ok(answer) => answer,
                // The task only ends early if the runtime is going away.
                Err(_) => (n.clone(), Err(RpcCallError::Timeout)),
            });
        }
        out
    }

    fn rpc_local(
        &self,
        module: &str,
        function: &str,
        args: Vec<Term>,
    ) -> Result<Term, RpcCallError> {
        let Some(f) = self.function(module, function, args.len()) else {
            // As a BEAM node without that module raises it.
            let stack = term::list(vec![crate::tup![
                term::atom(module),
                term::atom(function),
                term::list(args),
                term::nil()
            ]]);
            return Err(RpcCallError::Exception {
                class: "error".into(),
                reason: term::atom("undef"),
                stack,
            });
        };
        f(self, args).map_err(|e| {
            let (class, reason) = match e {
                super::RpcError::Error(r) => ("error", r),
                super::RpcError::Exit(r) => ("exit", r),
                super::RpcError::Throw(r) => ("throw", r),
            };
            RpcCallError::Exception {
                class: class.into(),
                reason,
                stack: term::nil(),
            }
        })
    }
}

/// A spawn request's SPAWN_REPLY error as the message a BEAM process gets:
/// `{spawn_reply, ReqId, error, Reason}`. The monitor never came into being.
pub(super) fn spawn_refused_message(request: &Reference, reason: Term) -> Term {
    crate::tup![
        term::atom("spawn_reply"),
        Term::Reference(Box::new(request.clone())),
        term::atom("error"),
        reason
    ]
}

/// The exit reason of an `erpc:execute_call/4` process, read as erpc does.
fn read_result(result: &Term, reason: &Term) -> Result<Term, RpcCallError> {
    if term::is_atom(reason, "noconnection") {
        return Err(RpcCallError::NoConnection);
    }
    let exception = |class: &Term, reason: &Term, stack: Term| RpcCallError::Exception {
        class: term::as_atom(class).unwrap_or("error").to_string(),
        reason: reason.clone(),
        stack,
    };
    match term::as_tuple(reason) {
        Some([r, tag, value]) if r == result && term::is_atom(tag, "return") => Ok(value.clone()),
        Some([r, class, value]) if r == result => Err(exception(class, value, term::nil())),
        Some([r, class, value, stack]) if r == result => {
            Err(exception(class, value, stack.clone()))
        }
        _ => Err(RpcCallError::Exit(reason.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: u32) -> Term {
        Term::Reference(Box::new(Reference::from(("a@b", n))))
    }

    #[test]
    fn results_and_exceptions_are_told_apart() {
        let res = r(1);
        let ok = crate::tup![res.clone(), term::atom("return"), term::int(3)];
        assert_eq!(read_result(&res, &ok), Ok(term::int(3)));
        let err = crate::tup![
            res.clone(),
            term::atom("error"),
            term::atom("undef"),
            term::list(vec![])
        ];
        assert!(matches!(
            read_result(&res, &err),
            Err(RpcCallError::Exception { class, reason, .. }) if class == "error" && reason == term::atom("undef")
        ));
        let thrown = crate::tup![res.clone(), term::atom("throw"), term::atom("x")];
        assert!(matches!(
            read_result(&res, &thrown),
            Err(RpcCallError::Exception { class, .. }) if class == "throw"
        ));
        assert_eq!(
            read_result(&res, &term::atom("noconnection")),
            Err(RpcCallError::NoConnection)
        );
        // Another call's result reference, or a plain exit reason, is no result.
        let other = crate::tup![r(2), term::atom("return"), term::int(3)];
        assert!(matches!(
            read_result(&res, &other),
            Err(RpcCallError::Exit(_))
        ));
        assert_eq!(
            read_result(&res, &term::atom("killed")),
            Err(RpcCallError::Exit(term::atom("killed")))
        );
    }
}
