//! The command orchestrator runs the operator's scripts and records their
//! failures; the static orchestrator turns decisions into recommendations.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tidegate::config::{Config, OrchestratorConfig};
use tidegate::orchestrate::command::CommandOrchestrator;
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
