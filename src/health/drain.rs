//! Draining: an instance stops getting new requests and keeps its in-flight
//! ones until they finish or the drain timeout passes.
//!
//! The balancer skips a draining instance at once (its `draining` flag); the
//! wait for in-flight requests is woken by the in-flight guard of the last
//! request, not by polling.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::report;
use crate::balance::Instance;

/// Drains `instance`: no new requests, then waits up to `timeout` for the
/// in-flight ones. Returns whether every request finished in time.
///
/// The instance stays draining either way; [`undrain`] puts it back.
pub async fn drain(instance: &Instance, timeout: Duration) -> bool {
    begin(instance);
    let clean = tokio::time::timeout(timeout, until_idle(instance))
        .await
        .is_ok();
    let to = if clean { "drained" } else { "drain_timeout" };
    report::drain(instance, to, instance.in_flight());
    clean
}

/// Marks `instance` draining at once, without waiting; returns whether it was not already.
pub fn begin(instance: &Instance) -> bool {
    let started = !instance.state.draining.swap(true, Ordering::SeqCst);
    if started {
        report::drain(instance, "draining", instance.in_flight());
    }
    started
}

/// Puts a draining instance back in rotation; returns whether it was draining.
pub fn undrain(instance: &Instance) -> bool {
    let was = instance.state.draining.swap(false, Ordering::AcqRel);
    if was {
        report::drain(instance, "undrained", instance.in_flight());
    }
    was
}

async fn until_idle(instance: &Instance) {
    loop {
        let notified = instance.state.health.idle.notified();
        tokio::pin!(notified);
        // Registered before the check, so a wake-up between the check and the await is kept.
        notified.as_mut().enable();
        // SeqCst pairs with the guard's decrement and flag load, so a last request
        // finishing now either is seen here or sees the flag and wakes us.
        if instance.state.in_flight.load(Ordering::SeqCst) == 0 {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn instance() -> std::sync::Arc<Instance> {
        Instance::from_addr("drain".into(), SocketAddr::from(([127, 0, 0, 1], 7)), 1)
    }

    #[tokio::test(start_paused = true)]
    async fn drain_completes_when_the_last_request_finishes() {
        let i = instance();
        let guard = i.dispatch();
        let waiter = {
            let i = std::sync::Arc::clone(&i);
            tokio::spawn(async move { drain(&i, Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        assert!(
            !i.is_eligible(),
            "a draining instance takes no new requests"
        );
        drop(guard);
        assert!(
            waiter.await.expect("drain task"),
            "drain is clean once in-flight reaches zero"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_its_timeout() {
        let i = instance();
        let _guard = i.dispatch();
        assert!(
            !drain(&i, Duration::from_secs(5)).await,
            "a request still in flight at the timeout makes the drain unclean"
        );
        assert!(undrain(&i), "undrain reports that it was draining");
        assert!(i.is_eligible());
    }
}
