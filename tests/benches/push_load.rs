//! Load run of the push function against the local stack and a local HTTPS
//! receiver that answers 200.
//!
//! Delivers `EVENTS` SQS events of 10 batches (10 endpoints, one batch each,
//! as Lambda hands a FIFO batch over) of 1,000 transactions through
//! `Push::handle`: the event's ledger look-ups and endpoint states (one call
//! each), render, POST, one ledger write per batch with the delivered POST
//! folded in (the health item only when it changes). In the same run, posts the same bodies with a bare
//! `reqwest` client at the same concurrency (10 POSTs in flight). Prints both
//! rates, their ratio (target >= 0.8) and the process's peak RSS (VmHWM,
//! target <= 40 MB) with the baseline before the push run.
//!
//! Events are built directly (fake receipt handles: a delivered batch needs
//! no queue call), so the run measures the function, not the emulator's
//! ReceiveMessage.
//!
//! Then **the function alone**: this binary starts itself again as a child
//! process that is only the push function, built as Lambda builds it
//! (`Push::from_env`, the template's environment for `PushFunction` resolved
//! against this deployment, plus the local receiver's CA and loopback), and
//! hands it the same events one at a time as the Lambda runtime would (the
//! event's JSON read whole, deserialised, handled, both kept until the
//! answer). The child prints its peak RSS (VmHWM) after init and after the
//! events: the function's own figure, without the receiver or the test
//! data (an upper bound: the child's code is this bench binary, larger than
//! the function's). Run with `make bench-push` or
//! `infra/scripts/with-stack.sh cargo bench -p platformsync-tests --bench push_load`.

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use futures_util::{StreamExt, stream};
use platformsync_domain::batch::{BATCH_MESSAGE_VERSION, BatchEntry, BatchMessage, PlanRef};
use platformsync_domain::endpoint::{CustomerId, EndpointId};
use platformsync_domain::payload::{ApiKey, PayloadItems, RenderInput, render_v1};
use platformsync_domain::types::MessageKind;
use platformsync_tests::Stack;
use platformsync_tests::receiver::{Receiver, Reply};
use serde_json::value::RawValue;

const ENDPOINTS: usize = 10;
const EVENTS: usize = 6;
const PER_BATCH: usize = 1000;

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_default()
}

fn batch(endpoint: usize, event: usize) -> BatchMessage {
    let items: Vec<BatchEntry> = (0..PER_BATCH)
        .map(|i| {
            let time = format!("2026-01-{:02}T{:02}:{:02}:{:02}", 1 + event, i / 3600 % 24, i / 60 % 60, i % 60);
            let payload = format!(
                r#"{{"PickupGroupId":{event},"SerialNumber":"UT{endpoint:05}","RetrievedOn":"2026-01-10T09:00:00.1234567Z","TransactionDateTime":"{time}","UserName":"clerk","TransactionType":"CashIn","Amount":5560.0,"Denominations":[{{"UnitValue":20.0000,"Count":53,"Currency":"USD"}},{{"UnitValue":100.0000,"Count":45,"Currency":"USD"}}],"Register":"REG01"}}"#
            );
            BatchEntry {
                key: BatchEntry::key_of(
                    &format!("UT{endpoint:05}"),
                    &format!("{time}.0000000#sha:{event:08x}{i:024x}"),
                ),
                payload: RawValue::from_string(payload).expect("valid JSON"),
            }
        })
        .collect();
    BatchMessage {
        version: BATCH_MESSAGE_VERSION,
        message_id: uuid::Uuid::new_v4(),
        endpoint_id: EndpointId::parse(&format!("bench-{endpoint}")).expect("id"),
        customer_id: CustomerId::parse("bench").expect("id"),
        kind: MessageKind::Transactions,
        created_at: "2026-01-10T09:00:00Z".into(),
        // As the fan-out makes them: the message's place in its plan, which
        // the ledger stores instead of the keys.
        plan_ref: Some(PlanRef {
            plan: items[0].key.clone(),
            index: u32::try_from(endpoint).expect("small"),
        }),
        items,
    }
}

fn event(event: usize) -> (SqsEvent, Vec<BatchMessage>) {
    let batches: Vec<BatchMessage> = (0..ENDPOINTS).map(|e| batch(e, event)).collect();
    let mut sqs = SqsEvent::default();
    sqs.records = batches
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("bench-{event}-{i}"));
            m.receipt_handle = Some(format!("receipt-{event}-{i}"));
            m.body = Some(serde_json::to_string(b).expect("serialises"));
            m.attributes
                .insert("MessageGroupId".into(), b.endpoint_id.to_string());
            m
        })
        .collect();
    (sqs, batches)
}

/// Set (to a directory of event files) in the child that is only the push
/// function.
const ALONE: &str = "PUSH_LOAD_ALONE";

#[tokio::main]
async fn main() {
    if let Some(dir) = std::env::var_os(ALONE) {
        return push_alone(std::path::Path::new(&dir)).await;
    }
    // The bare loop's reqwest is built without a crypto provider of its own
    // (the workspace's one provider is ring, as in the functions): the same
    // one here, so both sides encrypt alike.
    platformsync_tls::install_default();
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    receiver.set_recording(false);
    stack.add_customer("bench", "Bench", &[]).await;
    for e in 0..ENDPOINTS {
        let (id, key) = (format!("bench-{e}"), format!("bench-key-{e}"));
        let extra = serde_json::json!({});
        stack
            .add_endpoint("bench", &id, &receiver.url("/push"), &key, extra)
            .await;
    }
    let push = stack.push(&receiver, |_| {});

    // Warm-up (connections, caches), not timed.
    let (warm, _) = event(EVENTS + 1);
    assert!(push.handle(warm).await.batch_item_failures.is_empty());
    let baseline_kb = vm_hwm_kb();

    println!(
        "push load: {EVENTS} events x {ENDPOINTS} batches (one per endpoint) x {PER_BATCH} transactions \
         = {} transactions per round, moto server + local HTTPS receiver, {ENDPOINTS} POSTs in flight",
        EVENTS * ENDPOINTS * PER_BATCH
    );
    println!(
        "{:>16} {:>16} {:>16} {:>16} {:>7}",
        "receiver delay", "push tx/s", "HTTP path tx/s", "bare tx/s", "ratio"
    );
    // The push rounds first, so the peak RSS read after them is the push
    // function's (plus the harness), not the comparison loops' buffers.
    let delays = [Duration::ZERO, Duration::from_millis(50)];
    let mut push_rates = Vec::new();
    for delay in delays {
        receiver.set_default(Reply::ok().after(delay));
        push_rates.push(push_round(&push).await);
    }
    let push_hwm_kb = vm_hwm_kb();
    for (delay, push_rate) in delays.into_iter().zip(push_rates) {
        receiver.set_default(Reply::ok().after(delay));
        let http_rate = http_round(&receiver).await;
        let bare_rate = bare_round(&receiver).await;
        println!(
            "{:>16} {:>16.0} {:>16.0} {:>16.0} {:>7.2}",
            format!("{} ms", delay.as_millis()),
            push_rate,
            http_rate,
            bare_rate,
            push_rate / bare_rate
        );
    }
    println!(
        "push tx/s: Push::handle end to end (ledger lookup, render, POST, ledger record + health update); \
         HTTP path: render + EndpointClient::post only; ratio = push / bare (target >= 0.8)"
    );
    println!(
        "peak RSS (VmHWM): {:.1} MB after the push rounds, whole bench process incl. receiver and test data \
         (after set-up and warm-up: {:.1} MB; after the comparison loops: {:.1} MB; target <= 40 MB)",
        push_hwm_kb as f64 / 1024.0,
        baseline_kb as f64 / 1024.0,
        vm_hwm_kb() as f64 / 1024.0
    );
    receiver.set_default(Reply::ok());
    let (init_kb, peak_kb) = alone_round(&stack, &receiver).await;
    println!(
        "the push function alone (its own process, Push::from_env, {EVENTS} events of {ENDPOINTS} x {PER_BATCH}): \
         peak RSS {:.1} MB after init, {:.1} MB after the events (target <= 40 MB)",
        init_kb as f64 / 1024.0,
        peak_kb as f64 / 1024.0
    );
    println!("receiver requests: {}", receiver.count());
    let (items, bytes, units, with_keys) = ledger_writes(&stack).await;
    let transactions = (2 * EVENTS + 1) * ENDPOINTS * PER_BATCH;
    println!(
        "ledger: {items} delivered-batch items ({with_keys} with TransactionKeys), {:.1} KB, \
         {units} write units = {:.4} write units per transaction ({transactions} transactions)",
        bytes as f64 / 1024.0,
        units as f64 / transactions as f64
    );
}

/// The ledger's delivered-batch items: count, total size, the write units
/// their puts cost (one per started KB per item, as DynamoDB bills a put)
/// and how many carry the keys themselves.
async fn ledger_writes(stack: &Stack) -> (usize, usize, usize, usize) {
    let items: Vec<_> = stack
        .clients
        .dynamodb
        .scan()
        .table_name(stack.reference("DeliveryLedgerTable"))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("scan ledger");
    let (bytes, units) = platformsync_tests::item_size::bytes_and_write_units(&items);
    let with_keys = items
        .iter()
        .filter(|i| i.contains_key("TransactionKeys"))
        .count();
    (items.len(), bytes, units, with_keys)
}

/// Push::handle over EVENTS events; transactions per second.
async fn push_round(push: &push::Push) -> f64 {
    let mut elapsed = Duration::ZERO;
    for n in 0..EVENTS {
        let (sqs, batches) = event(n);
        drop(batches);
        let started = Instant::now();
        let response = push.handle(sqs).await;
        elapsed += started.elapsed();
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    (EVENTS * ENDPOINTS * PER_BATCH) as f64 / elapsed.as_secs_f64()
}

/// Runs the events through a child process that is only the push function;
/// its peak RSS after init and after the events, in KB.
async fn alone_round(stack: &Stack, receiver: &Receiver) -> (u64, u64) {
    let dir = std::env::temp_dir().join(format!("push-alone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("event directory");
    for n in 0..EVENTS {
        // New MessageIds: these batches are not yet in the ledger.
        let (sqs, _) = event(n);
        let bytes = serde_json::to_vec(&sqs).expect("event serialises");
        std::fs::write(dir.join(format!("event-{n}.json")), bytes).expect("event file");
    }
    let ca = dir.join("receiver-ca.pem");
    std::fs::write(&ca, receiver.ca_pem()).expect("CA file");
    let template = platformsync_tests::template();
    let specs = template
        .functions(&stack.deployment.resolver(&template))
        .expect("template functions");
    let spec = specs
        .iter()
        .find(|f| f.binary == "push")
        .expect("the template declares push");
    let mut child = std::process::Command::new(std::env::current_exe().expect("this binary"));
    child
        .envs(&spec.environment)
        .env("PLATFORMSYNC_EXTRA_CA_FILE", &ca)
        .env("PLATFORMSYNC_ALLOW_CIDRS", "127.0.0.0/8")
        .env(ALONE, &dir);
    // Waited for off the runtime: the receiver answering the child runs on it.
    let output = tokio::task::spawn_blocking(move || child.output())
        .await
        .expect("the wait for the child")
        .expect("the child runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the push child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figure = |name: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("the child printed no {name}: {stdout}"))
    };
    (figure("init_kb="), figure("peak_kb="))
}

/// The child: the push function as Lambda runs it, on the event files of
/// `dir`, one invocation at a time.
async fn push_alone(dir: &std::path::Path) {
    let push = push::Push::from_env()
        .await
        .expect("push builds from its environment");
    println!("init_kb={}", vm_hwm_kb());
    for n in 0..EVENTS {
        let body = std::fs::read(dir.join(format!("event-{n}.json"))).expect("event file");
        let event: SqsEvent = serde_json::from_slice(&body).expect("an SQS event");
        let response = push.handle(event).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        drop(body);
    }
    println!("peak_kb={}", vm_hwm_kb());
}

fn bodies(batches: &[BatchMessage]) -> Vec<Vec<u8>> {
    batches
        .iter()
        .map(|b| {
            let payloads: Vec<Box<RawValue>> = b.items.iter().map(|e| e.payload.clone()).collect();
            let key =
                ApiKey::new(None, Default::default(), "bench-key".to_owned().into()).expect("key");
            render_v1(&RenderInput {
                message_id: b.message_id,
                correlation_id: None,
                endpoint_metadata: &Default::default(),
                items: PayloadItems::Raw {
                    kind: b.kind,
                    items: &payloads,
                },
                api_key: &key,
            })
            .body
        })
        .collect()
}

/// The push function's HTTP path alone: render + EndpointClient::post.
async fn http_round(receiver: &Receiver) -> f64 {
    let client = platformsync_http::EndpointClient::new(platformsync_http::ClientConfig {
        extra_ca_pem: Some(receiver.ca_pem().as_bytes().to_vec()),
        allow: platformsync_delivery::ssrf::AllowList::parse("127.0.0.0/8").expect("allow"),
        ..Default::default()
    })
    .expect("client");
    let url = receiver.url("/push");
    let headers = vec![("Authorization".to_owned(), "Bearer bench-key".to_owned())];
    let mut elapsed = Duration::ZERO;
    for n in 0..EVENTS {
        let (_, batches) = event(n);
        let started = Instant::now();
        let ok = stream::iter(bodies(&batches))
            .map(|body| client.post(&url, &[], &headers, body))
            .buffer_unordered(ENDPOINTS)
            .filter(|r| std::future::ready(r.as_ref().is_ok_and(|r| r.is_delivered())))
            .count()
            .await;
        elapsed += started.elapsed();
        assert_eq!(ok, ENDPOINTS);
    }
    (EVENTS * ENDPOINTS * PER_BATCH) as f64 / elapsed.as_secs_f64()
}

/// The floor: bodies rendered beforehand, posted by a bare reqwest client.
async fn bare_round(receiver: &Receiver) -> f64 {
    let client = reqwest::Client::builder()
        .tls_certs_merge(
            reqwest::Certificate::from_pem_bundle(receiver.ca_pem().as_bytes()).expect("CA"),
        )
        .build()
        .expect("client");
    let url = receiver.url("/push");
    let mut elapsed = Duration::ZERO;
    for n in 0..EVENTS {
        let (_, batches) = event(n);
        let bodies = bodies(&batches);
        drop(batches);
        let started = Instant::now();
        let ok = stream::iter(bodies)
            .map(|body| {
                client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("authorization", "Bearer bench-key")
                    .body(body)
                    .send()
            })
            .buffer_unordered(ENDPOINTS)
            .filter(|r| std::future::ready(r.as_ref().is_ok_and(|r| r.status() == 200)))
            .count()
            .await;
        elapsed += started.elapsed();
        assert_eq!(ok, ENDPOINTS);
    }
    (EVENTS * ENDPOINTS * PER_BATCH) as f64 / elapsed.as_secs_f64()
}
