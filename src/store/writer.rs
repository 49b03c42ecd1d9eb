//! The metrics writer: a bounded queue of samples and the task that writes
//! them to the database in batches.
//!
//! Producers call [`SampleQueue::try_push`], which never waits on the
//! database: it takes a short lock around an in-memory deque and, when the
//! queue is full, drops the oldest sample (counted in
//! `tidegate_store_samples_dropped_total`, warned once per overflow).
//!
//! The writer task takes up to `batch_size` samples every `interval`, or as
//! soon as a full batch is waiting, and inserts them in one transaction. A
//! failed batch is kept aside and retried whole, with exponential backoff,
//! while new samples wait in the queue: nothing is lost below
//! `queue_capacity`. Each batch carries a unique key that the same
//! transaction records in `sample_batches`; when a commit fails ambiguously
//! (the connection died after COMMIT was sent, so it may have been applied),
//! the retry finds the key already recorded and inserts nothing. Every sample
//! is therefore written exactly once, unless tidegate itself exits with
//! samples still in memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::sync::{watch, Notify};
use tokio::time::{sleep, timeout, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::{Sample, Store};
use crate::config::StoreConfig;
use crate::telemetry::names;

/// How the writer batches and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Samples held while they cannot be written; past it the oldest drop.
    pub queue_capacity: usize,
    /// Rows per transaction, and the queue length that triggers a write before the interval.
    pub batch_size: usize,
    /// Time between writes when batches do not fill.
    pub interval: Duration,
    /// First wait after a failed write.
    pub backoff_min: Duration,
    /// Longest wait between retries.
    pub backoff_max: Duration,
    /// On shutdown, how long the last write may take.
    pub flush_timeout: Duration,
}

impl WriterOptions {
    /// The options of a `[store]` section.
    pub fn from_config(c: &StoreConfig) -> Self {
        Self {
            queue_capacity: c.queue_capacity,
            batch_size: c.batch_size,
            interval: c.metrics_interval,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(5),
        }
    }
}

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
    fn take(&self, max: usize) -> Vec<Sample> {
        let (batch, len) = {
            let mut samples = self.lock();
            let n = max.min(samples.len());
            (samples.drain(..n).collect::<Vec<_>>(), samples.len())
        };
        gauge!(names::STORE_SAMPLE_QUEUE_DEPTH).set(len as f64);
        batch
    }

    /// Re-arms the overflow warning once the queue has room again.
    fn rearm_overflow_warning(&self) {
        if self.len() < self.inner.capacity / 2 {
            self.inner.overflow_warned.store(false, Ordering::Relaxed);
        }
    }
}

/// A batch taken from the queue, with the key that makes its insert idempotent.
struct Batch {
    key: String,
    samples: Vec<Sample>,
}

/// The writer task's state between batches.
struct Writer {
    store: Store,
    queue: SampleQueue,
    options: WriterOptions,
    /// A batch that failed and must be retried before any other.
    pending: Option<Batch>,
    /// Random per process, so keys never collide across restarts.
    nonce: u64,
    next_batch: u64,
    /// Set from the first failure to the next success.
    outage: Option<Outage>,
}

struct Outage {
    failures: u32,
    dropped_before: u64,
}

/// Writes queued samples until `shutdown` turns true, then flushes what it can.
pub async fn run(
    store: Store,
    queue: SampleQueue,
    options: WriterOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut writer = Writer {
        store,
        queue,
        options,
        pending: None,
        nonce: rand::random(),
        next_batch: 0,
        outage: None,
    };
    let mut ticker = tokio::time::interval(options.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = writer.queue.inner.batch_ready.notified() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        if writer.drain(&mut shutdown).await.is_err() {
            break;
        }
    }
    writer.flush().await;
}

/// The wait after `failures` failed attempts in a row: doubling from
/// `backoff_min` up to `backoff_max`, less up to a fifth (`jitter` in 0..1) so
/// that peers restarted together spread out.
fn backoff_delay(options: &WriterOptions, failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = options
        .backoff_min
        .saturating_mul(1 << exp)
        .min(options.backoff_max);
    base.mul_f64(1.0 - jitter.clamp(0.0, 1.0) * 0.2)
}

/// Shutdown was asked for while the writer waited to retry.
struct Stopped;

impl Writer {
    fn next_batch(&mut self) -> Option<Batch> {
        if let Some(batch) = self.pending.take() {
            return Some(batch);
        }
        let samples = self.queue.take(self.options.batch_size);
        if samples.is_empty() {
            return None;
        }
        self.next_batch += 1;
        Some(Batch {
            key: format!("{:016x}-{:016x}", self.nonce, self.next_batch),
            samples,
        })
    }

    /// Writes batches until the queue is empty, retrying failures with backoff.
    async fn drain(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<(), Stopped> {
        while let Some(batch) = self.next_batch() {
            if self.write(batch).await {
                continue;
            }
            let wait = self.backoff();
            tokio::select! {
                _ = sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => return Err(Stopped),
            }
        }
        Ok(())
    }

    /// One attempt at a batch; a failed batch is kept as `pending`.
    async fn write(&mut self, batch: Batch) -> bool {
        match self
            .store
            .insert_sample_batch(&batch.key, &batch.samples)
            .await
        {
            Ok(outcome) => {
                let rows = batch.samples.len() as u64;
                self.queue.inner.written.fetch_add(rows, Ordering::Relaxed);
                counter!(names::STORE_SAMPLES_WRITTEN_TOTAL).increment(batch.samples.len() as u64);
                debug!(rows = batch.samples.len(), ?outcome, "samples written");
                if let Some(outage) = self.outage.take() {
                    info!(
                        failures = outage.failures,
                        dropped = self.queue.dropped() - outage.dropped_before,
                        queued = self.queue.len(),
                        "store reachable again; writing queued samples"
                    );
                }
                self.queue.rearm_overflow_warning();
                true
            }
            Err(e) => {
                self.queue
                    .inner
                    .write_failures
                    .fetch_add(1, Ordering::Relaxed);
                counter!(names::STORE_WRITE_FAILURES_TOTAL).increment(1);
                match &mut self.outage {
                    Some(outage) => {
                        outage.failures += 1;
                        debug!(error = %e, failures = outage.failures, "sample write failed again");
                    }
                    None => {
                        warn!(
                            error = %e,
                            queued = self.queue.len() + batch.samples.len(),
                            "cannot write samples; keeping them queued and retrying"
                        );
                        self.outage = Some(Outage {
                            failures: 1,
                            dropped_before: self.queue.dropped(),
                        });
                    }
                }
                self.pending = Some(batch);
                false
            }
        }
    }

    fn backoff(&self) -> Duration {
        let failures = self.outage.as_ref().map_or(1, |o| o.failures);
        backoff_delay(&self.options, failures, rand::random::<f64>())
    }

    /// One bounded last attempt to write what is queued.
    async fn flush(&mut self) {
        let limit = self.options.flush_timeout;
        let attempt = async {
            while let Some(batch) = self.next_batch() {
                if !self.write(batch).await {
                    return;
                }
            }
        };
        let _ = timeout(limit, attempt).await;
        let left = self.queue.len() + self.pending.as_ref().map_or(0, |b| b.samples.len());
        if left > 0 {
            warn!(
                samples = left,
                "store writer stopped with samples not written"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InstanceId, ServiceName};

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
    fn retries_back_off_by_doubling_up_to_the_maximum() {
        let options = WriterOptions {
            queue_capacity: 10,
            batch_size: 10,
            interval: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            flush_timeout: Duration::from_secs(1),
        };
        let waits: Vec<u128> = (1..=6)
            .map(|n| backoff_delay(&options, n, 0.0).as_millis())
            .collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            backoff_delay(&options, 1, 1.0).as_millis(),
            80,
            "jitter takes off at most a fifth"
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
