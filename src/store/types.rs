//! The typed rows that go in and out of the store, named after the plan's tables.
//!
//! Values of the plan's vocabularies (event types, trigger metrics, forecast
//! types) are enums here and text in the database.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{Algorithm, BalancerConfig, PolicyConfig, QuotaConfig};
use crate::ids::{InstanceId, ServiceName};

/// One `service_capacity_metrics` row: what one instance did over one sample interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The service the instance belongs to.
    pub service: ServiceName,
    /// The instance.
    pub instance: InstanceId,
    /// CPU used, percent; `None` (stored as NULL) when not measured, so that
    /// averages skip it instead of reading it as idle.
    pub cpu_usage_percent: Option<f64>,
    /// Memory used, percent of the instance's limit; `None` when not measured.
    pub memory_usage_percent: Option<f64>,
    /// Disk used, percent; `None` when not measured.
    pub disk_usage_percent: Option<f64>,
    /// Network traffic, Mbit/s; `None` when not measured.
    pub network_io_mbps: Option<f64>,
    /// Requests finished during the interval.
    pub request_count: u32,
    /// Requests in flight when the sample was taken.
    pub active_connections: u32,
    /// Requests waiting for admission when the sample was taken.
    pub queue_depth: u32,
    /// 95th percentile latency over the interval, milliseconds; `None` without requests.
    pub response_time_p95_ms: Option<f64>,
    /// Share of the interval's requests that failed, percent.
    pub error_rate_percent: f64,
    /// When the interval ended.
    pub recorded_at: DateTime<Utc>,
}

impl Sample {
    /// A sample with nothing measured yet, recorded now; callers fill in what they measured.
    pub fn new(service: ServiceName, instance: InstanceId) -> Self {
        Self {
            service,
            instance,
            cpu_usage_percent: None,
            memory_usage_percent: None,
            disk_usage_percent: None,
            network_io_mbps: None,
            request_count: 0,
            active_connections: 0,
            queue_depth: 0,
            response_time_p95_ms: None,
            error_rate_percent: 0.0,
            recorded_at: Utc::now(),
        }
    }
}

/// A service's samples aggregated over a time window.
///
/// With no samples in the window every average is `None`: no data is stated
/// as such, never read as zero load.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Samples in the window.
    pub samples: u64,
    /// Distinct instances that reported.
    pub instances: u64,
    /// Mean CPU over the samples, percent.
    pub avg_cpu_percent: Option<f64>,
    /// Mean memory over the samples, percent.
    pub avg_memory_percent: Option<f64>,
    /// Mean of the samples' p95 latencies, milliseconds.
    pub avg_response_time_p95_ms: Option<f64>,
    /// Mean error rate, percent.
    pub avg_error_rate_percent: Option<f64>,
    /// Requests finished in the window, summed over instances.
    pub total_requests: u64,
}

/// A service's `scaling_policies` row.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPolicy {
    /// The service.
    pub service: ServiceName,
    /// The policy's columns.
    pub policy: PolicyConfig,
}

/// A service's `resource_quotas` row.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredQuota {
    /// The service.
    pub service: ServiceName,
    /// The quota's columns.
    pub quota: QuotaConfig,
}

/// A service's `load_balancer_config` row: the plan's columns, typed.
///
/// The config's balancer settings beyond the plan's columns (`slow_start`,
/// `two_choice_above`) are not stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBalancer {
    /// The service.
    pub service: ServiceName,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Path probed on each instance.
    pub health_check_path: String,
    /// Time between probes, whole seconds.
    pub health_check_interval: Duration,
    /// Time a probe may take, whole seconds.
    pub health_check_timeout: Duration,
    /// Failed probes that mark an instance unhealthy.
    pub unhealthy_threshold: u32,
    /// Passed probes that mark it healthy again.
    pub healthy_threshold: u32,
    /// Pin a client to an instance.
    pub session_affinity: bool,
    /// Per-instance circuit breakers.
    pub circuit_breaker_enabled: bool,
    /// Retries of one request.
    pub max_retries: u32,
    /// Timeout of each retry, whole seconds.
    pub retry_timeout: Duration,
}

impl StoredBalancer {
    /// The row for a service's balancer config.
    pub fn from_config(service: ServiceName, c: &BalancerConfig) -> Self {
        Self {
            service,
            algorithm: c.algorithm,
            health_check_path: c.health_check_path.clone(),
            health_check_interval: c.health_check_interval,
            health_check_timeout: c.health_check_timeout,
            unhealthy_threshold: c.unhealthy_threshold,
            healthy_threshold: c.healthy_threshold,
            session_affinity: c.session_affinity,
            circuit_breaker_enabled: c.circuit_breaker_enabled,
            max_retries: c.max_retries,
            retry_timeout: c.retry_timeout,
        }
    }

    /// Writes the row's values over a balancer config, keeping the settings it does not hold.
    pub fn apply_to(&self, c: &mut BalancerConfig) {
        c.algorithm = self.algorithm;
        c.health_check_path.clone_from(&self.health_check_path);
        c.health_check_interval = self.health_check_interval;
        c.health_check_timeout = self.health_check_timeout;
        c.unhealthy_threshold = self.unhealthy_threshold;
        c.healthy_threshold = self.healthy_threshold;
        c.session_affinity = self.session_affinity;
        c.circuit_breaker_enabled = self.circuit_breaker_enabled;
        c.max_retries = self.max_retries;
        c.retry_timeout = self.retry_timeout;
    }
}

macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// The value as stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Parses a stored value.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary!(
    /// `scaling_events.event_type`.
    EventType {
        /// Instances were added.
        ScaleUp = "scale_up",
        /// Instances were removed.
        ScaleDown = "scale_down",
        /// A scaling action was attempted and failed.
        ScaleFailed = "scale_failed",
    }
);

vocabulary!(
    /// `scaling_events.trigger_metric`.
    TriggerMetric {
        /// Average CPU.
        Cpu = "cpu",
        /// Average memory.
        Memory = "memory",
        /// p95 latency.
        ResponseTime = "response_time",
        /// Request rate.
        RequestCount = "request_count",
    }
);

vocabulary!(
    /// `capacity_planning_forecasts.forecast_type`.
    ForecastType {
        /// Linear trend.
        Linear = "linear",
        /// Exponential growth.
        Exponential = "exponential",
        /// Trend with a seasonal pattern.
        Seasonal = "seasonal",
        /// A learned model.
        MlBased = "ml_based",
    }
);

/// One `scaling_events` row.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingEvent {
    /// The service scaled.
    pub service: ServiceName,
    /// What happened.
    pub event_type: EventType,
    /// The metric that drove the decision.
    pub trigger_metric: TriggerMetric,
    /// Its value when the decision was taken.
    pub trigger_value: f64,
    /// The threshold or target it was held against.
    pub threshold_value: f64,
    /// Instances before the action.
    pub instances_before: u32,
    /// Instances after the action (or asked for, when it failed).
    pub instances_after: u32,
    /// Whether the action succeeded.
    pub success: bool,
    /// Why it failed.
    pub error_message: Option<String>,
    /// Time the action took, seconds.
    pub execution_time_seconds: f64,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
}

/// One `capacity_planning_forecasts` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// The service forecast.
    pub service: ServiceName,
    /// The model used.
    pub forecast_type: ForecastType,
    /// Days ahead covered.
    pub time_horizon_days: u32,
    /// Highest request rate predicted, requests per second.
    pub predicted_peak_rps: f64,
    /// Mean CPU predicted, percent.
    pub predicted_avg_cpu: f64,
    /// Mean memory predicted, percent.
    pub predicted_avg_memory: f64,
    /// Instances recommended at the horizon.
    pub recommended_instances: u32,
    /// How far the forecast can be trusted, 0 to 100.
    pub confidence_score: f64,
    /// The daily points and model details.
    pub forecast_data: serde_json::Value,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}
