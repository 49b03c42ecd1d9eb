//! Configuration: the TOML file parsed once into typed, validated settings.
//!
//! Loading goes in two steps. `raw` deserializes the file with loose types and
//! rejects unknown keys; `validate` turns it into the types below, collecting
//! every bad value with its key path so an operator fixes them all in one pass
//! (`tidegate check` prints the same list). Nothing downstream sees text where a
//! type belongs.

mod duration;
mod raw;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use duration::parse_duration;

use crate::ids::ServiceName;

/// The default config file, embedded so that `tidegate serve` runs with no file at all.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/tidegate.toml");

/// Where tidegate looks for its config when none is named.
pub const DEFAULT_PATH: &str = "config/tidegate.toml";

/// Every setting tidegate runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The folder relative paths in the config (such as a SQLite file) resolve against.
    pub base_dir: PathBuf,
    /// The proxy listeners and runtime.
    pub proxy: ProxyConfig,
    /// The operator's listener.
    pub admin: AdminConfig,
    /// Upstream and client timeouts.
    pub timeouts: Timeouts,
    /// Size and connection limits.
    pub limits: Limits,
    /// The database and the metrics writer.
    pub store: StoreConfig,
    /// The autoscaler's loop.
    pub scaler: ScalerConfig,
    /// The services, in name order.
    pub services: Vec<ServiceConfig>,
}

/// Proxy listeners and runtime.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Addresses the proxy accepts client connections on. Default `127.0.0.1:8080`.
    pub listen: Vec<SocketAddr>,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// How long in-flight requests may run after a shutdown signal. Default 30 s.
    pub shutdown_grace: Duration,
    /// TLS on every proxy listener; plain HTTP when absent (the default).
    pub tls: Option<TlsConfig>,
}

/// `[proxy.tls]`: the certificate the proxy listeners present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The admin listener.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Address of the admin endpoints. Default `127.0.0.1:9901`.
    pub listen: SocketAddr,
    /// Bearer token required for admin writes; without one, writes are refused.
    pub token: Option<String>,
}

/// Timeouts applied on the request path.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting to an instance. Default 2 s.
    pub connect: Duration,
    /// From dispatch to the instance's response head. Default 30 s.
    pub request: Duration,
    /// An idle client keep-alive connection is closed after this. Default 60 s.
    pub idle: Duration,
}

/// Size and connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request head accepted (431 past it). Default 64 KiB.
    pub max_header_bytes: usize,
    /// Largest request body accepted (413 past it); `None` means unlimited, the default.
    pub max_body_bytes: Option<u64>,
    /// Client connections held open at once. Default 10,000.
    pub max_connections: usize,
}

/// The database and the metrics writer.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://FILE` (relative to the config's folder) or `postgres://...`.
    pub database_url: String,
    /// Apply pending migrations when `serve` starts. Default true.
    pub migrate_on_start: bool,
    /// How often the recorder writes one sample per instance. Default 5 s.
    pub metrics_interval: Duration,
    /// Samples held while the database is unreachable. Default 100,000.
    pub queue_capacity: usize,
    /// Rows per insert. Default 500.
    pub batch_size: usize,
    /// Days of samples kept. Default 30.
    pub retention_days: u32,
    /// Days of scaling events kept. Default 365.
    pub event_retention_days: u32,
    /// Days of forecasts kept. Default 90.
    pub forecast_retention_days: u32,
}

/// The autoscaler's loop.
#[derive(Debug, Clone, Copy)]
pub struct ScalerConfig {
    /// Run the scaler at all. Default true.
    pub enabled: bool,
    /// How often each enabled policy is evaluated. Default 5 s.
    pub evaluation_interval: Duration,
    /// The window of samples a decision looks at. Default 1 min.
    pub window: Duration,
    /// Band around a target inside which no scaling happens, in percent. Default 10.
    pub tolerance_percent: f64,
    /// Cost of one instance per hour, set against `cost_budget_monthly`. Default 0.
    pub instance_hourly_cost: f64,
}

/// One service: routes, instances, balancing and scaling.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The service's name, the key of its table `[services.NAME]`.
    pub name: ServiceName,
    /// Stateless, stateful or singleton.
    pub kind: ServiceKind,
    /// Requests matching any of these go to this service.
    pub routes: Vec<RouteConfig>,
    /// Static instances, in file order.
    pub instances: Vec<InstanceConfig>,
    /// The plan's `load_balancer_config` for this service.
    pub balancer: BalancerConfig,
    /// Ejection, breakers, admission and retries.
    pub resilience: ResilienceConfig,
    /// The plan's `scaling_policies` row, if the service scales.
    pub policy: Option<PolicyConfig>,
    /// The plan's `resource_quotas` row, if any.
    pub quota: Option<QuotaConfig>,
    /// What starts and stops instances.
    pub orchestrator: OrchestratorConfig,
}

/// How a service may be scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// Any instance count between the policy's bounds.
    Stateless,
    /// Members hold state; with consensus the count stays odd.
    Stateful {
        /// Keep an odd member count (steps by two).
        requires_consensus: bool,
    },
    /// Exactly one instance, never scaled.
    Singleton,
}

/// A request matcher. Both parts must match; the longest matching prefix wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Host to match, lower case, without port; `None` matches any host.
    pub host: Option<String>,
    /// Path prefix to match, starting with `/`. Default `/`.
    pub path_prefix: String,
}

/// One static instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceConfig {
    /// Where the instance listens.
    pub address: SocketAddr,
    /// Relative share of traffic for weighted algorithms. Default 1.
    pub weight: u32,
}

/// A balancing algorithm, as named in `load_balancer_config.algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// An atomic counter over the eligible instances.
    RoundRobin,
    /// Smooth weighted round robin.
    Weighted,
    /// Fewest requests in flight.
    LeastConnections,
    /// Consistent hashing of the client address.
    IpHash,
    /// Uniformly random.
    Random,
    /// Two random choices compared by latency estimate times load.
    PeakEwma,
    /// Chooses one of the above from what it observes.
    Adaptive,
}

impl Algorithm {
    /// Every algorithm with its config name.
    pub const ALL: [(Algorithm, &'static str); 7] = [
        (Algorithm::RoundRobin, "round_robin"),
        (Algorithm::Weighted, "weighted"),
        (Algorithm::LeastConnections, "least_connections"),
        (Algorithm::IpHash, "ip_hash"),
        (Algorithm::Random, "random"),
        (Algorithm::PeakEwma, "peak_ewma"),
        (Algorithm::Adaptive, "adaptive"),
    ];

    /// The config and database name of the algorithm.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(a, _)| *a == self)
            .map(|(_, n)| *n)
            .unwrap_or("round_robin")
    }

    /// Parses a config or database name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(a, _)| *a)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The plan's `load_balancer_config` columns, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerConfig {
    /// The algorithm. Default `round_robin`.
    pub algorithm: Algorithm,
    /// Path probed on each instance. Default `/health`.
    pub health_check_path: String,
    /// Time between probes of one instance. Default 30 s.
    pub health_check_interval: Duration,
    /// Time a probe may take. Default 5 s.
    pub health_check_timeout: Duration,
    /// Consecutive failed probes that mark an instance unhealthy. Default 3.
    pub unhealthy_threshold: u32,
    /// Consecutive passed probes that mark it healthy again. Default 2.
    pub healthy_threshold: u32,
    /// Pin a client to an instance with a cookie. Default false.
    pub session_affinity: bool,
    /// Per-instance circuit breakers. Default true.
    pub circuit_breaker_enabled: bool,
    /// Retries of one request on other instances. Default 3.
    pub max_retries: u32,
    /// Timeout of each retried try. Default 1 s.
    pub retry_timeout: Duration,
    /// A new instance's weight ramps up over this window. Default 30 s.
    pub slow_start: Duration,
    /// Pools larger than this use two random choices for least connections. Default 16.
    pub two_choice_above: usize,
}

/// Ejection, breakers, admission, retries and draining.
#[derive(Debug, Clone, PartialEq)]
pub struct ResilienceConfig {
    /// Requests in flight plus waiting for the whole service; 0 is unlimited (default).
    pub max_in_flight: u32,
    /// Consecutive upstream failures that eject an instance. Default 5.
    pub consecutive_failures: u32,
    /// First ejection time, growing with repeated ejections. Default 30 s.
    pub base_ejection: Duration,
    /// Share of a pool that may be ejected passively, in percent. Default 50.
    pub max_ejection_percent: u32,
    /// Failure share over the window that opens a breaker, in percent. Default 50.
    pub breaker_failure_percent: u32,
    /// Requests in the window before a breaker may open. Default 20.
    pub breaker_min_requests: u32,
    /// The breaker's rolling window. Default 10 s.
    pub breaker_window: Duration,
    /// Time an open breaker waits before half-open. Default 5 s.
    pub breaker_open_for: Duration,
    /// Trial requests admitted while half-open. Default 3.
    pub breaker_half_open_trials: u32,
    /// Retries may add at most this share to the request rate, in percent. Default 20.
    pub retry_budget_percent: u32,
    /// Retries always allowed per second, whatever the rate. Default 10.
    pub retry_min_per_second: u32,
    /// Request bodies up to this size are buffered so they can be replayed. Default 64 KiB.
    pub retry_buffer_bytes: u64,
    /// Longest wait for a draining instance's requests. Default 30 s.
    pub drain_timeout: Duration,
}

/// The plan's `scaling_policies` columns, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// Fewest instances. Default 1.
    pub min_instances: u32,
    /// Most instances. Default 10.
    pub max_instances: u32,
    /// CPU target, percent. Default 70.
    pub target_cpu_percent: f64,
    /// Memory target, percent. Default 80.
    pub target_memory_percent: f64,
    /// p95 latency target, milliseconds. Default 200.
    pub target_response_time_ms: f64,
    /// CPU or memory above this scales up, percent. Default 80.
    pub scale_up_threshold: f64,
    /// Every metric below this allows scaling down, percent. Default 30.
    pub scale_down_threshold: f64,
    /// Minutes after any scaling event before scaling up again. Default 5.
    pub scale_up_cooldown_minutes: u32,
    /// Minutes after any scaling event before scaling down again. Default 10.
    pub scale_down_cooldown_minutes: u32,
    /// Whether the policy is evaluated. Default true.
    pub enabled: bool,
}

/// The plan's `resource_quotas` columns, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaConfig {
    /// CPU cores the service may use.
    pub max_cpu_cores: f64,
    /// Memory the service may use, GB.
    pub max_memory_gb: f64,
    /// Storage the service may use, GB.
    pub max_storage_gb: f64,
    /// Network the service may use, Mbit/s.
    pub max_network_mbps: f64,
    /// Instances the service may run.
    pub max_instances: u32,
    /// Monthly budget, set against `scaler.instance_hourly_cost`.
    pub cost_budget_monthly: Option<f64>,
    /// 1 critical, 2 high, 3 medium (default), 4 low.
    pub priority_level: u32,
}

/// What starts and stops a service's instances.
#[derive(Debug, Clone, PartialEq)]
pub enum OrchestratorConfig {
    /// The instances listed in the config; decisions are only recommendations.
    Static,
    /// Child processes started by tidegate.
    Process(ProcessConfig),
    /// Operator scripts.
    Command(CommandConfig),
}

/// Settings of the process orchestrator.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessConfig {
    /// Command line run through `sh -c`, with `{port}` and `{tidegate}` substituted.
    pub command: String,
    /// Ports handed to new instances, inclusive.
    pub ports: (u16, u16),
    /// Time a new instance has to pass its probes. Default 30 s.
    pub start_timeout: Duration,
    /// Time between SIGTERM and SIGKILL. Default 10 s.
    pub stop_grace: Duration,
    /// Memory limit of one instance, used as the base of its memory percent.
    pub memory_limit_mb: Option<u64>,
}

/// Settings of the command orchestrator.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandConfig {
    /// Run to add one instance; prints the new instance's address.
    pub scale_up: String,
    /// Run to remove one instance, with `{address}` substituted.
    pub scale_down: String,
    /// Prints one instance address per line.
    pub list: String,
    /// Time a script may run. Default 30 s.
    pub timeout: Duration,
}

/// One invalid value, with the key path that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, such as `services.api.instances[1].address`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything wrong with a config file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("{0}")]
    Syntax(String),
    /// Values that parse but are not valid, all of them.
    #[error("{} invalid value(s)", .0.len())]
    Invalid(Vec<ConfigError>),
}

impl LoadError {
    /// Every error, one per line, as `tidegate check` prints them.
    pub fn lines(&self) -> Vec<String> {
        match self {
            LoadError::Invalid(errors) => errors.iter().map(|e| e.to_string()).collect(),
            other => vec![other.to_string()],
        }
    }
}

impl Config {
    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        Self::parse(&text, base)
    }

    /// Loads the file named, else `config/tidegate.toml` if present, else the embedded default.
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, LoadError> {
        match path {
            Some(path) => Self::load(path),
            None if Path::new(DEFAULT_PATH).exists() => Self::load(Path::new(DEFAULT_PATH)),
            None => Self::parse(EMBEDDED_DEFAULT, Path::new(".")),
        }
    }

    /// Parses and validates config text; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config, LoadError> {
        let raw: raw::RawConfig =
            toml::from_str(text).map_err(|e| LoadError::Syntax(e.to_string().trim().to_owned()))?;
        validate::validate(raw, base_dir).map_err(LoadError::Invalid)
    }

    /// The service with this name.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }
}
