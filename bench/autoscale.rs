//! Autoscaling harness: how fast a CPU spike gets a new serving instance, how
//! often scaling actions succeed, and whether a scale-down fails requests.
//!
//! Runs tidegate in process with the demo backend on the process orchestrator
//! (loopback only, bounded), then repeats `CYCLES` times: a load of
//! `LOAD_CLIENTS` closed-loop clients until a second instance serves, then a
//! light paced load until the service is back to one instance. It prints one
//! line per cycle and a summary.
//!
//! `cargo bench --bench autoscale --profile dev` (or with the default release profile).
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tidegate::config::Config;
use tidegate::registry::Service;
use tidegate::scale::event::EventType;

const CYCLES: usize = 12;
const LOAD_CLIENTS: usize = 8;
const SCALE_UP_THRESHOLD: f64 = 40.0;

fn config(dir: &Path) -> Config {
    let text = format!(
        r#"
        [proxy]
        listen = ["127.0.0.1:0"]
        [admin]
        listen = "127.0.0.1:0"
        [store]
        metrics_interval = "250ms"
        [scaler]
        evaluation_interval = "250ms"
        window = "1s"
        [services.app]
        routes = [{{ path_prefix = "/" }}]
        [services.app.load_balancer]
        healthy_threshold = 2
        [services.app.scaling]
        min_instances = 1
        max_instances = 2
        target_cpu_percent = 30.0
        scale_up_threshold = {SCALE_UP_THRESHOLD}
        scale_down_threshold = 10.0
        scale_up_cooldown_minutes = 0
        scale_down_cooldown_minutes = 0
        [services.app.orchestrator]
        kind = "process"
        command = "{} demo-backend --port {{port}} --work-us 3000"
        port_range = "0-0"
        start_timeout = "20s"
        stop_grace = "5s"
        "#,
        env!("CARGO_BIN_EXE_tidegate")
    );
    // The SQLite store goes in a folder of its own, removed when the run ends.
    Config::parse(&text, dir).unwrap()
}

fn load(addr: SocketAddr, clients: usize, pace: Duration, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    let failed = Arc::new(AtomicU64::new(0));
    for _ in 0..clients {
        let (failed, stop) = (failed.clone(), stop.clone());
        tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(format!("http://{addr}/work"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let ok = matches!(client.request(req).await, Ok(r) if r.status() == 200);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(pace).await;
            }
        });
    }
    failed
}

async fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

fn second_instance_serving(service: &Service) -> bool {
    let table = service.table.load();
    table.len() == 2
        && table
            .instances()
            .iter()
            .all(|i| i.state.requests.load(Ordering::Relaxed) > 0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let running = tidegate::app::start(config(dir.path())).await.unwrap();
    let service = Arc::clone(running.registry.service("app").unwrap());
    let addr = running.proxy_addr();
    let mut crossing_to_serving = Vec::new();
    let mut scale_down_failures = 0;
    let mut scale_up_failures = 0;

    for cycle in 0..CYCLES {
        let started = Utc::now();
        let stop = Arc::new(AtomicBool::new(false));
        let failed = load(addr, LOAD_CLIENTS, Duration::ZERO, stop.clone());
        let up = wait_for(Duration::from_secs(60), || {
            second_instance_serving(&service)
        })
        .await;
        let serving_at = Utc::now();
        stop.store(true, Ordering::Relaxed);
        let crossed_at = running
            .control
            .samples
            .of(&service.name)
            .iter()
            .filter(|s| {
                s.recorded_at > started
                    && s.cpu_usage_percent.is_some_and(|c| c > SCALE_UP_THRESHOLD)
            })
            .map(|s| s.recorded_at)
            .min();
        let latency = crossed_at.map(|c| (serving_at - c).num_milliseconds() as f64 / 1000.0);
        scale_up_failures += failed.load(Ordering::Relaxed);

        let idle_stop = Arc::new(AtomicBool::new(false));
        let idle_failed = load(addr, 1, Duration::from_millis(50), idle_stop.clone());
        let down = wait_for(Duration::from_secs(60), || service.table.load().len() == 1).await;
        wait_for(Duration::from_secs(20), || {
            running
                .control
                .events
                .all()
                .iter()
                .filter(|e| e.event_type == EventType::ScaleDown)
                .count()
                > cycle
        })
        .await;
        idle_stop.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
        scale_down_failures += idle_failed.load(Ordering::Relaxed);
        println!(
            "cycle {cycle:2}: up={up} crossing->serving={latency:?}s down={down} failed_during_down={}",
            idle_failed.load(Ordering::Relaxed)
        );
        if let Some(l) = latency {
            crossing_to_serving.push(l);
        }
    }

    let events = running.control.events.all();
    let actions = events.len();
    for kind in [
        EventType::ScaleUp,
        EventType::ScaleDown,
        EventType::ScaleFailed,
    ] {
        let of_kind: Vec<_> = events.iter().filter(|e| e.event_type == kind).collect();
        let steps: Vec<String> = of_kind
            .iter()
            .map(|e| format!("{}->{}", e.instances_before, e.instances_after))
            .collect();
        println!("{}: {} ({})", kind.as_str(), of_kind.len(), steps.join(" "));
    }
    let succeeded = events.iter().filter(|e| e.success).count();
    crossing_to_serving.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = crossing_to_serving
        .get(crossing_to_serving.len() / 2)
        .copied();
    let max = crossing_to_serving.last().copied();
    println!(
        "scaling actions: {actions}, succeeded: {succeeded} ({:.1}%)",
        succeeded as f64 * 100.0 / actions.max(1) as f64
    );
    println!("threshold crossing -> new instance serving: median {median:?} s, max {max:?} s over {} scale-ups", crossing_to_serving.len());
    println!("failed requests during scale-up: {scale_up_failures}; during scale-down: {scale_down_failures}");
    running.shutdown().await;
}
