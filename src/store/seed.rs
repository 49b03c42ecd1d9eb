//! Seeding the config's policies, balancer configs and quotas into the database.
//!
//! Who wins when both sides change: the database, until the config changes.
//! Each seeded row's config value is remembered as a hash in `config_seeds`.
//! At start, a row is written from the config only when it is missing or when
//! the config's value differs from the one last seeded, so an operator's
//! `UPDATE scaling_policies ...` survives restarts, and editing the same
//! setting in the file later (a deliberate act) replaces it again. Between
//! starts the database is the only source: the scaler reads it every
//! evaluation.

use std::fmt::Debug;

use sqlx::Row as _;

use super::{Store, StoreError, StoredBalancer, StoredPolicy, StoredQuota};
use crate::config::ServiceConfig;
use crate::ids::ServiceName;

const SELECT_SEED: &str =
    "SELECT config_hash FROM config_seeds WHERE table_name = $1 AND service_name = $2";

const UPSERT_SEED: &str = "INSERT INTO config_seeds (table_name, service_name, config_hash) \
    VALUES ($1, $2, $3) ON CONFLICT (table_name, service_name) \
    DO UPDATE SET config_hash = excluded.config_hash";

/// What seeding did, per table: the services whose row was written from the config.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeedReport {
    /// `scaling_policies` rows written.
    pub policies: Vec<ServiceName>,
    /// `load_balancer_config` rows written.
    pub balancers: Vec<ServiceName>,
    /// `resource_quotas` rows written.
    pub quotas: Vec<ServiceName>,
}

/// FNV-1a over the value's debug text: stable for a given build and cheap.
/// A different text (a new field, a changed value) means a new seed.
fn config_hash(value: &impl Debug) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{value:?}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

impl Store {
    /// Writes each service's policy, balancer config and quota from the config
    /// where the row is missing or the config's value changed since it was last seeded.
    pub async fn seed_from_config(
        &self,
        services: &[ServiceConfig],
    ) -> Result<SeedReport, StoreError> {
        let mut report = SeedReport::default();
        for service in services {
            let name = &service.name;
            if let Some(policy) = &service.policy {
                let row = StoredPolicy {
                    service: name.clone(),
                    policy: policy.clone(),
                };
                let exists = self.policy(name).await?.is_some();
                if self
                    .needs_seed("scaling_policies", name, &row, exists)
                    .await?
                {
                    self.upsert_policy(&row).await?;
                    self.record_seed("scaling_policies", name, &row).await?;
                    report.policies.push(name.clone());
                }
            }
            let row = StoredBalancer::from_config(name.clone(), &service.balancer);
            let exists = self.balancer(name).await?.is_some();
            if self
                .needs_seed("load_balancer_config", name, &row, exists)
                .await?
            {
                self.upsert_balancer(&row).await?;
                self.record_seed("load_balancer_config", name, &row).await?;
                report.balancers.push(name.clone());
            }
            if let Some(quota) = &service.quota {
                let row = StoredQuota {
                    service: name.clone(),
                    quota: quota.clone(),
                };
                let exists = self.quota(name).await?.is_some();
                if self
                    .needs_seed("resource_quotas", name, &row, exists)
                    .await?
                {
                    self.upsert_quota(&row).await?;
                    self.record_seed("resource_quotas", name, &row).await?;
                    report.quotas.push(name.clone());
                }
            }
        }
        Ok(report)
    }

    async fn needs_seed(
        &self,
        table: &'static str,
        service: &ServiceName,
        row: &impl Debug,
        exists: bool,
    ) -> Result<bool, StoreError> {
        if !exists {
            return Ok(true);
        }
        let seeded: Option<String> = on_pool!(self, pool => sqlx::query(SELECT_SEED)
            .bind(table)
            .bind(service.as_str())
            .fetch_optional(pool)
            .await
            .and_then(|row| row.map(|r| r.try_get("config_hash")).transpose()))
        .map_err(StoreError::query("read config seed"))?;
        Ok(seeded.as_deref() != Some(config_hash(row).as_str()))
    }

    async fn record_seed(
        &self,
        table: &'static str,
        service: &ServiceName,
        row: &impl Debug,
    ) -> Result<(), StoreError> {
        let hash = config_hash(row);
        on_pool!(self, pool => sqlx::query(UPSERT_SEED)
            .bind(table)
            .bind(service.as_str())
            .bind(hash.as_str())
            .execute(pool)
            .await
            .map(drop))
        .map_err(StoreError::query("record config seed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_hash_changes_with_the_value_and_only_with_it() {
        assert_eq!(config_hash(&(1, "a")), config_hash(&(1, "a")));
        assert_ne!(config_hash(&(1, "a")), config_hash(&(2, "a")));
        assert_eq!(
            config_hash(&0u8).len(),
            16,
            "the hash fits config_seeds.config_hash"
        );
    }
}
