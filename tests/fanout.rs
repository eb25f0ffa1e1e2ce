//! The fan-out function against the local stack: transactions ingested for
//! real, read back from the table's DynamoDB stream, fanned out to the FIFO
//! delivery queue and received from it. Every batch lands at the right
//! endpoint, ordered, sized and exactly once, also when SQS fails entries
//! (in planned order), when Lambda replays a partially failed batch, and
//! when an invocation is killed mid-send and replayed whole or bisected:
//! every (endpoint, transaction) under exactly one `MessageId`.

use aws_lambda_events::dynamodb::EventRecord;
use aws_sdk_dynamodb::types::AttributeValue;
use platformsync_aws::delivery_queue::{
    BatchReply, EntryError, RequestEntry, RequestError, SendMessageBatch, SqsTransport,
};
use platformsync_domain::batch::BatchMessage;
use platformsync_domain::endpoint::EndpointSettings;
use platformsync_domain::record::StoredTransaction;
use platformsync_domain::testdata;
use platformsync_domain::types::MessageKind;
use platformsync_tests::ids;
use platformsync_tests::{Stack, apigw, endpoint_settings, streams};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lambda's batch size in `template.yaml` for the stream.
const STREAM_BATCH: usize = 1000;
const SAFES: usize = 7;

/// One endpoint as configured, and what the test expects it to want
/// (canonical type names; `None` = every type).
struct EndpointCase {
    settings: EndpointSettings,
    wants: Option<&'static [&'static str]>,
}

fn endpoint(id: &str, customer: &str, extra: serde_json::Value) -> EndpointSettings {
    let url = format!("https://{id}.example.com/push");
    let key_secret = format!("platformsync/test/endpoints/{id}");
    endpoint_settings(customer, id, &url, &key_secret, &extra)
}

/// Two customers, three live endpoints of different whitelists, message
/// types and batch sizes, and a disabled one.
fn endpoint_cases(small_batches: bool) -> Vec<EndpointCase> {
    let size = |n: u16| if small_batches { 10 } else { n };
    vec![
        EndpointCase {
            settings: endpoint("acme-erp", "acme", json!({"MaxBatchSize": size(1000)})),
            wants: None,
        },
        EndpointCase {
            // Whitelisted in the other vocabulary; audits subscribed too.
            settings: endpoint(
                "acme-audit",
                "acme",
                json!({
                    "MessageTypes": ["Transactions", "AuditTransactions"],
                    "Whitelist": ["ValidatedCashIn", "ChangePurchase", "DoorOpened", "Login"],
                    "MaxBatchSize": size(100),
                }),
            ),
            wants: Some(&["CashIn", "ChangeRequest", "DoorOpened", "Login"]),
        },
        EndpointCase {
            settings: endpoint(
                "globex-cash",
                "globex",
                json!({"Whitelist": ["CashIn", "Servicing", "EndOfDay"], "MaxBatchSize": size(250)}),
            ),
            wants: Some(&["CashIn", "Servicing", "EndOfDay"]),
        },
        EndpointCase {
            settings: endpoint("globex-off", "globex", json!({"Enabled": false})),
            wants: Some(&[]),
        },
    ]
}

/// A deployed stack with the two customers configured, `transactions` +
/// `audits` ingested through the ingest function, and the resulting stream
/// records in Lambda's shape.
struct World {
    stack: Stack,
    cases: Vec<EndpointCase>,
    /// Serial number -> customer id.
    owners: BTreeMap<String, String>,
    records: Vec<EventRecord>,
    /// The stored transaction behind each record (same index).
    stored: Vec<StoredTransaction>,
}

impl World {
    async fn new(transactions: usize, audits: usize, seed: u64, small_batches: bool) -> Self {
        let stack = Stack::deploy().await;
        let config = stack.config_store();
        for (id, name) in [("acme", "Acme Stores"), ("globex", "Globex Retail")] {
            stack.add_customer(id, name, &[]).await;
        }
        let cases = endpoint_cases(small_batches);
        for case in &cases {
            config.put_endpoint(&case.settings).await.unwrap();
        }
        let mut owners = BTreeMap::new();
        for (i, serial) in testdata::serials(SAFES, seed).into_iter().enumerate() {
            let customer = if i < 4 { "acme" } else { "globex" };
            config
                .assign_safe(&ids::safe(&serial), &ids::customer(customer))
                .await
                .unwrap();
            owners.insert(serial, customer.to_owned());
        }

        let upload: serde_json::Value = serde_json::from_slice(&testdata::upload_json_with_audits(
            transactions,
            audits,
            SAFES,
            seed,
        ))
        .unwrap();
        // One write at a time: the stream's order is then the upload's, so
        // which endpoint the first records are for is the seed's, not the
        // race between concurrent puts (tests below rely on it).
        let mut ingest_settings = stack.ingest_settings();
        ingest_settings.write_concurrency = 1;
        let ingest = ingest::Ingest::new(&stack.config, ingest_settings);
        let key = stack.ingest_key().await;
        let mut accepted = 0;
        for (kind, items) in [
            ("Transactions", &upload["Transactions"]),
            ("AuditTransactions", &upload["AuditTransactions"]),
        ] {
            for chunk in items
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .chunks(1000)
            {
                let body = serde_json::to_vec(&json!({ kind: chunk })).unwrap();
                let resp = ingest
                    .handle(apigw::post("/v1/uploads", &body, Some(&key)))
                    .await;
                assert_eq!(resp.status_code, 200, "{}", apigw::json(&resp));
                let r = apigw::json(&resp);
                assert_eq!(r["Unowned"], 0, "{r}");
                accepted += r["Accepted"].as_u64().unwrap() as usize;
            }
        }
        assert_eq!(accepted, transactions + audits, "every record deliverable");

        let records = streams::lambda_records(&stack).await;
        assert_eq!(
            records.len(),
            transactions + audits,
            "one INSERT per stored item"
        );
        let stored = records
            .iter()
            .map(|r| serde_dynamo::from_item(r.change.new_image.clone()).unwrap())
            .collect();
        Self {
            stack,
            cases,
            owners,
            records,
            stored,
        }
    }

    fn key(&self, index: usize) -> String {
        let s = &self.stored[index];
        s.key()
    }

    fn wanted_by(&self, case: &EndpointCase, index: usize) -> bool {
        let s = &self.stored[index];
        let e = &case.settings;
        let kind = s.kind();
        self.owners[s.serial_number.as_str()] == e.customer_id.as_str()
            && e.enabled
            && e.message_types.contains(&kind)
            && case
                .wants
                .is_none_or(|types| types.contains(&s.type_name()))
    }

    /// The batches each endpoint must receive when the records are handed
    /// over in stream batches of `chunk`: per stream batch, per message kind
    /// (transactions first), sorted by safe time, cut at the max batch size.
    fn expected(&self, chunk: usize) -> BTreeMap<String, Vec<Vec<String>>> {
        let mut expected: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
        for case in &self.cases {
            let max = usize::from(case.settings.max_batch_size);
            let batches = expected
                .entry(case.settings.endpoint_id.to_string())
                .or_default();
            for start in (0..self.records.len()).step_by(chunk) {
                let end = (start + chunk).min(self.records.len());
                for kind in MessageKind::ALL {
                    let mut items: Vec<(String, String, String)> = (start..end)
                        .filter(|&i| self.stored[i].kind() == kind)
                        .filter(|&i| self.wanted_by(case, i))
                        .map(|i| {
                            let s = &self.stored[i];
                            let time = s.sort_key.split('#').next().unwrap().to_owned();
                            (time, s.serial_number.to_string(), self.key(i))
                        })
                        .collect();
                    items.sort();
                    batches.extend(
                        items
                            .chunks(max)
                            .map(|c| c.iter().map(|(_, _, k)| k.clone()).collect()),
                    );
                }
            }
        }
        expected.retain(|_, batches| !batches.is_empty());
        expected
    }

    fn event(&self, range: std::ops::Range<usize>) -> aws_lambda_events::dynamodb::Event {
        streams::event(&self.records[range])
    }

    fn sequence(&self, index: usize) -> String {
        self.records[index].change.sequence_number.clone().unwrap()
    }
}

/// The fan-out's settings as template.yaml sets them (with the transactions
/// table, where replays rebuild bodies absent from their event).
fn settings(stack: &Stack) -> fanout::Settings {
    let mut settings = stack.fanout_settings();
    settings.transactions_table = Some(stack.reference("TransactionsTable"));
    settings
}

fn sqs_transport(stack: &Stack) -> SqsTransport {
    SqsTransport::new(
        aws_sdk_sqs::Client::new(&stack.config),
        stack.reference("DeliveryQueue"),
    )
}

/// Every (endpoint, key) and the `MessageId`s it arrived under: exactly one
/// each is the promise.
fn message_ids(
    received: &BTreeMap<String, Vec<BatchMessage>>,
) -> BTreeMap<(String, String), BTreeSet<uuid::Uuid>> {
    let mut ids: BTreeMap<(String, String), BTreeSet<uuid::Uuid>> = BTreeMap::new();
    for (group, messages) in received {
        for m in messages {
            for item in &m.items {
                ids.entry((group.clone(), item.key.clone()))
                    .or_default()
                    .insert(m.message_id);
            }
        }
    }
    ids
}

fn keys(received: &BTreeMap<String, Vec<BatchMessage>>) -> BTreeMap<String, Vec<Vec<String>>> {
    received
        .iter()
        .map(|(group, messages)| {
            let batches = messages
                .iter()
                .map(|m| m.items.iter().map(|i| i.key.clone()).collect())
                .collect();
            (group.clone(), batches)
        })
        .collect()
}

/// Checks every received message against the configuration: right group,
/// right customer, one kind, within the batch size, ordered by safe time,
/// payloads verbatim.
fn check_messages(world: &World, received: &BTreeMap<String, Vec<BatchMessage>>) {
    let by_key: BTreeMap<String, &StoredTransaction> = (0..world.stored.len())
        .map(|i| (world.key(i), &world.stored[i]))
        .collect();
    for (group, messages) in received {
        let case = world
            .cases
            .iter()
            .find(|c| c.settings.endpoint_id.as_str() == group)
            .unwrap_or_else(|| panic!("messages for unknown group {group}"));
        for m in messages {
            assert_eq!(m.endpoint_id.as_str(), group);
            assert_eq!(m.customer_id, case.settings.customer_id);
            assert!(m.items.len() <= usize::from(case.settings.max_batch_size));
            let mut previous = String::new();
            for item in &m.items {
                let stored = by_key[&item.key];
                assert_eq!(
                    world.owners[stored.serial_number.as_str()],
                    m.customer_id.as_str(),
                    "transaction of another customer's safe in {group}"
                );
                assert_eq!(stored.kind(), m.kind, "one kind per batch");
                assert_eq!(item.payload.get(), stored.payload, "payload verbatim");
                let time = stored.sort_key.split('#').next().unwrap().to_owned();
                assert!(time >= previous, "ordered by safe time in {group}");
                previous = time;
            }
        }
    }
}

/// Every key each endpoint received, and how many times.
fn counts(received: &BTreeMap<String, Vec<BatchMessage>>) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for (group, messages) in received {
        for m in messages {
            for item in &m.items {
                *counts.entry((group.clone(), item.key.clone())).or_default() += 1;
            }
        }
    }
    counts
}

fn expected_counts(
    expected: &BTreeMap<String, Vec<Vec<String>>>,
) -> BTreeMap<(String, String), usize> {
    expected
        .iter()
        .flat_map(|(group, batches)| {
            batches
                .iter()
                .flatten()
                .map(move |key| ((group.clone(), key.clone()), 1))
        })
        .collect()
}

#[tokio::test]
async fn fans_out_2500_records_of_7_safes_to_exactly_the_expected_batches_once() {
    let world = World::new(2000, 500, 41, false).await;
    let fanout = fanout::Fanout::new(&world.stack.config, settings(&world.stack));
    let n = world.records.len();

    // As Lambda would: stream batches of 1,000; then the same batches again
    // (a replay), which must add no message.
    for round in 0..2 {
        for start in (0..n).step_by(STREAM_BATCH) {
            let event = world.event(start..(start + STREAM_BATCH).min(n));
            let outcome = fanout
                .process(event, Instant::now() + Duration::from_secs(60))
                .await;
            assert_eq!(outcome.first_failed, None, "round {round}: {outcome:?}");
            assert_eq!(outcome.unowned, 0);
            assert_eq!(outcome.failed_batches, 0);
            if round == 1 {
                assert_eq!(outcome.safes_read, 0, "routing comes from the plan");
                assert_eq!(outcome.plans_found, 1, "{outcome:?}");
                assert_eq!(outcome.plans_created, 0, "{outcome:?}");
            }
        }
    }

    let received = world.stack.drain_deliveries().await;
    let expected = world.expected(STREAM_BATCH);
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        ["acme-audit", "acme-erp", "globex-cash"],
        "the disabled endpoint gets nothing"
    );
    // Exactly the expected batches per endpoint: counts, membership, order.
    let got = keys(&received);
    for (endpoint, batches) in &expected {
        let actual = &got[endpoint];
        assert_eq!(
            actual.len(),
            batches.len(),
            "{endpoint}: {} batches, expected {}",
            actual.len(),
            batches.len()
        );
        assert_eq!(actual, batches, "{endpoint}: batches differ");
    }
    assert_eq!(got.len(), expected.len());
    check_messages(&world, &received);
    assert_eq!(counts(&received), expected_counts(&expected));
    // The audit endpoint got both message types, each in its own batches.
    let kinds: BTreeSet<MessageKind> = received["acme-audit"].iter().map(|m| m.kind).collect();
    assert_eq!(kinds.len(), 2);
}

/// What SQS answers when it takes `forward` and refuses the entries
/// `refused` (their ids) with `code`: `forward` sent through `sqs`, the rest
/// reported failed.
async fn forward_refusing(
    sqs: &SqsTransport,
    forward: &[RequestEntry<'_>],
    refused: impl IntoIterator<Item = String>,
    sender_fault: bool,
    code: &str,
) -> Result<BatchReply, RequestError> {
    let mut reply = if forward.is_empty() {
        BatchReply::default()
    } else {
        sqs.send_message_batch(forward).await?
    };
    reply
        .failed
        .extend(refused.into_iter().map(|id| EntryError {
            id,
            sender_fault,
            code: code.into(),
            message: "injected".into(),
        }));
    Ok(reply)
}

/// Forwards to SQS, but fails every third entry it sees on its first
/// attempt, as SQS does with an entry-level `InternalError`.
struct EveryThirdFailsOnce {
    sqs: SqsTransport,
    entries: AtomicUsize,
    failed: Mutex<HashSet<String>>,
}

impl SendMessageBatch for EveryThirdFailsOnce {
    async fn send_message_batch(
        &self,
        entries: &[RequestEntry<'_>],
    ) -> Result<BatchReply, RequestError> {
        let mut forward = Vec::new();
        let mut injected = Vec::new();
        for e in entries {
            let n = self.entries.fetch_add(1, Ordering::SeqCst);
            let first_time = !self.failed.lock().unwrap().contains(&e.batch.dedup_id);
            if n % 3 == 2 && first_time {
                self.failed.lock().unwrap().insert(e.batch.dedup_id.clone());
                injected.push(e.id.to_owned());
            } else {
                forward.push(*e);
            }
        }
        forward_refusing(&self.sqs, &forward, injected, false, "InternalError").await
    }
}

#[tokio::test]
async fn sqs_entry_failures_in_the_middle_of_a_request_keep_each_endpoints_planned_order() {
    // Batch sizes of 10: many messages, so failures land mid-request.
    let world = World::new(400, 60, 43, true).await;
    let mut settings = settings(&world.stack);
    settings.send_backoff = Duration::from_millis(5);
    let transport = EveryThirdFailsOnce {
        sqs: sqs_transport(&world.stack),
        entries: AtomicUsize::new(0),
        failed: Mutex::default(),
    };
    let fanout = fanout::Fanout::with_transport(&world.stack.config, settings, transport);
    let n = world.records.len();
    let outcome = fanout
        .process(world.event(0..n), Instant::now() + Duration::from_secs(60))
        .await;
    assert_eq!(outcome.first_failed, None, "{outcome:?}");
    assert_eq!(outcome.failed_batches, 0);
    assert!(
        outcome.retried_entries >= 10,
        "entries failed once and were retried: {outcome:?}"
    );

    let received = world.stack.drain_deliveries().await;
    let expected = world.expected(n);
    let total: usize = expected.values().map(Vec::len).sum();
    assert!(total > 30, "enough messages for several requests: {total}");
    // Every batch arrived once, intact, and in planned order: a batch whose
    // entry failed mid-request was not overtaken by its endpoint's later
    // ones.
    assert_eq!(keys(&received), expected);
    assert_eq!(counts(&received), expected_counts(&expected));
    check_messages(&world, &received);
}

/// Forwards to SQS, except that while `failing` is set every entry of one
/// group fails (an endpoint's batches that SQS keeps refusing).
struct GroupFails {
    sqs: SqsTransport,
    group: String,
    failing: Arc<AtomicBool>,
}

impl SendMessageBatch for GroupFails {
    async fn send_message_batch(
        &self,
        entries: &[RequestEntry<'_>],
    ) -> Result<BatchReply, RequestError> {
        let failing = self.failing.load(Ordering::SeqCst);
        let (bad, good): (Vec<RequestEntry<'_>>, Vec<RequestEntry<'_>>) = entries
            .iter()
            .partition(|e| failing && e.batch.group_id.as_str() == self.group);
        let refused = bad.iter().map(|e| e.id.to_owned());
        forward_refusing(&self.sqs, &good, refused, false, "ServiceUnavailable").await
    }
}

#[tokio::test]
async fn a_partially_failed_batch_is_replayed_from_its_plan_without_pushing_anything_twice() {
    let world = World::new(600, 100, 47, false).await;
    let n = world.records.len();
    let failing = Arc::new(AtomicBool::new(true));
    let mut settings = settings(&world.stack);
    settings.send_attempts = 2;
    settings.send_backoff = Duration::from_millis(5);
    let transport = GroupFails {
        sqs: sqs_transport(&world.stack),
        group: "globex-cash".into(),
        failing: Arc::clone(&failing),
    };
    let fanout = fanout::Fanout::with_transport(&world.stack.config, settings, transport);

    // Attempt 1: globex-cash's batch fails; acme's endpoints get theirs.
    let outcome = fanout
        .process(world.event(0..n), Instant::now() + Duration::from_secs(60))
        .await;
    let globex_cash = &world.cases[2];
    let first_globex = (0..n)
        .find(|&i| world.wanted_by(globex_cash, i))
        .expect("globex-cash wants something");
    assert!(first_globex > 0, "some records before it are done");
    assert_eq!(outcome.first_failed, Some(world.sequence(first_globex)));
    assert!(
        outcome.failed_batches > 0 && outcome.messages_sent > 0,
        "{outcome:?}"
    );
    assert_eq!(outcome.plans_created, 1);
    assert!(outcome.progress_saved, "{outcome:?}");
    assert_eq!(
        outcome.pointers_written, 1,
        "a pointer where the replay starts"
    );

    // The replay starting at the failed record finds the plan through the
    // pointer, with what was sent.
    let found = fanout
        .plans()
        .lookup(
            &world.key(first_globex),
            time::OffsetDateTime::now_utc().unix_timestamp(),
        )
        .await
        .unwrap()
        .expect("the pointer leads to the plan");
    assert!(found.via_pointer);
    assert_eq!(found.plan.key, world.key(0));
    let sent = found.sent.iter().filter(|s| **s).count();
    assert_eq!(sent, outcome.messages_sent);

    // Lambda replays from the reported record; SQS recovers.
    failing.store(false, Ordering::SeqCst);
    let replay = fanout
        .process(
            world.event(first_globex..n),
            Instant::now() + Duration::from_secs(60),
        )
        .await;
    assert_eq!(replay.first_failed, None, "{replay:?}");
    assert_eq!(replay.already_sent, sent, "every sent message skipped");
    assert_eq!(replay.plans_created, 0);

    // Each endpoint got each of its transactions exactly once, in order.
    let received = world.stack.drain_deliveries().await;
    let expected = world.expected(n);
    assert_eq!(keys(&received), expected);
    assert_eq!(counts(&received), expected_counts(&expected));
    assert!(message_ids(&received).values().all(|ids| ids.len() == 1));
    check_messages(&world, &received);
}

/// Forwards the first `budget` entries to SQS, then hangs forever: an
/// invocation that Lambda kills (timeout, crash) after k of n entries.
struct DiesAfter {
    sqs: SqsTransport,
    budget: AtomicUsize,
}

impl SendMessageBatch for DiesAfter {
    async fn send_message_batch(
        &self,
        entries: &[RequestEntry<'_>],
    ) -> Result<BatchReply, RequestError> {
        let left = self.budget.load(Ordering::SeqCst);
        let take = left.min(entries.len());
        self.budget.fetch_sub(take, Ordering::SeqCst);
        if take > 0 {
            let reply = self.sqs.send_message_batch(&entries[..take]).await?;
            if take == entries.len() {
                return Ok(reply);
            }
        }
        std::future::pending().await
    }
}

async fn killed_after(world: &World, k: usize) {
    let fanout = fanout::Fanout::with_transport(
        &world.stack.config,
        settings(&world.stack),
        DiesAfter {
            sqs: sqs_transport(&world.stack),
            budget: AtomicUsize::new(k),
        },
    );
    let n = world.records.len();
    let killed = tokio::time::timeout(
        Duration::from_secs(5),
        fanout.process(world.event(0..n), Instant::now() + Duration::from_secs(60)),
    )
    .await;
    assert!(killed.is_err(), "the invocation was killed mid-send");
}

#[tokio::test]
async fn killed_after_k_of_n_entries_then_replayed_whole_or_bisected_one_message_id_each() {
    // Small batches: dozens of messages, so the kill lands mid-send.
    let world = World::new(300, 40, 59, true).await;
    let n = world.records.len();
    killed_after(&world, 7).await;
    let fanout = fanout::Fanout::new(&world.stack.config, settings(&world.stack));
    let deadline = || Instant::now() + Duration::from_secs(60);

    // Lambda bisects after a function error: the first half, then the
    // second; each finds the plan (the first by its key, the second by the
    // pointer the first wrote) and sends the planned messages.
    let half = n / 2;
    let first = fanout.process(world.event(0..half), deadline()).await;
    assert_eq!(first.first_failed, None, "{first:?}");
    assert_eq!(
        (first.plans_found, first.plans_created),
        (1, 0),
        "{first:?}"
    );
    assert_eq!(first.pointers_written, 1, "{first:?}");
    assert!(
        first.rebuilt > 0,
        "bodies of the second half read back: {first:?}"
    );
    let second = fanout.process(world.event(half..n), deadline()).await;
    assert_eq!(second.first_failed, None, "{second:?}");
    assert_eq!(
        (second.plans_found, second.plans_created),
        (1, 0),
        "{second:?}"
    );
    // And the whole batch again (a retry after a later crash).
    let whole = fanout.process(world.event(0..n), deadline()).await;
    assert_eq!(whole.first_failed, None, "{whole:?}");
    assert_eq!(whole.plans_created, 0);

    let received = world.stack.drain_deliveries().await;
    let expected = world.expected(n);
    let ids = message_ids(&received);
    assert!(
        ids.values().all(|ids| ids.len() == 1),
        "a transaction under two MessageIds"
    );
    assert_eq!(
        keys(&received),
        expected,
        "each batch once, in planned order"
    );
    assert_eq!(counts(&received), expected_counts(&expected));
    check_messages(&world, &received);
}

#[tokio::test]
async fn killed_after_k_of_n_entries_then_replayed_whole_one_message_id_each() {
    let world = World::new(300, 40, 61, true).await;
    let n = world.records.len();
    killed_after(&world, 13).await;
    let fanout = fanout::Fanout::new(&world.stack.config, settings(&world.stack));
    let replay = fanout
        .process(world.event(0..n), Instant::now() + Duration::from_secs(60))
        .await;
    assert_eq!(replay.first_failed, None, "{replay:?}");
    assert_eq!((replay.plans_found, replay.plans_created), (1, 0));
    let received = world.stack.drain_deliveries().await;
    let expected = world.expected(n);
    assert!(message_ids(&received).values().all(|ids| ids.len() == 1));
    assert_eq!(keys(&received), expected);
}

#[tokio::test]
async fn a_poison_record_mid_batch_is_parked_and_counted_and_its_neighbours_delivered() {
    let world = World::new(200, 0, 67, false).await;
    let n = world.records.len();
    let mut records = world.records.clone();
    // A record the fan-out cannot read, in the middle of the batch.
    let mut poison = records[n / 2].clone();
    poison.change.sequence_number = Some(format!("{}5", world.sequence(n / 2)));
    poison.change.new_image =
        serde_json::from_value(json!({"Broken": {"S": "not a transaction"}})).unwrap();
    records.insert(n / 2 + 1, poison);
    let fanout = fanout::Fanout::new(&world.stack.config, settings(&world.stack));
    let outcome = fanout
        .process(
            streams::event(&records),
            Instant::now() + Duration::from_secs(60),
        )
        .await;
    assert_eq!(outcome.first_failed, None, "never retried: {outcome:?}");
    assert_eq!((outcome.unreadable, outcome.parked), (1, 1), "{outcome:?}");
    let parked = fanout.plans().parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert!(
        parked[0].data.contains("not a transaction"),
        "kept with its data"
    );
    assert!(
        parked[0].reason.contains("not a stored transaction"),
        "{:?}",
        parked[0]
    );

    let received = world.stack.drain_deliveries().await;
    let expected = world.expected(n);
    assert_eq!(
        counts(&received),
        expected_counts(&expected),
        "every neighbour delivered"
    );
}

/// The registry names a customer id that is not one for a safe (an item
/// edited by hand): the safe's records are set aside as a configuration
/// error, parked and counted, never retried as if the read had failed, and
/// every other safe's records are delivered once.
#[tokio::test]
async fn a_safe_whose_owner_is_not_a_customer_id_is_parked_and_the_rest_delivered() {
    let world = World::new(160, 0, 73, false).await;
    let n = world.records.len();
    let bad = world.stored[0].serial_number.clone();
    let owner_key = platformsync_aws::config_table::keys::safe_owner(bad.as_str());
    world
        .stack
        .clients
        .dynamodb
        .put_item()
        .table_name(world.stack.reference("ConfigTable"))
        .item("PK", AttributeValue::S(owner_key.0))
        .item("SK", AttributeValue::S(owner_key.1))
        .item("CustomerId", AttributeValue::S("Not A Customer!".into()))
        .item("SerialNumber", AttributeValue::S(bad.to_string()))
        .send()
        .await
        .unwrap();
    let of_bad = world
        .stored
        .iter()
        .filter(|t| t.serial_number == bad)
        .count();
    assert!(of_bad > 0 && of_bad < n, "{of_bad} of {n}");

    let fanout = fanout::Fanout::new(&world.stack.config, settings(&world.stack));
    let outcome = fanout
        .process(
            streams::event(&world.records),
            Instant::now() + Duration::from_secs(60),
        )
        .await;
    assert_eq!(outcome.first_failed, None, "never retried: {outcome:?}");
    assert_eq!(outcome.invalid_owner, of_bad, "{outcome:?}");
    assert!(outcome.parked > 0, "{outcome:?}");
    let parked = fanout.plans().parked().await.unwrap();
    assert!(
        parked.iter().all(|p| p.data.contains(bad.as_str())),
        "kept with the safe's records: {parked:?}"
    );

    let received = world.stack.drain_deliveries().await;
    let mut expected = expected_counts(&world.expected(n));
    expected.retain(|(_, key), _| !key.starts_with(&format!("{bad}|")));
    assert_eq!(counts(&received), expected, "every other safe's, once");
}

/// Forwards to SQS, but SQS refuses one message for good (`SenderFault`),
/// as it does on every replay of a message it considers invalid.
struct RefusesOne {
    sqs: SqsTransport,
    dedup_id: Mutex<Option<String>>,
}

impl SendMessageBatch for RefusesOne {
    async fn send_message_batch(
        &self,
        entries: &[RequestEntry<'_>],
    ) -> Result<BatchReply, RequestError> {
        let bad_id = {
            let mut victim = self.dedup_id.lock().unwrap();
            entries
                .iter()
                .find(|e| {
                    e.batch.group_id.as_str() == "acme-audit"
                        && victim.get_or_insert_with(|| e.batch.dedup_id.clone())
                            == &e.batch.dedup_id
                })
                .map(|e| e.id.to_owned())
        };
        let good: Vec<RequestEntry<'_>> = entries
            .iter()
            .filter(|e| Some(e.id) != bad_id.as_deref())
            .copied()
            .collect();
        forward_refusing(&self.sqs, &good, bad_id, true, "InvalidMessageContents").await
    }
}

#[tokio::test]
async fn a_message_sqs_refuses_for_good_is_parked_with_its_keys_and_the_rest_delivered() {
    let world = World::new(300, 40, 71, true).await;
    let n = world.records.len();
    let fanout = fanout::Fanout::with_transport(
        &world.stack.config,
        settings(&world.stack),
        RefusesOne {
            sqs: sqs_transport(&world.stack),
            dedup_id: Mutex::default(),
        },
    );
    let outcome = fanout
        .process(world.event(0..n), Instant::now() + Duration::from_secs(60))
        .await;
    assert_eq!(outcome.first_failed, None, "never retried: {outcome:?}");
    assert_eq!(outcome.parked, 1, "{outcome:?}");
    let parked = fanout.plans().parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert!(parked[0].id.starts_with("MSG#"), "{:?}", parked[0]);
    assert!(parked[0].reason.contains("InvalidMessageContents"));
    let kept: serde_json::Value = serde_json::from_str(&parked[0].data).unwrap();
    let parked_keys: BTreeSet<String> = kept["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert!(!parked_keys.is_empty());

    // Everything else arrived, the endpoint's later messages included.
    let received = world.stack.drain_deliveries().await;
    let mut expected = expected_counts(&world.expected(n));
    expected.retain(|(group, key), _| !(group == "acme-audit" && parked_keys.contains(key)));
    assert_eq!(counts(&received), expected);
}

#[tokio::test]
async fn no_send_starts_near_the_deadline_and_the_batch_is_reported_for_retry() {
    let world = World::new(50, 0, 53, false).await;
    let n = world.records.len();
    let fanout = fanout::Fanout::new(&world.stack.config, settings(&world.stack));

    let late = fanout.process(world.event(0..n), Instant::now()).await;
    assert_eq!(late.sqs_requests, 0);
    assert_eq!(late.messages_sent, 0);
    assert_eq!(late.plans_created, 0, "no request starts near the deadline");
    assert_eq!(late.first_failed, Some(world.sequence(0)));
    assert!(!late.progress_saved, "nothing sent, nothing to remember");

    let response = fanout.handle(world.event(0..n)).await;
    assert!(response.batch_item_failures.is_empty());
    let received = world.stack.drain_deliveries().await;
    assert_eq!(counts(&received), expected_counts(&world.expected(n)));
}
