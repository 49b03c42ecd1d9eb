//! Header rewriting in both directions: hop-by-hop headers removed (including
//! every header named in `Connection`), forwarding headers added, `Host` kept,
//! and a request id propagated or generated.

// A test that meets a surprise should stop right there, with the line that saw it.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;

use http::{HeaderMap, StatusCode};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{Origin, OriginResponse};

/// The headers an origin received, one `name: value` line each, in its answer body.
fn echo_headers(req: &http::Request<Incoming>) -> String {
    let mut lines = String::new();
    for (name, value) in req.headers() {
        lines += &format!("{}: {}\n", name, value.to_str().unwrap_or("<binary>"));
    }
    lines
}

/// An origin that echoes the request headers and answers with hop-by-hop
/// headers of its own, which the proxy must not pass on.
async fn echo_origin() -> Origin {
    support::origin(|req| async move {
        let mut response: OriginResponse = support::text(StatusCode::OK, echo_headers(&req));
        let h = response.headers_mut();
        h.insert("connection", "x-origin-secret".parse().unwrap());
        h.insert("x-origin-secret", "for the proxy only".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("x-end-to-end", "kept".parse().unwrap());
        response
    })
    .await
}

/// One request written byte for byte, so that no client library rewrites its headers.
/// Returns the response head (lower-cased names) and body.
async fn raw_exchange(proxy: SocketAddr, head: &str) -> (String, HeaderMap, String) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).expect("the answer is text");
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .expect("a complete response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_owned();
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').expect("a header line");
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            value.trim().parse().unwrap(),
        );
    }
    (status_line, headers, body.to_owned())
}

/// Sends `head` through a fresh tidegate to an echo origin.
async fn through_proxy(head: &str) -> (String, HeaderMap, String) {
    let origin = echo_origin().await;
    let tidegate = support::start(support::config_for(&[&origin], "")).await;
    raw_exchange(tidegate.proxy_addr(), head).await
}

/// The value of a header line in an echoed header list, if present.
fn seen<'a>(echo: &'a str, name: &str) -> Vec<&'a str> {
    echo.lines()
        .filter_map(|line| line.split_once(": "))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .collect()
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_in_both_directions() {
    let (status, response_headers, echo) = through_proxy(
        "GET /h HTTP/1.1\r\n\
         Host: app.example.test\r\n\
         Connection: close, X-Custom\r\n\
         X-Custom: for the proxy only\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Connection: keep-alive\r\n\
         TE: trailers\r\n\
         Upgrade: websocket\r\n\
         X-End-To-End: kept\r\n\
         \r\n",
    )
    .await;

    assert_eq!(status, "HTTP/1.1 200 OK");
    for name in [
        "x-custom",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert!(
            seen(&echo, name).is_empty(),
            "the hop-by-hop request header {name} must not reach the origin; it saw:\n{echo}"
        );
    }
    assert_eq!(
        seen(&echo, "x-end-to-end"),
        ["kept"],
        "end-to-end headers pass"
    );

    for name in ["x-origin-secret", "keep-alive", "proxy-connection"] {
        assert!(
            !response_headers.contains_key(name),
            "the origin's hop-by-hop response header {name} must not reach the client"
        );
    }
    assert_eq!(response_headers["x-end-to-end"], "kept");
    assert!(
        response_headers
            .get_all("connection")
            .iter()
            .all(|v| !v.to_str().unwrap().contains("x-origin-secret")),
        "the origin's Connection header is not passed on"
    );
}

#[tokio::test]
async fn every_connection_header_line_names_hop_by_hop_headers() {
    let (_, _, echo) = through_proxy(
        "GET / HTTP/1.1\r\n\
         Host: app.example.test\r\n\
         Connection: keep-alive\r\n\
         Connection: x-second, close\r\n\
         X-Second: for the proxy only\r\n\
         \r\n",
    )
    .await;

    assert!(
        seen(&echo, "x-second").is_empty(),
        "a header named in a second Connection line is hop-by-hop too; the origin saw:\n{echo}"
    );
}

#[tokio::test]
async fn forwarding_headers_are_added_and_host_is_preserved() {
    let (_, response_headers, echo) = through_proxy(
        "GET /f HTTP/1.1\r\n\
         Host: app.example.test:8443\r\n\
         X-Forwarded-For: 198.51.100.7\r\n\
         X-Request-Id: trace-me-42\r\n\
         Connection: close\r\n\
         \r\n",
    )
    .await;

    assert_eq!(
        seen(&echo, "x-forwarded-for"),
        ["198.51.100.7, 127.0.0.1"],
        "the client's address is appended to the existing chain"
    );
    assert_eq!(seen(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(seen(&echo, "x-forwarded-host"), ["app.example.test:8443"]);
    assert_eq!(
        seen(&echo, "host"),
        ["app.example.test:8443"],
        "Host is kept as sent"
    );
    assert_eq!(seen(&echo, "via"), ["1.1 tidegate"]);
    assert_eq!(
        seen(&echo, "x-request-id"),
        ["trace-me-42"],
        "a given id is propagated"
    );
    assert_eq!(response_headers["x-request-id"], "trace-me-42");
    assert_eq!(
        response_headers["via"], "1.1 tidegate",
        "the response names the proxy hop"
    );
}

#[tokio::test]
async fn every_forwarded_for_line_is_kept_in_the_chain() {
    let (_, _, echo) = through_proxy(
        "GET / HTTP/1.1\r\n\
         Host: app.example.test\r\n\
         X-Forwarded-For: 203.0.113.1, 198.51.100.2\r\n\
         X-Forwarded-For: 192.0.2.3\r\n\
         Connection: close\r\n\
         \r\n",
    )
    .await;

    assert_eq!(
        seen(&echo, "x-forwarded-for"),
        ["203.0.113.1, 198.51.100.2, 192.0.2.3, 127.0.0.1"],
        "two header lines are one list; no hop is dropped"
    );
}

#[tokio::test]
async fn a_request_id_is_generated_when_absent_and_returned_to_the_client() {
    let (_, response_headers, echo) =
        through_proxy("GET / HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n")
            .await;

    let sent = seen(&echo, "x-request-id");
    assert_eq!(sent.len(), 1, "the origin gets exactly one request id");
    assert_eq!(sent[0].len(), 32);
    assert!(sent[0].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        response_headers["x-request-id"], sent[0],
        "the client sees the id the origin saw"
    );
    assert_eq!(
        seen(&echo, "x-forwarded-for"),
        ["127.0.0.1"],
        "without a prior chain the client's address starts it"
    );

    let (_, second, _) =
        through_proxy("GET / HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n")
            .await;
    assert_ne!(
        second["x-request-id"], sent[0],
        "each request gets its own id"
    );
}

#[tokio::test]
async fn local_error_responses_carry_a_request_id_too() {
    let config = support::config(
        r#"
        [services.api]
        routes = [{ path_prefix = "/api" }]
        instances = [{ address = "127.0.0.1:9" }]
        "#,
    );
    let tidegate = support::start(config).await;

    let (status, headers, _) = support::get(tidegate.proxy_addr(), "/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(headers["x-tidegate-reason"], "no_route");
}

/// An origin whose answer carries hop-by-hop lines without naming them in
/// `Connection`, a request id of its own and a `Via` of its own: the answer
/// a proxy passes on line by line as the instance wrote it.
async fn plain_hop_origin() -> Origin {
    support::origin(|_req| async move {
        let mut response: OriginResponse = support::text(StatusCode::OK, "ok".to_owned());
        let h = response.headers_mut();
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("x-request-id", "the-origins-own".parse().unwrap());
        h.insert("via", "1.1 inner".parse().unwrap());
        h.insert("x-end-to-end", "kept".parse().unwrap());
        response
    })
    .await
}

/// Checks what any client must see of [`plain_hop_origin`]'s answer.
fn check_passed_on(headers: &HeaderMap, client: &str) {
    for name in ["keep-alive", "proxy-connection"] {
        assert!(
            !headers.contains_key(name),
            "{client}: the origin's hop-by-hop {name} must not reach the client"
        );
    }
    let ids: Vec<_> = headers.get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1, "{client}: one request id, the proxy's");
    assert_ne!(ids[0], "the-origins-own", "{client}: the proxy's id wins");
    let via: Vec<_> = headers
        .get_all("via")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(via.len(), 2, "{client}: both hops are named: {via:?}");
    assert_eq!(via[0], "1.1 inner", "{client}: the inner hop comes first");
    assert!(via[1].ends_with("tidegate"), "{client}: then this one");
    assert_eq!(headers["x-end-to-end"], "kept", "{client}");
}

#[tokio::test]
async fn answers_passed_on_as_written_lose_their_hop_by_hop_lines() {
    let origin = plain_hop_origin().await;
    let tidegate = support::start(support::config_for(&[&origin], "")).await;

    // HTTP/1.1 gets the instance's lines copied; HTTP/2 (served by hyper)
    // gets them through a header map.
    let (status, headers, body) = raw_exchange(
        tidegate.proxy_addr(),
        "GET / HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));
    check_passed_on(&headers, "HTTP/1.1");

    let req = http::Request::get(format!("http://{}/", tidegate.proxy_addr()))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = support::client_with(true).request(req).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    check_passed_on(response.headers(), "HTTP/2");
}
