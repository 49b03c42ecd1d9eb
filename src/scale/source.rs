//! What the scaler reads and writes: policies, quotas, samples and events.
//!
//! The loop asks a [`ScalerSource`] every evaluation, so an operator's edit
//! to `scaling_policies` in the database applies at the next tick. The
//! in-memory source serves a tidegate without a database (and the tests): the
//! config's policies and quotas, the recorder's recent samples, the events
//! recorded so far.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use super::decision::{PolicyRow, QuotaRow};
use super::event::{EventSink, MemoryEvents, ScalingEvent};
use super::recorder::{MemorySink, Sample};
use crate::config::ServiceConfig;
use crate::ids::ServiceName;

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
    fn record(&self, event: ScalingEvent);
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

    fn record(&self, event: ScalingEvent) {
        self.events.record(event);
    }
}
