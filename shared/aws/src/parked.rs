//! Parked batches: batches the push function stopped trying (the endpoint's
//! incident expired, the endpoint is disabled, or the endpoint refused a
//! transaction), kept in DynamoDB where operations list and replay them.
//! Nothing is kept in a queue until its retention deletes it.
//!
//! Items live in the delivery ledger table, beside the endpoint's delivered
//! batches (`EndpointId` = the endpoint):
//!
//! | `BatchId` (SK) | holds |
//! |---|---|
//! | `PARKED#<parked at, ns, 20 digits>#<MessageId>` | `Reason`, `Attempts`, `LastError`, `FirstAttemptAt`, `CustomerId`, `MessageId`, `Kind`, `CreatedAt`, `ParkedAt`, `ParkedKeys` (the transactions' keys, one per line: not `TransactionKeys`, so the ledger's "was it delivered" query never mistakes a parked batch for a delivered one), `Parts` |
//! | `…#PART#<n>` | part `n` of the batch's queue message body (binary, ≤ 350 KB each: a 1,000-transaction batch exceeds one 400 KB item) |
//!
//! The sort key keeps the endpoint's parked batches **in the order they were
//! parked**, which is the order they were queued in: one endpoint's batches
//! are handled one at a time, in FIFO order, and the nanosecond stamp only
//! grows within a process. Parts are written before their header, so a
//! header never points at missing parts. Parked items do not expire.
//!
//! [`ParkedStore::replay`] sends an endpoint's parked batches back to the
//! delivery queue in that order (same body, so the same `MessageId`; a
//! deduplication id of its own per parked item, so a replay within SQS's
//! five-minute window of the original is not dropped) and removes each once
//! it is queued. A batch parked twice (a crash between parking and the
//! queue's acknowledgement) is replayed twice and posted once: the push
//! function acknowledges a `MessageId` the ledger already has without
//! posting it.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use crate::StoreError;
use crate::dynamo::{self, Item, n, rfc3339, s, text};
use crate::ledger::key;
use platformsync_domain::endpoint::{CustomerId, EndpointId};

/// Sort key prefix of parked batches in the ledger table.
pub const PARKED_PREFIX: &str = "PARKED#";

/// The SQS message attribute (`"true"`) on a batch replayed from the parked
/// store: push delivers it while the endpoint is resuming.
pub const REPLAYED_ATTRIBUTE: &str = "Replayed";

/// The attributes a listing reads (everything but the body).
const LISTED: [&str; 14] = [
    "EndpointId",
    "BatchId",
    "CustomerId",
    "MessageId",
    "Kind",
    "CreatedAt",
    "Reason",
    "Attempts",
    "LastError",
    "FirstAttemptAt",
    "ParkedAt",
    "ParkedKeys",
    "ParentMessageId",
    "Parts",
];

/// Bytes of body per item (DynamoDB items are at most 400 KB).
const PART_BYTES: usize = 350_000;

/// The last stamp handed out in this process: parks in one process are
/// strictly ordered even within one nanosecond tick.
static LAST_STAMP: AtomicU64 = AtomicU64::new(0);

fn stamp(at: OffsetDateTime) -> u64 {
    let wanted = u64::try_from(at.unix_timestamp_nanos()).unwrap_or(0);
    let mut last = LAST_STAMP.load(Ordering::SeqCst);
    loop {
        let next = wanted.max(last + 1);
        match LAST_STAMP.compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// A batch to park.
#[derive(Debug, Clone)]
pub struct ParkBatch<'a> {
    pub endpoint_id: &'a EndpointId,
    pub customer_id: &'a CustomerId,
    pub message_id: &'a str,
    /// `Transactions` or `AuditTransactions`.
    pub kind: &'a str,
    /// When the fan-out made the batch.
    pub created_at: &'a str,
    /// `expired`, `disabled` or `refused`.
    pub reason: &'a str,
    /// Attempts made on this batch (0: parked without one).
    pub attempts: u32,
    /// Latest failure or the endpoint's answer, redacted.
    pub last_error: Option<&'a str>,
    pub first_attempt_at: Option<OffsetDateTime>,
    pub transaction_keys: &'a [String],
    /// The batch this one was split from, if any.
    pub parent_message_id: Option<&'a str>,
    /// The queue message body to replay (the batch, never a token).
    pub body: &'a str,
    pub parked_at: OffsetDateTime,
}

/// A parked batch as listed (without its body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub endpoint_id: String,
    /// The item's sort key: its place in the endpoint's order.
    pub id: String,
    pub customer_id: String,
    pub message_id: String,
    pub kind: String,
    pub created_at: String,
    pub reason: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub first_attempt_at: Option<String>,
    pub parked_at: String,
    pub transaction_keys: Vec<String>,
    pub parent_message_id: Option<String>,
    pub parts: u32,
}

#[derive(Debug, Clone)]
pub struct ParkedStore {
    client: Client,
    table: String,
}

fn part_key(id: &str, part: u32) -> String {
    format!("{id}#PART#{part:04}")
}

impl ParkedStore {
    /// `ledger_table`: the delivery ledger table.
    pub fn new(client: Client, ledger_table: impl Into<String>) -> Self {
        Self {
            client,
            table: ledger_table.into(),
        }
    }

    /// Parks a batch; returns its id (sort key).
    pub async fn park(&self, batch: &ParkBatch<'_>) -> Result<String, StoreError> {
        let (id, header) = self.write_parts(batch).await?;
        dynamo::put(&self.client, &self.table, header).await?;
        Ok(id)
    }

    /// Parks a batch while its endpoint is resuming: the header and the
    /// health item's `count` (its `ParkedSeq` bumped, on condition that the
    /// endpoint is still resuming) in one transaction, so the replay loop
    /// either sees the batch or fails its flip. `None`: the endpoint is no
    /// longer resuming, nothing was parked.
    pub async fn park_counted(
        &self,
        batch: &ParkBatch<'_>,
        count: aws_sdk_dynamodb::types::Update,
    ) -> Result<Option<String>, StoreError> {
        use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
        let (id, header) = self.write_parts(batch).await?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(header))
            .build()
            .map_err(|e| dynamo::malformed(&self.table, &id, e))?;
        let out = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(count).build())
            .send()
            .await;
        match out {
            Ok(_) => Ok(Some(id)),
            Err(e) => {
                use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
                let cancelled_by_condition = matches!(
                    e.as_service_error(),
                    Some(TransactWriteItemsError::TransactionCanceledException(t))
                        if t.cancellation_reasons()
                            .iter()
                            .any(|r| r.code() == Some("ConditionalCheckFailed"))
                );
                if !cancelled_by_condition {
                    return Err(StoreError::sdk("TransactWriteItems", &self.table, e));
                }
                // The parts alone are never listed; removed so nothing lingers.
                let parts = batch.body.len().div_ceil(PART_BYTES);
                for part in 0..parts {
                    let key = key(batch.endpoint_id.as_str(), part_key(&id, part as u32));
                    let _ = dynamo::delete(&self.client, &self.table, key).await;
                }
                Ok(None)
            }
        }
    }

    /// Writes the body's parts; returns the batch's id and its header item.
    async fn write_parts(&self, batch: &ParkBatch<'_>) -> Result<(String, Item), StoreError> {
        let id = format!(
            "{PARKED_PREFIX}{:020}#{}",
            stamp(batch.parked_at),
            batch.message_id
        );
        let body = batch.body.as_bytes();
        let chunks: Vec<&[u8]> = if body.is_empty() {
            Vec::new()
        } else {
            body.chunks(PART_BYTES).collect()
        };
        for (i, chunk) in chunks.iter().enumerate() {
            let mut item = key(batch.endpoint_id.as_str(), part_key(&id, i as u32));
            item.insert("Body".into(), AttributeValue::B(Blob::new(chunk.to_vec())));
            dynamo::put(&self.client, &self.table, item).await?;
        }
        let mut item = key(batch.endpoint_id.as_str(), id.clone());
        item.insert("CustomerId".into(), s(batch.customer_id.as_str()));
        item.insert("MessageId".into(), s(batch.message_id));
        item.insert("Kind".into(), s(batch.kind));
        item.insert("CreatedAt".into(), s(batch.created_at));
        item.insert("Reason".into(), s(batch.reason));
        item.insert("Attempts".into(), n(batch.attempts));
        item.insert("ParkedAt".into(), s(rfc3339(batch.parked_at)));
        item.insert("Parts".into(), n(chunks.len()));
        item.insert("TransactionCount".into(), n(batch.transaction_keys.len()));
        if !batch.transaction_keys.is_empty() {
            item.insert("ParkedKeys".into(), s(batch.transaction_keys.join("\n")));
        }
        if let Some(e) = batch.last_error.filter(|e| !e.is_empty()) {
            item.insert("LastError".into(), s(e));
        }
        if let Some(at) = batch.first_attempt_at {
            item.insert("FirstAttemptAt".into(), s(rfc3339(at)));
        }
        if let Some(parent) = batch.parent_message_id {
            item.insert("ParentMessageId".into(), s(parent));
        }
        Ok((id, item))
    }

    /// The endpoint's parked batches, in the order they were parked.
    pub async fn list(&self, endpoint_id: &EndpointId) -> Result<Vec<Parked>, StoreError> {
        let query = self
            .client
            .query()
            .key_condition_expression("EndpointId = :e AND begins_with(BatchId, :p)")
            .expression_attribute_values(":e", s(endpoint_id.as_str()))
            .expression_attribute_values(":p", s(PARKED_PREFIX))
            // Bodies are read only to replay. Names go through placeholders:
            // several are DynamoDB reserved words.
            .projection_expression(
                LISTED
                    .iter()
                    .enumerate()
                    .map(|(i, _)| format!("#a{i}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
            .set_expression_attribute_names(Some(
                LISTED
                    .iter()
                    .enumerate()
                    .map(|(i, name)| (format!("#a{i}"), (*name).to_owned()))
                    .collect(),
            ))
            .consistent_read(true);
        let items = dynamo::query_all(&self.table, query).await?;
        Ok(items
            .iter()
            .filter(|item| {
                text(item, "BatchId").is_some_and(|id| !id.contains("#PART#"))
                    && item.contains_key("MessageId")
            })
            .map(|item| Parked {
                endpoint_id: text(item, "EndpointId").unwrap_or_default(),
                id: text(item, "BatchId").unwrap_or_default(),
                customer_id: text(item, "CustomerId").unwrap_or_default(),
                message_id: text(item, "MessageId").unwrap_or_default(),
                kind: text(item, "Kind").unwrap_or_default(),
                created_at: text(item, "CreatedAt").unwrap_or_default(),
                reason: text(item, "Reason").unwrap_or_default(),
                attempts: text(item, "Attempts")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_default(),
                last_error: text(item, "LastError"),
                first_attempt_at: text(item, "FirstAttemptAt"),
                parked_at: text(item, "ParkedAt").unwrap_or_default(),
                transaction_keys: text(item, "ParkedKeys")
                    .map(|k| k.lines().map(str::to_owned).collect())
                    .unwrap_or_default(),
                parent_message_id: text(item, "ParentMessageId"),
                parts: text(item, "Parts")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// The queue message body of a parked batch.
    pub async fn body(&self, parked: &Parked) -> Result<String, StoreError> {
        let mut body = Vec::new();
        for part in 0..parked.parts {
            let part = part_key(&parked.id, part);
            let item = dynamo::get_item(
                &self.client,
                &self.table,
                key(&parked.endpoint_id, part.clone()),
                true,
            )
            .await?;
            match item.as_ref().and_then(|i| i.get("Body")) {
                Some(AttributeValue::B(blob)) => body.extend_from_slice(blob.as_ref()),
                _ => return Err(dynamo::malformed(&self.table, &part, "body part missing")),
            }
        }
        String::from_utf8(body).map_err(|e| dynamo::malformed(&self.table, &parked.id, e))
    }

    /// Removes a parked batch (after it was replayed).
    pub async fn remove(&self, parked: &Parked) -> Result<(), StoreError> {
        // The header first: a half-removed batch is no longer listed.
        let mut keys = vec![parked.id.clone()];
        keys.extend((0..parked.parts).map(|p| part_key(&parked.id, p)));
        for batch_id in keys {
            let key = key(&parked.endpoint_id, batch_id);
            dynamo::delete(&self.client, &self.table, key).await?;
        }
        Ok(())
    }

    /// Sends the endpoint's parked batches back to the delivery queue, in
    /// their order, removing each once queued. Returns how many were queued.
    /// Run it after the endpoint was enabled (or resumed): batches replayed
    /// to a still expired endpoint are parked again.
    #[cfg(feature = "sqs")]
    pub async fn replay(
        &self,
        endpoint_id: &EndpointId,
        sqs: &aws_sdk_sqs::Client,
        queue_url: &str,
    ) -> Result<usize, StoreError> {
        let parked = self.list(endpoint_id).await?;
        for (done, p) in parked.iter().enumerate() {
            self.replay_one(p, sqs, queue_url).await.inspect_err(|_| {
                tracing::warn!(replayed = done, "replay stopped");
            })?;
        }
        Ok(parked.len())
    }

    /// Sends one parked batch back to the delivery queue (its original body,
    /// so its original `MessageId`; group = its endpoint), and removes it
    /// only once SQS accepted it. A failure to remove leaves it parked and
    /// queued: replayed again later, it is posted once (the ledger knows its
    /// `MessageId`).
    #[cfg(feature = "sqs")]
    pub async fn replay_one(
        &self,
        parked: &Parked,
        sqs: &aws_sdk_sqs::Client,
        queue_url: &str,
    ) -> Result<(), StoreError> {
        let body = self.body(parked).await?;
        // Its own deduplication id: the original MessageId may still be
        // in SQS's five-minute window and the replay would be dropped.
        let dedup = replay_dedup_id(&parked.id);
        sqs.send_message()
            .queue_url(queue_url)
            .message_body(body)
            .message_group_id(&parked.endpoint_id)
            .message_deduplication_id(dedup)
            // Marked: while the endpoint is resuming, push delivers replayed
            // batches and parks new ones behind the backlog.
            .message_attributes(
                REPLAYED_ATTRIBUTE,
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("true")
                    .build()
                    .map_err(|e| crate::dynamo::malformed(queue_url, &parked.id, e))?,
            )
            .send()
            .await
            .map_err(|e| StoreError::sdk("SendMessage", queue_url, e))?;
        self.remove(parked).await
    }
}

/// ≤ 128 characters of `[A-Za-z0-9]`: a hash of the parked item's id.
#[cfg(feature = "sqs")]
fn replay_dedup_id(id: &str) -> String {
    // FNV-1a, twice with different offsets: no extra crate for 128 bits.
    let fnv = |seed: u64| {
        id.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "replay{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x8422_2325_cbf2_9ce4)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_only_grow() {
        let t = OffsetDateTime::now_utc();
        let a = stamp(t);
        let b = stamp(t);
        let c = stamp(t - time::Duration::seconds(5));
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(format!("{:020}", a).len(), 20);
    }

    #[cfg(feature = "sqs")]
    #[test]
    fn replay_dedup_ids_are_valid_and_distinct() {
        let a = replay_dedup_id("PARKED#1#m");
        assert!(a.len() <= 128 && a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, replay_dedup_id("PARKED#2#m"));
    }
}
