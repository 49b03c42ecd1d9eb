//! Passive ejection of an instance answering bursts of 500s, also while
//! retries hide them from the clients, and its return once its probes pass
//! again.

// A failed setup step should fail the test loudly; that is what unwrap does here.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::faults;
use tidegate::balance::Instance;

#[tokio::test]
async fn burst_of_500s_ejects_the_instance_and_probes_restore_it() {
    let (bad, switch) = faults::switchable(true).await;
    let good = [
        support::named_origin().await,
        support::named_origin().await,
        support::named_origin().await,
    ];
    let extra = r#"
        [services.app.load_balancer]
        max_retries = 0
        circuit_breaker_enabled = false
        health_check_interval_seconds = 1
        health_check_timeout_seconds = 1
        unhealthy_threshold = 1000
        healthy_threshold = 2
        [services.app.resilience]
        consecutive_failures = 3
        base_ejection = "10m"
    "#;
    let addrs = [bad.addr, good[0].addr, good[1].addr, good[2].addr];
    let tidegate = support::start(faults::config_for_addrs(&addrs, extra)).await;
    let proxy = tidegate.proxy_addr();
    let instance: Arc<Instance> =
        tidegate.registry.services()[0].table.load().instances()[0].clone();

    let mut failed = 0;
    for _ in 0..40 {
        let (status, _, _) = support::get(proxy, "/").await;
        if status != StatusCode::OK {
            failed += 1;
        }
        if instance.state.health.is_ejected() {
            break;
        }
    }
    assert!(
        instance.state.health.is_ejected(),
        "3 consecutive 500s eject the instance"
    );
    assert_eq!(
        failed, 3,
        "exactly the consecutive failures reached the client"
    );
    assert!(
        stats_says(tidegate.admin_addr, "\"ejected\": true").await,
        "/stats shows the ejection"
    );

    let hits_at_ejection = bad.hits();
    for _ in 0..12 {
        let (status, _, _) = support::get(proxy, "/").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "an ejected instance gets no requests"
        );
    }
    assert_eq!(
        bad.hits(),
        hits_at_ejection,
        "no request reaches the ejected instance (its probes are not counted)"
    );

    switch.set_bad(false);
    assert!(
        faults::eventually(Duration::from_secs(10), || !instance
            .state
            .health
            .ejection_pending())
        .await,
        "two passing probes restore the instance long before its 10 min ejection ends"
    );
    let before = bad.hits();
    for _ in 0..8 {
        let (status, _, _) = support::get(proxy, "/").await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(
        bad.hits() > before,
        "the restored instance serves requests again"
    );
}

#[tokio::test]
async fn never_ejects_more_than_the_allowed_share_of_the_pool() {
    let (a, _sa) = faults::switchable(true).await;
    let (b, _sb) = faults::switchable(true).await;
    let extra = r#"
        [services.app.load_balancer]
        max_retries = 0
        circuit_breaker_enabled = false
        health_check_interval_seconds = 3600
        [services.app.resilience]
        consecutive_failures = 2
        max_ejection_percent = 50
    "#;
    let tidegate = support::start(faults::config_for_addrs(&[a.addr, b.addr], extra)).await;
    for _ in 0..12 {
        support::get(tidegate.proxy_addr(), "/").await;
    }
    let table = tidegate.registry.services()[0].table.load();
    let ejected = table
        .instances()
        .iter()
        .filter(|i| i.state.health.is_ejected())
        .count();
    assert_eq!(
        ejected, 1,
        "50% of a pool of 2 is one instance, however bad both are"
    );
}

async fn stats_says(admin: std::net::SocketAddr, needle: &str) -> bool {
    let (_, _, body) = support::get(admin, "/stats").await;
    body.contains(needle)
}

#[tokio::test]
async fn retried_500s_still_count_toward_ejection() {
    let (bad, _switch) = faults::switchable(true).await;
    let good = support::named_origin().await;
    let extra = r#"
        [services.app.load_balancer]
        max_retries = 1
        circuit_breaker_enabled = false
        health_check_interval_seconds = 1
        health_check_timeout_seconds = 1
        unhealthy_threshold = 1000
        [services.app.resilience]
        consecutive_failures = 3
        base_ejection = "10m"
        retry_budget_percent = 100
    "#;
    let tidegate = support::start(faults::config_for_addrs(&[bad.addr, good.addr], extra)).await;
    let proxy = tidegate.proxy_addr();
    let instance: Arc<Instance> =
        tidegate.registry.services()[0].table.load().instances()[0].clone();

    for _ in 0..40 {
        let (status, _, _) = support::get(proxy, "/").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "each 500 is retried on the good instance"
        );
        if instance.state.health.is_ejected() {
            break;
        }
    }
    assert!(
        instance.state.health.is_ejected(),
        "the 500s the clients never saw still eject the instance"
    );
}
