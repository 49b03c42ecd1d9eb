//! HTTP/2 with prior knowledge from the client, HTTP/1.1 to the instance.

// A test that meets a surprise should stop right there, with the line that saw it.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};

use support::Origin;

/// An origin that answers with the request's version, host and body.
async fn describing_origin() -> Origin {
    support::origin(|req| async move {
        let version = format!("{:?}", req.version());
        let header = |name: &str| {
            req.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let described = format!(
            "{version} host={} xfh={} via={}",
            header("host"),
            header("x-forwarded-host"),
            header("via")
        );
        let body = req.into_body().collect().await.unwrap().to_bytes();
        support::text(
            StatusCode::OK,
            format!("{described} body={}", String::from_utf8_lossy(&body)),
        )
    })
    .await
}

async fn h2_send(req: Request<Full<Bytes>>) -> (Version, StatusCode, String) {
    let response = support::client_with(true).request(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.version,
        parts.status,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn http2_client_reaches_an_http1_origin() {
    let origin = describing_origin().await;
    let tidegate = support::start(support::config_for(&[&origin], "")).await;
    let authority = tidegate.proxy_addr().to_string();

    let req = Request::post(format!("http://{authority}/h2"))
        .body(Full::new(Bytes::from_static(b"hello over h2")))
        .unwrap();
    let (version, status, body) = h2_send(req).await;

    assert_eq!(
        version,
        Version::HTTP_2,
        "the client spoke HTTP/2 to the proxy"
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        format!("HTTP/1.1 host={authority} xfh={authority} via=2 tidegate body=hello over h2"),
        "the origin got HTTP/1.1 with Host taken from :authority and Via naming the h2 hop"
    );
}

#[tokio::test]
async fn concurrent_http2_streams_each_get_their_own_answer() {
    let origin = describing_origin().await;
    let tidegate = support::start(support::config_for(&[&origin], "")).await;
    let client = support::client_with::<Full<Bytes>>(true);

    let requests = (0..32).map(|i| {
        let req = Request::post(format!("http://{}/s/{i}", tidegate.proxy_addr()))
            .body(Full::new(Bytes::from(format!("stream {i}"))))
            .unwrap();
        let client = client.clone();
        async move {
            let response = client.request(req).await.unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (i, String::from_utf8_lossy(&body).into_owned())
        }
    });
    let answers = futures_util::future::join_all(requests).await;

    for (i, body) in answers {
        assert!(
            body.ends_with(&format!("body=stream {i}")),
            "stream {i} got its own answer, not another stream's: {body}"
        );
    }
    assert_eq!(origin.hits(), 32);
}
