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

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use platformsync_domain::dedup::StorageKey;
use platformsync_domain::record::{
    DecisionNote, DeliveryStatus, HeldTransaction, HoldDecision, StoredTransaction,
};
use platformsync_domain::serial::SerialNumber;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::StoreError;
use crate::dynamo::{self, Item, is_conditional_failure, malformed, s};
use crate::transactions::key;

/// What [`HeldStore::decide`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    Done,
    /// Not held (any more): its status now.
    NotHeld(DeliveryStatus),
    Missing,
}

#[derive(Debug, Clone)]
pub struct HeldStore {
    client: Client,
    table: String,
}

/// The decision attributes the update writes beside the stored transaction.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecisionItem {
    decided_by: Option<String>,
    decided_at: Option<String>,
    decision_reason: Option<String>,
}

impl HeldStore {
    /// `transactions_table`: the transactions table.
    pub fn new(client: Client, transactions_table: impl Into<String>) -> Self {
        Self {
            client,
            table: transactions_table.into(),
        }
    }

    fn decode(&self, item: Item) -> Result<HeldTransaction, StoreError> {
        let label = || {
            let text = |name| match item.get(name) {
                Some(AttributeValue::S(v)) => v.as_str(),
                _ => "",
            };
            format!("{}|{}", text("SerialNumber"), text("SortKey"))
        };
        let decision: DecisionItem = dynamo::decode(&self.table, &label(), item.clone())?;
        let decision = match (decision.decided_by, decision.decided_at) {
            (Some(by), Some(at)) => Some(DecisionNote {
                by,
                at: OffsetDateTime::parse(&at, &Rfc3339).map_err(|e| {
                    malformed(&self.table, &label(), format_args!("DecidedAt: {e}"))
                })?,
                reason: decision.decision_reason.unwrap_or_default(),
            }),
            _ => None,
        };
        let label = label();
        let transaction: StoredTransaction = dynamo::decode(&self.table, &label, item)?;
        Ok(HeldTransaction {
            transaction,
            decision,
        })
    }

    /// Held transactions of `safes` (a `Query` each), or of every safe (a
    /// filtered `Scan`), in key order.
    pub async fn list(&self, safes: &[SerialNumber]) -> Result<Vec<HeldTransaction>, StoreError> {
        let mut items = Vec::new();
        if safes.is_empty() {
            let scan = self
                .client
                .scan()
                .filter_expression("#s = :held")
                .expression_attribute_names("#s", "Status")
                .expression_attribute_values(":held", s(DeliveryStatus::Held.name()));
            items.extend(dynamo::scan_all(&self.table, scan).await?);
        } else {
            for safe in safes {
                let query = self
                    .client
                    .query()
                    .key_condition_expression("SerialNumber = :serial")
                    .filter_expression("#s = :held")
                    .expression_attribute_names("#s", "Status")
                    .expression_attribute_values(":serial", s(safe.as_str()))
                    .expression_attribute_values(":held", s(DeliveryStatus::Held.name()));
                items.extend(dynamo::query_all(&self.table, query).await?);
            }
        }
        let mut held = items
            .into_iter()
            .map(|i| self.decode(i))
            .collect::<Result<Vec<_>, _>>()?;
        held.sort_by(|a, b| {
            (&a.transaction.serial_number, &a.transaction.sort_key)
                .cmp(&(&b.transaction.serial_number, &b.transaction.sort_key))
        });
        Ok(held)
    }

    /// One transaction (any status).
    pub async fn get(&self, at: &StorageKey) -> Result<Option<HeldTransaction>, StoreError> {
        dynamo::get_item(&self.client, &self.table, key(at), true)
            .await?
            .map(|i| self.decode(i))
            .transpose()
    }

    /// Releases or discards a held transaction, once, recording who and why
    /// in the same update.
    pub async fn decide(
        &self,
        at: &StorageKey,
        decision: HoldDecision,
        by: &str,
        reason: &str,
        when: OffsetDateTime,
    ) -> Result<Decided, StoreError> {
        let when = dynamo::rfc3339(when);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(at)))
            .update_expression(
                "SET #s = :to, DecidedBy = :by, DecidedAt = :at, DecisionReason = :why",
            )
            .condition_expression("#s = :held")
            .expression_attribute_names("#s", "Status")
            .expression_attribute_values(":to", s(decision.status().name()))
            .expression_attribute_values(":held", s(DeliveryStatus::Held.name()))
            .expression_attribute_values(":by", s(by))
            .expression_attribute_values(":at", s(when))
            .expression_attribute_values(":why", s(reason))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Decided::Done),
            Err(e) if is_conditional_failure(&e) => match self.get(at).await? {
                Some(t) => Ok(Decided::NotHeld(t.transaction.status)),
                None => Ok(Decided::Missing),
            },
            Err(e) => Err(StoreError::sdk("UpdateItem", &self.table, e)),
        }
    }
}
