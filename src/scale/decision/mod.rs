//! The scaling decision: a pure function from what a service observed to how
//! many instances it should run.
//!
//! These are the plan's `evaluate_scaling_decision` rules with its defects
//! fixed, and PostgreSQL's function of that name implements the same ones:
//!
//! 1. A disabled policy or a singleton service is never scaled. A window
//!    without samples gives no decision, and says so: it never scales down.
//! 2. For CPU, memory and p95 latency, `ceil(current * observed / target)`,
//!    the largest wins; a metric within `tolerance` of its target asks for
//!    the current count, so noise does not scale.
//! 3. Scale up when CPU or memory passes `scale_up_threshold`, or p95 passes
//!    its target by more than the tolerance: to the proportional count, and by
//!    at least one.
//! 4. Scale down only when every measured metric is under
//!    `scale_down_threshold` (latency as a percent of its target), to the
//!    proportional count of the *peak* levels of the scale-down cooldown.
//! 5. Cooldowns per direction run from the last scaling event of any kind,
//!    read once before either branch.
//! 6. The count is clamped to the policy's bounds, the quota's
//!    `max_instances` and what `cost_budget_monthly` buys at the configured
//!    hourly cost (730 hours a month); a capped decision names its cap.
//! 7. A stateful service that needs consensus only runs odd counts.
//!
//! The confidence score is the share of instances that reported times the
//! share of expected samples present, in percent.

#[cfg(test)]
mod cases;
#[cfg(test)]
mod tests;

use std::fmt;

use chrono::{DateTime, Utc};

use super::window::{Levels, Observed};
use crate::config::{PolicyConfig, QuotaConfig, ServiceKind};
pub use crate::store::TriggerMetric;

/// Hours in a month, as cloud price lists count them.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Float slack for the ceiling and the tolerance band, so that `2 * 140 / 70`
/// stays 4 and `77 / 70` sits on the 10% band, as in PostgreSQL's exact numerics.
const CEIL_SLACK: f64 = 1e-9;

/// The `scaling_policies` columns a decision reads: the typed config row,
/// whether it came from the config file or from the database.
pub type PolicyRow = PolicyConfig;

/// The `resource_quotas` columns a decision reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaRow {
    /// Instances the service may run.
    pub max_instances: u32,
    /// Monthly budget, if any.
    pub cost_budget_monthly: Option<f64>,
}

impl From<&QuotaConfig> for QuotaRow {
    fn from(q: &QuotaConfig) -> Self {
        Self {
            max_instances: q.max_instances,
            cost_budget_monthly: q.cost_budget_monthly,
        }
    }
}

/// Everything a decision depends on.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The service's policy.
    pub policy: &'a PolicyRow,
    /// The window and cooldown peak.
    pub observed: Observed,
    /// Instances serving now.
    pub current: u32,
    /// The service's quota, if any.
    pub quota: Option<QuotaRow>,
    /// When the service's last scaling event (of any type) happened.
    pub last_event_at: Option<DateTime<Utc>>,
    /// The decision's "now".
    pub now: DateTime<Utc>,
    /// Stateless, stateful or singleton.
    pub kind: ServiceKind,
    /// Band around each target inside which nothing scales, percent.
    pub tolerance_percent: f64,
    /// Cost of one instance per hour; 0 disables the budget cap.
    pub instance_hourly_cost: f64,
}

/// Which way a decision goes, as the plan's `scale_direction` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// More instances.
    Up,
    /// Fewer instances.
    Down,
    /// As many as now.
    None,
}

impl Direction {
    /// `up`, `down` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::None => "none",
        }
    }
}

/// The bound that limited a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// The policy's `max_instances`.
    PolicyMax,
    /// The policy's `min_instances`.
    PolicyMin,
    /// The quota's `max_instances`.
    QuotaMax,
    /// What the quota's `cost_budget_monthly` buys.
    Budget,
    /// An odd count for consensus.
    Consensus,
}

impl Cap {
    /// The cap's name in reasons and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Cap::PolicyMax => "policy max_instances",
            Cap::PolicyMin => "policy min_instances",
            Cap::QuotaMax => "quota max_instances",
            Cap::Budget => "quota cost_budget_monthly",
            Cap::Consensus => "odd member count",
        }
    }
}

/// The plan's result columns, with a reason and the cap that applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Whether the service should change its instance count now.
    pub should_scale: bool,
    /// Up, down or none.
    pub scale_direction: Direction,
    /// The count to run; the current count when nothing changes.
    pub recommended_instances: u32,
    /// The metric that drove the decision, if one did.
    pub trigger_metric: Option<TriggerMetric>,
    /// The observed value of that metric.
    pub current_value: f64,
    /// The threshold it was compared with.
    pub threshold_value: f64,
    /// Share of reporting instances times share of samples present, percent.
    pub confidence_score: f64,
    /// Why, in words.
    pub reason: String,
    /// The bound that limited the count, if any.
    pub capped_by: Option<Cap>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} to {}: {}",
            self.scale_direction.as_str(),
            self.recommended_instances,
            self.reason
        )
    }
}

/// One metric's reading against its policy.
#[derive(Debug, Clone, Copy)]
struct Reading {
    metric: TriggerMetric,
    value: f64,
    target: f64,
    /// Scale-up threshold in the metric's unit.
    up_at: f64,
    /// Scale-down threshold in the metric's unit.
    down_at: f64,
}

fn readings(policy: &PolicyRow, levels: &Levels, tolerance_percent: f64) -> Vec<Reading> {
    let latency_up = policy.target_response_time_ms * (1.0 + tolerance_percent / 100.0);
    let latency_down = policy.target_response_time_ms * policy.scale_down_threshold / 100.0;
    [
        (
            TriggerMetric::Cpu,
            levels.cpu,
            policy.target_cpu_percent,
            policy.scale_up_threshold,
            policy.scale_down_threshold,
        ),
        (
            TriggerMetric::Memory,
            levels.memory,
            policy.target_memory_percent,
            policy.scale_up_threshold,
            policy.scale_down_threshold,
        ),
        (
            TriggerMetric::ResponseTime,
            levels.p95_ms,
            policy.target_response_time_ms,
            latency_up,
            latency_down,
        ),
    ]
    .into_iter()
    .filter_map(|(metric, value, target, up_at, down_at)| {
        let value = value?;
        (target > 0.0).then_some(Reading {
            metric,
            value,
            target,
            up_at,
            down_at,
        })
    })
    .collect()
}

/// `ceil(current * value / target)`, or `current` inside the tolerance band.
fn proportional(current: u32, r: &Reading, tolerance_percent: f64) -> u32 {
    let ratio = r.value / r.target;
    if (ratio - 1.0).abs() <= tolerance_percent / 100.0 + CEIL_SLACK {
        return current;
    }
    let wanted = (f64::from(current) * ratio - CEIL_SLACK).ceil();
    wanted.clamp(0.0, f64::from(u32::MAX)) as u32
}

/// The largest proportional count and the reading that asked for it (first on ties).
fn largest(current: u32, readings: &[Reading], tolerance: f64) -> Option<(u32, Reading)> {
    readings.iter().fold(None, |best, r| {
        let wanted = proportional(current, r, tolerance);
        match best {
            Some((n, _)) if n >= wanted => best,
            _ => Some((wanted, *r)),
        }
    })
}

/// Decides how many instances a service should run.
pub fn decide(inputs: &Inputs<'_>) -> Decision {
    let policy = inputs.policy;
    let current = inputs.current;
    let window = &inputs.observed.window;
    // A disabled policy is not evaluated, so nothing backs a confidence.
    let confidence = if policy.enabled {
        confidence(inputs)
    } else {
        0.0
    };
    let hold = |reason: String| Decision {
        should_scale: false,
        scale_direction: Direction::None,
        recommended_instances: current,
        trigger_metric: None,
        current_value: 0.0,
        threshold_value: 0.0,
        confidence_score: confidence,
        reason,
        capped_by: None,
    };

    if !policy.enabled {
        return hold("policy disabled".into());
    }
    if inputs.kind == ServiceKind::Singleton {
        return hold("singleton services are never scaled".into());
    }
    if window.samples == 0 {
        return hold("no samples in the window: no data, no decision".into());
    }
    let tolerance = inputs.tolerance_percent;
    let now_readings = readings(policy, &window.levels, tolerance);
    if now_readings.is_empty() {
        return hold("no metric measured in the window".into());
    }

    let since_last = inputs.last_event_at.map(|at| inputs.now - at);
    let cooling = |minutes: u32| {
        since_last.is_some_and(|d| d < chrono::Duration::minutes(i64::from(minutes)))
    };

    let triggered: Vec<Reading> = now_readings
        .iter()
        .filter(|r| r.value > r.up_at)
        .copied()
        .collect();
    if let Some((wanted, _)) = largest(current, &now_readings, tolerance) {
        if !triggered.is_empty() {
            let (_, trigger) =
                largest(current, &triggered, tolerance).expect("triggered is not empty");
            let wanted = wanted.max(current + 1);
            let mut d = scale(
                inputs,
                Direction::Up,
                wanted,
                trigger,
                trigger.up_at,
                confidence,
            );
            if d.should_scale && cooling(policy.scale_up_cooldown_minutes) {
                d = in_cooldown(d, current, "scale-up", policy.scale_up_cooldown_minutes);
            }
            return d;
        }
    }

    if now_readings.iter().all(|r| r.value < r.down_at) {
        let peak_readings = readings(policy, &inputs.observed.peak, tolerance);
        let (wanted, driver) = largest(current, &peak_readings, tolerance)
            .expect("the peak levels include the window's, which has a reading");
        let reading = now_readings
            .iter()
            .find(|r| r.metric == driver.metric)
            .copied()
            .unwrap_or(driver);
        if wanted < current {
            let mut d = scale(
                inputs,
                Direction::Down,
                wanted,
                reading,
                reading.down_at,
                confidence,
            );
            if d.should_scale && cooling(policy.scale_down_cooldown_minutes) {
                d = in_cooldown(d, current, "scale-down", policy.scale_down_cooldown_minutes);
            }
            return d;
        }
        return hold(format!(
            "every metric under scale_down_threshold, but the cooldown peak of {} needs {wanted} of {current}",
            driver.metric.as_str()
        ));
    }
    hold("every metric between its thresholds".into())
}

/// The share of instances that reported times the share of samples present, percent.
fn confidence(inputs: &Inputs<'_>) -> f64 {
    let w = &inputs.observed.window;
    let share = |have: u32, want: u32| {
        if want == 0 {
            0.0
        } else {
            (f64::from(have) / f64::from(want)).min(1.0)
        }
    };
    let reported = share(w.instances_reporting, inputs.current.max(1));
    let present = share(w.samples, w.expected_samples);
    (reported * present * 10_000.0).round() / 100.0
}

/// The highest count the quota and budget allow, and which of them sets it.
fn upper_bound(inputs: &Inputs<'_>) -> (u32, Cap) {
    let mut bound = (inputs.policy.max_instances, Cap::PolicyMax);
    if let Some(quota) = inputs.quota {
        if quota.max_instances < bound.0 {
            bound = (quota.max_instances, Cap::QuotaMax);
        }
        if let Some(budget) = quota.cost_budget_monthly {
            if inputs.instance_hourly_cost > 0.0 {
                let affordable =
                    (budget / (inputs.instance_hourly_cost * HOURS_PER_MONTH) + CEIL_SLACK).floor();
                let affordable = affordable.clamp(0.0, f64::from(u32::MAX)) as u32;
                if affordable < bound.0 {
                    bound = (affordable, Cap::Budget);
                }
            }
        }
    }
    bound
}

/// Clamps `wanted` to every bound and builds the decision to move there.
fn scale(
    inputs: &Inputs<'_>,
    direction: Direction,
    wanted: u32,
    r: Reading,
    threshold: f64,
    confidence: f64,
) -> Decision {
    let current = inputs.current;
    let (max, max_cap) = upper_bound(inputs);
    let min = inputs.policy.min_instances;
    let mut target = wanted;
    let mut capped_by = None;
    if target > max {
        target = max;
        capped_by = Some(max_cap);
    }
    if target < min && min <= max {
        target = min;
        capped_by = Some(Cap::PolicyMin);
    }
    if matches!(
        inputs.kind,
        ServiceKind::Stateful {
            requires_consensus: true
        }
    ) && target % 2 == 0
    {
        target = if direction == Direction::Up && target < max {
            target + 1
        } else if direction == Direction::Up {
            target - 1
        } else {
            target + 1
        };
        capped_by = capped_by.or(Some(Cap::Consensus));
    }

    let moves = match direction {
        Direction::Up => target > current,
        Direction::Down => target < current,
        Direction::None => false,
    };
    let metric = r.metric.as_str();
    let reason = match (moves, capped_by) {
        (true, None) => format!(
            "{metric} {:.2} against target {:.2} asks for {target}",
            r.value, r.target
        ),
        (true, Some(cap)) => format!(
            "{metric} {:.2} asks for {wanted}, capped at {target} by {}",
            r.value,
            cap.as_str()
        ),
        (false, cap) => format!(
            "{metric} {:.2} asks for {wanted}, but {} holds the service at {current}",
            r.value,
            cap.map_or("its bounds", Cap::as_str)
        ),
    };
    Decision {
        should_scale: moves,
        scale_direction: if moves { direction } else { Direction::None },
        recommended_instances: if moves { target } else { current },
        trigger_metric: Some(r.metric),
        current_value: r.value,
        threshold_value: threshold,
        confidence_score: confidence,
        reason,
        capped_by,
    }
}

/// A decision held back by a cooldown: nothing moves, the reason says what would have.
fn in_cooldown(d: Decision, current: u32, what: &str, minutes: u32) -> Decision {
    Decision {
        should_scale: false,
        scale_direction: Direction::None,
        recommended_instances: current,
        reason: format!(
            "{what} cooldown of {minutes} min since the last scaling event holds {}",
            d.reason
        ),
        ..d
    }
}
