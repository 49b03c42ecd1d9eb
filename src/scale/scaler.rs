//! The scaling loop: every `scaler.evaluation_interval`, for each service with
//! an enabled policy, aggregate its window, decide, act through its
//! orchestrator, and record a `scaling_events` row.
//!
//! Only the leader decides (see [`super::leader`]); every node records. A
//! service's evaluation waits for its own action to finish (a scale-up waits
//! for the new instances to pass their probes), so one service never has two
//! actions in flight; services are evaluated one after the other.
// TODO: a slow start on one service (up to its start_timeout) delays the
// evaluation of the others; one task per service would isolate them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::decision::{decide, Decision, Direction, Inputs, TriggerMetric};
use super::event::{EventSink, EventType, ScalingEvent};
use super::leader::Leadership;
use super::source::{ScalerSource, SourceResult};
use super::window::{Observed, Span};
use crate::config::ScalerConfig;
use crate::orchestrate::{self, Orchestrator};
use crate::registry::Service;
use crate::telemetry::names;

/// A service the scaler steers, with its orchestrator.
#[derive(Clone)]
pub struct Scaled {
    /// The service.
    pub service: Arc<Service>,
    /// What starts and stops its instances.
    pub orchestrator: Arc<dyn Orchestrator>,
}

/// The scaling loop's settings and collaborators.
pub struct Scaler {
    /// The services, each with its orchestrator.
    pub services: Vec<Scaled>,
    /// Policies, quotas, samples and events.
    pub source: Arc<dyn ScalerSource>,
    /// The `[scaler]` settings.
    pub config: ScalerConfig,
    /// The recorder's interval, which sets how many samples a window expects.
    pub metrics_interval: Duration,
    /// Where this node also keeps its own events (beside the source), if anywhere.
    pub local_events: Option<Arc<dyn EventSink>>,
}

impl Scaler {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut leadership: Leadership, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.config.evaluation_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            for scaled in &self.services {
                publish_instances(&scaled.service);
            }
            if !leadership.holds().await {
                continue;
            }
            for scaled in &self.services {
                if let Err(error) = self.evaluate(scaled).await {
                    warn!(service = %scaled.service.name, error = %error, "scaling evaluation failed");
                }
            }
        }
    }

    /// One evaluation of one service: decide, act, record. Returns the decision.
    pub async fn evaluate(&self, scaled: &Scaled) -> SourceResult<Option<Decision>> {
        let service = &scaled.service;
        let Some(policy) = self.source.policy(&service.config).await? else {
            return Ok(None);
        };
        if !policy.enabled {
            return Ok(None);
        }
        let quota = self.source.quota(&service.config).await?;
        let now = Utc::now();
        let span = Span {
            now,
            window: self.config.window,
            peak_lookback: Duration::from_secs(u64::from(policy.scale_down_cooldown_minutes) * 60),
            interval: self.metrics_interval,
        };
        let since = now
            - chrono::Duration::from_std(span.window.max(span.peak_lookback))
                .unwrap_or(chrono::TimeDelta::MAX);
        let samples = self.source.samples(&service.name, since).await?;
        let current = service.table.load().len() as u32;
        let last_event_at = self.source.last_event_at(&service.name).await?;

        let decision = decide(&Inputs {
            policy: &policy,
            observed: Observed::from_samples(&samples, &span, current),
            current,
            quota,
            last_event_at,
            now,
            kind: service.config.kind,
            tolerance_percent: self.config.tolerance_percent,
            instance_hourly_cost: self.config.instance_hourly_cost,
        });
        debug!(service = %service.name, decision = %decision, confidence = decision.confidence_score, "scaling decision");
        if !decision.should_scale {
            count_decision(service, decision.scale_direction, "held");
            return Ok(Some(decision));
        }

        let event = self.act(scaled, &decision, current).await;
        if let Some(local) = &self.local_events {
            local.record(event.clone());
        }
        self.source.record(event).await?;
        Ok(Some(decision))
    }

    /// Carries out a decision and describes the outcome as an event.
    async fn act(&self, scaled: &Scaled, decision: &Decision, before: u32) -> ScalingEvent {
        let service = &scaled.service;
        let direction = decision.scale_direction;
        let target = decision.recommended_instances;
        let began = Instant::now();
        let errors = if !scaled.orchestrator.can_scale() {
            None
        } else if direction == Direction::Up {
            let (_, errors) =
                orchestrate::scale_up(scaled.orchestrator.as_ref(), target.saturating_sub(before))
                    .await;
            Some(errors)
        } else {
            let drain = service.config.resilience.drain_timeout;
            Some(
                orchestrate::scale_down(
                    service,
                    scaled.orchestrator.as_ref(),
                    before.saturating_sub(target),
                    drain,
                )
                .await,
            )
        };
        let elapsed = began.elapsed();
        let after = service.table.load().len() as u32;
        publish_instances(service);

        let (event_type, success, message, result) = match &errors {
            None => (
                event_type_of(direction),
                false,
                Some(format!(
                    "recommendation only ({} orchestrator): {}",
                    scaled.orchestrator.kind(),
                    decision.reason
                )),
                "recommended",
            ),
            Some(errors) if errors.is_empty() => (event_type_of(direction), true, None, "scaled"),
            Some(errors) => {
                let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
                (
                    EventType::ScaleFailed,
                    false,
                    Some(text.join("; ")),
                    "failed",
                )
            }
        };
        count_decision(service, direction, result);
        if result == "scaled" {
            metrics::histogram!(names::SCALING_LATENCY, "service" => service.name.to_string(), "direction" => direction.as_str())
                .record(elapsed.as_secs_f64());
        }
        info!(
            service = %service.name,
            direction = direction.as_str(),
            before,
            after,
            result,
            seconds = elapsed.as_secs_f64(),
            reason = %decision.reason,
            "scaled"
        );
        ScalingEvent {
            service: service.name.clone(),
            event_type,
            trigger_metric: decision.trigger_metric.unwrap_or(TriggerMetric::Cpu),
            trigger_value: decision.current_value,
            threshold_value: decision.threshold_value,
            instances_before: before,
            instances_after: if errors.is_none() { target } else { after },
            success,
            error_message: message,
            execution_time_seconds: elapsed.as_secs_f64(),
            occurred_at: Utc::now(),
        }
    }
}

fn event_type_of(direction: Direction) -> EventType {
    if direction == Direction::Down {
        EventType::ScaleDown
    } else {
        EventType::ScaleUp
    }
}

fn count_decision(service: &Service, direction: Direction, result: &'static str) {
    metrics::counter!(
        names::SCALING_DECISIONS_TOTAL,
        "service" => service.name.to_string(),
        "direction" => direction.as_str(),
        "result" => result
    )
    .increment(1);
}

fn publish_instances(service: &Service) {
    metrics::gauge!(names::INSTANCES, "service" => service.name.to_string())
        .set(service.table.load().len() as f64);
}

/// Starts the instances a service needs before its first evaluation: its
/// policy's `min_instances` (one without a policy) on an orchestrator that can start them.
pub async fn start_minimum(scaled: &Scaled) {
    if !scaled.orchestrator.can_scale() {
        return;
    }
    let config = &scaled.service.config;
    let minimum = config.policy.as_ref().map_or(1, |p| p.min_instances.max(1));
    let current = scaled.service.table.load().len() as u32;
    let (_, errors) = orchestrate::scale_up(
        scaled.orchestrator.as_ref(),
        minimum.saturating_sub(current),
    )
    .await;
    for error in errors {
        warn!(service = %scaled.service.name, error = %error, "initial instance failed to start");
    }
    publish_instances(&scaled.service);
}
