//! Records the system stores: a transaction as the transactions table holds
//! it, where it stands with delivery, why it is held and what staff decided,
//! and an item that could not be parsed, kept raw for support.
//!
//! The stored shape (PascalCase attribute names, names rather than enums'
//! debug forms, RFC 3339 times) is the serde form of these types, so every
//! reader (the fan-out's stream images, the pull API, the ops CLI) decodes
//! one definition. Decoding validates: a stored item whose kind and type
//! disagree, or whose serial number is not one, is refused, not carried.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::dedup::StorageKey;
use crate::quality::HoldReason;
use crate::serial::SerialNumber;
use crate::types::{AuditType, MessageKind, TransactionType, UnknownTypeError};

/// Where a stored transaction stands with respect to delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeliveryStatus {
    /// Passed the data-quality checks: pushed to the owner's endpoints.
    Deliverable,
    /// Failed a data-quality check: kept, not pushed until staff decide.
    Held,
    /// Held, then released by staff: pushed.
    Released,
    /// Held, then discarded by staff: never pushed.
    Discarded,
}

impl DeliveryStatus {
    /// Whether the fan-out pushes an item in this state.
    pub fn is_pushable(self) -> bool {
        matches!(self, DeliveryStatus::Deliverable | DeliveryStatus::Released)
    }

    /// The stored name (`Held`, `Released`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DeliveryStatus::Deliverable => "Deliverable",
            DeliveryStatus::Held => "Held",
            DeliveryStatus::Released => "Released",
            DeliveryStatus::Discarded => "Discarded",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a transaction is held, as stored for staff.
///
/// `code` stays text rather than [`HoldReason`]'s tag: a note outlives the
/// code that wrote it, and a check renamed or retired must not make the
/// transactions it held unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HoldNote {
    pub code: String,
    pub message: String,
}

impl From<&HoldReason> for HoldNote {
    fn from(reason: &HoldReason) -> Self {
        HoldNote {
            code: reason.code().to_owned(),
            message: reason.to_string(),
        }
    }
}

/// A record's type together with its kind: a transaction type only ever
/// travels as `Transactions`, an audit type as `AuditTransactions`, so the
/// pair cannot disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    Transaction(TransactionType),
    Audit(AuditType),
}

impl RecordType {
    pub fn kind(self) -> MessageKind {
        match self {
            RecordType::Transaction(_) => MessageKind::Transactions,
            RecordType::Audit(_) => MessageKind::AuditTransactions,
        }
    }

    /// The canonical name (`CashIn`, `DoorOpened`), as sent out and stored.
    pub fn canonical_name(self) -> &'static str {
        match self {
            RecordType::Transaction(t) => t.canonical_name(),
            RecordType::Audit(a) => a.canonical_name(),
        }
    }

    /// The type named `name` (either vocabulary) within `kind`.
    pub fn parse(kind: MessageKind, name: &str) -> Result<Self, UnknownTypeError> {
        match kind {
            MessageKind::Transactions => TransactionType::parse(name).map(RecordType::Transaction),
            MessageKind::AuditTransactions => AuditType::parse(name).map(RecordType::Audit),
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.canonical_name())
    }
}

/// One item of the transactions table: written once by the ingest, changed
/// only by staff's decision on a held one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTransaction {
    pub serial_number: SerialNumber,
    /// Safe-local time + `#` + dedup key (see [`StorageKey`]).
    pub sort_key: String,
    pub dedup_key: String,
    /// Stored as two attributes, `Kind` and `TransactionType`.
    pub record_type: RecordType,
    pub status: DeliveryStatus,
    pub hold_reasons: Vec<HoldNote>,
    /// The transaction as pushed (payload v1 fields, exact decimals), so the
    /// fan-out and the pull API never re-derive it.
    pub payload: String,
    pub sequence_number: Option<u64>,
    pub upload_id: String,
    /// When PlatformSync stored it: latency is measured from here.
    pub received_at: OffsetDateTime,
}

impl StoredTransaction {
    pub fn kind(&self) -> MessageKind {
        self.record_type.kind()
    }

    pub fn type_name(&self) -> &'static str {
        self.record_type.canonical_name()
    }

    pub fn storage_key(&self) -> StorageKey {
        StorageKey {
            partition: self.serial_number.clone(),
            sort: self.sort_key.clone(),
        }
    }

    /// `SERIAL|SORTKEY`: how operators and batch messages name it.
    pub fn key(&self) -> String {
        self.storage_key().to_string()
    }
}

/// The stored form of [`StoredTransaction`], borrowed for writing.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct StoredItemRef<'a> {
    serial_number: &'a SerialNumber,
    sort_key: &'a str,
    dedup_key: &'a str,
    kind: MessageKind,
    transaction_type: &'static str,
    status: DeliveryStatus,
    #[serde(skip_serializing_if = "<[HoldNote]>::is_empty")]
    hold_reasons: &'a [HoldNote],
    payload: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_number: Option<u64>,
    upload_id: &'a str,
    received_at: String,
}

/// The stored form of [`StoredTransaction`], as read.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StoredItem {
    serial_number: SerialNumber,
    sort_key: String,
    dedup_key: String,
    kind: MessageKind,
    transaction_type: String,
    status: DeliveryStatus,
    #[serde(default)]
    hold_reasons: Vec<HoldNote>,
    payload: String,
    #[serde(default)]
    sequence_number: Option<u64>,
    upload_id: String,
    received_at: String,
}

impl Serialize for StoredTransaction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StoredItemRef {
            serial_number: &self.serial_number,
            sort_key: &self.sort_key,
            dedup_key: &self.dedup_key,
            kind: self.kind(),
            transaction_type: self.type_name(),
            status: self.status,
            hold_reasons: &self.hold_reasons,
            payload: &self.payload,
            sequence_number: self.sequence_number,
            upload_id: &self.upload_id,
            received_at: rfc3339(self.received_at).map_err(serde::ser::Error::custom)?,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StoredTransaction {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let item = StoredItem::deserialize(deserializer)?;
        let record_type =
            RecordType::parse(item.kind, &item.transaction_type).map_err(D::Error::custom)?;
        let received_at = OffsetDateTime::parse(&item.received_at, &Rfc3339)
            .map_err(|e| D::Error::custom(format!("ReceivedAt {:?}: {e}", item.received_at)))?;
        Ok(StoredTransaction {
            serial_number: item.serial_number,
            sort_key: item.sort_key,
            dedup_key: item.dedup_key,
            record_type,
            status: item.status,
            hold_reasons: item.hold_reasons,
            payload: item.payload,
            sequence_number: item.sequence_number,
            upload_id: item.upload_id,
            received_at,
        })
    }
}

/// RFC 3339 text of `at`; only years outside 0..=9999 have none.
pub fn rfc3339(at: OffsetDateTime) -> Result<String, time::error::Format> {
    at.format(&Rfc3339)
}

/// What staff decide about a held transaction. Only these two: a held
/// transaction cannot be decided back into `Held` or `Deliverable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldDecision {
    Release,
    Discard,
}

impl HoldDecision {
    /// The status the transaction gets.
    pub fn status(self) -> DeliveryStatus {
        match self {
            HoldDecision::Release => DeliveryStatus::Released,
            HoldDecision::Discard => DeliveryStatus::Discarded,
        }
    }
}

/// Who decided about a held transaction, when and why (stored on the item
/// itself, in the decision's own update, so it cannot be missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionNote {
    pub by: String,
    pub at: OffsetDateTime,
    pub reason: String,
}

/// A stored transaction as staff see it: the item and, once decided, who
/// decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTransaction {
    pub transaction: StoredTransaction,
    pub decision: Option<DecisionNote>,
}

/// How long a reject is kept.
pub const REJECT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// DynamoDB items are at most 400 KB: raw text beyond this is cut (and the
/// cut is recorded) rather than losing the whole record.
pub const MAX_REJECT_RAW_BYTES: usize = 256 * 1024;

/// An upload item (or a whole body) that could not be parsed, kept raw with
/// its reason so support can see exactly what SafeSync sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RejectRecord {
    pub upload_id: String,
    /// `Transactions#000003`, `AuditTransactions#000000`, or `Body` for an
    /// upload refused as a whole.
    pub item_ref: String,
    pub code: String,
    pub reason: String,
    pub raw: String,
    #[serde(default)]
    pub raw_truncated: bool,
    pub received_at: String,
    /// Epoch seconds; the table's time to live.
    pub expires_at: i64,
}

impl RejectRecord {
    /// A record for `raw`, cut at [`MAX_REJECT_RAW_BYTES`] on a character
    /// boundary, kept [`REJECT_RETENTION`] from `received_at`.
    pub fn new(
        upload_id: &str,
        item_ref: String,
        code: &str,
        reason: String,
        raw: &str,
        received_at: OffsetDateTime,
    ) -> Self {
        let (raw, raw_truncated) = if raw.len() > MAX_REJECT_RAW_BYTES {
            let mut end = MAX_REJECT_RAW_BYTES;
            while !raw.is_char_boundary(end) {
                end -= 1;
            }
            (raw[..end].to_owned(), true)
        } else {
            (raw.to_owned(), false)
        };
        Self {
            upload_id: upload_id.to_owned(),
            item_ref,
            code: code.to_owned(),
            reason,
            raw,
            raw_truncated,
            // Support reads the time; a year past 9999 keeps the epoch below.
            received_at: rfc3339(received_at).unwrap_or_default(),
            expires_at: received_at.unix_timestamp() + REJECT_RETENTION.as_secs() as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredTransaction {
        StoredTransaction {
            serial_number: SerialNumber::parse("UT07761").unwrap(),
            sort_key: "2019-09-12T08:00:00.0000000#sha:00".into(),
            dedup_key: "sha:00".into(),
            record_type: RecordType::Audit(AuditType::DoorOpened),
            status: DeliveryStatus::Held,
            hold_reasons: vec![HoldNote {
                code: "audit_amount_not_zero".into(),
                message: "audit record has Amount 1; expected 0".into(),
            }],
            payload: "{}".into(),
            sequence_number: Some(7),
            upload_id: "u1".into(),
            received_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        }
    }

    #[test]
    fn the_stored_form_round_trips_with_its_attribute_names() {
        let stored = sample();
        let json = serde_json::to_value(&stored).unwrap();
        assert_eq!(json["Kind"], "AuditTransactions");
        assert_eq!(json["TransactionType"], "DoorOpened");
        assert_eq!(json["Status"], "Held");
        assert_eq!(json["ReceivedAt"], "2023-11-14T22:13:20Z");
        assert_eq!(json["HoldReasons"][0]["Code"], "audit_amount_not_zero");
        let back: StoredTransaction = serde_json::from_value(json).unwrap();
        assert_eq!(back, stored);
    }

    #[test]
    fn a_kind_and_type_that_disagree_are_refused() {
        let mut json = serde_json::to_value(sample()).unwrap();
        json["Kind"] = "Transactions".into();
        let e = serde_json::from_value::<StoredTransaction>(json).unwrap_err();
        assert!(e.to_string().contains("DoorOpened"), "{e}");
    }

    #[test]
    fn a_decision_is_release_or_discard_only() {
        assert_eq!(HoldDecision::Release.status(), DeliveryStatus::Released);
        assert_eq!(HoldDecision::Discard.status(), DeliveryStatus::Discarded);
        assert!(HoldDecision::Release.status().is_pushable());
        assert!(!HoldDecision::Discard.status().is_pushable());
    }

    #[test]
    fn raw_text_is_cut_on_a_character_boundary() {
        let epoch = OffsetDateTime::UNIX_EPOCH;
        let raw = "é".repeat(MAX_REJECT_RAW_BYTES); // 2 bytes each
        let r = RejectRecord::new("u", "Body".into(), "c", "r".into(), &raw, epoch);
        assert!(r.raw_truncated);
        assert!(r.raw.len() <= MAX_REJECT_RAW_BYTES);
        assert_eq!(r.expires_at, REJECT_RETENTION.as_secs() as i64);
        let small = RejectRecord::new("u", "Body".into(), "c", "r".into(), "{}", epoch);
        assert!(!small.raw_truncated);
    }
}
