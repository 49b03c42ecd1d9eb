//! The `/stats` document: per service and instance, load, outcomes and latency.

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::balance::{BalancerSnapshot, ErrorClass, Instance};
use crate::clock;
use crate::registry::{Registry, Service};

/// Stats of every service.
#[derive(Debug, Serialize)]
pub(super) struct Stats {
    services: Vec<ServiceStats>,
}

#[derive(Debug, Serialize)]
struct ServiceStats {
    name: String,
    algorithm: &'static str,
    balancer: BalancerSnapshot,
    instances: Vec<InstanceStats>,
}

#[derive(Debug, Serialize)]
struct InstanceStats {
    id: String,
    address: String,
    weight: u32,
    effective_weight: f64,
    slow_start_progress: f64,
    healthy: bool,
    draining: bool,
    ejected: bool,
    breaker: &'static str,
    in_flight: u32,
    queued: u32,
    requests: u64,
    errors: ErrorStats,
    latency_ms: LatencyStats,
}

#[derive(Debug, Serialize)]
struct ErrorStats {
    #[serde(rename = "5xx")]
    status_5xx: u64,
    connect: u64,
    timeout: u64,
    reset: u64,
}

#[derive(Debug, Serialize)]
struct LatencyStats {
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

/// Reads every service's current table and counters.
pub(super) fn snapshot(registry: &Registry) -> Stats {
    Stats {
        services: registry.services().iter().map(|s| service(s)).collect(),
    }
}

fn service(s: &Service) -> ServiceStats {
    let table = s.table.load();
    ServiceStats {
        name: s.name.to_string(),
        algorithm: s.balancer.algorithm().as_str(),
        balancer: s.balancer.snapshot(&table),
        instances: table.instances().iter().map(|i| instance(i)).collect(),
    }
}

fn instance(i: &Instance) -> InstanceStats {
    let st = &i.state;
    let errors = |class: ErrorClass| st.errors[class as usize].load(Ordering::Relaxed);
    let latency = st.latency.snapshot();
    let ms = |q: f64| latency.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
    let now = clock::now_ns();
    let share = i.weight_share_per_mille(now);
    InstanceStats {
        id: i.id().to_string(),
        address: i.addr().to_string(),
        weight: i.weight(),
        effective_weight: f64::from(i.weight()) * share as f64 / 1000.0,
        slow_start_progress: i.slow_start_progress(now),
        healthy: st.healthy.load(Ordering::Relaxed),
        draining: st.draining.load(Ordering::Relaxed),
        ejected: st.health.is_ejected(),
        breaker: st.health.breaker.state().as_str(),
        in_flight: i.in_flight(),
        queued: st.queued.load(Ordering::Relaxed),
        requests: st.requests.load(Ordering::Relaxed),
        errors: ErrorStats {
            status_5xx: errors(ErrorClass::Status5xx),
            connect: errors(ErrorClass::Connect),
            timeout: errors(ErrorClass::Timeout),
            reset: errors(ErrorClass::Reset),
        },
        latency_ms: LatencyStats {
            p50: ms(0.50),
            p95: ms(0.95),
            p99: ms(0.99),
        },
    }
}
