//! The captured real payload, parsed as an upload and rendered again, must come
//! out the same field by field: decimals as exact text, `null` properties
//! absent, and `Metadata.Version` the only addition.

use std::collections::BTreeMap;

use platformsync_domain::payload::{ApiKey, ApiKeyPlacement, PayloadItems, RenderInput, render_v1};
use platformsync_domain::quality::{QualityPolicy, check};
use platformsync_domain::transaction::Transaction;
use platformsync_domain::types::TransactionType;
use platformsync_domain::upload::{UploadItem, parse_upload};
use secrecy::SecretString;
use serde_json::value::RawValue;

const SAMPLE: &str = include_str!("fixtures/sample-push-v1.json");

/// Flattens JSON into `path -> leaf text`, keeping numbers' exact text.
fn flatten(raw: &RawValue, path: &str, out: &mut BTreeMap<String, String>) {
    let text = raw.get().trim();
    if text.starts_with('{') {
        let map: BTreeMap<String, &RawValue> = serde_json::from_str(text).unwrap();
        for (k, v) in map {
            flatten(v, &format!("{path}.{k}"), out);
        }
    } else if text.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).unwrap();
        for (i, v) in items.iter().enumerate() {
            flatten(v, &format!("{path}[{i}]"), out);
        }
        if items.is_empty() {
            out.insert(path.to_owned(), "[]".to_owned());
        }
    } else {
        out.insert(path.to_owned(), text.to_owned());
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Captured<'a> {
    metadata: BTreeMap<String, String>,
    #[serde(borrow)]
    transactions: Vec<&'a RawValue>,
}

fn parsed_sample() -> (Captured<'static>, Vec<Transaction>) {
    let captured: Captured<'static> = serde_json::from_str(SAMPLE).unwrap();
    let items: Vec<&str> = captured.transactions.iter().map(|r| r.get()).collect();
    let upload = format!("{{\"Transactions\":[{}]}}", items.join(","));
    let parsed = parse_upload(upload.as_bytes()).unwrap();
    let txs = parsed
        .items
        .into_iter()
        .map(|o| match o.result.unwrap() {
            UploadItem::Transaction(t) => t,
            UploadItem::Audit(_) => panic!("audit"),
        })
        .collect();
    (captured, txs)
}

fn render(captured: &Captured<'_>, items: PayloadItems<'_>) -> Vec<u8> {
    let key = ApiKey::new(
        None,
        ApiKeyPlacement::Header { bearer: false },
        SecretString::from("token"),
    )
    .unwrap();
    let no_metadata = BTreeMap::new();
    let request = render_v1(&RenderInput {
        message_id: captured.metadata["MessageId"].parse().unwrap(),
        correlation_id: Some(captured.metadata["CorrelationId"].parse().unwrap()),
        endpoint_metadata: &no_metadata,
        items,
        api_key: &key,
    });
    // As the real service: `Authorization: <token>`, JSON content type.
    assert_eq!(request.headers[0].0, "Content-Type");
    assert_eq!(request.headers[0].1.expose(), "application/json");
    assert_eq!(request.headers[1].0, "Authorization");
    assert_eq!(request.headers[1].1.expose(), "token");
    request.body
}

fn expected() -> BTreeMap<String, String> {
    let mut expected = BTreeMap::new();
    flatten(
        serde_json::from_str::<&RawValue>(SAMPLE).unwrap(),
        "",
        &mut expected,
    );
    expected.retain(|_, v| v != "null");
    expected.insert(".Metadata.Version".to_owned(), "\"1\"".to_owned());
    expected
}

fn assert_same(ours: &[u8]) {
    let mut got = BTreeMap::new();
    let ours: &RawValue = serde_json::from_slice(ours).unwrap();
    flatten(ours, "", &mut got);
    let expected = expected();
    for (path, value) in &expected {
        assert_eq!(got.get(path), Some(value), "at {path}");
    }
    for path in got.keys() {
        assert!(expected.contains_key(path), "extra field {path}");
    }
    assert!(got.contains_key(".Transactions[0].Denominations[1].UnitValue"));
    assert_eq!(got[".Transactions[0].Amount"], "5560.0");
    assert_eq!(
        got[".Transactions[0].Denominations[0].UnitValue"],
        "20.0000"
    );
}

#[test]
fn typed_round_trip_matches_capture() {
    let (captured, txs) = parsed_sample();
    assert_eq!(txs.len(), 3);
    assert!(
        txs.iter()
            .all(|t| t.transaction_type == TransactionType::CashIn)
    );
    let body = render(&captured, PayloadItems::Transactions(&txs));
    assert_same(&body);
}

#[test]
fn stored_json_round_trip_matches_capture() {
    let (captured, txs) = parsed_sample();
    // What an adapter does: store each record's payload JSON, read it back.
    let stored: Vec<String> = txs.iter().map(Transaction::to_json).collect();
    let reread: Vec<Transaction> = stored
        .iter()
        .map(|s| Transaction::from_json(s).unwrap())
        .collect();
    assert_eq!(reread, txs);
    let raws: Vec<Box<RawValue>> = stored
        .into_iter()
        .map(|s| RawValue::from_string(s).unwrap())
        .collect();
    let body = render(
        &captured,
        PayloadItems::Raw {
            kind: platformsync_domain::types::MessageKind::Transactions,
            items: &raws,
        },
    );
    assert_same(&body);
}

#[test]
fn sample_passes_quality_checks() {
    let (_, txs) = parsed_sample();
    let now = time::macros::datetime!(2018-12-08 00:00 UTC);
    for t in txs {
        let reasons = check(&UploadItem::Transaction(t), now, &QualityPolicy::default());
        assert!(reasons.is_empty(), "{reasons:?}");
    }
}
