//! A throwaway PostgreSQL for the store tests.
//!
//! With `DATABASE_URL` set, tests use that server (it must allow CREATE
//! DATABASE). Otherwise the first test to ask starts a private cluster with
//! the machine's `initdb` and `pg_ctl` (from `/usr/lib/postgresql/*/bin`) in a
//! temporary folder, listening on a free loopback port and a socket in that
//! folder, run as the `postgres` user when the tests run as root. The
//! cluster is shared by the tests of one binary. A small watcher process,
//! started with it, stops the cluster and removes the folder as soon as the
//! test binary exits, however it exits, so no postgres is left running.
//!
//! When PostgreSQL can be neither reached nor started, the tests fail with
//! what to install if `CI` is set, and skip their PostgreSQL half otherwise.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// How to install what the cluster needs, for the failure message.
const INSTALL_HINT: &str = "install PostgreSQL (Debian/Ubuntu: apt-get install postgresql) \
     so that /usr/lib/postgresql/*/bin/initdb exists, or set DATABASE_URL to a server \
     that allows CREATE DATABASE";

/// A PostgreSQL server the tests may create databases on.
#[derive(Debug)]
pub struct PgServer {
    /// A URL of a database to run CREATE DATABASE from.
    admin_url: String,
    /// The private cluster, when tidegate's tests started it.
    cluster: Option<Cluster>,
}

#[derive(Debug)]
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    options: String,
    as_postgres: bool,
}

/// The server for this test binary: `DATABASE_URL`'s, or a private cluster.
/// `None` (after saying why) when there is neither and `CI` is not set.
pub fn server() -> Option<&'static PgServer> {
    static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
    let server = SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Ok(PgServer {
            admin_url: url,
            cluster: None,
        }),
        _ => start_cluster(),
    });
    available(server)
}

/// A private cluster even when `DATABASE_URL` is set, for tests that stop
/// and restart the server.
pub fn private_cluster() -> Option<&'static PgServer> {
    static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
    available(SERVER.get_or_init(start_cluster))
}

fn available(server: &'static Result<PgServer, String>) -> Option<&'static PgServer> {
    match server {
        Ok(server) => Some(server),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("PostgreSQL tests cannot run: {why}; {INSTALL_HINT}")
        }
        Err(why) => {
            eprintln!("skipped: the PostgreSQL half of this test ({why}; {INSTALL_HINT})");
            None
        }
    }
}

impl PgServer {
    /// Creates an empty database and returns its URL.
    pub async fn fresh_database(&self) -> String {
        use sqlx::Connection as _;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tidegate_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = conn.close().await;
        with_database(&self.admin_url, &name)
    }

    /// Stops the private cluster (fast shutdown: open connections are cut).
    pub fn stop(&self) {
        let cluster = self
            .cluster
            .as_ref()
            .expect("only a private cluster can be stopped");
        cluster.pg_ctl(&["stop", "-m", "fast", "-w"]).unwrap();
    }

    /// Starts the private cluster again after [`PgServer::stop`].
    pub fn start(&self) {
        let cluster = self
            .cluster
            .as_ref()
            .expect("only a private cluster can be started");
        cluster
            .pg_ctl(&["start", "-w", "-o", &cluster.options])
            .unwrap();
    }
}

/// The admin URL with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    format!("{host_part}/{name}{query}")
}

impl Cluster {
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        Err(format!("pg_ctl {args:?} failed: {log}"))
    }
}

fn start_cluster() -> Result<PgServer, String> {
    let bin = find_bin().ok_or("no initdb under /usr/lib/postgresql/*/bin")?;
    let as_postgres = is_root();
    let dir = tempfile::Builder::new()
        .prefix("tidegate-pg-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary folder: {e}"))?
        .keep();
    if as_postgres {
        chown_to_postgres(&dir)?;
    }
    let cluster = Cluster {
        data: dir.join("data"),
        log: dir.join("postgres.log"),
        options: String::new(),
        bin,
        as_postgres,
    };
    watch_and_clean_up(&cluster, &dir);
    let initdb = cluster
        .command("initdb")
        .arg("-D")
        .arg(&cluster.data)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !initdb.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        ));
    }
    let port = free_port()?;
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
        dir.display()
    );
    let cluster = Cluster { options, ..cluster };
    cluster.pg_ctl(&["start", "-w", "-o", &cluster.options])?;
    Ok(PgServer {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        cluster: Some(cluster),
    })
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding initdb and pg_ctl.
fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn chown_to_postgres(dir: &Path) -> Result<(), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| format!("cannot run id: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| "running as root and there is no postgres user".to_owned())
    };
    std::os::unix::fs::chown(dir, Some(id("-u")?), Some(id("-g")?))
        .map_err(|e| format!("cannot hand {} to postgres: {e}", dir.display()))
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Starts a detached shell that waits for this process to exit, then stops
/// the cluster (if running) and removes its folder.
fn watch_and_clean_up(cluster: &Cluster, dir: &Path) {
    let run_as = if cluster.as_postgres {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         {run_as}'{pg_ctl}' -D '{data}' -m immediate -w stop >/dev/null 2>&1; \
         rm -rf '{dir}'",
        pid = std::process::id(),
        pg_ctl = cluster.bin.join("pg_ctl").display(),
        data = cluster.data.display(),
        dir = dir.display(),
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
