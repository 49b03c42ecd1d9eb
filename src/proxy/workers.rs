//! The proxy's worker threads: one current-thread runtime per worker, each
//! accepting on listeners of its own that share the proxy's addresses through
//! `SO_REUSEPORT`.
//!
//! The kernel spreads new connections over the workers' listeners; from then
//! on a connection, its tasks, its timers and the upstream connections it uses
//! (the upstream pool is per thread) stay on one thread, with no work stealing
//! and no wake-ups sent to another core. The control plane and the admin
//! listener stay on the runtime that started the workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};
use tracing::error;

use super::forward::Proxy;
use super::server::{self, ProxyServer};
use super::tls::TlsTerminator;
use crate::config::{Limits, Timeouts};

/// Binds `workers` sets of listeners on `addrs`, all with `SO_REUSEPORT`.
/// The first set binds the configured addresses (port 0 picks a port); the
/// others bind the addresses the first one got. On failure, returns the
/// address that could not be bound.
pub fn bind(
    addrs: &[SocketAddr],
    workers: usize,
) -> Result<Vec<Vec<TcpListener>>, (SocketAddr, std::io::Error)> {
    let first = addrs
        .iter()
        .map(|&addr| server::bind_shared(addr).map_err(|e| (addr, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let bound = first
        .iter()
        .zip(addrs)
        .map(|(l, &addr)| l.local_addr().map_err(|e| (addr, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sets = vec![first];
    for _ in 1..workers {
        sets.push(
            bound
                .iter()
                .map(|&addr| server::bind_shared(addr).map_err(|e| (addr, e)))
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    Ok(sets)
}

/// What every worker serves with.
pub struct WorkerSetup {
    /// The request path, shared by every worker.
    pub proxy: Arc<Proxy>,
    /// Connection and size limits; `max_connections` counts over all workers.
    pub limits: Limits,
    /// Timeouts of client connections.
    pub timeouts: Timeouts,
    /// TLS termination, when configured.
    pub tls: Option<TlsTerminator>,
    /// Turns true when the proxy is to stop accepting and drain.
    pub shutdown: watch::Receiver<bool>,
    /// How long in-flight requests may run after shutdown.
    pub grace: Duration,
}

/// Starts one worker thread per listener set. The returned future resolves
/// once every worker has drained and stopped, to whether all drained in time.
pub fn spawn(
    sets: Vec<Vec<TcpListener>>,
    setup: WorkerSetup,
) -> std::io::Result<impl std::future::Future<Output = bool> + Send + 'static> {
    let connections = Arc::new(Semaphore::new(setup.limits.max_connections));
    let mut done = Vec::with_capacity(sets.len());
    for (index, set) in sets.into_iter().enumerate() {
        // Taken off this runtime's reactor here, registered with the worker's there.
        let listeners = set
            .into_iter()
            .map(TcpListener::into_std)
            .collect::<std::io::Result<Vec<_>>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (finished, finished_rx) = oneshot::channel();
        let proxy = Arc::clone(&setup.proxy);
        let (limits, timeouts, tls) = (setup.limits, setup.timeouts, setup.tls.clone());
        let (shutdown, grace) = (setup.shutdown.clone(), setup.grace);
        let connections = Arc::clone(&connections);
        std::thread::Builder::new()
            .name(format!("tidegate-worker-{index}"))
            .spawn(move || {
                let drained = runtime.block_on(async move {
                    let listeners = match listeners
                        .into_iter()
                        .map(TcpListener::from_std)
                        .collect::<std::io::Result<Vec<_>>>()
                    {
                        Ok(listeners) => listeners,
                        Err(e) => {
                            error!(worker = index, error = %e, "cannot register listeners");
                            return false;
                        }
                    };
                    ProxyServer::new(listeners, proxy, &limits, &timeouts, tls)
                        .with_connection_limit(connections)
                        .run(shutdown, grace)
                        .await
                });
                let _ = finished.send(drained);
            })?;
        done.push(finished_rx);
    }
    Ok(async move {
        let mut all_drained = true;
        for worker in done {
            all_drained &= worker.await.unwrap_or(false);
        }
        all_drained
    })
}
