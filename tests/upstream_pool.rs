//! The upstream client's per-thread keep-alive pool: connections are reused,
//! a connection the instance closed is replaced without failing the request,
//! and an unreachable instance is reported as a connect error.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tidegate::config::Timeouts;
use tidegate::proxy::body::RequestBody;
use tidegate::proxy::upstream::{self, UpstreamClient};
use tokio::net::TcpListener;

/// An origin that answers `ok` and counts the connections it accepted.
async fn counting_origin(keep_alive: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = listener.local_addr().expect("origin address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, accepted)
}

fn client() -> UpstreamClient {
    upstream::client(&Timeouts {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(5),
        idle: Duration::from_secs(60),
    })
}

/// The instance authority the client is given next to an origin-form request.
fn authority(addr: std::net::SocketAddr) -> Authority {
    Authority::try_from(addr.to_string().as_str()).expect("an address is an authority")
}

async fn get(client: &UpstreamClient, addr: std::net::SocketAddr) -> (StatusCode, Bytes) {
    let req = Request::builder()
        .uri("/path?q=1")
        .header("host", "origin")
        .body(RequestBody::Buffered(Full::new(Bytes::new())))
        .expect("a valid request");
    let response = client
        .request(&authority(addr), req)
        .await
        .expect("the origin answers");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the whole body arrives")
        .to_bytes();
    (status, body)
}

#[tokio::test]
async fn reuses_one_connection_for_sequential_requests() {
    let (addr, accepted) = counting_origin(true).await;
    let client = client();

    for _ in 0..5 {
        assert_eq!(
            get(&client, addr).await,
            (StatusCode::OK, Bytes::from_static(b"ok"))
        );
    }

    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "a finished keep-alive connection goes back to the pool and serves the next request"
    );
}

#[tokio::test]
async fn replaces_connections_the_instance_closed() {
    let (addr, accepted) = counting_origin(false).await;
    let client = client();

    for _ in 0..3 {
        assert_eq!(
            get(&client, addr).await,
            (StatusCode::OK, Bytes::from_static(b"ok"))
        );
    }

    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "each request needed a new connection because the origin closes every one"
    );
}

#[tokio::test]
async fn reports_an_unreachable_instance_as_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let req = Request::builder()
        .uri("/")
        .body(RequestBody::Buffered(Full::new(Bytes::new())))
        .expect("a valid request");

    let error = client()
        .request(&authority(addr), req)
        .await
        .expect_err("nothing listens");

    assert!(
        error.is_connect(),
        "a refused connection is a connect error: {error}"
    );
}
