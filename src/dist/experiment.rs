//! A comparison between two ways of serving a connection, run all the time.
//!
//! A connection's reader can wait for bytes in two ways (poll or sleep, see
//! `dist::poll`) and handle a stream in two ways (pause to let it gather,
//! or follow it at once, see `dist::coalesce`). Which one is faster depends
//! on the machine and on the peer, so each connection measures: it serves
//! an epoch one way, an epoch the other way, and keeps the cheaper. The
//! answer is held for a while, a hold that doubles each time a check
//! confirms it (from `min_hold` to `max_hold` epochs) and starts over when
//! a check overturns it, so a settled connection spends little time on the
//! losing way and a change in load or peer is still noticed.
//!
//! Two of our nodes serving each other's calls read in lock-step: each turn
//! is one read at either end, so identical schedules would try the other
//! way at both ends at once, forever comparing "both poll" with "both
//! sleep" and never seeing what one end's change alone does. A
//! connection's comparison can therefore be
//! [desynchronized](Comparison::desynchronize): each hold is drawn between
//! half and one and a half times its length, from a seed of its own.
//!
//! This module owns only that bookkeeping: what an epoch costs, and what
//! "way" means, are its users'. It never reads a clock or does I/O.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Two ways, `0` and `1`. Way `1` is the default: it wins ties, and way `0`
/// must cost `margin` less to be chosen.
#[derive(Debug)]
pub(crate) struct Comparison {
    way: usize,
    /// Epochs left before the other way is tried again; `None` while
    /// comparing.
    settled_for: Option<u32>,
    /// How long the current answer is held next time it is confirmed.
    hold: u32,
    /// The last measured cost of each way, and whether it was measured in
    /// the current comparison.
    last: [Option<u64>; 2],
    fresh: [bool; 2],
    margin: f64,
    min_hold: u32,
    max_hold: u32,
    /// Draws each hold's length when desynchronized.
    jitter: Option<SmallRng>,
}

impl Comparison {
    /// Starts serving way `start`; the other is measured next.
    pub(crate) fn new(start: usize, margin: f64, min_hold: u32, max_hold: u32) -> Self {
        Comparison {
            way: start.min(1),
            settled_for: None,
            hold: min_hold,
            last: [None; 2],
            fresh: [false; 2],
            margin,
            min_hold,
            max_hold,
            jitter: None,
        }
    }

    /// Holds of random length (from `seed`) instead of the exact ones, so
    /// that the two ends of a connection stop checking at the same time.
    pub(crate) fn desynchronize(&mut self, seed: u64) {
        self.jitter = Some(SmallRng::seed_from_u64(seed));
    }

    /// How many epochs a hold of `hold` lasts this time.
    fn held(&mut self, hold: u32) -> u32 {
        match &mut self.jitter {
            Some(rng) => rng.random_range(hold.div_ceil(2)..=hold + hold / 2).max(1),
            None => hold,
        }
    }

    /// The way to serve now.
    pub(crate) fn way(&self) -> usize {
        self.way
    }

    /// Records that an epoch served the current way cost `cost` (lower is
    /// better) and moves on: to the other way while comparing or when a
    /// hold ran out, to the winner when a comparison ends. Returns the
    /// winner when this epoch ended a comparison.
    pub(crate) fn close_epoch(&mut self, cost: u64) -> Option<usize> {
        let way = self.way;
        self.last[way] = Some(cost);
        self.fresh[way] = true;
        match &mut self.settled_for {
            Some(left) if *left > 1 => {
                *left -= 1;
                None
            }
            Some(_) => {
                // Time to check the answer: this epoch is the held way's
                // evidence; the next one tries the other.
                self.settled_for = None;
                self.fresh = [false; 2];
                self.fresh[way] = true;
                self.way = 1 - way;
                None
            }
            None if self.fresh == [true, true] => {
                let (Some(zero), Some(one)) = (self.last[0], self.last[1]) else {
                    return None;
                };
                let winner = usize::from((zero as f64) >= one as f64 * (1.0 - self.margin));
                // The way held before this comparison is the one measured
                // first in it, i.e. not the one just measured.
                let confirmed = winner != way;
                self.hold = if confirmed {
                    (self.hold * 2).min(self.max_hold)
                } else {
                    self.min_hold
                };
                self.settled_for = Some(self.held(self.hold));
                self.way = winner;
                Some(winner)
            }
            None => {
                self.way = 1 - way;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `epochs` epochs with the given costs; returns how many were
    /// served way 0.
    fn run(c: &mut Comparison, epochs: usize, cost: [u64; 2]) -> usize {
        let mut zero = 0;
        for _ in 0..epochs {
            zero += usize::from(c.way() == 0);
            c.close_epoch(cost[c.way()]);
        }
        zero
    }

    #[test]
    fn the_cheaper_way_is_held_and_checked_less_and_less() {
        let mut c = Comparison::new(1, 0.1, 4, 64);
        let zero = run(&mut c, 1000, [50, 100]);
        assert!(zero > 950, "way 0 served {zero} of 1000 epochs");
        assert_eq!(c.way(), 0);
    }

    #[test]
    fn way_0_must_win_by_the_margin() {
        let mut c = Comparison::new(0, 0.1, 4, 64);
        let zero = run(&mut c, 1000, [95, 100]);
        assert!(zero < 50, "way 0 served {zero} of 1000 epochs");
        assert_eq!(c.way(), 1);
    }

    #[test]
    fn an_overturned_answer_is_followed_within_a_hold() {
        let mut c = Comparison::new(1, 0.1, 4, 16);
        run(&mut c, 500, [50, 100]);
        assert_eq!(c.way(), 0);
        let zero = run(&mut c, 500, [200, 100]);
        assert!(
            zero < 60,
            "way 0 served {zero} of 500 epochs after the change"
        );
        assert_eq!(c.way(), 1);
    }
}
