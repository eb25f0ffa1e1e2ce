//! Tenant isolation on the local stack (issue 12): an endpoint id belongs to
//! one customer however registrations interleave, and a transaction goes to
//! the customer who owned its safe when it happened.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use platformsync_aws::config_table::EndpointWriteError;
use platformsync_domain::endpoint::{CustomerId, EndpointId, EndpointSettings};
use platformsync_tests::cli;
use platformsync_tests::ids;
use platformsync_tests::{Stack, batch_of, streams};
use serde_json::json;

/// A fresh deployment with customers acme and globex, added as an operator
/// would.
async fn deploy_with_acme_and_globex() -> Stack {
    let stack = Stack::deploy().await;
    for c in ["acme", "globex"] {
        cli::ok(&stack, &["customer", "add", "--id", c, "--name", c]).await;
    }
    stack
}

#[tokio::test]
async fn two_customers_registering_one_endpoint_id_at_once_one_wins_and_keeps_its_key() {
    let stack = deploy_with_acme_and_globex().await;
    let store = stack.config_store();
    // Several ids, so both orders of the race get a chance to happen.
    for round in 0..6 {
        let id = format!("shared-{round}");
        let (acme_key, globex_key) = (
            cli::key_file("acme-key-1234"),
            cli::key_file("globex-key-5678"),
        );
        let add = |customer: &'static str, key: &PathBuf| {
            let args: Vec<String> = [
                "endpoint",
                "add",
                "--customer",
                customer,
                "--id",
                &id,
                "--url",
                "https://hooks.example.com/in",
                "--key-file",
                key.to_str().unwrap(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let stack = &stack;
            async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                cli::run(stack, &args, "").await.into_result()
            }
        };
        let (acme, globex) = tokio::join!(add("acme", &acme_key), add("globex", &globex_key));
        let (winner, key, loser_error) = match (&acme, &globex) {
            (Ok(_), Err(e)) => ("acme", "acme-key-1234", e.clone()),
            (Err(e), Ok(_)) => ("globex", "globex-key-5678", e.clone()),
            other => panic!("round {round}: exactly one registration must win: {other:?}"),
        };
        assert!(
            loser_error.contains(&format!("endpoint id {id} is taken by customer {winner}")),
            "{loser_error}"
        );
        assert!(
            !loser_error.contains("-key-"),
            "no key in errors: {loser_error}"
        );
        let name = format!("platformsync/{}/endpoints/{id}", stack.stage);
        assert_eq!(
            stack.secret(&name).await.as_deref(),
            Some(key),
            "round {round}: the winner's key is untouched"
        );
        assert_eq!(
            store.endpoint_owner(&ids::endpoint(&id)).await.unwrap(),
            Some(ids::customer(winner))
        );
        let eid = EndpointId::parse(&id).unwrap();
        for c in ["acme", "globex"] {
            let stored = store
                .endpoint(&CustomerId::parse(c).unwrap(), &eid)
                .await
                .unwrap();
            assert_eq!(stored.is_some(), c == winner, "round {round}: {c}");
        }
    }
}

#[tokio::test]
async fn the_store_refuses_another_customers_endpoint_id() {
    let stack = Stack::deploy().await;
    let store = stack.config_store();
    let endpoint = |customer: &str, url: &str| -> EndpointSettings {
        serde_json::from_value(json!({
            "EndpointId": "erp",
            "CustomerId": customer,
            "Url": url,
        }))
        .unwrap()
    };
    store
        .put_endpoint(&endpoint("acme", "https://acme.example/in"))
        .await
        .unwrap();
    // The owner may rewrite its endpoint.
    store
        .put_endpoint(&endpoint("acme", "https://acme.example/v2"))
        .await
        .unwrap();
    let taken = store
        .put_endpoint(&endpoint("globex", "https://globex.example/in"))
        .await
        .unwrap_err();
    assert!(
        matches!(&taken, EndpointWriteError::Taken { owner, .. } if owner == "acme"),
        "{taken:?}"
    );
    assert!(
        taken
            .to_string()
            .contains("endpoint id erp is taken by customer acme"),
        "{taken}"
    );
    let globex = CustomerId::parse("globex").unwrap();
    assert!(
        store
            .claim_endpoint_id(&globex, &EndpointId::parse("erp").unwrap())
            .await
            .is_err()
    );
    assert!(store.endpoints_of(&globex).await.unwrap().is_empty());
    let acme = store
        .endpoints_of(&CustomerId::parse("acme").unwrap())
        .await
        .unwrap();
    assert_eq!(acme.len(), 1);
    assert_eq!(acme[0].url, "https://acme.example/v2");
}

fn tx(serial: &str, seq: u64, time: &str) -> String {
    format!(
        r#"{{"PickupGroupId":7,"SerialNumber":"{serial}","SequenceNumber":{seq},"RetrievedOn":"2026-06-30T12:00:00.1234567Z","TransactionDateTime":"{time}","UserName":"ANA","TransactionType":"CashIn","Amount":20.0000,"Denominations":[{{"UnitValue":20.0000,"Count":1,"Currency":"USD"}}]}}"#
    )
}

async fn upload(stack: &Stack, txs: &[String]) {
    let body = format!(r#"{{"Transactions":[{}]}}"#, txs.join(","));
    stack.upload(body.as_bytes()).await;
}

/// Receives (and deletes) everything on the delivery queue: per message
/// group (endpoint), the keys it carries (`serial|time...`), sorted.
async fn drain(stack: &Stack) -> BTreeMap<String, Vec<String>> {
    stack
        .drain_deliveries()
        .await
        .into_iter()
        .map(|(group, messages)| {
            let mut keys: Vec<String> = messages
                .iter()
                .flat_map(|m| m.items.iter().map(|i| i.key.clone()))
                .collect();
            keys.sort();
            (group, keys)
        })
        .collect()
}

fn day(keys: &[String]) -> Vec<String> {
    // `UT1|2026-06-05T...`: the safe and the day.
    keys.iter().map(|k| k[..14].to_owned()).collect()
}

#[tokio::test]
async fn late_uploads_from_before_a_move_go_to_the_old_owner() {
    let stack = deploy_with_acme_and_globex().await;
    let store = stack.config_store();
    for (id, customer) in [("acme-erp", "acme"), ("globex-erp", "globex")] {
        let e: EndpointSettings = serde_json::from_value(json!({
            "EndpointId": id,
            "CustomerId": customer,
            "Url": format!("https://{id}.example.com/in"),
        }))
        .unwrap();
        store.put_endpoint(&e).await.unwrap();
    }
    // UT1: acme's, then globex's from 2026-06-10 12:00 (safe time).
    cli::ok(&stack, &["safe", "assign", "UT1", "--customer", "acme"]).await;
    cli::ok(
        &stack,
        &cli::args("safe assign UT1 --customer globex --from 2026-06-10T12:00:00"),
    )
    .await;
    // UT2: assigned before dates existed (only the OWNER item): acme's.
    store
        .assign_safe(&ids::safe("UT2"), &ids::customer("acme"))
        .await
        .unwrap();

    let fanout = stack.fanout();
    // Before the move is fanned out at all, the safe's new owner uploads...
    upload(&stack, &[tx("UT1", 3, "2026-06-11T08:00:00")]).await;
    // ...then the old owner's late uploads arrive (a safe offline for days).
    upload(
        &stack,
        &[
            tx("UT1", 1, "2026-06-05T09:00:00"),
            tx("UT1", 2, "2026-06-10T11:59:59"),
            tx("UT2", 1, "2026-06-11T09:00:00"),
        ],
    )
    .await;
    let records = streams::lambda_records(&stack).await;
    assert_eq!(records.len(), 4);
    // One event each, so the cache (fresh after the first) serves the rest.
    for record in records {
        let outcome = fanout
            .process(
                streams::event(&[record]),
                Instant::now() + Duration::from_secs(60),
            )
            .await;
        assert_eq!(outcome.first_failed, None, "{outcome:?}");
        assert_eq!(outcome.unowned, 0, "{outcome:?}");
    }
    let received = drain(&stack).await;
    assert_eq!(
        received.keys().collect::<Vec<_>>(),
        ["acme-erp", "globex-erp"],
        "{received:?}"
    );
    assert_eq!(
        day(&received["acme-erp"]),
        ["UT1|2026-06-05", "UT1|2026-06-10", "UT2|2026-06-11"],
        "A's period (late) and the undated safe go to acme: {received:?}"
    );
    assert_eq!(
        day(&received["globex-erp"]),
        ["UT1|2026-06-11"],
        "after the move: globex: {received:?}"
    );
}

#[tokio::test]
async fn push_sends_the_key_named_after_the_endpoint_not_the_one_its_record_names() {
    use platformsync_domain::batch::BatchEntry;
    use platformsync_tests::receiver::Receiver;

    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    let store = stack.config_store();
    let secrets = &stack.clients.secrets;
    let name = |id: &str| format!("platformsync/{}/endpoints/{id}", stack.stage);
    for (id, customer, key) in [
        ("acme-erp", "acme", "acme-key-1111"),
        ("globex-erp", "globex", "globex-key-2222"),
    ] {
        secrets
            .create_secret()
            .name(name(id))
            .secret_string(key)
            .send()
            .await
            .unwrap();
        // globex's record names acme's secret (a hand-edited or old record).
        let e: EndpointSettings = serde_json::from_value(json!({
            "EndpointId": id,
            "CustomerId": customer,
            "Url": receiver.url(&format!("/{id}")),
            "ApiKeySecret": name("acme-erp"),
        }))
        .unwrap();
        store.put_endpoint(&e).await.unwrap();
    }
    let time = "2026-01-10T08:00:00";
    let item = BatchEntry {
        key: BatchEntry::key_of("UT1", &format!("{time}.0000000#sha:01")),
        payload: serde_json::value::RawValue::from_string(tx("UT1", 1, time)).unwrap(),
    };
    let batch = batch_of("globex", "globex-erp", vec![item]);
    stack.enqueue(&batch).await;
    let push = stack.push(&receiver, |_| {});
    stack
        .deliver_until(&push, Duration::from_secs(20), || receiver.count() > 0)
        .await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path(), "/globex-erp");
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer globex-key-2222"),
        "globex's own key, never the secret its record names"
    );
}

#[tokio::test]
async fn endpoints_stored_before_claims_existed_get_claimed_and_old_sharing_is_reported() {
    let stack = Stack::deploy().await;
    let store = stack.config_store();
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.config);
    // Endpoint items as the old code wrote them: no claim item.
    for (customer, id) in [("acme", "erp"), ("globex", "erp"), ("globex", "globex-1")] {
        let e: EndpointSettings = serde_json::from_value(json!({
            "EndpointId": id,
            "CustomerId": customer,
            "Url": "https://hooks.example.com/in",
        }))
        .unwrap();
        let mut item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            serde_dynamo::to_item(&e).unwrap();
        item.insert(
            "PK".into(),
            aws_sdk_dynamodb::types::AttributeValue::S(format!("CUSTOMER#{customer}")),
        );
        item.insert(
            "SK".into(),
            aws_sdk_dynamodb::types::AttributeValue::S(format!("ENDPOINT#{id}")),
        );
        dynamodb
            .put_item()
            .table_name(stack.reference("ConfigTable"))
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    // The upgrade step, as staff run it: fails while an id is shared, and names it.
    let shared = cli::run(&stack, &["endpoint", "claim-ids"], "")
        .await
        .error();
    assert!(
        shared.contains("1 endpoint id(s) are used by two customers"),
        "{shared}"
    );
    cli::refused(
        &stack,
        &["--json", "endpoint", "claim-ids"],
        "used by two customers",
    )
    .await;
    let conflicts = store.claim_existing_endpoints().await.unwrap();
    assert_eq!(
        conflicts,
        [("erp".to_owned(), "globex".to_owned(), "acme".to_owned())]
    );
    assert_eq!(
        store
            .endpoint_owner(&ids::endpoint("globex-1"))
            .await
            .unwrap(),
        Some(ids::customer("globex"))
    );
    // Idempotent; and a newcomer cannot take a legacy id any more.
    assert_eq!(store.claim_existing_endpoints().await.unwrap(), conflicts);
    let taken = store
        .claim_endpoint_id(
            &CustomerId::parse("initech").unwrap(),
            &EndpointId::parse("globex-1").unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        taken.to_string().contains("taken by customer globex"),
        "{taken}"
    );
}
