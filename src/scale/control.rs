//! The autoscaler's part of start-up and shutdown: orchestrators built per
//! service, their first instances started, the recorder and the scaling loop
//! spawned, and every instance tidegate started stopped on the way out.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::event::{EventSink, MemoryEvents};
use super::leader::Leadership;
use super::recorder::{self, MemorySink, Recorded, Recorder, SampleSink, Tee};
use super::scaler::{self, Scaled, Scaler};
use super::source::{EventTee, ScalerSource, StoreSource};
use crate::config::Config;
use crate::orchestrate::{self, Orchestrator};
use crate::registry::Registry;
use crate::store::StoreHandle;

/// Recent samples kept in memory beside the store: an hour of 5 s samples for 50 instances.
const MEMORY_SAMPLES: usize = 36_000;

/// The running control plane of the autoscaler.
pub struct ControlPlane {
    /// Each service's orchestrator, in registry order.
    pub orchestrators: Vec<Arc<dyn Orchestrator>>,
    /// The scaling events this node recorded, also kept in memory (the store has them all).
    pub events: Arc<MemoryEvents>,
    /// The recorder's recent samples, also kept in memory.
    pub samples: Arc<MemorySink>,
    tasks: Vec<JoinHandle<()>>,
}

impl ControlPlane {
    /// Builds the orchestrators, starts each service's first instances, then
    /// spawns the recorder (into the store's queue) and, when enabled, the
    /// scaling loop (reading policies, samples and events from the store).
    pub async fn start(
        config: &Config,
        registry: &Registry,
        store: &StoreHandle,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let events = Arc::new(MemoryEvents::default());
        let samples = Arc::new(MemorySink::new(MEMORY_SAMPLES));
        let store_source = StoreSource::new(store.store.clone());
        let source: Arc<dyn ScalerSource> = Arc::new(store_source.clone());
        let event_sink: Arc<dyn EventSink> =
            Arc::new(EventTee(vec![events.clone(), Arc::new(store_source)]));

        let scaled: Vec<Scaled> = registry
            .services()
            .iter()
            .map(|service| Scaled {
                service: Arc::clone(service),
                orchestrator: orchestrate::build(service, Arc::clone(&event_sink)),
            })
            .collect();
        futures_util::future::join_all(scaled.iter().map(scaler::start_minimum)).await;

        let recorder = Recorder::new(
            scaled
                .iter()
                .map(|s| Recorded {
                    service: Arc::clone(&s.service),
                    orchestrator: Arc::clone(&s.orchestrator),
                })
                .collect(),
        );
        let sink: Arc<dyn SampleSink> =
            Arc::new(Tee(vec![samples.clone(), Arc::new(store.samples.clone())]));
        let mut tasks = vec![tokio::spawn(recorder::run(
            recorder,
            sink,
            config.store.metrics_interval,
            shutdown.clone(),
        ))];
        let orchestrators = scaled.iter().map(|s| Arc::clone(&s.orchestrator)).collect();
        if config.scaler.enabled {
            let loop_ = Scaler {
                services: scaled,
                source,
                config: config.scaler,
                metrics_interval: config.store.metrics_interval,
                local_events: Some(events.clone()),
            };
            let leadership = Leadership::for_url(&config.store.database_url);
            tasks.push(tokio::spawn(loop_.run(leadership, shutdown)));
        }
        Self {
            orchestrators,
            events,
            samples,
            tasks,
        }
    }

    /// Stops the loops, then every instance the orchestrators started.
    pub async fn shutdown(self) {
        for task in self.tasks {
            // An evaluation may be waiting on a start; the orchestrators stop what it began.
            task.abort();
            let _ = task.await;
        }
        futures_util::future::join_all(self.orchestrators.iter().map(|o| o.shutdown())).await;
    }
}
