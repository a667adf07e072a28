//! What the node knows about each of its processes beyond the table's
//! links and monitors: the counters `erlang:process_info/2` reports.
//!
//! What it owns: [`ProcMeta`], one per process, shared by the node (which
//! counts a message in when it lands in the mailbox) and the [`Process`]
//! (which counts it out when its code takes it, and counts what it sends).
//! Every counter is one relaxed atomic: the message path pays one
//! uncontended add, never a lock.
//!
//! What it must never do: claim a measure it does not have. A Rust process
//! has no heap of its own, no reductions and no stack; what we report under
//! those names is said here, field by field, and in the README.
//!
//! [`Process`]: crate::process::Process

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::term::Pid;

/// `{Module, Function, Arity}` naming what a process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mfa {
    pub module: String,
    pub function: String,
    pub arity: u32,
}

impl Mfa {
    pub fn new(module: impl Into<String>, function: impl Into<String>, arity: u32) -> Mfa {
        Mfa {
            module: module.into(),
            function: function.into(),
            arity,
        }
    }
}

/// The counters of one process, shared by its mailbox's writers and its owner.
#[derive(Debug, Default)]
pub(crate) struct ProcMeta {
    /// Messages delivered and not yet taken by the process's code (those a
    /// selective receive skipped are still counted, as on the BEAM).
    queue: AtomicUsize,
    /// Messages the process's code took out of its mailbox or sent.
    work: AtomicU64,
    /// True while the process waits in a receive on an empty mailbox.
    waiting: AtomicBool,
    initial_call: OnceLock<Mfa>,
    /// Who traces the process's messages, if anyone (`erlang:trace/3`).
    pub(crate) trace: super::trace::TraceHook,
}

impl ProcMeta {
    pub(crate) fn delivered(&self) {
        self.queue.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery counted by [`ProcMeta::delivered`] failed (the mailbox is closed).
    pub(crate) fn undelivered(&self) {
        self.queue.fetch_sub(1, Ordering::Relaxed);
    }

    /// `n` messages handed to the process's code. Each was counted in
    /// before it was sent (see `Slot::send`), and the channel's send
    /// happens before its receive, so the count-in is always earlier in
    /// this atomic's order and the subtraction cannot wrap.
    pub(crate) fn taken(&self, n: usize) {
        self.queue.fetch_sub(n, Ordering::Relaxed);
        self.work.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn sent(&self) {
        self.work.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_waiting(&self, on: bool) {
        self.waiting.store(on, Ordering::Relaxed);
    }

    /// Names what the process runs; only the first call counts.
    pub(crate) fn set_initial_call(&self, mfa: Mfa) {
        let _ = self.initial_call.set(mfa);
    }

    pub(crate) fn queue_len(&self) -> usize {
        self.queue.load(Ordering::Relaxed)
    }
}

/// Whether a process is running or waiting for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessStatus {
    /// Waiting in a receive on an empty mailbox.
    Waiting,
    /// Anything else: its code is running or its task is queued to run
    /// (tokio does not say which, so we never answer `runnable`).
    Running,
}

impl ProcessStatus {
    pub fn as_atom(&self) -> &'static str {
        match self {
            ProcessStatus::Waiting => "waiting",
            ProcessStatus::Running => "running",
        }
    }
}

/// What `erlang:process_info/2` reports for a Rust process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessInfo {
    pub pid: Pid,
    pub registered_name: Option<String>,
    /// What the process runs: set by whoever spawned it
    /// ([`crate::Node::set_initial_call`]; gen_servers get
    /// `{RustType, init, 1}`), else `{beam_peer, spawn, 1}` for a spawned
    /// closure and `{beam_peer, process, 0}` for a mailbox owned by Rust
    /// code. `current_function` reports the same: a task has no call stack
    /// we could read.
    pub initial_call: Mfa,
    pub status: ProcessStatus,
    /// Messages in the mailbox, including those a selective receive skipped.
    pub message_queue_len: usize,
    /// Bytes the node holds for the process's bookkeeping (table entry,
    /// mailbox slot, its links and monitors, one term slot per waiting
    /// message). Not the heap of its task, which Rust does not account per
    /// task, nor the contents of its messages.
    pub memory: usize,
    /// Our nearest honest measure of work done: the messages its code has
    /// taken from its mailbox plus those it sent through its `Process`.
    pub reductions: u64,
    pub links: Vec<Pid>,
    /// Monitors this process holds, as `{process, Pid}` or `{process, {Name, Node}}`.
    pub monitors: Vec<crate::node::table::MonitorObject>,
    /// Pids of the processes (local or remote) monitoring this one.
    pub monitored_by: Vec<Pid>,
    pub trap_exit: bool,
}

/// The bookkeeping bytes of one process, as [`ProcessInfo::memory`] counts them.
pub(crate) fn bookkeeping_bytes(links: usize, monitors: usize, queued: usize) -> usize {
    // Table entry with its maps, the slot, the shared counters and a Process.
    const BASE: usize = 512;
    let per_link = std::mem::size_of::<Pid>() + 16;
    let per_monitor = 160;
    let per_message = std::mem::size_of::<crate::term::Term>() + 16;
    BASE + links * per_link + monitors * per_monitor + queued * per_message
}

pub(crate) fn default_call(owned: bool) -> Mfa {
    if owned {
        Mfa::new("beam_peer", "process", 0)
    } else {
        Mfa::new("beam_peer", "spawn", 1)
    }
}

pub(crate) fn initial_call_of(meta: &ProcMeta, owned: bool) -> Mfa {
    meta.initial_call
        .get()
        .cloned()
        .unwrap_or_else(|| default_call(owned))
}

pub(crate) fn status_of(meta: &ProcMeta) -> ProcessStatus {
    // A process that waits but has mail is about to run.
    if meta.waiting.load(Ordering::Relaxed) && meta.queue_len() == 0 {
        ProcessStatus::Waiting
    } else {
        ProcessStatus::Running
    }
}

pub(crate) fn work_of(meta: &ProcMeta) -> u64 {
    meta.work.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_counts_in_and_out_and_work_counts_taken_and_sent() {
        let m = ProcMeta::default();
        m.delivered();
        m.delivered();
        m.taken(1);
        m.sent();
        assert_eq!(m.queue_len(), 1);
        assert_eq!(work_of(&m), 2);
        m.delivered();
        m.undelivered();
        assert_eq!(m.queue_len(), 1);
    }

    #[test]
    fn status_is_waiting_only_on_an_empty_mailbox() {
        let m = ProcMeta::default();
        assert_eq!(status_of(&m), ProcessStatus::Running);
        m.set_waiting(true);
        assert_eq!(status_of(&m), ProcessStatus::Waiting);
        m.delivered();
        assert_eq!(status_of(&m), ProcessStatus::Running);
    }

    #[test]
    fn the_first_initial_call_wins() {
        let m = ProcMeta::default();
        assert_eq!(
            initial_call_of(&m, true),
            Mfa::new("beam_peer", "process", 0)
        );
        m.set_initial_call(Mfa::new("a", "b", 1));
        m.set_initial_call(Mfa::new("c", "d", 2));
        assert_eq!(initial_call_of(&m, false), Mfa::new("a", "b", 1));
    }
}
