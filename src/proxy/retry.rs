//! Which requests may be tried again, and the state one request keeps across tries.
//!
//! A retry is safe when the instance never saw the request (the connection
//! failed), or when the method is idempotent and its body can be sent again:
//! bodies that were empty, read whole by the HTTP/1.1 connection (up to
//! 64 KiB, see `h1`), or small enough (`resilience.retry_buffer_bytes`, with
//! a known Content-Length) to be buffered before the first try. A streamed
//! body is consumed by its first try, so such a request is never retried.

use bytes::Bytes;
use http::{header, HeaderMap, Method};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};

use super::body::{ClientBody, RequestBody};
use super::error::ProxyError;
use crate::balance::Instance;
use crate::clock;
use crate::config::ServiceConfig;
use crate::registry::Service;
use crate::telemetry::names;

/// Tries of one request at most: the first plus `max_retries` (validated ≤ 10).
pub(super) const MAX_TRIES: usize = 11;

/// Whether a method may be sent twice with the same effect.
pub(super) fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// How far a failed try got, which decides whether a retry is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The request never reached the instance (connect failed).
    NotSent,
    /// The instance may have acted on it (reset, timeout, 5xx).
    Sent,
    /// Not the instance's failure (the client's body); never retried.
    Fatal,
}

/// Whether a failed try is safe to send again, given its method.
pub(super) fn safe_to_retry(idempotent: bool, failure: Failure) -> bool {
    match failure {
        Failure::NotSent => true,
        Failure::Sent => idempotent,
        Failure::Fatal => false,
    }
}

/// Takes one retry from the service's budget, counting the outcome.
pub(super) fn withdraw_retry(service: &Service) -> bool {
    let granted = service
        .health
        .budget
        .withdraw(clock::now_ns(), &service.config.resilience);
    let result = if granted { "sent" } else { "budget_exhausted" };
    metrics::counter!(names::RETRIES_TOTAL, "service" => service.name.to_string(), "result" => result)
        .increment(1);
    granted
}

/// How far a failed try got; the one place that reads a client error's kind.
pub(super) fn failure_of(error: &ProxyError) -> Failure {
    match error {
        ProxyError::Connect { .. } => Failure::NotSent,
        ProxyError::Timeout { .. } | ProxyError::Upstream { .. } => Failure::Sent,
        _ => Failure::Fatal,
    }
}

/// The body of a request, as the tries need it.
// TODO: a streamed body is moved into its first try, so even a connect failure
// (request never sent) cannot be retried; the pooled client does not hand the
// request back on a connect error. A client that connects before taking the
// body would allow it.
#[derive(Debug)]
pub(super) enum TryBody {
    /// Held in memory; every try sends it by the direct exchange, which borrows it.
    Replay(Bytes),
    /// Streamed from the client; only one try can have it.
    Stream(Option<RequestBody>),
}

impl TryBody {
    /// Keeps a body read whole, reads a small body of an idempotent request
    /// into memory, and streams the rest.
    pub(super) async fn prepare(
        method: &Method,
        headers: &HeaderMap,
        body: ClientBody,
        service: &ServiceConfig,
        body_limit: Option<u64>,
    ) -> Result<Self, ProxyError> {
        let body = match body {
            ClientBody::Whole(bytes) => return Ok(TryBody::Replay(bytes)),
            ClientBody::Streaming(body) => body,
        };
        if body.is_end_stream() {
            return Ok(TryBody::Replay(Bytes::new()));
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let buffer = service.balancer.max_retries > 0 && idempotent(method);
        match declared {
            Some(len) if buffer && len <= service.resilience.retry_buffer_bytes => {
                let limit = usize::try_from(len).unwrap_or(usize::MAX);
                let collected = Limited::new(body, limit)
                    .collect()
                    .await
                    .map_err(|_| ProxyError::BadRequest("request body"))?;
                Ok(TryBody::Replay(collected.to_bytes()))
            }
            _ => Ok(TryBody::Stream(Some(RequestBody::stream(body, body_limit)))),
        }
    }

    /// Whether another try can send this body.
    pub(super) fn replayable(&self) -> bool {
        matches!(self, TryBody::Replay(_))
    }
}

/// The instances one request has tried, without allocating.
#[derive(Debug, Default)]
pub(super) struct Tried {
    instances: [usize; MAX_TRIES],
    len: usize,
}

impl Tried {
    /// Tries so far.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether `instance` was tried already.
    pub(super) fn contains(&self, instance: &Instance) -> bool {
        let key = instance as *const Instance as usize;
        self.instances[..self.len].contains(&key)
    }

    /// Records a try of `instance`.
    pub(super) fn push(&mut self, instance: &Instance) {
        if self.len < MAX_TRIES {
            self.instances[self.len] = instance as *const Instance as usize;
            self.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idempotent_methods_are_retried_after_sending() {
        for m in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
            assert!(idempotent(&m), "{m} is idempotent");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!idempotent(&m), "{m} is not idempotent");
        }
    }

    #[test]
    fn remembers_the_instances_tried() {
        let a = Instance::from_addr("t".into(), ([127, 0, 0, 1], 1).into(), 1);
        let b = Instance::from_addr("t".into(), ([127, 0, 0, 1], 2).into(), 1);
        let mut tried = Tried::default();
        tried.push(&a);
        assert!(tried.contains(&a));
        assert!(
            !tried.contains(&b),
            "an untried instance is free for a retry"
        );
    }
}
