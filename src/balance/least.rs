//! Load-aware algorithms: least connections (exact, or two random choices) and
//! peak EWMA.
//!
//! Least connections counts requests in flight, one up at dispatch and one
//! down when the response ends whatever the outcome (the in-flight guard), and
//! divides by the effective weight, so weights and slow start both apply. Up
//! to `two_choice_above` instances it scans them all; above, it compares two
//! instances drawn at random, which keeps the maximum load within
//! `O(log log n)` of the mean at constant cost (Mitzenmacher, "The Power of Two
//! Choices in Randomized Load Balancing", IEEE TPDS 2001). Ties break
//! uniformly at random, never always to the first instance.
//!
//! Peak EWMA (after Finagle's `PeakEwma` balancer, Twitter 2016, and
//! linkerd2-proxy's `tower::load::PeakEwma`) compares two random instances by
//! latency estimate times (in flight + 1). The estimate is the one
//! [`Instance`] keeps (an EWMA with a 10 s decay). Two rules keep it honest:
//! an instance with no sample yet costs nothing while idle and a large penalty
//! while its first requests are pending, so a new instance gets one probe
//! before a flood; and an estimate older than the other candidate's decays
//! towards zero (hyperbolically, halved 10 s after 1 s of difference), so an
//! instance that was slow once is tried again instead of being shunned forever
//! on stale data.

use std::cmp::Ordering;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::algorithms::first_eligible;
use super::instance::Instance;
use super::rng::FastRng;
use super::table::InstanceTable;

/// Draws for an eligible instance before falling back to a scan.
const DRAWS: usize = 4;
/// Cost of an instance whose first requests are pending, in nanoseconds.
const UNSAMPLED_PENALTY_NS: f64 = 1e12;
/// Silence after which a latency estimate starts to decay.
const STALE_AFTER_NS: u64 = 1_000_000_000;
/// Time after which a stale estimate counts half.
const STALE_DECAY_NS: f64 = 10e9;

/// Least connections over the whole table, or two random choices above `two_choice_above`.
pub(super) fn least_connections(
    table: &InstanceTable,
    two_choice_above: usize,
    rng: &mut FastRng,
) -> Option<usize> {
    let instances = table.instances();
    let ramp = table.ramp_clock();
    let load = |i: &Instance| Load::of(i, ramp);
    if instances.len() <= two_choice_above {
        return fewest_in_flight(instances, rng, load);
    }
    let (a, b) = two_eligible(instances, rng)?;
    let Some(b) = b else { return Some(a) };
    Some(match load(&instances[a]).cmp(&load(&instances[b])) {
        Ordering::Less => a,
        Ordering::Greater => b,
        Ordering::Equal => tie(a, b, rng),
    })
}

/// Peak EWMA: two random choices compared by latency estimate times load.
pub(super) fn peak_ewma(table: &InstanceTable, rng: &mut FastRng) -> Option<usize> {
    let instances = table.instances();
    let (a, b) = two_eligible(instances, rng)?;
    let Some(b) = b else { return Some(a) };
    let (ia, ib) = (&instances[a], &instances[b]);
    // Staleness is measured against the fresher of the two candidates rather
    // than the clock: only the difference in age can change which one wins,
    // and a pick then reads no clock.
    let freshest = last_sample(ia).max(last_sample(ib));
    let ramp = table.ramp_clock();
    let (ca, cb) = (peak_cost(ia, freshest, ramp), peak_cost(ib, freshest, ramp));
    Some(match ca.partial_cmp(&cb) {
        Some(Ordering::Less) => a,
        Some(Ordering::Greater) => b,
        _ => tie(a, b, rng),
    })
}

/// Requests in flight (plus one) per unit of effective weight, compared exactly.
#[derive(Debug, Clone, Copy)]
struct Load {
    in_flight: u64,
    weight_milli: u64,
}

impl Load {
    fn of(instance: &Instance, ramp: Option<u64>) -> Self {
        Self {
            in_flight: u64::from(instance.in_flight()) + 1,
            weight_milli: weight_milli(instance, ramp),
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        let lhs = u128::from(self.in_flight) * u128::from(other.weight_milli);
        let rhs = u128::from(other.in_flight) * u128::from(self.weight_milli);
        lhs.cmp(&rhs)
    }
}

/// The eligible instance with the lightest load; ties broken uniformly (reservoir sampling).
fn fewest_in_flight(
    instances: &[Arc<Instance>],
    rng: &mut FastRng,
    load: impl Fn(&Instance) -> Load,
) -> Option<usize> {
    let mut best: Option<(usize, Load)> = None;
    let mut ties = 0usize;
    for (i, instance) in instances.iter().enumerate() {
        if !instance.is_eligible() {
            continue;
        }
        let l = load(instance);
        let order = best.map_or(Ordering::Less, |(_, b)| l.cmp(&b));
        match order {
            Ordering::Less => {
                best = Some((i, l));
                ties = 1;
            }
            Ordering::Equal => {
                ties += 1;
                if rng.below(ties) == 0 {
                    best = Some((i, l));
                }
            }
            Ordering::Greater => {}
        }
    }
    best.map(|(i, _)| i)
}

/// Two distinct eligible instances drawn at random; the second is `None` when
/// only one could be found.
fn two_eligible(instances: &[Arc<Instance>], rng: &mut FastRng) -> Option<(usize, Option<usize>)> {
    let n = instances.len();
    if n == 0 {
        return None;
    }
    let a = (0..DRAWS)
        .map(|_| rng.below(n))
        .find(|i| instances[*i].is_eligible())
        .or_else(|| first_eligible(instances, rng.below(n)))?;
    if n == 1 {
        return Some((a, None));
    }
    let b = (0..DRAWS)
        .map(|_| {
            let b = rng.below(n - 1);
            if b >= a {
                b + 1
            } else {
                b
            }
        })
        .find(|i| instances[*i].is_eligible())
        .or_else(|| first_eligible(instances, a + 1).filter(|b| *b != a));
    Some((a, b))
}

fn tie(a: usize, b: usize, rng: &mut FastRng) -> usize {
    if rng.next_u64() & 1 == 0 {
        a
    } else {
        b
    }
}

/// Latency estimate (decayed when stale, penalised when unknown) times (in flight + 1),
/// per unit of effective weight.
fn peak_cost(instance: &Instance, freshest_ns: u64, ramp: Option<u64>) -> f64 {
    let pending = f64::from(instance.in_flight());
    let ewma = instance.ewma_ns();
    if ewma == 0.0 {
        return if pending == 0.0 {
            0.0
        } else {
            UNSAMPLED_PENALTY_NS + pending
        };
    }
    let age = freshest_ns.saturating_sub(last_sample(instance));
    // Hyperbolic rather than exponential decay: the same shape for a few time
    // constants, without an `exp` on the request path.
    let latency = if age > STALE_AFTER_NS {
        ewma / (1.0 + (age - STALE_AFTER_NS) as f64 / STALE_DECAY_NS)
    } else {
        ewma
    };
    latency * (pending + 1.0) * 1000.0 / weight_milli(instance, ramp) as f64
}

/// The effective weight in thousandths, never 0; the clock is read only during slow starts.
fn weight_milli(instance: &Instance, ramp: Option<u64>) -> u64 {
    let milli = match ramp {
        Some(now) => instance.effective_weight_milli(now),
        None => u64::from(instance.weight()) * 1000,
    };
    milli.max(1)
}

fn last_sample(instance: &Instance) -> u64 {
    instance.state.last_sample_ns.load(Relaxed)
}
