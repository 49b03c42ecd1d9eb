//! A cheap monotonic clock for atomics: nanoseconds since the process started.
//!
//! Instance state keeps times (last sample, ejection deadline) in `AtomicU64`,
//! which needs a plain number rather than an `Instant`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the first call in this process; never 0 after the first call.
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64 + 1
}

/// The `now_ns` value of an `Instant`.
pub fn instant_ns(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_nanos() as u64 + 1
}

/// Converts a duration to nanoseconds, saturating.
pub fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
