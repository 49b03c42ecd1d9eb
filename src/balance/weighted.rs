//! Smooth weighted round robin (`weighted`).
//!
//! The scheme is nginx's smooth weighted round robin (nginx commit 52327e0,
//! "Upstream: smooth weighted round-robin balancing", 2012): every instance
//! carries a current weight; each pick adds every instance's weight to its
//! current weight, picks the largest, and subtracts the total from the winner.
//! Weights 3/2/1 give `a b a c b a`: exact shares over every cycle of
//! `sum(weights)` picks, and the heaviest instance never picked three times in
//! a row when the others can take a turn.
//!
//! nginx runs the scheme under a lock per pick. The sequence it produces only
//! depends on the weights, so tidegate runs it once when a table is published
//! ([`sequence`]) and picks entry `counter % len` with one atomic increment:
//! concurrent picks take consecutive counter values, so any `len` consecutive
//! picks, from any threads, are exactly one cycle. [`LockedSwrr`] is the
//! classic mutex form, kept as the reference the sequence is tested against
//! and as the contended baseline of the `balancers` benchmark.

use std::sync::Mutex;

use super::instance::Instance;

/// The longest precomputed cycle; larger weight sums are scaled down to fit.
pub const MAX_CYCLE: u64 = 1 << 16;

/// One cycle of smooth weighted round robin over these weights, as instance indices.
///
/// Weights are divided by their greatest common divisor first, so 30/20/10 has
/// the 6-entry cycle of 3/2/1. Instances of weight 0 never appear.
pub fn sequence(weights: &[u32]) -> Vec<u32> {
    let weights = reduced(weights);
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(total as usize);
    for _ in 0..total {
        cycle.push(swrr_step(&weights, &mut current, total) as u32);
    }
    cycle
}

/// One step of the scheme: adds the weights, picks the largest current weight
/// (the first on a tie), and charges the winner the total.
fn swrr_step(weights: &[u32], current: &mut [i64], total: i64) -> usize {
    let mut best: Option<usize> = None;
    for (i, w) in weights.iter().enumerate().filter(|(_, w)| **w > 0) {
        current[i] += i64::from(*w);
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    let best = best.expect("called only when the total weight is positive");
    current[best] -= total;
    best
}

/// Weights divided by their gcd, and scaled down when the cycle would exceed [`MAX_CYCLE`].
fn reduced(weights: &[u32]) -> Vec<u32> {
    let g = weights.iter().fold(0u32, |g, w| gcd(g, *w)).max(1);
    let mut out: Vec<u32> = weights.iter().map(|w| w / g).collect();
    let total: u64 = out.iter().map(|w| u64::from(*w)).sum();
    if total > MAX_CYCLE {
        // Keep every positive weight positive; shares stay within one part in
        // MAX_CYCLE / len of the configured ones.
        for w in out.iter_mut().filter(|w| **w > 0) {
            *w = ((u64::from(*w) * MAX_CYCLE / total) as u32).max(1);
        }
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Smooth weighted round robin under a mutex, over the live eligible instances.
#[derive(Debug, Default)]
pub struct LockedSwrr {
    current: Mutex<Vec<i64>>,
}

impl LockedSwrr {
    /// A fresh scheme; its state resizes to the table it is given.
    pub fn new() -> Self {
        Self::default()
    }

    /// Picks the next eligible instance's index, or `None` when none is eligible.
    pub fn pick(&self, instances: &[std::sync::Arc<Instance>]) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.resize(instances.len(), 0);
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, instance) in instances.iter().enumerate() {
            if !instance.is_eligible() {
                continue;
            }
            let w = i64::from(instance.weight());
            current[i] += w;
            total += w;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_three_two_one_give_the_nginx_cycle() {
        assert_eq!(sequence(&[3, 2, 1]), vec![0, 1, 0, 2, 1, 0]);
    }

    #[test]
    fn common_factors_shorten_the_cycle() {
        assert_eq!(sequence(&[30, 20, 10]), sequence(&[3, 2, 1]));
    }

    #[test]
    fn zero_weights_never_appear_and_all_zero_is_empty() {
        assert!(!sequence(&[0, 2, 1]).contains(&0));
        assert!(sequence(&[0, 0]).is_empty());
    }

    #[test]
    fn huge_weight_sums_are_scaled_into_the_cap() {
        let cycle = sequence(&[1_000_000, 999_999, 1]);
        assert!(cycle.len() as u64 <= MAX_CYCLE + 3);
        assert!(
            cycle.contains(&2),
            "a positive weight keeps at least one turn"
        );
    }

    #[test]
    fn sequence_matches_the_locked_scheme() {
        let weights = [5u32, 1, 3, 2, 7];
        let instances: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16));
                Instance::from_addr("swrr".into(), addr, *w)
            })
            .collect();
        let locked = LockedSwrr::new();
        let from_lock: Vec<u32> = (0..18)
            .map(|_| locked.pick(&instances).expect("all eligible") as u32)
            .collect();
        assert_eq!(from_lock, sequence(&weights), "precomputed = locked SWRR");
    }
}
