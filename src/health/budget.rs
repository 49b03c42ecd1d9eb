//! The retry budget of a service: retries may add at most a share of the
//! request rate, so that retries never multiply an outage.
//!
//! Requests and retries are counted over a rolling window of
//! [`BUDGET_WINDOW`]. A retry is allowed while the retries in the window stay
//! below `retry_budget_percent` of the requests in it, plus a floor of
//! `retry_min_per_second` per second of window so a quiet service can still
//! retry. Concurrent withdrawals may overshoot by the number of racing
//! requests, never more.

use std::time::Duration;

use super::window::RollingCounts;
use crate::config::ResilienceConfig;

/// The window the budget is computed over.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// Requests and retries of one service.
#[derive(Debug, Default)]
pub struct RetryBudget {
    window: RollingCounts,
}

impl RetryBudget {
    /// Counts one request (first tries only).
    pub fn deposit(&self, now_ns: u64) {
        self.window.add(now_ns, BUDGET_WINDOW, 1, 0);
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self, now_ns: u64, cfg: &ResilienceConfig) -> bool {
        let totals = self.window.totals(now_ns, BUDGET_WINDOW);
        let floor = u64::from(cfg.retry_min_per_second) * BUDGET_WINDOW.as_secs();
        let allowed = totals.first * u64::from(cfg.retry_budget_percent) / 100 + floor;
        if totals.second >= allowed {
            return false;
        }
        self.window.add(now_ns, BUDGET_WINDOW, 0, 1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(percent: u32, floor: u32) -> ResilienceConfig {
        let mut c = crate::health::tests::resilience();
        c.retry_budget_percent = percent;
        c.retry_min_per_second = floor;
        c
    }

    #[test]
    fn retries_stay_within_the_share_of_requests() {
        let budget = RetryBudget::default();
        let cfg = cfg(20, 0);
        let now = 1_000_000_000;
        for _ in 0..100 {
            budget.deposit(now);
        }
        let granted = (0..100).filter(|_| budget.withdraw(now, &cfg)).count();
        assert_eq!(granted, 20, "20% of 100 requests may be retried");
    }

    #[test]
    fn the_floor_allows_retries_on_a_quiet_service() {
        let budget = RetryBudget::default();
        let cfg = cfg(20, 1);
        let granted = (0..100)
            .filter(|_| budget.withdraw(1_000_000_000, &cfg))
            .count();
        assert_eq!(
            granted, 10,
            "one retry per second of a 10 s window, with no requests"
        );
    }
}
