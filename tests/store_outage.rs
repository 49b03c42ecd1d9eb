//! The metrics writer across a PostgreSQL outage: samples written while the
//! server is stopped wait in the queue and reach the database exactly once
//! when it is back.
//!
//! This binary stops and starts its own private cluster, so it cannot share
//! one with other tests (nor use `DATABASE_URL`'s server).
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::Duration;

use tidegate::ids::{InstanceId, ServiceName};
use tidegate::store::writer::{self, SampleQueue, WriterOptions};
use tidegate::store::{Pool, Sample, Store};

const SAMPLES: u32 = 10_000;

async fn count(store: &Store, sql: &str) -> Option<i64> {
    let Pool::Postgres(pool) = store.pool() else {
        unreachable!("this test runs on PostgreSQL")
    };
    sqlx::query_scalar(sql).fetch_one(pool).await.ok()
}

/// Polls `sql` until it returns `want`, for at most a minute.
async fn wait_for_count(store: &Store, sql: &str, want: impl Fn(i64) -> bool) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(n) = count(store, sql).await {
            if want(n) {
                return n;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sql} did not reach the expected count"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_written_during_an_outage_arrive_exactly_once() {
    let Some(pg) = support::pg::private_cluster() else {
        return;
    };
    let store = Store::connect(&pg.fresh_database().await).await.unwrap();
    store.migrate_up().await.unwrap();

    let options = WriterOptions {
        queue_capacity: 100_000,
        batch_size: 200,
        interval: Duration::from_millis(20),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(300),
        flush_timeout: Duration::from_secs(5),
    };
    let queue = SampleQueue::new(options.queue_capacity, options.batch_size);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(writer::run(store.clone(), queue.clone(), options, stopped));
    let push = |range: std::ops::Range<u32>| {
        for n in range {
            let mut s = Sample::new(ServiceName::new("api"), InstanceId::new("10.0.0.1:80"));
            s.request_count = n;
            assert!(queue.try_push(s), "the queue has room for every sample");
        }
    };

    // Some samples are written, then the server stops while the rest come in.
    let all = "SELECT COUNT(*) FROM service_capacity_metrics";
    push(0..3_000);
    wait_for_count(&store, all, |n| n > 0).await;
    tokio::task::spawn_blocking(|| pg.stop()).await.unwrap();
    push(3_000..SAMPLES);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while queue.write_failures() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer meets the outage"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        queue.written() < u64::from(SAMPLES),
        "the outage began before every sample was written"
    );
    tokio::task::spawn_blocking(|| pg.start()).await.unwrap();

    let written = wait_for_count(&store, all, |n| n >= i64::from(SAMPLES)).await;
    let _ = stop.send(true);
    task.await.unwrap();
    let distinct = count(
        &store,
        "SELECT COUNT(DISTINCT request_count) FROM service_capacity_metrics",
    )
    .await
    .unwrap();
    let total = count(&store, all).await.unwrap();
    assert_eq!(
        distinct,
        i64::from(SAMPLES),
        "every sample arrived (written {written})"
    );
    assert_eq!(total, i64::from(SAMPLES), "no sample arrived twice");
    assert_eq!(
        queue.dropped(),
        0,
        "nothing was dropped below the queue's capacity"
    );
}
