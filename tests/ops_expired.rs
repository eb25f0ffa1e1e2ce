//! Issue 13, over the wire against the local stack: `endpoint disable|enable`,
//! `expired list|show|replay` and `endpoint rotate-key`, run in-process
//! through the CLI, with the push function receiving from the real delivery
//! queue and posting to a local HTTPS receiver that counts every POST.

use std::time::{Duration, Instant};

use platformsync_aws::config_table::ConfigStore;
use platformsync_aws::parked::ParkedStore;
use platformsync_cli::{Cli, Io};
use platformsync_domain::batch::{BATCH_MESSAGE_VERSION, BatchEntry, BatchMessage};
use platformsync_domain::endpoint::{Customer, CustomerId, EndpointId, EndpointSettings};
use platformsync_domain::types::MessageKind;
use platformsync_tests::Stack;
use platformsync_tests::receiver::{Receiver, Request};
use serde_json::value::RawValue;
use serde_json::{Value, json};

const CUSTOMER: &str = "acme";

struct Outcome {
    out: String,
    err: String,
    result: Result<(), String>,
}

impl Outcome {
    fn ok(self) -> String {
        if let Err(e) = &self.result {
            panic!(
                "command failed: {e}\nstdout: {}\nstderr: {}",
                self.out, self.err
            );
        }
        self.out
    }
    fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
    fn error(self) -> String {
        match self.result {
            Ok(()) => panic!("command succeeded: {}", self.out),
            Err(e) => e,
        }
    }
}

/// `platformsync <args>` against `stack`, every resource named explicitly.
async fn cli(stack: &Stack, args: &[&str], stdin: &str) -> Outcome {
    let mut argv: Vec<String> = vec![
        "platformsync".into(),
        "--stage".into(),
        stack.stage.clone(),
        "--config-table".into(),
        stack.reference("ConfigTable"),
        "--delivery-ledger-table".into(),
        stack.reference("DeliveryLedgerTable"),
        "--transactions-table".into(),
        stack.reference("TransactionsTable"),
        "--delivery-queue-url".into(),
        stack.reference("DeliveryQueue"),
        "--dead-letter-queue-url".into(),
        stack.reference("DeliveryDeadLetterQueue"),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let parsed = match Cli::from_args(&argv) {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                out: String::new(),
                err: String::new(),
                result: Err(e.to_string()),
            };
        }
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = stdin.as_bytes();
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        stdin: &mut input,
        interactive: false,
    };
    let result = platformsync_cli::run(parsed, &mut io)
        .await
        .map_err(|e| format!("{e:#}"));
    Outcome {
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
        result,
    }
}

fn config(stack: &Stack) -> ConfigStore {
    ConfigStore::new(
        aws_sdk_dynamodb::Client::new(&stack.config),
        stack.reference("ConfigTable"),
    )
}

fn parked(stack: &Stack) -> ParkedStore {
    ParkedStore::new(
        aws_sdk_dynamodb::Client::new(&stack.config),
        stack.reference("DeliveryLedgerTable"),
    )
}

/// An endpoint of `acme` at `receiver`, its key in Secrets Manager.
async fn endpoint(stack: &Stack, receiver: &Receiver, id: &str, key: &str) -> EndpointSettings {
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
    let settings: EndpointSettings = serde_json::from_value(json!({
        "EndpointId": id,
        "CustomerId": CUSTOMER,
        "Url": receiver.url("/push"),
        "ApiKeySecret": secret_name,
    }))
    .unwrap();
    let store = config(stack);
    store
        .put_customer(&Customer {
            customer_id: CustomerId::parse(CUSTOMER).unwrap(),
            name: "Acme Retail".into(),
            notification_recipients: vec![],
        })
        .await
        .unwrap();
    store.put_endpoint(&settings).await.unwrap();
    settings
}

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
    stack
        .clients
        .sqs
        .send_message()
        .queue_url(stack.reference("DeliveryQueue"))
        .message_group_id(batch.endpoint_id.as_str())
        .message_deduplication_id(batch.message_id.to_string())
        .message_body(serde_json::to_string(batch).unwrap())
        .send()
        .await
        .expect("enqueued");
}

/// Receives and runs push until `done` holds (panics after `timeout`).
async fn drive(stack: &Stack, push: &push::Push, timeout: Duration, done: impl Fn() -> bool) {
    let until = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < until, "not done within {timeout:?}");
        let messages = stack.receive_deliveries(1).await;
        if !messages.is_empty() {
            stack.run_push(push, &messages).await;
        }
    }
}

/// Disabling keeps the backlog (parked, never posted); `expired list|show`
/// show it; a replay to the disabled endpoint is refused; enabling replays
/// it: every batch delivered once, in order, under its original MessageId.
#[tokio::test]
async fn disable_keeps_the_backlog_and_enable_delivers_it_once_in_order() {
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    endpoint(&stack, &receiver, "acme-ops", "tok-1").await;
    let push = stack.push(&receiver, |s| s.config_cache = Duration::ZERO);

    let out = cli(
        &stack,
        &["--json", "endpoint", "disable", "--endpoint", "acme-ops"],
        "",
    )
    .await
    .json();
    assert_eq!(out["Enabled"], false);
    assert_eq!(out["WasEnabled"], true);

    let batches: Vec<BatchMessage> = (0..3).map(|i| batch("acme-ops", 2, i)).collect();
    for b in &batches {
        enqueue(&stack, b).await;
    }
    let store = parked(&stack);
    let until = Instant::now() + Duration::from_secs(20);
    while store.list("acme-ops").await.unwrap().len() < batches.len() {
        assert!(Instant::now() < until, "not parked");
        let messages = stack.receive_deliveries(1).await;
        if !messages.is_empty() {
            stack.run_push(&push, &messages).await;
        }
    }
    assert_eq!(
        receiver.count(),
        0,
        "a disabled endpoint is never posted to"
    );

    let ids: Vec<String> = batches.iter().map(|b| b.message_id.to_string()).collect();
    let listed = cli(&stack, &["--json", "expired", "list"], "").await.json();
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
    let table = cli(&stack, &["expired", "list", "--endpoint", "acme-ops"], "")
        .await
        .ok();
    assert!(
        table.contains("ENDPOINT") && table.contains(&ids[0]),
        "{table}"
    );

    let shown = cli(
        &stack,
        &[
            "--json",
            "expired",
            "show",
            "--endpoint",
            "acme-ops",
            "--id",
            &ids[1],
        ],
        "",
    )
    .await
    .json();
    let keys: Vec<String> = batches[1].items.iter().map(|e| e.key.clone()).collect();
    assert_eq!(shown["TransactionKeys"], json!(keys));

    // Replaying to a disabled endpoint would only park again: refused.
    let refused = cli(&stack, &["expired", "replay", "--endpoint", "acme-ops"], "")
        .await
        .error();
    assert!(refused.contains("disabled"), "{refused}");
    let dry = cli(
        &stack,
        &[
            "--json",
            "endpoint",
            "enable",
            "--endpoint",
            "acme-ops",
            "--dry-run",
        ],
        "",
    )
    .await
    .json();
    assert_eq!(dry["WouldReplay"], json!(ids));
    assert_eq!(
        store.list("acme-ops").await.unwrap().len(),
        3,
        "dry run sends nothing"
    );

    // Push runs while the enable replays: the enable waits for the replayed
    // batches to be handled before it ends the endpoint's resuming.
    let done = std::sync::atomic::AtomicBool::new(false);
    let enable = async {
        let out = cli(
            &stack,
            &[
                "--json",
                "endpoint",
                "enable",
                "--endpoint",
                "acme-ops",
                "--settle",
                "0",
            ],
            "",
        )
        .await
        .json();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        out
    };
    let pushing = drive(&stack, &push, Duration::from_secs(60), || {
        receiver.count() >= 3 && done.load(std::sync::atomic::Ordering::SeqCst)
    });
    let (enabled, ()) = tokio::join!(enable, pushing);
    assert_eq!(enabled["Replayed"], json!(ids));
    assert_eq!(enabled["Resuming"], false);
    assert!(
        store.list("acme-ops").await.unwrap().is_empty(),
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
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    endpoint(&stack, &receiver, "acme-rot", "old-key-1").await;
    let push = stack.push(&receiver, |s| s.config_cache = Duration::ZERO);
    cli(
        &stack,
        &["endpoint", "disable", "--endpoint", "acme-rot"],
        "",
    )
    .await
    .ok();
    let batches: Vec<BatchMessage> = (0..3).map(|i| batch("acme-rot", 1, 10 + i)).collect();
    for b in &batches {
        enqueue(&stack, b).await;
    }
    let store = parked(&stack);
    let until = Instant::now() + Duration::from_secs(20);
    while store.list("acme-rot").await.unwrap().len() < batches.len() {
        assert!(Instant::now() < until, "not parked");
        let messages = stack.receive_deliveries(1).await;
        if !messages.is_empty() {
            stack.run_push(&push, &messages).await;
        }
    }
    let ids: Vec<String> = batches.iter().map(|b| b.message_id.to_string()).collect();
    let err = cli(
        &stack,
        &[
            "expired",
            "replay",
            "--endpoint",
            "acme-rot",
            "--id",
            &ids[1],
        ],
        "",
    )
    .await
    .error();
    assert!(err.contains("overtake"), "{err}");

    // Enabled by settings only (no replay), then `expired replay`.
    let mut settings = config(&stack)
        .endpoint(
            &CustomerId::parse(CUSTOMER).unwrap(),
            &EndpointId::parse("acme-rot").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    settings.enabled = true;
    config(&stack).put_endpoint(&settings).await.unwrap();

    let rotated = cli(
        &stack,
        &["--json", "endpoint", "rotate-key", "--endpoint", "acme-rot"],
        "new-key-2\n",
    )
    .await;
    let text = format!("{}{}", rotated.out, rotated.err);
    assert!(
        !text.contains("new-key-2") && !text.contains("old-key-1"),
        "{text}"
    );
    rotated.ok();

    let dry = cli(
        &stack,
        &[
            "--json",
            "expired",
            "replay",
            "--endpoint",
            "acme-rot",
            "--dry-run",
        ],
        "",
    )
    .await
    .json();
    assert_eq!(dry[0]["Queued"], json!(ids));
    assert_eq!(store.list("acme-rot").await.unwrap().len(), 3);
    let done = cli(&stack, &["--json", "expired", "replay", "--all"], "")
        .await
        .json();
    assert_eq!(done[0]["Queued"], json!(ids));
    assert!(store.list("acme-rot").await.unwrap().is_empty());

    drive(&stack, &push, Duration::from_secs(30), || {
        receiver.count() >= 3
    })
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
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    endpoint(&stack, &receiver, "acme-key", "key-one").await;
    let push = stack.push(&receiver, |_| {});
    enqueue(&stack, &batch("acme-key", 1, 30)).await;
    drive(&stack, &push, Duration::from_secs(20), || {
        receiver.count() == 1
    })
    .await;

    let rotated = cli(
        &stack,
        &["endpoint", "rotate-key", "--endpoint", "acme-key"],
        "key-two\n",
    )
    .await;
    let text = format!("{}{}", rotated.out, rotated.err);
    assert!(
        !text.contains("key-one") && !text.contains("key-two"),
        "{text}"
    );
    rotated.ok();

    receiver.queue([platformsync_tests::receiver::Reply::status(401)]);
    enqueue(&stack, &batch("acme-key", 1, 31)).await;
    drive(&stack, &push, Duration::from_secs(20), || {
        receiver.count() == 3
    })
    .await;
    let auth: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_owned())
        .collect();
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

    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    endpoint(&stack, &receiver, "acme-live", "tok-1").await;
    let push = stack.push(&receiver, |s| s.config_cache = Duration::ZERO);
    cli(
        &stack,
        &["--json", "endpoint", "disable", "--endpoint", "acme-live"],
        "",
    )
    .await
    .json();

    let backlog: Vec<BatchMessage> = (0..4).map(|i| batch("acme-live", 3, i)).collect();
    let live: Vec<BatchMessage> = (4..16).map(|i| batch("acme-live", 3, i)).collect();
    for b in &backlog {
        enqueue(&stack, b).await;
    }
    let store = parked(&stack);
    let until = Instant::now() + Duration::from_secs(30);
    while store.list("acme-live").await.unwrap().len() < backlog.len() {
        assert!(Instant::now() < until, "backlog not parked");
        let messages = stack.receive_deliveries(1).await;
        if !messages.is_empty() {
            stack.run_push(&push, &messages).await;
        }
    }
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
        let out = cli(
            &stack,
            &[
                "--json",
                "endpoint",
                "enable",
                "--endpoint",
                "acme-live",
                "--settle",
                "0",
            ],
            "",
        )
        .await
        .json();
        enabled_done.store(true, Ordering::SeqCst);
        out
    };
    let traffic = async {
        for b in &live {
            enqueue(&stack, b).await;
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
            let messages = stack.receive_deliveries(1).await;
            if !messages.is_empty() {
                stack.run_push(&push, &messages).await;
            }
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
    let late = stack.receive_deliveries(1).await;
    if !late.is_empty() {
        stack.run_push(&push, &late).await;
    }
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
    assert!(store.list("acme-live").await.unwrap().is_empty());
    let health = platformsync_aws::health::HealthStore::new(
        aws_sdk_dynamodb::Client::new(&stack.config),
        stack.reference("ConfigTable"),
    );
    let h = health.load("acme-live").await.unwrap();
    assert!(!h.resuming, "enabled, not resuming");
    assert!(
        h.parked_seq > 0,
        "push parked behind the backlog while resuming"
    );
}
