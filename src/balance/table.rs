//! The instance table of one service, published through `ArcSwap`.
//!
//! A table is immutable: a change to the set of instances (one added by the
//! scaler, one removed after draining) builds a new table off the request path
//! and swaps it in. Readers load the current table without blocking and keep
//! using the one they loaded until their pick is done.
//!
//! What an algorithm needs precomputed from a table (the smooth weighted cycle,
//! the Maglev lookup table, the affinity tokens) lives beside it and is built
//! when the table is published through [`TableHandle`], for the needs the
//! service's balancer declared; anything not prepared is built on first use,
//! so a table built elsewhere still works.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::affinity::AffinityIndex;
use super::hash::Maglev;
use super::instance::Instance;
use super::weighted;
use crate::clock;
use crate::ids::InstanceId;

/// An immutable list of a service's instances.
#[derive(Debug, Default)]
pub struct InstanceTable {
    instances: Vec<Arc<Instance>>,
    /// Latest end of a slow start among the instances; 0 when none ramps.
    ramp_ends_ns: u64,
    /// Every instance has the same configured weight.
    uniform_weights: bool,
    /// Set once every slow start is over, so picks stop reading the clock.
    ramp_over: AtomicBool,
    /// Remainders by the instance count, for round robin.
    by_count: Divisor,
    /// The smooth weighted cycle and remainders by its length.
    sequence: OnceLock<(Vec<u32>, Divisor)>,
    maglev: OnceLock<Maglev>,
    affinity: OnceLock<AffinityIndex>,
}

/// What a balancer needs precomputed when a table is published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The smooth weighted round robin cycle.
    pub sequence: bool,
    /// The Maglev lookup table.
    pub maglev: bool,
    /// The affinity tokens and cookies.
    pub affinity: bool,
}

impl InstanceTable {
    /// A table of these instances, in this order.
    pub fn new(instances: Vec<Arc<Instance>>) -> Self {
        let ramp_ends_ns = instances
            .iter()
            .map(|i| i.slow_start_ends_ns())
            .max()
            .unwrap_or(0);
        let uniform_weights = instances.windows(2).all(|w| w[0].weight() == w[1].weight());
        let instances_len = instances.len();
        Self {
            instances,
            uniform_weights,
            ramp_ends_ns,
            ramp_over: AtomicBool::new(ramp_ends_ns == 0),
            by_count: Divisor::new(instances_len),
            ..Self::default()
        }
    }

    /// Builds now what `needs` asks for, so the request path finds it ready.
    pub fn prepare(&self, needs: Needs) {
        if needs.sequence {
            self.sequence();
        }
        if needs.maglev {
            self.maglev();
        }
        if needs.affinity {
            self.affinity();
        }
    }

    /// Whether every instance has the same configured weight.
    pub fn uniform_weights(&self) -> bool {
        self.uniform_weights
    }

    /// One smooth weighted round robin cycle over the configured weights.
    pub fn sequence(&self) -> &[u32] {
        &self.cycle().0
    }

    /// The cycle and remainders by its length.
    pub(super) fn cycle(&self) -> &(Vec<u32>, Divisor) {
        self.sequence.get_or_init(|| {
            let weights: Vec<u32> = self.instances.iter().map(|i| i.weight()).collect();
            let sequence = weighted::sequence(&weights);
            let by_len = Divisor::new(sequence.len());
            (sequence, by_len)
        })
    }

    /// Remainders by the number of instances.
    pub(super) fn by_count(&self) -> Divisor {
        self.by_count
    }

    /// The Maglev lookup table over the instance ids.
    pub fn maglev(&self) -> &Maglev {
        self.maglev
            .get_or_init(|| Maglev::build(self.instances.iter().map(|i| i.id().as_str())))
    }

    /// The affinity tokens of the instances.
    pub fn affinity(&self) -> &AffinityIndex {
        self.affinity
            .get_or_init(|| AffinityIndex::build(&self.instances))
    }

    /// The current time when some instance is still in its slow start, else `None`.
    ///
    /// Once every ramp is over the table remembers it, so steady-state picks
    /// never read the clock.
    #[inline]
    pub fn ramp_clock(&self) -> Option<u64> {
        if self.ramp_over.load(Ordering::Relaxed) {
            return None;
        }
        let now = clock::now_ns();
        if now >= self.ramp_ends_ns {
            self.ramp_over.store(true, Ordering::Relaxed);
            return None;
        }
        Some(now)
    }

    /// Every instance, eligible or not.
    pub fn instances(&self) -> &[Arc<Instance>] {
        &self.instances
    }

    /// Number of instances, eligible or not.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether the table lists no instance at all.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// The instance with this id.
    pub fn get(&self, id: &InstanceId) -> Option<&Arc<Instance>> {
        self.instances.iter().find(|i| i.id() == id)
    }
}

/// The published table of one service.
#[derive(Debug)]
pub struct TableHandle {
    current: ArcSwap<InstanceTable>,
    needs: Needs,
}

impl TableHandle {
    /// Publishes an initial table.
    pub fn new(table: InstanceTable) -> Self {
        Self {
            current: ArcSwap::from_pointee(table),
            needs: Needs::default(),
        }
    }

    /// Prepares this and every later table for what a balancer `needs`.
    pub fn prepared_for(mut self, needs: Needs) -> Self {
        self.needs = needs;
        self.current.load().prepare(needs);
        self
    }

    /// The current table; cheap, never blocks.
    pub fn load(&self) -> arc_swap::Guard<Arc<InstanceTable>> {
        self.current.load()
    }

    /// The current table as an owned `Arc`, for callers that hold it a while.
    pub fn load_full(&self) -> Arc<InstanceTable> {
        self.current.load_full()
    }

    /// Publishes a table built from the current one by `update`.
    ///
    /// Writers are rare (scaling, config reload) and may race; `rcu` retries the
    /// update on the newest table so no writer's change is lost.
    pub fn update(&self, update: impl Fn(&InstanceTable) -> InstanceTable) {
        self.current.rcu(|t| {
            let table = update(t);
            table.prepare(self.needs);
            Arc::new(table)
        });
    }

    /// Adds an instance that ramps up to its full weight over `window` (slow start).
    ///
    /// The way to add an instance while the service runs (the scaler's); a
    /// zero window adds it at full weight.
    pub fn add_slow_start(&self, instance: Arc<Instance>, window: Duration) {
        instance.begin_slow_start(window);
        self.add(instance);
    }

    /// Adds an instance unless one with the same id is listed.
    pub fn add(&self, instance: Arc<Instance>) {
        self.update(|t| {
            let mut list = t.instances.clone();
            if !list.iter().any(|i| i.id() == instance.id()) {
                list.push(Arc::clone(&instance));
            }
            InstanceTable::new(list)
        });
    }

    /// Removes the instance with this id, returning whether it was listed.
    pub fn remove(&self, id: &InstanceId) -> bool {
        let before = self.load().len();
        self.update(|t| {
            InstanceTable::new(
                t.instances
                    .iter()
                    .filter(|i| i.id() != id)
                    .cloned()
                    .collect(),
            )
        });
        self.load().len() < before
    }
}

/// `a % d` by two multiplications instead of a division, for a divisor fixed
/// when a table is built (Lemire, Kaser and Kurz, "Faster remainder by direct
/// computation", 2019). A 64-bit division costs tens of cycles on some cores,
/// and round robin takes a remainder on every pick. Dividends are taken modulo
/// 2^32, so a pick counter restarts its rotation once every 2^32 picks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Divisor {
    d: u32,
    m: u64,
}

impl Default for Divisor {
    fn default() -> Self {
        Self::new(1)
    }
}

impl Divisor {
    /// Remainders by `d` (0 is taken as 1; tables hold fewer than 2^32 entries).
    pub(super) fn new(d: usize) -> Self {
        let d = u32::try_from(d.max(1)).unwrap_or(u32::MAX);
        Self {
            d,
            m: (u64::MAX / u64::from(d)).wrapping_add(1),
        }
    }

    /// `a mod 2^32`, then its remainder by `d`.
    #[inline]
    pub(super) fn remainder(self, a: usize) -> usize {
        let low = self.m.wrapping_mul(u64::from(a as u32));
        ((u128::from(low) * u128::from(self.d)) >> 64) as usize
    }
}
