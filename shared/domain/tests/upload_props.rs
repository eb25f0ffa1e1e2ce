//! Property tests: arbitrary JSON, as items and as whole bodies, never panics
//! the parser, and every item error names its item and (where there is one)
//! its field.

use proptest::prelude::*;
use serde_json::{Map, Value};

use platformsync_domain::types::MessageKind;
use platformsync_domain::upload::{ParsedUpload, parse_upload};

mod common;
use common::{GOOD, OTHER_FIELDS, REQUIRED_FIELDS};

/// Every field name of the contract.
fn fields() -> Vec<&'static str> {
    [REQUIRED_FIELDS.as_slice(), OTHER_FIELDS.as_slice()].concat()
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(fields()).prop_map(str::to_owned),
        1 => "[A-Za-z]{0,6}",
        1 => any::<String>(),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        proptest::sample::select(
            &[
                "NaN",
                "Infinity",
                "CashIn",
                "30",
                "UT07761",
                "2019-09-26T00:01:00",
                "2019-09-12T14:11:20.3870000Z",
                "USD",
                "",
            ][..]
        )
        .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A good item with some fields replaced by arbitrary JSON, some removed, some added.
fn mutated_item() -> impl Strategy<Value = Value> {
    let good: Map<String, Value> = serde_json::from_str(GOOD).unwrap_or_default();
    (
        prop::collection::vec((key(), json()), 0..3),
        prop::collection::vec(proptest::sample::select(fields()), 0..2),
    )
        .prop_map(move |(set, remove)| {
            let mut m = good.clone();
            for f in remove {
                m.remove(f);
            }
            for (k, v) in set {
                m.insert(k, v);
            }
            Value::Object(m)
        })
}

fn check_outcomes(parsed: &ParsedUpload) -> Result<(), TestCaseError> {
    for o in &parsed.items {
        if let Err(e) = &o.result {
            let msg = e.to_string();
            let prefix = format!("{}[{}]", o.item.kind.wire_name(), o.item.index);
            prop_assert!(msg.starts_with(&prefix), "{msg} lacks {prefix}");
            prop_assert_eq!(e.item, Some(o.item));
            match &e.field {
                Some(field) => prop_assert!(
                    msg.starts_with(&format!("{prefix}.{field}: ")),
                    "{} does not name field {}",
                    msg,
                    field
                ),
                None => prop_assert!(
                    matches!(e.code(), "not_an_object" | "invalid_utf8"),
                    "{msg}: only whole-item errors may lack a field"
                ),
            }
        }
    }
    Ok(())
}

fn body(transactions: &[Value], audits: &[Value]) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("Transactions".into(), Value::Array(transactions.to_vec()));
    m.insert("AuditTransactions".into(), Value::Array(audits.to_vec()));
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_items_never_panic_and_errors_name_index_and_field(
        txs in prop::collection::vec(prop_oneof![json(), mutated_item()], 0..5),
        audits in prop::collection::vec(prop_oneof![json(), mutated_item()], 0..3),
    ) {
        let bytes = body(&txs, &audits);
        match parse_upload(&bytes) {
            Ok(parsed) => {
                prop_assert_eq!(parsed.items.len(), txs.len() + audits.len());
                let n_tx = parsed.items.iter().filter(|o| o.item.kind == MessageKind::Transactions).count();
                prop_assert_eq!(n_tx, txs.len());
                check_outcomes(&parsed)?;
            }
            Err(e) => {
                // Only an empty upload or nesting beyond the limit may fail here.
                prop_assert!(matches!(e.code(), "empty_upload" | "too_deep"), "{}", e);
            }
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic(v in json()) {
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        if let Ok(parsed) = parse_upload(&bytes) {
            check_outcomes(&parsed)?;
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_upload(&bytes);
        let mut wrapped = b"{\"Transactions\":[".to_vec();
        wrapped.extend_from_slice(&bytes);
        wrapped.extend_from_slice(b"]}");
        if let Ok(parsed) = parse_upload(&wrapped) {
            check_outcomes(&parsed)?;
        }
    }

    #[test]
    fn corrupted_utf8_never_panics(pos in 0usize..400, byte in 0x80u8..=0xFF) {
        let mut bytes = format!(r#"{{"Transactions":[{GOOD},{GOOD}]}}"#).into_bytes();
        let pos = pos % bytes.len();
        bytes[pos] = byte;
        if let Ok(parsed) = parse_upload(&bytes) {
            check_outcomes(&parsed)?;
        }
    }

    #[test]
    fn mutated_text_never_panics(pos in 0usize..400, insert in "[\\[\\]{}\",:0-9a-z\\\\ ]{0,4}") {
        let item = GOOD.to_owned();
        let mut pos = pos % item.len();
        while !item.is_char_boundary(pos) { pos -= 1; }
        let mutated = format!("{}{}{}", &item[..pos], insert, &item[pos..]);
        let bytes = format!(r#"{{"Transactions":[{mutated}]}}"#);
        if let Ok(parsed) = parse_upload(bytes.as_bytes()) {
            check_outcomes(&parsed)?;
        }
    }
}
