//! TLS termination on the proxy listener: HTTPS clients (HTTP/1.1 or HTTP/2 by
//! ALPN) reach plain-HTTP instances, which learn the scheme from
//! `X-Forwarded-Proto: https`.

// A test that meets a surprise should stop right there, with the line that saw it.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use support::Origin;

/// A self-signed certificate for `localhost`, written as PEM files.
struct SelfSigned {
    dir: tempfile::TempDir,
    der: CertificateDer<'static>,
}

fn self_signed() -> SelfSigned {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    SelfSigned {
        der: certified.cert.der().clone(),
        dir,
    }
}

fn tls_section(dir: &Path) -> String {
    format!(
        "[proxy.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    )
}

/// An origin that answers with the scheme the proxy says the client used.
async fn proto_origin() -> Origin {
    support::origin(|req| async move {
        let proto = req
            .headers()
            .get("x-forwarded-proto")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        support::text(StatusCode::OK, format!("proto={proto}"))
    })
    .await
}

/// Connects with TLS to the proxy, trusting only `cert`, offering `alpn`.
async fn connect(
    proxy: SocketAddr,
    cert: &CertificateDer<'static>,
    alpn: &[u8],
) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(proxy).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the proxy completes the TLS handshake")
}

/// One HTTP/1.1 GET over a fresh TLS connection.
async fn https_get(
    proxy: SocketAddr,
    cert: &CertificateDer<'static>,
    path: &str,
) -> http::Response<hyper::body::Incoming> {
    let tls = connect(proxy, cert, b"http/1.1").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(http::header::HOST, "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    sender.send_request(req).await.unwrap()
}

async fn start(origin: &Origin, cert: &SelfSigned) -> tidegate::app::Running {
    support::start(support::config_for(
        &[origin],
        &tls_section(cert.dir.path()),
    ))
    .await
}

#[tokio::test]
async fn https_client_reaches_a_plain_origin_that_sees_forwarded_proto_https() {
    let origin = proto_origin().await;
    let cert = self_signed();
    let tidegate = start(&origin, &cert).await;

    let response = https_get(tidegate.proxy_addr(), &cert.der, "/secure").await;

    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body, "proto=https",
        "the instance learns the client used https"
    );
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn_over_tls() {
    let origin = proto_origin().await;
    let cert = self_signed();
    let tidegate = start(&origin, &cert).await;

    let tls = connect(tidegate.proxy_addr(), &cert.der, b"h2").await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "the proxy offers h2 by ALPN"
    );
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://localhost/h2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();

    assert_eq!(response.version(), Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "proto=https");
}

#[tokio::test]
async fn plain_http_on_the_tls_listener_is_refused_and_the_listener_keeps_serving() {
    let origin = proto_origin().await;
    let cert = self_signed();
    let tidegate = start(&origin, &cert).await;

    let mut plain = TcpStream::connect(tidegate.proxy_addr()).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "a plain HTTP request gets no HTTP answer on a TLS listener"
    );
    assert_eq!(origin.hits(), 0);

    let response = https_get(tidegate.proxy_addr(), &cert.der, "/").await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "TLS clients are still served"
    );
}

#[test]
fn unreadable_certificate_files_are_config_errors_with_their_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let text = r#"
        [proxy.tls]
        cert = "empty.pem"
        key = "absent.pem"
    "#;

    let error = tidegate::config::Config::parse(text, dir.path()).unwrap_err();

    let lines = error.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        r#"proxy.tls.cert: "empty.pem" holds no PEM certificate"#
    );
    assert!(
        lines[1].starts_with(r#"proxy.tls.key: "absent.pem" is not a PEM private key: I/O error"#),
        "{}",
        lines[1]
    );
}
