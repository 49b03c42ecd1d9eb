//! The config file exactly as written: loose types (text for addresses and
//! durations) so that validation can report every bad value with its key path
//! instead of stopping at the first one.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    pub(super) proxy: RawProxy,
    pub(super) admin: RawAdmin,
    pub(super) timeouts: RawTimeouts,
    pub(super) limits: RawLimits,
    pub(super) store: RawStore,
    pub(super) scaler: RawScaler,
    pub(super) services: BTreeMap<String, RawService>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawProxy {
    pub(super) listen: Vec<String>,
    pub(super) workers: usize,
    pub(super) shutdown_grace: String,
    pub(super) tls: Option<RawTls>,
}

impl Default for RawProxy {
    fn default() -> Self {
        Self {
            listen: vec!["127.0.0.1:8080".into()],
            workers: 0,
            shutdown_grace: "30s".into(),
            tls: None,
        }
    }
}

/// `[proxy.tls]`: PEM files, relative to the config file's folder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: String,
    pub(super) key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAdmin {
    pub(super) listen: String,
    pub(super) token: Option<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9901".into(),
            token: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTimeouts {
    pub(super) connect: String,
    pub(super) request: String,
    pub(super) idle: String,
}

impl Default for RawTimeouts {
    fn default() -> Self {
        Self {
            connect: "2s".into(),
            request: "30s".into(),
            idle: "60s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    pub(super) max_header_bytes: u64,
    pub(super) max_body_bytes: u64,
    pub(super) max_connections: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_body_bytes: 0,
            max_connections: 10_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    pub(super) database_url: String,
    pub(super) migrate_on_start: bool,
    pub(super) metrics_interval: String,
    pub(super) queue_capacity: u64,
    pub(super) batch_size: u64,
    pub(super) retention_days: u32,
    pub(super) event_retention_days: u32,
    pub(super) forecast_retention_days: u32,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            database_url: "sqlite://tidegate.db".into(),
            migrate_on_start: true,
            metrics_interval: "5s".into(),
            queue_capacity: 100_000,
            batch_size: 500,
            retention_days: 30,
            event_retention_days: 365,
            forecast_retention_days: 90,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawScaler {
    pub(super) enabled: bool,
    pub(super) evaluation_interval: String,
    pub(super) window: String,
    pub(super) tolerance_percent: f64,
    pub(super) instance_hourly_cost: f64,
}

impl Default for RawScaler {
    fn default() -> Self {
        Self {
            enabled: true,
            evaluation_interval: "5s".into(),
            window: "1m".into(),
            tolerance_percent: 10.0,
            instance_hourly_cost: 0.0,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawService {
    pub(super) kind: Option<String>,
    pub(super) requires_consensus: bool,
    pub(super) routes: Vec<RawRoute>,
    pub(super) instances: Vec<RawInstance>,
    pub(super) load_balancer: RawBalancer,
    pub(super) resilience: RawResilience,
    pub(super) scaling: Option<RawPolicy>,
    pub(super) quota: Option<RawQuota>,
    pub(super) orchestrator: RawOrchestrator,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRoute {
    pub(super) host: Option<String>,
    pub(super) path_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstance {
    pub(super) address: String,
    #[serde(default = "default_weight")]
    pub(super) weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// The plan's `load_balancer_config` row, with its column names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawBalancer {
    pub(super) algorithm: String,
    pub(super) health_check_path: String,
    pub(super) health_check_interval_seconds: u32,
    pub(super) health_check_timeout_seconds: u32,
    pub(super) unhealthy_threshold: u32,
    pub(super) healthy_threshold: u32,
    pub(super) session_affinity: bool,
    pub(super) circuit_breaker_enabled: bool,
    pub(super) max_retries: u32,
    pub(super) retry_timeout_seconds: u32,
    pub(super) slow_start: String,
    pub(super) two_choice_above: u32,
}

impl Default for RawBalancer {
    fn default() -> Self {
        Self {
            algorithm: "round_robin".into(),
            health_check_path: "/health".into(),
            health_check_interval_seconds: 30,
            health_check_timeout_seconds: 5,
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            session_affinity: false,
            circuit_breaker_enabled: true,
            max_retries: 3,
            retry_timeout_seconds: 1,
            slow_start: "30s".into(),
            two_choice_above: 16,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawResilience {
    pub(super) max_in_flight: u32,
    pub(super) consecutive_failures: u32,
    pub(super) base_ejection: String,
    pub(super) max_ejection_percent: u32,
    pub(super) breaker_failure_percent: u32,
    pub(super) breaker_min_requests: u32,
    pub(super) breaker_window: String,
    pub(super) breaker_open_for: String,
    pub(super) breaker_half_open_trials: u32,
    pub(super) retry_budget_percent: u32,
    pub(super) retry_min_per_second: u32,
    pub(super) retry_buffer_bytes: u64,
    pub(super) drain_timeout: String,
}

impl Default for RawResilience {
    fn default() -> Self {
        Self {
            max_in_flight: 0,
            consecutive_failures: 5,
            base_ejection: "30s".into(),
            max_ejection_percent: 50,
            breaker_failure_percent: 50,
            breaker_min_requests: 20,
            breaker_window: "10s".into(),
            breaker_open_for: "5s".into(),
            breaker_half_open_trials: 3,
            retry_budget_percent: 20,
            retry_min_per_second: 10,
            retry_buffer_bytes: 64 * 1024,
            drain_timeout: "30s".into(),
        }
    }
}

/// The plan's `scaling_policies` row, with its column names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPolicy {
    pub(super) min_instances: u32,
    pub(super) max_instances: u32,
    pub(super) target_cpu_percent: f64,
    pub(super) target_memory_percent: f64,
    pub(super) target_response_time_ms: f64,
    pub(super) scale_up_threshold: f64,
    pub(super) scale_down_threshold: f64,
    pub(super) scale_up_cooldown_minutes: u32,
    pub(super) scale_down_cooldown_minutes: u32,
    pub(super) enabled: bool,
}

impl Default for RawPolicy {
    fn default() -> Self {
        Self {
            min_instances: 1,
            max_instances: 10,
            target_cpu_percent: 70.0,
            target_memory_percent: 80.0,
            target_response_time_ms: 200.0,
            scale_up_threshold: 80.0,
            scale_down_threshold: 30.0,
            scale_up_cooldown_minutes: 5,
            scale_down_cooldown_minutes: 10,
            enabled: true,
        }
    }
}

/// The plan's `resource_quotas` row, with its column names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuota {
    pub(super) max_cpu_cores: f64,
    pub(super) max_memory_gb: f64,
    pub(super) max_storage_gb: f64,
    pub(super) max_network_mbps: f64,
    pub(super) max_instances: u32,
    #[serde(default)]
    pub(super) cost_budget_monthly: Option<f64>,
    #[serde(default = "default_priority")]
    pub(super) priority_level: u32,
}

fn default_priority() -> u32 {
    3
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawOrchestrator {
    pub(super) kind: String,
    pub(super) command: Option<String>,
    pub(super) port_range: Option<String>,
    pub(super) start_timeout: String,
    pub(super) stop_grace: String,
    pub(super) memory_limit_mb: Option<u64>,
    pub(super) scale_up: Option<String>,
    pub(super) scale_down: Option<String>,
    pub(super) list: Option<String>,
}

impl Default for RawOrchestrator {
    fn default() -> Self {
        Self {
            kind: "static".into(),
            command: None,
            port_range: None,
            start_timeout: "30s".into(),
            stop_grace: "10s".into(),
            memory_limit_mb: None,
            scale_up: None,
            scale_down: None,
            list: None,
        }
    }
}
