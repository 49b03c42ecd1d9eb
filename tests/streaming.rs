//! Bodies stream through the proxy in both directions: a 256 MiB upload and a
//! 256 MiB download pass with their checksums intact, each side sees the first
//! bytes while the other has produced only one chunk, and the process's peak
//! memory grows by far less than one body.

// A test that meets a surprise should stop right there, with the line that saw it.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::oneshot;

/// Size of one generated chunk.
const CHUNK: usize = 64 * 1024;
/// Chunks in one body: 256 MiB.
const CHUNKS: usize = 4096;
const BODY_BYTES: u64 = (CHUNK * CHUNKS) as u64;
/// Peak memory may grow by this much while bodies stream; buffering one body would take 256 MiB.
const MEMORY_BOUND: u64 = 96 * 1024 * 1024;
/// Bound on waiting for the other side; a proxy that buffers never gets there.
const DEADLINE: Duration = Duration::from_secs(120);

/// A deterministic 256 MiB body made of 16 distinct pseudo-random chunks in a
/// shifting order, so that lost, repeated or reordered chunks change the checksum.
struct Pattern {
    chunks: Vec<Bytes>,
}

impl Pattern {
    fn new() -> Self {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let chunks = (0..16)
            .map(|_| {
                let mut chunk = Vec::with_capacity(CHUNK);
                while chunk.len() < CHUNK {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    chunk.extend_from_slice(&state.to_le_bytes());
                }
                Bytes::from(chunk)
            })
            .collect();
        Self { chunks }
    }

    fn chunk(&self, i: usize) -> Bytes {
        self.chunks[(i * 7 + i / 16) % 16].clone()
    }

    fn checksum(&self) -> u32 {
        let mut crc = crc32fast::Hasher::new();
        for i in 0..CHUNKS {
            crc.update(&self.chunk(i));
        }
        crc.finalize()
    }
}

/// The process's peak resident memory in bytes (`VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

/// The test's one-shot state for its one request; `None` for a health probe,
/// which tidegate may send at any moment and the origin answers `ok`.
fn take<T>(slot: &Mutex<Option<T>>, req: &Request<Incoming>) -> Option<T> {
    let probe = req
        .headers()
        .get(http::header::USER_AGENT)
        .is_some_and(|agent| agent == "tidegate-probe");
    if probe {
        return None;
    }
    Some(slot.lock().unwrap().take().expect("one request per test"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_256_mib_streaming_with_checksum_intact() {
    let (first_tx, first_rx) = oneshot::channel::<usize>();
    let first_tx = Arc::new(Mutex::new(Some(first_tx)));
    let origin = support::origin(move |req| {
        let first_tx = take(&first_tx, &req);
        async move {
            let Some(first_tx) = first_tx else {
                return support::text(StatusCode::OK, "ok");
            };
            let mut body = req.into_body();
            let mut first_tx = Some(first_tx);
            let (mut crc, mut len) = (crc32fast::Hasher::new(), 0u64);
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.unwrap().into_data() else {
                    continue;
                };
                if let Some(tx) = first_tx.take() {
                    let _ = tx.send(data.len());
                }
                crc.update(&data);
                len += data.len() as u64;
            }
            support::text(StatusCode::OK, format!("{len} {:08x}", crc.finalize()))
        }
    })
    .await;
    let tidegate = support::start(support::config_for(&[&origin], "")).await;
    let rss_before = peak_rss();

    let pattern = Pattern::new();
    let (tx, body) = support::channel_body(1);
    let req = Request::put(format!("http://{}/upload", tidegate.proxy_addr()))
        .body(body)
        .unwrap();
    let response = tokio::spawn(support::client_with(false).request(req));

    let mut crc = crc32fast::Hasher::new();
    crc.update(&pattern.chunk(0));
    tx.send(pattern.chunk(0)).await.unwrap();
    let first = tokio::time::timeout(DEADLINE, first_rx)
        .await
        .expect("the origin sees the upload's first bytes while the client has produced one chunk")
        .unwrap();
    assert!(
        first <= CHUNK,
        "the first frame holds at most the first chunk"
    );
    for i in 1..CHUNKS {
        let chunk = pattern.chunk(i);
        crc.update(&chunk);
        tx.send(chunk).await.unwrap();
    }
    drop(tx);

    let response = tokio::time::timeout(DEADLINE, response)
        .await
        .expect("the upload finishes")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&answer),
        format!("{BODY_BYTES} {:08x}", crc.finalize()),
        "the origin received every byte in order"
    );
    let growth = peak_rss().saturating_sub(rss_before);
    assert!(
        growth < MEMORY_BOUND,
        "peak memory grew by {growth} bytes while 256 MiB streamed; the body was buffered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_256_mib_streaming_with_checksum_intact() {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release_rx = Arc::new(Mutex::new(Some(release_rx)));
    let origin = support::origin(move |req| {
        let release_rx = take(&release_rx, &req);
        async move {
            let Some(release_rx) = release_rx else {
                return support::text(StatusCode::OK, "ok");
            };
            let (tx, body) = support::channel_body(1);
            tokio::spawn(async move {
                let pattern = Pattern::new();
                if tx.send(pattern.chunk(0)).await.is_err() {
                    return;
                }
                // The rest waits until the client has seen the first bytes.
                if release_rx.await.is_err() {
                    return;
                }
                for i in 1..CHUNKS {
                    if tx.send(pattern.chunk(i)).await.is_err() {
                        return;
                    }
                }
            });
            let mut response = http::Response::new(body.map_err(|e| match e {}).boxed());
            response.headers_mut().insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(BODY_BYTES),
            );
            response
        }
    })
    .await;
    let tidegate = support::start(support::config_for(&[&origin], "")).await;
    let rss_before = peak_rss();
    let expected = Pattern::new().checksum();

    let req = Request::get(format!("http://{}/download", tidegate.proxy_addr()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = support::client().request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-length"], BODY_BYTES.to_string());
    let mut body = response.into_body();
    let (mut crc, mut len) = (crc32fast::Hasher::new(), 0u64);
    let mut release = Some(release_tx);
    let read_all = async {
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.unwrap().into_data() else {
                continue;
            };
            if let Some(release) = release.take() {
                release.send(()).unwrap();
            }
            crc.update(&data);
            len += data.len() as u64;
        }
    };
    tokio::time::timeout(DEADLINE, read_all)
        .await
        .expect("the client sees the first bytes while the origin has produced one chunk");

    assert_eq!(len, BODY_BYTES);
    assert_eq!(
        crc.finalize(),
        expected,
        "the client received every byte in order"
    );
    let growth = peak_rss().saturating_sub(rss_before);
    assert!(
        growth < MEMORY_BOUND,
        "peak memory grew by {growth} bytes while 256 MiB streamed; the body was buffered"
    );
}

#[tokio::test]
async fn a_client_leaving_mid_download_ends_the_request_without_blaming_the_instance() {
    let origin = support::origin(|_req| async move {
        let (tx, body) = support::channel_body(1);
        tokio::spawn(async move {
            let pattern = Pattern::new();
            // Endless until the proxy drops the body: the client never gets to the end.
            for i in 0.. {
                if tx.send(pattern.chunk(i % CHUNKS)).await.is_err() {
                    return;
                }
            }
        });
        http::Response::new(body.map_err(|e| match e {}).boxed())
    })
    .await;
    let tidegate = support::start(support::config_for(&[&origin], "")).await;
    let instance = tidegate
        .registry
        .service("app")
        .unwrap()
        .table
        .load()
        .instances()[0]
        .clone();

    let req = Request::get(format!("http://{}/endless", tidegate.proxy_addr()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = support::client().request(req).await.unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(
        instance.in_flight(),
        1,
        "a download being read is in flight"
    );
    drop(body);

    let deadline = std::time::Instant::now() + DEADLINE;
    while instance.in_flight() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the request leaves in_flight when its client goes away"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let state = &instance.state;
    assert_eq!(
        state.requests.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "an abandoned download is cancelled, not a served request with a made-up latency"
    );
    assert_eq!(
        state
            .consecutive_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}
