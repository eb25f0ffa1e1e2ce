//! The pull API against the local stack: transactions uploaded through the
//! ingest function, safes and API keys set up with the ops CLI, and
//! `GET /v1/transactions` / `/v1/audit-transactions` answered by the pull
//! function as API Gateway would hand it requests.
//!
//! Every page is compared with the transactions table itself: each
//! transaction once, in order, byte for byte as stored (and pushed).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use platformsync_domain::record::StoredTransaction;
use platformsync_domain::serial::SerialNumber;
use platformsync_domain::testdata;
use platformsync_tests::cli;
use platformsync_tests::ids;
use platformsync_tests::{Stack, apigw};
use pull_api::{PullApi, Settings};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

// ------------------------------------------------------------------ plumbing

async fn customer(stack: &Stack, id: &str) {
    cli::ok(stack, &["customer", "add", "--id", id, "--name", id]).await;
}

/// A new API key of `customer`, as the CLI prints it.
async fn api_key(stack: &Stack, customer: &str) -> String {
    let out = cli::ok(stack, &["apikey", "create", "--customer", customer]).await;
    out.trim().to_owned()
}

fn pull_api(stack: &Stack) -> PullApi {
    PullApi::new(
        &stack.config,
        Settings {
            transactions_table: stack.reference("TransactionsTable"),
            config_table: stack.reference("ConfigTable"),
        },
    )
}

/// `GET path?query` as API Gateway (payload 2.0) hands it over.
fn get(path: &str, query: &str, key: Option<&str>) -> ApiGatewayV2httpRequest {
    let mut req = ApiGatewayV2httpRequest::default();
    req.raw_path = Some(path.to_owned());
    req.raw_query_string = Some(query.to_owned());
    req.request_context.http.method = http::Method::GET;
    req.request_context.http.path = Some(path.to_owned());
    req.request_context.request_id = Some(uuid::Uuid::new_v4().to_string());
    if let Some(key) = key {
        req.headers
            .insert("x-api-key", http::HeaderValue::from_str(key).unwrap());
    }
    req
}

fn text(resp: &ApiGatewayV2httpResponse) -> String {
    match &resp.body {
        Some(Body::Text(t)) => t.clone(),
        Some(Body::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

/// A page, with each transaction's JSON text as sent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawPage {
    total: u64,
    page: u32,
    page_size: u32,
    #[serde(default, alias = "AuditTransactions")]
    transactions: Vec<Box<RawValue>>,
    next_page_token: Option<String>,
}

async fn page(api: &PullApi, path: &str, query: &str, key: &str) -> RawPage {
    let resp = api.handle(get(path, query, Some(key))).await;
    let body = text(&resp);
    assert_eq!(resp.status_code, 200, "{path}?{query}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn texts(page: &RawPage) -> Vec<String> {
    page.transactions
        .iter()
        .map(|t| t.get().to_owned())
        .collect()
}

/// Every pushable item of `serials` of `kind`, in (serial, time) order.
async fn stored(stack: &Stack, serials: &[String], kind: &str) -> Vec<StoredTransaction> {
    let store = stack.transaction_store();
    let mut sorted: Vec<&String> = serials.iter().collect();
    sorted.sort();
    let mut out = Vec::new();
    for serial in sorted {
        out.extend(
            store
                .for_safe(&SerialNumber::parse(serial).unwrap())
                .await
                .unwrap()
                .into_iter()
                .filter(|t| t.kind().wire_name() == kind && t.status.is_pushable()),
        );
    }
    out
}

async fn upload(stack: &Stack, body: &[u8]) -> Value {
    apigw::json(&stack.upload(body).await)
}

/// Pages `path?query` by page number; returns every transaction text and
/// checks `Total` on each page.
async fn by_numbers(api: &PullApi, path: &str, query: &str, key: &str, size: u32) -> Vec<String> {
    let mut all = Vec::new();
    let mut total = None;
    for n in 0.. {
        let sep = if query.is_empty() { "" } else { "&" };
        let p = page(
            api,
            path,
            &format!("{query}{sep}Page={n}&PageSize={size}"),
            key,
        )
        .await;
        assert_eq!((p.page, p.page_size), (n, size));
        assert_eq!(*total.get_or_insert(p.total), p.total, "Total is stable");
        if p.transactions.is_empty() {
            assert!(p.next_page_token.is_none());
            assert_eq!(all.len() as u64, p.total);
            break;
        }
        all.extend(texts(&p));
    }
    all
}

/// Pages `path?query` with `NextPageToken`; returns every transaction text.
async fn by_tokens(api: &PullApi, path: &str, query: &str, key: &str, size: u32) -> Vec<String> {
    let sep = if query.is_empty() { "" } else { "&" };
    let first = page(api, path, &format!("{query}{sep}PageSize={size}"), key).await;
    let total = first.total;
    let mut all = texts(&first);
    let mut token = first.next_page_token;
    let mut n = 0;
    while let Some(t) = token {
        n += 1;
        // The token alone carries the query.
        let p = page(api, path, &format!("PageToken={t}"), key).await;
        assert_eq!((p.page, p.page_size, p.total), (n, size, total));
        assert!(
            !p.transactions.is_empty(),
            "a token never leads to an empty page"
        );
        all.extend(texts(&p));
        token = p.next_page_token;
    }
    assert_eq!(all.len() as u64, total);
    all
}

fn payloads(items: &[StoredTransaction]) -> Vec<String> {
    items.iter().map(|t| t.payload.clone()).collect()
}

// ------------------------------------------------------------------ data

/// A transaction of `serial` at safe-local `time`, with an exact amount
/// (`count` twenties; `mismatch` makes the amount disagree, so it is held).
/// JSON text (a `Value` would turn `20.0000` into `20.0`).
fn tx(serial: &str, seq: u64, time: &str, ty: &str, count: u64, mismatch: bool) -> String {
    let amount = if mismatch {
        format!("{}.0000", count * 20 + 1)
    } else {
        format!("{}.0000", count * 20)
    };
    format!(
        r#"{{"PickupGroupId":7,"SerialNumber":"{serial}","SequenceNumber":{seq},"RetrievedOn":"2026-06-30T12:00:00.1234567Z","TransactionDateTime":"{time}","UserName":"ANA","TransactionType":"{ty}","Amount":{amount},"Denominations":[{{"UnitValue":20.0000,"Count":{count},"Currency":"USD"}}]}}"#
    )
}

fn audit(serial: &str, seq: u64, time: &str, ty: &str) -> String {
    format!(
        r#"{{"PickupGroupId":0,"SerialNumber":"{serial}","SequenceNumber":{seq},"RetrievedOn":"2026-06-30T12:00:00Z","TransactionDateTime":"{time}","UserName":"ANA","TransactionType":"{ty}","Amount":0.0,"DoorName":"Storage vault open"}}"#
    )
}

/// An upload body of JSON texts.
fn upload_body(transactions: &[String], audits: &[String]) -> Vec<u8> {
    format!(
        r#"{{"Transactions":[{}],"AuditTransactions":[{}]}}"#,
        transactions.join(","),
        audits.join(",")
    )
    .into_bytes()
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn a_customer_pages_through_2500_transactions_each_once_in_order() {
    let stack = Stack::deploy().await;
    let serials = testdata::serials(5, 41);
    let body = testdata::upload_json_with_audits(2500, 100, 5, 41);
    let r = upload(&stack, &body).await;
    assert_eq!(
        r["Accepted"].as_u64().unwrap() + r["Held"].as_u64().unwrap(),
        2600,
        "{r}"
    );

    customer(&stack, "acme").await;
    let mut args = vec!["safe", "assign"];
    args.extend(serials.iter().map(String::as_str));
    args.extend(["--customer", "acme"]);
    cli::ok(&stack, &args).await;
    let key = api_key(&stack, "acme").await;
    let api = pull_api(&stack);

    let expected = payloads(&stored(&stack, &serials, "Transactions").await);
    assert!(expected.len() > 2400, "{} pushable", expected.len());

    let s0 = api.stats();
    let numbered = by_numbers(&api, "/v1/transactions", "", &key, 1000).await;
    let s1 = api.stats();
    assert_eq!(
        numbered, expected,
        "page numbers: each once, in order, as stored"
    );
    let first = page(&api, "/v1/transactions", "PageSize=1000", &key).await;
    let s2 = api.stats();
    let mut tokens = texts(&first);
    let mut token = first.next_page_token;
    while let Some(t) = token {
        let p = page(&api, "/v1/transactions", &format!("PageToken={t}"), &key).await;
        tokens.extend(texts(&p));
        token = p.next_page_token;
    }
    let s3 = api.stats();
    assert_eq!(
        tokens, expected,
        "NextPageToken: each once, in order, as stored"
    );
    assert_eq!(
        by_tokens(&api, "/v1/transactions", "", &key, 333).await,
        expected
    );

    // Audit records on their own route, in their own array.
    let audits = payloads(&stored(&stack, &serials, "AuditTransactions").await);
    assert_eq!(audits.len(), 100);
    assert_eq!(
        by_tokens(&api, "/v1/audit-transactions", "", &key, 30).await,
        audits
    );
    let resp = api
        .handle(get("/v1/audit-transactions", "PageSize=1", Some(&key)))
        .await;
    let v: Value = serde_json::from_str(&text(&resp)).unwrap();
    assert!(v["AuditTransactions"].is_array() && v.get("Transactions").is_none());

    // What reading cost (docs/benchmarks.md): queries and items evaluated;
    // read units from the items' DynamoDB size (eventually consistent: half
    // a unit per 4 KB evaluated).
    let size = mean_item_size(&stack, &serials).await;
    for (label, from, to) in [
        (
            "page numbers, 3 pages of 1000 + the empty 4th (count + read each)",
            s0,
            s1,
        ),
        ("first page of 1000 (count all + read)", s1, s2),
        ("NextPageToken pages after the first", s2, s3),
    ] {
        let evaluated = (to.evaluated - from.evaluated) as f64;
        let returned = (to.returned - from.returned) as f64;
        let queries = to.queries - from.queries;
        let units = evaluated * size / 4096.0 * 0.5;
        eprintln!(
            "READ COST {label}: {queries} queries, {evaluated} items evaluated, {returned} returned \
             ({size:.0} B/item): ~{units:.1} read units, {:.1} per 1,000 returned; moto reported {:.1}",
            units / returned.max(1.0) * 1000.0,
            to.read_units - from.read_units
        );
    }
    // Reading on with a token evaluates little more than it returns (the
    // audit records interleaved, one look-ahead item per page).
    let (evaluated, returned) = (
        (s3.evaluated - s2.evaluated) as f64,
        (s3.returned - s2.returned) as f64,
    );
    assert!(
        evaluated <= returned * 1.1 + 50.0,
        "{evaluated} evaluated for {returned}"
    );
}

/// Mean DynamoDB size of the items of `serials` (names + values, as
/// DynamoDB bills them).
async fn mean_item_size(stack: &Stack, serials: &[String]) -> f64 {
    let client = aws_sdk_dynamodb::Client::new(&stack.config);
    let (mut bytes, mut n) = (0usize, 0usize);
    for serial in serials {
        let items: Vec<_> = client
            .query()
            .table_name(stack.reference("TransactionsTable"))
            .key_condition_expression("SerialNumber = :s")
            .expression_attribute_values(
                ":s",
                aws_sdk_dynamodb::types::AttributeValue::S(serial.clone()),
            )
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        for item in items {
            bytes += item_size(&item.unwrap());
            n += 1;
        }
    }
    bytes as f64 / n.max(1) as f64
}

fn item_size(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    fn value(v: &A) -> usize {
        match v {
            A::S(s) => s.len(),
            A::N(n) => n.len().div_ceil(2) + 1,
            A::Bool(_) | A::Null(_) => 1,
            A::B(b) => b.as_ref().len(),
            A::L(l) => 3 + l.iter().map(|v| 1 + value(v)).sum::<usize>(),
            A::M(m) => 3 + m.iter().map(|(k, v)| 1 + k.len() + value(v)).sum::<usize>(),
            A::Ss(s) => s.iter().map(String::len).sum(),
            _ => 8,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

#[tokio::test]
async fn filters_keys_and_ownership_periods() {
    let stack = Stack::deploy().await;
    customer(&stack, "acme").await;
    customer(&stack, "globex").await;
    // UT1 is acme's throughout; UT2 is acme's until 2026-06-10 12:00, then globex's.
    cli::ok(
        &stack,
        &["safe", "assign", "UT1", "UT2", "--customer", "acme"],
    )
    .await;
    let assign = "safe assign UT2 --customer globex --from 2026-06-10T12:00:00";
    let moved = cli::ok(&stack, &cli::args(assign)).await;
    assert!(moved.contains("(was acme)"), "{moved}");
    let history = cli::ok(&stack, &["safe", "history", "UT2"]).await;
    assert!(
        history.contains("acme") && history.contains("2026-06-10T12:00:00.0000000"),
        "{history}"
    );
    let acme = api_key(&stack, "acme").await;
    let globex = api_key(&stack, "globex").await;
    let api = pull_api(&stack);

    let mut txs = Vec::new();
    for (i, day) in ["01", "05", "09", "10", "11", "20"].iter().enumerate() {
        let i = i as u64;
        txs.push(tx(
            "UT1",
            100 + i,
            &format!("2026-06-{day}T12:00:00"),
            "CashIn",
            i + 1,
            false,
        ));
        txs.push(tx(
            "UT2",
            200 + i,
            &format!("2026-06-{day}T12:00:00"),
            "ValidatedCashIn",
            i + 1,
            false,
        ));
        txs.push(tx(
            "UT2",
            300 + i,
            &format!("2026-06-{day}T08:00:00"),
            "Servicing",
            1,
            false,
        ));
    }
    // Held (amount mismatch): never shown.
    txs.push(tx("UT1", 999, "2026-06-03T00:00:00", "CashIn", 3, true));
    let audits = vec![
        audit("UT1", 1, "2026-06-02T00:00:00", "DoorOpened"),
        audit("UT2", 1, "2026-06-15T00:00:00", "DoorClosed"),
    ];
    let r = upload(&stack, &upload_body(&txs, &audits)).await;
    assert_eq!(
        (r["Accepted"].as_u64(), r["Held"].as_u64()),
        (Some(20), Some(1)),
        "{r}"
    );

    let all = |key: &str, path: &'static str, query: &'static str| {
        let api = &api;
        let key = key.to_owned();
        async move { by_tokens(api, path, query, &key, 1000).await }
    };
    let times = |texts: &[String]| -> Vec<String> {
        texts
            .iter()
            .map(|t| {
                let v: Value = serde_json::from_str(t).unwrap();
                format!(
                    "{} {} {}",
                    v["SerialNumber"].as_str().unwrap(),
                    v["TransactionDateTime"].as_str().unwrap(),
                    v["TransactionType"].as_str().unwrap()
                )
            })
            .collect()
    };

    // acme: all of UT1 (not the held one), UT2 before the move only.
    let seen = times(&all(&acme, "/v1/transactions", "").await);
    let ut2_acme: Vec<&String> = seen.iter().filter(|s| s.starts_with("UT2")).collect();
    assert_eq!(seen.len(), 6 + 7, "{seen:#?}");
    assert!(
        ut2_acme
            .iter()
            .all(|s| s.as_str() < "UT2 2026-06-10T12:00:00"),
        "{ut2_acme:#?}"
    );
    assert!(seen.contains(&"UT2 2026-06-10T08:00:00 Servicing".to_owned()));
    // globex: UT2 from the move on, nothing of UT1.
    let seen_g = times(&all(&globex, "/v1/transactions", "").await);
    assert_eq!(
        seen_g,
        [
            "UT2 2026-06-10T12:00:00 CashIn",
            "UT2 2026-06-11T08:00:00 Servicing",
            "UT2 2026-06-11T12:00:00 CashIn",
            "UT2 2026-06-20T08:00:00 Servicing",
            "UT2 2026-06-20T12:00:00 CashIn",
        ]
    );
    // Each transaction of UT2 is seen by exactly one of them.
    let both: BTreeSet<&String> = seen.iter().chain(&seen_g).collect();
    assert_eq!(both.len(), seen.len() + seen_g.len());
    assert_eq!(seen_g.len() + ut2_acme.len(), 12);

    // Audits follow the same periods.
    assert_eq!(all(&acme, "/v1/audit-transactions", "").await.len(), 1);
    assert_eq!(all(&globex, "/v1/audit-transactions", "").await.len(), 1);

    // A late upload from acme's time (a transaction of 2026-06-09, sent after
    // the move) is acme's, not globex's.
    upload(
        &stack,
        &upload_body(
            &[tx("UT2", 400, "2026-06-09T23:00:00", "CashIn", 9, false)],
            &[],
        ),
    )
    .await;
    let late = "UT2 2026-06-09T23:00:00 CashIn".to_owned();
    assert!(times(&all(&acme, "/v1/transactions", "").await).contains(&late));
    assert!(!times(&all(&globex, "/v1/transactions", "").await).contains(&late));

    // Filters: serial, time range (From inclusive, To exclusive), type in either vocabulary.
    let f = times(
        &all(
            &acme,
            "/v1/transactions",
            "SerialNumber=ut1&From=2026-06-05&To=2026-06-11T12:00:00",
        )
        .await,
    );
    assert_eq!(
        f,
        [
            "UT1 2026-06-05T12:00:00 CashIn",
            "UT1 2026-06-09T12:00:00 CashIn",
            "UT1 2026-06-10T12:00:00 CashIn",
        ]
    );
    let f = times(&all(&acme, "/v1/transactions", "TransactionType=Servicing").await);
    assert!(
        f.len() == 4 && f.iter().all(|s| s.ends_with("Servicing")),
        "{f:?}"
    );
    let a = all(&acme, "/v1/transactions", "TransactionType=ValidatedCashIn").await;
    let b = all(&acme, "/v1/transactions", "TransactionType=CashIn").await;
    let c = all(&acme, "/v1/transactions", "TransactionType=30").await;
    assert_eq!((a.len(), &a, &a), (6 + 3 + 1, &b, &c));
    let f = all(
        &acme,
        "/v1/transactions",
        "TransactionType=CashIn,Servicing&SerialNumber=UT2",
    )
    .await;
    assert_eq!(f.len(), 3 + 1 + 4);
    assert_eq!(
        all(
            &acme,
            "/v1/audit-transactions",
            "TransactionType=DoorOpened"
        )
        .await
        .len(),
        1
    );
    assert_eq!(
        all(&globex, "/v1/transactions", "SerialNumber=UT1")
            .await
            .len(),
        0,
        "another customer's safe: nothing, not an error"
    );

    // Exact decimals, as stored.
    let one = page(
        &api,
        "/v1/transactions",
        "SerialNumber=UT1&PageSize=1",
        &acme,
    )
    .await;
    assert!(
        one.transactions[0].get().contains(r#""UnitValue":20.0000"#),
        "{}",
        one.transactions[0].get()
    );
    assert!(one.transactions[0].get().contains(r#""Amount":20.0000"#));

    // Bad requests are named.
    for (query, what) in [
        ("PageSize=1001", "PageSize"),
        ("From=yesterday", "From"),
        ("TransactionType=Teleport", "TransactionType"),
        ("Colour=red", "Colour"),
        ("PageToken=garbage", "PageToken"),
    ] {
        let resp = api
            .handle(get("/v1/transactions", query, Some(&acme)))
            .await;
        assert_eq!(resp.status_code, 400, "{query}");
        assert!(text(&resp).contains(what), "{query}: {}", text(&resp));
    }
    // A token is the customer's own.
    let p = page(&api, "/v1/transactions", "PageSize=1", &acme).await;
    let token = p.next_page_token.unwrap();
    let resp = api
        .handle(get(
            "/v1/transactions",
            &format!("PageToken={token}"),
            Some(&globex),
        ))
        .await;
    assert_eq!(resp.status_code, 400, "{}", text(&resp));
    let resp = api
        .handle(get(
            "/v1/transactions",
            &format!("PageToken={token}&SerialNumber=UT2"),
            Some(&acme),
        ))
        .await;
    assert_eq!(resp.status_code, 400, "filters other than the token's");
}

#[tokio::test]
async fn keys_missing_wrong_or_revoked_get_401() {
    let stack = Stack::deploy().await;
    customer(&stack, "acme").await;
    cli::ok(&stack, &["safe", "assign", "UT1", "--customer", "acme"]).await;
    upload(
        &stack,
        &upload_body(
            &[tx("UT1", 1, "2026-06-01T00:00:00", "CashIn", 1, false)],
            &[],
        ),
    )
    .await;
    let key = api_key(&stack, "acme").await;
    let other = api_key(&stack, "acme").await;
    assert_ne!(key, other);
    let api = pull_api(&stack);
    assert_eq!(page(&api, "/v1/transactions", "", &key).await.total, 1);

    let status = |key: Option<String>| {
        let api = &api;
        async move {
            api.handle(get("/v1/transactions", "", key.as_deref()))
                .await
                .status_code
        }
    };
    assert_eq!(status(None).await, 401);
    assert_eq!(
        status(Some("psk_0123456789abcdef_".to_owned() + &"0".repeat(64))).await,
        401
    );
    // The right key id with another secret.
    let (id_part, _) = key.rsplit_once('_').unwrap();
    assert_eq!(
        status(Some(format!("{id_part}_{}", "f".repeat(64)))).await,
        401
    );
    assert_eq!(
        status(Some(stack.ingest_key().await)).await,
        401,
        "the ingest key is not a pull key"
    );

    // Listing shows ids, never keys; revoking one leaves the other working.
    let listed = cli::ok(&stack, &["--json", "apikey", "list", "--customer", "acme"]).await;
    assert!(
        !listed.contains(key.split('_').next_back().unwrap()),
        "{listed}"
    );
    let key_id = key.split('_').nth(1).unwrap();
    assert!(listed.contains(key_id));
    cli::ok(
        &stack,
        &["apikey", "revoke", "--customer", "acme", "--key-id", key_id],
    )
    .await;
    assert_eq!(
        status(Some(key.clone())).await,
        401,
        "revoked: refused at once"
    );
    assert_eq!(status(Some(other.clone())).await, 200);
    let listed = cli::ok(&stack, &["--json", "apikey", "list", "--customer", "acme"]).await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let revoked: Vec<bool> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| !k["RevokedAt"].is_null())
        .collect();
    assert_eq!(revoked.iter().filter(|r| **r).count(), 1);
    // Another customer cannot revoke acme's key.
    customer(&stack, "globex").await;
    let other_id = other.split('_').nth(1).unwrap();
    let revoke = format!("apikey revoke --customer globex --key-id {other_id}");
    cli::refused(&stack, &cli::args(&revoke), "no API key").await;
    assert_eq!(status(Some(other)).await, 200);
}

// ------------------------------------------------------------------ contract

/// Real answers and a rendered push payload, validated against the schemas
/// of docs/openapi.yaml by infra/scripts/openapi-lint.sh (pinned validator).
#[tokio::test]
async fn responses_and_push_payloads_validate_against_openapi() {
    let stack = Stack::deploy().await;
    customer(&stack, "acme").await;
    cli::ok(&stack, &["safe", "assign", "UT1", "--customer", "acme"]).await;
    let key = api_key(&stack, "acme").await;
    let body = upload_body(
        &[
            tx("UT1", 1, "2026-06-01T00:00:00", "CashIn", 2, false),
            tx("UT1", 2, "2026-06-01T01:00:00", "ChangePurchase", 1, false),
            r#"{"bad": true}"#.to_owned(),
        ],
        &[audit("UT1", 1, "2026-06-01T00:30:00", "DoorOpened")],
    );
    let upload_response = upload(&stack, &body).await;
    let api = pull_api(&stack);
    let dir = std::env::temp_dir().join(format!("psync-openapi-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();

    write("UploadResponse.1.json", &upload_response.to_string());
    for (i, (path, query)) in [
        ("/v1/transactions", "PageSize=1"),
        ("/v1/transactions", ""),
        ("/v1/transactions", "Page=5"),
    ]
    .iter()
    .enumerate()
    {
        let resp = api.handle(get(path, query, Some(&key))).await;
        assert_eq!(resp.status_code, 200);
        write(&format!("TransactionsPage.{i}.json"), &text(&resp));
    }
    let resp = api
        .handle(get("/v1/audit-transactions", "", Some(&key)))
        .await;
    write("AuditTransactionsPage.1.json", &text(&resp));
    for (i, (query, key)) in [("PageSize=0", Some(key.as_str())), ("", None)]
        .iter()
        .enumerate()
    {
        let resp = api.handle(get("/v1/transactions", query, *key)).await;
        assert!(resp.status_code >= 400);
        write(&format!("Error.{i}.json"), &text(&resp));
    }

    // A push payload rendered from the stored transactions, as push sends it.
    for (kind, schema) in [
        ("Transactions", "TransactionsMessage"),
        ("AuditTransactions", "AuditTransactionsMessage"),
    ] {
        let items: Vec<Box<RawValue>> = stored(&stack, &["UT1".to_owned()], kind)
            .await
            .iter()
            .map(|t| RawValue::from_string(t.payload.clone()).unwrap())
            .collect();
        assert!(!items.is_empty());
        let metadata = [("StoreNumber".to_owned(), "42".to_owned())]
            .into_iter()
            .collect();
        let api_key = platformsync_domain::payload::ApiKey::new(
            None,
            platformsync_domain::payload::ApiKeyPlacement::default(),
            secrecy::SecretString::from("k"),
        )
        .unwrap();
        let rendered =
            platformsync_domain::payload::render_v1(&platformsync_domain::payload::RenderInput {
                message_id: uuid::Uuid::new_v4(),
                correlation_id: Some(uuid::Uuid::new_v4()),
                endpoint_metadata: &metadata,
                items: platformsync_domain::payload::PayloadItems::Raw {
                    kind: platformsync_domain::types::MessageKind::from_wire_name(kind).unwrap(),
                    items: &items,
                },
                api_key: &api_key,
            });
        write(
            &format!("{schema}.1.json"),
            std::str::from_utf8(&rendered.body).unwrap(),
        );
    }
    validate(&dir);
    std::fs::remove_dir_all(&dir).ok();
}

fn validate(dir: &Path) {
    let script: PathBuf = platformsync_tests::repo_root().join("infra/scripts/openapi-lint.sh");
    let out = std::process::Command::new(&script)
        .arg("--validate")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "responses do not match docs/openapi.yaml:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("9 samples valid"), "{report}");
}

#[tokio::test]
async fn backdated_and_legacy_assignments_rewrite_the_periods() {
    use platformsync_aws::assignments::AssignmentStore;
    use platformsync_aws::config_table::ConfigStore;
    use platformsync_domain::ownership::BEGINNING;
    let stack = Stack::deploy().await;
    for c in ["acme", "globex", "initech"] {
        customer(&stack, c).await;
    }
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.config);
    let config = ConfigStore::new(dynamodb.clone(), stack.reference("ConfigTable"));
    let store = AssignmentStore::new(dynamodb, stack.reference("ConfigTable"));
    let periods = |c: &'static str| {
        let store = &store;
        async move {
            store
                .periods_of(&ids::customer(c), None)
                .await
                .unwrap()
                .into_iter()
                .map(|p| {
                    format!(
                        "{} {}..{}",
                        p.serial_number,
                        &p.from[..10],
                        p.until.as_deref().map_or("", |u| &u[..10])
                    )
                })
                .collect::<Vec<_>>()
        }
    };

    // Assigned before assignments had dates: only the OWNER item.
    config
        .assign_safe(&ids::safe("UT9"), &ids::customer("acme"))
        .await
        .unwrap();
    let assign = "safe assign UT9 --customer globex --from 2026-06-10";
    let out = cli::ok(&stack, &cli::args(assign)).await;
    assert!(out.contains("(was acme)"), "{out}");
    assert_eq!(
        periods("acme").await,
        [format!("UT9 {}..2026-06-10", &BEGINNING[..10])]
    );
    assert_eq!(periods("globex").await, ["UT9 2026-06-10.."]);

    // Backdated between the two: initech from 2026-06-05 until globex's start.
    let assign = "safe assign UT9 --customer initech --from 2026-06-05";
    let out = cli::ok(&stack, &cli::args(assign)).await;
    assert!(out.contains("(was acme)"), "{out}");
    assert_eq!(
        periods("acme").await,
        [format!("UT9 {}..2026-06-05", &BEGINNING[..10])]
    );
    assert_eq!(periods("initech").await, ["UT9 2026-06-05..2026-06-10"]);
    // The fan-out's OWNER item follows the latest assignment.
    let ut9 = SerialNumber::parse("UT9").unwrap();
    let owners = config
        .safe_owners(std::slice::from_ref(&ut9))
        .await
        .unwrap();
    assert_eq!(owners.get(&ut9).map(String::as_str), Some("globex"));

    // Replacing that assignment with acme's removes initech's period and
    // merges acme's two.
    let assign = "safe assign UT9 --customer acme --from 2026-06-05";
    cli::ok(&stack, &cli::args(assign)).await;
    assert!(periods("initech").await.is_empty());
    assert_eq!(
        periods("acme").await,
        [format!("UT9 {}..2026-06-10", &BEGINNING[..10])]
    );

    // A safe assigned before dates, assigned again to its owner: its history
    // starts at its first transaction.
    config
        .assign_safe(&ids::safe("UT8"), &ids::customer("globex"))
        .await
        .unwrap();
    assert!(store.history(&ids::safe("UT8")).await.unwrap().is_empty());
    cli::ok(&stack, &["safe", "assign", "UT8", "--customer", "globex"]).await;
    assert_eq!(
        periods("globex").await,
        [
            format!("UT8 {}..", &BEGINNING[..10]),
            "UT9 2026-06-10..".to_owned()
        ]
    );

    // And the pull API follows.
    upload(
        &stack,
        &upload_body(
            &[
                tx("UT9", 1, "2026-06-01T00:00:00", "CashIn", 1, false),
                tx("UT9", 2, "2026-06-07T00:00:00", "CashIn", 1, false),
                tx("UT9", 3, "2026-06-12T00:00:00", "CashIn", 1, false),
            ],
            &[],
        ),
    )
    .await;
    let api = pull_api(&stack);
    for (c, n) in [("acme", 2), ("globex", 1), ("initech", 0)] {
        let key = api_key(&stack, c).await;
        assert_eq!(
            page(&api, "/v1/transactions", "", &key).await.total,
            n,
            "{c}"
        );
    }
}
