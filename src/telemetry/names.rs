//! Every metric tidegate exports, with its unit, in one place.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Requests answered, by service, instance and status class.
pub const REQUESTS_TOTAL: &str = "tidegate_requests_total";
/// Time from receiving a request head to the end of its response, by service and instance.
pub const REQUEST_DURATION: &str = "tidegate_request_duration_seconds";
/// Upstream failures, by service, instance and error class.
pub const UPSTREAM_ERRORS_TOTAL: &str = "tidegate_upstream_errors_total";
/// Requests answered by tidegate itself without an instance, by reason.
pub const LOCAL_RESPONSES_TOTAL: &str = "tidegate_local_responses_total";
/// Client connections open now.
pub const CONNECTIONS_OPEN: &str = "tidegate_connections_open";
/// The algorithm an adaptive balancer runs, by service and algorithm: 1 in use, 0 not.
pub const BALANCER_ACTIVE_ALGORITHM: &str = "tidegate_balancer_active_algorithm";
/// Switches of an adaptive balancer between algorithms, by service.
pub const BALANCER_SWITCHES_TOTAL: &str = "tidegate_balancer_switches_total";

/// Registers descriptions and units with the recorder.
pub fn describe() {
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Requests answered by an instance"
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from request head to the end of the response"
    );
    describe_counter!(
        UPSTREAM_ERRORS_TOTAL,
        Unit::Count,
        "Upstream failures by class (5xx, connect, timeout, reset)"
    );
    describe_counter!(
        LOCAL_RESPONSES_TOTAL,
        Unit::Count,
        "Requests answered by tidegate itself (no route, no instance, limits)"
    );
    describe_gauge!(
        BALANCER_ACTIVE_ALGORITHM,
        Unit::Count,
        "Algorithm an adaptive balancer runs (1 in use, 0 not)"
    );
    describe_counter!(
        BALANCER_SWITCHES_TOTAL,
        Unit::Count,
        "Switches of an adaptive balancer between algorithms"
    );
    describe_gauge!(CONNECTIONS_OPEN, Unit::Count, "Client connections open now");
}
