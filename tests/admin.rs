//! The admin listener: `/health`, `/ready`, `/stats` and `/metrics` tell an
//! operator what the proxy is doing, and their numbers move with the traffic.

// A test that meets a surprise should stop right there, with the line that saw it.
#![allow(clippy::unwrap_used)]

mod support;

use support::sample;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;

/// Bound on polling for a number to settle; the in-flight guard is dropped a
/// moment after the client has read the last byte.
const DEADLINE: Duration = Duration::from_secs(10);

/// An origin that answers `/fail` with 500 and anything else with 200.
async fn status_origin() -> support::Origin {
    support::origin(|req| async move {
        if req.uri().path() == "/fail" {
            support::text(StatusCode::INTERNAL_SERVER_ERROR, "failed")
        } else {
            support::text(StatusCode::OK, "ok")
        }
    })
    .await
}

/// Polls `read` until `done` holds for its value, or fails at the deadline.
async fn until<T: std::fmt::Debug>(
    what: &str,
    mut read: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let value = read().await;
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}; last seen {value:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn metrics(admin: SocketAddr) -> String {
    let (status, headers, body) = support::get(admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/plain; version=0.0.4");
    body
}

async fn stats(admin: SocketAddr) -> Value {
    let (status, _, body) = support::get(admin, "/stats").await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_str(&body).unwrap()
}

/// The `/stats` entry of one instance.
fn instance_stats(stats: &Value, service: &str, address: SocketAddr) -> Value {
    let services = stats["services"].as_array().unwrap();
    let service = services.iter().find(|s| s["name"] == service).unwrap();
    let instances = service["instances"].as_array().unwrap();
    let address = address.to_string();
    instances
        .iter()
        .find(|i| i["address"] == address.as_str())
        .unwrap()
        .clone()
}

#[tokio::test]
async fn metrics_move_with_requests_durations_and_upstream_errors() {
    let origin = status_origin().await;
    let refused = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let config = support::config(&format!(
        r#"
        [services.app]
        routes = [{{ path_prefix = "/" }}]
        instances = [{{ address = "{}" }}]
        [services.broken]
        routes = [{{ path_prefix = "/broken" }}]
        instances = [{{ address = "{refused}" }}]
        "#,
        origin.addr
    ));
    let tidegate = support::start(config).await;
    let (proxy, admin) = (tidegate.proxy_addr(), tidegate.admin_addr);
    let app = origin.addr.to_string();
    let broken = refused.to_string();
    let app_labels =
        |class: &'static str| [("service", "app"), ("instance", &app), class_label(class)];

    let before = metrics(admin).await;
    assert_eq!(
        sample(&before, "tidegate_requests_total", &app_labels("2xx")),
        Some(0.0),
        "every instance's counters are exported from the start"
    );

    for _ in 0..3 {
        support::get(proxy, "/ok").await;
    }
    support::get(proxy, "/fail").await;
    let (status, _, _) = support::get(proxy, "/broken").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);

    let after = until(
        "the app's four requests are counted",
        || metrics(admin),
        |m| {
            sample(
                m,
                "tidegate_request_duration_seconds_count",
                &[("instance", &app)],
            ) == Some(4.0)
        },
    )
    .await;
    assert_eq!(
        sample(&after, "tidegate_requests_total", &app_labels("2xx")),
        Some(3.0)
    );
    assert_eq!(
        sample(&after, "tidegate_requests_total", &app_labels("5xx")),
        Some(1.0)
    );
    let errors = "tidegate_upstream_errors_total";
    assert_eq!(
        sample(&after, errors, &[("instance", &app), ("class", "5xx")]),
        Some(1.0),
        "a 500 from the instance is an upstream error of class 5xx"
    );
    let connect = [
        ("service", "broken"),
        ("instance", &broken),
        ("class", "connect"),
    ];
    until(
        "the refused connection is an upstream error of class connect",
        || metrics(admin),
        |m| sample(m, errors, &connect) == Some(1.0),
    )
    .await;
    assert!(
        after.contains("tidegate_request_duration_seconds_bucket{"),
        "the duration is a histogram with buckets"
    );
}

fn class_label(class: &'static str) -> (&'static str, &'static str) {
    ("status_class", class)
}

#[tokio::test]
async fn stats_show_in_flight_requests_errors_and_latency_per_instance() {
    let held = support::held_origin().await;
    let origin = &held.origin;
    let tidegate = support::start(support::config_for(&[origin], "")).await;
    let (proxy, admin) = (tidegate.proxy_addr(), tidegate.admin_addr);

    let request = tokio::spawn(support::get(proxy, "/slow"));
    held.arrived.await.unwrap();
    let during = instance_stats(&stats(admin).await, "app", origin.addr);
    assert_eq!(
        during["in_flight"], 1,
        "a held request is in flight: {during}"
    );
    assert_eq!(during["requests"], 0, "it is not finished yet");
    assert_eq!(during["healthy"], true);

    held.release.send(()).unwrap();
    request.await.unwrap();
    support::get(proxy, "/fail").await;
    let after = until(
        "both requests finish",
        || async { instance_stats(&stats(admin).await, "app", origin.addr) },
        |i| i["requests"] == 2,
    )
    .await;

    assert_eq!(after["in_flight"], 0, "finished requests leave in_flight");
    assert_eq!(
        after["errors"]["5xx"], 1,
        "a 502 from the instance counts as 5xx"
    );
    for class in ["connect", "timeout", "reset"] {
        assert_eq!(after["errors"][class], 0, "no {class} errors happened");
    }
    let latency = &after["latency_ms"];
    let (p50, p95, p99) = (
        latency["p50"].as_f64().unwrap(),
        latency["p95"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
    );
    assert!(
        0.0 < p50 && p50 <= p95 && p95 <= p99,
        "quantiles are ordered: {latency}"
    );
}

#[tokio::test]
async fn health_and_ready_answer_and_unknown_paths_do_not() {
    let origin = status_origin().await;
    let tidegate = support::start(support::config_for(&[&origin], "")).await;
    let admin = tidegate.admin_addr;

    assert_eq!(support::get(admin, "/health").await.2, "ok\n");
    let (status, _, body) = support::get(admin, "/ready").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));
    assert_eq!(support::get(admin, "/nope").await.0, StatusCode::NOT_FOUND);

    let post = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{admin}/metrics"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(support::send(post).await.0, StatusCode::METHOD_NOT_ALLOWED);
}
