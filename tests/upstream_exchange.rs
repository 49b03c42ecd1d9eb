//! The direct HTTP/1.1 exchange with instances, over real sockets: framing of
//! answers (length, chunked with extensions and trailers, until close, HEAD,
//! interim 1xx), request bodies, keep-alive reuse, a pooled connection the
//! instance closed being replaced without failing the request, and the
//! deadline of an exchange.

mod support;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tidegate::proxy::upstream::UpstreamClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted origin does after answering one request.
#[derive(Clone, Copy, PartialEq)]
enum After {
    /// Waits for the next request on the same connection.
    KeepOpen,
    /// Closes the connection.
    Close,
}

/// A raw-TCP origin: for the n-th request it reads on any connection it writes
/// `answers[n % len]`, then keeps the connection or closes it. Counts accepted
/// connections; the request bodies it read are sent back on `bodies`.
struct Scripted {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    bodies: tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

async fn scripted(answers: Vec<&'static [u8]>, after: After) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = listener.local_addr().expect("origin address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let served = Arc::new(AtomicUsize::new(0));
    let (tx, bodies) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let (answers, served, tx) = (answers.clone(), Arc::clone(&served), tx.clone());
            tokio::spawn(async move {
                let mut stream = stream;
                while let Some((head, body)) = read_request(&mut stream).await {
                    let _ = tx.send((head, body));
                    let n = served.fetch_add(1, Ordering::SeqCst);
                    if stream.write_all(answers[n % answers.len()]).await.is_err() {
                        return;
                    }
                    if after == After::Close {
                        return;
                    }
                }
            });
        }
    });
    Scripted {
        addr,
        accepted,
        bodies,
    }
}

/// Reads one request head and its `Content-Length` body; `None` at the end.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).expect("an ASCII head");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse::<usize>().expect("a length"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.ok()?;
    Some((head, body))
}

use support::{authority, upstream_client as client};

/// Sends one request by the direct exchange and reads the whole answer.
async fn exchange(
    client: &UpstreamClient,
    addr: std::net::SocketAddr,
    method: Method,
    body: &'static [u8],
) -> Result<(StatusCode, http::HeaderMap, Bytes), String> {
    let (parts, ()) = Request::builder()
        .method(method)
        .uri("/path?q=1")
        .header("host", "origin")
        .body(())
        .expect("a valid request")
        .into_parts();
    let waiting = AtomicU32::new(0);
    let response = client
        .exchange(
            &authority(addr),
            &parts,
            None,
            &Bytes::from_static(body),
            &waiting,
            deadline(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let (mut head, mut body) = response.into_parts();
    // The header lines the instance wrote, in the map like the proxy's own.
    if let Some(fields) = body.take_fields() {
        fields.merge_into(&mut head.headers);
    }
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((head.status, head.headers, body))
}

/// A deadline no healthy local origin comes near.
fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(10)
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test]
async fn sequential_exchanges_share_one_connection() {
    let origin = scripted(vec![OK], After::KeepOpen).await;
    let client = client();
    for _ in 0..5 {
        let (status, _, body) = exchange(&client, origin.addr, Method::GET, b"")
            .await
            .expect("the origin answers");
        assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"ok"[..]));
    }
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_instance_closed_is_replaced_without_failing_the_request() {
    // Answers as if the connection stayed open, then closes it: the pooled
    // connection is dead by the next request, found stale or failing unanswered.
    let origin = scripted(vec![OK], After::Close).await;
    let client = client();
    for _ in 0..3 {
        let (status, _, _) = exchange(&client, origin.addr, Method::GET, b"")
            .await
            .expect("the request is sent again on a fresh connection");
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn chunked_answers_are_decoded_and_leave_the_connection_reusable() {
    let chunked: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
        5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nx-checksum: 1\r\n\r\n";
    let origin = scripted(vec![chunked, OK], After::KeepOpen).await;
    let client = client();
    let (status, headers, body) = exchange(&client, origin.addr, Method::GET, b"")
        .await
        .expect("a chunked answer");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_ref(), b"hello, world");
    assert!(
        headers.get("transfer-encoding").is_none(),
        "the transfer coding is hop-by-hop: the proxy frames its own answer"
    );
    let (_, _, body) = exchange(&client, origin.addr, Method::GET, b"")
        .await
        .expect("the next answer on the same connection");
    assert_eq!(body.as_ref(), b"ok");
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_answer_without_length_runs_until_close_and_is_not_reused() {
    let origin = scripted(vec![b"HTTP/1.0 200 OK\r\n\r\nall of it"], After::Close).await;
    let client = client();
    for _ in 0..2 {
        let (_, _, body) = exchange(&client, origin.addr, Method::GET, b"")
            .await
            .expect("a close-delimited answer");
        assert_eq!(body.as_ref(), b"all of it");
    }
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn head_answers_have_no_body_and_interim_answers_are_skipped() {
    let head: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n";
    let interim: &[u8] =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone";
    let origin = scripted(vec![head, interim], After::KeepOpen).await;
    let client = client();
    let (status, headers, body) = exchange(&client, origin.addr, Method::HEAD, b"")
        .await
        .expect("a HEAD answer");
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    assert_eq!(headers["content-length"], "1000");
    let (status, _, body) = exchange(&client, origin.addr, Method::GET, b"")
        .await
        .expect("the final answer after 100 Continue");
    assert_eq!((status, body.as_ref()), (StatusCode::CREATED, &b"done"[..]));
    assert_eq!(origin.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn request_bodies_go_out_with_their_length() {
    let mut origin = scripted(vec![OK], After::KeepOpen).await;
    let client = client();
    exchange(&client, origin.addr, Method::POST, b"payload")
        .await
        .expect("the origin answers");
    exchange(&client, origin.addr, Method::POST, b"")
        .await
        .expect("the origin answers");
    let (head, body) = origin.bodies.recv().await.expect("the first request");
    assert!(head.starts_with("POST /path?q=1 HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("content-length: 7\r\n"), "{head}");
    assert_eq!(body, b"payload");
    let (head, _) = origin.bodies.recv().await.expect("the second request");
    assert!(
        head.contains("content-length: 0\r\n"),
        "an empty POST still says its length: {head}"
    );
}

#[tokio::test]
async fn a_malformed_answer_is_an_error_after_connecting() {
    let origin = scripted(vec![b"SMTP ready\r\n\r\n"], After::KeepOpen).await;
    let (parts, ()) = Request::get("/").body(()).expect("request").into_parts();
    let waiting = AtomicU32::new(0);
    let error = client()
        .exchange(
            &authority(origin.addr),
            &parts,
            None,
            &Bytes::new(),
            &waiting,
            deadline(),
        )
        .await
        .expect_err("not HTTP");
    assert!(!error.is_connect(), "the instance was reached: {error}");
}

#[tokio::test]
async fn an_instance_that_never_answers_times_out_and_its_connection_is_dropped() {
    // The first answer never comes: the origin reads the request and waits.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = listener.local_addr().expect("origin address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                while read_request(&mut stream).await.is_some() {
                    if n == 0 {
                        std::future::pending::<()>().await;
                    }
                    if stream.write_all(OK).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let client = client();
    let (parts, ()) = Request::get("/").body(()).expect("request").into_parts();
    let waiting = AtomicU32::new(0);
    let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(200);
    let error = client
        .exchange(
            &authority(addr),
            &parts,
            None,
            &Bytes::new(),
            &waiting,
            soon,
        )
        .await
        .expect_err("the origin never answers");
    assert!(error.is_timeout(), "{error}");
    let (status, _, _) = exchange(&client, addr, Method::GET, b"")
        .await
        .expect("the next request gets a fresh connection");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the connection of the timed-out exchange is not reused"
    );
}
