//! Passive outlier ejection: instances that keep failing real requests are
//! taken out of rotation for a while.
//!
//! After `resilience.consecutive_failures` failures in a row (5xx, connect
//! errors, resets, timeouts: the in-flight guard counts them) an instance is
//! ejected for `base_ejection` times the number of its recent ejections, capped
//! at [`MAX_EJECTION_FACTOR`]; that number decays by one for every
//! [`DECAY_FACTOR`] base times without an ejection. At most
//! `max_ejection_percent` of a pool is ejected at once, so a bad deploy cannot
//! empty a service. An ejection ends when its time passes (the prober's sweep
//! reports it) or earlier when the instance passes `healthy_threshold` probes in
//! a row.

use std::sync::atomic::Ordering;

use tracing::debug;

use super::report;
use crate::balance::{Instance, InstanceTable};
use crate::clock;
use crate::config::ResilienceConfig;

/// The ejection time never exceeds this many base ejection times.
pub const MAX_EJECTION_FACTOR: u64 = 10;

/// One step of the ejection count is forgotten per this many base times without ejection.
pub const DECAY_FACTOR: u64 = 10;

/// Ejects `instance` if its consecutive failures reached the threshold and the pool allows it.
pub fn consider(table: &InstanceTable, instance: &Instance, cfg: &ResilienceConfig, now_ns: u64) {
    let st = &instance.state;
    if st.consecutive_failures.load(Ordering::Acquire) < cfg.consecutive_failures {
        return;
    }
    let h = &st.health;
    if h.ejected.load(Ordering::Acquire) {
        if now_ns < h.ejected_until_ns.load(Ordering::Acquire) {
            return;
        }
        restore(instance, "ejection_expired");
    }

    let ejected = table
        .instances()
        .iter()
        .filter(|i| i.state.health.is_ejected())
        .count();
    let allowed = table.len() * cfg.max_ejection_percent as usize / 100;
    if ejected + 1 > allowed {
        debug!(service = %instance.service(), instance = %instance.id(), ejected, allowed, "ejection skipped: pool share reached");
        return;
    }
    if h.ejected
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }

    let base = clock::duration_ns(cfg.base_ejection);
    let last_until = h.ejected_until_ns.load(Ordering::Acquire);
    let decayed = now_ns.saturating_sub(last_until) / base.saturating_mul(DECAY_FACTOR).max(1);
    let previous = u64::from(h.ejections.load(Ordering::Acquire)).saturating_sub(decayed);
    let factor = (previous + 1).min(MAX_EJECTION_FACTOR);
    let duration = base.saturating_mul(factor);
    h.ejected_until_ns
        .store(now_ns.saturating_add(duration), Ordering::Release);
    h.ejections.store(factor as u32, Ordering::Release);
    h.probe_passes.store(0, Ordering::Release);
    st.consecutive_failures.store(0, Ordering::Release);
    report::ejection(
        instance,
        "ejected",
        "consecutive_failures",
        duration / 1_000_000,
    );
}

/// Ends an ejection; reports it if this call ended it.
pub fn restore(instance: &Instance, reason: &str) -> bool {
    let h = &instance.state.health;
    if h.ejected
        .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    instance
        .state
        .consecutive_failures
        .store(0, Ordering::Release);
    report::ejection(instance, "restored", reason, 0);
    true
}

/// Reports ejections whose time has passed; run by the prober each round.
pub fn sweep(table: &InstanceTable) {
    for instance in table.instances() {
        let h = &instance.state.health;
        if h.ejection_pending() && !h.is_ejected() {
            restore(instance, "ejection_expired");
        }
    }
}

/// Feeds one probe result; `healthy_threshold` passes in a row end an ejection early.
pub fn probed(instance: &Instance, passed: bool, healthy_threshold: u32) {
    let h = &instance.state.health;
    if !passed {
        h.probe_passes.store(0, Ordering::Release);
        return;
    }
    let passes = h.probe_passes.fetch_add(1, Ordering::AcqRel) + 1;
    if passes >= healthy_threshold && h.ejection_pending() {
        restore(instance, "probes_passed");
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn pool(n: u16) -> InstanceTable {
        InstanceTable::new(
            (1..=n)
                .map(|p| {
                    Instance::from_addr("pool".into(), SocketAddr::from(([127, 0, 0, 1], p)), 1)
                })
                .collect(),
        )
    }

    fn fail(instance: &Arc<Instance>, times: u32) {
        for _ in 0..times {
            let mut guard = instance.dispatch();
            guard.set_outcome(crate::balance::Outcome::Reset);
        }
    }

    fn ejection_length(instance: &Instance, at: u64) -> Duration {
        Duration::from_nanos(instance.state.health.ejection_ends_ns() - at)
    }

    #[test]
    fn ejects_instance_after_five_consecutive_errors() {
        let table = pool(4);
        let cfg = crate::health::tests::resilience();
        let bad = &table.instances()[0];
        fail(bad, 4);
        consider(&table, bad, &cfg, clock::now_ns());
        assert!(
            !bad.state.health.is_ejected(),
            "four failures are not enough"
        );
        fail(bad, 1);
        consider(&table, bad, &cfg, clock::now_ns());
        assert!(bad.state.health.is_ejected());
        assert!(!bad.is_eligible(), "an ejected instance is not picked");
    }

    #[test]
    fn repeated_ejections_last_longer_up_to_the_cap() {
        let table = pool(2);
        let cfg = crate::health::tests::resilience();
        let bad = &table.instances()[0];
        let mut lengths = Vec::new();
        for at in (clock::now_ns()..).take(12) {
            fail(bad, 5);
            consider(&table, bad, &cfg, at);
            lengths.push(ejection_length(bad, at));
            assert!(restore(bad, "test"));
        }
        assert_eq!(lengths[0], cfg.base_ejection);
        assert_eq!(
            lengths[1],
            cfg.base_ejection * 2,
            "the second ejection lasts twice as long"
        );
        assert_eq!(
            lengths[11],
            cfg.base_ejection * MAX_EJECTION_FACTOR as u32,
            "the growth is capped"
        );
    }

    #[test]
    fn probes_passing_end_an_ejection_early() {
        let table = pool(2);
        let cfg = crate::health::tests::resilience();
        let bad = &table.instances()[0];
        fail(bad, 5);
        consider(&table, bad, &cfg, clock::now_ns());
        probed(bad, true, 2);
        assert!(bad.state.health.is_ejected(), "one pass is not enough");
        probed(bad, true, 2);
        assert!(
            !bad.state.health.is_ejected(),
            "healthy_threshold passes restore it"
        );
    }
}
