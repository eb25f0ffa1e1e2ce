//! The transactions table: one item per transaction, written once.
//!
//! Key: `SerialNumber` (partition) and `SortKey` = safe-local time + dedup
//! key (sort). The ingest writes with `attribute_not_exists`, so a transaction
//! SafeSync sends twice is stored once and the second write is reported as a
//! duplicate; the stream of new images feeds the fan-out; the pull API queries
//! a safe's time range on the same key, with no secondary index to double the
//! cost of every write.
//!
//! Items are immutable but for one transition made by staff: `Held` to
//! `Released` (then pushed) or `Discarded`.

use crate::StoreError;
use crate::dynamo::{self, Item, s};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{KeysAndAttributes, ReturnValuesOnConditionCheckFailure};
use platformsync_domain::dedup::StorageKey;
use platformsync_domain::record::StoredTransaction;
use platformsync_domain::serial::SerialNumber;
use std::collections::HashMap;

/// The table's key of the transaction at `at`.
pub(crate) fn key(at: &StorageKey) -> Item {
    HashMap::from([
        ("SerialNumber".to_owned(), s(at.partition.as_str())),
        ("SortKey".to_owned(), s(at.sort.as_str())),
    ])
}

/// The attribute naming the upload that stored an item.
const UPLOAD_ID: &str = "UploadId";

/// The outcome of a conditional insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insertion {
    Stored,
    /// An item with the same key was already there; it was left untouched.
    Duplicate,
}

#[derive(Debug, Clone)]
pub struct TransactionStore {
    client: Client,
    table: String,
}

impl TransactionStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Stores `record` unless its key exists: one write unit, no read.
    ///
    /// The SDK retries a put whose answer it did not get (a timed-out
    /// attempt, a dropped connection); when that attempt had landed, the
    /// retry finds the item there. The failed condition returns the item
    /// (free: the write unit is spent either way), and an item written by
    /// this same upload is this put's own: `Stored`, not a duplicate that
    /// SafeSync would be told it had sent before.
    pub async fn insert_new(&self, record: &StoredTransaction) -> Result<Insertion, StoreError> {
        let item = dynamo::encode(&self.table, &record.sort_key, record)?;
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(SortKey)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(Insertion::Stored),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(there)) => {
                    let writer = there
                        .item()
                        .and_then(|old| old.get(UPLOAD_ID))
                        .and_then(|v| v.as_s().ok());
                    Ok(if writer == Some(&record.upload_id) {
                        Insertion::Stored
                    } else {
                        Insertion::Duplicate
                    })
                }
                _ => Err(StoreError::sdk("PutItem", &self.table, e)),
            },
        }
    }

    /// The items stored under `keys`, by key; one `BatchGetItem` per 100
    /// keys, unprocessed keys retried. Absent keys are absent from the map.
    pub async fn get_many(
        &self,
        keys: &[StorageKey],
    ) -> Result<HashMap<StorageKey, StoredTransaction>, StoreError> {
        let mut found = HashMap::with_capacity(keys.len());
        let mut unique: Vec<&StorageKey> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(100) {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().copied().map(key).collect()))
                // Written once and never changed but for Held -> Released,
                // which happens before the release's stream record exists.
                .consistent_read(true)
                .build()
                .map_err(|e| dynamo::malformed(&self.table, "transactions", e))?;
            let items = dynamo::batch_get(&self.client, &self.table, request).await?;
            let label = chunk
                .first()
                .map(|k| k.partition.as_str())
                .unwrap_or_default();
            for stored in dynamo::decode_all::<StoredTransaction>(&self.table, label, items)? {
                found.insert(
                    StorageKey {
                        partition: stored.serial_number.clone(),
                        sort: stored.sort_key.clone(),
                    },
                    stored,
                );
            }
        }
        Ok(found)
    }

    /// Every item of one safe, in safe-time order (tests and tools; the pull
    /// API pages through the same query).
    pub async fn for_safe(
        &self,
        serial: &SerialNumber,
    ) -> Result<Vec<StoredTransaction>, StoreError> {
        dynamo::query(
            &self.client,
            &self.table,
            "SerialNumber = :s",
            [(":s", s(serial.as_str()))],
            false,
            serial.as_str(),
        )
        .await
    }

    /// The items of one safe whose sort key is in `[from, to]` (safe-local
    /// time prefixes compare as strings), in safe-time order: the ops CLI's
    /// backfill window.
    pub async fn between(
        &self,
        serial: &SerialNumber,
        from: &str,
        to: &str,
    ) -> Result<Vec<StoredTransaction>, StoreError> {
        dynamo::query(
            &self.client,
            &self.table,
            "SerialNumber = :s AND SortKey BETWEEN :from AND :to",
            [
                (":s", s(serial.as_str())),
                (":from", s(from)),
                (":to", s(to)),
            ],
            false,
            serial.as_str(),
        )
        .await
    }
}
