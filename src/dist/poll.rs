//! How a connection's reader waits for its peer's next bytes: by polling the
//! socket for a while (a busy poll, as BEAM schedulers busy-wait) or by
//! sleeping until the runtime wakes it on readiness.
//!
//! Which one wins depends on the machine, not on the code. With cores to
//! spare, polling reads the next request the moment it lands and saves a
//! wake-up per turn. On a small machine the poll takes the core that the
//! peer (a BEAM scheduler on the same host) or our own reply needs, and every
//! call gets slower. Measured on a 2-core machine with a BEAM caller: 94-99
//! µs per `gen_server:call` with a 200 µs poll, 76-79 µs without. So by
//! default ([`BusyPoll::Adaptive`]) each connection decides from what it
//! observes there:
//!
//! - the cores this process may run on (`available_parallelism`, which
//!   respects affinity and cgroup quotas): with one, polling can only delay
//!   the bytes it waits for, and is never done;
//! - an experiment, run all the time: request/response traffic is served in
//!   epochs of [`PollPolicy::EPOCH_READS`] reads, alternately polling and
//!   sleeping, and the time per message each way (read to read, quiet
//!   spells left out) is compared. Polling must win by
//!   [`PollPolicy::MARGIN`] to be kept, as it costs a core while it runs.
//!   The loser is tried again after a hold that doubles while the answer
//!   stays the same (up to [`PollPolicy::MAX_HOLD`] epochs), so a settled
//!   connection spends about 1% of its first 20,000 reads on the other way
//!   and 0.4% after that, and a change in load is still noticed;
//! - while polling, the window adapts as Linux's halt polling does: a poll
//!   that ran out and the bytes came soon after grows it (a longer one
//!   would have paid), a poll that ran out before a long silence shrinks it
//!   (it only burned the core), down to off.
//!
//! Streams are never polled for ([`StreamDetector`]): their messages arrive
//! microseconds apart, polling would read them one or two at a time, and the
//! readiness wake-ups batch them.
//!
//! This module owns those decisions and the evidence behind them. It never
//! does I/O and never reads a clock: the reader passes in what it measured.

use std::time::Duration;

use super::experiment::Comparison;

/// How a node's connections poll their sockets after request/response
/// traffic ([`NodeConfig::busy_poll`](crate::NodeConfig::busy_poll)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BusyPoll {
    /// Each connection decides from what it observes: the cores available,
    /// and whether polling made its turns faster (see `dist::poll`).
    #[default]
    Adaptive,
    /// Always poll this long after request/response traffic; zero never
    /// polls.
    Fixed(Duration),
}

/// What the reader saw of one read from the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read {
    /// Whole messages the read completed (0 for part of a large one).
    pub messages: usize,
    /// Time since the previous read completed.
    pub interval: Duration,
    pub found: Found,
    /// Messages we sent the peer since the previous read: in a turn the
    /// peer's next message follows our answer, in a stream it does not.
    pub answered: u64,
}

/// How the bytes of a read were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// By polling, after polling this long.
    Polled(Duration),
    /// By a readiness wake-up, after polling this long without finding
    /// anything (zero when the reader did not poll).
    Woken { polled: Duration },
}

/// Which way the reader waits in an adaptive connection's current epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    Poll,
    Sleep,
}

impl Way {
    fn index(self) -> usize {
        self as usize
    }
}

/// What a connection's poll policy has decided so far, for its statistics
/// and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PollReport {
    /// Whether the policy adapts ([`BusyPoll::Adaptive`]).
    pub adaptive: bool,
    /// The window the next request/response turn would poll for (zero:
    /// sleeping). During a check of the answer this is the way being tried.
    pub window: Duration,
    /// The way the last comparison chose: `Some(true)` polling,
    /// `Some(false)` sleeping, `None` before the first (adaptive only).
    pub chose_polling: Option<bool>,
    /// Reads whose bytes a poll found.
    pub polled_reads: u64,
    /// Polls that ran out before anything came.
    pub missed_polls: u64,
    /// Epochs served polling and sleeping (adaptive only).
    pub poll_epochs: u64,
    pub sleep_epochs: u64,
    /// The last measured time per message of each way, in ns (adaptive
    /// only; zero until measured).
    pub poll_ns_per_message: u64,
    pub sleep_ns_per_message: u64,
}

impl std::ops::Add for PollReport {
    type Output = PollReport;
    fn add(self, o: PollReport) -> PollReport {
        PollReport {
            adaptive: self.adaptive || o.adaptive,
            window: self.window.max(o.window),
            chose_polling: match (self.chose_polling, o.chose_polling) {
                (Some(a), Some(b)) => Some(a || b),
                (a, b) => a.or(b),
            },
            polled_reads: self.polled_reads + o.polled_reads,
            missed_polls: self.missed_polls + o.missed_polls,
            poll_epochs: self.poll_epochs + o.poll_epochs,
            sleep_epochs: self.sleep_epochs + o.sleep_epochs,
            poll_ns_per_message: self.poll_ns_per_message.max(o.poll_ns_per_message),
            sleep_ns_per_message: self.sleep_ns_per_message.max(o.sleep_ns_per_message),
        }
    }
}

/// One line: `adaptive: chose sleeping, now sleeping (last poll epoch 95.1
/// us/msg of 2, last sleep epoch 78.0 us/msg of 40), 70 polled reads, 3
/// missed polls`.
impl std::fmt::Display for PollReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.window.is_zero() {
            "sleeping".to_string()
        } else {
            format!("polling {} us", self.window.as_micros())
        };
        if self.adaptive {
            let us = |ns: u64| ns as f64 / 1000.0;
            let chose = match self.chose_polling {
                Some(true) => "chose polling",
                Some(false) => "chose sleeping",
                None => "not compared yet",
            };
            write!(
                f,
                "adaptive: {chose}, now {how} (last poll epoch {:.1} us/msg of {}, \
                 last sleep epoch {:.1} us/msg of {})",
                us(self.poll_ns_per_message),
                self.poll_epochs,
                us(self.sleep_ns_per_message),
                self.sleep_epochs
            )?;
        } else {
            write!(f, "fixed: {how}")?;
        }
        write!(
            f,
            ", {} polled reads, {} missed polls",
            self.polled_reads, self.missed_polls
        )
    }
}

/// Tells streams from request/response traffic, from how reads arrive.
///
/// A streaming peer is recognised by several polls in a row that each found
/// data almost at once without our having sent it anything in between, or
/// by a wake-up read that brought many messages; after that, reads are left
/// to wake-ups for a while, and polling is tried again in case the stream
/// ended. A quick poll after we answered is a fast turn, not a stream: two
/// of our nodes polling for each other's calls find each request a few µs
/// after their reply, and taking that for a stream stopped the polling of
/// 3 reads in 4 and made their calls 2.5 times slower (measured: 63-92 µs
/// a call, against 32-36 with one end polling).
#[derive(Debug, Default)]
struct StreamDetector {
    /// Polls in a row that found data almost at once.
    quick_in_row: u32,
    /// Reads left before polling is tried again, after signs of a stream.
    quiet_reads: u32,
}

impl StreamDetector {
    /// At most this many messages in a read that followed a wake-up is
    /// request/response traffic.
    const SPARSE_MESSAGES: usize = 4;
    /// A poll that found data sooner than this found it "at once".
    const QUICK: Duration = Duration::from_micros(20);
    /// This many quick polls in a row are a stream. One alone is not: a
    /// remote `gen_server:call` arrives as a monitor and then, a few µs
    /// later, the request.
    const STREAM_QUICK_POLLS: u32 = 4;
    /// Reads without polling after signs of a stream.
    const STREAM_BACKOFF: u32 = 16;

    /// Whether the connection is request/response traffic after `read`.
    fn turn_based(&mut self, read: &Read) -> bool {
        let stream = match read.found {
            Found::Polled(waited) if waited < Self::QUICK && read.answered == 0 => {
                self.quick_in_row += 1;
                self.quick_in_row >= Self::STREAM_QUICK_POLLS
            }
            Found::Polled(_) => {
                self.quick_in_row = 0;
                false
            }
            Found::Woken { .. } => read.messages > Self::SPARSE_MESSAGES,
        };
        if stream {
            self.quiet_reads = Self::STREAM_BACKOFF;
            self.quick_in_row = 0;
        } else if self.quiet_reads > 0 {
            self.quiet_reads -= 1;
        }
        self.quiet_reads == 0 && read.messages > 0
    }
}

/// One epoch's evidence: request/response reads served one way.
#[derive(Debug, Default, Clone, Copy)]
struct Epoch {
    reads: u32,
    messages: u64,
    /// Read-to-read time, quiet spells left out.
    busy: Duration,
}

#[derive(Debug)]
struct Adaptive {
    /// The window a poll epoch polls for; adapts (see the module doc).
    window: Duration,
    epoch: Epoch,
    /// Polling (way 0) against sleeping (way 1, which wins ties).
    ways: Comparison,
}

#[derive(Debug)]
enum Mode {
    Off,
    Fixed(Duration),
    Adaptive(Adaptive),
}

/// A connection reader's poll policy: after each read, how long to poll
/// before sleeping, if at all.
#[derive(Debug)]
pub(crate) struct PollPolicy {
    mode: Mode,
    streams: StreamDetector,
    report: PollReport,
}

impl PollPolicy {
    /// Request/response reads per epoch.
    pub(crate) const EPOCH_READS: u32 = 32;
    /// How much less time per message polling must take to be kept.
    pub(crate) const MARGIN: f64 = 0.05;
    /// The window a poll epoch starts with, and its bounds: below the
    /// smallest, polling is off; the largest is about two BEAM call turns.
    pub(crate) const START_WINDOW: Duration = Duration::from_micros(50);
    pub(crate) const MIN_WINDOW: Duration = Duration::from_micros(10);
    pub(crate) const MAX_WINDOW: Duration = Duration::from_micros(400);
    /// A read-to-read interval longer than this is a quiet spell, not part
    /// of a turn: left out of the comparison (both ways wait it out alike).
    pub(crate) const QUIET: Duration = Duration::from_millis(2);
    /// Epochs an answer is first held for, and at most.
    pub(crate) const MIN_HOLD: u32 = 4;
    pub(crate) const MAX_HOLD: u32 = 256;

    /// The policy `setting` gives on a machine where this process may use
    /// `cores` cores.
    pub(crate) fn new(setting: BusyPoll, cores: usize) -> Self {
        let mode = match setting {
            BusyPoll::Fixed(w) if w.is_zero() => Mode::Off,
            BusyPoll::Fixed(w) => Mode::Fixed(w),
            // One core: the poll would hold the only core the bytes it
            // waits for (the peer on this host, or our own reply) need.
            BusyPoll::Adaptive if cores <= 1 => Mode::Off,
            BusyPoll::Adaptive => Mode::Adaptive(Adaptive {
                window: Self::START_WINDOW,
                epoch: Epoch::default(),
                // Start the way the machine suggests; the other way is
                // measured next either way. With two cores a poll competes
                // with the peer's and our own threads.
                ways: Comparison::new(
                    if cores > 2 { Way::Poll } else { Way::Sleep }.index(),
                    Self::MARGIN,
                    Self::MIN_HOLD,
                    Self::MAX_HOLD,
                ),
            }),
        };
        let report = PollReport {
            adaptive: matches!(mode, Mode::Adaptive(_)),
            ..PollReport::default()
        };
        let mut p = PollPolicy {
            mode,
            streams: StreamDetector::default(),
            report,
        };
        p.report.window = p.window();
        p
    }

    /// The window the next request/response turn polls for (zero: sleep).
    fn window(&self) -> Duration {
        match &self.mode {
            Mode::Off => Duration::ZERO,
            Mode::Fixed(w) => *w,
            Mode::Adaptive(a) if a.way() == Way::Poll => a.window,
            Mode::Adaptive(_) => Duration::ZERO,
        }
    }

    /// Holds of random length (see `dist::experiment`): two of our nodes
    /// calling each other read in lock-step, and with identical schedules
    /// both ends would check the other way at once, never measuring what
    /// one end's change alone does.
    pub(crate) fn desynchronized(mut self, seed: u64) -> Self {
        if let Mode::Adaptive(a) = &mut self.mode {
            a.ways.desynchronize(seed);
        }
        self
    }

    /// What has been decided so far.
    pub(crate) fn report(&self) -> PollReport {
        self.report
    }

    /// After the messages of `read` were handled: how long to poll before
    /// sleeping, if at all.
    pub(crate) fn after_read(&mut self, read: Read) -> Option<Duration> {
        match read.found {
            Found::Polled(_) => self.report.polled_reads += 1,
            Found::Woken { polled } if !polled.is_zero() => self.report.missed_polls += 1,
            Found::Woken { .. } => {}
        }
        if matches!(self.mode, Mode::Off) {
            return None;
        }
        let turn = self.streams.turn_based(&read);
        if let Mode::Adaptive(a) = &mut self.mode {
            if turn {
                a.observe(&read, &mut self.report);
            }
        }
        self.report.window = self.window();
        let w = self.report.window;
        (turn && !w.is_zero()).then_some(w)
    }
}

impl Adaptive {
    fn way(&self) -> Way {
        if self.ways.way() == Way::Poll.index() {
            Way::Poll
        } else {
            Way::Sleep
        }
    }

    fn observe(&mut self, read: &Read, report: &mut PollReport) {
        if self.way() == Way::Poll {
            self.adapt_window(read);
        }
        if read.interval <= PollPolicy::QUIET {
            self.epoch.reads += 1;
            self.epoch.messages += read.messages as u64;
            self.epoch.busy += read.interval;
        }
        if self.epoch.reads >= PollPolicy::EPOCH_READS {
            self.close_epoch(report);
        }
    }

    /// As Linux's halt polling adapts its window: grow it when a poll ran
    /// out and the bytes came within the largest window (polling longer
    /// would have found them), shrink it when a poll ran out before a long
    /// silence (it only burned the core).
    fn adapt_window(&mut self, read: &Read) {
        let Found::Woken { polled } = read.found else {
            return;
        };
        if polled.is_zero() {
            return;
        }
        if read.interval <= PollPolicy::MAX_WINDOW {
            let grown = self.window.max(PollPolicy::MIN_WINDOW) * 2;
            self.window = grown.min(PollPolicy::MAX_WINDOW);
        } else {
            self.window /= 2;
            if self.window < PollPolicy::MIN_WINDOW {
                self.window = Duration::ZERO;
            }
        }
    }

    fn close_epoch(&mut self, report: &mut PollReport) {
        let e = std::mem::take(&mut self.epoch);
        let ns = (e.busy.as_nanos() as u64) / e.messages.max(1);
        match self.way() {
            Way::Poll => {
                report.poll_epochs += 1;
                report.poll_ns_per_message = ns;
            }
            Way::Sleep => {
                report.sleep_epochs += 1;
                report.sleep_ns_per_message = ns;
            }
        }
        let was = self.way();
        if let Some(winner) = self.ways.close_epoch(ns) {
            // Polling holds a core while it runs: it has to win clearly
            // (the margin the comparison was made with).
            report.chose_polling = Some(winner == Way::Poll.index());
        }
        if self.way() == Way::Poll && was != Way::Poll && self.window.is_zero() {
            // A window that shrank to nothing starts over when polling is
            // tried again.
            self.window = PollPolicy::START_WINDOW;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: fn(u64) -> Duration = Duration::from_micros;

    // A turn's read: we answered the previous one.
    fn woken(messages: usize, interval_us: u64) -> Read {
        Read {
            messages,
            interval: US(interval_us),
            found: Found::Woken {
                polled: Duration::ZERO,
            },
            answered: 1,
        }
    }

    fn polled(messages: usize, interval_us: u64, waited_us: u64) -> Read {
        Read {
            messages,
            interval: US(interval_us),
            found: Found::Polled(US(waited_us)),
            answered: 1,
        }
    }

    fn missed(messages: usize, interval_us: u64, polled_us: u64) -> Read {
        Read {
            messages,
            interval: US(interval_us),
            found: Found::Woken {
                polled: US(polled_us),
            },
            answered: 1,
        }
    }

    /// What was read with nothing sent the peer since the read before.
    fn unanswered(read: Read) -> Read {
        Read {
            answered: 0,
            ..read
        }
    }

    /// Serves one request/response read the way `p` asked for, with turns
    /// of `poll_us` when polling and `sleep_us` when sleeping.
    fn turn(
        p: &mut PollPolicy,
        asked: Option<Duration>,
        poll_us: u64,
        sleep_us: u64,
    ) -> Option<Duration> {
        match asked {
            Some(_) => p.after_read(polled(1, poll_us, poll_us - 5)),
            None => p.after_read(woken(1, sleep_us)),
        }
    }

    /// Runs `reads` turns; returns how many of them polled.
    fn run(p: &mut PollPolicy, reads: usize, poll_us: u64, sleep_us: u64) -> usize {
        let mut asked = p.after_read(woken(1, sleep_us));
        let mut polls = 0;
        for _ in 0..reads {
            polls += asked.is_some() as usize;
            asked = turn(p, asked, poll_us, sleep_us);
        }
        polls
    }

    #[test]
    fn fixed_windows_are_kept_and_zero_never_polls() {
        let mut off = PollPolicy::new(BusyPoll::Fixed(Duration::ZERO), 8);
        assert_eq!(off.after_read(woken(1, 100)), None);
        assert_eq!(off.after_read(polled(1, 100, 80)), None);
        let w = US(200);
        let mut fixed = PollPolicy::new(BusyPoll::Fixed(w), 1);
        for _ in 0..1000 {
            assert_eq!(fixed.after_read(polled(1, 500, 120)), Some(w));
        }
        assert!(!fixed.report().adaptive);
        // Bytes that complete no message (part of a large one) are not a
        // reason to poll.
        assert_eq!(fixed.after_read(woken(0, 10)), None);
    }

    #[test]
    fn one_core_never_polls() {
        let mut p = PollPolicy::new(BusyPoll::Adaptive, 1);
        assert_eq!(run(&mut p, 10_000, 10, 1000), 0);
        assert_eq!(p.report().window, Duration::ZERO);
    }

    #[test]
    fn polling_that_makes_turns_faster_is_kept() {
        // Plenty of cores: the peer answers in 40 µs and a wake-up adds 30.
        let mut p = PollPolicy::new(BusyPoll::Adaptive, 8);
        let polls = run(&mut p, 20_000, 40, 70);
        assert!(polls > 19_000, "polled {polls} of 20000");
        let r = p.report();
        assert!(r.window > Duration::ZERO);
        assert!(r.poll_ns_per_message < r.sleep_ns_per_message);
        assert!(r.sleep_epochs >= 1, "sleeping was measured too");
        assert_eq!(r.chose_polling, Some(true));
    }

    #[test]
    fn polling_that_takes_the_peers_core_is_given_up() {
        // Two cores: while we poll, the caller's scheduler gets less CPU and
        // its turns take 95 µs, against 78 µs when we sleep (the wake-up
        // included). The poll finds every request: finding is not paying.
        let mut p = PollPolicy::new(BusyPoll::Adaptive, 2);
        let polls = run(&mut p, 20_000, 95, 78);
        assert!(polls < 300, "polled {polls} of 20000 (under 1.5%)");
        let r = p.report();
        assert_eq!(r.window, Duration::ZERO);
        assert!(r.poll_epochs >= 1, "polling was measured");
        assert!(r.poll_ns_per_message > r.sleep_ns_per_message);
        assert_eq!(r.chose_polling, Some(false));
        assert!(r
            .to_string()
            .starts_with("adaptive: chose sleeping, now sleeping"));
    }

    #[test]
    fn a_near_tie_goes_to_sleeping() {
        let mut p = PollPolicy::new(BusyPoll::Adaptive, 4);
        let polls = run(&mut p, 10_000, 78, 80);
        assert!(polls < 300, "polled {polls}");
    }

    #[test]
    fn a_change_in_the_machine_is_noticed() {
        let mut p = PollPolicy::new(BusyPoll::Adaptive, 2);
        run(&mut p, 5_000, 95, 78);
        assert_eq!(p.report().window, Duration::ZERO);
        // The load that made polling lose is gone: polling wins again
        // within a few holds.
        let later = run(&mut p, 20_000, 40, 70);
        assert!(later > 15_000, "polled {later} of 20000 after the change");
        assert!(p.report().window > Duration::ZERO);
    }

    #[test]
    fn a_window_grows_when_a_longer_poll_would_have_paid_and_shrinks_to_off_when_not() {
        let mut p = PollPolicy::new(BusyPoll::Adaptive, 8);
        let start = p.after_read(woken(1, 100)).expect("polls first on 8 cores");
        assert_eq!(start, PollPolicy::START_WINDOW);
        // The poll ran out; the request came 120 µs after the last read.
        let grown = p.after_read(missed(1, 120, 50)).expect("still polling");
        assert_eq!(grown, start * 2);
        let grown = p.after_read(missed(1, 150, 100)).expect("still polling");
        assert_eq!(grown, start * 4);
        for _ in 0..10 {
            p.after_read(missed(1, 300, 200));
        }
        assert_eq!(p.report().window, PollPolicy::MAX_WINDOW);
        // Then the peer goes quiet for a second between requests: every
        // poll only burns the core.
        let mut last = Some(PollPolicy::MAX_WINDOW);
        for _ in 0..10 {
            last = p.after_read(missed(1, 1_000_000, 400));
        }
        assert_eq!(last, None);
        assert!(p.report().missed_polls >= 10);
    }

    #[test]
    fn streams_are_left_to_wake_ups_and_polled_again_later() {
        let mut p = PollPolicy::new(BusyPoll::Fixed(US(200)), 2);
        for _ in 1..StreamDetector::STREAM_QUICK_POLLS {
            assert_eq!(p.after_read(unanswered(polled(1, 5, 3))), Some(US(200)));
        }
        assert_eq!(
            p.after_read(unanswered(polled(1, 5, 3))),
            None,
            "quick polls in a row: a stream"
        );
        for _ in 1..StreamDetector::STREAM_BACKOFF {
            assert_eq!(p.after_read(woken(2, 50)), None);
        }
        assert_eq!(p.after_read(woken(2, 50)), Some(US(200)), "tried again");
        // A wake-up read with many messages is a stream at once.
        assert_eq!(
            p.after_read(woken(StreamDetector::SPARSE_MESSAGES + 1, 50)),
            None
        );
    }

    #[test]
    fn a_call_arriving_in_two_pieces_is_request_response_traffic() {
        // A remote gen_server:call: the monitor wakes us, the request
        // follows a few µs later, the next call after our reply.
        let w = US(200);
        let mut p = PollPolicy::new(BusyPoll::Fixed(w), 2);
        for _ in 0..100 {
            assert_eq!(p.after_read(woken(1, 100)), Some(w));
            assert_eq!(p.after_read(unanswered(polled(1, 6, 5))), Some(w));
            assert_eq!(p.after_read(polled(2, 120, 118)), Some(w));
        }
    }

    #[test]
    fn fast_turns_are_not_a_stream() {
        // Two of our nodes, the other end polling too: each request lands
        // a few µs after our reply, turn after turn. Every read is a turn:
        // polled for, and evidence for the comparison.
        let w = US(200);
        let mut p = PollPolicy::new(BusyPoll::Fixed(w), 2);
        for _ in 0..1000 {
            assert_eq!(p.after_read(polled(1, 30, 4)), Some(w));
        }
        let mut a = PollPolicy::new(BusyPoll::Adaptive, 2);
        for _ in 0..1000 {
            a.after_read(polled(1, 30, 4));
        }
        let r = a.report();
        assert!(r.poll_epochs + r.sleep_epochs >= 1000 / PollPolicy::EPOCH_READS as u64 - 1);
    }

    #[test]
    fn streams_and_quiet_spells_are_not_evidence() {
        let mut p = PollPolicy::new(BusyPoll::Adaptive, 2);
        // A stream, then silences: no epoch closes.
        for _ in 0..10_000 {
            p.after_read(woken(50, 3));
        }
        for _ in 0..1_000 {
            p.after_read(woken(1, 5_000_000));
        }
        let r = p.report();
        assert_eq!((r.poll_epochs, r.sleep_epochs), (0, 0));
    }

    /// Two of our nodes calling each other, one read per turn at either
    /// end. A turn's time depends on both ends' ways, as measured between
    /// two one-thread `beam-peer` nodes on a 2-core machine (µs per call,
    /// p50): both polling 14-16, only the caller 46, only the server 29,
    /// neither 90. Returns the share of the last `reads / 2` turns in which
    /// both ends polled.
    fn two_ends(mut caller: PollPolicy, mut server: PollPolicy, reads: usize) -> f64 {
        let cost = |c: bool, s: bool| match (c, s) {
            (true, true) => 15,
            (true, false) => 46,
            (false, true) => 29,
            (false, false) => 90,
        };
        let (mut c, mut s) = (
            caller.after_read(woken(1, 90)),
            server.after_read(woken(1, 90)),
        );
        let mut both = 0;
        for i in 0..reads {
            let us = cost(c.is_some(), s.is_some());
            both += usize::from(i >= reads / 2 && c.is_some() && s.is_some());
            c = turn(&mut caller, c, us, us);
            s = turn(&mut server, s, us, us);
        }
        both as f64 / (reads / 2) as f64
    }

    #[test]
    fn two_of_our_ends_both_poll_whatever_their_schedules() {
        // Polling pays at either end whatever the other does, so both
        // settle on it: in lock-step (every check compares both polling
        // with neither) and with schedules of their own (a check compares
        // one end's change alone).
        let locked = two_ends(
            PollPolicy::new(BusyPoll::Adaptive, 2),
            PollPolicy::new(BusyPoll::Adaptive, 2),
            100_000,
        );
        assert!(
            locked > 0.9,
            "lock-step: both polled {locked:.2} of the time"
        );
        for seed in 0..20 {
            let both = two_ends(
                PollPolicy::new(BusyPoll::Adaptive, 2).desynchronized(seed),
                PollPolicy::new(BusyPoll::Adaptive, 2).desynchronized(seed + 1_000),
                100_000,
            );
            assert!(
                both > 0.9,
                "seeds {seed}: both polled {both:.2} of the time"
            );
        }
    }
}
