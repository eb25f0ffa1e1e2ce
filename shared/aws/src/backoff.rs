//! The one backoff of our own retry loops.
//!
//! Errors of a call (throttling, 5xx, timeouts) are retried by the SDK's
//! standard retry mode. What it cannot see, because the call succeeded, is
//! retried here: keys and items a DynamoDB batch call leaves unprocessed,
//! SQS batch entries that failed, a lost optimistic-concurrency race. Every
//! such loop takes its delays from [`Backoff::delays`] (backon's exponential
//! schedule with jitter, so concurrent callers do not retry in step).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Delays that start at `first`, double each time up to `max`, each with up
/// to as much again of random jitter, for at most `retries` retries (or
/// without end: then the loop bounds itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    retries: Option<usize>,
}

impl Backoff {
    /// Unprocessed keys or items of a DynamoDB batch call: 8 rounds in all,
    /// about 6 s of waiting at most.
    pub const UNPROCESSED: Backoff =
        Backoff::exponential(Duration::from_millis(50), Duration::from_secs(2)).at_most(7);

    /// Without a bound on the number of retries.
    pub const fn exponential(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            retries: None,
        }
    }

    /// At most `retries` delays (the attempts are one more).
    pub const fn at_most(mut self, retries: usize) -> Self {
        self.retries = Some(retries);
        self
    }

    /// The delays, in order; the iterator ends when the retries are used up.
    pub fn delays(self) -> impl Iterator<Item = Duration> {
        let builder = ExponentialBuilder::new()
            .with_min_delay(self.first)
            .with_max_delay(self.max)
            .with_jitter();
        match self.retries {
            Some(n) => builder.with_max_times(n),
            None => builder.without_max_times(),
        }
        .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_and_stop_at_the_bound() {
        let ms = Duration::from_millis;
        let delays: Vec<_> = Backoff::exponential(ms(10), ms(40))
            .at_most(4)
            .delays()
            .collect();
        assert_eq!(delays.len(), 4);
        for (d, base) in delays.iter().zip([10, 20, 40, 40]) {
            assert!(*d >= ms(base) && *d <= ms(2 * base), "{d:?} for {base} ms");
        }
        let unbounded = Backoff::exponential(ms(1), ms(2))
            .delays()
            .take(100)
            .count();
        assert_eq!(unbounded, 100);
    }
}
