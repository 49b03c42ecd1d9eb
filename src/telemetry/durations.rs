//! The `tidegate_request_duration_seconds` histogram, rendered for `/metrics`
//! from each instance's atomic [`LatencyHistogram`](super::histogram::LatencyHistogram).
//!
//! The request path already records every latency there (one `fetch_add` per
//! request, read by the balancers and the scaler). The Prometheus exporter's own
//! histogram would have cost a clock read and a 24-byte push per request, kept
//! until the next scrape: memory that grows without bound when nobody scrapes.
//! Rendering from the atomic buckets costs nothing until `/metrics` is read.

use std::fmt::Write;

use super::histogram::HistogramSnapshot;
use super::names;
use crate::registry::Registry;

/// Upper bounds (`le`) of the exported buckets, in microseconds.
const BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// The histogram of every current instance in Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    let name = names::REQUEST_DURATION;
    let _ = writeln!(
        out,
        "# HELP {name} Time from request head to the end of the response\n# TYPE {name} histogram"
    );
    for service in registry.services() {
        for instance in service.table.load().instances() {
            let labels = format!(
                "service=\"{}\",instance=\"{}\"",
                escape(service.name.as_str()),
                escape(instance.id().as_str())
            );
            write_instance(&mut out, &labels, &instance.state.latency.snapshot());
        }
    }
    out
}

fn write_instance(out: &mut String, labels: &str, snapshot: &HistogramSnapshot) {
    let name = names::REQUEST_DURATION;
    for (bound, count) in BOUNDS_US.iter().zip(snapshot.cumulative_at(&BOUNDS_US)) {
        let le = *bound as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {count}");
    }
    let count = snapshot.count();
    let sum = snapshot.sum_us() as f64 / 1e6;
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

/// A label value with `\`, `"` and newlines escaped, as the text format asks.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::histogram::LatencyHistogram;
    use std::time::Duration;

    #[test]
    fn buckets_are_cumulative_and_end_with_the_count() {
        let h = LatencyHistogram::new();
        h.record(Duration::from_micros(100));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(20));
        let mut out = String::new();
        write_instance(&mut out, "service=\"s\"", &h.snapshot());

        let value = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_owned())
        };
        let name = names::REQUEST_DURATION;
        assert_eq!(
            value(&format!("{name}_bucket{{service=\"s\",le=\"0.0005\"}}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&format!("{name}_bucket{{service=\"s\",le=\"0.005\"}}")).as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&format!("{name}_bucket{{service=\"s\",le=\"10\"}}")).as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&format!("{name}_bucket{{service=\"s\",le=\"+Inf\"}}")).as_deref(),
            Some("3")
        );
        assert_eq!(
            value(&format!("{name}_count{{service=\"s\"}}")).as_deref(),
            Some("3")
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
