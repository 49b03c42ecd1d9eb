//! Active health checking: one task per service probes each of its instances
//! every `health_check_interval`.
//!
//! Each round reads the service's current table, so instances added later are
//! probed from the next round on. Within a round every instance waits a random
//! offset of up to half the interval before its probe, so a pool is never
//! probed in lockstep, and a semaphore shared by all services bounds the probes
//! in flight. Results feed one [`HealthState`] per instance; a flip sets the
//! instance's `healthy` flag and is reported once.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use rand::Rng;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::debug;

use super::outlier;
use super::probe::{ProbeFailure, Prober};
use super::report;
use super::state::{Health, HealthState};
use crate::balance::Instance;
use crate::config::BalancerConfig;
use crate::ids::InstanceId;
use crate::proxy::server::stopped;
use crate::registry::{Registry, Service};

/// Probes in flight at once, across all services.
pub const MAX_CONCURRENT_PROBES: usize = 64;

/// Starts one probing task per service; they stop when `shutdown` turns true.
pub fn spawn(registry: &Registry, shutdown: watch::Receiver<bool>) -> JoinSet<()> {
    let prober = Prober::new();
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_PROBES));
    let mut tasks = JoinSet::new();
    for service in registry.services() {
        let service = Arc::clone(service);
        let (prober, permits, mut shutdown) =
            (prober.clone(), Arc::clone(&permits), shutdown.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = run(service, prober, permits) => {}
                _ = stopped(&mut shutdown) => {}
            }
        });
    }
    tasks
}

async fn run(service: Arc<Service>, prober: Prober, permits: Arc<Semaphore>) {
    let cfg = &service.config.balancer;
    let mut states: HashMap<InstanceId, HealthState> = HashMap::new();
    loop {
        let next_round = tokio::time::Instant::now() + cfg.health_check_interval;
        let table = service.table.load_full();
        let probes = table
            .instances()
            .iter()
            .map(|instance| jittered_probe(&prober, &permits, instance, cfg));
        let results = join_all(probes).await;

        for (instance, result) in table.instances().iter().zip(results) {
            let state = states.entry(instance.id().clone()).or_insert_with(|| {
                HealthState::new(
                    current_health(instance),
                    cfg.healthy_threshold,
                    cfg.unhealthy_threshold,
                )
            });
            apply(instance, state, result, cfg);
        }
        states.retain(|id, _| table.get(id).is_some());
        outlier::sweep(&table);
        tokio::time::sleep_until(next_round).await;
    }
}

async fn jittered_probe(
    prober: &Prober,
    permits: &Semaphore,
    instance: &Instance,
    cfg: &BalancerConfig,
) -> Result<(), ProbeFailure> {
    let spread = cfg.health_check_interval / 2;
    let offset = rand::rng().random_range(Duration::ZERO..=spread);
    tokio::time::sleep(offset).await;
    let _permit = permits.acquire().await;
    prober
        .probe(instance, &cfg.health_check_path, cfg.health_check_timeout)
        .await
}

fn current_health(instance: &Instance) -> Health {
    if instance.state.healthy.load(Ordering::Acquire) {
        Health::Healthy
    } else {
        Health::Unhealthy
    }
}

/// Folds one probe result into the instance's state and flags.
fn apply(
    instance: &Instance,
    state: &mut HealthState,
    result: Result<(), ProbeFailure>,
    cfg: &BalancerConfig,
) {
    outlier::probed(instance, result.is_ok(), cfg.healthy_threshold);
    let reason = match &result {
        Ok(()) => "probes_passed".to_owned(),
        Err(failure) => {
            debug!(service = %instance.service(), instance = %instance.id(), reason = %failure, "probe failed");
            failure.reason()
        }
    };
    if let Some(transition) = state.record(result.is_ok()) {
        instance
            .state
            .healthy
            .store(transition.to == Health::Healthy, Ordering::Release);
        report::health(instance, transition.to, &reason);
    }
}

/// Why an instance did not become healthy in time.
#[derive(Debug, thiserror::Error)]
#[error(
    "instance {instance} did not pass {needed} probes in a row within {timeout:?}; last: {last}"
)]
pub struct NotHealthy {
    /// The instance.
    pub instance: InstanceId,
    /// Consecutive passes needed (`healthy_threshold`).
    pub needed: u32,
    /// The time allowed.
    pub timeout: Duration,
    /// The last probe's failure.
    pub last: String,
}

/// Probes a new instance until it passes `healthy_threshold` probes in a row,
/// then marks it healthy; for the orchestrator, before it publishes the instance.
///
/// Probes run every `health_check_interval`, capped at [`ADMISSION_PROBE_EVERY`]
/// so a new instance joins quickly.
pub async fn wait_until_healthy(
    instance: &Instance,
    cfg: &BalancerConfig,
    timeout: Duration,
) -> Result<(), NotHealthy> {
    instance.state.healthy.store(false, Ordering::Release);
    let prober = Prober::new();
    let mut state = HealthState::new(
        Health::Unhealthy,
        cfg.healthy_threshold,
        cfg.unhealthy_threshold,
    );
    let mut last = String::from("not probed");
    let every = cfg.health_check_interval.min(ADMISSION_PROBE_EVERY);
    let probing = async {
        loop {
            let result = prober
                .probe(instance, &cfg.health_check_path, cfg.health_check_timeout)
                .await;
            if let Err(failure) = &result {
                last = failure.reason();
            }
            if state.record(result.is_ok()).is_some() {
                instance.state.healthy.store(true, Ordering::Release);
                report::health(instance, Health::Healthy, "probes_passed");
                return;
            }
            tokio::time::sleep(every).await;
        }
    };
    let passed = tokio::time::timeout(timeout, probing).await.is_ok();
    if passed {
        return Ok(());
    }
    Err(NotHealthy {
        instance: instance.id().clone(),
        needed: cfg.healthy_threshold,
        timeout,
        last,
    })
}

/// The longest pause between admission probes of a new instance.
pub const ADMISSION_PROBE_EVERY: Duration = Duration::from_millis(500);
