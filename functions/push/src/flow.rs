//! The flow of one invocation, over the [ports](crate::ports): messages
//! grouped by endpoint (the FIFO group), groups concurrently, each group in
//! order (`group.rs`), and for each batch, in order:
//!
//! parse (`parsing.rs`) → ledger (delivered before? acknowledge;
//! `bookkeeping.rs`) → the endpoint's incident state → gate (disabled,
//! expired, or new while resuming: park; `gate.rs`, `parking.rs`) → attempt
//! (`attempting.rs`) → policy → split (`splitting.rs`) → save the state →
//! retry / acknowledge / park → notices (`effects.rs`).
//!
//! A group's acknowledged messages are deleted as soon as the group is done,
//! not when the invocation's slowest endpoint is. A failure of our own AWS
//! calls is never an attempt: the batch backs off (escalating, capped) and
//! the rest of its group is handed back, the state untouched
//! (`our_failures.rs`).

use std::time::{Duration, Instant};

use platformsync_aws::health::Versioned;
use platformsync_domain::batch::BatchMessage;
use platformsync_domain::endpoint::{CustomerId, EndpointId};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tracing::{Instrument, error, info_span};

use crate::bookkeeping::Known;
use crate::group::group_in_order;
use crate::outcome::Outcome;
use crate::parsing::parse_batch;
use crate::policy::Rules;
use crate::ports::Ports;

/// One received message, as the flow sees it (no SQS event types below the
/// edge).
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// The queue's message id (what a batch item failure names).
    pub id: String,
    pub receipt: Option<String>,
    /// The FIFO group (= endpoint).
    pub group: Option<String>,
    pub body: String,
    /// `ApproximateReceiveCount`.
    pub receive_count: u32,
    /// `SentTimestamp`: when it was enqueued.
    pub sent_at: Option<OffsetDateTime>,
    /// Replayed from the parked store (the `Replayed` message attribute).
    pub replayed: bool,
}

/// The flow's timing, besides the policy's rules.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// One POST at most.
    pub attempt_timeout: Duration,
    /// Kept after an attempt for the ledger, health, queue and notices.
    pub after_attempt: Duration,
    /// Our own failures back off from this, doubling per receive...
    pub our_backoff_base: Duration,
    /// ... up to this: receives stay far below `maxReceiveCount` for the
    /// queue's whole retention.
    pub our_backoff_cap: Duration,
}

pub struct Flow<P> {
    pub ports: P,
    pub rules: Rules,
    pub timing: Timing,
}

/// One parsed batch, its transactions split for rendering.
pub(crate) struct Batch<'a> {
    pub env: &'a Envelope,
    pub receipt: &'a str,
    pub meta: BatchMessage,
    pub message_id: String,
    pub keys: Vec<String>,
    pub payloads: Vec<Box<RawValue>>,
}

impl Batch<'_> {
    pub fn endpoint(&self) -> &EndpointId {
        &self.meta.endpoint_id
    }
    pub fn customer(&self) -> &CustomerId {
        &self.meta.customer_id
    }
}

pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

impl<P: Ports> Flow<P> {
    /// One whole attempt and its bookkeeping: no batch (or split part)
    /// starts with less time than this left.
    pub(crate) fn needs(&self) -> Duration {
        self.timing.attempt_timeout + self.timing.after_attempt
    }

    /// Handles one event's messages; returns each message's outcome, in
    /// event order within each group.
    pub async fn run<'a>(
        &self,
        messages: &'a [Envelope],
        deadline: Instant,
    ) -> Vec<(&'a Envelope, Outcome)> {
        let groups = group_in_order(messages);
        let known = self.prefetch(messages).await;
        futures_util::future::join_all(groups.into_iter().map(|g| self.group(g, &known, deadline)))
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// One message: parse, then the batch under its correlation id.
    pub(crate) async fn one(
        &self,
        env: &Envelope,
        health: &mut Option<Versioned>,
        known: &Known,
        deadline: Instant,
    ) -> Outcome {
        let Some(receipt) = env.receipt.as_deref() else {
            error!(sqs_message_id = %env.id, "message without a receipt handle");
            return Outcome::HandedBack;
        };
        let mut meta = match parse_batch(&env.body) {
            Ok(batch) => batch,
            Err(reason) => return self.malformed(env, receipt, &reason).await,
        };
        let message_id = meta.message_id.to_string();
        let span = info_span!(
            "batch",
            message_id = %message_id,
            endpoint = %meta.endpoint_id,
            customer = %meta.customer_id,
        );
        // Moved, not cloned: a batch of 1000 is ~0.4 MB, once is enough.
        let (keys, payloads) = std::mem::take(&mut meta.items)
            .into_iter()
            .map(|e| (e.key, e.payload))
            .unzip();
        let batch = Batch {
            env,
            receipt,
            meta,
            message_id,
            keys,
            payloads,
        };
        self.batch(batch, health, known, deadline)
            .instrument(span)
            .await
    }

    /// One batch: the steps in order; a step that ends the batch early
    /// hands back its outcome (`Err`).
    async fn batch(
        &self,
        b: Batch<'_>,
        health: &mut Option<Versioned>,
        known: &Known,
        deadline: Instant,
    ) -> Outcome {
        match self.steps(&b, health, known, deadline).await {
            Ok(outcome) | Err(outcome) => outcome,
        }
    }

    async fn steps(
        &self,
        b: &Batch<'_>,
        health: &mut Option<Versioned>,
        known: &Known,
        deadline: Instant,
    ) -> Result<Outcome, Outcome> {
        // 1. Delivered before (a redelivery after a crash)? Then no POST.
        self.ledger_check(b, known).await?;
        // 2. The endpoint's incident state, once per group.
        let h = self.incident_state(b, health, known).await?;
        // 3. Settings; a disabled or expired endpoint's batch is parked, and
        // a new one while the endpoint resumes.
        let (settings, started_at) = self.gate(b, h).await?;
        // 4. The attempt. The state as stored, to skip a write that would
        // change nothing material.
        let stored = h.state.clone();
        let tried = self
            .attempt(b, h, settings.as_ref(), started_at, deadline)
            .await?;
        let effects = self.decide(b, h, &tried, &tried.result);
        // 5. A batch the endpoint keeps refusing is split.
        let (effects, split) = self
            .split_if_refused(b, settings.as_ref(), h, effects, &tried, deadline)
            .await?;
        // 6. The state first (conditional), then the queue, then notices.
        Ok(self.apply(b, h, &stored, &effects, &tried, split).await)
    }
}
