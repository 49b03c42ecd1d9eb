//! Scaling events: the `scaling_events` rows an operator audits in psql.
//!
//! The scaler records one event per action it takes and the process
//! orchestrator one per crashed instance it replaces. Events go to an
//! [`EventSink`]: the store, or memory when no database is attached.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::ids::ServiceName;
pub use crate::store::{EventType, ScalingEvent};

/// Where events go. Must not block.
pub trait EventSink: Send + Sync {
    /// Records one event.
    fn record(&self, event: ScalingEvent);
}

/// Events kept in memory, at most this many (the oldest drop first).
const MEMORY_EVENTS: usize = 1_000;

/// Keeps this node's recent events in memory, beside the store: what `/stats`
/// and the tests read without a database round trip.
#[derive(Debug, Default)]
pub struct MemoryEvents {
    events: Mutex<Vec<ScalingEvent>>,
}

impl MemoryEvents {
    /// Every event recorded so far, oldest first.
    pub fn all(&self) -> Vec<ScalingEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// When the service's last event happened.
    pub fn last_at(&self, service: &ServiceName) -> Option<DateTime<Utc>> {
        self.all()
            .iter()
            .filter(|e| &e.service == service)
            .map(|e| e.occurred_at)
            .max()
    }
}

impl EventSink for MemoryEvents {
    fn record(&self, event: ScalingEvent) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.push(event);
        let excess = events.len().saturating_sub(MEMORY_EVENTS);
        events.drain(..excess);
    }
}
