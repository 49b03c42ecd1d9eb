//! End to end over real sockets: tidegate runs the demo backend on the process
//! orchestrator, a bounded load drives its CPU over the threshold, tidegate
//! scales up and the new instance serves; the load stops and tidegate scales
//! back down without failing a request.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tidegate::scale::event::EventType;

/// Concurrent clients of the load phase; each request burns 3 ms of CPU in the instance.
const LOAD_CLIENTS: usize = 8;

fn config() -> tidegate::config::Config {
    support::autoscaled_app("", "scale_down_threshold = 10.0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_load_scales_up_and_idle_scales_down_without_failed_requests() {
    let running = support::start(config()).await;
    let service = Arc::clone(running.registry.service("app").expect("the service exists"));
    assert_eq!(
        service.table.load().len(),
        1,
        "min_instances are started before serving"
    );
    let first = service.table.load().instances()[0].id().clone();

    let stop = Arc::new(AtomicBool::new(false));
    let (_, failed_under_load) = support::load(
        running.proxy_addr(),
        LOAD_CLIENTS,
        Duration::ZERO,
        stop.clone(),
    );
    let scaled_up =
        support::eventually(Duration::from_secs(60), || service.table.load().len() == 2).await;
    assert!(scaled_up, "CPU over the threshold adds an instance");
    let second = service
        .table
        .load()
        .instances()
        .iter()
        .find(|i| i.id() != &first)
        .cloned()
        .expect("a new instance is in the table");
    let served = support::eventually(Duration::from_secs(10), || {
        second.state.requests.load(Ordering::Relaxed) > 0
    })
    .await;
    assert!(served, "the new instance serves traffic");
    let admin = running.admin_addr;
    let (moved, text) = metrics_until(admin, |m| {
        value(m, "tidegate_instances", &[]) == Some(2.0)
            && value(m, "tidegate_scaling_decisions_total", &UP_SCALED).is_some_and(|n| n >= 1.0)
            && value(
                m,
                "tidegate_scaling_latency_seconds_count",
                &[("direction", "up")],
            )
            .is_some_and(|n| n >= 1.0)
            && value(
                m,
                "tidegate_resource_utilization_percent",
                &[("resource", "cpu")],
            )
            .is_some_and(|cpu| cpu > 0.0)
    })
    .await;
    assert!(
        moved,
        "/metrics shows the scale-up: two instances, a scaled decision, its \
         trigger-to-serving latency and the CPU that caused it:\n{}",
        scaling_lines(&text)
    );
    stop.store(true, Ordering::Relaxed);

    let idle_stop = Arc::new(AtomicBool::new(false));
    let (idle_ok, idle_failed) = support::load(
        running.proxy_addr(),
        1,
        Duration::from_millis(50),
        idle_stop.clone(),
    );
    let scaled_down =
        support::eventually(Duration::from_secs(60), || service.table.load().len() == 1).await;
    idle_stop.store(true, Ordering::Relaxed);
    assert!(
        scaled_down,
        "with the load gone the service scales back to one instance"
    );
    assert_eq!(
        idle_failed.load(Ordering::Relaxed),
        0,
        "no request fails while an instance is drained and stopped"
    );
    assert!(
        idle_ok.load(Ordering::Relaxed) > 0,
        "requests were served during the scale-down"
    );
    assert_eq!(
        failed_under_load.load(Ordering::Relaxed),
        0,
        "no request fails while scaling up"
    );

    let recorded = support::eventually(Duration::from_secs(10), || {
        running
            .control
            .events
            .all()
            .iter()
            .any(|e| e.event_type == EventType::ScaleDown)
    })
    .await;
    assert!(
        recorded,
        "the scale-down is recorded once its instance has stopped"
    );
    let events = running.control.events.all();
    let up = events
        .iter()
        .find(|e| e.event_type == EventType::ScaleUp)
        .expect("a scale_up event is recorded");
    assert!(
        up.success && up.instances_before == 1 && up.instances_after == 2,
        "the event says 1 -> 2: {up:?}"
    );
    assert_eq!(up.trigger_metric.as_str(), "cpu");
    assert!(
        events
            .iter()
            .any(|e| e.event_type == EventType::ScaleDown && e.success),
        "a scale_down event is recorded: {events:?}"
    );
    let (moved, text) = metrics_until(admin, |m| {
        value(m, "tidegate_instances", &[]) == Some(1.0)
            && value(m, "tidegate_scaling_decisions_total", &DOWN_SCALED).is_some_and(|n| n >= 1.0)
            && value(
                m,
                "tidegate_scaling_latency_seconds_count",
                &[("direction", "down")],
            )
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert!(
        moved,
        "/metrics shows the scale-down:\n{}",
        scaling_lines(&text)
    );
    // Events reach the database through the store's writer, a moment after
    // the scaler has them: poll until both are rows, up to a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let kinds = loop {
        let stored = running
            .store
            .store
            .events(&"app".into(), 10)
            .await
            .expect("the store answers");
        let kinds: Vec<EventType> = stored.iter().map(|e| e.event_type).collect();
        let both = kinds.contains(&EventType::ScaleUp) && kinds.contains(&EventType::ScaleDown);
        if both || std::time::Instant::now() > deadline {
            break kinds;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        kinds.contains(&EventType::ScaleUp) && kinds.contains(&EventType::ScaleDown),
        "both actions are rows of scaling_events: {kinds:?}"
    );
    running.shutdown().await;
}

const UP_SCALED: [(&str, &str); 2] = [("direction", "up"), ("result", "scaled")];
const DOWN_SCALED: [(&str, &str); 2] = [("direction", "down"), ("result", "scaled")];

/// One sample of the `app` service's metric `name` with these further labels.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut all = vec![("service", "app")];
    all.extend_from_slice(labels);
    support::sample(text, name, &all)
}

/// Reads `/metrics` until `done` holds (true) or 30 s pass (false), with the last text.
async fn metrics_until(admin: std::net::SocketAddr, done: impl Fn(&str) -> bool) -> (bool, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = support::metrics_text(admin).await;
        if done(&text) {
            return (true, text);
        }
        if tokio::time::Instant::now() >= deadline {
            return (false, text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The lines of the autoscaler's metrics, for a failure message.
fn scaling_lines(text: &str) -> String {
    text.lines()
        .filter(|l| {
            l.starts_with("tidegate_instances")
                || l.starts_with("tidegate_scaling")
                || l.starts_with("tidegate_resource")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
