//! The process orchestrator against real child processes: the demo backend
//! started from the test build of `tidegate`, on ports the system assigns.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tidegate::config::Config;
use tidegate::orchestrate::process::ProcessOrchestrator;
use tidegate::orchestrate::{self, Orchestrator};
use tidegate::registry::Service;
use tidegate::scale::event::{EventType, MemoryEvents};

fn demo(extra: &str) -> String {
    format!(
        "{} demo-backend --port {{port}} {extra}",
        env!("CARGO_BIN_EXE_tidegate")
    )
}

fn service(command: &str, start_timeout: &str) -> Arc<Service> {
    let text = format!(
        r#"
        [services.app]
        routes = [{{ path_prefix = "/" }}]
        [services.app.load_balancer]
        healthy_threshold = 2
        [services.app.orchestrator]
        kind = "process"
        command = '{command}'
        port_range = "0-0"
        start_timeout = "{start_timeout}"
        stop_grace = "2s"
        "#
    );
    let config = Config::parse(&text, Path::new(".")).expect("test config is valid");
    Arc::new(Service::new(config.services[0].clone()))
}

fn orchestrator(service: &Arc<Service>) -> (Arc<ProcessOrchestrator>, Arc<MemoryEvents>) {
    let events = Arc::new(MemoryEvents::default());
    let orch =
        ProcessOrchestrator::new(Arc::clone(service), process_config(service), events.clone());
    (orch, events)
}

fn process_config(service: &Service) -> tidegate::config::ProcessConfig {
    match &service.config.orchestrator {
        tidegate::config::OrchestratorConfig::Process(p) => p.clone(),
        other => panic!("expected a process orchestrator, got {other:?}"),
    }
}

#[tokio::test]
async fn started_instance_joins_the_table_only_once_healthy_and_serves() {
    let service = service(&demo(""), "20s");
    let (orch, _) = orchestrator(&service);

    let instance = orch.start().await.expect("the demo backend starts");

    assert_eq!(
        service.table.load().len(),
        1,
        "a healthy instance is in the table"
    );
    let (status, _, body) = support::get(instance.addr(), "/work").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(&instance.addr().port().to_string()),
        "answered by the new instance: {body}"
    );
    orch.shutdown().await;
    assert!(
        orch.live_pids().is_empty(),
        "shutdown leaves no process behind"
    );
}

#[tokio::test]
async fn instance_never_healthy_is_killed_and_the_start_fails() {
    let service = service("sleep 30", "1s");
    let (orch, _) = orchestrator(&service);

    let error = orch
        .start()
        .await
        .expect_err("a process that never answers fails to start");

    assert!(
        error.to_string().contains("did not pass"),
        "the error says why: {error}"
    );
    assert!(
        service.table.load().is_empty(),
        "an unhealthy instance never joins the table"
    );
    assert!(
        orch.live_pids().is_empty(),
        "the failed instance's processes are killed"
    );
}

#[tokio::test]
async fn instance_that_exits_on_its_own_is_replaced_and_recorded() {
    let service = service(&demo(""), "20s");
    let (orch, events) = orchestrator(&service);
    let first = orch.start().await.expect("the demo backend starts");
    let group = orch
        .process_group(first.id())
        .expect("the orchestrator runs it");

    killpg(Pid::from_raw(group as i32), Signal::SIGKILL).expect("the group exists");

    let replaced = support::eventually(Duration::from_secs(20), || {
        let table = service.table.load();
        table.len() == 1 && table.instances()[0].id() != first.id()
    })
    .await;
    assert!(replaced, "a crashed instance is replaced by a new one");
    let recorded = support::eventually(Duration::from_secs(5), || !events.all().is_empty()).await;
    assert!(recorded, "the replacement is recorded as an event");
    let event = &events.all()[0];
    assert_eq!(event.event_type, EventType::ScaleUp);
    assert!(event.success);
    orch.shutdown().await;
}

#[tokio::test]
async fn scale_down_waits_for_requests_in_flight_before_stopping() {
    let service = service(&demo("--latency-ms 400"), "20s");
    let (orch, _) = orchestrator(&service);
    let instance = orch.start().await.expect("the demo backend starts");

    let guard = instance.dispatch();
    let addr = instance.addr();
    let request = tokio::spawn(async move {
        let answer = support::get(addr, "/slow").await;
        drop(guard);
        answer
    });
    support::eventually(Duration::from_secs(5), || instance.in_flight() == 1).await;
    let errors = orchestrate::scale_down(&service, orch.as_ref(), 1, Duration::from_secs(10)).await;

    assert!(errors.is_empty(), "the stop succeeds: {errors:?}");
    let (status, _, _) = request.await.expect("the request task finishes");
    assert_eq!(
        status, 200,
        "the request in flight completes before the instance stops"
    );
    assert!(
        service.table.load().is_empty(),
        "the instance left the table"
    );
    assert!(
        orch.live_pids().is_empty(),
        "the instance was stopped after draining"
    );
}

#[tokio::test]
async fn no_process_outlives_the_orchestrator() {
    let service = service(&format!("sleep 300 & exec {}", demo("")), "20s");
    let (orch, _) = orchestrator(&service);
    orch.start().await.expect("the demo backend starts");
    orch.start().await.expect("a second one starts");
    let pids = orch.live_pids();
    assert!(
        pids.len() >= 4,
        "each instance runs a server and a forked sleep: {pids:?}"
    );

    drop(orch);

    let gone = support::eventually(Duration::from_secs(5), || {
        pids.iter().all(|pid| !alive(*pid))
    })
    .await;
    assert!(
        gone,
        "dropping the orchestrator kills every process it started, forks included"
    );
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}
