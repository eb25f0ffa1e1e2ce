//! The fan-out function against the local stack: transactions ingested for
//! real, read back from the table's DynamoDB stream, fanned out to the FIFO
//! delivery queue and received from it. Every batch lands at the right
//! endpoint, ordered, sized and exactly once, also when SQS fails entries
//! and when Lambda replays a partially failed batch.

use aws_lambda_events::dynamodb::EventRecord;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use platformsync_aws::config_table::ConfigStore;
use platformsync_aws::delivery_queue::{
    BatchReply, EntryError, RequestEntry, RequestError, SendMessageBatch, SqsTransport,
};
use platformsync_aws::fanout_progress;
use platformsync_aws::transactions::StoredTransaction;
use platformsync_domain::batch::{BatchEntry, BatchMessage};
use platformsync_domain::endpoint::{Customer, CustomerId, EndpointSettings};
use platformsync_domain::testdata;
use platformsync_domain::types::MessageKind;
use platformsync_tests::{Stack, apigw, streams};
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
    let mut value = json!({
        "EndpointId": id,
        "CustomerId": customer,
        "Url": format!("https://{id}.example.com/push"),
        "ApiKeySecret": format!("platformsync/test/endpoints/{id}"),
    });
    if let (Some(base), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    serde_json::from_value(value).unwrap()
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
        let config = ConfigStore::new(
            aws_sdk_dynamodb::Client::new(&stack.config),
            stack.reference("ConfigTable"),
        );
        for (id, name) in [("acme", "Acme Stores"), ("globex", "Globex Retail")] {
            config
                .put_customer(&Customer {
                    customer_id: CustomerId::parse(id).unwrap(),
                    name: name.into(),
                    notification_recipients: vec![],
                })
                .await
                .unwrap();
        }
        let cases = endpoint_cases(small_batches);
        for case in &cases {
            config.put_endpoint(&case.settings).await.unwrap();
        }
        let mut owners = BTreeMap::new();
        for (i, serial) in testdata::serials(SAFES, seed).into_iter().enumerate() {
            let customer = if i < 4 { "acme" } else { "globex" };
            config.assign_safe(&serial, customer).await.unwrap();
            owners.insert(serial, customer.to_owned());
        }

        let upload: serde_json::Value = serde_json::from_slice(&testdata::upload_json_with_audits(
            transactions,
            audits,
            SAFES,
            seed,
        ))
        .unwrap();
        let ingest = stack.ingest();
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
                let r = apigw::json(&resp);
                assert_eq!(resp.status_code, 200, "{r}");
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
        BatchEntry::key_of(&s.serial_number, &s.sort_key)
    }

    fn wanted_by(&self, case: &EndpointCase, index: usize) -> bool {
        let s = &self.stored[index];
        let e = &case.settings;
        let kind = MessageKind::from_wire_name(&s.kind).unwrap();
        self.owners[&s.serial_number] == e.customer_id.as_str()
            && e.enabled
            && e.message_types.contains(&kind)
            && case
                .wants
                .is_none_or(|types| types.contains(&s.transaction_type.as_str()))
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
                        .filter(|&i| self.stored[i].kind == kind.wire_name())
                        .filter(|&i| self.wanted_by(case, i))
                        .map(|i| {
                            let s = &self.stored[i];
                            let time = s.sort_key.split('#').next().unwrap().to_owned();
                            (time, s.serial_number.clone(), self.key(i))
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

/// Receives (and deletes) everything on the delivery queue: per group, the
/// messages in the order the group delivered them.
async fn drain(stack: &Stack) -> BTreeMap<String, Vec<BatchMessage>> {
    let sqs = &stack.clients.sqs;
    let url = stack.reference("DeliveryQueue");
    let mut received: BTreeMap<String, Vec<BatchMessage>> = BTreeMap::new();
    let mut empty_polls = 0;
    while empty_polls < 2 {
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            empty_polls += 1;
            continue;
        }
        empty_polls = 0;
        for m in out.messages() {
            let group = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
                .unwrap();
            let body: BatchMessage = serde_json::from_str(m.body().unwrap()).unwrap();
            received.entry(group).or_default().push(body);
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    received
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
                    world.owners[&stored.serial_number],
                    m.customer_id.as_str(),
                    "transaction of another customer's safe in {group}"
                );
                assert_eq!(stored.kind, m.kind.wire_name(), "one kind per batch");
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
    let fanout = world.stack.fanout();
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
                assert_eq!(outcome.safes_read, 0, "owners come from the cache");
            }
        }
    }

    let received = drain(&world.stack).await;
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
                injected.push(EntryError {
                    id: e.id.to_owned(),
                    sender_fault: false,
                    code: "InternalError".into(),
                    message: "injected".into(),
                });
            } else {
                forward.push(*e);
            }
        }
        let mut reply = if forward.is_empty() {
            BatchReply::default()
        } else {
            self.sqs.send_message_batch(&forward).await?
        };
        reply.failed.extend(injected);
        Ok(reply)
    }
}

#[tokio::test]
async fn sqs_entry_failures_in_the_middle_of_a_request_are_retried_and_nothing_is_lost() {
    // Batch sizes of 10: many messages, so failures land mid-request.
    let world = World::new(400, 60, 43, true).await;
    let mut settings = world.stack.fanout_settings();
    settings.send_backoff = Duration::from_millis(5);
    let transport = EveryThirdFailsOnce {
        sqs: SqsTransport::new(
            aws_sdk_sqs::Client::new(&world.stack.config),
            world.stack.reference("DeliveryQueue"),
        ),
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
        outcome.retried_entries >= outcome.batches / 3,
        "a third of the entries failed once and were retried: {outcome:?}"
    );

    let received = drain(&world.stack).await;
    let expected = world.expected(n);
    let total: usize = expected.values().map(Vec::len).sum();
    assert!(total > 30, "enough messages for several requests: {total}");
    // Every batch arrived once, intact; only the order of a retried batch
    // relative to its group's later ones may differ.
    let mut got = keys(&received);
    let mut want = expected.clone();
    for batches in got.values_mut().chain(want.values_mut()) {
        batches.sort();
    }
    assert_eq!(got, want);
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
            .partition(|e| failing && e.batch.group_id == self.group);
        let mut reply = if good.is_empty() {
            BatchReply::default()
        } else {
            self.sqs.send_message_batch(&good).await?
        };
        reply.failed.extend(bad.iter().map(|e| EntryError {
            id: e.id.to_owned(),
            sender_fault: false,
            code: "ServiceUnavailable".into(),
            message: "injected".into(),
        }));
        Ok(reply)
    }
}

#[tokio::test]
async fn a_partially_failed_batch_is_replayed_without_pushing_anything_twice() {
    let world = World::new(600, 100, 47, false).await;
    let n = world.records.len();
    let failing = Arc::new(AtomicBool::new(true));
    let mut settings = world.stack.fanout_settings();
    settings.send_attempts = 2;
    settings.send_backoff = Duration::from_millis(5);
    let transport = GroupFails {
        sqs: SqsTransport::new(
            aws_sdk_sqs::Client::new(&world.stack.config),
            world.stack.reference("DeliveryQueue"),
        ),
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
    assert!(outcome.progress_saved > 0, "{outcome:?}");

    // What was remembered: pairs of records from the failed one on, never
    // the failing endpoint.
    let progress = platformsync_aws::fanout_progress::FanoutProgress::new(
        aws_sdk_dynamodb::Client::new(&world.stack.config),
        world.stack.reference("ConfigTable"),
    );
    let pairs = progress.load(&world.sequence(first_globex)).await.unwrap();
    assert_eq!(pairs.len(), outcome.progress_saved);
    let replayed: BTreeSet<String> = (first_globex..n).map(|i| world.sequence(i)).collect();
    assert!(
        pairs
            .iter()
            .all(|(seq, ep)| replayed.contains(seq) && ep != "globex-cash")
    );
    let item = world
        .stack
        .clients
        .dynamodb
        .get_item()
        .table_name(world.stack.reference("ConfigTable"))
        .key(
            "PK",
            aws_sdk_dynamodb::types::AttributeValue::S(
                fanout_progress::key(&world.sequence(first_globex)).0,
            ),
        )
        .key(
            "SK",
            aws_sdk_dynamodb::types::AttributeValue::S("DONE".into()),
        )
        .send()
        .await
        .unwrap();
    assert!(
        item.item().and_then(|i| i.get("ExpiresAt")).is_some(),
        "progress items expire"
    );

    // Lambda replays from the reported record; SQS recovers.
    failing.store(false, Ordering::SeqCst);
    let replay = fanout
        .process(
            world.event(first_globex..n),
            Instant::now() + Duration::from_secs(60),
        )
        .await;
    assert_eq!(replay.first_failed, None, "{replay:?}");
    assert_eq!(
        replay.already_sent,
        pairs.len(),
        "every remembered pair skipped"
    );

    // Each endpoint got each of its transactions exactly once.
    let received = drain(&world.stack).await;
    let expected = world.expected(n);
    assert_eq!(counts(&received), expected_counts(&expected));
    check_messages(&world, &received);
}

#[tokio::test]
async fn no_send_starts_near_the_deadline_and_the_batch_is_reported_for_retry() {
    let world = World::new(50, 0, 53, false).await;
    let n = world.records.len();
    let fanout = world.stack.fanout();

    let late = fanout.process(world.event(0..n), Instant::now()).await;
    assert_eq!(late.sqs_requests, 0);
    assert_eq!(late.messages_sent, 0);
    assert!(late.batches > 0);
    assert_eq!(late.first_failed, Some(world.sequence(0)));
    assert_eq!(late.progress_saved, 0, "nothing sent, nothing to remember");

    let response = fanout.handle(world.event(0..n)).await;
    assert!(response.batch_item_failures.is_empty());
    let received = drain(&world.stack).await;
    assert_eq!(counts(&received), expected_counts(&world.expected(n)));
}
