//! The bounded queue samples wait in until the [writer](super::writer) stores them.
//!
//! Producers call [`SampleQueue::try_push`], which never waits on the
//! database: it takes a short lock around an in-memory deque (held for a push,
//! or for the writer's move of one batch out) and, when the queue is full,
//! drops the oldest sample, counted in `tidegate_store_samples_dropped_total`
//! and warned once per overflow.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use metrics::{counter, gauge};
use tokio::sync::Notify;
use tracing::warn;

use super::Sample;
use crate::telemetry::names;

/// The bounded queue of samples waiting to be written; cheap to clone.
#[derive(Clone)]
pub struct SampleQueue {
    inner: Arc<QueueInner>,
}

struct QueueInner {
    samples: Mutex<VecDeque<Sample>>,
    capacity: usize,
    batch_size: usize,
    batch_ready: Notify,
    dropped: AtomicU64,
    overflow_warned: AtomicBool,
    written: AtomicU64,
    write_failures: AtomicU64,
}

impl std::fmt::Debug for SampleQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleQueue")
            .field("len", &self.len())
            .field("capacity", &self.inner.capacity)
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl SampleQueue {
    /// An empty queue holding at most `capacity` samples.
    pub fn new(capacity: usize, batch_size: usize) -> Self {
        Self {
            inner: Arc::new(QueueInner {
                samples: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
                capacity: capacity.max(1),
                batch_size: batch_size.max(1),
                batch_ready: Notify::new(),
                dropped: AtomicU64::new(0),
                overflow_warned: AtomicBool::new(false),
                written: AtomicU64::new(0),
                write_failures: AtomicU64::new(0),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Sample>> {
        // A panic while holding this lock leaves a valid deque; keep using it.
        self.inner
            .samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a sample without waiting. When the queue is full the oldest
    /// sample is dropped to make room, and `false` is returned.
    pub fn try_push(&self, sample: Sample) -> bool {
        let (len, displaced) = {
            let mut samples = self.lock();
            let displaced = if samples.len() >= self.inner.capacity {
                samples.pop_front()
            } else {
                None
            };
            samples.push_back(sample);
            (samples.len(), displaced.is_some())
        };
        gauge!(names::STORE_SAMPLE_QUEUE_DEPTH).set(len as f64);
        if displaced {
            self.count_drop();
        }
        if len >= self.inner.batch_size {
            self.inner.batch_ready.notify_one();
        }
        !displaced
    }

    fn count_drop(&self) {
        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        counter!(names::STORE_SAMPLES_DROPPED_TOTAL).increment(1);
        if !self.inner.overflow_warned.swap(true, Ordering::Relaxed) {
            warn!(
                capacity = self.inner.capacity,
                "sample queue full; dropping the oldest samples until the store catches up"
            );
        }
    }

    /// Samples waiting now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no sample is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Samples dropped since the queue was made.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Samples the writer has committed to the database.
    pub fn written(&self) -> u64 {
        self.inner.written.load(Ordering::Relaxed)
    }

    /// Batch writes that failed and were retried.
    pub fn write_failures(&self) -> u64 {
        self.inner.write_failures.load(Ordering::Relaxed)
    }

    /// Removes up to `max` of the oldest samples.
    pub(super) fn take(&self, max: usize) -> Vec<Sample> {
        let (batch, len) = {
            let mut samples = self.lock();
            let n = max.min(samples.len());
            (samples.drain(..n).collect::<Vec<_>>(), samples.len())
        };
        gauge!(names::STORE_SAMPLE_QUEUE_DEPTH).set(len as f64);
        batch
    }

    /// Woken when a full batch is waiting.
    pub(super) fn batch_ready(&self) -> &Notify {
        &self.inner.batch_ready
    }

    pub(super) fn record_written(&self, rows: u64) {
        self.inner.written.fetch_add(rows, Ordering::Relaxed);
    }

    pub(super) fn record_failure(&self) {
        self.inner.write_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Re-arms the overflow warning once the queue has room again.
    pub(super) fn rearm_overflow_warning(&self) {
        if self.len() < self.inner.capacity / 2 {
            self.inner.overflow_warned.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InstanceId, ServiceName};
    use crate::store::Sample;

    fn sample(n: u32) -> Sample {
        let mut s = Sample::new(ServiceName::new("api"), InstanceId::new("i"));
        s.request_count = n;
        s
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_them() {
        let queue = SampleQueue::new(3, 10);
        for n in 0..3 {
            assert!(queue.try_push(sample(n)), "below capacity nothing drops");
        }
        assert!(!queue.try_push(sample(3)), "the fourth push displaces one");
        assert!(!queue.try_push(sample(4)));
        assert_eq!(queue.dropped(), 2);
        let kept: Vec<u32> = queue.take(10).iter().map(|s| s.request_count).collect();
        assert_eq!(
            kept,
            vec![2, 3, 4],
            "the oldest samples are the ones dropped"
        );
    }

    #[test]
    fn take_returns_samples_in_arrival_order_up_to_the_limit() {
        let queue = SampleQueue::new(10, 2);
        for n in 0..5 {
            queue.try_push(sample(n));
        }
        let first: Vec<u32> = queue.take(2).iter().map(|s| s.request_count).collect();
        assert_eq!(first, vec![0, 1]);
        assert_eq!(queue.len(), 3);
    }
}
