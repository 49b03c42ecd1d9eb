//! The decision scenarios, shared by the unit tests and the PostgreSQL parity
//! test (which includes this file with `#[path]`): plain data, so it compiles
//! wherever its parent module has the decision's types in scope.

#![allow(dead_code, unreachable_pub)]

use super::*;

/// One scenario: what the service observed and what it must decide.
pub struct Case {
    pub name: &'static str,
    pub policy: PolicyRow,
    pub current: u32,
    pub levels: Levels,
    pub peak: Option<Levels>,
    pub samples: u32,
    pub reporting: u32,
    pub last_event_minutes_ago: Option<i64>,
    pub quota: Option<QuotaRow>,
    pub kind: ServiceKind,
    pub hourly_cost: f64,
    pub expect: (bool, Direction, u32, Option<TriggerMetric>),
    pub capped_by: Option<Cap>,
}

pub fn policy() -> PolicyRow {
    PolicyRow {
        min_instances: 1,
        max_instances: 10,
        target_cpu_percent: 70.0,
        target_memory_percent: 80.0,
        target_response_time_ms: 200.0,
        scale_up_threshold: 80.0,
        scale_down_threshold: 30.0,
        scale_up_cooldown_minutes: 5,
        scale_down_cooldown_minutes: 10,
        enabled: true,
    }
}

pub fn cpu_mem(cpu: f64, memory: f64) -> Levels {
    Levels {
        cpu: Some(cpu),
        memory: Some(memory),
        p95_ms: None,
    }
}

pub fn base(name: &'static str, current: u32, levels: Levels) -> Case {
    Case {
        name,
        policy: policy(),
        current,
        levels,
        peak: None,
        samples: 12 * current,
        reporting: current,
        last_event_minutes_ago: None,
        quota: None,
        kind: ServiceKind::Stateless,
        hourly_cost: 0.0,
        expect: (false, Direction::None, current, None),
        capped_by: None,
    }
}

pub const NOW_SECS: i64 = 1_750_000_000;

pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW_SECS, 0).expect("a valid timestamp")
}

impl Case {
    pub fn expect(
        mut self,
        scale: bool,
        dir: Direction,
        n: u32,
        trigger: Option<TriggerMetric>,
    ) -> Self {
        self.expect = (scale, dir, n, trigger);
        self
    }
}

/// Every scenario; the PostgreSQL parity test runs the same list.
pub fn cases() -> Vec<Case> {
    use Direction::{Down, Up};
    use TriggerMetric::{Cpu, Memory, ResponseTime};
    let consensus = ServiceKind::Stateful {
        requires_consensus: true,
    };
    vec![
        base(
            "plan: cpu 85 on 2 instances scales up to 3",
            2,
            cpu_mem(85.0, 60.0),
        )
        .expect(true, Up, 3, Some(Cpu)),
        base(
            "plan: cpu 140 against 70 asks for 2",
            1,
            cpu_mem(140.0, 160.0),
        )
        .expect(true, Up, 2, Some(Cpu)),
        Case {
            last_event_minutes_ago: Some(2),
            ..base(
                "plan: scale-up inside the cooldown does not happen",
                2,
                cpu_mem(90.0, 70.0),
            )
        }
        .expect(false, Direction::None, 2, Some(Cpu)),
        Case {
            last_event_minutes_ago: Some(6),
            ..base(
                "scale-up after the cooldown happens",
                2,
                cpu_mem(90.0, 70.0),
            )
        }
        .expect(true, Up, 3, Some(Cpu)),
        base(
            "spike to four times the target adds several at once",
            2,
            cpu_mem(280.0, 10.0),
        )
        .expect(true, Up, 8, Some(Cpu)),
        base(
            "memory over the threshold scales up on memory",
            2,
            cpu_mem(50.0, 120.0),
        )
        .expect(true, Up, 3, Some(Memory)),
        Case {
            last_event_minutes_ago: Some(2),
            ..base(
                "memory-triggered scale-up also respects the cooldown",
                2,
                cpu_mem(50.0, 120.0),
            )
        }
        .expect(false, Direction::None, 2, Some(Memory)),
        Case {
            policy: PolicyRow {
                target_cpu_percent: 78.0,
                ..policy()
            },
            ..base(
                "over the threshold but within tolerance of the target still adds one",
                3,
                cpu_mem(82.0, 60.0),
            )
        }
        .expect(true, Up, 4, Some(Cpu)),
        base(
            "p95 over its target scales up on response time",
            2,
            Levels {
                cpu: Some(50.0),
                memory: None,
                p95_ms: Some(500.0),
            },
        )
        .expect(true, Up, 5, Some(ResponseTime)),
        base(
            "p95 within tolerance of its target does not scale",
            2,
            Levels {
                cpu: Some(50.0),
                memory: None,
                p95_ms: Some(215.0),
            },
        ),
        base(
            "between the thresholds nothing happens",
            2,
            cpu_mem(50.0, 50.0),
        ),
        base(
            "everything under scale_down_threshold scales down proportionally",
            4,
            cpu_mem(10.0, 10.0),
        )
        .expect(true, Down, 1, Some(Cpu)),
        base(
            "scale-down reports memory when memory binds",
            4,
            cpu_mem(10.0, 25.0),
        )
        .expect(true, Down, 2, Some(Memory)),
        base(
            "one metric over scale_down_threshold blocks the scale-down",
            4,
            cpu_mem(10.0, 35.0),
        ),
        Case {
            last_event_minutes_ago: Some(6),
            ..base(
                "scale-down inside its cooldown does not happen",
                4,
                cpu_mem(10.0, 10.0),
            )
        }
        .expect(false, Direction::None, 4, Some(Cpu)),
        Case {
            peak: Some(cpu_mem(40.0, 10.0)),
            ..base(
                "scale-down keeps the cooldown's peak",
                4,
                cpu_mem(10.0, 10.0),
            )
        }
        .expect(true, Down, 3, Some(Cpu)),
        Case {
            peak: Some(cpu_mem(69.0, 10.0)),
            ..base(
                "a peak at the target prevents any scale-down",
                4,
                cpu_mem(10.0, 10.0),
            )
        },
        Case {
            samples: 0,
            reporting: 0,
            ..base("no samples means no decision", 3, Levels::default())
        },
        base(
            "samples without any metric mean no decision",
            3,
            Levels::default(),
        ),
        base("scale-down stops at min_instances", 1, cpu_mem(5.0, 5.0)),
        Case {
            policy: PolicyRow {
                min_instances: 2,
                ..policy()
            },
            ..base(
                "scale-down is clamped to min_instances",
                4,
                cpu_mem(5.0, 5.0),
            )
        }
        .expect(true, Down, 2, Some(Cpu)),
        Case {
            capped_by: Some(Cap::PolicyMax),
            ..base(
                "scale-up is clamped to max_instances",
                8,
                cpu_mem(200.0, 10.0),
            )
        }
        .expect(true, Up, 10, Some(Cpu)),
        Case {
            capped_by: Some(Cap::PolicyMax),
            ..base(
                "at max_instances nothing happens and says so",
                10,
                cpu_mem(200.0, 10.0),
            )
        }
        .expect(false, Direction::None, 10, Some(Cpu)),
        Case {
            quota: Some(QuotaRow {
                max_instances: 4,
                cost_budget_monthly: None,
            }),
            capped_by: Some(Cap::QuotaMax),
            ..base(
                "the quota's max_instances caps a scale-up",
                2,
                cpu_mem(200.0, 10.0),
            )
        }
        .expect(true, Up, 4, Some(Cpu)),
        Case {
            quota: Some(QuotaRow {
                max_instances: 20,
                cost_budget_monthly: Some(219.0),
            }),
            hourly_cost: 0.1,
            capped_by: Some(Cap::Budget),
            ..base(
                "the monthly budget caps a scale-up",
                1,
                cpu_mem(300.0, 10.0),
            )
        }
        .expect(true, Up, 3, Some(Cpu)),
        Case {
            kind: consensus,
            ..base(
                "consensus steps from 3 to 5, never 4",
                3,
                cpu_mem(85.0, 10.0),
            )
        }
        .expect(true, Up, 5, Some(Cpu)),
        Case {
            kind: consensus,
            ..base(
                "consensus scales down to an odd count",
                5,
                cpu_mem(20.0, 10.0),
            )
        }
        .expect(true, Down, 3, Some(Cpu)),
        Case {
            kind: ServiceKind::Singleton,
            ..base("a singleton is never scaled", 1, cpu_mem(300.0, 300.0))
        },
        Case {
            policy: PolicyRow {
                enabled: false,
                ..policy()
            },
            ..base("a disabled policy never scales", 2, cpu_mem(300.0, 10.0))
        },
    ]
}
