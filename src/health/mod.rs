//! Health and resilience: how tidegate keeps serving through bad instances
//! and never turns one failure into many.
//!
//! - [`prober`]: active probes per service, jittered and bounded, deciding
//!   health through [`HealthState`];
//! - [`outlier`]: passive ejection of instances that keep failing requests;
//! - [`breaker`]: a per-instance circuit breaker over a rolling window;
//! - [`service`]: the per-service in-flight cap, retry budget and the hook the
//!   in-flight guard calls when a request ends;
//! - [`drain`]: draining an instance for removal.
//!
//! Everything the request path reads is an atomic inside
//! [`crate::balance::InstanceState`] or [`crate::registry::Service`]; the
//! control-plane tasks here only flip those atomics.

pub mod breaker;
pub mod budget;
pub mod drain;
pub mod instance;
pub mod outlier;
pub mod probe;
pub mod prober;
pub mod report;
pub mod service;
pub mod state;
pub mod window;

pub use breaker::{Breaker, BreakerState};
pub use drain::{drain, undrain};
pub use instance::InstanceHealth;
pub use prober::{wait_until_healthy, NotHealthy};
pub use service::{Admission, ServiceHealth};
pub use state::{Health, HealthState, Transition};

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use crate::config::ResilienceConfig;

    /// The documented resilience defaults, for unit tests.
    pub(crate) fn resilience() -> ResilienceConfig {
        ResilienceConfig {
            max_in_flight: 0,
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 50,
            breaker_failure_percent: 50,
            breaker_min_requests: 20,
            breaker_window: Duration::from_secs(10),
            breaker_open_for: Duration::from_secs(5),
            breaker_half_open_trials: 3,
            retry_budget_percent: 20,
            retry_min_per_second: 10,
            retry_buffer_bytes: 64 * 1024,
            drain_timeout: Duration::from_secs(30),
        }
    }
}
