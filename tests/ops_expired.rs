//! Issue 13, over the wire against the local stack: `endpoint disable|enable`,
//! `expired list|show|replay` and `endpoint rotate-key`, run in-process
//! through the CLI, with the push function receiving from the real delivery
//! queue and posting to a local HTTPS receiver that counts every POST.

use std::time::{Duration, Instant};

use platformsync_domain::endpoint::{CustomerId, EndpointId};
use platformsync_tests::ids;
use platformsync_tests::receiver::{Receiver, Request};
use platformsync_tests::{Stack, cli, transactions_batch, transactions_batches};
use serde_json::{Value, json};

const CUSTOMER: &str = "acme";

/// A fresh deployment with acme's endpoint `endpoint_id` at a local
/// receiver, disabled, and push reading endpoint settings afresh on every
/// invocation.
async fn disabled_endpoint(endpoint_id: &str) -> (Stack, Receiver, push::Push) {
    let (stack, receiver) = Stack::deploy_with_endpoint(CUSTOMER, &[], endpoint_id, "tok-1").await;
    let push = stack.push(&receiver, |s| s.config_cache = Duration::ZERO);
    disable(&stack, endpoint_id).await;
    (stack, receiver, push)
}

/// `endpoint disable` of `endpoint_id`; the command's answer.
async fn disable(stack: &Stack, endpoint_id: &str) -> Value {
    let line = format!("endpoint disable --endpoint {endpoint_id}");
    cli::json(stack, &cli::args(&line)).await
}

/// `rotate`, an `endpoint rotate-key` command line, from `old_key` to
/// `new_key` (given on standard input); neither key is printed.
async fn rotate_key(stack: &Stack, rotate: &str, old_key: &str, new_key: &str) {
    let rotated = cli::run(stack, &cli::args(rotate), &format!("{new_key}\n")).await;
    let text = format!("{}{}", rotated.out, rotated.err);
    assert!(!text.contains(new_key) && !text.contains(old_key), "{text}");
    rotated.ok();
}

/// Runs `endpoint enable` for `endpoint_id` (`--settle 0`: the resuming ends
/// as soon as the replayed batches are handled) while push works the
/// delivery queue, until the enable has ended and `delivered` holds; the
/// enable's answer.
async fn enable_while_pushing(
    stack: &Stack,
    push: &push::Push,
    endpoint_id: &str,
    mut delivered: impl FnMut() -> bool,
) -> serde_json::Value {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    let enable = async {
        let out = cli::json(
            stack,
            &cli::args(&format!(
                "endpoint enable --endpoint {endpoint_id} --settle 0"
            )),
        )
        .await;
        done.store(true, Ordering::SeqCst);
        out
    };
    let pushing = stack.deliver_until(push, Duration::from_secs(60), || {
        delivered() && done.load(Ordering::SeqCst)
    });
    tokio::join!(enable, pushing).0
}

/// Disabling keeps the backlog (parked, never posted); `expired list|show`
/// show it; a replay to the disabled endpoint is refused; enabling replays
/// it: every batch delivered once, in order, under its original MessageId.
#[tokio::test]
async fn disable_keeps_the_backlog_and_enable_delivers_it_once_in_order() {
    let (stack, receiver) = Stack::deploy_with_endpoint(CUSTOMER, &[], "acme-ops", "tok-1").await;
    let push = stack.push(&receiver, |s| s.config_cache = Duration::ZERO);

    let out = disable(&stack, "acme-ops").await;
    assert_eq!(out["Enabled"], false);
    assert_eq!(out["WasEnabled"], true);

    let batches = transactions_batches(CUSTOMER, "acme-ops", 2, 0..3);
    stack.park_backlog(&push, "acme-ops", &batches).await;
    let store = stack.parked_store();
    assert_eq!(
        receiver.count(),
        0,
        "a disabled endpoint is never posted to"
    );

    let ids: Vec<String> = batches.iter().map(|b| b.message_id.to_string()).collect();
    let listed = cli::json(&stack, &["expired", "list"]).await;
    let rows = listed.as_array().unwrap();
    let listed_ids: Vec<&str> = rows
        .iter()
        .map(|r| r["MessageId"].as_str().unwrap())
        .collect();
    assert_eq!(listed_ids, ids, "oldest first");
    for r in rows {
        assert_eq!(r["EndpointId"], "acme-ops");
        assert_eq!(r["Reason"], "disabled");
        assert_eq!(r["Attempts"], 0);
        assert_eq!(r["Transactions"], 2);
        assert!(r["AgeSeconds"].as_i64().unwrap() >= 0);
    }
    let table = cli::ok(&stack, &["expired", "list", "--endpoint", "acme-ops"]).await;
    assert!(
        table.contains("ENDPOINT") && table.contains(&ids[0]),
        "{table}"
    );

    let shown = cli::run(
        &stack,
        &cli::args(&format!(
            "--json expired show --endpoint acme-ops --id {}",
            ids[1]
        )),
        "",
    )
    .await
    .json();
    let keys: Vec<String> = batches[1].items.iter().map(|e| e.key.clone()).collect();
    assert_eq!(shown["TransactionKeys"], json!(keys));

    // Replaying to a disabled endpoint would only park again: refused.
    cli::refused(
        &stack,
        &["expired", "replay", "--endpoint", "acme-ops"],
        "disabled",
    )
    .await;
    let dry = cli::json(
        &stack,
        &["endpoint", "enable", "--endpoint", "acme-ops", "--dry-run"],
    )
    .await;
    assert_eq!(dry["WouldReplay"], json!(ids));
    assert_eq!(
        store.list(&ids::endpoint("acme-ops")).await.unwrap().len(),
        3,
        "dry run sends nothing"
    );

    // Push runs while the enable replays: the enable waits for the replayed
    // batches to be handled before it ends the endpoint's resuming.
    let enabled = enable_while_pushing(&stack, &push, "acme-ops", || receiver.count() >= 3).await;
    assert_eq!(enabled["Replayed"], json!(ids));
    assert_eq!(enabled["Resuming"], false);
    assert!(
        store
            .list(&ids::endpoint("acme-ops"))
            .await
            .unwrap()
            .is_empty(),
        "removed once queued"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(stack.receive_deliveries(1).await.is_empty());
    let posted: Vec<String> = receiver
        .requests()
        .iter()
        .map(Request::message_id)
        .collect();
    assert_eq!(
        posted, ids,
        "each batch once, in order, under its original MessageId"
    );
}

/// `expired replay` in order with original MessageIds, refusing to overtake;
/// `--dry-run` queues nothing; `rotate-key` never prints a key and the next
/// attempt uses the new one.
#[tokio::test]
async fn replay_keeps_order_and_a_rotated_key_is_used_on_the_next_attempt() {
    let (stack, receiver) =
        Stack::deploy_with_endpoint(CUSTOMER, &[], "acme-rot", "old-key-1").await;
    let push = stack.push(&receiver, |s| s.config_cache = Duration::ZERO);
    cli::ok(&stack, &["endpoint", "disable", "--endpoint", "acme-rot"]).await;
    let batches = transactions_batches(CUSTOMER, "acme-rot", 1, 10..13);
    stack.park_backlog(&push, "acme-rot", &batches).await;
    let store = stack.parked_store();
    let ids: Vec<String> = batches.iter().map(|b| b.message_id.to_string()).collect();
    let second = &ids[1];
    let line = format!("expired replay --endpoint acme-rot --id {second}");
    cli::refused(&stack, &cli::args(&line), "overtake").await;

    // Enabled by settings only (no replay), then `expired replay`.
    let mut settings = stack
        .config_store()
        .endpoint(
            &CustomerId::parse(CUSTOMER).unwrap(),
            &EndpointId::parse("acme-rot").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    settings.enabled = true;
    stack.config_store().put_endpoint(&settings).await.unwrap();

    let rotate = "--json endpoint rotate-key --endpoint acme-rot";
    rotate_key(&stack, rotate, "old-key-1", "new-key-2").await;

    let dry = cli::json(
        &stack,
        &["expired", "replay", "--endpoint", "acme-rot", "--dry-run"],
    )
    .await;
    assert_eq!(dry[0]["Queued"], json!(ids));
    assert_eq!(
        store.list(&ids::endpoint("acme-rot")).await.unwrap().len(),
        3
    );
    let done = cli::json(&stack, &["expired", "replay", "--all"]).await;
    assert_eq!(done[0]["Queued"], json!(ids));
    assert!(
        store
            .list(&ids::endpoint("acme-rot"))
            .await
            .unwrap()
            .is_empty()
    );

    stack
        .deliver_until(&push, Duration::from_secs(30), || receiver.count() >= 3)
        .await;
    let requests = receiver.requests();
    let posted: Vec<String> = requests.iter().map(Request::message_id).collect();
    assert_eq!(posted, ids, "in order, original MessageIds, once each");
    for r in &requests {
        let auth = r.header("authorization").unwrap_or_default();
        assert!(auth.contains("new-key-2"), "the rotated key: {auth}");
    }
}

/// A key rotated with the CLI while push has the old one cached: the
/// endpoint refuses the old key once and the same attempt is retried with
/// the new one (within the key cache time without a 401).
#[tokio::test]
async fn a_key_rotated_with_the_cli_is_used_on_the_next_attempt() {
    let (stack, receiver) = Stack::deploy_with_endpoint(CUSTOMER, &[], "acme-key", "key-one").await;
    let push = stack.push(&receiver, |_| {});
    let batch = transactions_batch(CUSTOMER, "acme-key", 1, 30);
    let wait = Duration::from_secs(20);
    stack.deliver_batch(&push, &batch, &receiver, 1, wait).await;

    let rotate = "endpoint rotate-key --endpoint acme-key";
    rotate_key(&stack, rotate, "key-one", "key-two").await;

    receiver.queue([platformsync_tests::receiver::Reply::status(401)]);
    let batch = transactions_batch(CUSTOMER, "acme-key", 1, 31);
    let wait = Duration::from_secs(20);
    stack.deliver_batch(&push, &batch, &receiver, 3, wait).await;
    let auth = receiver.headers("authorization");
    assert_eq!(auth, ["Bearer key-one", "Bearer key-one", "Bearer key-two"]);
}

/// Issue 13: enabling under live traffic keeps order. An endpoint is
/// disabled with a backlog; then, while `endpoint enable` replays it, new
/// batches keep arriving and push keeps running. Every transaction is
/// delivered exactly once (every POST counted; a transaction under two
/// MessageIds fails), every batch under its original MessageId, all in the
/// order they were queued; the endpoint ends enabled, not resuming, with
/// nothing parked.
#[tokio::test]
async fn enable_under_live_traffic_delivers_everything_once_in_order() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let (stack, receiver, push) = disabled_endpoint("acme-live").await;

    let backlog = transactions_batches(CUSTOMER, "acme-live", 3, 0..4);
    let live = transactions_batches(CUSTOMER, "acme-live", 3, 4..16);
    stack.park_backlog(&push, "acme-live", &backlog).await;
    let store = stack.parked_store();
    assert_eq!(receiver.count(), 0);

    let enabled_done = AtomicBool::new(false);
    let traffic_done = AtomicBool::new(false);
    let all: Vec<String> = backlog
        .iter()
        .chain(&live)
        .map(|b| b.message_id.to_string())
        .collect();
    let enable = async {
        // Let the first new batches arrive while the endpoint is disabled.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let out = cli::json(
            &stack,
            &cli::args("endpoint enable --endpoint acme-live --settle 0"),
        )
        .await;
        enabled_done.store(true, Ordering::SeqCst);
        out
    };
    let traffic = async {
        for b in &live {
            stack.enqueue(b).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        traffic_done.store(true, Ordering::SeqCst);
    };
    let pushing = async {
        let until = Instant::now() + Duration::from_secs(240);
        loop {
            let delivered: std::collections::HashSet<String> = receiver
                .requests()
                .iter()
                .map(Request::message_id)
                .collect();
            if enabled_done.load(Ordering::SeqCst)
                && traffic_done.load(Ordering::SeqCst)
                && delivered.len() >= all.len()
            {
                break;
            }
            assert!(Instant::now() < until, "not delivered within 240 s");
            stack.deliver_once(&push).await;
        }
    };
    let (enabled, (), ()) = tokio::join!(enable, traffic, pushing);
    assert_eq!(enabled["Resuming"], false, "{enabled}");
    let replayed = enabled["Replayed"].as_array().unwrap();
    assert!(
        replayed.len() > backlog.len(),
        "new batches were parked behind the backlog and replayed: {enabled}"
    );

    // Nothing more comes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.deliver_once(&push).await;
    let requests = receiver.requests();
    let posted: Vec<String> = requests.iter().map(Request::message_id).collect();
    assert_eq!(
        posted, all,
        "every batch once (every POST counted), in queue order, under its original MessageId"
    );
    let mut seen = std::collections::HashMap::new();
    for r in &requests {
        for t in r.json()["Transactions"].as_array().unwrap() {
            let key = t.to_string();
            if let Some(other) = seen.insert(key, r.message_id()) {
                panic!(
                    "a transaction under two MessageIds: {other} and {}",
                    r.message_id()
                );
            }
        }
    }
    assert_eq!(seen.len(), all.len() * 3);
    assert!(
        store
            .list(&ids::endpoint("acme-live"))
            .await
            .unwrap()
            .is_empty()
    );
    let health = stack.health_store();
    let h = health.load(&ids::endpoint("acme-live")).await.unwrap();
    assert!(!h.resuming, "enabled, not resuming");
    assert!(
        h.parked_seq > 0,
        "push parked behind the backlog while resuming"
    );
}

/// The enable loop replays only the backlog: a part the customer refused
/// stays parked (it is replayed on purpose, with `expired replay`, once the
/// customer has fixed what it refused), and a parked batch the ledger already
/// shows delivered (its parked copy left behind by an earlier replay) is
/// removed, not posted again. The drain then waits for a batch this replay
/// queued, so it cannot end early on old ledger evidence.
#[tokio::test]
async fn enable_replays_only_the_backlog_not_refused_parts_or_delivered_batches() {
    use platformsync_aws::parked::ParkBatch;

    let (stack, receiver, push) = disabled_endpoint("acme-mixed").await;

    let batches = transactions_batches(CUSTOMER, "acme-mixed", 2, 0..3);
    stack.park_backlog(&push, "acme-mixed", &batches).await;
    let store = stack.parked_store();
    // The first batch was delivered before (a replay whose removal failed).
    stack.record_batch_delivered(&batches[0]).await;
    // And a part the customer refused, parked after a split.
    let refused = transactions_batch(CUSTOMER, "acme-mixed", 1, 9);
    let refused_id = refused.message_id.to_string();
    let refused_keys: Vec<String> = refused.items.iter().map(|e| e.key.clone()).collect();
    let parent = batches[2].message_id.to_string();
    store
        .park(&ParkBatch {
            endpoint_id: &ids::endpoint("acme-mixed"),
            customer_id: &ids::customer(CUSTOMER),
            message_id: &refused_id,
            kind: "Transactions",
            created_at: &refused.created_at,
            reason: "refused",
            attempts: 1,
            last_error: Some("HTTP 422"),
            first_attempt_at: None,
            transaction_keys: &refused_keys,
            parent_message_id: Some(&parent),
            body: &serde_json::to_string(&refused).unwrap(),
            parked_at: time::OffsetDateTime::now_utc(),
        })
        .await
        .unwrap();

    let enabled = enable_while_pushing(&stack, &push, "acme-mixed", || true).await;
    let replayed = [
        batches[1].message_id.to_string(),
        batches[2].message_id.to_string(),
    ];
    assert_eq!(enabled["Replayed"], json!(replayed), "{enabled}");
    assert_eq!(enabled["Resuming"], false, "{enabled}");

    // Exactly the two replayed batches were posted, once each, in order.
    let posted: Vec<String> = receiver.requests().iter().map(|r| r.message_id()).collect();
    assert_eq!(posted, replayed);
    let left: Vec<(String, String)> = store
        .list(&ids::endpoint("acme-mixed"))
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.message_id, p.reason))
        .collect();
    assert_eq!(
        left,
        [(refused_id, "refused".to_owned())],
        "the refused part stays parked; the delivered batch's copy is gone"
    );
}
