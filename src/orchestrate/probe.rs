//! The start-up health gate: a new instance joins its service only after
//! answering its health check `healthy_threshold` times in a row.
//!
//! Start-up probes run faster than the steady-state prober (every
//! `health_check_interval`, but at most every [`START_PROBE_EVERY`]), because
//! the time from a scale-up decision to a serving instance is what a spike
//! waits on.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::BalancerConfig;

/// Longest pause between two start-up probes.
pub const START_PROBE_EVERY: Duration = Duration::from_millis(100);

/// Probes one address until it passes enough probes in a row.
#[derive(Debug, Clone)]
pub struct StartProbe {
    client: Client<HttpConnector, Empty<Bytes>>,
    path: String,
    threshold: u32,
    timeout: Duration,
    every: Duration,
}

impl StartProbe {
    /// A probe with a service's `load_balancer_config` settings.
    pub fn new(config: &BalancerConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.health_check_timeout));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            path: config.health_check_path.clone(),
            threshold: config.healthy_threshold.max(1),
            timeout: config.health_check_timeout,
            every: config.health_check_interval.min(START_PROBE_EVERY),
        }
    }

    /// One probe: a 2xx or 3xx answer within the timeout.
    pub async fn check(&self, addr: SocketAddr) -> bool {
        let Ok(uri) = format!("http://{addr}{}", self.path).parse::<http::Uri>() else {
            return false;
        };
        match tokio::time::timeout(self.timeout, self.client.get(uri)).await {
            Ok(Ok(response)) => {
                let status = response.status();
                status.is_success() || status.is_redirection()
            }
            _ => false,
        }
    }

    /// Probes until `threshold` consecutive passes; runs until the caller gives up.
    pub async fn until_healthy(&self, addr: SocketAddr) {
        let mut passes = 0;
        loop {
            if self.check(addr).await {
                passes += 1;
                if passes >= self.threshold {
                    return;
                }
            } else {
                passes = 0;
            }
            tokio::time::sleep(self.every).await;
        }
    }
}
