//! The proxy's upstream connections go back to the pool when a response body
//! ends: a run of requests through the proxy is carried by one connection to
//! the instance, and a body the client abandons half way closes its connection
//! without troubling the next request.

// A test that meets a surprise should stop right there, with the line that saw it.
#![allow(clippy::unwrap_used)]

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Size of the body `/big` streams, in 64 KiB chunks: far more than socket
/// buffers hold, so the proxy is still reading it when the client leaves.
const BIG_CHUNKS: usize = 256;

/// An origin that counts the connections that carried at least one request
/// other than a health probe: `/big` streams 16 MiB, anything else answers `ok`.
async fn origin() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&used);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let counted = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let counter = Arc::clone(&counter);
                    let counted = Arc::clone(&counted);
                    async move {
                        let path = req.uri().path().to_owned();
                        if path != "/health" && !counted.swap(true, Ordering::SeqCst) {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                        let body = if path == "/big" {
                            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                            let frames = (0..BIG_CHUNKS)
                                .map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone())));
                            StreamBody::new(futures_util::stream::iter(frames)).boxed()
                        } else {
                            Full::new(Bytes::from_static(b"ok")).boxed()
                        };
                        Ok::<_, Infallible>(Response::new(body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, used)
}

fn config(addr: std::net::SocketAddr) -> tidegate::config::Config {
    support::config(&format!(
        r#"
        [services.app]
        routes = [{{ path_prefix = "/" }}]
        instances = [{{ address = "{addr}" }}]
        "#
    ))
}

#[tokio::test]
async fn requests_one_after_another_share_one_upstream_connection() {
    let (addr, used) = origin().await;
    let tidegate = support::start(config(addr)).await;

    for _ in 0..10 {
        let (status, _, body) = support::get(tidegate.proxy_addr(), "/").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }

    assert_eq!(
        used.load(Ordering::SeqCst),
        1,
        "each ended body returned its connection to the pool for the next request"
    );
    tidegate.shutdown().await;
}

#[tokio::test]
async fn a_body_the_client_abandons_closes_its_connection_and_the_next_request_is_served() {
    let (addr, used) = origin().await;
    let tidegate = support::start(config(addr)).await;

    let response = support::client()
        .request(
            Request::get(format!("http://{}/big", tidegate.proxy_addr()))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data(), "the body starts streaming");
    drop(body);

    let (status, _, text) = support::get(tidegate.proxy_addr(), "/").await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(
        used.load(Ordering::SeqCst),
        2,
        "the abandoned body's connection was not lent again"
    );
    tidegate.shutdown().await;
}
