//! Scaling events: the `scaling_events` rows an operator audits in psql.
//!
//! The scaler records one event per action it takes and the process
//! orchestrator one per crashed instance it replaces. Events go to an
//! [`EventSink`]: the store, or memory when no database is attached.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::ids::ServiceName;

/// The plan's `event_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Instances were added.
    ScaleUp,
    /// Instances were removed.
    ScaleDown,
    /// An action failed (an instance did not become healthy, a script failed).
    ScaleFailed,
}

impl EventType {
    /// `scale_up`, `scale_down` or `scale_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ScaleUp => "scale_up",
            EventType::ScaleDown => "scale_down",
            EventType::ScaleFailed => "scale_failed",
        }
    }
}

/// One `scaling_events` row.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingEvent {
    /// The service.
    pub service: ServiceName,
    /// What happened.
    pub event_type: EventType,
    /// `cpu`, `memory`, `response_time` or `request_count`.
    pub trigger_metric: &'static str,
    /// The metric's value when the decision was taken.
    pub trigger_value: f64,
    /// The threshold it was compared with.
    pub threshold_value: f64,
    /// Instances serving before.
    pub instances_before: u32,
    /// Instances serving after.
    pub instances_after: u32,
    /// Whether the action reached its target.
    pub success: bool,
    /// What went wrong, if anything.
    pub error_message: Option<String>,
    /// From the decision to the last new instance serving (or the last old one stopped), seconds.
    pub execution_time_seconds: f64,
    /// When the action finished.
    pub occurred_at: DateTime<Utc>,
}

/// Where events go. Must not block.
pub trait EventSink: Send + Sync {
    /// Records one event.
    fn record(&self, event: ScalingEvent);
}

/// Keeps events in memory, for tests and for running without a store.
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
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }
}
