//! How often a misbehaving peer may put a WARN line in our log.
//!
//! A peer that sends junk, fails handshakes or keeps reconnecting would
//! otherwise write one line per attempt (200 junk connections, 200 lines).
//! [`WarnLimit`] lets [`WarnLimit::PER_WINDOW`] lines per key through in each
//! [`WarnLimit::WINDOW`] and counts the rest; the first line let through
//! after a quiet spell says how many were left out.
//!
//! Sans-I/O: the caller passes the time in, so the unit tests drive it with
//! made-up instants. It never logs by itself and never holds more than
//! [`WarnLimit::MAX_KEYS`] keys, however many addresses a peer uses.

/// `tracing::warn!` about the peer `key` through the node's [`WarnLimit`]:
/// the first lines of a burst at WARN (the first after a quiet spell with
/// `suppressed`, the count left out), the rest at DEBUG.
#[macro_export]
#[doc(hidden)]
macro_rules! peer_warn {
    ($node:expr, $key:expr, $($rest:tt)+) => {
        match $node.warn_allowed($key) {
            Some(0) => tracing::warn!($($rest)+),
            Some(suppressed) => tracing::warn!(suppressed, $($rest)+),
            None => tracing::debug!($($rest)+),
        }
    };
}

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Whether to write the line, and how many of this key's lines were left out
/// since the last one written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Log { suppressed: u64 },
    Suppress,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

impl Window {
    fn new(start: Instant) -> Window {
        Window {
            start,
            logged: 0,
            suppressed: 0,
        }
    }
}

/// Per-key WARN budget (see the module doc).
#[derive(Debug)]
pub(crate) struct WarnLimit<K> {
    keys: HashMap<K, Window>,
    /// Keys beyond `MAX_KEYS` share this one budget.
    overflow: Option<Window>,
}

impl<K: Hash + Eq> Default for WarnLimit<K> {
    fn default() -> Self {
        WarnLimit {
            keys: HashMap::new(),
            overflow: None,
        }
    }
}

impl<K: Hash + Eq> WarnLimit<K> {
    /// Lines let through per key and window.
    pub(crate) const PER_WINDOW: u32 = 5;
    pub(crate) const WINDOW: Duration = Duration::from_secs(60);
    pub(crate) const MAX_KEYS: usize = 1024;

    /// Decides on one line about `key` at `now`.
    pub(crate) fn check(&mut self, key: K, now: Instant) -> Verdict {
        if !self.keys.contains_key(&key) && self.keys.len() >= Self::MAX_KEYS {
            self.keys
                .retain(|_, w| now.saturating_duration_since(w.start) < Self::WINDOW);
        }
        let window = if self.keys.len() < Self::MAX_KEYS || self.keys.contains_key(&key) {
            self.keys.entry(key).or_insert_with(|| Window::new(now))
        } else {
            self.overflow.get_or_insert_with(|| Window::new(now))
        };
        let mut carried = 0;
        if now.saturating_duration_since(window.start) >= Self::WINDOW {
            carried = window.suppressed;
            *window = Window::new(now);
        }
        if window.logged < Self::PER_WINDOW {
            window.logged += 1;
            // What this window left out so far is carried by its next
            // line; lines let through within a window report what the
            // previous window left out only once.
            Verdict::Log {
                suppressed: carried,
            }
        } else {
            window.suppressed += 1;
            Verdict::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: u32 = WarnLimit::<u32>::PER_WINDOW;

    #[test]
    fn a_burst_is_cut_to_the_budget_and_the_rest_counted() {
        let t0 = Instant::now();
        let mut limit = WarnLimit::default();
        let verdicts: Vec<Verdict> = (0..200)
            .map(|i| limit.check("10.0.0.1", t0 + Duration::from_millis(i)))
            .collect();
        let logged = verdicts.iter().filter(|v| **v != Verdict::Suppress).count();
        assert_eq!(logged, N as usize);
        assert!(verdicts[..N as usize]
            .iter()
            .all(|v| *v == Verdict::Log { suppressed: 0 }));
        // After the window, the next line says how many were left out.
        let later = t0 + WarnLimit::<&str>::WINDOW + Duration::from_secs(1);
        assert_eq!(
            limit.check("10.0.0.1", later),
            Verdict::Log {
                suppressed: 200 - u64::from(N)
            }
        );
        assert_eq!(
            limit.check("10.0.0.1", later),
            Verdict::Log { suppressed: 0 }
        );
    }

    #[test]
    fn each_key_has_its_own_budget() {
        let t0 = Instant::now();
        let mut limit = WarnLimit::default();
        for _ in 0..N {
            assert_eq!(limit.check(1, t0), Verdict::Log { suppressed: 0 });
        }
        assert_eq!(limit.check(1, t0), Verdict::Suppress);
        assert_eq!(limit.check(2, t0), Verdict::Log { suppressed: 0 });
    }

    #[test]
    fn many_keys_stay_bounded_and_share_the_overflow_budget() {
        let t0 = Instant::now();
        let mut limit = WarnLimit::default();
        let max = WarnLimit::<u32>::MAX_KEYS as u32;
        for k in 0..max {
            assert_eq!(limit.check(k, t0), Verdict::Log { suppressed: 0 });
        }
        let overflow: Vec<Verdict> = (max..max + 100).map(|k| limit.check(k, t0)).collect();
        assert_eq!(
            overflow.iter().filter(|v| **v != Verdict::Suppress).count(),
            N as usize
        );
        assert_eq!(limit.keys.len(), max as usize);
        // Once the old windows have passed, their keys make room again.
        let later = t0 + WarnLimit::<u32>::WINDOW;
        assert_eq!(
            limit.check(max + 500, later),
            Verdict::Log { suppressed: 0 }
        );
        assert_eq!(limit.keys.len(), 1);
    }

    #[test]
    fn time_going_backwards_does_not_reset_or_panic() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut limit = WarnLimit::default();
        for _ in 0..N {
            limit.check(7, t0);
        }
        assert_eq!(
            limit.check(7, t0 - Duration::from_secs(5)),
            Verdict::Suppress
        );
    }
}
