//! The command orchestrator: operator scripts start, stop and list instances.
//!
//! `scale_up` prints the new instance's address (the last non-empty line of
//! its output counts); `scale_down` runs with `{address}` substituted;
//! `list` prints one address per line. Each script runs through `sh -c`
//! within the configured timeout; a non-zero exit, a timeout or output that
//! is not an address is a failure the scaler records in its event.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::process::Command;
use tracing::info;

use super::{OrchestrateError, Orchestrator};
use crate::balance::Instance;
use crate::config::CommandConfig;
use crate::health::prober;
use crate::registry::Service;

/// Operator scripts.
pub struct CommandOrchestrator {
    service: Arc<Service>,
    config: CommandConfig,
}

impl CommandOrchestrator {
    /// The command orchestrator of a service.
    pub fn new(service: Arc<Service>, config: CommandConfig) -> Self {
        Self { service, config }
    }

    async fn run(&self, script: &'static str, command: &str) -> Result<String, OrchestrateError> {
        let fail = |reason: String| OrchestrateError::Script { script, reason };
        let child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("TIDEGATE_SERVICE", self.service.name.as_str())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        let output = tokio::time::timeout(self.config.timeout, child.wait_with_output())
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.config.timeout)))?
            .map_err(|e| fail(e.to_string()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(fail(format!("{}: {}", output.status, stderr.trim())));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Every line of `text` as an address; the first line that is not one is an error.
fn parse_addrs(script: &'static str, text: &str) -> Result<Vec<SocketAddr>, OrchestrateError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.parse().map_err(|_| OrchestrateError::Script {
                script,
                reason: format!("{l:?} is not an address like 127.0.0.1:9001"),
            })
        })
        .collect()
}

impl Orchestrator for CommandOrchestrator {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn start(&self) -> BoxFuture<'_, Result<Arc<Instance>, OrchestrateError>> {
        Box::pin(async move {
            let output = self.run("scale_up", &self.config.scale_up).await?;
            let last = output
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let addr = *parse_addrs("scale_up", last)?.first().ok_or_else(|| {
                OrchestrateError::Script {
                    script: "scale_up",
                    reason: "printed no address".into(),
                }
            })?;
            let instance = Instance::from_addr(self.service.name.clone(), addr, 1);
            let balancer = &self.service.config.balancer;
            prober::wait_until_healthy(&instance, balancer, self.config.timeout)
                .await
                .map_err(|e| OrchestrateError::Start {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?;
            // Slow start: a cold instance takes a growing share of the load.
            self.service
                .table
                .add_slow_start(Arc::clone(&instance), self.service.balancer.slow_start());
            info!(service = %self.service.name, instance = %addr, "instance added");
            Ok(instance)
        })
    }

    fn stop(&self, instance: Arc<Instance>) -> BoxFuture<'_, Result<(), OrchestrateError>> {
        Box::pin(async move {
            let command = self
                .config
                .scale_down
                .replace("{address}", &instance.addr().to_string());
            self.run("scale_down", &command).await.map(|_| ())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<SocketAddr>, OrchestrateError>> {
        Box::pin(async move {
            let output = self.run("list", &self.config.list).await?;
            parse_addrs("list", &output)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_output_parses_one_address_per_line() {
        let addrs =
            parse_addrs("list", "127.0.0.1:9001\n\n  127.0.0.1:9002 \n").expect("valid output");
        assert_eq!(addrs.len(), 2);
        assert!(
            parse_addrs("list", "127.0.0.1:9001\nnot an address\n").is_err(),
            "output that is not an address is a script failure"
        );
    }
}
