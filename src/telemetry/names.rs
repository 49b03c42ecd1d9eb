//! Every metric tidegate exports, with its unit, in one place.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Requests answered, by service, instance and status class.
pub const REQUESTS_TOTAL: &str = "tidegate_requests_total";
/// Time from receiving a request head to the end of its response, by service and instance;
/// rendered by `telemetry::durations`, not through the `metrics` recorder.
pub const REQUEST_DURATION: &str = "tidegate_request_duration_seconds";
/// Upstream failures, by service, instance and error class.
pub const UPSTREAM_ERRORS_TOTAL: &str = "tidegate_upstream_errors_total";
/// Requests answered by tidegate itself without an instance, by reason.
pub const LOCAL_RESPONSES_TOTAL: &str = "tidegate_local_responses_total";
/// Client connections open now.
pub const CONNECTIONS_OPEN: &str = "tidegate_connections_open";
/// Health changes decided by probes, by service, instance and new state (`healthy`, `unhealthy`).
pub const HEALTH_TRANSITIONS_TOTAL: &str = "tidegate_health_transitions_total";
/// Outlier ejections and restorations, by service, instance and `to` (`ejected`, `restored`).
pub const EJECTION_TRANSITIONS_TOTAL: &str = "tidegate_ejection_transitions_total";
/// Circuit breaker changes, by service, instance and `to` (`open`, `half_open`, `closed`).
pub const BREAKER_TRANSITIONS_TOTAL: &str = "tidegate_breaker_transitions_total";
/// Drain changes, by service, instance and `to` (`draining`, `drained`, `drain_timeout`, `undrained`).
pub const DRAIN_TRANSITIONS_TOTAL: &str = "tidegate_drain_transitions_total";
/// Retries, by service and result (`sent`, `budget_exhausted`).
pub const RETRIES_TOTAL: &str = "tidegate_retries_total";
/// Samples dropped from the full store queue (the oldest go first).
pub const STORE_SAMPLES_DROPPED_TOTAL: &str = "tidegate_store_samples_dropped_total";
/// Samples written to the database.
pub const STORE_SAMPLES_WRITTEN_TOTAL: &str = "tidegate_store_samples_written_total";
/// Samples waiting in the store queue.
pub const STORE_SAMPLE_QUEUE_DEPTH: &str = "tidegate_store_sample_queue_depth";
/// Failed attempts to write a batch of samples (each is retried).
pub const STORE_WRITE_FAILURES_TOTAL: &str = "tidegate_store_write_failures_total";
/// The algorithm an adaptive balancer runs, by service and algorithm: 1 in use, 0 not.
pub const BALANCER_ACTIVE_ALGORITHM: &str = "tidegate_balancer_active_algorithm";
/// Switches of an adaptive balancer between algorithms, by service.
pub const BALANCER_SWITCHES_TOTAL: &str = "tidegate_balancer_switches_total";

/// Time from a scaling decision to the last new instance serving (or the last old one stopped),
/// by service and direction.
pub const SCALING_LATENCY: &str = "tidegate_scaling_latency_seconds";
/// CPU and memory of the instances tidegate runs, percent, mean per service, by resource.
pub const RESOURCE_UTILIZATION: &str = "tidegate_resource_utilization_percent";
/// Instances in a service's table now.
pub const INSTANCES: &str = "tidegate_instances";
/// Scaling decisions taken, by service, direction and result
/// (`scaled`, `failed`, `recommended`, `held`).
pub const SCALING_DECISIONS_TOTAL: &str = "tidegate_scaling_decisions_total";

/// Registers descriptions and units with the recorder.
pub fn describe() {
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Requests answered by an instance"
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
    describe_counter!(
        HEALTH_TRANSITIONS_TOTAL,
        Unit::Count,
        "Instance health changes decided by active probes"
    );
    describe_counter!(
        EJECTION_TRANSITIONS_TOTAL,
        Unit::Count,
        "Instances ejected or restored by passive outlier detection"
    );
    describe_counter!(
        BREAKER_TRANSITIONS_TOTAL,
        Unit::Count,
        "Circuit breaker state changes per instance"
    );
    describe_counter!(
        DRAIN_TRANSITIONS_TOTAL,
        Unit::Count,
        "Instance drain state changes"
    );
    describe_counter!(
        RETRIES_TOTAL,
        Unit::Count,
        "Retries sent, or refused because the retry budget was spent"
    );
    describe_counter!(
        STORE_SAMPLES_DROPPED_TOTAL,
        Unit::Count,
        "Samples dropped because the store queue was full"
    );
    describe_counter!(
        STORE_SAMPLES_WRITTEN_TOTAL,
        Unit::Count,
        "Samples written to the database"
    );
    describe_gauge!(
        STORE_SAMPLE_QUEUE_DEPTH,
        Unit::Count,
        "Samples waiting in the store queue"
    );
    describe_counter!(
        STORE_WRITE_FAILURES_TOTAL,
        Unit::Count,
        "Failed attempts to write a batch of samples; each is retried"
    );
    describe_histogram!(
        SCALING_LATENCY,
        Unit::Seconds,
        "Time from a scaling decision to its instances serving or stopped"
    );
    describe_gauge!(
        RESOURCE_UTILIZATION,
        Unit::Percent,
        "CPU and memory of the instances tidegate runs, mean per service"
    );
    describe_gauge!(INSTANCES, Unit::Count, "Instances in the service's table");
    describe_counter!(
        SCALING_DECISIONS_TOTAL,
        Unit::Count,
        "Scaling decisions by direction and result"
    );
}
