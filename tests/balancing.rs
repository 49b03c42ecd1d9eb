//! Balancing through the proxy, with real origins on loopback.

mod support;

use std::collections::HashMap;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::Full;

/// Origins with these weights behind one service with these balancer settings.
async fn service(
    weights: &[u32],
    balancer: &str,
) -> (Vec<support::Origin>, tidegate::app::Running) {
    let mut origins = Vec::new();
    for _ in weights {
        origins.push(support::named_origin().await);
    }
    let instances: Vec<String> = origins
        .iter()
        .zip(weights)
        .map(|(o, w)| format!("{{ address = \"{}\", weight = {w} }}", o.addr))
        .collect();
    let config = support::config(&format!(
        r#"
        [services.app]
        routes = [{{ path_prefix = "/" }}]
        instances = [{}]
        [services.app.load_balancer]
        {balancer}
        "#,
        instances.join(", ")
    ));
    (origins, support::start(config).await)
}

async fn get_with_cookie(
    addr: std::net::SocketAddr,
    cookie: Option<&str>,
) -> (StatusCode, http::HeaderMap, String) {
    let mut req = Request::get(format!("http://{addr}/"));
    if let Some(cookie) = cookie {
        req = req.header(header::COOKIE, cookie);
    }
    support::send(req.body(Full::new(Bytes::new())).expect("a valid request")).await
}

#[tokio::test]
async fn weighted_spreads_requests_across_origins_exactly_as_configured() {
    let (origins, tidegate) = service(&[3, 2, 1], r#"algorithm = "weighted""#).await;
    let mut by_body: HashMap<String, u32> = HashMap::new();
    for _ in 0..60 {
        let (status, _, body) = support::get(tidegate.proxy_addr(), "/").await;
        assert_eq!(status, StatusCode::OK);
        *by_body.entry(body).or_default() += 1;
    }
    let hits: Vec<u64> = origins.iter().map(|o| o.hits()).collect();
    assert_eq!(
        hits,
        vec![30, 20, 10],
        "weights 3/2/1 give 30/20/10 of 60 requests"
    );
    assert_eq!(by_body.len(), 3, "every origin answered");
    assert!(tidegate.shutdown().await);
}

#[tokio::test]
async fn round_robin_gives_each_origin_an_equal_share() {
    let (origins, tidegate) = service(&[1, 1, 1, 1], r#"algorithm = "round_robin""#).await;
    for _ in 0..40 {
        let (status, _, _) = support::get(tidegate.proxy_addr(), "/").await;
        assert_eq!(status, StatusCode::OK);
    }
    let hits: Vec<u64> = origins.iter().map(|o| o.hits()).collect();
    assert_eq!(hits, vec![10; 4], "rotation over four origins");
    assert!(tidegate.shutdown().await);
}

#[tokio::test]
async fn session_affinity_pins_a_client_to_one_origin_through_the_proxy() {
    let (_origins, tidegate) = service(
        &[1, 1, 1],
        "algorithm = \"round_robin\"\nsession_affinity = true",
    )
    .await;
    let (status, headers, first_body) = get_with_cookie(tidegate.proxy_addr(), None).await;
    assert_eq!(status, StatusCode::OK);
    let set_cookie = headers
        .get(header::SET_COOKIE)
        .expect("a new client receives an affinity cookie")
        .to_str()
        .expect("ascii cookie");
    let pair = set_cookie.split(';').next().expect("name=value").to_owned();
    assert!(
        pair.starts_with("tidegate_app="),
        "cookie named after the service: {pair}"
    );

    for _ in 0..9 {
        let (status, headers, body) = get_with_cookie(tidegate.proxy_addr(), Some(&pair)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body, first_body,
            "the cookie keeps the client on its origin"
        );
        assert!(
            !headers.contains_key(header::SET_COOKIE),
            "a valid cookie is not re-issued"
        );
    }

    let forged = "tidegate_app=ffffffffffffffffffffffffffffffff";
    let (_, headers, _) = get_with_cookie(tidegate.proxy_addr(), Some(forged)).await;
    assert!(
        headers.contains_key(header::SET_COOKIE),
        "a forged cookie is replaced"
    );
    assert!(tidegate.shutdown().await);
}

/// The `name=value` pair of a response's affinity cookie.
fn affinity_pair(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(header::SET_COOKIE)?.to_str().ok()?;
    value.split(';').next().map(str::to_owned)
}

#[tokio::test]
async fn a_client_pinned_to_a_draining_instance_moves_and_is_pinned_again() {
    let (origins, tidegate) = service(
        &[1, 1],
        "algorithm = \"round_robin\"\nsession_affinity = true",
    )
    .await;
    let proxy = tidegate.proxy_addr();
    let (_, headers, first_body) = get_with_cookie(proxy, None).await;
    let pinned = affinity_pair(&headers).expect("a new client is pinned");
    let pinned_origin = origins
        .iter()
        .find(|o| first_body == format!("origin {}", o.addr.port()))
        .expect("one of the origins answered");

    let service = &tidegate.registry.services()[0];
    let instance = service
        .table
        .load()
        .instances()
        .iter()
        .find(|i| i.addr() == pinned_origin.addr)
        .cloned()
        .expect("the pinned origin is an instance");
    assert!(tidegate::health::drain::begin(&instance));

    let (status, headers, body) = get_with_cookie(proxy, Some(&pinned)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(body, first_body, "a draining instance gets no new request");
    let repinned = affinity_pair(&headers).expect("the client is pinned again");
    assert_ne!(repinned, pinned, "the new cookie names the other instance");

    let (_, headers, again) = get_with_cookie(proxy, Some(&repinned)).await;
    assert_eq!(again, body, "the new cookie sticks");
    assert!(!headers.contains_key(header::SET_COOKIE));
    assert!(tidegate.shutdown().await);
}

#[tokio::test]
async fn a_retry_away_from_a_failing_pinned_instance_pins_the_client_to_the_one_that_answered() {
    let (bad, switch) = support::faults::switchable(false).await;
    let good = support::named_origin().await;
    let config = support::config(&format!(
        r#"
        [services.app]
        routes = [{{ path_prefix = "/" }}]
        instances = [{{ address = "{}" }}, {{ address = "{}" }}]
        [services.app.load_balancer]
        session_affinity = true
        max_retries = 1
        "#,
        bad.addr, good.addr
    ));
    let tidegate = support::start(config).await;
    let proxy = tidegate.proxy_addr();

    // Find the cookie that pins a client to the origin about to fail.
    let mut pinned_to_bad = None;
    for _ in 0..8 {
        let (_, headers, body) = get_with_cookie(proxy, None).await;
        if body == format!("origin {}", bad.addr.port()) {
            pinned_to_bad = affinity_pair(&headers);
            break;
        }
    }
    let pinned_to_bad = pinned_to_bad.expect("round robin reaches both origins");

    switch.set_bad(true);
    let (status, headers, body) = get_with_cookie(proxy, Some(&pinned_to_bad)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the GET is retried on the other origin"
    );
    assert_eq!(body, format!("origin {}", good.addr.port()));
    let repinned = affinity_pair(&headers).expect("the client is pinned to the answering origin");
    assert_ne!(repinned, pinned_to_bad);
    assert!(tidegate.shutdown().await);
}
