//! The process orchestrator: instances are child processes tidegate starts.
//!
//! Each instance is `sh -c COMMAND` with `{port}` and `{tidegate}` (the path of
//! the running binary) substituted and `PORT` set, started in its own process
//! group so that stopping it reaches everything it forked: SIGTERM to the
//! group, SIGKILL after `stop_grace`. A new instance joins the table only once
//! its start-up probe passes; one that is not healthy within `start_timeout`
//! is killed and the start fails. A monitor task per instance notices an exit
//! nobody asked for, takes the instance out of the table, starts a
//! replacement and records the event.
//!
//! No child outlives tidegate's orderly exit: `shutdown` stops every group,
//! and dropping the orchestrator kills whatever is left; `abandon`, for an
//! exit without a drain, kills every group at once.
// TODO: a tidegate killed with SIGKILL leaves its children running; a
// parent-death signal needs `prctl`, which this crate's `forbid(unsafe_code)`
// rules out, so operators should run tidegate under a supervisor that kills
// its cgroup. (A second shutdown signal exits at once too, but the CLI
// first has every orchestrator abandon its children.)

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::BoxFuture;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tracing::{info, warn};

use super::{OrchestrateError, Orchestrator};
use crate::balance::Instance;
use crate::config::ProcessConfig;
use crate::health::prober;
use crate::ids::InstanceId;
use crate::registry::Service;
use crate::scale::event::{EventSink, EventType, ScalingEvent};
use crate::scale::procfs;
use crate::store::TriggerMetric;

/// Child processes started by tidegate.
pub struct ProcessOrchestrator {
    inner: Arc<Inner>,
}

struct Inner {
    service: Arc<Service>,
    config: ProcessConfig,
    events: Arc<dyn EventSink>,
    children: Mutex<HashMap<InstanceId, Running>>,
    next_port: AtomicU16,
    shutting_down: AtomicBool,
    exe: String,
}

/// One child the orchestrator started.
#[derive(Debug, Clone, Copy)]
struct Running {
    group: u32,
    addr: SocketAddr,
    /// Set before it is stopped on purpose, so its exit is not taken for a crash.
    stopping: bool,
}

impl ProcessOrchestrator {
    /// The process orchestrator of a service.
    pub fn new(
        service: Arc<Service>,
        config: ProcessConfig,
        events: Arc<dyn EventSink>,
    ) -> Arc<Self> {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "tidegate".into());
        Arc::new(Self {
            inner: Arc::new(Inner {
                next_port: AtomicU16::new(config.ports.0),
                service,
                config,
                events,
                children: Mutex::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
                exe,
            }),
        })
    }

    /// The pids of every process still running in the orchestrator's groups.
    pub fn live_pids(&self) -> Vec<u32> {
        self.inner
            .groups()
            .into_iter()
            .flat_map(procfs::group_members)
            .collect()
    }
}

impl Orchestrator for ProcessOrchestrator {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn start(&self) -> BoxFuture<'_, Result<Arc<Instance>, OrchestrateError>> {
        Arc::clone(&self.inner).start_boxed()
    }

    fn stop(&self, instance: Arc<Instance>) -> BoxFuture<'_, Result<(), OrchestrateError>> {
        Box::pin(async move {
            self.inner.stop(instance.id()).await;
            Ok(())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<SocketAddr>, OrchestrateError>> {
        let addrs = self
            .inner
            .lock()
            .values()
            .filter(|c| !c.stopping)
            .map(|c| c.addr)
            .collect();
        Box::pin(async move { Ok(addrs) })
    }

    fn process_group(&self, instance: &InstanceId) -> Option<u32> {
        self.inner.lock().get(instance).map(|c| c.group)
    }

    fn memory_limit_mb(&self) -> Option<u64> {
        self.inner.config.memory_limit_mb
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.inner.shutting_down.store(true, Ordering::Release);
            let ids: Vec<InstanceId> = self.inner.lock().keys().cloned().collect();
            let stops = ids.iter().map(|id| self.inner.stop(id));
            futures_util::future::join_all(stops).await;
        })
    }

    fn abandon(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        for group in self.inner.groups() {
            kill_group(group, Signal::SIGKILL);
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<InstanceId, Running>> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn groups(&self) -> Vec<u32> {
        self.lock().values().map(|c| c.group).collect()
    }

    /// [`Inner::start`] behind a box: the monitor it spawns may call it again.
    fn start_boxed(self: Arc<Self>) -> BoxFuture<'static, Result<Arc<Instance>, OrchestrateError>> {
        Box::pin(self.start())
    }

    /// Spawns, probes and publishes one instance.
    async fn start(self: Arc<Self>) -> Result<Arc<Instance>, OrchestrateError> {
        let started = Instant::now();
        let port = self.allocate_port()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let id = InstanceId::new(addr.to_string());
        let mut child = self
            .spawn(port)
            .map_err(|e| start_error(addr, e.to_string()))?;
        let group = child
            .id()
            .ok_or_else(|| start_error(addr, "exited at once".into()))?;
        self.lock().insert(
            id.clone(),
            Running {
                group,
                addr,
                stopping: false,
            },
        );

        let instance = Instance::from_addr(self.service.name.clone(), addr, 1);
        let balancer = &self.service.config.balancer;
        let outcome = tokio::select! {
            probed = prober::wait_until_healthy(&instance, balancer, self.config.start_timeout) => {
                probed.map_err(|e| e.to_string())
            }
            status = child.wait() => Err(format!("exited before becoming healthy ({})", describe(status))),
        };
        if let Err(reason) = outcome {
            self.lock().remove(&id);
            kill_group(group, Signal::SIGKILL);
            let _ = child.wait().await;
            warn!(service = %self.service.name, instance = %addr, error = %reason, "instance failed to start");
            return Err(start_error(addr, reason));
        }

        // Slow start: a cold instance takes a growing share of the load.
        self.service
            .table
            .add_slow_start(Arc::clone(&instance), self.service.balancer.slow_start());
        info!(
            service = %self.service.name,
            instance = %addr,
            pid = group,
            ready_ms = started.elapsed().as_millis() as u64,
            "instance added"
        );
        tokio::spawn(monitor(Arc::downgrade(&self), child, id));
        Ok(instance)
    }

    fn spawn(&self, port: u16) -> std::io::Result<Child> {
        let command = self
            .config
            .command
            .replace("{port}", &port.to_string())
            .replace("{tidegate}", &self.exe);
        Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
    }

    /// The next port of the range that no child holds and that binds now;
    /// a range of `0-0` asks the system for a free port (for tests).
    fn allocate_port(&self) -> Result<u16, OrchestrateError> {
        let (low, high) = self.config.ports;
        if low == 0 {
            return TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|_| OrchestrateError::NoPort { low, high });
        }
        let taken: Vec<u16> = self.lock().values().map(|c| c.addr.port()).collect();
        let span = u32::from(high - low) + 1;
        for _ in 0..span {
            let port = self.next_port.fetch_add(1, Ordering::Relaxed);
            let port = if (low..=high).contains(&port) {
                port
            } else {
                self.next_port.store(low + 1, Ordering::Relaxed);
                low
            };
            if !taken.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(port);
            }
        }
        Err(OrchestrateError::NoPort { low, high })
    }

    /// SIGTERM to the instance's group, SIGKILL after `stop_grace`.
    async fn stop(&self, id: &InstanceId) {
        let group = {
            let mut children = self.lock();
            let Some(running) = children.get_mut(id) else {
                return;
            };
            running.stopping = true;
            running.group
        };
        kill_group(group, Signal::SIGTERM);
        let deadline = Instant::now() + self.config.stop_grace;
        while !procfs::group_members(group).is_empty() {
            if Instant::now() >= deadline {
                kill_group(group, Signal::SIGKILL);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.lock().remove(id);
    }

    /// Replaces an instance that exited on its own, and records the event.
    async fn replace(self: Arc<Self>, id: InstanceId, addr: SocketAddr, status: String) {
        let began = Instant::now();
        self.service.table.remove(&id);
        let before = self.service.table.load().len() as u32;
        warn!(service = %self.service.name, instance = %addr, status = %status, "instance exited on its own; replacing it");
        let result = Arc::clone(&self).start_boxed().await;
        let after = self.service.table.load().len() as u32;
        let (event_type, message) = match &result {
            Ok(new) => (
                EventType::ScaleUp,
                format!(
                    "replaced {addr}, which exited ({status}), with {}",
                    new.addr()
                ),
            ),
            Err(e) => (
                EventType::ScaleFailed,
                format!("{addr} exited ({status}); replacement failed: {e}"),
            ),
        };
        self.events.record(ScalingEvent {
            service: self.service.name.clone(),
            event_type,
            trigger_metric: TriggerMetric::RequestCount,
            trigger_value: 0.0,
            threshold_value: 0.0,
            instances_before: before,
            instances_after: after,
            success: result.is_ok(),
            error_message: Some(message),
            execution_time_seconds: began.elapsed().as_secs_f64(),
            occurred_at: Utc::now(),
        });
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for running in self
            .children
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            kill_group(running.group, Signal::SIGKILL);
        }
    }
}

/// Waits for a child to exit; replaces it unless it was stopped on purpose.
async fn monitor(inner: Weak<Inner>, mut child: Child, id: InstanceId) {
    let status = describe(child.wait().await);
    let Some(inner) = inner.upgrade() else {
        return;
    };
    let crashed = {
        let mut children = inner.lock();
        match children.get(&id) {
            Some(r) if !r.stopping => children.remove(&id),
            _ => None,
        }
    };
    if let Some(running) = crashed {
        kill_group(running.group, Signal::SIGKILL);
        if !inner.shutting_down.load(Ordering::Acquire) {
            inner.replace(id, running.addr, status).await;
        }
    }
}

fn kill_group(group: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(group) else {
        return;
    };
    // ESRCH (the group is already gone) is the expected end state.
    let _ = killpg(Pid::from_raw(raw), signal);
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => e.to_string(),
    }
}

fn start_error(addr: SocketAddr, reason: String) -> OrchestrateError {
    OrchestrateError::Start {
        addr: addr.to_string(),
        reason,
    }
}
