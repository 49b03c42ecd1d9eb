//! Wiring: builds the data plane and the control plane from a config, binds
//! every listener, and shuts everything down in order.
//!
//! `start` returns once every listener is bound (so `/ready` is true and tests
//! can connect at once); `Running::shutdown` stops accepting, lets in-flight
//! requests finish within the grace period and returns.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::health;
use crate::proxy::tls::TlsTerminator;
use crate::proxy::workers::{self, WorkerSetup};
use crate::proxy::{server, upstream, Proxy, ProxyServer, Router};
use crate::registry::Registry;
use crate::scale::control::ControlPlane;
use crate::store::{StoreError, StoreHandle};
use crate::telemetry;

/// Why tidegate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The TLS certificate or key of `[proxy.tls]` is unusable.
    #[error("proxy.tls: {0}")]
    Tls(#[from] crate::proxy::tls::TlsError),
    /// A listener address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The store's database URL cannot be used.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A proxy worker thread or its runtime could not be started.
    #[error("cannot start a proxy worker: {0}")]
    Worker(std::io::Error),
}

/// A started tidegate.
pub struct Running {
    /// The proxy listeners' bound addresses.
    pub proxy_addrs: Vec<SocketAddr>,
    /// The admin listener's bound address.
    pub admin_addr: SocketAddr,
    /// The running services.
    pub registry: Arc<Registry>,
    /// The database and the sample queue; ready in the background.
    pub store: StoreHandle,
    /// Orchestrators, recorder and scaling loop.
    pub control: ControlPlane,
    shutdown: watch::Sender<bool>,
    proxy_task: JoinHandle<bool>,
    ready: Arc<AtomicBool>,
    admin_stop: watch::Sender<bool>,
    admin_task: JoinHandle<()>,
    probers: tokio::task::JoinSet<()>,
}

/// Binds every listener and starts serving.
///
/// With `proxy.workers` above 1, the proxy runs on that many worker threads,
/// one current-thread runtime each (see [`crate::proxy::workers`]); with 0 or
/// 1 it runs on the caller's runtime (the binary turns 0 into the number of
/// cores before calling this).
pub async fn start(config: Config) -> Result<Running, StartError> {
    let prometheus = telemetry::install_recorder();
    let registry = Arc::new(Registry::from_config(&config));
    let ready = Arc::new(AtomicBool::new(false));

    let mut listener_sets = if config.proxy.workers > 1 {
        workers::bind(&config.proxy.listen, config.proxy.workers)
            .map_err(|(addr, source)| StartError::Bind { addr, source })?
    } else {
        let mut listeners = Vec::new();
        for &addr in &config.proxy.listen {
            listeners.push(server::bind(addr).map_err(|source| StartError::Bind { addr, source })?);
        }
        vec![listeners]
    };
    let proxy_addrs: Vec<SocketAddr> = listener_sets[0]
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let admin_listener = server::bind(config.admin.listen).map_err(|source| StartError::Bind {
        addr: config.admin.listen,
        source,
    })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.admin.listen,
            source,
        })?;

    let proxy = Arc::new(Proxy::new(
        Router::new(&registry),
        upstream::client(&config.timeouts),
        config.timeouts,
        config.limits,
    ));
    let tls = match &config.proxy.tls {
        Some(tls) => Some(TlsTerminator::new(tls, config.timeouts.idle)?),
        None => None,
    };
    // On this runtime when there is one set of listeners; on worker threads otherwise.
    let serving = if listener_sets.len() == 1 {
        let listeners = listener_sets.pop().expect("one set");
        Serving::Here(ProxyServer::new(
            listeners,
            proxy,
            &config.limits,
            &config.timeouts,
            tls,
        ))
    } else {
        Serving::Workers(listener_sets, proxy, tls)
    };
    let store = StoreHandle::start(&config)?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let control = ControlPlane::start(&config, &registry, &store, shutdown_rx.clone()).await;
    let grace = config.proxy.shutdown_grace;
    let probers = health::prober::spawn(&registry, shutdown_rx.clone());
    let proxy_task = match serving {
        Serving::Here(server) => tokio::spawn(server.run(shutdown_rx, grace)),
        Serving::Workers(sets, proxy, tls) => {
            let setup = WorkerSetup {
                proxy,
                limits: config.limits,
                timeouts: config.timeouts,
                tls,
                shutdown: shutdown_rx,
                grace,
            };
            tokio::spawn(workers::spawn(sets, setup).map_err(StartError::Worker)?)
        }
    };
    // The admin listener outlives the drain, so that /ready can say 503 while it runs.
    let (admin_stop, admin_stop_rx) = watch::channel(false);
    let admin_state = AdminState {
        registry: Arc::clone(&registry),
        ready: Arc::clone(&ready),
        prometheus,
        token: config.admin.token.clone(),
    };
    let admin_task = tokio::spawn(admin::serve(admin_listener, admin_state, admin_stop_rx));

    ready.store(true, Ordering::Release);
    let services: Vec<String> = registry
        .services()
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    info!(
        version = env!("CARGO_PKG_VERSION"),
        proxy = ?proxy_addrs,
        admin = %admin_addr,
        services = ?services,
        "tidegate started"
    );
    Ok(Running {
        proxy_addrs,
        admin_addr,
        registry,
        store,
        control,
        shutdown,
        proxy_task,
        ready,
        admin_stop,
        admin_task,
        probers,
    })
}

/// Where the proxy listeners are served.
enum Serving {
    /// On the runtime that called `start`.
    Here(ProxyServer),
    /// On one worker thread per listener set.
    Workers(Vec<Vec<TcpListener>>, Arc<Proxy>, Option<TlsTerminator>),
}

impl Running {
    /// The first proxy listener's address.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addrs[0]
    }

    /// Stops accepting and waits for in-flight requests (up to the grace period),
    /// with `/ready` answering 503 meanwhile; then stops the admin listener.
    /// Returns whether every request finished in time.
    pub async fn shutdown(self) -> bool {
        self.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        let drained = self.proxy_task.await.unwrap_or(false);
        let _ = self.admin_stop.send(true);
        let _ = self.admin_task.await;
        let mut probers = self.probers;
        while probers.join_next().await.is_some() {}
        self.store.shutdown().await;
        self.control.shutdown().await;
        info!(drained, "tidegate stopped");
        drained
    }
}
