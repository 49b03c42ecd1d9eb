//! Client connections over raw sockets: they do not outstay `timeouts.idle`
//! (neither one that never sends a request nor a keep-alive connection
//! between requests), pipelined requests are answered in order, and a
//! request tidegate's own HTTP/1.1 server hands to hyper (a chunked upload,
//! a malformed head) is served or refused on the same connection.

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

/// Sends `request` on a fresh connection, closes the sending side only after
/// the proxy has closed, and returns all it answered.
async fn exchange_raw(tidegate: &tidegate::app::Running, request: &[u8]) -> String {
    let mut client = TcpStream::connect(tidegate.proxy_addr()).await.unwrap();
    client.write_all(request).await.unwrap();
    String::from_utf8(until_closed(&mut client).await).unwrap()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (origin, tidegate) = idle_proxy().await;

    let answer = exchange_raw(
        &tidegate,
        b"GET /1 HTTP/1.1\r\nHost: app.example.test\r\n\r\n\
          HEAD /2 HTTP/1.1\r\nHost: app.example.test\r\n\r\n\
          GET /3 HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n",
    )
    .await;

    let body = format!("origin {}", origin.addr.port());
    assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{answer}");
    assert_eq!(
        answer.matches(&body).count(),
        2,
        "the HEAD answer has no body: {answer}"
    );
    assert!(answer.ends_with(&body), "{answer}");
    assert!(
        answer.contains("connection: close\r\n"),
        "the last answer says the connection closes: {answer}"
    );
}

#[tokio::test]
async fn a_chunked_upload_after_a_plain_request_is_served_on_the_same_connection() {
    let (origin, tidegate) = idle_proxy().await;

    // The first request is one tidegate's own HTTP/1.1 server takes; the
    // chunked one makes it hand the connection, and what it read, to hyper.
    let answer = exchange_raw(
        &tidegate,
        b"GET /1 HTTP/1.1\r\nHost: app.example.test\r\n\r\n\
          POST /2 HTTP/1.1\r\nHost: app.example.test\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n\
          GET /3 HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n",
    )
    .await;

    let body = format!("origin {}", origin.addr.port());
    assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{answer}");
    assert_eq!(answer.matches(&body).count(), 3, "{answer}");
}

#[tokio::test]
async fn a_malformed_request_after_a_good_one_gets_400_and_the_connection_closes() {
    let (_origin, tidegate) = idle_proxy().await;

    let answer = exchange_raw(
        &tidegate,
        b"GET /1 HTTP/1.1\r\nHost: app.example.test\r\n\r\nGET /2 HTTP/1.1\r\nBad Header: x\r\n\r\n",
    )
    .await;

    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("HTTP/1.1 400 Bad Request\r\n"),
        "the second head is refused: {answer}"
    );
}
