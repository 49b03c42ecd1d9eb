//! The recorder: one [`Sample`] per instance every `store.metrics_interval`.
//!
//! It reads what the request path already keeps in each instance's atomics
//! (request and error totals, requests in flight, the latency histogram) and
//! diffs them against its previous read, so the request path does no extra
//! work for it. For instances tidegate runs itself it adds CPU and memory from
//! `/proc`. Samples go to a [`SampleSink`]: the store's bounded writer queue,
//! or memory in tests.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::procfs::TreeSampler;
use crate::balance::Instance;
use crate::ids::{InstanceId, ServiceName};
use crate::orchestrate::Orchestrator;
use crate::registry::Service;
pub use crate::store::Sample;
use crate::store::SampleQueue;
use crate::telemetry::histogram::HistogramSnapshot;
use crate::telemetry::names;

/// Where samples go. Implementations must not block: the recorder calls it on a timer.
pub trait SampleSink: Send + Sync {
    /// Takes one interval's samples.
    fn push(&self, samples: Vec<Sample>);
}

/// Keeps the most recent samples in memory; the scaler reads them when no store is attached.
#[derive(Debug, Default)]
pub struct MemorySink {
    samples: Mutex<Vec<Sample>>,
    capacity: usize,
}

impl MemorySink {
    /// A sink holding at most `capacity` samples (the oldest drop first).
    pub fn new(capacity: usize) -> Self {
        Self {
            samples: Mutex::new(Vec::new()),
            capacity,
        }
    }

    /// The samples of one service, oldest first.
    pub fn of(&self, service: &ServiceName) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples
            .iter()
            .filter(|s| &s.service == service)
            .cloned()
            .collect()
    }
}

impl SampleSink for SampleQueue {
    fn push(&self, samples: Vec<Sample>) {
        // A full queue drops its oldest samples and counts them itself.
        for sample in samples {
            self.try_push(sample);
        }
    }
}

/// Hands every sample to each of several sinks.
pub struct Tee(pub Vec<Arc<dyn SampleSink>>);

impl SampleSink for Tee {
    fn push(&self, samples: Vec<Sample>) {
        for sink in &self.0 {
            sink.push(samples.clone());
        }
    }
}

impl SampleSink for MemorySink {
    fn push(&self, mut batch: Vec<Sample>) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.append(&mut batch);
        let excess = samples.len().saturating_sub(self.capacity);
        samples.drain(..excess);
    }
}

/// What the recorder remembers of one instance between reads.
struct Previous {
    requests: u64,
    errors: u64,
    latency: HistogramSnapshot,
    tree: Option<TreeSampler>,
}

/// A service the recorder samples, with the orchestrator that may run its instances.
#[derive(Clone)]
pub struct Recorded {
    /// The service.
    pub service: Arc<Service>,
    /// Its orchestrator, asked for each instance's process group.
    pub orchestrator: Arc<dyn Orchestrator>,
}

/// Samples every instance of some services.
pub struct Recorder {
    services: Vec<Recorded>,
    previous: HashMap<InstanceId, Previous>,
}

impl Recorder {
    /// A recorder of these services.
    pub fn new(services: Vec<Recorded>) -> Self {
        Self {
            services,
            previous: HashMap::new(),
        }
    }

    /// Samples every instance once.
    pub fn sample_all(&mut self, at: DateTime<Utc>) -> Vec<Sample> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for recorded in self.services.clone() {
            let first = out.len();
            for instance in recorded.service.table.load().instances() {
                seen.push(instance.id().clone());
                out.push(self.sample_one(&recorded, instance, at));
            }
            publish_utilization(&recorded.service.name, &out[first..]);
        }
        self.previous.retain(|id, _| seen.contains(id));
        out
    }

    fn sample_one(
        &mut self,
        recorded: &Recorded,
        instance: &Arc<Instance>,
        at: DateTime<Utc>,
    ) -> Sample {
        let state = &instance.state;
        let requests = state.requests.load(Ordering::Relaxed);
        let errors: u64 = state.errors.iter().map(|e| e.load(Ordering::Relaxed)).sum();
        let latency = state.latency.snapshot();
        let group = recorded.orchestrator.process_group(instance.id());
        let limit = recorded.orchestrator.memory_limit_mb();
        let prev = self
            .previous
            .entry(instance.id().clone())
            .or_insert_with(|| Previous {
                requests: 0,
                errors: 0,
                latency: HistogramSnapshot::empty(),
                tree: None,
            });

        let interval = latency.since(&prev.latency);
        let request_count = requests.saturating_sub(prev.requests);
        let error_count = errors.saturating_sub(prev.errors);
        let usage = group.and_then(|g| {
            prev.tree
                .get_or_insert_with(|| TreeSampler::new(g, limit))
                .sample()
        });
        *prev = Previous {
            requests,
            errors,
            latency,
            tree: prev.tree.take(),
        };

        let service = instance.service();
        Sample {
            cpu_usage_percent: usage.and_then(|u| u.cpu_percent),
            memory_usage_percent: usage.map(|u| u.memory_percent),
            request_count: u32::try_from(request_count).unwrap_or(u32::MAX),
            active_connections: instance.in_flight(),
            // Admission never queues (over its cap a request is refused at
            // once), so the requests waiting are those waiting for a connection.
            queue_depth: state.queued.load(Ordering::Relaxed),
            response_time_p95_ms: interval.quantile(0.95).map(|d| d.as_secs_f64() * 1000.0),
            error_rate_percent: if request_count > 0 {
                error_count as f64 / request_count as f64 * 100.0
            } else {
                0.0
            },
            recorded_at: at,
            ..Sample::new(service.clone(), instance.id().clone())
        }
    }
}

/// Sets the service's utilization gauges to the mean over its instances that report one.
fn publish_utilization(service: &ServiceName, samples: &[Sample]) {
    let cpu: Vec<f64> = samples.iter().filter_map(|s| s.cpu_usage_percent).collect();
    let memory: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.memory_usage_percent)
        .collect();
    for (resource, values) in [("cpu", cpu), ("memory", memory)] {
        if !values.is_empty() {
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            metrics::gauge!(names::RESOURCE_UTILIZATION, "service" => service.to_string(), "resource" => resource)
                .set(mean);
        }
    }
}

/// Samples every `interval` into `sink` until `shutdown` turns true.
pub async fn run(
    mut recorder: Recorder,
    sink: Arc<dyn SampleSink>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    recorder.sample_all(Utc::now());
    loop {
        tokio::select! {
            _ = ticker.tick() => sink.push(recorder.sample_all(Utc::now())),
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Outcome;
    use crate::config::Config;
    use crate::orchestrate::fixed::StaticOrchestrator;

    fn recorded() -> Recorded {
        let text = r#"
            [services.app]
            routes = [{ path_prefix = "/" }]
            instances = [{ address = "127.0.0.1:9" }]
        "#;
        let config = Config::parse(text, std::path::Path::new(".")).expect("valid config");
        let service = Arc::new(Service::new(config.services[0].clone()));
        Recorded {
            orchestrator: Arc::new(StaticOrchestrator::new(Arc::clone(&service))),
            service,
        }
    }

    #[test]
    fn each_sample_covers_only_its_interval() {
        let recorded = recorded();
        let instance = Arc::clone(&recorded.service.table.load().instances()[0]);
        let mut recorder = Recorder::new(vec![recorded]);
        for outcome in [
            Outcome::Success,
            Outcome::ServerError,
            Outcome::Success,
            Outcome::Success,
        ] {
            instance.dispatch().set_outcome(outcome);
        }
        let _open = instance.dispatch();

        let first = recorder.sample_all(Utc::now()).remove(0);
        assert_eq!(first.request_count, 4);
        assert_eq!(first.error_rate_percent, 25.0);
        assert_eq!(first.active_connections, 1, "the open request is in flight");
        assert!(first.response_time_p95_ms.is_some());
        assert_eq!(
            first.cpu_usage_percent, None,
            "tidegate does not run a static instance"
        );

        let second = recorder.sample_all(Utc::now()).remove(0);
        assert_eq!(
            second.request_count, 0,
            "the next interval starts from the previous read"
        );
        assert_eq!(second.response_time_p95_ms, None, "no request, no latency");
    }
}
