//! Step 5: a batch the endpoint keeps refusing is split in halves, in
//! order, recursively, into parts with derived `MessageId`s: delivered parts
//! go in the ledger, refused single transactions are parked with the
//! endpoint's answer, and the policy then sees how the split ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use platformsync_aws::StoreError;
use platformsync_aws::health::Versioned;
use platformsync_aws::ledger::{DeliveredAttempt, Delivery};
use platformsync_aws::parked::ParkBatch;
use platformsync_domain::batch::{BATCH_MESSAGE_VERSION, BatchMessage};
use platformsync_domain::endpoint::EndpointSettings;
use tracing::{info, warn};

use crate::attempt::Posted;
use crate::attempting::Tried;
use crate::bookkeeping::millis;
use crate::flow::{Batch, Flow, now};
use crate::outcome::Outcome;
use crate::policy::{AttemptResult, Effects, Next, ParkReason};
use crate::ports::{Outgoing, Ports};

/// How a split ended.
enum SplitEnd {
    Done {
        delivered: usize,
        refused: usize,
    },
    /// A part failed (not a refusal): the batch is retried as a whole later;
    /// the parts already done are in the ledger and are skipped then.
    Failed(AttemptResult),
    Ours(StoreError),
    OutOfTime,
}

/// Most refused parts in a row, with nothing delivered yet, before the rest
/// is parked in larger parts: an endpoint refusing everything costs a few
/// dozen POSTs per batch, not one per transaction.
const MAX_BLIND_REFUSALS: usize = 4;

impl<P: Ports> Flow<P> {
    /// The effects after a split (the policy sees a finished split as
    /// delivered) and how many transactions were delivered and refused;
    /// `Err` when the batch stops here: our failure, or out of time (the
    /// refusals stay on record, the next invocation resumes).
    pub(crate) async fn split_if_refused(
        &self,
        b: &Batch<'_>,
        settings: Option<&Arc<EndpointSettings>>,
        h: &mut Versioned,
        mut effects: Effects,
        tried: &Tried,
        deadline: Instant,
    ) -> Result<(Effects, Option<(usize, usize)>), Outcome> {
        let mut split = None;
        if effects.next == Next::Split {
            let Some(settings) = settings else {
                return Err(Outcome::HandedBack);
            };
            match self.split(b, settings, h, deadline).await {
                SplitEnd::Done { delivered, refused } => {
                    split = Some((delivered, refused));
                    effects = self.decide(b, h, tried, &AttemptResult::Delivered);
                }
                SplitEnd::Failed(result) => {
                    effects = self.decide(b, h, tried, &result);
                }
                SplitEnd::Ours(e) => {
                    self.save(b, h).await;
                    return Err(self.ours(b, "splitting", &e).await);
                }
                SplitEnd::OutOfTime => {
                    // The refusals stay on record: the next invocation resumes.
                    self.save(b, h).await;
                    return Err(self.retry(b, Duration::from_secs(1)).await);
                }
            }
        }
        Ok((effects, split))
    }

    /// Splits a batch the endpoint keeps refusing, in order, into parts with
    /// derived `MessageId`s: delivered parts are recorded in the ledger,
    /// refused single transactions parked with the endpoint's answer.
    async fn split(
        &self,
        b: &Batch<'_>,
        settings: &Arc<EndpointSettings>,
        h: &Versioned,
        deadline: Instant,
    ) -> SplitEnd {
        use platformsync_delivery::split::{derived_message_id, halves};
        let n = b.payloads.len();
        let mut pending: Vec<(usize, usize)> = if n == 1 {
            vec![(0, 1)]
        } else {
            let [first, second] = halves(0, n);
            vec![second, first]
        };
        let (mut delivered, mut refused, mut refused_parts) = (0, 0, 0);
        info!(
            transactions = n,
            "splitting a batch the endpoint keeps refusing"
        );
        while let Some((start, end)) = pending.pop() {
            // Derived even for a one-transaction batch: the parent's id is
            // recorded as done when the split ends, the part is replayable.
            let part_id = derived_message_id(b.meta.message_id, start, end);
            let part = part_id.to_string();
            match self.ports.lookup(&b.meta.endpoint_id, part_id).await {
                Ok(l) if l.delivered || l.refused => {
                    if l.delivered {
                        delivered += end - start;
                    } else {
                        refused += end - start;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => return SplitEnd::Ours(e),
            }
            // The part's POST, when one was made: delivered, it rides on the
            // part's ledger write.
            let mut posted = None;
            let answer = if n == 1 {
                // The batch is one transaction: it was refused already.
                AttemptResult::Refused {
                    error: h.state.last_error.clone().unwrap_or_default(),
                }
            } else {
                if deadline.saturating_duration_since(Instant::now()) < self.needs() {
                    return SplitEnd::OutOfTime;
                }
                let outgoing = Outgoing {
                    message_id: part_id,
                    kind: b.meta.kind,
                    payloads: &b.payloads[start..end],
                };
                let (at, timer) = (now(), Instant::now());
                let answer = match self.ports.post(settings, &outgoing, deadline).await {
                    Posted::Answer(answer) => answer,
                    Posted::Ours(e) => return SplitEnd::Ours(e),
                };
                // Each part's POST is an attempt support sees, numbered
                // with the batch's attempt it belongs to.
                let attempt = h.state.attempts_of(&b.message_id);
                if answer == AttemptResult::Delivered {
                    posted = Some(DeliveredAttempt {
                        attempt: attempt.max(1),
                        at,
                        latency_ms: millis(timer.elapsed()),
                        parent_message_id: Some(b.meta.message_id),
                    });
                } else {
                    self.record_attempt(
                        b,
                        Some((part_id, end - start)),
                        attempt,
                        at,
                        timer.elapsed(),
                        &answer,
                    )
                    .await;
                }
                answer
            };
            match answer {
                AttemptResult::Delivered => {
                    let at = now();
                    let delivery = Delivery {
                        endpoint_id: &b.meta.endpoint_id,
                        message_id: part_id,
                        customer_id: &b.meta.customer_id,
                        kind: b.meta.kind,
                        transaction_keys: &b.keys[start..end],
                        attempts: 1,
                        first_attempt_at: at,
                        delivered_at: at,
                        split: false,
                    };
                    // A part is not a planned message: it keeps its keys.
                    self.record_delivery(&delivery, None, posted.as_ref()).await;
                    delivered += end - start;
                    info!(part = %part, transactions = end - start, "part delivered");
                }
                AttemptResult::Refused { error } => {
                    let blind = delivered == 0 && refused_parts >= MAX_BLIND_REFUSALS;
                    if end - start == 1 || blind {
                        if let Err(e) = self.park_part(b, part_id, start, end, &error).await {
                            return SplitEnd::Ours(e);
                        }
                        if let Err(e) = self
                            .ports
                            .record_refused(&b.meta.endpoint_id, part_id, now())
                            .await
                        {
                            return SplitEnd::Ours(e);
                        }
                        refused += end - start;
                        refused_parts += 1;
                    } else {
                        let [first, second] = halves(start, end);
                        pending.push(second);
                        pending.push(first);
                    }
                }
                failed @ AttemptResult::Failed { .. } => return SplitEnd::Failed(failed),
            }
        }
        SplitEnd::Done { delivered, refused }
    }

    async fn park_part(
        &self,
        b: &Batch<'_>,
        part_id: uuid::Uuid,
        start: usize,
        end: usize,
        answer: &str,
    ) -> Result<String, StoreError> {
        let part = BatchMessage {
            version: BATCH_MESSAGE_VERSION,
            message_id: part_id,
            endpoint_id: b.meta.endpoint_id.clone(),
            customer_id: b.meta.customer_id.clone(),
            kind: b.meta.kind,
            created_at: b.meta.created_at.clone(),
            items: b.keys[start..end]
                .iter()
                .zip(&b.payloads[start..end])
                .map(|(key, payload)| platformsync_domain::batch::BatchEntry {
                    key: key.clone(),
                    payload: payload.clone(),
                })
                .collect(),
            plan_ref: None,
        };
        let body = serde_json::to_string(&part).map_err(|e| StoreError::Malformed {
            resource: "split part".into(),
            key: part_id.to_string(),
            message: e.to_string(),
        })?;
        let id = part_id.to_string();
        let parked = self
            .ports
            .park(&ParkBatch {
                endpoint_id: b.endpoint(),
                customer_id: b.customer(),
                message_id: &id,
                kind: b.meta.kind.wire_name(),
                created_at: &b.meta.created_at,
                reason: ParkReason::Refused.as_str(),
                attempts: 1,
                last_error: Some(answer),
                first_attempt_at: None,
                transaction_keys: &b.keys[start..end],
                parent_message_id: Some(&b.message_id),
                body: &body,
                parked_at: now(),
            })
            .await?;
        warn!(part = %id, transactions = end - start, answer, "refused part parked");
        Ok(parked)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;

    #[tokio::test]
    async fn a_refused_batch_is_split_and_the_rest_delivered_in_order() {
        let f = flow(Memory::default());
        *f.ports.refuse_containing.lock().unwrap() = Some("t0-5".into());
        let env = envelope(0, 8);
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            outcomes.push(
                f.run(std::slice::from_ref(&env), deadline()).await[0]
                    .1
                    .clone(),
            );
        }
        assert!(matches!(outcomes[0], Outcome::Retrying { .. }));
        assert!(matches!(outcomes[1], Outcome::Retrying { .. }));
        assert_eq!(
            outcomes[2],
            Outcome::Split {
                delivered: 7,
                refused: 1
            }
        );
        let posts = f.ports.posts();
        // 3 whole, then [0,4) ok, [4,8) refused, [4,6) refused, [4,5) ok,
        // [5,6) refused (parked), [6,8) ok.
        let sizes: Vec<usize> = posts.iter().map(|p| p.1).collect();
        assert_eq!(sizes, [8, 8, 8, 4, 4, 2, 1, 1, 2]);
        // Every POST is on record: the whole batch's three, then each part's
        // under its own MessageId, naming the batch it is of.
        let log = f.ports.attempt_log.lock().unwrap().clone();
        assert_eq!(log.len(), posts.len(), "{log:?}");
        let parent = uuid::Uuid::from_u128(1);
        for (record, post) in log.iter().zip(&posts) {
            assert_eq!(record.message_id.to_string(), post.0);
            assert_eq!(record.transactions as usize, post.1);
            let is_part = record.message_id != parent;
            assert_eq!(record.parent_message_id.is_some(), is_part, "{record:?}");
            if is_part {
                assert_eq!(record.parent_message_id, Some(parent));
            }
        }
        // Issue 16: the three delivered parts' POSTs ride on their ledger
        // writes; only the six refused POSTs are records of their own.
        assert_eq!(*f.ports.try_writes.lock().unwrap(), 6);
        let outcomes: Vec<&str> = log.iter().map(|r| r.outcome.as_str()).collect();
        assert_eq!(
            outcomes,
            [
                "refused",
                "refused",
                "refused",
                "delivered",
                "refused",
                "refused",
                "delivered",
                "refused",
                "delivered"
            ]
        );
        let parked = f.ports.parked();
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].1, "refused");
        assert_eq!(parked[0].2, "HTTP 422: invalid");
        assert_eq!(f.ports.notice_kinds(), ["refused"]);
        // Derived ids are stable, and the parent is done: a redelivery posts nothing.
        let again = f.run(std::slice::from_ref(&env), deadline()).await;
        assert_eq!(again[0].1, Outcome::AlreadyDelivered);
        assert_eq!(f.ports.posts().len(), posts.len());
    }

    #[tokio::test]
    async fn a_split_cut_short_resumes_without_posting_done_parts_again() {
        let f = flow(Memory::default());
        *f.ports.refuse_containing.lock().unwrap() = Some("t0-1".into());
        let env = envelope(0, 4);
        for _ in 0..2 {
            f.run(std::slice::from_ref(&env), deadline()).await;
        }
        // Third refusal splits: [0,2) refused... then a 503 on a part.
        f.ports.answer(Posted::Answer(AttemptResult::Refused {
            error: "HTTP 422: invalid".into(),
        }));
        *f.ports.refuse_containing.lock().unwrap() = None;
        f.ports.answer(Posted::Answer(AttemptResult::Delivered)); // [0,2)
        f.ports.answer(failed()); // [2,4)
        let out = f.run(std::slice::from_ref(&env), deadline()).await;
        assert!(matches!(out[0].1, Outcome::Retrying { .. }), "{out:?}");
        let before = f.ports.posts().len();
        let out = f.run(std::slice::from_ref(&env), deadline()).await;
        assert_eq!(
            out[0].1,
            Outcome::Split {
                delivered: 4,
                refused: 0
            }
        );
        let posts = f.ports.posts();
        assert_eq!(
            posts.len(),
            before + 1,
            "only the unfinished part: {posts:?}"
        );
    }
}
