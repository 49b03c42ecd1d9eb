//! The request path: route, pick an instance, forward, stream the answer back.
//!
//! Nothing here takes a lock or waits on the database: routing reads an
//! immutable table, the balancer reads atomics, and the in-flight guard rides
//! inside the response body until its last byte.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use tracing::debug;

use super::body::{add_answer_header, ClientBody, RequestBody, ResponseBody, UpstreamBody};
use super::error::{BoxError, ProxyError};
use super::fields::ProxyHeader;
use super::headers::{self, Forwarding};
use super::retry::{self, failure_of, safe_to_retry, withdraw_retry, Failure, Tried, TryBody};
use super::router::Router;
use super::upstream::{UpstreamClient, UpstreamError};
use crate::balance::{
    FinishObserver, InFlight, Instance, InstanceTable, Outcome, Pick, RequestKey,
};
use crate::clock;
use crate::config::{Limits, Timeouts};
use crate::health::service::breaker_admits;
use crate::health::{self, BreakerState};
use crate::registry::Service;
use crate::telemetry::names;

static X_TIDEGATE_REASON: http::HeaderName = http::HeaderName::from_static("x-tidegate-reason");

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub struct Proxy {
    router: Router,
    client: UpstreamClient,
    timeouts: Timeouts,
    limits: Limits,
}

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Downstream {
    /// The client's address.
    pub addr: SocketAddr,
    /// The scheme the client used: `http` or `https`.
    pub proto: &'static str,
}

impl Proxy {
    /// A proxy over this routing table.
    pub fn new(router: Router, client: UpstreamClient, timeouts: Timeouts, limits: Limits) -> Self {
        Self {
            router,
            client,
            timeouts,
            limits,
        }
    }

    /// Answers one request: the instance's response, or a local error response.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<ClientBody>,
        downstream: Downstream,
    ) -> Response<ResponseBody> {
        let (request_id, generated) = headers::request_id(req.headers());
        // The request line is copied only when someone reads debug logs.
        let logged = tracing::enabled!(tracing::Level::DEBUG)
            .then(|| (req.method().clone(), req.uri().clone()));
        let new_id = generated.then(|| request_id.clone());
        let mut response = match self.forward(req, downstream, new_id).await {
            Ok(response) => response,
            Err(error) => local_response(&error),
        };
        if let Some((method, uri)) = logged {
            debug!(
                client = %downstream.addr,
                method = %method,
                uri = %uri,
                status = response.status().as_u16(),
                request_id = ?request_id,
                "request answered"
            );
        }
        add_answer_header(&mut response, ProxyHeader::RequestId, request_id);
        response
    }

    /// Forwards the request; `new_id` is the request id to set upstream when
    /// the client sent none usable.
    async fn forward(
        &self,
        req: Request<ClientBody>,
        downstream: Downstream,
        new_id: Option<HeaderValue>,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let service = self
            .router
            .route(request_host(&req), req.uri().path())
            .ok_or(ProxyError::NoRoute)?;
        self.check_body_size(&req)?;
        let admission =
            health::service::admit(service).ok_or_else(|| overloaded(service, "max_in_flight"))?;
        // One reading of the clock for the retry budget and the first pick's
        // breakers: a reading costs about what those two checks do.
        let now = clock::now_ns();
        if service.config.balancer.max_retries > 0 {
            service.health.budget.deposit(now);
        }

        let key = RequestKey {
            client_ip: downstream.addr.ip(),
        };
        let (mut parts, body) = req.into_parts();
        let mut body = TryBody::prepare(
            &parts.method,
            &parts.headers,
            body,
            &service.config,
            self.limits.max_body_bytes,
        )
        .await?;
        let forwarding = rewrite_head(&mut parts, downstream, new_id)?;
        let mut response = self
            .tries(service, &key, parts, &forwarding, &mut body, now)
            .await?;
        if let ResponseBody::Upstream {
            admission: slot, ..
        } = response.body_mut()
        {
            *slot = Some(admission);
        }
        Ok(response)
    }

    /// Sends the request to one instance after another until one answers, a
    /// failure is not safe to retry, or the tries or the retry budget run out.
    async fn tries(
        &self,
        service: &Arc<Service>,
        key: &RequestKey,
        parts: http::request::Parts,
        forwarding: &Forwarding,
        body: &mut TryBody,
        now: u64,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let max_tries = (1 + service.config.balancer.max_retries as usize).min(retry::MAX_TRIES);
        let idempotent = retry::idempotent(&parts.method);
        let mut tried = Tried::default();
        let mut next = pick(service, key, &parts.headers, &tried, now)?;
        let mut parts = Some(parts);
        loop {
            let Pick {
                instance,
                set_cookie,
            } = next;
            tried.push(&instance);
            let last_try = tried.len() >= max_tries || !body.replayable();
            // TODO: retries get their own `retry_timeout` rather than what is left of
            // the request's deadline, so a request may take up to `request` plus
            // `max_retries` times `retry_timeout`; an overall deadline would bound it.
            let timeout = if tried.len() == 1 {
                self.timeouts.request
            } else {
                service.config.balancer.retry_timeout
            };
            // A body in memory goes by the direct exchange, which borrows the
            // head, so every try shares one; a streamed body has one try only,
            // which takes the head.
            let outgoing = match body {
                TryBody::Replay(bytes) => Outgoing::Buffered {
                    parts: parts
                        .as_ref()
                        .expect("the head is kept while the body can be replayed"),
                    forwarding,
                    body: bytes,
                },
                TryBody::Stream(stream) => {
                    let mut head = parts
                        .take()
                        .expect("a streamed body has one try, which takes the head");
                    forwarding.clone().apply(&mut head.headers);
                    let stream = stream
                        .take()
                        .expect("a streamed body is never retried, so its one try has it");
                    Outgoing::Streamed(upstream_request(head, stream))
                }
            };

            let mut guard = instance.dispatch();
            guard.observe(Arc::clone(service) as Arc<dyn FinishObserver>);
            let result = self.send(service, outgoing, guard, timeout).await;
            let failure = match &result {
                Ok(response) if response.status().is_server_error() => Failure::Sent,
                Ok(_) => return result.map(|response| with_cookie(response, set_cookie)),
                Err(error) => failure_of(error),
            };
            if last_try || !safe_to_retry(idempotent, failure) {
                return result.map(|response| with_cookie(response, set_cookie));
            }
            // The failed answer stands unless another instance can take the
            // request and the budget grants the retry.
            let head = &parts
                .as_ref()
                .expect("the head is kept until the last try")
                .headers;
            next = match pick(service, key, head, &tried, clock::now_ns()) {
                Ok(pick) if withdraw_retry(service) => pick,
                _ => return result.map(|response| with_cookie(response, set_cookie)),
            };
            // A 5xx answer being retried is dropped unread. Its guard goes
            // first, so the instance is charged the server error (and can be
            // ejected) rather than a request the client abandoned.
            if let Ok(mut response) = result {
                if let ResponseBody::Upstream { guard, .. } = response.body_mut() {
                    drop(guard.take());
                }
            }
        }
    }

    fn check_body_size(&self, req: &Request<ClientBody>) -> Result<(), ProxyError> {
        let Some(limit) = self.limits.max_body_bytes else {
            return Ok(());
        };
        let declared = match req.body() {
            ClientBody::Whole(body) => Some(body.len() as u64),
            ClientBody::Streaming(_) => req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok()),
        };
        match declared {
            Some(len) if len > limit => Err(ProxyError::BodyTooLarge { limit }),
            _ => Ok(()),
        }
    }

    /// Sends one try and turns the instance's answer into the client's response.
    async fn send(
        &self,
        service: &Service,
        outgoing: Outgoing<'_>,
        mut guard: InFlight,
        timeout: Duration,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let instance = guard.instance();
        let addr = instance.addr();
        let (authority, queued) = (instance.authority(), &instance.state.queued);
        let deadline = tokio::time::Instant::now() + timeout;
        let result = match outgoing {
            // The direct exchange keeps one timer per connection and moves it.
            Outgoing::Buffered {
                parts,
                forwarding,
                body,
            } => self
                .client
                .exchange(authority, parts, Some(forwarding), body, queued, deadline)
                .await
                .map(|response| response.map(UpstreamBody::Direct)),
            Outgoing::Streamed(req) => {
                // Boxed: hyper's client futures are large, and the request's
                // future, allocated for every request, would otherwise be
                // sized for this rare path.
                let request = self.client.request_counting(authority, req, queued);
                match Box::pin(tokio::time::timeout_at(deadline, request)).await {
                    Ok(result) => result.map(|(response, connection)| {
                        response.map(|body| UpstreamBody::Pooled {
                            body,
                            connection: Some(connection),
                        })
                    }),
                    Err(_elapsed) => Err(UpstreamError::TimedOut),
                }
            }
        };
        let response = match result {
            Ok(response) => response,
            Err(error) if error.is_timeout() => {
                guard.set_outcome(Outcome::Timeout);
                debug!(service = %service.name, instance = %addr, "upstream request timed out");
                return Err(ProxyError::Timeout { instance: addr });
            }
            Err(error) => {
                let error = classify(error, addr);
                guard.set_outcome(outcome_of(&error));
                debug!(service = %service.name, instance = %addr, error = %error, "upstream request failed");
                return Err(error);
            }
        };

        guard.set_status(response.status().as_u16());
        let (mut parts, inner) = response.into_parts();
        if let UpstreamBody::Pooled { .. } = inner {
            // A direct exchange leaves hop-by-hop headers out as it parses.
            headers::strip_hop_by_hop(&mut parts.headers);
        }
        let via = headers::via(parts.version);
        let body = ResponseBody::Upstream {
            inner,
            guard: Some(guard),
            admission: None,
        };
        let mut response = Response::from_parts(parts, body);
        add_answer_header(&mut response, ProxyHeader::Via, via);
        Ok(response)
    }
}

/// One try's request, by how its body travels.
// Built and consumed within one call, on the stack: the variants' sizes differ
// for that instant only.
#[allow(clippy::large_enum_variant)]
enum Outgoing<'a> {
    /// The body is in memory: a direct exchange, which borrows the head and
    /// writes the forwarding headers after the client's.
    Buffered {
        parts: &'a http::request::Parts,
        forwarding: &'a Forwarding,
        body: &'a Bytes,
    },
    /// The body streams from the client: hyper's client carries it.
    Streamed(Request<RequestBody>),
}

/// Rewrites a client request head for the instances: hop-by-hop headers
/// out, `Host` kept; the forwarding headers to send with it are returned.
/// Done once for every try.
fn rewrite_head(
    parts: &mut http::request::Parts,
    downstream: Downstream,
    new_id: Option<HeaderValue>,
) -> Result<Forwarding, ProxyError> {
    let headers = &mut parts.headers;
    let host = match headers.get(header::HOST) {
        Some(host) => Some(host.clone()),
        // HTTP/2 clients send :authority instead of Host; HTTP/1.1 instances need Host.
        None => match parts.uri.authority() {
            Some(authority) => {
                let value = HeaderValue::from_str(authority.as_str())
                    .map_err(|_| ProxyError::BadRequest("authority"))?;
                headers.insert(header::HOST, value.clone());
                Some(value)
            }
            None => None,
        },
    };
    headers::strip_hop_by_hop(headers);
    Ok(Forwarding::new(
        headers,
        downstream.addr.ip(),
        downstream.proto,
        parts.version,
        host.as_ref(),
        new_id,
    ))
}

/// The host a request is addressed to: the `Host` header, else the URI's
/// authority. Borrowed: routing needs no copy of it.
fn request_host(req: &Request<ClientBody>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// The request one try sends: the rewritten head with an origin-form target
/// (`/path?query`), which is what an HTTP/1.1 request line to an instance
/// carries. HTTP/1.1 clients send that form already, and it is kept as parsed;
/// HTTP/2 requests carry scheme and authority, which are dropped here (the
/// `Host` header has the authority). The instance is named to the client apart.
fn upstream_request(mut parts: http::request::Parts, body: RequestBody) -> Request<RequestBody> {
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = parts
            .uri
            .path_and_query()
            .cloned()
            .map_or_else(|| Uri::from_static("/"), Uri::from);
    }
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, body)
}

/// Picks an instance for one try: one not tried yet whose breaker admits it
/// at `now` (`clock::now_ns`).
///
/// The balancer is asked first; if it keeps offering tried or refused
/// instances (a hash, a sticky session), the table is scanned in order. The
/// first pick honours the client's affinity cookie; when the pinned instance
/// cannot take the try, the client is pinned again to whichever instance does.
fn pick(
    service: &Service,
    key: &RequestKey,
    headers: &http::HeaderMap,
    tried: &Tried,
    now: u64,
) -> Result<Pick, ProxyError> {
    let table = service.table.load();
    let breaker = service.config.balancer.circuit_breaker_enabled;
    let cfg = &service.config.resilience;
    let usable = |i: &Instance| !tried.contains(i) && breaker_admits(i, cfg, breaker, now);
    match service.balancer.pick_request(&table, key, headers) {
        Some(pick) if usable(&pick.instance) => return Ok(pick),
        Some(_) => {}
        None => return Err(unavailable(service, &table)),
    }
    for _ in 1..table.len().min(PICK_ATTEMPTS) {
        match service.balancer.pick(&table, key) {
            Some(instance) if usable(&instance) => return Ok(repin(service, &table, instance)),
            Some(_) => continue,
            None => break,
        }
    }
    table
        .instances()
        .iter()
        .find(|i| i.is_eligible() && usable(i))
        .cloned()
        .map(|instance| repin(service, &table, instance))
        .ok_or_else(|| unavailable(service, &table))
}

/// A pick of `instance`, with the cookie pinning the client to it when the
/// service has session affinity.
fn repin(service: &Service, table: &InstanceTable, instance: Arc<Instance>) -> Pick {
    let set_cookie = if service.config.balancer.session_affinity {
        table
            .instances()
            .iter()
            .position(|i| Arc::ptr_eq(i, &instance))
            .and_then(|index| table.affinity().set_cookie(index).cloned())
    } else {
        None
    };
    Pick {
        instance,
        set_cookie,
    }
}

/// Adds the affinity cookie of the instance that answered, if there is one.
fn with_cookie(
    mut response: Response<ResponseBody>,
    set_cookie: Option<HeaderValue>,
) -> Response<ResponseBody> {
    if let Some(cookie) = set_cookie {
        add_answer_header(&mut response, ProxyHeader::SetCookie, cookie);
    }
    response
}

/// Balancer picks tried before scanning the table for an untried instance.
const PICK_ATTEMPTS: usize = 3;

/// Why no instance could take the request: breakers, or nothing eligible at all.
fn unavailable(service: &Service, table: &InstanceTable) -> ProxyError {
    let broken = table.instances().iter().any(|i| {
        i.state.healthy.load(Ordering::Relaxed)
            && !i.state.draining.load(Ordering::Relaxed)
            && !i.state.health.is_ejected()
            && i.state.health.breaker.state() != BreakerState::Closed
    });
    if broken && service.config.balancer.circuit_breaker_enabled {
        overloaded(service, "breaker_open")
    } else {
        ProxyError::NoInstance {
            service: service.name.clone(),
        }
    }
}

fn overloaded(service: &Service, reason: &'static str) -> ProxyError {
    ProxyError::Overloaded {
        service: service.name.clone(),
        reason,
    }
}

/// What a failed try means for the instance's counters.
fn outcome_of(error: &ProxyError) -> Outcome {
    match error {
        ProxyError::Connect { .. } => Outcome::ConnectFailed,
        ProxyError::Timeout { .. } => Outcome::Timeout,
        ProxyError::BodyTooLarge { .. } | ProxyError::BadRequest(_) => Outcome::Cancelled,
        _ => Outcome::Reset,
    }
}

/// Tells a connect failure from a failure after connecting, and finds a body-limit error.
fn classify(error: UpstreamError, instance: SocketAddr) -> ProxyError {
    if error.is_connect() {
        return ProxyError::Connect {
            instance,
            source: Box::new(error),
        };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(ProxyError::BodyTooLarge { limit }) = e.downcast_ref::<ProxyError>() {
            return ProxyError::BodyTooLarge { limit: *limit };
        }
        source = e.source();
    }
    ProxyError::Upstream {
        instance,
        source: Box::<dyn std::error::Error + Send + Sync>::from(error) as BoxError,
    }
}

/// The response tidegate sends when it answers a request itself.
pub fn local_response(error: &ProxyError) -> Response<ResponseBody> {
    metrics::counter!(names::LOCAL_RESPONSES_TOTAL, "reason" => error.reason()).increment(1);
    let status = error.status();
    let mut body = error.to_string();
    body.push('\n');
    let mut response = Response::new(ResponseBody::local(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        X_TIDEGATE_REASON.clone(),
        HeaderValue::from_static(error.reason()),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
