//! The fault proxy over the wire: real SDK clients, through the proxy, to the
//! moto server that `infra/scripts/local-stack.sh up` starts
//! (`source .local/<state>/stack.env` first). Without `AWS_ENDPOINT_URL` the
//! tests say so and pass without running, like nothing else could reach a
//! real account.

use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use platformsync_faults::{Fault, FaultProxy, Rule, Stats, Upstreams};

mod common;
use common::{proxy, upstreams};

/// SDK configuration through the proxy: `attempts` in standard retry mode
/// with short backoffs (the test's time, not the SDK's behaviour, is
/// compressed), optionally an operation timeout. The endpoint is set on the
/// loader, so it wins over every `AWS_ENDPOINT_URL_<SERVICE>` of the
/// environment too: every service goes through the proxy.
async fn config(
    proxy: &FaultProxy,
    attempts: u32,
    timeout: Option<Duration>,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(proxy.url())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(attempts)
                .with_initial_backoff(Duration::from_millis(10))
                .with_max_backoff(Duration::from_millis(100)),
        );
    if let Some(timeout) = timeout {
        loader = loader.timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build());
    }
    loader.load().await
}

fn name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// `CreateTable` of a fresh table keyed by a string `pk`, not sent yet
/// (a test adds a stream to it), and the table's name.
fn new_table(
    ddb: &aws_sdk_dynamodb::Client,
) -> (
    String,
    aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder,
) {
    let table = name("faults");
    let request = ddb
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        );
    (table, request)
}

async fn table(ddb: &aws_sdk_dynamodb::Client) -> String {
    let (table, request) = new_table(ddb);
    request
        .send()
        .await
        .expect("table created through the proxy");
    table
}

async fn put(ddb: &aws_sdk_dynamodb::Client, table: &str, pk: &str) -> Result<(), String> {
    ddb.put_item()
        .table_name(table)
        .item("pk", AttributeValue::S(pk.to_owned()))
        .item("v", AttributeValue::N("1".to_owned()))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("{:?}", e.code()))
}

async fn exists(ddb: &aws_sdk_dynamodb::Client, table: &str, pk: &str) -> bool {
    ddb.get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("get item")
        .item
        .is_some()
}

#[tokio::test]
async fn unmatched_traffic_passes_through_unchanged_and_is_counted() {
    let Some(proxy) = proxy().await else { return };
    // A rule for another operation must not touch these calls.
    proxy.add_rule(Rule::new("dynamodb", "DeleteTable", Fault::AccessDenied));
    let ddb = aws_sdk_dynamodb::Client::new(&config(&proxy, 1, None).await);
    let table = table(&ddb).await;
    put(&ddb, &table, "a").await.expect("put passes");
    let item = ddb
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("a".into()))
        .send()
        .await
        .expect("get passes")
        .item
        .expect("the item the put stored");
    assert_eq!(item["v"], AttributeValue::N("1".into()));

    let stats = proxy.stats();
    assert_eq!(stats.calls("dynamodb", "CreateTable"), 1);
    assert_eq!(stats.calls("dynamodb", "PutItem"), 1);
    assert_eq!(stats.calls("dynamodb", "GetItem"), 1);
    assert_eq!(stats.service_calls("dynamodb"), 3);
    assert_eq!(stats.rules[0].matched, 0);
    assert!(stats.calls.iter().all(|c| c.failed == 0), "{stats:?}");
}

#[tokio::test]
async fn throttling_limited_to_two_calls_is_absorbed_by_sdk_retries() {
    let Some(proxy) = proxy().await else { return };
    // Three attempts: the SDK's default; two throttled, the third passes.
    let ddb = aws_sdk_dynamodb::Client::new(&config(&proxy, 3, None).await);
    let table = table(&ddb).await;
    proxy.add_rule(Rule::new("dynamodb", "PutItem", Fault::Throttle).times(2));

    put(&ddb, &table, "a")
        .await
        .expect("retries absorb two throttles");
    assert!(exists(&ddb, &table, "a").await);

    let stats = proxy.stats();
    assert_eq!(stats.calls("dynamodb", "PutItem"), 3, "{stats:?}");
    assert_eq!(stats.failed("dynamodb", "PutItem"), 2);
    assert_eq!(stats.rules[0].failed, 2);
    assert!(!stats.rules[0].active, "spent after two");

    // Spent: the next put goes straight through.
    put(&ddb, &table, "b").await.expect("second put");
    assert_eq!(proxy.stats().calls("dynamodb", "PutItem"), 4);
}

#[tokio::test]
async fn throttling_beyond_the_attempts_surfaces_as_the_services_throttling_error() {
    let Some(proxy) = proxy().await else { return };
    let ddb = aws_sdk_dynamodb::Client::new(&config(&proxy, 3, None).await);
    let table = table(&ddb).await;
    proxy.add_rule(Rule::new("dynamodb", "PutItem", Fault::Throttle));
    let err = ddb
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("a".into()))
        .send()
        .await
        .expect_err("every attempt throttled");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_provisioned_throughput_exceeded_exception()),
        "{err:?}"
    );
    // Retried as throttling: all three attempts were made.
    assert_eq!(proxy.stats().calls("dynamodb", "PutItem"), 3);
}

#[tokio::test]
async fn access_denied_on_send_message_batch_is_a_service_error_and_not_retried() {
    let Some(proxy) = proxy().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config(&proxy, 3, None).await);
    let queue = sqs
        .create_queue()
        .queue_name(name("faults"))
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("queue url");
    proxy.add_rule(Rule::new("sqs", "SendMessageBatch", Fault::AccessDenied));

    let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
        .id("1")
        .message_body("hello")
        .build()
        .unwrap();
    let err = sqs
        .send_message_batch()
        .queue_url(&queue)
        .entries(entry)
        .send()
        .await
        .expect_err("denied");
    let service = err
        .as_service_error()
        .expect("a service error, not a transport one");
    // Real SQS (JSON, query-compatible) answers `__type` AccessDeniedException
    // with `x-amzn-query-error: AccessDenied;Sender`; the SDK reports the
    // query code, as it would for the real service.
    assert_eq!(service.code(), Some("AccessDenied"), "{err:?}");
    assert!(
        service
            .message()
            .unwrap_or_default()
            .contains("SendMessageBatch")
    );
    assert_eq!(
        proxy.stats().calls("sqs", "SendMessageBatch"),
        1,
        "not retried"
    );

    // Other operations of the queue are untouched.
    sqs.send_message()
        .queue_url(&queue)
        .message_body("hello")
        .send()
        .await
        .expect("SendMessage passes");
}

#[tokio::test]
async fn sns_publish_throttled_returns_a_parseable_throttling_error() {
    let Some(proxy) = proxy().await else { return };
    let sns = aws_sdk_sns::Client::new(&config(&proxy, 1, None).await);
    let topic = sns
        .create_topic()
        .name(name("faults"))
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("topic arn");
    proxy.add_rule(Rule::new("sns", "Publish", Fault::Throttle).times(1));

    let err = sns
        .publish()
        .topic_arn(&topic)
        .message("hi")
        .send()
        .await
        .expect_err("throttled");
    let service = err.as_service_error().expect("a parsed service error");
    assert_eq!(service.code(), Some("Throttling"), "{err:?}");
    assert!(
        aws_sdk_sns::operation::RequestId::request_id(service)
            .is_some_and(|id| id.starts_with("faults-"))
    );

    sns.publish()
        .topic_arn(&topic)
        .message("hi")
        .send()
        .await
        .expect("the rule is spent");
    let stats = proxy.stats();
    assert_eq!(stats.calls("sns", "Publish"), 2);
    assert_eq!(stats.failed("sns", "Publish"), 1);
}

#[tokio::test]
async fn a_time_window_rule_stops_after_its_window() {
    let Some(proxy) = proxy().await else { return };
    let ddb = aws_sdk_dynamodb::Client::new(&config(&proxy, 1, None).await);
    let table = table(&ddb).await;
    let window = Duration::from_millis(1500);
    proxy.add_rule(Rule::new("dynamodb", "PutItem", Fault::Internal).for_duration(window));
    let start = Instant::now();

    assert_eq!(
        put(&ddb, &table, "a").await,
        Err("Some(\"InternalServerError\")".to_owned())
    );
    assert_eq!(
        put(&ddb, &table, "a").await,
        Err("Some(\"InternalServerError\")".to_owned())
    );
    tokio::time::sleep(window.saturating_sub(start.elapsed()) + Duration::from_millis(100)).await;
    put(&ddb, &table, "a").await.expect("window over");
    let stats: Stats = proxy.stats();
    assert_eq!(stats.rules[0].failed, 2);
    assert!(!stats.rules[0].active);
}

#[tokio::test]
async fn a_hang_makes_an_operation_timeout_fire_and_the_request_still_lands() {
    let Some(proxy) = proxy().await else { return };
    let setup = aws_sdk_dynamodb::Client::new(&config(&proxy, 1, None).await);
    let table = table(&setup).await;
    let ddb =
        aws_sdk_dynamodb::Client::new(&config(&proxy, 1, Some(Duration::from_millis(300))).await);
    proxy.add_rule(
        Rule::new(
            "dynamodb",
            "PutItem",
            Fault::Hang {
                seconds: 1.0,
                forward: true,
            },
        )
        .times(1),
    );

    let started = Instant::now();
    let err = ddb
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("late".into()))
        .send()
        .await
        .expect_err("times out");
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(900));

    // Forwarded after the hold although the client gave up: like AWS, the
    // write may take effect after the caller's timeout.
    assert!(!exists(&setup, &table, "late").await);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(exists(&setup, &table, "late").await);
}

#[tokio::test]
async fn a_dropped_hang_never_reaches_the_emulator() {
    let Some(proxy) = proxy().await else { return };
    let setup = aws_sdk_dynamodb::Client::new(&config(&proxy, 1, None).await);
    let table = table(&setup).await;
    proxy.add_rule(
        Rule::new(
            "dynamodb",
            "PutItem",
            Fault::Hang {
                seconds: 0.2,
                forward: false,
            },
        )
        .times(1),
    );
    let err = put(&setup, &table, "dropped").await;
    assert!(err.is_err(), "the connection closed without an answer");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!exists(&setup, &table, "dropped").await);
}

#[tokio::test]
async fn a_lost_answer_lands_the_write_and_the_client_sees_no_answer() {
    let Some(proxy) = proxy().await else { return };
    let setup = aws_sdk_dynamodb::Client::new(&config(&proxy, 1, None).await);
    let table = table(&setup).await;
    let ddb =
        aws_sdk_dynamodb::Client::new(&config(&proxy, 1, Some(Duration::from_millis(500))).await);
    proxy.add_rule(Rule::new("dynamodb", "PutItem", Fault::LoseAnswer { seconds: 5.0 }).times(1));
    let err = ddb
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("landed".into()))
        .send()
        .await
        .expect_err("no answer");
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    // Carried out before the client gave up: already there, no waiting.
    assert!(exists(&setup, &table, "landed").await);
    assert_eq!(proxy.stats().failed("dynamodb", "PutItem"), 1);
}

#[tokio::test]
async fn secrets_manager_kms_failure_is_decryption_failure() {
    let Some(proxy) = proxy().await else { return };
    let sm = aws_sdk_secretsmanager::Client::new(&config(&proxy, 3, None).await);
    let secret = name("faults");
    sm.create_secret()
        .name(&secret)
        .secret_string("s3cr3t")
        .send()
        .await
        .expect("secret");
    proxy.add_rule(Rule::new("secretsmanager", "GetSecretValue", Fault::Kms));
    let err = sm
        .get_secret_value()
        .secret_id(&secret)
        .send()
        .await
        .expect_err("kms");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_decryption_failure()),
        "{err:?}"
    );
    assert_eq!(proxy.stats().calls("secretsmanager", "GetSecretValue"), 1);
}

/// One HTTP/1.1 request to the proxy's control endpoint.
async fn control(proxy: &FaultProxy, method: &str, path: &str, body: &str) -> (u16, String) {
    common::http(&proxy.addr().to_string(), method, path, body).await
}

#[tokio::test]
async fn the_control_endpoint_round_trips_rules_and_drives_the_proxy() {
    let Some(proxy) = proxy().await else { return };
    let rules = r#"[{"service":"dynamodb","operation":"PutItem","fault":"access_denied","times":1},
                    {"service":"sqs","fault":{"hang":{"seconds":2.5}},"for_seconds":60,"after":3}]"#;
    let (status, body) = control(&proxy, "POST", "/__faults", rules).await;
    assert_eq!(status, 200, "{body}");
    let posted: Stats = serde_json::from_str(&body).unwrap();
    assert_eq!(posted.rules.len(), 2);

    let (status, body) = control(&proxy, "GET", "/__faults", "").await;
    assert_eq!(status, 200);
    let got: Stats = serde_json::from_str(&body).unwrap();
    let expected = vec![
        Rule::new("dynamodb", "PutItem", Fault::AccessDenied).times(1),
        Rule::new(
            "sqs",
            "*",
            Fault::Hang {
                seconds: 2.5,
                forward: true,
            },
        )
        .for_duration(Duration::from_secs(60))
        .after(3),
    ];
    assert_eq!(
        got.rules.iter().map(|r| r.rule.clone()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(proxy.stats().rules.len(), 2, "the same state in process");

    // A POSTed rule acts on SDK traffic.
    let ddb = aws_sdk_dynamodb::Client::new(&config(&proxy, 3, None).await);
    let table = table(&ddb).await;
    assert_eq!(
        put(&ddb, &table, "a").await,
        Err("Some(\"AccessDeniedException\")".to_owned())
    );
    let (_, body) = control(&proxy, "GET", "/__faults", "").await;
    let got: Stats = serde_json::from_str(&body).unwrap();
    assert_eq!(got.rules[0].failed, 1);
    assert_eq!(got.calls("dynamodb", "PutItem"), 1);

    // Appending, refusing nonsense, clearing.
    let (status, _) = control(
        &proxy,
        "POST",
        "/__faults/append",
        r#"[{"service":"sns","fault":"throttle"}]"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(proxy.stats().rules.len(), 3);
    let (status, body) = control(&proxy, "POST", "/__faults", r#"[{"service":"sns"}]"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("fault"), "{body}");
    assert_eq!(
        proxy.stats().rules.len(),
        3,
        "a refused POST changes nothing"
    );
    let (status, _) = control(&proxy, "DELETE", "/__faults/stats", "").await;
    assert_eq!(status, 200);
    assert_eq!(proxy.stats().calls("dynamodb", "PutItem"), 0);
    assert_eq!(proxy.stats().rules.len(), 3);
    let (status, body) = control(&proxy, "DELETE", "/__faults", "").await;
    assert_eq!(status, 200);
    let cleared: Stats = serde_json::from_str(&body).unwrap();
    assert!(cleared.rules.is_empty() && cleared.calls.is_empty());
    put(&ddb, &table, "a").await.expect("no rules left");
}

#[tokio::test]
async fn dropping_the_proxy_stops_it() {
    let Some(proxy) = proxy().await else { return };
    let addr = proxy.addr();
    drop(proxy);
    // Let the accept loop see the stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn custom_throttling_and_unavailable_are_retried_like_the_real_ones() {
    let Some(proxy) = proxy().await else { return };
    let conf = config(&proxy, 3, None).await;
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    let table = table(&ddb).await;
    // DynamoDB's other throttling error, through the generic error fault.
    let rules = platformsync_faults::parse_rules(
        br#"[{"service":"dynamodb","operation":"PutItem","times":2,
              "fault":{"error":{"status":400,"code":"ThrottlingException"}}},
             {"service":"sqs","operation":"SendMessage","fault":"unavailable","times":2}]"#,
    )
    .unwrap();
    proxy.set_rules(rules);
    put(&ddb, &table, "a").await.expect("absorbed");
    assert_eq!(proxy.stats().calls("dynamodb", "PutItem"), 3);

    let sqs = aws_sdk_sqs::Client::new(&conf);
    let queue = sqs
        .create_queue()
        .queue_name(name("faults"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sqs.send_message()
        .queue_url(&queue)
        .message_body("x")
        .send()
        .await
        .expect("two 503s absorbed");
    let stats = proxy.stats();
    assert_eq!(stats.calls("sqs", "SendMessage"), 3);
    assert_eq!(stats.failed("sqs", "SendMessage"), 2);
}

#[tokio::test]
async fn dynamodb_streams_are_told_apart_from_dynamodb() {
    let Some(proxy) = proxy().await else { return };
    let conf = config(&proxy, 3, None).await;
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    let (table, request) = new_table(&ddb);
    request
        .stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewImage)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("table with a stream");
    put(&ddb, &table, "a").await.unwrap();
    let stream_arn = ddb
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .table
        .and_then(|t| t.latest_stream_arn)
        .expect("stream arn");

    let streams = aws_sdk_dynamodbstreams::Client::new(&conf);
    let shard = streams
        .describe_stream()
        .stream_arn(&stream_arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .and_then(|d| d.shards)
        .and_then(|s| s.into_iter().next())
        .and_then(|s| s.shard_id)
        .expect("a shard");
    let iterator = streams
        .get_shard_iterator()
        .stream_arn(&stream_arn)
        .shard_id(shard)
        .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .expect("iterator");
    proxy.add_rule(Rule::new("streams.dynamodb", "GetRecords", Fault::Throttle).times(1));
    // A DynamoDB rule for the same operation name must not catch stream calls.
    proxy.add_rule(Rule::new("dynamodb", "*", Fault::AccessDenied).after(1000));
    let records = streams
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .expect("one throttle absorbed")
        .records
        .unwrap_or_default();
    assert_eq!(records.len(), 1);

    let stats = proxy.stats();
    assert_eq!(
        stats.calls("streams.dynamodb", "GetRecords"),
        2,
        "{stats:?}"
    );
    assert_eq!(stats.calls("streams.dynamodb", "DescribeStream"), 1);
    assert_eq!(stats.calls("dynamodb", "DescribeStream"), 0);
    assert_eq!(stats.rules[1].matched, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_are_each_forwarded_and_counted_once() {
    let Some(proxy) = proxy().await else { return };
    let ddb = aws_sdk_dynamodb::Client::new(&config(&proxy, 1, None).await);
    let table = table(&ddb).await;
    let puts = (0..64).map(|i| {
        let ddb = ddb.clone();
        let table = table.clone();
        async move { put(&ddb, &table, &format!("k{i}")).await }
    });
    for result in futures_join_all(puts).await {
        result.expect("put through the proxy");
    }
    let scanned = ddb.scan().table_name(&table).send().await.unwrap().count;
    assert_eq!(scanned, 64);
    let stats = proxy.stats();
    assert_eq!(stats.calls("dynamodb", "PutItem"), 64);
    assert_eq!(stats.calls("dynamodb", "Scan"), 1);
}

/// `join_all` without a futures dependency: spawn each, await in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

/// Each service goes to its own upstream when it has one: here DynamoDB to
/// the stack's DynamoDB and everything else to a port where nothing listens
/// (the proxy answers 502 for those). SQS queue URLs still work through a
/// routed proxy: created and used through it.
#[tokio::test]
async fn each_service_is_forwarded_to_its_own_upstream() {
    let Some(stack) = upstreams() else { return };
    let dead = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", probe.local_addr().unwrap())
    };
    let routed = FaultProxy::start_routed(
        Upstreams::new(&dead).route("dynamodb", stack.url_for("dynamodb")),
    )
    .await
    .unwrap();
    let conf = config(&routed, 1, None).await;
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    let table = table(&ddb).await;
    put(&ddb, &table, "a")
        .await
        .expect("dynamodb routed to its upstream");
    let err = aws_sdk_sns::Client::new(&conf)
        .list_topics()
        .send()
        .await
        .expect_err("sns went to the dead default");
    let raw = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(raw, Some(502), "{err:?}");
    let stats = routed.stats();
    assert_eq!(stats.calls("dynamodb", "PutItem"), 1);
    assert_eq!(stats.calls("sns", "ListTopics"), 1);

    // The stack's own routes: SQS on the default (LocalStack on the pair),
    // its queue URL (naming the proxy on moto, LocalStack on the pair) used
    // through the proxy.
    let Some(proxy) = proxy().await else { return };
    let sqs = aws_sdk_sqs::Client::new(&config(&proxy, 1, None).await);
    let queue = sqs
        .create_queue()
        .queue_name(name("routed"))
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("queue url");
    sqs.send_message()
        .queue_url(&queue)
        .message_body("hello")
        .send()
        .await
        .expect("send to the queue url");
    let got = sqs
        .receive_message()
        .queue_url(&queue)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body(), Some("hello"));
    let stats = proxy.stats();
    assert_eq!(stats.calls("sqs", "SendMessage"), 1, "{stats:?}");
    assert_eq!(stats.calls("sqs", "ReceiveMessage"), 1, "{stats:?}");
}
