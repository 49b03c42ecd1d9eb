//! The adaptive balancer: picks an algorithm per service from what it observes.
//!
//! # The rule
//!
//! About once a second (checked on roughly one pick in 256, by whichever pick
//! wins a `try_lock`, so no pick ever waits) the balancer measures the
//! *latency dispersion* of the service: the coefficient of variation
//! (standard deviation over mean) of the latency estimates of its eligible
//! instances that had a sample in the last 30 s. With fewer than two such
//! instances it has nothing to go on and keeps its choice.
//!
//! - It starts on the **baseline**: `round_robin` when every instance has the
//!   same weight, `weighted` otherwise. Under uniform latency, rotation is the
//!   fairest and cheapest choice.
//! - It moves to **`peak_ewma`** when the dispersion is at least 0.5 (one
//!   instance markedly slower than the others) in 3 consecutive measurements.
//! - It moves back to the baseline when the dispersion is at most 0.2 in 3
//!   consecutive measurements.
//! - Between 0.2 and 0.5 it keeps its choice (the hysteresis band), and it
//!   never switches twice within 10 s.
//!
//! The current choice, the reason for it and the last dispersion show in
//! `/stats`; the choice is also the gauge `tidegate_balancer_active_algorithm`
//! (1 for the algorithm in use, 0 for the other candidates).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use super::instance::Instance;
use super::rng::FastRng;
use super::table::InstanceTable;
use crate::clock;
use crate::config::Algorithm;
use crate::telemetry::names;

/// Dispersion at or above which latency-aware balancing pays.
pub const ENTER_DISPERSION: f64 = 0.5;
/// Dispersion at or below which rotation is as good and cheaper.
pub const LEAVE_DISPERSION: f64 = 0.2;
/// Consecutive measurements that must agree before a switch.
pub const CONFIRMATIONS: u32 = 3;
/// Least time between two switches.
pub const MIN_DWELL_NS: u64 = 10_000_000_000;
/// Time between measurements.
pub const INTERVAL_NS: u64 = 1_000_000_000;
/// Samples older than this do not count.
const SAMPLE_MAX_AGE_NS: u64 = 30_000_000_000;

/// What the adaptive balancer runs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// `round_robin`, or `weighted` when weights differ.
    Baseline = 0,
    /// `peak_ewma`.
    PeakEwma = 1,
}

/// Why it runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No measurement has moved it off the baseline yet.
    Starting = 0,
    /// Latencies differed between instances.
    LatencyDispersion = 1,
    /// Latencies became uniform again.
    UniformLatency = 2,
}

impl Reason {
    /// The reason as shown in `/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Starting => "starting on the baseline",
            Reason::LatencyDispersion => "latency differs between instances",
            Reason::UniformLatency => "latency is uniform across instances",
        }
    }
}

/// The switching rule's memory: a pure state machine, fed measurements.
#[derive(Debug, Clone, Default)]
pub struct Hysteresis {
    streak: u32,
    last_switch_ns: Option<u64>,
}

impl Hysteresis {
    /// Feeds one measurement taken at `now_ns`; returns the new choice when it switches.
    pub fn step(
        &mut self,
        current: Choice,
        dispersion: Option<f64>,
        now_ns: u64,
    ) -> Option<Choice> {
        let Some(d) = dispersion else {
            self.streak = 0;
            return None;
        };
        let (wants_switch, target) = match current {
            Choice::Baseline => (d >= ENTER_DISPERSION, Choice::PeakEwma),
            Choice::PeakEwma => (d <= LEAVE_DISPERSION, Choice::Baseline),
        };
        self.streak = if wants_switch { self.streak + 1 } else { 0 };
        let dwelt = self
            .last_switch_ns
            .is_none_or(|at| now_ns.saturating_sub(at) >= MIN_DWELL_NS);
        if self.streak >= CONFIRMATIONS && dwelt {
            self.streak = 0;
            self.last_switch_ns = Some(now_ns);
            return Some(target);
        }
        None
    }
}

/// The adaptive balancer's shared state.
#[derive(Debug)]
pub struct Adaptive {
    choice: AtomicU8,
    reason: AtomicU8,
    /// Last measured dispersion as `f64` bits; NaN when there was none.
    dispersion: AtomicU64,
    next_measure_ns: AtomicU64,
    rule: Mutex<Hysteresis>,
}

impl Default for Adaptive {
    fn default() -> Self {
        Self {
            choice: AtomicU8::new(Choice::Baseline as u8),
            reason: AtomicU8::new(Reason::Starting as u8),
            dispersion: AtomicU64::new(f64::NAN.to_bits()),
            next_measure_ns: AtomicU64::new(0),
            rule: Mutex::new(Hysteresis::default()),
        }
    }
}

impl Adaptive {
    /// The algorithm in use for this table.
    #[inline]
    pub fn current(&self, table: &InstanceTable) -> Algorithm {
        match self.choice.load(Ordering::Relaxed) {
            1 => Algorithm::PeakEwma,
            _ if table.uniform_weights() => Algorithm::RoundRobin,
            _ => Algorithm::Weighted,
        }
    }

    /// Why it is in use.
    pub fn reason(&self) -> Reason {
        match self.reason.load(Ordering::Relaxed) {
            1 => Reason::LatencyDispersion,
            2 => Reason::UniformLatency,
            _ => Reason::Starting,
        }
    }

    /// The last measured latency dispersion, if there was enough to measure.
    pub fn dispersion(&self) -> Option<f64> {
        let d = f64::from_bits(self.dispersion.load(Ordering::Relaxed));
        (!d.is_nan()).then_some(d)
    }

    /// On about one pick in 256, measures and applies the rule if a second has passed.
    #[inline]
    pub fn tick(&self, table: &InstanceTable, rng: &mut FastRng) {
        if rng.next_u64() & 0xff == 0 {
            self.measure_if_due(table, clock::now_ns());
        }
    }

    /// Measures and applies the rule if the interval has passed and no other pick is at it.
    pub fn measure_if_due(&self, table: &InstanceTable, now_ns: u64) {
        if now_ns < self.next_measure_ns.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut rule) = self.rule.try_lock() else {
            return;
        };
        self.next_measure_ns
            .store(now_ns + INTERVAL_NS, Ordering::Relaxed);
        self.measure(&mut rule, table, now_ns);
    }

    fn measure(&self, rule: &mut Hysteresis, table: &InstanceTable, now_ns: u64) {
        let dispersion = latency_dispersion(table.instances(), now_ns);
        self.dispersion
            .store(dispersion.unwrap_or(f64::NAN).to_bits(), Ordering::Relaxed);
        let current = match self.choice.load(Ordering::Relaxed) {
            1 => Choice::PeakEwma,
            _ => Choice::Baseline,
        };
        let Some(next) = rule.step(current, dispersion, now_ns) else {
            return;
        };
        let reason = match next {
            Choice::PeakEwma => Reason::LatencyDispersion,
            Choice::Baseline => Reason::UniformLatency,
        };
        self.choice.store(next as u8, Ordering::Relaxed);
        self.reason.store(reason as u8, Ordering::Relaxed);
        self.publish(table, dispersion);
    }

    fn publish(&self, table: &InstanceTable, dispersion: Option<f64>) {
        let Some(service) = table.instances().first().map(|i| i.service().to_string()) else {
            return;
        };
        let active = self.current(table);
        for candidate in [
            Algorithm::RoundRobin,
            Algorithm::Weighted,
            Algorithm::PeakEwma,
        ] {
            let value = if candidate == active { 1.0 } else { 0.0 };
            metrics::gauge!(names::BALANCER_ACTIVE_ALGORITHM, "service" => service.clone(), "algorithm" => candidate.as_str())
                .set(value);
        }
        metrics::counter!(names::BALANCER_SWITCHES_TOTAL, "service" => service.clone())
            .increment(1);
        tracing::info!(service = %service, algorithm = %active, reason = self.reason().as_str(), dispersion = dispersion.unwrap_or(f64::NAN), "adaptive balancer switched");
    }
}

/// Coefficient of variation of the recent latency estimates of eligible instances.
pub fn latency_dispersion(instances: &[std::sync::Arc<Instance>], now_ns: u64) -> Option<f64> {
    let (mut n, mut sum, mut sum_sq) = (0u32, 0.0f64, 0.0f64);
    for instance in instances.iter().filter(|i| i.is_eligible()) {
        let ewma = instance.ewma_ns();
        let last = instance.state.last_sample_ns.load(Ordering::Relaxed);
        if ewma <= 0.0 || now_ns.saturating_sub(last) > SAMPLE_MAX_AGE_NS {
            continue;
        }
        n += 1;
        sum += ewma;
        sum_sq += ewma * ewma;
    }
    if n < 2 {
        return None;
    }
    let mean = sum / f64::from(n);
    let variance = (sum_sq / f64::from(n) - mean * mean).max(0.0);
    Some(variance.sqrt() / mean)
}
