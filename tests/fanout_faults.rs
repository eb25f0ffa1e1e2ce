//! The fan-out under our own outages, over the wire: its AWS clients talk to
//! the local stack through the fault proxy (`platformsync-faults`), which
//! fails chosen operations for a number of calls or a while. The stream is
//! played as Lambda plays it with `MaximumRetryAttempts: -1` (a failed batch
//! is retried from the record the function reports, the shard does not move
//! on meanwhile), or, for the recovery test, as Lambda does when the record
//! age runs out (the range's description goes to `StreamFailureQueue`, the
//! shard moves on, and the stream-recovery function re-reads the range).
//!
//! What each test checks on the delivery queue (receiving everything):
//! every (endpoint, transaction) delivered, under exactly one `MessageId`,
//! and no endpoint's message of a later part of the stream ahead of one of
//! an earlier part (a safe's later records never overtake its earlier ones).

use aws_lambda_events::dynamodb::EventRecord;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use platformsync_domain::batch::BatchMessage;
use platformsync_domain::endpoint::EndpointSettings;
use platformsync_domain::testdata;
use platformsync_faults::{Fault, FaultProxy, Rule};
use platformsync_tests::ids;
use platformsync_tests::{Stack, streams};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

const SAFES: usize = 5;
/// Stream batch size played here: small, so a run has several batches.
const STREAM_BATCH: usize = 150;

struct World {
    stack: Stack,
    records: Vec<EventRecord>,
    /// Storage key -> stream position.
    position: HashMap<String, usize>,
    /// (endpoint, key) pairs that must be delivered.
    wanted: BTreeSet<(String, String)>,
}

fn endpoint(id: &str, max_batch: u16) -> EndpointSettings {
    serde_json::from_value(json!({
        "EndpointId": id,
        "CustomerId": "acme",
        "Url": format!("https://{id}.example.com/push"),
        "ApiKeySecret": format!("platformsync/test/endpoints/{id}"),
        "MaxBatchSize": max_batch,
    }))
    .unwrap()
}

impl World {
    async fn new(transactions: usize, seed: u64) -> Self {
        let stack = Stack::deploy().await;
        let config = stack.config_store();
        stack.add_customer("acme", "Acme", &[]).await;
        // Many small batches for one endpoint, one big one for the other.
        for (id, size) in [("acme-small", 20), ("acme-big", 1000)] {
            config.put_endpoint(&endpoint(id, size)).await.unwrap();
        }
        for serial in testdata::serials(SAFES, seed) {
            config
                .assign_safe(&ids::safe(&serial), &ids::customer("acme"))
                .await
                .unwrap();
        }
        let body = testdata::upload_json(transactions, SAFES, seed);
        stack.upload(&body).await;
        let records = streams::lambda_records(&stack).await;
        assert_eq!(records.len(), transactions);
        let mut position = HashMap::new();
        let mut wanted = BTreeSet::new();
        for (i, r) in records.iter().enumerate() {
            let stored: platformsync_domain::record::StoredTransaction =
                serde_dynamo::from_item(r.change.new_image.clone()).unwrap();
            let key = stored.key();
            position.insert(key.clone(), i);
            for ep in ["acme-small", "acme-big"] {
                wanted.insert((ep.to_owned(), key.clone()));
            }
        }
        Self {
            stack,
            records,
            position,
            wanted,
        }
    }

    fn settings(&self) -> fanout::Settings {
        let mut settings = self.stack.fanout_settings();
        settings.transactions_table = Some(self.stack.reference("TransactionsTable"));
        settings.send_attempts = 2;
        settings.send_backoff = Duration::from_millis(5);
        settings
    }

    fn sequence(&self, i: usize) -> &str {
        self.records[i].change.sequence_number.as_deref().unwrap()
    }

    fn index_of(&self, sequence: &str) -> usize {
        (0..self.records.len())
            .find(|&i| self.sequence(i) == sequence)
            .unwrap()
    }
}

/// SDK configuration whose clients go through `proxy`, with one attempt per
/// call (the SDK's own retries would only slow the test down; the fan-out's
/// and Lambda's retries are what is under test). Every service goes through
/// the proxy, even with `AWS_ENDPOINT_URL_DYNAMODB` set (the LocalStack
/// pair): see `platformsync_tests::config_through`.
async fn through(proxy: &FaultProxy) -> aws_config::SdkConfig {
    platformsync_tests::config_through(proxy, |loader| {
        loader.retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
    })
    .await
}

/// The proxy forwards each service where the stack serves it (on the
/// LocalStack pair, DynamoDB and its stream to moto).
async fn proxy() -> FaultProxy {
    platformsync_tests::fault_proxy().await
}

/// Lambda's event source mapping with `MaximumRetryAttempts: -1`: batches
/// of `STREAM_BATCH` from the checkpoint; a reported failure moves the
/// checkpoint to just before that record and the batch is retried from it.
/// Returns the invocations made.
async fn play_stream(fanout: &fanout::Fanout, world: &World, give_up_after: Duration) -> usize {
    let started = Instant::now();
    let mut pos = 0;
    let mut invocations = 0;
    while pos < world.records.len() {
        assert!(
            started.elapsed() < give_up_after,
            "still failing after {give_up_after:?} ({invocations} invocations, at record {pos})"
        );
        let end = (pos + STREAM_BATCH).min(world.records.len());
        invocations += 1;
        let response = fanout
            .handle_before(
                streams::event(&world.records[pos..end]),
                Instant::now() + Duration::from_secs(30),
            )
            .await;
        match response.batch_item_failures.first() {
            None => pos = end,
            Some(f) => {
                pos = world.index_of(f.item_identifier.as_deref().unwrap());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    invocations
}

/// Every transaction delivered to each endpoint, under exactly one
/// `MessageId`; no message of a later part of the stream ahead of an
/// earlier one, per endpoint.
fn check_delivery(world: &World, received: &BTreeMap<String, Vec<BatchMessage>>) {
    let mut ids: BTreeMap<(String, String), BTreeSet<uuid::Uuid>> = BTreeMap::new();
    for (group, messages) in received {
        let mut last_start = 0;
        for m in messages {
            for item in &m.items {
                ids.entry((group.clone(), item.key.clone()))
                    .or_default()
                    .insert(m.message_id);
            }
            // Where the message's part of the stream starts: its plan's first
            // record. Plans are made in stream order.
            let plan = &m.plan_ref.as_ref().expect("plan reference").plan;
            let start = world.position[plan];
            assert!(
                start >= last_start,
                "{group}: a message of records from {start} arrived after one from {last_start}"
            );
            last_start = start;
        }
    }
    let delivered: BTreeSet<(String, String)> = ids.keys().cloned().collect();
    let missing: Vec<_> = world.wanted.difference(&delivered).take(3).collect();
    assert!(missing.is_empty(), "not delivered: {missing:?}");
    assert_eq!(delivered.len(), world.wanted.len(), "nothing unexpected");
    let twice: Vec<_> = ids
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .take(3)
        .collect();
    assert!(twice.is_empty(), "under two MessageIds: {twice:?}");
}

/// The world's first stream batch, handed to `fanout` before any fault.
async fn first_batch(fanout: &fanout::Fanout, world: &World) -> fanout::Tally {
    let event = streams::event(&world.records[..STREAM_BATCH]);
    fanout
        .process(event, Instant::now() + Duration::from_secs(30))
        .await
}

#[tokio::test]
async fn send_message_batch_failing_longer_than_200_attempts_then_recovering_loses_and_repeats_nothing()
 {
    let world = World::new(600, 71).await;
    let proxy = proxy().await;
    // 300 failed calls: Lambda's old MaximumRetryAttempts (200) would have
    // skipped the batch; with -1 it is retried until SQS is back.
    proxy.add_rule(Rule::new("sqs", "SendMessageBatch", Fault::Internal).times(300));
    let fanout = fanout::Fanout::new(&through(&proxy).await, world.settings());
    let invocations = play_stream(&fanout, &world, Duration::from_secs(240)).await;
    let stats = proxy.stats();
    assert_eq!(stats.failed("sqs", "SendMessageBatch"), 300);
    assert!(invocations > 100, "retried by Lambda: {invocations}");
    check_delivery(&world, &world.stack.drain_deliveries().await);
}

#[tokio::test]
async fn access_denied_on_send_message_batch_for_a_while_is_retried_not_dropped() {
    let world = World::new(300, 73).await;
    let proxy = proxy().await;
    // A bad IAM deploy, fixed after a while.
    proxy.add_rule(
        Rule::new("sqs", "SendMessageBatch", Fault::AccessDenied)
            .for_duration(Duration::from_secs(4)),
    );
    let fanout = fanout::Fanout::new(&through(&proxy).await, world.settings());
    play_stream(&fanout, &world, Duration::from_secs(120)).await;
    assert!(proxy.stats().failed("sqs", "SendMessageBatch") > 0);
    check_delivery(&world, &world.stack.drain_deliveries().await);
}

#[tokio::test]
async fn the_config_table_throttled_for_fifteen_compressed_minutes_loses_and_repeats_nothing() {
    let world = World::new(600, 79).await;
    let proxy = proxy().await;
    let fanout = fanout::Fanout::new(&through(&proxy).await, world.settings());
    // The first batch goes through; then every DynamoDB call of the
    // fan-out (plans, owners, endpoints) is throttled for the "15 minutes"
    // (6 s here), mid-stream.
    let first = first_batch(&fanout, &world).await;
    assert_eq!(first.first_failed, None, "{first:?}");
    proxy
        .add_rule(Rule::new("dynamodb", "*", Fault::Throttle).for_duration(Duration::from_secs(6)));
    let throttled_from = Instant::now();
    let invocations = play_stream(&fanout, &world, Duration::from_secs(180)).await;
    assert!(throttled_from.elapsed() >= Duration::from_secs(6));
    let throttled: u64 = proxy
        .stats()
        .calls
        .iter()
        .filter(|c| c.service == "dynamodb")
        .map(|c| c.failed)
        .sum();
    assert!(throttled > 0, "the fan-out met the throttling");
    assert!(invocations > 1, "and Lambda retried: {invocations}");
    check_delivery(&world, &world.stack.drain_deliveries().await);
}

/// The on-failure record Lambda sends for a stream batch it gives up on.
fn on_failure_record(world: &World, shard: &str, first: usize, last: usize) -> String {
    json!({
        "version": "1.0",
        "requestContext": {"condition": "RecordAgeExceeded", "approximateInvokeCount": 500},
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": world.sequence(first),
            "endSequenceNumber": world.sequence(last),
            "batchSize": last - first + 1,
            "streamArn": world.stack.attribute("TransactionsTable", "StreamArn"),
        }
    })
    .to_string()
}

async fn first_shard(stack: &Stack) -> String {
    let client = aws_sdk_dynamodbstreams::Client::new(&stack.config);
    let out = client
        .describe_stream()
        .stream_arn(stack.attribute("TransactionsTable", "StreamArn"))
        .send()
        .await
        .unwrap();
    out.stream_description()
        .and_then(|d| d.shards().first())
        .and_then(|s| s.shard_id())
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_range_whose_record_age_ran_out_is_recovered_from_the_stream_failure_queue() {
    let world = World::new(450, 83).await;
    let n = world.records.len();
    let proxy = proxy().await;
    let fanout = fanout::Fanout::new(&through(&proxy).await, world.settings());

    // The second stream batch fails for longer than the record age (SQS
    // down, mid-send: some of its messages went out, the rest did not).
    let first = first_batch(&fanout, &world).await;
    assert_eq!(first.first_failed, None);
    proxy.add_rule(Rule::new("sqs", "SendMessageBatch", Fault::Unavailable).after(1));
    let failing = fanout
        .process(
            streams::event(&world.records[STREAM_BATCH..2 * STREAM_BATCH]),
            Instant::now() + Duration::from_secs(30),
        )
        .await;
    let failed_at = world.index_of(failing.first_failed.as_deref().expect("it fails"));
    proxy.clear();
    // Lambda gives up on [failed_at, 2 * STREAM_BATCH) and moves on.
    let rest = fanout
        .process(
            streams::event(&world.records[2 * STREAM_BATCH..]),
            Instant::now() + Duration::from_secs(30),
        )
        .await;
    assert_eq!(rest.first_failed, None);
    let shard = first_shard(&world.stack).await;
    let body = on_failure_record(&world, &shard, failed_at, 2 * STREAM_BATCH - 1);
    let sqs = &world.stack.clients.sqs;
    let failures = world.stack.reference("StreamFailureQueue");
    sqs.send_message()
        .queue_url(&failures)
        .message_body(body)
        .send()
        .await
        .unwrap();
    // And one description that cannot be recovered.
    sqs.send_message()
        .queue_url(&failures)
        .message_body(r#"{"not": "an on-failure record"}"#)
        .send()
        .await
        .unwrap();

    // The stream-recovery function, fed from the queue as Lambda feeds it.
    let recovery = stream_recovery::StreamRecovery::new(&world.stack.config, world.settings());
    let out = sqs
        .receive_message()
        .queue_url(&failures)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert_eq!(out.messages().len(), 2);
    let mut event = SqsEvent::default();
    event.records = out
        .messages()
        .iter()
        .map(|m| {
            let mut message = SqsMessage::default();
            message.message_id = m.message_id().map(str::to_owned);
            message.body = m.body().map(str::to_owned);
            message
        })
        .collect();
    let unreadable = out
        .messages()
        .iter()
        .find(|m| m.body().is_some_and(|b| b.contains("not")))
        .and_then(|m| m.message_id())
        .unwrap()
        .to_owned();
    let response = recovery.handle(event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        [unreadable.as_str()],
        "only the unreadable one stays queued"
    );

    // Everything delivered once; the recovered range came after the later
    // records (Lambda had moved on), which is why the age is 12 h.
    let received = world.stack.drain_deliveries().await;
    let mut ids: BTreeMap<(String, String), BTreeSet<uuid::Uuid>> = BTreeMap::new();
    for (group, messages) in &received {
        for m in messages {
            for item in &m.items {
                ids.entry((group.clone(), item.key.clone()))
                    .or_default()
                    .insert(m.message_id);
            }
        }
    }
    assert_eq!(
        ids.len(),
        world.wanted.len(),
        "every transaction of {n} delivered"
    );
    assert!(ids.values().all(|ids| ids.len() == 1), "one MessageId each");
}

#[test]
fn every_fan_out_loss_metric_is_alarmed_with_a_runbook_entry() {
    let template = platformsync_tests::template();
    let runbook =
        std::fs::read_to_string(platformsync_tests::repo_root().join("docs/runbook.md")).unwrap();
    let alarms: Vec<(String, String, String)> = template
        .resources()
        .filter(|r| r.kind == "AWS::CloudWatch::Alarm")
        .filter(|r| r.properties["Namespace"] == "PlatformSync")
        .map(|r| {
            (
                r.properties["MetricName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r.properties["Dimensions"][0]["Value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r.properties["AlarmDescription"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    for metric in [
        "Unreadable",
        "Oversized",
        "Unowned",
        "Parked",
        "PlanWriteFailed",
        "ProgressWriteFailed",
    ] {
        let (_, _, description) = alarms
            .iter()
            .find(|(m, f, _)| m == metric && f == "fanout")
            .unwrap_or_else(|| panic!("no alarm on fanout's {metric}"));
        let anchor = description
            .split("docs/runbook.md#")
            .nth(1)
            .and_then(|rest| rest.split(['.', ' ']).next())
            .unwrap_or_else(|| panic!("{metric}: alarm names no runbook entry"));
        assert!(
            runbook.contains(&format!("### {anchor}")),
            "{metric}: runbook has no section {anchor}"
        );
    }
    assert!(
        alarms
            .iter()
            .any(|(m, f, _)| m == "RangeUnreadable" && f == "stream-recovery")
    );
}
