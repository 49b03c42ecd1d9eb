//! The store as `serve` runs it: connect lazily, then in the background
//! migrate, seed the config and start the writer and retention tasks.
//!
//! Nothing here waits on the database before returning, so tidegate serves
//! while the database is slow or down: the bootstrap retries with backoff
//! (warned once), and the writer keeps samples queued meanwhile.
//!
//! TODO: an operator's edit to `load_balancer_config` is stored and read back
//! but not applied to the running balancers, which have no reload path yet;
//! policies and quotas are read by the scaler at every evaluation.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::sleep;
use tracing::{debug, info, warn};

use super::retention::{self, RetentionPolicy};
use super::writer::{self, SampleQueue, WriterOptions};
use super::{redact, Store, StoreError};
use crate::config::Config;

/// Longest wait between two bootstrap attempts.
const BOOTSTRAP_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The running store: the [`Store`] for queries and the queue samples go into.
#[derive(Debug)]
pub struct StoreHandle {
    /// The database.
    pub store: Store,
    /// Where the recorder puts samples; `try_push` never waits.
    pub samples: SampleQueue,
    ready: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl StoreHandle {
    /// Starts the store's background tasks for a config. Fails only on a
    /// database URL that cannot be parsed; an unreachable database is retried.
    pub fn start(config: &Config) -> Result<StoreHandle, StoreError> {
        let store = Store::connect_lazy(&config.store.database_url)?;
        let options = WriterOptions::from_config(&config.store);
        let samples = SampleQueue::new(options.queue_capacity, options.batch_size);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (ready_tx, ready) = watch::channel(false);

        let bootstrap = bootstrap(store.clone(), config.clone(), ready_tx, shutdown_rx.clone());
        let retention = {
            let (store, policy) = (store.clone(), RetentionPolicy::from_config(&config.store));
            let (mut ready, shutdown) = (ready.clone(), shutdown_rx.clone());
            async move {
                if ready.wait_for(|r| *r).await.is_ok() {
                    retention::run(store, policy, shutdown).await;
                }
            }
        };
        let tasks = vec![
            tokio::spawn(bootstrap),
            tokio::spawn(writer::run(
                store.clone(),
                samples.clone(),
                options,
                shutdown_rx,
            )),
            tokio::spawn(retention),
        ];
        Ok(StoreHandle {
            store,
            samples,
            ready,
            shutdown,
            tasks,
        })
    }

    /// Whether the schema is migrated and the config seeded.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the schema is migrated and the config seeded.
    pub async fn ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Stops the tasks after a last bounded write of queued samples, and closes the pool.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.store.close().await;
    }
}

/// Migrates (unless disabled) and seeds, retrying until it succeeds or shutdown.
async fn bootstrap(
    store: Store,
    config: Config,
    ready: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let database = redact(&config.store.database_url);
    let mut wait = Duration::from_millis(250);
    let mut failures = 0u32;
    loop {
        let attempt = tokio::select! {
            result = prepare(&store, &config) => result,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match attempt {
            Ok(()) => {
                info!(database = %database, "store ready");
                let _ = ready.send(true);
                return;
            }
            Err(e) if failures == 0 => {
                warn!(database = %database, error = %e, "store unavailable; serving without it and retrying");
            }
            Err(e) => debug!(database = %database, error = %e, failures, "store still unavailable"),
        }
        failures += 1;
        tokio::select! {
            _ = sleep(wait) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        wait = (wait * 2).min(BOOTSTRAP_BACKOFF_MAX);
    }
}

async fn prepare(store: &Store, config: &Config) -> Result<(), StoreError> {
    if config.store.migrate_on_start {
        let applied = store.migrate_up().await?;
        if !applied.is_empty() {
            info!(versions = ?applied, "store migrations applied");
        }
    }
    let seeded = store.seed_from_config(&config.services).await?;
    debug!(?seeded, "config seeded into the store");
    Ok(())
}
