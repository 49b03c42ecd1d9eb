//! What the scaler reads and writes: policies, quotas, samples and events.
//!
//! The loop asks a [`ScalerSource`] every evaluation, so an operator's edit
//! to `scaling_policies` in the database applies at the next tick. `serve`
//! uses the [`StoreSource`]; the in-memory source (the config's policies and
//! quotas, the recorder's recent samples, the events recorded so far) serves
//! unit tests and simulations without a database.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use super::decision::{PolicyRow, QuotaRow};
use super::event::{EventSink, MemoryEvents, ScalingEvent};
use super::recorder::{MemorySink, Sample};
use crate::config::ServiceConfig;
use crate::ids::ServiceName;
use crate::store::Store;
use tracing::{error, warn};

/// A read or write the scaler's source could not do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("scaler source failed for {service}: {reason}")]
pub struct SourceError {
    /// The service being evaluated.
    pub service: ServiceName,
    /// Why.
    pub reason: String,
}

/// Result of a source call.
pub type SourceResult<T> = Result<T, SourceError>;

/// The scaler's view of policies, quotas, samples and events.
pub trait ScalerSource: Send + Sync {
    /// The service's policy now, if it has one.
    fn policy<'a>(
        &'a self,
        service: &'a ServiceConfig,
    ) -> BoxFuture<'a, SourceResult<Option<PolicyRow>>>;

    /// The service's quota now, if it has one.
    fn quota<'a>(
        &'a self,
        service: &'a ServiceConfig,
    ) -> BoxFuture<'a, SourceResult<Option<QuotaRow>>>;

    /// The service's samples recorded after `since`.
    fn samples<'a>(
        &'a self,
        service: &'a ServiceName,
        since: DateTime<Utc>,
    ) -> BoxFuture<'a, SourceResult<Vec<Sample>>>;

    /// When the service's last scaling event of any type happened.
    fn last_event_at<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, SourceResult<Option<DateTime<Utc>>>>;

    /// Records an event.
    fn record(&self, event: ScalingEvent) -> BoxFuture<'_, SourceResult<()>>;
}

/// Config policies, recorder samples and events, all in memory.
#[derive(Debug, Clone)]
pub struct MemorySource {
    /// The recorder's sink, read back for windows.
    pub samples: Arc<MemorySink>,
    /// The events recorded.
    pub events: Arc<MemoryEvents>,
}

impl MemorySource {
    /// A source over these samples and events.
    pub fn new(samples: Arc<MemorySink>, events: Arc<MemoryEvents>) -> Self {
        Self { samples, events }
    }
}

impl ScalerSource for MemorySource {
    fn policy<'a>(
        &'a self,
        service: &'a ServiceConfig,
    ) -> BoxFuture<'a, SourceResult<Option<PolicyRow>>> {
        Box::pin(async move { Ok(service.policy.clone()) })
    }

    fn quota<'a>(
        &'a self,
        service: &'a ServiceConfig,
    ) -> BoxFuture<'a, SourceResult<Option<QuotaRow>>> {
        Box::pin(async move { Ok(service.quota.as_ref().map(QuotaRow::from)) })
    }

    fn samples<'a>(
        &'a self,
        service: &'a ServiceName,
        since: DateTime<Utc>,
    ) -> BoxFuture<'a, SourceResult<Vec<Sample>>> {
        Box::pin(async move {
            let mut samples = self.samples.of(service);
            samples.retain(|s| s.recorded_at > since);
            Ok(samples)
        })
    }

    fn last_event_at<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, SourceResult<Option<DateTime<Utc>>>> {
        Box::pin(async move { Ok(self.events.last_at(service)) })
    }

    fn record(&self, event: ScalingEvent) -> BoxFuture<'_, SourceResult<()>> {
        self.events.record(event);
        Box::pin(async { Ok(()) })
    }
}

/// The database: policies and quotas as operators may have edited them, samples
/// from every node, and the `scaling_events` table.
///
/// A policy or quota row not seeded yet (the store bootstraps in the
/// background) falls back to the config's section.
#[derive(Debug, Clone)]
pub struct StoreSource {
    store: Store,
}

impl StoreSource {
    /// A source over this store.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn failed(service: &ServiceName, error: impl std::fmt::Display) -> SourceError {
    SourceError {
        service: service.clone(),
        reason: error.to_string(),
    }
}

impl ScalerSource for StoreSource {
    fn policy<'a>(
        &'a self,
        service: &'a ServiceConfig,
    ) -> BoxFuture<'a, SourceResult<Option<PolicyRow>>> {
        Box::pin(async move {
            match self.store.policy(&service.name).await {
                Ok(Some(row)) => Ok(Some(row.policy)),
                Ok(None) => Ok(service.policy.clone()),
                Err(e) => Err(failed(&service.name, e)),
            }
        })
    }

    fn quota<'a>(
        &'a self,
        service: &'a ServiceConfig,
    ) -> BoxFuture<'a, SourceResult<Option<QuotaRow>>> {
        Box::pin(async move {
            match self.store.quota(&service.name).await {
                Ok(Some(row)) => Ok(Some(QuotaRow::from(&row.quota))),
                Ok(None) => Ok(service.quota.as_ref().map(QuotaRow::from)),
                Err(e) => Err(failed(&service.name, e)),
            }
        })
    }

    fn samples<'a>(
        &'a self,
        service: &'a ServiceName,
        since: DateTime<Utc>,
    ) -> BoxFuture<'a, SourceResult<Vec<Sample>>> {
        Box::pin(async move {
            self.store
                .samples_since(service, since)
                .await
                .map_err(|e| failed(service, e))
        })
    }

    fn last_event_at<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> BoxFuture<'a, SourceResult<Option<DateTime<Utc>>>> {
        Box::pin(async move {
            let last = self
                .store
                .last_event(service)
                .await
                .map_err(|e| failed(service, e))?;
            Ok(last.map(|e| e.occurred_at))
        })
    }

    fn record(&self, event: ScalingEvent) -> BoxFuture<'_, SourceResult<()>> {
        Box::pin(async move {
            self.store
                .append_event(&event)
                .await
                .map(|_| ())
                .map_err(|e| failed(&event.service, e))
        })
    }
}

/// How many times an orchestrator's event is written before it is given up:
/// with the delays doubling from [`EVENT_RETRY_FIRST_DELAY`] up to
/// [`EVENT_RETRY_MAX_DELAY`], about five minutes of database outage.
const EVENT_ATTEMPTS: u32 = 10;
const EVENT_RETRY_FIRST_DELAY: Duration = Duration::from_millis(500);
const EVENT_RETRY_MAX_DELAY: Duration = Duration::from_secs(60);

impl EventSink for StoreSource {
    /// Writes an event an orchestrator reports on its own (a crashed instance
    /// replaced, say) without holding up the orchestrator, retrying with
    /// backoff while the database is unreachable.
    // TODO: an event still waiting when tidegate exits, or after the last
    // attempt, is lost (logged at error with its fields); a durable outbox
    // would need a local spool next to the database.
    fn record(&self, event: ScalingEvent) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut delay = EVENT_RETRY_FIRST_DELAY;
            for attempt in 1..=EVENT_ATTEMPTS {
                match store.append_event(&event).await {
                    Ok(_) => return,
                    Err(error) if attempt < EVENT_ATTEMPTS => {
                        warn!(service = %event.service, attempt, error = %error, retry_in = ?delay, "scaling event not recorded yet");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(EVENT_RETRY_MAX_DELAY);
                    }
                    Err(error) => {
                        error!(service = %event.service, event_type = ?event.event_type, instances_before = event.instances_before, instances_after = event.instances_after, error = %error, "scaling event lost after retries");
                    }
                }
            }
        });
    }
}

/// Records each event in several sinks.
pub struct EventTee(pub Vec<Arc<dyn EventSink>>);

impl EventSink for EventTee {
    fn record(&self, event: ScalingEvent) {
        for sink in &self.0 {
            sink.record(event.clone());
        }
    }
}
