//! The command orchestrator runs the operator's scripts and records their
//! failures; the static orchestrator turns decisions into recommendations.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tidegate::config::{Config, OrchestratorConfig};
use tidegate::orchestrate::command::CommandOrchestrator;
use tidegate::orchestrate::fixed::StaticOrchestrator;
use tidegate::orchestrate::{self, Orchestrator};
use tidegate::registry::Service;
use tidegate::scale::event::EventType;

fn command_service(scale_up: &str, scale_down: &str, list: &str) -> Arc<Service> {
    let text = format!(
        r#"
        [services.app]
        routes = [{{ path_prefix = "/" }}]
        [services.app.load_balancer]
        healthy_threshold = 1
        [services.app.scaling]
        min_instances = 1
        max_instances = 2
        [services.app.orchestrator]
        kind = "command"
        scale_up = '{scale_up}'
        scale_down = '{scale_down}'
        list = '{list}'
        start_timeout = "5s"
        "#
    );
    let config = Config::parse(&text, Path::new(".")).expect("test config is valid");
    Arc::new(Service::new(config.services[0].clone()))
}

fn orchestrator(service: &Arc<Service>) -> CommandOrchestrator {
    match &service.config.orchestrator {
        OrchestratorConfig::Command(c) => CommandOrchestrator::new(Arc::clone(service), c.clone()),
        other => panic!("expected the command orchestrator, got {other:?}"),
    }
}

#[tokio::test]
async fn scripts_add_list_and_remove_instances() {
    let origin = support::origin(|_| async { support::text(StatusCode::OK, "ok") }).await;
    let removed = tempfile::NamedTempFile::new().expect("a temporary file");
    let service = command_service(
        &format!("echo starting; echo {}", origin.addr),
        &format!("echo {{address}} > {}", removed.path().display()),
        &format!("echo {}", origin.addr),
    );
    let orch = orchestrator(&service);

    let instance = orch
        .start()
        .await
        .expect("the scale_up script names a healthy instance");
    assert_eq!(
        instance.addr(),
        origin.addr,
        "the last line of the output is the address"
    );
    assert_eq!(
        service.table.load().len(),
        1,
        "the instance joined the table"
    );
    assert_eq!(
        orch.list().await.expect("the list script succeeds"),
        vec![origin.addr]
    );

    let errors = orchestrate::scale_down(&service, &orch, 1, Duration::from_secs(1)).await;
    assert!(
        errors.is_empty(),
        "the scale_down script succeeds: {errors:?}"
    );
    assert!(
        service.table.load().is_empty(),
        "the instance left the table"
    );
    let written = std::fs::read_to_string(removed.path()).expect("the script wrote its argument");
    assert_eq!(
        written.trim(),
        origin.addr.to_string(),
        "{{address}} is substituted"
    );
}

#[tokio::test]
async fn failing_script_is_an_error_that_says_why() {
    let service = command_service("echo quota exceeded >&2; exit 3", "true", "echo nonsense");
    let orch = orchestrator(&service);

    let error = orch
        .start()
        .await
        .expect_err("a failing script fails the start");
    let text = error.to_string();
    assert!(
        text.contains("scale_up") && text.contains("quota exceeded"),
        "the error names the script and its output: {text}"
    );
    assert!(
        orch.list().await.is_err(),
        "output that is not an address is a failure"
    );
    assert!(service.table.load().is_empty());
}

#[tokio::test]
async fn a_failing_scale_up_script_is_recorded_as_a_failed_scaling_event() {
    let origin = support::origin(|_| async { support::text(StatusCode::OK, "ok") }).await;
    let marks = tempfile::tempdir().expect("a temporary folder");
    // The first call brings up the instance; every later one fails like a cloud CLI out of quota.
    let service = command_service(
        &format!(
            "if mkdir {}/first 2>/dev/null; then echo {}; else echo quota exceeded >&2; exit 3; fi",
            marks.path().display(),
            origin.addr
        ),
        "true",
        &format!("echo {}", origin.addr),
    );
    let orch = Arc::new(orchestrator(&service));
    orch.start().await.expect("the first scale_up succeeds");

    let events = support::evaluate_under_load(&service, orch, 200.0).await;

    assert_eq!(events.len(), 1, "one evaluation, one event: {events:?}");
    let event = &events[0];
    assert_eq!(event.event_type, EventType::ScaleFailed);
    assert!(!event.success);
    let message = event.error_message.as_deref().unwrap_or("");
    assert!(
        message.contains("scale_up") && message.contains("quota exceeded"),
        "the event carries the script's failure: {message:?}"
    );
    assert_eq!(
        (event.instances_before, event.instances_after),
        (1, 1),
        "nothing joined the table"
    );
    assert_eq!(service.table.load().len(), 1);
}

#[tokio::test]
async fn static_service_records_decisions_as_recommendations_only() {
    let origin = support::origin(|_| async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        support::text(StatusCode::OK, "slow")
    })
    .await;
    let running = support::start(support::config_for(
        &[&origin],
        r#"
        [services.app.scaling]
        target_response_time_ms = 5.0
        scale_up_cooldown_minutes = 0
        [store]
        metrics_interval = "100ms"
        [scaler]
        evaluation_interval = "100ms"
        window = "1s"
        "#,
    ))
    .await;
    let service = Arc::clone(running.registry.service("app").expect("the service exists"));

    let recorded = async {
        loop {
            let _ = support::get(running.proxy_addr(), "/").await;
            if !running.control.events.all().is_empty() {
                return;
            }
        }
    };
    let in_time = tokio::time::timeout(Duration::from_secs(60), recorded).await;
    assert!(
        in_time.is_ok(),
        "a slow static service gets a recommendation"
    );

    let event = running.control.events.all()[0].clone();
    assert_eq!(event.event_type, EventType::ScaleUp);
    assert_eq!(event.trigger_metric.as_str(), "response_time");
    assert!(!event.success, "nothing was started");
    assert!(
        event
            .error_message
            .as_deref()
            .unwrap_or("")
            .contains("recommendation only"),
        "the event says it is a recommendation: {event:?}"
    );
    assert_eq!(
        service.table.load().len(),
        1,
        "the static service keeps its instances"
    );
    running.shutdown().await;
}

/// A static service of `kind` with three instances and a policy of 1 to 10.
fn static_kind(kind: &str, min_instances: u32) -> Result<Arc<Service>, Vec<String>> {
    let text = format!(
        r#"
        [services.app]
        {kind}
        routes = [{{ path_prefix = "/" }}]
        instances = [{{ address = "127.0.0.1:9001" }}, {{ address = "127.0.0.1:9002" }},
                     {{ address = "127.0.0.1:9003" }}]
        [services.app.scaling]
        min_instances = {min_instances}
        max_instances = 10
        "#
    );
    Config::parse(&text, Path::new("."))
        .map(|c| Arc::new(Service::new(c.services[0].clone())))
        .map_err(|e| e.lines())
}

#[tokio::test]
async fn a_consensus_service_steps_by_two_where_a_stateless_one_steps_by_one() {
    // Three instances at 85% CPU against a target of 70 ask for ceil(3 x 85 / 70) = 4.
    for (kind, expected) in [
        ("", 4),
        ("kind = \"stateful\"\nrequires_consensus = true", 5),
    ] {
        let service = static_kind(kind, 1).expect("the config is valid");
        let orch = Arc::new(StaticOrchestrator::new(Arc::clone(&service)));

        let events = support::evaluate_under_load(&service, orch, 85.0).await;

        assert_eq!(events.len(), 1, "{kind:?}: one recommendation: {events:?}");
        assert_eq!(
            (events[0].instances_before, events[0].instances_after),
            (3, expected),
            "{kind:?}: 3 -> {expected}"
        );
    }
}

#[test]
fn service_kinds_that_could_break_their_rule_are_refused_at_load() {
    let even = static_kind("kind = \"stateful\"\nrequires_consensus = true", 2)
        .expect_err("an even consensus minimum is refused");
    assert!(
        even.iter()
            .any(|l| l.contains("scaling.min_instances") && l.contains("odd")),
        "the error names the key: {even:?}"
    );
    let singleton = static_kind("kind = \"singleton\"", 1)
        .expect_err("a scaling policy on a singleton is refused");
    assert!(
        singleton.iter().any(|l| l.contains("never scaled")),
        "the error says why: {singleton:?}"
    );
    let stateless = static_kind("requires_consensus = true", 1)
        .expect_err("consensus without state is refused");
    assert!(
        stateless.iter().any(|l| l.contains("requires_consensus")),
        "{stateless:?}"
    );
}
