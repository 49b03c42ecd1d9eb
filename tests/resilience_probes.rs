//! Active probes: they turn instances unhealthy and healthy again, each
//! transition counted once, they find instances added later, and they admit a
//! new instance only after it passed them.

// A failed setup step should fail the test loudly; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::faults;
use tidegate::balance::Instance;
use tidegate::health;

const FAST_PROBES: &str = r#"
    [services.app.load_balancer]
    health_check_interval_seconds = 1
    health_check_timeout_seconds = 1
    unhealthy_threshold = 2
    healthy_threshold = 2
"#;

#[tokio::test]
async fn failing_probes_mark_an_instance_unhealthy_and_passing_ones_restore_it() {
    let (origin, switch) = faults::switchable(true).await;
    let tidegate = support::start(support::config_for(&[&origin], FAST_PROBES)).await;
    let instance = tidegate.registry.services()[0].table.load().instances()[0].clone();
    let healthy = || instance.state.healthy.load(Ordering::SeqCst);

    assert!(
        faults::eventually(Duration::from_secs(10), || !healthy()).await,
        "two failed probes mark the instance unhealthy"
    );
    assert!(
        !instance.is_eligible(),
        "an unhealthy instance is not picked"
    );
    switch.set_bad(false);
    assert!(
        faults::eventually(Duration::from_secs(10), healthy).await,
        "two passed probes mark it healthy again"
    );

    let (_, _, metrics) = support::get(tidegate.admin_addr, "/metrics").await;
    for to in ["unhealthy", "healthy"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("tidegate_health_transitions_total")
                    && l.contains(&origin.addr.to_string())
                    && l.contains(&format!("to=\"{to}\""))
            })
            .unwrap_or_else(|| panic!("a {to} transition is counted:\n{metrics}"));
        assert!(
            line.ends_with(" 1"),
            "each transition is counted exactly once: {line}"
        );
    }
}

#[tokio::test]
async fn instance_added_after_start_is_probed() {
    let first = support::named_origin().await;
    let (late, _switch) = faults::switchable(true).await;
    let tidegate = support::start(support::config_for(&[&first], FAST_PROBES)).await;
    let service = &tidegate.registry.services()[0];
    let added = Instance::from_addr(service.name.clone(), late.addr, 1);
    service.table.add(added.clone());

    assert!(
        faults::eventually(Duration::from_secs(10), || !added
            .state
            .healthy
            .load(Ordering::SeqCst))
        .await,
        "each round reads the current table, so a later instance is probed too"
    );
}

#[tokio::test]
async fn a_new_instance_joins_only_after_passing_its_probes() {
    let good = support::named_origin().await;
    let config = support::config_for(&[&good], FAST_PROBES);
    let cfg = &config.services[0].balancer;

    let instance = Instance::from_addr("app".into(), good.addr, 1);
    health::wait_until_healthy(&instance, cfg, Duration::from_secs(10))
        .await
        .expect("a healthy origin passes its probes");
    assert!(instance.state.healthy.load(Ordering::SeqCst));
    assert!(good.probes() >= 2, "healthy_threshold probes were sent");

    let refused = faults::refusing_addr().await;
    let dead = Instance::from_addr("app".into(), refused, 1);
    let error = health::wait_until_healthy(&dead, cfg, Duration::from_millis(1500))
        .await
        .expect_err("a refusing instance never passes");
    assert!(
        !dead.state.healthy.load(Ordering::SeqCst),
        "it stays out of rotation"
    );
    assert!(
        error.to_string().contains("connect failed"),
        "the error says why: {error}"
    );
}

#[tokio::test]
async fn instance_added_unhealthy_takes_traffic_only_after_its_probes_pass() {
    let first = support::named_origin().await;
    let late = support::named_origin().await;
    let tidegate = support::start(support::config_for(&[&first], FAST_PROBES)).await;
    let service = &tidegate.registry.services()[0];
    let added = Instance::from_addr(service.name.clone(), late.addr, 1);
    added.state.healthy.store(false, Ordering::SeqCst);
    service.table.add(added.clone());

    let (_, _, body) = support::get(tidegate.proxy_addr(), "/").await;
    assert_eq!(
        body,
        format!("origin {}", first.addr.port()),
        "not yet probed, not picked"
    );
    assert!(
        faults::eventually(Duration::from_secs(10), || added.is_eligible()).await,
        "healthy_threshold passed probes let the new instance in"
    );
}
