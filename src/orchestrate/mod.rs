//! Orchestrators: what starts and stops a service's instances.
//!
//! One trait, three implementations chosen per service in the config:
//!
//! - [`fixed::StaticOrchestrator`]: the instances listed in the config; it
//!   cannot start or stop anything, so decisions are recommendations only;
//! - [`process::ProcessOrchestrator`]: child processes tidegate starts,
//!   probes, drains and stops itself, replacing any that exit on their own;
//! - [`command::CommandOrchestrator`]: operator scripts (around `docker
//!   compose --scale`, a cloud CLI...) whose output names instance addresses.
//!
//! Every orchestrator keeps the service's table in step: an instance joins it
//! only after passing its health probe `healthy_threshold` times, and leaves
//! it (then drains) before it is stopped. [`scale_down`] picks the least
//! utilized instances first.

pub mod command;
pub mod fixed;
pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tracing::info;

use crate::balance::Instance;
use crate::config::OrchestratorConfig;
use crate::health::drain;
use crate::ids::InstanceId;
use crate::registry::Service;
use crate::scale::event::EventSink;

/// Why an orchestrator could not act.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OrchestrateError {
    /// The orchestrator does not start or stop instances.
    #[error("the {kind} orchestrator does not start or stop instances")]
    Unsupported {
        /// Its kind.
        kind: &'static str,
    },
    /// No port of the range is free.
    #[error("no free port in {low}-{high}")]
    NoPort {
        /// Lowest port of the range.
        low: u16,
        /// Highest port.
        high: u16,
    },
    /// The instance could not be started.
    #[error("instance on {addr} did not start: {reason}")]
    Start {
        /// Where it was to listen.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A script failed.
    #[error("{script} script failed: {reason}")]
    Script {
        /// `scale_up`, `scale_down` or `list`.
        script: &'static str,
        /// Exit status, timeout or unparsable output.
        reason: String,
    },
}

/// Starts and stops the instances of one service.
pub trait Orchestrator: Send + Sync {
    /// `static`, `process` or `command`.
    fn kind(&self) -> &'static str;

    /// Whether it can start and stop instances (the static one cannot).
    fn can_scale(&self) -> bool {
        true
    }

    /// Starts one instance and adds it to the table once healthy.
    fn start(&self) -> BoxFuture<'_, Result<Arc<Instance>, OrchestrateError>>;

    /// Stops an instance that is already out of the table and drained.
    fn stop(&self, instance: Arc<Instance>) -> BoxFuture<'_, Result<(), OrchestrateError>>;

    /// The addresses of the instances it runs now.
    fn list(&self) -> BoxFuture<'_, Result<Vec<SocketAddr>, OrchestrateError>>;

    /// The process group of an instance tidegate runs itself, for `/proc` sampling.
    fn process_group(&self, _instance: &InstanceId) -> Option<u32> {
        None
    }

    /// The memory limit of one instance, the base of its memory percent.
    fn memory_limit_mb(&self) -> Option<u64> {
        None
    }

    /// Stops everything it started (tidegate is exiting).
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Kills at once everything it started, without waiting: tidegate is
    /// exiting without a drain (a second shutdown signal).
    fn abandon(&self) {}
}

/// The orchestrator a service's config names.
pub fn build(service: &Arc<Service>, events: Arc<dyn EventSink>) -> Arc<dyn Orchestrator> {
    match &service.config.orchestrator {
        OrchestratorConfig::Static => Arc::new(fixed::StaticOrchestrator::new(Arc::clone(service))),
        OrchestratorConfig::Process(config) => {
            process::ProcessOrchestrator::new(Arc::clone(service), config.clone(), events)
        }
        OrchestratorConfig::Command(config) => Arc::new(command::CommandOrchestrator::new(
            Arc::clone(service),
            config.clone(),
        )),
    }
}

/// Starts `count` instances at once; returns those that became healthy and the errors.
pub async fn scale_up(
    orchestrator: &dyn Orchestrator,
    count: u32,
) -> (Vec<Arc<Instance>>, Vec<OrchestrateError>) {
    let starts = (0..count).map(|_| orchestrator.start());
    let mut started = Vec::new();
    let mut errors = Vec::new();
    for result in futures_util::future::join_all(starts).await {
        match result {
            Ok(instance) => started.push(instance),
            Err(e) => errors.push(e),
        }
    }
    (started, errors)
}

/// Removes the `count` least utilized instances: out of the table, drained, stopped.
pub async fn scale_down(
    service: &Service,
    orchestrator: &dyn Orchestrator,
    count: u32,
    drain_timeout: Duration,
) -> Vec<OrchestrateError> {
    let victims = least_utilized(service, count as usize);
    let stops = victims.into_iter().map(|instance| async move {
        retire(service, &instance, drain_timeout).await;
        orchestrator.stop(instance).await
    });
    futures_util::future::join_all(stops)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect()
}

/// The `count` instances with the fewest requests in flight, then the lowest latency estimate.
pub fn least_utilized(service: &Service, count: usize) -> Vec<Arc<Instance>> {
    let mut instances: Vec<Arc<Instance>> = service.table.load().instances().to_vec();
    instances.sort_by(|a, b| {
        (a.in_flight(), a.ewma_ns())
            .partial_cmp(&(b.in_flight(), b.ewma_ns()))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    instances.truncate(count);
    instances
}

/// Takes an instance out of the table, then drains it: no new requests, and
/// its requests in flight finish, for at most `timeout`. Returns whether it drained fully.
pub async fn retire(service: &Service, instance: &Arc<Instance>, timeout: Duration) -> bool {
    drain::begin(instance);
    service.table.remove(instance.id());
    let drained = drain::drain(instance, timeout).await;
    info!(
        service = %service.name,
        instance = %instance.addr(),
        drained,
        "instance removed"
    );
    drained
}
