//! One active probe: an HTTP GET of the service's health check path.
//!
//! 2xx and 3xx pass; anything else, a connect error or no answer within
//! `health_check_timeout` fails, with a short reason for the log line. Probes
//! use their own small client, apart from the data plane's, so probing never
//! competes with requests for pooled connections.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::balance::Instance;

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeFailure {
    /// The instance answered with a status that is not 2xx or 3xx.
    #[error("status {0}")]
    Status(u16),
    /// No answer within the probe timeout.
    #[error("timeout")]
    Timeout,
    /// The connection failed.
    #[error("connect failed")]
    Connect,
    /// The exchange failed after connecting.
    #[error("exchange failed")]
    Exchange,
    /// The probe path does not form a valid URI.
    #[error("invalid probe path")]
    InvalidPath,
}

impl ProbeFailure {
    /// The label used in logs.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// Sends probes; cheap to share.
#[derive(Debug, Clone)]
pub struct Prober {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for Prober {
    fn default() -> Self {
        Self::new()
    }
}

impl Prober {
    /// A prober with its own connection pool.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        Self { client }
    }

    /// Probes `path` on `instance` within `timeout`.
    pub async fn probe(
        &self,
        instance: &Instance,
        path: &str,
        timeout: Duration,
    ) -> Result<(), ProbeFailure> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(instance.authority().clone())
            .path_and_query(path)
            .build()
            .map_err(|_| ProbeFailure::InvalidPath)?;
        let req = Request::get(uri)
            .header(header::USER_AGENT, "tidegate-probe")
            .body(Empty::new())
            .map_err(|_| ProbeFailure::InvalidPath)?;
        let response = match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_elapsed) => return Err(ProbeFailure::Timeout),
            Ok(Err(error)) if error.is_connect() => return Err(ProbeFailure::Connect),
            Ok(Err(_)) => return Err(ProbeFailure::Exchange),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(ProbeFailure::Status(status.as_u16()))
        }
    }
}
