//! The delivery ledger: which batches reached which endpoint, and the retry
//! state of those that have not yet.
//!
//! | item | `EndpointId` (PK) | `BatchId` (SK) | kept |
//! |---|---|---|---|
//! | delivered batch | endpoint id | the batch's `MessageId` | 400 days (TTL `ExpiresAt`) |
//! | retry state of a pending batch (older push versions only) | endpoint id | `ATTEMPT#<MessageId>` | until delivered or expired; 30 days at most |
//! | one failed or refused attempt | endpoint id | `TRY#<attempted at, ns, 20 digits>#<MessageId>` | [`ATTEMPT_LOG_RETENTION`] (TTL `ExpiresAt`) |
//!
//! **Attempts** ([`Ledger::record_attempt`], [`Ledger::attempts`]): what
//! support reads to a customer ("we tried at 09:14, your endpoint answered
//! 503"). A failed or refused POST is one small item (time, outcome,
//! latency, the endpoint's redacted error; ~231 bytes, 1 write unit), kept
//! 30 days by TTL. The POST that delivered a batch is not an item of its
//! own: its time (`TriedAt`, ns), latency (`LatencyMs`), attempt number
//! (`Attempt`, only when it is not `Attempts`) and, for a split part,
//! `ParentMessageId` are fields of the batch's ledger item
//! ([`DeliveredAttempt`]), so a delivered batch costs one write, not two
//! (issue 16); the item grows by 29 bytes (a planned batch's: 306 -> 335,
//! still one write unit; a split part adds 60 for its parent and attempt). Items written before have no such fields: their
//! delivered POST is the `TRY#` item they came with. The price is on the
//! read side: listing attempts reads the endpoint's whole ledger (its keys
//! are `MessageId`s, not times), as `manifest` and `backfill` do; a tool's
//! cost, paid when support asks, not on every delivery. A failed write of
//! an attempt is logged, never fails the delivery.
//!
//! A delivered batch is written with `attribute_not_exists(BatchId)`: the
//! first delivery wins, and the push function looks the batch up before
//! posting, so a redelivered SQS message (a crash after the POST, before the
//! acknowledgement) is acknowledged without a second POST.
//!
//! **Which transactions a batch held**: when the message names its place in
//! the fan-out's durable plan (`PlanRef`), the item stores that reference
//! (`Plan`: the plan's key, `PlanIndex`: the message's index), ~100 bytes,
//! since the plan (kept as long as the ledger) already holds the keys. A
//! 1000-transaction batch then costs the ledger 1 write unit, not ~75.
//! Messages without a plan reference (backfills, split parts, messages made
//! before plans) keep one string attribute, `TransactionKeys`: the keys
//! (`SERIAL|SORTKEY`, as in the transactions table), one per line, about
//! 75 bytes per transaction, well below DynamoDB's 400 KB item limit.
//! [`Ledger::deliveries_of`] answers "did transaction X reach endpoint Y" for
//! tools (a query over the endpoint's ledger, plans resolved through
//! [`PlanStore`], never used on the delivery path).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use platformsync_delivery::retry::AttemptState;
use time::OffsetDateTime;

use crate::StoreError;
use crate::dynamo::{self, Item, n, rfc3339, s, text};
use crate::fanout_plans::PlanStore;
use platformsync_domain::batch::PlanRef;
use platformsync_domain::endpoint::{CustomerId, EndpointId};
use platformsync_domain::types::MessageKind;
// A batch's `MessageId` is the domain's `Uuid` (`BatchMessage::message_id`,
// and a split part's derived id): the ledger takes that type, not a string.
use uuid::Uuid;

/// Delivered batches are remembered this long (TTL): longer than any replay
/// or audit question about "did it arrive" is likely to be asked.
pub const DELIVERY_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

/// A retry state outlives its batch only if the function died between the
/// last attempt and the clean-up; SQS keeps messages 14 days at most.
pub const ATTEMPT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

const ATTEMPT_PREFIX: &str = "ATTEMPT#";

/// Sort key prefix of attempt records.
pub const TRY_PREFIX: &str = "TRY#";

/// How long attempt records are kept (TTL).
pub const ATTEMPT_LOG_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// One POST to an endpoint, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttemptRecord {
    pub endpoint_id: EndpointId,
    pub message_id: Uuid,
    /// The batch's attempt number (1 = first).
    pub attempt: u32,
    /// RFC 3339.
    pub at: String,
    /// `delivered`, `failed` or `refused`.
    pub outcome: String,
    pub latency_ms: u64,
    /// The endpoint's answer or the connection error, redacted (never a token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub transactions: u32,
    /// For a part of a split batch: the batch it was split from (`attempts
    /// --batch <parent>` lists the parts' attempts with the parent's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_message_id: Option<Uuid>,
}

/// The POST that delivered a batch, kept on its ledger item instead of a
/// `TRY#` item of its own (see the module's notes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredAttempt {
    /// The batch's attempt number (for a split part: the attempt of the
    /// batch it is part of).
    pub attempt: u32,
    /// When the POST started.
    pub at: OffsetDateTime,
    pub latency_ms: u64,
    /// For a split part: the batch it was split from.
    pub parent_message_id: Option<Uuid>,
}

/// Outcome of a delivered POST.
const DELIVERED: &str = "delivered";

/// `Outcome` of a split part the endpoint refused (parked, not delivered).
const REFUSED: &str = "refused";

/// What the ledger knows about one batch before it is posted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lookup {
    /// The batch was already delivered: acknowledge, do not post.
    pub delivered: bool,
    /// The batch is a part of a split batch that was parked as refused
    /// ([`Ledger::record_refused`]): a split resumed after a crash skips it;
    /// a replay of it is posted.
    pub refused: bool,
    /// The retry state left by earlier failed attempts, if any.
    pub attempts: Option<AttemptState>,
}

/// A batch the endpoint accepted (HTTP 200).
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    pub endpoint_id: &'a EndpointId,
    /// The batch's `MessageId` (a split part's own).
    pub message_id: Uuid,
    pub customer_id: &'a CustomerId,
    pub kind: MessageKind,
    /// `SERIAL|SORTKEY` of every transaction of the batch, in batch order.
    /// Stored only when the delivery names no plan
    /// ([`Ledger::record_planned_delivery`]).
    pub transaction_keys: &'a [String],
    /// Attempts it took, this one included.
    pub attempts: u32,
    pub first_attempt_at: OffsetDateTime,
    pub delivered_at: OffsetDateTime,
    /// The batch was split into parts of their own `MessageId`s (which the
    /// ledger records one by one); `transaction_keys` are still all of it.
    pub split: bool,
}

/// Whether [`Ledger::record_delivery`] wrote the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New,
    /// Another invocation recorded the same batch first (it was posted twice:
    /// the receiver drops the repeat by `MessageId`).
    AlreadyThere,
}

/// A delivered batch as tools see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredBatch {
    pub endpoint_id: String,
    pub message_id: String,
    pub delivered_at: String,
    pub attempts: u32,
    pub transaction_keys: Vec<String>,
    /// Where the keys came from when the item stores a plan reference.
    pub plan_ref: Option<PlanRef>,
}

#[derive(Debug, Clone)]
pub struct Ledger {
    client: Client,
    table: String,
    /// Resolves plan references for tools ([`Ledger::deliveries_of`]).
    plans: Option<PlanStore>,
}

fn expires_at(now: OffsetDateTime, keep: Duration) -> i64 {
    now.unix_timestamp()
        .saturating_add(i64::try_from(keep.as_secs()).unwrap_or(i64::MAX))
}

fn attempt_id(message_id: &Uuid) -> String {
    format!("{ATTEMPT_PREFIX}{message_id}")
}

/// `at` in ns since the epoch: the order of attempts (`TRY#` keys, `TriedAt`).
fn stamp(at: OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp_nanos()).unwrap_or(0)
}

fn from_stamp(ns: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The ledger item of a delivered batch; `attempt`, the POST that delivered
/// it, folded in (a split parent, delivered by its parts, has none).
fn delivery_item(
    delivery: &Delivery<'_>,
    plan_ref: Option<&PlanRef>,
    attempt: Option<&DeliveredAttempt>,
) -> Item {
    let mut item = key(
        delivery.endpoint_id.as_str(),
        delivery.message_id.to_string(),
    );
    item.insert("CustomerId".into(), s(delivery.customer_id.as_str()));
    item.insert("Kind".into(), s(delivery.kind.wire_name()));
    item.insert("DeliveredAt".into(), s(rfc3339(delivery.delivered_at)));
    item.insert(
        "FirstAttemptAt".into(),
        s(rfc3339(delivery.first_attempt_at)),
    );
    item.insert("Attempts".into(), n(delivery.attempts));
    if delivery.split {
        item.insert("Outcome".into(), s("split"));
    }
    item.insert(
        "TransactionCount".into(),
        n(delivery.transaction_keys.len()),
    );
    if let Some(plan_ref) = plan_ref {
        // The plan holds the keys (and lives as long as this item).
        item.insert("Plan".into(), s(plan_ref.plan.clone()));
        item.insert("PlanIndex".into(), n(plan_ref.index));
    } else if !delivery.transaction_keys.is_empty() {
        // An empty string attribute is allowed today, but an absent one
        // reads more honestly for an (unexpected) empty batch.
        item.insert(
            "TransactionKeys".into(),
            s(delivery.transaction_keys.join("\n")),
        );
    }
    if let Some(a) = attempt {
        item.insert("TriedAt".into(), n(stamp(a.at)));
        item.insert("LatencyMs".into(), n(a.latency_ms));
        // Mostly the same as `Attempts`: stored only when it is not.
        if a.attempt != delivery.attempts {
            item.insert("Attempt".into(), n(a.attempt));
        }
        if let Some(parent) = &a.parent_message_id {
            item.insert("ParentMessageId".into(), s(parent.to_string()));
        }
    }
    item.insert(
        "ExpiresAt".into(),
        n(expires_at(delivery.delivered_at, DELIVERY_RETENTION)),
    );
    item
}

fn number<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    text(item, name).and_then(|v| v.parse().ok())
}

fn uuid_of(item: &Item, name: &str) -> Option<Uuid> {
    text(item, name).and_then(|v| Uuid::parse_str(&v).ok())
}

/// One attempt from an item of the endpoint's ledger, with its order: a
/// `TRY#` item, or a delivered batch's item with its folded attempt. `None`
/// for every other item (and for what it cannot read: support's view,
/// never worth failing the listing for one odd item).
fn attempt_of(endpoint_id: &EndpointId, item: &Item) -> Option<(u64, AttemptRecord)> {
    let batch_id = text(item, "BatchId")?;
    if let Some(rest) = batch_id.strip_prefix(TRY_PREFIX) {
        let order = rest.split('#').next().and_then(|s| s.parse().ok())?;
        let record = AttemptRecord {
            endpoint_id: endpoint_id.clone(),
            message_id: uuid_of(item, "MessageId")?,
            attempt: number(item, "Attempt").unwrap_or_default(),
            at: text(item, "At").unwrap_or_default(),
            outcome: text(item, "Outcome").unwrap_or_default(),
            latency_ms: number(item, "LatencyMs").unwrap_or_default(),
            error: text(item, "Error"),
            transactions: number(item, "TransactionCount").unwrap_or_default(),
            parent_message_id: uuid_of(item, "ParentMessageId"),
        };
        return Some((order, record));
    }
    // A delivered batch of this version: its POST is folded in.
    let tried_at: u64 = number(item, "TriedAt")?;
    let attempts: u32 = number(item, "Attempts").unwrap_or(1);
    let record = AttemptRecord {
        endpoint_id: endpoint_id.clone(),
        message_id: Uuid::parse_str(&batch_id).ok()?,
        attempt: number(item, "Attempt").unwrap_or(attempts),
        at: crate::dynamo::rfc3339(from_stamp(tried_at)),
        outcome: DELIVERED.to_owned(),
        latency_ms: number(item, "LatencyMs").unwrap_or_default(),
        error: None,
        transactions: number(item, "TransactionCount").unwrap_or_default(),
        parent_message_id: uuid_of(item, "ParentMessageId"),
    };
    Some((tried_at, record))
}

/// The ledger table's key (parked batches share the table).
pub(crate) fn key(endpoint_id: &str, batch_id: String) -> Item {
    HashMap::from([
        ("EndpointId".to_owned(), s(endpoint_id)),
        ("BatchId".to_owned(), s(batch_id)),
    ])
}

impl Ledger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            plans: None,
        }
    }

    /// Lets tools resolve ledger items that store a plan reference.
    pub fn with_plans(mut self, plans: PlanStore) -> Self {
        self.plans = Some(plans);
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn malformed(&self, key: &str, message: impl std::fmt::Display) -> StoreError {
        dynamo::malformed(&self.table, key, message)
    }

    /// The batch's delivery record and retry state, in one strongly
    /// consistent `BatchGetItem` (a delivery recorded a moment ago by another
    /// invocation must be seen).
    pub async fn lookup(
        &self,
        endpoint_id: &EndpointId,
        message_id: Uuid,
    ) -> Result<Lookup, StoreError> {
        let batch = (endpoint_id.clone(), message_id);
        let mut found = self.lookup_many(std::slice::from_ref(&batch)).await?;
        Ok(found.remove(&batch).unwrap_or_default())
    }

    /// [`Ledger::lookup`] for many batches (`(endpoint, MessageId)`) in as
    /// few `BatchGetItem` calls as DynamoDB allows (100 keys, two per batch):
    /// push looks up a whole event's batches in one call.
    pub async fn lookup_many(
        &self,
        batches: &[(EndpointId, Uuid)],
    ) -> Result<HashMap<(EndpointId, Uuid), Lookup>, StoreError> {
        let mut found: HashMap<(EndpointId, Uuid), Lookup> = batches
            .iter()
            .map(|b| (b.clone(), Lookup::default()))
            .collect();
        let mut unique: Vec<(EndpointId, Uuid)> = found.keys().cloned().collect();
        unique.sort();
        for chunk in unique.chunks(50) {
            let mut keys = KeysAndAttributes::builder().consistent_read(true);
            for (endpoint, message_id) in chunk {
                keys = keys
                    .keys(key(endpoint.as_str(), message_id.to_string()))
                    .keys(key(endpoint.as_str(), attempt_id(message_id)));
            }
            let keys = keys
                .build()
                .map_err(|e| self.malformed("(batch look-up)", e))?;
            for item in crate::dynamo::batch_get(&self.client, &self.table, keys).await? {
                let (Some(AttributeValue::S(endpoint)), Some(AttributeValue::S(id))) =
                    (item.get("EndpointId"), item.get("BatchId"))
                else {
                    continue;
                };
                // Keys are built from typed ids above: what does not parse
                // back is no item of this look-up.
                let Ok(endpoint) = EndpointId::parse(endpoint) else {
                    continue;
                };
                let (attempt, message_id) = match id.strip_prefix(ATTEMPT_PREFIX) {
                    Some(rest) => (true, rest),
                    None => (false, id.as_str()),
                };
                let Ok(message_id) = Uuid::parse_str(message_id) else {
                    continue;
                };
                let Some(l) = found.get_mut(&(endpoint, message_id)) else {
                    continue;
                };
                if attempt {
                    l.attempts = Some(self.attempt_state(&item, &message_id)?);
                } else if matches!(item.get("Outcome"), Some(AttributeValue::S(o)) if o == REFUSED)
                {
                    l.refused = true;
                } else {
                    l.delivered = true;
                }
            }
        }
        Ok(found)
    }

    fn attempt_state(&self, item: &Item, message_id: &Uuid) -> Result<AttemptState, StoreError> {
        match item.get("State") {
            Some(AttributeValue::S(json)) => {
                serde_json::from_str(json).map_err(|e| self.malformed(&attempt_id(message_id), e))
            }
            _ => Err(self.malformed(&attempt_id(message_id), "no State attribute")),
        }
    }

    /// Records a delivered batch, once: a conditional put on the batch id.
    /// Stores its keys.
    pub async fn record_delivery(&self, delivery: &Delivery<'_>) -> Result<Recorded, StoreError> {
        self.record_planned_delivery(delivery, None).await
    }

    /// Records a delivered batch, once; with `plan_ref` (the message's place
    /// in the fan-out plan), the reference is stored instead of the keys.
    pub async fn record_planned_delivery(
        &self,
        delivery: &Delivery<'_>,
        plan_ref: Option<&PlanRef>,
    ) -> Result<Recorded, StoreError> {
        self.record_delivered(delivery, plan_ref, None).await
    }

    /// Records a delivered batch, once, with the POST that delivered it
    /// (one write: no `TRY#` item for it). When the batch was recorded
    /// before ([`Recorded::AlreadyThere`]), `attempt` is not written: the
    /// caller records it as an attempt of its own.
    pub async fn record_delivered(
        &self,
        delivery: &Delivery<'_>,
        plan_ref: Option<&PlanRef>,
        attempt: Option<&DeliveredAttempt>,
    ) -> Result<Recorded, StoreError> {
        let item = delivery_item(delivery, plan_ref, attempt);
        let written = dynamo::put_if(
            &self.client,
            &self.table,
            item,
            // A refused part replayed and now delivered replaces its marker.
            "attribute_not_exists(BatchId) OR Outcome = :refused",
            [(":refused", s(REFUSED))],
        )
        .await?;
        Ok(if written {
            Recorded::New
        } else {
            Recorded::AlreadyThere
        })
    }

    /// Marks a split part the endpoint refused (parked with its answer), so a
    /// split resumed after a crash does not post it again.
    pub async fn record_refused(
        &self,
        endpoint_id: &EndpointId,
        message_id: Uuid,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut item = key(endpoint_id.as_str(), message_id.to_string());
        item.insert("Outcome".into(), s(REFUSED));
        item.insert("RefusedAt".into(), s(rfc3339(at)));
        item.insert("ExpiresAt".into(), n(expires_at(at, DELIVERY_RETENTION)));
        // Already there (delivered or marked): left as it is.
        dynamo::put_if_absent(&self.client, &self.table, item, "BatchId").await?;
        Ok(())
    }

    /// The delivered batches of `endpoint_id` that held `transaction_key`
    /// (`SERIAL|SORTKEY`). Reads the endpoint's whole ledger and the plans
    /// its items name: for tools, not for the delivery path.
    pub async fn deliveries_of(
        &self,
        endpoint_id: &EndpointId,
        transaction_key: &str,
    ) -> Result<Vec<DeliveredBatch>, StoreError> {
        Ok(self
            .delivered(endpoint_id)
            .await?
            .into_iter()
            .filter(|b| b.transaction_keys.iter().any(|k| k == transaction_key))
            .collect())
    }

    /// Records one attempt as a `TRY#` item (see the module's notes): a
    /// failed or refused POST, or a delivered one the ledger item could not
    /// take ([`Ledger::record_delivered`]).
    pub async fn record_attempt(
        &self,
        record: &AttemptRecord,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut item = key(
            record.endpoint_id.as_str(),
            format!("{TRY_PREFIX}{:020}#{}", stamp(at), record.message_id),
        );
        item.insert("MessageId".into(), s(record.message_id.to_string()));
        item.insert("Attempt".into(), n(record.attempt));
        item.insert("At".into(), s(&record.at));
        item.insert("Outcome".into(), s(&record.outcome));
        item.insert("LatencyMs".into(), n(record.latency_ms));
        item.insert("TransactionCount".into(), n(record.transactions));
        if let Some(parent) = &record.parent_message_id {
            item.insert("ParentMessageId".into(), s(parent.to_string()));
        }
        if let Some(error) = &record.error {
            // Bounded: an endpoint's error page is not kept whole.
            let error: String = error.chars().take(500).collect();
            item.insert("Error".into(), s(error));
        }
        item.insert("ExpiresAt".into(), n(expires_at(at, ATTEMPT_LOG_RETENTION)));
        dynamo::put(&self.client, &self.table, item).await
    }

    /// The endpoint's attempts of the last [`ATTEMPT_LOG_RETENTION`], oldest
    /// first: its `TRY#` items and its delivered batches' folded POSTs; only
    /// those of `message_id` and of its split parts when given. Two queries
    /// ([`AttemptQuery`]): the `TRY#` key range, and the endpoint's whole
    /// ledger filtered on `TriedAt` (the read units are the partition's):
    /// for tools, not for the delivery path.
    pub async fn attempts(
        &self,
        endpoint_id: &EndpointId,
        message_id: Option<Uuid>,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let since = stamp(OffsetDateTime::now_utc() - ATTEMPT_LOG_RETENTION);
        let mut items = Vec::new();
        for q in [AttemptQuery::tried(), AttemptQuery::folded()] {
            // Only the attributes an attempt needs: a batch's keys (up to
            // ~75 KB) are not sent back.
            let mut query = self
                .client
                .query()
                .key_condition_expression(q.key_condition)
                .set_filter_expression(q.filter.map(str::to_owned))
                .projection_expression(ATTEMPT_ATTRIBUTES)
                // Reserved words in DynamoDB's expression language.
                .expression_attribute_names("#attempt", "Attempt")
                .expression_attribute_names("#at", "At")
                .expression_attribute_names("#error", "Error")
                .expression_attribute_values(":e", s(endpoint_id.as_str()));
            // DynamoDB refuses a value no expression uses.
            query = match q.filter {
                Some(_) => query.expression_attribute_values(":since", n(since)),
                None => query.expression_attribute_values(":p", s(TRY_PREFIX)),
            };
            items.extend(dynamo::query_all(&self.table, query).await?);
        }
        Ok(in_order(endpoint_id, &items, message_id))
    }

    /// Every delivered batch of `endpoint_id` (refused markers, parked
    /// batches, attempts and retry states left out), its keys resolved
    /// through the plans. Each plan is read once.
    pub async fn delivered(
        &self,
        endpoint_id: &EndpointId,
    ) -> Result<Vec<DeliveredBatch>, StoreError> {
        let items = dynamo::query_items(
            &self.client,
            &self.table,
            "EndpointId = :e",
            [(":e", s(endpoint_id.as_str()))],
            false,
        )
        .await?;
        let text = |item: &Item, name: &str| dynamo::text(item, name).unwrap_or_default();
        let mut plans: HashMap<String, crate::fanout_plans::Plan> = HashMap::new();
        let mut out = Vec::new();
        for item in &items {
            let id = text(item, "BatchId");
            if id.starts_with(ATTEMPT_PREFIX)
                || id.starts_with(TRY_PREFIX)
                || id.starts_with("PARKED#")
                || text(item, "Outcome") == REFUSED
            {
                continue;
            }
            let plan_key = text(item, "Plan");
            let (transaction_keys, plan_ref) = if plan_key.is_empty() {
                let keys = text(item, "TransactionKeys")
                    .lines()
                    .map(str::to_owned)
                    .collect();
                (keys, None)
            } else {
                let index: u32 = text(item, "PlanIndex")
                    .parse()
                    .map_err(|e| self.malformed(&id, e))?;
                if !plans.contains_key(&plan_key) {
                    let Some(store) = &self.plans else {
                        return Err(self.malformed(&id, "names a plan, but no plan store is set"));
                    };
                    let found = store
                        .lookup(&plan_key, OffsetDateTime::now_utc().unix_timestamp())
                        .await?
                        .ok_or_else(|| self.malformed(&id, "names a missing plan"))?;
                    plans.insert(plan_key.clone(), found.plan);
                }
                let plan = &plans[&plan_key];
                let message = plan
                    .messages
                    .get(index as usize)
                    .ok_or_else(|| self.malformed(&id, "plan index out of range"))?;
                let keys = message
                    .items
                    .iter()
                    .map(|&i| plan.keys[i as usize].clone())
                    .collect();
                (
                    keys,
                    Some(PlanRef {
                        plan: plan_key,
                        index,
                    }),
                )
            };
            out.push(DeliveredBatch {
                endpoint_id: text(item, "EndpointId"),
                message_id: id,
                delivered_at: text(item, "DeliveredAt"),
                attempts: text(item, "Attempts").parse().unwrap_or_default(),
                transaction_keys,
                plan_ref,
            });
        }
        Ok(out)
    }
}

/// The attempts among `items` (of one endpoint), oldest first; only
/// `message_id`'s and its parts' when given.
/// The attributes an attempt listing reads (`#` names are reserved words).
const ATTEMPT_ATTRIBUTES: &str = "BatchId, MessageId, #attempt, Attempts, #at, Outcome, \
     LatencyMs, TransactionCount, ParentMessageId, #error, TriedAt";

/// One of the two queries of [`Ledger::attempts`]. DynamoDB refuses a
/// filter that names a key attribute (`EndpointId`, `BatchId`), so the
/// `TRY#` items are a key range of their own and the folded POSTs a filter
/// on `TriedAt`; a unit test holds this, as the local emulators do not.
#[derive(Debug, Clone, Copy)]
struct AttemptQuery {
    key_condition: &'static str,
    filter: Option<&'static str>,
}

impl AttemptQuery {
    /// The `TRY#` items (each expires with its TTL).
    fn tried() -> AttemptQuery {
        AttemptQuery {
            key_condition: "EndpointId = :e AND begins_with(BatchId, :p)",
            filter: None,
        }
    }

    /// Delivered batches whose POST is folded in, of the retention window.
    /// `TRY#` items carry no `TriedAt`, so none is read twice.
    fn folded() -> AttemptQuery {
        AttemptQuery {
            key_condition: "EndpointId = :e",
            filter: Some("TriedAt >= :since"),
        }
    }
}

fn in_order(
    endpoint_id: &EndpointId,
    items: &[Item],
    message_id: Option<Uuid>,
) -> Vec<AttemptRecord> {
    let mut found: Vec<(u64, AttemptRecord)> = items
        .iter()
        .filter_map(|item| attempt_of(endpoint_id, item))
        .filter(|(_, a)| {
            message_id.is_none_or(|m| a.message_id == m || a.parent_message_id == Some(m))
        })
        .collect();
    found.sort_by_key(|(order, _)| *order);
    // A delivered POST recorded twice (its ledger write was applied, the
    // answer lost, the SDK's retry found the item and push wrote a `TRY#`
    // as well) is one POST: same message, same time.
    found.dedup_by(|(order, a), (kept_order, kept)| {
        order == kept_order
            && a.message_id == kept.message_id
            && a.outcome == DELIVERED
            && kept.outcome == DELIVERED
    });
    found.into_iter().map(|(_, a)| a).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// DynamoDB's item size: each attribute's name plus its value (a number
    /// about one byte per two digits, plus one).
    fn size(item: &Item) -> usize {
        item.iter()
            .map(|(name, v)| {
                name.len()
                    + match v {
                        AttributeValue::S(s) => s.len(),
                        AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
                        _ => 1,
                    }
            })
            .sum()
    }

    fn endpoint() -> EndpointId {
        EndpointId::parse("acme-prod").unwrap()
    }

    const T0: OffsetDateTime = datetime!(2026-11-29 08:00:00.123456789 UTC);

    fn planned<'a>(
        endpoint: &'a EndpointId,
        customer: &'a CustomerId,
        keys: &'a [String],
    ) -> Delivery<'a> {
        Delivery {
            endpoint_id: endpoint,
            message_id: Uuid::from_u128(0x1234),
            customer_id: customer,
            kind: MessageKind::Transactions,
            transaction_keys: keys,
            attempts: 3,
            first_attempt_at: T0 - time::Duration::minutes(1),
            delivered_at: T0 + time::Duration::milliseconds(52),
            split: false,
        }
    }

    fn plan_ref() -> PlanRef {
        PlanRef {
            plan: "UT00001|2026-01-01T00:00:00.0000000#sha:00000000000000000000000000000000".into(),
            index: 7,
        }
    }

    fn tried(parent: Option<Uuid>) -> DeliveredAttempt {
        DeliveredAttempt {
            attempt: 3,
            at: T0,
            latency_ms: 51,
            parent_message_id: parent,
        }
    }

    /// Issue 16: the delivered POST rides on the ledger write; a planned
    /// 1,000-transaction batch's item stays one write unit (under 1 KB).
    #[test]
    fn the_delivered_attempt_is_part_of_the_ledger_item_and_it_stays_one_write_unit() {
        let (e, c) = (endpoint(), CustomerId::parse("acme").unwrap());
        let keys = vec![String::new(); 1000];
        let d = planned(&e, &c, &keys);
        let before = delivery_item(&d, Some(&plan_ref()), None);
        let after = delivery_item(&d, Some(&plan_ref()), Some(&tried(None)));
        assert_eq!(
            after.len(),
            before.len() + 2,
            "TriedAt and LatencyMs: {after:?}"
        );
        assert_eq!(text(&after, "TriedAt").unwrap(), stamp(T0).to_string());
        let (b, a) = (size(&before), size(&after));
        assert!(a - b <= 40 && a < 1024, "before {b} B, after {a} B");
        // And `attempts` reads it back as the delivered POST.
        let (order, record) = attempt_of(&e, &after).unwrap();
        assert_eq!(order, stamp(T0));
        assert_eq!(
            record,
            AttemptRecord {
                endpoint_id: e.clone(),
                message_id: Uuid::from_u128(0x1234),
                attempt: 3,
                at: rfc3339(T0),
                outcome: "delivered".into(),
                latency_ms: 51,
                error: None,
                transactions: 1000,
                parent_message_id: None,
            }
        );
    }

    /// A split part's item names its parent and, when it differs from the
    /// part's own count, the batch's attempt number.
    #[test]
    fn a_delivered_part_keeps_its_parent_and_the_batchs_attempt_number() {
        let (e, c) = (endpoint(), CustomerId::parse("acme").unwrap());
        let keys = vec!["UT1|k".to_owned(); 2];
        let mut d = planned(&e, &c, &keys);
        d.attempts = 1;
        let parent = Uuid::from_u128(9);
        let item = delivery_item(&d, None, Some(&tried(Some(parent))));
        let (_, record) = attempt_of(&e, &item).unwrap();
        assert_eq!(record.attempt, 3);
        assert_eq!(record.parent_message_id, Some(parent));
        assert_eq!(record.transactions, 2);
    }

    /// Old items stay readable: a delivered batch without the folded fields
    /// is no attempt (its POST is the `TRY#` item written with it), a split
    /// parent neither; the listing merges `TRY#` items and folded POSTs by
    /// time and filters a batch with its parts.
    #[test]
    fn attempts_merge_try_items_and_folded_posts_in_order() {
        let (e, c) = (endpoint(), CustomerId::parse("acme").unwrap());
        let keys = vec!["UT1|k".to_owned(); 4];
        let parent = planned(&e, &c, &keys);
        let old = delivery_item(&parent, None, None);
        assert!(attempt_of(&e, &old).is_none());
        let try_item = |at: OffsetDateTime, id: Uuid, outcome: &str, parent: Option<Uuid>| {
            let mut item = key(e.as_str(), format!("{TRY_PREFIX}{:020}#{id}", stamp(at)));
            item.insert("MessageId".into(), s(id.to_string()));
            item.insert("Attempt".into(), n(1));
            item.insert("At".into(), s(rfc3339(at)));
            item.insert("Outcome".into(), s(outcome));
            item.insert("Error".into(), s("HTTP 422"));
            if let Some(p) = parent {
                item.insert("ParentMessageId".into(), s(p.to_string()));
            }
            item
        };
        let batch = parent.message_id;
        let part = Uuid::from_u128(77);
        let mut part_delivery = planned(&e, &c, &keys[..2]);
        part_delivery.message_id = part;
        let part_tried = DeliveredAttempt {
            at: T0 + time::Duration::seconds(2),
            ..tried(Some(batch))
        };
        let other = Uuid::from_u128(5);
        let mut other_delivery = planned(&e, &c, &keys);
        other_delivery.message_id = other;
        let items = vec![
            // Query order: by BatchId, not by time.
            delivery_item(&part_delivery, None, Some(&part_tried)),
            delivery_item(&other_delivery, None, Some(&tried(None))),
            try_item(
                T0 + time::Duration::seconds(3),
                Uuid::from_u128(78),
                "refused",
                Some(batch),
            ),
            try_item(T0 - time::Duration::seconds(1), batch, "refused", None),
            old,
        ];
        let all = in_order(&e, &items, None);
        let listed: Vec<(Uuid, &str)> = all
            .iter()
            .map(|a| (a.message_id, a.outcome.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                (batch, "refused"),
                (other, "delivered"),
                (part, "delivered"),
                (Uuid::from_u128(78), "refused"),
            ]
        );
        let of_batch = in_order(&e, &items, Some(batch));
        assert_eq!(of_batch.len(), 3, "{of_batch:?}");
        assert!(of_batch.iter().all(|a| a.message_id != other));

        // Our own ledger write applied, its answer lost, the SDK's retry
        // saw the item: the same POST folded in and as a `TRY#` is listed
        // once; a second, later POST of the same batch stays.
        let mut twice = vec![
            delivery_item(&other_delivery, None, Some(&tried(None))),
            try_item(tried(None).at, other, "delivered", None),
        ];
        assert_eq!(in_order(&e, &twice, None).len(), 1);
        twice.push(try_item(
            tried(None).at + time::Duration::seconds(9),
            other,
            "delivered",
            None,
        ));
        assert_eq!(in_order(&e, &twice, None).len(), 2);
    }

    #[test]
    fn attempt_queries_filter_no_key_attribute() {
        // DynamoDB answers a filter on EndpointId or BatchId with a
        // ValidationException; moto and LocalStack accept it, so only this
        // test would notice.
        for q in [AttemptQuery::tried(), AttemptQuery::folded()] {
            if let Some(filter) = q.filter {
                assert!(
                    !filter.contains("EndpointId") && !filter.contains("BatchId"),
                    "{filter}"
                );
                assert!(!filter.contains(":p"), "only used values are sent");
            } else {
                assert!(q.key_condition.contains(":p"));
            }
            assert!(q.key_condition.starts_with("EndpointId = :e"));
        }
    }
}
