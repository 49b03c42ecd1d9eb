//! `HealthState`: consecutive probe results and the moment they flip the state.
//!
//! One small type decides health so that the log line, the metric and the
//! instance flag change exactly once per transition: `record` returns a
//! [`Transition`] only on the probe that crosses a threshold, never again while
//! the state holds.

/// Whether an instance passes its probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Passes its probes; the balancer may pick it.
    Healthy,
    /// Failed `unhealthy_threshold` probes in a row.
    Unhealthy,
}

impl Health {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// A change of health, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The new state.
    pub to: Health,
    /// Consecutive probes that decided it.
    pub after: u32,
}

/// Consecutive probe results of one instance.
#[derive(Debug, Clone)]
pub struct HealthState {
    health: Health,
    successes: u32,
    failures: u32,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl HealthState {
    /// Starts in `health` with the service's thresholds (each at least 1).
    pub fn new(health: Health, healthy_threshold: u32, unhealthy_threshold: u32) -> Self {
        Self {
            health,
            successes: 0,
            failures: 0,
            healthy_threshold: healthy_threshold.max(1),
            unhealthy_threshold: unhealthy_threshold.max(1),
        }
    }

    /// The current state.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Records one probe; returns the transition if this probe flipped the state.
    pub fn record(&mut self, passed: bool) -> Option<Transition> {
        if passed {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            self.flip_if(Health::Unhealthy, self.successes >= self.healthy_threshold)
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            self.flip_if(Health::Healthy, self.failures >= self.unhealthy_threshold)
        }
    }

    fn flip_if(&mut self, from: Health, crossed: bool) -> Option<Transition> {
        if self.health != from || !crossed {
            return None;
        }
        let after = self.successes.max(self.failures);
        self.health = match from {
            Health::Healthy => Health::Unhealthy,
            Health::Unhealthy => Health::Healthy,
        };
        Some(Transition {
            to: self.health,
            after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_unhealthy_once_after_the_threshold_of_failures() {
        let mut s = HealthState::new(Health::Healthy, 2, 3);
        assert_eq!(s.record(false), None);
        assert_eq!(s.record(false), None);
        assert_eq!(
            s.record(false),
            Some(Transition {
                to: Health::Unhealthy,
                after: 3
            })
        );
        assert_eq!(
            s.record(false),
            None,
            "a held state reports no second transition"
        );
        assert_eq!(s.health(), Health::Unhealthy);
    }

    #[test]
    fn a_pass_resets_the_failure_count() {
        let mut s = HealthState::new(Health::Healthy, 2, 3);
        s.record(false);
        s.record(false);
        s.record(true);
        assert_eq!(s.record(false), None, "failures must be consecutive");
        assert_eq!(s.health(), Health::Healthy);
    }

    #[test]
    fn a_new_instance_needs_healthy_threshold_passes() {
        let mut s = HealthState::new(Health::Unhealthy, 2, 3);
        assert_eq!(s.record(true), None);
        assert_eq!(
            s.record(true).map(|t| t.to),
            Some(Health::Healthy),
            "the second consecutive pass admits it"
        );
    }
}
