//! The reference customer receiver, embedded: the API key in every placement,
//! `MessageId` dedup, failure injection (N times, for T seconds, slow) through
//! its control API, and the record of what arrived.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use platformsync_receiver::{Config, KeyCheck, Placement, Receiver, ReceiverHandle, Summary};
use serde_json::{Value, json};

const KEY: &str = "rcv-Key_0123456789";

fn client(ca_pem: &str) -> reqwest::Client {
    // The workspace's reqwest comes without a crypto provider of its own
    // (ring is the one provider, as in the functions): install it first.
    platformsync_tls::install_default();
    let certs = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_merge(certs)
        .no_proxy()
        .build()
        .unwrap()
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("psync-receiver-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn start(placement: Placement, name: &str, state_dir: Option<PathBuf>) -> ReceiverHandle {
    Receiver::start(Config {
        state_dir,
        key: Some(KeyCheck::new(name, placement, KEY)),
        ..Config::default()
    })
    .await
    .unwrap()
}

/// A receiver expecting the key as `Authorization: Bearer` (the default
/// placement).
async fn start_bearer(state_dir: Option<PathBuf>) -> ReceiverHandle {
    start(BEARER, "Authorization", state_dir).await
}

const BEARER: Placement = Placement::Header { bearer: true };

/// `body` POSTed to `url` by `http` with the key as `Authorization: Bearer`.
async fn send_bearer(
    http: &reqwest::Client,
    url: &str,
    body: String,
) -> reqwest::Result<reqwest::Response> {
    http.post(url)
        .header("Authorization", format!("Bearer {KEY}"))
        .body(body)
        .send()
        .await
}

fn payload(message_id: &str, kind: &str, n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"SerialNumber": "UT07761", "TransactionType": "CashIn", "Amount": i}))
        .collect();
    json!({"Metadata": {"MessageId": message_id, "Version": "1", "Site": "north"}, kind: items})
}

/// POSTs `body` to `path` with the key placed as `placement` says (or no key).
/// A push with the key as `Authorization: Bearer` (the default placement).
async fn push_bearer(r: &ReceiverHandle, path: &str, body: Value) -> (u16, Value) {
    push(r, path, body, BEARER, "Authorization", Some(KEY)).await
}

async fn push(
    r: &ReceiverHandle,
    path: &str,
    mut body: Value,
    placement: Placement,
    name: &str,
    key: Option<&str>,
) -> (u16, Value) {
    let http = client(&r.ca_pem);
    let mut url = format!("{}{path}", r.url);
    let mut req_headers = Vec::new();
    if let Some(key) = key {
        match placement {
            Placement::Header { bearer: true } => {
                req_headers.push((name.to_owned(), format!("Bearer {key}")))
            }
            Placement::Header { bearer: false } => req_headers.push((name.to_owned(), key.into())),
            Placement::Query => url.push_str(&format!("?{name}={key}")),
            Placement::Body => body[name] = json!(key),
            Placement::Metadata => body["Metadata"][name] = json!(key),
        }
    }
    let mut req = http.post(&url).body(body.to_string());
    for (k, v) in req_headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A POST of `body` to `path`, or a GET without one, with no key.
async fn request(r: &ReceiverHandle, path: &str, body: Option<String>) -> reqwest::Response {
    let http = client(&r.ca_pem);
    let url = format!("{}{path}", r.url);
    match body {
        Some(b) => http.post(url).body(b).send().await.unwrap(),
        None => http.get(url).send().await.unwrap(),
    }
}

async fn control(r: &ReceiverHandle, path: &str, body: Option<Value>) -> Value {
    let control = format!("/_control/{path}");
    let resp = request(r, &control, body.map(|b| b.to_string())).await;
    assert_eq!(resp.status(), 200, "control {path}");
    resp.json().await.unwrap()
}

async fn summary(r: &ReceiverHandle) -> Summary {
    serde_json::from_value(control(r, "received", None).await).unwrap()
}

#[tokio::test]
async fn key_is_checked_in_every_placement() {
    let cases = [
        (BEARER, "Authorization"),
        (Placement::Header { bearer: false }, "X-Api-Key"),
        (Placement::Query, "token"),
        (Placement::Body, "ApiKey"),
        (Placement::Metadata, "Authorization"),
    ];
    for (placement, name) in cases {
        let r = start(placement, name, None).await;
        let id = uuid::Uuid::new_v4().to_string();
        let what = format!("{placement:?} {name}");
        let send = |key| {
            push(
                &r,
                "/in",
                payload(&id, "Transactions", 2),
                placement,
                name,
                key,
            )
        };
        let (status, _) = send(None).await;
        assert_eq!(status, 401, "{what}: no key");
        let (status, _) = send(Some("wrong")).await;
        assert_eq!(status, 401, "{what}: wrong key");
        let (status, body) = send(Some(KEY)).await;
        assert_eq!(status, 200, "{what}: {body}");
        assert_eq!(body["status"], "recorded");
        let s = r.summary();
        assert_eq!(
            (s.batches, s.transactions, s.unauthorized),
            (1, 2, 2),
            "{what}"
        );
        // The key is never recorded, wherever it travelled.
        let recorded = serde_json::to_string(&r.received()).unwrap();
        assert!(!recorded.contains(KEY), "{what}: {recorded}");
        assert_eq!(r.received()[0].metadata["Site"], "north");
        r.shutdown().await;
    }

    // Bearer expected, raw key sent (and the reverse): refused.
    let raw = Placement::Header { bearer: false };
    for (expected, sent) in [(BEARER, raw), (raw, BEARER)] {
        let r = start(expected, "Authorization", None).await;
        let body = payload("m", "Transactions", 1);
        let (status, _) = push(&r, "/", body, sent, "Authorization", Some(KEY)).await;
        assert_eq!(status, 401, "{expected:?} expected, {sent:?} sent");
    }
}

#[tokio::test]
async fn repeated_message_id_is_answered_200_and_recorded_once() {
    let dir = temp_dir();
    let r = start_bearer(Some(dir.clone())).await;
    assert_eq!(
        std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        r.ca_pem
    );
    let id = uuid::Uuid::new_v4().to_string();
    // Exact decimals pass through untouched.
    let body = json!({"Metadata": {"MessageId": id}, "Transactions": []});
    let mut text = body.to_string();
    text = text.replace(
        "[]",
        r#"[{"SerialNumber":"UT07761","Amount":5560.0,"Denominations":[{"UnitValue":20.0000,"Count":53}]}]"#,
    );
    let http = client(&r.ca_pem);
    for expected in ["recorded", "duplicate"] {
        let url = format!("{}/acme/erp", r.url);
        let resp = send_bearer(&http, &url, text.clone()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["status"], expected);
    }
    let s = summary(&r).await;
    assert_eq!((s.batches, s.transactions, s.duplicates_dropped), (1, 1, 1));
    let lines: Vec<String> = std::fs::read_to_string(dir.join("received.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains(r#""UnitValue":20.0000"#), "{}", lines[0]);
    assert!(lines[0].contains(r#""Amount":5560.0"#));
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["message_id"], id.as_str());
    assert_eq!(line["path"], "/acme/erp");
    assert!(line["received_at"].as_str().unwrap().ends_with('Z'));

    // A restart with the same state directory keeps the CA: clients that
    // trust ca.pem keep working.
    let old_ca = r.ca_pem.clone();
    r.shutdown().await;
    let r = start_bearer(Some(dir.clone())).await;
    assert_eq!(r.ca_pem, old_ca);
    let (status, _) = push_bearer(&r, "/x", payload("n", "Transactions", 1)).await;
    assert_eq!(status, 200);
    r.shutdown().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn fails_n_times_then_recovers() {
    let r = start_bearer(None).await;
    control(&r, "fail", Some(json!({"count": 2, "status": 500}))).await;
    let id = uuid::Uuid::new_v4().to_string();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, _) = push_bearer(&r, "/p", payload(&id, "Transactions", 3)).await;
        statuses.push(status);
    }
    assert_eq!(statuses, [500, 500, 200]);
    let s = summary(&r).await;
    assert_eq!(
        (s.injected_failures, s.batches, s.duplicates_dropped),
        (2, 1, 0)
    );
    // Failed attempts are not "seen": the retry with the same MessageId is recorded.
    assert_eq!(r.received().len(), 1);

    // The library handle does the same.
    r.fail_next(1, 429);
    let (status, _) = push_bearer(&r, "/p", payload("other", "Transactions", 1)).await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn fails_for_a_while_then_recovers() {
    let r = start_bearer(None).await;
    control(&r, "fail", Some(json!({"seconds": 1.0, "status": 503}))).await;
    let started = Instant::now();
    let mut failures = 0;
    loop {
        let id = uuid::Uuid::new_v4().to_string();
        let (status, _) = push_bearer(&r, "/p", payload(&id, "Transactions", 1)).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        failures += 1;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(failures >= 2);
    assert_eq!(summary(&r).await.injected_failures, failures);

    // Slow answers: the push waits, then succeeds.
    control(&r, "slow", Some(json!({"seconds": 0.6}))).await;
    let t = Instant::now();
    let (status, _) = push_bearer(&r, "/p", payload("slow", "Transactions", 1)).await;
    assert_eq!(status, 200);
    assert!(t.elapsed() >= Duration::from_millis(600));
    control(&r, "slow", Some(json!({"seconds": 0}))).await;

    // Bad control requests are refused with a reason.
    let both = r#"{"count": 1, "seconds": 2}"#.to_owned();
    let resp = request(&r, "/_control/fail", Some(both)).await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn summary_counts_per_path_and_kind_and_reset_forgets() {
    let r = start_bearer(None).await;
    let send = |path: &'static str, kind: &'static str, n: usize| {
        let r = &r;
        async move {
            let id = uuid::Uuid::new_v4().to_string();
            let (status, _) = push_bearer(r, path, payload(&id, kind, n)).await;
            assert_eq!(status, 200);
        }
    };
    send("/acme/erp", "Transactions", 3).await;
    send("/acme/erp", "AuditTransactions", 2).await;
    send("/acme/cash", "Transactions", 4).await;
    // Not a push payload: 400, counted, not recorded.
    let (status, _) = push_bearer(&r, "/acme/erp", json!({"Transactions": []})).await;
    assert_eq!(status, 400);

    let s = summary(&r).await;
    assert_eq!(
        (
            s.batches,
            s.transactions,
            s.audit_transactions,
            s.bad_requests
        ),
        (3, 7, 2, 1)
    );
    assert_eq!(s.paths["/acme/erp"].batches, 2);
    assert_eq!(s.paths["/acme/erp"].transactions, 3);
    assert_eq!(s.paths["/acme/erp"].audit_transactions, 2);
    assert_eq!(s.paths["/acme/cash"].transactions, 4);
    let batches = control(&r, "batches", None).await;
    assert_eq!(batches.as_array().unwrap().len(), 3);
    assert_eq!(batches[2]["path"], "/acme/cash");
    assert_eq!(r.received()[0].values().len(), 3);

    control(&r, "reset", Some(json!({}))).await;
    assert_eq!(summary(&r).await, Summary::default());
    // GET on a push path is not a push.
    let resp = request(&r, "/acme/erp", None).await;
    assert_eq!(resp.status(), 405);
}

#[tokio::test]
async fn a_stopped_receiver_refuses_connections() {
    let r = start_bearer(None).await;
    let url = r.url.clone();
    let http = client(&r.ca_pem);
    let url = format!("{url}/p");
    let ok = send_bearer(&http, &url, payload("a", "Transactions", 1).to_string())
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    r.shutdown().await;
    // Even the kept-alive connection of that client is closed.
    let err = send_bearer(&http, &url, payload("b", "Transactions", 1).to_string()).await;
    assert!(err.is_err(), "{err:?}");
}
