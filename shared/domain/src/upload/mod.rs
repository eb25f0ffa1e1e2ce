//! The ingest parser: one upload body in, one outcome per item out.
//!
//! The body is first split into its items as raw JSON text (borrowed
//! [`RawValue`]s, one scan of the body), then each item is parsed on its own,
//! so one bad item never spoils the others. Whole-body problems (not JSON, not
//! an object, unknown top-level key, no items, nesting deeper than
//! [`MAX_DEPTH`]) are an [`UploadError`] (HTTP 400); item problems are an
//! [`ItemError`] on that item (the raw text goes to the rejects table).
//!
//! Invalid UTF-8: RFC 8259 requires UTF-8, but one bad byte must not lose the
//! rest of an upload. The body is then parsed from a lossy copy (each invalid
//! sequence replaced by U+FFFD) and any item whose text contains a
//! replacement is rejected as [`ItemErrorKind::InvalidUtf8`], naming the
//! original byte offset. Its kept raw text is the lossy text.
//!
//! A leading UTF-8 byte order mark is skipped (RFC 8259 allows ignoring it).
//!
//! Nesting: items are scanned without recursion, and any rejected item is
//! checked for depth; an item nested deeper than [`MAX_DEPTH`] (counting the
//! body object and its array) makes the whole body an [`UploadError::TooDeep`],
//! as `serde_json`'s recursion limit would for a plain parse.

mod error;
pub(crate) mod item;
mod utf8;

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

pub use error::{ItemError, ItemErrorKind, ItemRef, Position, UploadError};
pub use item::MAX_DENOMINATIONS;

use crate::dedup::{DedupKey, StorageKey};
use crate::money::{Amount, clip};
use crate::record::RecordType;
use crate::serial::SerialNumber;
use crate::time::{RetrievedOn, SafeDateTime};
use crate::transaction::{AuditTransaction, Transaction};
use crate::types::MessageKind;

/// Deepest nesting accepted in a body (the same limit as `serde_json`'s).
pub const MAX_DEPTH: usize = 128;

/// A parsed record of either kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadItem {
    Transaction(Transaction),
    Audit(AuditTransaction),
}

impl UploadItem {
    pub fn kind(&self) -> MessageKind {
        match self {
            UploadItem::Transaction(_) => MessageKind::Transactions,
            UploadItem::Audit(_) => MessageKind::AuditTransactions,
        }
    }

    pub fn serial(&self) -> &SerialNumber {
        match self {
            UploadItem::Transaction(t) => &t.serial_number,
            UploadItem::Audit(a) => &a.serial_number,
        }
    }

    pub fn transaction_date_time(&self) -> &SafeDateTime {
        match self {
            UploadItem::Transaction(t) => &t.transaction_date_time,
            UploadItem::Audit(a) => &a.transaction_date_time,
        }
    }

    pub fn retrieved_on(&self) -> &RetrievedOn {
        match self {
            UploadItem::Transaction(t) => &t.retrieved_on,
            UploadItem::Audit(a) => &a.retrieved_on,
        }
    }

    pub fn pickup_group_id(&self) -> i64 {
        match self {
            UploadItem::Transaction(t) => t.pickup_group_id,
            UploadItem::Audit(a) => a.pickup_group_id,
        }
    }

    pub fn amount(&self) -> Amount {
        match self {
            UploadItem::Transaction(t) => t.amount,
            UploadItem::Audit(a) => a.amount,
        }
    }

    pub fn sequence_number(&self) -> Option<u64> {
        match self {
            UploadItem::Transaction(t) => t.sequence_number,
            UploadItem::Audit(a) => a.sequence_number,
        }
    }

    /// Canonical type name (`CashIn`, `DoorOpened`), as sent out.
    pub fn type_name(&self) -> &'static str {
        match self {
            UploadItem::Transaction(t) => t.transaction_type.canonical_name(),
            UploadItem::Audit(a) => a.audit_type.canonical_name(),
        }
    }

    /// The record's type, with its kind.
    pub fn record_type(&self) -> RecordType {
        match self {
            UploadItem::Transaction(t) => RecordType::Transaction(t.transaction_type),
            UploadItem::Audit(a) => RecordType::Audit(a.audit_type),
        }
    }

    /// Whether an endpoint whitelist entry names this record's type (either vocabulary).
    pub fn matches_type_name(&self, name: &str) -> bool {
        match self {
            UploadItem::Transaction(t) => t.transaction_type.matches_name(name),
            UploadItem::Audit(a) => a.audit_type.matches_name(name),
        }
    }

    /// See [`SafeDateTime::sort_key`].
    pub fn sort_key(&self) -> String {
        self.transaction_date_time().sort_key()
    }

    /// See [`DedupKey::of`].
    pub fn dedup_key(&self) -> DedupKey {
        DedupKey::of(self)
    }

    /// See [`StorageKey`].
    pub fn storage_key(&self) -> StorageKey {
        StorageKey::of(self)
    }

    /// The push payload v1 JSON of the record (no `SequenceNumber`).
    pub fn to_json(&self) -> String {
        match self {
            UploadItem::Transaction(t) => t.to_json(),
            UploadItem::Audit(a) => a.to_json(),
        }
    }
}

/// One item of an upload: where it was, its text, and what came of it.
#[derive(Debug, Clone)]
pub struct ItemOutcome {
    pub item: ItemRef,
    /// The item's JSON text as received (kept for the rejects table).
    pub raw: String,
    pub result: Result<UploadItem, ItemError>,
}

/// All items of an upload, in body order.
#[derive(Debug, Clone, Default)]
pub struct ParsedUpload {
    pub items: Vec<ItemOutcome>,
}

impl ParsedUpload {
    pub fn accepted(&self) -> impl Iterator<Item = (&ItemOutcome, &UploadItem)> {
        self.items
            .iter()
            .filter_map(|o| o.result.as_ref().ok().map(|i| (o, i)))
    }

    pub fn rejected(&self) -> impl Iterator<Item = (&ItemOutcome, &ItemError)> {
        self.items
            .iter()
            .filter_map(|o| o.result.as_ref().err().map(|e| (o, e)))
    }
}

/// Parses an upload body. Never panics; see the module docs for the rules.
pub fn parse_upload(body: &[u8]) -> Result<ParsedUpload, UploadError> {
    // RFC 8259 lets parsers ignore a UTF-8 byte order mark; some .NET clients send one.
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    let (body, skipped) = match body.strip_prefix(BOM) {
        Some(rest) => (rest, BOM.len()),
        None => (body, 0),
    };
    let (text, replacements): (Cow<'_, str>, Vec<utf8::Replacement>) =
        match std::str::from_utf8(body) {
            Ok(text) => (Cow::Borrowed(text), Vec::new()),
            Err(_) => {
                let lossy = utf8::lossy(body);
                (Cow::Owned(lossy.text), lossy.replacements)
            }
        };
    let text: &str = &text;
    let arrays = split_body(text)?;

    let total: usize = arrays.iter().map(|(_, items)| items.len()).sum();
    if total == 0 {
        return Err(UploadError::Empty);
    }
    let mut items = Vec::with_capacity(total);
    for (kind, raws) in arrays {
        for (index, raw) in raws.into_iter().enumerate() {
            let item = ItemRef { kind, index };
            let raw_text = raw.get();
            let result = match utf8::first_replacement_in(text, raw_text, &replacements) {
                Some(offset) => Err(ItemError::whole(ItemErrorKind::InvalidUtf8 {
                    byte_offset: offset + skipped,
                })),
                None => item::parse_object_or_describe(raw_text, kind),
            };
            let result = match result {
                Ok(parsed) => Ok(parsed),
                Err(mut e) => {
                    // Body object + array + the item's own depth.
                    if exceeds_depth(raw_text, MAX_DEPTH - 2) {
                        return Err(UploadError::TooDeep);
                    }
                    e.item = Some(item);
                    Err(e)
                }
            };
            items.push(ItemOutcome {
                item,
                raw: raw_text.to_owned(),
                result,
            });
        }
    }
    Ok(ParsedUpload { items })
}

/// Whether JSON text nests arrays/objects deeper than `limit`. Iterative.
pub(crate) fn exceeds_depth(text: &str, limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text.as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

type Arrays<'a> = Vec<(MessageKind, Vec<&'a RawValue>)>;

/// Splits the body into its arrays of raw items, in body order.
fn split_body(text: &str) -> Result<Arrays<'_>, UploadError> {
    let mut stash = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let result = de
        .deserialize_any(BodyVisitor { stash: &mut stash })
        .and_then(|arrays| de.end().map(|()| arrays));
    result.map_err(|e| {
        let at = Position {
            line: e.line(),
            column: e.column(),
        };
        if exceeds_depth(text, MAX_DEPTH) {
            return UploadError::TooDeep;
        }
        match stash {
            Some(BodyProblem::NotAnObject(got)) => UploadError::NotAnObject { got, at },
            Some(BodyProblem::UnknownKey(key)) => UploadError::UnknownKey { key, at },
            Some(BodyProblem::DuplicateKey(key)) => UploadError::DuplicateKey { key, at },
            Some(BodyProblem::NotAnArray(key, got)) => UploadError::NotAnArray { key, got, at },
            None => UploadError::InvalidJson {
                message: e.to_string(),
            },
        }
    })
}

enum BodyProblem {
    NotAnObject(String),
    UnknownKey(String),
    DuplicateKey(MessageKind),
    NotAnArray(MessageKind, String),
}

/// Implements the `visit_*` methods of a visitor that wants one JSON shape and
/// reports any other as `self.other(description)`.
macro_rules! describe_others {
    ($value:ty) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<$value, E> {
            Err(self.other(format!("boolean {v}")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<$value, E> {
            Err(self.other(format!("number {v}")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<$value, E> {
            Err(self.other(format!("number {v}")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<$value, E> {
            Err(self.other(format!("number {v}")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<$value, E> {
            Err(self.other(format!("string {:?}", clip(v))))
        }
    };
}

struct BodyVisitor<'s> {
    stash: &'s mut Option<BodyProblem>,
}

impl BodyVisitor<'_> {
    fn other<E: de::Error>(self, got: String) -> E {
        *self.stash = Some(BodyProblem::NotAnObject(got));
        E::custom("body is not an object")
    }
}

impl<'de> Visitor<'de> for BodyVisitor<'_> {
    type Value = Arrays<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an upload object")
    }

    describe_others!(Arrays<'de>);

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(self.other("null".to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<Self::Value, A::Error> {
        Err(self.other("array".to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut arrays: Arrays<'de> = Vec::with_capacity(2);
        let mut seen = [false; 2];
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let Some(kind) = MessageKind::from_wire_name(&key) else {
                *self.stash = Some(BodyProblem::UnknownKey(clip(&key)));
                return Err(de::Error::custom("unknown top-level key"));
            };
            let slot = &mut seen[kind as usize];
            if *slot {
                *self.stash = Some(BodyProblem::DuplicateKey(kind));
                return Err(de::Error::custom("duplicate top-level key"));
            }
            *slot = true;
            let items = map.next_value_seed(ArraySeed {
                kind,
                stash: &mut *self.stash,
            })?;
            arrays.push((kind, items));
        }
        Ok(arrays)
    }
}

/// One top-level array, its elements kept as raw text. `null` counts as absent.
struct ArraySeed<'s> {
    kind: MessageKind,
    stash: &'s mut Option<BodyProblem>,
}

impl ArraySeed<'_> {
    fn other<E: de::Error>(self, got: String) -> E {
        *self.stash = Some(BodyProblem::NotAnArray(self.kind, got));
        E::custom("not an array")
    }
}

impl<'de> DeserializeSeed<'de> for ArraySeed<'_> {
    type Value = Vec<&'de RawValue>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ArraySeed<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }

    describe_others!(Vec<&'de RawValue>);

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<Self::Value, A::Error> {
        Err(self.other("object".to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(64).min(4096));
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            items.push(raw);
        }
        Ok(items)
    }
}
