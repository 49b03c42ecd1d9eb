//! What a client gets when an instance refuses, resets, hangs or drips, and
//! that retries carry safe requests to a healthy instance instead.

// A failed setup step should fail the test loudly; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use support::faults::{self, config_for_addrs};

/// Short timeouts, no retries unless a test asks, probes out of the way.
const NO_RETRIES: &str = r#"
    [services.app.load_balancer]
    max_retries = 0
    health_check_interval_seconds = 3600
    [timeouts]
    request = "300ms"
"#;

const RETRIES: &str = r#"
    [services.app.load_balancer]
    max_retries = 2
    health_check_interval_seconds = 3600
    [timeouts]
    request = "300ms"
"#;

fn reason(headers: &http::HeaderMap) -> &str {
    headers
        .get("x-tidegate-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn refused_connection_answers_502() {
    let refused = faults::refusing_addr().await;
    let tidegate = support::start(config_for_addrs(&[refused], NO_RETRIES)).await;

    let (status, headers, _) = support::get(tidegate.proxy_addr(), "/").await;

    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(reason(&headers), "connect_failed");
}

#[tokio::test]
async fn refused_connection_is_retried_on_a_healthy_instance() {
    let refused = faults::refusing_addr().await;
    let good = support::named_origin().await;
    let tidegate = support::start(config_for_addrs(&[refused, good.addr], RETRIES)).await;

    for _ in 0..4 {
        let (status, _, body) = support::get(tidegate.proxy_addr(), "/").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a refused try moves to the healthy instance"
        );
        assert_eq!(body, format!("origin {}", good.addr.port()));
    }
}

#[tokio::test]
async fn reset_before_the_response_head_answers_502() {
    let reset = faults::resetting_before_head().await;
    let tidegate = support::start(config_for_addrs(&[reset.addr], NO_RETRIES)).await;

    let (status, headers, _) = support::get(tidegate.proxy_addr(), "/").await;

    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(reason(&headers), "upstream_failed");
    assert_eq!(reset.hits(), 1);
}

#[tokio::test]
async fn reset_get_is_retried_on_a_healthy_instance() {
    let reset = faults::resetting_before_head().await;
    let good = support::named_origin().await;
    let tidegate = support::start(config_for_addrs(&[reset.addr, good.addr], RETRIES)).await;

    let (status, _, body) = support::get(tidegate.proxy_addr(), "/").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("origin {}", good.addr.port()));
    assert_eq!(
        reset.hits(),
        1,
        "the first try went to the resetting instance"
    );
}

#[tokio::test]
async fn reset_mid_body_cuts_the_response_and_counts_a_reset() {
    let reset = faults::resetting_mid_body().await;
    let tidegate = support::start(config_for_addrs(&[reset.addr], NO_RETRIES)).await;

    let req = http::Request::get(format!("http://{}/", tidegate.proxy_addr()))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = support::client().request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the head arrived intact");
    assert!(
        response.into_body().collect().await.is_err(),
        "a body cut by the instance must not look complete to the client"
    );

    let instance = tidegate.registry.services()[0].table.load().instances()[0].clone();
    let resets = || {
        instance.state.errors[tidegate::balance::ErrorClass::Reset as usize].load(Ordering::SeqCst)
    };
    assert!(
        faults::eventually(Duration::from_secs(5), || resets() == 1).await,
        "the cut body is counted as a reset of the instance"
    );
}

#[tokio::test]
async fn hanging_instance_answers_504_after_the_request_timeout() {
    let hang = faults::hanging().await;
    let tidegate = support::start(config_for_addrs(&[hang.addr], NO_RETRIES)).await;

    let (status, headers, _) = support::get(tidegate.proxy_addr(), "/").await;

    assert_eq!(
        status,
        StatusCode::GATEWAY_TIMEOUT,
        "the request timeout fired"
    );
    assert_eq!(reason(&headers), "upstream_timeout");
}

#[tokio::test]
async fn hanging_instance_is_retried_on_another_after_its_timeout() {
    let hang = faults::hanging().await;
    let good = support::named_origin().await;
    let tidegate = support::start(config_for_addrs(&[hang.addr, good.addr], RETRIES)).await;

    let (status, _, body) = support::get(tidegate.proxy_addr(), "/").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("origin {}", good.addr.port()));
    assert_eq!(hang.hits(), 1);
}

#[tokio::test]
async fn dripping_instance_answers_504() {
    let drip = faults::dripping(Duration::from_millis(50)).await;
    let tidegate = support::start(config_for_addrs(&[drip.addr], NO_RETRIES)).await;

    let (status, _, _) = support::get(tidegate.proxy_addr(), "/").await;

    assert_eq!(
        status,
        StatusCode::GATEWAY_TIMEOUT,
        "a head dripping past the request timeout is a timeout"
    );
}

#[tokio::test]
async fn open_breaker_answers_503_breaker_open() {
    let (bad, _switch) = faults::switchable(true).await;
    let extra = r#"
        [services.app.load_balancer]
        max_retries = 0
        health_check_interval_seconds = 3600
        [services.app.resilience]
        consecutive_failures = 1000
        breaker_min_requests = 5
        breaker_failure_percent = 50
        breaker_open_for = "5m"
    "#;
    let tidegate = support::start(config_for_addrs(&[bad.addr], extra)).await;

    for _ in 0..5 {
        let (status, _, _) = support::get(tidegate.proxy_addr(), "/").await;
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "the instance's own 500 passes through"
        );
    }
    let (status, headers, _) = support::get(tidegate.proxy_addr(), "/").await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reason(&headers), "breaker_open", "the 503 says why");
    assert_eq!(
        bad.hits(),
        5,
        "an open breaker sends nothing to the instance"
    );
}

#[tokio::test]
async fn over_max_in_flight_answers_503_at_once() {
    let hang = faults::hanging().await;
    let extra = r#"
        [services.app.load_balancer]
        max_retries = 0
        health_check_interval_seconds = 3600
        [services.app.resilience]
        max_in_flight = 1
        [timeouts]
        request = "30s"
    "#;
    let tidegate = support::start(config_for_addrs(&[hang.addr], extra)).await;
    let proxy: SocketAddr = tidegate.proxy_addr();
    let held = tokio::spawn(async move { support::get(proxy, "/held").await });
    assert!(
        faults::eventually(Duration::from_secs(5), || hang.hits() == 1).await,
        "the first request reaches the hanging instance"
    );

    let (status, headers, _) = support::get(proxy, "/").await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reason(&headers), "max_in_flight");
    held.abort();
}
