//! How long an upload's work may run: SafeSync gets our answer before the
//! Lambda deadline, never API Gateway's timeout.

use platformsync_aws::StoreError;
use std::time::{Duration, Instant};
use tracing::warn;

/// The function's timeout in template.yaml (29 s: API Gateway gives up at
/// 30): the deadline of a call without one.
pub(crate) const FUNCTION_TIMEOUT: Duration = Duration::from_secs(29);

/// Why an item was not stored: SafeSync re-sends it either way.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotStored {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("storage did not answer in time")]
    OutOfTime,
    /// Not sent: an earlier transaction of its safe was not stored, and a
    /// safe's transactions are stored in the order they happened.
    #[error("an earlier transaction of this safe was not stored")]
    Behind,
}

/// How long an upload's work may run so that SafeSync gets our answer, not
/// API Gateway's timeout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Writes still running now are answered "not stored, re-send".
    writes_until: Instant,
    /// The advisory reads after them (owners, sequence gaps) stop here.
    advice_until: Instant,
}

impl Budget {
    pub(crate) fn before(deadline: Instant, margin: Duration) -> Budget {
        Budget {
            writes_until: deadline.checked_sub(margin).unwrap_or(deadline),
            advice_until: deadline.checked_sub(margin / 2).unwrap_or(deadline),
        }
    }

    pub(crate) async fn write<T>(
        &self,
        write: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, NotStored> {
        // Not even started once the time is up: a request sent now would be
        // reported "not stored" yet might land.
        if Instant::now() >= self.writes_until {
            return Err(NotStored::OutOfTime);
        }
        match tokio::time::timeout_at(self.writes_until.into(), write).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(NotStored::OutOfTime),
        }
    }

    pub(crate) async fn advise<T>(&self, read: impl Future<Output = T>) -> Option<T> {
        let answer = tokio::time::timeout_at(self.advice_until.into(), read).await;
        if answer.is_err() {
            warn!("advisory read cut short by the deadline");
        }
        answer.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_write_starts_once_the_time_is_up() {
        let budget = Budget::before(Instant::now(), Duration::from_secs(1));
        let started = std::cell::Cell::new(false);
        let write = budget
            .write(async {
                started.set(true);
                Ok::<_, StoreError>(())
            })
            .await;
        assert!(matches!(write, Err(NotStored::OutOfTime)), "{write:?}");
        assert!(!started.get(), "the request was never sent");
    }

    #[tokio::test(start_paused = true)]
    async fn writes_stop_at_the_margin_and_advice_at_half_of_it() {
        let deadline = Instant::now() + Duration::from_secs(10);
        let budget = Budget::before(deadline, Duration::from_secs(4));
        let slow = |secs| async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            Ok::<_, StoreError>(secs)
        };
        assert_eq!(budget.write(slow(5)).await.ok(), Some(5));
        let cut = budget.write(slow(7)).await;
        assert!(matches!(cut, Err(NotStored::OutOfTime)), "{cut:?}");
        assert!(
            tokio::time::Instant::now()
                >= tokio::time::Instant::from_std(deadline) - Duration::from_secs(4)
        );
        // Half the margin is left for the advisory reads after the writes.
        assert_eq!(budget.advise(async { 1 }).await, Some(1));
        assert_eq!(budget.advise(slow(60)).await.map(|r| r.ok()), None);
        assert!(tokio::time::Instant::now() <= tokio::time::Instant::from_std(deadline));
    }

    #[test]
    fn a_margin_longer_than_the_time_left_means_now() {
        let deadline = Instant::now();
        let budget = Budget::before(deadline, Duration::from_secs(3600 * 24 * 365 * 1000));
        assert!(budget.writes_until <= deadline);
    }
}
