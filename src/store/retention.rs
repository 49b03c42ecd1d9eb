//! Retention: deletes samples, events and forecasts past their age, in small
//! batches so that no delete holds the database for long.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::time::sleep;
use tracing::{info, warn};

pub use super::samples::Retained;
use super::{Store, StoreError};
use crate::config::StoreConfig;

/// Rows deleted per statement.
const DELETE_BATCH: u32 = 1000;

/// Pause between two delete batches, letting the writer in.
const BATCH_PAUSE: Duration = Duration::from_millis(20);

/// How long each table is kept, and how often retention runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Each table with its age limit.
    pub tables: Vec<(Retained, chrono::Duration)>,
    /// Time between two sweeps.
    pub every: Duration,
}

impl RetentionPolicy {
    /// The ages of a `[store]` section; sample batch keys live as long as samples.
    pub fn from_config(c: &StoreConfig) -> Self {
        let days = |d: u32| chrono::Duration::days(i64::from(d));
        Self {
            tables: vec![
                (Retained::Samples, days(c.retention_days)),
                (Retained::SampleBatches, days(c.retention_days)),
                (Retained::Events, days(c.event_retention_days)),
                (Retained::Forecasts, days(c.forecast_retention_days)),
            ],
            every: Duration::from_secs(3600),
        }
    }
}

/// Deletes every row past its age as of `now`; returns rows deleted per table.
pub async fn sweep(
    store: &Store,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Result<Vec<(Retained, u64)>, StoreError> {
    let mut deleted = Vec::with_capacity(policy.tables.len());
    for &(table, age) in &policy.tables {
        let before = now - age;
        let mut total = 0;
        loop {
            let n = store.delete_older_than(table, before, DELETE_BATCH).await?;
            total += n;
            if n < u64::from(DELETE_BATCH) {
                break;
            }
            sleep(BATCH_PAUSE).await;
        }
        deleted.push((table, total));
    }
    Ok(deleted)
}

/// Sweeps at start and then every `policy.every`, until `shutdown` turns true.
pub async fn run(store: Store, policy: RetentionPolicy, mut shutdown: watch::Receiver<bool>) {
    loop {
        let sweeping = sweep(&store, &policy, Utc::now());
        let result = tokio::select! {
            result = sweeping => result,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match result {
            Ok(deleted) => {
                for (table, rows) in deleted.into_iter().filter(|(_, rows)| *rows > 0) {
                    info!(table = table.table(), rows, "retention deleted old rows");
                }
            }
            Err(e) => warn!(error = %e, "retention sweep failed; retrying at the next sweep"),
        }
        tokio::select! {
            _ = sleep(policy.every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
