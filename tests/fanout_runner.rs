//! The local runner plays the fan-out's stream source as Lambda does when an
//! outage of ours outlasts the record age: it gives the range up to
//! `StreamFailureQueue` (the on-failure destination of template.yaml), the
//! shard moves on, and the stream-recovery function (run by the runner from
//! template.yaml, on its SQS source) re-reads the range and delivers it.
//!
//! A real runner child process, the reference receiver as the endpoint, and
//! the fan-out's SQS calls through the fault proxy (`AWS_ENDPOINT_URL_SQS`
//! of the runner). The record age is compressed to 4 s
//! (`PLATFORMSYNC_STREAM_MAX_RECORD_AGE_SECONDS`), the outage to 15 s.

use platformsync_domain::testdata;
use platformsync_faults::{Fault, FaultProxy, Rule};
use platformsync_pipeline::{Pipeline, PipelineOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[tokio::test]
async fn a_range_given_up_after_its_record_age_is_recovered_and_delivered_once() {
    let upstream = std::env::var("AWS_ENDPOINT_URL").expect("the local stack");
    let proxy = FaultProxy::start(&upstream).await.expect("fault proxy");
    let stage = format!("r{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let root = platformsync_tests::repo_root();
    let mut options = PipelineOptions::new(&root, root.join(".local/e2e").join(&stage), &stage);
    options.sqs_visibility_timeout = Duration::from_secs(3);
    options.runner_env = vec![
        ("AWS_ENDPOINT_URL_SQS".into(), proxy.url()),
        (
            "PLATFORMSYNC_STREAM_MAX_RECORD_AGE_SECONDS".into(),
            "4".into(),
        ),
    ];
    let p = Pipeline::start(options).await.expect("pipeline starts");

    let body: serde_json::Value =
        serde_json::from_slice(&testdata::upload_json(200, 4, 89)).unwrap();
    let all = body["Transactions"].as_array().unwrap().clone();
    let serials: Vec<String> = all
        .iter()
        .map(|t| t["SerialNumber"].as_str().unwrap().to_uppercase())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    p.register(
        "acme",
        &serials,
        &[("acme-all", "/acme-all", &["--max-batch-size", "25"])],
    )
    .await
    .expect("registered");

    // SQS refuses every SendMessageBatch for 15 s: longer than the record age.
    proxy.add_rule(
        Rule::new("sqs", "SendMessageBatch", Fault::Internal).for_duration(Duration::from_secs(15)),
    );
    let upload = p
        .upload(serde_json::to_vec(&serde_json::json!({ "Transactions": all })).unwrap())
        .await
        .expect("uploaded");
    assert_eq!(upload.status, 200);

    let delivered = p
        .wait_until(Duration::from_secs(150), |p| {
            p.receiver
                .received()
                .iter()
                .filter(|b| b.path == "/acme-all")
                .map(|b| b.transactions.len())
                .sum::<usize>()
                >= all.len()
        })
        .await;
    let log = std::fs::read_to_string(p.options.state_dir.join("runner").join("runner.log"))
        .unwrap_or_default();
    assert!(delivered, "not everything delivered; see the runner log");

    // Each transaction under exactly one MessageId (every POST counted:
    // repeats of a MessageId are allowed, a second MessageId is not).
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for batch in p
        .receiver
        .received()
        .iter()
        .filter(|b| b.path == "/acme-all")
    {
        for t in batch.values() {
            let identity = format!(
                "{}|{}",
                t["SerialNumber"]
                    .as_str()
                    .unwrap_or_default()
                    .to_uppercase(),
                t["TransactionDateTime"].as_str().unwrap_or_default()
            );
            ids.entry(identity)
                .or_default()
                .insert(batch.message_id.clone());
        }
    }
    assert_eq!(ids.len(), all.len(), "every transaction delivered");
    assert!(ids.values().all(|m| m.len() == 1), "one MessageId each");
    let posts = p.receiver.requests().len();
    assert!(posts >= ids.values().flatten().collect::<BTreeSet<_>>().len());

    // It went the long way: given up by record age, recovered from the queue.
    assert!(
        log.contains("batch sent to the on-failure destination"),
        "the runner gave a range up"
    );
    assert!(
        log.contains("stream range recovered"),
        "the recovery function delivered it"
    );
    assert!(proxy.stats().failed("sqs", "SendMessageBatch") > 0);
    p.stop().await;
}
