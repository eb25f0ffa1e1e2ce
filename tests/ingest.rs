//! The ingest function against the local stack: every genuine transaction
//! stored exactly once, suspicious ones held, garbage rejected with its reason
//! and kept raw, nothing lost.

use platformsync_aws::rejects::RejectStore;
use platformsync_domain::record::{DeliveryStatus, StoredTransaction};
use platformsync_domain::serial::SerialNumber;
use platformsync_domain::testdata;
use platformsync_domain::upload::parse_upload;
use platformsync_tests::ids;
use platformsync_tests::{Stack, apigw};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const PATH: &str = "/v1/uploads";

fn body(transactions: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "Transactions": transactions })).unwrap()
}

/// `n` distinct valid transactions over `safes` safes.
fn generated(n: usize, safes: usize, seed: u64) -> Vec<Value> {
    let upload: Value = serde_json::from_slice(&testdata::upload_json(n, safes, seed)).unwrap();
    upload["Transactions"].as_array().unwrap().clone()
}

/// The same transaction read off the safe again: a new `RetrievedOn`, the
/// same identity.
fn reread(t: &Value) -> Value {
    let mut t = t.clone();
    t["RetrievedOn"] = json!("2024-06-01T00:00:00.1234567Z");
    t
}

/// Ingest on a fresh deployment, and the key SafeSync sends it.
struct Api {
    stack: Stack,
    ingest: ingest::Ingest,
    key: String,
}

impl Api {
    async fn deploy() -> Api {
        let stack = Stack::deploy().await;
        let ingest = stack.ingest();
        let key = stack.ingest_key().await;
        Api { stack, ingest, key }
    }

    /// `POST /v1/uploads` of `body` with the stage's key: the status and
    /// the answer.
    async fn upload(&self, body: &[u8]) -> (i64, Value) {
        let resp = self
            .ingest
            .handle(apigw::post(PATH, body, Some(&self.key)))
            .await;
        (resp.status_code, apigw::json(&resp))
    }
}

/// An answer's `Accepted` and `Duplicates` counts.
fn counts(answer: &Value) -> (Option<u64>, Option<u64>) {
    (answer["Accepted"].as_u64(), answer["Duplicates"].as_u64())
}

/// Valid item `n` with journal number `seq`.
fn numbered(n: usize, seq: u64) -> Value {
    let mut t = valid(n);
    t["SequenceNumber"] = json!(seq);
    t
}

/// Every stored transaction of the safes `serials`.
async fn stored<S: AsRef<str>>(
    stack: &Stack,
    serials: impl IntoIterator<Item = S>,
) -> Vec<StoredTransaction> {
    let store = stack.transaction_store();
    let mut all = Vec::new();
    for serial in serials {
        all.extend(
            store
                .for_safe(&SerialNumber::parse(serial.as_ref()).unwrap())
                .await
                .unwrap(),
        );
    }
    all
}

fn serials_of(items: &[Value]) -> BTreeSet<String> {
    items
        .iter()
        .map(|t| t["SerialNumber"].as_str().unwrap().to_uppercase())
        .collect()
}

#[tokio::test]
async fn duplicates_inside_and_across_uploads_are_stored_once() {
    let api = Api::deploy().await;
    let stack = &api.stack;
    let all = generated(1100, 7, 7);
    assert_eq!(serials_of(&all).len(), 7);

    // Upload 1: 900 distinct transactions and 100 re-reads of some of them.
    let mut first: Vec<Value> = all[..900].to_vec();
    first.extend(all[..900].iter().step_by(9).map(reread));
    assert_eq!(first.len(), 1000);
    let (status, r) = api.upload(&body(&first)).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(counts(&r), (Some(900), Some(100)), "{r}");
    assert_eq!(r["Held"], 0);
    assert_eq!(r["Rejected"], json!([]));
    assert_eq!(r["Unowned"], 900, "no safe is assigned to a customer yet");

    // Upload 2: 100 already stored (re-read again) and 200 new ones.
    let mut second: Vec<Value> = all[400..500].iter().map(reread).collect();
    second.extend(all[900..].iter().cloned());
    let (_, r) = api.upload(&body(&second)).await;
    assert_eq!(counts(&r), (Some(200), Some(100)), "{r}");

    // Re-sending an upload accepts nothing.
    let (_, r) = api.upload(&body(&second)).await;
    assert_eq!(counts(&r), (Some(0), Some(300)), "{r}");

    // The table holds exactly the 1100 transactions, each once, as pushed.
    let expected: BTreeMap<String, String> = parse_upload(&body(&all))
        .unwrap()
        .accepted()
        .map(|(_, item)| {
            let key = item.storage_key();
            (format!("{}|{}", key.partition, key.sort), item.to_json())
        })
        .collect();
    assert_eq!(expected.len(), 1100);
    let rows = stored(stack, &serials_of(&all)).await;
    assert_eq!(rows.len(), 1100);
    let actual: BTreeMap<String, String> = rows
        .iter()
        .map(|r| {
            (
                format!("{}|{}", r.serial_number, r.sort_key),
                r.payload.clone(),
            )
        })
        .collect();
    assert_eq!(actual, expected);
    assert!(rows.iter().all(|r| r.status == DeliveryStatus::Deliverable));
    // Every payload keeps the decimal text it was sent with.
    assert!(rows.iter().any(|r| r.payload.contains(".0000")));
}

/// A valid transaction of safe `UT00001`, `n` making it distinct.
fn valid(n: usize) -> Value {
    json!({
        "PickupGroupId": 61499281, "SerialNumber": "UT00001",
        "RetrievedOn": "2023-05-01T10:00:00.437Z",
        "TransactionDateTime": format!("2023-05-01T08:{:02}:{:02}", n / 60, n % 60),
        "UserName": "JOSE CHAVEZ", "TransactionType": "CashIn", "Amount": 5560.0,
        "Denominations": [
            {"UnitValue": 20.0000, "Count": 53, "Currency": "USD"},
            {"UnitValue": 100.0000, "Count": 45, "Currency": "USD"}
        ],
        "Register": "0"
    })
}

fn with(n: usize, field: &str, value: Value) -> String {
    let mut t = valid(n);
    t[field] = value;
    t.to_string()
}

fn without(n: usize, field: &str) -> String {
    let mut t = valid(n);
    t.as_object_mut().unwrap().remove(field);
    t.to_string()
}

/// What should become of a bad item.
enum Fate {
    Rejected(&'static str),
    Held(&'static str),
}

/// An item's field as `note` makes it: one entry of `Denominations`.
fn note(unit: f64, count: impl serde::Serialize, currency: &str) -> Value {
    json!({"UnitValue": unit, "Count": count, "Currency": currency})
}

/// Valid item `n` as text, its `"Amount":5560.0` written as `"Amount":{text}`
/// (what `json!` cannot write: huge or exponent numbers, a repeated key).
fn amount_text(n: usize, text: &str) -> String {
    valid(n)
        .to_string()
        .replacen("\"Amount\":5560.0", &format!("\"Amount\":{text}"), 1)
}

/// Every kind of malformed item, one a row: its name, its text, its fate.
#[rustfmt::skip]
fn malformed_items() -> Vec<(&'static str, String, Fate)> {
    use Fate::*;
    const DENOMS: &str = "Denominations";
    const DATE: &str = "TransactionDateTime";
    const READ: &str = "RetrievedOn";
    let deep: Value = serde_json::from_str(&format!("{}\"x\"{}", "[".repeat(60), "]".repeat(60))).unwrap();
    vec![
        ("serial as number", with(1, "SerialNumber", json!(7761)), Rejected("wrong_type")),
        ("amount as string", with(2, "Amount", json!("5560.0")), Rejected("wrong_type")),
        ("user as object", with(3, "UserName", json!({"a": 1})), Rejected("wrong_type")),
        ("fractional count", with(4, DENOMS, json!([note(20.0, 2.5, "USD")])), Rejected("wrong_type")),
        ("negative count", with(5, DENOMS, json!([note(20.0, -3, "USD")])), Held("negative_count")),
        ("amount mismatch", with(6, "Amount", json!(5580.0)), Held("amount_mismatch")),
        ("unknown type", with(7, "TransactionType", json!("CashOut")), Rejected("unknown_type")),
        ("unknown legacy code", with(8, "TransactionType", json!(999)), Rejected("unknown_type")),
        ("serial with space", with(9, "SerialNumber", json!("UT 07761")), Rejected("invalid_serial")),
        ("serial too short", with(10, "SerialNumber", json!("UT")), Rejected("invalid_serial")),
        ("serial too long", with(11, "SerialNumber", json!("U".repeat(33))), Rejected("invalid_serial")),
        ("impossible date", with(12, DATE, json!("2023-02-30T10:00:00")), Rejected("invalid_timestamp")),
        ("retrieved without zone", with(13, READ, json!("2023-05-01T10:00:00")), Rejected("invalid_timestamp")),
        ("eight fraction digits", with(14, READ, json!("2023-05-01T10:00:00.12345678Z")), Rejected("invalid_timestamp")),
        ("far future", with(15, DATE, json!("2099-01-01T00:00:00")), Held("future_date")),
        ("huge pickup group", with(16, "PickupGroupId", json!(u64::MAX)), Rejected("out_of_range")),
        ("huge amount", amount_text(17, "123456789012345678901234567890.5"), Rejected("out_of_range")),
        ("exponent amount", amount_text(18, "5.56e3"), Rejected("invalid_number")),
        ("NaN amount", with(19, "Amount", json!("NaN")), Rejected("wrong_type")),
        ("missing user", without(20, "UserName"), Rejected("missing_field")),
        ("missing type", without(21, "TransactionType"), Rejected("missing_field")),
        ("empty object", "{}".into(), Rejected("missing_field")),
        ("empty array item", "[]".into(), Rejected("not_an_object")),
        ("string item", "\"hello\"".into(), Rejected("not_an_object")),
        ("null item", "null".into(), Rejected("not_an_object")),
        ("deep nesting", with(25, "Register", deep), Rejected("wrong_type")),
        ("duplicate key", amount_text(26, "5560.0,\"Amount\":1.0"), Rejected("duplicate_field")),
        ("misspelt field", with(27, "Amout", json!(1.0)), Rejected("unknown_field")),
        ("bad currency", with(28, DENOMS, json!([note(20.0, 1, "us")])), Rejected("invalid_format")),
        ("long register", with(29, "Register", json!("REGISTER123")), Rejected("invalid_format")),
        ("short deposit ref", with(30, "DepositReferenceNumber", json!("12")), Rejected("invalid_format")),
        ("door on a transaction", with(31, "DoorName", json!("Vault")), Rejected("not_applicable")),
        ("clock reset to 1970", with(33, DATE, json!("1970-01-01T00:00:00")), Held("date_before_floor")),
        ("read in the future", with(34, READ, json!("2099-01-01T00:00:00Z")), Held("retrieved_on_in_future")),
        ("too many denominations", with(35, DENOMS, json!(vec![note(0.01, 1, "USD"); 101])), Rejected("too_many_entries")),
        ("invalid UTF-8", with(32, "UserName", json!("JOSE \u{FFFF}")), Rejected("invalid_utf8")),
    ]
}

/// SafeSync's upload lists a safe's transactions newest first (any order):
/// the stream, which the fan-out batches from, carries each safe's in the
/// order they happened, while safes are written side by side.
#[tokio::test]
async fn the_stream_carries_each_safes_transactions_in_their_time_order() {
    let stack = Stack::deploy().await;
    let key = stack.ingest_key().await;
    let upload: Value = serde_json::from_slice(&testdata::upload_json(300, 3, 29)).unwrap();
    let mut items = upload["Transactions"].as_array().unwrap().clone();
    items.sort_by(|a, b| {
        let at = |t: &Value| t["TransactionDateTime"].as_str().unwrap().to_owned();
        at(b).cmp(&at(a))
    });
    let body = serde_json::to_vec(&json!({ "Transactions": items })).unwrap();
    let resp = stack
        .ingest()
        .handle(apigw::post("/v1/uploads", &body, Some(&key)))
        .await;
    let answer = apigw::json(&resp);
    assert_eq!(answer["Accepted"], 300, "{answer}");

    let mut by_safe: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in platformsync_tests::streams::lambda_records(&stack).await {
        let stored: StoredTransaction = serde_dynamo::from_item(record.change.new_image).unwrap();
        by_safe
            .entry(stored.serial_number.to_string())
            .or_default()
            .push(stored.sort_key);
    }
    assert_eq!(by_safe.len(), 3);
    assert_eq!(by_safe.values().map(Vec::len).sum::<usize>(), 300);
    for (safe, keys) in &by_safe {
        let late = keys.windows(2).filter(|w| w[0] > w[1]).count();
        assert_eq!(
            late,
            0,
            "{safe}: {late} of {} written after a later one",
            keys.len()
        );
    }
}

#[tokio::test]
async fn every_kind_of_malformed_item_gets_its_reason_and_spoils_nothing_else() {
    use Fate::*;
    let cases = malformed_items();
    assert!(cases.len() >= 25);

    // Interleave: valid, bad, valid, bad, ... so every bad item has valid
    // neighbours.
    let mut text = String::from(r#"{"Transactions":["#);
    let mut bad_index = Vec::new();
    for (i, (_, bad, _)) in cases.iter().enumerate() {
        text.push_str(&valid(100 + i).to_string());
        text.push(',');
        bad_index.push(2 * i + 1);
        text.push_str(bad);
        text.push(',');
    }
    text.push_str(&valid(99).to_string());
    text.push_str("]}");
    // Turn the marked character into bytes that are not UTF-8.
    let mut bytes = text.into_bytes();
    let marker = "\u{FFFF}".as_bytes();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap();
    bytes.splice(at..at + marker.len(), [0xff, 0xfe]);

    let api = Api::deploy().await;
    let stack = &api.stack;
    let (status, r) = api.upload(&bytes).await;
    assert_eq!(status, 200, "{r}");

    let held_cases = cases.iter().filter(|c| matches!(c.2, Held(_))).count();
    let valid_items = cases.len() + 1;
    assert_eq!(
        r["Accepted"].as_u64(),
        Some(valid_items as u64),
        "every valid neighbour kept: {r}"
    );
    assert_eq!(r["Held"].as_u64(), Some(held_cases as u64), "{r}");
    let rejected = r["Rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), cases.len() - held_cases, "{r}");
    for entry in rejected {
        let reason = entry["Reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!("Transactions[{}]", entry["Index"])),
            "the reason names the item: {reason}"
        );
    }

    // Rejects are kept raw with their code; held items stored with theirs.
    let upload_id = r["UploadId"].as_str().unwrap();
    let rejects = RejectStore::new(
        aws_sdk_dynamodb::Client::new(&stack.config),
        stack.reference("RejectsTable"),
    )
    .for_upload(upload_id)
    .await
    .unwrap();
    let reject_codes: BTreeMap<usize, String> = rejects
        .iter()
        .map(|r| {
            (
                r.item_ref.rsplit('#').next().unwrap().parse().unwrap(),
                r.code.clone(),
            )
        })
        .collect();
    let rows = stored(stack, ["UT00001"]).await;
    for ((name, raw, fate), index) in cases.iter().zip(&bad_index) {
        match fate {
            Rejected(code) => {
                assert_eq!(
                    reject_codes.get(index).map(String::as_str),
                    Some(*code),
                    "{name}"
                );
                let record = rejects
                    .iter()
                    .find(|r| r.item_ref.ends_with(&format!("#{index:06}")))
                    .unwrap();
                if *name != "invalid UTF-8" {
                    assert_eq!(&record.raw, raw, "{name}: kept raw");
                }
            }
            Held(code) => {
                let when: Value = serde_json::from_str(raw).unwrap();
                let when = when["TransactionDateTime"].as_str().unwrap();
                let row = rows
                    .iter()
                    .find(|r| {
                        r.payload
                            .contains(&format!("\"TransactionDateTime\":\"{when}\""))
                    })
                    .unwrap_or_else(|| panic!("{name}: stored"));
                assert_eq!(row.status, DeliveryStatus::Held, "{name}");
                assert!(
                    row.hold_reasons.iter().any(|h| h.code == *code),
                    "{name}: {:?}",
                    row.hold_reasons
                );
            }
        }
    }
    assert_eq!(rows.len(), valid_items + held_cases);
}

#[tokio::test]
async fn bodies_that_are_not_uploads_are_refused_whole() {
    let api = Api::deploy().await;
    let deep = format!(
        "{{\"Transactions\":[{}{}]}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    for (name, body, status, code) in [
        ("not JSON", b"hello".to_vec(), 400, "invalid_json"),
        ("not an object", b"[1,2]".to_vec(), 400, "not_an_object"),
        (
            "empty upload",
            br#"{"Transactions": []}"#.to_vec(),
            400,
            "empty_upload",
        ),
        ("no arrays", b"{}".to_vec(), 400, "empty_upload"),
        (
            "unknown key",
            br#"{"Transactions": [], "Foo": 1}"#.to_vec(),
            400,
            "unknown_key",
        ),
        ("nesting bomb", deep.into_bytes(), 400, "too_deep"),
        (
            "over the Lambda limit",
            vec![b' '; ingest::MAX_BODY_BYTES + 1],
            413,
            "too_large",
        ),
    ] {
        let (actual, r) = api.upload(&body).await;
        assert_eq!(actual, status, "{name}: {r}");
        assert_eq!(r["Error"]["Code"], code, "{name}: {r}");
        assert!(!r["Error"]["Message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn uploads_without_the_ingest_key_are_refused_and_store_nothing() {
    let Api { stack, ingest, key } = Api::deploy().await;
    let stack = &stack;
    let upload = body(&[valid(1)]);
    for wrong in [None, Some("wrong-key"), Some("")] {
        let resp = ingest.handle(apigw::post(PATH, &upload, wrong)).await;
        assert_eq!(resp.status_code, 401, "{wrong:?}");
        assert_eq!(apigw::json(&resp)["Error"]["Code"], "unauthorized");
    }
    // Bearer works as well as x-api-key.
    let mut req = apigw::post(PATH, &upload, None);
    req.headers
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let rows = stored(stack, ["UT00001"]).await;
    assert!(rows.is_empty(), "refused uploads store nothing");
    assert_eq!(ingest.handle(req).await.status_code, 200);
    assert_eq!(stored(stack, ["UT00001"]).await.len(), 1);
}

#[tokio::test]
async fn sequence_gaps_are_reported_and_unowned_safes_counted() {
    let api = Api::deploy().await;
    let config = api.stack.config_store();
    config
        .assign_safe(&ids::safe("UT00001"), &ids::customer("cust-1"))
        .await
        .unwrap();
    let mut other = valid(50);
    other["SerialNumber"] = json!("CT57679");

    let first = body(&[numbered(1, 100), numbered(2, 101), numbered(3, 104), other]);
    let (_, r) = api.upload(&first).await;
    assert_eq!(r["Accepted"], 4, "{r}");
    assert_eq!(r["Unowned"], 1, "CT57679 has no customer: {r}");
    assert_eq!(
        r["SequenceGaps"],
        json!([{"SerialNumber": "UT00001", "From": 102, "To": 103}]),
        "{r}"
    );

    // The missing numbers arrive: the gap closes.
    let second = body(&[numbered(4, 102), numbered(5, 103)]);
    let (_, r) = api.upload(&second).await;
    assert_eq!(r["Accepted"], 2, "{r}");
    assert!(r.get("SequenceGaps").is_none(), "{r}");
}

#[tokio::test]
async fn items_that_cannot_be_stored_make_a_503_with_per_item_statuses() {
    let mut api = Api::deploy().await;
    // A table that does not exist stands in for DynamoDB failing every write
    // after the SDK's retries.
    let mut settings = api.stack.ingest_settings();
    settings.transactions_table.push_str("-missing");
    api.ingest = ingest::Ingest::new(&api.stack.config, settings);
    let upload = format!(
        r#"{{"Transactions": [{}, {{"SerialNumber": 1}}, {}]}}"#,
        valid(1),
        valid(1)
    );
    let (status, r) = api.upload(upload.as_bytes()).await;
    assert_eq!(status, 503, "{r}");
    assert_eq!(r["Accepted"], 0);
    assert_eq!(r["Failed"].as_array().unwrap().len(), 2, "{r}");
    assert!(
        r["Failed"][0]["Reason"]
            .as_str()
            .unwrap()
            .contains("re-send"),
        "{r}"
    );
    assert_eq!(
        r["Items"],
        json!([
            {"Index": 0, "Kind": "Transactions", "Status": "Failed"},
            {"Index": 1, "Kind": "Transactions", "Status": "Rejected"},
            {"Index": 2, "Kind": "Transactions", "Status": "Failed"},
        ]),
        "{r}"
    );
}

/// An item whose stored form would be over DynamoDB's item limit used to
/// fail its write on every re-send (a 503 forever). It is rejected with its
/// reason, kept raw, and the rest of the upload is stored: a re-send is a
/// 200 of duplicates.
#[tokio::test]
async fn an_item_with_thousands_of_denominations_is_rejected_not_a_503_forever() {
    let api = Api::deploy().await;
    let stack = &api.stack;
    let mut huge = valid(1);
    huge["Denominations"] = json!(vec![note(100.0000, 1, "USD"); 9_000]);
    huge["Amount"] = json!(900000.0);
    let upload = body(&[valid(2), huge, valid(3)]);
    assert!(upload.len() > 400 * 1024, "over DynamoDB's item limit");

    let mut upload_ids = Vec::new();
    for (attempt, (accepted, duplicates)) in [(2, 0), (0, 2)].into_iter().enumerate() {
        let (status, r) = api.upload(&upload).await;
        assert_eq!(status, 200, "attempt {attempt}: {r}");
        assert_eq!(r["Accepted"], accepted, "{r}");
        assert_eq!(r["Duplicates"], duplicates, "{r}");
        assert_eq!(
            r["Rejected"],
            json!([{
                "Index": 1,
                "Kind": "Transactions",
                "Reason": "Transactions[1].Denominations: has 9000 entries; at most 100 are accepted"
            }]),
            "{r}"
        );
        upload_ids.push(r["UploadId"].as_str().unwrap().to_owned());
    }
    let rejects = RejectStore::new(
        aws_sdk_dynamodb::Client::new(&stack.config),
        stack.reference("RejectsTable"),
    )
    .for_upload(&upload_ids[0])
    .await
    .unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].code, "too_many_entries");
    assert!(rejects[0].raw_truncated, "kept, cut to fit one item");
    let rows = stored(stack, ["UT00001"]).await;
    assert_eq!(rows.len(), 2);
}

/// Rotating the ingest key (a new AWSCURRENT; the old value becomes
/// AWSPREVIOUS) while two containers hold their own caches: neither key is
/// refused by either container during the grace period; the key before
/// that stops working at the next rotation; an empty key never works.
#[tokio::test]
async fn ingest_key_rotation_refuses_neither_key_in_two_containers() {
    let stack = Stack::deploy().await;
    let first = stack.ingest_key().await;
    let (a, b) = (stack.ingest(), stack.ingest());
    for c in [&a, &b] {
        assert_eq!(upload_with(c, &first).await, 200, "warm cache");
    }
    // Past the rate bound of the warm-up look-ups (one per second).
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let second = rotate_ingest_key(&stack, "second").await;

    // Container a sees the new key first: it looks again and accepts it,
    // then still accepts the old one (AWSPREVIOUS).
    assert_eq!(upload_with(&a, &second).await, 200, "a, new key");
    assert_eq!(upload_with(&a, &first).await, 200, "a, old key");
    // Container b still caches the old value: the old key is its current;
    // the new key makes it look again.
    assert_eq!(upload_with(&b, &first).await, 200, "b, old key");
    assert_eq!(upload_with(&b, &second).await, 200, "b, new key");
    for c in [&a, &b] {
        assert_eq!(upload_with(c, &second).await, 200);
        assert_eq!(upload_with(c, &first).await, 200);
        for wrong in ["", "wrong-key"] {
            assert_eq!(upload_with(c, wrong).await, 401, "{wrong:?}");
        }
    }

    // The next rotation ends the first key's grace period.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let third = rotate_ingest_key(&stack, "third").await;
    for c in [&a, &b] {
        assert_eq!(upload_with(c, &third).await, 200, "newest key");
        assert_eq!(upload_with(c, &second).await, 200, "previous key");
        assert_eq!(upload_with(c, &first).await, 401, "rotated out twice");
    }
}

/// Uploads one new valid transaction to `container` with `key`; the status.
async fn upload_with(container: &ingest::Ingest, key: &str) -> i64 {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1000);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    container
        .handle(apigw::post(PATH, &body(&[valid(n)]), Some(key)))
        .await
        .status_code
}

/// What `platformsync ingest-key rotate` does: a new AWSCURRENT version.
async fn rotate_ingest_key(stack: &Stack, prefix: &str) -> String {
    let value = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    stack
        .clients
        .secrets
        .put_secret_value()
        .secret_id(stack.reference("IngestKeySecret"))
        .secret_string(&value)
        .send()
        .await
        .unwrap();
    value
}

/// Journal numbers at the top of the counter are ordinary numbers, and a
/// transaction and an audit record with the same number are two records.
#[tokio::test]
async fn sequence_numbers_up_to_u64_max_and_shared_with_audits() {
    let api = Api::deploy().await;
    let stack = &api.stack;
    let audit = json!({
        "PickupGroupId": 0, "SerialNumber": "UT00001",
        "RetrievedOn": "2023-05-01T10:00:00Z", "TransactionDateTime": "2023-05-01T08:00:01",
        "UserName": "JOSE CHAVEZ", "TransactionType": "DoorOpened", "Amount": 0,
        "SequenceNumber": u64::MAX
    });
    let upload = serde_json::to_vec(&json!({
        "Transactions": [numbered(1, u64::MAX - 3), numbered(2, u64::MAX)],
        "AuditTransactions": [audit],
    }))
    .unwrap();
    let (status, r) = api.upload(&upload).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["Accepted"], 3, "the audit is not a duplicate: {r}");
    assert_eq!(
        r["SequenceGaps"],
        json!([{"SerialNumber": "UT00001", "From": u64::MAX - 2, "To": u64::MAX - 1}]),
        "{r}"
    );
    let mut keys: Vec<String> = stored(stack, ["UT00001"])
        .await
        .into_iter()
        .map(|row| row.dedup_key)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "aseq:UT00001:18446744073709551615",
            "seq:UT00001:18446744073709551612",
            "seq:UT00001:18446744073709551615",
        ]
    );
    // The gap closes at the very top; a re-send is all duplicates.
    let rest = body(&[numbered(3, u64::MAX - 2), numbered(4, u64::MAX - 1)]);
    let (_, r) = api.upload(&rest).await;
    assert_eq!(r["Accepted"], 2, "{r}");
    assert!(r.get("SequenceGaps").is_none(), "{r}");
    let (_, r) = api.upload(&upload).await;
    assert_eq!(counts(&r), (Some(0), Some(3)), "{r}");
}

/// The contract example in docs/ is what the function really answers.
#[tokio::test]
async fn the_documented_example_is_what_ingest_answers() {
    let root = platformsync_tests::repo_root().join("docs");
    let request = std::fs::read(root.join("upload-request.json")).unwrap();
    let mut expected: Value =
        serde_json::from_slice(&std::fs::read(root.join("upload-response.json")).unwrap()).unwrap();
    let (status, actual) = Api::deploy().await.upload(&request).await;
    assert_eq!(status, 200);
    expected["UploadId"] = actual["UploadId"].clone();
    assert_eq!(
        actual, expected,
        "docs/upload-response.json is out of date: {actual:#}"
    );
}
