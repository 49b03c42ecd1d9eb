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
        [services.app.scaling]
        min_instances = 1
        max_instances = 2
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
    // A fork and the shell itself: both must go, not only the group leader.
    let service = service("sleep 4101 & exec sleep 4102", "1s");
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
    let gone = support::eventually(Duration::from_secs(5), || {
        running_with_args(&["sleep", "4101"]).is_empty()
            && running_with_args(&["sleep", "4102"]).is_empty()
    })
    .await;
    assert!(
        gone,
        "the failed instance's processes, forks included, are killed"
    );
}

#[tokio::test]
async fn a_scale_up_that_never_gets_healthy_is_recorded_as_scale_failed() {
    let marks = tempfile::tempdir().expect("a temporary folder");
    // The first instance is the demo backend; every later one never answers.
    let command = format!(
        "if mkdir {}/first 2>/dev/null; then exec {}; else sleep 4201 & exec sleep 4202; fi",
        marks.path().display(),
        demo("")
    );
    let service = service(&command, "3s");
    let (orch, _) = orchestrator(&service);
    let first = orch.start().await.expect("the first instance starts");

    let events = support::evaluate_under_load(&service, orch.clone(), 200.0).await;

    assert_eq!(events.len(), 1, "one evaluation, one event: {events:?}");
    let event = &events[0];
    assert_eq!(event.event_type, EventType::ScaleFailed);
    assert!(!event.success);
    assert!(
        event
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("did not pass")),
        "the event says why: {event:?}"
    );
    assert_eq!((event.instances_before, event.instances_after), (1, 1));
    let table = service.table.load();
    assert!(
        table.len() == 1 && table.instances()[0].id() == first.id(),
        "only the healthy first instance serves"
    );
    let gone = support::eventually(Duration::from_secs(5), || {
        running_with_args(&["sleep", "4201"]).is_empty()
            && running_with_args(&["sleep", "4202"]).is_empty()
    })
    .await;
    assert!(gone, "the unhealthy instance was killed, forks included");
    orch.shutdown().await;
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

/// Live (not zombie) processes whose command line is exactly `args`.
fn running_with_args(args: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted) && alive(*pid)
        })
        .collect()
}

/// Every process below `root` in the parent-child tree, `root` excluded.
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Waits a little for every process of `tree` to be gone; fails with `what`
/// and the ones still running otherwise.
async fn until_all_gone(tree: &[u32], what: &str) {
    let gone = support::eventually(Duration::from_secs(5), || {
        tree.iter().all(|pid| !alive(*pid))
    })
    .await;
    let left: Vec<u32> = tree.iter().copied().filter(|p| alive(*p)).collect();
    assert!(gone, "{what}: {left:?} still run");
}

/// `tidegate serve` with one process-orchestrated service of `instances`
/// instances running `command` (`{demo}` is the demo backend), proxying on
/// `proxy`; returns once it is ready and every instance's `sleep <marker>`
/// runs under it, with the binary and the processes it started.
async fn serve_instances(
    proxy: &str,
    command: &str,
    instances: usize,
    stop_grace: &str,
    marker: &str,
) -> (tokio::process::Child, tempfile::TempDir, Vec<u32>) {
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let command = command.replace("{demo}", &demo(""));
    let config = format!(
        r#"
        [proxy]
        listen = ["{proxy}"]
        [admin]
        listen = "{admin}"
        [scaler]
        enabled = false
        [services.app]
        routes = [{{ path_prefix = "/" }}]
        [services.app.scaling]
        min_instances = {instances}
        max_instances = {instances}
        [services.app.orchestrator]
        kind = "process"
        command = '{command}'
        port_range = "0-0"
        start_timeout = "20s"
        stop_grace = "{stop_grace}"
        "#
    );
    let (tidegate, dir) = support::serve_binary(&config);
    let pid = tidegate.id().expect("tidegate is running");
    assert!(
        support::until_ready(admin, Duration::from_secs(30)).await,
        "tidegate serve becomes ready"
    );
    let started = support::eventually(Duration::from_secs(20), || {
        running_with_args(&["sleep", marker])
            .iter()
            .filter(|p| descendants(pid).contains(p))
            .count()
            == instances
    })
    .await;
    assert!(started, "every instance runs under tidegate");
    (tidegate, dir, descendants(pid))
}

#[tokio::test]
async fn no_instance_process_outlives_the_tidegate_binary() {
    let (mut tidegate, _dir, tree) =
        serve_instances("127.0.0.1:0", "sleep 4301 & exec {demo}", 2, "2s", "4301").await;
    let pid = tidegate.id().expect("tidegate is running");
    // Two instances, each a demo backend and the sleep it forked.
    assert!(
        tree.len() >= 4,
        "shells exec'd into servers, plus forks: {tree:?}"
    );

    nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGTERM)
        .expect("tidegate is signalled");
    let status = tokio::time::timeout(Duration::from_secs(30), tidegate.wait())
        .await
        .expect("tidegate exits after SIGTERM")
        .expect("its status is read");
    assert!(status.success(), "an orderly exit: {status}");

    until_all_gone(
        &tree,
        "every process tidegate started is gone, forks included",
    )
    .await;
}

#[tokio::test]
async fn a_second_shutdown_signal_kills_the_instances_it_does_not_wait_for() {
    let proxy = std::net::SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    // Instances that ignore SIGTERM, with a minute before SIGKILL: the first
    // signal's orderly stop is still waiting on them when the second comes.
    let (mut tidegate, _dir, tree) = serve_instances(
        &proxy.to_string(),
        r#"trap "" TERM; sleep 4302 & exec {demo}"#,
        1,
        "60s",
        "4302",
    )
    .await;
    let pid = tidegate.id().expect("tidegate is running");

    let signal = || {
        nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGTERM)
            .expect("tidegate is signalled")
    };
    signal();
    // The first signal has been taken once the proxy stops accepting;
    // signals sent before that would count as one.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::net::TcpStream::connect(proxy).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy stops accepting after the first signal"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal();
    let status = tokio::time::timeout(Duration::from_secs(30), tidegate.wait())
        .await
        .expect("tidegate exits at the second signal")
        .expect("its status is read");
    assert_eq!(
        status.code(),
        Some(1),
        "an exit without the drain: {status}"
    );

    until_all_gone(
        &tree,
        "the instances die with tidegate even though they ignore SIGTERM",
    )
    .await;
}
