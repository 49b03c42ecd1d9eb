//! The upstream client's per-thread keep-alive pool: connections are reused,
//! a connection the instance closed is replaced without failing the request,
//! an unreachable instance is reported as a connect error, and a request
//! waiting for a new connection is counted as queued until it has one.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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

use support::{authority, upstream_client as client};

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

#[tokio::test]
async fn a_request_waiting_for_a_connection_is_counted_as_queued_until_it_gives_up() {
    // A listener that never accepts, with its accept queue filled: the kernel
    // drops further SYNs, so the next connect waits until its timeout.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    socket.listen(0).expect("listen");
    let addr = socket
        .local_addr()
        .expect("address")
        .as_socket()
        .expect("an inet address");
    let mut held = Vec::new();
    // A loopback connect completes in microseconds while the queue has room;
    // the first one still pending after a second found it full.
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(error)) => panic!("connect to the full listener failed: {error}"),
            Err(_pending) => break,
        }
    }
    assert!(held.len() < 16, "the accept queue filled up");

    let queued = Arc::new(AtomicU32::new(0));
    let client = upstream::client(&Timeouts {
        connect: Duration::from_secs(1),
        request: Duration::from_secs(5),
        idle: Duration::from_secs(60),
    });
    let waiting = Arc::clone(&queued);
    let request = tokio::spawn(async move {
        let req = Request::builder()
            .uri("/")
            .body(RequestBody::Buffered(Full::new(Bytes::new())))
            .expect("a valid request");
        client
            .request_counting(&authority(addr), req, &waiting)
            .await
    });

    let mut seen = false;
    for _ in 0..200 {
        if queued.load(Ordering::SeqCst) == 1 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "the request counts as queued while its connect waits");
    let error = request
        .await
        .expect("the request task")
        .expect_err("the connect never completes");
    assert!(error.is_connect(), "a connect that timed out: {error}");
    assert_eq!(
        queued.load(Ordering::SeqCst),
        0,
        "the count is released when the wait ends"
    );
    drop(held);
}
