//! Signed pushes (issue 14) over the wire: the push function against the
//! local stack and HTTPS receivers, signing switched on, rotated and off with
//! the ops CLI (in-process), and every signature checked with the published
//! `standardwebhooks` crate, an implementation independent of ours.
//!
//! Every POST the receivers read is counted; none relies on a receiver
//! dropping repeats.

use std::time::{Duration, Instant};

use platformsync_domain::endpoint::{CustomerId, EndpointId};
use platformsync_receiver::{
    Config as ReferenceConfig, KeyCheck, Outcome as ReferenceOutcome, Placement,
    Receiver as Reference, Signature, SignatureCheck,
};
use platformsync_tests::cli;
use platformsync_tests::ids;
use platformsync_tests::receiver::{Receiver, Reply, Request};
use platformsync_tests::{Stack, transactions_batch};
use serde_json::json;
use standardwebhooks::{Webhook, WebhookError};

const CUSTOMER: &str = "acme";

// ---------------------------------------------------------------- fixtures

/// An endpoint of `acme` at `url`, its plain key in Secrets Manager (as every
/// endpoint registered before signing existed).
async fn endpoint(stack: &Stack, id: &str, url: String, key: &str) {
    stack.add_customer(CUSTOMER, "Acme Retail", &[]).await;
    stack.add_endpoint(CUSTOMER, id, &url, key, json!({})).await;
}

async fn stored_secret(stack: &Stack, id: &str) -> String {
    let name = format!("platformsync/{}/endpoints/{id}", stack.stage);
    stack.secret(&name).await.expect("endpoint key stored")
}

/// `endpoint signing ...`: the one `whsec_` secret it prints.
async fn signing(stack: &Stack, args: &[&str]) -> String {
    let mut all = vec!["endpoint", "signing"];
    all.extend(args);
    let out = cli::ok(stack, &all).await;
    let secret = out.trim().to_owned();
    assert!(
        secret.starts_with("whsec_") && !secret.contains(char::is_whitespace),
        "{out}"
    );
    secret
}

/// A batch of `n` transactions of safe UT07761 for `endpoint_id`.
/// A request's headers as a customer's web framework hands them over.
fn header_map(request: &Request) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (k, v) in &request.headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

fn verify(secret: &str, body: &[u8], headers: &http::HeaderMap) -> Result<(), WebhookError> {
    Webhook::new(secret).unwrap().verify(body, headers)
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Push trusting `ca_pem` (and loopback), with no settings cache.
fn push_for_ca(stack: &Stack, ca_pem: &str) -> push::Push {
    let mut settings = push::Settings::new(
        stack.reference("ConfigTable"),
        stack.reference("DeliveryLedgerTable"),
        stack.reference("DeliveryQueue"),
        stack.reference("DeliveryDeadLetterQueue"),
        stack.reference("NotificationsTopic"),
    );
    settings.extra_ca_pem = Some(ca_pem.as_bytes().to_vec());
    settings.allow =
        platformsync_delivery::ssrf::AllowList::parse("127.0.0.0/8").expect("loopback allow-list");
    settings.config_cache = Duration::ZERO;
    push::Push::new(&stack.config, settings).expect("push function builds")
}

/// Push with no settings cache: a CLI change is seen by the next batch.
fn push_fn(stack: &Stack, receiver: &Receiver) -> push::Push {
    stack.push(receiver, |s| s.config_cache = Duration::ZERO)
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_pushes_verify_independently_and_tampering_fails() {
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    endpoint(&stack, "acme-signed", receiver.url("/signed"), "tok-1").await;
    endpoint(&stack, "acme-plain", receiver.url("/plain"), "tok-p").await;

    let secret = signing(&stack, &["enable", "--endpoint", "acme-signed"]).await;
    let stored = stored_secret(&stack, "acme-signed").await;
    let doc: serde_json::Value = serde_json::from_str(&stored).expect("a document now");
    assert_eq!(doc["Key"], "tok-1");
    assert_eq!(doc["Signing"][0]["Secret"], secret.as_str());
    assert_eq!(
        stored_secret(&stack, "acme-plain").await,
        "tok-p",
        "an unsigned endpoint's secret is untouched"
    );
    let again = cli::run(
        &stack,
        &["endpoint", "signing", "enable", "--endpoint", "acme-signed"],
        "",
    )
    .await
    .error();
    assert!(again.contains("already signs"), "{again}");

    let push = push_fn(&stack, &receiver);
    let signed = transactions_batch(CUSTOMER, "acme-signed", 3, 1);
    let plain = transactions_batch(CUSTOMER, "acme-plain", 2, 2);
    stack.enqueue(&signed).await;
    stack.enqueue(&plain).await;
    stack
        .deliver_until(&push, Duration::from_secs(30), || receiver.count() == 2)
        .await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "one POST each");
    let signed_post = requests.iter().find(|r| r.path() == "/signed").unwrap();
    let plain_post = requests.iter().find(|r| r.path() == "/plain").unwrap();

    // The signed push: the key as before, plus the three headers.
    assert_eq!(signed_post.header("authorization"), Some("Bearer tok-1"));
    assert_eq!(
        signed_post.header("webhook-id"),
        Some(signed.message_id.to_string().as_str())
    );
    assert_eq!(signed_post.message_id(), signed.message_id.to_string());
    let ts: i64 = signed_post
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!((unix_now() - ts).abs() < 60, "signed at the attempt: {ts}");
    let signature = signed_post.header("webhook-signature").unwrap();
    assert_eq!(signature.split(' ').count(), 1, "{signature}");
    assert!(signature.starts_with("v1,"), "{signature}");
    let headers = header_map(signed_post);
    verify(&secret, &signed_post.body, &headers).expect("verifies with the published crate");

    // Tampered body, wrong secret, replayed after 10 minutes: all refused.
    let mut tampered = signed_post.body.clone();
    let at = tampered.iter().position(|b| *b == b'5').unwrap();
    tampered[at] = b'6';
    assert!(matches!(
        verify(&secret, &tampered, &headers),
        Err(WebhookError::InvalidSignature)
    ));
    let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(matches!(
        verify(wrong, &signed_post.body, &headers),
        Err(WebhookError::InvalidSignature)
    ));
    let mut stale = headers.clone();
    let old = ts - 600;
    stale.insert("webhook-timestamp", old.to_string().parse().unwrap());
    let resigned = Webhook::new(&secret)
        .unwrap()
        .sign(&signed.message_id.to_string(), old, &signed_post.body)
        .unwrap();
    stale.insert("webhook-signature", resigned.parse().unwrap());
    assert!(matches!(
        verify(&secret, &signed_post.body, &stale),
        Err(WebhookError::TimestampTooOldError)
    ));

    // The unsigned endpoint gets none of the headers.
    assert_eq!(plain_post.header("authorization"), Some("Bearer tok-p"));
    for name in ["webhook-signature", "webhook-id", "webhook-timestamp"] {
        assert_eq!(plain_post.header(name), None, "{name} on an unsigned push");
    }

    // A retry carries the same webhook-id, is signed again, and verifies.
    receiver.queue([Reply::status(500)]);
    let retried = transactions_batch(CUSTOMER, "acme-signed", 1, 3);
    stack.enqueue(&retried).await;
    stack
        .deliver_until(&push, Duration::from_secs(60), || receiver.count() == 4)
        .await;
    let posts: Vec<Request> = receiver.requests().into_iter().skip(2).collect();
    assert_eq!(posts.len(), 2, "one failed POST, one retry");
    assert_eq!(posts[0].replied, Some(500));
    assert_eq!(posts[1].replied, Some(200));
    for post in &posts {
        assert_eq!(
            post.header("webhook-id"),
            Some(retried.message_id.to_string().as_str())
        );
        verify(&secret, &post.body, &header_map(post)).expect("each POST verifies");
    }
    assert_eq!(
        posts[0].body, posts[1].body,
        "the same body on every attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_signs_with_both_secrets_during_grace_then_only_the_new() {
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    endpoint(&stack, "acme-rot", receiver.url("/rot"), "tok-1").await;
    let first = signing(&stack, &["enable", "--endpoint", "acme-rot"]).await;

    // Grace compressed to 12 seconds.
    let rotated_at = Instant::now();
    let second = signing(
        &stack,
        &[
            "rotate",
            "--endpoint",
            "acme-rot",
            "--grace-hours",
            "0.0033333333",
        ],
    )
    .await;
    assert_ne!(first, second, "a new secret");
    let grace = Duration::from_secs(12);

    // The API key rotated meanwhile keeps the signing secrets.
    let out = cli::run(
        &stack,
        &[
            "endpoint",
            "rotate-key",
            "--endpoint",
            "acme-rot",
            "--key-stdin",
        ],
        "tok-2\n",
    )
    .await
    .ok();
    assert!(!out.contains("whsec_") && !out.contains("tok-2"), "{out}");
    let doc: serde_json::Value =
        serde_json::from_str(&stored_secret(&stack, "acme-rot").await).unwrap();
    assert_eq!(doc["Key"], "tok-2");
    assert_eq!(doc["Signing"].as_array().unwrap().len(), 2, "{doc:#}");

    // During grace: both signatures, each secret verifies on its own.
    let push = push_fn(&stack, &receiver);
    let during = transactions_batch(CUSTOMER, "acme-rot", 2, 1);
    stack.enqueue(&during).await;
    stack
        .deliver_until(&push, Duration::from_secs(30), || receiver.count() == 1)
        .await;
    assert!(
        rotated_at.elapsed() < grace,
        "the first batch must be pushed within the grace period"
    );
    let post = &receiver.requests()[0];
    assert_eq!(post.header("authorization"), Some("Bearer tok-2"));
    let signature = post.header("webhook-signature").unwrap();
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    let headers = header_map(post);
    verify(&first, &post.body, &headers).expect("the old secret verifies during grace");
    verify(&second, &post.body, &headers).expect("the new secret verifies");

    // After grace: only the new one (the same push instance: its cached
    // secret is not what ends the grace, the time is).
    let left = grace.saturating_sub(rotated_at.elapsed()) + Duration::from_secs(2);
    tokio::time::sleep(left).await;
    let after = transactions_batch(CUSTOMER, "acme-rot", 2, 2);
    stack.enqueue(&after).await;
    stack
        .deliver_until(&push, Duration::from_secs(30), || receiver.count() == 2)
        .await;
    let post = &receiver.requests()[1];
    let signature = post.header("webhook-signature").unwrap();
    assert_eq!(signature.split(' ').count(), 1, "{signature}");
    let headers = header_map(post);
    verify(&second, &post.body, &headers).expect("the new secret verifies");
    assert!(
        matches!(
            verify(&first, &post.body, &headers),
            Err(WebhookError::InvalidSignature)
        ),
        "the old secret no longer verifies after grace"
    );

    // Disabled: no headers; the secret is the plain key again.
    cli::run(
        &stack,
        &["endpoint", "signing", "disable", "--endpoint", "acme-rot"],
        "",
    )
    .await
    .ok();
    assert_eq!(stored_secret(&stack, "acme-rot").await, "tok-2");
    let push = push_fn(&stack, &receiver);
    stack
        .enqueue(&transactions_batch(CUSTOMER, "acme-rot", 1, 3))
        .await;
    stack
        .deliver_until(&push, Duration::from_secs(30), || receiver.count() == 3)
        .await;
    let post = &receiver.requests()[2];
    assert_eq!(post.header("authorization"), Some("Bearer tok-2"));
    assert_eq!(post.header("webhook-signature"), None);
    assert_eq!(receiver.count(), 3, "one POST per batch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_endpoint_without_a_signing_secret_is_our_failure_not_an_attempt() {
    let stack = Stack::deploy().await;
    let receiver = Receiver::start().await;
    endpoint(&stack, "acme-broken", receiver.url("/broken"), "tok-1").await;
    // The flag on, the secret still the plain key (a half-done change).
    let store = stack.config_store();
    let customer = CustomerId::parse(CUSTOMER).unwrap();
    let id = EndpointId::parse("acme-broken").unwrap();
    let mut settings = store.endpoint(&customer, &id).await.unwrap().unwrap();
    settings.signing = true;
    store.put_endpoint(&settings).await.unwrap();

    let push = push_fn(&stack, &receiver);
    let b = transactions_batch(CUSTOMER, "acme-broken", 1, 1);
    stack.enqueue(&b).await;
    let messages = stack.receive_deliveries(5).await;
    assert_eq!(messages.len(), 1);
    let response = stack.run_push(&push, &messages).await;
    assert_eq!(response.batch_item_failures.len(), 1, "kept for later");
    assert_eq!(receiver.count(), 0, "nothing unsigned is sent");
    let health = stack
        .health_store()
        .get(&ids::endpoint("acme-broken"))
        .await
        .unwrap();
    assert_eq!(
        health.state,
        platformsync_aws::health::HealthState::Healthy,
        "not charged to the customer: {health:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_receiver_verifies_signed_pushes_and_refuses_bad_ones() {
    let stack = Stack::deploy().await;
    let secret = "whsec_c2lnbmluZyBzZWNyZXQgb2YgdGhlIHJlZmVyZW5jZSB0ZXN0";
    let reference = Reference::start(ReferenceConfig {
        key: Some(KeyCheck::new(
            "Authorization",
            Placement::Header { bearer: true },
            "tok-r",
        )),
        signing: Some(SignatureCheck::new(&[secret]).unwrap()),
        ..ReferenceConfig::default()
    })
    .await
    .unwrap();
    endpoint(
        &stack,
        "acme-ref",
        format!("{}/ref", reference.url()),
        "tok-r",
    )
    .await;
    // Signing on with a secret the receiver does not hold: refused.
    signing(&stack, &["enable", "--endpoint", "acme-ref"]).await;
    let push = push_for_ca(&stack, &reference.ca_pem);
    stack
        .enqueue(&transactions_batch(CUSTOMER, "acme-ref", 1, 1))
        .await;
    let messages = stack.receive_deliveries(5).await;
    let response = stack.run_push(&push, &messages).await;
    assert_eq!(response.batch_item_failures.len(), 1, "401: retried later");
    // A 401 makes push fetch the key again and repeat the POST once.
    let refused = reference.requests();
    assert!((1..=2).contains(&refused.len()), "{refused:?}");
    for r in &refused {
        assert_eq!(r.status, 401);
        assert_eq!(r.outcome, ReferenceOutcome::BadSignature);
        assert_eq!(r.signature, Some(Signature::Failed));
    }
    assert_eq!(reference.summary().bad_signatures, refused.len() as u64);
    assert_eq!(reference.summary().batches, 0);

    // The secret it holds: the endpoint's own (as the customer got it).
    let doc = serde_json::json!({"Key": "tok-r", "Signing": [{"Secret": secret}]});
    stack
        .clients
        .secrets
        .put_secret_value()
        .secret_id(format!("platformsync/{}/endpoints/acme-ref", stack.stage))
        .secret_string(doc.to_string())
        .send()
        .await
        .unwrap();
    // A fresh function: its key cache would hold the old value 5 minutes.
    let push = push_for_ca(&stack, &reference.ca_pem);
    let until = Instant::now() + Duration::from_secs(60);
    while reference.summary().batches < 1 {
        assert!(
            Instant::now() < until,
            "not delivered: {:?}",
            reference.requests()
        );
        let messages = stack.receive_deliveries(1).await;
        if !messages.is_empty() {
            stack.run_push(&push, &messages).await;
        }
    }
    let log = reference.requests();
    assert_eq!(log.len(), refused.len() + 1, "{log:?}");
    let last = &log[refused.len()];
    assert_eq!(last.status, 200);
    assert_eq!(last.outcome, ReferenceOutcome::Recorded);
    assert_eq!(last.signature, Some(Signature::Verified));
}
