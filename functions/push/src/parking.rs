//! Parking a batch for operations to replay (disabled, expired, resuming,
//! refused): kept in the parked store with its reason, attempts, last
//! error, keys and body; while the endpoint is resuming, counted on its
//! health item in the same write.

use platformsync_aws::health::Versioned;
use platformsync_aws::parked::ParkBatch;
use tracing::warn;

use crate::flow::{Batch, Flow, now};
use crate::outcome::Outcome;
use crate::policy::ParkReason;
use crate::ports::Ports;

impl<P: Ports> Flow<P> {
    /// Parks the batch. While the endpoint is resuming, counted on its health
    /// item in the same write (the replay loop's flip fails); `None` when a
    /// batch parked only to wait behind the backlog ([`ParkReason::Behind`])
    /// finds the endpoint no longer resuming (`h` is reloaded then).
    pub(crate) async fn park(
        &self,
        b: &Batch<'_>,
        reason: ParkReason,
        attempts: u32,
        last_error: Option<&str>,
        h: &mut Versioned,
    ) -> Option<Outcome> {
        let batch = ParkBatch {
            endpoint_id: b.endpoint(),
            customer_id: b.customer(),
            message_id: &b.message_id,
            kind: b.meta.kind.wire_name(),
            created_at: &b.meta.created_at,
            reason: reason.as_str(),
            attempts,
            last_error,
            first_attempt_at: None,
            transaction_keys: &b.keys,
            parent_message_id: None,
            body: &b.env.body,
            parked_at: now(),
        };
        let parked = if h.resuming {
            match self.ports.park_counted(&batch).await {
                Ok(Some(id)) => Ok(id),
                Ok(None) => {
                    match self.ports.load(b.endpoint()).await {
                        Ok(fresh) => *h = fresh,
                        Err(e) => {
                            return Some(self.ours(b, "reloading the endpoint's health", &e).await);
                        }
                    }
                    if reason == ParkReason::Behind {
                        return None;
                    }
                    self.ports.park(&batch).await
                }
                Err(e) => Err(e),
            }
        } else {
            self.ports.park(&batch).await
        };
        Some(match parked {
            Ok(id) => {
                warn!(reason = reason.as_str(), parked = %id, attempts, "parked");
                Outcome::Parked {
                    reason: reason.as_str(),
                }
            }
            Err(e) => self.ours(b, "parking", &e).await,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::bookkeeping::Known;
    use crate::testing::*;
    use platformsync_domain::endpoint::EndpointId;

    /// The replay loop flipped the endpoint after push read it as resuming:
    /// the counted park fails, push reloads and delivers the batch instead
    /// of parking it where nothing would replay it.
    #[tokio::test]
    async fn a_batch_meeting_the_flip_is_delivered_not_stranded() {
        let f = flow(Memory::default());
        f.ports.set_resuming("ep", true);
        let ep = EndpointId::parse("ep").unwrap();
        let mut health = Some(f.ports.load(&ep).await.unwrap());
        f.ports.set_resuming("ep", false);
        let env = envelope(0, 1);
        let out = f
            .one(&env, &mut health, &Known::default(), deadline())
            .await;
        assert_eq!(out, Outcome::Delivered);
        assert!(f.ports.parked().is_empty());
        assert_eq!(f.ports.posts().len(), 1);
    }
}
