//! Issue 13, over the wire against the local stack: `attempts` shows every
//! attempt of a failing then recovered endpoint (issue 16: the delivered one
//! from the batch's ledger item, an earlier version's from its `TRY#` item);
//! `manifest`'s totals equal the delivered transactions' sums (ledger items with keys and with a plan
//! reference, resolved through the fan-out's plan).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;

use platformsync_aws::fanout_plans::{Plan, PlanStore, PlannedMessage};
use platformsync_aws::ledger::{AttemptRecord, Delivery, Ledger, TRY_PREFIX};
use platformsync_domain::batch::{BATCH_MESSAGE_VERSION, BatchEntry, BatchMessage, PlanRef};
use platformsync_domain::endpoint::{CustomerId, EndpointId};
use platformsync_domain::record::{DeliveryStatus, RecordType, StoredTransaction};
use platformsync_domain::serial::SerialNumber;
use platformsync_domain::types::MessageKind;
use platformsync_domain::types::TransactionType;
use platformsync_tests::receiver::{Receiver, Reply};
use platformsync_tests::{Stack, cli};
use serde_json::json;
use serde_json::value::RawValue;

async fn setup(stack: &Stack, receiver: &Receiver, id: &str) {
    stack.add_customer("acme", "Acme", &[]).await;
    stack
        .add_endpoint("acme", id, &receiver.url("/push"), "tok", json!({}))
        .await;
}

/// A failing (503) then recovered endpoint: every attempt is listed, in
/// order, with its outcome, latency and the endpoint's answer.
#[tokio::test]
async fn attempts_lists_every_attempt_of_a_failing_then_recovered_endpoint() {
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    setup(&stack, &receiver, "acme-att").await;
    receiver.set_default(Reply::status(503));
    let payload = r#"{"PickupGroupId":1,"SerialNumber":"UT1","RetrievedOn":"2026-01-10T09:00:00Z","TransactionDateTime":"2026-01-10T08:00:00","UserName":"clerk","TransactionType":"CashIn","Amount":10.0,"Denominations":[{"UnitValue":10.0000,"Count":1,"Currency":"USD"}]}"#;
    let batch = BatchMessage {
        version: BATCH_MESSAGE_VERSION,
        message_id: uuid::Uuid::new_v4(),
        endpoint_id: EndpointId::parse("acme-att").unwrap(),
        customer_id: CustomerId::parse("acme").unwrap(),
        kind: MessageKind::Transactions,
        created_at: "2026-01-10T09:00:00Z".into(),
        items: vec![BatchEntry {
            key: "UT1|2026-01-10T08:00:00.0000000#sha:00000000000000000000000000000001".into(),
            payload: RawValue::from_string(payload.into()).unwrap(),
        }],
        plan_ref: None,
    };
    stack.enqueue(&batch).await;
    let push = stack.push(&receiver, |_| {});
    stack
        .deliver_until(&push, Duration::from_secs(40), || {
            if receiver.count() >= 2 {
                receiver.set_default(Reply::ok());
            }
            receiver.requests().iter().any(|r| r.replied == Some(200))
        })
        .await;
    let posts = receiver.count();
    assert!(posts >= 3, "two failures then a 200: {posts}");

    let attempts = cli::json(&stack, &["attempts", "--endpoint", "acme-att"]).await;
    let list = attempts.as_array().unwrap();
    assert_eq!(list.len(), posts, "every POST is on record: {attempts}");
    let outcomes: Vec<&str> = list
        .iter()
        .map(|a| a["Outcome"].as_str().unwrap())
        .collect();
    let mut expected = vec!["failed"; posts - 1];
    expected.push("delivered");
    assert_eq!(outcomes, expected);
    for (i, a) in list.iter().enumerate() {
        assert_eq!(a["MessageId"], batch.message_id.to_string());
        assert_eq!(a["Attempt"], i + 1);
        assert!(a["LatencyMs"].as_u64().is_some());
        assert!(a["At"].as_str().unwrap().starts_with("20"));
    }
    assert!(
        list[0]["Error"].as_str().unwrap().contains("503"),
        "{}",
        list[0]
    );
    assert!(list[posts - 1].get("Error").is_none());
    let one = cli::json(
        &stack,
        &[
            "attempts",
            "--endpoint",
            "acme-att",
            "--batch",
            &batch.message_id.to_string(),
        ],
    )
    .await;
    assert_eq!(one.as_array().unwrap().len(), posts);
    let text = cli::ok(&stack, &["attempts", "--endpoint", "acme-att"]).await;
    assert!(
        text.contains("OUTCOME") && text.contains("delivered"),
        "{text}"
    );

    // Issue 16: the delivered POST is part of the batch's ledger item (one
    // write); only the failed POSTs are `TRY#` items of their own.
    assert_eq!(
        try_items(&stack, "acme-att").await,
        posts - 1,
        "no TRY# item for the delivered POST"
    );
    let ledger_item = aws_sdk_dynamodb::Client::new(&stack.config)
        .get_item()
        .table_name(stack.reference("DeliveryLedgerTable"))
        .key("EndpointId", AttributeValue::S("acme-att".into()))
        .key("BatchId", AttributeValue::S(batch.message_id.to_string()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the delivered batch's ledger item");
    assert!(
        ledger_item.contains_key("TriedAt") && ledger_item.contains_key("LatencyMs"),
        "{ledger_item:?}"
    );

    // A batch recorded by the previous version (a ledger item without the
    // folded POST, and a `TRY#` item for it) is listed once, in order.
    let ledger = stack.ledger();
    let old = uuid::Uuid::new_v4();
    let at = time::OffsetDateTime::now_utc();
    ledger
        .record_delivery(&Delivery {
            endpoint_id: &batch.endpoint_id,
            message_id: old,
            customer_id: &batch.customer_id,
            kind: MessageKind::Transactions,
            transaction_keys: &[],
            attempts: 1,
            first_attempt_at: at,
            delivered_at: at,
            split: false,
        })
        .await
        .unwrap();
    ledger
        .record_attempt(
            &AttemptRecord {
                endpoint_id: batch.endpoint_id.clone(),
                message_id: old,
                attempt: 1,
                at: "2099-01-01T00:00:00Z".into(),
                outcome: "delivered".into(),
                latency_ms: 7,
                error: None,
                transactions: 0,
                parent_message_id: None,
            },
            at,
        )
        .await
        .unwrap();
    let attempts = cli::json(&stack, &["attempts", "--endpoint", "acme-att"]).await;
    let list = attempts.as_array().unwrap();
    assert_eq!(list.len(), posts + 1, "{attempts}");
    assert_eq!(list[posts]["MessageId"], old.to_string());
    assert_eq!(list[posts]["LatencyMs"], 7);
}

fn stored(serial: &str, i: usize, day: &str, denominations: &str) -> StoredTransaction {
    let time = format!("{day}T08:00:{i:02}");
    StoredTransaction {
        serial_number: SerialNumber::parse(serial).unwrap(),
        sort_key: format!("{time}.0000000#sha:{i:032x}"),
        dedup_key: format!("sha:{i:032x}"),
        record_type: RecordType::Transaction(TransactionType::CashIn),
        status: DeliveryStatus::Deliverable,
        hold_reasons: vec![],
        payload: format!(
            r#"{{"PickupGroupId":{i},"SerialNumber":"{serial}","RetrievedOn":"2026-01-10T09:00:00Z","TransactionDateTime":"{time}","UserName":"clerk","TransactionType":"CashIn","Amount":0,"Denominations":{denominations}}}"#
        ),
        sequence_number: None,
        upload_id: "u1".into(),
        received_at: time::macros::datetime!(2026-01-10 09:00:01 UTC),
    }
}

fn key(t: &StoredTransaction) -> String {
    format!("{}|{}", t.serial_number, t.sort_key)
}

/// The manifest counts each delivered transaction of the day once (two
/// endpoints got it, or a batch with keys and one with a plan reference)
/// and sums its denominations exactly, per currency; undelivered and other
/// days' transactions are not in it.
#[tokio::test]
async fn the_manifest_totals_equal_the_delivered_transactions_sums() {
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    setup(&stack, &receiver, "acme-m1").await;
    setup(&stack, &receiver, "acme-m2").await;
    let store = stack.transaction_store();
    let a = [
        stored(
            "UT10001",
            1,
            "2026-01-10",
            r#"[{"UnitValue":20.0000,"Count":3,"Currency":"USD"},{"UnitValue":0.10,"Count":7,"Currency":"EUR"}]"#,
        ),
        stored(
            "UT10001",
            2,
            "2026-01-10",
            r#"[{"UnitValue":100.0000,"Count":1,"Currency":"USD"}]"#,
        ),
        stored(
            "UT10001",
            3,
            "2026-01-10",
            r#"[{"UnitValue":5,"Count":1,"Currency":"USD"}]"#,
        ),
        stored(
            "UT10001",
            4,
            "2026-01-11",
            r#"[{"UnitValue":50,"Count":1,"Currency":"USD"}]"#,
        ),
        stored(
            "UT20002",
            5,
            "2026-01-10",
            r#"[{"UnitValue":0.05,"Count":3,"Currency":"EUR"}]"#,
        ),
    ];
    for t in &a {
        store.insert_new(t).await.unwrap();
    }
    let dynamo = aws_sdk_dynamodb::Client::new(&stack.config);
    let ledger = Ledger::new(dynamo.clone(), stack.reference("DeliveryLedgerTable"));
    let now = time::OffsetDateTime::now_utc();
    let acme: &'static CustomerId = Box::leak(Box::new(CustomerId::parse("acme").unwrap()));
    let delivery = |endpoint: &'static str, id: u128, keys: &'static [String]| Delivery {
        endpoint_id: Box::leak(Box::new(EndpointId::parse(endpoint).unwrap())),
        message_id: uuid::Uuid::from_u128(id),
        customer_id: acme,
        kind: MessageKind::Transactions,
        transaction_keys: keys,
        attempts: 1,
        first_attempt_at: now,
        delivered_at: now,
        split: false,
    };
    // Endpoint 1: a batch with keys (#1, #4 of another day).
    let keys1: &'static [String] = Box::leak(vec![key(&a[0]), key(&a[3])].into_boxed_slice());
    ledger
        .record_delivery(&delivery("acme-m1", 1, keys1))
        .await
        .unwrap();
    // Endpoint 2: #1 again and #2, #5 through a plan reference (#3 never delivered).
    let plan = Plan {
        key: key(&a[0]),
        created_at: "2026-01-10T09:00:00Z".into(),
        keys: vec![key(&a[0]), key(&a[1]), key(&a[2]), key(&a[4])],
        endpoints: vec![(
            EndpointId::parse("acme-m2").unwrap(),
            CustomerId::parse("acme").unwrap(),
        )],
        messages: vec![PlannedMessage {
            message_id: uuid::Uuid::new_v4(),
            dedup_id: "d".into(),
            endpoint: 0,
            kind: MessageKind::Transactions,
            items: vec![0, 1, 3],
        }],
    };
    PlanStore::new(dynamo.clone(), stack.reference("ConfigTable"))
        .create(&plan, now.unix_timestamp())
        .await
        .unwrap();
    let plan_ref = PlanRef {
        plan: plan.key.clone(),
        index: 0,
    };
    let planned_keys: &'static [String] =
        Box::leak(vec![key(&a[0]), key(&a[1]), key(&a[4])].into_boxed_slice());
    ledger
        .record_planned_delivery(&delivery("acme-m2", 2, planned_keys), Some(&plan_ref))
        .await
        .unwrap();
    // The item stores the reference, not the keys; tools resolve them.
    let item = dynamo
        .get_item()
        .table_name(stack.reference("DeliveryLedgerTable"))
        .key(
            "EndpointId",
            aws_sdk_dynamodb::types::AttributeValue::S("acme-m2".into()),
        )
        .key(
            "BatchId",
            aws_sdk_dynamodb::types::AttributeValue::S(uuid::Uuid::from_u128(2).to_string()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(!item.contains_key("TransactionKeys") && item.contains_key("Plan"));
    let resolved = Ledger::new(dynamo.clone(), stack.reference("DeliveryLedgerTable"))
        .with_plans(PlanStore::new(
            dynamo.clone(),
            stack.reference("ConfigTable"),
        ))
        .deliveries_of(&EndpointId::parse("acme-m2").unwrap(), &key(&a[4]))
        .await
        .unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].transaction_keys, planned_keys);

    let m = cli::json(
        &stack,
        &["manifest", "--customer", "acme", "--day", "2026-01-10"],
    )
    .await;
    assert_eq!(m["Endpoints"], json!(["acme-m1", "acme-m2"]));
    assert_eq!(
        m["Safes"],
        json!([
            {"SerialNumber": "UT10001", "Day": "2026-01-10", "Transactions": 2,
             "Totals": {"EUR": "0.7", "USD": "160"}},
            {"SerialNumber": "UT20002", "Day": "2026-01-10", "Transactions": 1,
             "Totals": {"EUR": "0.15"}},
        ])
    );
    let text = cli::ok(
        &stack,
        &["manifest", "--customer", "acme", "--day", "2026-01-10"],
    )
    .await;
    assert!(
        text.contains("UT10001") && text.contains("160 USD"),
        "{text}"
    );
}

/// A batch the endpoint keeps refusing is split: every POST, the whole
/// batch's and each part's, is in `attempts`, in order; the parts under
/// their own MessageIds with the batch they are part of, and
/// `--batch <batch>` lists them with the batch's own attempts.
#[tokio::test]
async fn attempts_shows_each_part_of_a_split_batch() {
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    setup(&stack, &receiver, "acme-split").await;
    receiver.refuse_containing("clerk-refused", Reply::status(422));
    let items = (0..4)
        .map(|i| {
            let user = if i == 2 { "clerk-refused" } else { "clerk" };
            let payload = format!(
                r#"{{"PickupGroupId":{i},"SerialNumber":"UT1","RetrievedOn":"2026-01-10T09:00:00Z","TransactionDateTime":"2026-01-10T08:00:0{i}","UserName":"{user}","TransactionType":"CashIn","Amount":10.0,"Denominations":[{{"UnitValue":10.0000,"Count":1,"Currency":"USD"}}]}}"#
            );
            BatchEntry {
                key: format!("UT1|2026-01-10T08:00:0{i}.0000000#sha:{i:032x}"),
                payload: RawValue::from_string(payload).unwrap(),
            }
        })
        .collect();
    let batch = BatchMessage {
        version: BATCH_MESSAGE_VERSION,
        message_id: uuid::Uuid::new_v4(),
        endpoint_id: EndpointId::parse("acme-split").unwrap(),
        customer_id: CustomerId::parse("acme").unwrap(),
        kind: MessageKind::Transactions,
        created_at: "2026-01-10T09:00:00Z".into(),
        items,
        plan_ref: None,
    };
    let parent = batch.message_id.to_string();
    stack.enqueue(&batch).await;
    let push = stack.push(&receiver, |_| {});
    let ledger = stack.ledger();
    let until = Instant::now() + Duration::from_secs(60);
    while !ledger
        .lookup(&batch.endpoint_id, batch.message_id)
        .await
        .unwrap()
        .delivered
    {
        assert!(Instant::now() < until, "the split did not finish");
        stack.deliver_once(&push).await;
    }
    let requests = receiver.requests();
    assert!(requests.len() > 3, "three refusals, then the parts");
    let attempts = cli::json(
        &stack,
        &["attempts", "--endpoint", "acme-split", "--batch", &parent],
    )
    .await;
    let list = attempts.as_array().unwrap();
    let listed: Vec<&str> = list
        .iter()
        .map(|a| a["MessageId"].as_str().unwrap())
        .collect();
    let posted: Vec<String> = requests.iter().map(|r| r.message_id()).collect();
    assert_eq!(listed, posted, "every POST on record, in order: {attempts}");
    let mut parts = 0;
    for (a, r) in list.iter().zip(&requests) {
        let outcome = if r.replied == Some(200) {
            "delivered"
        } else {
            "refused"
        };
        assert_eq!(a["Outcome"], outcome, "{a}");
        let transactions = r.json()["Transactions"].as_array().unwrap().len();
        assert_eq!(a["Transactions"], transactions, "{a}");
        if a["MessageId"] == parent.as_str() {
            assert!(a.get("ParentMessageId").is_none(), "{a}");
        } else {
            parts += 1;
            assert_eq!(a["ParentMessageId"], parent.as_str(), "{a}");
        }
    }
    assert!(parts >= 3, "the parts' attempts are listed: {attempts}");
    let delivered: usize = list
        .iter()
        .filter(|a| a["Outcome"] == "delivered")
        .map(|a| a["Transactions"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(delivered, 3, "all but the refused transaction delivered");
    let text = cli::ok(&stack, &["attempts", "--endpoint", "acme-split"]).await;
    assert!(text.contains("PART OF") && text.contains(&parent), "{text}");
    // Issue 16: a delivered part's POST is on its ledger item; only the
    // refused POSTs are `TRY#` items.
    let refused = list.iter().filter(|a| a["Outcome"] == "refused").count();
    assert_eq!(try_items(&stack, "acme-split").await, refused);
}

/// How many `TRY#` (attempt) items the endpoint's ledger holds.
async fn try_items(stack: &Stack, endpoint: &str) -> usize {
    aws_sdk_dynamodb::Client::new(&stack.config)
        .query()
        .table_name(stack.reference("DeliveryLedgerTable"))
        .key_condition_expression("EndpointId = :e AND begins_with(BatchId, :p)")
        .expression_attribute_values(":e", AttributeValue::S(endpoint.into()))
        .expression_attribute_values(":p", AttributeValue::S(TRY_PREFIX.into()))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
        .len()
}
