//! The failure modes for soak runs, over HTTPS: seeded failure rates (500,
//! 201, dropped connection, slow answers stored before the delay), a path's
//! outage, and the log of every push request with repeats and digests.

use std::time::Duration;

use platformsync_receiver::{
    Config, FailureRates, KeyCheck, Outcome, Placement, Receiver, ReceiverHandle,
};
use serde_json::json;

const KEY: &str = "k3y";

async fn start() -> ReceiverHandle {
    Receiver::start(Config {
        key: Some(KeyCheck::new(
            "Authorization",
            Placement::Header { bearer: false },
            KEY,
        )),
        ..Config::default()
    })
    .await
    .unwrap()
}

fn client(r: &ReceiverHandle, timeout: Duration) -> reqwest::Client {
    // reqwest is built without a provider of its own: ring, as everywhere.
    platformsync_tls::install_default();
    let certs = reqwest::Certificate::from_pem_bundle(r.ca_pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_merge(certs)
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

/// POSTs a one-record push; `None` when the connection failed or timed out.
async fn push(
    http: &reqwest::Client,
    r: &ReceiverHandle,
    path: &str,
    id: &str,
    n: u64,
) -> Option<u16> {
    let body =
        json!({"Metadata": {"MessageId": id}, "Transactions": [{"SerialNumber": "UT1", "N": n}]});
    let resp = http
        .post(format!("{}{path}", r.url))
        .header("Authorization", KEY)
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    Some(resp.status().as_u16())
}

#[tokio::test]
async fn every_request_is_logged_with_repeats_and_their_digests() {
    let r = start().await;
    let http = client(&r, Duration::from_secs(10));
    assert_eq!(push(&http, &r, "/a", "m1", 1).await, Some(200));
    assert_eq!(push(&http, &r, "/a", "m1", 1).await, Some(200));
    assert_eq!(
        push(&http, &r, "/a", "m1", 2).await,
        Some(200),
        "other content, same id"
    );
    let log = r.requests();
    let outcomes: Vec<Outcome> = log.iter().map(|q| q.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Recorded, Outcome::Repeat, Outcome::Repeat]
    );
    assert_eq!(log[0].digest, log[1].digest);
    assert_ne!(
        log[0].digest, log[2].digest,
        "a repeat's content is not taken on trust"
    );
    assert_eq!(r.received().len(), 1);
    r.shutdown().await;
}

#[tokio::test]
async fn an_outage_fails_one_path_only_and_ends() {
    let r = start().await;
    let http = client(&r, Duration::from_secs(10));
    r.outage("/down", Duration::from_millis(400), 503);
    assert_eq!(push(&http, &r, "/down", "d1", 1).await, Some(503));
    assert_eq!(push(&http, &r, "/up", "u1", 1).await, Some(200));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(push(&http, &r, "/down", "d1", 1).await, Some(200));
    assert_eq!(r.summary().outage_failures, 1);
    assert_eq!(r.requests()[0].outcome, Outcome::Outage);
    r.shutdown().await;
}

#[tokio::test]
async fn failure_rates_answer_500_201_drop_and_late_and_log_each() {
    let r = start().await;
    let http = client(&r, Duration::from_secs(2));
    r.set_failure_rates(FailureRates {
        seed: 5,
        drop_rate: 0.2,
        error_rate: 0.2,
        created_rate: 0.2,
        slow_rate: 0.2,
        slow_seconds: [2.5, 2.5],
    })
    .unwrap();
    let mut answers = Vec::new();
    for i in 0..40 {
        answers.push(push(&http, &r, "/x", &format!("m{i}"), i).await);
    }
    // A late answer's entry is written when the answer goes out.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = r.requests();
    assert_eq!(log.len(), 40, "every request logged");
    for entry in &log {
        let id = entry.message_id.as_deref().unwrap();
        let answer = &answers[id[1..].parse::<usize>().unwrap()];
        match entry.outcome {
            Outcome::Dropped => assert_eq!((*answer, entry.status), (None, 0)),
            Outcome::Injected => assert_eq!(*answer, Some(500)),
            Outcome::Created => assert_eq!(*answer, Some(201)),
            Outcome::Recorded if entry.delayed_seconds > 0.0 => {
                // Stored, then answered after the client's 2 s timeout.
                assert_eq!(*answer, None);
                assert!(entry.sender_left, "{entry:?}");
            }
            Outcome::Recorded => assert_eq!(*answer, Some(200)),
            other => panic!("unexpected {other:?}"),
        }
    }
    for outcome in [
        Outcome::Dropped,
        Outcome::Injected,
        Outcome::Created,
        Outcome::Recorded,
    ] {
        assert!(
            log.iter().any(|e| e.outcome == outcome),
            "{outcome:?} drawn"
        );
    }
    assert!(log.iter().any(|e| e.sender_left), "a late answer drawn");
    let recorded = log
        .iter()
        .filter(|e| e.outcome == Outcome::Recorded)
        .count();
    assert_eq!(r.received().len(), recorded);
    assert!(
        r.set_failure_rates(FailureRates {
            error_rate: 1.5,
            ..Default::default()
        })
        .is_err()
    );
    r.shutdown().await;
}
