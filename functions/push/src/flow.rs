//! The flow of one invocation, over the [ports](crate::ports): messages
//! grouped by endpoint (the FIFO group), groups concurrently, each group in
//! order, and for each batch:
//!
//! parse → ledger (delivered before? acknowledge) → the endpoint's incident
//! state → gate (disabled, expired, or new while resuming: park) → attempt → policy → save the
//! state → retry / acknowledge / park / split → notices.
//!
//! A group's acknowledged messages are deleted as soon as the group is done,
//! not when the invocation's slowest endpoint is. A failure of our own AWS
//! calls is never an attempt: the batch backs off (escalating, capped) and
//! the rest of its group is handed back, the state untouched.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use platformsync_aws::StoreError;
use platformsync_aws::health::{Saved, Versioned};
use platformsync_aws::ledger::{AttemptRecord, Delivery};
use platformsync_aws::notifier::NotificationKind;
use platformsync_aws::parked::ParkBatch;
use platformsync_aws::redelivery::DeadLetter;
use platformsync_delivery::incident::rfc3339;
use platformsync_delivery::retry::seed_for;
use platformsync_domain::batch::{BATCH_MESSAGE_VERSION, BatchMessage};
use platformsync_domain::endpoint::EndpointSettings;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tracing::{Instrument, error, info, info_span, warn};

use crate::attempt::Posted;
use crate::policy::{self, AttemptResult, Effects, Gate, Next, Notice, ParkReason, Rules};
use crate::ports::{BatchKey, NoticeInput, Outgoing, Ports};

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

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered 200; recorded in the ledger.
    Delivered,
    /// The ledger already had it: acknowledged without posting.
    AlreadyDelivered,
    /// Kept aside (parked) for operations to replay.
    Parked { reason: &'static str },
    /// Split; its parts were delivered or (refused ones) parked.
    Split { delivered: usize, refused: usize },
    /// Not a batch: moved to the dead-letter queue.
    DeadLettered { reason: &'static str },
    /// The attempt failed; the message comes back after this delay.
    Retrying { delay: Duration },
    /// Something of ours failed: no attempt counted, back after this delay.
    Deferred { delay: Duration },
    /// Not processed (an earlier batch of its endpoint stopped, or too little
    /// time was left): visible again at once, order kept by the FIFO group.
    HandedBack,
}

impl Outcome {
    /// Acknowledged outcomes are deleted from the queue.
    pub fn is_acknowledged(&self) -> bool {
        matches!(
            self,
            Outcome::Delivered
                | Outcome::AlreadyDelivered
                | Outcome::Parked { .. }
                | Outcome::Split { .. }
                | Outcome::DeadLettered { .. }
        )
    }

    pub fn metric(&self) -> &'static str {
        match self {
            Outcome::Delivered => "Delivered",
            Outcome::AlreadyDelivered => "AlreadyDelivered",
            // Alarmed: operations replay parked batches.
            Outcome::Parked { .. } => "Parked",
            Outcome::Split { .. } => "Split",
            Outcome::DeadLettered {
                reason: "retention",
            } => "RetentionGuard",
            Outcome::DeadLettered { .. } => "Malformed",
            Outcome::Retrying { .. } => "FailedAttempts",
            // Alarmed: our own AWS dependencies are failing.
            Outcome::Deferred { .. } => "OurFailures",
            Outcome::HandedBack => "HandedBack",
        }
    }
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

/// What [`Flow::run`] read for the whole event up front.
#[derive(Debug, Default)]
struct Known {
    lookups: HashMap<BatchKey, platformsync_aws::ledger::Lookup>,
    health: HashMap<String, Versioned>,
}

pub struct Flow<P> {
    pub ports: P,
    pub rules: Rules,
    pub timing: Timing,
}

/// One parsed batch, its transactions split for rendering.
struct Batch<'a> {
    env: &'a Envelope,
    receipt: &'a str,
    meta: BatchMessage,
    message_id: String,
    keys: Vec<String>,
    payloads: Vec<Box<RawValue>>,
}

impl Batch<'_> {
    fn endpoint(&self) -> &str {
        self.meta.endpoint_id.as_str()
    }
    fn customer(&self) -> &str {
        self.meta.customer_id.as_str()
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

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

/// Messages grouped by FIFO group, groups in order of first appearance,
/// messages in event order. A message without a group is its own group.
pub fn group_in_order(records: &[Envelope]) -> Vec<Vec<&Envelope>> {
    let mut groups: Vec<Vec<&Envelope>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for message in records {
        match message.group.as_deref().filter(|g| !g.is_empty()) {
            Some(group) => match index.get(group) {
                Some(&i) => groups[i].push(message),
                None => {
                    index.insert(group, groups.len());
                    groups.push(vec![message]);
                }
            },
            None => groups.push(vec![message]),
        }
    }
    groups
}

fn notification_kind(notice: Notice) -> NotificationKind {
    match notice {
        Notice::Failing => NotificationKind::Failing,
        Notice::Expired => NotificationKind::Expired,
        Notice::Recovered => NotificationKind::Recovered,
    }
}

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

/// The delivery queue keeps messages 14 days. A batch our own outage has
/// kept this long is moved to the dead-letter queue (another 14 days, its
/// reason `retention`) rather than left for SQS to delete: the one path that
/// does not need DynamoDB, which may be what is failing.
pub const RETENTION_GUARD: Duration = Duration::from_secs(12 * 24 * 3600);

/// Most refused parts in a row, with nothing delivered yet, before the rest
/// is parked in larger parts: an endpoint refusing everything costs a few
/// dozen POSTs per batch, not one per transaction.
const MAX_BLIND_REFUSALS: usize = 4;

impl<P: Ports> Flow<P> {
    fn needs(&self) -> Duration {
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

    /// The whole event's ledger look-ups and endpoint states, two calls
    /// side by side instead of two per batch. What fails here is looked up
    /// again per batch (and deferred there if it fails again).
    async fn prefetch(&self, messages: &[Envelope]) -> Known {
        // Only what the look-ups need: the items are borrowed, not copied.
        let head = |body: &str| -> Option<BatchKey> {
            let fields: HashMap<&str, &RawValue> = serde_json::from_str(body).ok()?;
            let field = |name: &str| {
                fields
                    .get(name)
                    .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
            };
            Some((field("EndpointId")?, field("MessageId")?))
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
        let mut endpoints: Vec<String> = heads.iter().map(|(e, _)| e.clone()).collect();
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

    /// One endpoint's messages in order, stopping at the first that is not
    /// acknowledged; the acknowledged ones are deleted at once.
    async fn group<'a>(
        &self,
        messages: Vec<&'a Envelope>,
        known: &Known,
        deadline: Instant,
    ) -> Vec<(&'a Envelope, Outcome)> {
        let mut outcomes = Vec::with_capacity(messages.len());
        let mut health: Option<Versioned> = None;
        for (i, message) in messages.iter().enumerate() {
            let time_left = deadline.saturating_duration_since(Instant::now());
            let outcome = if time_left < self.needs() {
                info!(
                    left_ms = time_left.as_millis() as u64,
                    "too little time left for a whole attempt"
                );
                Outcome::HandedBack
            } else {
                self.one(message, &mut health, known, deadline).await
            };
            let stop = !outcome.is_acknowledged();
            let handed_back = outcome == Outcome::HandedBack;
            outcomes.push((*message, outcome));
            if stop {
                // FIFO: the rest of this endpoint's batches must not overtake
                // the one that stopped. Make them visible at once; the group
                // stays locked by the stopped one while it is invisible.
                let start = if handed_back { i } else { i + 1 };
                let rest = &messages[start..];
                let receipts: Vec<&str> =
                    rest.iter().filter_map(|m| m.receipt.as_deref()).collect();
                if !receipts.is_empty()
                    && let Err(e) = self.ports.release(&receipts).await
                {
                    // They come back after the queue's visibility timeout.
                    warn!(error = %e, count = receipts.len(), "could not hand back unprocessed batches");
                }
                outcomes.extend(
                    rest[usize::from(handed_back)..]
                        .iter()
                        .map(|m| (*m, Outcome::HandedBack)),
                );
                break;
            }
        }
        // Each endpoint on its own clock: acknowledged now, not when the
        // invocation's slowest endpoint is done.
        let done: Vec<&str> = outcomes
            .iter()
            .filter(|(_, o)| o.is_acknowledged())
            .filter_map(|(m, _)| m.receipt.as_deref())
            .collect();
        if !done.is_empty()
            && let Err(e) = self.ports.delete(&done).await
        {
            // The invocation's answer acknowledges them anyway.
            warn!(error = %e, "could not delete delivered batches early");
        }
        outcomes
    }

    /// One message: parse, then the batch under its correlation id.
    async fn one(
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

    async fn batch(
        &self,
        b: Batch<'_>,
        health: &mut Option<Versioned>,
        known: &Known,
        deadline: Instant,
    ) -> Outcome {
        // 1. Delivered before (a redelivery after a crash)? Then no POST.
        let key = (b.endpoint().to_owned(), b.message_id.clone());
        let lookup = match known.lookups.get(&key) {
            Some(lookup) => Ok(lookup.clone()),
            None => self.ports.lookup(b.endpoint(), &b.message_id).await,
        };
        match lookup {
            Ok(lookup) if lookup.delivered => {
                info!("already in the ledger: acknowledged without posting");
                return Outcome::AlreadyDelivered;
            }
            Ok(_) => {}
            Err(e) => return self.ours(&b, "ledger lookup", &e).await,
        }
        // 2. The endpoint's incident state, once per group.
        if health.is_none()
            && let Some(known) = known.health.get(b.endpoint())
        {
            *health = Some(known.clone());
        }
        if health.is_none() {
            match self.ports.load(b.endpoint()).await {
                Ok(loaded) => *health = Some(loaded),
                Err(e) => return self.ours(&b, "loading the endpoint's health", &e).await,
            }
        }
        let Some(h) = health.as_mut() else {
            return Outcome::HandedBack;
        };
        // 3. Settings; a disabled or expired endpoint's batch is parked.
        let settings = match self
            .ports
            .endpoint(&b.meta.customer_id, &b.meta.endpoint_id)
            .await
        {
            Ok(settings) => settings,
            Err(e) => return self.ours(&b, "reading the endpoint's settings", &e).await,
        };
        let disabled = settings.as_ref().is_some_and(|s| !s.enabled);
        let started_at = now();
        // A resuming endpoint: new batches wait behind the replayed backlog.
        for _ in 0..2 {
            let place = policy::backlog(h.resuming, b.env.replayed);
            let Gate::Park(reason) = policy::gate(&h.state, disabled, place, started_at) else {
                break;
            };
            let attempts = h.state.attempts_of(&b.message_id);
            let last_error = h.state.last_error.clone();
            match self
                .park(&b, reason, attempts, last_error.as_deref(), h)
                .await
            {
                Some(outcome) => return outcome,
                // The replay loop finished meanwhile (`h` reloaded): the
                // backlog is delivered, this batch goes on.
                None => info!("the endpoint stopped resuming: not parked behind its backlog"),
            }
        }
        // 4. The attempt. The state as stored, to skip a write that would
        // change nothing material.
        let stored = h.state.clone();
        let credited =
            h.state
                .start_attempt(&b.message_id, started_at, self.rules.lateness_tolerance);
        if !credited.is_zero() {
            warn!(
                credited_s = credited.as_secs(),
                "retry started late: the delay was ours, credited to the endpoint's window"
            );
        }
        let timer = Instant::now();
        let splitting = h.state.refusals_of(&b.message_id) >= self.rules.split_after_refusals;
        let result = match (&settings, splitting) {
            (None, _) => AttemptResult::Failed {
                error: "endpoint is not configured (deleted?)".into(),
                retry_after: None,
            },
            (Some(settings), false) => {
                let outgoing = Outgoing {
                    message_id: b.meta.message_id,
                    kind: b.meta.kind,
                    payloads: &b.payloads,
                };
                match self.ports.post(settings, &outgoing, deadline).await {
                    Posted::Answer(result) => result,
                    Posted::Ours(e) => return self.ours(&b, "before posting", &e).await,
                }
            }
            // A split that an earlier invocation started: resume it.
            (Some(_), true) => AttemptResult::Refused {
                error: h.state.last_error.clone().unwrap_or_default(),
            },
        };
        let attempt = h.state.attempts_of(&b.message_id);
        match &result {
            AttemptResult::Delivered => info!(
                attempt,
                transactions = b.keys.len(),
                duration_ms = timer.elapsed().as_millis() as u64,
                "delivered"
            ),
            AttemptResult::Failed { error, .. } | AttemptResult::Refused { error } => warn!(
                attempt,
                error = %error,
                duration_ms = timer.elapsed().as_millis() as u64,
                "attempt failed"
            ),
        }
        // A real POST (not a resumed split): on record for `platformsync
        // attempts`. Written beside the ledger write of a delivered batch
        // (one round trip less after the POST), before anything else.
        let latency = timer.elapsed();
        let posted = settings.is_some() && !splitting;
        let record = async {
            if posted {
                self.record_attempt(&b, None, attempt, started_at, latency, &result)
                    .await;
            }
        };
        let record_first = !matches!(result, AttemptResult::Delivered);
        let record = if record_first {
            record.await;
            None
        } else {
            Some(record)
        };
        let seed = seed_for(&b.message_id, h.state.consecutive_failures);
        let first_attempt_at = h
            .state
            .head
            .as_ref()
            .map_or(started_at, |head| head.first_attempt_at);
        let mut effects = policy::on_attempt(
            &mut h.state,
            &b.message_id,
            started_at,
            &result,
            now(),
            seed,
            &self.rules,
        );

        // 5. A batch the endpoint keeps refusing is split.
        let mut split = None;
        if effects.next == Next::Split {
            let Some(settings) = settings.as_ref() else {
                return Outcome::HandedBack;
            };
            match self.split(&b, settings, h, deadline).await {
                SplitEnd::Done { delivered, refused } => {
                    split = Some((delivered, refused));
                    effects = policy::on_attempt(
                        &mut h.state,
                        &b.message_id,
                        started_at,
                        &AttemptResult::Delivered,
                        now(),
                        seed,
                        &self.rules,
                    );
                }
                SplitEnd::Failed(result) => {
                    effects = policy::on_attempt(
                        &mut h.state,
                        &b.message_id,
                        started_at,
                        &result,
                        now(),
                        seed,
                        &self.rules,
                    );
                }
                SplitEnd::Ours(e) => {
                    self.save(&b, h).await;
                    return self.ours(&b, "splitting", &e).await;
                }
                SplitEnd::OutOfTime => {
                    // The refusals stay on record: the next invocation resumes.
                    self.save(&b, h).await;
                    return self.retry(&b, Duration::from_secs(1)).await;
                }
            }
        }

        // 6. The state first (conditional), then the queue, then notices.
        let saved = if policy::needs_save(&stored, &h.state, now(), policy::DELIVERED_AT_REFRESH) {
            self.save(&b, h).await
        } else {
            true
        };
        let record = match record {
            Some(record) if effects.next != Next::Acknowledge => {
                record.await;
                None
            }
            record => record,
        };
        let outcome = match effects.next {
            Next::Acknowledge => {
                let delivery = Delivery {
                    endpoint_id: &b.meta.endpoint_id,
                    message_id: b.meta.message_id,
                    customer_id: &b.meta.customer_id,
                    kind: b.meta.kind,
                    transaction_keys: &b.keys,
                    attempts: attempt.max(1),
                    first_attempt_at,
                    delivered_at: now(),
                    split: split.is_some(),
                };
                // The plan reference (when the fan-out planned it) is stored
                // instead of the keys: the plan already holds them.
                let (recorded, ()) = futures_util::future::join(
                    self.ports
                        .record_delivery(&delivery, b.meta.plan_ref.as_ref()),
                    async {
                        if let Some(record) = record {
                            record.await;
                        }
                    },
                )
                .await;
                match recorded {
                    Ok(platformsync_aws::ledger::Recorded::New) => {}
                    Ok(platformsync_aws::ledger::Recorded::AlreadyThere) => {
                        warn!("another invocation recorded this batch first: it was posted twice")
                    }
                    // Still acknowledged: it was delivered. Should SQS
                    // redeliver it, the receiver drops the repeat by its
                    // MessageId.
                    Err(e) => error!(error = %e, "delivered, but the ledger write failed"),
                }
                match split {
                    Some((delivered, refused)) => Outcome::Split { delivered, refused },
                    None => Outcome::Delivered,
                }
            }
            Next::RetryIn(delay) => self.retry(&b, delay).await,
            Next::Park(reason) => {
                let error = h.state.last_error.clone();
                let outcome = self
                    .park(&b, reason, attempt, error.as_deref(), h)
                    .await
                    .unwrap_or(Outcome::HandedBack);
                if effects.park_rest {
                    warn!(
                        failing_since = ?h.state.failing_since.map(rfc3339),
                        "the endpoint's incident outlasted the window: its queued batches are parked"
                    );
                }
                outcome
            }
            Next::Split => self.retry(&b, Duration::from_secs(1)).await,
        };
        if saved {
            self.notices(&b, h, &effects, attempt).await;
        }
        if let Some((_, refused)) = split
            && refused > 0
        {
            self.notice(&b, h, NotificationKind::Refused, attempt, Some(refused))
                .await;
        }
        outcome
    }

    /// Saves the state; on a conflict (another invocation wrote since), the
    /// newer state is kept and this attempt's notices are not sent.
    async fn save(&self, b: &Batch<'_>, h: &mut Versioned) -> bool {
        match self
            .ports
            .save(b.endpoint(), b.customer(), &h.state, h.version)
            .await
        {
            Ok(Saved::Written { version }) => {
                h.version = version;
                true
            }
            Ok(Saved::Conflict) => {
                warn!("the endpoint's health changed under this invocation: reloading it");
                if let Ok(fresh) = self.ports.load(b.endpoint()).await {
                    *h = fresh;
                }
                false
            }
            Err(e) => {
                error!(error = %e, "could not save the endpoint's health");
                false
            }
        }
    }

    async fn notices(&self, b: &Batch<'_>, h: &mut Versioned, effects: &Effects, attempts: u32) {
        for notice in &effects.notices {
            let kind = notification_kind(*notice);
            if !self.notice(b, h, kind, attempts, None).await {
                // Un-claim it, so the incident's next attempt tries again.
                let mut released = false;
                if let Some(incident) = &mut h.state.incident {
                    match notice {
                        Notice::Failing => incident.failing_notified = false,
                        Notice::Expired => incident.expired_notified = false,
                        Notice::Recovered => {}
                    }
                    released = true;
                }
                if released {
                    self.save(b, h).await;
                }
            }
        }
    }

    async fn notice(
        &self,
        b: &Batch<'_>,
        h: &Versioned,
        kind: NotificationKind,
        attempts: u32,
        refused: Option<usize>,
    ) -> bool {
        let incident = h.state.incident.as_ref();
        let input = NoticeInput {
            kind,
            customer_id: b.customer().to_owned(),
            endpoint_id: b.endpoint().to_owned(),
            incident_id: incident.map(|i| i.id()).unwrap_or_default(),
            failing_since: h
                .state
                .failing_since
                .or(incident.map(|i| i.opened_at))
                .map(rfc3339)
                .unwrap_or_default(),
            message_id: b.message_id.clone(),
            last_error: h
                .state
                .last_error
                .clone()
                .filter(|_| kind != NotificationKind::Recovered),
            attempts,
            refused,
        };
        match self.ports.notify(&input).await {
            Ok(()) => {
                info!(kind = kind.as_str(), "notification sent");
                true
            }
            Err(e) => {
                error!(kind = kind.as_str(), error = %e, "notification failed");
                false
            }
        }
    }

    async fn retry(&self, b: &Batch<'_>, delay: Duration) -> Outcome {
        if let Err(e) = self.ports.retry_in(b.receipt, delay).await {
            error!(error = %e, "could not schedule the retry; it comes back after the queue's visibility timeout");
        }
        info!(retry_in_s = delay.as_secs(), "retry scheduled");
        Outcome::Retrying { delay }
    }

    /// Something of ours failed: not an attempt, not the customer's; back
    /// off (escalating with the message's receives, capped).
    async fn ours(&self, b: &Batch<'_>, during: &str, e: &StoreError) -> Outcome {
        if let Some(sent_at) = b.env.sent_at
            && platformsync_delivery::incident::since(now(), sent_at) >= RETENTION_GUARD
        {
            let error = e.to_string();
            let letter = DeadLetter {
                body: &b.env.body,
                group_id: b.endpoint(),
                deduplication_id: &b.message_id,
                reason: "retention",
                last_error: Some(&error),
                attempts: 0,
                first_attempt_at: None,
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

    /// Parks the batch. While the endpoint is resuming, counted on its health
    /// item in the same write (the replay loop's flip fails); `None` when a
    /// batch parked only to wait behind the backlog ([`ParkReason::Behind`])
    /// finds the endpoint no longer resuming (`h` is reloaded then).
    async fn park(
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

    /// Records one attempt; a failure is logged, never fails the batch
    /// (support's view, not delivery state).
    async fn record_attempt(
        &self,
        b: &Batch<'_>,
        part: Option<(&str, usize)>,
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
            Some((id, len)) => (id.to_owned(), len, Some(b.message_id.clone())),
            None => (b.message_id.clone(), b.keys.len(), None),
        };
        let record = AttemptRecord {
            endpoint_id: b.endpoint().to_owned(),
            message_id,
            attempt: attempt.max(1),
            at: rfc3339(at),
            outcome: outcome.to_owned(),
            latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            error,
            transactions: u32::try_from(transactions).unwrap_or(u32::MAX),
            parent_message_id: parent,
        };
        if let Err(e) = self.ports.record_attempt(&record, at).await {
            warn!(error = %e, "the attempt record was not written");
        }
    }

    /// A body that is not a batch this version can read: kept in the
    /// dead-letter queue with the reason, acknowledged (never a poison loop).
    async fn malformed(&self, env: &Envelope, receipt: &str, reason: &str) -> Outcome {
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
            attempts: 0,
            first_attempt_at: None,
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
            match self.ports.lookup(b.endpoint(), &part).await {
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
                self.record_attempt(
                    b,
                    Some((&part, end - start)),
                    attempt,
                    at,
                    timer.elapsed(),
                    &answer,
                )
                .await;
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
                    if let Err(e) = self.ports.record_delivery(&delivery, None).await {
                        error!(error = %e, part = %part, "part delivered, but the ledger write failed");
                    }
                    delivered += end - start;
                    info!(part = %part, transactions = end - start, "part delivered");
                }
                AttemptResult::Refused { error } => {
                    let blind = delivered == 0 && refused_parts >= MAX_BLIND_REFUSALS;
                    if end - start == 1 || blind {
                        if let Err(e) = self.park_part(b, part_id, start, end, &error).await {
                            return SplitEnd::Ours(e);
                        }
                        if let Err(e) = self.ports.record_refused(b.endpoint(), &part, now()).await
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
    use super::*;
    use crate::ports::HealthPort;
    use crate::ports::memory::{Memory, throttled};
    use platformsync_delivery::incident::EndpointState;
    use platformsync_domain::endpoint::EndpointSettings;

    /// Not used by the flow itself: the state a probe leaves, for tests.
    fn expired_state() -> EndpointState {
        let mut incident = platformsync_delivery::incident::Incident::opened(now());
        incident.failing_notified = true;
        incident.expired_notified = true;
        incident.expired_at = Some(now());
        EndpointState {
            incident: Some(incident),
            failing_since: Some(now()),
            next_probe_at: Some(now() + time::Duration::hours(1)),
            ..Default::default()
        }
    }

    fn flow(memory: Memory) -> Flow<Memory> {
        let settings: EndpointSettings = serde_json::from_value(serde_json::json!({
            "EndpointId": "ep", "CustomerId": "acme",
            "Url": "https://hooks.example/x", "ApiKeySecret": "s",
        }))
        .unwrap();
        memory
            .endpoints
            .lock()
            .unwrap()
            .insert("ep".into(), Arc::new(settings));
        Flow {
            ports: memory,
            rules: Rules {
                window: Duration::from_secs(3600),
                ..Rules::default()
            },
            timing: Timing {
                attempt_timeout: Duration::from_secs(1),
                after_attempt: Duration::from_secs(1),
                our_backoff_base: Duration::from_secs(5),
                our_backoff_cap: Duration::from_secs(1800),
            },
        }
    }

    fn envelope(i: usize, items: usize) -> Envelope {
        let items: Vec<serde_json::Value> = (0..items)
            .map(|t| serde_json::json!({"Key": format!("UT1|k{i}-{t}"), "Payload": {"N": format!("t{i}-{t}")}}))
            .collect();
        let body = serde_json::json!({
            "Version": 1, "MessageId": uuid::Uuid::from_u128(i as u128 + 1), "EndpointId": "ep",
            "CustomerId": "acme", "Kind": "Transactions", "CreatedAt": "2026-01-10T09:00:00Z",
            "Items": items,
        });
        Envelope {
            id: format!("sqs-{i}"),
            receipt: Some(format!("r-{i}")),
            group: Some("ep".into()),
            body: body.to_string(),
            receive_count: 1,
            sent_at: Some(now()),
            replayed: false,
        }
    }

    fn deadline() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn failed() -> Posted {
        Posted::Answer(AttemptResult::Failed {
            error: "HTTP 503".into(),
            retry_after: None,
        })
    }

    #[tokio::test]
    async fn a_failed_head_holds_its_group_and_the_rest_is_handed_back() {
        let f = flow(Memory::default());
        f.ports.answer(failed());
        let envs: Vec<Envelope> = (0..3).map(|i| envelope(i, 2)).collect();
        let out = f.run(&envs, deadline()).await;
        let outcomes: Vec<_> = out.iter().map(|(_, o)| o.clone()).collect();
        assert!(
            matches!(outcomes[0], Outcome::Retrying { delay } if delay <= Duration::from_secs(3))
        );
        assert_eq!(outcomes[1..], [Outcome::HandedBack, Outcome::HandedBack]);
        assert_eq!(f.ports.posts().len(), 1);
        assert!(f.ports.deleted().is_empty());
        assert_eq!(f.ports.state("ep").consecutive_failures, 1);
        assert!(
            f.ports.notice_kinds().is_empty(),
            "one failure is no incident notice"
        );
    }

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

    #[tokio::test]
    async fn delivered_batches_are_deleted_when_their_group_is_done() {
        let f = flow(Memory::default());
        let envs: Vec<Envelope> = (0..3).map(|i| envelope(i, 2)).collect();
        let out = f.run(&envs, deadline()).await;
        assert!(out.iter().all(|(_, o)| *o == Outcome::Delivered));
        assert_eq!(f.ports.deleted(), ["r-0", "r-1", "r-2"]);
    }

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

    #[tokio::test]
    async fn an_expired_endpoint_parks_at_once_without_posting() {
        let f = flow(Memory::default());
        f.ports.set_state("ep", expired_state());
        let envs: Vec<Envelope> = (0..3).map(|i| envelope(i, 1)).collect();
        let out = f.run(&envs, deadline()).await;
        assert!(
            out.iter()
                .all(|(_, o)| *o == Outcome::Parked { reason: "expired" })
        );
        assert!(f.ports.posts().is_empty());
        assert_eq!(f.ports.deleted().len(), 3);
        assert!(
            f.ports.notice_kinds().is_empty(),
            "expired was told once already"
        );
    }

    #[tokio::test]
    async fn expiry_parks_the_head_and_everything_after_it() {
        let f = flow(Memory::default());
        let mut s = EndpointState {
            failing_since: Some(now() - time::Duration::hours(2)),
            consecutive_failures: 9,
            incident: Some(platformsync_delivery::incident::Incident::opened(now())),
            ..Default::default()
        };
        s.incident.as_mut().unwrap().failing_notified = true;
        f.ports.set_state("ep", s);
        f.ports.answer(failed());
        let envs: Vec<Envelope> = (0..4).map(|i| envelope(i, 1)).collect();
        let out = f.run(&envs, deadline()).await;
        assert!(
            out.iter()
                .all(|(_, o)| *o == Outcome::Parked { reason: "expired" }),
            "{out:?}"
        );
        assert_eq!(f.ports.posts().len(), 1, "only the head was attempted");
        assert_eq!(f.ports.notice_kinds(), ["expired"]);
        let parked: Vec<String> = f.ports.parked().into_iter().map(|p| p.0).collect();
        let ids: Vec<String> = (0..4)
            .map(|i| uuid::Uuid::from_u128(i + 1).to_string())
            .collect();
        assert_eq!(parked, ids, "parked in queue order");
    }

    #[tokio::test]
    async fn a_disabled_endpoint_is_parked_not_attempted() {
        let f = flow(Memory::default());
        let mut settings = (*f.ports.endpoints.lock().unwrap()["ep"]).clone();
        settings.enabled = false;
        f.ports
            .endpoints
            .lock()
            .unwrap()
            .insert("ep".into(), Arc::new(settings));
        let envs = [envelope(0, 1)];
        let out = f.run(&envs, deadline()).await;
        assert_eq!(out[0].1, Outcome::Parked { reason: "disabled" });
        assert!(f.ports.posts().is_empty());
    }

    fn replayed(i: usize) -> Envelope {
        Envelope {
            replayed: true,
            ..envelope(i, 1)
        }
    }

    /// Resuming: new batches are parked behind the backlog (counted on the
    /// health item), replayed ones delivered, in event order.
    #[tokio::test]
    async fn a_resuming_endpoint_parks_new_batches_and_delivers_replayed_ones() {
        let f = flow(Memory::default());
        f.ports.set_resuming("ep", true);
        let envs = [replayed(0), envelope(1, 1), replayed(2), envelope(3, 1)];
        let out = f.run(&envs, deadline()).await;
        let outcomes: Vec<_> = out.iter().map(|(_, o)| o.clone()).collect();
        let behind = Outcome::Parked { reason: "resuming" };
        assert_eq!(
            outcomes,
            [
                Outcome::Delivered,
                behind.clone(),
                Outcome::Delivered,
                behind
            ]
        );
        let posted: Vec<String> = f.ports.posts().into_iter().map(|p| p.0).collect();
        let id = |i: u128| uuid::Uuid::from_u128(i + 1).to_string();
        assert_eq!(posted, [id(0), id(2)]);
        let parked: Vec<String> = f.ports.parked().into_iter().map(|p| p.0).collect();
        assert_eq!(parked, [id(1), id(3)], "in queue order");
        let health = f.ports.health.lock().unwrap()["ep"].clone();
        assert_eq!(health.parked_seq, 2, "each park counted for the flip");
        assert!(health.resuming, "push never ends the resuming");
    }

    /// The replay loop flipped the endpoint after push read it as resuming:
    /// the counted park fails, push reloads and delivers the batch instead
    /// of parking it where nothing would replay it.
    #[tokio::test]
    async fn a_batch_meeting_the_flip_is_delivered_not_stranded() {
        let f = flow(Memory::default());
        f.ports.set_resuming("ep", true);
        let mut health = Some(f.ports.load("ep").await.unwrap());
        f.ports.set_resuming("ep", false);
        let env = envelope(0, 1);
        let out = f
            .one(&env, &mut health, &Known::default(), deadline())
            .await;
        assert_eq!(out, Outcome::Delivered);
        assert!(f.ports.parked().is_empty());
        assert_eq!(f.ports.posts().len(), 1);
    }

    /// Not resuming: a replayed batch and a new one are both delivered.
    #[tokio::test]
    async fn without_resuming_replayed_and_new_batches_are_delivered() {
        let f = flow(Memory::default());
        let envs = [replayed(0), envelope(1, 1)];
        let out = f.run(&envs, deadline()).await;
        assert!(out.iter().all(|(_, o)| *o == Outcome::Delivered), "{out:?}");
    }

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
        let parent = uuid::Uuid::from_u128(1).to_string();
        for (record, post) in log.iter().zip(&posts) {
            assert_eq!(record.message_id, post.0);
            assert_eq!(record.transactions as usize, post.1);
            let is_part = record.message_id != parent;
            assert_eq!(record.parent_message_id.is_some(), is_part, "{record:?}");
            if is_part {
                assert_eq!(record.parent_message_id.as_deref(), Some(parent.as_str()));
            }
        }
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
    fn groups_keep_event_order() {
        let e = |id: &str, g: Option<&str>| Envelope {
            id: id.into(),
            group: g.map(str::to_owned),
            ..Default::default()
        };
        let records = vec![
            e("a1", Some("a")),
            e("b1", Some("b")),
            e("a2", Some("a")),
            e("x", None),
            e("b2", Some("b")),
        ];
        let ids: Vec<Vec<&str>> = group_in_order(&records)
            .iter()
            .map(|g| g.iter().map(|m| m.id.as_str()).collect())
            .collect();
        assert_eq!(ids, vec![vec!["a1", "a2"], vec!["b1", "b2"], vec!["x"]]);
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
