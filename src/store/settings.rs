//! Scaling policies, balancer configs and resource quotas: read and upsert.
//!
//! Each is one row per service. Reads fill columns an operator set to NULL
//! with the plan's defaults; negative counts are refused as decoding errors.

use std::time::Duration;

use chrono::Utc;
use sqlx::Row as _;

use super::codec::{self, Ts};
use super::{Store, StoreError, StoredBalancer, StoredPolicy, StoredQuota};
use crate::config::{Algorithm, PolicyConfig, QuotaConfig};
use crate::ids::ServiceName;

const SELECT_POLICIES: &str = "SELECT service_name, min_instances, max_instances, \
    CAST(COALESCE(target_cpu_percent, 70.0) AS DOUBLE PRECISION) AS target_cpu_percent, \
    CAST(COALESCE(target_memory_percent, 80.0) AS DOUBLE PRECISION) AS target_memory_percent, \
    CAST(COALESCE(target_response_time_ms, 200.0) AS DOUBLE PRECISION) AS target_response_time_ms, \
    CAST(COALESCE(scale_up_threshold, 80.0) AS DOUBLE PRECISION) AS scale_up_threshold, \
    CAST(COALESCE(scale_down_threshold, 30.0) AS DOUBLE PRECISION) AS scale_down_threshold, \
    COALESCE(scale_up_cooldown_minutes, 5) AS scale_up_cooldown_minutes, \
    COALESCE(scale_down_cooldown_minutes, 10) AS scale_down_cooldown_minutes, \
    COALESCE(enabled, true) AS enabled \
    FROM scaling_policies WHERE ($1 IS NULL OR service_name = $1) ORDER BY service_name";

const UPSERT_POLICY: &str = "INSERT INTO scaling_policies (service_name, min_instances, \
    max_instances, target_cpu_percent, target_memory_percent, target_response_time_ms, \
    scale_up_threshold, scale_down_threshold, scale_up_cooldown_minutes, \
    scale_down_cooldown_minutes, enabled, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) \
    ON CONFLICT (service_name) DO UPDATE SET min_instances = excluded.min_instances, \
    max_instances = excluded.max_instances, target_cpu_percent = excluded.target_cpu_percent, \
    target_memory_percent = excluded.target_memory_percent, \
    target_response_time_ms = excluded.target_response_time_ms, \
    scale_up_threshold = excluded.scale_up_threshold, \
    scale_down_threshold = excluded.scale_down_threshold, \
    scale_up_cooldown_minutes = excluded.scale_up_cooldown_minutes, \
    scale_down_cooldown_minutes = excluded.scale_down_cooldown_minutes, \
    enabled = excluded.enabled, updated_at = excluded.updated_at";

const SELECT_BALANCERS: &str = "SELECT service_name, algorithm, health_check_path, \
    COALESCE(health_check_interval_seconds, 30) AS health_check_interval_seconds, \
    COALESCE(health_check_timeout_seconds, 5) AS health_check_timeout_seconds, \
    COALESCE(unhealthy_threshold, 3) AS unhealthy_threshold, \
    COALESCE(healthy_threshold, 2) AS healthy_threshold, \
    COALESCE(session_affinity, false) AS session_affinity, \
    COALESCE(circuit_breaker_enabled, true) AS circuit_breaker_enabled, \
    COALESCE(max_retries, 3) AS max_retries, \
    COALESCE(retry_timeout_seconds, 1) AS retry_timeout_seconds \
    FROM load_balancer_config WHERE ($1 IS NULL OR service_name = $1) ORDER BY service_name";

const UPSERT_BALANCER: &str = "INSERT INTO load_balancer_config (service_name, algorithm, \
    health_check_path, health_check_interval_seconds, health_check_timeout_seconds, \
    unhealthy_threshold, healthy_threshold, session_affinity, circuit_breaker_enabled, \
    max_retries, retry_timeout_seconds, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) \
    ON CONFLICT (service_name) DO UPDATE SET algorithm = excluded.algorithm, \
    health_check_path = excluded.health_check_path, \
    health_check_interval_seconds = excluded.health_check_interval_seconds, \
    health_check_timeout_seconds = excluded.health_check_timeout_seconds, \
    unhealthy_threshold = excluded.unhealthy_threshold, \
    healthy_threshold = excluded.healthy_threshold, session_affinity = excluded.session_affinity, \
    circuit_breaker_enabled = excluded.circuit_breaker_enabled, \
    max_retries = excluded.max_retries, retry_timeout_seconds = excluded.retry_timeout_seconds, \
    updated_at = excluded.updated_at";

const SELECT_QUOTAS: &str = "SELECT service_name, \
    CAST(max_cpu_cores AS DOUBLE PRECISION) AS max_cpu_cores, \
    CAST(max_memory_gb AS DOUBLE PRECISION) AS max_memory_gb, \
    CAST(max_storage_gb AS DOUBLE PRECISION) AS max_storage_gb, \
    CAST(max_network_mbps AS DOUBLE PRECISION) AS max_network_mbps, max_instances, \
    CAST(cost_budget_monthly AS DOUBLE PRECISION) AS cost_budget_monthly, \
    COALESCE(priority_level, 3) AS priority_level \
    FROM resource_quotas WHERE ($1 IS NULL OR service_name = $1) ORDER BY service_name";

const UPSERT_QUOTA: &str = "INSERT INTO resource_quotas (service_name, max_cpu_cores, \
    max_memory_gb, max_storage_gb, max_network_mbps, max_instances, cost_budget_monthly, \
    priority_level, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
    ON CONFLICT (service_name) DO UPDATE SET max_cpu_cores = excluded.max_cpu_cores, \
    max_memory_gb = excluded.max_memory_gb, max_storage_gb = excluded.max_storage_gb, \
    max_network_mbps = excluded.max_network_mbps, max_instances = excluded.max_instances, \
    cost_budget_monthly = excluded.cost_budget_monthly, \
    priority_level = excluded.priority_level, updated_at = excluded.updated_at";

fn seconds(column: &'static str, value: i32) -> Result<Duration, sqlx::Error> {
    Ok(Duration::from_secs(u64::from(codec::count(column, value)?)))
}

fn whole_seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

impl Store {
    /// Every service's scaling policy, by service name.
    pub async fn policies(&self) -> Result<Vec<StoredPolicy>, StoreError> {
        self.select_policies(None).await
    }

    /// One service's scaling policy, if it has one.
    pub async fn policy(&self, service: &ServiceName) -> Result<Option<StoredPolicy>, StoreError> {
        Ok(self.select_policies(Some(service)).await?.pop())
    }

    async fn select_policies(
        &self,
        service: Option<&ServiceName>,
    ) -> Result<Vec<StoredPolicy>, StoreError> {
        let rows = on_pool!(self, pool => {
            let rows = sqlx::query(SELECT_POLICIES)
                .bind(service.map(ServiceName::as_str))
                .fetch_all(pool)
                .await;
            rows.and_then(|rows| rows.iter().map(|row| Ok(StoredPolicy {
                service: ServiceName::new(row.try_get::<String, _>("service_name")?),
                policy: PolicyConfig {
                    min_instances: codec::count("min_instances", row.try_get("min_instances")?)?,
                    max_instances: codec::count("max_instances", row.try_get("max_instances")?)?,
                    target_cpu_percent: row.try_get("target_cpu_percent")?,
                    target_memory_percent: row.try_get("target_memory_percent")?,
                    target_response_time_ms: row.try_get("target_response_time_ms")?,
                    scale_up_threshold: row.try_get("scale_up_threshold")?,
                    scale_down_threshold: row.try_get("scale_down_threshold")?,
                    scale_up_cooldown_minutes: codec::count(
                        "scale_up_cooldown_minutes",
                        row.try_get("scale_up_cooldown_minutes")?,
                    )?,
                    scale_down_cooldown_minutes: codec::count(
                        "scale_down_cooldown_minutes",
                        row.try_get("scale_down_cooldown_minutes")?,
                    )?,
                    enabled: row.try_get("enabled")?,
                },
            })).collect::<Result<Vec<_>, sqlx::Error>>())
        });
        rows.map_err(StoreError::query("read scaling policies"))
    }

    /// Inserts or replaces a service's scaling policy.
    pub async fn upsert_policy(&self, row: &StoredPolicy) -> Result<(), StoreError> {
        let p = &row.policy;
        on_pool!(self, pool => sqlx::query(UPSERT_POLICY)
            .bind(row.service.as_str())
            .bind(codec::int(p.min_instances))
            .bind(codec::int(p.max_instances))
            .bind(p.target_cpu_percent)
            .bind(p.target_memory_percent)
            .bind(p.target_response_time_ms)
            .bind(p.scale_up_threshold)
            .bind(p.scale_down_threshold)
            .bind(codec::int(p.scale_up_cooldown_minutes))
            .bind(codec::int(p.scale_down_cooldown_minutes))
            .bind(p.enabled)
            .bind(Ts(Utc::now()))
            .execute(pool)
            .await
            .map(drop))
        .map_err(StoreError::query("upsert scaling policy"))
    }

    /// Every service's balancer config, by service name.
    pub async fn balancers(&self) -> Result<Vec<StoredBalancer>, StoreError> {
        self.select_balancers(None).await
    }

    /// One service's balancer config, if it has one.
    pub async fn balancer(
        &self,
        service: &ServiceName,
    ) -> Result<Option<StoredBalancer>, StoreError> {
        Ok(self.select_balancers(Some(service)).await?.pop())
    }

    async fn select_balancers(
        &self,
        service: Option<&ServiceName>,
    ) -> Result<Vec<StoredBalancer>, StoreError> {
        let rows = on_pool!(self, pool => {
            let rows = sqlx::query(SELECT_BALANCERS)
                .bind(service.map(ServiceName::as_str))
                .fetch_all(pool)
                .await;
            rows.and_then(|rows| rows.iter().map(|row| {
                let algorithm: String = row.try_get("algorithm")?;
                Ok(StoredBalancer {
                    service: ServiceName::new(row.try_get::<String, _>("service_name")?),
                    algorithm: Algorithm::parse(&algorithm).ok_or_else(|| {
                        codec::bad_value("algorithm", format!("unknown algorithm {algorithm:?}"))
                    })?,
                    health_check_path: row.try_get("health_check_path")?,
                    health_check_interval: seconds(
                        "health_check_interval_seconds",
                        row.try_get("health_check_interval_seconds")?,
                    )?,
                    health_check_timeout: seconds(
                        "health_check_timeout_seconds",
                        row.try_get("health_check_timeout_seconds")?,
                    )?,
                    unhealthy_threshold: codec::count(
                        "unhealthy_threshold",
                        row.try_get("unhealthy_threshold")?,
                    )?,
                    healthy_threshold: codec::count(
                        "healthy_threshold",
                        row.try_get("healthy_threshold")?,
                    )?,
                    session_affinity: row.try_get("session_affinity")?,
                    circuit_breaker_enabled: row.try_get("circuit_breaker_enabled")?,
                    max_retries: codec::count("max_retries", row.try_get("max_retries")?)?,
                    retry_timeout: seconds(
                        "retry_timeout_seconds",
                        row.try_get("retry_timeout_seconds")?,
                    )?,
                })
            }).collect::<Result<Vec<_>, sqlx::Error>>())
        });
        rows.map_err(StoreError::query("read balancer configs"))
    }

    /// Inserts or replaces a service's balancer config.
    pub async fn upsert_balancer(&self, row: &StoredBalancer) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query(UPSERT_BALANCER)
            .bind(row.service.as_str())
            .bind(row.algorithm.as_str())
            .bind(row.health_check_path.as_str())
            .bind(whole_seconds(row.health_check_interval))
            .bind(whole_seconds(row.health_check_timeout))
            .bind(codec::int(row.unhealthy_threshold))
            .bind(codec::int(row.healthy_threshold))
            .bind(row.session_affinity)
            .bind(row.circuit_breaker_enabled)
            .bind(codec::int(row.max_retries))
            .bind(whole_seconds(row.retry_timeout))
            .bind(Ts(Utc::now()))
            .execute(pool)
            .await
            .map(drop))
        .map_err(StoreError::query("upsert balancer config"))
    }

    /// Every service's resource quota, by service name.
    pub async fn quotas(&self) -> Result<Vec<StoredQuota>, StoreError> {
        self.select_quotas(None).await
    }

    /// One service's resource quota, if it has one.
    pub async fn quota(&self, service: &ServiceName) -> Result<Option<StoredQuota>, StoreError> {
        Ok(self.select_quotas(Some(service)).await?.pop())
    }

    async fn select_quotas(
        &self,
        service: Option<&ServiceName>,
    ) -> Result<Vec<StoredQuota>, StoreError> {
        let rows = on_pool!(self, pool => {
            let rows = sqlx::query(SELECT_QUOTAS)
                .bind(service.map(ServiceName::as_str))
                .fetch_all(pool)
                .await;
            rows.and_then(|rows| rows.iter().map(|row| Ok(StoredQuota {
                service: ServiceName::new(row.try_get::<String, _>("service_name")?),
                quota: QuotaConfig {
                    max_cpu_cores: row.try_get("max_cpu_cores")?,
                    max_memory_gb: row.try_get("max_memory_gb")?,
                    max_storage_gb: row.try_get("max_storage_gb")?,
                    max_network_mbps: row.try_get("max_network_mbps")?,
                    max_instances: codec::count("max_instances", row.try_get("max_instances")?)?,
                    cost_budget_monthly: row.try_get("cost_budget_monthly")?,
                    priority_level: codec::count("priority_level", row.try_get("priority_level")?)?,
                },
            })).collect::<Result<Vec<_>, sqlx::Error>>())
        });
        rows.map_err(StoreError::query("read resource quotas"))
    }

    /// Inserts or replaces a service's resource quota.
    pub async fn upsert_quota(&self, row: &StoredQuota) -> Result<(), StoreError> {
        let q = &row.quota;
        on_pool!(self, pool => sqlx::query(UPSERT_QUOTA)
            .bind(row.service.as_str())
            .bind(q.max_cpu_cores)
            .bind(q.max_memory_gb)
            .bind(q.max_storage_gb)
            .bind(q.max_network_mbps)
            .bind(codec::int(q.max_instances))
            .bind(q.cost_budget_monthly)
            .bind(codec::int(q.priority_level))
            .bind(Ts(Utc::now()))
            .execute(pool)
            .await
            .map(drop))
        .map_err(StoreError::query("upsert resource quota"))
    }
}
