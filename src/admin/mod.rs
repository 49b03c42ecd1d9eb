//! The operator's listener: liveness, readiness, stats and Prometheus metrics.
//!
//! It runs on its own port so that a saturated proxy listener never hides the
//! numbers an operator needs to see why.

mod auth;
mod instances;
mod stats;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::debug;

use crate::proxy::server::stopped;
use crate::registry::Registry;
use crate::telemetry;

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    /// The running services.
    pub registry: Arc<Registry>,
    /// Set once the config is loaded and every listener is bound; cleared when a drain starts.
    pub ready: Arc<AtomicBool>,
    /// Renders the Prometheus text.
    pub prometheus: PrometheusHandle,
    /// Bearer token for admin writes.
    pub token: Option<String>,
}

type AdminResponse = Response<Full<Bytes>>;

/// Serves the admin endpoints until `shutdown` turns true.
pub async fn serve(listener: TcpListener, state: AdminState, mut shutdown: watch::Receiver<bool>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(error = %error, "admin accept failed");
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return,
        };
        let state = state.clone();
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req, addr)) }
            });
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(client = %addr, error = %error, "admin connection ended with an error");
            }
        });
    }
}

fn route(state: &AdminState, req: Request<Incoming>, _client: SocketAddr) -> AdminResponse {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/ready") => {
            if state.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        (&Method::GET, "/stats") => json(StatusCode::OK, &stats::snapshot(&state.registry)),
        (&Method::GET, "/metrics") => {
            let mut exposition = state.prometheus.render();
            exposition.push_str(&telemetry::durations::render(&state.registry));
            let mut response = text(StatusCode::OK, exposition);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        (&Method::POST, path) if path.starts_with("/admin/") => admin_write(state, &req),
        (_, "/health" | "/ready" | "/stats" | "/metrics") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// An authorized write: drain or undrain an instance.
fn admin_write(state: &AdminState, req: &Request<Incoming>) -> AdminResponse {
    if let Err(denied) = auth::authorize(state.token.as_deref(), req.headers()) {
        let mut response = text(denied.status(), format!("{denied}\n"));
        if denied.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        return response;
    }
    let Some((id, action)) = instances::parse(req.uri().path()) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    match instances::apply(&state.registry, id, action) {
        Ok((status, document)) => json(status, &document),
        Err(status) => text(status, format!("no instance {id}\n")),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> AdminResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> AdminResponse {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(error) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render stats: {error}\n"),
        ),
    }
}
