//! The `tidegate` command line: `serve`, `check`, `migrate` and `demo-backend`.

// The CLI's job is to print to the terminal.
#![allow(clippy::print_stdout)]

mod check;
mod migrate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::demo::DemoOptions;
use crate::telemetry::logging::{self, LogFormat};

/// A Layer-7 load balancer with built-in autoscaling.
#[derive(Debug, Parser)]
#[command(name = "tidegate", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (the default when no command is given).
    Serve {
        /// Config file; default `config/tidegate.toml`, else the embedded default.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print a summary, like `nginx -t`.
    Check {
        /// Config file; default `config/tidegate.toml`, else the embedded default.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Apply, revert or list the store's schema migrations.
    Migrate {
        /// up, down (one step; `--all` for every one) or status.
        #[command(subcommand)]
        action: migrate::MigrateAction,
        /// Config file naming the database; default `config/tidegate.toml`, else the embedded default.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Run a small origin server for demos, tests and benchmarks.
    DemoBackend {
        /// Port to listen on (on 127.0.0.1).
        #[arg(long)]
        port: u16,
        /// CPU time burned per request, in microseconds.
        #[arg(long, default_value_t = 0)]
        work_us: u64,
        /// Time slept per request, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Share of requests answered with 500, from 0 to 1.
        #[arg(long, default_value_t = 0.0)]
        fail_rate: f64,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Check { config } => check::run(config.as_deref()),
        Command::Migrate { action, config } => migrate::run(config.as_deref(), action),
        Command::Serve { config } => {
            logging::init(cli.log_format);
            serve(config)
        }
        Command::DemoBackend {
            port,
            work_us,
            latency_ms,
            fail_rate,
        } => {
            logging::init(cli.log_format);
            if !(0.0..=1.0).contains(&fail_rate) {
                eprintln!("--fail-rate: {fail_rate} must be between 0 and 1");
                return ExitCode::from(2);
            }
            let options = DemoOptions {
                work_us,
                latency_ms,
                fail_rate,
            };
            demo_backend(port, options)
        }
    }
}

/// The runtime `serve` runs on: a current-thread runtime. With one worker it
/// runs everything; with more, `app::start` gives the proxy one current-thread
/// runtime per worker (`SO_REUSEPORT` listeners) and this one keeps the admin
/// listener and the control plane. Either way every task, timer and pooled
/// upstream connection of a client connection stays on one thread, with no
/// work stealing and no cross-thread wake-ups: bench/RESULTS.md has the
/// instructions per request against one multi-thread runtime.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// `proxy.workers`, with 0 meaning one worker per core.
fn worker_count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

fn serve(config_path: Option<PathBuf>) -> ExitCode {
    let mut config = match Config::load_or_default(config_path.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            for line in e.lines() {
                error!(error = %line, "invalid config");
            }
            return ExitCode::FAILURE;
        }
    };
    config.proxy.workers = worker_count(config.proxy.workers);
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Installed before anything starts and kept to the end, so that a
        // signal arriving during start-up or between the first and the second
        // wait is never lost.
        let mut signals = match ShutdownSignals::install() {
            Ok(signals) => signals,
            Err(e) => {
                error!(error = %e, "cannot install signal handlers");
                return ExitCode::FAILURE;
            }
        };
        let running = match crate::app::start(config).await {
            Ok(running) => running,
            Err(e) => {
                error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        signals.recv().await;
        info!("shutdown signal received, draining; a second signal exits at once");
        let orchestrators = running.control.orchestrators.clone();
        tokio::spawn(async move {
            signals.recv().await;
            warn!("second shutdown signal, exiting now");
            // Exiting runs no destructors: the instances tidegate started
            // would outlive it.
            for orchestrator in &orchestrators {
                orchestrator.abandon();
            }
            std::process::exit(1);
        });
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// SIGTERM and SIGINT, the signals that stop tidegate.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Starts catching both signals; from here on neither kills the process by itself.
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Waits for SIGTERM or SIGINT.
async fn wait_for_signal() {
    match ShutdownSignals::install() {
        Ok(mut signals) => signals.recv().await,
        Err(e) => {
            warn!(error = %e, "cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

fn demo_backend(port: u16, options: DemoOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        tokio::select! {
            result = crate::demo::run(addr, options) => {
                if let Err(e) = result {
                    error!(error = %e, port, "demo backend failed");
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            _ = wait_for_signal() => ExitCode::SUCCESS,
        }
    })
}
