//! The delivery ledger: which batches reached which endpoint, and the retry
//! state of those that have not yet.
//!
//! | item | `EndpointId` (PK) | `BatchId` (SK) | kept |
//! |---|---|---|---|
//! | delivered batch | endpoint id | the batch's `MessageId` | 400 days (TTL `ExpiresAt`) |
//! | retry state of a pending batch (older push versions only) | endpoint id | `ATTEMPT#<MessageId>` | until delivered or expired; 30 days at most |
//! | one delivery attempt | endpoint id | `TRY#<attempted at, ns, 20 digits>#<MessageId>` | [`ATTEMPT_LOG_RETENTION`] (TTL `ExpiresAt`) |
//!
//! **Attempts** ([`Ledger::record_attempt`], [`Ledger::attempts`]): every
//! POST push makes is one small item (time, outcome, latency, the endpoint's
//! redacted error; ~200 bytes, 1 write unit per attempt, so 0.001 units per
//! transaction per attempt at 1,000-transaction batches), what support reads
//! to a customer ("we tried at 09:14, your endpoint answered 503"). Kept
//! 30 days by TTL. A failed write is logged, never fails the delivery.
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
    pub endpoint_id: String,
    pub message_id: String,
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
    pub parent_message_id: Option<String>,
}

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

fn attempt_id(message_id: &str) -> String {
    format!("{ATTEMPT_PREFIX}{message_id}")
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
    pub async fn lookup(&self, endpoint_id: &str, message_id: &str) -> Result<Lookup, StoreError> {
        let keys = KeysAndAttributes::builder()
            .keys(key(endpoint_id, message_id.to_owned()))
            .keys(key(endpoint_id, attempt_id(message_id)))
            .consistent_read(true)
            .build()
            .map_err(|e| self.malformed(message_id, e))?;
        let mut lookup = Lookup::default();
        for item in crate::dynamo::batch_get(&self.client, &self.table, keys).await? {
            match item.get("BatchId") {
                Some(AttributeValue::S(id)) if id == message_id => {
                    if matches!(item.get("Outcome"), Some(AttributeValue::S(o)) if o == REFUSED) {
                        lookup.refused = true;
                    } else {
                        lookup.delivered = true;
                    }
                }
                Some(AttributeValue::S(id)) if id.starts_with(ATTEMPT_PREFIX) => {
                    lookup.attempts = Some(self.attempt_state(&item, message_id)?);
                }
                _ => {}
            }
        }
        Ok(lookup)
    }

    /// [`Ledger::lookup`] for many batches (`(endpoint, MessageId)`) in as
    /// few `BatchGetItem` calls as DynamoDB allows (100 keys, two per batch):
    /// push looks up a whole event's batches in one call.
    pub async fn lookup_many(
        &self,
        batches: &[(String, String)],
    ) -> Result<HashMap<(String, String), Lookup>, StoreError> {
        let mut found: HashMap<(String, String), Lookup> = batches
            .iter()
            .map(|b| (b.clone(), Lookup::default()))
            .collect();
        let mut unique: Vec<&(String, String)> = found.keys().collect();
        unique.sort();
        let unique: Vec<(String, String)> = unique.into_iter().cloned().collect();
        for chunk in unique.chunks(50) {
            let mut keys = KeysAndAttributes::builder().consistent_read(true);
            for (endpoint, message_id) in chunk {
                keys = keys
                    .keys(key(endpoint, message_id.clone()))
                    .keys(key(endpoint, attempt_id(message_id)));
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
                if let Some(message_id) = id.strip_prefix(ATTEMPT_PREFIX) {
                    let state = self.attempt_state(&item, message_id)?;
                    if let Some(l) = found.get_mut(&(endpoint.clone(), message_id.to_owned())) {
                        l.attempts = Some(state);
                    }
                } else if let Some(l) = found.get_mut(&(endpoint.clone(), id.clone())) {
                    if matches!(item.get("Outcome"), Some(AttributeValue::S(o)) if o == REFUSED) {
                        l.refused = true;
                    } else {
                        l.delivered = true;
                    }
                }
            }
        }
        Ok(found)
    }

    fn attempt_state(&self, item: &Item, message_id: &str) -> Result<AttemptState, StoreError> {
        match item.get("State") {
            Some(AttributeValue::S(json)) => {
                serde_json::from_str(json).map_err(|e| self.malformed(&attempt_id(message_id), e))
            }
            _ => Err(self.malformed(&attempt_id(message_id), "no State attribute")),
        }
    }

    /// Stores the retry state after a failed attempt (overwriting the
    /// previous one: one batch is attempted by one invocation at a time,
    /// FIFO's group lock sees to that). The state holds no secret:
    /// `last_error` is the HTTP client's redacted text.
    pub async fn save_attempts(
        &self,
        endpoint_id: &str,
        message_id: &str,
        state: &AttemptState,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(state).map_err(|e| self.malformed(message_id, e))?;
        let mut item = key(endpoint_id, attempt_id(message_id));
        item.insert("State".into(), s(json));
        item.insert("Attempts".into(), n(state.attempts));
        item.insert(
            "ExpiresAt".into(),
            n(expires_at(OffsetDateTime::now_utc(), ATTEMPT_RETENTION)),
        );
        dynamo::put(&self.client, &self.table, item).await
    }

    /// Forgets the retry state (the batch was delivered or expired).
    pub async fn clear_attempts(
        &self,
        endpoint_id: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        let key = key(endpoint_id, attempt_id(message_id));
        dynamo::delete(&self.client, &self.table, key).await
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
        item.insert(
            "ExpiresAt".into(),
            n(expires_at(delivery.delivered_at, DELIVERY_RETENTION)),
        );
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
        endpoint_id: &str,
        message_id: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut item = key(endpoint_id, message_id.to_owned());
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
        endpoint_id: &str,
        transaction_key: &str,
    ) -> Result<Vec<DeliveredBatch>, StoreError> {
        Ok(self
            .delivered(endpoint_id)
            .await?
            .into_iter()
            .filter(|b| b.transaction_keys.iter().any(|k| k == transaction_key))
            .collect())
    }

    /// Records one attempt (see the module's notes).
    pub async fn record_attempt(
        &self,
        record: &AttemptRecord,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let stamp = u64::try_from(at.unix_timestamp_nanos()).unwrap_or(0);
        let mut item = key(
            &record.endpoint_id,
            format!("{TRY_PREFIX}{stamp:020}#{}", record.message_id),
        );
        item.insert("MessageId".into(), s(&record.message_id));
        item.insert("Attempt".into(), n(record.attempt));
        item.insert("At".into(), s(&record.at));
        item.insert("Outcome".into(), s(&record.outcome));
        item.insert("LatencyMs".into(), n(record.latency_ms));
        item.insert("TransactionCount".into(), n(record.transactions));
        if let Some(parent) = &record.parent_message_id {
            item.insert("ParentMessageId".into(), s(parent));
        }
        if let Some(error) = &record.error {
            // Bounded: an endpoint's error page is not kept whole.
            let error: String = error.chars().take(500).collect();
            item.insert("Error".into(), s(error));
        }
        item.insert("ExpiresAt".into(), n(expires_at(at, ATTEMPT_LOG_RETENTION)));
        dynamo::put(&self.client, &self.table, item).await
    }

    /// The endpoint's recorded attempts, oldest first; only those of
    /// `message_id` and of its split parts when given.
    pub async fn attempts(
        &self,
        endpoint_id: &str,
        message_id: Option<&str>,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let query = self
            .client
            .query()
            .key_condition_expression("EndpointId = :e AND begins_with(BatchId, :p)")
            .expression_attribute_values(":e", s(endpoint_id))
            .expression_attribute_values(":p", s(TRY_PREFIX));
        let items = dynamo::query_all(&self.table, query).await?;
        Ok(items
            .iter()
            .map(|item| AttemptRecord {
                endpoint_id: endpoint_id.to_owned(),
                message_id: text(item, "MessageId").unwrap_or_default(),
                attempt: text(item, "Attempt")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_default(),
                at: text(item, "At").unwrap_or_default(),
                outcome: text(item, "Outcome").unwrap_or_default(),
                latency_ms: text(item, "LatencyMs")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_default(),
                error: text(item, "Error"),
                transactions: text(item, "TransactionCount")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_default(),
                parent_message_id: text(item, "ParentMessageId"),
            })
            .filter(|a| {
                message_id
                    .is_none_or(|m| a.message_id == m || a.parent_message_id.as_deref() == Some(m))
            })
            .collect())
    }

    /// Every delivered batch of `endpoint_id` (refused markers, parked
    /// batches, attempts and retry states left out), its keys resolved
    /// through the plans. Each plan is read once.
    pub async fn delivered(&self, endpoint_id: &str) -> Result<Vec<DeliveredBatch>, StoreError> {
        let query = self
            .client
            .query()
            .key_condition_expression("EndpointId = :e")
            .expression_attribute_values(":e", s(endpoint_id));
        let items = dynamo::query_all(&self.table, query).await?;
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
