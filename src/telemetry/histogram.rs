//! A fixed-size latency histogram in atomics, recorded on the request path.
//!
//! Buckets are log-linear: each power of two of microseconds is split into
//! eight sub-buckets, so a quantile read back is within 12.5% of the truth, from
//! 1 µs to about 70 minutes. Recording is one `fetch_add` on one bucket and one
//! on the count; readers take a snapshot and diff snapshots to get an interval.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const OCTAVES: usize = 32;
/// Number of buckets in every histogram.
pub const BUCKETS: usize = SUB * OCTAVES;

/// Latency histogram with atomic buckets.
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

/// A point-in-time copy of a histogram, which can be subtracted from a later one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    buckets: Vec<u64>,
    sum_us: u64,
}

fn bucket_of(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros() - SUB_BITS;
    let sub = (us >> octave) as usize & (SUB - 1);
    ((octave as usize + 1) * SUB + sub).min(BUCKETS - 1)
}

/// The upper bound, in microseconds, of a bucket.
fn bucket_upper_us(bucket: usize) -> u64 {
    if bucket < SUB {
        return bucket as u64;
    }
    let octave = (bucket / SUB - 1) as u32;
    let sub = (bucket % SUB) as u64;
    ((SUB as u64 + sub + 1) << octave).saturating_sub(1).max(1)
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one latency.
    pub fn record(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Copies the current counts.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

impl HistogramSnapshot {
    /// An empty snapshot, the start of the first interval.
    pub fn empty() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            sum_us: 0,
        }
    }

    /// What was recorded between `earlier` and `self`.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }

    /// Sum of the latencies recorded, in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    /// For each bound (microseconds, ascending), how many latencies fell in
    /// buckets whose upper bound is at most that bound: Prometheus `le` counts.
    /// A bucket straddling a bound counts at the next bound, so a count may miss
    /// the latencies within an eighth below its bound.
    pub fn cumulative_at(&self, bounds_us: &[u64]) -> Vec<u64> {
        let mut counts = Vec::with_capacity(bounds_us.len());
        let mut seen = 0;
        let mut buckets = self.buckets.iter().enumerate().peekable();
        for &bound in bounds_us {
            while let Some((_, n)) = buckets.next_if(|&(i, _)| bucket_upper_us(i) <= bound) {
                seen += n;
            }
            counts.push(seen);
        }
        counts
    }

    /// Number of latencies recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Mean latency, if anything was recorded.
    pub fn mean(&self) -> Option<Duration> {
        let count = self.count();
        (count > 0).then(|| Duration::from_micros(self.sum_us / count))
    }

    /// The latency below which `q` (0 to 1) of the recorded ones fall, as a bucket's upper bound.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(bucket_upper_us(i)));
            }
        }
        Some(Duration::from_micros(bucket_upper_us(BUCKETS - 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_contain_their_values() {
        for us in [0u64, 1, 7, 8, 9, 15, 16, 100, 1_000, 123_456, 10_000_000] {
            let b = bucket_of(us);
            assert!(bucket_upper_us(b) >= us, "upper bound of {us} µs bucket");
            if b > 0 {
                assert!(bucket_upper_us(b - 1) < us, "previous bucket below {us} µs");
            }
        }
    }

    #[test]
    fn quantiles_are_within_an_eighth() {
        let h = LatencyHistogram::new();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let snap = h.snapshot();
        let p95 = snap.quantile(0.95).expect("non-empty").as_secs_f64() * 1000.0;
        assert!((95.0..=95.0 * 1.125).contains(&p95), "p95 was {p95} ms");
        assert_eq!(snap.count(), 100);
    }

    #[test]
    fn interval_is_the_difference_of_snapshots() {
        let h = LatencyHistogram::new();
        h.record(Duration::from_millis(1));
        let first = h.snapshot();
        h.record(Duration::from_millis(50));
        h.record(Duration::from_millis(50));
        let interval = h.snapshot().since(&first);
        assert_eq!(interval.count(), 2);
        let p50 = interval.quantile(0.5).expect("non-empty");
        assert!(
            p50 >= Duration::from_millis(50),
            "only the interval's samples count"
        );
    }
}
