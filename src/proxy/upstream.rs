//! The client that carries requests to instances, with its keep-alive pools.
//!
//! Each OS thread keeps its own pool of HTTP/1.1 connections per instance
//! (`hyper::client::conn::http1`), so a checkout takes no lock and touches no
//! memory another core writes: with one current-thread runtime per worker, a
//! connection lives and dies on one core. The proxy's connection goes back to
//! its pool when the response body it carries has ended ([`Checkin`], held by
//! the response body), so the pool holds idle connections, not busy ones; one
//! whose body was cut short closes. Checkout takes the most recently returned
//! ready connection, so a steady load keeps reusing the few connections it
//! needs, whose buffers are warm in cache, while those a past burst opened sit
//! at the old end and age out. A request that a pooled connection could not
//! even start (the instance had closed it while idle) is sent again once, on a
//! fresh connection.
//!
//! Requests whose body is in memory take the direct path instead
//! ([`UpstreamClient::exchange`]): the request's own task drives the exchange
//! over a pooled [`Connection`] (see `exchange`), and the response body
//! ([`DirectBody`]) hands the connection back when it has read the answer
//! whole. Those connections sit in pools of their own, newest first.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{request, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use thread_local::ThreadLocal;
use tokio::net::TcpStream;
use tracing::debug;

use super::body::RequestBody;
use super::exchange::{Connection, ExchangeError, Framing};
use super::fields::WireFields;
use super::headers::Forwarding;
use crate::config::Timeouts;

/// Connections kept per instance and thread; past it, the oldest one closes.
const MAX_POOLED_PER_INSTANCE: usize = 1024;

/// Newest pooled connections a checkout looks at before it turns to the
/// oldest: the newest end may hold connections hyper has not marked ready yet
/// (just returned, or returned at the response head by
/// [`UpstreamClient::request`] while their body still streams).
const NEWEST_SCANNED: usize = 8;

/// TCP keep-alive probes start after this much silence on an upstream connection.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Why a request to an instance failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made (refused, unreachable, timed out).
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// The instance's authority.
        authority: Authority,
        /// Why.
        source: std::io::Error,
    },
    /// The connection failed while sending the request or reading the answer.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// A direct exchange failed after connecting.
    #[error(transparent)]
    Exchange(ExchangeError),
    /// The try's deadline passed before the answer's head arrived.
    #[error("no answer before the deadline")]
    TimedOut,
}

impl From<ExchangeError> for UpstreamError {
    fn from(error: ExchangeError) -> Self {
        match error {
            ExchangeError::TimedOut => UpstreamError::TimedOut,
            error => UpstreamError::Exchange(error),
        }
    }
}

impl UpstreamError {
    /// Whether the instance was never reached, so no part of the request was sent.
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect { .. })
    }

    /// Whether the try ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, UpstreamError::TimedOut)
    }
}

/// The upstream client shared by every service.
pub struct UpstreamClient {
    connect_timeout: Duration,
    pools: Arc<ThreadPools>,
}

/// Every thread's pools, shared with the [`Checkin`]s under way.
struct ThreadPools {
    /// A connection idle in a pool longer than this is closed.
    idle_timeout: Duration,
    by_thread: ThreadLocal<RefCell<Pools>>,
    direct: ThreadLocal<RefCell<DirectPools>>,
}

/// One thread's pools, by instance authority. Keys come from the config, not
/// from clients, so a fast non-keyed hash is safe.
type Pools = HashMap<PoolKey, VecDeque<Pooled>, BuildHasherDefault<WordHash>>;

/// One thread's idle connections for direct exchanges, by instance authority,
/// the most recently returned at the back.
type DirectPools = HashMap<PoolKey, VecDeque<IdleConnection>, BuildHasherDefault<WordHash>>;

/// A direct connection waiting in a pool, and when it went back there.
struct IdleConnection {
    connection: Box<Connection>,
    since: Instant,
}

/// A pool's key: an instance's authority, hashed and compared as its text.
/// `Authority` itself hashes and compares ignoring case, one byte per hasher
/// call, which cost more than the rest of a checkout; an instance's authority
/// comes from the config and is always spelt the same way. Maps are looked up
/// by `&str` through `Borrow`, so a lookup clones nothing.
struct PoolKey(Authority);

impl PartialEq for PoolKey {
    fn eq(&self, other: &PoolKey) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for PoolKey {}

impl std::hash::Hash for PoolKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for PoolKey {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

/// A multiply-rotate hash taking eight bytes per step: enough to spread a
/// handful of configured authorities, at a few instructions per key.
#[derive(Default)]
struct WordHash(u64);

impl WordHash {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(26);
    }
}

impl Hasher for WordHash {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(word);
            self.mix(u64::from_le_bytes(eight));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut eight = [0u8; 8];
            eight[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(eight) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.mix(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A connection waiting in a pool, and when it went back there.
struct Pooled {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.pools.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// Builds the upstream client with the config's timeouts.
pub fn client(timeouts: &Timeouts) -> UpstreamClient {
    UpstreamClient {
        connect_timeout: timeouts.connect,
        pools: Arc::new(ThreadPools {
            idle_timeout: timeouts.idle,
            by_thread: ThreadLocal::new(),
            direct: ThreadLocal::new(),
        }),
    }
}

impl UpstreamClient {
    /// Sends `req`, whose target is in origin form (`/path?query`), to the
    /// instance at `authority` and returns the response head; the body streams
    /// from the connection as it is read. The connection goes back to the pool
    /// at once, and is skipped until hyper reports it ready again.
    pub async fn request(
        &self,
        authority: &Authority,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let (response, sender) = self.send(authority, req, None).await?;
        self.pools.checkin(authority, sender);
        Ok(response)
    }

    /// As [`UpstreamClient::request`], for the proxy: the connection comes
    /// back with the response, to be returned to the pool through
    /// [`Checkin::finish`] once its body has ended. The request counts in
    /// `waiting` for as long as it waits for a new connection (no pooled one
    /// was ready): the instance's queue depth the recorder reports.
    pub async fn request_counting(
        &self,
        authority: &Authority,
        req: Request<RequestBody>,
        waiting: &AtomicU32,
    ) -> Result<(Response<Incoming>, Checkin), UpstreamError> {
        let (response, sender) = self.send(authority, req, Some(waiting)).await?;
        let checkin = Checkin {
            pools: Arc::clone(&self.pools),
            authority: authority.clone(),
            sender,
        };
        Ok((response, checkin))
    }

    async fn send(
        &self,
        authority: &Authority,
        mut req: Request<RequestBody>,
        waiting: Option<&AtomicU32>,
    ) -> Result<(Response<Incoming>, http1::SendRequest<RequestBody>), UpstreamError> {
        let mut attempt_reused = true;
        loop {
            let (mut sender, reused) = match self.pools.checkout(authority) {
                Some(sender) if attempt_reused => (sender, true),
                _ => {
                    let _queued = Queued::enter(waiting);
                    (self.connect(authority).await?, false)
                }
            };
            match sender.try_send_request(req).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => {
                        debug!(instance = %authority, "pooled connection was closed, reconnecting");
                        req = unsent;
                        attempt_reused = false;
                    }
                    _ => return Err(UpstreamError::Http(error.into_error())),
                },
            }
        }
    }

    /// Sends a request whose body is in memory over a direct connection and
    /// returns the answer, whose head must arrive by `deadline`; its body
    /// reads the rest from the connection, which goes back to the pool once
    /// the answer has been read whole. The request counts in `waiting` while
    /// it waits for a new connection, as in
    /// [`UpstreamClient::request_counting`]. A pooled connection that turns
    /// out to be closed before answering is replaced by a fresh one, once,
    /// when sending the request again is safe.
    pub async fn exchange(
        &self,
        authority: &Authority,
        parts: &request::Parts,
        forwarding: Option<&Forwarding>,
        body: &Bytes,
        waiting: &AtomicU32,
        deadline: tokio::time::Instant,
    ) -> Result<Response<DirectBody>, UpstreamError> {
        let mut reuse = true;
        loop {
            let pooled = if reuse {
                self.pools.checkout_direct(authority)
            } else {
                None
            };
            let reused = pooled.is_some();
            let mut connection = match pooled {
                Some(connection) => connection,
                None => {
                    let _queued = Queued::enter(Some(waiting));
                    let stream = tokio::time::timeout_at(deadline, self.connect_stream(authority))
                        .await
                        .map_err(|_elapsed| UpstreamError::TimedOut)??;
                    Box::new(Connection::new(stream))
                }
            };
            match connection.send(parts, forwarding, body, deadline).await {
                Ok(answer) => {
                    let body = DirectBody {
                        connection: Some(connection),
                        framing: answer.framing,
                        keep_alive: answer.keep_alive,
                        pools: Arc::clone(&self.pools),
                        authority: authority.clone(),
                        failed: None,
                    };
                    return Ok(Response::from_parts(answer.head, body));
                }
                Err(error)
                    if reused
                        && error.unanswered()
                        && (parts.method.is_idempotent()
                            || matches!(error, ExchangeError::Write(_))) =>
                {
                    debug!(instance = %authority, error = %error, "pooled connection was closed, reconnecting");
                    reuse = false;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    async fn connect(
        &self,
        authority: &Authority,
    ) -> Result<http1::SendRequest<RequestBody>, UpstreamError> {
        let stream = self.connect_stream(authority).await?;
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        let instance = authority.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(instance = %instance, error = %error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// A new TCP connection to the instance, with `TCP_NODELAY` and keep-alive probes.
    async fn connect_stream(&self, authority: &Authority) -> Result<TcpStream, UpstreamError> {
        let connect_error = |source| UpstreamError::Connect {
            authority: authority.clone(),
            source,
        };
        let stream =
            tokio::time::timeout(self.connect_timeout, TcpStream::connect(authority.as_str()))
                .await
                .map_err(|_| connect_error(std::io::ErrorKind::TimedOut.into()))?
                .map_err(connect_error)?;
        stream.set_nodelay(true).map_err(connect_error)?;
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        socket2::SockRef::from(&stream)
            .set_tcp_keepalive(&keepalive)
            .map_err(connect_error)?;
        Ok(stream)
    }
}

impl ThreadPools {
    /// A pooled connection to `authority` that is ready for a request, if any:
    /// the newest ready one among the last [`NEWEST_SCANNED`] returned, else
    /// the oldest ready one. Closed and expired connections met on the way are
    /// dropped; busy ones stay pooled.
    fn checkout(&self, authority: &Authority) -> Option<http1::SendRequest<RequestBody>> {
        let mut pools = self.by_thread.get_or(Default::default).borrow_mut();
        let queue = pools.get_mut(authority.as_str())?;
        let now = Instant::now();
        let usable = |p: &Pooled| !p.sender.is_closed() && now - p.since <= self.idle_timeout;

        let mut newest = queue.len();
        let mut scanned = 0;
        while newest > 0 && scanned < NEWEST_SCANNED {
            newest -= 1;
            if !usable(&queue[newest]) {
                queue.remove(newest);
            } else if queue[newest].sender.is_ready() {
                return queue.remove(newest).map(|p| p.sender);
            } else {
                scanned += 1;
            }
        }
        let mut oldest = 0;
        while oldest < newest {
            if !usable(&queue[oldest]) {
                queue.remove(oldest);
                newest -= 1;
            } else if queue[oldest].sender.is_ready() {
                return queue.remove(oldest).map(|p| p.sender);
            } else {
                oldest += 1;
            }
        }
        None
    }

    /// Returns a connection to its pool at the newest end ([`push_newest`]).
    fn checkin(&self, authority: &Authority, sender: http1::SendRequest<RequestBody>) {
        let mut pools = self.by_thread.get_or(Default::default).borrow_mut();
        let now = Instant::now();
        let pooled = Pooled { sender, since: now };
        let idle_timeout = self.idle_timeout;
        push_newest(&mut pools, authority, pooled, now, |p, now| {
            p.sender.is_closed() || now - p.since > idle_timeout
        });
    }
}

impl ThreadPools {
    /// The most recently returned direct connection to `authority` that is
    /// still open and not expired. Those met on the way are closed.
    fn checkout_direct(&self, authority: &Authority) -> Option<Box<Connection>> {
        let mut pools = self.direct.get_or(Default::default).borrow_mut();
        let queue = pools.get_mut(authority.as_str())?;
        let now = Instant::now();
        while let Some(idle) = queue.pop_back() {
            if now - idle.since <= self.idle_timeout && !idle.connection.is_stale() {
                return Some(idle.connection);
            }
        }
        None
    }

    /// Returns a direct connection to its pool at the newest end ([`push_newest`]).
    fn checkin_direct(&self, authority: &Authority, connection: Box<Connection>) {
        let mut pools = self.direct.get_or(Default::default).borrow_mut();
        let now = Instant::now();
        let idle = IdleConnection {
            connection,
            since: now,
        };
        let idle_timeout = self.idle_timeout;
        push_newest(&mut pools, authority, idle, now, |i, now| {
            now - i.since > idle_timeout
        });
    }
}

/// Puts `entry` at the newest end of `authority`'s queue. The oldest entry
/// goes when the queue is full or `gone` says it is closed or expired by
/// `now`, so idle connections left by a burst are let go one per checkin. The
/// key is cloned only the first time this thread pools a connection to the
/// instance.
fn push_newest<T>(
    pools: &mut HashMap<PoolKey, VecDeque<T>, BuildHasherDefault<WordHash>>,
    authority: &Authority,
    entry: T,
    now: Instant,
    gone: impl Fn(&T, Instant) -> bool,
) {
    let Some(queue) = pools.get_mut(authority.as_str()) else {
        pools.insert(PoolKey(authority.clone()), VecDeque::from([entry]));
        return;
    };
    if let Some(front) = queue.front() {
        if queue.len() >= MAX_POOLED_PER_INSTANCE || gone(front, now) {
            queue.pop_front();
        }
    }
    queue.push_back(entry);
}

/// The body of an answer read over a direct connection. The connection goes
/// back to its pool once the body has been read whole and the instance left
/// it reusable; dropped before that, the connection closes.
pub struct DirectBody {
    /// Boxed once per connection, so that the body moves as a pointer.
    connection: Option<Box<Connection>>,
    framing: Framing,
    keep_alive: bool,
    pools: Arc<ThreadPools>,
    authority: Authority,
    /// A failure held back for one poll, so that what arrived before it
    /// reaches the client first.
    failed: Option<ExchangeError>,
}

impl DirectBody {
    /// Takes the answer's header lines still in wire form.
    pub fn take_fields(&mut self) -> Option<WireFields> {
        self.fields_mut().and_then(Option::take)
    }

    /// The answer's header lines still in wire form, if the connection is
    /// still held (it is until the body ends).
    pub fn fields_mut(&mut self) -> Option<&mut Option<WireFields>> {
        self.connection.as_mut().map(|c| c.fields_mut())
    }

    /// Hands the connection back (or closes it) once the body has ended.
    fn finish(&mut self) {
        if let Some(mut connection) = self.connection.take() {
            // Nothing of this answer is kept: its head shares the buffer the
            // connection reads into next.
            connection.fields_mut().take();
            if self.keep_alive && connection.is_clean() {
                self.pools.checkin_direct(&self.authority, connection);
            }
        }
    }
}

impl Body for DirectBody {
    type Data = Bytes;
    type Error = ExchangeError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        let this = self.get_mut();
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        let Some(connection) = this.connection.as_mut() else {
            return Poll::Ready(None);
        };
        let piece = ready!(connection.poll_body(&mut this.framing, cx));
        Poll::Ready(match piece {
            Some(Ok(data)) => {
                if this.framing.is_done() {
                    this.finish();
                }
                Some(Ok(Frame::data(data)))
            }
            Some(Err(error)) => {
                // hyper drops what it has not flushed when a body fails, and
                // the head and the body's first bytes may still be buffered
                // together: yield once so that they are written, then fail.
                this.connection = None;
                this.failed = Some(error);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            None => {
                this.finish();
                None
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.framing.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.framing
            .remaining()
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

impl Drop for DirectBody {
    fn drop(&mut self) {
        if self.framing.is_done() {
            self.finish();
        }
    }
}

impl std::fmt::Debug for DirectBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectBody")
            .field("instance", &self.authority)
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

/// A connection lent to one exchange, returned to the pool of the thread that
/// finishes it. Dropped without [`Checkin::finish`] (the body was cut short,
/// or the answer is being retried elsewhere), the connection closes.
pub struct Checkin {
    pools: Arc<ThreadPools>,
    authority: Authority,
    sender: http1::SendRequest<RequestBody>,
}

impl Checkin {
    /// The exchange ended cleanly: the connection may serve another request.
    pub fn finish(self) {
        self.pools.checkin(&self.authority, self.sender);
    }
}

impl std::fmt::Debug for Checkin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkin")
            .field("instance", &self.authority)
            .finish_non_exhaustive()
    }
}

/// Counts a request as waiting for a connection until it is dropped, also
/// when a timeout cancels the wait.
struct Queued<'a>(Option<&'a AtomicU32>);

impl<'a> Queued<'a> {
    fn enter(counter: Option<&'a AtomicU32>) -> Self {
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        Self(counter)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
