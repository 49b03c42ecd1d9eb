//! Client connections do not outstay `timeouts.idle`: neither a connection
//! that never sends a request nor a keep-alive connection between requests.

// A test that meets a surprise should stop right there, with the line that saw it.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on waiting for the proxy to close; far beyond the idle timeout.
const DEADLINE: Duration = Duration::from_secs(10);

async fn idle_proxy() -> (support::Origin, tidegate::app::Running) {
    let origin = support::named_origin().await;
    let config = support::config_for(&[&origin], "[timeouts]\nidle = \"200ms\"");
    let tidegate = support::start(config).await;
    (origin, tidegate)
}

/// Reads until the proxy closes the connection; returns what it sent.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut seen))
        .await
        .expect("the proxy closes an idle connection")
        .expect("the connection ends cleanly");
    seen
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed_after_the_idle_timeout() {
    let (_origin, tidegate) = idle_proxy().await;
    let mut silent = TcpStream::connect(tidegate.proxy_addr()).await.unwrap();

    let seen = until_closed(&mut silent).await;

    assert!(
        seen.is_empty(),
        "nothing is sent to a client that asked nothing"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (origin, tidegate) = idle_proxy().await;
    let mut client = TcpStream::connect(tidegate.proxy_addr()).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: app.example.test\r\n\r\n")
        .await
        .unwrap();

    let seen = until_closed(&mut client).await;

    let answer = String::from_utf8(seen).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with(&format!("origin {}", origin.addr.port())));
}
