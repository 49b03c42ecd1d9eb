//! The metrics writer: the task that writes the [`SampleQueue`]'s samples to
//! the database in batches.
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

use std::time::Duration;

use metrics::counter;
use tokio::sync::watch;
use tokio::time::{sleep, timeout, MissedTickBehavior};
use tracing::{debug, info, warn};

pub use super::queue::SampleQueue;
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
            _ = writer.queue.batch_ready().notified() => {}
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
                self.queue.record_written(rows);
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
                self.queue.record_failure();
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
}
