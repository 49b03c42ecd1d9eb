//! The shortest path through tidegate: one request, one origin.

mod support;

use http::StatusCode;

#[tokio::test]
async fn forwards_a_request_to_its_only_instance() {
    let origin = support::named_origin().await;
    let tidegate = support::start(support::config_for(&[&origin], "")).await;

    let (status, headers, body) = support::get(tidegate.proxy_addr(), "/hello").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("origin {}", origin.addr.port()));
    assert!(
        headers.contains_key("x-request-id"),
        "every response carries a request id"
    );
    assert_eq!(origin.hits(), 1);
    assert!(tidegate.shutdown().await, "an idle proxy drains at once");
}

#[tokio::test]
async fn several_workers_share_the_listen_address() {
    let origin = support::named_origin().await;
    let mut config = support::config_for(&[&origin], "");
    config.proxy.workers = 2;
    let tidegate = support::start(config).await;

    // Each `get` opens its own connection; the kernel spreads them over the
    // workers' listeners, and every one must be served whichever takes it.
    for _ in 0..8 {
        let (status, _, body) = support::get(tidegate.proxy_addr(), "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!("origin {}", origin.addr.port()));
    }

    assert_eq!(origin.hits(), 8);
    assert!(tidegate.shutdown().await, "every worker drains and stops");
}
