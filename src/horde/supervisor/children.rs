//! `Horde.ProcessesSupervisor`'s decisions as a sans-I/O state machine: the
//! member's local children.
//!
//! What it owns: the table of children running on this member (by pid and
//! by child id), the restart intensity window, and what Horde 0.10 decides
//! when a child exits: restart it per its `restart` type (`:permanent`
//! always; `:transient` unless it exited `:normal`, `:shutdown` or
//! `{:shutdown, _}`; `:temporary` never), give it up to the cluster when it
//! exited `{:shutdown, :process_redistribution}`, and tell the member's
//! supervisor server (`S`) which: `{:update_child_pid, id, pid}` after a
//! restart, `{:disown_child_process, id}` when it is gone for good,
//! `{:relinquish_child_process, id}` when another member should run it.
//! More than `max_restarts` restarts within `max_seconds` stop the
//! processes supervisor and, as in Horde, with it the whole member: the
//! child that broke the limit is dropped, every other one relinquished as
//! it exits.
//!
//! What it never does: start or signal a process (the runtime does, from
//! [`ChildEffect`]s), read a clock (`now` is monotonic seconds, passed in),
//! or trust a start result's shape.

use std::collections::HashMap;

use crate::crdt::awlww_map::{KeyMap, OrdTerm};
use crate::term::{self, Pid, Term};

use super::codec::{ChildSpec, ChildType, Restart, ValidChild};

/// Restart intensity and limits, as Horde names them.
#[derive(Debug, Clone)]
pub struct ChildrenOptions {
    /// Default 3.
    pub max_restarts: usize,
    /// Default 5.
    pub max_seconds: i64,
    /// `None` is `:infinity`.
    pub max_children: Option<usize>,
    /// Prepended to every child's start arguments.
    pub extra_arguments: Vec<Term>,
}

impl Default for ChildrenOptions {
    fn default() -> Self {
        ChildrenOptions {
            max_restarts: 3,
            max_seconds: 5,
            max_children: None,
            extra_arguments: Vec::new(),
        }
    }
}

/// What the runtime must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ChildEffect {
    /// Start the child again (`apply(module, function, args)`, `args` with
    /// the extra arguments in front) and hand the result to
    /// [`Children::restart_result`] with `old`.
    Restart {
        old: Pid,
        module: String,
        function: String,
        args: Vec<Term>,
    },
    /// A `GenServer.cast` to the member's supervisor server `S`.
    Notify(Term),
    /// Send `{:"$gen_restart", pid}` to the processes supervisor itself: a
    /// restart failed and is tried again after what is already queued.
    RetryRestart(Pid),
    /// Restart intensity exceeded: the processes supervisor stops with
    /// `:shutdown`, and with it the whole member (Horde's members run
    /// under a `one_for_all` supervisor with `max_restarts: 0`). The
    /// children left are to be stopped; each exit then relinquishes its
    /// child ([`Children::begin_stop`] is in effect).
    Shutdown,
}

#[derive(Debug, Clone)]
struct Child {
    spec: ValidChild,
    restarting: bool,
}

/// The local children of one member.
#[derive(Debug, Default)]
pub struct Children {
    opts: ChildrenOptions,
    /// Hashed with foldhash: SipHash of a pid (its node's name) was a
    /// measurable part of every start.
    children: HashMap<Pid, Child, foldhash::fast::RandomState>,
    /// Hashed by id (never read in order).
    id_to_pid: KeyMap<Pid>,
    restarts: Vec<i64>,
    /// The processes supervisor is stopping (graceful stop, lost quorum,
    /// or restart intensity): every child that exits from now on is given
    /// up to the cluster, as Horde's `terminate/2` does.
    stopping: bool,
}

impl Children {
    pub fn new(opts: ChildrenOptions) -> Children {
        Children {
            opts,
            ..Default::default()
        }
    }

    /// `{:start_child, spec}`: the child to start (`apply(module,
    /// function, extra ++ args)`), or Horde's error reason (a validation
    /// failure, or `:max_children`). Call [`Children::started`] with the pid.
    pub fn prepare_start(&self, spec: &ChildSpec) -> Result<ValidChild, Term> {
        let child = spec.validate()?;
        if self
            .opts
            .max_children
            .is_some_and(|max| self.children.len() >= max)
        {
            return Err(term::atom("max_children"));
        }
        Ok(child)
    }

    /// The arguments a start applies: the extra arguments, then the spec's.
    pub fn start_args(&self, child: &ValidChild) -> Vec<Term> {
        let mut args = self.opts.extra_arguments.clone();
        args.extend(child.args.iter().cloned());
        args
    }

    /// A child started with `pid`.
    pub fn started(&mut self, child: ValidChild, pid: Pid) {
        self.id_to_pid
            .insert(OrdTerm(child.id.clone()), pid.clone());
        self.children.insert(
            pid,
            Child {
                spec: child,
                restarting: false,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// The pid of the child with this id.
    /// The child running as `pid` (restarting ones included).
    pub fn get(&self, pid: &Pid) -> Option<&ValidChild> {
        self.children.get(pid).map(|c| &c.spec)
    }

    pub fn contains(&self, pid: &Pid) -> bool {
        self.children.contains_key(pid)
    }

    pub fn pid_of(&self, id: &Term) -> Option<&Pid> {
        self.id_to_pid.get(id)
    }

    /// Every child's pid and shutdown, for stopping them all.
    pub fn all(&self) -> Vec<(Pid, ValidChild)> {
        self.children
            .iter()
            .filter(|(_, c)| !c.restarting)
            .map(|(p, c)| (p.clone(), c.spec.clone()))
            .collect()
    }

    /// The processes supervisor begins to stop: from now on every child
    /// that exits, whatever its reason, is relinquished (written `{nil,
    /// spec}` for another member to start), and none is restarted.
    pub fn begin_stop(&mut self) {
        self.stopping = true;
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// The `{:EXIT, pid, reason}` of a linked child; `now` in monotonic
    /// seconds. Nothing for a pid that is not a child.
    pub fn exited(&mut self, pid: &Pid, reason: &Term, now: i64) -> Vec<ChildEffect> {
        let Some(child) = self.children.get(pid).cloned() else {
            return Vec::new();
        };
        if self.stopping {
            return self.stopped_on_shutdown(pid);
        }
        let id = child.spec.id.clone();
        if is_redistribution(reason) {
            self.delete(pid);
            return vec![notify("relinquish_child_process", id)];
        }
        let gone_for_good = match child.spec.restart {
            Restart::Permanent => false,
            Restart::Transient => is_shutdown(reason),
            Restart::Temporary => true,
        };
        if gone_for_good {
            self.delete(pid);
            return vec![notify("disown_child_process", id)];
        }
        self.restart(pid, child, now)
    }

    /// `{:"$gen_restart", pid}`: a failed restart tried again.
    pub fn retry(&mut self, pid: &Pid, now: i64) -> Vec<ChildEffect> {
        match self.children.get(pid).cloned() {
            Some(child) if child.restarting => self.restart(pid, child, now),
            _ => Vec::new(),
        }
    }

    /// The result of [`ChildEffect::Restart`]: `{:ok, pid}`, `{:ok, pid,
    /// info}`, `:ignore`, or anything else (an error: tried again).
    pub fn restart_result(&mut self, old: &Pid, result: &Term) -> Vec<ChildEffect> {
        let Some(child) = self.children.get(old).cloned() else {
            return Vec::new();
        };
        let id = child.spec.id.clone();
        match term::as_tuple(result) {
            Some([ok, Term::Pid(new)]) | Some([ok, Term::Pid(new), _])
                if term::is_atom(ok, "ok") =>
            {
                self.delete(old);
                self.started(child.spec, new.clone());
                vec![notify2("update_child_pid", id, Term::Pid(new.clone()))]
            }
            _ if term::is_atom(result, "ignore") => {
                self.delete(old);
                vec![notify("disown_child_process", id)]
            }
            _ => {
                if let Some(c) = self.children.get_mut(old) {
                    c.restarting = true;
                }
                vec![ChildEffect::RetryRestart(old.clone())]
            }
        }
    }

    /// `{:terminate_child, pid}`: the child to stop (by its shutdown), now
    /// forgotten, or `None` (`{:error, :not_found}`).
    pub fn terminate(&mut self, pid: &Pid) -> Option<ValidChild> {
        let child = self.children.get(pid)?.spec.clone();
        self.delete(pid);
        Some(child)
    }

    /// `{:terminate_child_by_id, id}`.
    pub fn terminate_by_id(&mut self, id: &Term) -> Option<(Pid, ValidChild)> {
        let pid = self.pid_of(id)?.clone();
        self.terminate(&pid).map(|c| (pid, c))
    }

    /// A child stopped while the whole processes supervisor shuts down
    /// (graceful shutdown): it is given up to the cluster.
    pub fn stopped_on_shutdown(&mut self, pid: &Pid) -> Vec<ChildEffect> {
        match self.children.get(pid) {
            Some(c) => {
                let id = c.spec.id.clone();
                self.delete(pid);
                vec![notify("relinquish_child_process", id)]
            }
            None => Vec::new(),
        }
    }

    /// `:which_children`: `[{id, pid | :restarting, type, modules}]`.
    pub fn which_children(&self) -> Term {
        term::list(
            self.children
                .iter()
                .map(|(pid, c)| {
                    let who = if c.restarting {
                        term::atom("restarting")
                    } else {
                        Term::Pid(pid.clone())
                    };
                    crate::tup![
                        c.spec.id.clone(),
                        who,
                        term::atom(c.spec.child_type.as_atom()),
                        c.spec.modules.clone()
                    ]
                })
                .collect(),
        )
    }

    /// `:count_children`: `[specs: n, active: n, supervisors: n, workers: n]`.
    pub fn count_children(&self) -> Term {
        let specs = self.children.len() as i64;
        let active = self.children.values().filter(|c| !c.restarting).count() as i64;
        let supervisors = self
            .children
            .values()
            .filter(|c| c.spec.child_type == ChildType::Supervisor)
            .count() as i64;
        let kw = |k: &str, v: i64| crate::tup![term::atom(k), term::int(v)];
        term::list(vec![
            kw("specs", specs),
            kw("active", active),
            kw("supervisors", supervisors),
            kw("workers", specs - supervisors),
        ])
    }

    fn restart(&mut self, pid: &Pid, child: Child, now: i64) -> Vec<ChildEffect> {
        let period = self.opts.max_seconds;
        self.restarts.insert(0, now);
        self.restarts.retain(|then| now <= then + period);
        if self.restarts.len() > self.opts.max_restarts {
            // As Horde's: the child that broke the limit is dropped without
            // a word (its CRDT entry still names this member, whose death
            // then restarts it elsewhere), the others are stopped and
            // relinquished.
            self.delete(pid);
            self.stopping = true;
            return vec![ChildEffect::Shutdown];
        }
        let args = self.start_args(&child.spec);
        vec![ChildEffect::Restart {
            old: pid.clone(),
            module: child.spec.module.clone(),
            function: child.spec.function.clone(),
            args,
        }]
    }

    fn delete(&mut self, pid: &Pid) {
        if let Some(c) = self.children.remove(pid) {
            self.id_to_pid.remove(&c.spec.id);
        }
    }
}

/// `:normal`, `:shutdown` or `{:shutdown, _}`: an exit that is not a failure.
fn is_shutdown(reason: &Term) -> bool {
    term::is_atom(reason, "normal")
        || term::is_atom(reason, "shutdown")
        || matches!(term::as_tuple(reason), Some([tag, _]) if term::is_atom(tag, "shutdown"))
}

fn is_redistribution(reason: &Term) -> bool {
    matches!(term::as_tuple(reason), Some([tag, why])
        if term::is_atom(tag, "shutdown") && term::is_atom(why, "process_redistribution"))
}

fn notify(tag: &str, id: Term) -> ChildEffect {
    ChildEffect::Notify(crate::tup![term::atom(tag), id])
}

fn notify2(tag: &str, id: Term, x: Term) -> ChildEffect {
    ChildEffect::Notify(crate::tup![term::atom(tag), id, x])
}

#[cfg(test)]
mod tests;
