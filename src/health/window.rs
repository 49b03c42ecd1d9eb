//! A rolling window of two counters in atomics: a small ring of time buckets.
//!
//! The breaker counts requests and failures, the retry budget counts requests
//! and retries; both ask "how many over the last W seconds" on the request path
//! without a lock. Each bucket packs both counters into one `AtomicU64` (high
//! half the first, low half the second) beside the stamp of the period it
//! counts. A writer finding a stale stamp claims the bucket with a CAS and
//! clears it; a concurrent increment racing that clear may be lost, which only
//! makes the window slightly more lenient for an instant.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock;

/// Buckets in a window; the window slides in steps of `window / BUCKETS`.
const BUCKETS: usize = 10;

/// Two counters summed over a rolling window.
#[derive(Debug, Default)]
pub struct RollingCounts {
    stamps: [AtomicU64; BUCKETS],
    counts: [AtomicU64; BUCKETS],
}

/// Counter totals over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// The first counter (requests).
    pub first: u64,
    /// The second counter (failures, retries).
    pub second: u64,
}

impl RollingCounts {
    /// Adds to both counters at `now_ns` in a window of length `window`.
    pub fn add(&self, now_ns: u64, window: Duration, first: u32, second: u32) {
        let period = period(now_ns, window);
        let slot = (period % BUCKETS as u64) as usize;
        let stamp = self.stamps[slot].load(Ordering::Acquire);
        if stamp != period
            && self.stamps[slot]
                .compare_exchange(stamp, period, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.counts[slot].store(0, Ordering::Release);
        }
        let packed = (u64::from(first) << 32) | u64::from(second);
        self.counts[slot].fetch_add(packed, Ordering::AcqRel);
    }

    /// Sums the buckets still inside the window at `now_ns`.
    pub fn totals(&self, now_ns: u64, window: Duration) -> Totals {
        let current = period(now_ns, window);
        let oldest = current.saturating_sub(BUCKETS as u64 - 1);
        let mut totals = Totals::default();
        for (stamp, counts) in self.stamps.iter().zip(&self.counts) {
            let stamp = stamp.load(Ordering::Acquire);
            if stamp >= oldest && stamp <= current {
                let packed = counts.load(Ordering::Acquire);
                totals.first += packed >> 32;
                totals.second += packed & u64::from(u32::MAX);
            }
        }
        totals
    }

    /// Forgets everything counted so far.
    pub fn clear(&self) {
        for stamp in &self.stamps {
            stamp.store(0, Ordering::Release);
        }
    }
}

/// The bucket period of an instant: its index in steps of `window / BUCKETS`, from 1.
fn period(now_ns: u64, window: Duration) -> u64 {
    let step = (clock::duration_ns(window) / BUCKETS as u64).max(1);
    now_ns / step + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn sums_what_was_added_inside_the_window() {
        let w = RollingCounts::default();
        let window = Duration::from_secs(10);
        w.add(SEC, window, 1, 0);
        w.add(2 * SEC, window, 1, 1);
        w.add(2 * SEC, window, 1, 1);
        assert_eq!(
            w.totals(3 * SEC, window),
            Totals {
                first: 3,
                second: 2
            }
        );
    }

    #[test]
    fn forgets_buckets_older_than_the_window() {
        let w = RollingCounts::default();
        let window = Duration::from_secs(10);
        w.add(SEC, window, 5, 5);
        w.add(9 * SEC, window, 1, 0);
        let later = w.totals(12 * SEC, window);
        assert_eq!(later.first, 1, "the bucket at 1 s left the 10 s window");
        w.add(21 * SEC, window, 1, 1);
        assert_eq!(
            w.totals(21 * SEC, window),
            Totals {
                first: 1,
                second: 1
            },
            "a reused slot starts from zero"
        );
    }
}
