//! Safe assignments with effective dates: who owned a safe when.
//!
//! A transaction belongs to the customer that owned its safe at the
//! transaction's `TransactionDateTime` (safe-local wall time), not to
//! whoever owns the safe when someone looks. The history lives in the
//! configuration table:
//!
//! | item | PK | SK |
//! |---|---|---|
//! | assignment (source of truth) | `SAFE#<serial>` | `ASSIGN#<from>` |
//! | period (derived, per customer) | `CUSTOMER#<id>` | `SAFEPERIOD#<serial>#<from>` |
//!
//! `<from>` is written like the transactions table's sort-key prefix
//! (`YYYY-MM-DDTHH:MM:SS.fffffff`, safe-local, offset dropped), so a period
//! bound compares with a transaction's sort key as plain strings. An
//! assignment holds from its `from` until the next assignment's `from`.
//!
//! The period items are what the pull API reads: one `Query` on the
//! customer's partition lists every safe it ever owned with the bounds of
//! each period, so no request walks safes' histories. They are rewritten
//! from the history, in one transaction with the new assignment, whenever
//! a safe is assigned; running `safe assign` again repairs them.
//!
//! The fan-out routes by this history ([`AssignmentStore::ownership`]): a
//! transaction goes to the customer who owned its safe at its time, so late
//! uploads from before a move still reach the old owner. The
//! `SAFE#<serial>`/`OWNER` item (the latest assignment's customer, kept by
//! the CLI) is the owner of a safe assigned before dates existed: it is used
//! only while the safe has no history.

use crate::StoreError;
use crate::dynamo::{self, s};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use platformsync_domain::endpoint::CustomerId;
use platformsync_domain::ownership::{
    Assignment, BEGINNING, BOUND_LEN, Ownership, Period, owner_at, periods,
};
use platformsync_domain::serial::SerialNumber;
use serde::Serialize;
use std::collections::BTreeSet;

const ASSIGN_PREFIX: &str = "ASSIGN#";
const PERIOD_PREFIX: &str = "SAFEPERIOD#";

/// Most items one DynamoDB transaction may write.
const MAX_TRANSACT_ITEMS: usize = 100;

pub mod keys {
    pub fn assignment(serial: &str, from: &str) -> (String, String) {
        (
            format!("SAFE#{serial}"),
            format!("{}{from}", super::ASSIGN_PREFIX),
        )
    }
    pub fn period(customer_id: &str, serial: &str, from: &str) -> (String, String) {
        (
            format!("CUSTOMER#{customer_id}"),
            format!("{}{serial}#{from}", super::PERIOD_PREFIX),
        )
    }
}

/// What one assignment changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// Who owned the safe at `from` before (absent: nobody).
    pub previous: Option<CustomerId>,
    /// The customer of the latest assignment: the safe's current owner for
    /// the fan-out's `OWNER` item.
    pub latest: CustomerId,
    /// The safe's periods after the change.
    pub periods: Vec<Period>,
}

#[derive(Debug, Clone)]
pub struct AssignmentStore {
    client: Client,
    table: String,
}

impl AssignmentStore {
    /// `table`: the configuration table.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn malformed(&self, key: &str, e: impl std::fmt::Display) -> StoreError {
        dynamo::malformed(&self.table, key, e)
    }

    /// A safe's assignments, oldest first.
    pub async fn history(&self, serial: &SerialNumber) -> Result<Vec<Assignment>, StoreError> {
        let pk = keys::assignment(serial.as_str(), "").0;
        let mut history: Vec<Assignment> =
            dynamo::query_prefix(&self.client, &self.table, &pk, ASSIGN_PREFIX, true).await?;
        history.sort_by(|a, b| a.from.cmp(&b.from));
        Ok(history)
    }

    /// A safe's ownership: one `Query` (its `ASSIGN#...` items and its
    /// `OWNER` item sort next to each other, so one key range holds both).
    /// Eventually consistent: the fan-out caches the answer for longer
    /// anyway, and reads several safes at once.
    pub async fn ownership(&self, serial: &SerialNumber) -> Result<Ownership, StoreError> {
        let pk = keys::assignment(serial.as_str(), "").0;
        let items = dynamo::query_items(
            &self.client,
            &self.table,
            // "ASSIGN#..." < "OWNER" < "SEQUENCE": nothing else in between.
            "PK = :pk AND SK BETWEEN :from AND :owner",
            [
                (":pk", s(pk.as_str())),
                (":from", s(ASSIGN_PREFIX)),
                (":owner", s("OWNER")),
            ],
            false,
        )
        .await?;
        let mut ownership = Ownership::default();
        for item in items {
            match item.get("SK") {
                Some(AttributeValue::S(sk)) if sk == "OWNER" => {
                    if let Some(AttributeValue::S(customer)) = item.get("CustomerId") {
                        let owner = CustomerId::parse(customer).map_err(|e| {
                            dynamo::malformed(&self.table, &format!("{pk}/OWNER"), e)
                        })?;
                        ownership.current = Some(owner);
                    }
                }
                Some(AttributeValue::S(sk)) if sk.starts_with(ASSIGN_PREFIX) => {
                    let a: Assignment =
                        dynamo::decode(&self.table, &format!("{pk}/{sk}"), item.clone())?;
                    ownership.history.push(a);
                }
                _ => {}
            }
        }
        ownership.history.sort_by(|a, b| a.from.cmp(&b.from));
        Ok(ownership)
    }

    /// The periods in which `customer` owned a safe (all its safes, or only
    /// `serial`), by serial then `from`. One query, whatever the number of
    /// safes.
    pub async fn periods_of(
        &self,
        customer_id: &CustomerId,
        serial: Option<&SerialNumber>,
    ) -> Result<Vec<Period>, StoreError> {
        let pk = keys::period(customer_id.as_str(), "", "").0;
        let prefix = match serial {
            Some(s) => format!("{PERIOD_PREFIX}{s}#"),
            None => PERIOD_PREFIX.to_owned(),
        };
        let mut periods: Vec<Period> =
            dynamo::query_prefix(&self.client, &self.table, &pk, &prefix, false).await?;
        periods.sort();
        Ok(periods)
    }

    /// Assigns `serial` to `customer_id` from safe-local time `from` (a
    /// [`BOUND_LEN`] bound). An assignment with the same `from` is replaced.
    /// `legacy_owner`: the owner recorded without a date (the `OWNER` item)
    /// of a safe that has no history yet; it is kept as the owner from the
    /// [`BEGINNING`] until `from`.
    ///
    /// The assignment and the customers' period items are written in one
    /// transaction.
    pub async fn assign(
        &self,
        safe: &SerialNumber,
        customer: &CustomerId,
        from: &str,
        assigned_at: &str,
        legacy_owner: Option<&CustomerId>,
    ) -> Result<Assigned, StoreError> {
        let serial = safe.as_str();
        if from.len() != BOUND_LEN {
            return Err(self.malformed(serial, format!("assignment bound {from:?}")));
        }
        let stored = self.history(safe).await?;
        let mut history = stored.clone();
        let mut writes: Vec<Assignment> = Vec::new();
        if history.is_empty()
            && let Some(legacy) = legacy_owner.filter(|_| from != BEGINNING)
        {
            let a = Assignment {
                serial_number: safe.clone(),
                customer_id: legacy.clone(),
                from: BEGINNING.to_owned(),
                assigned_at: assigned_at.to_owned(),
            };
            history.push(a.clone());
            writes.push(a);
        }
        let previous = owner_at(&history, from).cloned();
        let new = Assignment {
            serial_number: safe.clone(),
            customer_id: customer.clone(),
            from: from.to_owned(),
            assigned_at: assigned_at.to_owned(),
        };
        history.retain(|a| a.from != from);
        history.push(new.clone());
        writes.push(new);

        let before = periods(&stored);
        let after = periods(&history);
        let after_keys: BTreeSet<(String, String)> = after
            .iter()
            .map(|p| keys::period(p.customer_id.as_str(), serial, &p.from))
            .collect();

        let mut items: Vec<TransactWriteItem> = Vec::new();
        for a in &writes {
            items.push(self.transact_put(keys::assignment(serial, &a.from), a)?);
        }
        for p in &after {
            items
                .push(self.transact_put(keys::period(p.customer_id.as_str(), serial, &p.from), p)?);
        }
        for p in &before {
            let k = keys::period(p.customer_id.as_str(), serial, &p.from);
            if !after_keys.contains(&k) {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(dynamo::pk_sk(k)))
                    .build()
                    .map_err(|e| self.malformed(serial, e))?;
                items.push(TransactWriteItem::builder().delete(delete).build());
            }
        }
        if items.len() > MAX_TRANSACT_ITEMS {
            return Err(self.malformed(
                serial,
                format!(
                    "{} changes in one assignment (at most {MAX_TRANSACT_ITEMS})",
                    items.len()
                ),
            ));
        }
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|e| StoreError::sdk("TransactWriteItems", &self.table, e))?;
        history.sort_by(|a, b| a.from.cmp(&b.from));
        let latest = history
            .last()
            .map(|a| a.customer_id.clone())
            .unwrap_or_else(|| customer.clone());
        Ok(Assigned {
            previous,
            latest,
            periods: after,
        })
    }

    fn transact_put<T: Serialize>(
        &self,
        pk_sk: (String, String),
        value: &T,
    ) -> Result<TransactWriteItem, StoreError> {
        let label = format!("{}/{}", pk_sk.0, pk_sk.1);
        let mut item = dynamo::encode(&self.table, &label, value)?;
        item.extend(dynamo::pk_sk(pk_sk));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(|e| self.malformed(&label, e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}
