//! The upload parser: whole-body errors, every item error kind, isolation of bad items.

use platformsync_domain::types::{AuditType, MessageKind, TransactionType};
use platformsync_domain::upload::{
    ItemError, ItemErrorKind, ItemRef, MAX_DEPTH, ParsedUpload, UploadError, UploadItem,
    parse_upload,
};

mod common;
use common::{GOOD, REQUIRED_FIELDS};

const GOOD_AUDIT: &str = r#"{"PickupGroupId":0,"SerialNumber":"UT07761","RetrievedOn":"2018-12-07T08:26:37Z","TransactionDateTime":"2018-12-07T11:54:27","UserName":"JOSE CHAVEZ","TransactionType":"DoorOpened","Amount":0,"DoorName":"Storage vault open"}"#;

fn upload(items: &[&str]) -> ParsedUpload {
    let body = format!(r#"{{"Transactions":[{}]}}"#, items.join(","));
    parse_upload(body.as_bytes()).unwrap()
}

/// The error of one transaction item placed between two good ones.
fn item_error(item: &str) -> ItemError {
    let parsed = upload(&[GOOD, item, GOOD]);
    assert_eq!(parsed.items.len(), 3);
    assert!(parsed.items[0].result.is_ok());
    assert!(
        parsed.items[2].result.is_ok(),
        "a bad item spoiled a good one"
    );
    assert_eq!(parsed.items[1].raw, item);
    let err = parsed.items[1].result.clone().unwrap_err();
    assert_eq!(
        err.item,
        Some(ItemRef {
            kind: MessageKind::Transactions,
            index: 1
        })
    );
    assert!(err.to_string().starts_with("Transactions[1]"), "{err}");
    err
}

fn with(field: &str, value: &str) -> String {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(GOOD).unwrap();
    assert!(v.contains_key(field) || !field.is_empty());
    // Replace the field's raw value textually, keeping exact numbers elsewhere.
    let start = GOOD.find(&format!("\"{field}\":")).expect(field) + field.len() + 3;
    let rest = &GOOD[start..];
    let end = value_end(rest);
    format!("{}{}{}", &GOOD[..start], value, &rest[end..])
}

fn value_end(s: &str) -> usize {
    let mut depth = 0i32;
    let mut in_str = false;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '[' | '{' => depth += 1,
            ']' | '}' if depth == 0 => return i,
            ']' | '}' => depth -= 1,
            ',' if depth == 0 => return i,
            _ => {}
        }
    }
    s.len()
}

fn without(field: &str) -> String {
    let start = GOOD.find(&format!("\"{field}\":")).expect(field);
    let rest = &GOOD[start + field.len() + 3..];
    let end = start + field.len() + 3 + value_end(rest);
    // Also drop the comma on one side.
    if GOOD.as_bytes()[end] == b',' {
        format!("{}{}", &GOOD[..start], &GOOD[end + 1..])
    } else {
        format!("{}{}", &GOOD[..start - 1], &GOOD[end..])
    }
}

fn assert_kind(err: &ItemError, code: &str, field: Option<&str>) {
    assert_eq!(err.code(), code, "{err}");
    assert_eq!(err.field.as_deref(), field, "{err}");
}

/// `item` (between two good ones), refused with `code` naming `field`.
fn refused_item(item: &str, code: &str, field: &str) {
    assert_kind(&item_error(item), code, Some(field));
}

/// The good item with `field` written as `value`, refused with `code`
/// naming `field`; the error.
fn refused(field: &str, value: &str, code: &str) -> ItemError {
    let err = item_error(&with(field, value));
    assert_kind(&err, code, Some(field));
    err
}

#[test]
fn good_items_parse_exactly() {
    let parsed = upload(&[GOOD]);
    let UploadItem::Transaction(t) = parsed.items[0].result.clone().unwrap() else {
        panic!()
    };
    assert_eq!(t.amount.to_string(), "5560.0");
    assert_eq!(t.denominations[0].unit_value.to_string(), "20.0000");
    assert_eq!(t.register.as_deref(), Some("0"));
    assert_eq!(t.change_purchase_number, None);
    assert_eq!(t.serial_number.as_str(), "UT07761");
}

#[test]
fn wrong_type_amount_nan_string() {
    let e = refused("Amount", r#""NaN""#, "wrong_type");
    assert_eq!(
        e.to_string(),
        r#"Transactions[1].Amount: expected a JSON number, got string "NaN""#
    );
    for v in [r#""Infinity""#, r#""20.0""#, "true", "null", "[]", "{}"] {
        refused("Amount", v, "wrong_type");
    }
}

#[test]
fn count_must_be_an_integer() {
    let item = GOOD.replacen("\"Count\":53", "\"Count\":53.0", 1);
    let e = item_error(&item);
    assert_kind(&e, "wrong_type", Some("Denominations[0].Count"));
    assert!(
        e.to_string()
            .contains("expected a JSON integer, got number 53.0")
    );
    let item = GOOD.replacen("\"Count\":45", "\"Count\":\"45\"", 1);
    refused_item(&item, "wrong_type", "Denominations[1].Count");
    let item = GOOD.replacen("\"Count\":45", "\"Count\":1e2", 1);
    refused_item(&item, "wrong_type", "Denominations[1].Count");
}

#[test]
fn strings_must_be_strings() {
    refused("UserName", "42", "wrong_type");
    refused("SerialNumber", "null", "wrong_type");
    refused("Register", "0", "wrong_type");
    refused("PickupGroupId", "\"1\"", "wrong_type");
    refused("Denominations", "{}", "wrong_type");
    let e = item_error(&with("Denominations", "[1]"));
    assert_kind(&e, "wrong_type", Some("Denominations[0]"));
    refused("TransactionType", "true", "wrong_type");
    refused("TransactionType", "30.5", "wrong_type");
}

#[test]
fn missing_fields() {
    for field in REQUIRED_FIELDS {
        let e = item_error(&without(field));
        assert_kind(&e, "missing_field", Some(field));
        assert_eq!(
            e.to_string(),
            format!("Transactions[1].{field}: missing required field")
        );
    }
    // Optional: absent is fine.
    for field in ["Denominations", "Register", "ChangePurchaseNumber"] {
        let parsed = upload(&[&without(field)]);
        assert!(parsed.items[0].result.is_ok(), "{field}");
    }
    let item = GOOD.replacen(r#","Currency":"USD"}"#, "}", 1);
    refused_item(&item, "missing_field", "Denominations[0].Currency");
}

#[test]
fn unknown_fields() {
    let item = GOOD.replacen("\"Amount\":", "\"Amout\":1,\"Amount\":", 1);
    let e = item_error(&item);
    assert_kind(&e, "unknown_field", Some("Amout"));
    assert_eq!(e.to_string(), "Transactions[1].Amout: unknown field");
    let item = GOOD
        .replacen("\"amount\"", "\"x\"", 1)
        .replacen("\"Amount\":", "\"amount\":", 1);
    refused_item(&item, "unknown_field", "amount");
    let item = GOOD.replacen("\"Count\":53", "\"Count\":53,\"Note\":1", 1);
    refused_item(&item, "unknown_field", "Denominations[0].Note");
}

#[test]
fn duplicate_fields() {
    let item = GOOD.replacen("\"Amount\":5560.0", "\"Amount\":5560.0,\"Amount\":1.0", 1);
    let e = item_error(&item);
    assert_kind(&e, "duplicate_field", Some("Amount"));
    // A duplicate null optional is a duplicate too.
    let item = GOOD.replacen(
        "\"ChangePurchaseNumber\":null",
        "\"ChangePurchaseNumber\":null,\"ChangePurchaseNumber\":\"1\"",
        1,
    );
    refused_item(&item, "duplicate_field", "ChangePurchaseNumber");
    let item = GOOD.replacen("\"Count\":53", "\"Count\":53,\"Count\":54", 1);
    refused_item(&item, "duplicate_field", "Denominations[0].Count");
    // Escaped spelling of the same key is the same key.
    let item = GOOD.replacen(
        "\"Amount\":5560.0",
        "\"Amount\":5560.0,\"Amoun\\u0074\":1.0",
        1,
    );
    refused_item(&item, "duplicate_field", "Amount");
}

#[test]
fn invalid_serial_timestamp_type() {
    let e = refused("SerialNumber", "\"UT 07761\"", "invalid_serial");
    assert!(e.to_string().contains("UT 07761"));
    refused(
        "TransactionDateTime",
        "\"2019-02-29T00:00:00\"",
        "invalid_timestamp",
    );
    refused(
        "RetrievedOn",
        "\"2019-01-01T00:00:00\"",
        "invalid_timestamp",
    );
    refused(
        "RetrievedOn",
        "\"2019-01-01T00:00:00.12345678Z\"",
        "invalid_timestamp",
    );
    let e = refused("TransactionType", "\"CashOut\"", "unknown_type");
    assert_eq!(
        e.to_string(),
        "Transactions[1].TransactionType: unknown transaction type \"CashOut\""
    );
    let e = refused("TransactionType", "33", "unknown_type");
    assert!(e.to_string().contains("33"));
    refused("TransactionType", "-1", "unknown_type");
}

#[test]
fn out_of_range_numbers() {
    let e = refused("PickupGroupId", "9223372036854775808", "out_of_range");
    assert!(e.to_string().contains("9223372036854775808"), "{e}");
    assert!(
        upload(&[&with("PickupGroupId", "-9223372036854775808")]).items[0]
            .result
            .is_ok()
    );
    let forty = "1234567890123456789012345678901234567890";
    refused("Amount", forty, "out_of_range");
    refused("Amount", "0.00000000000000000000000000001", "out_of_range");
    let item = GOOD.replacen("\"Count\":53", "\"Count\":99999999999999999999", 1);
    refused_item(&item, "out_of_range", "Denominations[0].Count");
    let item = GOOD.replacen(
        "\"PickupGroupId\":61499281",
        "\"PickupGroupId\":1,\"SequenceNumber\":-1",
        1,
    );
    refused_item(&item, "out_of_range", "SequenceNumber");
}

#[test]
fn exponent_numbers_are_invalid_numbers() {
    let e = refused("Amount", "1e400", "invalid_number");
    assert!(e.to_string().contains("1e400"), "{e}");
    let item = GOOD.replacen("20.0000", "2E1", 1);
    refused_item(&item, "invalid_number", "Denominations[0].UnitValue");
}

#[test]
fn invalid_formats() {
    let cases = [
        ("Register", r#""ABCDEFGHI""#),
        ("Register", r#""""#),
        ("ChangePurchaseNumber", r#""12a""#),
        ("DepositReferenceNumber", r#""123""#),
        ("UserName", r#""""#),
        ("UserName", r#""   ""#),
    ];
    for (field, value) in cases {
        refused(field, value, "invalid_format");
    }
    let item = GOOD.replacen("\"USD\"", "\"usd\"", 1);
    refused_item(&item, "invalid_format", "Denominations[0].Currency");
    let long = format!("\"{}\"", "x".repeat(129));
    assert_kind(
        &item_error(&with("UserName", &long)),
        "invalid_format",
        Some("UserName"),
    );
}

#[test]
fn not_an_object_items() {
    for (item, got) in [
        ("42", "number 42"),
        ("\"x\"", "string \"x\""),
        ("[]", "array"),
        ("null", "null"),
        ("true", "boolean true"),
    ] {
        let e = item_error(item);
        assert_kind(&e, "not_an_object", None);
        assert_eq!(
            e.to_string(),
            format!("Transactions[1]: expected a JSON object, got {got}")
        );
    }
}

#[test]
fn not_applicable_fields_of_the_other_kind() {
    let item = GOOD.replacen(
        "\"Register\":\"0\"",
        "\"Register\":\"0\",\"DoorName\":\"Vault\"",
        1,
    );
    refused_item(&item, "not_applicable", "DoorName");
    let item = GOOD.replacen(
        "\"Register\":\"0\"",
        "\"Register\":\"0\",\"DoorName\":null",
        1,
    );
    assert!(upload(&[&item]).items[0].result.is_ok());

    let audit_with = |extra: &str| {
        let item = GOOD_AUDIT.replacen("\"Amount\":0", &format!("\"Amount\":0,{extra}"), 1);
        let body = format!(r#"{{"AuditTransactions":[{item}]}}"#);
        parse_upload(body.as_bytes()).unwrap().items[0]
            .result
            .clone()
    };
    for ok in [
        "\"Denominations\":[]",
        "\"Denominations\":null",
        "\"Register\":null",
        "\"TubeCount\":null",
    ] {
        assert!(audit_with(ok).is_ok(), "{ok}");
    }
    let e = audit_with("\"Register\":\"0\"").unwrap_err();
    assert_kind(&e, "not_applicable", Some("Register"));
    assert!(
        e.to_string().starts_with("AuditTransactions[0].Register: "),
        "{e}"
    );
    let e =
        audit_with(r#""Denominations":[{"UnitValue":1,"Count":1,"Currency":"USD"}]"#).unwrap_err();
    assert_kind(&e, "not_applicable", Some("Denominations"));
}

#[test]
fn invalid_utf8_only_spoils_its_item() {
    let mut body = format!(r#"{{"Transactions":[{GOOD},{GOOD},{GOOD}]}}"#).into_bytes();
    // Corrupt a byte inside the second item's UserName.
    let second = body
        .windows(11)
        .enumerate()
        .filter(|(_, w)| w == b"JOSE CHAVEZ")
        .nth(1)
        .map(|(i, _)| i)
        .unwrap();
    body[second + 2] = 0xFF;
    let parsed = parse_upload(&body).unwrap();
    assert!(parsed.items[0].result.is_ok());
    assert!(parsed.items[2].result.is_ok());
    let e = parsed.items[1].result.clone().unwrap_err();
    assert_kind(&e, "invalid_utf8", None);
    assert_eq!(
        e.to_string(),
        format!(
            "Transactions[1]: invalid UTF-8 at byte offset {} of the body",
            second + 2
        )
    );
    assert!(parsed.items[1].raw.contains('\u{FFFD}'));
    // The later items' raw text is still exact.
    assert_eq!(parsed.items[2].raw, GOOD);
}

#[test]
fn invalid_utf8_outside_items_is_a_body_error() {
    let body = b"{\"Transactions\xff\":[]}";
    assert_eq!(parse_upload(body).unwrap_err().code(), "unknown_key");
}

#[test]
fn audit_items() {
    let body = format!(r#"{{"AuditTransactions":[{GOOD_AUDIT}],"Transactions":[{GOOD}]}}"#);
    let parsed = parse_upload(body.as_bytes()).unwrap();
    assert_eq!(parsed.items[0].item.kind, MessageKind::AuditTransactions);
    assert_eq!(parsed.items[1].item.kind, MessageKind::Transactions);
    assert_eq!(parsed.items[1].item.index, 0);
    let UploadItem::Audit(a) = parsed.items[0].result.clone().unwrap() else {
        panic!()
    };
    assert_eq!(a.audit_type, AuditType::DoorOpened);
    assert_eq!(a.door_name.as_deref(), Some("Storage vault open"));
    assert_eq!(
        a.to_json(),
        r#"{"PickupGroupId":0,"SerialNumber":"UT07761","RetrievedOn":"2018-12-07T08:26:37Z","TransactionDateTime":"2018-12-07T11:54:27","UserName":"JOSE CHAVEZ","TransactionType":"DoorOpened","Amount":0,"DoorName":"Storage vault open"}"#
    );
}

#[test]
fn legacy_codes_and_aliases_on_input_canonical_on_output() {
    for (value, t) in [
        ("30", TransactionType::CashIn),
        ("\"30\"", TransactionType::CashIn),
        ("\"validatedcashin\"", TransactionType::CashIn),
        ("32", TransactionType::ChangeRequest),
        ("\"ChangePurchase\"", TransactionType::ChangeRequest),
        ("100", TransactionType::EndOfDay),
    ] {
        let parsed = upload(&[&with("TransactionType", value)]);
        let UploadItem::Transaction(tx) = parsed.items[0].result.clone().unwrap() else {
            panic!()
        };
        assert_eq!(tx.transaction_type, t);
        assert!(
            tx.to_json()
                .contains(&format!("\"TransactionType\":\"{}\"", t.canonical_name()))
        );
    }
}

#[test]
fn sequence_number_is_read_but_not_written() {
    let item = GOOD.replacen(
        "\"PickupGroupId\":61499281",
        "\"PickupGroupId\":61499281,\"SequenceNumber\":7",
        1,
    );
    let parsed = upload(&[&item]);
    let it = parsed.items[0].result.clone().unwrap();
    assert_eq!(it.sequence_number(), Some(7));
    assert!(!it.to_json().contains("SequenceNumber"));
    assert_eq!(
        it.dedup_key().to_string(),
        "seq:UT07761:00000000000000000007"
    );
}

#[test]
fn body_errors() {
    let cases: [(&[u8], &str); 14] = [
        (b"", "invalid_json"),
        (b"   ", "invalid_json"),
        (b"{", "invalid_json"),
        (b"not json", "invalid_json"),
        (b"{\"Transactions\":[]} x", "invalid_json"),
        (b"{\"Transactions\":[NaN]}", "invalid_json"),
        (b"[]", "not_an_object"),
        (b"\"x\"", "not_an_object"),
        (b"{\"Transactions\":[],\"Foo\":1}", "unknown_key"),
        (b"{\"transactions\":[]}", "unknown_key"),
        (
            b"{\"Transactions\":[],\"Transactions\":[]}",
            "duplicate_key",
        ),
        (b"{\"Transactions\":{}}", "not_an_array"),
        (b"{\"Transactions\":\"[]\"}", "not_an_array"),
        (b"{}", "empty_upload"),
    ];
    for (body, code) in cases {
        let e = parse_upload(body).unwrap_err();
        assert_eq!(e.code(), code, "{:?}: {e}", String::from_utf8_lossy(body));
    }
    for body in [
        &b"{\"Transactions\":[],\"AuditTransactions\":[]}"[..],
        b"{\"Transactions\":null}",
    ] {
        assert_eq!(parse_upload(body).unwrap_err(), UploadError::Empty);
    }
    let e = parse_upload(b"{\n  \"Transactions\": 5\n}").unwrap_err();
    assert_eq!(
        e.to_string(),
        "\"Transactions\" must be a JSON array, got number 5 at line 2 column 19"
    );
    let e = parse_upload(b"{\"Foo\":[]}").unwrap_err();
    assert!(e.to_string().contains("\"Foo\""), "{e}");
    let e = parse_upload(b"{\"Transactions\":[1,]}").unwrap_err();
    assert!(e.to_string().contains("line 1 column"), "{e}");
}

#[test]
fn nesting_limits() {
    // Just under the limit inside a field: a wrong type for that field.
    let depth = MAX_DEPTH - 3;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let e = item_error(&with("Amount", &nested));
    assert_kind(&e, "wrong_type", Some("Amount"));
    // Over the limit: the whole body.
    for depth in [MAX_DEPTH + 1, 10_000, 1_000_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let body = format!(r#"{{"Transactions":[{}]}}"#, with("Amount", &nested));
        let e = parse_upload(body.as_bytes()).unwrap_err();
        assert_eq!(e, UploadError::TooDeep, "{depth}");
        assert_eq!(e.to_string(), "nesting deeper than 128 levels");
        let body = format!(r#"{{"Transactions":[{}]}}"#, "[".repeat(depth));
        assert_eq!(
            parse_upload(body.as_bytes()).unwrap_err(),
            UploadError::TooDeep
        );
        let body = "[".repeat(depth);
        assert_eq!(
            parse_upload(body.as_bytes()).unwrap_err(),
            UploadError::TooDeep
        );
        let body = format!(
            r#"{{"Transactions":[{}{}]}}"#,
            "{\"a\":".repeat(depth),
            "}".repeat(depth)
        );
        assert!(parse_upload(body.as_bytes()).is_err());
    }
}

#[test]
fn escaped_strings_are_unescaped() {
    let item = with("UserName", r#""JOS\u00C9 \"EL\" CHAVEZ""#);
    let parsed = upload(&[&item]);
    let UploadItem::Transaction(t) = parsed.items[0].result.clone().unwrap() else {
        panic!()
    };
    assert_eq!(&*t.user_name, "JOSÉ \"EL\" CHAVEZ");
    let item = with("SerialNumber", r#""\u0055T07761""#);
    assert!(upload(&[&item]).items[0].result.is_ok());
}

#[test]
fn whitespace_everywhere_is_fine() {
    let pretty = serde_json::to_string_pretty(
        &serde_json::from_str::<serde_json::Value>(&format!(r#"{{"Transactions":[{GOOD}]}}"#))
            .unwrap(),
    )
    .unwrap();
    let parsed = parse_upload(pretty.as_bytes()).unwrap();
    assert!(parsed.items[0].result.is_ok());
}

#[test]
fn denominations_are_bounded() {
    use platformsync_domain::upload::MAX_DENOMINATIONS;
    let one = r#"{"UnitValue":0.01,"Count":1,"Currency":"USD"}"#;
    let list = |n: usize| format!("[{}]", vec![one; n].join(","));
    assert!(
        upload(&[&with("Denominations", &list(MAX_DENOMINATIONS))]).items[0]
            .result
            .is_ok()
    );
    for n in [MAX_DENOMINATIONS + 1, 5_000] {
        let e = item_error(&with("Denominations", &list(n)));
        assert_kind(&e, "too_many_entries", Some("Denominations"));
        assert_eq!(
            e.to_string(),
            format!("Transactions[1].Denominations: has {n} entries; at most 100 are accepted")
        );
    }
}

#[test]
fn item_error_kinds_all_reached() {
    // Compile-time reminder: a new kind must get a test above.
    fn covered(k: &ItemErrorKind) -> bool {
        match k {
            ItemErrorKind::WrongType { .. }
            | ItemErrorKind::MissingField
            | ItemErrorKind::UnknownField
            | ItemErrorKind::DuplicateField
            | ItemErrorKind::NotApplicable { .. }
            | ItemErrorKind::NotAnObject { .. }
            | ItemErrorKind::InvalidSerial(_)
            | ItemErrorKind::InvalidTimestamp(_)
            | ItemErrorKind::UnknownType(_)
            | ItemErrorKind::OutOfRange { .. }
            | ItemErrorKind::TooManyEntries { .. }
            // Reached in the ingest function's plan (size of the stored form).
            | ItemErrorKind::TooLarge { .. }
            | ItemErrorKind::InvalidFormat(_)
            | ItemErrorKind::InvalidNumber { .. }
            | ItemErrorKind::InvalidUtf8 { .. }
            | ItemErrorKind::InvalidJson { .. } => true,
        }
    }
    assert!(covered(&ItemErrorKind::MissingField));
    // InvalidJson is reached through stand-alone parsing only.
    let e = platformsync_domain::transaction::Transaction::from_json("{\"Amount\":").unwrap_err();
    assert_eq!(e.code(), "invalid_json");
    let e = platformsync_domain::transaction::Transaction::from_json("[1]").unwrap_err();
    assert_eq!(e.code(), "not_an_object");
    let e =
        platformsync_domain::transaction::Transaction::from_json(&format!("{GOOD} x")).unwrap_err();
    assert_eq!(e.code(), "invalid_json");
}

#[test]
fn deserialize_impl_uses_the_same_rules() {
    use platformsync_domain::transaction::{AuditTransaction, Transaction};
    let t: Transaction = serde_json::from_str(GOOD).unwrap();
    assert_eq!(
        serde_json::from_str::<Transaction>(&t.to_json()).unwrap(),
        t
    );
    let e = serde_json::from_str::<Transaction>(&with("Amount", "\"NaN\"")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Amount: expected a JSON number, got string \"NaN\""),
        "{e}"
    );
    let a: AuditTransaction = serde_json::from_str(GOOD_AUDIT).unwrap();
    assert_eq!(AuditTransaction::from_json(&a.to_json()).unwrap(), a);
    // A Value has lost the exact text: refused rather than guessed.
    let v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    assert!(serde_json::from_value::<Transaction>(v).is_err());
}

#[test]
fn lone_surrogate_escape_is_an_item_error() {
    let e = item_error(&with("UserName", r#""\uD800""#));
    assert_eq!(e.field.as_deref(), Some("UserName"), "{e}");
    assert_eq!(e.code(), "invalid_json");
}

#[test]
fn byte_order_mark_is_skipped() {
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(format!(r#"{{"Transactions":[{GOOD},{GOOD}]}}"#).as_bytes());
    let parsed = parse_upload(&body).unwrap();
    assert!(parsed.items.iter().all(|o| o.result.is_ok()));
    // Offsets still count from the start of the body as received.
    let pos = body.windows(4).position(|w| w == b"JOSE").unwrap();
    body[pos] = 0xC0;
    let parsed = parse_upload(&body).unwrap();
    let e = parsed.items[0].result.clone().unwrap_err();
    assert_eq!(e.kind, ItemErrorKind::InvalidUtf8 { byte_offset: pos });
}
