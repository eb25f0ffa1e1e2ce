//! Ingest when our own storage fails, made to happen over the wire (the
//! fault proxy in front of the local stack): SafeSync always gets our
//! answer, in time, and re-sending the upload stores every transaction
//! exactly once.

use platformsync_aws::Calls;
use platformsync_aws::config::{Function, Reader};
use platformsync_domain::serial::SerialNumber;
use platformsync_domain::testdata;
use platformsync_faults::{Fault, FaultProxy, Rule};
use platformsync_tests::{Stack, apigw, config_through, fault_proxy};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const PATH: &str = "/v1/uploads";

/// The SDK's retry quota (500 tokens: 5 per retried throttle, 10 per timed
/// out attempt) belongs to the process, one per service and region, not to a
/// client: tests that make the SDK retry would spend what another's upload
/// retries with. Lambda runs one invocation per process at a time, so these
/// take turns.
static RETRY_QUOTA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every stored transaction of the upload's safes: how many items each
/// dedup key has (more than one would be a transaction stored twice).
async fn stored_keys(stack: &Stack, body: &[u8]) -> BTreeMap<String, usize> {
    let upload: Value = serde_json::from_slice(body).unwrap();
    let serials: BTreeSet<String> = upload["Transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["SerialNumber"].as_str().unwrap().to_uppercase())
        .collect();
    let store = stack.transaction_store();
    let mut keys = BTreeMap::new();
    for serial in serials {
        let serial = SerialNumber::parse(&serial).unwrap();
        for t in store.for_safe(&serial).await.unwrap() {
            *keys.entry(t.dedup_key).or_insert(0) += 1;
        }
    }
    keys
}

/// What each test here starts from: its turn on the retry quota, a stack,
/// its ingest key, and a fault proxy in front of the stack.
async fn given() -> (
    tokio::sync::MutexGuard<'static, ()>,
    Stack,
    String,
    FaultProxy,
) {
    let turn = RETRY_QUOTA.lock().await;
    let stack = Stack::deploy().await;
    let key = stack.ingest_key().await;
    let proxy = fault_proxy().await;
    (turn, stack, key, proxy)
}

/// Ingest with its own SDK retries and timeouts, as its knobs' defaults set
/// them (the loader Lambda's ingest uses), through `proxy`.
async fn ingest_as_on_lambda(stack: &Stack, proxy: &FaultProxy) -> ingest::Ingest {
    let calls = Calls::from_knobs(&Reader::with_lookup(Function::Ingest, |_| None))
        .expect("ingest's defaults");
    let through = config_through(proxy, |loader| {
        loader
            .retry_config(calls.retry())
            .timeout_config(calls.timeouts())
    })
    .await;
    ingest::Ingest::new(&through, stack.ingest_settings())
}

#[tokio::test]
async fn storage_that_hangs_is_answered_503_before_the_deadline_and_the_resend_stores_each_once() {
    let (_turn, stack, key, proxy) = given().await;
    let through = stack.through(&proxy).await;
    let mut settings = stack.ingest_settings();
    settings.deadline_margin = Duration::from_secs(3);
    let ingest = ingest::Ingest::new(&through, settings);
    let body = testdata::upload_json(40, 4, 7);

    // Every conditional put hangs for longer than the invocation has; the
    // proxy then forwards it anyway, as a request AWS received may still be
    // carried out after the client gave up.
    proxy.add_rule(Rule::new(
        "dynamodb",
        "PutItem",
        Fault::Hang {
            seconds: 20.0,
            forward: true,
        },
    ));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(6);
    let resp = ingest
        .handle_before(apigw::post(PATH, &body, Some(&key)), deadline)
        .await;
    let answered = Instant::now();
    let answer = apigw::json(&resp);
    assert_eq!(resp.status_code, 503, "{answer}");
    assert!(
        answered <= deadline,
        "answered {:?} after the deadline",
        answered - deadline
    );
    let failed = answer["Failed"].as_array().unwrap();
    assert_eq!(failed.len(), 40, "every item is reported: {answer}");
    assert!(
        failed.iter().all(|f| f["Reason"]
            .as_str()
            .unwrap()
            .contains("did not answer in time")),
        "{answer}"
    );
    assert_eq!(answer["Accepted"], 0, "{answer}");

    // Storage recovers; SafeSync re-sends the same upload.
    proxy.clear();
    let resp = ingest.handle(apigw::post(PATH, &body, Some(&key))).await;
    let answer = apigw::json(&resp);
    assert_eq!(resp.status_code, 200, "{answer}");
    let accepted = answer["Accepted"].as_u64().unwrap();
    let duplicates = answer["Duplicates"].as_u64().unwrap();
    assert_eq!(
        accepted + duplicates,
        40,
        "each item stored now or by a hung put that landed: {answer}"
    );

    // Give the hung puts time to land (they were forwarded after 20 s), then
    // count: each transaction is stored exactly once.
    let landing = started + Duration::from_secs(22);
    tokio::time::sleep(landing.saturating_duration_since(Instant::now())).await;
    let stored = stored_keys(&stack, &body).await;
    assert_eq!(stored.len(), 40, "every transaction is stored");
    assert_eq!(
        stored.values().sum::<usize>(),
        40,
        "and no item beside them: {stored:?}"
    );
}

#[tokio::test]
async fn throttling_for_a_while_is_absorbed_by_the_retries() {
    let (_turn, stack, key, proxy) = given().await;
    let ingest = ingest_as_on_lambda(&stack, &proxy).await;
    // 20 items retry ~50 times over the 2 s (from 43 to 55 in 12 runs): half
    // the quota. An upload's items all retried beyond it would be answered
    // "re-send" (503) by design, not absorbed.
    let body = testdata::upload_json(20, 3, 11);

    proxy.add_rule(
        Rule::new("dynamodb", "PutItem", Fault::Throttle).for_duration(Duration::from_secs(2)),
    );
    let resp = ingest.handle(apigw::post(PATH, &body, Some(&key))).await;
    let answer = apigw::json(&resp);
    assert_eq!(resp.status_code, 200, "{answer}");
    assert_eq!(answer["Accepted"], 20, "{answer}");
    let stats = proxy.stats();
    assert!(
        stats.failed("dynamodb", "PutItem") > 0,
        "puts were throttled: {stats:?}"
    );
    let stored = stored_keys(&stack, &body).await;
    assert_eq!(stored.len(), 20);
    assert_eq!(stored.values().sum::<usize>(), 20, "{stored:?}");
}

#[tokio::test]
async fn a_put_whose_answer_was_lost_is_accepted_not_reported_as_a_duplicate() {
    let (_turn, stack, key, proxy) = given().await;
    let ingest = ingest_as_on_lambda(&stack, &proxy).await;
    let body = testdata::upload_json(5, 1, 3);

    // The first put is carried out but its answer never comes: the SDK's
    // attempt times out and it tries again, finding the item there.
    proxy.add_rule(Rule::new("dynamodb", "PutItem", Fault::LoseAnswer { seconds: 10.0 }).times(1));
    let resp = ingest.handle(apigw::post(PATH, &body, Some(&key))).await;
    let answer = apigw::json(&resp);
    assert_eq!(proxy.stats().failed("dynamodb", "PutItem"), 1, "{answer}");
    assert_eq!(resp.status_code, 200, "{answer}");
    assert_eq!(
        answer["Accepted"], 5,
        "the landed put is this upload's: {answer}"
    );
    assert_eq!(answer["Duplicates"], 0, "{answer}");

    // SafeSync sending the same upload again is told they are duplicates.
    proxy.clear();
    let resp = ingest.handle(apigw::post(PATH, &body, Some(&key))).await;
    let answer = apigw::json(&resp);
    assert_eq!(answer["Duplicates"], 5, "{answer}");
    let stored = stored_keys(&stack, &body).await;
    assert_eq!(stored.values().sum::<usize>(), 5, "{stored:?}");
}

/// A safe's transactions are stored in the order they happened: when one
/// cannot be stored, the safe's later ones are not sent either (stored now,
/// they would reach the stream ahead of it on the re-send); other safes go
/// on. The re-send stores the rest, each once, in order.
#[tokio::test]
async fn a_failed_put_holds_back_the_rest_of_its_safe_until_the_resend() {
    let (_turn, stack, key, proxy) = given().await;
    let through = stack.through(&proxy).await;
    let mut settings = stack.ingest_settings();
    settings.write_concurrency = 1;
    let ingest = ingest::Ingest::new(&through, settings);
    let body = testdata::upload_json(6, 1, 41);

    // The second put is refused for good (AccessDenied is not retried).
    proxy.add_rule(
        Rule::new("dynamodb", "PutItem", Fault::AccessDenied)
            .after(1)
            .times(1),
    );
    let resp = ingest.handle(apigw::post(PATH, &body, Some(&key))).await;
    let answer = apigw::json(&resp);
    assert_eq!(resp.status_code, 503, "{answer}");
    assert_eq!(answer["Accepted"], 1, "{answer}");
    let failed = answer["Failed"].as_array().unwrap();
    assert_eq!(failed.len(), 5, "{answer}");
    let behind = failed
        .iter()
        .filter(|f| {
            f["Reason"]
                .as_str()
                .unwrap()
                .contains("an earlier transaction of this safe was not stored")
        })
        .count();
    assert_eq!(behind, 4, "held back, not sent: {answer}");
    assert_eq!(proxy.stats().calls("dynamodb", "PutItem"), 2, "{answer}");

    proxy.clear();
    let resp = ingest.handle(apigw::post(PATH, &body, Some(&key))).await;
    let answer = apigw::json(&resp);
    assert_eq!(resp.status_code, 200, "{answer}");
    assert_eq!(
        (answer["Accepted"].as_u64(), answer["Duplicates"].as_u64()),
        (Some(5), Some(1)),
        "{answer}"
    );
    let mut keys = Vec::new();
    for record in platformsync_tests::streams::lambda_records(&stack).await {
        let stored: platformsync_domain::record::StoredTransaction =
            serde_dynamo::from_item(record.change.new_image).unwrap();
        keys.push(stored.sort_key);
    }
    assert_eq!(keys.len(), 6, "each stored once");
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "in time order: {keys:?}"
    );
}
