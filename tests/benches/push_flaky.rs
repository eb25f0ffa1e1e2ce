//! Issue 18's benchmark: a flaky endpoint keeps pace.
//!
//! 100 batches to an endpoint that fails 30 % of requests at random (HTTP
//! 500, HTTP 201 and dropped connections, in turn), side by side with the
//! same 100 batches to a healthy endpoint, in the same run, through the push
//! function at the **production schedule** (2 s, 5 s, 15 s, 30 s, ... by the
//! endpoint's consecutive failures; 24 h window). The local stack's delivery
//! queue is polled as Lambda's poller does (10 messages per receive; one
//! poller, see [`POLLERS`]) and each event handed to `Push::handle`.
//!
//! Prints, for each endpoint, the time from the first enqueue until its last
//! batch was delivered (target for the flaky one: at most 10 minutes), the
//! POSTs it took and whether every batch arrived once and in order.
//!
//! Run with `make bench-flaky`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use platformsync_domain::batch::{BATCH_MESSAGE_VERSION, BatchEntry, BatchMessage};
use platformsync_domain::endpoint::{CustomerId, EndpointId};
use platformsync_domain::types::MessageKind;
use platformsync_tests::Stack;
use platformsync_tests::receiver::{Receiver, Reply};
use serde_json::value::RawValue;

const BATCHES: usize = 100;
const PER_BATCH: usize = 50;
const FAIL_PERCENT: u64 = 30;
/// One poller, as the local runner plays a FIFO queue: moto does not lock a
/// message group against concurrent long polls, so two pollers could hand
/// one endpoint's batches to two invocations at once, which SQS never does.
const POLLERS: usize = 1;
const LIMIT: Duration = Duration::from_secs(30 * 60);

fn batch(endpoint: &str, n: usize) -> BatchMessage {
    let items = (0..PER_BATCH)
        .map(|i| {
            let time = format!("2026-01-10T{:02}:{:02}:{:02}", n / 60 % 24, n % 60, i % 60);
            let payload = format!(
                r#"{{"PickupGroupId":{n},"SerialNumber":"UT07761","RetrievedOn":"2026-01-10T09:00:00Z","TransactionDateTime":"{time}","UserName":"clerk","TransactionType":"CashIn","Amount":5560.0,"Denominations":[{{"UnitValue":20.0000,"Count":53,"Currency":"USD"}},{{"UnitValue":100.0000,"Count":45,"Currency":"USD"}}]}}"#
            );
            BatchEntry {
                key: BatchEntry::key_of("UT07761", &format!("{time}.0000000#sha:{n:08x}{i:024x}")),
                payload: RawValue::from_string(payload).expect("valid JSON"),
            }
        })
        .collect();
    BatchMessage {
        version: BATCH_MESSAGE_VERSION,
        message_id: uuid::Uuid::new_v4(),
        endpoint_id: EndpointId::parse(endpoint).expect("id"),
        customer_id: CustomerId::parse("bench").expect("id"),
        kind: MessageKind::Transactions,
        created_at: "2026-01-10T09:00:00Z".into(),
        items,
        plan_ref: None,
    }
}

async fn endpoint(stack: &Stack, receiver: &Receiver, id: &str) {
    let (url, key) = (receiver.url("/push"), format!("key-{id}"));
    let extra = serde_json::json!({});
    stack.add_endpoint("bench", id, &url, &key, extra).await;
}

/// Prints when the endpoint's last batch was delivered (answered 200) and
/// whether every batch was delivered exactly once, in order.
fn report(name: &str, receiver: &Receiver, batches: &[BatchMessage], started: Instant) -> bool {
    let requests = receiver.requests();
    let ids: Vec<String> = batches.iter().map(|b| b.message_id.to_string()).collect();
    let ok: Vec<_> = requests.iter().filter(|r| r.replied == Some(200)).collect();
    let delivered: Vec<String> = ok.iter().map(|r| r.message_id()).collect();
    let once_in_order = delivered == ids;
    if !once_in_order {
        let first = delivered.iter().zip(&ids).position(|(a, b)| a != b);
        println!(
            "{name}: {} delivered for {} batches; first difference at {first:?}",
            delivered.len(),
            ids.len()
        );
    }
    let done_at = ok
        .last()
        .map(|r| r.at.saturating_duration_since(started))
        .unwrap_or_default();
    println!(
        "{name:>8}: last batch delivered after {:>6.1} s ({:>4.1} min); {} POSTs ({} failed) for {} batches; every batch once, in order: {once_in_order}",
        done_at.as_secs_f64(),
        done_at.as_secs_f64() / 60.0,
        requests.len(),
        requests.len() - ok.len(),
        batches.len(),
    );
    once_in_order
}

/// Messages visible or in flight in the delivery queue.
async fn queued(stack: &Stack) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    stack
        .delivery_queue_count(&[
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ])
        .await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let stack = Stack::deploy().await;
    stack.add_customer("bench", "Bench", &[]).await;
    let healthy = Receiver::start().await;
    let flaky = Receiver::start().await;
    flaky.set_flaky(
        FAIL_PERCENT,
        0x5eed_f1a6,
        vec![Reply::status(500), Reply::status(201), Reply::Reset],
    );
    endpoint(&stack, &healthy, "bench-healthy").await;
    endpoint(&stack, &flaky, "bench-flaky").await;
    // Production settings; only the receivers' CAs are trusted in addition.
    let mut settings = stack.push_settings(&healthy);
    settings.extra_ca_pem = Some(format!("{}{}", healthy.ca_pem(), flaky.ca_pem()).into_bytes());
    let push = push::Push::new(&stack.config, settings).expect("push");

    let healthy_batches: Vec<BatchMessage> =
        (0..BATCHES).map(|n| batch("bench-healthy", n)).collect();
    let flaky_batches: Vec<BatchMessage> = (0..BATCHES).map(|n| batch("bench-flaky", n)).collect();
    println!(
        "push flaky: {BATCHES} batches x {PER_BATCH} transactions to each of two endpoints, one failing \
         {FAIL_PERCENT} % of requests at random (500 / 201 / dropped connection), production retry schedule, \
         {POLLERS} poller of 10 messages, moto server + local HTTPS receivers"
    );
    let started = Instant::now();
    // Interleaved, as the fan-out would enqueue one upload's batches.
    for (h, f) in healthy_batches.iter().zip(&flaky_batches) {
        for b in [h, f] {
            stack
                .clients
                .sqs
                .send_message()
                .queue_url(stack.reference("DeliveryQueue"))
                .message_group_id(b.endpoint_id.as_str())
                .message_deduplication_id(b.message_id.to_string())
                .message_body(serde_json::to_string(b).expect("body"))
                .send()
                .await
                .expect("enqueued");
        }
    }
    let delivered = |r: &Receiver, batches: &[BatchMessage]| {
        let want: HashSet<String> = batches.iter().map(|b| b.message_id.to_string()).collect();
        let got: HashSet<String> = r
            .requests()
            .iter()
            .filter(|r| r.replied == Some(200))
            .map(|r| r.message_id())
            .collect();
        want.is_subset(&got)
    };
    let stop = AtomicBool::new(false);
    let poller = || async {
        while !stop.load(Ordering::SeqCst) {
            let messages = stack.receive_deliveries(1).await;
            if !messages.is_empty() {
                stack.run_push(&push, &messages).await;
            }
        }
    };
    let watch = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if delivered(&healthy, &healthy_batches)
                && delivered(&flaky, &flaky_batches)
                && queued(&stack).await == 0
            {
                break;
            }
            if started.elapsed() > LIMIT {
                println!("gave up after {LIMIT:?}");
                break;
            }
        }
        stop.store(true, Ordering::SeqCst);
    };
    let pollers = futures_util::future::join_all((0..POLLERS).map(|_| poller()));
    tokio::join!(pollers, watch);
    let ok_healthy = report("healthy", &healthy, &healthy_batches, started);
    let ok_flaky = report("flaky", &flaky, &flaky_batches, started);
    println!("target: flaky endpoint's last batch within 10 min");
    assert!(
        ok_healthy && ok_flaky,
        "a batch is missing, repeated or out of order"
    );
}
