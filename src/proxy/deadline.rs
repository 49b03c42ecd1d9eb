//! A deadline that moves often and fires rarely, kept in one tokio timer.
//!
//! A client connection's idle deadline moves at every request, and so does
//! an upstream connection's exchange deadline. Setting a registered tokio
//! timer to a new instant reaches into the timer wheel each time. A
//! [`LazyDeadline`] only records the new instant; its timer stays armed for
//! the earlier one, and when that fires before the recorded deadline it is
//! armed again for it. Each move costs a comparison, and the timer fires at
//! most once more per period than it would have.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// A deadline over one timer that is re-armed only when it fires early.
#[derive(Debug)]
pub struct LazyDeadline {
    timer: Pin<Box<Sleep>>,
    deadline: Instant,
}

impl LazyDeadline {
    /// A deadline at `at`.
    pub fn new(at: Instant) -> Self {
        Self {
            timer: Box::pin(tokio::time::sleep_until(at)),
            deadline: at,
        }
    }

    /// Moves the deadline to `at`. Only a move earlier than the armed timer
    /// touches the timer.
    pub fn set(&mut self, at: Instant) {
        self.deadline = at;
        if at < self.timer.deadline() {
            self.timer.as_mut().reset(at);
        }
    }

    /// Ready once the deadline has passed; until then the task is woken when
    /// the timer fires.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= self.deadline {
                return Poll::Ready(());
            }
            self.timer.as_mut().reset(self.deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_last_deadline_set_not_the_first() {
        let start = Instant::now();
        let mut deadline = LazyDeadline::new(start + Duration::from_secs(1));
        deadline.set(start + Duration::from_secs(5));

        poll_fn(|cx| deadline.poll_expired(cx)).await;

        assert_eq!(Instant::now() - start, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_earlier_fires_then() {
        let start = Instant::now();
        let mut deadline = LazyDeadline::new(start + Duration::from_secs(30));
        deadline.set(start + Duration::from_secs(2));

        poll_fn(|cx| deadline.poll_expired(cx)).await;

        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }
}
