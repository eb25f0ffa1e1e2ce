//! The push function against the local stack and a local HTTPS receiver with
//! its own CA: the FIFO delivery queue is received from as Lambda's poller
//! would, and the handler's partial batch responses, visibility changes,
//! ledger, health, dead-letter queue and SNS notifications are observed.
//!
//! Retry delays follow the production schedule (2 s, 5 s, 15 s, ... by the
//! endpoint's consecutive failures) and are cut short by small windows (a
//! retry is never scheduled past the window's end). Timing is asserted only
//! loosely ("not visible before X"), except where an issue's promise is a
//! time (expiry within the window plus a bound, a healthy endpoint's p99).
//! Every POST the receiver reads is counted; none relies on it dropping
//! repeats.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::Message;
use platformsync_aws::health::HealthState;
use platformsync_domain::endpoint::EndpointId;
use platformsync_faults::{Fault, Rule};
use platformsync_tests::ids;
use platformsync_tests::receiver::{Receiver, Reply, Request};
use platformsync_tests::{Emulator, Stack, skip_on, transactions_batch, transactions_batches};
use serde_json::json;

use given::{
    CUSTOMER, LOCALSTACK_RELEASES_THE_GROUP, RECIPIENT, Scenario, add_endpoint,
    assert_one_content_per_message_id, attribute, dead_letters, group_of, head_retried_once, keys,
    ledger_item, message_ids, notifications, poll_concurrently, posted_ids, posted_transactions,
    receive_count, text,
};

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn a_delivered_batch_is_in_the_ledger_and_the_endpoint_is_healthy() {
    let s = Scenario::new("acme-prod", "tok-prod-1").await;
    let push = s.push(|_| {});
    let b = s.batch(3, 1);

    let response = s.stack.run_push(&push, &s.received(&b).await).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let requests = s.receiver.requests();
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

    let item = ledger_item(&s.stack, "acme-prod", &b.message_id.to_string())
        .await
        .expect("ledger has the batch");
    assert_eq!(text(&item, "TransactionCount"), "3");
    assert_eq!(text(&item, "Attempts"), "1");
    let keys = keys(&b);
    assert_eq!(text(&item, "TransactionKeys"), keys.join("\n"));
    assert!(
        text(&item, "ExpiresAt").parse::<i64>().unwrap()
            > time::OffsetDateTime::now_utc().unix_timestamp() + 399 * 86_400
    );
    let found = s
        .stack
        .ledger()
        .deliveries_of(&EndpointId::parse("acme-prod").unwrap(), &keys[1])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].message_id, b.message_id.to_string());

    let health = s.health().await;
    assert_eq!(health.state, HealthState::Healthy);
    assert!(health.last_delivered_at.is_some() && health.incident_id.is_none());
    assert!(
        s.stack.receive_deliveries(1).await.is_empty(),
        "acknowledged"
    );
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
            let key = format!("tok-{id}-secret");
            add_endpoint(stack, &receiver, id, "/in", &key, json!({})).await;
            receiver.queue([reply]);
            // A 4 s window puts the retry ~4 s out; 1 s attempts for the timeout.
            let push = stack.push(&receiver, |settings| {
                settings.retry_window = Duration::from_secs(4);
                settings.attempt_timeout = Duration::from_secs(1);
            });
            let b = transactions_batch(CUSTOMER, id, 2, 7);
            (id, expected_error, receiver, push, b)
        });
    }
    let runs = futures_util::future::join_all(runs).await;
    for (_, _, _, _, b) in &runs {
        stack.enqueue(b).await;
    }

    // First attempts: all fail, each message's visibility is set to the delay.
    let mut first = Vec::new();
    while first.len() < runs.len() {
        first.extend(stack.receive_deliveries(1).await);
    }
    let of_group = |messages: &[Message], id: &str| -> Vec<Message> {
        messages
            .iter()
            .filter(|m| group_of(m) == id)
            .cloned()
            .collect()
    };
    let mut failed_at = HashMap::new();
    for (id, expected_error, receiver, push, _) in &runs {
        let response = stack.run_push(push, &of_group(&first, id)).await;
        failed_at.insert(id.to_string(), Instant::now());
        assert_eq!(response.batch_item_failures.len(), 1, "{id}: {response:?}");
        assert_eq!(receiver.count(), 1, "{id}");
        // The retry state is the endpoint's (its incident), not the batch's.
        let health = stack.health_store().get(&ids::endpoint(id)).await.unwrap();
        assert_eq!(health.state, HealthState::Failing, "{id}");
        let last_error = health.last_error.unwrap_or_default();
        assert!(last_error.contains(expected_error), "{id}: {last_error}");
        assert!(
            !last_error.contains(&format!("tok-{id}-secret")),
            "{id}: token leaked"
        );
    }

    // Each comes back only after its delay (the schedule's first step, 2 s
    // +-20 %, rounded up), not before; allow slack for receive polling.
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
                waited >= Duration::from_millis(1500),
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
        let response = stack.run_push(push, &of_group(&again, id)).await;
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
    skip_on!(Emulator::LocalStack, LOCALSTACK_RELEASES_THE_GROUP);
    let s = Scenario::new("acme-prod", "tok-order").await;
    s.receiver.queue([Reply::status(503).with_retry_after("1")]);
    let push = s.push(|settings| settings.retry_window = Duration::from_secs(4));
    let batches = s.batches(5, 0..4);

    let delivered = || s.receiver.count() > batches.len();
    let received = s
        .deliver(&push, &batches, Duration::from_secs(30), delivered)
        .await;
    assert!(
        s.stack.receive_deliveries(1).await.is_empty(),
        "queue drained"
    );

    // The first batch failed once; nothing overtook it; each delivered once.
    assert_eq!(s.posted(), head_retried_once(&batches));
    // Later batches were handed back, not attempted, while the first waited.
    assert!(received.iter().any(|m| receive_count(m) >= 2));

    // One failure is not sustained failure (issue 11: hysteresis): the
    // customer is not told "failing" and then "recovered" for one 503.
    let kinds = s.notification_kinds().await;
    assert!(kinds.is_empty(), "{kinds:?}");
}

#[tokio::test]
async fn a_401_fetches_the_key_again_and_the_retry_carries_the_new_key() {
    let s = Scenario::new("acme-prod", "key-one").await;
    let push = s.push(|_| {});

    // The first batch caches key-one.
    let wait = Duration::from_secs(10);
    s.stack
        .deliver_batch(&push, &s.batch(1, 1), &s.receiver, 1, wait)
        .await;

    // Staff rotate the key; the endpoint refuses the cached one once.
    s.rotate_key("key-two").await;
    s.receiver.queue([Reply::status(401)]);
    let b = s.batch(1, 2);
    let response = s.stack.run_push(&push, &s.received(&b).await).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "delivered in one attempt: {response:?}"
    );

    assert_eq!(
        s.receiver.headers("authorization"),
        ["Bearer key-one", "Bearer key-one", "Bearer key-two"]
    );
    let item = ledger_item(&s.stack, "acme-prod", &b.message_id.to_string())
        .await
        .unwrap();
    assert_eq!(
        text(&item, "Attempts"),
        "1",
        "the refetch is part of the attempt"
    );
}

/// Issue 11: an expired batch is parked in DynamoDB (not in a queue), with
/// its reason, attempts and last error; the dead-letter queue holds only what
/// cannot be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_never_recovers_expires_into_the_parked_store() {
    let s = Scenario::new("acme-prod", "tok-never").await;
    s.receiver
        .set_default(Reply::status(503).with_body("echo tok-never"));
    let push = s.push(|settings| settings.retry_window = Duration::from_secs(10));
    let b = s.batch(2, 3);
    s.stack.enqueue(&b).await;

    let started = Instant::now();
    let kept = s
        .deliver_until_parked(&push, 1, Duration::from_secs(40))
        .await;
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "expired before the window"
    );
    assert_eq!(kept.len(), 1);
    let p = &kept[0];
    assert_eq!(p.message_id, b.message_id.to_string());
    assert_eq!(p.reason, "expired");
    assert!(p.attempts >= 3, "{}", p.attempts);
    let last_error = p.last_error.clone().unwrap_or_default();
    assert!(last_error.starts_with("HTTP 503"), "{last_error}");
    assert!(
        !last_error.contains("tok-never"),
        "token in the parked item"
    );
    assert_eq!(p.transaction_keys, keys(&b));
    assert_eq!(
        s.stack.parked_store().body(p).await.unwrap(),
        serde_json::to_string(&b).unwrap(),
        "the batch itself is kept for replay"
    );
    assert_eq!(s.receiver.count() as u32, p.attempts, "every POST counted");
    assert!(
        s.stack.receive_deliveries(2).await.is_empty(),
        "nothing left to retry"
    );
    assert!(dead_letters(&s.stack).await.is_empty(), "not in the DLQ");

    let notifications = notifications(&s.inbox).await;
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
        assert!(body.contains(RECIPIENT), "{body}");
        assert!(
            !body.contains("tok-never"),
            "token in a notification: {body}"
        );
    }
}

#[tokio::test]
async fn a_batch_already_in_the_ledger_is_not_posted_again() {
    let s = Scenario::new("acme-prod", "tok-ledger").await;
    let push = s.push(|_| {});

    // Delivered by an invocation that crashed before acknowledging.
    let crashed = s.batch(2, 1);
    s.stack.record_batch_delivered(&crashed).await;
    let response = s.stack.run_push(&push, &s.received(&crashed).await).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(s.receiver.count(), 0, "not posted again");

    // And a batch this function delivered, handed to it a second time (SQS
    // redelivers when the acknowledgement was lost).
    let event = s.stack.sqs_event(&s.received(&s.batch(2, 2)).await);
    assert!(
        push.handle(event.clone())
            .await
            .batch_item_failures
            .is_empty()
    );
    assert!(push.handle(event).await.batch_item_failures.is_empty());
    assert_eq!(s.receiver.count(), 1, "posted once");
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
        let (path, key) = (format!("/{id}"), format!("key-{id}"));
        add_endpoint(&stack, &receiver, id, &path, &key, extra.clone()).await;
        stack.enqueue(&transactions_batch(CUSTOMER, id, 1, 1)).await;
    }
    let push = stack.push(&receiver, |_| {});
    stack
        .deliver_until(&push, Duration::from_secs(20), || {
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
    stack
        .enqueue_raw("acme-prod", "garbage-1", "{not json")
        .await;
    let messages = stack.receive_deliveries(5).await;
    let response = stack.run_push(&push, &messages).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "acknowledged, no poison loop"
    );
    let dead = dead_letters(&stack).await;
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

// ---------------------------------------------------------------- issue 11: incidents

/// Issue 11, first promise: a dead endpoint's whole backlog expires with its
/// incident (window + a bound, not one batch per window), nothing
/// disappears, one "failing" and one "expired" notice; later batches are
/// parked at once; enabling the endpoint and replaying delivers every batch
/// once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_expires_its_whole_backlog_and_a_replay_delivers_it_once_in_order() {
    skip_on!(Emulator::LocalStack, LOCALSTACK_RELEASES_THE_GROUP);
    const WINDOW: u64 = 60;
    // docs/delivery.md: the backlog is parked within a minute of the
    // window's end (a few receives of 10 batches each).
    const BOUND: u64 = 60;
    let s = Scenario::new("acme-dead", "tok-dead").await;
    s.receiver.set_default(Reply::status(503));
    let push = s.push(|settings| {
        settings.retry_window = Duration::from_secs(WINDOW);
        // No probe during the test: every POST is accounted for below.
        settings.probe_interval = Duration::from_secs(3600);
    });
    let batches = s.batches(3, 0..24);
    let ids = message_ids(&batches);
    s.enqueue(&batches).await;

    let parking = Duration::from_secs(WINDOW + BOUND + 10);
    s.deliver_until_parked(&push, batches.len(), parking).await;
    let posted = s.receiver.requests();
    let expired_after = posted[0].at.elapsed();
    println!(
        "{} batches parked {expired_after:?} after the first attempt (window {WINDOW} s), {} POSTs",
        batches.len(),
        posted.len()
    );
    assert!(
        expired_after >= Duration::from_secs(WINDOW - 1),
        "expired after {expired_after:?}, before the window"
    );
    assert!(
        expired_after <= Duration::from_secs(WINDOW + BOUND),
        "all parked only after {expired_after:?}"
    );
    // Only the head was attempted (its followers fail with it), on the
    // schedule: 2 s, 5 s, 15 s, 30 s, then the window's end.
    assert!(
        posted.iter().all(|r| r.message_id() == ids[0]),
        "only the head is attempted"
    );
    assert!((4..=8).contains(&posted.len()), "{} POSTs", posted.len());
    assert_eq!(
        s.parked_ids().await,
        ids,
        "none disappeared; kept in queue order"
    );
    assert!(
        s.stack.receive_deliveries(1).await.is_empty(),
        "queue empty"
    );
    assert!(dead_letters(&s.stack).await.is_empty());

    // While expired, new batches are parked at once, without a POST.
    let late = s.batches(3, 24..27);
    s.enqueue(&late).await;
    let posts_before = s.receiver.count();
    let total = batches.len() + late.len();
    s.deliver_until_parked(&push, total, Duration::from_secs(20))
        .await;
    assert_eq!(
        s.receiver.count(),
        posts_before,
        "parked without an attempt"
    );
    assert_eq!(
        s.notification_kinds().await,
        ["failing", "expired"],
        "one of each per incident"
    );

    // The endpoint works again: operations enable it and replay.
    s.receiver.set_default(Reply::ok());
    assert!(
        s.stack
            .health_store()
            .resume(&ids::endpoint("acme-dead"), &ids::customer(CUSTOMER))
            .await
            .unwrap(),
        "it was expired"
    );
    assert_eq!(s.replay().await, total);
    assert!(s.parked().await.is_empty());
    s.stack
        .deliver_until(&push, Duration::from_secs(60), || {
            s.receiver.count() >= posts_before + total
        })
        .await;
    let delivered = posted_ids(&s.receiver.requests()[posts_before..]);
    let expected = [ids, message_ids(&late)].concat();
    assert_eq!(delivered, expected, "every batch once, in order");
    assert!(s.stack.receive_deliveries(2).await.is_empty());
    assert_eq!(s.receiver.count(), posts_before + total, "no repeat");
    assert_eq!(s.notification_kinds().await, ["recovered"]);
    assert_eq!(s.health().await.state, HealthState::Healthy);
}

/// Issue 11, second promise: DynamoDB throttled for longer than the old
/// code survived (compressed: it deferred every 1 s, production 30 s, and
/// SQS moves a message after `MAX_RECEIVES` receives, production 1000) while
/// an incident's window runs: no customer notice, nothing expired or moved,
/// everything delivered once afterwards, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_throttled_for_longer_than_the_window_is_never_charged_to_the_customer() {
    skip_on!(Emulator::LocalStack, LOCALSTACK_RELEASES_THE_GROUP);
    const MAX_RECEIVES: u32 = 10;
    let throttle = Duration::from_secs(30);
    let s = Scenario::new("acme-prod", "tok-t").await;
    s.dead_letter_after(MAX_RECEIVES).await;
    let proxy = platformsync_tests::fault_proxy().await;
    let push = s
        .push_through(&proxy, |settings| {
            settings.retry_window = Duration::from_secs(10);
            settings.lateness_tolerance = Duration::from_secs(1);
            settings.our_backoff_base = Duration::from_secs(1);
            settings.our_backoff_cap = Duration::from_secs(8);
            settings.calls.operation_timeout = Duration::from_secs(3);
            settings.calls.attempt_timeout = Duration::from_secs(1);
        })
        .await;
    let batches = s.batches(2, 0..3);
    s.enqueue(&batches).await;
    // The endpoint fails once: its incident's 10 s window starts...
    s.receiver.queue([Reply::status(503)]);
    let first = s.stack.receive_deliveries(5).await;
    s.stack.run_push(&push, &first).await;
    assert_eq!(s.receiver.count(), 1);
    // ... and our DynamoDB is throttled for three windows.
    proxy.add_rule(Rule::new("dynamodb", "*", Fault::Throttle).for_duration(throttle));
    let throttled_at = Instant::now();
    let received = s
        .stack
        .deliver_until(&push, Duration::from_secs(120), || {
            s.receiver.count() > batches.len()
        })
        .await;
    assert!(throttled_at.elapsed() >= throttle - Duration::from_secs(1));
    assert!(
        proxy.stats().failed("dynamodb", "BatchGetItem") > 0,
        "throttled"
    );
    assert!(
        received.iter().all(|m| receive_count(m) < MAX_RECEIVES),
        "receives stay below maxReceiveCount"
    );
    assert_eq!(
        s.posted(),
        head_retried_once(&batches),
        "delivered once each, in order"
    );
    assert!(
        s.notification_kinds().await.is_empty(),
        "no customer notice"
    );
    assert!(s.parked().await.is_empty());
    assert!(dead_letters(&s.stack).await.is_empty());
    assert!(s.stack.receive_deliveries(1).await.is_empty());
}

/// Issue 11: an IAM or Secrets Manager failure of ours (AccessDenied, then
/// InternalServiceError) is not the customer's attempt: no POST, no notice,
/// no incident; delivered once it is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_failures_of_ours_are_not_attempts() {
    let s = Scenario::new("acme-prod", "tok-s").await;
    let proxy = platformsync_tests::fault_proxy().await;
    proxy.set_rules(vec![
        Rule::new("secretsmanager", "GetSecretValue", Fault::AccessDenied).times(2),
        Rule::new("secretsmanager", "GetSecretValue", Fault::Internal)
            .for_duration(Duration::from_secs(8)),
    ]);
    let push = s
        .push_through(&proxy, |settings| {
            settings.retry_window = Duration::from_secs(3);
            settings.our_backoff_base = Duration::from_secs(1);
            settings.our_backoff_cap = Duration::from_secs(2);
        })
        .await;
    let b = s.batch(2, 1);
    s.deliver(
        &push,
        std::slice::from_ref(&b),
        Duration::from_secs(40),
        || s.receiver.count() >= 1,
    )
    .await;
    assert!(proxy.stats().failed("secretsmanager", "GetSecretValue") >= 3);
    assert_eq!(s.posted(), [b.message_id.to_string()]);
    let health = s.health().await;
    assert_eq!(health.state, HealthState::Healthy);
    assert!(health.incident_id.is_none(), "never an incident");
    assert!(s.notification_kinds().await.is_empty());
    assert!(s.parked().await.is_empty());
}

/// Issue 11, third promise: every third request fails, for the whole test:
/// at most one "failing" and one "recovered" notice (here: none, the
/// endpoint never fails three times in a row), every batch once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_endpoint_sends_at_most_one_failing_and_one_recovered_notice() {
    skip_on!(Emulator::LocalStack, LOCALSTACK_RELEASES_THE_GROUP);
    let s = Scenario::new("acme-flap", "tok-f").await;
    s.receiver.queue((0..300).map(|i| {
        if i % 3 == 2 {
            Reply::status(502)
        } else {
            Reply::ok()
        }
    }));
    let push = s.push(|settings| settings.retry_window = Duration::from_secs(60));
    let batches = s.batches(2, 0..30);
    let delivered = || (0..s.receiver.count()).filter(|i| i % 3 != 2).count() >= batches.len();
    s.deliver(&push, &batches, Duration::from_secs(120), delivered)
        .await;
    let requests = s.receiver.requests();
    let ok: Vec<String> = requests
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 2)
        .map(|(_, r)| r.message_id())
        .collect();
    assert_eq!(
        ok,
        message_ids(&batches),
        "each batch delivered once, in order"
    );
    let kinds = s.notification_kinds().await;
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert!(
        count("failing") <= 1 && count("recovered") <= 1,
        "{kinds:?}"
    );
    assert_eq!(count("expired"), 0);
}

/// Issue 11, fourth promise: a healthy endpoint next to one that takes 20 s
/// per request, sharing invocations: the healthy one's enqueue-to-receipt
/// p99 stays under 2 s (its batches are deleted as soon as its group is
/// done, not when the slow endpoint's POST ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_endpoint_does_not_hold_up_a_healthy_one() {
    let s = Scenario::new("acme-fast", "tok-h").await;
    let slow = Receiver::start().await;
    add_endpoint(&s.stack, &slow, "acme-slow", "/push", "tok-s", json!({})).await;
    slow.set_default(Reply::ok().after(Duration::from_secs(20)));
    let push = s.push(|settings| {
        // Both receivers' certificates are trusted.
        let both = format!("{}{}", s.receiver.ca_pem(), slow.ca_pem());
        settings.extra_ca_pem = Some(both.into_bytes());
        settings.attempt_timeout = Duration::from_secs(25);
    });
    let healthy = &s.receiver;

    let slow_batches = transactions_batches(CUSTOMER, "acme-slow", 2, 0..2);
    s.enqueue(&slow_batches).await;
    let fast = s.batches(2, 0..20);
    let enqueued = std::sync::Mutex::new(HashMap::new());
    let producer = async {
        for b in &fast {
            s.stack.enqueue(b).await;
            enqueued
                .lock()
                .unwrap()
                .insert(b.message_id.to_string(), Instant::now());
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    };
    let consumers = poll_concurrently(&s.stack, &push, 3, Duration::from_secs(120), || {
        healthy.count() >= fast.len() && slow.count() >= slow_batches.len()
    });
    tokio::join!(producer, consumers);

    let enqueued = enqueued.into_inner().unwrap();
    let mut latencies: Vec<Duration> = healthy
        .requests()
        .iter()
        .map(|r| r.at.saturating_duration_since(enqueued[&r.message_id()]))
        .collect();
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    println!(
        "healthy enqueue-to-receipt: p50 {:?}, p99 {p99:?}",
        latencies[latencies.len() / 2]
    );
    assert!(p99 < Duration::from_secs(2), "p99 {p99:?}: {latencies:?}");
    assert_eq!(s.posted(), message_ids(&fast), "once each, in order");
}

// ---------------------------------------------------------------- issue 18: the endpoint's health drives the delays

/// A success resets the escalation: after 2 s, 5 s, 15 s of a failing run,
/// the next batch's first failure is retried within seconds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_resets_the_escalation() {
    skip_on!(Emulator::LocalStack, LOCALSTACK_RELEASES_THE_GROUP);
    let s = Scenario::new("acme-esc", "tok-e").await;
    s.receiver.queue([
        Reply::status(500),
        Reply::status(500),
        Reply::status(500),
        Reply::ok(),
        Reply::status(500),
        Reply::ok(),
    ]);
    let push = s.push(|settings| settings.retry_window = Duration::from_secs(300));
    let batches = s.batches(1, 0..2);
    s.deliver(&push, &batches, Duration::from_secs(60), || {
        s.receiver.count() >= 6
    })
    .await;
    let r = s.receiver.requests();
    let ids = posted_ids(&r);
    let (a, b) = (
        batches[0].message_id.to_string(),
        batches[1].message_id.to_string(),
    );
    assert_eq!(ids, [&a, &a, &a, &a, &b, &b].map(String::clone));
    let gap = |i: usize| r[i].at - r[i - 1].at;
    // Escalating: ~2 s, ~5 s, ~15 s (+-20 %, whole seconds, polling).
    assert!(gap(1) < Duration::from_secs(5), "{:?}", gap(1));
    assert!(gap(2) >= Duration::from_secs(3), "{:?}", gap(2));
    assert!(gap(3) >= Duration::from_secs(11), "{:?}", gap(3));
    // The 200 reset it: the next failure is retried after ~2 s, not 30 s.
    assert!(gap(5) < Duration::from_secs(5), "{:?}", gap(5));
}

/// Issue 18: a batch refused with 422 while other batches succeed is split;
/// its refused transaction is parked with the endpoint's answer (and a
/// notice); the rest is delivered once and in order; a MessageId never
/// carries different content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_split_and_only_the_refused_transaction_is_parked() {
    skip_on!(Emulator::LocalStack, LOCALSTACK_RELEASES_THE_GROUP);
    let s = Scenario::new("acme-422", "tok-r").await;
    // Batch 1's sixth transaction (seed 1, index 5) is refused.
    let marker = r#""TransactionDateTime":"2026-01-10T08:01:05""#;
    s.receiver.refuse_containing(
        marker,
        Reply::status(422).with_body("Transactions[5]: unknown register"),
    );
    let push = s.push(|settings| settings.retry_window = Duration::from_secs(300));
    let batches = s.batches(8, 0..3);
    let last = batches[2].message_id.to_string();
    s.deliver(&push, &batches, Duration::from_secs(60), || {
        s.receiver.requests().iter().any(|r| r.message_id() == last)
    })
    .await;
    assert!(s.stack.receive_deliveries(1).await.is_empty());

    let requests = s.receiver.requests();
    let refused_body = |r: &Request| {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        body.contains(marker)
    };
    // Delivered (200) requests: every transaction but the refused one, once,
    // in order.
    let delivered = posted_transactions(requests.iter().filter(|r| !refused_body(r)));
    let mut expected: Vec<String> = Vec::new();
    for seed in 0..3 {
        for i in 0..8 {
            if (seed, i) != (1, 5) {
                expected.push(format!("2026-01-10T08:{seed:02}:{i:02}"));
            }
        }
    }
    assert_eq!(delivered, expected);
    // Refused three times whole, then split down to the one transaction.
    let whole = batches[1].message_id.to_string();
    assert_eq!(
        requests.iter().filter(|r| r.message_id() == whole).count(),
        3
    );
    // A MessageId never carries different content.
    assert_one_content_per_message_id(&requests);
    let kept = s.parked().await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    let p = &kept[0];
    assert_eq!(p.reason, "refused");
    assert_eq!(
        p.last_error.as_deref(),
        Some("HTTP 422: Transactions[5]: unknown register")
    );
    assert_eq!(p.parent_message_id.as_deref(), Some(whole.as_str()));
    assert_eq!(p.transaction_keys, [batches[1].items[5].key.clone()]);
    assert_eq!(s.notification_kinds().await, ["refused"]);
}

/// Issue 11: a disabled endpoint's batches are parked, not retried; enabled
/// again and replayed, they are delivered once, in order.
#[tokio::test]
async fn a_disabled_endpoint_is_parked_not_retried_and_replayed_when_enabled() {
    let s = Scenario::new("acme-off", "tok-off").await;
    s.set_enabled(false).await;
    let push = s.push(|settings| settings.config_cache = Duration::ZERO);
    let batches = s.batches(2, 0..3);
    s.enqueue(&batches).await;
    s.deliver_until_parked(&push, batches.len(), Duration::from_secs(20))
        .await;
    assert_eq!(s.receiver.count(), 0, "never attempted");
    let kept = s.parked().await;
    assert!(
        kept.iter()
            .all(|p| p.reason == "disabled" && p.attempts == 0)
    );
    assert!(s.stack.receive_deliveries(1).await.is_empty());

    s.set_enabled(true).await;
    assert_eq!(s.replay().await, batches.len());
    s.stack
        .deliver_until(&push, Duration::from_secs(20), || {
            s.receiver.count() >= batches.len()
        })
        .await;
    assert_eq!(s.posted(), message_ids(&batches));
    assert!(
        s.notification_kinds().await.is_empty(),
        "staff disabled it: no notice"
    );
}

/// Issue 11: while the endpoint is expired, a new batch is parked at once
/// unless a probe is due (one per probe interval); a probe answered 200 ends
/// the incident with "recovered" and delivery resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_endpoint_is_probed_once_per_interval_and_a_successful_probe_recovers_it() {
    let s = Scenario::new("acme-probe", "tok-p").await;
    s.receiver.set_default(Reply::status(503));
    let probe = Duration::from_secs(8);
    let push = s.push(|settings| {
        settings.retry_window = Duration::from_secs(4);
        settings.probe_interval = probe;
    });
    let parking = Duration::from_secs(30);
    let b = s.batches(1, 0..4);
    s.enqueue(&b[..1]).await;
    s.deliver_until_parked(&push, 1, parking).await;
    let expired_at = Instant::now();
    let attempts = s.receiver.count();
    // Expired: the next batch is parked at once, without a probe.
    s.enqueue(&b[1..2]).await;
    s.deliver_until_parked(&push, 2, parking).await;
    assert_eq!(s.receiver.count(), attempts, "no probe before the interval");
    // The endpoint works again; once the interval is over, the next batch is
    // the probe: delivered, and the incident ends.
    s.receiver.set_default(Reply::ok());
    tokio::time::sleep(probe.saturating_sub(expired_at.elapsed())).await;
    s.deliver(&push, &b[2..], Duration::from_secs(20), || {
        s.receiver.count() >= attempts + 2
    })
    .await;
    let posted = posted_ids(&s.receiver.requests()[attempts..]);
    assert_eq!(posted, message_ids(&b[2..]));
    assert_eq!(s.parked_ids().await, message_ids(&b[..2]));
    assert_eq!(
        s.notification_kinds().await,
        ["failing", "expired", "recovered"]
    );
}

// ---------------------------------------------------------------- the given

/// The given of these tests, and what they read back: a fresh deployment
/// with acme's endpoint at a local receiver and an inbox of its
/// notifications ([`Scenario`]), batches queued and delivered through the
/// push function, and the stores, queues and notifications observed.
mod given {
    use std::collections::HashMap;
    use std::ops::Range;
    use std::time::{Duration, Instant};

    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
    use platformsync_aws::parked::Parked;
    use platformsync_domain::batch::BatchMessage;
    use platformsync_domain::endpoint::{CustomerId, EndpointId, EndpointSettings};
    use platformsync_faults::FaultProxy;
    use platformsync_tests::ids;
    use platformsync_tests::inbox::Inbox;
    use platformsync_tests::receiver::{Receiver, Request};
    use platformsync_tests::{Stack, transactions_batch, transactions_batches};
    use serde_json::{Value, json};

    pub const CUSTOMER: &str = "acme";

    /// Where acme is told of failures.
    pub const RECIPIENT: &str = "cash@acme.example";

    /// Why the tests that hold a FIFO group behind its waiting head skip
    /// LocalStack.
    pub const LOCALSTACK_RELEASES_THE_GROUP: &str = "LocalStack releases a FIFO group when a \
        later message of it is handed back with visibility 0 while the head waits for its \
        retry, so later batches overtake the head (docs/local-stack.md, departure 1)";

    /// A fresh deployment with endpoint `endpoint` of acme at the
    /// receiver's `/push`, and an inbox of the notifications acme gets.
    pub struct Scenario {
        pub stack: Stack,
        pub receiver: Receiver,
        pub inbox: Inbox,
        pub endpoint: &'static str,
    }

    impl Scenario {
        /// The endpoint's health as staff read it.
        pub async fn health(&self) -> platformsync_aws::health::EndpointHealth {
            self.stack
                .health_store()
                .get(&ids::endpoint(self.endpoint))
                .await
                .expect("health readable")
        }

        /// The given of most tests: endpoint `endpoint`, its key `key`.
        pub async fn new(endpoint: &'static str, key: &str) -> Scenario {
            let (stack, receiver) =
                Stack::deploy_with_endpoint(CUSTOMER, &[RECIPIENT], endpoint, key).await;
            let topic = stack.reference("NotificationsTopic");
            let name = format!("{}-notifications-inbox", stack.stage);
            let inbox = Inbox::subscribe(&stack.config, &topic, &name, false).await;
            Scenario {
                stack,
                receiver,
                inbox,
                endpoint,
            }
        }

        /// The push function posting to the receiver, `configure` applied
        /// to its settings.
        pub fn push(&self, configure: impl FnOnce(&mut push::Settings)) -> push::Push {
            self.stack.push(&self.receiver, configure)
        }

        /// The push function as [`Scenario::push`], its AWS calls through
        /// `proxy` (the fault layer).
        pub async fn push_through(
            &self,
            proxy: &FaultProxy,
            configure: impl FnOnce(&mut push::Settings),
        ) -> push::Push {
            let sdk = self.stack.through(proxy).await;
            let mut settings = self.stack.push_settings(&self.receiver);
            configure(&mut settings);
            push::Push::new(&sdk, settings).expect("push function builds")
        }

        /// A batch of `transactions` for the endpoint (see
        /// [`transactions_batch`]).
        pub fn batch(&self, transactions: usize, seed: usize) -> BatchMessage {
            transactions_batch(CUSTOMER, self.endpoint, transactions, seed)
        }

        /// A batch of `transactions` for the endpoint per seed, in order.
        pub fn batches(&self, transactions: usize, seeds: Range<usize>) -> Vec<BatchMessage> {
            transactions_batches(CUSTOMER, self.endpoint, transactions, seeds)
        }

        /// Queues `batches`, in order, as the fan-out does.
        pub async fn enqueue(&self, batches: &[BatchMessage]) {
            for b in batches {
                self.stack.enqueue(b).await;
            }
        }

        /// Queues `batch` and receives it, as Lambda's poller hands it over.
        pub async fn received(&self, batch: &BatchMessage) -> Vec<Message> {
            self.stack.enqueue(batch).await;
            let messages = self.stack.receive_deliveries(5).await;
            assert_eq!(messages.len(), 1, "the batch is received");
            messages
        }

        /// Queues `batches` and runs `push` over the queue until `done`;
        /// panics after `timeout`. The messages it handled.
        pub async fn deliver(
            &self,
            push: &push::Push,
            batches: &[BatchMessage],
            timeout: Duration,
            done: impl FnMut() -> bool,
        ) -> Vec<Message> {
            self.enqueue(batches).await;
            self.stack.deliver_until(push, timeout, done).await
        }

        /// The endpoint's parked batches, in its order.
        pub async fn parked(&self) -> Vec<Parked> {
            self.stack
                .parked_store()
                .list(&ids::endpoint(self.endpoint))
                .await
                .expect("parked batches listed")
        }

        /// The `MessageId`s of the endpoint's parked batches, in its order.
        pub async fn parked_ids(&self) -> Vec<String> {
            self.parked()
                .await
                .into_iter()
                .map(|p| p.message_id)
                .collect()
        }

        /// The `MessageId` of every POST the receiver got, in arrival order.
        pub fn posted(&self) -> Vec<String> {
            posted_ids(&self.receiver.requests())
        }

        /// The `kind` of every notification acme got so far, in the order
        /// they were published (drains the inbox).
        pub async fn notification_kinds(&self) -> Vec<String> {
            notifications(&self.inbox)
                .await
                .iter()
                .map(|n| attribute(n, "kind"))
                .collect()
        }

        /// Runs `push` over the queue until `count` batches of the endpoint
        /// are parked in all; panics after `timeout`. The parked batches.
        pub async fn deliver_until_parked(
            &self,
            push: &push::Push,
            count: usize,
            timeout: Duration,
        ) -> Vec<Parked> {
            let until = Instant::now() + timeout;
            loop {
                let parked = self.parked().await;
                if parked.len() >= count {
                    return parked;
                }
                assert!(
                    Instant::now() < until,
                    "{} of {count} batches parked within {timeout:?}",
                    parked.len()
                );
                self.stack.deliver_once(push).await;
            }
        }

        /// Operations replay the endpoint's parked batches; how many.
        pub async fn replay(&self) -> usize {
            self.stack
                .parked_store()
                .replay(
                    &ids::endpoint(self.endpoint),
                    &self.stack.clients.sqs,
                    &self.stack.reference("DeliveryQueue"),
                )
                .await
                .expect("parked batches replayed")
        }

        /// The endpoint's settings as stored.
        pub async fn settings(&self) -> EndpointSettings {
            let customer = CustomerId::parse(CUSTOMER).expect("a valid customer id");
            let endpoint = EndpointId::parse(self.endpoint).expect("a valid endpoint id");
            self.stack
                .config_store()
                .endpoint(&customer, &endpoint)
                .await
                .expect("endpoint read")
                .expect("endpoint stored")
        }

        /// Staff enable or disable the endpoint.
        pub async fn set_enabled(&self, enabled: bool) {
            let mut settings = self.settings().await;
            settings.enabled = enabled;
            self.stack
                .config_store()
                .put_endpoint(&settings)
                .await
                .expect("endpoint stored");
        }

        /// Staff rotate the endpoint's key to `key`.
        pub async fn rotate_key(&self, key: &str) {
            self.stack
                .clients
                .secrets
                .put_secret_value()
                .secret_id(self.settings().await.api_key_secret)
                .secret_string(key)
                .send()
                .await
                .expect("key rotated");
        }

        /// SQS moves a delivery message to the dead-letter queue after
        /// `receives` receives (production: 1000).
        pub async fn dead_letter_after(&self, receives: u32) {
            let stack = &self.stack;
            let policy = json!({
                "deadLetterTargetArn": stack.attribute("DeliveryDeadLetterQueue", "Arn"),
                "maxReceiveCount": receives,
            });
            stack
                .clients
                .sqs
                .set_queue_attributes()
                .queue_url(stack.reference("DeliveryQueue"))
                .attributes(
                    aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
                    policy.to_string(),
                )
                .send()
                .await
                .expect("redrive policy set");
        }
    }

    /// The `MessageId`s of `batches`, in order.
    pub fn message_ids(batches: &[BatchMessage]) -> Vec<String> {
        batches.iter().map(|b| b.message_id.to_string()).collect()
    }

    /// What a receiver gets when the head of `batches` failed once and
    /// nothing overtook it: the head, then every batch once, in order.
    pub fn head_retried_once(batches: &[BatchMessage]) -> Vec<String> {
        let ids = message_ids(batches);
        [&ids[..1], &ids[..]].concat()
    }

    /// The keys of `batch`'s transactions, in order.
    pub fn keys(batch: &BatchMessage) -> Vec<String> {
        batch.items.iter().map(|e| e.key.clone()).collect()
    }

    /// `Metadata.MessageId` of each of `requests`, in order.
    pub fn posted_ids(requests: &[Request]) -> Vec<String> {
        requests.iter().map(Request::message_id).collect()
    }

    /// The `TransactionDateTime` of every transaction `requests` carried,
    /// in the order they were posted.
    pub fn posted_transactions<'a>(requests: impl IntoIterator<Item = &'a Request>) -> Vec<String> {
        requests
            .into_iter()
            .flat_map(|r| {
                r.json()["Transactions"]
                    .as_array()
                    .expect("a push payload has Transactions")
                    .iter()
                    .map(|t| {
                        let time = t["TransactionDateTime"].as_str();
                        time.expect("a transaction has a TransactionDateTime")
                            .to_owned()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Fails when one `MessageId` carried different transactions in two
    /// of `requests` (a retry must repeat its batch exactly).
    pub fn assert_one_content_per_message_id(requests: &[Request]) {
        let mut bodies: HashMap<String, Value> = HashMap::new();
        for r in requests {
            let body = r.json();
            let previous = bodies.entry(r.message_id()).or_insert_with(|| body.clone());
            assert_eq!(previous["Transactions"], body["Transactions"]);
        }
    }

    /// Endpoint `id` of acme at `receiver`'s `path`, its `key` in Secrets
    /// Manager, with `extra` settings: for tests of several endpoints.
    pub async fn add_endpoint(
        stack: &Stack,
        receiver: &Receiver,
        id: &str,
        path: &str,
        key: &str,
        extra: Value,
    ) -> EndpointSettings {
        stack
            .add_customer(CUSTOMER, "Acme Retail", &[RECIPIENT])
            .await;
        let url = receiver.url(path);
        stack.add_endpoint(CUSTOMER, id, &url, key, extra).await
    }

    /// Everything in the dead-letter queue, with its attributes (received,
    /// not deleted).
    pub async fn dead_letters(stack: &Stack) -> Vec<Message> {
        stack
            .clients
            .sqs
            .receive_message()
            .queue_url(stack.reference("DeliveryDeadLetterQueue"))
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(2)
            .send()
            .await
            .expect("receive from the dead-letter queue")
            .messages
            .unwrap_or_default()
    }

    pub fn receive_count(m: &Message) -> u32 {
        m.attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap_or_default()
    }

    /// A delivery message's group: its endpoint.
    pub fn group_of(m: &Message) -> String {
        m.attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .cloned()
            .unwrap_or_default()
    }

    /// The SNS envelopes delivered so far, in the order they were published: the
    /// inbox is a standard queue, which does not keep order (LocalStack's does
    /// not, moto's happens to).
    pub async fn notifications(inbox: &Inbox) -> Vec<Value> {
        let messages = inbox.drain().await;
        let bodies = messages.iter().map(|m| m.body().unwrap_or_default());
        let mut envelopes: Vec<Value> = bodies
            .map(|b| serde_json::from_str(b).expect("an SNS envelope"))
            .collect();
        // RFC 3339 UTC with milliseconds: text order is time order.
        envelopes.sort_by(|a, b| {
            a["Timestamp"]
                .as_str()
                .unwrap_or_default()
                .cmp(b["Timestamp"].as_str().unwrap_or_default())
        });
        envelopes
    }

    pub fn attribute(envelope: &Value, name: &str) -> String {
        envelope["MessageAttributes"][name]["Value"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The delivery ledger's item `batch_id` of `endpoint`, read consistently.
    pub async fn ledger_item(
        stack: &Stack,
        endpoint: &str,
        batch_id: &str,
    ) -> Option<HashMap<String, AttributeValue>> {
        let key = HashMap::from([
            ("EndpointId".to_owned(), AttributeValue::S(endpoint.into())),
            ("BatchId".to_owned(), AttributeValue::S(batch_id.into())),
        ]);
        stack
            .clients
            .dynamodb
            .get_item()
            .table_name(stack.reference("DeliveryLedgerTable"))
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .expect("ledger item read")
            .item
    }

    /// A string or number attribute of `item`, as text.
    pub fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
        match item.get(name) {
            Some(AttributeValue::S(s)) => s.clone(),
            Some(AttributeValue::N(n)) => n.clone(),
            other => panic!("{name}: {other:?}"),
        }
    }

    /// Runs `pollers` receive-and-handle loops concurrently (as Lambda's
    /// concurrent invocations do) until `done` holds; panics after `timeout`.
    pub async fn poll_concurrently(
        stack: &Stack,
        push: &push::Push,
        pollers: usize,
        timeout: Duration,
        done: impl Fn() -> bool + Sync,
    ) {
        let until = Instant::now() + timeout;
        let done = &done;
        // Short polls: moto does not lock a message group against concurrent
        // long polls (SQS does), which would hand one group to two pollers.
        let one = || async move {
            while !done() {
                assert!(Instant::now() < until, "not done within {timeout:?}");
                let messages = stack.receive_deliveries(0).await;
                if messages.is_empty() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                } else {
                    stack.run_push(push, &messages).await;
                }
            }
        };
        futures_util::future::join_all((0..pollers).map(|_| one())).await;
    }
}
