//! End to end over real sockets: tidegate runs the demo backend on the process
//! orchestrator, a bounded load drives its CPU over the threshold, tidegate
//! scales up and the new instance serves; the load stops and tidegate scales
//! back down without failing a request.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tidegate::scale::event::EventType;

/// Concurrent clients of the load phase; each request burns 3 ms of CPU in the instance.
const LOAD_CLIENTS: usize = 8;

fn config() -> tidegate::config::Config {
    support::autoscaled_app("", "scale_down_threshold = 10.0")
}

/// Sends requests from `clients` tasks, each pausing `pace` between requests,
/// until `stop` is set; counts answers and failures.
fn load(
    addr: SocketAddr,
    clients: usize,
    pace: Duration,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicU64>, Arc<AtomicU64>) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    for _ in 0..clients {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        tokio::spawn(async move {
            let client = support::client();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(format!("http://{addr}/work"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("a valid request");
                match client.request(req).await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
        });
    }
    (ok, failed)
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
    let (_, failed_under_load) = load(
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
    stop.store(true, Ordering::Relaxed);

    let idle_stop = Arc::new(AtomicBool::new(false));
    let (idle_ok, idle_failed) = load(
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
    assert_eq!(up.trigger_metric, "cpu");
    assert!(
        events
            .iter()
            .any(|e| e.event_type == EventType::ScaleDown && e.success),
        "a scale_down event is recorded: {events:?}"
    );
    running.shutdown().await;
}
