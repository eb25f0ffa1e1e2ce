//! Cost and capacity model (issue 16): the whole pipeline run once on the
//! local stack, every AWS request of the functions and of their event
//! sources counted, then priced per 1,000,000 transactions delivered.
//!
//! For each scenario (one endpoint, then three endpoints of one customer; a
//! fresh deployment each): `N` transactions (default 20,000; `--transactions
//! N` or `COST_TRANSACTIONS=N`) from 50 safes, uploaded in bodies of 1,000
//! through the ingest function (as the HTTP API hands them over), the
//! transactions table's stream read and handed to the fan-out in batches of
//! the template's `BatchSize`, the delivery queue received in batches of the
//! push mapping's `BatchSize` and handed to push, which POSTs to a local
//! HTTPS receiver answering 200; acknowledged messages then deleted with
//! `DeleteMessageBatch`, as Lambda's event source mapping does (and as the
//! local runner does). The run ends when the receiver has had every
//! transaction once per endpoint.
//!
//! Where each figure comes from:
//! - **Calls** per service and operation: the fault proxy's own counters
//!   (`platformsync-faults`, no rules), which every client of the functions
//!   and of this harness's event sources goes through. Set-up (deployment,
//!   customers, endpoints, keys) goes straight to the emulator and is not
//!   counted.
//! - **DynamoDB units**: computed, because our code does not ask for
//!   `ReturnConsumedCapacity` and moto reports a flat figure. From the bodies
//!   the proxy saw ([`platformsync_faults::FaultProxy::observe`]): a write is
//!   1 unit per started KB of the item written (a conditional put that fails
//!   is billed the same); an `UpdateItem` is sized by the item as it is after
//!   the run (read back at the end); a read is 1 unit per started 4 KB
//!   (strongly consistent) or half that (eventually consistent), a `Query`
//!   summing its items' sizes before rounding, a missing item billed the
//!   minimum; item sizes by DynamoDB's rules (names + values). Stream reads
//!   are free for Lambda triggers: counted, not priced.
//! - **SQS requests**: every call counted; billed per 64 KB chunk of the
//!   larger of the request and the answer body (SQS bills each 64 KB chunk of
//!   a payload as one request). Lambda's event source mapping polls SQS
//!   itself; this harness's receives (one poller, 1 s long polls, stopped
//!   when all is delivered) approximate the non-empty ones; an idle
//!   mapping's empty polls are extra, per hour not per transaction.
//! - **Lambda invocations**: counted here, per function; **GB-seconds**:
//!   each invocation's wall time in this process (against moto, on a shared
//!   2-core machine), rounded up to 1 ms as Lambda bills, times the
//!   function's `MemorySize` in template.yaml.
//! - **API Gateway requests**: the uploads (billed per 512 KB).
//!
//! Run with `make bench-cost` or
//! `infra/scripts/with-stack.sh cargo bench -p platformsync-tests --bench cost`
//! (`RUST_LOG=warn` to see the functions' logs). Figures: docs/capacity.md.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use platformsync_domain::testdata;
use platformsync_faults::{Exchange, FaultProxy};
use platformsync_tests::ids;
use platformsync_tests::receiver::{Receiver, Reply};
use platformsync_tests::{Stack, apigw, streams};
use serde_json::{Value, json};

const DEFAULT_TRANSACTIONS: usize = 20_000;
const SAFES: usize = 50;
const UPLOAD_SIZE: usize = 1_000;
const MILLION: f64 = 1_000_000.0;

/// List prices, us-east-1, as used on 2026-11-29 (docs/capacity.md).
mod price {
    /// DynamoDB on-demand, per write request unit.
    pub const WRU: f64 = 0.625 / 1e6;
    /// DynamoDB on-demand, per read request unit.
    pub const RRU: f64 = 0.125 / 1e6;
    /// SQS FIFO, per request (64 KB chunk).
    pub const SQS_FIFO: f64 = 0.50 / 1e6;
    /// Lambda arm64, per GB-second.
    pub const LAMBDA_GB_S: f64 = 0.000_013_333_4;
    /// Lambda, per invocation.
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// API Gateway HTTP API, per request (512 KB increments).
    pub const HTTP_API: f64 = 1.00 / 1e6;
    /// Secrets Manager, per API call.
    pub const SECRETS_CALL: f64 = 0.05 / 1e4;
    /// SNS, per publish (first million free, not counted here).
    pub const SNS_PUBLISH: f64 = 0.50 / 1e6;
    /// CloudWatch, per API request (`PutMetricData` and others).
    pub const CLOUDWATCH_REQUEST: f64 = 0.01 / 1e3;
    /// The floor the issue names: one write unit per transaction stored.
    pub const FLOOR_PER_MILLION: f64 = 0.79;
}

/// DynamoDB billing by table, computed from what the proxy saw.
#[derive(Default, Debug, Clone)]
struct TableUse {
    write_units: f64,
    read_units: f64,
    /// Calls per operation on this table.
    calls: BTreeMap<String, u64>,
    /// Queries/scans whose evaluated items exceed those returned (a filter):
    /// their units are scaled by evaluated / returned, an approximation.
    filtered: u64,
}

/// What the observer gathers.
#[derive(Default, Debug)]
struct Meter {
    /// Per table name.
    tables: BTreeMap<String, TableUse>,
    /// `UpdateItem` / `DeleteItem` targets, sized after the run: (table, key, factor).
    sized_later: Vec<(String, Value, f64)>,
    /// SQS: per operation, (calls, billed 64 KB chunks).
    sqs: BTreeMap<String, (u64, u64)>,
    sqs_empty_receives: u64,
    sqs_messages_received: u64,
    sqs_bytes_sent: u64,
}

impl Meter {
    fn table(&mut self, name: &str) -> &mut TableUse {
        self.tables.entry(name.to_owned()).or_default()
    }

    fn observe(&mut self, exchange: &Exchange<'_>) {
        let call = exchange.call;
        match call.service.as_str() {
            "dynamodb" => self.dynamodb(exchange),
            "sqs" => {
                let chunks = (exchange.request.len().max(exchange.response.len()) as u64)
                    .div_ceil(64 * 1024)
                    .max(1);
                let entry = self.sqs.entry(call.operation.clone()).or_default();
                entry.0 += 1;
                entry.1 += chunks;
                if call.operation == "SendMessageBatch" {
                    self.sqs_bytes_sent += exchange.request.len() as u64;
                }
                if call.operation == "ReceiveMessage" {
                    let answer: Value =
                        serde_json::from_slice(exchange.response).unwrap_or_default();
                    let n = answer["Messages"].as_array().map_or(0, Vec::len) as u64;
                    self.sqs_messages_received += n;
                    if n == 0 {
                        self.sqs_empty_receives += 1;
                    }
                }
            }
            _ => {}
        }
    }

    fn dynamodb(&mut self, exchange: &Exchange<'_>) {
        let op = exchange.call.operation.as_str();
        let request: Value = serde_json::from_slice(exchange.request).unwrap_or_default();
        let answer: Value = serde_json::from_slice(exchange.response).unwrap_or_default();
        // A failed condition is billed like the write; other errors are not
        // expected on a run without faults and are not billed here.
        let conditional_failure = exchange.status == 400
            && answer["__type"]
                .as_str()
                .is_some_and(|t| t.ends_with("ConditionalCheckFailedException"));
        if exchange.status != 200 && !conditional_failure {
            let table = request["TableName"].as_str().unwrap_or("?").to_owned();
            *self
                .table(&table)
                .calls
                .entry(format!("{op} (error {})", exchange.status))
                .or_default() += 1;
            return;
        }
        let consistent = |v: &Value| {
            if v["ConsistentRead"].as_bool() == Some(true) {
                1.0
            } else {
                0.5
            }
        };
        match op {
            "PutItem" => {
                let table = request["TableName"].as_str().unwrap_or("?").to_owned();
                let t = self.table(&table);
                t.write_units += write_units(item_size(&request["Item"]));
                *t.calls.entry(op.into()).or_default() += 1;
            }
            "UpdateItem" | "DeleteItem" => {
                let table = request["TableName"].as_str().unwrap_or("?").to_owned();
                *self.table(&table).calls.entry(op.into()).or_default() += 1;
                self.sized_later.push((table, request["Key"].clone(), 1.0));
            }
            "BatchWriteItem" => {
                for (table, requests) in request["RequestItems"].as_object().into_iter().flatten() {
                    let t = self.table(table);
                    *t.calls.entry(op.into()).or_default() += 1;
                    for r in requests.as_array().into_iter().flatten() {
                        t.write_units += if r["PutRequest"].is_object() {
                            write_units(item_size(&r["PutRequest"]["Item"]))
                        } else {
                            1.0
                        };
                    }
                }
            }
            "TransactWriteItems" => {
                for item in request["TransactItems"].as_array().into_iter().flatten() {
                    for (kind, body) in item.as_object().into_iter().flatten() {
                        let table = body["TableName"].as_str().unwrap_or("?").to_owned();
                        *self
                            .table(&table)
                            .calls
                            .entry(format!("{op}.{kind}"))
                            .or_default() += 1;
                        match kind.as_str() {
                            // Transactions bill twice the units.
                            "Put" => {
                                self.table(&table).write_units +=
                                    2.0 * write_units(item_size(&body["Item"]))
                            }
                            "ConditionCheck" => self.table(&table).read_units += 2.0,
                            _ => self.sized_later.push((table, body["Key"].clone(), 2.0)),
                        }
                    }
                }
            }
            "GetItem" => {
                let table = request["TableName"].as_str().unwrap_or("?").to_owned();
                let t = self.table(&table);
                t.read_units += read_units(item_size(&answer["Item"])) * consistent(&request);
                *t.calls.entry(op.into()).or_default() += 1;
            }
            "BatchGetItem" => {
                for (table, keys) in request["RequestItems"].as_object().into_iter().flatten() {
                    let factor = consistent(keys);
                    let asked = keys["Keys"].as_array().map_or(0, Vec::len);
                    let found = answer["Responses"][table]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let t = self.table(table);
                    *t.calls.entry(op.into()).or_default() += 1;
                    for item in &found {
                        t.read_units += read_units(item_size(item)) * factor;
                    }
                    // A key not found is billed the minimum read.
                    t.read_units += asked.saturating_sub(found.len()) as f64 * factor;
                }
            }
            "Query" | "Scan" => {
                let table = request["TableName"].as_str().unwrap_or("?").to_owned();
                let items = answer["Items"].as_array().cloned().unwrap_or_default();
                let mut bytes: f64 = items.iter().map(item_size).sum::<usize>() as f64;
                let count = answer["Count"].as_u64().unwrap_or(items.len() as u64);
                let scanned = answer["ScannedCount"].as_u64().unwrap_or(count);
                let t = self.table(&table);
                if scanned > count {
                    t.filtered += 1;
                    let per_item = if items.is_empty() {
                        1024.0
                    } else {
                        bytes / items.len() as f64
                    };
                    bytes = per_item * scanned as f64;
                }
                t.read_units += read_units(bytes.ceil() as usize) * consistent(&request);
                *t.calls.entry(op.into()).or_default() += 1;
            }
            other => {
                let table = request["TableName"].as_str().unwrap_or("?").to_owned();
                *self
                    .table(&table)
                    .calls
                    .entry(format!("{other} (not priced)"))
                    .or_default() += 1;
            }
        }
    }
}

/// Write units of one item: one per started KB, at least one.
fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

/// Strongly consistent read units of `bytes`: one per started 4 KB, at least one.
fn read_units(bytes: usize) -> f64 {
    bytes.div_ceil(4096).max(1) as f64
}

/// An item's size by DynamoDB's rules, from its wire JSON
/// (`{"Name": {"S": "..."}}`): each attribute's name plus its value.
fn item_size(item: &Value) -> usize {
    item.as_object()
        .map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum())
}

fn value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|m| m.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => number_size(inner.as_str().unwrap_or("0")),
        "B" => inner.as_str().map_or(0, |b| b.len() / 4 * 3),
        "BOOL" | "NULL" => 1,
        "SS" => inner
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().map_or(0, str::len))
            .sum(),
        "NS" => inner
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| number_size(s.as_str().unwrap_or("0")))
            .sum(),
        "BS" => inner
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| b.as_str().map_or(0, |b| b.len() / 4 * 3))
            .sum(),
        "L" => {
            3 + inner
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| 1 + value_size(v))
                .sum::<usize>()
        }
        "M" => {
            3 + inner
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// A number: about one byte per two significant digits, plus one.
fn number_size(n: &str) -> usize {
    let digits = n
        .trim_start_matches('-')
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>();
    let significant = digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len()
        .max(1);
    significant.div_ceil(2) + 1
}

/// Invocations and billed milliseconds of one function.
#[derive(Default, Debug, Clone)]
struct Invocations {
    count: u64,
    billed_ms: u64,
    max_ms: f64,
    memory_mb: u64,
}

impl Invocations {
    fn record(&mut self, took: Duration) {
        self.count += 1;
        let ms = took.as_secs_f64() * 1000.0;
        self.billed_ms += ms.ceil() as u64;
        self.max_ms = self.max_ms.max(ms);
    }

    fn gb_seconds(&self) -> f64 {
        self.billed_ms as f64 / 1000.0 * self.memory_mb as f64 / 1024.0
    }

    fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.billed_ms as f64 / self.count as f64
        }
    }
}

/// `MemorySize` of a function in template.yaml (its own, else `Globals`).
fn memory_mb(logical_id: &str) -> u64 {
    let template = platformsync_tests::template();
    template
        .resource(logical_id)
        .and_then(|r| r.properties.get("MemorySize").and_then(Value::as_u64))
        .or_else(|| {
            template
                .globals()
                .get("Function")
                .and_then(|f| f.get("MemorySize"))
                .and_then(Value::as_u64)
        })
        .unwrap_or(128)
}

/// The ingest function's `WRITE_CONCURRENCY` in template.yaml (its puts in
/// flight per upload), so durations are measured at the deployed setting.
fn ingest_write_concurrency() -> usize {
    platformsync_tests::template()
        .resource("IngestFunction")
        .and_then(|r| {
            r.properties
                .pointer("/Environment/Variables/WRITE_CONCURRENCY")
                .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()))
        })
        .map_or(16, |n| n as usize)
}

/// `BatchSize` of the event source mapping of `function` in template.yaml.
fn batch_size(function: &str) -> usize {
    let template = platformsync_tests::template();
    template
        .resources()
        .filter(|r| r.kind == "AWS::Lambda::EventSourceMapping")
        .find(|r| {
            r.properties
                .get("FunctionName")
                .is_some_and(|f| f.to_string().contains(function))
        })
        .and_then(|r| r.properties.get("BatchSize").and_then(Value::as_u64))
        .map_or(10, |b| b as usize)
}

fn transactions_wanted() -> usize {
    let mut args = std::env::args().skip_while(|a| a != "--transactions");
    args.nth(1)
        .or_else(|| std::env::var("COST_TRANSACTIONS").ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_TRANSACTIONS)
}

/// One scenario's measured run.
struct Run {
    endpoints: usize,
    transactions: usize,
    posts: usize,
    wall: Duration,
    stats: platformsync_faults::Stats,
    meter: Meter,
    functions: BTreeMap<&'static str, Invocations>,
    api_requests: u64,
    api_billed: u64,
    /// Messages push handed back (partial batch response): retried later.
    handed_back: usize,
}

#[tokio::main]
async fn main() {
    // The functions' logs (and their EMF metric lines) only when asked
    // for: RUST_LOG=warn shows why a call of ours failed.
    if std::env::var_os("RUST_LOG").is_some() {
        platformsync_aws::logging::init_lambda();
    }
    let n = transactions_wanted();
    let stream_batch = batch_size("FanoutFunction");
    let queue_batch = batch_size("PushFunction").clamp(1, 10);
    println!(
        "cost run: {n} transactions of {SAFES} safes, uploads of {UPLOAD_SIZE}, stream batches of {stream_batch}, \
         delivery batches of {queue_batch} messages; every AWS call through platformsync-faults (no rules)"
    );
    let upload: Value =
        serde_json::from_slice(&testdata::upload_json(n, SAFES, 29)).expect("test data is JSON");
    let items = upload["Transactions"].as_array().expect("transactions");
    let bodies: Vec<Vec<u8>> = items
        .chunks(UPLOAD_SIZE)
        .map(|c| serde_json::to_vec(&json!({ "Transactions": c })).expect("JSON"))
        .collect();
    let mut runs = Vec::new();
    for endpoints in [1, 3] {
        let run = run(&bodies, n, endpoints, stream_batch, queue_batch).await;
        print_run(&run);
        runs.push(run);
    }
    println!();
    println!(
        "summary (USD per 1,000,000 transactions delivered to every endpoint; floor {:.2})",
        price::FLOOR_PER_MILLION
    );
    for run in &runs {
        let total: f64 = costs(run).iter().map(|c| c.2).sum();
        println!(
            "  {} endpoint(s): ${total:.3} per million = {:.2}x the floor ({:.2}x one write unit per transaction at $0.625)",
            run.endpoints,
            total / price::FLOOR_PER_MILLION,
            total / 0.625,
        );
    }
}

async fn run(
    bodies: &[Vec<u8>],
    n: usize,
    endpoints: usize,
    stream_batch: usize,
    queue_batch: usize,
) -> Run {
    // Set-up, straight to the emulator: not counted.
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    receiver.set_default(Reply::ok());
    stack.add_customer("acme", "Acme", &[]).await;
    let ids: Vec<String> = (0..endpoints).map(|i| format!("acme-{i}")).collect();
    for id in &ids {
        stack
            .add_endpoint(
                "acme",
                id,
                &receiver.url(&format!("/{id}")),
                "k3y",
                json!({}),
            )
            .await;
    }
    let config = stack.config_store();
    for serial in testdata::serials(SAFES, 29) {
        config
            .assign_safe(&ids::safe(&serial), &ids::customer("acme"))
            .await
            .expect("safe assigned");
    }
    let ingest_key = stack.ingest_key().await;

    // Everything from here through the proxy.
    let proxy: FaultProxy = platformsync_tests::fault_proxy().await;
    let meter = Arc::new(Mutex::new(Meter::default()));
    let sink = meter.clone();
    proxy.observe(move |exchange| {
        sink.lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(exchange);
    });
    let through = stack.through(&proxy).await;
    let mut ingest_settings = stack.ingest_settings();
    ingest_settings.write_concurrency = ingest_write_concurrency();
    let ingest = ingest::Ingest::new(&through, ingest_settings);
    let mut fanout_settings = stack.fanout_settings();
    fanout_settings.transactions_table = Some(stack.reference("TransactionsTable"));
    let fanout = fanout::Fanout::new(&through, fanout_settings);
    let push = push::Push::new(&through, stack.push_settings(&receiver)).expect("push builds");
    let streams_client = aws_sdk_dynamodbstreams::Client::new(&through);
    let sqs = aws_sdk_sqs::Client::new(&through);
    let queue_url = stack.reference("DeliveryQueue");
    let queue_arn = stack.attribute("DeliveryQueue", "Arn");
    let mut functions: BTreeMap<&'static str, Invocations> = BTreeMap::new();
    for f in ["IngestFunction", "FanoutFunction", "PushFunction"] {
        functions.insert(
            f,
            Invocations {
                memory_mb: memory_mb(f),
                ..Default::default()
            },
        );
    }
    proxy.reset_stats();
    let started = Instant::now();

    // Ingest: one HTTP API request per upload.
    let (mut api_requests, mut api_billed) = (0, 0);
    for body in bodies {
        let t = Instant::now();
        let resp = ingest
            .handle(apigw::post("/v1/uploads", body, Some(&ingest_key)))
            .await;
        record(&mut functions, "IngestFunction", t.elapsed());
        assert_eq!(resp.status_code, 200, "{}", apigw::json(&resp));
        api_requests += 1;
        api_billed += (body.len() as u64).div_ceil(512 * 1024).max(1);
    }

    // Fan-out: the stream in the mapping's batches (the reads are Lambda's, free).
    let arn = stack.attribute("TransactionsTable", "StreamArn");
    let records = fanout::stream_reader::read_all(&streams_client, &arn)
        .await
        .expect("stream read");
    assert_eq!(records.len(), n, "one stream record per transaction");
    for chunk in records.chunks(stream_batch) {
        let t = Instant::now();
        let resp = fanout.handle(streams::event(chunk)).await;
        record(&mut functions, "FanoutFunction", t.elapsed());
        assert!(
            resp.batch_item_failures.is_empty(),
            "fan-out failed: {resp:?}"
        );
    }

    // Push: receive as the mapping does, invoke, delete what was acknowledged.
    let want = n * endpoints;
    let delivered = || {
        receiver
            .requests()
            .iter()
            .map(|r| r.json()["Transactions"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
    };
    let mut handed_back = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while delivered() < want {
        assert!(
            Instant::now() < deadline,
            "not delivered within 10 minutes: {} of {want}",
            delivered()
        );
        let messages = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(queue_batch as i32)
            .wait_time_seconds(1)
            // As the local runner does (--sqs-visibility-timeout): a batch
            // handed back when push's own backoff call failed comes back in
            // 30 s, not after the queue's 21 minutes.
            .visibility_timeout(30)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        let t = Instant::now();
        let resp = push.handle(push::sqs_event(&queue_arn, &messages)).await;
        record(&mut functions, "PushFunction", t.elapsed());
        handed_back += resp.batch_item_failures.len();
        let done = push::acknowledged(&messages, &resp);
        if !done.is_empty() {
            sqs.delete_message_batch()
                .queue_url(&queue_url)
                .set_entries(Some(done))
                .send()
                .await
                .expect("delete acknowledged");
        }
    }
    let wall = started.elapsed();
    let stats = proxy.stats();
    proxy.stop_observing();
    let posts = receiver.count();
    assert_eq!(
        delivered(),
        want,
        "every transaction delivered once per endpoint"
    );

    // UpdateItem / DeleteItem targets: sized as they are now.
    let mut meter = std::mem::take(&mut *meter.lock().unwrap_or_else(|e| e.into_inner()));
    let later = std::mem::take(&mut meter.sized_later);
    let mut sizes: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (table, key, factor) in later {
        let id = (table.clone(), key.to_string());
        if !sizes.contains_key(&id) {
            sizes.insert(id.clone(), current_size(&stack, &table, &key).await);
        }
        meter.table(&table).write_units += factor * write_units(sizes[&id]);
    }
    Run {
        endpoints,
        transactions: n,
        posts,
        wall,
        stats,
        meter,
        functions,
        api_requests,
        api_billed,
        handed_back,
    }
}

fn record(functions: &mut BTreeMap<&'static str, Invocations>, f: &'static str, took: Duration) {
    if let Some(i) = functions.get_mut(f) {
        i.record(took);
    }
}

/// The size of the item at `key` now (0 if gone: billed the minimum).
async fn current_size(stack: &Stack, table: &str, key: &Value) -> usize {
    let key: std::collections::HashMap<String, AttributeValue> =
        serde_json::from_value::<BTreeMap<String, Value>>(key.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| {
                let v = v.as_object()?;
                let (kind, inner) = v.iter().next()?;
                let inner = inner.as_str()?.to_owned();
                Some((
                    k,
                    if kind == "N" {
                        AttributeValue::N(inner)
                    } else {
                        AttributeValue::S(inner)
                    },
                ))
            })
            .collect();
    let out = stack
        .clients
        .dynamodb
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .send()
        .await
        .expect("item read back");
    let Some(item) = out.item() else { return 0 };
    let json: serde_json::Map<String, Value> = item
        .iter()
        .map(|(k, v)| (k.clone(), attribute_json(v)))
        .collect();
    item_size(&Value::Object(json))
}

/// An SDK attribute value in wire JSON, for [`item_size`].
fn attribute_json(v: &AttributeValue) -> Value {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": b64(b.as_ref()) }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::Ss(s) => json!({ "SS": s }),
        AttributeValue::Ns(s) => json!({ "NS": s }),
        AttributeValue::Bs(s) => {
            json!({ "BS": s.iter().map(|b| b64(b.as_ref())).collect::<Vec<_>>() })
        }
        AttributeValue::L(l) => json!({ "L": l.iter().map(attribute_json).collect::<Vec<_>>() }),
        AttributeValue::M(m) => {
            json!({ "M": m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<serde_json::Map<_, _>>() })
        }
        _ => Value::Null,
    }
}

/// (what, count in the run, USD per million transactions)
fn costs(run: &Run) -> Vec<(String, f64, f64)> {
    let per_million = MILLION / run.transactions as f64;
    let mut out = Vec::new();
    for (table, t) in &run.meter.tables {
        if t.write_units > 0.0 {
            out.push((
                format!("DynamoDB WRU {}", short(table)),
                t.write_units,
                t.write_units * per_million * price::WRU,
            ));
        }
        if t.read_units > 0.0 {
            out.push((
                format!("DynamoDB RRU {}", short(table)),
                t.read_units,
                t.read_units * per_million * price::RRU,
            ));
        }
    }
    for (op, (_, billed)) in &run.meter.sqs {
        out.push((
            format!("SQS {op} (64 KB chunks)"),
            *billed as f64,
            *billed as f64 * per_million * price::SQS_FIFO,
        ));
    }
    for (f, i) in &run.functions {
        out.push((
            format!("Lambda {f} invocations"),
            i.count as f64,
            i.count as f64 * per_million * price::LAMBDA_REQUEST,
        ));
        out.push((
            format!("Lambda {f} GB-s"),
            i.gb_seconds(),
            i.gb_seconds() * per_million * price::LAMBDA_GB_S,
        ));
    }
    out.push((
        "HTTP API requests (512 KB units)".into(),
        run.api_billed as f64,
        run.api_billed as f64 * per_million * price::HTTP_API,
    ));
    let secrets = run.stats.service_calls("secretsmanager") as f64;
    out.push((
        "Secrets Manager calls".into(),
        secrets,
        secrets * per_million * price::SECRETS_CALL,
    ));
    let sns = run.stats.calls("sns", "Publish") as f64;
    out.push((
        "SNS Publish".into(),
        sns,
        sns * per_million * price::SNS_PUBLISH,
    ));
    let cw = run.stats.service_calls("monitoring") as f64;
    out.push((
        "CloudWatch API calls".into(),
        cw,
        cw * per_million * price::CLOUDWATCH_REQUEST,
    ));
    out
}

/// A table's name without the stage prefix.
fn short(table: &str) -> String {
    table.rsplit('-').next().unwrap_or(table).to_owned()
}

fn print_run(run: &Run) {
    let per_million = MILLION / run.transactions as f64;
    println!();
    println!(
        "== {} endpoint(s): {} transactions delivered to each ({} POSTs, {} messages handed back by push and retried), {:.1} s wall",
        run.endpoints,
        run.transactions,
        run.posts,
        run.handed_back,
        run.wall.as_secs_f64()
    );
    println!(
        "-- calls seen by the proxy (per service and operation), and per 1,000,000 transactions"
    );
    for op in &run.stats.calls {
        println!(
            "   {:<18} {:<28} {:>8} {:>12.0}",
            op.service,
            op.operation,
            op.calls,
            op.calls as f64 * per_million
        );
    }
    println!(
        "-- DynamoDB by table (units computed from item sizes, see the header of tests/benches/cost.rs)"
    );
    for (table, t) in &run.meter.tables {
        println!(
            "   {:<28} WCU {:>9.1} ({:>9.0}/M)  RCU {:>9.1} ({:>9.0}/M)  calls {:?}{}",
            short(table),
            t.write_units,
            t.write_units * per_million,
            t.read_units,
            t.read_units * per_million,
            t.calls,
            if t.filtered > 0 {
                format!("  ({} filtered queries, scaled)", t.filtered)
            } else {
                String::new()
            },
        );
    }
    println!(
        "-- SQS: {} messages received in {} non-empty receives ({} empty); {:.0} KB sent in SendMessageBatch",
        run.meter.sqs_messages_received,
        run.meter.sqs.get("ReceiveMessage").map_or(0, |r| r.0) - run.meter.sqs_empty_receives,
        run.meter.sqs_empty_receives,
        run.meter.sqs_bytes_sent as f64 / 1024.0
    );
    for (op, (calls, billed)) in &run.meter.sqs {
        println!(
            "   {op:<28} calls {calls:>6}  billed {billed:>6} ({:>8.0}/M)",
            *billed as f64 * per_million
        );
    }
    println!("-- Lambda (invocations counted by this harness; GB-s = billed ms x MemorySize)");
    for (f, i) in &run.functions {
        println!(
            "   {f:<16} {:>4} MB  invocations {:>5} ({:>7.0}/M)  mean {:>8.1} ms  max {:>8.1} ms  GB-s {:>8.3} ({:>8.1}/M)",
            i.memory_mb,
            i.count,
            i.count as f64 * per_million,
            i.mean_ms(),
            i.max_ms,
            i.gb_seconds(),
            i.gb_seconds() * per_million
        );
    }
    println!(
        "-- HTTP API: {} requests ({} billed 512 KB units)",
        run.api_requests, run.api_billed
    );
    println!("-- cost per 1,000,000 transactions (USD, us-east-1 list prices of 2026-11-29)");
    let mut total = 0.0;
    for (what, count, usd) in costs(run) {
        total += usd;
        println!("   {what:<44} {count:>12.1} in run  ${usd:>8.4}");
    }
    println!(
        "   {:<44} {:>12}         ${total:>8.4}  = {:.2}x the floor of ${:.2}",
        "TOTAL",
        "",
        total / price::FLOOR_PER_MILLION,
        price::FLOOR_PER_MILLION
    );
}
