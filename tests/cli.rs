//! The ops CLI, run in-process against a fresh deployment on the local stack:
//! customers, safes, endpoints (keys in Secrets Manager, never printed),
//! validation, key rotation, `status`; and the SafeSync simulator, both its
//! generator's promises and `simulate` against the real ingest handler.

use std::collections::HashSet;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use platformsync_cli::simulate::{DayOptions, day, parse_date};
use platformsync_domain::quality::{QualityPolicy, check};
use platformsync_domain::types::{AuditType, TransactionType};
use platformsync_domain::upload::parse_upload;
use platformsync_tests::cli;
use platformsync_tests::ids;
use platformsync_tests::{Stack, apigw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fresh deployment with customer acme, added as an operator would.
async fn deploy_with_acme() -> Stack {
    let stack = Stack::deploy().await;
    cli::ok(&stack, &cli::args("customer add --id acme --name Acme")).await;
    stack
}

#[tokio::test]
async fn customers_safes_and_endpoints_with_keys_in_secrets_manager() {
    let stack = Stack::deploy().await;
    let s = &stack;

    // Customers.
    cli::ok(
        s,
        &cli::args("customer add --id acme --name 'Acme Stores' --notify cash@acme.example"),
    )
    .await;
    cli::refused(
        s,
        &["customer", "add", "--id", "acme", "--name", "Again"],
        "already exists",
    )
    .await;
    cli::refused(
        s,
        &["customer", "add", "--id", "Bad_Id", "--name", "x"],
        "invalid customer id",
    )
    .await;
    cli::refused(
        s,
        &cli::args("customer add --id b --name B --notify not-an-address"),
        "not an e-mail address",
    )
    .await;
    cli::ok(
        s,
        &["customer", "add", "--id", "globex", "--name", "Globex"],
    )
    .await;

    // Safes: validated, upper-cased, only for existing customers.
    let out = cli::ok(
        s,
        &cli::args("safe assign ut01234 LS2017031453 --customer acme"),
    )
    .await;
    assert!(out.contains("safe UT01234 -> acme"), "{out}");
    cli::refused(
        s,
        &["safe", "assign", "UH12345", "--customer", "nobody"],
        "customer nobody does not exist",
    )
    .await;
    cli::refused(
        s,
        &["safe", "assign", "U!", "--customer", "acme"],
        "serial number",
    )
    .await;
    let safes = cli::run(s, &["safe", "list", "--json"], "").await.json();
    let serials: Vec<&str> = cli::column(&safes, "SerialNumber");
    assert_eq!(serials, ["LS2017031453", "UT01234"]);
    let moved = cli::ok(s, &["safe", "assign", "UT01234", "--customer", "globex"]).await;
    assert!(moved.contains("(was acme)"), "{moved}");
    let text = cli::ok(s, &["safe", "list", "--customer", "globex"]).await;
    assert!(
        text.starts_with("SERIAL") && text.contains("UT01234  globex"),
        "{text}"
    );

    // An endpoint, key from a file: stored in Secrets Manager, never printed.
    let key1 = format!("sk_live_{}", uuid::Uuid::new_v4().simple());
    let file1 = cli::key_file(&key1);
    let add = cli::run(
        s,
        &cli::args(&format!(
            "endpoint add --customer acme --id acme-erp \
            --url https://hooks.acme.example/push --type test --key-name X-Api-Key \
            --key-placement header --raw-key --metadata Site=north --metadata Region=us \
            --whitelist ValidatedCashIn,ChangeRequest --whitelist DoorOpened \
            --message-types Transactions,AuditTransactions --max-batch-size 250 \
            --payload-version 1 --key-file {}",
            file1.display()
        )),
        "",
    )
    .await;
    assert!(!add.all_text().contains(&key1));
    let out = add.ok();
    let secret_id = format!("platformsync/{}/endpoints/acme-erp", s.stage);
    assert!(out.contains(&secret_id), "{out}");
    assert_eq!(
        s.secret(&secret_id).await.as_deref(),
        Some(key1.as_str()),
        "one trailing newline dropped"
    );

    // Key from standard input; defaults for everything else; --disabled.
    let key2 = format!("tok-{}", uuid::Uuid::new_v4());
    let add2 = cli::run(
        s,
        &cli::args(
            "endpoint add --customer acme --id acme-test \
            --url https://test.acme.example/in --disabled --key-stdin --json",
        ),
        &format!("{key2}\r\n"),
    )
    .await;
    assert!(!add2.all_text().contains(&key2));
    let v = add2.json();
    assert_eq!(v["Enabled"], false);
    assert_eq!(v["ApiKeyName"], "Authorization");
    assert_eq!(v["Bearer"], true);
    assert_eq!(
        s.secret(&format!("platformsync/{}/endpoints/acme-test", s.stage))
            .await
            .as_deref(),
        Some(key2.as_str())
    );

    // Listings and show, as JSON and text; never the key.
    let list = cli::run(s, &["endpoint", "list", "--json"], "").await;
    assert!(!list.all_text().contains(&key1));
    let list = list.json();
    let ids: Vec<&str> = cli::column(&list, "EndpointId");
    assert_eq!(ids, ["acme-erp", "acme-test"]);
    let erp = &list[0];
    assert_eq!(erp["ApiKeyPlacement"], "header");
    assert_eq!(erp["Bearer"], false);
    assert_eq!(erp["ApiKeySecret"], secret_id.as_str());
    assert_eq!(erp["Metadata"]["Site"], "north");
    assert_eq!(
        erp["Whitelist"],
        serde_json::json!(["ValidatedCashIn", "ChangeRequest", "DoorOpened"])
    );
    assert_eq!(
        erp["MessageTypes"],
        serde_json::json!(["Transactions", "AuditTransactions"])
    );
    assert_eq!(erp["MaxBatchSize"], 250);
    assert_eq!(erp["EndpointType"], "Test");
    let text = cli::ok(s, &["endpoint", "list", "--customer", "acme"]).await;
    assert!(
        text.contains("header X-Api-Key: raw") && text.contains("acme-test"),
        "{text}"
    );
    assert!(
        cli::run(
            s,
            &["endpoint", "list", "--customer", "globex", "--json"],
            ""
        )
        .await
        .json()
        .as_array()
        .unwrap()
        .is_empty()
    );
    let show = cli::run(
        s,
        &cli::args("endpoint show --customer acme --id acme-erp --json"),
        "",
    )
    .await
    .json();
    assert_eq!(show["ApiKeyStored"], true);
    assert!(!show.to_string().contains(&key1));
    let show = cli::ok(
        s,
        &["endpoint", "show", "--customer", "acme", "--id", "acme-erp"],
    )
    .await;
    assert!(
        show.contains(&secret_id) && show.contains("yes (last changed") && !show.contains(&key1),
        "{show}"
    );
    let customers = cli::run(s, &["customer", "list", "--json"], "")
        .await
        .json();
    assert_eq!(customers[0]["CustomerId"], "acme");
    assert_eq!(customers[0]["Endpoints"], 2);
    assert_eq!(customers[0]["Safes"], 1);
    assert_eq!(
        customers[0]["NotificationRecipients"][0],
        "cash@acme.example"
    );

    // Invalid settings: a clear reason, and nothing written (no settings, no secret).
    let bad_key = format!("never-{}", uuid::Uuid::new_v4());
    let bad_file = cli::key_file(&bad_key);
    let bad = bad_file.to_str().unwrap();
    let cases = [
        ("--url http://plain.example.com", "https"),
        (
            "--url https://x.example --whitelist CashOut",
            "not a transaction or audit type",
        ),
        (
            "--url https://x.example --max-batch-size 1001",
            "max batch size",
        ),
        (
            "--url https://x.example --payload-version 7",
            "payload version",
        ),
        (
            "--url https://x.example --key-placement metadata --key-name MessageId",
            "collide",
        ),
        ("--url https://x.example --metadata novalue", "KEY=VALUE"),
    ];
    for (extra, needle) in cases {
        let line = format!("endpoint add --customer acme --id acme-bad --key-file {bad} {extra}");
        let args = cli::args(&line);
        let outcome = cli::run(s, &args, "").await;
        assert!(!outcome.all_text().contains(&bad_key));
        let e = outcome.error();
        assert!(e.contains(needle), "{needle}: {e}");
    }
    // Refused before anything is written: (customer, id, flags, stdin, error).
    let refusals = [
        (
            "nobody",
            "x1",
            &["--key-file", bad][..],
            "",
            "customer nobody does not exist",
        ),
        (
            "globex",
            "acme-erp",
            &["--key-file", bad],
            "",
            "taken by customer acme",
        ),
        ("acme", "acme-bad", &["--key-stdin"], "\n", "empty"),
        ("acme", "acme-bad", &[], "", "--key-stdin or --key-file"),
    ];
    for (customer, id, flags, stdin, needle) in refusals {
        let mut args = vec!["endpoint", "add", "--customer", customer, "--id", id];
        args.extend(["--url", "https://x.example"]);
        args.extend(flags);
        let e = cli::run(s, &args, stdin).await.error();
        assert!(e.contains(needle), "{needle}: {e}");
    }
    let refused = cli::run(
        s,
        &cli::args(&format!(
            "endpoint add --customer acme --id acme-bad --url https://x.example --key {bad_key}"
        )),
        "",
    )
    .await;
    assert!(!refused.all_text().contains(&bad_key));
    assert!(refused.error().contains("never accepted as an argument"));
    assert!(
        s.secret(&format!("platformsync/{}/endpoints/acme-bad", s.stage))
            .await
            .is_none()
    );
    assert!(
        s.secret(&format!("platformsync/{}/endpoints/x1", s.stage))
            .await
            .is_none()
    );
    cli::refused(
        s,
        &["endpoint", "show", "--customer", "acme", "--id", "acme-bad"],
        "has no endpoint acme-bad",
    )
    .await;
    assert_eq!(
        s.secret(&secret_id).await.as_deref(),
        Some(key1.as_str()),
        "taken id: key untouched"
    );

    // Update: key rotation writes a new version; settings stay.
    let key3 = format!("sk_rotated_{}", uuid::Uuid::new_v4().simple());
    let file3 = cli::key_file(&key3);
    let rotate = cli::run(
        s,
        &cli::args(&format!(
            "endpoint update --customer acme --id acme-erp --key-file {}",
            file3.display()
        )),
        "",
    )
    .await;
    assert!(!rotate.all_text().contains(&key3));
    let out = rotate.ok();
    assert!(
        out.contains("API key rotated") && !out.contains("settings saved"),
        "{out}"
    );
    assert_eq!(s.secret(&secret_id).await.as_deref(), Some(key3.as_str()));
    let after = cli::run(
        s,
        &cli::args("endpoint show --customer acme --id acme-erp --json"),
        "",
    )
    .await
    .json();
    assert_eq!(after["MaxBatchSize"], 250);

    // Update settings: changed ones change, the rest stay.
    let v = cli::run(
        s,
        &cli::args(
            "endpoint update --customer acme --id acme-erp \
            --url https://new.acme.example/push --clear-whitelist --remove-metadata Region \
            --bearer --enabled --json",
        ),
        "",
    )
    .await
    .json();
    assert_eq!(v["Url"], "https://new.acme.example/push");
    assert!(v.get("Whitelist").is_none());
    assert_eq!(v["Metadata"], serde_json::json!({"Site": "north"}));
    assert_eq!(v["Bearer"], true);
    assert_eq!(v["ApiKeyRotated"], false);
    assert_eq!(v["MaxBatchSize"], 250);
    for (id, flags, needle) in [
        ("acme-erp", &["--url", "ftp://x"][..], "https"),
        ("acme-erp", &[], "nothing to change"),
        ("nope", &["--enabled"], "has no endpoint nope"),
    ] {
        let mut args = vec!["endpoint", "update", "--customer", "acme", "--id", id];
        args.extend(flags);
        let e = cli::run(s, &args, "").await.error();
        assert!(e.contains(needle), "{needle}: {e}");
    }
    let still = cli::run(
        s,
        &cli::args("endpoint show --customer acme --id acme-erp --json"),
        "",
    )
    .await
    .json();
    assert_eq!(still["Url"], "https://new.acme.example/push");

    for f in [file1, file3, bad_file] {
        let _ = std::fs::remove_file(f);
    }
}

fn text(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// Writes `item` to `table` as it is, in the shape another writer (an older
/// push) leaves behind.
async fn put_item<const N: usize>(
    dynamo: &aws_sdk_dynamodb::Client,
    table: &str,
    item: [(&str, AttributeValue); N],
) {
    item.into_iter()
        .fold(dynamo.put_item().table_name(table), |put, (name, value)| {
            put.item(name, value)
        })
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn status_reports_queues_health_and_deliveries_robustly() {
    let stack = deploy_with_acme().await;
    let s = &stack;
    let file = cli::key_file("k-123456");
    for id in ["acme-a", "acme-b"] {
        cli::ok(
            s,
            &cli::args(&format!(
                "endpoint add --customer acme --id {id} --url https://a.example --key-file {}",
                file.display()
            )),
        )
        .await;
    }

    // Nothing delivered yet, no health items: still a full answer.
    let v = cli::run(s, &["status", "--json"], "").await.json();
    assert_eq!(v["DeliveryQueue"]["Waiting"], 0);
    assert_eq!(v["DeadLetterQueue"]["Waiting"], 0);
    assert_eq!(v["Endpoints"].as_array().unwrap().len(), 2);
    assert!(v["Endpoints"][0]["Health"].is_null());
    assert!(v["Endpoints"][0]["LastDelivery"].is_null());

    // What the push function writes: ledger rows, a retry state, a health item; a queued batch.
    let dynamo = aws_sdk_dynamodb::Client::new(&s.config);
    let ledger = s.reference("DeliveryLedgerTable");
    for (batch, at, n) in [
        ("m-1", "2024-05-01T10:00:00Z", "3"),
        ("m-2", "2024-05-01T11:00:00Z", "5"),
    ] {
        let item = [
            ("EndpointId", text("acme-a")),
            ("BatchId", text(batch)),
            ("DeliveredAt", text(at)),
            ("TransactionCount", AttributeValue::N(n.into())),
            ("Attempts", AttributeValue::N("1".into())),
            ("TransactionKeys", text("UT1|a\nUT1|b")),
        ];
        put_item(&dynamo, &ledger, item).await;
    }
    let retry_state = [
        ("EndpointId", text("acme-b")),
        ("BatchId", text("ATTEMPT#m-9")),
        ("State", text("{}")),
    ];
    put_item(&dynamo, &ledger, retry_state).await;
    let health = [
        ("PK", text("ENDPOINT#acme-b")),
        ("SK", text("HEALTH")),
        ("State", text("failing")),
        ("FailingSince", text("2024-05-01T09:00:00Z")),
        ("LastError", text("HTTP 503")),
    ];
    put_item(&dynamo, &s.reference("ConfigTable"), health).await;
    platformsync_aws::parked::ParkedStore::new(dynamo.clone(), ledger.clone())
        .park(&platformsync_aws::parked::ParkBatch {
            endpoint_id: &ids::endpoint("acme-b"),
            customer_id: &ids::customer("acme"),
            message_id: "m-parked",
            kind: "Transactions",
            created_at: "2024-05-02T09:00:00Z",
            reason: "expired",
            attempts: 12,
            last_error: Some("HTTP 503"),
            first_attempt_at: None,
            transaction_keys: &["UT1|c".to_owned()],
            parent_message_id: None,
            body: "{}",
            parked_at: time::OffsetDateTime::now_utc(),
        })
        .await
        .unwrap();
    // An alarm of this stage firing, one of another stage, one not firing.
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&s.config);
    for (name, fire) in [
        (format!("platformsync-{}-push-parked", s.stage), true),
        (format!("platformsync-{}-fanout-unowned", s.stage), false),
        ("platformsync-elsewhere-push-parked".to_owned(), true),
    ] {
        cloudwatch
            .put_metric_alarm()
            .alarm_name(&name)
            .namespace("PlatformSync")
            .metric_name("Parked")
            .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(0.0)
            .comparison_operator(
                aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold,
            )
            .send()
            .await
            .unwrap();
        if fire {
            cloudwatch
                .set_alarm_state()
                .alarm_name(&name)
                .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
                .state_reason("Threshold Crossed: 1 datapoint [3.0]")
                .send()
                .await
                .unwrap();
        }
    }
    s.clients
        .sqs
        .send_message()
        .queue_url(s.reference("DeliveryQueue"))
        .message_body("{}")
        .message_group_id("acme-a")
        .message_deduplication_id("d1")
        .send()
        .await
        .unwrap();

    let v = cli::run(s, &["status", "--json"], "").await.json();
    assert_eq!(v["DeliveryQueue"]["Waiting"], 1);
    let a = &v["Endpoints"][0];
    assert_eq!(a["EndpointId"], "acme-a");
    assert_eq!(a["DeliveredBatches"], 2);
    assert_eq!(a["DeliveredTransactions"], 8);
    assert_eq!(a["LastDelivery"]["BatchId"], "m-2");
    assert!(
        a["LastDelivery"].get("TransactionKeys").is_none(),
        "keys are not read"
    );
    assert_eq!(a["ParkedBatches"], 0);
    assert!(a["Incident"].is_null() && a["OldestUndeliveredSince"].is_null());
    let b = &v["Endpoints"][1];
    // A retry state left by an older push is neither a delivery nor a backlog.
    assert_eq!(
        b["DeliveredBatches"], 0,
        "ATTEMPT# and PARKED# items are not deliveries"
    );
    assert!(b.get("RetryingBatches").is_none());
    assert_eq!(b["Health"]["State"], "failing");
    assert_eq!(b["Incident"]["FailingSince"], "2024-05-01T09:00:00Z");
    assert_eq!(b["ParkedBatches"], 1);
    assert_eq!(b["OldestParked"]["MessageId"], "m-parked");
    assert_eq!(b["OldestParked"]["Reason"], "expired");
    assert!(b["OldestParked"]["AgeSeconds"].as_i64().unwrap() >= 0);
    // The incident's first failure is older than the parked batch's creation.
    assert_eq!(b["OldestUndeliveredSince"], "2024-05-01T09:00:00Z");
    assert!(b["OldestUndeliveredAgeSeconds"].as_i64().unwrap() > 86_400);
    let alarms: Vec<&str> = cli::column(&v["Alarms"], "Name");
    assert_eq!(
        alarms,
        [format!("platformsync-{}-push-parked", s.stage)],
        "{v}"
    );
    assert!(
        v["Alarms"][0]["Command"]
            .as_str()
            .unwrap()
            .contains("platformsync expired list")
    );
    assert_eq!(v["Alarms"][0]["Runbook"], "docs/runbook.md#push-parked");
    let text = cli::ok(s, &["status"]).await;
    assert!(text.contains("1 waiting"), "{text}");
    assert!(
        text.contains("push-parked") && text.contains("run: platformsync expired list"),
        "{text}"
    );
    assert!(text.contains("OLDEST UNDELIVERED"), "{text}");
    assert!(
        text.contains("failing since 2024-05-01T09:00:00Z - HTTP 503"),
        "{text}"
    );
    assert!(
        text.contains("2024-05-01T11:00:00Z (5 tx, 1 attempt(s))"),
        "{text}"
    );

    // A missing queue is reported in place, not fatal.
    let args = [
        "--dead-letter-queue-url",
        "http://127.0.0.1:1/000000000000/nope",
        "status",
        "--json",
    ];
    let v = cli::run(s, &args, "").await.json();
    assert!(v["DeadLetterQueue"]["Error"].is_string(), "{v}");
    let _ = std::fs::remove_file(file);
}

/// `endpoint add` refuses what the push function would refuse to connect
/// to (a literal non-public address, a privileged port other than 443)
/// before anything is written, and stores a whitelist given in legacy codes
/// as names.
#[tokio::test]
async fn endpoint_urls_are_vetted_and_legacy_whitelist_codes_stored_as_names() {
    let stack = deploy_with_acme().await;
    let s = &stack;
    let key = format!("k-{}", uuid::Uuid::new_v4().simple());
    let add = |id: &str, url: &str, extra: &str| {
        format!("endpoint add --customer acme --id {id} --url {url} --key-stdin {extra}")
    };
    for (url, needle) in [
        ("https://169.254.169.254/", "instance metadata service"),
        (
            "https://169.254.169.254:8443/latest/meta-data/",
            "instance metadata service",
        ),
        ("https://10.1.2.3/push", "private"),
        (
            "https://[::ffff:169.254.169.254]/",
            "instance metadata service",
        ),
        ("https://0xa9fea9fe/", "instance metadata service"),
        ("https://hooks.acme.example:25/push", "port 25"),
        ("https://hooks.acme.example:80/push", "port 80"),
    ] {
        let outcome = cli::run(s, &cli::args(&add("acme-bad", url, "")), &key).await;
        assert!(!outcome.all_text().contains(&key));
        let e = outcome.error();
        assert!(e.contains(needle) && e.contains("refused"), "{url}: {e}");
    }
    assert!(
        s.secret(&format!("platformsync/{}/endpoints/acme-bad", s.stage))
            .await
            .is_none(),
        "nothing written"
    );
    // 443 and unprivileged ports are fine; on the local stack loopback is
    // exempt, as the local runner exempts it for the push function.
    for (id, url) in [
        ("acme-ok", "https://hooks.acme.example/push"),
        ("acme-8443", "https://hooks.acme.example:8443/push"),
        ("acme-local", "https://127.0.0.1:45678/in"),
    ] {
        cli::run(s, &cli::args(&add(id, url, "")), &key).await.ok();
    }
    cli::refused(
        s,
        &cli::args("endpoint update --customer acme --id acme-ok --url https://169.254.169.254/"),
        "instance metadata service",
    )
    .await;
    let show = cli::run(
        s,
        &cli::args("endpoint show --customer acme --id acme-ok --json"),
        "",
    )
    .await
    .json();
    assert_eq!(show["Url"], "https://hooks.acme.example/push", "unchanged");

    // Legacy codes become names; names stay as given.
    let outcome = cli::run(
        s,
        &cli::args(&add(
            "acme-codes",
            "https://codes.acme.example/push",
            "--whitelist 30,ValidatedCashIn,DoorOpened,91 --json",
        )),
        &key,
    )
    .await;
    assert!(outcome.err.contains("stored as CashIn"), "{}", outcome.err);
    let v = outcome.json();
    assert_eq!(
        v["Whitelist"],
        serde_json::json!(["CashIn", "ValidatedCashIn", "DoorOpened", "NoteDispense"]),
        "{v}"
    );
    let e = cli::run(
        s,
        &cli::args(&add("acme-bad", "https://x.example", "--whitelist 999")),
        &key,
    )
    .await
    .error();
    assert!(e.contains("not a transaction or audit type"), "{e}");
}

/// `ingest-key rotate`: a generated key printed once, or one read from
/// standard input and never printed; the ingest function then accepts the
/// new key and, until the next rotation, the old one.
#[tokio::test]
async fn ingest_key_rotation_keeps_the_previous_key_working() {
    let stack = Stack::deploy().await;
    let s = &stack;
    let ingest = s.ingest();
    let first = s.ingest_key().await;
    let upload = |n: u32| {
        format!(
            r#"{{"Transactions":[{{"PickupGroupId":1,"SerialNumber":"UT00001","RetrievedOn":"2023-05-01T10:00:00Z","TransactionDateTime":"2023-05-01T08:00:{n:02}","UserName":"U","TransactionType":"CashIn","Amount":0}}]}}"#
        )
    };
    let status = |key: String, n: u32| {
        let ingest = &ingest;
        let body = upload(n);
        async move {
            ingest
                .handle(apigw::post("/v1/uploads", body.as_bytes(), Some(&key)))
                .await
                .status_code
        }
    };
    assert_eq!(status(first.clone(), 1).await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;

    // Generated: printed once on stdout, and it is the secret's new value.
    let rotated = cli::run(s, &["ingest-key", "rotate"], "").await;
    assert!(
        rotated.err.contains("shown this once") && rotated.err.contains("until the next rotation"),
        "{}",
        rotated.err
    );
    let out = rotated.ok();
    let second = out.lines().last().unwrap().to_owned();
    assert_eq!(second.len(), 48, "{out}");
    assert!(second.chars().all(|c| c.is_ascii_alphanumeric()), "{out}");
    assert_eq!(s.ingest_key().await, second);
    assert_eq!(status(second.clone(), 2).await, 200, "new key");
    assert_eq!(status(first.clone(), 3).await, 200, "old key, grace period");

    // From standard input: never printed.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let third = format!("given-{}", uuid::Uuid::new_v4().simple());
    let rotated = cli::run(
        s,
        &["ingest-key", "rotate", "--key-stdin", "--json"],
        &format!("{third}\n"),
    )
    .await;
    assert!(!rotated.all_text().contains(&third));
    let v = rotated.json();
    assert_eq!(v["Generated"], false);
    assert!(v.get("Key").is_none());
    assert_eq!(
        v["SecretId"],
        format!("platformsync/{}/ingest-key", s.stage)
    );
    assert_eq!(s.ingest_key().await, third);
    assert_eq!(status(third.clone(), 4).await, 200);
    assert_eq!(status(second.clone(), 5).await, 200);
    assert_eq!(status(first.clone(), 6).await, 401, "rotated out twice");

    // Refused: an empty key, a key argument, an unknown secret (no secret made).
    let e = cli::run(s, &["ingest-key", "rotate", "--key-stdin"], "\n")
        .await
        .error();
    assert!(e.contains("empty"), "{e}");
    let refused = cli::run(s, &["ingest-key", "rotate", "--key", "SECRET-ARG"], "").await;
    assert!(refused.error().contains("never accepted as an argument"));
    cli::refused(
        s,
        &[
            "ingest-key",
            "rotate",
            "--secret-id",
            "platformsync/nope/ingest-key",
        ],
        "PutSecretValue",
    )
    .await;
    assert!(s.secret("platformsync/nope/ingest-key").await.is_none());
    assert_eq!(s.ingest_key().await, third, "unchanged by refusals");
}

#[test]
fn simulated_day_has_every_type_adds_up_and_one_malformed() {
    let date = parse_date("2024-03-14").unwrap();
    let sim = day(&DayOptions {
        date,
        ..DayOptions::new(42)
    });
    let e = &sim.expected;
    for t in TransactionType::ALL {
        assert!(
            e.by_type.get(t.canonical_name()).is_some_and(|n| *n > 0),
            "{t} missing"
        );
    }
    for a in AuditType::ALL {
        assert!(
            e.by_type.get(a.canonical_name()).is_some_and(|n| *n > 0),
            "{a} missing"
        );
    }
    for spelling in [
        "ValidatedCashIn",
        "ChangePurchase",
        "30",
        "\"31\"",
        "100",
        "CashIn",
        "ChangeRequest",
    ] {
        assert!(
            e.spellings.contains(spelling),
            "{spelling} never sent: {:?}",
            e.spellings
        );
    }
    // Serial formats of several makers.
    let prefixes: HashSet<&str> = sim.serials.iter().map(|s| &s[..2]).collect();
    assert_eq!(prefixes, HashSet::from(["UT", "CT", "LS", "UH"]));
    assert!(
        sim.serials.iter().any(|s| s.len() == 12),
        "{:?}",
        sim.serials
    );

    let now = time::OffsetDateTime::now_utc();
    let (mut valid, mut rejected) = (0, 0);
    let mut keys = HashSet::new();
    let mut items = 0;
    for upload in &sim.uploads {
        let parsed = parse_upload(&upload.body).unwrap();
        items += parsed.items.len();
        for o in &parsed.items {
            match &o.result {
                Ok(item) => {
                    let reasons = check(item, now, &QualityPolicy::default());
                    assert!(reasons.is_empty(), "{reasons:?}: {}", o.raw);
                    valid += 1;
                    keys.insert(item.storage_key());
                }
                Err(err) => {
                    rejected += 1;
                    assert!(err.to_string().contains("Amount"), "{err}");
                }
            }
        }
    }
    assert_eq!(rejected, 1, "exactly one malformed item");
    assert_eq!(e.malformed, 1);
    assert_eq!(keys.len(), e.valid, "distinct records");
    assert_eq!(
        valid,
        e.valid + e.duplicates,
        "re-sent items parse as the same records"
    );
    assert!(e.duplicates >= 1);
    assert_eq!(items, e.items);
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        })
        .map(|(_, v)| v.trim().to_owned())
}

/// A minimal HTTP/1.1 server in front of the real ingest handler: what the
/// local runner does for the HTTP API, reduced to one route. It runs on a
/// thread of its own, one request at a time.
fn ingest_api(stack: &Stack) -> (String, Arc<std::sync::Mutex<Vec<Option<String>>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (config, settings) = (stack.config.clone(), stack.ingest_settings());
    let keys = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = keys.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let ingest = ingest::Ingest::new(&config, settings);
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                let head_end = loop {
                    let n = tcp.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        break 0;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                if head_end == 0 {
                    continue;
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let length: usize = header(&head, "content-length").unwrap().parse().unwrap();
                while buf.len() < head_end + length {
                    let n = tcp.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let key = header(&head, "x-api-key");
                seen.lock().unwrap().push(key.clone());
                let resp = ingest
                    .handle(apigw::post(
                        "/v1/uploads",
                        &buf[head_end..head_end + length],
                        key.as_deref(),
                    ))
                    .await;
                let body = apigw::json(&resp).to_string();
                let reply = format!(
                    "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    resp.status_code,
                    body.len()
                );
                tcp.write_all(reply.as_bytes()).await.unwrap();
            }
        });
    });
    (url, keys)
}

#[tokio::test]
async fn simulate_uploads_a_day_and_the_ingest_counts_match_its_expectations() {
    let stack = deploy_with_acme().await;
    let s = &stack;
    let (api, keys) = ingest_api(s);
    let key = s.ingest_key().await;
    let key_path = cli::key_file(&key);
    let key_path = key_path.to_str().unwrap();

    let args = [
        "simulate",
        "--api",
        &api,
        "--key-file",
        key_path,
        "--safes",
        "4",
        "--transactions",
        "120",
        "--uploads",
        "3",
        "--seed",
        "9",
        "--date",
        "2024-03-14",
        "--assign-to",
        "acme",
        "--json",
    ];
    let run = cli::run(s, &args, "").await;
    assert!(
        !run.all_text().contains(&key),
        "the ingest key is never printed"
    );
    let v = run.json();
    let expected = day(&DayOptions {
        safes: 4,
        transactions: 120,
        uploads: 3,
        ..DayOptions {
            date: parse_date("2024-03-14").unwrap(),
            ..DayOptions::new(9)
        }
    });
    assert_eq!(v["Serials"], serde_json::json!(expected.serials));
    let uploads = v["Uploads"].as_array().unwrap();
    assert_eq!(uploads.len(), 3);
    for (u, e) in uploads.iter().zip(&expected.uploads) {
        let r = &u["Response"];
        assert_eq!(u["Status"], 200, "{u}");
        assert_eq!(r["Accepted"], e.expected.accepted, "{u}");
        assert_eq!(r["Duplicates"], e.expected.duplicates, "{u}");
        assert_eq!(r["Held"], 0, "{u}");
        assert_eq!(r["Unowned"], 0, "assigned to acme first: {u}");
        assert_eq!(
            r["Rejected"].as_array().unwrap().len(),
            e.expected.rejected,
            "{u}"
        );
    }
    assert!(
        keys.lock()
            .unwrap()
            .iter()
            .all(|k| k.as_deref() == Some(key.as_str()))
    );
    let safes = cli::run(s, &["safe", "list", "--customer", "acme", "--json"], "")
        .await
        .json();
    assert_eq!(safes.as_array().unwrap().len(), 4);

    // The same day again: nothing new.
    let text = cli::run(s, &args[..args.len() - 1], "").await.ok();
    assert!(
        text.contains(&format!(
            "Total: 0 accepted, {} duplicates",
            expected.expected.valid + expected.expected.duplicates
        )),
        "{text}"
    );

    // A wrong key: the command fails, naming the status.
    let wrong = cli::key_file("wrong-key");
    cli::refused(
        s,
        &cli::args(&format!(
            "simulate --api {api} --key-file {} --transactions 20",
            wrong.display()
        )),
        "HTTP 401",
    )
    .await;
    let _ = std::fs::remove_file(wrong);
    let _ = std::fs::remove_file(key_path);
}

/// `safe assign` is how staff repair a safe whose owner item names an id
/// that is not one (the fan-out sets such a safe's records aside): the item
/// is replaced, with a word on standard error, never kept as an owner.
#[tokio::test]
async fn safe_assign_replaces_a_stored_owner_that_is_not_a_customer_id() {
    let stack = Stack::deploy().await;
    let s = &stack;
    cli::ok(s, &["customer", "add", "--id", "acme", "--name", "Acme"]).await;
    let owner = platformsync_aws::config_table::keys::safe_owner("UT55555");
    stack
        .clients
        .dynamodb
        .put_item()
        .table_name(stack.reference("ConfigTable"))
        .item("PK", AttributeValue::S(owner.0))
        .item("SK", AttributeValue::S(owner.1))
        .item("CustomerId", AttributeValue::S("Not An Id!".into()))
        .item("SerialNumber", AttributeValue::S("UT55555".into()))
        .send()
        .await
        .unwrap();
    let assignments = stack.config_store().assignments();
    assert!(
        assignments.ownership(&ids::safe("UT55555")).await.is_err(),
        "the fan-out cannot read it"
    );

    let run = cli::run(s, &["safe", "assign", "UT55555", "--customer", "acme"], "").await;
    assert!(
        run.err
            .contains("\"Not An Id!\" is not a customer id; replaced"),
        "{}",
        run.err
    );
    let out = run.ok();
    assert!(out.contains("safe UT55555 -> acme"), "{out}");
    assert!(
        !out.contains("(was"),
        "the bad id is no earlier owner: {out}"
    );
    let ownership = assignments.ownership(&ids::safe("UT55555")).await.unwrap();
    assert_eq!(
        ownership.owner_at("2024-01-01T00:00:00.0000000"),
        Some(&ids::customer("acme"))
    );
}
