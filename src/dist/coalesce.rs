//! Whether a connection's reader lets a stream of small messages gather
//! before its next read, or follows it at once.
//!
//! A peer streaming small messages writes them as they come, and how many
//! of those writes share a TCP segment depends on how the receiver reads.
//! A BEAM sender does one `writev` per message while its socket keeps up:
//! measured on loopback with 1,000,000 messages, against a reader that
//! drains the socket the moment anything lands, 470,000-560,000 segments,
//! twice the sender's kernel time per message, and 0.63-0.83x of the
//! BEAM->BEAM rate; against a reader that pauses one timer tick after each
//! read that brought a stream's worth of messages, about 200,000 segments
//! and the BEAM->BEAM rate. A sender that batches its own writes (a
//! `beam-peer` node: its writer takes everything queued in one `writev`)
//! gains nothing from the pause and loses to it: its writes fill the socket
//! while we sleep, and the stream runs at what one tick's worth of the
//! socket's window holds (0.7 M against 1.0 M messages a second here).
//!
//! So by default ([`ReadCoalesce::Adaptive`]) each connection measures
//! which way its peer's streams run faster, with the experiment of
//! `dist::experiment`: epochs of [`CoalescePolicy::EPOCH_MESSAGES`]
//! messages served pausing and following, compared by wall time per
//! message (read to read, quiet spells left out). Pausing is the default:
//! following must win by [`CoalescePolicy::MARGIN`], since against a BEAM
//! sender the two often measure alike while the pause halves the sender's
//! kernel time (its effect on the whole stream shows more in the sender's
//! CPU than in our epochs). Request/response traffic is
//! never paused either way (its reads bring few messages), and its epochs
//! (more than 3 µs a message, against 0.7-2.3 in a stream here) are no
//! evidence, and neither is a read of traffic we answer (many callers at
//! once bring many messages per read, but get a reply for each call), so
//! it cannot tip the comparison.
//!
//! This module owns those decisions. It never does I/O and never reads a
//! clock: the reader passes in what it measured.

use std::time::Duration;

use super::experiment::Comparison;

/// Whether a node's connections pause between the reads of a stream
/// ([`NodeConfig::read_coalesce`](crate::NodeConfig::read_coalesce)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadCoalesce {
    /// Each connection measures whether its peer's streams run faster with
    /// a one-tick pause or without (see `dist::coalesce`).
    #[default]
    Adaptive,
    /// After every read that brought a stream's worth of small messages,
    /// pause this long (rounded up to the runtime's 1 ms timer tick); zero
    /// never pauses.
    Fixed(Duration),
}

/// What a connection's coalescing has decided so far, for its statistics
/// and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CoalesceReport {
    /// Whether the policy adapts ([`ReadCoalesce::Adaptive`]).
    pub adaptive: bool,
    /// The pause after the next stream read (zero: following at once).
    /// During a check of the answer this is the way being tried.
    pub pause: Duration,
    /// The way the last comparison chose: `Some(true)` pausing,
    /// `Some(false)` following, `None` before the first (adaptive only).
    pub chose_pausing: Option<bool>,
    /// Pauses made.
    pub pauses: u64,
    /// Epochs served each way (adaptive only).
    pub pause_epochs: u64,
    pub follow_epochs: u64,
    /// The last measured time per message of each way, in ns (adaptive
    /// only; zero until measured).
    pub pause_ns_per_message: u64,
    pub follow_ns_per_message: u64,
}

impl std::ops::Add for CoalesceReport {
    type Output = CoalesceReport;
    fn add(self, o: CoalesceReport) -> CoalesceReport {
        CoalesceReport {
            adaptive: self.adaptive || o.adaptive,
            pause: self.pause.max(o.pause),
            chose_pausing: match (self.chose_pausing, o.chose_pausing) {
                (Some(a), Some(b)) => Some(a || b),
                (a, b) => a.or(b),
            },
            pauses: self.pauses + o.pauses,
            pause_epochs: self.pause_epochs + o.pause_epochs,
            follow_epochs: self.follow_epochs + o.follow_epochs,
            pause_ns_per_message: self.pause_ns_per_message.max(o.pause_ns_per_message),
            follow_ns_per_message: self.follow_ns_per_message.max(o.follow_ns_per_message),
        }
    }
}

/// One line: `adaptive: chose following, now following (last pause epoch
/// 2.1 us/msg of 3, last follow epoch 1.0 us/msg of 120), 41 pauses`.
impl std::fmt::Display for CoalesceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.pause.is_zero() {
            "following".to_string()
        } else {
            format!("pausing {} us", self.pause.as_micros())
        };
        if self.adaptive {
            let us = |ns: u64| ns as f64 / 1000.0;
            let chose = match self.chose_pausing {
                Some(true) => "chose pausing",
                Some(false) => "chose following",
                None => "not compared yet",
            };
            write!(
                f,
                "adaptive: {chose}, now {how} (last pause epoch {:.2} us/msg of {}, \
                 last follow epoch {:.2} us/msg of {})",
                us(self.pause_ns_per_message),
                self.pause_epochs,
                us(self.follow_ns_per_message),
                self.follow_epochs
            )?;
        } else {
            write!(f, "fixed: {how}")?;
        }
        write!(f, ", {} pauses", self.pauses)
    }
}

/// The way of [`Comparison`] that pauses, and wins ties; way 0 follows.
const PAUSE: usize = 1;

/// One epoch's evidence.
#[derive(Debug, Default, Clone, Copy)]
struct Epoch {
    messages: u64,
    /// Read-to-read time, quiet spells left out.
    busy: Duration,
}

#[derive(Debug)]
enum Mode {
    Fixed(Duration),
    Adaptive { epoch: Epoch, ways: Comparison },
}

/// What a connection's reader saw in one read, for [`CoalescePolicy::after_read`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StreamRead {
    /// Messages the read brought.
    pub messages: usize,
    /// How many of them were `MONITOR_P` or `DEMONITOR_P`: each
    /// `gen_server:call` brings both, a stream of sends none.
    pub monitors: usize,
    /// Its bytes.
    pub bytes: usize,
    /// How long after the read before it completed.
    pub interval: Duration,
    /// Messages sent to the peer since the read before.
    pub answered: u64,
}

/// A connection reader's coalescing: after each read, whether to pause
/// before the next one.
#[derive(Debug)]
pub(crate) struct CoalescePolicy {
    mode: Mode,
    report: CoalesceReport,
}

impl CoalescePolicy {
    /// The pause an adaptive connection tries: one tick of tokio's timer.
    pub(crate) const PAUSE: Duration = Duration::from_millis(1);
    /// More messages than this in one read is a stream.
    pub(crate) const STREAM_MESSAGES: usize = 8;
    /// A read of this many bytes or more is followed at once: the stream
    /// already batches, and a pause would only fill the socket's window.
    pub(crate) const LARGE_READ: usize = 32 * 1024;
    /// A read is one-way traffic (a stream) while we sent fewer than one
    /// message for every this many it brought since the read before:
    /// callers get an answer per call (a BEAM caller sends three messages
    /// per call: monitor, request, demonitor).
    pub(crate) const ONE_WAY_RATIO: u64 = 4;
    /// Messages per epoch: a few ms of a stream either way.
    pub(crate) const EPOCH_MESSAGES: u64 = 2048;
    /// An epoch whose messages came further apart than this on average was
    /// not a stream (request/response turns take tens of µs a message, a
    /// hundred callers at once about 5 here; streams 0.7-2.3), and is no
    /// evidence either way. Where streams are slower than this (a slow
    /// machine) nothing is measured and the reader keeps pausing, what a
    /// BEAM sender needs.
    pub(crate) const STREAM_NS_PER_MESSAGE: u64 = 3_000;
    /// How much less time per message following must take to be chosen.
    pub(crate) const MARGIN: f64 = 0.1;
    /// A read-to-read interval longer than this is a quiet spell, not part
    /// of a stream (a pause is a tick or two): left out of the comparison.
    pub(crate) const QUIET: Duration = Duration::from_millis(5);
    /// Epochs an answer is first held for, and at most.
    pub(crate) const MIN_HOLD: u32 = 4;
    pub(crate) const MAX_HOLD: u32 = 32;

    pub(crate) fn new(setting: ReadCoalesce) -> Self {
        let mode = match setting {
            ReadCoalesce::Fixed(pause) => Mode::Fixed(pause),
            // Pausing first: what a BEAM peer's streams need from the start;
            // following is measured next either way.
            ReadCoalesce::Adaptive => Mode::Adaptive {
                epoch: Epoch::default(),
                ways: Comparison::new(PAUSE, Self::MARGIN, Self::MIN_HOLD, Self::MAX_HOLD),
            },
        };
        let mut p = CoalescePolicy {
            report: CoalesceReport {
                adaptive: matches!(mode, Mode::Adaptive { .. }),
                ..CoalesceReport::default()
            },
            mode,
        };
        p.report.pause = p.pause();
        p
    }

    fn pause(&self) -> Duration {
        match &self.mode {
            Mode::Fixed(pause) => *pause,
            Mode::Adaptive { ways, .. } if ways.way() == PAUSE => Self::PAUSE,
            Mode::Adaptive { .. } => Duration::ZERO,
        }
    }

    /// What has been decided so far.
    pub(crate) fn report(&self) -> CoalesceReport {
        self.report
    }

    /// After a read's messages were handled: how long to pause before the
    /// next read, if at all.
    pub(crate) fn after_read(&mut self, read: StreamRead) -> Option<Duration> {
        let StreamRead {
            messages,
            monitors,
            bytes,
            interval,
            answered,
        } = read;
        // Traffic we answer is not a stream, however many messages a read
        // brings: many callers at once would wait a tick for every turn.
        // Calls show by their monitors at once; our answers only once they
        // were written, which with the servers on another thread can be
        // after the next read.
        let one_way =
            monitors == 0 && answered.saturating_mul(Self::ONE_WAY_RATIO) < messages.max(1) as u64;
        if let Mode::Adaptive { epoch, ways } = &mut self.mode {
            if interval <= Self::QUIET && one_way {
                epoch.messages += messages as u64;
                epoch.busy += interval;
            }
            if epoch.messages >= Self::EPOCH_MESSAGES {
                let e = std::mem::take(epoch);
                let ns = (e.busy.as_nanos() as u64) / e.messages.max(1);
                if ns > Self::STREAM_NS_PER_MESSAGE {
                    // Not a stream: see STREAM_NS_PER_MESSAGE.
                } else if ways.way() == PAUSE {
                    self.report.pause_epochs += 1;
                    self.report.pause_ns_per_message = ns;
                } else {
                    self.report.follow_epochs += 1;
                    self.report.follow_ns_per_message = ns;
                }
                if ns <= Self::STREAM_NS_PER_MESSAGE {
                    if let Some(winner) = ways.close_epoch(ns) {
                        self.report.chose_pausing = Some(winner == PAUSE);
                    }
                }
            }
        }
        let pause = self.pause();
        self.report.pause = pause;
        let stream = messages > Self::STREAM_MESSAGES && bytes < Self::LARGE_READ && one_way;
        let paused = (stream && !pause.is_zero()).then_some(pause);
        self.report.pauses += u64::from(paused.is_some());
        paused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: fn(u64) -> Duration = Duration::from_micros;

    /// A read of `messages` sends (no monitors).
    fn read(messages: usize, bytes: usize, interval: Duration, answered: u64) -> StreamRead {
        StreamRead {
            messages,
            monitors: 0,
            bytes,
            interval,
            answered,
        }
    }

    trait AfterSends {
        fn after_sends(&mut self, m: usize, b: usize, i: Duration, a: u64) -> Option<Duration>;
    }

    impl AfterSends for CoalescePolicy {
        fn after_sends(&mut self, m: usize, b: usize, i: Duration, a: u64) -> Option<Duration> {
            self.after_read(read(m, b, i, a))
        }
    }

    /// Streams `messages` messages from a peer whose messages take
    /// `pausing_ns` each while the reader pauses and `following_ns` while it
    /// follows; returns how many reads were followed by a pause.
    fn stream(p: &mut CoalescePolicy, messages: u64, pausing_ns: u64, following_ns: u64) -> u64 {
        let mut pauses = 0;
        let mut sent = 0;
        let mut next = p.after_sends(1, 40, US(50), 0);
        while sent < messages {
            // A paused read brings a tick's worth; a followed one, what
            // came while the last was handled.
            let (n, ns) = match next {
                Some(_) => (1_000_000 / pausing_ns.max(1), pausing_ns),
                None => (50, following_ns),
            };
            pauses += u64::from(next.is_some());
            next = p.after_sends(n as usize, n as usize * 40, Duration::from_nanos(n * ns), 0);
            sent += n;
        }
        pauses
    }

    #[test]
    fn fixed_pauses_only_streams_and_zero_never_pauses() {
        let mut off = CoalescePolicy::new(ReadCoalesce::Fixed(Duration::ZERO));
        assert_eq!(off.after_sends(500, 20_000, US(900), 0), None);
        let tick = Duration::from_millis(1);
        let mut fixed = CoalescePolicy::new(ReadCoalesce::Fixed(tick));
        assert_eq!(fixed.after_sends(500, 20_000, US(900), 0), Some(tick));
        assert_eq!(
            fixed.after_sends(2, 80, US(40), 0),
            None,
            "request/response"
        );
        assert_eq!(
            fixed.after_sends(2000, CoalescePolicy::LARGE_READ, US(900), 0),
            None,
            "a large read"
        );
        assert!(!fixed.report().adaptive);
        assert_eq!(fixed.report().pauses, 1);
    }

    #[test]
    fn a_peer_whose_streams_gather_while_paused_is_paused_for() {
        // A BEAM sender: 1.6 us a message when we follow (a segment per
        // message), 1.0 when we pause.
        let mut p = CoalescePolicy::new(ReadCoalesce::Adaptive);
        stream(&mut p, 2_000_000, 1000, 1600);
        let r = p.report();
        assert_eq!(r.chose_pausing, Some(true), "{r}");
        assert_eq!(r.pause, CoalescePolicy::PAUSE);
        assert!(r.follow_epochs >= 1, "following was measured: {r}");
        assert!(r.pause_epochs > 10 * r.follow_epochs, "{r}");
    }

    #[test]
    fn a_peer_that_batches_its_own_writes_is_followed() {
        // A beam-peer sender: 1.4 us a message when paused (the window
        // fills), 1.0 when followed.
        let mut p = CoalescePolicy::new(ReadCoalesce::Adaptive);
        stream(&mut p, 2_000_000, 1400, 1000);
        let r = p.report();
        assert_eq!(r.chose_pausing, Some(false), "{r}");
        assert_eq!(r.pause, Duration::ZERO);
        assert!(r.follow_epochs > 10 * r.pause_epochs, "{r}");
        assert!(r
            .to_string()
            .starts_with("adaptive: chose following, now following"));
    }

    #[test]
    fn a_near_tie_goes_to_pausing() {
        let mut p = CoalescePolicy::new(ReadCoalesce::Adaptive);
        stream(&mut p, 2_000_000, 1050, 1000);
        assert_eq!(p.report().chose_pausing, Some(true));
    }

    #[test]
    fn many_callers_at_once_are_not_a_stream() {
        // 100 callers: reads bring dozens of messages, and we answer one
        // in three.
        let tick = Duration::from_millis(1);
        let mut fixed = CoalescePolicy::new(ReadCoalesce::Fixed(tick));
        let mut adaptive = CoalescePolicy::new(ReadCoalesce::Adaptive);
        for _ in 0..100_000 {
            assert_eq!(fixed.after_sends(30, 1_500, US(20), 10), None);
            assert_eq!(adaptive.after_sends(30, 1_500, US(20), 10), None);
        }
        let r = adaptive.report();
        assert_eq!((r.pause_epochs, r.follow_epochs), (0, 0));
        assert_eq!(fixed.after_sends(30, 1_500, US(20), 0), Some(tick));
    }

    #[test]
    fn calls_whose_answers_are_not_written_yet_are_not_a_stream() {
        // Many callers again, but the servers answer on another thread and
        // their replies go out after our next read: only the calls'
        // monitors tell.
        let tick = Duration::from_millis(1);
        let mut fixed = CoalescePolicy::new(ReadCoalesce::Fixed(tick));
        let mut adaptive = CoalescePolicy::new(ReadCoalesce::Adaptive);
        let calls = StreamRead {
            monitors: 20,
            ..read(30, 1_500, US(20), 0)
        };
        for _ in 0..100_000 {
            assert_eq!(fixed.after_read(calls), None);
            assert_eq!(adaptive.after_read(calls), None);
        }
        let r = adaptive.report();
        assert_eq!((r.pause_epochs, r.follow_epochs), (0, 0));
    }

    #[test]
    fn request_response_traffic_is_not_evidence() {
        let mut p = CoalescePolicy::new(ReadCoalesce::Adaptive);
        for _ in 0..100_000 {
            assert_eq!(p.after_sends(2, 120, US(40), 0), None);
        }
        let r = p.report();
        assert_eq!((r.pause_epochs, r.follow_epochs), (0, 0));
        assert_eq!(r.chose_pausing, None);
    }

    #[test]
    fn quiet_spells_are_not_evidence() {
        let mut p = CoalescePolicy::new(ReadCoalesce::Adaptive);
        for _ in 0..10_000 {
            p.after_sends(20, 800, Duration::from_secs(1), 0);
        }
        let r = p.report();
        assert_eq!((r.pause_epochs, r.follow_epochs), (0, 0));
    }
}
