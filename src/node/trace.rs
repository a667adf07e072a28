//! Tracing a local process's messages, as `erlang:trace/3` does on the BEAM:
//! every message that lands in its mailbox and every message it sends is
//! reported to a tracer pid as `{trace, Pid, 'receive', Msg}` /
//! `{trace, Pid, send, Msg, To}` (`trace_ts` with a timestamp when asked),
//! and with `procs` its exit as `{trace, Pid, exit, Reason}`.
//!
//! What it owns: the [`TraceHook`] each process carries in its counters
//! (`ProcMeta`) and the forwarder process that turns hook events into
//! trace messages. The hook is one relaxed atomic load on the message path
//! when nobody traces (the lock behind it is only taken when the flag is
//! set); events go through an unbounded channel, so the mailbox writer
//! (who holds the process table's lock) never sends anything itself.
//!
//! Unlike the BEAM, the tracer may be on another node: the forwarder
//! monitors it, and when it exits or its node's connection goes, tracing
//! stops (a tracer that vanished never leaves a process traced).
//!
//! What it must never do: slow an untraced process, or keep tracing for a
//! tracer that is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::node::info::ProcMeta;
use crate::process::{Process, ProcessExit};
use crate::term::{self, Pid, Term};

/// Which events a process's tracer gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceFlags {
    pub send: bool,
    pub receive: bool,
    /// The process's exit (the BEAM's `procs` also reports spawn, link and
    /// register events; a Rust process reports only its exit).
    pub procs: bool,
    /// `trace_ts` tuples with the event's `{MegaSecs, Secs, MicroSecs}`.
    pub timestamp: bool,
}

impl TraceFlags {
    /// Every event and the timestamp.
    pub const ALL: TraceFlags = TraceFlags {
        send: true,
        receive: true,
        procs: true,
        timestamp: true,
    };

    /// Any event at all (a timestamp alone traces nothing).
    pub fn any(&self) -> bool {
        self.send || self.receive || self.procs
    }

    fn union(self, o: TraceFlags) -> TraceFlags {
        TraceFlags {
            send: self.send || o.send,
            receive: self.receive || o.receive,
            procs: self.procs || o.procs,
            timestamp: self.timestamp || o.timestamp,
        }
    }

    fn minus(self, o: TraceFlags) -> TraceFlags {
        TraceFlags {
            send: self.send && !o.send,
            receive: self.receive && !o.receive,
            procs: self.procs && !o.procs,
            timestamp: self.timestamp && !o.timestamp,
        }
    }

    /// The flag list `erlang:trace_info(Pid, flags)` answers, in the BEAM's names.
    pub fn to_term(&self) -> Term {
        let mut out = Vec::new();
        for (on, name) in [
            (self.procs, "procs"),
            (self.receive, "receive"),
            (self.send, "send"),
            (self.timestamp, "timestamp"),
        ] {
            if on {
                out.push(term::atom(name));
            }
        }
        term::list(out)
    }

    /// `erlang:trace/3`'s flag list: the flags, and the `{tracer, Pid}`
    /// given. `Err(flag)` names the first flag we do not support.
    pub fn parse(list: &Term) -> Result<(TraceFlags, Option<Pid>), Term> {
        let items = term::as_list(list).ok_or_else(|| list.clone())?;
        let mut flags = TraceFlags::default();
        let mut tracer = None;
        for item in &items {
            match (term::as_atom(item), term::as_tuple(item)) {
                (Some("send"), _) => flags.send = true,
                (Some("receive"), _) => flags.receive = true,
                (Some("procs"), _) => flags.procs = true,
                (Some("timestamp"), _) => flags.timestamp = true,
                (Some("all"), _) => flags = flags.union(TraceFlags::ALL),
                (_, Some([t, Term::Pid(p)])) if term::is_atom(t, "tracer") => {
                    tracer = Some(p.clone())
                }
                _ => return Err(item.clone()),
            }
        }
        Ok((flags, tracer))
    }
}

/// One traced event, as the hook records it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TraceEvent {
    Receive(Term),
    Send { msg: Term, to: Term },
}

struct Sink {
    flags: TraceFlags,
    tracer: Pid,
    forwarder: Pid,
    events: mpsc::UnboundedSender<Recorded>,
}

/// An event with its time when the tracer asked for timestamps.
type Recorded = (TraceEvent, Option<SystemTime>);

/// The trace state one process carries. Untraced, it costs one relaxed
/// load per message.
#[derive(Default)]
pub(crate) struct TraceHook {
    on: AtomicBool,
    /// Boxed: every process carries the hook, few are ever traced.
    sink: Mutex<Option<Box<Sink>>>,
}

impl std::fmt::Debug for TraceHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceHook")
            .field("on", &self.on.load(Ordering::Relaxed))
            .finish()
    }
}

impl TraceHook {
    /// A message landed in the mailbox.
    #[inline]
    pub(crate) fn received(&self, msg: &Term) {
        if self.on.load(Ordering::Relaxed) {
            self.record(|f| f.receive, || TraceEvent::Receive(msg.clone()));
        }
    }

    /// The process sent a message: `what` gives it and where it went (a
    /// pid, a name, `{Name, Node}` or an alias), only asked when traced.
    #[inline]
    pub(crate) fn sent(&self, what: impl FnOnce() -> (Term, Term)) {
        if self.on.load(Ordering::Relaxed) {
            self.record(
                |f| f.send,
                || {
                    let (msg, to) = what();
                    TraceEvent::Send { msg, to }
                },
            );
        }
    }

    #[cold]
    fn record(&self, wanted: impl Fn(&TraceFlags) -> bool, event: impl FnOnce() -> TraceEvent) {
        let sink = self.lock();
        if let Some(s) = sink.as_ref().filter(|s| wanted(&s.flags)) {
            // A closed channel means the forwarder is gone: it clears the
            // sink itself on its way out.
            let at = s.flags.timestamp.then(SystemTime::now);
            let _ = s.events.send((event(), at));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Box<Sink>>> {
        self.sink.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The flags and the tracer, when traced.
    pub(crate) fn info(&self) -> Option<(TraceFlags, Pid)> {
        self.lock().as_ref().map(|s| (s.flags, s.tracer.clone()))
    }

    /// Drops the sink when it is still the one `forwarder` serves.
    fn clear_if(&self, forwarder: &Pid) {
        let mut sink = self.lock();
        if sink.as_ref().is_some_and(|s| &s.forwarder == forwarder) {
            *sink = None;
            self.on.store(false, Ordering::Relaxed);
        }
    }
}

/// Why `erlang:trace/3` refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("no such process")]
    NoProc,
    #[error("the process is already traced by {0}")]
    AlreadyTraced(Pid),
    #[error("turning tracing on needs a tracer")]
    NoTracer,
}

/// Turns flags on or off for the process whose hook is in `meta`; starts
/// a forwarder (a process of this node) when tracing starts.
///
/// Never called under the process table's lock: the forwarder is spawned
/// (which takes that lock) before the hook's lock is taken, as a mailbox
/// writer takes the hook's lock under the table's.
pub(crate) fn set(
    node: &crate::Node,
    target: &Pid,
    meta: &Arc<ProcMeta>,
    on: bool,
    flags: TraceFlags,
    tracer: Option<Pid>,
) -> Result<(), TraceError> {
    let hook = &meta.trace;
    if !on {
        let mut sink = hook.lock();
        if let Some(s) = sink.as_mut() {
            s.flags = s.flags.minus(flags);
            if !s.flags.any() {
                // The forwarder sees its channel close once it has sent
                // what was already recorded, and ends.
                *sink = None;
                hook.on.store(false, Ordering::Relaxed);
            }
        }
        return Ok(());
    }
    {
        let mut sink = hook.lock();
        match (sink.as_mut(), &tracer) {
            (Some(s), Some(t)) if &s.tracer != t => {
                return Err(TraceError::AlreadyTraced(s.tracer.clone()))
            }
            (Some(s), _) => {
                s.flags = s.flags.union(flags);
                return Ok(());
            }
            (None, None) => return Err(TraceError::NoTracer),
            (None, Some(_)) if !flags.any() => return Ok(()),
            (None, Some(_)) => {}
        }
    }
    let Some(tracer) = tracer else {
        return Err(TraceError::NoTracer);
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let forwarder = spawn_forwarder(node, target.clone(), tracer.clone(), meta.clone(), rx);
    node.set_initial_call(
        &forwarder,
        crate::node::info::Mfa::new("beam_peer", "tracer", 0),
    );
    let mut sink = hook.lock();
    match sink.as_mut() {
        // Another tracer came first meanwhile: ours ends as its channel closes.
        Some(s) if s.tracer != tracer => Err(TraceError::AlreadyTraced(s.tracer.clone())),
        Some(s) => {
            s.flags = s.flags.union(flags);
            Ok(())
        }
        None => {
            *sink = Some(Box::new(Sink {
                flags,
                tracer,
                forwarder,
                events: tx,
            }));
            hook.on.store(true, Ordering::Relaxed);
            Ok(())
        }
    }
}

/// `{MegaSecs, Secs, MicroSecs}` of `t`, as `erlang:timestamp/0`.
pub fn timestamp_term(t: SystemTime) -> Term {
    let us = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as i64;
    crate::tup![
        term::int(us / 1_000_000_000_000),
        term::int((us / 1_000_000) % 1_000_000),
        term::int(us % 1_000_000)
    ]
}

/// The trace message the BEAM would send for `event` of `target`.
pub(crate) fn trace_message(
    target: &Pid,
    what: &str,
    args: Vec<Term>,
    at: Option<SystemTime>,
) -> Term {
    let mut elements = vec![
        term::atom(if at.is_some() { "trace_ts" } else { "trace" }),
        Term::Pid(target.clone()),
        term::atom(what),
    ];
    elements.extend(args);
    if let Some(t) = at {
        elements.push(timestamp_term(t));
    }
    term::tuple(elements)
}

fn event_message(target: &Pid, event: TraceEvent, at: Option<SystemTime>) -> Term {
    match event {
        TraceEvent::Receive(m) => trace_message(target, "receive", vec![m], at),
        TraceEvent::Send { msg, to } => trace_message(target, "send", vec![msg, to], at),
    }
}

/// Clears the hook when the forwarder ends, however it ends (its task
/// can be aborted by an exit signal).
struct ClearOnDrop {
    meta: Arc<ProcMeta>,
    me: Pid,
}

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.meta.trace.clear_if(&self.me);
    }
}

fn is_down_of(m: &Term, pid: &Pid) -> Option<Term> {
    match term::as_tuple(m) {
        Some([d, _, _, Term::Pid(p), reason]) if term::is_atom(d, "DOWN") && p == pid => {
            Some(reason.clone())
        }
        _ => None,
    }
}

fn spawn_forwarder(
    node: &crate::Node,
    target: Pid,
    tracer: Pid,
    meta: Arc<ProcMeta>,
    mut events: mpsc::UnboundedReceiver<Recorded>,
) -> Pid {
    node.spawn(move |mut p: Process| async move {
        let _clear = ClearOnDrop {
            meta: meta.clone(),
            me: p.pid().clone(),
        };
        p.monitor(&tracer);
        p.monitor(&target);
        loop {
            tokio::select! {
                biased;
                ev = events.recv() => match ev {
                    Some((ev, at)) => p.send(&tracer, event_message(&target, ev, at)),
                    // Tracing was turned off and everything recorded is sent.
                    None => return ProcessExit::Normal,
                },
                m = p.receive() => {
                    let Ok(m) = m else { return ProcessExit::Normal };
                    if is_down_of(&m, &tracer).is_some() {
                        return ProcessExit::Normal;
                    }
                    if let Some(reason) = is_down_of(&m, &target) {
                        // Everything the process did was recorded before
                        // its death was: send it first.
                        let info = meta.trace.info();
                        while let Ok((ev, at)) = events.try_recv() {
                            p.send(&tracer, event_message(&target, ev, at));
                        }
                        if let Some((flags, _)) = info.filter(|(f, _)| f.procs) {
                            let at = flags.timestamp.then(SystemTime::now);
                            p.send(&tracer, trace_message(&target, "exit", vec![reason], at));
                        }
                        return ProcessExit::Normal;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_as_the_beam_names_them() {
        let tracer = Pid::new("t@h", 5, 0, 1);
        let list = term::list(vec![
            term::atom("send"),
            term::atom("receive"),
            term::atom("timestamp"),
            crate::tup![term::atom("tracer"), Term::Pid(tracer.clone())],
        ]);
        let (f, t) = TraceFlags::parse(&list).expect("parses");
        assert!(f.send && f.receive && f.timestamp && !f.procs);
        assert_eq!(t, Some(tracer));
        assert_eq!(
            f.to_term(),
            term::list(vec![
                term::atom("receive"),
                term::atom("send"),
                term::atom("timestamp")
            ])
        );
        let (all, _) = TraceFlags::parse(&term::list(vec![term::atom("all")])).expect("all");
        assert_eq!(all, TraceFlags::ALL);
        assert_eq!(
            TraceFlags::parse(&term::list(vec![term::atom("call")])),
            Err(term::atom("call"))
        );
    }

    #[test]
    fn flags_turn_off_one_by_one() {
        let f = TraceFlags::ALL.minus(TraceFlags {
            send: true,
            ..TraceFlags::default()
        });
        assert!(!f.send && f.receive && f.any());
        assert!(!f.minus(TraceFlags::ALL).any());
    }

    #[test]
    fn messages_are_the_beams_tuples() {
        let p = Pid::new("n@h", 7, 0, 1);
        let at = UNIX_EPOCH + Duration::from_micros(1_796_618_547_378_675);
        let m = event_message(
            &p,
            TraceEvent::Send {
                msg: term::atom("hi"),
                to: term::atom("echo"),
            },
            Some(at),
        );
        assert_eq!(
            m,
            crate::tup![
                term::atom("trace_ts"),
                Term::Pid(p.clone()),
                term::atom("send"),
                term::atom("hi"),
                term::atom("echo"),
                crate::tup![term::int(1796), term::int(618547), term::int(378675)]
            ]
        );
        let m = event_message(&p, TraceEvent::Receive(term::int(1)), None);
        assert_eq!(
            m,
            crate::tup![
                term::atom("trace"),
                Term::Pid(p),
                term::atom("receive"),
                term::int(1)
            ]
        );
    }

    #[test]
    fn an_untraced_hook_records_nothing() {
        let h = TraceHook::default();
        h.received(&term::atom("x"));
        h.sent(|| unreachable!("not asked when untraced"));
        assert!(h.info().is_none());
    }
}
