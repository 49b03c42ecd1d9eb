//! The decision as a table of cases: every rule of the module docs and the plan's own cases.

use chrono::Duration;

use super::cases::*;
use super::*;
use crate::scale::window::{Levels, Observed, Window};

impl Case {
    pub(crate) fn observed(&self) -> Observed {
        Observed {
            window: Window {
                levels: self.levels,
                requests: 0,
                instances_reporting: self.reporting,
                samples: self.samples,
                expected_samples: 12 * self.current,
            },
            peak: self.peak.unwrap_or(self.levels),
        }
    }

    pub(crate) fn decide(&self) -> Decision {
        let now = now();
        decide(&Inputs {
            policy: &self.policy,
            observed: self.observed(),
            current: self.current,
            quota: self.quota,
            last_event_at: self
                .last_event_minutes_ago
                .map(|m| now - Duration::minutes(m)),
            now,
            kind: self.kind,
            tolerance_percent: 10.0,
            instance_hourly_cost: self.hourly_cost,
        })
    }
}

#[test]
fn every_case_decides_as_expected() {
    for case in cases() {
        let d = case.decide();
        let (scale, dir, n, trigger) = case.expect;
        assert_eq!(
            (
                d.should_scale,
                d.scale_direction,
                d.recommended_instances,
                d.trigger_metric
            ),
            (scale, dir, n, trigger),
            "case {:?}: {d}",
            case.name
        );
        if case.capped_by.is_some() {
            assert_eq!(
                d.capped_by, case.capped_by,
                "case {:?} names its cap: {d}",
                case.name
            );
        }
    }
}

#[test]
fn cpu_140_against_target_70_asks_for_2_from_1() {
    let d = base("", 1, cpu_mem(140.0, 0.0)).decide();
    assert_eq!(
        d.recommended_instances, 2,
        "the plan's CalculateTargetInstances case"
    );
}

#[test]
fn no_samples_is_reported_as_no_data() {
    let d = Case {
        samples: 0,
        reporting: 0,
        ..base("", 3, Levels::default())
    }
    .decide();
    assert!(!d.should_scale);
    assert!(
        d.reason.contains("no samples"),
        "the reason says there was no data: {d}"
    );
    assert_eq!(d.confidence_score, 0.0);
}

#[test]
fn capped_decision_says_so_in_its_reason() {
    let d = base("", 8, cpu_mem(200.0, 10.0)).decide();
    assert!(
        d.reason.contains("capped"),
        "a capped decision says so: {d}"
    );
}

#[test]
fn confidence_is_share_reporting_times_share_of_samples() {
    let full = base("", 4, cpu_mem(50.0, 50.0)).decide();
    assert_eq!(full.confidence_score, 100.0);
    let half = Case {
        reporting: 2,
        samples: 24,
        ..base("", 4, cpu_mem(50.0, 50.0))
    }
    .decide();
    assert_eq!(
        half.confidence_score, 25.0,
        "half the instances and half the samples"
    );
}

#[test]
fn consensus_service_never_gets_an_even_recommendation() {
    let kind = ServiceKind::Stateful {
        requires_consensus: true,
    };
    for current in [1u32, 3, 5, 7] {
        for cpu in [5.0, 20.0, 50.0, 85.0, 150.0, 400.0] {
            let d = Case {
                kind,
                ..base("", current, cpu_mem(cpu, 10.0))
            }
            .decide();
            if d.should_scale {
                assert_eq!(
                    d.recommended_instances % 2,
                    1,
                    "consensus members stay odd: {current} at cpu {cpu}: {d}"
                );
            }
        }
    }
}
