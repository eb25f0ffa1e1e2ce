//! Identity of a record, for "store once, push once".
//!
//! SafeSync re-sends what it sent before, sometimes re-read from the safe
//! (new `RetrievedOn`) and re-serialised (other key order, whitespace, number
//! spelling). The key must see through all of that:
//!
//! * With a `SequenceNumber` (the safe's own counter), identity is
//!   serial + sequence: `seq:{SERIAL}:{n:020}` for a transaction,
//!   `aseq:{SERIAL}:{n:020}` for an audit record. The two arrays are two
//!   record kinds, and nothing says a safe numbers them from one counter: a
//!   transaction and an audit record with the same number are two records.
//!   (The transaction form predates the audit one and stays byte-for-byte
//!   what it was, so every stored transaction keeps its key.)
//! * Otherwise a SHA-256 over a canonical, length-prefixed encoding of the
//!   identifying fields: message kind, serial, canonical type,
//!   `TransactionDateTime` as received, `PickupGroupId`, `UserName`, `Amount`
//!   normalised (`20.0` = `20`; encoded as mantissa and scale), denominations
//!   sorted canonically with unit values normalised, `Register`, `ChangePurchaseNumber`,
//!   `DepositReferenceNumber`, `TubeCount`, `TubeColumn`, `DoorName`. Never
//!   `RetrievedOn`. Written `sha:{32 hex}` (the first 128 bits: ample against
//!   accidental collisions within one safe).

use std::fmt;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::serial::{SerialError, SerialNumber};
use crate::transaction::{AuditTransaction, Transaction};
use crate::upload::UploadItem;

/// Domain separation: changing the encoding must change every key.
const ENCODING_VERSION: &[u8] = b"platformsync-dedup-v1";

/// A record's identity. Its [`Display`](fmt::Display) form is what is stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DedupKey {
    /// A transaction's `SequenceNumber`.
    Sequence {
        serial: SerialNumber,
        sequence: u64,
    },
    /// An audit record's `SequenceNumber`: never equal to a transaction's key.
    AuditSequence {
        serial: SerialNumber,
        sequence: u64,
    },
    Digest([u8; 16]),
}

impl DedupKey {
    /// The key of a parsed record; see the module docs.
    pub fn of(item: &UploadItem) -> Self {
        if let Some(sequence) = item.sequence_number() {
            let serial = item.serial().clone();
            return match item {
                UploadItem::Transaction(_) => DedupKey::Sequence { serial, sequence },
                UploadItem::Audit(_) => DedupKey::AuditSequence { serial, sequence },
            };
        }
        let mut enc = Encoder::new();
        match item {
            UploadItem::Transaction(t) => enc.transaction(t),
            UploadItem::Audit(a) => enc.audit(a),
        }
        DedupKey::Digest(enc.finish())
    }
}

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DedupKey::Sequence { serial, sequence } => write!(f, "seq:{serial}:{sequence:020}"),
            DedupKey::AuditSequence { serial, sequence } => {
                write!(f, "aseq:{serial}:{sequence:020}")
            }
            DedupKey::Digest(bytes) => write!(f, "sha:{}", hex::encode(bytes)),
        }
    }
}

/// The records table's primary key.
///
/// `partition` is the safe; `sort` is `{SafeDateTime::sort_key()}#{dedup key}`.
/// Ingest puts conditionally on this key (`attribute_not_exists`), so a record
/// uploaded twice is stored once. The same key serves the pull API: query a
/// serial's partition with a `sort` range built from two time prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageKey {
    pub partition: SerialNumber,
    pub sort: String,
}

/// What separates the serial from the sort key in a key's text. A serial
/// number holds no `|`, so the first one splits.
pub const KEY_SEPARATOR: char = '|';

/// Why a key's text (`SERIAL|SORTKEY`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageKeyError {
    #[error("{received:?} is not a transaction key (SERIAL|SORTKEY)")]
    Shape { received: String },
    #[error("in key {received:?}: {source}")]
    Serial {
        received: String,
        source: SerialError,
    },
}

/// `SERIAL|SORTKEY`: how operators, batch messages and fan-out plans name a
/// stored transaction. The one spelling of a key as text; [`str::parse`]
/// reads it back.
impl fmt::Display for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{KEY_SEPARATOR}{}", self.partition, self.sort)
    }
}

impl std::str::FromStr for StorageKey {
    type Err = StorageKeyError;

    /// Both parts must be there; the serial is read as [`SerialNumber::parse`] reads it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (serial, sort) = text
            .split_once(KEY_SEPARATOR)
            .filter(|(serial, sort)| !serial.is_empty() && !sort.is_empty())
            .ok_or_else(|| StorageKeyError::Shape {
                received: text.to_owned(),
            })?;
        let partition = SerialNumber::parse(serial).map_err(|source| StorageKeyError::Serial {
            received: text.to_owned(),
            source,
        })?;
        Ok(StorageKey {
            partition,
            sort: sort.to_owned(),
        })
    }
}

impl StorageKey {
    pub fn of(item: &UploadItem) -> Self {
        let mut sort = item.sort_key();
        sort.push('#');
        // Writing to a String cannot fail.
        let _ = fmt::Write::write_fmt(&mut sort, format_args!("{}", item.dedup_key()));
        StorageKey {
            partition: item.serial().clone(),
            sort,
        }
    }
}

/// Unit value (20 bytes), count (8), currency (3).
const DENOMINATION_BYTES: usize = 31;

/// Mantissa (16 bytes, big-endian) and scale (4) of a decimal. Zero, of
/// either sign, is mantissa 0.
fn decimal_bytes(d: Decimal) -> [u8; 20] {
    let (mantissa, scale) = if d.is_zero() {
        (0, 0)
    } else {
        (d.mantissa(), d.scale())
    };
    let mut out = [0u8; 20];
    out[..16].copy_from_slice(&mantissa.to_be_bytes());
    out[16..].copy_from_slice(&scale.to_be_bytes());
    out
}

struct Encoder {
    hasher: Sha256,
}

impl Encoder {
    fn new() -> Self {
        let mut e = Encoder {
            hasher: Sha256::new(),
        };
        e.bytes(ENCODING_VERSION);
        e
    }

    /// Length-prefixed, so no two field sequences encode alike.
    fn bytes(&mut self, b: &[u8]) {
        self.hasher.update((b.len() as u64).to_be_bytes());
        self.hasher.update(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn int(&mut self, n: i64) {
        self.hasher.update(n.to_be_bytes());
    }

    /// A normalised decimal by value: mantissa and scale are unique once
    /// trailing zeros are gone, and need no text formatting.
    fn decimal(&mut self, d: Decimal) {
        self.hasher.update(decimal_bytes(d));
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.hasher.update([0u8]),
            Some(s) => {
                self.hasher.update([1u8]);
                self.str(s);
            }
        }
    }

    fn opt_int(&mut self, n: Option<i64>) {
        match n {
            None => self.hasher.update([0u8]),
            Some(n) => {
                self.hasher.update([1u8]);
                self.int(n);
            }
        }
    }

    fn common(
        &mut self,
        kind: &str,
        serial: &SerialNumber,
        type_name: &str,
        when: &str,
        pickup: i64,
        user: &str,
    ) {
        self.str(kind);
        self.str(serial.as_str());
        self.str(type_name);
        self.str(when);
        self.int(pickup);
        self.str(user);
    }

    fn transaction(&mut self, t: &Transaction) {
        self.common(
            "Transactions",
            &t.serial_number,
            t.transaction_type.canonical_name(),
            t.transaction_date_time.as_str(),
            t.pickup_group_id,
            &t.user_name,
        );
        self.decimal(t.amount.normalized());
        // Order of denominations is not identity: encode each, sort the encodings.
        let mut denoms: Vec<[u8; DENOMINATION_BYTES]> = t
            .denominations
            .iter()
            .map(|d| {
                let mut buf = [0u8; DENOMINATION_BYTES];
                buf[..20].copy_from_slice(&decimal_bytes(d.unit_value.normalized()));
                buf[20..28].copy_from_slice(&d.count.to_be_bytes());
                buf[28..].copy_from_slice(&d.currency.as_bytes());
                buf
            })
            .collect();
        denoms.sort_unstable();
        self.hasher.update((denoms.len() as u64).to_be_bytes());
        for d in &denoms {
            self.hasher.update(d);
        }
        self.opt_str(t.register.as_deref());
        self.opt_str(t.change_purchase_number.as_deref());
        self.opt_str(t.deposit_reference_number.as_deref());
        self.opt_int(t.tube_count);
        self.opt_int(t.tube_column);
        self.opt_str(None); // DoorName: not a transaction field
    }

    fn audit(&mut self, a: &AuditTransaction) {
        self.common(
            "AuditTransactions",
            &a.serial_number,
            a.audit_type.canonical_name(),
            a.transaction_date_time.as_str(),
            a.pickup_group_id,
            &a.user_name,
        );
        self.decimal(a.amount.normalized());
        self.hasher.update(0u64.to_be_bytes()); // no denominations
        for _ in 0..3 {
            self.opt_str(None);
        }
        self.opt_int(None);
        self.opt_int(None);
        self.opt_str(a.door_name.as_deref());
    }

    fn finish(self) -> [u8; 16] {
        let digest = self.hasher.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Amount;
    use crate::upload::parse_upload;

    #[test]
    fn a_key_is_written_and_read_as_serial_bar_sort_key() {
        let key = StorageKey {
            partition: SerialNumber::parse("UT07761").unwrap(),
            sort: "2018-12-07T11:54:27.0000000#sha:ab|x".into(),
        };
        let text = key.to_string();
        assert_eq!(text, "UT07761|2018-12-07T11:54:27.0000000#sha:ab|x");
        assert_eq!(text.parse::<StorageKey>(), Ok(key));
        // The serial is read as everywhere else: trimmed, upper-cased.
        let lower: StorageKey = "ut1|s".parse().unwrap();
        assert_eq!(lower.partition.as_str(), "UT1");
        for bad in ["", "UT1", "UT1|", "|s"] {
            assert_eq!(
                bad.parse::<StorageKey>(),
                Err(StorageKeyError::Shape {
                    received: bad.into()
                }),
                "{bad:?}"
            );
        }
        assert!(matches!(
            "U T1|s".parse::<StorageKey>(),
            Err(StorageKeyError::Serial { .. })
        ));
    }

    fn item(json: &str) -> UploadItem {
        let body = format!(r#"{{"Transactions":[{json}]}}"#);
        let parsed = parse_upload(body.as_bytes()).unwrap();
        parsed.items[0].result.clone().unwrap()
    }

    const BASE: &str = r#"{"PickupGroupId":1,"SerialNumber":"UT07761","RetrievedOn":"2019-09-12T14:11:20Z","TransactionDateTime":"2019-09-26T00:01:00","UserName":"U","TransactionType":"CashIn","Amount":20.0,"Denominations":[{"UnitValue":20.0000,"Count":1,"Currency":"USD"}]}"#;

    #[test]
    fn sequence_key_form() {
        let json = BASE.replace(
            r#""PickupGroupId":1"#,
            r#""PickupGroupId":1,"SequenceNumber":42"#,
        );
        let k = item(&json).dedup_key();
        assert_eq!(k.to_string(), "seq:UT07761:00000000000000000042");
    }

    /// Stored keys never change: these are the exact keys a transaction got
    /// before audit records had their own sequence form.
    #[test]
    fn transaction_keys_are_byte_for_byte_unchanged() {
        let i = item(BASE);
        assert_eq!(
            i.storage_key().sort,
            "2019-09-26T00:01:00.0000000#sha:aedafe2c406a2ee2863b670570e4864a"
        );
        let json = BASE.replace(
            r#""PickupGroupId":1"#,
            r#""PickupGroupId":1,"SequenceNumber":18446744073709551615"#,
        );
        assert_eq!(
            item(&json).storage_key().sort,
            "2019-09-26T00:01:00.0000000#seq:UT07761:18446744073709551615"
        );
    }

    #[test]
    fn audit_and_transaction_with_one_sequence_number_are_two_records() {
        let t = item(&BASE.replace(
            r#""PickupGroupId":1"#,
            r#""PickupGroupId":1,"SequenceNumber":42"#,
        ));
        let a = UploadItem::Audit(AuditTransaction {
            pickup_group_id: 0,
            serial_number: t.serial().clone(),
            retrieved_on: t.retrieved_on().clone(),
            transaction_date_time: t.transaction_date_time().clone(),
            user_name: crate::fields::UserName::parse("U").unwrap(),
            audit_type: crate::types::AuditType::DoorOpened,
            amount: Amount::parse("0").unwrap(),
            door_name: None,
            sequence_number: Some(42),
        });
        assert_eq!(
            t.dedup_key().to_string(),
            "seq:UT07761:00000000000000000042"
        );
        assert_eq!(
            a.dedup_key().to_string(),
            "aseq:UT07761:00000000000000000042"
        );
        assert_ne!(t.storage_key(), a.storage_key());
    }

    #[test]
    fn digest_key_form_and_storage_key() {
        let i = item(BASE);
        let k = i.dedup_key().to_string();
        assert!(k.starts_with("sha:"));
        assert_eq!(k.len(), 4 + 32);
        let sk = i.storage_key();
        assert_eq!(sk.partition.as_str(), "UT07761");
        assert_eq!(sk.sort, format!("2019-09-26T00:01:00.0000000#{k}"));
    }

    #[test]
    fn retrieved_on_and_scale_do_not_matter() {
        let other = BASE
            .replace("2019-09-12T14:11:20Z", "2020-01-01T00:00:00.1234567+02:00")
            .replace("20.0000", "20")
            .replace("\"Amount\":20.0", "\"Amount\":20.00")
            .replace("CashIn", "validatedcashin");
        assert_eq!(item(BASE).dedup_key(), item(&other).dedup_key());
    }

    #[test]
    fn audit_and_transaction_never_collide() {
        let t = item(BASE);
        let a = UploadItem::Audit(AuditTransaction {
            pickup_group_id: 1,
            serial_number: t.serial().clone(),
            retrieved_on: t.retrieved_on().clone(),
            transaction_date_time: t.transaction_date_time().clone(),
            user_name: crate::fields::UserName::parse("U").unwrap(),
            audit_type: crate::types::AuditType::Login,
            amount: t.amount(),
            door_name: None,
            sequence_number: None,
        });
        assert_ne!(t.dedup_key(), a.dedup_key());
    }
}
