//! The store: capacity samples, scaling policies, balancer configs, quotas,
//! scaling events and forecasts, in SQLite (the zero-setup default) or
//! PostgreSQL (for production), behind one [`Store`] with one async method per
//! question and typed rows in and out.
//!
//! No SQL lives outside this module. The data plane never calls it: samples
//! reach the database through the [`writer`]'s bounded queue, and everything
//! else runs on the control plane. [`run`] starts what `serve` needs (migrate,
//! seed, writer, retention) in the background, so tidegate serves even while
//! the database is down.

/// Runs `$body` once per backend with `$pool` bound to that backend's pool, so
/// one text of a query serves both and each is type-checked against its driver.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}

mod codec;
mod history;
pub mod migrate;
mod queue;
pub mod retention;
pub mod run;
mod samples;
mod seed;
mod settings;
mod types;
pub mod writer;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use run::StoreHandle;
pub use samples::BatchOutcome;
pub use types::{
    EventType, Forecast, ForecastType, Sample, ScalingEvent, StoredBalancer, StoredPolicy,
    StoredQuota, TriggerMetric, Window,
};
pub use writer::{SampleQueue, WriterOptions};

/// How long a SQLite statement waits for another writer's lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a query waits for a pooled connection before it fails (and, for the
/// writer, is retried later).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL cannot be used.
    #[error("database url {url}: {source}")]
    Url {
        /// The URL, without its password.
        url: String,
        /// Why.
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("{operation}: {source}")]
    Query {
        /// What the store was doing.
        operation: &'static str,
        /// Why.
        source: sqlx::Error,
    },
    /// A migration could not be applied or reverted.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    fn query(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Query { operation, source }
    }
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The connection pool of either backend. Tests and tools reach the raw pool
/// through [`Store::pool`]; tidegate itself asks the store's methods.
#[derive(Debug, Clone)]
pub enum Pool {
    /// A SQLite pool.
    Sqlite(SqlitePool),
    /// A PostgreSQL pool.
    Postgres(PgPool),
}

/// The database, cheap to clone (a pool inside).
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Opens the database and checks that it answers. A SQLite file is created
    /// if missing, in WAL mode.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let store = Self::connect_lazy(url)?;
        on_pool!(store, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop)).map_err(
            |source| StoreError::Url {
                url: redact(url),
                source,
            },
        )?;
        Ok(store)
    }

    /// Prepares the pool without connecting; connections are made when first used.
    pub fn connect_lazy(url: &str) -> Result<Store, StoreError> {
        let url_error = |source| StoreError::Url {
            url: redact(url),
            source,
        };
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(url_error)?;
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options),
            )
        } else {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(url_error)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT);
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options),
            )
        };
        Ok(Store { pool })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The raw pool, for tests and operator tools.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// The URL with its password replaced, fit for logs and errors.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(
            redact("postgres://tide:secret@db:5432/tidegate"),
            "postgres://tide:***@db:5432/tidegate"
        );
        assert_eq!(redact("postgres://tide@db/t"), "postgres://tide@db/t");
        assert_eq!(redact("sqlite:///var/lib/t.db"), "sqlite:///var/lib/t.db");
    }
}
