//! Schema migrations: the numbered `migrations/<backend>/NNNN_name.{up,down}.sql`
//! pairs, embedded at build time, applied and reverted with sqlx's migrator.
//!
//! sqlx's `migrate!` macro would embed them too, but it needs the `macros`
//! feature, whose proc-macro crate builds both database drivers a second time
//! for the host; `build.rs` finds the pairs instead (so a new numbered pair is
//! picked up with no code change) and this module hands them to sqlx's
//! `Migrator`, which keeps what matters: a version table with checksums (an
//! edited, already applied migration is refused), one transaction per
//! migration and, on PostgreSQL, an advisory lock so two tidegates starting at
//! once do not migrate twice.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migrate, Migration, MigrationSource, MigrationType, Migrator};

use super::{Backend, Store, StoreError};

/// One numbered pair of migration files.
#[derive(Debug)]
pub(crate) struct EmbeddedMigration {
    version: i64,
    description: &'static str,
    up: &'static str,
    down: &'static str,
}

mod embedded {
    use super::EmbeddedMigration;
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// A known migration and whether the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Its number.
    pub version: i64,
    /// Its name (the file name after the number).
    pub description: String,
    /// Whether it is applied.
    pub applied: bool,
}

#[derive(Debug, Clone, Copy)]
struct Embedded(&'static [EmbeddedMigration]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        let mut migrations = Vec::with_capacity(self.0.len() * 2);
        for m in self.0 {
            let description = Cow::Borrowed(m.description);
            migrations.push(Migration::new(
                m.version,
                description.clone(),
                MigrationType::ReversibleUp,
                Cow::Borrowed(m.up),
                false,
            ));
            migrations.push(Migration::new(
                m.version,
                description,
                MigrationType::ReversibleDown,
                Cow::Borrowed(m.down),
                false,
            ));
        }
        Box::pin(async move { Ok(migrations) })
    }
}

fn embedded(backend: Backend) -> &'static [EmbeddedMigration] {
    match backend {
        Backend::Postgres => embedded::POSTGRES,
        Backend::Sqlite => embedded::SQLITE,
    }
}

async fn migrator(backend: Backend) -> Result<Migrator, StoreError> {
    Ok(Migrator::new(Embedded(embedded(backend))).await?)
}

impl Store {
    /// Applies every pending migration; returns the versions applied.
    pub async fn migrate_up(&self) -> Result<Vec<i64>, StoreError> {
        let before = self.applied_versions().await?;
        let migrator = migrator(self.backend()).await?;
        on_pool!(self, pool => migrator.run(pool).await)?;
        let after = self.applied_versions().await?;
        Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
    }

    /// Reverts the latest applied migration, or all of them; returns the versions reverted.
    pub async fn migrate_down(&self, all: bool) -> Result<Vec<i64>, StoreError> {
        let applied = self.applied_versions().await?;
        let target = match (all, applied.as_slice()) {
            (_, []) => return Ok(Vec::new()),
            (true, _) => 0,
            (false, [.., previous, _]) => *previous,
            (false, [_]) => 0,
        };
        let migrator = migrator(self.backend()).await?;
        on_pool!(self, pool => migrator.undo(pool, target).await)?;
        let mut reverted: Vec<i64> = applied.into_iter().filter(|v| *v > target).collect();
        reverted.reverse();
        Ok(reverted)
    }

    /// Every known migration and whether it is applied, in order.
    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>, StoreError> {
        let applied = self.applied_versions().await?;
        let known = embedded(self.backend());
        let mut status: Vec<MigrationStatus> = known
            .iter()
            .map(|m| MigrationStatus {
                version: m.version,
                description: m.description.to_owned(),
                applied: applied.contains(&m.version),
            })
            .collect();
        // Applied by a newer tidegate: listed so that a downgrade is visible.
        status.extend(
            applied
                .iter()
                .filter(|v| !known.iter().any(|m| m.version == **v))
                .map(|&version| MigrationStatus {
                    version,
                    description: "unknown to this binary".to_owned(),
                    applied: true,
                }),
        );
        status.sort_by_key(|m| m.version);
        Ok(status)
    }

    /// Versions recorded as applied, in ascending order.
    async fn applied_versions(&self) -> Result<Vec<i64>, StoreError> {
        let applied = on_pool!(self, pool => {
            let mut conn = pool
                .acquire()
                .await
                .map_err(StoreError::query("connect for migrations"))?;
            conn.ensure_migrations_table().await?;
            conn.list_applied_migrations().await?
        });
        let mut versions: Vec<i64> = applied.into_iter().map(|m| m.version).collect();
        versions.sort_unstable();
        Ok(versions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_start_with_the_schema_migration() {
        for backend in [Backend::Postgres, Backend::Sqlite] {
            let first = embedded(backend)
                .first()
                .map(|m| (m.version, m.description));
            assert_eq!(
                first,
                Some((1, "schema")),
                "{backend:?} starts with 0001_schema"
            );
        }
    }
}
