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
use crate::dynamo::{is_conditional_failure, s};
use aws_sdk_dynamodb::Client;
use platformsync_domain::record::StoredTransaction;
use platformsync_domain::serial::SerialNumber;

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

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Stores `record` unless its key exists: one write unit, no read.
    pub async fn insert_new(&self, record: &StoredTransaction) -> Result<Insertion, StoreError> {
        let item = serde_dynamo::to_item(record).map_err(|e| StoreError::Malformed {
            resource: self.table.clone(),
            key: record.sort_key.clone(),
            message: e.to_string(),
        })?;
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(SortKey)")
            .send()
            .await
        {
            Ok(_) => Ok(Insertion::Stored),
            Err(e) if is_conditional_failure(&e) => Ok(Insertion::Duplicate),
            Err(e) => Err(StoreError::sdk("PutItem", &self.table, e)),
        }
    }

    /// The items stored under `keys` ((serial, sort key) pairs), by key; one
    /// `BatchGetItem` per 100 keys, unprocessed keys retried. Absent keys
    /// are absent from the map.
    pub async fn get_many(
        &self,
        keys: &[(String, String)],
    ) -> Result<std::collections::HashMap<(String, String), StoredTransaction>, StoreError> {
        use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
        let mut found = std::collections::HashMap::with_capacity(keys.len());
        let mut unique: Vec<&(String, String)> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(100) {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(
                    chunk
                        .iter()
                        .map(|(serial, sort)| {
                            std::collections::HashMap::from([
                                ("SerialNumber".to_owned(), AttributeValue::S(serial.clone())),
                                ("SortKey".to_owned(), AttributeValue::S(sort.clone())),
                            ])
                        })
                        .collect(),
                ))
                // Written once and never changed but for Held -> Released,
                // which happens before the release's stream record exists.
                .consistent_read(true)
                .build()
                .map_err(|e| crate::dynamo::malformed(&self.table, "transactions", e))?;
            let items = crate::dynamo::batch_get(&self.client, &self.table, request).await?;
            let label = chunk.first().map(|(s, _)| s.as_str()).unwrap_or_default();
            for stored in crate::dynamo::decode_all::<StoredTransaction>(&self.table, label, items)?
            {
                found.insert(
                    (
                        stored.serial_number.as_str().to_owned(),
                        stored.sort_key.clone(),
                    ),
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
        let pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("SerialNumber = :s")
            .expression_attribute_values(":s", s(serial.as_str()))
            .into_paginator()
            .items()
            .send();
        let items: Vec<_> = pages
            .try_collect()
            .await
            .map_err(|e| StoreError::sdk("Query", &self.table, e))?;
        crate::dynamo::decode_all(&self.table, serial.as_str(), items)
    }
}
