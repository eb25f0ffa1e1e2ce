//! Issue 13, over the wire against the local stack: `replay --endpoint E
//! --from T1 --to T2` re-sends exactly the window's undelivered transactions
//! (all of them with `--force`), and an interrupted backfill resumes without
//! repeats. Push receives from the real delivery queue and posts to a local
//! receiver that counts every POST and every transaction in it.

use std::collections::HashMap;
use std::time::Duration;

use platformsync_domain::record::DeliveryStatus::{self, Deliverable, Held};
use platformsync_domain::record::{RecordType, StoredTransaction};
use platformsync_domain::types::MessageKind;
use platformsync_tests::cli;
use platformsync_tests::receiver::Receiver;
use platformsync_tests::{Stack, stored_transaction};
use serde_json::{Value, json};

const SERIAL: &str = "UT66601";

fn stored(
    minute: u32,
    i: usize,
    status: DeliveryStatus,
    kind: &str,
    ty: &str,
) -> StoredTransaction {
    let time = format!("2026-01-10T{minute:02}:00:{i:02}");
    let payload = format!(
        r#"{{"PickupGroupId":{},"SerialNumber":"{SERIAL}","RetrievedOn":"2026-01-10T09:00:00Z","TransactionDateTime":"{time}","UserName":"clerk","TransactionType":"{ty}","Amount":10.0,"Denominations":[{{"UnitValue":10.0000,"Count":1,"Currency":"USD"}}]}}"#,
        minute * 100 + i as u32
    );
    let record_type = RecordType::parse(MessageKind::from_wire_name(kind).unwrap(), ty).unwrap();
    let hash = format!("{minute:08x}{i:024x}");
    stored_transaction(SERIAL, &time, &hash, record_type, status, payload)
}

/// PickupGroupId of every transaction the receiver got, with repeats.
fn received(receiver: &Receiver) -> Vec<u64> {
    let mut ids = Vec::new();
    for r in receiver.requests() {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        let items = body["Transactions"].as_array().cloned().unwrap_or_default();
        for t in items {
            ids.push(t["PickupGroupId"].as_u64().unwrap());
        }
    }
    ids.sort();
    ids
}

/// Pushes until the receiver got `expected_posts` POSTs; then nothing more
/// arrives in two more polls.
async fn drain(stack: &Stack, push: &push::Push, receiver: &Receiver, expected_posts: usize) {
    stack
        .deliver_until(push, Duration::from_secs(30), || {
            receiver.count() >= expected_posts
        })
        .await;
    stack.deliver_rest(push, 2).await;
}

#[tokio::test]
async fn a_backfill_sends_the_windows_undelivered_transactions_resumably_and_all_with_force() {
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    let url = receiver.url("/push");
    let batches_of_two = json!({"MaxBatchSize": 2});
    stack
        .add_owner("acme", SERIAL, "acme-bf", &url, "tok-bf", batches_of_two)
        .await;

    let store = stack.transaction_store();
    // In the window (08:xx): 6 deliverable, 1 held, 1 audit record the
    // endpoint does not subscribe to; outside it: 1 at 07:59, 1 at 09:00.
    let cash_in = |minute, i, status| stored(minute, i, status, "Transactions", "CashIn");
    let mut all: Vec<StoredTransaction> = (0..6).map(|i| cash_in(8, i, Deliverable)).collect();
    all.push(cash_in(8, 6, Held));
    all.push(stored(8, 7, Deliverable, "AuditTransactions", "DoorOpened"));
    all.push(cash_in(7, 0, Deliverable));
    all.push(cash_in(9, 0, Deliverable));
    for t in &all {
        store.insert_new(t).await.unwrap();
    }
    // Two of the window were delivered before (the ledger has them).
    let delivered_keys: Vec<String> = all[..2]
        .iter()
        .map(|t| format!("{}|{}", t.serial_number, t.sort_key))
        .collect();
    let earlier = uuid::Uuid::from_u128(0xea71);
    stack
        .record_delivered(
            "acme-bf",
            "acme",
            earlier,
            MessageKind::Transactions,
            &delivered_keys,
        )
        .await;

    let window = [
        "--endpoint",
        "acme-bf",
        "--from",
        "2026-01-10T08:00:00",
        "--to",
        "2026-01-10T09:00:00",
    ];
    let dry = cli::json(&stack, &[&["replay"][..], &window, &["--dry-run"]].concat()).await;
    assert_eq!(dry["InWindow"], 6);
    assert_eq!(dry["SkippedDelivered"], 2);
    assert_eq!(dry["QueuedTransactions"], 4);
    assert!(
        stack.receive_deliveries(1).await.is_empty(),
        "a dry run queues nothing"
    );

    // Interrupted after one batch, then resumed: the other batch, once.
    let first = cli::json(
        &stack,
        &[&["replay"][..], &window, &["--max-batches", "1"]].concat(),
    )
    .await;
    assert_eq!(first["QueuedBatches"].as_array().unwrap().len(), 1);
    assert_eq!(first["StoppedEarly"], true);
    let second = cli::json(&stack, &[&["replay"][..], &window].concat()).await;
    assert_eq!(second["SkippedCheckpoint"], 2);
    assert_eq!(second["QueuedTransactions"], 2);
    assert_ne!(second["QueuedBatches"][0], first["QueuedBatches"][0]);
    // The MessageIds are those the dry run announced (deterministic).
    assert_eq!(
        json!([first["QueuedBatches"][0], second["QueuedBatches"][0]]),
        dry["QueuedBatches"]
    );
    // Run again: nothing left to send.
    let third = cli::json(&stack, &[&["replay"][..], &window].concat()).await;
    assert_eq!(third["QueuedTransactions"], 0);

    let push = stack.push(&receiver, |_| {});
    drain(&stack, &push, &receiver, 2).await;
    assert_eq!(receiver.count(), 2);
    assert_eq!(
        received(&receiver),
        vec![802, 803, 804, 805],
        "the window's undelivered, once each"
    );

    // --force: every transaction of the window, delivered or not.
    let forced = cli::json(&stack, &[&["replay"][..], &window, &["--force"]].concat()).await;
    assert_eq!(forced["SkippedDelivered"], 0);
    assert_eq!(forced["QueuedTransactions"], 6);
    drain(&stack, &push, &receiver, 5).await;
    assert_eq!(receiver.count(), 5);
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for id in received(&receiver) {
        *counts.entry(id).or_default() += 1;
    }
    let mut got: Vec<(u64, usize)> = counts.into_iter().collect();
    got.sort();
    assert_eq!(
        got,
        vec![(800, 1), (801, 1), (802, 2), (803, 2), (804, 2), (805, 2)],
        "--force sends the whole window again; nothing outside it, nothing held or unsubscribed"
    );
}
