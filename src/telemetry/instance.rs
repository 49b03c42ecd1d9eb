//! Metric handles of one instance, registered once so the request path only
//! increments atomics instead of looking labels up per request.

use metrics::{counter, Counter};

use super::names;
use crate::balance::ErrorClass;
use crate::ids::{InstanceId, ServiceName};

/// Counters of one instance. Its duration histogram is rendered from the
/// instance's own atomic histogram (see `telemetry::durations`).
pub struct InstanceMetrics {
    by_status_class: [Counter; 5],
    errors: [Counter; 4],
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl InstanceMetrics {
    /// Registers the handles for an instance of a service.
    pub fn new(service: &ServiceName, instance: &InstanceId) -> Self {
        let labels = |extra_key: &'static str, extra: &'static str| {
            [
                ("service", service.to_string()),
                ("instance", instance.to_string()),
                (extra_key, extra.to_string()),
            ]
        };
        Self {
            by_status_class: STATUS_CLASSES
                .map(|class| counter!(names::REQUESTS_TOTAL, &labels("status_class", class))),
            errors: ErrorClass::ALL.map(|class| {
                counter!(
                    names::UPSTREAM_ERRORS_TOTAL,
                    &labels("class", class.as_str())
                )
            }),
        }
    }

    /// Counts a response with this status code.
    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_status_class[class].increment(1);
    }

    /// Counts an upstream failure.
    pub fn error(&self, class: ErrorClass) {
        self.errors[class as usize].increment(1);
    }
}
