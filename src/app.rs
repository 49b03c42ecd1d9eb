//! Wiring: builds the data plane and the control plane from a config, binds
//! every listener, and shuts everything down in order.
//!
//! `start` returns once every listener is bound (so `/ready` is true and tests
//! can connect at once); `Running::shutdown` stops accepting, lets in-flight
//! requests finish within the grace period and returns.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::health;
use crate::proxy::tls::TlsTerminator;
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
pub async fn start(config: Config) -> Result<Running, StartError> {
    let prometheus = telemetry::install_recorder();
    let registry = Arc::new(Registry::from_config(&config));
    let ready = Arc::new(AtomicBool::new(false));

    let mut listeners = Vec::new();
    for &addr in &config.proxy.listen {
        listeners.push(server::bind(addr).map_err(|source| StartError::Bind { addr, source })?);
    }
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
    let server = ProxyServer::new(listeners, proxy, &config.limits, &config.timeouts, tls);
    let proxy_addrs = server.local_addrs();
    let store = StoreHandle::start(&config)?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let control = ControlPlane::start(&config, &registry, &store, shutdown_rx.clone()).await;
    let grace = config.proxy.shutdown_grace;
    let probers = health::prober::spawn(&registry, shutdown_rx.clone());
    let proxy_task = tokio::spawn(server.run(shutdown_rx, grace));
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
