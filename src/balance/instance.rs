//! One instance of a service and its live state, kept in atomics.
//!
//! An `Instance` is shared (`Arc`) by every instance table that lists it, so its
//! counters survive table swaps. The request path touches it three times: the
//! balancer reads its flags and load, the dispatch increments `in_flight`, and
//! the [`InFlight`] guard, dropped when the response body ends or is abandoned,
//! decrements it and records the latency and outcome.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock;
use crate::health::InstanceHealth;
use crate::ids::{InstanceId, ServiceName};
use crate::telemetry::histogram::LatencyHistogram;
use crate::telemetry::instance::InstanceMetrics;

/// Share of its weight a slow-starting instance gets at once, in thousandths.
pub const SLOW_START_FLOOR_PER_MILLE: u64 = 100;

/// How one request to an instance ended, as far as the instance is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with a status below 500.
    Success,
    /// A 5xx response from the instance.
    ServerError,
    /// The connection could not be made.
    ConnectFailed,
    /// No response head within the timeout.
    Timeout,
    /// The connection failed after it was made (reset, malformed response, body error).
    Reset,
    /// The client went away before the response finished; not the instance's fault.
    Cancelled,
}

/// The error classes counted per instance, in the order of [`InstanceState::errors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 5xx answered by the instance.
    Status5xx,
    /// Connect refused or timed out.
    Connect,
    /// No response head in time.
    Timeout,
    /// Reset or protocol error mid-exchange.
    Reset,
}

impl ErrorClass {
    /// Every class, in counter order.
    pub const ALL: [ErrorClass; 4] = [
        ErrorClass::Status5xx,
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::Reset,
    ];

    /// The label used in stats and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Status5xx => "5xx",
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Reset => "reset",
        }
    }
}

impl Outcome {
    /// The error class this outcome counts under, if it is an instance failure.
    pub fn error_class(self) -> Option<ErrorClass> {
        match self {
            Outcome::Success | Outcome::Cancelled => None,
            Outcome::ServerError => Some(ErrorClass::Status5xx),
            Outcome::ConnectFailed => Some(ErrorClass::Connect),
            Outcome::Timeout => Some(ErrorClass::Timeout),
            Outcome::Reset => Some(ErrorClass::Reset),
        }
    }
}

/// An instance of a service: its address, configured weight and live state.
pub struct Instance {
    service: ServiceName,
    id: InstanceId,
    addr: SocketAddr,
    authority: http::uri::Authority,
    weight: u32,
    added_at: Instant,
    /// Slow-start window in nanoseconds from `added_at`; 0 is full weight at once.
    slow_start_ns: AtomicU64,
    /// Live counters and flags.
    pub state: InstanceState,
    /// Prometheus handles labelled with this service and instance.
    pub metrics: InstanceMetrics,
}

/// Counters and flags of one instance, all atomics.
pub struct InstanceState {
    /// Requests dispatched and not yet finished.
    pub in_flight: AtomicU32,
    /// Requests of those in flight that wait for a new connection to the
    /// instance because no pooled one was ready: its queue depth.
    pub queued: AtomicU32,
    /// Requests finished, whatever the outcome.
    pub requests: AtomicU64,
    /// Failures by [`ErrorClass`], in `ErrorClass::ALL` order.
    pub errors: [AtomicU64; 4],
    /// Latencies of finished requests.
    pub latency: LatencyHistogram,
    /// Exponentially weighted latency in nanoseconds, as `f64` bits; 0 before the first sample.
    pub ewma_ns: AtomicU64,
    /// `clock::now_ns` of the last latency sample.
    pub last_sample_ns: AtomicU64,
    /// Passed its probes (or has no probes yet).
    pub healthy: AtomicBool,
    /// Being drained: no new requests.
    pub draining: AtomicBool,
    /// Consecutive failed requests, for passive ejection.
    pub consecutive_failures: AtomicU32,
    /// Ejection, circuit breaker and drain wake-up.
    pub health: InstanceHealth,
}

/// Told when a request to an instance ends, after the instance's counters are updated.
pub trait FinishObserver: Send + Sync {
    /// The request ended with `outcome`, at `now_ns` (`clock::now_ns`).
    fn finished(&self, instance: &Instance, outcome: Outcome, now_ns: u64);
}

impl Instance {
    /// A new instance of a service, healthy and not draining.
    ///
    /// Its metric handles register with the recorder installed at this point.
    pub fn new(service: ServiceName, id: InstanceId, addr: SocketAddr, weight: u32) -> Arc<Self> {
        Arc::new(Self {
            metrics: InstanceMetrics::new(&service, &id),
            service,
            id,
            addr,
            authority: http::uri::Authority::try_from(addr.to_string().as_str())
                .expect("a socket address is a valid URI authority"),
            weight,
            added_at: Instant::now(),
            slow_start_ns: AtomicU64::new(0),
            state: InstanceState {
                in_flight: AtomicU32::new(0),
                queued: AtomicU32::new(0),
                requests: AtomicU64::new(0),
                errors: Default::default(),
                latency: LatencyHistogram::new(),
                ewma_ns: AtomicU64::new(0),
                last_sample_ns: AtomicU64::new(0),
                healthy: AtomicBool::new(true),
                draining: AtomicBool::new(false),
                consecutive_failures: AtomicU32::new(0),
                health: InstanceHealth::default(),
            },
        })
    }

    /// An instance named after its address.
    pub fn from_addr(service: ServiceName, addr: SocketAddr, weight: u32) -> Arc<Self> {
        Self::new(service, InstanceId::new(addr.to_string()), addr, weight)
    }

    /// The service the instance belongs to.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    /// The instance's identity.
    pub fn id(&self) -> &InstanceId {
        &self.id
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address as a URI authority, built once for the request path.
    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }

    /// The configured weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// When it joined its service.
    pub fn added_at(&self) -> Instant {
        self.added_at
    }

    /// Ramps this instance's effective weight up over `window` from [`Self::added_at`].
    ///
    /// For instances added while the service runs (the scaler's), called before
    /// the instance is published; instances present at startup keep full weight.
    pub fn begin_slow_start(&self, window: Duration) {
        self.slow_start_ns
            .store(clock::duration_ns(window), Ordering::Relaxed);
    }

    /// `clock::now_ns` at which the slow start ends; 0 when there is none.
    pub fn slow_start_ends_ns(&self) -> u64 {
        match self.slow_start_ns.load(Ordering::Relaxed) {
            0 => 0,
            window => clock::instant_ns(self.added_at).saturating_add(window),
        }
    }

    /// Share of the full weight in effect at `now_ns`, in thousandths.
    ///
    /// Linear from [`SLOW_START_FLOOR_PER_MILLE`] to 1000 over the window, so a
    /// new instance takes a little traffic at once (and warms up) without
    /// being flooded.
    pub fn weight_share_per_mille(&self, now_ns: u64) -> u64 {
        let window = self.slow_start_ns.load(Ordering::Relaxed);
        if window == 0 {
            return 1000;
        }
        let elapsed = now_ns.saturating_sub(clock::instant_ns(self.added_at));
        if elapsed >= window {
            return 1000;
        }
        let share = (u128::from(elapsed) * 1000 / u128::from(window)) as u64;
        share.max(SLOW_START_FLOOR_PER_MILLE)
    }

    /// How far through its slow start the instance is at `now_ns`, from 0 to 1.
    pub fn slow_start_progress(&self, now_ns: u64) -> f64 {
        let window = self.slow_start_ns.load(Ordering::Relaxed);
        if window == 0 {
            return 1.0;
        }
        let elapsed = now_ns.saturating_sub(clock::instant_ns(self.added_at));
        (elapsed as f64 / window as f64).min(1.0)
    }

    /// The weight in effect at `now_ns`, in thousandths of a unit of weight.
    pub fn effective_weight_milli(&self, now_ns: u64) -> u64 {
        u64::from(self.weight) * self.weight_share_per_mille(now_ns)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.state.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the balancer may pick it: healthy, not draining, not ejected,
    /// breaker not open, weight above zero.
    pub fn is_eligible(&self) -> bool {
        self.weight > 0
            && self.state.healthy.load(Ordering::Relaxed)
            && !self.state.draining.load(Ordering::Relaxed)
            && self.state.health.admits_picks()
    }

    /// Counts a request as dispatched; the guard counts it finished when dropped.
    pub fn dispatch(self: &Arc<Self>) -> InFlight {
        self.state.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            instance: Arc::clone(self),
            started: Instant::now(),
            outcome: Outcome::Cancelled,
            status: 0,
            observer: None,
        }
    }

    /// The latency estimate in nanoseconds, 0 before any sample.
    pub fn ewma_ns(&self) -> f64 {
        f64::from_bits(self.state.ewma_ns.load(Ordering::Relaxed))
    }

    fn finish(&self, latency: Duration, now_ns: u64, outcome: Outcome, status: u16) {
        let s = &self.state;
        // SeqCst pairs with the drain's flag store and count load: one side sees the other.
        let in_flight = s.in_flight.fetch_sub(1, Ordering::SeqCst) - 1;
        s.health
            .request_finished(in_flight, s.draining.load(Ordering::SeqCst));
        if outcome == Outcome::Cancelled {
            return;
        }
        s.requests.fetch_add(1, Ordering::Relaxed);
        s.latency.record(latency);
        self.observe_latency(latency, now_ns);
        if status != 0 {
            self.metrics.response(status);
        }
        match outcome.error_class() {
            Some(class) => {
                s.errors[class as usize].fetch_add(1, Ordering::Relaxed);
                s.consecutive_failures.fetch_add(1, Ordering::Relaxed);
                self.metrics.error(class);
            }
            None => s.consecutive_failures.store(0, Ordering::Relaxed),
        }
    }

    /// Folds a latency sample into the moving average (decay time 10 s).
    ///
    /// Concurrent updates may lose one sample to another; the estimate stays a
    /// weighted average either way, which is all the balancer needs.
    fn observe_latency(&self, latency: Duration, now: u64) {
        const DECAY_NS: f64 = 10e9;
        let sample = latency.as_nanos() as f64;
        let last = self.state.last_sample_ns.swap(now, Ordering::Relaxed);
        let prev = self.ewma_ns();
        let next = if prev == 0.0 || last == 0 {
            sample
        } else {
            let elapsed = now.saturating_sub(last) as f64;
            let w = (-elapsed / DECAY_NS).exp();
            prev * w + sample * (1.0 - w)
        };
        self.state.ewma_ns.store(next.to_bits(), Ordering::Relaxed);
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("instance", &self.instance.id)
            .field("outcome", &self.outcome)
            .finish()
    }
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .field("weight", &self.weight)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// A request counted in flight on an instance until this guard is dropped.
///
/// The guard rides inside the response body, so a request stays counted until
/// its last byte is sent or the client goes away, on every path.
#[must_use = "dropping the guard ends the request"]
pub struct InFlight {
    instance: Arc<Instance>,
    started: Instant,
    outcome: Outcome,
    status: u16,
    observer: Option<Arc<dyn FinishObserver>>,
}

impl InFlight {
    /// Has `observer` told how the request ended, when the guard drops.
    pub fn observe(&mut self, observer: Arc<dyn FinishObserver>) {
        self.observer = Some(observer);
    }

    /// The instance the request went to.
    pub fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }

    /// Sets how the request ended; the last call before drop wins.
    pub fn set_outcome(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }

    /// Records the response status the instance answered with.
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
        self.outcome = if status >= 500 {
            Outcome::ServerError
        } else {
            Outcome::Success
        };
    }

    /// The outcome recorded so far.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Time since dispatch.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // One reading of the clock serves the latency, its decay and the
        // breaker: each reading costs about as much as the arithmetic.
        let now = Instant::now();
        let now_ns = clock::instant_ns(now);
        self.instance.finish(
            now.saturating_duration_since(self.started),
            now_ns,
            self.outcome,
            self.status,
        );
        if let Some(observer) = self.observer.take() {
            observer.finished(&self.instance, self.outcome, now_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> Arc<Instance> {
        Instance::from_addr("test".into(), SocketAddr::from(([127, 0, 0, 1], 1)), 1)
    }

    #[test]
    fn guard_counts_in_flight_until_dropped() {
        let i = instance();
        let a = i.dispatch();
        let mut b = i.dispatch();
        assert_eq!(i.in_flight(), 2);
        drop(a);
        assert_eq!(i.in_flight(), 1, "dropping one guard finishes one request");
        b.set_outcome(Outcome::ServerError);
        drop(b);
        assert_eq!(i.in_flight(), 0);
        assert_eq!(
            i.state.requests.load(Ordering::Relaxed),
            1,
            "cancelled is not counted"
        );
        assert_eq!(
            i.state.errors[ErrorClass::Status5xx as usize].load(Ordering::Relaxed),
            1
        );
        assert_eq!(i.state.consecutive_failures.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn success_resets_consecutive_failures() {
        let i = instance();
        for outcome in [Outcome::Reset, Outcome::Timeout, Outcome::Success] {
            let mut g = i.dispatch();
            g.set_outcome(outcome);
        }
        assert_eq!(i.state.consecutive_failures.load(Ordering::Relaxed), 0);
        assert!(
            i.ewma_ns() > 0.0,
            "latency estimate starts at the first sample"
        );
    }
}
