//! The batch in a queue message's body, or why it is not one: a body this
//! version cannot read goes to the dead-letter queue with the reason,
//! acknowledged (never a poison loop).

use platformsync_aws::redelivery::DeadLetter;
use platformsync_domain::batch::{BATCH_MESSAGE_VERSION, BatchMessage};
use tracing::error;

use crate::flow::{Envelope, Flow};
use crate::outcome::Outcome;
use crate::ports::Ports;

/// The batch in an SQS body, or why it is not one.
pub fn parse_batch(body: &str) -> Result<BatchMessage, String> {
    let batch: BatchMessage =
        serde_json::from_str(body).map_err(|e| format!("not a batch message: {e}"))?;
    if batch.version != BATCH_MESSAGE_VERSION {
        return Err(format!(
            "batch message version {} is not supported (this function reads {BATCH_MESSAGE_VERSION})",
            batch.version
        ));
    }
    if batch.items.is_empty() {
        return Err("batch has no transactions".to_owned());
    }
    Ok(batch)
}

impl<P: Ports> Flow<P> {
    /// A body that is not a batch this version can read: kept in the
    /// dead-letter queue with the reason, acknowledged (never a poison loop).
    pub(crate) async fn malformed(&self, env: &Envelope, receipt: &str, reason: &str) -> Outcome {
        let letter = DeadLetter {
            body: if env.body.is_empty() {
                "(empty)"
            } else {
                &env.body
            },
            group_id: env.group.as_deref().unwrap_or("malformed"),
            deduplication_id: &env.id,
            reason: "malformed",
            last_error: Some(reason),
            endpoint_id: None,
            customer_id: None,
        };
        match self.ports.dead_letter(&letter).await {
            Ok(()) => {
                error!(sqs_message_id = %env.id, reason, "malformed batch moved to the dead-letter queue");
                Outcome::DeadLettered {
                    reason: "malformed",
                }
            }
            Err(e) => {
                let delay = self.timing.our_backoff(env.receive_count);
                error!(error = %e, "could not move a malformed batch");
                let _ = self.ports.retry_in(receipt, delay).await;
                Outcome::Deferred { delay }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[tokio::test]
    async fn malformed_goes_to_the_dead_letter_queue() {
        let f = flow(Memory::default());
        let mut env = envelope(0, 1);
        env.body = "{not json".into();
        let envs = [env];
        let out = f.run(&envs, deadline()).await;
        assert_eq!(
            out[0].1,
            Outcome::DeadLettered {
                reason: "malformed"
            }
        );
        let _ = throttled();
    }

    #[test]
    fn malformed_bodies_say_why() {
        assert!(parse_batch("").unwrap_err().contains("not a batch"));
        let body = serde_json::json!({
            "Version": 9, "MessageId": uuid::Uuid::nil(), "EndpointId": "ep-1",
            "CustomerId": "acme", "Kind": "Transactions", "CreatedAt": "x", "Items": []
        })
        .to_string();
        assert!(parse_batch(&body).unwrap_err().contains("version 9"));
    }
}
