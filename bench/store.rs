//! Samples per second the store writes, on SQLite and PostgreSQL.
//!
//! Two measures per backend: `insert_sample_batch` called back to back at
//! several batch sizes (the database's share), and the whole path from
//! `SampleQueue::try_push` through the writer task (what the recorder sees).
//! On PostgreSQL the UNNEST insert is also compared, round by round, with the
//! multi-row VALUES insert it replaced.
//! PostgreSQL is `DATABASE_URL`'s server or a private cluster, as in the
//! tests. Prints a table; run with `cargo bench --bench store`.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

#[allow(dead_code, unreachable_pub)]
#[path = "../tests/support/pg.rs"]
mod pg;

use std::time::{Duration, Instant};

use tidegate::ids::{InstanceId, ServiceName};
use tidegate::store::writer::{self, SampleQueue, WriterOptions};
use tidegate::store::{Backend, Pool, Sample, Store};

/// Samples written per measurement.
const SAMPLES: usize = 50_000;
/// Measurements per cell; the median is printed.
const ROUNDS: usize = 3;

fn samples(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            let mut s = Sample::new(
                ServiceName::new("bench"),
                InstanceId::new(format!("10.0.{}.{}:8080", i % 7, i % 251)),
            );
            s.cpu_usage_percent = Some((i % 100) as f64);
            s.memory_usage_percent = Some((i % 90) as f64);
            s.request_count = (i % 1000) as u32;
            s.response_time_p95_ms = Some(12.5);
            s
        })
        .collect()
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

async fn direct(store: &Store, batch: usize, round: usize) -> f64 {
    let all = samples(SAMPLES);
    let started = Instant::now();
    for (i, chunk) in all.chunks(batch).enumerate() {
        let key = format!("direct-{batch}-{round}-{i}");
        store.insert_sample_batch(&key, chunk).await.unwrap();
    }
    SAMPLES as f64 / started.elapsed().as_secs_f64()
}

/// The multi-row `VALUES` insert the PostgreSQL store used before UNNEST,
/// kept here to compare the two in the same run.
async fn multi_row_values(store: &Store, batch: usize) -> f64 {
    use sqlx::QueryBuilder;
    let Pool::Postgres(pool) = store.pool() else {
        unreachable!("compared on PostgreSQL only")
    };
    let all = samples(SAMPLES);
    let started = Instant::now();
    for chunk in all.chunks(batch) {
        let mut tx = pool.begin().await.unwrap();
        let mut insert = QueryBuilder::new(
            "INSERT INTO service_capacity_metrics (service_name, instance_id, \
             cpu_usage_percent, memory_usage_percent, disk_usage_percent, network_io_mbps, \
             request_count, active_connections, queue_depth, response_time_p95_ms, \
             error_rate_percent, recorded_at) ",
        );
        insert.push_values(chunk, |mut row, s| {
            row.push_bind(s.service.as_str())
                .push_bind(s.instance.as_str())
                .push_bind(s.cpu_usage_percent)
                .push_bind(s.memory_usage_percent)
                .push_bind(s.disk_usage_percent)
                .push_bind(s.network_io_mbps)
                .push_bind(s.request_count as i32)
                .push_bind(s.active_connections as i32)
                .push_bind(s.queue_depth as i32)
                .push_bind(s.response_time_p95_ms)
                .push_bind(s.error_rate_percent)
                .push_bind(s.recorded_at);
        });
        insert.build().execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }
    SAMPLES as f64 / started.elapsed().as_secs_f64()
}

async fn through_writer(store: &Store, batch: usize) -> f64 {
    let options = WriterOptions {
        queue_capacity: SAMPLES,
        batch_size: batch,
        interval: Duration::from_millis(10),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_secs(1),
        flush_timeout: Duration::from_secs(60),
    };
    let queue = SampleQueue::new(SAMPLES, batch);
    let all = samples(SAMPLES);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(writer::run(store.clone(), queue.clone(), options, stopped));
    for s in all {
        queue.try_push(s);
    }
    while !queue.is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let _ = stop.send(true);
    task.await.unwrap();
    SAMPLES as f64 / started.elapsed().as_secs_f64()
}

async fn measure(label: &str, store: &Store) {
    store.migrate_up().await.unwrap();
    for batch in [100, 500, 2000] {
        let mut rates = Vec::new();
        for round in 0..ROUNDS {
            rates.push(direct(store, batch, round).await);
        }
        println!(
            "| {label} | insert_sample_batch | {batch} | {:.0} |",
            median(rates)
        );
    }
    let mut rates = Vec::new();
    for _ in 0..ROUNDS {
        rates.push(through_writer(store, 500).await);
    }
    println!("| {label} | queue + writer | 500 | {:.0} |", median(rates));
    if store.backend() == Backend::Postgres {
        for batch in [100, 500, 2000] {
            let (mut unnest, mut values) = (Vec::new(), Vec::new());
            for round in 0..ROUNDS {
                unnest.push(direct(store, batch, ROUNDS + round).await);
                values.push(multi_row_values(store, batch).await);
            }
            println!(
                "| {label} | UNNEST, interleaved | {batch} | {:.0} |",
                median(unnest)
            );
            println!(
                "| {label} | multi-row VALUES, interleaved | {batch} | {:.0} |",
                median(values)
            );
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("| backend | path | rows per batch | samples/s (median of {ROUNDS}) |");
        println!("|---|---|---|---|");
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/bench.db", dir.path().display());
        measure("SQLite (WAL)", &Store::connect(&url).await.unwrap()).await;
        match pg::server() {
            Some(server) => {
                let url = server.fresh_database().await;
                measure("PostgreSQL", &Store::connect(&url).await.unwrap()).await;
            }
            None => println!("| PostgreSQL | skipped: not available | | |"),
        }
    });
}
