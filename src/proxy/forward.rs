//! The request path: route, pick an instance, forward, stream the answer back.
//!
//! Nothing here takes a lock or waits on the database: routing reads an
//! immutable table, the balancer reads atomics, and the in-flight guard rides
//! inside the response body until its last byte.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use tracing::debug;

use super::body::{RequestBody, ResponseBody};
use super::error::{BoxError, ProxyError};
use super::headers;
use super::router::Router;
use super::upstream::{UpstreamClient, UpstreamError};
use crate::balance::{InFlight, Instance, Outcome, RequestKey};
use crate::config::{Limits, Timeouts};
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
    proto: &'static str,
}

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Downstream {
    /// The client's address.
    pub addr: SocketAddr,
}

impl Proxy {
    /// A proxy over this routing table.
    pub fn new(router: Router, client: UpstreamClient, timeouts: Timeouts, limits: Limits) -> Self {
        Self {
            router,
            client,
            timeouts,
            limits,
            proto: "http",
        }
    }

    /// Answers one request: the instance's response, or a local error response.
    pub async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        downstream: Downstream,
    ) -> Response<ResponseBody> {
        let request_id = headers::ensure_request_id(req.headers_mut());
        let mut response = match self.forward(req, downstream).await {
            Ok(response) => response,
            Err(error) => local_response(&error),
        };
        response
            .headers_mut()
            .insert(headers::X_REQUEST_ID.clone(), request_id);
        response
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        downstream: Downstream,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let host = request_host(&req);
        let service = self
            .router
            .route(host.as_deref(), req.uri().path())
            .ok_or(ProxyError::NoRoute)?;
        self.check_body_size(&req)?;

        let key = RequestKey {
            client_ip: downstream.addr.ip(),
        };
        let instance = {
            let table = service.table.load();
            service.balancer.pick(&table, &key)
        }
        .ok_or_else(|| ProxyError::NoInstance {
            service: service.name.clone(),
        })?;

        let (parts, body) = req.into_parts();
        let body = RequestBody::stream(body, self.limits.max_body_bytes);
        let upstream_req = self.upstream_request(parts, body, &instance, downstream)?;
        let guard = instance.dispatch();
        self.send(service, upstream_req, guard).await
    }

    fn check_body_size(&self, req: &Request<Incoming>) -> Result<(), ProxyError> {
        let Some(limit) = self.limits.max_body_bytes else {
            return Ok(());
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(len) if len > limit => Err(ProxyError::BodyTooLarge { limit }),
            _ => Ok(()),
        }
    }

    /// Rewrites a client request into the request sent to `instance`.
    fn upstream_request(
        &self,
        mut parts: http::request::Parts,
        body: RequestBody,
        instance: &Instance,
        downstream: Downstream,
    ) -> Result<Request<RequestBody>, ProxyError> {
        let path = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let uri = Uri::builder()
            .scheme("http")
            .authority(instance.authority().clone())
            .path_and_query(path)
            .build()
            .map_err(|_| ProxyError::BadRequest("request target"))?;

        let headers = &mut parts.headers;
        if !headers.contains_key(header::HOST) {
            // HTTP/2 clients send :authority instead of Host; HTTP/1.1 instances need Host.
            if let Some(authority) = parts.uri.authority() {
                let value = HeaderValue::from_str(authority.as_str())
                    .map_err(|_| ProxyError::BadRequest("authority"))?;
                headers.insert(header::HOST, value);
            }
        }
        headers::strip_hop_by_hop(headers);
        let host = headers.get(header::HOST).cloned();
        headers::add_forwarded(
            headers,
            downstream.addr.ip(),
            self.proto,
            parts.version,
            host.as_ref(),
        );

        let mut req = Request::from_parts(parts, body);
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        Ok(req)
    }

    /// Sends one try and turns the instance's answer into the client's response.
    async fn send(
        &self,
        service: &Service,
        req: Request<RequestBody>,
        mut guard: InFlight,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let instance = Arc::clone(guard.instance());
        let addr = instance.addr();
        let result = tokio::time::timeout(self.timeouts.request, self.client.request(req)).await;
        let response = match result {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                let error = classify(error, addr);
                guard.set_outcome(match &error {
                    ProxyError::Connect { .. } => Outcome::ConnectFailed,
                    ProxyError::BodyTooLarge { .. } => Outcome::Cancelled,
                    _ => Outcome::Reset,
                });
                debug!(service = %service.name, instance = %addr, error = %error, "upstream request failed");
                return Err(error);
            }
            Err(_elapsed) => {
                guard.set_outcome(Outcome::Timeout);
                debug!(service = %service.name, instance = %addr, "upstream request timed out");
                return Err(ProxyError::Timeout { instance: addr });
            }
        };

        guard.set_status(response.status().as_u16());
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .append(header::VIA, headers::via(parts.version));
        let body = ResponseBody::Upstream {
            inner: body,
            guard: Some(guard),
        };
        Ok(Response::from_parts(parts, body))
    }
}

/// The host a request is addressed to: the `Host` header, else the URI's authority.
fn request_host(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
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
