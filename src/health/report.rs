//! One info line and one metric per state change an operator cares about.
//!
//! Callers report only transitions they won (a CAS, a [`super::HealthState`]
//! flip), so each line and each counter increment happens once per change.

use metrics::counter;
use tracing::info;

use super::breaker::BreakerState;
use super::state::Health;
use crate::balance::Instance;
use crate::telemetry::names;

/// An instance turned healthy or unhealthy by its probes.
pub fn health(instance: &Instance, to: Health, reason: &str) {
    info!(service = %instance.service(), instance = %instance.id(), to = to.as_str(), reason, "instance health changed");
    count(names::HEALTH_TRANSITIONS_TOTAL, instance, to.as_str());
}

/// An instance was ejected or restored by the outlier detector.
pub fn ejection(instance: &Instance, to: &'static str, reason: &str, ejected_for_ms: u64) {
    info!(service = %instance.service(), instance = %instance.id(), to, reason, ejected_for_ms, "instance ejection changed");
    count(names::EJECTION_TRANSITIONS_TOTAL, instance, to);
}

/// An instance's breaker changed state.
pub fn breaker(instance: &Instance, to: BreakerState) {
    info!(service = %instance.service(), instance = %instance.id(), to = to.as_str(), "circuit breaker changed");
    count(names::BREAKER_TRANSITIONS_TOTAL, instance, to.as_str());
}

/// An instance started draining, finished, timed out or was restored.
pub fn drain(instance: &Instance, to: &'static str, in_flight: u32) {
    info!(service = %instance.service(), instance = %instance.id(), to, in_flight, "instance drain changed");
    count(names::DRAIN_TRANSITIONS_TOTAL, instance, to);
}

fn count(name: &'static str, instance: &Instance, to: &'static str) {
    counter!(
        name,
        "service" => instance.service().to_string(),
        "instance" => instance.id().to_string(),
        "to" => to
    )
    .increment(1);
}
