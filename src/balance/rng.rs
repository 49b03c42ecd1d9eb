//! A small, fast random source for picks.
//!
//! Random and two-choice picks need a few random bits per request, far more
//! often than `rand`'s thread RNG (a ChaCha stream, reseeded) is worth. This is
//! wyrand: one 64-bit state, one 128-bit multiply per draw, good statistical
//! quality and no cryptographic claim, which the balancer does not need. Each
//! thread keeps its own state, so picks from different threads share nothing.
//! Tests and benchmarks pass a seeded [`FastRng`] to get reproducible picks.

use std::cell::Cell;

/// A seeded wyrand generator.
#[derive(Debug, Clone)]
pub struct FastRng {
    state: u64,
}

impl FastRng {
    /// A generator with this seed; the same seed gives the same draws.
    pub fn seeded(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A uniform index below `n` (`n` below 2^32), by multiply-shift instead of a modulo.
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// True with probability `per_mille / 1000`.
    #[inline]
    pub fn chance_per_mille(&mut self, per_mille: u64) -> bool {
        (self.below(1000) as u64) < per_mille
    }
}

thread_local! {
    static STATE: Cell<u64> = const { Cell::new(0) };
}

/// Runs `f` with this thread's generator, seeding it on first use.
#[inline]
pub(super) fn with_thread_rng<R>(f: impl FnOnce(&mut FastRng) -> R) -> R {
    STATE.with(|cell| {
        let mut seed = cell.get();
        if seed == 0 {
            seed = rand::random::<u64>() | 1;
        }
        let mut rng = FastRng::seeded(seed);
        let out = f(&mut rng);
        cell.set(rng.state);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = FastRng::seeded(7);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let i = rng.below(5);
            assert!(i < 5, "an index below n");
            seen[i] = true;
        }
        assert!(seen.iter().all(|s| *s), "every index is drawn");
    }

    #[test]
    fn same_seed_gives_same_draws() {
        let (mut a, mut b) = (FastRng::seeded(42), FastRng::seeded(42));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    }
}
