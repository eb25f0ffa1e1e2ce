//! The strict parser of one record object (an upload item or a stored payload).
//!
//! Every field value is first taken as a borrowed [`RawValue`] and then
//! interpreted from its text: that is how decimals keep their exact digits,
//! how integers are told apart from `1.0`, and how errors can say exactly what
//! was received. Typed errors cannot travel through `serde`'s error type, so
//! visitors leave them in a `stash` and return a placeholder error; the caller
//! picks the typed one up.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::UploadItem;
use super::error::{ItemError, ItemErrorKind};
use crate::fields::{
    ChangePurchaseNumber, Currency, DepositReferenceNumber, DoorName, FormatError, Register,
    UserName,
};
use crate::money::{Amount, DecimalError, UnitValue, clip};
use crate::serial::SerialNumber;
use crate::time::{RetrievedOn, SafeDateTime};
use crate::transaction::{AuditTransaction, Denomination, Transaction};
use crate::types::{AuditType, MessageKind, TransactionType};

type Stash = Option<ItemError>;

const EXPECT_STRING: &str = "a JSON string";
const EXPECT_NUMBER: &str = "a JSON number";
const EXPECT_INTEGER: &str = "a JSON integer";
const EXPECT_ARRAY: &str = "a JSON array";
const EXPECT_OBJECT: &str = "a JSON object";
const EXPECT_TYPE: &str = "a type name (JSON string) or legacy code (JSON integer)";
const I64_RANGE: &str = "64-bit signed integer";
const U64_RANGE: &str = "64-bit unsigned integer";
/// Most denominations one transaction may list. A safe counts a handful of
/// note and coin values per currency (US dollars: 7 notes, 6 coins); 100
/// leaves room for several currencies and keeps the stored item far below
/// DynamoDB's 400 KB, whatever the values' spelling.
pub const MAX_DENOMINATIONS: usize = 100;

const DECIMAL_RANGE: &str =
    "exact decimal: at most 28 fraction digits and 29 significant digits, |value| < 7.9e28";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    PickupGroupId,
    SerialNumber,
    RetrievedOn,
    TransactionDateTime,
    UserName,
    TransactionType,
    Amount,
    Denominations,
    Register,
    ChangePurchaseNumber,
    DepositReferenceNumber,
    TubeCount,
    TubeColumn,
    DoorName,
    SequenceNumber,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::PickupGroupId => "PickupGroupId",
            Field::SerialNumber => "SerialNumber",
            Field::RetrievedOn => "RetrievedOn",
            Field::TransactionDateTime => "TransactionDateTime",
            Field::UserName => "UserName",
            Field::TransactionType => "TransactionType",
            Field::Amount => "Amount",
            Field::Denominations => "Denominations",
            Field::Register => "Register",
            Field::ChangePurchaseNumber => "ChangePurchaseNumber",
            Field::DepositReferenceNumber => "DepositReferenceNumber",
            Field::TubeCount => "TubeCount",
            Field::TubeColumn => "TubeColumn",
            Field::DoorName => "DoorName",
            Field::SequenceNumber => "SequenceNumber",
        }
    }

    fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "PickupGroupId" => Field::PickupGroupId,
            "SerialNumber" => Field::SerialNumber,
            "RetrievedOn" => Field::RetrievedOn,
            "TransactionDateTime" => Field::TransactionDateTime,
            "UserName" => Field::UserName,
            "TransactionType" => Field::TransactionType,
            "Amount" => Field::Amount,
            "Denominations" => Field::Denominations,
            "Register" => Field::Register,
            "ChangePurchaseNumber" => Field::ChangePurchaseNumber,
            "DepositReferenceNumber" => Field::DepositReferenceNumber,
            "TubeCount" => Field::TubeCount,
            "TubeColumn" => Field::TubeColumn,
            "DoorName" => Field::DoorName,
            "SequenceNumber" => Field::SequenceNumber,
            _ => return None,
        })
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// An object key: a known field or the (clipped) unknown name.
enum Key<F> {
    Known(F),
    Unknown(String),
}

struct KeySeed<F>(fn(&str) -> Option<F>);

impl<'de, F> DeserializeSeed<'de> for KeySeed<F> {
    type Value = Key<F>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key<F>, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<F> Visitor<'_> for KeySeed<F> {
    type Value = Key<F>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<F>, E> {
        Ok(match (self.0)(v) {
            Some(field) => Key::Known(field),
            None => Key::Unknown(clip(v)),
        })
    }
}

/// What a raw JSON value is, for "got ..." in messages.
pub(crate) fn describe(raw: &str) -> String {
    match raw.as_bytes().first() {
        Some(b'"') => format!("string {}", clip(raw)),
        Some(b'-' | b'0'..=b'9') => format!("number {}", clip(raw)),
        Some(b'{') => "object".to_owned(),
        Some(b'[') => "array".to_owned(),
        Some(b't') => "boolean true".to_owned(),
        Some(b'f') => "boolean false".to_owned(),
        Some(b'n') => "null".to_owned(),
        _ => clip(raw),
    }
}

fn wrong(field: impl Into<Cow<'static, str>>, expected: &'static str, raw: &str) -> ItemError {
    ItemError::at(
        field,
        ItemErrorKind::WrongType {
            expected,
            got: describe(raw),
        },
    )
}

fn is_null(raw: &str) -> bool {
    raw == "null"
}

fn json_error(e: serde_json::Error) -> ItemError {
    ItemError::whole(ItemErrorKind::InvalidJson {
        message: e.to_string(),
    })
}

/// The string a raw JSON string value denotes; borrowed unless it has escapes.
fn string_value<'a>(
    raw: &'a str,
    field: impl Into<Cow<'static, str>>,
) -> Result<Cow<'a, str>, ItemError> {
    let b = raw.as_bytes();
    if b.len() < 2 || b[0] != b'"' {
        return Err(wrong(field, EXPECT_STRING, raw));
    }
    if !b.contains(&b'\\') {
        // Quotes are ASCII, so slicing inside them stays on char boundaries.
        return Ok(Cow::Borrowed(raw.get(1..raw.len() - 1).unwrap_or_default()));
    }
    serde_json::from_str::<String>(raw)
        .map(Cow::Owned)
        .map_err(|e| {
            ItemError::at(
                field,
                ItemErrorKind::InvalidJson {
                    message: e.to_string(),
                },
            )
        })
}

fn optional_string<'a>(raw: &'a str, field: Field) -> Result<Option<Cow<'a, str>>, ItemError> {
    if is_null(raw) {
        Ok(None)
    } else {
        string_value(raw, field.name()).map(Some)
    }
}

/// The text of a raw JSON integer: a number without fraction or exponent.
fn integer_text<'a>(
    raw: &'a str,
    field: &dyn Fn() -> Cow<'static, str>,
) -> Result<&'a str, ItemError> {
    let b = raw.as_bytes();
    let numeric = matches!(b.first(), Some(b'-' | b'0'..=b'9'));
    if !numeric || b.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) {
        return Err(wrong(field(), EXPECT_INTEGER, raw));
    }
    Ok(raw)
}

fn i64_value(raw: &str, field: &dyn Fn() -> Cow<'static, str>) -> Result<i64, ItemError> {
    let text = integer_text(raw, field)?;
    text.parse::<i64>().map_err(|_| {
        ItemError::at(
            field(),
            ItemErrorKind::OutOfRange {
                value: clip(text),
                limit: I64_RANGE,
            },
        )
    })
}

fn named(field: Field) -> impl Fn() -> Cow<'static, str> {
    move || Cow::Borrowed(field.name())
}

fn optional_i64(raw: &str, field: Field) -> Result<Option<i64>, ItemError> {
    if is_null(raw) {
        Ok(None)
    } else {
        i64_value(raw, &named(field)).map(Some)
    }
}

fn decimal_value<T>(
    raw: &str,
    field: &dyn Fn() -> Cow<'static, str>,
    parse: fn(&str) -> Result<T, DecimalError>,
) -> Result<T, ItemError> {
    if !matches!(raw.as_bytes().first(), Some(b'-' | b'0'..=b'9')) {
        return Err(wrong(field(), EXPECT_NUMBER, raw));
    }
    parse(raw).map_err(|e| {
        let kind = match e {
            DecimalError::OutOfRange { received } => ItemErrorKind::OutOfRange {
                value: received,
                limit: DECIMAL_RANGE,
            },
            other => ItemErrorKind::InvalidNumber {
                reason: other.to_string(),
            },
        };
        ItemError::at(field(), kind)
    })
}

fn format_error(field: impl Into<Cow<'static, str>>) -> impl FnOnce(FormatError) -> ItemError {
    move |e| ItemError::at(field, ItemErrorKind::InvalidFormat(e))
}

/// The type field: a name (either vocabulary, any ASCII case, or digits) or an integer code.
fn type_value<T>(
    raw: &str,
    by_name: fn(&str) -> Result<T, crate::types::UnknownTypeError>,
    by_code: fn(u64) -> Result<T, crate::types::UnknownTypeError>,
) -> Result<T, ItemError> {
    let field = Field::TransactionType.name();
    let unknown = |e| ItemError::at(field, ItemErrorKind::UnknownType(e));
    match raw.as_bytes().first() {
        Some(b'"') => by_name(&string_value(raw, field)?).map_err(unknown),
        Some(b'-' | b'0'..=b'9') => {
            let text = integer_text(raw, &named(Field::TransactionType))
                .map_err(|_| wrong(field, EXPECT_TYPE, raw))?;
            match text.parse::<u64>() {
                Ok(code) => by_code(code).map_err(unknown),
                // Negative or beyond u64: certainly no known code.
                Err(_) => by_name(text).map_err(unknown),
            }
        }
        _ => Err(wrong(field, EXPECT_TYPE, raw)),
    }
}

/// Fields collected from one record object before the required ones are checked.
#[derive(Default)]
struct Partial {
    seen: u32,
    pickup_group_id: Option<i64>,
    serial_number: Option<SerialNumber>,
    retrieved_on: Option<RetrievedOn>,
    transaction_date_time: Option<SafeDateTime>,
    user_name: Option<UserName>,
    transaction_type: Option<TransactionType>,
    audit_type: Option<AuditType>,
    amount: Option<Amount>,
    denominations: Vec<Denomination>,
    register: Option<Register>,
    change_purchase_number: Option<ChangePurchaseNumber>,
    deposit_reference_number: Option<DepositReferenceNumber>,
    tube_count: Option<i64>,
    tube_column: Option<i64>,
    door_name: Option<DoorName>,
    sequence_number: Option<u64>,
}

impl Partial {
    fn set(&mut self, field: Field, raw: &str, kind: MessageKind) -> Result<(), ItemError> {
        let name = field.name();
        let audit = kind == MessageKind::AuditTransactions;
        // A field that belongs to the other record kind: tolerated only when empty.
        let other_kind = |empty: bool| {
            if empty {
                Ok(())
            } else {
                Err(ItemError::at(name, ItemErrorKind::NotApplicable { kind }))
            }
        };
        match field {
            Field::PickupGroupId => self.pickup_group_id = Some(i64_value(raw, &named(field))?),
            Field::SerialNumber => {
                let s = string_value(raw, name)?;
                let serial = SerialNumber::parse(&s)
                    .map_err(|e| ItemError::at(name, ItemErrorKind::InvalidSerial(e)))?;
                self.serial_number = Some(serial);
            }
            Field::RetrievedOn => {
                let s = string_value(raw, name)?;
                let t = RetrievedOn::parse(&s)
                    .map_err(|e| ItemError::at(name, ItemErrorKind::InvalidTimestamp(e)))?;
                self.retrieved_on = Some(t);
            }
            Field::TransactionDateTime => {
                let s = string_value(raw, name)?;
                let t = SafeDateTime::parse(&s)
                    .map_err(|e| ItemError::at(name, ItemErrorKind::InvalidTimestamp(e)))?;
                self.transaction_date_time = Some(t);
            }
            Field::UserName => {
                let s = string_value(raw, name)?;
                self.user_name = Some(UserName::parse(&s).map_err(format_error(name))?);
            }
            Field::TransactionType if audit => {
                self.audit_type = Some(type_value(raw, AuditType::parse, AuditType::from_code)?);
            }
            Field::TransactionType => {
                self.transaction_type = Some(type_value(
                    raw,
                    TransactionType::parse,
                    TransactionType::from_code,
                )?);
            }
            Field::Amount => {
                self.amount = Some(decimal_value(raw, &named(field), Amount::parse)?);
            }
            Field::Denominations if audit => other_kind(is_null(raw) || is_empty_array(raw))?,
            Field::Denominations => self.denominations = denominations(raw)?,
            Field::Register | Field::ChangePurchaseNumber | Field::DepositReferenceNumber
                if audit =>
            {
                other_kind(is_null(raw))?
            }
            Field::Register => {
                if let Some(s) = optional_string(raw, field)? {
                    self.register = Some(Register::parse(&s).map_err(format_error(name))?);
                }
            }
            Field::ChangePurchaseNumber => {
                if let Some(s) = optional_string(raw, field)? {
                    let v = ChangePurchaseNumber::parse(&s).map_err(format_error(name))?;
                    self.change_purchase_number = Some(v);
                }
            }
            Field::DepositReferenceNumber => {
                if let Some(s) = optional_string(raw, field)? {
                    let v = DepositReferenceNumber::parse(&s).map_err(format_error(name))?;
                    self.deposit_reference_number = Some(v);
                }
            }
            Field::TubeCount | Field::TubeColumn if audit => other_kind(is_null(raw))?,
            Field::TubeCount => self.tube_count = optional_i64(raw, field)?,
            Field::TubeColumn => self.tube_column = optional_i64(raw, field)?,
            Field::DoorName if !audit => other_kind(is_null(raw))?,
            Field::DoorName => {
                if let Some(s) = optional_string(raw, field)? {
                    self.door_name = Some(DoorName::parse(&s).map_err(format_error(name))?);
                }
            }
            Field::SequenceNumber => {
                if !is_null(raw) {
                    let text = integer_text(raw, &named(field))?;
                    let n = text.parse::<u64>().map_err(|_| {
                        ItemError::at(
                            name,
                            ItemErrorKind::OutOfRange {
                                value: clip(text),
                                limit: U64_RANGE,
                            },
                        )
                    })?;
                    self.sequence_number = Some(n);
                }
            }
        }
        Ok(())
    }

    fn finish(self, kind: MessageKind) -> Result<UploadItem, ItemError> {
        fn req<T>(v: Option<T>, field: Field) -> Result<T, ItemError> {
            v.ok_or_else(|| ItemError::at(field.name(), ItemErrorKind::MissingField))
        }
        let pickup_group_id = req(self.pickup_group_id, Field::PickupGroupId)?;
        let serial_number = req(self.serial_number, Field::SerialNumber)?;
        let retrieved_on = req(self.retrieved_on, Field::RetrievedOn)?;
        let transaction_date_time = req(self.transaction_date_time, Field::TransactionDateTime)?;
        let user_name = req(self.user_name, Field::UserName)?;
        Ok(match kind {
            MessageKind::Transactions => UploadItem::Transaction(Transaction {
                pickup_group_id,
                serial_number,
                retrieved_on,
                transaction_date_time,
                user_name,
                transaction_type: req(self.transaction_type, Field::TransactionType)?,
                amount: req(self.amount, Field::Amount)?,
                denominations: self.denominations,
                register: self.register,
                change_purchase_number: self.change_purchase_number,
                deposit_reference_number: self.deposit_reference_number,
                tube_count: self.tube_count,
                tube_column: self.tube_column,
                sequence_number: self.sequence_number,
            }),
            MessageKind::AuditTransactions => UploadItem::Audit(AuditTransaction {
                pickup_group_id,
                serial_number,
                retrieved_on,
                transaction_date_time,
                user_name,
                audit_type: req(self.audit_type, Field::TransactionType)?,
                amount: req(self.amount, Field::Amount)?,
                door_name: self.door_name,
                sequence_number: self.sequence_number,
            }),
        })
    }
}

fn is_empty_array(raw: &str) -> bool {
    raw.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|inner| inner.trim().is_empty())
}

fn denominations(raw: &str) -> Result<Vec<Denomination>, ItemError> {
    let name = Field::Denominations.name();
    if is_null(raw) {
        return Ok(Vec::new());
    }
    if !raw.starts_with('[') {
        return Err(wrong(name, EXPECT_ARRAY, raw));
    }
    let elements: Vec<&RawValue> = serde_json::from_str(raw).map_err(|e| {
        ItemError::at(
            name,
            ItemErrorKind::InvalidJson {
                message: e.to_string(),
            },
        )
    })?;
    if elements.len() > MAX_DENOMINATIONS {
        return Err(ItemError::at(
            name,
            ItemErrorKind::TooManyEntries {
                count: elements.len(),
                limit: MAX_DENOMINATIONS,
            },
        ));
    }
    let mut out = Vec::with_capacity(elements.len());
    for (index, element) in elements.into_iter().enumerate() {
        out.push(denomination(element.get(), index)?);
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DenomField {
    UnitValue,
    Count,
    Currency,
}

impl DenomField {
    fn name(self) -> &'static str {
        match self {
            DenomField::UnitValue => "UnitValue",
            DenomField::Count => "Count",
            DenomField::Currency => "Currency",
        }
    }
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "UnitValue" => Some(DenomField::UnitValue),
            "Count" => Some(DenomField::Count),
            "Currency" => Some(DenomField::Currency),
            _ => None,
        }
    }
}

fn denom_path(index: usize, field: &str) -> Cow<'static, str> {
    Cow::Owned(format!("Denominations[{index}].{field}"))
}

fn denomination(raw: &str, index: usize) -> Result<Denomination, ItemError> {
    if !raw.starts_with('{') {
        return Err(wrong(format!("Denominations[{index}]"), EXPECT_OBJECT, raw));
    }
    let mut stash = None;
    let mut de = serde_json::Deserializer::from_str(raw);
    match de.deserialize_map(DenomVisitor {
        index,
        stash: &mut stash,
    }) {
        Ok(d) => Ok(d),
        Err(e) => Err(stash.unwrap_or_else(|| json_error(e))),
    }
}

struct DenomVisitor<'s> {
    index: usize,
    stash: &'s mut Stash,
}

/// A visitor's failure: a typed item error (to stash) or the deserializer's own.
enum Fail<E> {
    Item(ItemError),
    De(E),
}

impl<E> From<ItemError> for Fail<E> {
    fn from(e: ItemError) -> Self {
        Fail::Item(e)
    }
}

fn settle<T, E: de::Error>(stash: &mut Stash, r: Result<T, Fail<E>>) -> Result<T, E> {
    match r {
        Ok(v) => Ok(v),
        Err(Fail::De(e)) => Err(e),
        Err(Fail::Item(e)) => {
            *stash = Some(e);
            Err(E::custom("record rejected"))
        }
    }
}

impl DenomVisitor<'_> {
    fn read<'de, A: MapAccess<'de>>(&self, mut map: A) -> Result<Denomination, Fail<A::Error>> {
        let index = self.index;
        let (mut unit_value, mut count, mut currency) = (None, None, None);
        while let Some(key) = map
            .next_key_seed(KeySeed(DenomField::from_name))
            .map_err(Fail::De)?
        {
            let field = match key {
                Key::Known(f) => f,
                Key::Unknown(name) => {
                    return Err(ItemError::at(
                        denom_path(index, &name),
                        ItemErrorKind::UnknownField,
                    )
                    .into());
                }
            };
            let path = || denom_path(index, field.name());
            let duplicate = match field {
                DenomField::UnitValue => unit_value.is_some(),
                DenomField::Count => count.is_some(),
                DenomField::Currency => currency.is_some(),
            };
            if duplicate {
                return Err(ItemError::at(path(), ItemErrorKind::DuplicateField).into());
            }
            let raw: &'de RawValue = map.next_value().map_err(Fail::De)?;
            let raw = raw.get();
            match field {
                DenomField::UnitValue => {
                    unit_value = Some(decimal_value(raw, &path, UnitValue::parse)?);
                }
                DenomField::Count => count = Some(i64_value(raw, &path)?),
                DenomField::Currency => {
                    let s = string_value(raw, path())?;
                    currency = Some(Currency::parse(&s).map_err(format_error(path()))?);
                }
            }
        }
        let missing = |f: DenomField| {
            Fail::Item(ItemError::at(
                denom_path(index, f.name()),
                ItemErrorKind::MissingField,
            ))
        };
        Ok(Denomination {
            unit_value: unit_value.ok_or_else(|| missing(DenomField::UnitValue))?,
            count: count.ok_or_else(|| missing(DenomField::Count))?,
            currency: currency.ok_or_else(|| missing(DenomField::Currency))?,
        })
    }
}

impl<'de> Visitor<'de> for DenomVisitor<'_> {
    type Value = Denomination;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECT_OBJECT)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Denomination, A::Error> {
        let r = self.read(map);
        settle(self.stash, r)
    }
}

struct ItemVisitor<'s> {
    kind: MessageKind,
    stash: &'s mut Stash,
}

impl ItemVisitor<'_> {
    fn read<'de, A: MapAccess<'de>>(&self, mut map: A) -> Result<UploadItem, Fail<A::Error>> {
        let mut partial = Partial::default();
        while let Some(key) = map
            .next_key_seed(KeySeed(Field::from_name))
            .map_err(Fail::De)?
        {
            let field = match key {
                Key::Known(f) => f,
                Key::Unknown(name) => {
                    return Err(ItemError::at(name, ItemErrorKind::UnknownField).into());
                }
            };
            if partial.seen & field.bit() != 0 {
                return Err(ItemError::at(field.name(), ItemErrorKind::DuplicateField).into());
            }
            partial.seen |= field.bit();
            let raw: &'de RawValue = map.next_value().map_err(Fail::De)?;
            partial.set(field, raw.get(), self.kind)?;
        }
        Ok(partial.finish(self.kind)?)
    }
}

impl<'de> Visitor<'de> for ItemVisitor<'_> {
    type Value = UploadItem;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a transaction object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<UploadItem, A::Error> {
        let r = self.read(map);
        settle(self.stash, r)
    }
}

/// Parses one record from JSON text that is known to be a single JSON value
/// starting with `{` (an item split out of an upload body).
pub(crate) fn parse_object(text: &str, kind: MessageKind) -> Result<UploadItem, ItemError> {
    let mut stash = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let result = de.deserialize_map(ItemVisitor {
        kind,
        stash: &mut stash,
    });
    match result {
        Ok(item) => {
            de.end().map_err(json_error)?;
            Ok(item)
        }
        Err(e) => Err(stash.unwrap_or_else(|| json_error(e))),
    }
}

/// Parses an item split out of an upload: an object, or a "not an object" error.
pub(crate) fn parse_object_or_describe(
    raw: &str,
    kind: MessageKind,
) -> Result<UploadItem, ItemError> {
    if raw.starts_with('{') {
        parse_object(raw, kind)
    } else {
        Err(ItemError::whole(ItemErrorKind::NotAnObject {
            got: describe(raw),
        }))
    }
}

/// Parses one record from arbitrary text (stored payloads, tests).
pub(crate) fn parse_standalone(text: &str, kind: MessageKind) -> Result<UploadItem, ItemError> {
    let start = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if start.starts_with('{') {
        return parse_object(text, kind);
    }
    // Say what it is if it is valid JSON, else report the syntax error.
    match serde_json::from_str::<&RawValue>(text) {
        Ok(raw) => Err(ItemError::whole(ItemErrorKind::NotAnObject {
            got: describe(raw.get()),
        })),
        Err(e) => Err(json_error(e)),
    }
}

/// `Deserialize` entry point for [`Transaction`] and [`AuditTransaction`].
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
    kind: MessageKind,
) -> Result<UploadItem, D::Error> {
    let mut stash = None;
    let result = deserializer.deserialize_map(ItemVisitor {
        kind,
        stash: &mut stash,
    });
    result.map_err(|e| match stash {
        Some(item_error) => de::Error::custom(item_error),
        None => e,
    })
}

/// A record of one kind was asked for and the parser built the other (cannot happen).
pub(crate) fn kind_mismatch() -> ItemError {
    ItemError::whole(ItemErrorKind::InvalidJson {
        message: "record kind mismatch".to_owned(),
    })
}
