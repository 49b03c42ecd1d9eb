//! `tidegate demo-backend`: a small origin for demos, tests and benchmarks.
//!
//! It answers `GET /health` with 200 and every other request with a short text
//! naming its port, after optionally burning CPU (`--work-us`, so load shows up
//! as CPU use), sleeping (`--latency-ms`) and failing a share of requests with
//! 500 (`--fail-rate`). Request bodies are read to the end and their size
//! reported, so uploads can be checked end to end.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::{debug, info};

/// How the demo backend behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoOptions {
    /// CPU time burned per request, in microseconds.
    pub work_us: u64,
    /// Time slept per request, in milliseconds.
    pub latency_ms: u64,
    /// Share of requests answered with 500, from 0 to 1.
    pub fail_rate: f64,
}

/// Serves the demo backend on an already bound listener until the task is dropped.
pub async fn serve(listener: TcpListener, options: DemoOptions) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    info!(
        port,
        work_us = options.work_us,
        latency_ms = options.latency_ms,
        fail_rate = options.fail_rate,
        "demo backend listening"
    );
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (stream, addr) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, port, options));
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(client = %addr, error = %error, "demo connection ended with an error");
            }
        });
    }
}

/// Binds `addr` and serves the demo backend.
pub async fn run(addr: SocketAddr, options: DemoOptions) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve(listener, options).await
}

async fn answer(
    req: Request<Incoming>,
    port: u16,
    options: DemoOptions,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/health" {
        return Ok(reply(StatusCode::OK, "healthy\n".into(), port));
    }
    let mut received = 0u64;
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => received += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, "body error\n".into(), port)),
        }
    }
    if options.work_us > 0 {
        burn_cpu(Duration::from_micros(options.work_us));
    }
    if options.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(options.latency_ms)).await;
    }
    if options.fail_rate > 0.0 && rand::random::<f64>() < options.fail_rate {
        return Ok(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected failure\n".into(),
            port,
        ));
    }
    let text = format!("ok from {port}, received {received} bytes\n");
    Ok(reply(StatusCode::OK, text, port))
}

fn reply(status: StatusCode, text: String, port: u16) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("x-demo-port", http::HeaderValue::from(port));
    response
}

/// Spins on the CPU for `d`, so that request load shows up as CPU use.
fn burn_cpu(d: Duration) {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        for i in 0..64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
}
