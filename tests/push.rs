//! The push function against the local stack and a local HTTPS receiver with
//! its own CA: the FIFO delivery queue is received from as Lambda's poller
//! would, and the handler's partial batch responses, visibility changes,
//! ledger, health, dead-letter queue and SNS notifications are observed.
//!
//! Retry delays are made short with small retry windows (a retry is never
//! scheduled past the window's end), so no test waits for the 30-second
//! first step of the real schedule. Timing is asserted only loosely ("not
//! visible before X"), never as performance.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use platformsync_aws::config_table::ConfigStore;
use platformsync_aws::health::{HealthState, HealthStore};
use platformsync_aws::ledger::{Delivery, Ledger};
use platformsync_domain::batch::{BATCH_MESSAGE_VERSION, BatchEntry, BatchMessage};
use platformsync_domain::endpoint::{Customer, CustomerId, EndpointId, EndpointSettings};
use platformsync_domain::types::MessageKind;
use platformsync_tests::Stack;
use platformsync_tests::receiver::{Receiver, Reply, Request};
use serde_json::value::RawValue;
use serde_json::{Value, json};

const CUSTOMER: &str = "acme";

// ---------------------------------------------------------------- fixtures

/// An endpoint of `acme` at `receiver`'s `path`, its key in Secrets Manager.
async fn endpoint(
    stack: &Stack,
    receiver: &Receiver,
    id: &str,
    path: &str,
    key: &str,
    extra: Value,
) -> EndpointSettings {
    let secret_name = format!("platformsync/{}/endpoints/{id}", stack.stage);
    stack
        .clients
        .secrets
        .create_secret()
        .name(&secret_name)
        .secret_string(key)
        .send()
        .await
        .expect("endpoint key stored");
    let mut settings = json!({
        "EndpointId": id,
        "CustomerId": CUSTOMER,
        "Url": receiver.url(path),
        "ApiKeySecret": secret_name,
    });
    if let (Some(s), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    let settings: EndpointSettings = serde_json::from_value(settings).unwrap();
    let store = config(stack);
    store
        .put_customer(&Customer {
            customer_id: CustomerId::parse(CUSTOMER).unwrap(),
            name: "Acme Retail".into(),
            notification_recipients: vec!["cash@acme.example".into()],
        })
        .await
        .unwrap();
    store.put_endpoint(&settings).await.unwrap();
    settings
}

fn config(stack: &Stack) -> ConfigStore {
    ConfigStore::new(
        aws_sdk_dynamodb::Client::new(&stack.config),
        stack.reference("ConfigTable"),
    )
}

fn ledger(stack: &Stack) -> Ledger {
    Ledger::new(
        aws_sdk_dynamodb::Client::new(&stack.config),
        stack.reference("DeliveryLedgerTable"),
    )
}

/// A batch of `n` transactions of safe UT07761 for `endpoint_id`.
fn batch(endpoint_id: &str, n: usize, seed: usize) -> BatchMessage {
    let items = (0..n)
        .map(|i| {
            let time = format!("2026-01-10T08:{:02}:{:02}", seed % 60, i % 60);
            let payload = format!(
                r#"{{"PickupGroupId":{seed},"SerialNumber":"UT07761","RetrievedOn":"2026-01-10T09:00:00Z","TransactionDateTime":"{time}","UserName":"clerk","TransactionType":"CashIn","Amount":5560.0,"Denominations":[{{"UnitValue":20.0000,"Count":53,"Currency":"USD"}},{{"UnitValue":100.0000,"Count":45,"Currency":"USD"}}]}}"#
            );
            BatchEntry {
                key: BatchEntry::key_of("UT07761", &format!("{time}.0000000#sha:{seed:08x}{i:024x}")),
                payload: RawValue::from_string(payload).unwrap(),
            }
        })
        .collect();
    BatchMessage {
        version: BATCH_MESSAGE_VERSION,
        message_id: uuid::Uuid::new_v4(),
        endpoint_id: EndpointId::parse(endpoint_id).unwrap(),
        customer_id: CustomerId::parse(CUSTOMER).unwrap(),
        kind: MessageKind::Transactions,
        created_at: "2026-01-10T09:00:00Z".into(),
        items,
        plan_ref: None,
    }
}

/// Enqueues as the fan-out does: group = endpoint, dedup id = MessageId.
async fn enqueue(stack: &Stack, batch: &BatchMessage) {
    enqueue_raw(
        stack,
        batch.endpoint_id.as_str(),
        &batch.message_id.to_string(),
        &serde_json::to_string(batch).unwrap(),
    )
    .await;
}

async fn enqueue_raw(stack: &Stack, group: &str, dedup: &str, body: &str) {
    stack
        .clients
        .sqs
        .send_message()
        .queue_url(stack.reference("DeliveryQueue"))
        .message_group_id(group)
        .message_deduplication_id(dedup)
        .message_body(body)
        .send()
        .await
        .expect("enqueued");
}

fn receive_count(m: &Message) -> u32 {
    m.attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|c| c.parse().ok())
        .unwrap_or_default()
}

/// Receives and handles until `done` holds or `timeout` passes (then panics).
/// Returns every message received, in order.
async fn drive(
    stack: &Stack,
    push: &push::Push,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Vec<Message> {
    let until = Instant::now() + timeout;
    let mut seen = Vec::new();
    while !done() {
        assert!(Instant::now() < until, "not done within {timeout:?}");
        let messages = stack.receive_deliveries(1).await;
        if !messages.is_empty() {
            stack.run_push(push, &messages).await;
            seen.extend(messages);
        }
    }
    seen
}

/// A queue subscribed to the notifications topic: what SNS delivered.
struct Inbox {
    url: String,
}

impl Inbox {
    async fn subscribe(stack: &Stack) -> Inbox {
        let sqs = &stack.clients.sqs;
        let name = format!("{}-notifications-inbox", stack.stage);
        let url = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        aws_sdk_sns::Client::new(&stack.config)
            .subscribe()
            .topic_arn(stack.reference("NotificationsTopic"))
            .protocol("sqs")
            .endpoint(arn)
            .send()
            .await
            .unwrap();
        Inbox { url }
    }

    /// Every notification delivered so far, as SNS envelopes (drains the queue).
    async fn drain(&self, stack: &Stack) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let out = stack
                .clients
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return all;
            }
            for m in messages {
                all.push(serde_json::from_str(m.body().unwrap()).unwrap());
                stack
                    .clients
                    .sqs
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

fn attribute(envelope: &Value, name: &str) -> String {
    envelope["MessageAttributes"][name]["Value"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn ledger_item(
    stack: &Stack,
    endpoint: &str,
    batch_id: &str,
) -> Option<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    stack
        .clients
        .dynamodb
        .get_item()
        .table_name(stack.reference("DeliveryLedgerTable"))
        .key(
            "EndpointId",
            aws_sdk_dynamodb::types::AttributeValue::S(endpoint.into()),
        )
        .key(
            "BatchId",
            aws_sdk_dynamodb::types::AttributeValue::S(batch_id.into()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

fn text(item: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(aws_sdk_dynamodb::types::AttributeValue::S(s)) => s.clone(),
        Some(aws_sdk_dynamodb::types::AttributeValue::N(n)) => n.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn a_delivered_batch_is_in_the_ledger_and_the_endpoint_is_healthy() {
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    endpoint(
        &stack,
        &receiver,
        "acme-prod",
        "/push",
        "tok-prod-1",
        json!({}),
    )
    .await;
    let push = stack.push(&receiver, |_| {});
    let b = batch("acme-prod", 3, 1);
    enqueue(&stack, &b).await;

    let messages = stack.receive_deliveries(5).await;
    assert_eq!(messages.len(), 1);
    let response = stack.run_push(&push, &messages).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.path()), ("POST", "/push"));
    assert_eq!(r.header("authorization"), Some("Bearer tok-prod-1"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["Metadata"]["MessageId"], b.message_id.to_string());
    assert_eq!(body["Metadata"]["Version"], "1");
    assert_eq!(body["Transactions"].as_array().unwrap().len(), 3);
    let raw = String::from_utf8(r.body.clone()).unwrap();
    assert!(
        raw.contains(r#""UnitValue":20.0000"#),
        "exact decimals: {raw}"
    );

    let item = ledger_item(&stack, "acme-prod", &b.message_id.to_string())
        .await
        .expect("ledger has the batch");
    assert_eq!(text(&item, "TransactionCount"), "3");
    assert_eq!(text(&item, "Attempts"), "1");
    let keys: Vec<String> = b.items.iter().map(|e| e.key.clone()).collect();
    assert_eq!(text(&item, "TransactionKeys"), keys.join("\n"));
    assert!(
        text(&item, "ExpiresAt").parse::<i64>().unwrap()
            > time::OffsetDateTime::now_utc().unix_timestamp() + 399 * 86_400
    );
    let found = ledger(&stack)
        .deliveries_of("acme-prod", &keys[1])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].message_id, b.message_id.to_string());

    let health = HealthStore::new(
        aws_sdk_dynamodb::Client::new(&stack.config),
        stack.reference("ConfigTable"),
    )
    .get("acme-prod")
    .await
    .unwrap();
    assert_eq!(health.state, HealthState::Healthy);
    assert!(health.last_delivered_at.is_some() && health.incident_id.is_none());
    assert!(stack.receive_deliveries(1).await.is_empty(), "acknowledged");
}

/// One endpoint per failure mode; each fails once, then answers 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_after_the_visibility_delay() {
    let stack = Stack::deploy().await;
    let cases = [
        (
            "http-500",
            Reply::status(500).with_body("database down"),
            "HTTP 500: database down",
        ),
        ("http-201", Reply::status(201), "HTTP 201"),
        (
            "timeout",
            Reply::ok().after(Duration::from_secs(4)),
            "no response within",
        ),
        ("reset", Reply::Reset, "reset"),
    ];
    let mut runs = Vec::new();
    for (id, reply, expected_error) in cases {
        let stack = &stack;
        runs.push(async move {
            let receiver = Receiver::start().await;
            endpoint(
                stack,
                &receiver,
                id,
                "/in",
                &format!("tok-{id}-secret"),
                json!({}),
            )
            .await;
            receiver.queue([reply]);
            // A 4 s window puts the retry ~4 s out; 1 s attempts for the timeout.
            let push = stack.push(&receiver, |s| {
                s.retry_window = Duration::from_secs(4);
                s.attempt_timeout = Duration::from_secs(1);
            });
            let b = batch(id, 2, 7);
            (id, expected_error, receiver, push, b)
        });
    }
    let runs = futures_util::future::join_all(runs).await;
    for (_, _, _, _, b) in &runs {
        enqueue(&stack, b).await;
    }

    // First attempts: all fail, each message's visibility is set to the delay.
    let mut first = Vec::new();
    while first.len() < runs.len() {
        first.extend(stack.receive_deliveries(1).await);
    }
    let group_of = |m: &Message| {
        m.attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .cloned()
            .unwrap_or_default()
    };
    let event_of = |id: &str| {
        first
            .iter()
            .filter(|m| group_of(m) == id)
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut failed_at = HashMap::new();
    for (id, expected_error, receiver, push, b) in &runs {
        let response = stack.run_push(push, &event_of(id)).await;
        failed_at.insert(id.to_string(), Instant::now());
        assert_eq!(response.batch_item_failures.len(), 1, "{id}: {response:?}");
        assert_eq!(receiver.count(), 1, "{id}");
        let state = ledger_item(&stack, id, &format!("ATTEMPT#{}", b.message_id))
            .await
            .unwrap_or_else(|| panic!("{id}: retry state kept"));
        let state_json = text(&state, "State");
        assert!(state_json.contains(expected_error), "{id}: {state_json}");
        assert!(
            !state_json.contains(&format!("tok-{id}-secret")),
            "{id}: token leaked"
        );
    }

    // Each comes back only after its delay (3 to 4 s: what is left of the
    // window), not before; allow 1 s of slack for receive polling.
    let mut again: Vec<Message> = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    while again.len() < runs.len() {
        assert!(
            Instant::now() < until,
            "retries did not come back: {again:?}"
        );
        for m in stack.receive_deliveries(1).await {
            let waited = failed_at[&group_of(&m)].elapsed();
            assert!(
                waited >= Duration::from_secs(2),
                "{} visible again after {waited:?}, before its retry delay",
                group_of(&m)
            );
            again.push(m);
        }
    }
    for m in &again {
        assert_eq!(receive_count(m), 2, "{m:?}");
    }
    for (id, _, receiver, push, b) in &runs {
        let group: Vec<Message> = again
            .iter()
            .filter(|m| {
                m.attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .is_some_and(|g| g == id)
            })
            .cloned()
            .collect();
        let response = stack.run_push(push, &group).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "{id}: {response:?}"
        );
        let requests = receiver.wait_for(2, Duration::from_secs(5)).await;
        assert_eq!(requests.len(), 2, "{id}");
        assert!(
            requests
                .iter()
                .all(|r| r.message_id() == b.message_id.to_string()),
            "same MessageId on the retry"
        );
        let item = ledger_item(&stack, id, &b.message_id.to_string())
            .await
            .expect("delivered");
        assert_eq!(text(&item, "Attempts"), "2", "{id}");
        assert!(
            ledger_item(&stack, id, &format!("ATTEMPT#{}", b.message_id))
                .await
                .is_none(),
            "{id}: retry state cleared"
        );
    }
}

#[tokio::test]
async fn after_recovery_each_batch_is_delivered_once_and_in_order() {
    let stack = Stack::deploy().await;
    let inbox = Inbox::subscribe(&stack).await;
    let receiver = Receiver::start().await;
    endpoint(
        &stack,
        &receiver,
        "acme-prod",
        "/push",
        "tok-order",
        json!({}),
    )
    .await;
    receiver.queue([Reply::status(503).with_retry_after("1")]);
    let push = stack.push(&receiver, |s| s.retry_window = Duration::from_secs(4));
    let batches: Vec<BatchMessage> = (0..4).map(|i| batch("acme-prod", 5, i)).collect();
    for b in &batches {
        enqueue(&stack, b).await;
    }

    let delivered = || receiver.count() > batches.len();
    let received = drive(&stack, &push, Duration::from_secs(30), delivered).await;
    assert!(
        stack.receive_deliveries(1).await.is_empty(),
        "queue drained"
    );

    let posted: Vec<String> = receiver
        .requests()
        .iter()
        .map(Request::message_id)
        .collect();
    let ids: Vec<String> = batches.iter().map(|b| b.message_id.to_string()).collect();
    // The first batch failed once; nothing overtook it; each delivered once.
    let mut expected = vec![ids[0].clone()];
    expected.extend(ids.iter().cloned());
    assert_eq!(posted, expected);
    // Later batches were handed back, not attempted, while the first waited.
    assert!(received.iter().any(|m| receive_count(m) >= 2));

    let kinds: Vec<String> = inbox
        .drain(&stack)
        .await
        .iter()
        .map(|n| attribute(n, "kind"))
        .collect();
    assert_eq!(kinds, vec!["failing", "recovered"]);
}

#[tokio::test]
async fn a_401_fetches_the_key_again_and_the_retry_carries_the_new_key() {
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    let settings = endpoint(
        &stack,
        &receiver,
        "acme-prod",
        "/push",
        "key-one",
        json!({}),
    )
    .await;
    let push = stack.push(&receiver, |_| {});

    // The first batch caches key-one.
    enqueue(&stack, &batch("acme-prod", 1, 1)).await;
    drive(&stack, &push, Duration::from_secs(10), || {
        receiver.count() == 1
    })
    .await;

    // Staff rotate the key; the endpoint refuses the cached one once.
    stack
        .clients
        .secrets
        .put_secret_value()
        .secret_id(&settings.api_key_secret)
        .secret_string("key-two")
        .send()
        .await
        .unwrap();
    receiver.queue([Reply::status(401)]);
    let b = batch("acme-prod", 1, 2);
    enqueue(&stack, &b).await;
    let messages = stack.receive_deliveries(5).await;
    let response = stack.run_push(&push, &messages).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "delivered in one attempt: {response:?}"
    );

    let auth: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(auth, ["Bearer key-one", "Bearer key-one", "Bearer key-two"]);
    let item = ledger_item(&stack, "acme-prod", &b.message_id.to_string())
        .await
        .unwrap();
    assert_eq!(
        text(&item, "Attempts"),
        "1",
        "the refetch is part of the attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_never_recovers_expires_into_the_dead_letter_queue() {
    let stack = Stack::deploy().await;
    let inbox = Inbox::subscribe(&stack).await;
    let receiver = Receiver::start().await;
    endpoint(
        &stack,
        &receiver,
        "acme-prod",
        "/push",
        "tok-never",
        json!({}),
    )
    .await;
    receiver.set_default(Reply::status(503).with_body("echo tok-never"));
    let push = stack.push(&receiver, |s| s.retry_window = Duration::from_secs(10));
    let b = batch("acme-prod", 2, 3);
    enqueue(&stack, &b).await;

    let dlq = stack.reference("DeliveryDeadLetterQueue");
    let started = Instant::now();
    let mut dead = Vec::new();
    let until = Instant::now() + Duration::from_secs(40);
    while dead.is_empty() {
        assert!(
            Instant::now() < until,
            "nothing reached the dead-letter queue"
        );
        let messages = stack.receive_deliveries(1).await;
        if !messages.is_empty() {
            stack.run_push(&push, &messages).await;
        }
        dead = stack
            .clients
            .sqs
            .receive_message()
            .queue_url(&dlq)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
    }
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "expired before the window"
    );
    assert_eq!(dead.len(), 1);
    let m = &dead[0];
    assert_eq!(m.body(), Some(serde_json::to_string(&b).unwrap().as_str()));
    let attrs = m.message_attributes().unwrap();
    let attr = |n: &str| attrs[n].string_value().unwrap().to_owned();
    assert_eq!(attr("Reason"), "expired");
    let attempts: u32 = attr("Attempts").parse().unwrap();
    assert!(attempts >= 2, "{attempts}");
    assert!(
        attr("LastError").starts_with("HTTP 503"),
        "{}",
        attr("LastError")
    );
    assert!(
        !attr("LastError").contains("tok-never"),
        "token echoed into the DLQ"
    );
    assert!(attr("FirstAttemptAt").starts_with("20"));
    assert_eq!(
        m.attributes().unwrap()[&MessageSystemAttributeName::MessageGroupId],
        "acme-prod"
    );
    assert!(
        stack.receive_deliveries(2).await.is_empty(),
        "nothing left to retry"
    );

    let notifications = inbox.drain(&stack).await;
    let kinds: Vec<String> = notifications.iter().map(|n| attribute(n, "kind")).collect();
    assert_eq!(
        kinds,
        vec!["failing", "expired"],
        "exactly two notifications"
    );
    for n in &notifications {
        assert_eq!(attribute(n, "customer"), CUSTOMER);
        assert_eq!(attribute(n, "endpoint"), "acme-prod");
        let body = n["Message"].as_str().unwrap();
        assert!(body.contains("cash@acme.example"), "{body}");
        assert!(
            !body.contains("tok-never"),
            "token in a notification: {body}"
        );
    }
}

#[tokio::test]
async fn a_batch_already_in_the_ledger_is_not_posted_again() {
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    endpoint(
        &stack,
        &receiver,
        "acme-prod",
        "/push",
        "tok-ledger",
        json!({}),
    )
    .await;
    let push = stack.push(&receiver, |_| {});

    // Delivered by an invocation that crashed before acknowledging.
    let crashed = batch("acme-prod", 2, 1);
    let keys: Vec<String> = crashed.items.iter().map(|e| e.key.clone()).collect();
    let now = time::OffsetDateTime::now_utc();
    ledger(&stack)
        .record_delivery(&Delivery {
            endpoint_id: "acme-prod",
            message_id: &crashed.message_id.to_string(),
            customer_id: CUSTOMER,
            kind: "Transactions",
            transaction_keys: &keys,
            attempts: 1,
            first_attempt_at: now,
            delivered_at: now,
        })
        .await
        .unwrap();
    enqueue(&stack, &crashed).await;
    let messages = stack.receive_deliveries(5).await;
    let response = stack.run_push(&push, &messages).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(receiver.count(), 0, "not posted again");

    // And a batch this function delivered, handed to it a second time (SQS
    // redelivers when the acknowledgement was lost).
    let b = batch("acme-prod", 2, 2);
    enqueue(&stack, &b).await;
    let messages = stack.receive_deliveries(5).await;
    let event = stack.sqs_event(&messages);
    assert!(
        push.handle(event.clone())
            .await
            .batch_item_failures
            .is_empty()
    );
    assert!(push.handle(event).await.batch_item_failures.is_empty());
    assert_eq!(receiver.count(), 1, "posted once");
}

#[tokio::test]
async fn every_key_placement_reaches_the_receiver_as_configured() {
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    let placements = [
        ("bearer", json!({})),
        ("raw", json!({"ApiKeyName": "X-Api-Key", "Bearer": false})),
        (
            "query",
            json!({"ApiKeyName": "api_key", "ApiKeyPlacement": "query"}),
        ),
        (
            "body",
            json!({"ApiKeyName": "ApiKey", "ApiKeyPlacement": "body"}),
        ),
        (
            "metadata",
            json!({"ApiKeyName": "Token", "ApiKeyPlacement": "metadata", "Metadata": {"StoreGroup": "north"}}),
        ),
    ];
    for (id, extra) in &placements {
        endpoint(
            &stack,
            &receiver,
            id,
            &format!("/{id}"),
            &format!("key-{id}"),
            extra.clone(),
        )
        .await;
        enqueue(&stack, &batch(id, 1, 1)).await;
    }
    let push = stack.push(&receiver, |_| {});
    drive(&stack, &push, Duration::from_secs(20), || {
        receiver.count() >= placements.len()
    })
    .await;

    let by_path: HashMap<String, Request> = receiver
        .requests()
        .into_iter()
        .map(|r| (r.path().trim_start_matches('/').to_owned(), r))
        .collect();
    assert_eq!(by_path.len(), placements.len());
    let r = &by_path["bearer"];
    assert_eq!(r.header("authorization"), Some("Bearer key-bearer"));
    let r = &by_path["raw"];
    assert_eq!(r.header("x-api-key"), Some("key-raw"));
    assert_eq!(r.header("authorization"), None);
    let r = &by_path["query"];
    assert_eq!(r.query("api_key").as_deref(), Some("key-query"));
    assert_eq!(r.header("authorization"), None);
    let r = &by_path["body"];
    assert_eq!(r.json()["ApiKey"], "key-body");
    assert_eq!(r.header("authorization"), None);
    let r = &by_path["metadata"];
    assert_eq!(r.json()["Metadata"]["Token"], "key-metadata");
    assert_eq!(r.json()["Metadata"]["StoreGroup"], "north");
    assert_eq!(r.header("authorization"), None);
}

#[tokio::test]
async fn a_malformed_message_goes_to_the_dead_letter_queue_with_its_reason() {
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    let push = stack.push(&receiver, |_| {});
    enqueue_raw(&stack, "acme-prod", "garbage-1", "{not json").await;
    let messages = stack.receive_deliveries(5).await;
    let response = stack.run_push(&push, &messages).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "acknowledged, no poison loop"
    );
    let dead = stack
        .clients
        .sqs
        .receive_message()
        .queue_url(stack.reference("DeliveryDeadLetterQueue"))
        .message_attribute_names("All")
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("{not json"));
    let attrs = dead[0].message_attributes().unwrap();
    assert_eq!(attrs["Reason"].string_value(), Some("malformed"));
    assert!(
        attrs["LastError"]
            .string_value()
            .unwrap()
            .contains("not a batch message")
    );
    assert_eq!(receiver.count(), 0);
}
