//! Turns the raw file into typed settings, collecting every error with its key path.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::raw::{
    RawBalancer, RawConfig, RawOrchestrator, RawPolicy, RawQuota, RawResilience, RawService, RawTls,
};
use super::*;

/// Collects errors while values are checked one by one.
struct Checker {
    errors: Vec<ConfigError>,
}

impl Checker {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(path, format!("{text:?} is not a socket address"));
                None
            }
        }
    }

    fn duration(&mut self, path: &str, text: &str) -> Duration {
        match parse_duration(text) {
            Some(d) => d,
            None => {
                self.error(
                    path,
                    format!("{text:?} is not a duration (write e.g. \"250ms\", \"5s\", \"2m\")"),
                );
                Duration::ZERO
            }
        }
    }

    fn positive_duration(&mut self, path: &str, text: &str) -> Duration {
        let d = self.duration(path, text);
        if d.is_zero() && parse_duration(text).is_some() {
            self.error(path, format!("{text:?} must be longer than zero"));
        }
        d
    }

    fn at_least(&mut self, path: &str, value: u64, min: u64) {
        if value < min {
            self.error(path, format!("{value} must be at least {min}"));
        }
    }

    fn percent(&mut self, path: &str, value: f64) {
        if !(value > 0.0 && value <= 100.0) {
            self.error(
                path,
                format!("{value} must be a percentage above 0 and at most 100"),
            );
        }
    }
}

/// Validates a whole file; returns every error found.
pub(super) fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut c = Checker { errors: Vec::new() };

    let listen: Vec<SocketAddr> = raw
        .proxy
        .listen
        .iter()
        .enumerate()
        .filter_map(|(i, a)| c.addr(&format!("proxy.listen[{i}]"), a))
        .collect();
    if raw.proxy.listen.is_empty() {
        c.error("proxy.listen", "at least one listener address is required");
    }
    let proxy = ProxyConfig {
        listen,
        workers: raw.proxy.workers,
        shutdown_grace: c.duration("proxy.shutdown_grace", &raw.proxy.shutdown_grace),
        tls: raw
            .proxy
            .tls
            .as_ref()
            .map(|t| validate_tls(&mut c, t, base_dir)),
    };

    let admin_listen = c.addr("admin.listen", &raw.admin.listen);
    if let Some(token) = &raw.admin.token {
        if token.trim().len() < 16 {
            c.error(
                "admin.token",
                "must be at least 16 characters (the value is not shown)",
            );
        }
    }
    let admin = AdminConfig {
        listen: admin_listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9901))),
        token: raw.admin.token.clone(),
    };
    let clash = admin.listen.port() != 0 && proxy.listen.contains(&admin.listen);
    if let (Some(admin_addr), true) = (admin_listen, clash) {
        c.error(
            "admin.listen",
            format!("{admin_addr} is also a proxy listener"),
        );
    }

    let timeouts = Timeouts {
        connect: c.positive_duration("timeouts.connect", &raw.timeouts.connect),
        request: c.positive_duration("timeouts.request", &raw.timeouts.request),
        idle: c.positive_duration("timeouts.idle", &raw.timeouts.idle),
    };

    c.at_least("limits.max_header_bytes", raw.limits.max_header_bytes, 8192);
    c.at_least("limits.max_connections", raw.limits.max_connections, 1);
    let limits = Limits {
        max_header_bytes: raw.limits.max_header_bytes as usize,
        max_body_bytes: (raw.limits.max_body_bytes > 0).then_some(raw.limits.max_body_bytes),
        max_connections: raw.limits.max_connections as usize,
    };

    let store = validate_store(&mut c, &raw, base_dir);

    let scaler = ScalerConfig {
        enabled: raw.scaler.enabled,
        evaluation_interval: c.positive_duration(
            "scaler.evaluation_interval",
            &raw.scaler.evaluation_interval,
        ),
        window: c.positive_duration("scaler.window", &raw.scaler.window),
        tolerance_percent: raw.scaler.tolerance_percent,
        instance_hourly_cost: raw.scaler.instance_hourly_cost,
    };
    if !(0.0..100.0).contains(&scaler.tolerance_percent) {
        c.error(
            "scaler.tolerance_percent",
            format!(
                "{} must be at least 0 and below 100",
                scaler.tolerance_percent
            ),
        );
    }
    if scaler.instance_hourly_cost < 0.0 {
        c.error(
            "scaler.instance_hourly_cost",
            format!("{} must not be negative", scaler.instance_hourly_cost),
        );
    }

    let services: Vec<ServiceConfig> = raw
        .services
        .iter()
        .filter_map(|(name, s)| validate_service(&mut c, name, s))
        .collect();
    check_route_overlap(&mut c, &services);

    if c.errors.is_empty() {
        Ok(Config {
            base_dir: base_dir.to_path_buf(),
            proxy,
            admin,
            timeouts,
            limits,
            store,
            scaler,
            services,
        })
    } else {
        Err(c.errors)
    }
}

/// Checks that the PEM files hold a certificate chain and a private key, so
/// that `tidegate check` catches a wrong path before `serve` does.
fn validate_tls(c: &mut Checker, raw: &RawTls, base_dir: &Path) -> TlsConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let cert = base_dir.join(&raw.cert);
    let key = base_dir.join(&raw.key);
    let chain =
        CertificateDer::pem_file_iter(&cert).and_then(|certs| certs.collect::<Result<Vec<_>, _>>());
    match chain {
        Ok(chain) if chain.is_empty() => c.error(
            "proxy.tls.cert",
            format!("{:?} holds no PEM certificate", raw.cert),
        ),
        Ok(_) => {}
        Err(e) => c.error(
            "proxy.tls.cert",
            format!("{:?} is not a PEM certificate chain: {e}", raw.cert),
        ),
    }
    if let Err(e) = PrivateKeyDer::from_pem_file(&key) {
        c.error(
            "proxy.tls.key",
            format!("{:?} is not a PEM private key: {e}", raw.key),
        );
    }
    TlsConfig { cert, key }
}

fn validate_store(c: &mut Checker, raw: &RawConfig, base_dir: &Path) -> StoreConfig {
    let s = &raw.store;
    let url = s.database_url.trim();
    let database_url = if let Some(file) = url.strip_prefix("sqlite://") {
        if file.is_empty() {
            c.error("store.database_url", "a sqlite:// URL needs a file name");
        }
        let path = Path::new(file);
        if path.is_absolute() || file.starts_with(":memory:") {
            url.to_owned()
        } else {
            format!("sqlite://{}", base_dir.join(path).display())
        }
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        url.to_owned()
    } else {
        c.error(
            "store.database_url",
            format!("{url:?} must start with sqlite:// or postgres://"),
        );
        url.to_owned()
    };
    c.at_least("store.queue_capacity", s.queue_capacity, 1);
    c.at_least("store.batch_size", s.batch_size, 1);
    c.at_least("store.retention_days", u64::from(s.retention_days), 1);
    StoreConfig {
        database_url,
        migrate_on_start: s.migrate_on_start,
        metrics_interval: c.positive_duration("store.metrics_interval", &s.metrics_interval),
        queue_capacity: s.queue_capacity as usize,
        batch_size: s.batch_size as usize,
        retention_days: s.retention_days,
        event_retention_days: s.event_retention_days,
        forecast_retention_days: s.forecast_retention_days,
    }
}

fn validate_service(c: &mut Checker, name: &str, s: &RawService) -> Option<ServiceConfig> {
    let p = format!("services.{name}");
    let valid_name = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
    if !valid_name {
        c.error(
            &p,
            format!("{name:?} is not a service name (letters, digits, - and _, at most 100)"),
        );
    }

    let kind = match s.kind.as_deref() {
        None | Some("stateless") => ServiceKind::Stateless,
        Some("stateful") => ServiceKind::Stateful {
            requires_consensus: s.requires_consensus,
        },
        Some("singleton") => ServiceKind::Singleton,
        Some(other) => {
            c.error(
                format!("{p}.kind"),
                format!("{other:?} is not one of stateless, stateful, singleton"),
            );
            ServiceKind::Stateless
        }
    };
    if s.requires_consensus && !matches!(kind, ServiceKind::Stateful { .. }) {
        c.error(
            format!("{p}.requires_consensus"),
            "only a stateful service can require consensus",
        );
    }

    let routes = validate_routes(c, &p, s);
    let instances = s
        .instances
        .iter()
        .enumerate()
        .filter_map(|(i, inst)| {
            let path = format!("{p}.instances[{i}]");
            let address = c.addr(&format!("{path}.address"), &inst.address)?;
            if inst.weight > 10_000 {
                c.error(
                    format!("{path}.weight"),
                    format!("{} must be at most 10000", inst.weight),
                );
            }
            Some(InstanceConfig {
                address,
                weight: inst.weight,
            })
        })
        .collect::<Vec<_>>();
    for (i, inst) in instances.iter().enumerate() {
        if instances[..i].iter().any(|o| o.address == inst.address) {
            c.error(
                format!("{p}.instances[{i}].address"),
                format!("\"{}\" is listed twice", inst.address),
            );
        }
    }

    let balancer = validate_balancer(c, &p, &s.load_balancer);
    let resilience = validate_resilience(c, &p, &s.resilience);
    let policy = s.scaling.as_ref().map(|r| validate_policy(c, &p, r));
    let quota = s.quota.as_ref().map(|r| validate_quota(c, &p, r));
    let orchestrator = validate_orchestrator(c, &p, &s.orchestrator);

    if matches!(orchestrator, OrchestratorConfig::Static) && instances.is_empty() {
        c.error(
            format!("{p}.instances"),
            "a service on the static orchestrator needs at least one instance",
        );
    }
    let consensus = ServiceKind::Stateful {
        requires_consensus: true,
    };
    if let (true, Some(policy)) = (kind == consensus, &policy) {
        // The decision keeps a consensus group odd; its first members must be too.
        if policy.min_instances % 2 == 0 {
            c.error(
                format!("{p}.scaling.min_instances"),
                format!(
                    "{} is even; a service that requires consensus runs an odd member count",
                    policy.min_instances
                ),
            );
        }
    }
    if let (ServiceKind::Singleton, Some(policy)) = (kind, &policy) {
        if policy.enabled {
            c.error(
                format!("{p}.scaling"),
                "a singleton service is never scaled",
            );
        }
    }

    Some(ServiceConfig {
        name: ServiceName::new(name),
        kind,
        routes,
        instances,
        balancer,
        resilience,
        policy,
        quota,
        orchestrator,
    })
}

fn validate_routes(c: &mut Checker, p: &str, s: &RawService) -> Vec<RouteConfig> {
    if s.routes.is_empty() {
        c.error(format!("{p}.routes"), "a service needs at least one route");
    }
    s.routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = format!("{p}.routes[{i}]");
            let prefix = r.path_prefix.clone().unwrap_or_else(|| "/".into());
            if !prefix.starts_with('/') {
                c.error(
                    format!("{path}.path_prefix"),
                    format!("{prefix:?} must start with /"),
                );
            }
            let host = r.host.as_ref().map(|h| h.trim().to_ascii_lowercase());
            if let Some(h) = &host {
                let ok = !h.is_empty()
                    && h.chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.');
                if !ok {
                    c.error(format!("{path}.host"), format!("{h:?} is not a host name"));
                }
            }
            RouteConfig {
                host,
                path_prefix: prefix,
            }
        })
        .collect()
}

fn check_route_overlap(c: &mut Checker, services: &[ServiceConfig]) {
    let mut seen: Vec<(&RouteConfig, &ServiceName)> = Vec::new();
    for s in services {
        for r in &s.routes {
            if let Some((_, other)) = seen.iter().find(|(o, _)| *o == r) {
                c.error(
                    format!("services.{}.routes", s.name),
                    format!(
                        "host {:?} prefix {:?} is already routed to service {other}",
                        r.host.as_deref().unwrap_or("*"),
                        r.path_prefix
                    ),
                );
            }
            seen.push((r, &s.name));
        }
    }
}

fn validate_balancer(c: &mut Checker, p: &str, b: &RawBalancer) -> BalancerConfig {
    let p = format!("{p}.load_balancer");
    let algorithm = Algorithm::parse(&b.algorithm).unwrap_or_else(|| {
        let names: Vec<&str> = Algorithm::ALL.iter().map(|(_, n)| *n).collect();
        c.error(
            format!("{p}.algorithm"),
            format!("{:?} is not one of {}", b.algorithm, names.join(", ")),
        );
        Algorithm::RoundRobin
    });
    if !b.health_check_path.starts_with('/') {
        c.error(
            format!("{p}.health_check_path"),
            format!("{:?} must start with /", b.health_check_path),
        );
    }
    let fields = [
        (
            "health_check_interval_seconds",
            b.health_check_interval_seconds,
        ),
        (
            "health_check_timeout_seconds",
            b.health_check_timeout_seconds,
        ),
        ("unhealthy_threshold", b.unhealthy_threshold),
        ("healthy_threshold", b.healthy_threshold),
        ("retry_timeout_seconds", b.retry_timeout_seconds),
        ("two_choice_above", b.two_choice_above),
    ];
    for (field, value) in fields {
        c.at_least(&format!("{p}.{field}"), u64::from(value), 1);
    }
    if b.max_retries > 10 {
        c.error(
            format!("{p}.max_retries"),
            format!("{} must be at most 10", b.max_retries),
        );
    }
    BalancerConfig {
        algorithm,
        health_check_path: b.health_check_path.clone(),
        health_check_interval: Duration::from_secs(b.health_check_interval_seconds.into()),
        health_check_timeout: Duration::from_secs(b.health_check_timeout_seconds.into()),
        unhealthy_threshold: b.unhealthy_threshold,
        healthy_threshold: b.healthy_threshold,
        session_affinity: b.session_affinity,
        circuit_breaker_enabled: b.circuit_breaker_enabled,
        max_retries: b.max_retries,
        retry_timeout: Duration::from_secs(b.retry_timeout_seconds.into()),
        slow_start: c.duration(&format!("{p}.slow_start"), &b.slow_start),
        two_choice_above: b.two_choice_above as usize,
    }
}

fn validate_resilience(c: &mut Checker, p: &str, r: &RawResilience) -> ResilienceConfig {
    let p = format!("{p}.resilience");
    c.at_least(
        &format!("{p}.consecutive_failures"),
        r.consecutive_failures.into(),
        1,
    );
    c.at_least(
        &format!("{p}.breaker_min_requests"),
        r.breaker_min_requests.into(),
        1,
    );
    c.at_least(
        &format!("{p}.breaker_half_open_trials"),
        r.breaker_half_open_trials.into(),
        1,
    );
    for (field, value) in [
        ("max_ejection_percent", r.max_ejection_percent),
        ("breaker_failure_percent", r.breaker_failure_percent),
        ("retry_budget_percent", r.retry_budget_percent),
    ] {
        if value > 100 {
            c.error(
                format!("{p}.{field}"),
                format!("{value} must be at most 100"),
            );
        }
    }
    ResilienceConfig {
        max_in_flight: r.max_in_flight,
        consecutive_failures: r.consecutive_failures,
        base_ejection: c.positive_duration(&format!("{p}.base_ejection"), &r.base_ejection),
        max_ejection_percent: r.max_ejection_percent,
        breaker_failure_percent: r.breaker_failure_percent,
        breaker_min_requests: r.breaker_min_requests,
        breaker_window: c.positive_duration(&format!("{p}.breaker_window"), &r.breaker_window),
        breaker_open_for: c
            .positive_duration(&format!("{p}.breaker_open_for"), &r.breaker_open_for),
        breaker_half_open_trials: r.breaker_half_open_trials,
        retry_budget_percent: r.retry_budget_percent,
        retry_min_per_second: r.retry_min_per_second,
        retry_buffer_bytes: r.retry_buffer_bytes,
        drain_timeout: c.positive_duration(&format!("{p}.drain_timeout"), &r.drain_timeout),
    }
}

fn validate_policy(c: &mut Checker, p: &str, r: &RawPolicy) -> PolicyConfig {
    let p = format!("{p}.scaling");
    c.at_least(&format!("{p}.min_instances"), r.min_instances.into(), 1);
    if r.max_instances < r.min_instances {
        c.error(
            format!("{p}.max_instances"),
            format!(
                "{} is below min_instances {}",
                r.max_instances, r.min_instances
            ),
        );
    }
    c.percent(&format!("{p}.target_cpu_percent"), r.target_cpu_percent);
    c.percent(
        &format!("{p}.target_memory_percent"),
        r.target_memory_percent,
    );
    c.percent(&format!("{p}.scale_up_threshold"), r.scale_up_threshold);
    c.percent(&format!("{p}.scale_down_threshold"), r.scale_down_threshold);
    if r.target_response_time_ms <= 0.0 {
        c.error(
            format!("{p}.target_response_time_ms"),
            format!("{} must be above 0", r.target_response_time_ms),
        );
    }
    if r.scale_down_threshold >= r.scale_up_threshold {
        c.error(
            format!("{p}.scale_down_threshold"),
            format!(
                "{} must be below scale_up_threshold {}",
                r.scale_down_threshold, r.scale_up_threshold
            ),
        );
    }
    PolicyConfig {
        min_instances: r.min_instances,
        max_instances: r.max_instances,
        target_cpu_percent: r.target_cpu_percent,
        target_memory_percent: r.target_memory_percent,
        target_response_time_ms: r.target_response_time_ms,
        scale_up_threshold: r.scale_up_threshold,
        scale_down_threshold: r.scale_down_threshold,
        scale_up_cooldown_minutes: r.scale_up_cooldown_minutes,
        scale_down_cooldown_minutes: r.scale_down_cooldown_minutes,
        enabled: r.enabled,
    }
}

fn validate_quota(c: &mut Checker, p: &str, r: &RawQuota) -> QuotaConfig {
    let p = format!("{p}.quota");
    if !(1..=4).contains(&r.priority_level) {
        c.error(
            format!("{p}.priority_level"),
            format!(
                "{} is not 1 (critical), 2 (high), 3 (medium) or 4 (low)",
                r.priority_level
            ),
        );
    }
    c.at_least(&format!("{p}.max_instances"), r.max_instances.into(), 1);
    QuotaConfig {
        max_cpu_cores: r.max_cpu_cores,
        max_memory_gb: r.max_memory_gb,
        max_storage_gb: r.max_storage_gb,
        max_network_mbps: r.max_network_mbps,
        max_instances: r.max_instances,
        cost_budget_monthly: r.cost_budget_monthly,
        priority_level: r.priority_level,
    }
}

fn validate_orchestrator(c: &mut Checker, p: &str, r: &RawOrchestrator) -> OrchestratorConfig {
    let p = format!("{p}.orchestrator");
    match r.kind.as_str() {
        "static" => OrchestratorConfig::Static,
        "process" => {
            let command = r.command.clone().unwrap_or_default();
            if command.trim().is_empty() {
                c.error(
                    format!("{p}.command"),
                    "the process orchestrator needs a command",
                );
            }
            let ports = match r.port_range.as_deref().map(parse_port_range) {
                Some(Some(range)) => range,
                Some(None) => {
                    c.error(
                        format!("{p}.port_range"),
                        format!(
                            "{:?} is not a port range like \"9100-9199\"",
                            r.port_range.as_deref().unwrap_or_default()
                        ),
                    );
                    (0, 0)
                }
                None => {
                    c.error(
                        format!("{p}.port_range"),
                        "the process orchestrator needs a port range",
                    );
                    (0, 0)
                }
            };
            OrchestratorConfig::Process(ProcessConfig {
                command,
                ports,
                start_timeout: c.positive_duration(&format!("{p}.start_timeout"), &r.start_timeout),
                stop_grace: c.positive_duration(&format!("{p}.stop_grace"), &r.stop_grace),
                memory_limit_mb: r.memory_limit_mb,
            })
        }
        "command" => {
            let mut script = |field: &str, value: &Option<String>| {
                let v = value.clone().unwrap_or_default();
                if v.trim().is_empty() {
                    c.error(
                        format!("{p}.{field}"),
                        "the command orchestrator needs this script",
                    );
                }
                v
            };
            let scale_up = script("scale_up", &r.scale_up);
            let scale_down = script("scale_down", &r.scale_down);
            let list = script("list", &r.list);
            OrchestratorConfig::Command(CommandConfig {
                scale_up,
                scale_down,
                list,
                timeout: c.positive_duration(&format!("{p}.start_timeout"), &r.start_timeout),
            })
        }
        other => {
            c.error(
                format!("{p}.kind"),
                format!("{other:?} is not one of static, process, command"),
            );
            OrchestratorConfig::Static
        }
    }
}

fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let (low, high) = text.split_once('-')?;
    let low: u16 = low.trim().parse().ok()?;
    let high: u16 = high.trim().parse().ok()?;
    // "0-0" asks the system for a free port per instance (tests, demos).
    ((low > 0 && low <= high) || (low, high) == (0, 0)).then_some((low, high))
}
