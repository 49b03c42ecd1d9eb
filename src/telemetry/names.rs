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
/// Samples dropped from the full store queue (the oldest go first).
pub const STORE_SAMPLES_DROPPED_TOTAL: &str = "tidegate_store_samples_dropped_total";
/// Samples written to the database.
pub const STORE_SAMPLES_WRITTEN_TOTAL: &str = "tidegate_store_samples_written_total";
/// Samples waiting in the store queue.
pub const STORE_SAMPLE_QUEUE_DEPTH: &str = "tidegate_store_sample_queue_depth";
/// Failed attempts to write a batch of samples (each is retried).
pub const STORE_WRITE_FAILURES_TOTAL: &str = "tidegate_store_write_failures_total";

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
    describe_gauge!(CONNECTIONS_OPEN, Unit::Count, "Client connections open now");
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
}
