//! The pooled HTTP client that carries requests to instances.
//!
//! One client per proxy, shared by every service: hyper-util's pooled client
//! keeps idle keep-alive connections per instance address, so a request rarely
//! pays for a TCP handshake.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::RequestBody;
use crate::config::Timeouts;

/// The client type used for every upstream request.
pub type UpstreamClient = Client<HttpConnector, RequestBody>;

/// Idle upstream connections kept per instance.
const MAX_IDLE_PER_INSTANCE: usize = 256;

/// Builds the upstream client with the config's timeouts.
pub fn client(timeouts: &Timeouts) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeouts.connect));
    connector.set_nodelay(true);
    connector.set_keepalive(Some(std::time::Duration::from_secs(60)));
    // TODO: a per-thread pool of hyper::client::conn::http1 connections avoids
    // the legacy pool's shared lock and is measurably faster under load.
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(timeouts.idle)
        .pool_max_idle_per_host(MAX_IDLE_PER_INSTANCE)
        .retry_canceled_requests(false)
        .set_host(false)
        .build(connector)
}
