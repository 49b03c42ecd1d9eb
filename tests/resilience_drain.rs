//! Draining: an instance finishes what it has and gets nothing new; the admin
//! API drains and undrains only with the configured bearer token.

// A failed setup step should fail the test loudly; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::faults;
use tidegate::health;
use tokio::sync::Semaphore;

const TOKEN: &str = "a-long-enough-admin-token";

const QUIET: &str = r#"
    [services.app.load_balancer]
    health_check_interval_seconds = 3600
"#;

fn admin_post(
    admin: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Request<Full<Bytes>> {
    let mut req = Request::post(format!("http://{admin}{path}"));
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    req.body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test]
async fn drained_instance_finishes_its_request_and_gets_no_new_ones() {
    let gate = Arc::new(Semaphore::new(0));
    let held = {
        let gate = Arc::clone(&gate);
        support::origin(move |_req| {
            let gate = Arc::clone(&gate);
            async move {
                let _permit = gate.acquire().await.unwrap();
                support::text(StatusCode::OK, "finished")
            }
        })
        .await
    };
    let other = support::named_origin().await;
    let tidegate = support::start(support::config_for(&[&held, &other], QUIET)).await;
    let proxy = tidegate.proxy_addr();
    let instance = tidegate.registry.services()[0].table.load().instances()[0].clone();

    let in_flight = tokio::spawn(async move { support::get(proxy, "/slow").await });
    assert!(
        faults::eventually(Duration::from_secs(5), || instance.in_flight() == 1).await,
        "the first request is in flight on the held instance"
    );
    let draining = {
        let instance = Arc::clone(&instance);
        tokio::spawn(async move { health::drain(&instance, Duration::from_secs(30)).await })
    };
    assert!(
        faults::eventually(Duration::from_secs(5), || !instance.is_eligible()).await,
        "draining takes the instance out of rotation"
    );

    for _ in 0..6 {
        let (status, _, body) = support::get(proxy, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            format!("origin {}", other.addr.port()),
            "no new request goes to a draining instance"
        );
    }
    gate.add_permits(1);

    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "finished"),
        "the in-flight request completes"
    );
    assert!(
        draining.await.unwrap(),
        "the drain ends cleanly when the last request finishes"
    );
    assert_eq!(held.hits(), 1);
}

#[tokio::test]
async fn admin_writes_are_refused_without_a_configured_token() {
    let origin = support::named_origin().await;
    let tidegate = support::start(support::config_for(&[&origin], QUIET)).await;
    let path = format!("/admin/instances/{}/drain", origin.addr);

    let (status, _, body) =
        support::send(admin_post(tidegate.admin_addr, &path, Some(TOKEN))).await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains("admin.token"),
        "the refusal says what to set: {body}"
    );
    let instance = tidegate.registry.services()[0].table.load().instances()[0].clone();
    assert!(instance.is_eligible(), "a refused drain changes nothing");
}

#[tokio::test]
async fn admin_drains_and_undrains_with_the_right_token_only() {
    let origin = support::named_origin().await;
    let mut config = support::config_for(&[&origin], QUIET);
    config.admin.token = Some(TOKEN.into());
    let tidegate = support::start(config).await;
    let admin = tidegate.admin_addr;
    let drain = format!("/admin/instances/{}/drain", origin.addr);
    let instance = tidegate.registry.services()[0].table.load().instances()[0].clone();

    let (status, headers, _) = support::send(admin_post(admin, &drain, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token");
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, _) = support::send(admin_post(
        admin,
        &drain,
        Some("wrong-token-of-some-length"),
    ))
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong token");
    assert!(instance.is_eligible());

    let (status, _, _) = support::send(admin_post(admin, &drain, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(!instance.is_eligible(), "drained at once");
    let (status, _, _) = support::get(tidegate.proxy_addr(), "/").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the only instance is draining"
    );

    let undrain = format!("/admin/instances/{}/undrain", origin.addr);
    let (status, _, _) = support::send(admin_post(admin, &undrain, Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(instance.is_eligible(), "undrain puts it back");

    let unknown = support::send(admin_post(
        admin,
        "/admin/instances/nope/drain",
        Some(TOKEN),
    ))
    .await;
    assert_eq!(unknown.0, StatusCode::NOT_FOUND);
}
