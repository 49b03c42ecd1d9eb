//! Parity of the two implementations of the scaling decision: every scenario
//! of the decision table runs through the Rust function (over the samples,
//! aggregated by `Observed::from_samples`) and through PostgreSQL's
//! `evaluate_scaling_decision` (over the same rows), and both must answer
//! the same columns.

mod support;

use chrono::{DateTime, Duration, Utc};
use sqlx::{Connection, PgConnection, Row};
use tidegate::config::ServiceKind;
use tidegate::ids::{InstanceId, ServiceName};
use tidegate::scale::decision::{
    decide, Cap, Decision, Direction, Inputs, PolicyRow, QuotaRow, TriggerMetric,
};
use tidegate::scale::window::{Levels, Observed, Span};
use tidegate::scale::Sample;
use tidegate::store::Store;

#[path = "../src/scale/decision/cases.rs"]
mod cases;

use cases::Case;

const TOLERANCE: f64 = 10.0;
const WINDOW_SECONDS: u64 = 60;
const INTERVAL_SECONDS: u64 = 5;

/// The samples a scenario stands for: `reporting` instances sharing `samples`
/// slots of the window at the window's levels, plus one interval at the peak
/// levels before the window (inside the scale-down cooldown).
fn samples_of(case: &Case, service: &ServiceName) -> Vec<Sample> {
    let now = cases::now();
    let at = |secs: f64| now - Duration::milliseconds((secs * 1000.0) as i64);
    let sample = |instance: u32, recorded_at: DateTime<Utc>, levels: &Levels| Sample {
        cpu_usage_percent: levels.cpu,
        memory_usage_percent: levels.memory,
        response_time_p95_ms: levels.p95_ms,
        recorded_at,
        ..Sample::new(service.clone(), InstanceId::new(format!("i{instance}")))
    };
    let mut out: Vec<Sample> = (0..case.samples)
        .map(|k| {
            let slot = k / case.reporting.max(1);
            sample(
                k % case.reporting.max(1),
                at(slot as f64 * 5.0 + 2.5),
                &case.levels,
            )
        })
        .collect();
    if let Some(peak) = &case.peak {
        out.extend((0..case.reporting).map(|i| sample(i, at(WINDOW_SECONDS as f64 + 32.5), peak)));
    }
    out
}

fn rust_decision(case: &Case, samples: &[Sample]) -> Decision {
    let span = Span {
        now: cases::now(),
        window: std::time::Duration::from_secs(WINDOW_SECONDS),
        peak_lookback: std::time::Duration::from_secs(
            u64::from(case.policy.scale_down_cooldown_minutes) * 60,
        ),
        interval: std::time::Duration::from_secs(INTERVAL_SECONDS),
    };
    decide(&Inputs {
        policy: &case.policy,
        observed: Observed::from_samples(samples, &span, case.current),
        current: case.current,
        quota: case.quota,
        last_event_at: case
            .last_event_minutes_ago
            .map(|m| cases::now() - Duration::minutes(m)),
        now: cases::now(),
        kind: case.kind,
        tolerance_percent: TOLERANCE,
        instance_hourly_cost: case.hourly_cost,
    })
}

async fn insert(conn: &mut PgConnection, case: &Case, service: &str, samples: &[Sample]) {
    let p = &case.policy;
    sqlx::query(
        "INSERT INTO scaling_policies (service_name, min_instances, max_instances, target_cpu_percent,
            target_memory_percent, target_response_time_ms, scale_up_threshold, scale_down_threshold,
            scale_up_cooldown_minutes, scale_down_cooldown_minutes, enabled)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(service)
    .bind(p.min_instances as i32)
    .bind(p.max_instances as i32)
    .bind(p.target_cpu_percent)
    .bind(p.target_memory_percent)
    .bind(p.target_response_time_ms)
    .bind(p.scale_up_threshold)
    .bind(p.scale_down_threshold)
    .bind(p.scale_up_cooldown_minutes as i32)
    .bind(p.scale_down_cooldown_minutes as i32)
    .bind(p.enabled)
    .execute(&mut *conn)
    .await
    .expect("the policy row inserts");
    for s in samples {
        sqlx::query(
            "INSERT INTO service_capacity_metrics (service_name, instance_id, cpu_usage_percent,
                memory_usage_percent, response_time_p95_ms, recorded_at)
             VALUES ($1, $2, $3::float8, $4::float8, $5::float8, $6)",
        )
        .bind(service)
        .bind(s.instance.as_str())
        .bind(s.cpu_usage_percent)
        .bind(s.memory_usage_percent)
        .bind(s.response_time_p95_ms)
        .bind(s.recorded_at)
        .execute(&mut *conn)
        .await
        .expect("a sample row inserts");
    }
    if let Some(minutes) = case.last_event_minutes_ago {
        sqlx::query(
            "INSERT INTO scaling_events (service_name, event_type, trigger_metric, trigger_value,
                threshold_value, instances_before, instances_after, success, occurred_at)
             VALUES ($1, 'scale_up', 'cpu', 90, 80, 1, 2, true, $2)",
        )
        .bind(service)
        .bind(cases::now() - Duration::minutes(minutes))
        .execute(&mut *conn)
        .await
        .expect("an event row inserts");
    }
    if let Some(q) = case.quota {
        sqlx::query(
            "INSERT INTO resource_quotas (service_name, max_cpu_cores, max_memory_gb, max_storage_gb,
                max_network_mbps, max_instances, cost_budget_monthly)
             VALUES ($1, 8, 16, 100, 1000, $2, $3::float8)",
        )
        .bind(service)
        .bind(q.max_instances as i32)
        .bind(q.cost_budget_monthly)
        .execute(&mut *conn)
        .await
        .expect("a quota row inserts");
    }
}

fn kind_name(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Stateless => "stateless",
        ServiceKind::Stateful {
            requires_consensus: true,
        } => "stateful_consensus",
        ServiceKind::Stateful { .. } => "stateful",
        ServiceKind::Singleton => "singleton",
    }
}

/// The columns both implementations must agree on, money-rounded like the SQL types.
type Columns = (bool, String, i32, String, String, String, String);

fn columns(d: &Decision) -> Columns {
    (
        d.should_scale,
        d.scale_direction.as_str().to_owned(),
        d.recommended_instances as i32,
        d.trigger_metric
            .map_or("", TriggerMetric::as_str)
            .to_owned(),
        format!("{:.2}", d.current_value),
        format!("{:.2}", d.threshold_value),
        format!("{:.2}", d.confidence_score),
    )
}

async fn sql_columns(conn: &mut PgConnection, case: &Case, service: &str) -> Columns {
    let row = sqlx::query(
        "SELECT should_scale, scale_direction, recommended_instances, trigger_metric,
                current_value::text, threshold_value::text, confidence_score::text
           FROM evaluate_scaling_decision($1, $2::numeric, $3::numeric, $4::numeric, $5::numeric, $6, $7, $8)",
    )
    .bind(service)
    .bind(TOLERANCE)
    .bind(case.hourly_cost)
    .bind(WINDOW_SECONDS as f64)
    .bind(INTERVAL_SECONDS as f64)
    .bind(case.current as i32)
    .bind(kind_name(case.kind))
    .bind(cases::now())
    .fetch_one(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("evaluate_scaling_decision answers for {:?}: {e}", case.name));
    (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
        row.get(6),
    )
}

/// A fresh PostgreSQL database with every migration applied (0002's function
/// included), with its URL and a connection; `None` when PostgreSQL is skipped.
async fn migrated_database() -> Option<(String, PgConnection)> {
    let server = support::pg::server()?;
    let url = server.fresh_database().await;
    let store = Store::connect(&url)
        .await
        .expect("the test database accepts connections");
    store
        .migrate_up()
        .await
        .expect("the migrations apply, 0002 included");
    store.close().await;
    let conn = PgConnection::connect(&url)
        .await
        .expect("the test database accepts connections");
    Some((url, conn))
}

#[tokio::test]
async fn sql_function_decides_every_scenario_like_the_rust_function() {
    let Some((_, mut conn)) = migrated_database().await else {
        return;
    };

    let all = cases::cases();
    assert!(all.len() >= 20, "at least 20 scenarios run through both");
    let mut mismatches = Vec::new();
    for (i, case) in all.iter().enumerate() {
        let service = format!("case-{i}");
        let samples = samples_of(case, &ServiceName::new(&service));
        insert(&mut conn, case, &service, &samples).await;
        let rust = columns(&rust_decision(case, &samples));
        let sql = sql_columns(&mut conn, case, &service).await;
        if rust != sql {
            mismatches.push(format!("{:?}:\n  rust {rust:?}\n  sql  {sql:?}", case.name));
        }
    }
    assert!(
        mismatches.is_empty(),
        "both implementations decide alike:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn scenario_samples_aggregate_to_the_scenario_levels() {
    for case in cases::cases().iter().filter(|c| c.samples > 0) {
        let samples = samples_of(case, &ServiceName::new("s"));
        let span = Span {
            now: cases::now(),
            window: std::time::Duration::from_secs(WINDOW_SECONDS),
            peak_lookback: std::time::Duration::from_secs(600),
            interval: std::time::Duration::from_secs(INTERVAL_SECONDS),
        };
        let observed = Observed::from_samples(&samples, &span, case.current);
        assert_eq!(
            observed.window.levels, case.levels,
            "{:?}: window levels",
            case.name
        );
        assert_eq!(
            observed.window.samples, case.samples,
            "{:?}: window samples",
            case.name
        );
    }
}

/// The plan's own check, verbatim: `psql -c "SELECT * FROM
/// evaluate_scaling_decision('test-service')"`, every optional argument at its
/// default (the current count taken from the instances reporting, now = NOW()).
const PLAN_QUERY: &str = "SELECT * FROM evaluate_scaling_decision('test-service')";

#[tokio::test]
async fn the_plans_one_argument_call_decides_from_recent_samples() {
    let Some((url, mut conn)) = migrated_database().await else {
        return;
    };

    let unknown = sqlx::query(PLAN_QUERY)
        .fetch_one(&mut conn)
        .await
        .expect("the function answers for a service without a policy");
    assert!(!unknown.get::<bool, _>("should_scale"));
    assert_eq!(unknown.get::<String, _>("reason"), "no scaling policy");

    // The plan's case: two instances at 85% CPU against a threshold of 80.
    let case = cases::base("plan call", 2, cases::cpu_mem(85.0, 60.0));
    let service = ServiceName::new("test-service");
    let now = Utc::now();
    let samples: Vec<Sample> = (0..12)
        .flat_map(|slot| (0..2).map(move |instance| (slot, instance)))
        .map(|(slot, instance)| Sample {
            cpu_usage_percent: case.levels.cpu,
            memory_usage_percent: case.levels.memory,
            recorded_at: now - Duration::milliseconds(slot * 5000 + 2500),
            ..Sample::new(service.clone(), InstanceId::new(format!("i{instance}")))
        })
        .collect();
    insert(&mut conn, &case, service.as_str(), &samples).await;

    let row = sqlx::query(PLAN_QUERY)
        .fetch_one(&mut conn)
        .await
        .expect("the plan's call answers");
    assert!(row.get::<bool, _>("should_scale"), "85% CPU scales up");
    assert_eq!(row.get::<String, _>("scale_direction"), "up");
    assert_eq!(row.get::<i32, _>("recommended_instances"), 3);
    assert_eq!(row.get::<String, _>("trigger_metric"), "cpu");
    let confidence: String = sqlx::query_scalar(
        "SELECT confidence_score::text FROM evaluate_scaling_decision('test-service')",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the plan's call answers");
    assert_eq!(
        confidence, "100.00",
        "both instances reported every interval"
    );

    // And through psql itself, when the machine has it.
    match std::process::Command::new("psql")
        .args([url.as_str(), "-X", "-A", "-t", "-c", PLAN_QUERY])
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "psql runs the plan's query: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                text.starts_with("t|up|3|cpu|"),
                "psql prints the decision row: {text}"
            );
        }
        Err(e) => eprintln!("psql not found ({e}); checked through sqlx only"),
    }
}

#[tokio::test]
async fn a_load_that_stopped_does_not_keep_scaling_up_on_its_latency() {
    let Some((_, mut conn)) = migrated_database().await else {
        return;
    };
    // Two instances: the older half of the window served at p95 300 ms, the
    // newer half served nothing (no p95). Counting only the busy half would
    // read 300 ms and ask for ceil(2 x 300 / 200) = 3 instances.
    let case = cases::base(
        "latency of a stopped load",
        2,
        Levels {
            cpu: Some(10.0),
            memory: None,
            p95_ms: Some(300.0),
        },
    );
    let service = ServiceName::new("stopped-load");
    let samples: Vec<Sample> = samples_of(&case, &service)
        .into_iter()
        .map(|s| {
            let idle = cases::now() - s.recorded_at < Duration::seconds(30);
            Sample {
                response_time_p95_ms: if idle { None } else { s.response_time_p95_ms },
                ..s
            }
        })
        .collect();
    insert(&mut conn, &case, service.as_str(), &samples).await;

    let rust = rust_decision(&case, &samples);
    let sql = sql_columns(&mut conn, &case, service.as_str()).await;

    assert_eq!(columns(&rust), sql, "both implementations decide alike");
    assert!(
        !rust.should_scale,
        "an idle half brings the window's p95 to 150 ms, under its target: {rust}"
    );
}
