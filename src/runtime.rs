//! The tokio runtime a node runs best on, chosen from the machine it runs on.
//!
//! A node's work is many small steps handed from task to task: a read
//! delivers to a mailbox, a server answers, a writer sends. On a
//! multi-threaded runtime each hand-off may wake another worker thread, and
//! on a small machine that wake-up costs more than the step: with 2 cores
//! here (2026-12-07), one worker thread against tokio's default of one per
//! core took a `beam-peer node` from 78.8 to 54.9 µs per `gen_server:call`
//! from `erl` (p50, best of 3), and 10,000 `Horde.DynamicSupervisor` starts
//! through a two-member pair in one process from 0.59-0.67 s to 0.28-0.29 s.
//! The second core is not lost: it is the one the peer on the other end (a
//! BEAM, another node) runs on.
//!
//! So [`worker_threads`] picks one thread (tokio's current-thread runtime)
//! where the process may use at most [`SMALL_MACHINE_CORES`] cores, and one
//! per core beyond that, where CPU-heavy processes gain from spreading out.
//! `BEAM_PEER_WORKER_THREADS` (or a caller's explicit count) overrides it.
//! The larger machines' rule is tokio's own default, not a measurement of
//! ours.
//!
//! This module owns that choice and the building of the runtime; it never
//! starts a node and never blocks. Code that runs on a node's runtime must
//! not block its thread either: on one thread that would stop every
//! connection (`tokio::task::block_in_place` panics there; blocking work goes
//! to `spawn_blocking`).

use std::io;

/// Up to this many usable cores, a node runs on one thread.
pub const SMALL_MACHINE_CORES: usize = 2;

/// The environment variable that overrides the choice: a thread count, 1
/// meaning the current-thread runtime.
pub const WORKER_THREADS_ENV: &str = "BEAM_PEER_WORKER_THREADS";

/// The cores this process may use (its CPU affinity and cgroup quota
/// included, as `std::thread::available_parallelism` reads them).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How many worker threads a node should run on with `cores` usable cores
/// and an optional `requested` count (zero counts as unset).
pub fn worker_threads(cores: usize, requested: Option<usize>) -> usize {
    match requested.filter(|&n| n > 0) {
        Some(n) => n,
        None if cores <= SMALL_MACHINE_CORES => 1,
        None => cores,
    }
}

/// What [`build`] chose, for logs and benchmark reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeChoice {
    /// Cores this process may use.
    pub cores: usize,
    /// Worker threads chosen (1: the current-thread runtime).
    pub worker_threads: usize,
    /// Whether the count came from the caller or the environment rather
    /// than the machine.
    pub overridden: bool,
}

impl std::fmt::Display for RuntimeChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.overridden { "set" } else { "chosen for" };
        let flavour = if self.worker_threads == 1 {
            "1 runtime thread (current-thread)".to_string()
        } else {
            format!("{} runtime worker threads", self.worker_threads)
        };
        write!(f, "{flavour}, {how} {} cores available", self.cores)
    }
}

/// The choice for this machine: `requested` if given, else
/// `BEAM_PEER_WORKER_THREADS` if set to a positive count, else
/// [`worker_threads`] of [`available_cores`].
pub fn choose(requested: Option<usize>) -> RuntimeChoice {
    let requested = requested.filter(|&n| n > 0).or_else(|| {
        std::env::var(WORKER_THREADS_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
    });
    let cores = available_cores();
    RuntimeChoice {
        cores,
        worker_threads: worker_threads(cores, requested),
        overridden: requested.is_some(),
    }
}

/// Builds the runtime `choice` names, with I/O and timers enabled.
pub fn build(choice: RuntimeChoice) -> io::Result<tokio::runtime::Runtime> {
    if choice.worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(choice.worker_threads)
            .enable_all()
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_machines_get_one_thread_larger_ones_one_per_core() {
        assert_eq!(worker_threads(1, None), 1);
        assert_eq!(worker_threads(2, None), 1);
        assert_eq!(worker_threads(3, None), 3);
        assert_eq!(worker_threads(16, None), 16);
    }

    #[test]
    fn a_requested_count_wins_and_zero_means_unset() {
        assert_eq!(worker_threads(2, Some(4)), 4);
        assert_eq!(worker_threads(16, Some(1)), 1);
        assert_eq!(worker_threads(2, Some(0)), 1);
    }

    #[test]
    fn both_flavours_build_and_run() {
        for n in [1, 2] {
            let choice = RuntimeChoice {
                cores: 2,
                worker_threads: n,
                overridden: true,
            };
            let rt = build(choice).expect("runtime");
            assert_eq!(
                rt.block_on(async { tokio::spawn(async { 7 }).await }).ok(),
                Some(7)
            );
        }
    }

    #[test]
    fn the_choice_reads_as_a_sentence() {
        let c = RuntimeChoice {
            cores: 2,
            worker_threads: 1,
            overridden: false,
        };
        assert_eq!(
            c.to_string(),
            "1 runtime thread (current-thread), chosen for 2 cores available"
        );
    }
}
