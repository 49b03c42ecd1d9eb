//! Capacity samples: batch inserts that are never applied twice, window
//! aggregates for the scaler, and the deletes retention runs.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row as _};

use super::codec::{self, Ts};
use super::{Sample, Store, StoreError, Window};
use crate::ids::{InstanceId, ServiceName};

/// Rows per INSERT statement: 12 parameters a row stays well under SQLite's
/// 32,766 and PostgreSQL's 65,535 bind parameters.
const ROWS_PER_STATEMENT: usize = 1000;

const INSERT_SAMPLES: &str = "INSERT INTO service_capacity_metrics (service_name, instance_id, \
    cpu_usage_percent, memory_usage_percent, disk_usage_percent, network_io_mbps, request_count, \
    active_connections, queue_depth, response_time_p95_ms, error_rate_percent, recorded_at) ";

const CLAIM_BATCH: &str = "INSERT INTO sample_batches (batch_key, written_at) VALUES ($1, $2) \
    ON CONFLICT (batch_key) DO NOTHING";

const WINDOW: &str = "SELECT COUNT(*) AS samples, COUNT(DISTINCT instance_id) AS instances, \
    CAST(AVG(cpu_usage_percent) AS DOUBLE PRECISION) AS avg_cpu, \
    CAST(AVG(memory_usage_percent) AS DOUBLE PRECISION) AS avg_memory, \
    CAST(AVG(response_time_p95_ms) AS DOUBLE PRECISION) AS avg_p95, \
    CAST(AVG(error_rate_percent) AS DOUBLE PRECISION) AS avg_errors, \
    CAST(COALESCE(SUM(request_count), 0) AS BIGINT) AS total_requests \
    FROM service_capacity_metrics \
    WHERE service_name = $1 AND recorded_at > $2 AND recorded_at <= $3";

const UNNEST_SAMPLES: &str = "SELECT * FROM UNNEST($1::varchar[], $2::varchar[], \
    $3::float8[], $4::float8[], $5::float8[], $6::float8[], $7::int4[], $8::int4[], $9::int4[], \
    $10::float8[], $11::float8[], $12::timestamptz[])";

/// Inserting sample rows, the fastest way each backend offers.
trait InsertRows {
    async fn insert_rows(&mut self, samples: &[Sample]) -> Result<(), sqlx::Error>;
}

impl InsertRows for SqliteConnection {
    /// Multi-row INSERT statements of up to [`ROWS_PER_STATEMENT`] rows.
    async fn insert_rows(&mut self, samples: &[Sample]) -> Result<(), sqlx::Error> {
        for chunk in samples.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::new(INSERT_SAMPLES);
            insert.push_values(chunk, |mut row, s| {
                row.push_bind(s.service.as_str())
                    .push_bind(s.instance.as_str())
                    .push_bind(s.cpu_usage_percent)
                    .push_bind(s.memory_usage_percent)
                    .push_bind(s.disk_usage_percent)
                    .push_bind(s.network_io_mbps)
                    .push_bind(codec::int(s.request_count))
                    .push_bind(codec::int(s.active_connections))
                    .push_bind(codec::int(s.queue_depth))
                    .push_bind(s.response_time_p95_ms)
                    .push_bind(s.error_rate_percent)
                    .push_bind(Ts(s.recorded_at));
            });
            insert.build().execute(&mut *self).await?;
        }
        Ok(())
    }
}

impl InsertRows for PgConnection {
    /// One INSERT ... SELECT FROM UNNEST of twelve arrays: one prepared
    /// statement whatever the batch size, and no bind-parameter limit.
    async fn insert_rows(&mut self, samples: &[Sample]) -> Result<(), sqlx::Error> {
        let column = |f: fn(&Sample) -> Option<f64>| samples.iter().map(f).collect::<Vec<_>>();
        let count = |f: fn(&Sample) -> u32| {
            samples
                .iter()
                .map(|s| codec::int(f(s)))
                .collect::<Vec<i32>>()
        };
        sqlx::query(&format!("{INSERT_SAMPLES}{UNNEST_SAMPLES}"))
            .bind(
                samples
                    .iter()
                    .map(|s| s.service.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                samples
                    .iter()
                    .map(|s| s.instance.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(column(|s| s.cpu_usage_percent))
            .bind(column(|s| s.memory_usage_percent))
            .bind(column(|s| s.disk_usage_percent))
            .bind(column(|s| s.network_io_mbps))
            .bind(count(|s| s.request_count))
            .bind(count(|s| s.active_connections))
            .bind(count(|s| s.queue_depth))
            .bind(column(|s| s.response_time_p95_ms))
            .bind(column(|s| Some(s.error_rate_percent)))
            .bind(samples.iter().map(|s| s.recorded_at).collect::<Vec<_>>())
            .execute(&mut *self)
            .await
            .map(drop)
    }
}

const SELECT_SAMPLES: &str = "SELECT service_name, instance_id, \
    CAST(cpu_usage_percent AS DOUBLE PRECISION) AS cpu_usage_percent, \
    CAST(memory_usage_percent AS DOUBLE PRECISION) AS memory_usage_percent, \
    CAST(disk_usage_percent AS DOUBLE PRECISION) AS disk_usage_percent, \
    CAST(network_io_mbps AS DOUBLE PRECISION) AS network_io_mbps, \
    COALESCE(request_count, 0) AS request_count, \
    COALESCE(active_connections, 0) AS active_connections, \
    COALESCE(queue_depth, 0) AS queue_depth, \
    CAST(response_time_p95_ms AS DOUBLE PRECISION) AS response_time_p95_ms, \
    CAST(COALESCE(error_rate_percent, 0.0) AS DOUBLE PRECISION) AS error_rate_percent, \
    recorded_at FROM service_capacity_metrics \
    WHERE service_name = $1 AND recorded_at > $2 ORDER BY recorded_at, id";

/// What became of a batch handed to [`Store::insert_sample_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Its rows were inserted now.
    Inserted,
    /// A previous attempt with the same key had committed; nothing was inserted.
    AlreadyInserted,
}

/// The tables retention trims, each with its key and time columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retained {
    /// `service_capacity_metrics` by `recorded_at`.
    Samples,
    /// `scaling_events` by `occurred_at`.
    Events,
    /// `capacity_planning_forecasts` by `created_at`.
    Forecasts,
    /// tidegate's `sample_batches` by `written_at`.
    SampleBatches,
}

impl Retained {
    fn delete_sql(self) -> &'static str {
        match self {
            Retained::Samples => {
                "DELETE FROM service_capacity_metrics WHERE id IN (SELECT id \
                FROM service_capacity_metrics WHERE recorded_at < $1 LIMIT $2)"
            }
            Retained::Events => {
                "DELETE FROM scaling_events WHERE id IN (SELECT id \
                FROM scaling_events WHERE occurred_at < $1 LIMIT $2)"
            }
            Retained::Forecasts => {
                "DELETE FROM capacity_planning_forecasts WHERE id IN (SELECT id \
                FROM capacity_planning_forecasts WHERE created_at < $1 LIMIT $2)"
            }
            Retained::SampleBatches => {
                "DELETE FROM sample_batches WHERE batch_key IN (SELECT \
                batch_key FROM sample_batches WHERE written_at < $1 LIMIT $2)"
            }
        }
    }

    /// The table's name, for logs.
    pub fn table(self) -> &'static str {
        match self {
            Retained::Samples => "service_capacity_metrics",
            Retained::Events => "scaling_events",
            Retained::Forecasts => "capacity_planning_forecasts",
            Retained::SampleBatches => "sample_batches",
        }
    }
}

impl Store {
    /// Inserts a batch of samples in one transaction, together with its `key`
    /// in `sample_batches`. Retrying the same key after a failure either inserts
    /// the batch or finds that an earlier attempt committed: never both.
    pub async fn insert_sample_batch(
        &self,
        key: &str,
        samples: &[Sample],
    ) -> Result<BatchOutcome, StoreError> {
        let err = StoreError::query("insert samples");
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(err)?;
            let claimed = sqlx::query(CLAIM_BATCH)
                .bind(key)
                .bind(Ts(Utc::now()))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("insert samples"))?
                .rows_affected();
            if claimed == 0 {
                return Ok(BatchOutcome::AlreadyInserted);
            }
            InsertRows::insert_rows(&mut *tx, samples)
                .await
                .map_err(StoreError::query("insert samples"))?;
            tx.commit().await.map_err(StoreError::query("commit samples"))?;
        });
        Ok(BatchOutcome::Inserted)
    }

    /// Aggregates a service's samples recorded in `(from, to]`.
    pub async fn window(
        &self,
        service: &ServiceName,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Window, StoreError> {
        let err = StoreError::query("aggregate samples");
        let window = on_pool!(self, pool => {
            let row = sqlx::query(WINDOW)
                .bind(service.as_str())
                .bind(Ts(from))
                .bind(Ts(to))
                .fetch_one(pool)
                .await
                .map_err(err)?;
            (|| -> Result<Window, sqlx::Error> {
                Ok(Window {
                    samples: codec::total("samples", row.try_get("samples")?)?,
                    instances: codec::total("instances", row.try_get("instances")?)?,
                    avg_cpu_percent: row.try_get("avg_cpu")?,
                    avg_memory_percent: row.try_get("avg_memory")?,
                    avg_response_time_p95_ms: row.try_get("avg_p95")?,
                    avg_error_rate_percent: row.try_get("avg_errors")?,
                    total_requests: codec::total("total_requests", row.try_get("total_requests")?)?,
                })
            })()
            .map_err(StoreError::query("aggregate samples"))?
        });
        Ok(window)
    }

    /// A service's samples recorded after `since`, oldest first.
    pub async fn samples_since(
        &self,
        service: &ServiceName,
        since: DateTime<Utc>,
    ) -> Result<Vec<Sample>, StoreError> {
        let rows = on_pool!(self, pool => {
            let rows = sqlx::query(SELECT_SAMPLES)
                .bind(service.as_str())
                .bind(Ts(since))
                .fetch_all(pool)
                .await;
            rows.and_then(|rows| rows.iter().map(|row| Ok(Sample {
                service: ServiceName::new(row.try_get::<String, _>("service_name")?),
                instance: InstanceId::new(row.try_get::<String, _>("instance_id")?),
                cpu_usage_percent: row.try_get("cpu_usage_percent")?,
                memory_usage_percent: row.try_get("memory_usage_percent")?,
                disk_usage_percent: row.try_get("disk_usage_percent")?,
                network_io_mbps: row.try_get("network_io_mbps")?,
                request_count: codec::count("request_count", row.try_get("request_count")?)?,
                active_connections: codec::count(
                    "active_connections",
                    row.try_get("active_connections")?,
                )?,
                queue_depth: codec::count("queue_depth", row.try_get("queue_depth")?)?,
                response_time_p95_ms: row.try_get("response_time_p95_ms")?,
                error_rate_percent: row.try_get("error_rate_percent")?,
                recorded_at: row.try_get::<Ts, _>("recorded_at")?.0,
            })).collect::<Result<Vec<_>, sqlx::Error>>())
        });
        rows.map_err(StoreError::query("read samples"))
    }

    /// Deletes up to `limit` rows of `table` older than `before`; returns how many went.
    pub async fn delete_older_than(
        &self,
        table: Retained,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let deleted = on_pool!(self, pool => sqlx::query(table.delete_sql())
            .bind(Ts(before))
            .bind(i64::from(limit))
            .execute(pool)
            .await
            .map_err(StoreError::query("retention delete"))?
            .rows_affected());
        Ok(deleted)
    }
}
