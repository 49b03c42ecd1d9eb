//! Per-service resilience on the request path: the in-flight cap, the retry
//! budget, and what happens when a request to one of its instances ends.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::budget::RetryBudget;
use super::{outlier, report};
use crate::balance::{FinishObserver, Instance, Outcome};
use crate::config::ResilienceConfig;
use crate::registry::Service;

/// Admission and retry state of one service, in atomics.
#[derive(Debug, Default)]
pub struct ServiceHealth {
    in_flight: AtomicU32,
    /// Retries allowed on top of the request rate.
    pub budget: RetryBudget,
}

/// A request admitted to a service; leaves the in-flight count when dropped.
///
/// Services without a cap do not count, so their requests share no counter.
#[derive(Debug)]
pub struct Admission {
    counted: Option<Arc<Service>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(service) = self.counted.take() {
            service.health.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl ServiceHealth {
    /// Requests of the service in flight or waiting now; 0 when it has no `max_in_flight`.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// Admits a request unless the service is at `max_in_flight` (0 is unlimited).
pub fn admit(service: &Arc<Service>) -> Option<Admission> {
    let cap = service.config.resilience.max_in_flight;
    if cap == 0 {
        return Some(Admission { counted: None });
    }
    let before = service.health.in_flight.fetch_add(1, Ordering::AcqRel);
    let admission = Admission {
        counted: Some(Arc::clone(service)),
    };
    (before < cap).then_some(admission)
}

/// Asks an instance's breaker to let one request through at `now`
/// (`clock::now_ns`), reporting a transition.
pub fn breaker_admits(
    instance: &Instance,
    cfg: &ResilienceConfig,
    enabled: bool,
    now: u64,
) -> bool {
    if !enabled {
        return true;
    }
    let (admitted, transition) = instance.state.health.breaker.admit(now, cfg);
    if let Some(to) = transition {
        report::breaker(instance, to);
    }
    admitted
}

impl FinishObserver for Service {
    fn finished(&self, instance: &Instance, outcome: Outcome, now: u64) {
        if outcome == Outcome::Cancelled {
            return;
        }
        let failed = outcome.error_class().is_some();
        let cfg = &self.config.resilience;
        if self.config.balancer.circuit_breaker_enabled {
            if let Some(to) = instance.state.health.breaker.record(now, cfg, failed) {
                report::breaker(instance, to);
            }
        }
        if failed {
            outlier::consider(&self.table.load(), instance, cfg, now);
        }
    }
}
