//! The proxy's listeners: accept loops, per-connection serving and graceful
//! shutdown.
//!
//! A connection is served by [`h1`](super::h1), the proxy's own HTTP/1.1
//! server, for as long as its requests are the plain kind it serves; from
//! the first that is not (HTTP/2's preface, a streamed body, an upgrade, a
//! malformed head), hyper-util's auto builder takes it over with the bytes
//! already read, and speaks HTTP/1.1 or HTTP/2 to it. A semaphore caps open
//! connections; past the cap, new connections wait in the kernel's backlog
//! instead of being accepted and starved.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::body::{settle_wire_fields, ClientBody};
use super::forward::{Downstream, Proxy};
use super::h1::{self, ClientConnection, Rewound, Served};
use super::tls::TlsTerminator;
use crate::config::{Limits, Timeouts};
use crate::telemetry::names;

/// Binds a listener with `SO_REUSEADDR` and a deep backlog.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_with(addr, false)
}

/// Binds one of several listeners on the same address (`SO_REUSEPORT`): the
/// kernel spreads new connections over them, one listener per worker.
pub fn bind_shared(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_with(addr, true)
}

fn bind_with(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(reuse_port)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// The proxy's listeners and what they serve.
pub struct ProxyServer {
    listeners: Vec<TcpListener>,
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    connections: Arc<Semaphore>,
    handshake: Handshake,
}

/// How an accepted connection is taken up: TLS when configured, then the
/// HTTP/1.1 fast path's settings (its idle deadline also bounds the wait for
/// the first byte, which hyper's protocol detection does not).
#[derive(Debug, Clone)]
struct Handshake {
    tls: Option<TlsTerminator>,
    h1: h1::Settings,
}

impl ProxyServer {
    /// A server over bound listeners, terminating TLS when `tls` is given.
    pub fn new(
        listeners: Vec<TcpListener>,
        proxy: Arc<Proxy>,
        limits: &Limits,
        timeouts: &Timeouts,
        tls: Option<TlsTerminator>,
    ) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .max_buf_size(limits.max_header_bytes)
            .header_read_timeout(timeouts.idle)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            // TODO: an idle HTTP/2 connection stays open as long as it answers
            // these pings; hyper's HTTP/2 server has no idle timeout, so closing
            // one needs a timer of our own around the connection.
            .keep_alive_interval(Some(timeouts.idle / 2))
            .max_concurrent_streams(1024);
        Self {
            listeners,
            proxy,
            builder: Arc::new(builder),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            handshake: Handshake {
                tls,
                h1: h1::Settings {
                    max_head_bytes: limits.max_header_bytes,
                    idle: timeouts.idle,
                },
            },
        }
    }

    /// Counts this server's connections against `limit` instead of its own
    /// semaphore, so that workers sharing an address share `max_connections`.
    pub fn with_connection_limit(mut self, limit: Arc<Semaphore>) -> Self {
        self.connections = limit;
        self
    }

    /// The addresses actually bound (useful when binding port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` turns true, then lets open requests finish for
    /// up to `grace`. Returns whether every connection finished in time.
    ///
    /// Connections watch `shutdown` themselves: an idle one closes at once, a
    /// busy one after its answer (HTTP/2: after its open streams).
    pub async fn run(self, shutdown: watch::Receiver<bool>, grace: Duration) -> bool {
        let open = TaskTracker::new();
        let mut accept_loops = Vec::new();
        for listener in self.listeners {
            accept_loops.push(tokio::spawn(accept_loop(
                listener,
                Arc::clone(&self.proxy),
                Arc::clone(&self.builder),
                Arc::clone(&self.connections),
                open.clone(),
                shutdown.clone(),
                self.handshake.clone(),
            )));
        }
        for task in accept_loops {
            let _ = task.await;
        }

        open.close();
        info!(
            open_connections = open.len(),
            grace_ms = grace.as_millis() as u64,
            "draining connections"
        );
        match tokio::time::timeout(grace, open.wait()).await {
            Ok(()) => true,
            Err(_) => {
                warn!(
                    open_connections = open.len(),
                    "grace period ended with requests still in flight"
                );
                false
            }
        }
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    connections: Arc<Semaphore>,
    open: TaskTracker,
    mut shutdown: watch::Receiver<bool>,
    handshake: Handshake,
) {
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stopped(&mut shutdown) => return,
        };
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!(error = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return,
        };
        let proxy = Arc::clone(&proxy);
        let builder = Arc::clone(&builder);
        let shutdown = shutdown.clone();
        let Handshake { tls, h1 } = handshake.clone();
        open.spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            metrics::gauge!(names::CONNECTIONS_OPEN).increment(1.0);
            match tls {
                None => {
                    let downstream = Downstream {
                        addr,
                        proto: "http",
                    };
                    serve_connection(stream, downstream, proxy, builder, h1, shutdown).await;
                }
                // Boxed: a task is as large as its largest branch, and the TLS
                // stream's state would otherwise be held by every plain connection.
                Some(tls) => {
                    Box::pin(async move {
                        if let Some(stream) = tls.handshake(stream, addr).await {
                            let downstream = Downstream {
                                addr,
                                proto: "https",
                            };
                            serve_connection(stream, downstream, proxy, builder, h1, shutdown)
                                .await;
                        }
                    })
                    .await
                }
            }
            metrics::gauge!(names::CONNECTIONS_OPEN).decrement(1.0);
        });
    }
}

/// Serves one connection: by the fast path while it can, then by hyper.
async fn serve_connection<S>(
    stream: S,
    downstream: Downstream,
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    settings: h1::Settings,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = ClientConnection::new(stream, settings, shutdown.clone());
    if let Served::HandOver { stream, read } = connection.serve(&proxy, downstream).await {
        // Boxed, so that a connection the fast path serves does not carry
        // hyper's connection state.
        Box::pin(serve_with_hyper(
            Rewound::new(stream, read),
            downstream,
            proxy,
            builder,
            shutdown,
        ))
        .await;
    }
}

/// Serves a connection with hyper until it closes; on shutdown, hyper
/// finishes what is in flight and closes it.
async fn serve_with_hyper<S>(
    stream: S,
    downstream: Downstream,
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let addr = downstream.addr;
    // The request's future (about 4.9 KB) is boxed per request: hyper keeps a
    // slot the size of the service's future for every connection, busy or
    // idle, so an unboxed future would cost each idle connection that much.
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let proxy = Arc::clone(&proxy);
        let req = req.map(ClientBody::Streaming);
        Box::pin(async move {
            let mut response = proxy.handle(req, downstream).await;
            settle_wire_fields(&mut response);
            Ok::<_, Infallible>(response)
        })
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            _ = stopped(&mut shutdown), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(error) = result {
        debug!(client = %addr, error = %error, "connection ended with an error");
    }
}
