//! What the flow reads and records: the whole event's ledger entries and
//! endpoint states up front, the ledger check of one batch, the delivered
//! batch's ledger entry with the POST that delivered it (one write), and
//! every other attempt's record (support's view).

use std::collections::HashMap;
use std::time::Duration;

use platformsync_aws::health::Versioned;
use platformsync_aws::ledger::{AttemptRecord, DeliveredAttempt, Delivery, Recorded};
use platformsync_delivery::incident::rfc3339;
use platformsync_domain::batch::PlanRef;
use platformsync_domain::endpoint::EndpointId;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::attempting::Tried;
use crate::flow::{Batch, Envelope, Flow, now};
use crate::outcome::Outcome;
use crate::policy::AttemptResult;
use crate::ports::{BatchKey, Ports};

/// What [`Flow::run`] read for the whole event up front.
#[derive(Debug, Default)]
pub(crate) struct Known {
    pub lookups: HashMap<BatchKey, platformsync_aws::ledger::Lookup>,
    pub health: HashMap<EndpointId, Versioned>,
}

impl<P: Ports> Flow<P> {
    /// The whole event's ledger look-ups and endpoint states, two calls
    /// side by side instead of two per batch. What fails here is looked up
    /// again per batch (and deferred there if it fails again).
    pub(crate) async fn prefetch(&self, messages: &[Envelope]) -> Known {
        // Only what the look-ups need: the items are borrowed, not copied.
        let head = |body: &str| -> Option<BatchKey> {
            let fields: HashMap<&str, &RawValue> = serde_json::from_str(body).ok()?;
            let field = |name: &str| {
                fields
                    .get(name)
                    .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
            };
            Some((
                EndpointId::parse(&field("EndpointId")?).ok()?,
                Uuid::parse_str(&field("MessageId")?).ok()?,
            ))
        };
        let heads: Vec<BatchKey> = messages.iter().filter_map(|m| head(&m.body)).collect();
        // A MessageId twice in one event (a batch parked twice and replayed
        // twice): the second must see the first's delivery, so both are
        // looked up when their turn comes.
        let mut seen = std::collections::HashSet::new();
        let twice: std::collections::HashSet<BatchKey> =
            heads.iter().filter(|h| !seen.insert(*h)).cloned().collect();
        if heads.is_empty() {
            return Known::default();
        }
        let mut endpoints: Vec<EndpointId> = heads.iter().map(|(e, _)| e.clone()).collect();
        endpoints.sort();
        endpoints.dedup();
        let (lookups, health) = futures_util::future::join(
            self.ports.lookup_many(&heads),
            self.ports.load_many(&endpoints),
        )
        .await;
        Known {
            lookups: lookups
                .inspect_err(|e| warn!(error = %e, "the event's ledger look-up failed; per batch"))
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| !twice.contains(k))
                .collect(),
            health: health
                .inspect_err(|e| warn!(error = %e, "the event's health load failed; per endpoint"))
                .unwrap_or_default(),
        }
    }

    /// Step 1: a batch the ledger has (a redelivery after a crash) is
    /// acknowledged without a POST.
    pub(crate) async fn ledger_check(&self, b: &Batch<'_>, known: &Known) -> Result<(), Outcome> {
        let key = (b.meta.endpoint_id.clone(), b.meta.message_id);
        let lookup = match known.lookups.get(&key) {
            Some(lookup) => Ok(lookup.clone()),
            None => {
                self.ports
                    .lookup(&b.meta.endpoint_id, b.meta.message_id)
                    .await
            }
        };
        match lookup {
            Ok(lookup) if lookup.delivered => {
                info!("already in the ledger: acknowledged without posting");
                Err(Outcome::AlreadyDelivered)
            }
            Ok(_) => Ok(()),
            Err(e) => Err(self.ours(b, "ledger lookup", &e).await),
        }
    }

    /// The delivered batch in the ledger, with the POST that delivered it
    /// when that is still to record (`record_pending`).
    pub(crate) async fn record_delivered(
        &self,
        b: &Batch<'_>,
        tried: &Tried,
        split: bool,
        record_pending: bool,
    ) {
        let delivery = Delivery {
            endpoint_id: &b.meta.endpoint_id,
            message_id: b.meta.message_id,
            customer_id: &b.meta.customer_id,
            kind: b.meta.kind,
            transaction_keys: &b.keys,
            attempts: tried.attempt.max(1),
            first_attempt_at: tried.first_attempt_at,
            delivered_at: now(),
            split,
        };
        let posted = record_pending.then(|| DeliveredAttempt {
            attempt: tried.attempt.max(1),
            at: tried.started_at,
            latency_ms: millis(tried.latency),
            parent_message_id: None,
        });
        // The plan reference (when the fan-out planned it) is stored
        // instead of the keys: the plan already holds them.
        self.record_delivery(&delivery, b.meta.plan_ref.as_ref(), posted.as_ref())
            .await;
    }

    /// A delivered batch or split part in the ledger, once, with `posted`,
    /// the POST that delivered it: one write. That POST gets a record of its
    /// own only when the ledger item is another's (another invocation
    /// recorded the batch first), so that every POST stays on record. When
    /// the write failed, the POST is logged instead: a second write after a
    /// failed one would run past the time kept for bookkeeping.
    pub(crate) async fn record_delivery(
        &self,
        delivery: &Delivery<'_>,
        plan_ref: Option<&PlanRef>,
        posted: Option<&DeliveredAttempt>,
    ) {
        let recorded = self.ports.record_delivery(delivery, plan_ref, posted).await;
        match &recorded {
            Ok(Recorded::New) => return,
            // Or our own write, applied with its answer lost and found by
            // the SDK's retry: `attempts` lists such a POST once.
            Ok(Recorded::AlreadyThere) => {
                warn!("another invocation recorded this batch first: it was posted twice")
            }
            // Still acknowledged: it was delivered. Should SQS
            // redeliver it, the receiver drops the repeat by its
            // MessageId.
            Err(e) => {
                error!(
                    error = %e,
                    attempt = posted.map(|a| a.attempt),
                    at = posted.map(|a| rfc3339(a.at)),
                    latency_ms = posted.map(|a| a.latency_ms),
                    "delivered, but the ledger write failed"
                );
                return;
            }
        }
        if let Some(a) = posted {
            let record = AttemptRecord {
                endpoint_id: delivery.endpoint_id.clone(),
                message_id: delivery.message_id,
                attempt: a.attempt,
                at: rfc3339(a.at),
                outcome: "delivered".to_owned(),
                latency_ms: a.latency_ms,
                error: None,
                transactions: u32::try_from(delivery.transaction_keys.len()).unwrap_or(u32::MAX),
                parent_message_id: a.parent_message_id,
            };
            self.write_attempt(&record, a.at).await;
        }
    }

    /// The record of the batch's own POST (not a split part's).
    pub(crate) async fn record_tried(&self, b: &Batch<'_>, tried: &Tried) {
        self.record_attempt(
            b,
            None,
            tried.attempt,
            tried.started_at,
            tried.latency,
            &tried.result,
        )
        .await;
    }

    /// Records one attempt; a failure is logged, never fails the batch
    /// (support's view, not delivery state).
    pub(crate) async fn record_attempt(
        &self,
        b: &Batch<'_>,
        part: Option<(Uuid, usize)>,
        attempt: u32,
        at: OffsetDateTime,
        latency: Duration,
        result: &AttemptResult,
    ) {
        let (outcome, error) = match result {
            AttemptResult::Delivered => ("delivered", None),
            AttemptResult::Failed { error, .. } => ("failed", Some(error.clone())),
            AttemptResult::Refused { error } => ("refused", Some(error.clone())),
        };
        // A split part: under its own MessageId, naming the batch it is of.
        let (message_id, transactions, parent) = match part {
            Some((id, len)) => (id, len, Some(b.meta.message_id)),
            None => (b.meta.message_id, b.keys.len(), None),
        };
        let record = AttemptRecord {
            endpoint_id: b.meta.endpoint_id.clone(),
            message_id,
            attempt: attempt.max(1),
            at: rfc3339(at),
            outcome: outcome.to_owned(),
            latency_ms: millis(latency),
            error,
            transactions: u32::try_from(transactions).unwrap_or(u32::MAX),
            parent_message_id: parent,
        };
        self.write_attempt(&record, at).await;
    }

    async fn write_attempt(&self, record: &AttemptRecord, at: OffsetDateTime) {
        if let Err(e) = self.ports.record_attempt(record, at).await {
            warn!(error = %e, "the attempt record was not written");
        }
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    /// Issue 16: an event's ledger look-ups and endpoint states are read in
    /// one call each, and a delivery to a healthy endpoint writes its state
    /// only when something material changed (here: the first delivery time).
    #[tokio::test]
    async fn an_event_is_looked_up_at_once_and_healthy_deliveries_skip_the_state_write() {
        let f = flow(Memory::default());
        let envs: Vec<Envelope> = (0..4).map(|i| envelope(i, 2)).collect();
        let out = f.run(&envs, deadline()).await;
        assert!(out.iter().all(|(_, o)| *o == Outcome::Delivered), "{out:?}");
        assert_eq!(*f.ports.batch_lookups.lock().unwrap(), 1);
        assert_eq!(*f.ports.single_loads.lock().unwrap(), 0);
        assert_eq!(
            *f.ports.saves.lock().unwrap(),
            1,
            "the first delivery time is written, the next three change nothing"
        );
        // A failure is always written.
        f.ports.answer(failed());
        let again = [envelope(9, 1)];
        f.run(&again, deadline()).await;
        assert_eq!(*f.ports.saves.lock().unwrap(), 2);
        assert_eq!(f.ports.state("ep").consecutive_failures, 1);
    }

    /// A delivered batch whose ledger write fails is still acknowledged, and
    /// its POST goes to the log, not to a second write: after a failed write
    /// a second one would run past the time kept for bookkeeping.
    #[tokio::test]
    async fn a_failed_ledger_write_costs_no_second_write() {
        let f = flow(Memory::default());
        *f.ports.ledger_writes_down.lock().unwrap() = true;
        let envs = [envelope(0, 2)];
        let out = f.run(&envs, deadline()).await;
        assert_eq!(out[0].1, Outcome::Delivered);
        assert_eq!(f.ports.posts().len(), 1);
        assert_eq!(*f.ports.try_writes.lock().unwrap(), 0);
        assert_eq!(f.ports.deleted().len(), 1, "acknowledged");
    }

    /// A MessageId twice in one event: the second is looked up when its turn
    /// comes and sees the first's delivery (posted once).
    #[tokio::test]
    async fn a_batch_twice_in_one_event_is_posted_once() {
        let f = flow(Memory::default());
        let envs = [envelope(0, 1), replayed(0)];
        let out = f.run(&envs, deadline()).await;
        assert_eq!(out[0].1, Outcome::Delivered);
        assert_eq!(out[1].1, Outcome::AlreadyDelivered);
        assert_eq!(f.ports.posts().len(), 1);
    }
}
