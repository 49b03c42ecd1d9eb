//! Bodies that stream through the proxy.
//!
//! Neither direction is buffered: frames pass through as they arrive, so a body
//! of any size costs a few frames of memory. [`RequestBody`] enforces the body
//! limit on the way up; [`ResponseBody`] carries the request's [`InFlight`]
//! guard on the way down, so the request counts as in flight until its last byte
//! (or until the client goes away and the body is dropped).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::HeaderValue;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use super::error::{BoxError, ProxyError};
use super::fields::{ProxyHeader, WireFields};
use super::upstream::{Checkin, DirectBody};
use crate::balance::{InFlight, Outcome};
use crate::health::Admission;

/// A client's request body, as its connection hands it to the proxy.
#[derive(Debug)]
pub enum ClientBody {
    /// Read whole with the head: every request the HTTP/1.1 fast path serves.
    Whole(Bytes),
    /// Still arriving, through hyper's server (HTTP/2, or an HTTP/1.1
    /// connection hyper took over).
    Streaming(Incoming),
}

/// A request body on its way to an instance.
#[derive(Debug)]
pub enum RequestBody {
    /// The client's body, streamed, with the bytes still allowed.
    Stream {
        /// The client's body.
        inner: Incoming,
        /// Bytes still allowed before `BodyTooLarge`; `u64::MAX` for no limit.
        remaining: u64,
        /// The configured limit, for the error.
        limit: u64,
    },
    /// A body held in memory (small bodies kept for a retry).
    Buffered(Full<Bytes>),
}

impl RequestBody {
    /// Streams the client's body, failing past `limit` bytes if there is one.
    pub fn stream(inner: Incoming, limit: Option<u64>) -> Self {
        RequestBody::Stream {
            inner,
            remaining: limit.unwrap_or(u64::MAX),
            limit: limit.unwrap_or(u64::MAX),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Stream {
                inner,
                remaining,
                limit,
            } => {
                let frame = ready!(Pin::new(inner).poll_frame(cx));
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                    None => return Poll::Ready(None),
                };
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *remaining {
                        let err = ProxyError::BodyTooLarge { limit: *limit };
                        return Poll::Ready(Some(Err(err.into())));
                    }
                    *remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            RequestBody::Buffered(full) => Pin::new(full).poll_frame(cx).map_err(|e| match e {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Stream { inner, .. } => inner.is_end_stream(),
            RequestBody::Buffered(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Stream { inner, .. } => inner.size_hint(),
            RequestBody::Buffered(full) => full.size_hint(),
        }
    }
}

/// A response body on its way to the client.
#[derive(Debug)]
pub enum ResponseBody {
    /// An instance's body, with the guard that ends the request when it is done.
    Upstream {
        /// The instance's body.
        inner: UpstreamBody,
        /// Dropped at the end of the body, on error, or when the client goes away.
        guard: Option<InFlight>,
        /// The request's place in its service's in-flight count, released with the body.
        admission: Option<Admission>,
    },
    /// A response tidegate wrote itself.
    Local(Full<Bytes>),
}

/// An instance's body, by the kind of connection it arrives on.
#[derive(Debug)]
pub enum UpstreamBody {
    /// From a connection hyper's client drives.
    Pooled {
        /// The body.
        body: Incoming,
        /// The connection the body arrives on, returned to its pool at the end
        /// of the body; closed when the body is cut short.
        connection: Option<Checkin>,
    },
    /// Read by the request's own task from a direct connection, which the
    /// body itself returns to its pool.
    Direct(DirectBody),
}

impl UpstreamBody {
    /// Whether the instance has sent the body whole.
    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Pooled { body, .. } => body.is_end_stream(),
            UpstreamBody::Direct(body) => body.is_end_stream(),
        }
    }

    /// The body ended cleanly: its connection may serve another request.
    fn finish(&mut self) {
        if let UpstreamBody::Pooled { connection, .. } = self {
            if let Some(c) = connection.take() {
                c.finish();
            }
        }
    }

    /// The body failed: its connection must not be reused.
    fn abandon(&mut self) {
        if let UpstreamBody::Pooled { connection, .. } = self {
            connection.take();
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            UpstreamBody::Pooled { body, .. } => Pin::new(body).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Direct(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Pooled { body, .. } => body.size_hint(),
            UpstreamBody::Direct(body) => body.size_hint(),
        }
    }
}

impl ResponseBody {
    /// A short local body.
    pub fn local(text: impl Into<Bytes>) -> Self {
        ResponseBody::Local(Full::new(text.into()))
    }

    /// Takes the answer's header lines that are still in the form the
    /// instance wrote them (a direct exchange leaves them so): whoever sends
    /// the response must write them ahead of the map's, or merge them in.
    pub fn take_wire_fields(&mut self) -> Option<WireFields> {
        self.wire_fields_mut().and_then(Option::take)
    }

    fn wire_fields_mut(&mut self) -> Option<&mut Option<WireFields>> {
        match self {
            ResponseBody::Upstream {
                inner: UpstreamBody::Direct(body),
                ..
            } => body.fields_mut(),
            _ => None,
        }
    }
}

/// Adds a header the proxy sets on an answer: after the instance's lines
/// while they are in wire form, else in the header map.
pub fn add_answer_header(
    response: &mut Response<ResponseBody>,
    header: ProxyHeader,
    value: HeaderValue,
) {
    let value = match response.body_mut().wire_fields_mut() {
        Some(Some(fields)) => match fields.add(header, value) {
            Ok(()) => return,
            Err(refused) => refused,
        },
        _ => value,
    };
    if header.replaces() {
        response.headers_mut().insert(header.name(), value);
    } else {
        response.headers_mut().append(header.name(), value);
    }
}

/// Puts the wire-form header lines of `response`, if any, into its header
/// map: for a server (hyper's) that writes only the map.
pub fn settle_wire_fields(response: &mut Response<ResponseBody>) {
    if let Some(fields) = response.body_mut().take_wire_fields() {
        fields.merge_into(response.headers_mut());
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Dropped before its end: the client went away (or the connection
        // failed on its side), which is no fault of the instance. A body whose
        // instance sent it whole counts as answered even if hyper never polled
        // the final empty frame.
        if let ResponseBody::Upstream { inner, guard, .. } = self {
            if inner.is_end_stream() {
                inner.finish();
            } else if let Some(guard) = guard {
                guard.set_outcome(Outcome::Cancelled);
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::Upstream { inner, guard, .. } => {
                let frame = ready!(inner.poll_frame(cx));
                match &frame {
                    Some(Ok(_)) => {}
                    Some(Err(_)) => {
                        if let Some(g) = guard.as_mut() {
                            g.set_outcome(Outcome::Reset);
                        }
                        guard.take();
                        inner.abandon();
                    }
                    None => {
                        inner.finish();
                        guard.take();
                    }
                }
                Poll::Ready(frame)
            }
            ResponseBody::Local(full) => Pin::new(full).poll_frame(cx).map_err(|e| match e {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Upstream { inner, .. } => inner.is_end_stream(),
            ResponseBody::Local(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Upstream { inner, .. } => inner.size_hint(),
            ResponseBody::Local(full) => full.size_hint(),
        }
    }
}
