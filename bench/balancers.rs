//! Nanoseconds per pick for every algorithm, by pool size, on one thread and
//! with a second thread picking from the same balancer at the same time.
//!
//! Each pick is what the proxy does: load the published table, pick, clone the
//! instance's `Arc`. `weighted_locked` is nginx's smooth weighted round robin
//! under a mutex, measured beside the lock-free precomputed cycle that
//! `weighted` uses; `least_connections_exact` forces the exact scan at every
//! size. Run `bench/balancers.sh` to turn the results into `bench/RESULTS.md`.

// criterion's macros generate undocumented functions; a benchmark binary has no API to document.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tidegate::balance::weighted::LockedSwrr;
use tidegate::balance::{Balancer, Instance, InstanceTable, RequestKey, TableHandle};
use tidegate::clock;
use tidegate::config::{Algorithm, Config};

const SIZES: [usize; 4] = [2, 16, 128, 1024];

/// The benchmarked variants: a name and the balancer config behind it.
fn variants() -> Vec<(&'static str, Algorithm, usize)> {
    vec![
        ("round_robin", Algorithm::RoundRobin, 16),
        ("weighted", Algorithm::Weighted, 16),
        ("weighted_locked", Algorithm::Weighted, 16),
        ("least_connections", Algorithm::LeastConnections, 16),
        (
            "least_connections_exact",
            Algorithm::LeastConnections,
            usize::MAX,
        ),
        ("ip_hash", Algorithm::IpHash, 16),
        ("random", Algorithm::Random, 16),
        ("peak_ewma", Algorithm::PeakEwma, 16),
        ("adaptive", Algorithm::Adaptive, 16),
    ]
}

fn balancer(algorithm: Algorithm, two_choice_above: usize) -> Balancer {
    let text = "[services.bench]\nroutes = [{ path_prefix = \"/\" }]\ninstances = [{ address = \"127.0.0.1:1\" }]\n";
    let config =
        Config::parse(text, std::path::Path::new(".")).expect("a one-service config parses");
    let mut lb = config.services[0].balancer.clone();
    lb.algorithm = algorithm;
    lb.two_choice_above = two_choice_above;
    Balancer::new(&lb)
}

/// A table of `n` instances with weights 1..=4 and latency estimates 1..=8 ms.
fn table(n: usize, balancer: &Balancer) -> TableHandle {
    let now = clock::now_ns();
    let instances = (0..n)
        .map(|i| {
            let addr = SocketAddr::from(([10, (i >> 8) as u8, i as u8, 1], 8080));
            let instance = Instance::from_addr("bench".into(), addr, 1 + (i % 4) as u32);
            let ewma = ((1 + i % 8) as f64) * 1e6;
            instance
                .state
                .ewma_ns
                .store(ewma.to_bits(), Ordering::Relaxed);
            instance.state.last_sample_ns.store(now, Ordering::Relaxed);
            instance
        })
        .collect();
    TableHandle::new(InstanceTable::new(instances)).prepared_for(balancer.needs())
}

/// One pick as the proxy makes it; `seq` varies the client address.
fn pick(name: &str, balancer: &Balancer, locked: &LockedSwrr, handle: &TableHandle, seq: u32) {
    let table = handle.load();
    if name == "weighted_locked" {
        let i = locked.pick(table.instances()).expect("all eligible");
        black_box(Arc::clone(&table.instances()[i]));
        return;
    }
    let key = RequestKey {
        client_ip: IpAddr::V4(Ipv4Addr::from(seq.wrapping_mul(2_654_435_761))),
    };
    black_box(balancer.pick(&table, &key));
}

/// Times `iters` picks on this thread while `contenders` other threads pick too.
fn timed(
    name: &str,
    balancer: &Balancer,
    handle: &TableHandle,
    iters: u64,
    contenders: usize,
) -> Duration {
    let locked = LockedSwrr::new();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..contenders {
            s.spawn(|| {
                let mut seq = 1u32;
                while !stop.load(Ordering::Relaxed) {
                    pick(name, balancer, &locked, handle, seq);
                    seq = seq.wrapping_add(1);
                }
            });
        }
        let start = Instant::now();
        for seq in 0..iters {
            pick(name, balancer, &locked, handle, seq as u32);
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        elapsed
    })
}

fn bench_picks(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for (name, algorithm, two_choice_above) in variants() {
        for n in SIZES {
            let balancer = balancer(algorithm, two_choice_above);
            let handle = table(n, &balancer);
            for threads in [1usize, 2] {
                let id = BenchmarkId::new(format!("{name}/{threads}t"), n);
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| timed(name, &balancer, &handle, iters, threads - 1))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_picks);
criterion_main!(benches);
