//! The client that carries requests to instances, with its keep-alive pools.
//!
//! Each OS thread keeps its own pool of HTTP/1.1 connections per instance
//! (`hyper::client::conn::http1`), so a checkout takes no lock and touches no
//! memory another core writes: with one current-thread runtime per worker, a
//! connection lives and dies on one core. A connection goes back to its pool as
//! soon as the response head arrives; it is still busy while the body streams,
//! and the checkout skips it until hyper reports it ready again. A request that
//! a pooled connection could not even start (the instance had closed it while
//! idle) is sent again once, on a fresh connection.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use thread_local::ThreadLocal;
use tokio::net::TcpStream;
use tracing::debug;

use super::body::RequestBody;
use crate::config::Timeouts;

/// Connections kept per instance and thread; past it, a returned connection closes.
const MAX_POOLED_PER_INSTANCE: usize = 1024;

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
}

impl UpstreamError {
    /// Whether the instance was never reached, so no part of the request was sent.
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect { .. })
    }
}

/// The upstream client shared by every service.
pub struct UpstreamClient {
    connect_timeout: Duration,
    idle_timeout: Duration,
    pools: ThreadLocal<RefCell<Pools>>,
}

/// One thread's pools, by instance authority. Keys come from the config, not
/// from clients, so a fast non-keyed hash is safe; `Authority` hashes byte by
/// byte, where SipHash costs more than the rest of the checkout.
type Pools = HashMap<Authority, VecDeque<Pooled>, BuildHasherDefault<Fnv1a>>;

/// The 64-bit FNV-1a hash (Fowler, Noll and Vo).
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
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
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// Builds the upstream client with the config's timeouts.
pub fn client(timeouts: &Timeouts) -> UpstreamClient {
    UpstreamClient {
        connect_timeout: timeouts.connect,
        idle_timeout: timeouts.idle,
        pools: ThreadLocal::new(),
    }
}

impl UpstreamClient {
    /// Sends `req`, whose target is in origin form (`/path?query`), to the
    /// instance at `authority` and returns the response head; the body streams
    /// from the connection as it is read.
    pub async fn request(
        &self,
        authority: &Authority,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.send(authority, req, None).await
    }

    /// As [`UpstreamClient::request`], counting the request in `waiting` for as
    /// long as it waits for a new connection (no pooled one was ready): the
    /// instance's queue depth the recorder reports.
    pub async fn request_counting(
        &self,
        authority: &Authority,
        req: Request<RequestBody>,
        waiting: &AtomicU32,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.send(authority, req, Some(waiting)).await
    }

    async fn send(
        &self,
        authority: &Authority,
        mut req: Request<RequestBody>,
        waiting: Option<&AtomicU32>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut attempt_reused = true;
        loop {
            let (mut sender, reused) = match self.checkout(authority) {
                Some(sender) if attempt_reused => (sender, true),
                _ => {
                    let _queued = Queued::enter(waiting);
                    (self.connect(authority).await?, false)
                }
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    self.checkin(authority, sender);
                    return Ok(response);
                }
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

    /// A pooled connection to `authority` that is ready for a request, if any.
    /// Busy connections stay pooled; closed and expired ones are dropped.
    fn checkout(&self, authority: &Authority) -> Option<http1::SendRequest<RequestBody>> {
        let mut pools = self.pools.get_or(Default::default).borrow_mut();
        let queue = pools.get_mut(authority)?;
        let now = Instant::now();
        for _ in 0..queue.len() {
            let pooled = queue.pop_front()?;
            if pooled.sender.is_closed() || now - pooled.since > self.idle_timeout {
                continue;
            }
            if pooled.sender.is_ready() {
                return Some(pooled.sender);
            }
            queue.push_back(pooled);
        }
        None
    }

    fn checkin(&self, authority: &Authority, sender: http1::SendRequest<RequestBody>) {
        let mut pools = self.pools.get_or(Default::default).borrow_mut();
        let pooled = Pooled {
            sender,
            since: Instant::now(),
        };
        if let Some(queue) = pools.get_mut(authority) {
            if queue.len() < MAX_POOLED_PER_INSTANCE {
                queue.push_back(pooled);
            }
            return;
        }
        // The key is cloned only the first time this thread pools a connection to it.
        pools.insert(authority.clone(), VecDeque::from([pooled]));
    }

    async fn connect(
        &self,
        authority: &Authority,
    ) -> Result<http1::SendRequest<RequestBody>, UpstreamError> {
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
