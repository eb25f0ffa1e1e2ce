//! Held transactions (failed a data-quality check): listed for staff, then
//! released (pushed) or discarded, once.
//!
//! The decision is the one staff transition of the transactions table,
//! `Held` → `Released` or `Discarded`, made by a conditional `UpdateItem`
//! (`Status = Held`): of two operators releasing the same transaction, one
//! wins and the other is told it was already decided. The update makes one
//! stream `MODIFY` record, and the fan-out pushes a `MODIFY` whose new image
//! is `Released` (through its durable plan, so a replayed stream batch
//! re-sends the same `MessageId`): released exactly once.
//!
//! Who decided, when and why is written on the item itself (`DecidedBy`,
//! `DecidedAt`, `DecisionReason`), in the same update, so the audit record
//! cannot be missing for a decision that happened; it lives as long as the
//! transaction.
//!
//! Listing reads the transactions table: one `Query` per safe when safes are
//! given, else a `Scan` filtered on `Status` (every item is read and billed:
//! about 1 read unit per 8 KB scanned; an ops tool, not a hot path).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::StoreError;
use crate::dynamo::text;
use crate::transactions::{DeliveryStatus, HoldNote};

/// A held (or decided) transaction as staff see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HeldTransaction {
    pub serial_number: String,
    pub sort_key: String,
    /// `SERIAL|SORTKEY`.
    pub key: String,
    pub kind: String,
    pub transaction_type: String,
    pub status: String,
    pub hold_reasons: Vec<HoldNote>,
    pub received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
    /// The payload as it would be pushed (only in `get`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// What [`HeldStore::decide`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    Done,
    /// Not held (any more): its status now.
    NotHeld(String),
    Missing,
}

#[derive(Debug, Clone)]
pub struct HeldStore {
    client: Client,
    table: String,
}

fn key(serial: &str, sort_key: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("SerialNumber".to_owned(), AttributeValue::S(serial.into())),
        ("SortKey".to_owned(), AttributeValue::S(sort_key.into())),
    ])
}

fn status_name(s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Deliverable => "Deliverable",
        DeliveryStatus::Held => "Held",
        DeliveryStatus::Released => "Released",
        DeliveryStatus::Discarded => "Discarded",
    }
}

impl HeldStore {
    /// `transactions_table`: the transactions table.
    pub fn new(client: Client, transactions_table: impl Into<String>) -> Self {
        Self {
            client,
            table: transactions_table.into(),
        }
    }

    fn decode(
        &self,
        item: &HashMap<String, AttributeValue>,
        with_payload: bool,
    ) -> HeldTransaction {
        let serial = text(item, "SerialNumber").unwrap_or_default();
        let sort = text(item, "SortKey").unwrap_or_default();
        let reasons = match item.get("HoldReasons") {
            Some(v) => serde_dynamo::from_attribute_value(v.clone()).unwrap_or_default(),
            None => Vec::new(),
        };
        HeldTransaction {
            key: format!("{serial}|{sort}"),
            serial_number: serial,
            sort_key: sort,
            kind: text(item, "Kind").unwrap_or_default(),
            transaction_type: text(item, "TransactionType").unwrap_or_default(),
            status: text(item, "Status").unwrap_or_default(),
            hold_reasons: reasons,
            received_at: text(item, "ReceivedAt").unwrap_or_default(),
            decided_by: text(item, "DecidedBy"),
            decided_at: text(item, "DecidedAt"),
            decision_reason: text(item, "DecisionReason"),
            payload: if with_payload {
                text(item, "Payload")
            } else {
                None
            },
        }
    }

    /// Held transactions of `safes` (a `Query` each), or of every safe (a
    /// filtered `Scan`), in key order.
    pub async fn list(&self, safes: &[String]) -> Result<Vec<HeldTransaction>, StoreError> {
        let mut items = Vec::new();
        if safes.is_empty() {
            let found: Vec<_> = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#s = :held")
                .expression_attribute_names("#s", "Status")
                .expression_attribute_values(":held", AttributeValue::S("Held".into()))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| StoreError::sdk("Scan", &self.table, e))?;
            items.extend(found);
        } else {
            for safe in safes {
                let found: Vec<_> = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("SerialNumber = :serial")
                    .filter_expression("#s = :held")
                    .expression_attribute_names("#s", "Status")
                    .expression_attribute_values(":serial", AttributeValue::S(safe.clone()))
                    .expression_attribute_values(":held", AttributeValue::S("Held".into()))
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
                    .await
                    .map_err(|e| StoreError::sdk("Query", &self.table, e))?;
                items.extend(found);
            }
        }
        let mut held: Vec<_> = items.iter().map(|i| self.decode(i, false)).collect();
        held.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(held)
    }

    /// One transaction (any status), with its payload.
    pub async fn get(
        &self,
        serial: &str,
        sort_key: &str,
    ) -> Result<Option<HeldTransaction>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(serial, sort_key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::sdk("GetItem", &self.table, e))?;
        Ok(out.item.as_ref().map(|i| self.decode(i, true)))
    }

    /// Releases (`to = Released`) or discards (`to = Discarded`) a held
    /// transaction, once, recording who and why in the same update.
    pub async fn decide(
        &self,
        serial: &str,
        sort_key: &str,
        to: DeliveryStatus,
        by: &str,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<Decided, StoreError> {
        if !matches!(to, DeliveryStatus::Released | DeliveryStatus::Discarded) {
            return Err(StoreError::Malformed {
                resource: self.table.clone(),
                key: format!("{serial}|{sort_key}"),
                message: "a held transaction is released or discarded".into(),
            });
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(serial, sort_key)))
            .update_expression(
                "SET #s = :to, DecidedBy = :by, DecidedAt = :at, DecisionReason = :why",
            )
            .condition_expression("#s = :held")
            .expression_attribute_names("#s", "Status")
            .expression_attribute_values(":to", AttributeValue::S(status_name(to).into()))
            .expression_attribute_values(":held", AttributeValue::S("Held".into()))
            .expression_attribute_values(":by", AttributeValue::S(by.into()))
            .expression_attribute_values(
                ":at",
                AttributeValue::S(at.format(&Rfc3339).unwrap_or_default()),
            )
            .expression_attribute_values(":why", AttributeValue::S(reason.into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Decided::Done),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                match self.get(serial, sort_key).await? {
                    Some(t) => Ok(Decided::NotHeld(t.status)),
                    None => Ok(Decided::Missing),
                }
            }
            Err(e) => Err(StoreError::sdk("UpdateItem", &self.table, e)),
        }
    }
}
