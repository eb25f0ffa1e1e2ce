//! SQS and DynamoDB cost of the fan-out, measured end to end on the local
//! stack.
//!
//! For each scenario: a fresh deployment, 5,000 transactions of 50 safes
//! ingested through the ingest function, the table's stream read back and
//! handed to the fan-out in stream batches of 1,000 (the template's
//! `BatchSize`), as Lambda would. Prints `SendMessageBatch` requests and
//! messages per transaction (target: requests per transaction <= 0.005 for
//! endpoints with batches of 100 or more), the DynamoDB write units of the
//! plans written (item sizes read back, rounded up to 1 KB per item as
//! DynamoDB bills a write), checks the queue holds exactly the messages
//! sent, and the wall time.
//! Run with `make bench-fanout` or:
//! `cargo bench -p platformsync-tests --bench fanout_load` against a stack.

use aws_sdk_sqs::types::QueueAttributeName;
use platformsync_domain::endpoint::EndpointSettings;
use platformsync_domain::testdata;
use platformsync_tests::ids;
use platformsync_tests::{Stack, endpoint_settings, streams};
use serde_json::json;
use std::time::{Duration, Instant};

const TRANSACTIONS: usize = 5_000;
const SAFES: usize = 50;
const STREAM_BATCH: usize = 1_000;
const TARGET_REQUESTS_PER_TRANSACTION: f64 = 0.005;

struct Scenario {
    name: &'static str,
    /// (endpoint id, customer id, extra settings)
    endpoints: Vec<(&'static str, &'static str, serde_json::Value)>,
    /// Customer of safe `i`.
    owner: fn(usize) -> &'static str,
    /// Whether the requests-per-transaction target applies (not to an
    /// endpoint with batches of 10: one request per message, by design).
    target: bool,
}

fn endpoint(id: &str, customer: &str, extra: &serde_json::Value) -> EndpointSettings {
    let url = format!("https://{id}.example.com/push");
    let key_secret = format!("platformsync/bench/endpoints/{id}");
    endpoint_settings(customer, id, &url, &key_secret, extra)
}

#[tokio::main]
async fn main() {
    let scenarios = vec![
        Scenario {
            name: "1 customer, 1 endpoint (all types, batch 1000)",
            endpoints: vec![("acme-erp", "acme", json!({}))],
            owner: |_| "acme",
            target: true,
        },
        Scenario {
            name: "1 customer, 3 endpoints (all types, batch 1000)",
            endpoints: vec![
                ("acme-erp", "acme", json!({})),
                ("acme-bi", "acme", json!({})),
                ("acme-test", "acme", json!({"EndpointType": "Test"})),
            ],
            owner: |_| "acme",
            target: true,
        },
        Scenario {
            name: "2 customers, 3 endpoints (whitelists; batch 1000/100/250)",
            endpoints: vec![
                ("acme-erp", "acme", json!({})),
                (
                    "acme-audit",
                    "acme",
                    json!({"Whitelist": ["ValidatedCashIn", "ChangePurchase"], "MaxBatchSize": 100}),
                ),
                (
                    "globex-cash",
                    "globex",
                    json!({"Whitelist": ["CashIn", "Servicing", "EndOfDay"], "MaxBatchSize": 250}),
                ),
            ],
            owner: |i| if i % 7 < 4 { "acme" } else { "globex" },
            target: true,
        },
        Scenario {
            name: "1 customer, 1 endpoint (all types, batch 10)",
            endpoints: vec![("acme-erp", "acme", json!({"MaxBatchSize": 10}))],
            owner: |_| "acme",
            target: false,
        },
    ];

    let upload: serde_json::Value =
        serde_json::from_slice(&testdata::upload_json(TRANSACTIONS, SAFES, 17)).expect("JSON");
    let items = upload["Transactions"].as_array().expect("transactions");
    let bodies: Vec<Vec<u8>> = items
        .chunks(1000)
        .map(|c| serde_json::to_vec(&json!({ "Transactions": c })).expect("JSON"))
        .collect();

    println!(
        "fan-out load: {TRANSACTIONS} transactions of {SAFES} safes, stream batches of {STREAM_BATCH}, moto server"
    );
    println!(
        "{:<58} {:>9} {:>9} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9}",
        "scenario",
        "messages",
        "requests",
        "req/tx",
        "msg/tx",
        "avg KB",
        "plan KB",
        "WCU/tx",
        "fan-out s"
    );
    let mut worst: f64 = 0.0;
    for scenario in &scenarios {
        let stack = Stack::deploy().await;
        let config = stack.config_store();
        for id in ["acme", "globex"] {
            stack.add_customer(id, id, &[]).await;
        }
        for (id, customer, extra) in &scenario.endpoints {
            config
                .put_endpoint(&endpoint(id, customer, extra))
                .await
                .expect("endpoint stored");
        }
        for (i, serial) in testdata::serials(SAFES, 17).iter().enumerate() {
            config
                .assign_safe(&ids::safe(serial), &ids::customer((scenario.owner)(i)))
                .await
                .expect("safe assigned");
        }
        for body in &bodies {
            stack.upload(body).await;
        }
        let records = streams::lambda_records(&stack).await;
        assert_eq!(records.len(), TRANSACTIONS);

        let mut settings = stack.fanout_settings();
        settings.transactions_table = Some(stack.reference("TransactionsTable"));
        let fanout = fanout::Fanout::new(&stack.config, settings);
        let started = Instant::now();
        let (mut messages, mut requests, mut transactions) = (0, 0, 0usize);
        for chunk in records.chunks(STREAM_BATCH) {
            let outcome = fanout
                .process(
                    streams::event(chunk),
                    Instant::now() + Duration::from_secs(60),
                )
                .await;
            assert_eq!(outcome.first_failed, None, "{outcome:?}");
            messages += outcome.messages_sent;
            requests += outcome.sqs_requests;
            transactions += outcome.pushable;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let queued = stack
            .delivery_queue_count(&[QueueAttributeName::ApproximateNumberOfMessages])
            .await;
        assert_eq!(queued, messages, "the queue holds exactly what was sent");
        let avg_kb = average_message_kb(&stack).await;
        let (plan_bytes, plan_wcu) = plan_writes(&stack).await;
        let per_tx = requests as f64 / transactions as f64;
        if scenario.target {
            worst = worst.max(per_tx);
        }
        println!(
            "{:<58} {messages:>9} {requests:>9} {per_tx:>10.4} {:>10.4} {avg_kb:>8.0} {:>9.1} {:>9.4} {elapsed:>9.2}",
            scenario.name,
            messages as f64 / transactions as f64,
            plan_bytes as f64 / 1024.0,
            plan_wcu as f64 / transactions as f64,
        );
    }
    println!(
        "worst SQS requests per transaction: {worst:.4} (target <= {TARGET_REQUESTS_PER_TRANSACTION}): {}",
        if worst <= TARGET_REQUESTS_PER_TRANSACTION {
            "met"
        } else {
            "MISSED"
        }
    );
}

/// The plan items written (`PLAN#…` in the config table): their total size
/// and the write units their puts cost (one per started KB per item).
async fn plan_writes(stack: &Stack) -> (usize, usize) {
    let items = platformsync_tests::item_size::scan(stack, "ConfigTable", Some("PLAN#")).await;
    let (bytes, units) = platformsync_tests::item_size::bytes_and_write_units(&items);
    (bytes, units)
}

/// Mean size of up to ten queued messages, in KB (without removing them).
async fn average_message_kb(stack: &Stack) -> f64 {
    let out = stack
        .clients
        .sqs
        .receive_message()
        .queue_url(stack.reference("DeliveryQueue"))
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .expect("receive");
    let sizes: Vec<usize> = out
        .messages()
        .iter()
        .map(|m| m.body().map_or(0, str::len))
        .collect();
    if sizes.is_empty() {
        0.0
    } else {
        sizes.iter().sum::<usize>() as f64 / sizes.len() as f64 / 1024.0
    }
}
