//! Every way a request can fail maps to a clear status with a short plain-text
//! body and an `x-tidegate-reason`: 404, 413, 431, 502, 503 and 504.

// A test that meets a surprise should stop right there, with the line that saw it.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpListener;

use support::Origin;

/// An address nothing listens on: bound once, then released.
async fn refused_addr() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn one_instance_config(addr: std::net::SocketAddr, extra: &str) -> tidegate::config::Config {
    support::config(&format!(
        r#"
        {extra}
        [services.app]
        routes = [{{ path_prefix = "/" }}]
        instances = [{{ address = "{addr}" }}]
        "#
    ))
}

#[tokio::test]
async fn refused_connection_is_502() {
    let addr = refused_addr().await;
    let tidegate = support::start(one_instance_config(addr, "")).await;

    let (status, headers, body) = support::get(tidegate.proxy_addr(), "/").await;

    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(headers["x-tidegate-reason"], "connect_failed");
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(body, format!("instance {addr} refused the connection\n"));
}

#[tokio::test]
async fn connection_closed_without_an_answer_is_502() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closer = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let tidegate = support::start(one_instance_config(addr, "")).await;

    let (status, headers, _) = support::get(tidegate.proxy_addr(), "/").await;

    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(headers["x-tidegate-reason"], "upstream_failed");
    closer.abort();
}

#[tokio::test]
async fn hanging_origin_is_504_after_the_request_timeout() {
    let origin = support::origin(|_req| std::future::pending()).await;
    let tidegate = support::start(one_instance_config(
        origin.addr,
        "[timeouts]\nrequest = \"200ms\"",
    ))
    .await;

    let (status, headers, body) = support::get(tidegate.proxy_addr(), "/").await;

    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(headers["x-tidegate-reason"], "upstream_timeout");
    assert_eq!(
        body,
        format!("instance {} did not answer in time\n", origin.addr)
    );
}

#[tokio::test]
async fn no_usable_instance_is_503_with_retry_after() {
    let origin = support::named_origin().await;
    let tidegate = support::start(support::config_for(&[&origin], "")).await;
    let service = tidegate
        .registry
        .service("app")
        .expect("configured service");
    for instance in service.table.load().instances() {
        instance.state.healthy.store(false, Ordering::Relaxed);
    }

    let (status, headers, body) = support::get(tidegate.proxy_addr(), "/").await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["x-tidegate-reason"], "no_instance");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body, "no healthy instance of service app\n");
    assert_eq!(origin.hits(), 0, "an unhealthy instance gets no request");
}

#[tokio::test]
async fn no_route_is_404() {
    let origin = support::named_origin().await;
    let config = support::config(&format!(
        r#"
        [services.api]
        routes = [{{ path_prefix = "/api" }}]
        instances = [{{ address = "{}" }}]
        "#,
        origin.addr
    ));
    let tidegate = support::start(config).await;

    let (status, headers, body) = support::get(tidegate.proxy_addr(), "/static/app.js").await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-tidegate-reason"], "no_route");
    assert_eq!(body, "no route for this host and path\n");
    assert_eq!(origin.hits(), 0);
}

/// An origin that reads the whole body and answers with its length.
async fn counting_origin() -> Origin {
    support::origin(|req| async move {
        match req.into_body().collect().await {
            Ok(body) => support::text(StatusCode::OK, body.to_bytes().len().to_string()),
            Err(_) => support::text(StatusCode::BAD_REQUEST, "body failed"),
        }
    })
    .await
}

const BODY_LIMIT: &str = "[limits]\nmax_body_bytes = 1024";

#[tokio::test]
async fn declared_body_over_the_limit_is_413_before_reaching_the_instance() {
    let origin = counting_origin().await;
    let tidegate = support::start(one_instance_config(origin.addr, BODY_LIMIT)).await;
    let url = format!("http://{}/upload", tidegate.proxy_addr());

    let at_limit = Request::post(&url).body(Full::new(Bytes::from(vec![b'a'; 1024])));
    let (status, _, body) = support::send(at_limit.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "a body of exactly the limit passes");
    assert_eq!(body, "1024");

    let over = Request::post(&url).body(Full::new(Bytes::from(vec![b'a'; 1025])));
    let (status, headers, body) = support::send(over.unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers["x-tidegate-reason"], "body_too_large");
    assert_eq!(body, "request body larger than 1024 bytes\n");
    assert_eq!(
        origin.hits(),
        1,
        "only the body within the limit reached the origin"
    );
}

#[tokio::test]
async fn chunked_body_growing_over_the_limit_is_413() {
    let origin = counting_origin().await;
    let tidegate = support::start(one_instance_config(origin.addr, BODY_LIMIT)).await;
    let (tx, body) = support::channel_body(4);
    let req = Request::post(format!("http://{}/upload", tidegate.proxy_addr()))
        .body(body)
        .unwrap();
    let response = tokio::spawn(support::client_with(false).request(req));

    for _ in 0..3 {
        tx.send(Bytes::from(vec![b'a'; 512])).await.unwrap();
    }
    drop(tx);

    let response = response.await.unwrap().expect("the proxy answers");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers()["x-tidegate-reason"], "body_too_large");
    let service = tidegate.registry.service("app").unwrap();
    let instance = service.table.load().instances()[0].clone();
    assert_eq!(
        instance
            .state
            .errors
            .iter()
            .map(|e| e.load(Ordering::Relaxed))
            .sum::<u64>(),
        0,
        "a client's oversized body is not the instance's failure"
    );
}

#[tokio::test]
async fn request_head_over_the_header_limit_is_431_on_http1_and_http2() {
    let origin = support::named_origin().await;
    let tidegate = support::start(one_instance_config(
        origin.addr,
        "[limits]\nmax_header_bytes = 8192",
    ))
    .await;

    for h2 in [false, true] {
        let req = Request::get(format!("http://{}/", tidegate.proxy_addr()))
            .header("x-big", "b".repeat(16 * 1024))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = support::client_with(h2).request(req).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "an oversized head is refused (HTTP/2: {h2})"
        );
    }
    assert_eq!(origin.hits(), 0);

    let (status, _, _) = support::get(tidegate.proxy_addr(), "/").await;
    assert_eq!(status, StatusCode::OK, "a normal head still passes");
}
