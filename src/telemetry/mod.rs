//! Observability: metric names, the Prometheus recorder, logging, and the
//! atomic latency histogram the request path records into.

pub mod durations;
pub mod histogram;
pub mod instance;
pub mod logging;
pub mod names;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets of the duration histograms, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the trigger-to-serving scaling histogram, in seconds: a process
/// starts in about a second, a cloud instance in minutes (the plan allows two).
const SCALING_BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
///
/// Metric handles created before this call are no-ops, so it runs before any
/// service is built. Later calls (several servers in one test process) share
/// the first recorder.
pub fn install_recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // An exact name outranks a suffix, whatever the order of the calls.
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::SCALING_LATENCY.into()),
                        &SCALING_BUCKETS,
                    )
                })
                .expect("the bucket lists are non-empty constants");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding program's);
            // then ours still renders what is recorded through its handle.
            let _ = metrics::set_global_recorder(recorder);
            names::describe();
            handle
        })
        .clone()
}
