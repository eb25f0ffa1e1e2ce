//! Errors of the upload parser: whole-body ([`UploadError`], HTTP 400) and
//! per-item ([`ItemError`], the item goes to the rejects table).

use std::borrow::Cow;
use std::fmt;

use crate::fields::FormatError;
use crate::serial::SerialError;
use crate::time::TimestampError;
use crate::types::{MessageKind, UnknownTypeError};

/// Which item of an upload: its array and its index within that array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemRef {
    pub kind: MessageKind,
    pub index: usize,
}

impl fmt::Display for ItemRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.kind.wire_name(), self.index)
    }
}

/// Where a body-level error was found (from `serde_json`, 1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at line {} column {}", self.line, self.column)
    }
}

/// The whole body is unusable: nothing in it is stored (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// Not JSON at all, or trailing text; the message carries line and column.
    #[error("body is not valid JSON: {message}")]
    InvalidJson { message: String },
    #[error(
        "body must be a JSON object with \"Transactions\" and/or \"AuditTransactions\" arrays, got {got} {at}"
    )]
    NotAnObject { got: String, at: Position },
    #[error(
        "unknown top-level key {key:?} {at}; only \"Transactions\" and \"AuditTransactions\" are accepted"
    )]
    UnknownKey { key: String, at: Position },
    #[error("top-level key \"{key}\" appears more than once {at}")]
    DuplicateKey { key: MessageKind, at: Position },
    #[error("\"{key}\" must be a JSON array, got {got} {at}")]
    NotAnArray {
        key: MessageKind,
        got: String,
        at: Position,
    },
    #[error("nesting deeper than {} levels", super::MAX_DEPTH)]
    TooDeep,
    #[error("upload contains no transactions and no audit transactions")]
    Empty,
}

impl UploadError {
    /// Stable short code for logs, metrics and API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            UploadError::InvalidJson { .. } => "invalid_json",
            UploadError::NotAnObject { .. } => "not_an_object",
            UploadError::UnknownKey { .. } => "unknown_key",
            UploadError::DuplicateKey { .. } => "duplicate_key",
            UploadError::NotAnArray { .. } => "not_an_array",
            UploadError::TooDeep => "too_deep",
            UploadError::Empty => "empty_upload",
        }
    }
}

/// Why one item was rejected. The other items of the upload are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemErrorKind {
    #[error("expected {expected}, got {got}")]
    WrongType { expected: &'static str, got: String },
    #[error("missing required field")]
    MissingField,
    #[error("unknown field")]
    UnknownField,
    /// `serde_json` would silently keep the last of two equal keys; a record
    /// with two amounts is ambiguous, so it is refused.
    #[error("field appears more than once")]
    DuplicateField,
    /// A field of the other record kind with a value (e.g. `DoorName` on a
    /// transaction). `null` (or `[]` for `Denominations`) is tolerated.
    #[error("field is not used on {kind} records; send null or leave it out")]
    NotApplicable { kind: MessageKind },
    #[error("expected a JSON object, got {got}")]
    NotAnObject { got: String },
    #[error(transparent)]
    InvalidSerial(SerialError),
    #[error(transparent)]
    InvalidTimestamp(TimestampError),
    #[error(transparent)]
    UnknownType(UnknownTypeError),
    #[error("{value} is out of range ({limit})")]
    OutOfRange { value: String, limit: &'static str },
    /// A list longer than any real record has (e.g. thousands of
    /// denominations): refused before it can make a stored item too large
    /// for DynamoDB (400 KB), which would fail on every re-send.
    #[error("has {count} entries; at most {limit} are accepted")]
    TooManyEntries { count: usize, limit: usize },
    /// The record's stored form would exceed what one DynamoDB item holds.
    #[error("the stored record would be {bytes} bytes; at most {limit} are accepted")]
    TooLarge { bytes: usize, limit: usize },
    #[error(transparent)]
    InvalidFormat(FormatError),
    /// Exponent notation and similar number spellings refused for money.
    #[error("{reason}")]
    InvalidNumber { reason: String },
    #[error("invalid UTF-8 at byte offset {byte_offset} of the body")]
    InvalidUtf8 { byte_offset: usize },
    /// Text that is not JSON (stand-alone parsing of stored payloads), or a
    /// string escape the body scan accepts but that denotes no character (a
    /// lone surrogate such as `"\uD800"`).
    #[error("not valid JSON: {message}")]
    InvalidJson { message: String },
}

impl ItemErrorKind {
    /// Stable short code, stored with the reject.
    pub fn code(&self) -> &'static str {
        match self {
            ItemErrorKind::WrongType { .. } => "wrong_type",
            ItemErrorKind::MissingField => "missing_field",
            ItemErrorKind::UnknownField => "unknown_field",
            ItemErrorKind::DuplicateField => "duplicate_field",
            ItemErrorKind::NotApplicable { .. } => "not_applicable",
            ItemErrorKind::NotAnObject { .. } => "not_an_object",
            ItemErrorKind::InvalidSerial(_) => "invalid_serial",
            ItemErrorKind::InvalidTimestamp(_) => "invalid_timestamp",
            ItemErrorKind::UnknownType(_) => "unknown_type",
            ItemErrorKind::OutOfRange { .. } => "out_of_range",
            ItemErrorKind::TooManyEntries { .. } => "too_many_entries",
            ItemErrorKind::TooLarge { .. } => "item_too_large",
            ItemErrorKind::InvalidFormat(_) => "invalid_format",
            ItemErrorKind::InvalidNumber { .. } => "invalid_number",
            ItemErrorKind::InvalidUtf8 { .. } => "invalid_utf8",
            ItemErrorKind::InvalidJson { .. } => "invalid_json",
        }
    }
}

/// One item's rejection: which item, which field, and why.
///
/// Displays as `Transactions[3].Amount: expected a JSON number, got string "NaN"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// `None` when parsing a stand-alone record (not from an upload).
    pub item: Option<ItemRef>,
    /// Path of the field inside the item (`Amount`, `Denominations[1].Count`);
    /// `None` when the item as a whole is at fault.
    pub field: Option<Cow<'static, str>>,
    pub kind: ItemErrorKind,
}

impl ItemError {
    pub(crate) fn at(field: impl Into<Cow<'static, str>>, kind: ItemErrorKind) -> Self {
        ItemError {
            item: None,
            field: Some(field.into()),
            kind,
        }
    }

    /// An error about the item as a whole, for checks made after parsing
    /// (e.g. the size of its stored form).
    pub fn whole(kind: ItemErrorKind) -> Self {
        ItemError {
            item: None,
            field: None,
            kind,
        }
    }

    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.item, &self.field) {
            (Some(item), Some(field)) => write!(f, "{item}.{field}: ")?,
            (Some(item), None) => write!(f, "{item}: ")?,
            (None, Some(field)) => write!(f, "{field}: ")?,
            (None, None) => {}
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for ItemError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}
