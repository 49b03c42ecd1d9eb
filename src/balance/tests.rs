//! Behaviour of the balancers: the plan's cases, fairness, consistency,
//! affinity, slow start, concurrency and the adaptive rule.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::adaptive::{Choice, Hysteresis, Reason, MIN_DWELL_NS};
use super::*;
use crate::clock;
use crate::config::{Algorithm, BalancerConfig, Config};

/// χ² with 7 degrees of freedom exceeded with probability 0.001.
const CHI2_7DF_P001: f64 = 24.32;

fn config(algorithm: Algorithm) -> BalancerConfig {
    let text = "[services.t]\nroutes = [{ path_prefix = \"/\" }]\ninstances = [{ address = \"127.0.0.1:1\" }]\n";
    let config = Config::parse(text, std::path::Path::new(".")).expect("test config parses");
    let mut lb = config.services[0].balancer.clone();
    lb.algorithm = algorithm;
    lb
}

fn balancer(algorithm: Algorithm) -> Balancer {
    Balancer::new(&config(algorithm))
}

fn pool(weights: &[u32]) -> Vec<Arc<Instance>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let addr = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 8080));
            Instance::from_addr("t".into(), addr, *w)
        })
        .collect()
}

fn key(n: u32) -> RequestKey {
    RequestKey {
        client_ip: IpAddr::V4(Ipv4Addr::from(n)),
    }
}

/// Picks `picks` times and counts picks per table index.
fn counts(b: &Balancer, table: &InstanceTable, picks: usize, seed: u64) -> Vec<u64> {
    let mut rng = FastRng::seeded(seed);
    let mut counts = vec![0u64; table.len()];
    for p in 0..picks {
        let picked = b
            .pick_with(table, &key(p as u32), &mut rng)
            .expect("an eligible instance");
        let i = table
            .instances()
            .iter()
            .position(|i| Arc::ptr_eq(i, &picked))
            .expect("picked from the table");
        counts[i] += 1;
    }
    counts
}

fn coefficient_of_variation(counts: &[u64]) -> f64 {
    let n = counts.len() as f64;
    let mean = counts.iter().sum::<u64>() as f64 / n;
    let var = counts
        .iter()
        .map(|c| (*c as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    var.sqrt() / mean
}

fn chi_square_uniform(counts: &[u64]) -> f64 {
    let expected = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|c| (*c as f64 - expected).powi(2) / expected)
        .sum()
}

#[test]
fn weighted_three_two_one_gives_exactly_thirty_twenty_ten_over_sixty_picks() {
    let b = balancer(Algorithm::Weighted);
    let table = InstanceTable::new(pool(&[3, 2, 1]));
    let mut rng = FastRng::seeded(1);
    let picks: Vec<Arc<Instance>> = (0..60)
        .map(|p| b.pick_with(&table, &key(p), &mut rng).expect("eligible"))
        .collect();
    let mut tally: HashMap<u32, u32> = HashMap::new();
    for p in &picks {
        *tally.entry(p.weight()).or_default() += 1;
    }
    assert_eq!(
        (tally[&3], tally[&2], tally[&1]),
        (30, 20, 10),
        "shares follow weights exactly"
    );
    for run in picks.windows(3) {
        assert!(
            !(Arc::ptr_eq(&run[0], &run[1]) && Arc::ptr_eq(&run[1], &run[2])),
            "smooth weighted round robin never picks one instance three times in a row"
        );
    }
}

#[test]
fn weighted_stays_exact_under_concurrent_picks() {
    let b = balancer(Algorithm::Weighted);
    let table = InstanceTable::new(pool(&[3, 2, 1]));
    let per_thread = 6_000;
    let totals: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                s.spawn({
                    let (b, table) = (&b, &table);
                    move || counts(b, table, per_thread, t)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("picker thread"))
            .collect()
    });
    let sum: Vec<u64> = (0..3).map(|i| totals.iter().map(|c| c[i]).sum()).collect();
    assert_eq!(
        sum,
        vec![12_000, 8_000, 4_000],
        "concurrent picks take consecutive turns of one cycle"
    );
}

#[test]
fn least_connections_picks_the_instance_with_fewest_in_flight() {
    let b = balancer(Algorithm::LeastConnections);
    let instances = pool(&[1, 1, 1, 1]);
    let table = InstanceTable::new(instances.clone());
    let _held: Vec<InFlight> = [3usize, 1, 0, 2]
        .iter()
        .enumerate()
        .flat_map(|(i, n)| (0..*n).map(move |_| i))
        .map(|i| instances[i].dispatch())
        .collect();
    let picked = b.pick(&table, &key(1)).expect("eligible");
    assert!(
        Arc::ptr_eq(&picked, &instances[2]),
        "the idle instance wins"
    );
}

#[test]
fn least_connections_counts_every_request_until_it_finishes() {
    let b = balancer(Algorithm::LeastConnections);
    let instances = pool(&[1, 1]);
    let table = InstanceTable::new(instances.clone());
    let first = b.pick(&table, &key(1)).expect("eligible").dispatch();
    let second = b.pick(&table, &key(1)).expect("eligible");
    assert!(
        !Arc::ptr_eq(first.instance(), &second),
        "a dispatched request counts at once"
    );
    drop(first);
    assert_eq!(instances.iter().map(|i| i.in_flight()).sum::<u32>(), 0);
}

#[test]
fn least_connections_breaks_ties_fairly() {
    let b = balancer(Algorithm::LeastConnections);
    let table = InstanceTable::new(pool(&[1; 8]));
    let counts = counts(&b, &table, 100_000, 11);
    assert!(
        chi_square_uniform(&counts) < CHI2_7DF_P001,
        "tied instances share picks uniformly: {counts:?}"
    );
}

#[test]
fn rotations_spread_eight_equal_instances_within_two_percent() {
    for algorithm in [
        Algorithm::RoundRobin,
        Algorithm::Weighted,
        Algorithm::Adaptive,
    ] {
        let table = InstanceTable::new(pool(&[1; 8]));
        let counts = counts(&balancer(algorithm), &table, 100_000, 5);
        let cv = coefficient_of_variation(&counts);
        assert!(
            cv < 0.02,
            "{algorithm}: CV {cv} of {counts:?} must stay below 2%"
        );
    }
}

/// With 8 equally likely instances and N picks, Pearson's statistic
/// Σ (c − N/8)² / (N/8) follows χ² with 7 degrees of freedom, so it exceeds
/// 24.32 with probability 0.001; equivalently the CV of the counts stays below
/// sqrt(24.32 / N) = 1.56% for N = 100,000. The seeds are fixed, so the test
/// is deterministic; the bound says a correct sampler passes with any seed
/// but one in a thousand.
#[test]
fn random_choices_spread_eight_equal_instances_within_the_chi_square_bound() {
    for (algorithm, two_choice_above) in [
        (Algorithm::Random, 16),
        (Algorithm::LeastConnections, 0),
        (Algorithm::PeakEwma, 16),
    ] {
        let mut lb = config(algorithm);
        lb.two_choice_above = two_choice_above;
        let table = InstanceTable::new(pool(&[1; 8]));
        let counts = counts(&Balancer::new(&lb), &table, 100_000, 3);
        let chi2 = chi_square_uniform(&counts);
        assert!(
            chi2 < CHI2_7DF_P001,
            "{algorithm}: χ² {chi2} of {counts:?} beyond the p=0.001 bound"
        );
        assert!(coefficient_of_variation(&counts) < (CHI2_7DF_P001 / 100_000.0).sqrt());
    }
}

#[test]
fn ip_hash_remaps_about_one_in_n_clients_when_an_instance_is_added() {
    let b = balancer(Algorithm::IpHash);
    for n in [4usize, 8, 16, 50] {
        let weights = vec![1; n + 1];
        let all = pool(&weights);
        let before = InstanceTable::new(all[..n].to_vec());
        let after = InstanceTable::new(all.clone());
        let clients = 20_000u32;
        let moved = (0..clients)
            .filter(|c| {
                let k = key(c.wrapping_mul(2_654_435_761));
                let a = b.pick(&before, &k).expect("eligible");
                let z = b.pick(&after, &k).expect("eligible");
                !Arc::ptr_eq(&a, &z)
            })
            .count();
        let share = moved as f64 / f64::from(clients);
        assert!(
            share <= 1.0 / n as f64 + 0.05,
            "n={n}: {share} of clients moved, at most 1/n + 5 points"
        );
        assert!(share > 0.0, "n={n}: the new instance takes some clients");
    }
}

#[test]
fn ip_hash_moves_only_the_clients_of_an_ineligible_instance() {
    let b = balancer(Algorithm::IpHash);
    let instances = pool(&[1; 8]);
    let table = InstanceTable::new(instances.clone());
    let first: Vec<Arc<Instance>> = (0..2_000)
        .map(|c| b.pick(&table, &key(c * 7919)).expect("eligible"))
        .collect();
    instances[3].state.draining.store(true, Ordering::Relaxed);
    for (c, before) in (0..2_000).zip(&first) {
        let now = b.pick(&table, &key(c * 7919)).expect("eligible");
        assert!(
            !Arc::ptr_eq(&now, &instances[3]),
            "a draining instance takes no client"
        );
        if !Arc::ptr_eq(before, &instances[3]) {
            assert!(
                Arc::ptr_eq(before, &now),
                "clients of healthy instances stay put"
            );
        }
    }
}

fn with_cookie(pick: &Pick) -> HeaderMap {
    let cookie = pick.set_cookie.as_ref().expect("a fresh client is pinned");
    let pair = cookie
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("name=value");
    let mut headers = HeaderMap::new();
    headers.insert(COOKIE, HeaderValue::try_from(pair).expect("valid"));
    headers
}

fn affinity_balancer() -> Balancer {
    let mut lb = config(Algorithm::RoundRobin);
    lb.session_affinity = true;
    Balancer::new(&lb)
}

#[test]
fn affinity_sticks_to_the_pinned_instance() {
    let b = affinity_balancer();
    let table = InstanceTable::new(pool(&[1; 4]));
    let first = b
        .pick_request(&table, &key(1), &HeaderMap::new())
        .expect("eligible");
    let headers = with_cookie(&first);
    for _ in 0..20 {
        let again = b.pick_request(&table, &key(1), &headers).expect("eligible");
        assert!(
            Arc::ptr_eq(&again.instance, &first.instance),
            "the cookie pins the instance"
        );
        assert!(
            again.set_cookie.is_none(),
            "a valid cookie is not re-issued"
        );
    }
}

#[test]
fn affinity_falls_back_and_reissues_when_the_instance_drains_or_leaves() {
    let b = affinity_balancer();
    let instances = pool(&[1; 4]);
    let table = InstanceTable::new(instances.clone());
    let first = b
        .pick_request(&table, &key(1), &HeaderMap::new())
        .expect("eligible");
    let headers = with_cookie(&first);

    first.instance.state.draining.store(true, Ordering::Relaxed);
    let moved = b
        .pick_request(&table, &key(1), &headers)
        .expect("others are eligible");
    assert!(
        !Arc::ptr_eq(&moved.instance, &first.instance),
        "a draining instance loses its clients"
    );
    assert!(moved.set_cookie.is_some(), "the client is re-pinned");

    let without: Vec<_> = instances
        .iter()
        .filter(|i| !Arc::ptr_eq(i, &first.instance))
        .cloned()
        .collect();
    first
        .instance
        .state
        .draining
        .store(false, Ordering::Relaxed);
    let smaller = InstanceTable::new(without);
    let gone = b
        .pick_request(&smaller, &key(1), &headers)
        .expect("eligible");
    assert!(
        gone.set_cookie.is_some(),
        "a removed instance's cookie is replaced"
    );
}

#[test]
fn affinity_ignores_forged_cookies() {
    let b = affinity_balancer();
    let table = InstanceTable::new(pool(&[1; 4]));
    let name = table.affinity().cookie_name().to_owned();
    for forged in ["10.0.0.1:8080", "00000000000000000000000000000000", "zz"] {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::try_from(format!("{name}={forged}")).expect("valid"),
        );
        let pick = b.pick_request(&table, &key(1), &headers).expect("eligible");
        assert!(
            pick.set_cookie.is_some(),
            "a forged cookie ({forged}) is replaced by the algorithm's pick"
        );
    }
}

#[test]
fn slow_start_ramps_a_new_instance_from_a_small_share() {
    let b = balancer(Algorithm::RoundRobin);
    let instances = pool(&[1, 1]);
    let handle = TableHandle::new(InstanceTable::new(vec![Arc::clone(&instances[0])]));
    handle.add_slow_start(Arc::clone(&instances[1]), Duration::from_secs(3600));
    let table = handle.load();
    let counts = counts(&b, &table, 10_000, 9);
    let share = counts[1] as f64 / 10_000.0;
    assert!(
        share > 0.02 && share < 0.1,
        "a new instance takes a small share at first, took {share}"
    );

    let end = instances[1].slow_start_ends_ns();
    assert_eq!(
        instances[1].weight_share_per_mille(end),
        1000,
        "full weight once the window ends"
    );
    assert_eq!(
        instances[0].weight_share_per_mille(clock::now_ns()),
        1000,
        "startup instances start full"
    );
}

#[test]
fn steady_tables_stop_reading_the_clock_once_ramps_end() {
    let instances = pool(&[1]);
    instances[0].begin_slow_start(Duration::from_nanos(1));
    let table = InstanceTable::new(instances);
    let _ = clock::now_ns();
    assert!(
        table.ramp_clock().is_none(),
        "a ramp that ended is over for good"
    );
}

#[test]
fn no_eligible_instance_means_no_pick_for_every_algorithm() {
    let instances = pool(&[1, 0, 1]);
    instances[0].state.healthy.store(false, Ordering::Relaxed);
    instances[2].state.draining.store(true, Ordering::Relaxed);
    let table = InstanceTable::new(instances);
    for (algorithm, _) in Algorithm::ALL {
        assert!(
            balancer(algorithm).pick(&table, &key(1)).is_none(),
            "{algorithm} picks nothing ineligible"
        );
        assert!(balancer(algorithm)
            .pick(&InstanceTable::default(), &key(1))
            .is_none());
    }
}

#[test]
fn concurrent_picks_and_completions_balance_the_counters() {
    for (algorithm, _) in Algorithm::ALL {
        let b = balancer(algorithm);
        let instances = pool(&[1, 2, 3, 1, 2]);
        let table = InstanceTable::new(instances.clone());
        let (threads, picks) = (4u64, 2_000u64);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (b, table) = (&b, &table);
                s.spawn(move || {
                    let mut held = Vec::new();
                    for p in 0..picks {
                        let mut guard = b
                            .pick(table, &key((t * picks + p) as u32))
                            .expect("eligible")
                            .dispatch();
                        guard.set_status(200);
                        held.push(guard);
                        if p % 3 == 0 {
                            held.clear();
                        }
                        let total: u32 = table.instances().iter().map(|i| i.in_flight()).sum();
                        assert!(
                            total <= (threads * 3) as u32,
                            "in flight stays bounded by what is held: {total}"
                        );
                    }
                });
            }
        });
        let in_flight: u32 = instances.iter().map(|i| i.in_flight()).sum();
        let done: u64 = instances
            .iter()
            .map(|i| i.state.requests.load(Ordering::Relaxed))
            .sum();
        assert_eq!(
            in_flight, 0,
            "{algorithm}: every request finished, none lost or counted twice"
        );
        assert_eq!(
            done,
            threads * picks,
            "{algorithm}: every completion counted"
        );
    }
}

#[test]
fn hysteresis_switches_after_three_agreeing_measurements_and_holds_in_the_band() {
    let mut rule = Hysteresis::default();
    let s = 1_000_000_000u64;
    assert_eq!(rule.step(Choice::Baseline, Some(0.8), s), None);
    assert_eq!(
        rule.step(Choice::Baseline, Some(0.3), 2 * s),
        None,
        "the band resets the streak"
    );
    assert_eq!(rule.step(Choice::Baseline, Some(0.8), 3 * s), None);
    assert_eq!(rule.step(Choice::Baseline, Some(0.9), 4 * s), None);
    assert_eq!(
        rule.step(Choice::Baseline, Some(0.6), 5 * s),
        Some(Choice::PeakEwma)
    );
    for t in 6..30 {
        assert_eq!(
            rule.step(Choice::PeakEwma, Some(0.35), t * s),
            None,
            "0.2 < d < 0.5 keeps peak_ewma"
        );
    }
    assert_eq!(
        rule.step(Choice::PeakEwma, None, 30 * s),
        None,
        "no data, no switch"
    );
}

#[test]
fn hysteresis_never_switches_twice_within_the_dwell_time() {
    let mut rule = Hysteresis::default();
    let s = 1_000_000_000u64;
    let mut switched_at = None;
    for t in 1..=3 {
        switched_at = switched_at.or(rule.step(Choice::Baseline, Some(0.9), t * s).map(|_| t * s));
    }
    let at = switched_at.expect("three high measurements switch");
    let mut back = None;
    for t in 4..40 {
        if rule.step(Choice::PeakEwma, Some(0.05), t * s).is_some() {
            back = Some(t * s);
            break;
        }
    }
    let back = back.expect("uniform latency switches back");
    assert!(
        back - at >= MIN_DWELL_NS,
        "switches {}s apart",
        (back - at) / s
    );
}

fn set_latency(instance: &Instance, ms: f64, at_ns: u64) {
    instance
        .state
        .ewma_ns
        .store((ms * 1e6).to_bits(), Ordering::Relaxed);
    instance
        .state
        .last_sample_ns
        .store(at_ns, Ordering::Relaxed);
}

#[test]
fn adaptive_moves_to_peak_ewma_on_dispersed_latency_and_back_when_uniform() {
    let b = balancer(Algorithm::Adaptive);
    let instances = pool(&[1; 4]);
    let table = InstanceTable::new(instances.clone());
    let s = 1_000_000_000u64;
    let t0 = clock::now_ns();
    assert_eq!(b.active(&table), Algorithm::RoundRobin);

    let mut t = t0;
    for _ in 0..3 {
        t += s;
        for (i, instance) in instances.iter().enumerate() {
            set_latency(instance, if i == 0 { 80.0 } else { 5.0 }, t);
        }
        b.adaptive().measure_if_due(&table, t);
    }
    assert_eq!(
        b.active(&table),
        Algorithm::PeakEwma,
        "one slow instance calls for peak_ewma"
    );
    assert_eq!(b.adaptive().reason(), Reason::LatencyDispersion);
    assert!(b
        .snapshot(&table)
        .adaptive
        .is_some_and(|a| a.latency_dispersion.is_some_and(|d| d > 0.5)));

    for _ in 0..20 {
        t += s;
        instances.iter().for_each(|i| set_latency(i, 5.0, t));
        b.adaptive().measure_if_due(&table, t);
    }
    assert_eq!(
        b.active(&table),
        Algorithm::RoundRobin,
        "uniform latency returns to rotation"
    );
    assert_eq!(b.adaptive().reason(), Reason::UniformLatency);
}

#[test]
fn adaptive_baseline_is_weighted_when_weights_differ() {
    let b = balancer(Algorithm::Adaptive);
    let table = InstanceTable::new(pool(&[3, 2, 1]));
    assert_eq!(b.active(&table), Algorithm::Weighted);
}

#[test]
fn peak_ewma_prefers_the_faster_of_two_instances() {
    let b = balancer(Algorithm::PeakEwma);
    let instances = pool(&[1, 1]);
    let now = clock::now_ns();
    set_latency(&instances[0], 50.0, now);
    set_latency(&instances[1], 5.0, now);
    let table = InstanceTable::new(instances.clone());
    let counts = counts(&b, &table, 1_000, 2);
    assert_eq!(
        counts,
        vec![0, 1_000],
        "with no load, the lower latency always wins"
    );
}

#[test]
fn peak_ewma_sends_one_probe_to_an_unsampled_instance_at_a_time() {
    let b = balancer(Algorithm::PeakEwma);
    let instances = pool(&[1, 1]);
    set_latency(&instances[0], 5.0, clock::now_ns());
    let table = InstanceTable::new(instances.clone());
    let probe = instances[1].dispatch();
    let counts = counts(&b, &table, 100, 4);
    assert_eq!(
        counts[1], 0,
        "a new instance with a pending first request is penalised"
    );
    drop(probe);
}

proptest! {
    #[test]
    fn a_pick_is_always_eligible_and_none_only_when_nothing_is(
        flags in proptest::collection::vec((0u32..4, any::<bool>(), any::<bool>()), 0..40),
        algorithm in 0usize..7,
        two_choice_above in 0usize..20,
        seed in any::<u64>(),
    ) {
        let weights: Vec<u32> = flags.iter().map(|f| f.0).collect();
        let instances = pool(&weights);
        for (instance, (_, healthy, draining)) in instances.iter().zip(&flags) {
            instance.state.healthy.store(*healthy, Ordering::Relaxed);
            instance.state.draining.store(*draining, Ordering::Relaxed);
        }
        let any_eligible = instances.iter().any(|i| i.is_eligible());
        let mut lb = config(Algorithm::ALL[algorithm].0);
        lb.two_choice_above = two_choice_above;
        let b = Balancer::new(&lb);
        let table = InstanceTable::new(instances);
        let mut rng = FastRng::seeded(seed);
        for p in 0..20 {
            match b.pick_with(&table, &key(p), &mut rng) {
                Some(i) => prop_assert!(i.is_eligible(), "picked an ineligible instance"),
                None => prop_assert!(!any_eligible, "no pick although an instance is eligible"),
            }
        }
    }
}

#[test]
fn peak_ewma_retries_an_instance_whose_slow_estimate_went_stale() {
    let b = balancer(Algorithm::PeakEwma);
    let instances = pool(&[1, 1]);
    let fresh = 500_000_000_000u64;
    set_latency(&instances[0], 50.0, fresh - 200_000_000_000);
    set_latency(&instances[1], 5.0, fresh);
    let table = InstanceTable::new(instances.clone());
    let counts = counts(&b, &table, 100, 6);
    assert_eq!(
        counts[0], 100,
        "a 200 s old 50 ms estimate decays below a fresh 5 ms one"
    );
}

#[test]
fn the_fast_remainder_equals_the_remainder_for_every_divisor_shape() {
    use super::table::Divisor;
    let divisors = [
        1usize,
        2,
        3,
        7,
        16,
        60,
        1000,
        1023,
        1024,
        65_537,
        1 << 31,
        u32::MAX as usize,
    ];
    let mut rng = FastRng::seeded(11);
    for d in divisors {
        let by = Divisor::new(d);
        let edges = [0usize, 1, d - 1, d, d + 1, 2 * d + 3, u32::MAX as usize];
        let random = (0..10_000).map(|_| rng.next_u64() as usize);
        for a in edges.into_iter().chain(random) {
            let expected = (a as u32 as u64 % d as u64) as usize;
            assert_eq!(by.remainder(a), expected, "{a} mod {d}");
        }
    }
}
