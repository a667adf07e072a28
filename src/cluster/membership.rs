//! The decisions every strategy shares, sans-I/O: which of the nodes a
//! strategy names to connect to now, which to disconnect from, and when to
//! try again after a failure or a drop.
//!
//! It owns one topology's view of its nodes (libcluster's `meta`: the nodes
//! the strategy named last) and each node's back-off. It is fed candidates,
//! the connected and hidden nodes, connect results, nodedowns and the time;
//! it answers with [`Action`]s. What it must never do: touch a socket, read
//! a clock, connect to itself, or disconnect a node that is connected as
//! hidden (a remote shell, an observer) or that it never named.
//!
//! libcluster's strategies connect what they name and forget the rest: a
//! node that dropped after the start is never tried again by `Epmd` without
//! a `timeout` (libcluster issue #148). Here every named node that is not
//! connected is retried, each on its own back-off: right after a drop within
//! a jittered fraction of [`Backoff::base`], after each failure twice as
//! long (up to [`Backoff::max`]), jittered so a cluster that lost a switch
//! does not reconnect in one burst.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long to wait before trying a node again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after a drop (jittered in `0..base`) and after the first
    /// failure (jittered in `base/2..base`).
    pub base: Duration,
    /// The longest wait, however many failures in a row.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The un-jittered wait after `failures` failures in a row (at least one).
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.base.saturating_mul(1 << shift).min(self.max)
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Connect(String),
    Disconnect(String),
}

/// How a connect hook answered (libcluster's `true`, `false`, `:ignored`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectOutcome {
    Connected,
    Failed(String),
    /// The node cannot connect at all (libcluster: distribution not started).
    Ignored,
}

/// The nodes connected now, as the `list_nodes` hook and the node see them.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// What `list_nodes` returned (by default every connected node, hidden
    /// ones too, as `:erlang.nodes(:connected)`).
    pub connected: BTreeSet<String>,
    /// The connected nodes that are hidden.
    pub hidden: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
struct Peer {
    failures: u32,
    /// No attempt before this.
    not_before: Option<Instant>,
    /// True when the driver should wake at `not_before` and try on its own
    /// (false: only the next poll or heartbeat tries).
    wake: bool,
    in_flight: bool,
    ever_connected: bool,
}

/// One topology's nodes and their back-off.
#[derive(Debug, Clone)]
pub struct Membership {
    me: String,
    peers: BTreeMap<String, Peer>,
    backoff: Backoff,
    /// Whether a failed node is retried on a timer (strategies whose nodes
    /// come from configuration or polling) or only when heard of again
    /// (Gossip, whose heartbeats are its poll).
    retry_on_timer: bool,
    rng: u64,
}

impl Membership {
    /// `me` is our own node name (never connected to); `seed` seeds the
    /// jitter (any value; tests pass a fixed one).
    pub fn new(me: &str, backoff: Backoff, retry_on_timer: bool, seed: u64) -> Membership {
        Membership {
            me: me.to_string(),
            peers: BTreeMap::new(),
            backoff,
            retry_on_timer,
            rng: seed | 1,
        }
    }

    /// The nodes the strategy named and still holds.
    pub fn known(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }

    /// Failures in a row of `node` since it was last connected.
    pub fn failures(&self, node: &str) -> u32 {
        self.peers.get(node).map_or(0, |p| p.failures)
    }

    /// A poll's answer: `candidates` are every node the strategy names now.
    /// With `forget_missing` (the DNS and Kubernetes strategies), a node
    /// named before and not now is forgotten and, when connected and not
    /// hidden, disconnected, as libcluster does; otherwise (Epmd, LocalEpmd)
    /// a node once named stays wanted.
    pub fn poll<I, S>(
        &mut self,
        candidates: I,
        view: &View,
        now: Instant,
        forget_missing: bool,
    ) -> Vec<Action>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let named: BTreeSet<String> = candidates
            .into_iter()
            .map(Into::into)
            .filter(|n| self.acceptable(n))
            .collect();
        let mut actions = Vec::new();
        if forget_missing {
            let gone: Vec<String> = self
                .peers
                .keys()
                .filter(|n| !named.contains(*n))
                .cloned()
                .collect();
            for n in gone {
                self.peers.remove(&n);
                if view.connected.contains(&n) && !view.hidden.contains(&n) {
                    actions.push(Action::Disconnect(n));
                }
            }
        }
        for n in named {
            self.peers.entry(n).or_default();
        }
        actions.extend(self.due(view, now, false));
        actions
    }

    /// Gossip: a heartbeat from `node`. Connects unless it is connected,
    /// being connected, or waiting out its back-off.
    pub fn heard(&mut self, node: &str, view: &View, now: Instant) -> Option<Action> {
        if !self.acceptable(node) {
            return None;
        }
        let p = self.peers.entry(node.to_string()).or_default();
        if view.connected.contains(node) || p.in_flight {
            return None;
        }
        if p.not_before.is_some_and(|t| t > now) {
            return None;
        }
        p.in_flight = true;
        Some(Action::Connect(node.to_string()))
    }

    /// The connects whose back-off ran out (the driver calls this at
    /// [`Membership::next_wake`]).
    pub fn retry_due(&mut self, view: &View, now: Instant) -> Vec<Action> {
        self.due(view, now, true)
    }

    fn due(&mut self, view: &View, now: Instant, woken: bool) -> Vec<Action> {
        let mut out = Vec::new();
        for (n, p) in self.peers.iter_mut() {
            if p.in_flight || view.connected.contains(n) {
                continue;
            }
            if woken && !p.wake {
                continue;
            }
            if p.not_before.is_some_and(|t| t > now) {
                continue;
            }
            p.in_flight = true;
            p.wake = false;
            out.push(Action::Connect(n.clone()));
        }
        out
    }

    /// What the connect hook answered for `node`.
    pub fn connect_result(&mut self, node: &str, outcome: &ConnectOutcome, now: Instant) {
        let wait = match outcome {
            ConnectOutcome::Connected => None,
            _ => {
                let failures = self.failures(node).saturating_add(1);
                Some((failures, self.jitter(self.backoff.delay(failures), true)))
            }
        };
        let retry_on_timer = self.retry_on_timer;
        let Some(p) = self.peers.get_mut(node) else {
            return; // forgotten while the attempt ran
        };
        p.in_flight = false;
        match wait {
            None => {
                p.failures = 0;
                p.not_before = None;
                p.wake = false;
                p.ever_connected = true;
            }
            Some((failures, wait)) => {
                p.failures = failures;
                p.not_before = Some(now + wait);
                p.wake = retry_on_timer;
            }
        }
    }

    /// `node` went down. A node this topology holds is tried again within
    /// a jittered fraction of the base back-off, whatever strategy it is.
    pub fn node_down(&mut self, node: &str, now: Instant) {
        if !self.peers.contains_key(node) {
            return;
        }
        let wait = self.jitter(self.backoff.base, false);
        if let Some(p) = self.peers.get_mut(node) {
            p.failures = 0;
            p.not_before = Some(now + wait);
            p.wake = true;
        }
    }

    /// When the driver must next call [`Membership::retry_due`].
    pub fn next_wake(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter(|p| p.wake && !p.in_flight)
            .filter_map(|p| p.not_before)
            .min()
    }

    fn acceptable(&self, node: &str) -> bool {
        node != self.me && crate::node::split_node_name(node).is_some()
    }

    /// `d` jittered: into `d/2..d` (`half`), else into `0..d`.
    fn jitter(&mut self, d: Duration, half: bool) -> Duration {
        // xorshift64: enough to spread retries, and reproducible in tests.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        if half {
            d.mul_f64(0.5 + frac / 2.0)
        } else {
            d.mul_f64(frac)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(connected: &[&str], hidden: &[&str]) -> View {
        View {
            connected: connected.iter().map(|s| s.to_string()).collect(),
            hidden: hidden.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn connects(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Connect(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }

    const ME: &str = "me@127.0.0.1";

    #[test]
    fn poll_connects_what_is_named_and_not_connected_never_itself() {
        let mut m = Membership::new(ME, Backoff::default(), true, 1);
        let t = Instant::now();
        let a = m.poll(
            [ME, "a@h", "b@h", "junk", "b@h"],
            &view(&["a@h"], &[]),
            t,
            false,
        );
        assert_eq!(a, vec![Action::Connect("b@h".into())]);
        // In flight: the next poll does not connect it twice.
        assert!(m
            .poll(["a@h", "b@h"], &view(&["a@h"], &[]), t, false)
            .is_empty());
    }

    #[test]
    fn failures_back_off_doubling_jittered_up_to_max() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
        };
        let mut m = Membership::new(ME, b, true, 42);
        let mut t = Instant::now();
        let v = view(&[], &[]);
        assert_eq!(connects(&m.poll(["a@h"], &v, t, false)), ["a@h"]);
        let mut waits = vec![];
        for _ in 0..6 {
            m.connect_result("a@h", &ConnectOutcome::Failed("nope".into()), t);
            let wake = m.next_wake().expect("a retry is scheduled");
            waits.push(wake - t);
            // Nothing is due before the wake-up, by poll or by timer.
            assert!(m
                .poll(["a@h"], &v, wake - Duration::from_millis(1), false)
                .is_empty());
            assert!(m.retry_due(&v, wake - Duration::from_millis(1)).is_empty());
            t = wake;
            assert_eq!(connects(&m.retry_due(&v, t)), ["a@h"]);
        }
        for (i, w) in waits.iter().enumerate() {
            let full = b.delay(i as u32 + 1);
            assert!(*w >= full / 2 && *w <= full, "wait {i}: {w:?} vs {full:?}");
        }
        assert!(waits[5] <= Duration::from_secs(8));
        assert_eq!(m.failures("a@h"), 6);
        m.connect_result("a@h", &ConnectOutcome::Connected, t);
        assert_eq!(m.failures("a@h"), 0);
        assert_eq!(m.next_wake(), None);
    }

    #[test]
    fn jitter_spreads_many_nodes() {
        let mut m = Membership::new(ME, Backoff::default(), true, 7);
        let t = Instant::now();
        let names: Vec<String> = (0..50).map(|i| format!("n{i}@h")).collect();
        m.poll(names.clone(), &view(&[], &[]), t, false);
        for n in &names {
            m.connect_result(n, &ConnectOutcome::Connected, t);
        }
        for n in &names {
            m.node_down(n, t);
        }
        let mut wakes: Vec<Instant> = m.peers.values().filter_map(|p| p.not_before).collect();
        wakes.sort();
        wakes.dedup();
        assert!(wakes.len() > 40, "drops are spread, not one burst");
        assert!(wakes.iter().all(|w| *w - t < Backoff::default().base));
    }

    #[test]
    fn a_dropped_node_is_retried_on_a_timer_without_a_poll() {
        // Epmd without `timeout` never polls again: libcluster #148.
        let mut m = Membership::new(ME, Backoff::default(), true, 3);
        let t = Instant::now();
        m.poll(["a@h"], &view(&[], &[]), t, false);
        m.connect_result("a@h", &ConnectOutcome::Connected, t);
        assert_eq!(m.next_wake(), None);
        m.node_down("a@h", t);
        let wake = m.next_wake().expect("scheduled");
        assert!(wake - t < Backoff::default().base);
        assert_eq!(connects(&m.retry_due(&view(&[], &[]), wake)), ["a@h"]);
        // Nodes it never named are not its business.
        m.node_down("stranger@h", t);
        assert!(!m.known().any(|n| n == "stranger@h"));
    }

    #[test]
    fn forget_missing_disconnects_but_leaves_hidden_and_unnamed_alone() {
        let mut m = Membership::new(ME, Backoff::default(), true, 5);
        let t = Instant::now();
        m.poll(["a@h", "b@h", "c@h"], &view(&[], &[]), t, true);
        for n in ["a@h", "b@h", "c@h"] {
            m.connect_result(n, &ConnectOutcome::Connected, t);
        }
        let v = view(&["a@h", "b@h", "c@h", "shell@h"], &["c@h", "shell@h"]);
        let a = m.poll(["a@h"], &v, t, true);
        assert_eq!(a, vec![Action::Disconnect("b@h".into())]);
        assert_eq!(m.known().collect::<Vec<_>>(), ["a@h"]);
        // Without forget_missing nothing is ever disconnected.
        let mut e = Membership::new(ME, Backoff::default(), true, 5);
        e.poll(["a@h", "b@h"], &view(&[], &[]), t, false);
        assert!(e
            .poll(["a@h"], &view(&["a@h", "b@h"], &[]), t, false)
            .is_empty());
    }

    #[test]
    fn gossip_heard_respects_backoff_and_does_not_retry_failures_on_a_timer() {
        let mut m = Membership::new(ME, Backoff::default(), false, 9);
        let t = Instant::now();
        let v = view(&[], &[]);
        assert_eq!(m.heard("a@h", &v, t), Some(Action::Connect("a@h".into())));
        assert_eq!(m.heard("a@h", &v, t), None, "in flight");
        m.connect_result("a@h", &ConnectOutcome::Ignored, t);
        assert_eq!(m.next_wake(), None, "failures wait for the next heartbeat");
        assert_eq!(m.heard("a@h", &v, t), None, "backing off");
        let later = t + Backoff::default().base;
        assert!(m.heard("a@h", &v, later).is_some());
        m.connect_result("a@h", &ConnectOutcome::Connected, later);
        assert_eq!(m.heard("a@h", &view(&["a@h"], &[]), later), None);
        assert_eq!(m.heard(ME, &v, later), None);
        // A drop is retried on a timer even for gossip.
        m.node_down("a@h", later);
        assert!(m.next_wake().is_some());
    }

    #[test]
    fn a_result_for_a_forgotten_node_is_ignored() {
        let mut m = Membership::new(ME, Backoff::default(), true, 11);
        let t = Instant::now();
        m.poll(["a@h"], &view(&[], &[]), t, true);
        m.poll(Vec::<String>::new(), &view(&[], &[]), t, true);
        m.connect_result("a@h", &ConnectOutcome::Failed("x".into()), t);
        assert_eq!(m.next_wake(), None);
    }
}
