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
