//! Setups several tests share: the stores of a deployment, customers and
//! endpoints with their keys, an upload through ingest, and the loops that
//! move deliveries through the push function or off the delivery queue.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use platformsync_aws::config_table::ConfigStore;
use platformsync_aws::health::HealthStore;
use platformsync_aws::ledger::{Delivery, Ledger};
use platformsync_aws::parked::ParkedStore;
use platformsync_aws::transactions::TransactionStore;
use platformsync_domain::batch::{BATCH_MESSAGE_VERSION, BatchEntry, BatchMessage};
use platformsync_domain::endpoint::{Customer, CustomerId, EndpointId, EndpointSettings};
use platformsync_domain::record::{DeliveryStatus, RecordType, StoredTransaction};
use platformsync_domain::serial::SerialNumber;
use platformsync_domain::types::MessageKind;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::receiver::Receiver;
use crate::{Stack, apigw, ids};

/// A batch of `n` cash-in transactions of safe UT07761 for `customer`'s
/// `endpoint_id`, as the fan-out would enqueue it, under a fresh
/// `MessageId`. `seed` is each transaction's `PickupGroupId` and sets the
/// keys' minute, so batches of different seeds never share a key.
pub fn transactions_batch(
    customer: &str,
    endpoint_id: &str,
    n: usize,
    seed: usize,
) -> BatchMessage {
    let items = (0..n)
        .map(|i| {
            let time = format!("2026-01-10T08:{:02}:{:02}", seed % 60, i % 60);
            let payload = format!(
                r#"{{"PickupGroupId":{seed},"SerialNumber":"UT07761","RetrievedOn":"2026-01-10T09:00:00Z","TransactionDateTime":"{time}","UserName":"clerk","TransactionType":"CashIn","Amount":5560.0,"Denominations":[{{"UnitValue":20.0000,"Count":53,"Currency":"USD"}},{{"UnitValue":100.0000,"Count":45,"Currency":"USD"}}]}}"#
            );
            BatchEntry {
                key: BatchEntry::key_of("UT07761", &format!("{time}.0000000#sha:{seed:08x}{i:024x}")),
                payload: RawValue::from_string(payload).expect("valid JSON"),
            }
        })
        .collect();
    batch_of(customer, endpoint_id, items)
}

/// A batch of transactions `items` for `customer`'s `endpoint_id`, as the
/// fan-out would enqueue it, under a fresh `MessageId`.
pub fn batch_of(customer: &str, endpoint_id: &str, items: Vec<BatchEntry>) -> BatchMessage {
    BatchMessage {
        version: BATCH_MESSAGE_VERSION,
        message_id: uuid::Uuid::new_v4(),
        endpoint_id: EndpointId::parse(endpoint_id).expect("a valid endpoint id"),
        customer_id: CustomerId::parse(customer).expect("a valid customer id"),
        kind: MessageKind::Transactions,
        created_at: "2026-01-10T09:00:00Z".into(),
        items,
        plan_ref: None,
    }
}

/// Batches of `n` transactions (see [`transactions_batch`]), one for each
/// seed of `seeds`, in order.
pub fn transactions_batches(
    customer: &str,
    endpoint_id: &str,
    n: usize,
    seeds: std::ops::Range<usize>,
) -> Vec<BatchMessage> {
    seeds
        .map(|seed| transactions_batch(customer, endpoint_id, n, seed))
        .collect()
}

/// Endpoint `id` of `customer` at `url`, its key in secret `key_secret`,
/// with the settings in `extra` (`{"MaxBatchSize": 5}`...) on top.
pub fn endpoint_settings(
    customer: &str,
    id: &str,
    url: &str,
    key_secret: &str,
    extra: &Value,
) -> EndpointSettings {
    let mut settings = json!({
        "EndpointId": id,
        "CustomerId": customer,
        "Url": url,
        "ApiKeySecret": key_secret,
    });
    if let (Some(s), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(settings).expect("valid endpoint settings")
}

/// A transaction of safe `serial` at safe time `time`
/// (`2026-01-10T08:00:01`) as ingest stores it: `hash` its dedup hash,
/// `record_type` and `status` as given, no hold notes, `payload` its item.
pub fn stored_transaction(
    serial: &str,
    time: &str,
    hash: &str,
    record_type: RecordType,
    status: DeliveryStatus,
    payload: String,
) -> StoredTransaction {
    StoredTransaction {
        serial_number: SerialNumber::parse(serial).expect("a valid serial number"),
        sort_key: format!("{time}.0000000#sha:{hash}"),
        dedup_key: format!("sha:{hash}"),
        record_type,
        status,
        hold_reasons: vec![],
        payload,
        sequence_number: None,
        upload_id: "u1".into(),
        received_at: time::macros::datetime!(2026-01-10 09:00:01 UTC),
    }
}

impl Stack {
    /// A DynamoDB client of this deployment's SDK configuration.
    fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.config)
    }

    /// The configuration table (customers, safes, endpoints) of this deployment.
    pub fn config_store(&self) -> ConfigStore {
        ConfigStore::new(self.dynamodb(), self.reference("ConfigTable"))
    }

    /// The transactions table of this deployment.
    pub fn transaction_store(&self) -> TransactionStore {
        TransactionStore::new(self.dynamodb(), self.reference("TransactionsTable"))
    }

    /// The delivery ledger (delivered batches, attempts) of this deployment.
    pub fn ledger(&self) -> Ledger {
        Ledger::new(self.dynamodb(), self.reference("DeliveryLedgerTable"))
    }

    /// Endpoint health (incidents, last delivery), kept in the config table.
    pub fn health_store(&self) -> HealthStore {
        HealthStore::new(self.dynamodb(), self.reference("ConfigTable"))
    }

    /// Parked batches, kept in the delivery ledger table.
    pub fn parked_store(&self) -> ParkedStore {
        ParkedStore::new(self.dynamodb(), self.reference("DeliveryLedgerTable"))
    }

    /// Stores (or overwrites) customer `id`, told of failures at `recipients`.
    pub async fn add_customer(&self, id: &str, name: &str, recipients: &[&str]) {
        self.config_store()
            .put_customer(&Customer {
                customer_id: CustomerId::parse(id).expect("a valid customer id"),
                name: name.to_owned(),
                notification_recipients: recipients.iter().map(|r| r.to_string()).collect(),
            })
            .await
            .expect("customer stored");
    }

    /// Stores `key` as endpoint `id`'s API key where the CLI puts it
    /// (`platformsync/<stage>/endpoints/<id>`); the secret's name.
    pub async fn store_endpoint_key(&self, id: &str, key: &str) -> String {
        let name = format!("platformsync/{}/endpoints/{id}", self.stage);
        self.clients
            .secrets
            .create_secret()
            .name(&name)
            .secret_string(key)
            .send()
            .await
            .expect("endpoint key stored");
        name
    }

    /// The text of secret `name`, if it exists.
    pub async fn secret(&self, name: &str) -> Option<String> {
        self.clients
            .secrets
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .ok()
            .and_then(|o| o.secret_string)
    }

    /// Endpoint `id` of `customer` at `url`, its `key` in Secrets Manager,
    /// with the settings in `extra` (`{"MaxBatchSize": 5}`...) on top.
    pub async fn add_endpoint(
        &self,
        customer: &str,
        id: &str,
        url: &str,
        key: &str,
        extra: Value,
    ) -> EndpointSettings {
        let secret = self.store_endpoint_key(id, key).await;
        let settings = endpoint_settings(customer, id, url, &secret, &extra);
        self.config_store()
            .put_endpoint(&settings)
            .await
            .expect("endpoint stored");
        settings
    }

    /// A fresh deployment and a local HTTPS receiver, with endpoint
    /// `endpoint_id` of `customer` (told of failures at `recipients`) at the
    /// receiver's `/push`, its key `key` in Secrets Manager: the given of a
    /// delivery test.
    pub async fn deploy_with_endpoint(
        customer: &str,
        recipients: &[&str],
        endpoint_id: &str,
        key: &str,
    ) -> (Stack, Receiver) {
        let stack = Stack::deploy().await;
        let receiver = Receiver::start().await;
        stack.add_customer(customer, customer, recipients).await;
        let url = receiver.url("/push");
        stack
            .add_endpoint(customer, endpoint_id, &url, key, json!({}))
            .await;
        (stack, receiver)
    }

    /// Customer `customer` (no recipients) owning safe `serial`, with
    /// endpoint `endpoint_id` at `url` (see [`Stack::add_endpoint`]).
    pub async fn add_owner(
        &self,
        customer: &str,
        serial: &str,
        endpoint_id: &str,
        url: &str,
        key: &str,
        extra: Value,
    ) -> EndpointSettings {
        self.add_customer(customer, customer, &[]).await;
        let settings = self
            .add_endpoint(customer, endpoint_id, url, key, extra)
            .await;
        self.config_store()
            .assign_safe(&ids::safe(serial), &ids::customer(customer))
            .await
            .expect("safe assigned");
        settings
    }

    /// What push writes once `batch` was posted in one attempt: the
    /// ledger's delivery row (a delivery whose acknowledgement was lost).
    pub async fn record_batch_delivered(&self, batch: &BatchMessage) {
        let keys: Vec<String> = batch.items.iter().map(|e| e.key.clone()).collect();
        self.record_delivered(
            batch.endpoint_id.as_str(),
            batch.customer_id.as_str(),
            batch.message_id,
            batch.kind,
            &keys,
        )
        .await;
    }

    /// The ledger's row of message `message_id` of `kind`, holding
    /// `transaction_keys`, delivered now to `endpoint_id` in one attempt.
    pub async fn record_delivered(
        &self,
        endpoint_id: &str,
        customer_id: &str,
        message_id: uuid::Uuid,
        kind: MessageKind,
        transaction_keys: &[String],
    ) {
        let now = time::OffsetDateTime::now_utc();
        self.ledger()
            .record_delivery(&Delivery {
                endpoint_id: &EndpointId::parse(endpoint_id).expect("a valid endpoint id"),
                message_id,
                customer_id: &CustomerId::parse(customer_id).expect("a valid customer id"),
                kind,
                transaction_keys,
                attempts: 1,
                first_attempt_at: now,
                delivered_at: now,
                split: false,
            })
            .await
            .expect("delivery recorded");
    }

    /// `POST /v1/uploads` of `body` through ingest with this stage's key;
    /// panics unless it is accepted (200).
    pub async fn upload(&self, body: &[u8]) -> ApiGatewayV2httpResponse {
        let resp = self
            .ingest()
            .handle(apigw::post(
                "/v1/uploads",
                body,
                Some(&self.ingest_key().await),
            ))
            .await;
        assert_eq!(resp.status_code, 200, "{}", apigw::json(&resp));
        resp
    }

    /// Sends `batch` to the delivery queue as the fan-out does: its endpoint
    /// the message group, its `MessageId` the deduplication id.
    pub async fn enqueue(&self, batch: &BatchMessage) {
        let body = serde_json::to_string(batch).expect("a batch serialises");
        self.enqueue_raw(
            batch.endpoint_id.as_str(),
            &batch.message_id.to_string(),
            &body,
        )
        .await;
    }

    /// Sends `body`, whatever it is, to the delivery queue in `group`.
    pub async fn enqueue_raw(&self, group: &str, dedup: &str, body: &str) {
        self.clients
            .sqs
            .send_message()
            .queue_url(self.reference("DeliveryQueue"))
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .message_body(body)
            .send()
            .await
            .expect("enqueued");
    }

    /// Runs `push` over the delivery queue, as Lambda's poller would, until
    /// `done`; panics after `timeout`. The messages it handled.
    pub async fn deliver_until(
        &self,
        push: &push::Push,
        timeout: Duration,
        mut done: impl FnMut() -> bool,
    ) -> Vec<Message> {
        let until = Instant::now() + timeout;
        let mut seen = Vec::new();
        while !done() {
            assert!(Instant::now() < until, "not done within {timeout:?}");
            seen.extend(self.deliver_once(push).await);
        }
        seen
    }

    /// Queues `batch` and runs `push` until `receiver` has had exactly
    /// `posts` POSTs in all; panics after `timeout`.
    pub async fn deliver_batch(
        &self,
        push: &push::Push,
        batch: &BatchMessage,
        receiver: &Receiver,
        posts: usize,
        timeout: Duration,
    ) {
        self.enqueue(batch).await;
        self.deliver_until(push, timeout, || receiver.count() == posts)
            .await;
    }

    /// `polls` more receives (1 s each) handed to `push`: whatever is still
    /// queued (a replay's re-send, a retry) is delivered too.
    pub async fn deliver_rest(&self, push: &push::Push, polls: usize) {
        for _ in 0..polls {
            self.deliver_once(push).await;
        }
    }

    /// One receive (up to 1 s) handed to `push`, acknowledged as Lambda
    /// would; the messages received.
    pub async fn deliver_once(&self, push: &push::Push) -> Vec<Message> {
        let messages = self.receive_deliveries(1).await;
        if !messages.is_empty() {
            self.run_push(push, &messages).await;
        }
        messages
    }

    /// Queues `batches` for disabled endpoint `endpoint_id` and runs `push`
    /// until every one is parked (never posted).
    pub async fn park_backlog(
        &self,
        push: &push::Push,
        endpoint_id: &str,
        batches: &[BatchMessage],
    ) {
        for b in batches {
            self.enqueue(b).await;
        }
        let store = self.parked_store();
        let until = Instant::now() + Duration::from_secs(30);
        let endpoint = ids::endpoint(endpoint_id);
        while store
            .list(&endpoint)
            .await
            .expect("parked batches listed")
            .len()
            < batches.len()
        {
            assert!(Instant::now() < until, "backlog not parked");
            self.deliver_once(push).await;
        }
    }

    /// Receives (and deletes) everything on the delivery queue until two
    /// polls come back empty: per message group (endpoint), its messages in
    /// the order the group delivered them.
    pub async fn drain_deliveries(&self) -> BTreeMap<String, Vec<BatchMessage>> {
        let mut received: BTreeMap<String, Vec<BatchMessage>> = BTreeMap::new();
        let mut empty_polls = 0;
        while empty_polls < 2 {
            let messages = self.receive_deliveries(0).await;
            if messages.is_empty() {
                empty_polls += 1;
                continue;
            }
            empty_polls = 0;
            for m in &messages {
                let group = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned()
                    .expect("a FIFO message has a group");
                let body: BatchMessage = serde_json::from_str(m.body().unwrap_or_default())
                    .expect("a delivery message is a batch");
                received.entry(group).or_default().push(body);
                self.delete_delivery(m).await;
            }
        }
        received
    }
}
