//! Which tidegate node decides: with several nodes on one PostgreSQL, only the
//! holder of an advisory lock scales; the others keep proxying and recording.
//!
//! The lock is session-level and held on a dedicated connection, so it is
//! released the moment the holder's connection ends, whether the node exited
//! or died. Every node asks once per evaluation: the holder checks its
//! connection still answers, the others try the lock, so a successor takes
//! over within one interval of the holder's death (two at most, counting the
//! interval in which the death happened).

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tracing::{info, warn};

/// The advisory lock key: "tidegate" in ASCII.
pub const LOCK_KEY: i64 = 0x7469_6465_6761_7465;

/// How long connecting or asking may take before the node counts as not leading.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether this node decides.
#[derive(Debug)]
pub enum Leadership {
    /// A single node (SQLite or no database): it always decides.
    Always,
    /// Leadership through a PostgreSQL advisory lock.
    Postgres(PgLeader),
}

impl Leadership {
    /// Leadership for a database URL: a lock on PostgreSQL, always otherwise.
    pub fn for_url(database_url: &str) -> Self {
        if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            Leadership::Postgres(PgLeader::new(database_url))
        } else {
            Leadership::Always
        }
    }

    /// Whether this node decides now.
    pub async fn holds(&mut self) -> bool {
        match self {
            Leadership::Always => true,
            Leadership::Postgres(leader) => leader.holds().await,
        }
    }
}

/// The advisory-lock contender of one node.
#[derive(Debug)]
pub struct PgLeader {
    url: String,
    conn: Option<PgConnection>,
    held: bool,
}

impl PgLeader {
    /// A contender for the lock on this database; it connects when first asked.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            conn: None,
            held: false,
        }
    }

    /// Whether this node holds the lock, trying to take it when it does not.
    pub async fn holds(&mut self) -> bool {
        let held = match tokio::time::timeout(ASK_TIMEOUT, self.ask()).await {
            Ok(Ok(held)) => held,
            Ok(Err(error)) => {
                warn!(error = %error, "scaler leadership check failed; not deciding");
                self.conn = None;
                false
            }
            Err(_) => {
                warn!("scaler leadership check timed out; not deciding");
                self.conn = None;
                false
            }
        };
        if held != self.held {
            info!(leader = held, "scaler leadership changed");
            self.held = held;
        }
        held
    }

    async fn ask(&mut self) -> Result<bool, sqlx::Error> {
        if self.conn.is_none() {
            self.held = false;
            self.conn = Some(PgConnection::connect(&self.url).await?);
        }
        let conn = self.conn.as_mut().expect("connected just above");
        if self.held {
            sqlx::query("SELECT 1").execute(&mut *conn).await?;
            return Ok(true);
        }
        sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut *conn)
            .await
    }
}
