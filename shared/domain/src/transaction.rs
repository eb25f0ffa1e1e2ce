//! The two record kinds as stored and pushed.
//!
//! Serialisation writes the push payload v1 form: PascalCase names, `None`
//! fields left out, decimals as exact JSON numbers, `Denominations` always
//! present (empty when none). `SequenceNumber` is an upload-only field: it is
//! read on upload and kept on the struct for the dedup key and for storage,
//! but never written into the payload; an adapter that needs it stores it
//! beside the payload JSON.
//!
//! Deserialisation reads the same form back (and everything the upload parser
//! accepts) through the strict item parser in [`crate::upload`]; it needs
//! `serde_json` over in-memory text (`from_str` / `from_slice`) because the
//! exact decimal text is read as a borrowed [`serde_json::value::RawValue`].

use serde::{Deserialize, Deserializer, Serialize};

use crate::fields::{
    ChangePurchaseNumber, Currency, DepositReferenceNumber, DoorName, Register, UserName,
};
use crate::money::{Amount, UnitValue};
use crate::serial::SerialNumber;
use crate::time::{RetrievedOn, SafeDateTime};
use crate::types::{AuditType, MessageKind, TransactionType};
use crate::upload::{ItemError, UploadItem, item};

/// A cash transaction of a safe (`Transactions` array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Transaction {
    /// Groups all transactions between two courier pickups.
    pub pickup_group_id: i64,
    pub serial_number: SerialNumber,
    pub retrieved_on: RetrievedOn,
    pub transaction_date_time: SafeDateTime,
    pub user_name: UserName,
    pub transaction_type: TransactionType,
    pub amount: Amount,
    pub denominations: Vec<Denomination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register: Option<Register>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_purchase_number: Option<ChangePurchaseNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deposit_reference_number: Option<DepositReferenceNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tube_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tube_column: Option<i64>,
    /// Upload-only: never part of the push payload.
    #[serde(skip_serializing)]
    pub sequence_number: Option<u64>,
}

/// Bills or coins of one face value in a drop or dispense.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Denomination {
    pub unit_value: UnitValue,
    pub count: i64,
    pub currency: Currency,
}

/// An audit record of a safe (`AuditTransactions` array): logins, doors, locks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuditTransaction {
    /// Always 0 on valid audit records (checked by [`crate::quality`]).
    pub pickup_group_id: i64,
    pub serial_number: SerialNumber,
    pub retrieved_on: RetrievedOn,
    pub transaction_date_time: SafeDateTime,
    pub user_name: UserName,
    #[serde(rename = "TransactionType")]
    pub audit_type: AuditType,
    /// Always 0 on valid audit records (checked by [`crate::quality`]).
    pub amount: Amount,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub door_name: Option<DoorName>,
    /// Upload-only: never part of the push payload.
    #[serde(skip_serializing)]
    pub sequence_number: Option<u64>,
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serialising these types to a String cannot fail: every field is a
    // string, an integer or a valid raw number, and maps have string keys.
    serde_json::to_string(value).unwrap_or_default()
}

impl Transaction {
    /// Parses one transaction object with the upload rules (stored payloads too).
    pub fn from_json(text: &str) -> Result<Self, ItemError> {
        match item::parse_standalone(text, MessageKind::Transactions)? {
            UploadItem::Transaction(t) => Ok(t),
            UploadItem::Audit(_) => Err(item::kind_mismatch()),
        }
    }

    /// The push payload v1 JSON of this transaction (no `SequenceNumber`).
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl AuditTransaction {
    /// Parses one audit object with the upload rules (stored payloads too).
    pub fn from_json(text: &str) -> Result<Self, ItemError> {
        match item::parse_standalone(text, MessageKind::AuditTransactions)? {
            UploadItem::Audit(a) => Ok(a),
            UploadItem::Transaction(_) => Err(item::kind_mismatch()),
        }
    }

    /// The push payload v1 JSON of this audit record (no `SequenceNumber`).
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl<'de> Deserialize<'de> for Transaction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match item::deserialize(deserializer, MessageKind::Transactions)? {
            UploadItem::Transaction(t) => Ok(t),
            UploadItem::Audit(_) => Err(serde::de::Error::custom(item::kind_mismatch())),
        }
    }
}

impl<'de> Deserialize<'de> for AuditTransaction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match item::deserialize(deserializer, MessageKind::AuditTransactions)? {
            UploadItem::Audit(a) => Ok(a),
            UploadItem::Transaction(_) => Err(serde::de::Error::custom(item::kind_mismatch())),
        }
    }
}
