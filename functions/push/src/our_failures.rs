//! Our own failures are never the customer's: a failed AWS call of ours is
//! not an attempt (no state change, no notice, no expiry). The batch backs
//! off from its receive count, escalating and capped, so receives stay far
//! below `maxReceiveCount`; one our outage has kept near the queue's
//! retention is moved to the dead-letter queue instead.

use std::time::Duration;

use platformsync_aws::StoreError;
use platformsync_aws::redelivery::DeadLetter;
use tracing::error;

use crate::flow::{Batch, Flow, Timing, now};
use crate::outcome::Outcome;
use crate::ports::Ports;

/// The delivery queue keeps messages 14 days. A batch our own outage has
/// kept this long is moved to the dead-letter queue (another 14 days, its
/// reason `retention`) rather than left for SQS to delete: the one path that
/// does not need DynamoDB, which may be what is failing.
pub const RETENTION_GUARD: Duration = Duration::from_secs(12 * 24 * 3600);

impl Timing {
    /// Delay after our own failure on the `receive_count`th receive.
    pub fn our_backoff(&self, receive_count: u32) -> Duration {
        let doublings = receive_count.saturating_sub(1).min(20);
        self.our_backoff_base
            .saturating_mul(1u32 << doublings)
            .min(self.our_backoff_cap)
            .max(Duration::from_secs(1))
    }
}

impl<P: Ports> Flow<P> {
    /// Something of ours failed: not an attempt, not the customer's; back
    /// off (escalating with the message's receives, capped).
    pub(crate) async fn ours(&self, b: &Batch<'_>, during: &str, e: &StoreError) -> Outcome {
        if let Some(sent_at) = b.env.sent_at
            && platformsync_delivery::incident::since(now(), sent_at) >= RETENTION_GUARD
        {
            let error = e.to_string();
            let letter = DeadLetter {
                body: &b.env.body,
                group_id: b.endpoint().as_str(),
                deduplication_id: &b.message_id,
                reason: "retention",
                last_error: Some(&error),
                endpoint_id: Some(b.endpoint()),
                customer_id: Some(b.customer()),
            };
            match self.ports.dead_letter(&letter).await {
                Ok(()) => {
                    error!(error = %e, during, "our side has failed for 12 days: moved to the dead-letter queue before the queue's retention deletes it");
                    return Outcome::DeadLettered {
                        reason: "retention",
                    };
                }
                Err(e) => error!(error = %e, "could not move a batch near retention"),
            }
        }
        let delay = self.timing.our_backoff(b.env.receive_count);
        error!(error = %e, during, retry_in_s = delay.as_secs(), "deferred: our side failed (not counted as an attempt)");
        if let Err(e) = self.ports.retry_in(b.receipt, delay).await {
            error!(error = %e, "could not set the back-off");
        }
        Outcome::Deferred { delay }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;

    #[tokio::test]
    async fn our_failure_is_not_an_attempt_and_backs_off() {
        let f = flow(Memory::default());
        *f.ports.ledger_down.lock().unwrap() = true;
        let mut env = envelope(0, 1);
        for (receives, expected) in [(1, 5), (2, 10), (4, 40), (12, 1800), (900, 1800)] {
            env.receive_count = receives;
            let out = f.run(std::slice::from_ref(&env), deadline()).await;
            assert_eq!(
                out[0].1,
                Outcome::Deferred {
                    delay: Duration::from_secs(expected)
                }
            );
        }
        assert!(f.ports.posts().is_empty());
        assert_eq!(
            f.ports.state("ep"),
            EndpointState::default(),
            "state untouched"
        );
        assert!(f.ports.notice_kinds().is_empty());
        // Twelve days of our outage: moved, never left for retention.
        env.sent_at = Some(now() - time::Duration::days(12));
        let out = f.run(std::slice::from_ref(&env), deadline()).await;
        assert_eq!(
            out[0].1,
            Outcome::DeadLettered {
                reason: "retention"
            }
        );
        assert_eq!(*f.ports.dead.lock().unwrap(), ["retention"]);
    }
}
