//! Why a request could not be proxied, and the status each reason maps to.
//!
//! Failures are told apart by origin: the client's request (413, 431), tidegate's
//! own state (404 no route, 503 no usable instance or over capacity) and the
//! instance (502 refused or reset, 504 timed out). One function, [`ProxyError::status`],
//! maps them; the body is a short plain-text line.

use std::net::SocketAddr;

use http::StatusCode;

use crate::ids::ServiceName;

/// A request tidegate answers itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route matches the host and path.
    #[error("no route for this host and path")]
    NoRoute,
    /// The service has no healthy, non-draining instance.
    #[error("no healthy instance of service {service}")]
    NoInstance {
        /// The service.
        service: ServiceName,
    },
    /// The service is at its in-flight cap or its breakers are open.
    #[error("service {service} is over capacity ({reason})")]
    Overloaded {
        /// The service.
        service: ServiceName,
        /// Which limit: `max_in_flight`, `breaker_open`.
        reason: &'static str,
    },
    /// Connecting to the instance failed.
    #[error("instance {instance} refused the connection")]
    Connect {
        /// The instance's address.
        instance: SocketAddr,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The instance did not send a response head in time.
    #[error("instance {instance} did not answer in time")]
    Timeout {
        /// The instance's address.
        instance: SocketAddr,
    },
    /// The exchange with the instance failed after connecting.
    #[error("instance {instance} failed mid-exchange")]
    Upstream {
        /// The instance's address.
        instance: SocketAddr,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The request body is larger than `limits.max_body_bytes`.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The request cannot be forwarded (bad URI or header).
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
}

/// A boxed error from the network stack.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl ProxyError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoInstance { .. } | ProxyError::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Connect { .. } | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// A short label for metrics and the `x-tidegate-reason` header.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no_route",
            ProxyError::NoInstance { .. } => "no_instance",
            ProxyError::Overloaded { reason, .. } => reason,
            ProxyError::Connect { .. } => "connect_failed",
            ProxyError::Timeout { .. } => "upstream_timeout",
            ProxyError::Upstream { .. } => "upstream_failed",
            ProxyError::BodyTooLarge { .. } => "body_too_large",
            ProxyError::BadRequest(_) => "bad_request",
        }
    }
}
