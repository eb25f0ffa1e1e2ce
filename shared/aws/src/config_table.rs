//! The configuration table: customers, safes, endpoints and per-safe state,
//! in one table with generic keys.
//!
//! | item | PK | SK |
//! |---|---|---|
//! | customer | `CUSTOMER#<id>` | `PROFILE` |
//! | endpoint | `CUSTOMER#<id>` | `ENDPOINT#<endpoint id>` (one query lists a customer's endpoints) |
//! | safe owner | `SAFE#<serial>` | `OWNER` |
//! | safe sequence progress | `SAFE#<serial>` | `SEQUENCE` |
//! | endpoint health | `ENDPOINT#<endpoint id>` | `HEALTH` |
//! | endpoint id claim | `ENDPOINTID#<endpoint id>` | `CLAIM` |
//!
//! An endpoint id is global: the delivery queue's message group, the
//! health, ledger and parked items and the API key's secret are all keyed
//! by it alone. The claim item makes it belong to one customer: it is
//! written only if absent or already that customer's, in the same
//! transaction as the endpoint item ([`ConfigStore::put_endpoint`]), so two
//! customers can never both hold one id, however their writes interleave.

use crate::StoreError;
use crate::dynamo::{self, Item, n, pk_sk as pk_sk_key, s};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};
use platformsync_domain::endpoint::{Customer, CustomerId, EndpointId, EndpointSettings};
use platformsync_domain::serial::SerialNumber;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub mod keys {
    pub fn customer(customer_id: &str) -> (String, String) {
        (format!("CUSTOMER#{customer_id}"), "PROFILE".into())
    }
    pub fn endpoint(customer_id: &str, endpoint_id: &str) -> (String, String) {
        (
            format!("CUSTOMER#{customer_id}"),
            format!("ENDPOINT#{endpoint_id}"),
        )
    }
    pub fn safe_owner(serial: &str) -> (String, String) {
        (format!("SAFE#{serial}"), "OWNER".into())
    }
    pub fn safe_sequence(serial: &str) -> (String, String) {
        (format!("SAFE#{serial}"), "SEQUENCE".into())
    }
    pub fn endpoint_claim(endpoint_id: &str) -> (String, String) {
        (format!("ENDPOINTID#{endpoint_id}"), "CLAIM".into())
    }
    pub fn backfill_checkpoint(backfill_id: &str) -> (String, String) {
        (format!("BACKFILL#{backfill_id}"), "CHECKPOINT".into())
    }
}

/// The claim item may be written when it is absent or already names the
/// customer writing it.
const CLAIM_CONDITION: &str = "attribute_not_exists(PK) OR CustomerId = :customer";

/// Why an endpoint was not stored.
#[derive(Debug, thiserror::Error)]
pub enum EndpointWriteError {
    /// Another customer holds the id: nothing was written.
    #[error(
        "endpoint id {endpoint_id} is taken by customer {owner}: endpoint ids are unique across customers"
    )]
    Taken { endpoint_id: String, owner: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A safe and the customer that owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SafeOwner {
    pub serial_number: SerialNumber,
    pub customer_id: CustomerId,
}

/// A safe's journal progress, for sequence-gap detection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SequenceRecord {
    /// Highest number up to which every number has been seen.
    pub contiguous: u64,
    /// Numbers seen above `contiguous + 1` (the gap lies below them).
    #[serde(default)]
    pub pending: Vec<u64>,
    /// Optimistic-concurrency counter: two uploads of one safe at once must
    /// not overwrite each other's progress.
    pub version: u64,
}

/// Where a backfill (`platformsync replay`) got to: the last key it queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackfillCheckpoint {
    pub endpoint_id: EndpointId,
    pub last_key: String,
    pub last_message_id: String,
    /// RFC 3339.
    pub updated_at: String,
    /// TTL (unix seconds).
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct ConfigStore {
    client: Client,
    table: String,
}

impl ConfigStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn malformed(&self, key: &str, e: impl std::fmt::Display) -> StoreError {
        dynamo::malformed(&self.table, key, e)
    }

    /// Writes `value` as the item under `pk_sk`.
    async fn put_at<T: Serialize>(
        &self,
        pk_sk: (String, String),
        value: &T,
    ) -> Result<(), StoreError> {
        let item = self.item_at(pk_sk, value)?;
        dynamo::put(&self.client, &self.table, item).await
    }

    /// `value` as the item under `pk_sk`.
    fn item_at<T: Serialize>(
        &self,
        pk_sk: (String, String),
        value: &T,
    ) -> Result<Item, StoreError> {
        let mut item = dynamo::encode(&self.table, &label(&pk_sk), value)?;
        item.extend(pk_sk_key(pk_sk));
        Ok(item)
    }

    /// The item under `pk_sk` as `T`.
    async fn get_at<T: DeserializeOwned>(
        &self,
        pk_sk: (String, String),
        consistent: bool,
    ) -> Result<Option<T>, StoreError> {
        let label = label(&pk_sk);
        dynamo::get(
            &self.client,
            &self.table,
            pk_sk_key(pk_sk),
            consistent,
            &label,
        )
        .await
    }

    /// Every item whose SK is `sk` (customers, safe owners): a scan, for
    /// the ops CLI only; the functions never scan.
    async fn scan_kind<T: DeserializeOwned>(&self, sk: &str) -> Result<Vec<T>, StoreError> {
        let scan = self
            .client
            .scan()
            .filter_expression("SK = :sk")
            .expression_attribute_values(":sk", s(sk));
        let items = dynamo::scan_all(&self.table, scan).await?;
        dynamo::decode_all(&self.table, sk, items)
    }

    pub async fn put_customer(&self, customer: &Customer) -> Result<(), StoreError> {
        self.put_at(keys::customer(customer.customer_id.as_str()), customer)
            .await
    }

    pub async fn customer(&self, id: &CustomerId) -> Result<Option<Customer>, StoreError> {
        self.get_at(keys::customer(id.as_str()), false).await
    }

    pub async fn customers(&self) -> Result<Vec<Customer>, StoreError> {
        self.scan_kind("PROFILE").await
    }

    /// Stores an endpoint's settings after validating them: what is stored is
    /// always usable by the push function. The endpoint id's claim and the
    /// endpoint item are written in one transaction, the claim conditioned on
    /// being absent or this customer's: another customer's id is refused
    /// with [`EndpointWriteError::Taken`] and nothing is written.
    pub async fn put_endpoint(
        &self,
        endpoint: &EndpointSettings,
    ) -> Result<(), EndpointWriteError> {
        let (customer, id) = (endpoint.customer_id.as_str(), endpoint.endpoint_id.as_str());
        endpoint.validate().map_err(|e| self.malformed(id, e))?;
        let label = format!("CUSTOMER#{customer}/ENDPOINT#{id}");
        let item = self.item_at(keys::endpoint(customer, id), endpoint)?;
        let put_endpoint = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(|e| self.malformed(&label, e))?;
        let put_claim = self
            .claim_put(customer, id)
            .build()
            .map_err(|e| self.malformed(&label, e))?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_claim).build())
            .transact_items(TransactWriteItem::builder().put(put_endpoint).build())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_transaction_canceled_exception()) =>
            {
                // Cancelled: the claim's condition, or a conflicting
                // transaction. Only the claim's owner tells which.
                match self.endpoint_owner(&endpoint.endpoint_id).await? {
                    Some(owner) if owner != endpoint.customer_id => {
                        Err(EndpointWriteError::Taken {
                            endpoint_id: id.to_owned(),
                            owner: owner.into(),
                        })
                    }
                    _ => Err(StoreError::sdk("TransactWriteItems", &self.table, e).into()),
                }
            }
            Err(e) => Err(StoreError::sdk("TransactWriteItems", &self.table, e).into()),
        }
    }

    /// Claims `endpoint_id` for `customer` alone (the claim of
    /// [`ConfigStore::put_endpoint`], before anything else is written, so
    /// the CLI stores a key only under an id that is the customer's).
    /// Claiming an id the customer already holds succeeds.
    pub async fn claim_endpoint_id(
        &self,
        customer: &CustomerId,
        endpoint_id: &platformsync_domain::endpoint::EndpointId,
    ) -> Result<(), EndpointWriteError> {
        let (customer, id) = (customer.as_str(), endpoint_id.as_str());
        let item = claim_item(customer, id);
        let claimed = dynamo::put_if(
            &self.client,
            &self.table,
            item,
            CLAIM_CONDITION,
            [(":customer", s(customer))],
        )
        .await?;
        if claimed {
            return Ok(());
        }
        Err(EndpointWriteError::Taken {
            endpoint_id: id.to_owned(),
            owner: self
                .endpoint_owner(endpoint_id)
                .await?
                .map_or_else(|| "(unknown)".into(), String::from),
        })
    }

    /// Claims the id of every stored endpoint that has no claim yet
    /// (endpoints registered before ids were claimed): a scan, for the ops
    /// CLI, run once after upgrading. Returns the ids two customers both
    /// used before (`(id, customer that could not claim it, holder)`), which
    /// staff must rename: until then only the holder may change it.
    pub async fn claim_existing_endpoints(
        &self,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let scan = self
            .client
            .scan()
            .filter_expression("begins_with(SK, :sk) AND begins_with(PK, :pk)")
            .expression_attribute_values(":sk", s("ENDPOINT#"))
            .expression_attribute_values(":pk", s("CUSTOMER#"))
            .projection_expression("CustomerId, EndpointId");
        let items = dynamo::scan_all(&self.table, scan).await?;
        let mut pairs: Vec<(String, String)> = items
            .into_iter()
            .filter_map(
                |item| match (item.get("CustomerId"), item.get("EndpointId")) {
                    (Some(AttributeValue::S(c)), Some(AttributeValue::S(e))) => {
                        Some((c.clone(), e.clone()))
                    }
                    _ => None,
                },
            )
            .collect();
        pairs.sort();
        let mut conflicts = Vec::new();
        for (customer, id) in pairs {
            let (Ok(c), Ok(e)) = (
                CustomerId::parse(&customer),
                platformsync_domain::endpoint::EndpointId::parse(&id),
            ) else {
                continue;
            };
            match self.claim_endpoint_id(&c, &e).await {
                Ok(()) => {}
                Err(EndpointWriteError::Taken { owner, .. }) => {
                    conflicts.push((id, customer, owner));
                }
                Err(EndpointWriteError::Store(e)) => return Err(e),
            }
        }
        Ok(conflicts)
    }

    /// The customer holding `endpoint_id`, if any (a consistent read).
    pub async fn endpoint_owner(
        &self,
        endpoint_id: &EndpointId,
    ) -> Result<Option<CustomerId>, StoreError> {
        let key = pk_sk_key(keys::endpoint_claim(endpoint_id.as_str()));
        let item = dynamo::get_item(&self.client, &self.table, key, true).await?;
        match item.and_then(|mut item| item.remove("CustomerId")) {
            Some(AttributeValue::S(customer)) => CustomerId::parse(&customer)
                .map(Some)
                .map_err(|e| dynamo::malformed(&self.table, endpoint_id.as_str(), e)),
            _ => Ok(None),
        }
    }

    fn claim_put(&self, customer: &str, id: &str) -> aws_sdk_dynamodb::types::builders::PutBuilder {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(claim_item(customer, id)))
            .condition_expression(CLAIM_CONDITION)
            .expression_attribute_values(":customer", s(customer))
    }

    /// The dated assignment history on this table (the fan-out routes by it).
    pub fn assignments(&self) -> crate::assignments::AssignmentStore {
        crate::assignments::AssignmentStore::new(self.client.clone(), self.table.clone())
    }

    pub async fn endpoint(
        &self,
        customer: &CustomerId,
        endpoint: &platformsync_domain::endpoint::EndpointId,
    ) -> Result<Option<EndpointSettings>, StoreError> {
        self.get_at(keys::endpoint(customer.as_str(), endpoint.as_str()), false)
            .await
    }

    /// All endpoints of a customer (one query).
    pub async fn endpoints_of(
        &self,
        customer: &CustomerId,
    ) -> Result<Vec<EndpointSettings>, StoreError> {
        let pk = keys::customer(customer.as_str()).0;
        dynamo::query_prefix(&self.client, &self.table, &pk, "ENDPOINT#", false).await
    }

    /// Every safe and its owner (ops CLI).
    pub async fn safes(&self) -> Result<Vec<SafeOwner>, StoreError> {
        self.scan_kind("OWNER").await
    }

    /// Assigns a safe to a customer (a safe belongs to one customer at a time).
    pub async fn assign_safe(
        &self,
        serial: &SerialNumber,
        customer_id: &CustomerId,
    ) -> Result<(), StoreError> {
        let mut item = pk_sk_key(keys::safe_owner(serial.as_str()));
        item.insert("CustomerId".into(), s(customer_id.as_str()));
        item.insert("SerialNumber".into(), s(serial.as_str()));
        dynamo::put(&self.client, &self.table, item).await
    }

    /// A backfill's checkpoint, if it queued anything (a consistent read).
    pub async fn backfill_checkpoint(
        &self,
        backfill_id: &str,
    ) -> Result<Option<BackfillCheckpoint>, StoreError> {
        self.get_at(keys::backfill_checkpoint(backfill_id), true)
            .await
    }

    /// Records how far a backfill got.
    pub async fn put_backfill_checkpoint(
        &self,
        backfill_id: &str,
        checkpoint: &BackfillCheckpoint,
    ) -> Result<(), StoreError> {
        self.put_at(keys::backfill_checkpoint(backfill_id), checkpoint)
            .await
    }

    /// The owning customer of each of `serials` that has one; one
    /// `BatchGetItem` per 100 safes.
    pub async fn safe_owners(
        &self,
        serials: &[SerialNumber],
    ) -> Result<HashMap<SerialNumber, String>, StoreError> {
        let mut owners = HashMap::new();
        for chunk in serials.chunks(100) {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(
                    chunk
                        .iter()
                        .map(|s| pk_sk_key(keys::safe_owner(s.as_str())))
                        .collect(),
                ))
                .projection_expression("SerialNumber, CustomerId")
                .build()
                .map_err(|e| self.malformed("safe owners", e))?;
            for item in dynamo::batch_get(&self.client, &self.table, request).await? {
                if let (Some(AttributeValue::S(serial)), Some(AttributeValue::S(customer))) =
                    (item.get("SerialNumber"), item.get("CustomerId"))
                    && let Ok(serial) = SerialNumber::parse(serial)
                {
                    owners.insert(serial, customer.clone());
                }
            }
        }
        Ok(owners)
    }

    /// A safe's sequence progress, if any number was ever seen.
    pub async fn sequence(
        &self,
        serial: &SerialNumber,
    ) -> Result<Option<SequenceRecord>, StoreError> {
        self.get_at(keys::safe_sequence(serial.as_str()), true)
            .await
    }

    /// Writes `record` if the stored version is still `record.version - 1`
    /// (or absent when `record.version` is 1). `Ok(false)`: someone else won;
    /// read again and retry.
    pub async fn put_sequence(
        &self,
        serial: &SerialNumber,
        record: &SequenceRecord,
    ) -> Result<bool, StoreError> {
        let item = self.item_at(keys::safe_sequence(serial.as_str()), record)?;
        if record.version <= 1 {
            dynamo::put_if_absent(&self.client, &self.table, item, "PK").await
        } else {
            let previous = n(record.version - 1);
            dynamo::put_if(
                &self.client,
                &self.table,
                item,
                "Version = :previous",
                [(":previous", previous)],
            )
            .await
        }
    }
}

/// `PK/SK`, how errors name an item.
fn label((pk, sk): &(String, String)) -> String {
    format!("{pk}/{sk}")
}

/// The claim item of `id` for `customer`.
fn claim_item(customer: &str, id: &str) -> Item {
    let mut item = pk_sk_key(keys::endpoint_claim(id));
    item.insert("CustomerId".into(), s(customer));
    item.insert("EndpointId".into(), s(id));
    item
}
