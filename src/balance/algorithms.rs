//! The stateless-per-pick algorithms: round robin, smooth weighted round robin
//! over its precomputed cycle, uniform random, and Maglev consistent hashing.
//!
//! Every function returns an index into the table, never an `Arc`, so the
//! caller clones exactly once. A pick starts where its algorithm says and walks
//! forward past instances that are not eligible, so a pool with some instances
//! down still answers in a few steps. Slow start thins a ramping instance's
//! turns: it keeps a turn with probability equal to its weight share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::hash::hash_ip;
use super::instance::Instance;
use super::rng::FastRng;
use super::table::InstanceTable;
use super::RequestKey;

/// Random draws before a random pick falls back to a scan.
const RANDOM_DRAWS: usize = 4;
/// Maglev slots walked past ineligible owners before a scan.
const HASH_WALK: usize = 32;

/// `i` wrapped into `0..n`, for `i < 2n`, without a division.
#[inline]
pub(super) fn wrap(i: usize, n: usize) -> usize {
    if i >= n {
        i - n
    } else {
        i
    }
}

/// Whether the instance may take this pick: eligible, and past slow-start thinning.
#[inline]
pub(super) fn admits(instance: &Instance, ramp: Option<u64>, rng: &mut FastRng) -> bool {
    if !instance.is_eligible() {
        return false;
    }
    match ramp {
        None => true,
        Some(now) => {
            let share = instance.weight_share_per_mille(now);
            share >= 1000 || rng.chance_per_mille(share)
        }
    }
}

/// The first eligible instance at or after `start`, wrapping; slow start ignored.
pub(super) fn first_eligible(instances: &[Arc<Instance>], start: usize) -> Option<usize> {
    let n = instances.len();
    (0..n)
        .map(|step| wrap(start + step, n))
        .find(|i| instances[*i].is_eligible())
}

/// Round robin: an atomic counter over the table.
pub(super) fn round_robin(
    table: &InstanceTable,
    counter: &AtomicUsize,
    rng: &mut FastRng,
) -> Option<usize> {
    let instances = table.instances();
    let n = instances.len();
    if n == 0 {
        return None;
    }
    let start = table
        .by_count()
        .remainder(counter.fetch_add(1, Ordering::Relaxed));
    let ramp = table.ramp_clock();
    for step in 0..n {
        let i = wrap(start + step, n);
        if admits(&instances[i], ramp, rng) {
            return Some(i);
        }
    }
    ramp.and_then(|_| first_eligible(instances, start))
}

/// Smooth weighted round robin: the table's precomputed cycle, indexed by an atomic counter.
pub(super) fn weighted(
    table: &InstanceTable,
    counter: &AtomicUsize,
    rng: &mut FastRng,
) -> Option<usize> {
    let (cycle, by_len) = table.cycle();
    let len = cycle.len();
    if len == 0 {
        return None;
    }
    let instances = table.instances();
    let start = by_len.remainder(counter.fetch_add(1, Ordering::Relaxed));
    let ramp = table.ramp_clock();
    for step in 0..len {
        let i = cycle[wrap(start + step, len)] as usize;
        if admits(&instances[i], ramp, rng) {
            return Some(i);
        }
    }
    ramp.and_then(|_| first_eligible(instances, cycle[start] as usize))
}

/// Uniformly random among the eligible instances.
pub(super) fn random(table: &InstanceTable, rng: &mut FastRng) -> Option<usize> {
    let instances = table.instances();
    let n = instances.len();
    if n == 0 {
        return None;
    }
    let ramp = table.ramp_clock();
    for _ in 0..RANDOM_DRAWS {
        let i = rng.below(n);
        if admits(&instances[i], ramp, rng) {
            return Some(i);
        }
    }
    first_eligible(instances, rng.below(n))
}

/// Maglev consistent hashing of the client address.
///
/// Slow start does not apply: moving a client off its instance to spare a new
/// one would break the consistency the operator chose this algorithm for.
pub(super) fn ip_hash(table: &InstanceTable, key: &RequestKey) -> Option<usize> {
    let maglev = table.maglev();
    if maglev.is_empty() {
        return None;
    }
    let instances = table.instances();
    let slot = maglev.slot_of(hash_ip(key.client_ip));
    for step in 0..HASH_WALK.min(maglev.len()) {
        let i = maglev.owner(slot + step);
        if instances[i].is_eligible() {
            return Some(i);
        }
    }
    first_eligible(instances, maglev.owner(slot))
}
