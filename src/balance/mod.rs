//! Balancing: which instance of a service serves the next request.
//!
//! Each service owns a [`TableHandle`] (its instances, swapped whole when they
//! change) and a [`Balancer`] (the algorithm and its own small atomic state).
//! A pick reads the table and the instances' atomics and takes no lock.

pub mod instance;
pub mod table;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub use instance::{ErrorClass, FinishObserver, InFlight, Instance, Outcome};
pub use table::{InstanceTable, TableHandle};

use crate::config::{Algorithm, BalancerConfig};

/// What a pick may key on: the client's address, for hashing and affinity.
#[derive(Debug, Clone, Copy)]
pub struct RequestKey {
    /// The client's IP address.
    pub client_ip: IpAddr,
}

/// A service's balancing algorithm and its state.
#[derive(Debug)]
pub struct Balancer {
    algorithm: Algorithm,
    next: AtomicUsize,
}

impl Balancer {
    /// A balancer for a service's `load_balancer_config`.
    pub fn new(config: &BalancerConfig) -> Self {
        // TODO: every algorithm but round robin falls back to round robin until
        // the balancer algorithms land; the config already accepts their names.
        Self {
            algorithm: config.algorithm,
            next: AtomicUsize::new(0),
        }
    }

    /// The configured algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Picks an eligible instance, or `None` when none is eligible.
    pub fn pick(&self, table: &InstanceTable, _key: &RequestKey) -> Option<Arc<Instance>> {
        let instances = table.instances();
        let n = instances.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|step| &instances[(start + step) % n])
            .find(|i| i.is_eligible())
            .cloned()
    }
}
