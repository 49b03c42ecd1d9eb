//! A per-instance circuit breaker, in atomics.
//!
//! Closed, it counts requests and failures over a rolling window and opens
//! when the failure share passes `breaker_failure_percent` with at least
//! `breaker_min_requests` in the window. Open, the instance gets no requests
//! until `breaker_open_for` has passed; then it is half-open and admits
//! `breaker_half_open_trials` trial requests: a success closes it, a failure
//! opens it again. Every transition is won by one CAS, so the caller reports it
//! exactly once. Times are passed in (`now_ns` from [`crate::clock`]) so the
//! state machine is tested without a clock.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::window::RollingCounts;
use crate::clock;
use crate::config::ResilienceConfig;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow; failures are counted.
    Closed,
    /// No requests until the cool-off ends.
    Open,
    /// A few trial requests decide whether it closes.
    HalfOpen,
}

impl BreakerState {
    /// The label used in logs, metrics and `/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

/// One instance's breaker.
#[derive(Debug, Default)]
pub struct Breaker {
    state: AtomicU8,
    /// Open: when the cool-off ends. Half-open: when unresolved trials are granted again.
    until_ns: AtomicU64,
    trials: AtomicU32,
    window: RollingCounts,
}

impl Breaker {
    /// The current state.
    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Whether the breaker keeps the balancer away: open and cooling off.
    ///
    /// One atomic load while closed; the clock is read only when it is not.
    pub fn blocks_picks(&self) -> bool {
        self.state() == BreakerState::Open
            && clock::now_ns() < self.until_ns.load(Ordering::Acquire)
    }

    /// Asks to send one request; returns whether it may, and a transition to report.
    pub fn admit(&self, now_ns: u64, cfg: &ResilienceConfig) -> (bool, Option<BreakerState>) {
        let mut transition = None;
        match self.state() {
            BreakerState::Closed => return (true, None),
            BreakerState::Open => {
                if now_ns < self.until_ns.load(Ordering::Acquire) {
                    return (false, None);
                }
                self.until_ns.store(
                    now_ns + clock::duration_ns(cfg.breaker_open_for),
                    Ordering::Release,
                );
                if self.transit(BreakerState::Open, BreakerState::HalfOpen) {
                    self.trials.store(0, Ordering::Release);
                    transition = Some(BreakerState::HalfOpen);
                }
            }
            BreakerState::HalfOpen => {}
        }
        (self.take_trial(now_ns, cfg), transition)
    }

    /// Records how a request ended; returns a transition to report.
    pub fn record(
        &self,
        now_ns: u64,
        cfg: &ResilienceConfig,
        failed: bool,
    ) -> Option<BreakerState> {
        match self.state() {
            BreakerState::Closed => {
                self.window
                    .add(now_ns, cfg.breaker_window, 1, u32::from(failed));
                if failed && self.over_threshold(now_ns, cfg) {
                    return self.open(now_ns, cfg, BreakerState::Closed);
                }
                None
            }
            BreakerState::HalfOpen if failed => self.open(now_ns, cfg, BreakerState::HalfOpen),
            BreakerState::HalfOpen => {
                self.window.clear();
                self.transit(BreakerState::HalfOpen, BreakerState::Closed)
                    .then_some(BreakerState::Closed)
            }
            // A late answer to a request sent before the breaker opened.
            BreakerState::Open => None,
        }
    }

    fn over_threshold(&self, now_ns: u64, cfg: &ResilienceConfig) -> bool {
        let totals = self.window.totals(now_ns, cfg.breaker_window);
        totals.first >= u64::from(cfg.breaker_min_requests)
            && totals.second * 100 >= u64::from(cfg.breaker_failure_percent) * totals.first
    }

    fn open(
        &self,
        now_ns: u64,
        cfg: &ResilienceConfig,
        from: BreakerState,
    ) -> Option<BreakerState> {
        // The deadline is stored before the state so a reader never sees Open with a stale deadline.
        self.until_ns.store(
            now_ns + clock::duration_ns(cfg.breaker_open_for),
            Ordering::Release,
        );
        self.transit(from, BreakerState::Open)
            .then_some(BreakerState::Open)
    }

    /// Takes a half-open trial; trials left unresolved (cancelled) are granted again
    /// after another cool-off, so the breaker cannot stick half-open.
    fn take_trial(&self, now_ns: u64, cfg: &ResilienceConfig) -> bool {
        if self.trials.fetch_add(1, Ordering::AcqRel) < cfg.breaker_half_open_trials {
            return true;
        }
        let renew_at = self.until_ns.load(Ordering::Acquire);
        if now_ns >= renew_at
            && self
                .until_ns
                .compare_exchange(
                    renew_at,
                    now_ns + clock::duration_ns(cfg.breaker_open_for),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.trials.store(1, Ordering::Release);
            return true;
        }
        false
    }

    fn transit(&self, from: BreakerState, to: BreakerState) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn cfg() -> ResilienceConfig {
        let mut c = crate::health::tests::resilience();
        c.breaker_min_requests = 10;
        c.breaker_failure_percent = 50;
        c.breaker_half_open_trials = 2;
        c
    }

    /// Feeds `n` results at `at`, returning the transitions reported.
    fn feed(b: &Breaker, at: u64, n: usize, failed: bool) -> Vec<BreakerState> {
        (0..n)
            .filter_map(|_| b.record(at, &cfg(), failed))
            .collect()
    }

    #[test]
    fn stays_closed_below_the_minimum_request_count() {
        let b = Breaker::default();
        assert!(
            feed(&b, SEC, 9, true).is_empty(),
            "9 failures < breaker_min_requests"
        );
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn opens_once_when_the_failure_share_passes_the_threshold() {
        let b = Breaker::default();
        feed(&b, SEC, 5, false);
        let opened = feed(&b, SEC, 10, true);
        assert_eq!(
            opened,
            vec![BreakerState::Open],
            "one transition, reported once"
        );
        assert_eq!(b.admit(SEC, &cfg()), (false, None), "open refuses requests");
    }

    #[test]
    fn does_not_open_while_failures_stay_under_the_share() {
        let b = Breaker::default();
        for _ in 0..20 {
            b.record(SEC, &cfg(), false);
            b.record(SEC, &cfg(), false);
            b.record(SEC, &cfg(), true);
        }
        assert_eq!(b.state(), BreakerState::Closed, "33% failures < 50%");
    }

    #[test]
    fn half_opens_after_the_cool_off_and_admits_only_the_trials() {
        let b = Breaker::default();
        feed(&b, SEC, 10, true);
        let later = SEC + 5 * SEC;
        assert_eq!(b.admit(later, &cfg()), (true, Some(BreakerState::HalfOpen)));
        assert_eq!(b.admit(later, &cfg()), (true, None), "second trial");
        assert_eq!(b.admit(later, &cfg()), (false, None), "only two trials");
    }

    #[test]
    fn a_successful_trial_closes_and_a_failed_one_reopens() {
        let b = Breaker::default();
        feed(&b, SEC, 10, true);
        let later = 6 * SEC;
        b.admit(later, &cfg());
        assert_eq!(b.record(later, &cfg(), false), Some(BreakerState::Closed));
        assert_eq!(b.admit(later, &cfg()), (true, None), "closed admits all");

        feed(&b, later, 10, true);
        let trial = later + 5 * SEC;
        b.admit(trial, &cfg());
        assert_eq!(b.record(trial, &cfg(), true), Some(BreakerState::Open));
        assert_eq!(
            b.admit(trial, &cfg()),
            (false, None),
            "reopened for another cool-off"
        );
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let b = Breaker::default();
        feed(&b, SEC, 9, true);
        assert!(
            feed(&b, 30 * SEC, 1, true).is_empty(),
            "old failures left the window"
        );
    }

    #[test]
    fn unresolved_trials_are_granted_again_after_a_cool_off() {
        let b = Breaker::default();
        feed(&b, SEC, 10, true);
        let t = 6 * SEC;
        b.admit(t, &cfg());
        b.admit(t, &cfg());
        assert!(!b.admit(t, &cfg()).0);
        assert!(
            b.admit(t + 5 * SEC, &cfg()).0,
            "cancelled trials must not wedge the breaker"
        );
    }
}
