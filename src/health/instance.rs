//! The resilience state every instance carries beside its counters.
//!
//! It lives inside [`crate::balance::InstanceState`] so that the balancer's
//! eligibility check reads it with a couple of atomic loads: the ejection flag
//! and the breaker state. The clock is read only when one of them is set.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use tokio::sync::Notify;

use super::breaker::Breaker;
use crate::clock;

/// Ejection, breaker and drain state of one instance.
#[derive(Debug, Default)]
pub struct InstanceHealth {
    /// Ejected by the outlier detector (until `ejected_until_ns`).
    pub(super) ejected: AtomicBool,
    /// `clock::now_ns` at which the current or last ejection ends.
    pub(super) ejected_until_ns: AtomicU64,
    /// Ejections so far, decayed over time; the ejection time grows with it.
    pub(super) ejections: AtomicU32,
    /// Consecutive passed probes since the last ejection.
    pub(super) probe_passes: AtomicU32,
    /// The circuit breaker.
    pub breaker: Breaker,
    /// Woken when a draining instance's last request finishes.
    pub(crate) idle: Notify,
}

impl InstanceHealth {
    /// Whether ejection and breaker let the balancer pick the instance.
    #[inline]
    pub fn admits_picks(&self) -> bool {
        !self.is_ejected() && !self.breaker.blocks_picks()
    }

    /// Ejected and the ejection time has not passed.
    #[inline]
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Acquire)
            && clock::now_ns() < self.ejected_until_ns.load(Ordering::Acquire)
    }

    /// Ejected by the outlier detector, even if its time has passed and no sweep noticed yet.
    pub fn ejection_pending(&self) -> bool {
        self.ejected.load(Ordering::Acquire)
    }

    /// `clock::now_ns` at which the current or last ejection ends; 0 if never ejected.
    pub fn ejection_ends_ns(&self) -> u64 {
        self.ejected_until_ns.load(Ordering::Acquire)
    }

    /// Called by the in-flight guard when a request ends; wakes a drain waiter.
    pub fn request_finished(&self, in_flight_now: u32, draining: bool) {
        if in_flight_now == 0 && draining {
            self.idle.notify_waiters();
        }
    }
}
