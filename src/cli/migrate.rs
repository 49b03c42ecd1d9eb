//! `tidegate migrate up|down|status`: the store's schema by hand.
//!
//! `serve` applies pending migrations itself unless `store.migrate_on_start`
//! is false; this command is for operators who migrate separately, and for
//! rolling back.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::store::{redact, Store, StoreError};

/// What to do with the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub(super) enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the latest applied migration.
    Down {
        /// Revert every applied migration instead.
        #[arg(long)]
        all: bool,
    },
    /// List the migrations and whether each is applied.
    Status,
}

/// Runs a migrate command and returns the exit code.
pub(super) fn run(config_path: Option<&Path>, action: MigrateAction) -> ExitCode {
    let config = match Config::load_or_default(config_path) {
        Ok(config) => config,
        Err(e) => {
            for line in e.lines() {
                eprintln!("{line}");
            }
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = config.store.database_url.clone();
    match runtime.block_on(act(&url, action)) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", redact(&url));
            ExitCode::FAILURE
        }
    }
}

async fn act(url: &str, action: MigrateAction) -> Result<Vec<String>, StoreError> {
    let store = Store::connect(url).await?;
    let lines = match action {
        MigrateAction::Up => describe("applied", &store.migrate_up().await?),
        MigrateAction::Down { all } => describe("reverted", &store.migrate_down(all).await?),
        MigrateAction::Status => store
            .migration_status()
            .await?
            .into_iter()
            .map(|m| {
                let state = if m.applied { "applied" } else { "pending" };
                format!("{:04}_{} {state}", m.version, m.description)
            })
            .collect(),
    };
    store.close().await;
    Ok(lines)
}

fn describe(verb: &str, versions: &[i64]) -> Vec<String> {
    if versions.is_empty() {
        return vec![format!("nothing {verb}")];
    }
    versions.iter().map(|v| format!("{verb} {v:04}")).collect()
}
