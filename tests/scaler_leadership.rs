//! Several tidegate nodes on one PostgreSQL: only the holder of the advisory
//! lock decides, and another node takes over when the holder goes away.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use tidegate::app::Running;
use tidegate::scale::event::EventType;
use tidegate::scale::leader::PgLeader;

#[tokio::test]
async fn only_one_node_holds_the_lock_and_another_takes_over_when_it_leaves() {
    let Some(server) = support::pg::server() else {
        return;
    };
    let url = server.fresh_database().await;
    let mut first = PgLeader::new(&url);
    let mut second = PgLeader::new(&url);

    assert!(first.holds().await, "the first node to ask takes the lock");
    assert!(
        !second.holds().await,
        "a second node does not decide while the first holds the lock"
    );
    assert!(first.holds().await, "the holder keeps the lock");

    // A holder that dies: its connection is dropped without a goodbye, as when
    // the process is killed, and PostgreSQL ends the session and its lock.
    drop(first);
    let mut observer = sqlx::PgConnection::connect(&url)
        .await
        .expect("an observer connects");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&mut observer)
        .await
        .expect("pg_locks is readable");
        if held == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "PostgreSQL releases a dead holder's lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        second.holds().await,
        "the first evaluation after the holder's session ended takes the lock, so a \
         successor decides within two intervals of the death"
    );
}

fn node_config(url: &str) -> tidegate::config::Config {
    support::autoscaled_app(
        &format!("database_url = \"{url}\""),
        "target_response_time_ms = 20.0\n scale_down_threshold = 1.0",
    )
}

fn scale_ups(node: &Running) -> usize {
    node.control
        .events
        .all()
        .iter()
        .filter(|e| e.event_type == EventType::ScaleUp)
        .count()
}

fn instances(node: &Running) -> usize {
    node.registry
        .service("app")
        .expect("the service exists")
        .table
        .load()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_node_on_the_same_postgres_does_not_double_scale() {
    let Some(server) = support::pg::server() else {
        return;
    };
    let url = server.fresh_database().await;
    let a = support::start(node_config(&url)).await;
    let b = support::start(node_config(&url)).await;
    let stop = Arc::new(AtomicBool::new(false));
    support::load(a.proxy_addr(), 4, Duration::ZERO, stop.clone());
    support::load(b.proxy_addr(), 4, Duration::ZERO, stop.clone());

    let one_scaled = support::eventually(Duration::from_secs(60), || {
        instances(&a) == 2 || instances(&b) == 2
    })
    .await;
    assert!(
        one_scaled,
        "the leader scales the loaded service up; last samples {:?} / {:?}",
        a.control.samples.of(&"app".into()).last(),
        b.control.samples.of(&"app".into()).last()
    );
    let (leader, follower) = if instances(&a) == 2 { (a, b) } else { (b, a) };
    let recorded_before = follower.control.samples.of(&"app".into()).len();
    let observed = support::eventually(Duration::from_secs(30), || {
        follower.control.samples.of(&"app".into()).len() >= recorded_before + 20
    })
    .await;
    assert!(
        observed,
        "the follower keeps recording while it does not decide"
    );
    assert_eq!(
        instances(&follower),
        1,
        "the follower, under the same load, does not scale"
    );
    assert_eq!(
        scale_ups(&follower),
        0,
        "the follower records no scaling action"
    );
    assert_eq!(scale_ups(&leader), 1, "the leader scaled once");

    leader.shutdown().await;
    let took_over =
        support::eventually(Duration::from_secs(60), || instances(&follower) == 2).await;
    stop.store(true, Ordering::Relaxed);
    assert!(
        took_over,
        "when the leader leaves, the other node takes over and scales"
    );
    follower.shutdown().await;
}
