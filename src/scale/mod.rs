//! The autoscaler: per-instance samples, the window they aggregate into, the
//! scaling decision, and the loop that acts on it.
//!
//! The recorder turns each instance's request-path atomics (and, for
//! instances tidegate runs, `/proc`) into one [`Sample`] per interval. The
//! decision is a pure function over a policy, a [`window::Observed`] aggregate
//! of those samples, the instance count, the quota and the last event, so the
//! live scaler, the tests and the PostgreSQL parity test run the same rules.

pub mod control;
pub mod decision;
pub mod event;
pub mod leader;
pub mod procfs;
pub mod recorder;
pub mod scaler;
pub mod source;
pub mod window;

pub use decision::{decide, Decision, Direction, Inputs, PolicyRow, QuotaRow, TriggerMetric};
pub use recorder::{Sample, SampleSink};
pub use window::{Levels, Observed, Window};
