//! `tidegate demo-backend`: the origin of the demo, the tests and the benchmarks.

// A test that meets a surprise should stop right there, with the line that saw it.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use tidegate::demo::{self, DemoOptions};
use tokio::net::TcpListener;

async fn demo_backend(options: DemoOptions) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = demo::serve(listener, options).await;
    });
    (addr, task)
}

#[tokio::test]
async fn answers_with_its_port_and_the_size_of_the_body_it_read() {
    let (addr, task) = demo_backend(DemoOptions::default()).await;

    let req = Request::post(format!("http://{addr}/upload"))
        .body(Full::new(Bytes::from(vec![b'x'; 12_345])))
        .unwrap();
    let (status, headers, body) = support::send(req).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        format!("ok from {}, received 12345 bytes\n", addr.port())
    );
    assert_eq!(headers["x-demo-port"], addr.port().to_string());
    task.abort();
}

#[tokio::test]
async fn a_fail_rate_of_one_fails_every_request_but_the_health_check() {
    let options = DemoOptions {
        fail_rate: 1.0,
        ..DemoOptions::default()
    };
    let (addr, task) = demo_backend(options).await;

    for _ in 0..3 {
        let (status, _, body) = support::get(addr, "/").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, "injected failure\n");
    }
    let (status, _, _) = support::get(addr, "/health").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "failures are injected into traffic, not probes"
    );
    task.abort();
}

#[test]
fn a_fail_rate_outside_zero_to_one_is_refused() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["demo-backend", "--port", "0", "--fail-rate", "1.5"])
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "--fail-rate: 1.5 must be between 0 and 1\n"
    );
}
