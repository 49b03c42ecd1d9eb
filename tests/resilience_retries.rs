//! Retries: only safe requests, each on another instance, and never more than
//! the retry budget allows, even when every instance is down.

// A failed setup step should fail the test loudly; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use support::faults;

const RETRY_ONCE: &str = r#"
    [services.app.load_balancer]
    max_retries = 1
    circuit_breaker_enabled = false
    health_check_interval_seconds = 3600
    [services.app.resilience]
    consecutive_failures = 1000
"#;

fn request(method: Method, addr: std::net::SocketAddr, body: &'static str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("http://{addr}/"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn retried_get_lands_on_a_healthy_instance_and_succeeds() {
    let (bad, _switch) = faults::switchable(true).await;
    let good = support::named_origin().await;
    let tidegate =
        support::start(faults::config_for_addrs(&[bad.addr, good.addr], RETRY_ONCE)).await;

    for _ in 0..6 {
        let (status, _, body) = support::get(tidegate.proxy_addr(), "/").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a 500 on a GET is retried elsewhere"
        );
        assert_eq!(body, format!("origin {}", good.addr.port()));
    }
    assert!(
        bad.hits() >= 3,
        "the failing instance was tried first half the time"
    );
}

#[tokio::test]
async fn small_put_body_is_replayed_on_the_retry() {
    let (bad, _switch) = faults::switchable(true).await;
    let echo = support::origin(|req| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        support::text(StatusCode::OK, body)
    })
    .await;
    let tidegate =
        support::start(faults::config_for_addrs(&[bad.addr, echo.addr], RETRY_ONCE)).await;

    let (status, _, body) =
        support::send(request(Method::PUT, tidegate.proxy_addr(), "payload")).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "payload", "the buffered body is sent again, whole");
    assert_eq!(bad.hits(), 1);
}

#[tokio::test]
async fn post_with_a_streamed_body_is_never_retried() {
    let (bad, _switch) = faults::switchable(true).await;
    let good = support::named_origin().await;
    let tidegate =
        support::start(faults::config_for_addrs(&[bad.addr, good.addr], RETRY_ONCE)).await;

    let mut server_errors = 0;
    for _ in 0..6 {
        let (status, _, _) =
            support::send(request(Method::POST, tidegate.proxy_addr(), "order")).await;
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            server_errors += 1;
        }
    }

    assert_eq!(
        server_errors, 3,
        "every POST that reached the bad instance got its 500"
    );
    assert_eq!(
        bad.hits() + good.hits(),
        6,
        "one try per POST: none was retried"
    );
}

#[tokio::test]
async fn retries_stay_within_the_budget_during_a_total_outage() {
    let mut origins = Vec::new();
    for _ in 0..4 {
        origins.push(faults::switchable(true).await);
    }
    let extra = r#"
        [services.app.load_balancer]
        max_retries = 3
        circuit_breaker_enabled = false
        health_check_interval_seconds = 3600
        [services.app.resilience]
        consecutive_failures = 1000
        retry_budget_percent = 20
        retry_min_per_second = 1
    "#;
    let addrs: Vec<_> = origins.iter().map(|(o, _)| o.addr).collect();
    let tidegate = support::start(faults::config_for_addrs(&addrs, extra)).await;

    let requests = 50;
    for _ in 0..requests {
        let (status, _, _) = support::get(tidegate.proxy_addr(), "/").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    let attempts: u64 = origins.iter().map(|(o, _)| o.hits()).sum();
    let retries = attempts - requests;
    // 20% of 50 requests, plus a floor of 1 per second over the 10 s window.
    let budget = requests * 20 / 100 + 10;
    assert!(retries > 0, "the budget allows some retries");
    assert!(
        retries <= budget,
        "{retries} retries exceed the budget of {budget}; without it there would be {}",
        requests * 3
    );
}
