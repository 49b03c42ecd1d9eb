//! The window aggregate a decision reads: service-wide averages over the last
//! `scaler.window`, and the peak levels over the scale-down cooldown.
//!
//! Samples of one service are written for every instance at once, each
//! `metrics_interval`. The averages are plain means over every sample in the
//! window (as the plan's SQL takes them), p95 counting an idle interval as 0;
//! the peak is the highest of the
//! per-interval means, so that a scale-down answers the busiest moment of its
//! cooldown rather than the latest dip. PostgreSQL's
//! `evaluate_scaling_decision` computes the same two aggregates in SQL.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::recorder::Sample;

/// Service-wide levels of the three metrics a decision scales on.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Levels {
    /// CPU, percent; `None` when no sample carried one.
    pub cpu: Option<f64>,
    /// Memory, percent; `None` when no sample carried one.
    pub memory: Option<f64>,
    /// p95 latency, milliseconds, an interval without requests counting as 0;
    /// `None` when no instance served a request.
    pub p95_ms: Option<f64>,
}

/// The aggregate of a service's samples over the decision window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// Mean levels over every sample in the window.
    pub levels: Levels,
    /// Requests served in the window, all instances together.
    pub requests: u64,
    /// Distinct instances with at least one sample.
    pub instances_reporting: u32,
    /// Samples in the window.
    pub samples: u32,
    /// Samples a full window holds: one per instance per `metrics_interval`.
    pub expected_samples: u32,
}

/// What a decision observes: the window and the peak over the scale-down cooldown.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observed {
    /// The decision window.
    pub window: Window,
    /// Highest per-interval mean of each metric since the scale-down cooldown began
    /// (or over the window when the cooldown is shorter).
    pub peak: Levels,
}

/// How a window is cut out of the samples.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// The decision's "now".
    pub now: DateTime<Utc>,
    /// Length of the decision window.
    pub window: Duration,
    /// Length of the scale-down cooldown; the peak looks back this far (at least the window).
    pub peak_lookback: Duration,
    /// The recorder's interval, which buckets samples written together.
    pub interval: Duration,
}

impl Span {
    fn since(&self, length: Duration) -> DateTime<Utc> {
        self.now - chrono::Duration::from_std(length).unwrap_or(chrono::TimeDelta::MAX)
    }

    /// Samples a full window holds for `instances` instances.
    pub fn expected_samples(&self, instances: u32) -> u32 {
        let per_instance = self.window.as_millis() / self.interval.as_millis().max(1);
        u32::try_from(per_instance)
            .unwrap_or(u32::MAX)
            .max(1)
            .saturating_mul(instances)
    }
}

impl Observed {
    /// Aggregates `samples` of one service for a service of `instances` instances.
    pub fn from_samples(samples: &[Sample], span: &Span, instances: u32) -> Observed {
        let window_start = span.since(span.window);
        let peak_start = span.since(span.peak_lookback.max(span.window));
        let in_window: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.recorded_at > window_start && s.recorded_at <= span.now)
            .collect();
        let reporting: HashSet<&str> = in_window.iter().map(|s| s.instance.as_str()).collect();
        let window = Window {
            levels: mean_levels(&in_window),
            requests: in_window.iter().map(|s| u64::from(s.request_count)).sum(),
            instances_reporting: reporting.len() as u32,
            samples: in_window.len() as u32,
            expected_samples: span.expected_samples(instances),
        };

        let interval_s = span.interval.as_secs().max(1) as i64;
        let mut buckets: BTreeMap<i64, Vec<&Sample>> = BTreeMap::new();
        for s in samples
            .iter()
            .filter(|s| s.recorded_at > peak_start && s.recorded_at <= span.now)
        {
            let bucket = s.recorded_at.timestamp().div_euclid(interval_s);
            buckets.entry(bucket).or_default().push(s);
        }
        let peak = buckets
            .values()
            .map(|b| mean_levels(b))
            .fold(window.levels, |acc, l| Levels {
                cpu: max_opt(acc.cpu, l.cpu),
                memory: max_opt(acc.memory, l.memory),
                p95_ms: max_opt(acc.p95_ms, l.p95_ms),
            });
        Observed { window, peak }
    }
}

fn mean_levels(samples: &[&Sample]) -> Levels {
    Levels {
        cpu: mean(samples.iter().filter_map(|s| s.cpu_usage_percent)),
        memory: mean(samples.iter().filter_map(|s| s.memory_usage_percent)),
        p95_ms: idle_aware_p95(samples),
    }
}

/// The mean p95 where an interval without requests (no p95) counts as 0 ms:
/// nobody waited in it. Averaging only the busy intervals would keep a load's
/// latency in the window for a whole window after the load stopped, and go on
/// scaling up a service that serves nothing. `None` when no sample has a p95.
fn idle_aware_p95(samples: &[&Sample]) -> Option<f64> {
    samples
        .iter()
        .any(|s| s.response_time_p95_ms.is_some())
        .then(|| {
            mean(
                samples
                    .iter()
                    .map(|s| s.response_time_p95_ms.unwrap_or(0.0)),
            )
            .unwrap_or(0.0)
        })
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u32), |(sum, n), v| (sum + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::InstanceId;

    fn sample(instance: &str, secs_ago: i64, cpu: f64, now: DateTime<Utc>) -> Sample {
        Sample {
            cpu_usage_percent: Some(cpu),
            recorded_at: now - chrono::Duration::seconds(secs_ago),
            ..Sample::new("svc".into(), InstanceId::new(instance))
        }
    }

    fn span(now: DateTime<Utc>, lookback_s: u64) -> Span {
        Span {
            now,
            window: Duration::from_secs(60),
            peak_lookback: Duration::from_secs(lookback_s),
            interval: Duration::from_secs(5),
        }
    }

    #[test]
    fn window_averages_only_samples_inside_it() {
        let now = DateTime::from_timestamp(1_000_000, 0).expect("valid time");
        let samples = vec![
            sample("a", 10, 50.0, now),
            sample("b", 10, 70.0, now),
            sample("a", 300, 100.0, now),
        ];
        let observed = Observed::from_samples(&samples, &span(now, 0), 2);
        assert_eq!(observed.window.levels.cpu, Some(60.0));
        assert_eq!(observed.window.samples, 2);
        assert_eq!(observed.window.instances_reporting, 2);
        assert_eq!(
            observed.window.expected_samples, 24,
            "12 intervals x 2 instances"
        );
    }

    #[test]
    fn idle_intervals_dilute_the_latency_of_a_load_that_stopped() {
        let now = DateTime::from_timestamp(1_000_000, 0).expect("valid time");
        let with_p95 = |secs_ago, p95| Sample {
            response_time_p95_ms: p95,
            ..sample("a", secs_ago, 5.0, now)
        };
        let stopped = vec![
            with_p95(10, None),
            with_p95(20, None),
            with_p95(30, Some(300.0)),
        ];
        let observed = Observed::from_samples(&stopped, &span(now, 0), 1);
        assert_eq!(
            observed.window.levels.p95_ms,
            Some(100.0),
            "two idle intervals and one at 300 ms average to 100 ms"
        );
        let idle = vec![with_p95(10, None), with_p95(20, None)];
        let observed = Observed::from_samples(&idle, &span(now, 0), 1);
        assert_eq!(
            observed.window.levels.p95_ms, None,
            "no request, no latency level"
        );
    }

    #[test]
    fn peak_is_the_busiest_interval_of_the_cooldown() {
        let now = DateTime::from_timestamp(1_000_000, 0).expect("valid time");
        let samples = vec![
            sample("a", 10, 20.0, now),
            sample("a", 300, 90.0, now),
            sample("b", 300, 70.0, now),
            sample("a", 900, 100.0, now),
        ];
        let observed = Observed::from_samples(&samples, &span(now, 600), 2);
        assert_eq!(observed.window.levels.cpu, Some(20.0));
        assert_eq!(
            observed.peak.cpu,
            Some(80.0),
            "the peak is a per-interval mean inside the cooldown, not a single sample"
        );
    }
}
