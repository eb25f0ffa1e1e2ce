//! Issue 13, over the wire against the local stack: `held list|show|release|
//! discard` through the CLI; the release's stream record fanned out by the
//! real fan-out (from the real stream, whole and replayed) and pushed by the
//! push function to a local receiver that counts every POST.

use std::time::Duration;

use platformsync_domain::record::{DeliveryStatus, HoldNote, RecordType, StoredTransaction};
use platformsync_domain::serial::SerialNumber;
use platformsync_domain::types::TransactionType;
use platformsync_tests::cli;
use platformsync_tests::receiver::Receiver;
use platformsync_tests::{Stack, stored_transaction, streams};
use serde_json::{Value, json};

const SERIAL: &str = "UT55501";

fn held(i: usize) -> StoredTransaction {
    let time = format!("2026-01-10T08:00:{i:02}");
    let payload = format!(
        r#"{{"PickupGroupId":{i},"SerialNumber":"{SERIAL}","RetrievedOn":"2026-01-10T09:00:00Z","TransactionDateTime":"{time}","UserName":"clerk","TransactionType":"CashIn","Amount":5560.0,"Denominations":[{{"UnitValue":20.0000,"Count":50,"Currency":"USD"}},{{"UnitValue":100.0000,"Count":45,"Currency":"USD"}}]}}"#
    );
    let cash_in = RecordType::Transaction(TransactionType::CashIn);
    let hash = format!("{i:032x}");
    StoredTransaction {
        hold_reasons: vec![HoldNote {
            code: "AmountMismatch".into(),
            message: "Amount 5560.0 is not the denominations' sum 5500.0".into(),
        }],
        ..stored_transaction(SERIAL, &time, &hash, cash_in, DeliveryStatus::Held, payload)
    }
}

/// Two held transactions: one released (delivered once, even when the
/// stream batch is replayed), one discarded (never delivered, who and why
/// kept); a second decision on either is refused.
#[tokio::test]
async fn a_released_transaction_is_delivered_once_and_a_discarded_one_never() {
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    let url = receiver.url("/push");
    stack
        .add_owner("acme", SERIAL, "acme-held", &url, "tok-held", json!({}))
        .await;

    let store = stack.transaction_store();
    let (a, b) = (held(1), held(2));
    for t in [&a, &b] {
        store.insert_new(t).await.unwrap();
    }
    let key_a = format!("{}|{}", a.serial_number, a.sort_key);
    let key_b = format!("{}|{}", b.serial_number, b.sort_key);

    let listed = cli::json(&stack, &["held", "list"]).await;
    let keys: Vec<&str> = cli::column(&listed, "Key");
    assert_eq!(keys, [key_a.as_str(), key_b.as_str()]);
    assert_eq!(listed[0]["HoldReasons"][0]["Code"], "AmountMismatch");
    let by_safe = cli::json(&stack, &["held", "list", "--safe", SERIAL]).await;
    assert_eq!(by_safe, listed);

    let dry = cli::json(
        &stack,
        &cli::args(&format!(
            "held release --key {key_a} --by ops-anna --reason 'checked with the site' --dry-run"
        )),
    )
    .await;
    assert_eq!(dry["DryRun"], true);
    assert_eq!(
        store
            .for_safe(&SerialNumber::parse(SERIAL).unwrap())
            .await
            .unwrap()[0]
            .status,
        DeliveryStatus::Held
    );

    let released = cli::json(
        &stack,
        &cli::args(&format!(
            "held release --key {key_a} --by ops-anna --reason 'checked with the site'"
        )),
    )
    .await;
    assert_eq!(released["Status"], "Released");
    let again = cli::run(
        &stack,
        &[
            "held", "release", "--key", &key_a, "--by", "ops-bob", "--reason", "again",
        ],
        "",
    )
    .await
    .error();
    assert!(
        again.contains("not held") && again.contains("Released"),
        "{again}"
    );
    let discard = format!(
        "held discard --key {key_b} --by ops-anna --reason 'test transaction from the site'"
    );
    cli::ok(&stack, &cli::args(&discard)).await;
    let release = format!("held release --key {key_b} --by ops-bob --reason 'changed my mind'");
    cli::refused(&stack, &cli::args(&release), "Discarded").await;
    let shown = cli::json(&stack, &["held", "show", "--key", &key_b]).await;
    assert_eq!(shown["Status"], "Discarded");
    assert_eq!(shown["DecidedBy"], "ops-anna");
    assert_eq!(shown["DecisionReason"], "test transaction from the site");
    assert!(shown["DecidedAt"].as_str().is_some());
    assert!(
        cli::json(&stack, &["held", "list"])
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The stream: 2 INSERTs (held: skipped), 1 MODIFY to Released (pushed),
    // 1 MODIFY to Discarded (skipped). Fanned out twice (a replay).
    let records = streams::lambda_records(&stack).await;
    assert_eq!(records.len(), 4, "{records:?}");
    let fanout = stack.fanout();
    for _ in 0..2 {
        let response = fanout.handle(streams::event(&records)).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    let push = stack.push(&receiver, |_| {});
    stack
        .deliver_until(&push, Duration::from_secs(20), || receiver.count() >= 1)
        .await;
    // Whatever is still queued (a replay's re-send) is handled too.
    stack.deliver_rest(&push, 3).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "released once, posted once");
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    let text = body.to_string();
    assert!(text.contains("\"PickupGroupId\":1"), "{text}");
    assert!(
        !text.contains("\"PickupGroupId\":2"),
        "discarded never sent: {text}"
    );
}
