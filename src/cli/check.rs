//! `tidegate check`: validate a config and print a one-screen summary, or every error.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, OrchestratorConfig, DEFAULT_PATH};

/// Prints the summary (exit 0) or every error (exit 1).
pub(super) fn run(path: Option<&Path>) -> ExitCode {
    let shown = path.map_or_else(
        || {
            if Path::new(DEFAULT_PATH).exists() {
                DEFAULT_PATH.to_owned()
            } else {
                "embedded default".to_owned()
            }
        },
        |p| p.display().to_string(),
    );
    match Config::load_or_default(path) {
        Ok(config) => {
            println!("{}", summary(&config, &shown));
            ExitCode::SUCCESS
        }
        Err(e) => {
            for line in e.lines() {
                eprintln!("{line}");
            }
            eprintln!("{shown}: configuration is invalid");
            ExitCode::FAILURE
        }
    }
}

/// The summary printed for a valid config.
pub(super) fn summary(config: &Config, shown: &str) -> String {
    let mut out = format!("{shown}: configuration is valid\n");
    let listen: Vec<String> = config.proxy.listen.iter().map(|a| a.to_string()).collect();
    out += &format!("  proxy    {}\n", listen.join(", "));
    out += &format!("  admin    {}\n", config.admin.listen);
    out += &format!("  store    {}\n", redact(&config.store.database_url));
    for s in &config.services {
        let routes: Vec<String> = s
            .routes
            .iter()
            .map(|r| format!("{}{}", r.host.as_deref().unwrap_or("*"), r.path_prefix))
            .collect();
        let orchestrator = match &s.orchestrator {
            OrchestratorConfig::Static => "static",
            OrchestratorConfig::Process(_) => "process",
            OrchestratorConfig::Command(_) => "command",
        };
        let scaling = s.policy.as_ref().map_or("no scaling".to_owned(), |p| {
            format!("{}..{} instances", p.min_instances, p.max_instances)
        });
        out += &format!(
            "  service  {}: routes {}; {} instance(s); {}; {} orchestrator; {}\n",
            s.name,
            routes.join(" "),
            s.instances.len(),
            s.balancer.algorithm,
            orchestrator,
            scaling,
        );
    }
    out.trim_end().to_owned()
}

/// Hides a password in a database URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}
