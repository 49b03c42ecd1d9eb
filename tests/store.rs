//! The store against SQLite and a real PostgreSQL: the schema the plan names,
//! reversible migrations, batch writes and windows, seeding and operator
//! edits, events, forecasts, retention and the writer.
//!
//! Every test runs once per backend; the PostgreSQL half comes from
//! `support::pg` (a private cluster unless `DATABASE_URL` is set).
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "store/schema.rs"]
mod schema;
mod support;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tempfile::TempDir;
use tidegate::config::Config;
use tidegate::ids::{InstanceId, ServiceName};
use tidegate::orchestrate::fixed::StaticOrchestrator;
use tidegate::registry::Service;
use tidegate::scale::scaler::{Scaled, Scaler};
use tidegate::scale::source::StoreSource;
use tidegate::store::retention::{self, Retained, RetentionPolicy};
use tidegate::store::writer::{self, SampleQueue, WriterOptions};
use tidegate::store::{
    Backend, EventType, Forecast, ForecastType, Sample, ScalingEvent, Store, TriggerMetric,
};

const PLAN_TABLES: [&str; 6] = [
    "service_capacity_metrics",
    "scaling_policies",
    "scaling_events",
    "load_balancer_config",
    "capacity_planning_forecasts",
    "resource_quotas",
];

/// A store to test, with whatever keeps its database alive.
struct Db {
    store: Store,
    _dir: Option<TempDir>,
}

impl Db {
    fn label(&self) -> &'static str {
        match self.store.backend() {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// An empty SQLite database and, when available, an empty PostgreSQL one.
async fn databases() -> Vec<Db> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/tidegate.db", dir.path().display());
    let mut dbs = vec![Db {
        store: Store::connect(&url).await.unwrap(),
        _dir: Some(dir),
    }];
    if let Some(pg) = support::pg::server() {
        let url = pg.fresh_database().await;
        dbs.push(Db {
            store: Store::connect(&url).await.unwrap(),
            _dir: None,
        });
    }
    dbs
}

/// Like [`databases`], with the schema migrated.
async fn migrated() -> Vec<Db> {
    let dbs = databases().await;
    for db in &dbs {
        db.store.migrate_up().await.unwrap();
    }
    dbs
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 10, 12, minute, 0).unwrap()
}

fn sample(service: &str, instance: &str, minute: u32, cpu: f64, requests: u32) -> Sample {
    let mut s = Sample::new(ServiceName::new(service), InstanceId::new(instance));
    s.cpu_usage_percent = Some(cpu);
    s.memory_usage_percent = Some(cpu / 2.0);
    s.response_time_p95_ms = Some(100.0);
    s.request_count = requests;
    s.recorded_at = at(minute);
    s
}

#[tokio::test]
async fn migrated_tables_have_the_plans_columns_types_and_defaults() {
    let plan = schema::plan_columns();
    assert_eq!(plan.len(), 75, "the fixture holds the plan's 75 columns");
    for db in migrated().await {
        for table in PLAN_TABLES {
            let expected: Vec<_> = plan
                .iter()
                .filter(|c| c.table == table)
                .map(|c| match db.store.backend() {
                    Backend::Postgres => schema::on_postgres(c),
                    Backend::Sqlite => schema::on_sqlite(c),
                })
                .collect();
            let actual = schema::db_columns(&db.store, table).await;
            assert_eq!(
                actual,
                expected,
                "{}: {table} has exactly the plan's columns, in its order, with its types and defaults",
                db.label()
            );
        }
    }
}

#[tokio::test]
async fn up_down_up_leaves_the_same_schema() {
    for db in databases().await {
        db.store.migrate_up().await.unwrap();
        let first = schema::snapshot(&db.store).await;
        assert!(
            first
                .iter()
                .any(|l| l.contains("idx_capacity_metrics_service_time")),
            "{}: the snapshot sees indexes",
            db.label()
        );

        assert_eq!(db.store.migrate_down(true).await.unwrap(), vec![3, 2, 1]);
        let left = schema::tables(&db.store).await;
        for table in PLAN_TABLES {
            assert!(
                !left.iter().any(|t| t == table),
                "{}: down drops {table}",
                db.label()
            );
        }
        assert!(
            db.store
                .migration_status()
                .await
                .unwrap()
                .iter()
                .all(|m| !m.applied),
            "{}: nothing is applied after down",
            db.label()
        );

        assert_eq!(db.store.migrate_up().await.unwrap(), vec![1, 2, 3]);
        assert_eq!(
            schema::snapshot(&db.store).await,
            first,
            "{}: up after down rebuilds the identical schema",
            db.label()
        );
        assert!(
            db.store.migrate_up().await.unwrap().is_empty(),
            "up twice applies nothing"
        );
    }
}

#[tokio::test]
async fn batches_are_aggregated_over_a_window() {
    for db in migrated().await {
        let store = &db.store;
        // 2,400 samples cross the per-statement row limit, in one batch.
        let mut batch = Vec::new();
        for i in 0..2400u32 {
            let instance = format!("10.0.0.{}:80", i % 3);
            batch.push(sample(
                "api",
                &instance,
                1 + i % 10,
                40.0 + f64::from(i % 2) * 20.0,
                2,
            ));
        }
        batch.push(sample("api", "10.0.0.9:80", 30, 99.0, 1000));
        batch.push(sample("web", "10.0.1.1:80", 5, 99.0, 1000));
        store.insert_sample_batch("batch-1", &batch).await.unwrap();

        let api = ServiceName::new("api");
        let w = store.window(&api, at(0), at(10)).await.unwrap();
        assert_eq!(
            w.samples,
            2400,
            "{}: samples inside (from, to] of this service only",
            db.label()
        );
        assert_eq!(w.instances, 3);
        assert_eq!(w.total_requests, 4800);
        assert!(
            (w.avg_cpu_percent.unwrap() - 50.0).abs() < 1e-6,
            "{}: mean CPU",
            db.label()
        );
        assert!((w.avg_memory_percent.unwrap() - 25.0).abs() < 1e-6);
        assert!((w.avg_response_time_p95_ms.unwrap() - 100.0).abs() < 1e-6);

        let empty = store.window(&api, at(40), at(50)).await.unwrap();
        assert_eq!(empty.samples, 0);
        assert_eq!(
            empty.avg_cpu_percent,
            None,
            "{}: no samples is no data, not zero load",
            db.label()
        );
    }
}

#[tokio::test]
async fn samples_read_back_as_written_and_unmeasured_values_stay_null() {
    for db in migrated().await {
        let mut measured = sample("api", "a", 1, 60.0, 7);
        measured.disk_usage_percent = Some(12.25);
        measured.network_io_mbps = Some(3.5);
        measured.active_connections = 4;
        measured.queue_depth = 2;
        measured.error_rate_percent = 1.5;
        let unmeasured = Sample::new(ServiceName::new("api"), InstanceId::new("b"));
        let unmeasured = Sample {
            recorded_at: at(2),
            ..unmeasured
        };
        let batch = vec![measured, unmeasured];
        db.store
            .insert_sample_batch("round-trip", &batch)
            .await
            .unwrap();

        let api = ServiceName::new("api");
        let read = db.store.samples_since(&api, at(0)).await.unwrap();
        assert_eq!(read, batch, "{}: every column reads back", db.label());
        let w = db.store.window(&api, at(0), at(10)).await.unwrap();
        assert_eq!(w.samples, 2);
        assert_eq!(
            w.avg_cpu_percent,
            Some(60.0),
            "{}: an instance without a CPU measure does not count as idle",
            db.label()
        );
    }
}

#[tokio::test]
async fn a_retried_batch_key_is_never_inserted_twice() {
    use tidegate::store::BatchOutcome;
    for db in migrated().await {
        let batch = vec![
            sample("api", "a", 1, 10.0, 1),
            sample("api", "b", 1, 10.0, 1),
        ];
        let first = db.store.insert_sample_batch("k-1", &batch).await.unwrap();
        let again = db.store.insert_sample_batch("k-1", &batch).await.unwrap();
        assert_eq!(first, BatchOutcome::Inserted);
        assert_eq!(
            again,
            BatchOutcome::AlreadyInserted,
            "{}: same key is a no-op",
            db.label()
        );
        let n = schema::scalar(&db.store, "SELECT COUNT(*) FROM service_capacity_metrics").await;
        assert_eq!(n, 2, "{}: each sample is stored once", db.label());
    }
}

fn config_with_policy(max_instances: u32) -> Config {
    let text = format!(
        r#"
        [services.api]
        routes = [{{ path_prefix = "/" }}]
        instances = [{{ address = "127.0.0.1:9001" }}]
        [services.api.scaling]
        min_instances = 1
        max_instances = {max_instances}
        [services.api.quota]
        max_cpu_cores = 4.0
        max_memory_gb = 8.0
        max_storage_gb = 100.0
        max_network_mbps = 1000.0
        max_instances = 20
        "#
    );
    Config::parse(&text, std::path::Path::new(".")).unwrap()
}

#[tokio::test]
async fn an_operators_update_is_read_back_and_survives_a_restart() {
    let api = ServiceName::new("api");
    for db in migrated().await {
        let store = &db.store;
        let report = store
            .seed_from_config(&config_with_policy(5).services)
            .await
            .unwrap();
        assert_eq!(
            report.policies,
            vec![api.clone()],
            "{}: first start seeds",
            db.label()
        );
        assert_eq!(report.balancers.len(), 1);
        assert_eq!(report.quotas.len(), 1);

        schema::execute(
            store,
            "UPDATE scaling_policies SET max_instances = 8 WHERE service_name = 'api'",
        )
        .await;
        let policy = store.policy(&api).await.unwrap().unwrap();
        assert_eq!(
            policy.policy.max_instances,
            8,
            "{}: the next read sees the edit",
            db.label()
        );

        let report = store
            .seed_from_config(&config_with_policy(5).services)
            .await
            .unwrap();
        assert!(
            report.policies.is_empty(),
            "{}: an unchanged config seeds nothing",
            db.label()
        );
        let policy = store.policy(&api).await.unwrap().unwrap();
        assert_eq!(
            policy.policy.max_instances,
            8,
            "{}: the edit survives a restart",
            db.label()
        );

        store
            .seed_from_config(&config_with_policy(12).services)
            .await
            .unwrap();
        let policy = store.policy(&api).await.unwrap().unwrap();
        assert_eq!(
            policy.policy.max_instances,
            12,
            "{}: a changed config value replaces the row",
            db.label()
        );
        let quota = store.quota(&api).await.unwrap().unwrap();
        assert_eq!(quota.quota.max_instances, 20);
        assert_eq!(quota.quota.priority_level, 3, "the plan's default priority");
    }
}

/// Two static instances of `api` at 200% CPU, with a policy capped at two.
fn capped_api() -> Config {
    let text = r#"
        [services.api]
        routes = [{ path_prefix = "/" }]
        instances = [{ address = "127.0.0.1:9001" }, { address = "127.0.0.1:9002" }]
        [services.api.scaling]
        min_instances = 1
        max_instances = 2
        "#;
    Config::parse(text, std::path::Path::new(".")).unwrap()
}

#[tokio::test]
async fn an_operators_edit_decides_the_very_next_evaluation() {
    let api = ServiceName::new("api");
    for db in migrated().await {
        let config = capped_api();
        db.store.seed_from_config(&config.services).await.unwrap();
        let now = Utc::now();
        let busy: Vec<Sample> = ["127.0.0.1:9001", "127.0.0.1:9002"]
            .iter()
            .flat_map(|instance| {
                (0..6).map(move |k| {
                    let mut s = Sample::new(ServiceName::new("api"), InstanceId::new(*instance));
                    s.cpu_usage_percent = Some(200.0);
                    s.recorded_at = now - chrono::Duration::seconds(5 * k + 2);
                    s
                })
            })
            .collect();
        db.store.insert_sample_batch("busy", &busy).await.unwrap();
        let service = std::sync::Arc::new(Service::new(config.services[0].clone()));
        let scaled = Scaled {
            orchestrator: std::sync::Arc::new(StaticOrchestrator::new(service.clone())),
            service,
        };
        let scaler = Scaler {
            services: vec![scaled.clone()],
            source: std::sync::Arc::new(StoreSource::new(db.store.clone())),
            config: config.scaler,
            metrics_interval: config.store.metrics_interval,
            local_events: None,
        };

        let capped = scaler.evaluate(&scaled).await.unwrap().unwrap();
        assert!(
            !capped.should_scale && capped.recommended_instances == 2,
            "{}: the seeded max_instances = 2 holds the service at two: {capped}",
            db.label()
        );

        schema::execute(
            &db.store,
            "UPDATE scaling_policies SET max_instances = 8 WHERE service_name = 'api'",
        )
        .await;
        let raised = scaler.evaluate(&scaled).await.unwrap().unwrap();
        assert!(
            raised.should_scale && raised.recommended_instances == 6,
            "{}: the next evaluation, without a restart, decides under max_instances = 8 \
             (ceil(2 x 200 / 70) = 6): {raised}",
            db.label()
        );
        let recorded = db.store.events(&api, 10).await.unwrap();
        assert_eq!(
            recorded.len(),
            1,
            "{}: the decision the edit allowed is a scaling_events row",
            db.label()
        );
    }
}

fn event(service: &str, minute: u32, event_type: EventType) -> ScalingEvent {
    ScalingEvent {
        service: ServiceName::new(service),
        event_type,
        trigger_metric: TriggerMetric::Cpu,
        trigger_value: 91.5,
        threshold_value: 80.0,
        instances_before: 2,
        instances_after: 3,
        success: event_type != EventType::ScaleFailed,
        error_message: (event_type == EventType::ScaleFailed).then(|| "no port free".to_owned()),
        execution_time_seconds: 1.25,
        occurred_at: at(minute),
    }
}

#[tokio::test]
async fn events_are_listed_newest_first_with_the_last_per_service() {
    for db in migrated().await {
        let store = &db.store;
        store
            .append_event(&event("api", 1, EventType::ScaleUp))
            .await
            .unwrap();
        store
            .append_event(&event("api", 3, EventType::ScaleFailed))
            .await
            .unwrap();
        store
            .append_event(&event("api", 2, EventType::ScaleDown))
            .await
            .unwrap();
        store
            .append_event(&event("web", 5, EventType::ScaleUp))
            .await
            .unwrap();

        let api = ServiceName::new("api");
        let listed = store.events(&api, 10).await.unwrap();
        let minutes: Vec<_> = listed.iter().map(|e| e.occurred_at).collect();
        assert_eq!(
            minutes,
            vec![at(3), at(2), at(1)],
            "{}: newest first",
            db.label()
        );
        assert_eq!(
            listed[0],
            event("api", 3, EventType::ScaleFailed),
            "{}: round trip",
            db.label()
        );
        assert_eq!(
            store.last_event(&api).await.unwrap().unwrap().occurred_at,
            at(3)
        );

        let last: Vec<_> = store
            .last_events()
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.service.to_string(), e.occurred_at))
            .collect();
        assert_eq!(last, vec![("api".into(), at(3)), ("web".into(), at(5))]);
    }
}

#[tokio::test]
async fn forecasts_round_trip_with_their_data() {
    for db in migrated().await {
        let forecast = Forecast {
            service: ServiceName::new("api"),
            forecast_type: ForecastType::Linear,
            time_horizon_days: 30,
            predicted_peak_rps: 1234.5,
            predicted_avg_cpu: 64.25,
            predicted_avg_memory: 70.5,
            recommended_instances: 4,
            confidence_score: 82.0,
            forecast_data: serde_json::json!({ "points": [1.0, 2.0], "model": "linear" }),
            created_at: at(7),
        };
        db.store.insert_forecast(&forecast).await.unwrap();
        let read = db.store.forecasts(&forecast.service, 5).await.unwrap();
        assert_eq!(
            read,
            vec![forecast],
            "{}: every column reads back",
            db.label()
        );
    }
}

#[tokio::test]
async fn retention_deletes_only_rows_past_their_age() {
    for db in migrated().await {
        let store = &db.store;
        let now = at(0) + chrono::Duration::days(40);
        let old: Vec<_> = (0..2500)
            .map(|i| sample("api", "a", i % 60, 1.0, 1))
            .collect();
        store.insert_sample_batch("old", &old).await.unwrap();
        let mut recent = sample("api", "a", 0, 1.0, 1);
        recent.recorded_at = now - chrono::Duration::days(1);
        store.insert_sample_batch("new", &[recent]).await.unwrap();
        store
            .append_event(&event("api", 0, EventType::ScaleUp))
            .await
            .unwrap();

        let policy = RetentionPolicy {
            tables: vec![
                (Retained::Samples, chrono::Duration::days(30)),
                (Retained::Events, chrono::Duration::days(365)),
            ],
            every: Duration::from_secs(3600),
        };
        let deleted = retention::sweep(store, &policy, now).await.unwrap();
        assert_eq!(
            deleted,
            vec![(Retained::Samples, 2500), (Retained::Events, 0)]
        );
        let left = schema::scalar(store, "SELECT COUNT(*) FROM service_capacity_metrics").await;
        assert_eq!(left, 1, "{}: the recent sample stays", db.label());
    }
}

#[tokio::test]
async fn the_writer_stores_every_queued_sample_once() {
    for db in migrated().await {
        let queue = SampleQueue::new(10_000, 100);
        let options = WriterOptions {
            queue_capacity: 10_000,
            batch_size: 100,
            interval: Duration::from_millis(20),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
            flush_timeout: Duration::from_secs(5),
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(writer::run(
            db.store.clone(),
            queue.clone(),
            options,
            stopped,
        ));
        for i in 0..1234 {
            assert!(
                queue.try_push(sample("api", "a", 1, 1.0, i)),
                "below capacity"
            );
        }
        let _ = stop.send(true);
        task.await.unwrap();
        let sql = "SELECT COUNT(DISTINCT request_count) FROM service_capacity_metrics";
        assert_eq!(
            schema::scalar(&db.store, sql).await,
            1234,
            "{}: all written",
            db.label()
        );
        let n = schema::scalar(&db.store, "SELECT COUNT(*) FROM service_capacity_metrics").await;
        assert_eq!(n, 1234, "{}: none twice", db.label());
    }
}

#[tokio::test]
async fn the_forecast_function_fits_growth_from_history() {
    for db in migrated().await {
        if db.store.backend() != Backend::Postgres {
            continue;
        }
        let service = ServiceName::new("api");
        // The function buckets samples by UTC date, so each day's samples sit
        // at the start of that date: "minutes before now" would fall on the
        // previous date when the test runs just after midnight UTC.
        let today = Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        // Ten days of history; day d's instance serves 10 + (9 - d) requests
        // per second, sampled five times a minute apart.
        let mut batch = Vec::new();
        for days_ago in 0..10i64 {
            for n in 0..5i64 {
                let mut s = Sample::new(service.clone(), InstanceId::new("a"));
                s.recorded_at =
                    today - chrono::Duration::days(days_ago) + chrono::Duration::minutes(n);
                s.request_count = 60 * (10 + 9 - days_ago as u32);
                s.cpu_usage_percent = Some(30.0 + 2.0 * (9 - days_ago) as f64);
                batch.push(s);
            }
        }
        db.store
            .insert_sample_batch("history", &batch)
            .await
            .unwrap();
        let points = db
            .store
            .sql_capacity_forecast(&service, 30)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(points.len(), 30, "one point per day ahead");
        assert!(
            (points[0].predicted_rps - 20.0).abs() < 0.5,
            "tomorrow continues the fitted trend of one more request per second a day: {points:?}"
        );
        assert!(
            points
                .windows(2)
                .all(|w| w[1].predicted_rps > w[0].predicted_rps),
            "it grows"
        );
        assert!(
            (points[29].predicted_cpu - (48.0 + 2.0 * 30.0)).abs() < 0.5,
            "CPU follows its fit"
        );
        assert_eq!(
            points[29].recommended_instances, 2,
            "108% CPU on one instance needs two at 70%"
        );
    }
}

fn served_config(database_url: &str, migrate_on_start: bool) -> Config {
    let text = format!(
        r#"
        [proxy]
        listen = ["127.0.0.1:0"]
        [admin]
        listen = "127.0.0.1:0"
        [store]
        database_url = "{database_url}"
        migrate_on_start = {migrate_on_start}
        [services.api]
        routes = [{{ path_prefix = "/" }}]
        instances = [{{ address = "127.0.0.1:9" }}]
        [services.api.scaling]
        max_instances = 6
        "#
    );
    Config::parse(&text, std::path::Path::new(".")).unwrap()
}

#[tokio::test]
async fn serve_migrates_and_seeds_the_store_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![format!("sqlite://{}/served.db", dir.path().display())];
    if let Some(pg) = support::pg::server() {
        urls.push(pg.fresh_database().await);
    }
    for url in urls {
        let running = support::start(served_config(&url, true)).await;
        running.store.ready().await;
        let policy = running
            .store
            .store
            .policy(&ServiceName::new("api"))
            .await
            .unwrap();
        assert_eq!(
            policy.unwrap().policy.max_instances,
            6,
            "{url}: the config is seeded"
        );
        running.shutdown().await;
    }
}

#[tokio::test]
async fn tidegate_serves_while_its_database_is_unreachable() {
    // Port 9 on loopback (discard) has no PostgreSQL behind it.
    let config = served_config("postgres://tidegate@127.0.0.1:9/tidegate", true);
    let running = support::start(config).await;
    let (status, _, _) = support::get(running.admin_addr, "/health").await;
    assert!(
        status.is_success(),
        "the admin endpoints answer without a database"
    );
    assert!(
        !running.store.is_ready(),
        "the store is not ready without its database"
    );
    assert!(
        running
            .store
            .samples
            .try_push(sample("api", "a", 1, 1.0, 1)),
        "samples queue while the database is down"
    );
    running.shutdown().await;
}

#[test]
fn the_migrate_command_applies_reverts_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tidegate.toml");
    std::fs::write(&config, "[store]\ndatabase_url = \"sqlite://cli.db\"\n").unwrap();
    let migrate = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .arg("migrate")
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "migrate {args:?}: {:?}", out);
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        migrate(&["status"]),
        "0001_schema pending\n0002_scaling_decision pending\n0003_idle_latency pending\n"
    );
    assert_eq!(
        migrate(&["up"]),
        "applied 0001\napplied 0002\napplied 0003\n"
    );
    assert_eq!(
        migrate(&["status"]),
        "0001_schema applied\n0002_scaling_decision applied\n0003_idle_latency applied\n"
    );
    assert!(
        dir.path().join("cli.db").exists(),
        "the SQLite file is created next to the config"
    );
    assert_eq!(
        migrate(&["down"]),
        "reverted 0003\n",
        "down reverts the latest"
    );
    assert_eq!(
        migrate(&["down", "--all"]),
        "reverted 0002\nreverted 0001\n"
    );
    assert_eq!(migrate(&["down", "--all"]), "nothing reverted\n");
    assert_eq!(
        migrate(&["up"]),
        "applied 0001\napplied 0002\napplied 0003\n"
    );
}
