//! Rust processes: a pid, a mailbox with selective receive, and the calls a
//! process makes (send, link, monitor, exit, gen_server call).
//!
//! A [`Process`] is owned by exactly one task. Messages that a selective receive
//! skips stay in the mailbox in arrival order. Once the process has been killed
//! by an exit signal every receive returns [`Exited`]; the process never sees a
//! message after its death.
//!
//! [`gen_server`] builds OTP-compatible servers on top of this.

pub mod gen_server;

use std::collections::VecDeque;
use std::time::Duration;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::node::info::ProcMeta;

use crate::node::table::Signal;
use crate::node::{Dest, Node};
use crate::term::{self, Pid, Reference, Term};

/// How a spawned process ended: its exit reason.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessExit {
    Normal,
    Reason(Term),
}

impl ProcessExit {
    pub fn into_term(self) -> Term {
        match self {
            ProcessExit::Normal => term::atom("normal"),
            ProcessExit::Reason(t) => t,
        }
    }
}

impl From<Term> for ProcessExit {
    fn from(t: Term) -> Self {
        if term::is_atom(&t, "normal") {
            ProcessExit::Normal
        } else {
            ProcessExit::Reason(t)
        }
    }
}

impl From<Exited> for ProcessExit {
    fn from(e: Exited) -> Self {
        ProcessExit::from(e.0)
    }
}

/// Alias kept for readers coming from OTP.
pub type ExitReason = ProcessExit;

/// The process was terminated by an exit signal; the reason is inside.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("process exited: {0}")]
pub struct Exited(pub Term);

/// Why a gen_server call failed. Each is distinct, as in OTP's exit reasons.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("call timed out")]
    Timeout,
    #[error("no such process")]
    NoProc,
    #[error("node is down or unreachable")]
    NodeDown,
    #[error("server exited: {0}")]
    Exit(Term),
    #[error("caller exited: {0}")]
    CallerExited(Term),
}

/// A process on this node: its pid and its mailbox.
pub struct Process {
    node: Node,
    pid: Pid,
    meta: Arc<ProcMeta>,
    rx: mpsc::UnboundedReceiver<Signal>,
    saved: VecDeque<Term>,
    exited: Option<Term>,
    /// Owned processes exit `normal` on drop; spawned ones are ended by their task.
    owned: bool,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process").field("pid", &self.pid).finish()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.owned && self.exited.is_none() {
            self.node.exit_process(&self.pid, term::atom("normal"));
        }
    }
}

impl Process {
    /// Alive with an empty mailbox: nothing received and left aside,
    /// nothing waiting. Reusing such a process for another call is like
    /// making a new one.
    pub(crate) fn is_idle(&self) -> bool {
        self.exited.is_none() && self.saved.is_empty() && self.rx.is_empty()
    }

    pub(crate) fn new(
        node: Node,
        pid: Pid,
        rx: mpsc::UnboundedReceiver<Signal>,
        meta: Arc<ProcMeta>,
        owned: bool,
    ) -> Self {
        Process {
            node,
            pid,
            meta,
            rx,
            saved: VecDeque::new(),
            exited: None,
            owned,
        }
    }

    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Messages waiting (including those skipped by selective receives).
    pub fn mailbox_len(&self) -> usize {
        self.saved.len() + self.rx.len()
    }

    async fn next_signal(&mut self) -> Result<Term, Exited> {
        if let Some(reason) = &self.exited {
            return Err(Exited(reason.clone()));
        }
        // Only a wait on an empty mailbox is `waiting`; the flag costs one
        // relaxed store either side of the await.
        let next = match self.rx.try_recv() {
            Ok(sig) => Some(sig),
            Err(mpsc::error::TryRecvError::Empty) => {
                self.meta.set_waiting(true);
                let sig = self.rx.recv().await;
                self.meta.set_waiting(false);
                sig
            }
            Err(mpsc::error::TryRecvError::Disconnected) => None,
        };
        match next {
            Some(Signal::Message(m)) => Ok(m),
            Some(Signal::Exited(reason)) => {
                self.exited = Some(reason.clone());
                Err(Exited(reason))
            }
            None => {
                let reason = term::atom("killed");
                self.exited = Some(reason.clone());
                Err(Exited(reason))
            }
        }
    }

    /// The next message, in arrival order.
    pub async fn receive(&mut self) -> Result<Term, Exited> {
        if let Some(m) = self.saved.pop_front() {
            self.meta.taken(1);
            return Ok(m);
        }
        let m = self.next_signal().await?;
        self.meta.taken(1);
        Ok(m)
    }

    /// The next message with a timeout; `Ok(None)` when it expires.
    pub async fn receive_timeout(&mut self, timeout: Duration) -> Result<Option<Term>, Exited> {
        self.receive_match(|_| true, Some(timeout)).await
    }

    /// Selective receive: the first message (in arrival order) for which `matches`
    /// is true. Others stay in the mailbox in order. `None` timeout waits forever.
    pub async fn receive_match<F>(
        &mut self,
        mut matches: F,
        timeout: Option<Duration>,
    ) -> Result<Option<Term>, Exited>
    where
        F: FnMut(&Term) -> bool,
    {
        if let Some(pos) = self.saved.iter().position(&mut matches) {
            self.meta.taken(1);
            return Ok(self.saved.remove(pos));
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, self.next_signal()).await {
                    Ok(r) => r?,
                    Err(_) => return Ok(None),
                },
                None => self.next_signal().await?,
            };
            if matches(&next) {
                self.meta.taken(1);
                return Ok(Some(next));
            }
            self.saved.push_back(next);
        }
    }

    /// Takes every waiting message matching `matches` out of the mailbox without waiting.
    pub fn flush_matching<F>(&mut self, mut matches: F) -> usize
    where
        F: FnMut(&Term) -> bool,
    {
        let mut removed = 0;
        while let Ok(sig) = self.rx.try_recv() {
            match sig {
                Signal::Message(m) => self.saved.push_back(m),
                Signal::Exited(r) => {
                    self.exited = Some(r);
                    break;
                }
            }
        }
        self.saved.retain(|m| {
            let hit = matches(m);
            if hit {
                removed += 1;
            }
            !hit
        });
        if removed > 0 {
            self.meta.taken(removed);
        }
        removed
    }

    /// Sends `msg` to a pid, a local name or `{name, node}`.
    pub fn send(&self, to: impl Into<Dest>, msg: Term) {
        self.send_to(&to.into(), msg);
    }

    /// [`send`](Self::send) to a destination kept by the caller: a loop
    /// sending to the same `{name, node}` need not clone it (two strings)
    /// for every message.
    pub fn send_to(&self, to: &Dest, msg: Term) {
        self.meta.sent();
        self.meta.trace.sent(|| (msg.clone(), dest_term(to)));
        self.node.send(&self.pid, to, msg);
    }

    /// Sends without opening a connection (`[noconnect]`): dropped when the
    /// destination's node is not connected.
    pub fn send_noconnect(&self, to: impl Into<Dest>, msg: Term) {
        self.meta.sent();
        let to = to.into();
        self.meta.trace.sent(|| (msg.clone(), dest_term(&to)));
        self.node.send_noconnect(&self.pid, &to, msg);
    }

    /// Sends to an alias reference.
    pub fn send_alias(&self, alias: &Reference, msg: Term) {
        self.meta.sent();
        self.meta
            .trace
            .sent(|| (msg.clone(), Term::Reference(Box::new(alias.clone()))));
        self.node.send_alias(&self.pid, alias, msg);
    }

    pub fn link(&self, other: &Pid) {
        self.node.link(&self.pid, other);
    }

    pub fn unlink(&self, other: &Pid) {
        self.node.unlink(&self.pid, other);
    }

    pub fn monitor(&self, target: impl Into<Dest>) -> Reference {
        self.node.monitor(&self.pid, &target.into())
    }

    /// Cancels a monitor; with `flush`, removes a `DOWN` for it already received.
    pub fn demonitor(&mut self, reference: &Reference, flush: bool) {
        self.node.demonitor(&self.pid, reference);
        if flush {
            let r = Term::Reference(Box::new(reference.clone()));
            self.flush_matching(|m| is_down_for(m, &r));
        }
    }

    /// `process_flag(trap_exit, On)`; returns the previous value.
    pub fn trap_exit(&self, on: bool) -> bool {
        self.node.set_trap_exit(&self.pid, on)
    }

    pub fn register(&self, name: &str) -> Result<(), crate::node::RegisterError> {
        self.node.register(name, &self.pid)
    }

    /// `exit(Pid, Reason)`.
    pub fn exit(&self, to: &Pid, reason: Term) {
        self.node.exit(&self.pid, to, reason);
    }

    /// A new reference.
    pub fn make_ref(&self) -> Reference {
        self.node.make_ref()
    }

    /// Answers a gen_server call (`From` as received in `{'$gen_call', From, Req}`).
    pub fn reply(&self, from: &Term, reply: Term) {
        // Traced as the message it is, `{Tag, Reply}` to the caller's pid.
        self.meta.trace.sent(|| match term::as_tuple(from) {
            Some([to, tag]) => (crate::tup![tag.clone(), reply.clone()], to.clone()),
            _ => (reply.clone(), from.clone()),
        });
        self.node.reply(&self.pid, from, reply);
    }

    /// `gen_server:cast/2`.
    pub fn cast(&self, to: impl Into<Dest>, request: Term) {
        self.send(to, crate::tup![term::atom("$gen_cast"), request]);
    }

    /// `gen_server:call/3` to any gen_server, local or on any node, BEAM or Rust.
    /// Monitors the server and uses the monitor reference as an alias, as OTP 24+
    /// does, so late replies after a timeout are dropped.
    pub async fn call(
        &mut self,
        to: impl Into<Dest>,
        request: Term,
        timeout: Duration,
    ) -> Result<Term, CallError> {
        let to = match to.into() {
            Dest::Via(v) => Dest::Pid(v.whereis().ok_or(CallError::NoProc)?),
            to => to,
        };
        let node = match &to {
            Dest::Remote(_, node) => Some(node.as_str()),
            Dest::Pid(pid) => Some(pid.node.as_str()),
            _ => None,
        };
        if let Some(node) = node {
            if node != self.node.name() && self.node.connect(node).await.is_err() {
                return Err(CallError::NodeDown);
            }
        }
        let mref = self.monitor(to.clone());
        self.node.add_alias(&self.pid, &mref);
        let r = Term::Reference(Box::new(mref.clone()));
        let tag = Term::ImproperList(term::ImproperList::from((
            vec![term::atom("alias")],
            r.clone(),
        )));
        let from = crate::tup![Term::Pid(self.pid.clone()), tag.clone()];
        self.send(to, crate::tup![term::atom("$gen_call"), from, request]);
        let got = self
            .receive_match(
                |m| match term::as_tuple(m) {
                    Some([t, _]) => t == &tag,
                    _ => is_down_for(m, &r),
                },
                Some(timeout),
            )
            .await;
        self.node.remove_alias(&self.pid, &mref);
        let result = match got {
            Err(Exited(reason)) => Err(CallError::CallerExited(reason)),
            Ok(None) => Err(CallError::Timeout),
            // The reply is moved out, not cloned: it can be a 10 MB binary.
            Ok(Some(Term::Tuple(t))) if t.elements.len() == 2 => {
                Ok(t.elements.into_iter().nth(1).unwrap_or_else(term::nil))
            }
            Ok(Some(m)) => match term::as_tuple(&m) {
                Some([_, _, _, _, reason]) => Err(match term::as_atom(reason) {
                    Some("noproc") => CallError::NoProc,
                    Some("noconnection") => CallError::NodeDown,
                    _ => CallError::Exit(reason.clone()),
                }),
                _ => Err(CallError::Exit(m.clone())),
            },
        };
        if !matches!(
            result,
            Err(CallError::NoProc | CallError::NodeDown | CallError::Exit(_))
        ) {
            self.demonitor(&mref, true);
        }
        result
    }
}

/// Where a message went, as a trace message names it: a pid, a name or
/// `{Name, Node}`.
fn dest_term(to: &Dest) -> Term {
    match to {
        Dest::Pid(p) => Term::Pid(p.clone()),
        Dest::Name(n) => term::atom(n),
        Dest::Remote(n, node) => crate::tup![term::atom(n), term::atom(node)],
        Dest::Via(v) => crate::tup![term::atom("via"), v.name().clone()],
    }
}

fn is_down_for(m: &Term, r: &Term) -> bool {
    matches!(term::as_tuple(m), Some([d, rr, _, _, _]) if term::is_atom(d, "DOWN") && rr == r)
}
