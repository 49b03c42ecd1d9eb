//! Balancing: which instance of a service serves the next request.
//!
//! Each service owns a [`TableHandle`] (its instances, swapped whole when they
//! change, with what its algorithm needs precomputed at publication) and a
//! [`Balancer`] (the algorithm and its small atomic state). A pick reads the
//! table and the instances' atomics; it takes no lock and allocates nothing.
//! An instance may be picked only when [`Instance::is_eligible`] says so
//! (healthy, not draining, weight above 0); when none is, the pick is `None`
//! and the proxy answers 503.
//!
//! | `algorithm` | pick | module |
//! |---|---|---|
//! | `round_robin` | next index of an atomic counter | [`algorithms`] |
//! | `weighted` | smooth weighted round robin (nginx), precomputed cycle + atomic counter | [`weighted`] |
//! | `least_connections` | fewest in flight per weight; exact up to `two_choice_above`, two random choices above (Mitzenmacher) | [`least`] |
//! | `ip_hash` | Maglev consistent hashing of the client address | [`hash`] |
//! | `random` | uniform | [`algorithms`] |
//! | `peak_ewma` | two random choices by latency EWMA × (in flight + 1) (Finagle) | [`least`] |
//! | `adaptive` | one of the above per service, by latency dispersion | [`adaptive`] |
//!
//! Session affinity ([`affinity`]) and slow start ([`Instance::begin_slow_start`],
//! [`TableHandle::add_slow_start`]) apply on top of any algorithm.

pub mod adaptive;
pub mod affinity;
mod algorithms;
pub mod hash;
pub mod instance;
pub mod least;
mod rng;
pub mod table;
pub mod weighted;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};

pub use instance::{ErrorClass, FinishObserver, InFlight, Instance, Outcome};
pub use rng::FastRng;
pub use table::{InstanceTable, Needs, TableHandle};

use crate::config::{Algorithm, BalancerConfig};
use adaptive::Adaptive;

/// What a pick may key on: the client's address, for hashing and affinity.
#[derive(Debug, Clone, Copy)]
pub struct RequestKey {
    /// The client's IP address.
    pub client_ip: IpAddr,
}

/// The outcome of a pick for a request: the instance, and the affinity cookie
/// to send back when the client is (re)pinned.
#[derive(Debug)]
pub struct Pick {
    /// The instance to forward to.
    pub instance: Arc<Instance>,
    /// A `Set-Cookie` value to add to the response, when affinity (re)pins the client.
    pub set_cookie: Option<HeaderValue>,
}

/// An atomic counter alone on its cache line, so contended increments do not
/// slow reads of the balancer's other fields.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Cursor(AtomicUsize);

/// A service's balancing algorithm and its state.
#[derive(Debug)]
pub struct Balancer {
    cursor: Cursor,
    algorithm: Algorithm,
    two_choice_above: usize,
    session_affinity: bool,
    slow_start: Duration,
    adaptive: Adaptive,
}

impl Balancer {
    /// A balancer for a service's `load_balancer_config`.
    pub fn new(config: &BalancerConfig) -> Self {
        Self {
            cursor: Cursor::default(),
            algorithm: config.algorithm,
            two_choice_above: config.two_choice_above,
            session_affinity: config.session_affinity,
            slow_start: config.slow_start,
            adaptive: Adaptive::default(),
        }
    }

    /// The configured algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The slow-start window for instances added while the service runs.
    pub fn slow_start(&self) -> Duration {
        self.slow_start
    }

    /// The adaptive balancer's state (meaningful when the algorithm is `adaptive`).
    pub fn adaptive(&self) -> &Adaptive {
        &self.adaptive
    }

    /// What tables must have precomputed for this balancer.
    pub fn needs(&self) -> Needs {
        Needs {
            sequence: matches!(self.algorithm, Algorithm::Weighted | Algorithm::Adaptive),
            maglev: self.algorithm == Algorithm::IpHash,
            affinity: self.session_affinity,
        }
    }

    /// The algorithm running now: the configured one, or the adaptive choice.
    pub fn active(&self, table: &InstanceTable) -> Algorithm {
        match self.algorithm {
            Algorithm::Adaptive => self.adaptive.current(table),
            other => other,
        }
    }

    /// Picks an eligible instance, or `None` when none is eligible.
    pub fn pick(&self, table: &InstanceTable, key: &RequestKey) -> Option<Arc<Instance>> {
        rng::with_thread_rng(|rng| self.pick_with(table, key, rng))
    }

    /// [`Self::pick`] with a given random source, for reproducible tests and benchmarks.
    pub fn pick_with(
        &self,
        table: &InstanceTable,
        key: &RequestKey,
        rng: &mut FastRng,
    ) -> Option<Arc<Instance>> {
        self.pick_index(table, key, rng)
            .map(|i| Arc::clone(&table.instances()[i]))
    }

    /// Picks for a request, honouring its affinity cookie when the service has affinity.
    ///
    /// A cookie naming an eligible instance of the table wins; otherwise the
    /// algorithm picks and the result carries the cookie that pins the client.
    pub fn pick_request(
        &self,
        table: &InstanceTable,
        key: &RequestKey,
        headers: &HeaderMap,
    ) -> Option<Pick> {
        if !self.session_affinity {
            let instance = self.pick(table, key)?;
            return Some(Pick {
                instance,
                set_cookie: None,
            });
        }
        let affinity = table.affinity();
        let instances = table.instances();
        if let Some(i) = affinity.pinned(headers) {
            if instances[i].is_eligible() {
                return Some(Pick {
                    instance: Arc::clone(&instances[i]),
                    set_cookie: None,
                });
            }
        }
        let i = rng::with_thread_rng(|rng| self.pick_index(table, key, rng))?;
        Some(Pick {
            instance: Arc::clone(&instances[i]),
            set_cookie: affinity.set_cookie(i).cloned(),
        })
    }

    fn pick_index(
        &self,
        table: &InstanceTable,
        key: &RequestKey,
        rng: &mut FastRng,
    ) -> Option<usize> {
        let algorithm = match self.algorithm {
            Algorithm::Adaptive => {
                self.adaptive.tick(table, rng);
                self.adaptive.current(table)
            }
            other => other,
        };
        let counter = &self.cursor.0;
        match algorithm {
            Algorithm::RoundRobin | Algorithm::Adaptive => {
                algorithms::round_robin(table, counter, rng)
            }
            Algorithm::Weighted => algorithms::weighted(table, counter, rng),
            Algorithm::LeastConnections => {
                least::least_connections(table, self.two_choice_above, rng)
            }
            Algorithm::IpHash => algorithms::ip_hash(table, key),
            Algorithm::Random => algorithms::random(table, rng),
            Algorithm::PeakEwma => least::peak_ewma(table, rng),
        }
    }

    /// What `/stats` shows of the balancer.
    pub fn snapshot(&self, table: &InstanceTable) -> BalancerSnapshot {
        let adaptive = (self.algorithm == Algorithm::Adaptive).then(|| AdaptiveSnapshot {
            reason: self.adaptive.reason().as_str(),
            latency_dispersion: self.adaptive.dispersion(),
        });
        BalancerSnapshot {
            algorithm: self.algorithm.as_str(),
            active: self.active(table).as_str(),
            adaptive,
            session_affinity: self.session_affinity,
            slow_start_s: self.slow_start.as_secs_f64(),
        }
    }
}

/// The balancer as `/stats` shows it.
#[derive(Debug, serde::Serialize)]
pub struct BalancerSnapshot {
    /// The configured algorithm.
    pub algorithm: &'static str,
    /// The algorithm running now (differs from `algorithm` only for `adaptive`).
    pub active: &'static str,
    /// Why the adaptive balancer runs `active`; absent for other algorithms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveSnapshot>,
    /// Whether clients are pinned by cookie.
    pub session_affinity: bool,
    /// Slow-start window for added instances, in seconds.
    pub slow_start_s: f64,
}

/// The adaptive balancer's reasoning as `/stats` shows it.
#[derive(Debug, serde::Serialize)]
pub struct AdaptiveSnapshot {
    /// Why it runs its current algorithm.
    pub reason: &'static str,
    /// Last coefficient of variation of instance latencies, if measured.
    pub latency_dispersion: Option<f64>,
}
