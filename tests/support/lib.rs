//! Shared plumbing of the integration tests: the local stack they run against
//! and a fresh, isolated deployment of template.yaml per test.
//!
//! Tests never mock the SDK: they talk over the wire to the emulator that
//! `make test` starts (moto server by default, LocalStack works too). Each test
//! deploys the template under its own random stage, so tests run in parallel
//! against one emulator without seeing each other's data.

use platformsync_bootstrap::{Clients, Deployment, Options, bootstrap};
use platformsync_template::Template;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The repository root (where template.yaml lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn template() -> Template {
    Template::load(repo_root().join("template.yaml")).expect("template.yaml parses")
}

/// The SDK configuration of the local stack. Panics with instructions when no
/// local endpoint is configured: integration tests must never reach a real
/// AWS account.
pub async fn local_config() -> aws_config::SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        platformsync_faults::upstreams::is_loopback_url(&endpoint),
        "integration tests need the local AWS stack: run `make test`, or `make up` and \
         `source .local/stack.env` (AWS_ENDPOINT_URL is {endpoint:?})"
    );
    platformsync_aws::sdk_config().await
}

/// A deployment of template.yaml under a fresh stage, with its clients.
pub struct Stack {
    pub stage: String,
    pub config: aws_config::SdkConfig,
    pub clients: Clients,
    pub deployment: Deployment,
}

impl Stack {
    pub async fn deploy() -> Self {
        let stage = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        Self::deploy_stage(&stage).await
    }

    pub async fn deploy_stage(stage: &str) -> Self {
        let config = local_config().await;
        let clients = Clients::new(&config);
        let options = Options {
            parameters: BTreeMap::from([("Stage".to_owned(), stage.to_owned())]),
            stack_name: format!("platformsync-{stage}"),
            region: config
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".into()),
            account_id: "123456789012".into(),
        };
        let deployment = bootstrap(&template(), &options, &clients)
            .await
            .unwrap_or_else(|e| panic!("bootstrap of stage {stage} failed: {e}"));
        Self {
            stage: stage.to_owned(),
            config,
            clients,
            deployment,
        }
    }

    /// `Ref` of a resource of this deployment (table name, queue URL, topic ARN...).
    pub fn reference(&self, logical_id: &str) -> String {
        self.deployment
            .reference(logical_id)
            .unwrap_or_else(|| panic!("{logical_id} was not deployed"))
            .to_owned()
    }

    /// The ingest key the bootstrap generated for this stage.
    pub async fn ingest_key(&self) -> String {
        self.clients
            .secrets
            .get_secret_value()
            .secret_id(self.reference("IngestKeySecret"))
            .send()
            .await
            .expect("ingest key readable")
            .secret_string()
            .expect("ingest key is a string")
            .to_owned()
    }

    /// The ingest function's settings for this deployment, as template.yaml
    /// would set them.
    pub fn ingest_settings(&self) -> ingest::Settings {
        ingest::Settings {
            transactions_table: self.reference("TransactionsTable"),
            config_table: self.reference("ConfigTable"),
            rejects_table: self.reference("RejectsTable"),
            ingest_key_secret: self.reference("IngestKeySecret"),
            write_concurrency: 16,
            max_body_bytes: ingest::MAX_BODY_BYTES,
            quality: Default::default(),
            deadline_margin: std::time::Duration::from_secs(4),
        }
    }

    /// The ingest function wired to this deployment, as Lambda would run it.
    pub fn ingest(&self) -> ingest::Ingest {
        ingest::Ingest::new(&self.config, self.ingest_settings())
    }

    /// `Fn::GetAtt` of a resource of this deployment.
    pub fn attribute(&self, logical_id: &str, attribute: &str) -> String {
        self.deployment
            .attribute(logical_id, attribute)
            .unwrap_or_else(|| panic!("{logical_id}.{attribute} was not deployed"))
            .to_owned()
    }
}

/// The ops CLI, run in-process against a stack.
pub mod cli;

/// Customers, endpoints, uploads and delivery loops on a stack.
mod fixtures;

/// Typed ids from the literals tests write (a literal that is not one is
/// the test's own mistake: these panic).
pub mod ids {
    use platformsync_domain::endpoint::{CustomerId, EndpointId};
    use platformsync_domain::serial::SerialNumber;

    pub fn customer(id: &str) -> CustomerId {
        CustomerId::parse(id).expect("a customer id")
    }

    pub fn endpoint(id: &str) -> EndpointId {
        EndpointId::parse(id).expect("an endpoint id")
    }

    pub fn safe(serial: &str) -> SerialNumber {
        SerialNumber::parse(serial).expect("a serial number")
    }
}

/// A queue subscribed to an SNS topic (the notifications a customer gets).
pub mod inbox;

/// DynamoDB item sizes and write units, for the benchmarks.
pub mod item_size;
pub use fixtures::{
    batch_of, endpoint_settings, stored_transaction, transactions_batch, transactions_batches,
};

/// Building API Gateway HTTP API (payload 2.0) events, as API Gateway and the
/// local runner hand them to a function.
pub mod apigw {
    use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
    use aws_lambda_events::encodings::Body;
    use base64::Engine;

    /// `POST path` with `body`; bodies that are not UTF-8 travel base64-encoded.
    pub fn post(path: &str, body: &[u8], api_key: Option<&str>) -> ApiGatewayV2httpRequest {
        let mut req = ApiGatewayV2httpRequest::default();
        req.raw_path = Some(path.to_owned());
        req.request_context.http.method = http::Method::POST;
        req.request_context.http.path = Some(path.to_owned());
        req.request_context.request_id = Some(uuid::Uuid::new_v4().to_string());
        req.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Some(key) = api_key {
            req.headers.insert(
                "x-api-key",
                http::HeaderValue::from_str(key).expect("key is a valid header value"),
            );
        }
        match std::str::from_utf8(body) {
            Ok(text) => req.body = Some(text.to_owned()),
            Err(_) => {
                req.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
                req.is_base64_encoded = true;
            }
        }
        req
    }

    /// The response body as JSON (panics on a non-JSON body: ours are JSON).
    pub fn json(resp: &ApiGatewayV2httpResponse) -> serde_json::Value {
        let text = match &resp.body {
            Some(Body::Text(t)) => t.clone(),
            Some(Body::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("response is not JSON ({e}): {text}"))
    }
}

impl Stack {
    /// The fan-out function's settings for this deployment, as template.yaml
    /// would set them.
    pub fn fanout_settings(&self) -> fanout::Settings {
        fanout::Settings::new(
            self.reference("ConfigTable"),
            self.reference("DeliveryQueue"),
        )
    }

    /// The fan-out function wired to this deployment, as Lambda would run it.
    pub fn fanout(&self) -> fanout::Fanout {
        fanout::Fanout::new(&self.config, self.fanout_settings())
    }
}

/// The transactions table's stream, read with the SDK and handed over in the
/// shape Lambda delivers it (the conversion lives in
/// `fanout::stream_reader`, where the local runner finds it too).
pub mod streams {
    use super::Stack;
    use aws_lambda_events::dynamodb::{Event, EventRecord};

    /// Every record of the deployment's transactions stream so far, in
    /// stream order.
    pub async fn lambda_records(stack: &Stack) -> Vec<EventRecord> {
        let client = aws_sdk_dynamodbstreams::Client::new(&stack.config);
        let arn = stack.attribute("TransactionsTable", "StreamArn");
        fanout::stream_reader::read_all(&client, &arn)
            .await
            .unwrap_or_else(|e| panic!("reading the transactions stream: {e}"))
    }

    /// The event Lambda would deliver for `records`.
    pub fn event(records: &[EventRecord]) -> Event {
        let mut event = Event::default();
        event.records = records.to_vec();
        event
    }
}

// ---------------------------------------------------------------- push (issue 5)

/// A local HTTPS customer endpoint with its own CA, for the push tests.
pub mod receiver;

impl Stack {
    /// The push function's settings for this deployment, as template.yaml
    /// would set them, plus what a local run needs to reach `receiver`: its
    /// CA trusted and 127.0.0.0/8 allow-listed.
    pub fn push_settings(&self, receiver: &receiver::Receiver) -> push::Settings {
        let mut settings = push::Settings::new(
            self.reference("ConfigTable"),
            self.reference("DeliveryLedgerTable"),
            self.reference("DeliveryQueue"),
            self.reference("DeliveryDeadLetterQueue"),
            self.reference("NotificationsTopic"),
        );
        settings.extra_ca_pem = Some(receiver.ca_pem().as_bytes().to_vec());
        settings.allow = platformsync_delivery::ssrf::AllowList::parse("127.0.0.0/8")
            .expect("loopback allow-list");
        settings
    }

    /// The push function wired to this deployment and `receiver`, with
    /// `configure` applied to its settings (window, attempt timeout...).
    pub fn push(
        &self,
        receiver: &receiver::Receiver,
        configure: impl FnOnce(&mut push::Settings),
    ) -> push::Push {
        let mut settings = self.push_settings(receiver);
        configure(&mut settings);
        push::Push::new(&self.config, settings).expect("push function builds")
    }

    /// Up to 10 messages from the delivery queue, with every system attribute
    /// (as Lambda's poller receives them), waiting up to `wait_seconds`.
    pub async fn receive_deliveries(&self, wait_seconds: i32) -> Vec<aws_sdk_sqs::types::Message> {
        self.clients
            .sqs
            .receive_message()
            .queue_url(self.reference("DeliveryQueue"))
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive from the delivery queue")
            .messages
            .unwrap_or_default()
    }

    /// The delivery queue's message count: the sum of the approximate
    /// counts `kinds` (`ApproximateNumberOfMessages` for the visible ones,
    /// `...NotVisible` for those in flight), as SQS reports them.
    pub async fn delivery_queue_count(
        &self,
        kinds: &[aws_sdk_sqs::types::QueueAttributeName],
    ) -> usize {
        let attributes = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(self.reference("DeliveryQueue"))
            .set_attribute_names(Some(kinds.to_vec()))
            .send()
            .await
            .expect("delivery queue attributes")
            .attributes
            .unwrap_or_default();
        kinds
            .iter()
            .filter_map(|kind| attributes.get(kind)?.parse::<usize>().ok())
            .sum()
    }

    /// What Lambda does with a partial batch response: deletes every message
    /// not reported as failed.
    pub async fn delete_acknowledged(
        &self,
        messages: &[aws_sdk_sqs::types::Message],
        response: &aws_lambda_events::sqs::SqsBatchResponse,
    ) {
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for m in messages {
            if failed.contains(&m.message_id().unwrap_or_default()) {
                continue;
            }
            self.delete_delivery(m).await;
        }
    }

    /// Deletes message `m`, received from the delivery queue.
    pub async fn delete_delivery(&self, m: &aws_sdk_sqs::types::Message) {
        self.clients
            .sqs
            .delete_message()
            .queue_url(self.reference("DeliveryQueue"))
            .receipt_handle(m.receipt_handle().unwrap_or_default())
            .send()
            .await
            .expect("delivery message deleted");
    }

    /// Runs `push` on `messages` as Lambda would: the event in, the
    /// acknowledged messages deleted.
    pub async fn run_push(
        &self,
        push: &push::Push,
        messages: &[aws_sdk_sqs::types::Message],
    ) -> aws_lambda_events::sqs::SqsBatchResponse {
        let response = push.handle(self.sqs_event(messages)).await;
        self.delete_acknowledged(messages, &response).await;
        response
    }

    /// Lambda's event for `messages` received from the delivery queue
    /// (the conversion is `push::sqs_event`, shared with the local runner).
    pub fn sqs_event(
        &self,
        messages: &[aws_sdk_sqs::types::Message],
    ) -> aws_lambda_events::sqs::SqsEvent {
        push::sqs_event(&self.attribute("DeliveryQueue", "Arn"), messages)
    }
}

// ------------------------------------------------- emulators and skips (issue 15)

/// The emulator the tests run against, as the scripts that start it say
/// (`PLATFORMSYNC_EMULATOR` in stack.env: `moto`, `localstack`, or `other`
/// for an emulator of your own that is neither). Unset means moto, the
/// built-in stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emulator {
    /// moto server for every service (`make test`).
    Moto,
    /// LocalStack for SQS, SNS, Secrets Manager and CloudWatch, with
    /// DynamoDB and its stream on moto (`make test-localstack`).
    LocalStack,
    /// An emulator brought along that is neither.
    Other,
}

/// Which emulator this run talks to.
pub fn emulator() -> Emulator {
    match std::env::var("PLATFORMSYNC_EMULATOR").as_deref() {
        Ok("localstack") => Emulator::LocalStack,
        Ok("moto") | Ok("") | Err(_) => Emulator::Moto,
        Ok(_) => Emulator::Other,
    }
}

/// Says, past the test harness's output capture (so it shows in every run,
/// and `make test-localstack` lists it), that the current test is skipped
/// and why. Used by [`skip_on!`].
pub fn report_skip(on: Emulator, reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    let _ = writeln!(std::io::stderr(), "SKIPPED {test} on {on:?}: {reason}");
}

/// Skips the rest of the test (returns) when running against `emulator`,
/// printing the reason: for behaviour that emulator is known to get wrong
/// against AWS's documentation (docs/local-stack.md lists each case). The
/// code under test stays correct for AWS; only the check is not run there.
///
/// ```ignore
/// skip_on!(Emulator::LocalStack, "releases a FIFO group while a message is in flight");
/// ```
/// In a test returning `Result`, give the value to return:
/// `skip_on!(Emulator::Moto, "reason"; Ok(()))`.
#[macro_export]
macro_rules! skip_on {
    ($emulator:expr, $reason:expr) => {
        $crate::skip_on!($emulator, $reason; ())
    };
    ($emulator:expr, $reason:expr; $ret:expr) => {
        if $crate::emulator() == $emulator {
            $crate::report_skip($emulator, $reason);
            return $ret;
        }
    };
}

// ------------------------------------------ the fault proxy, on either stack

/// A fault proxy (`platformsync-faults`) in front of the local stack that
/// forwards each service where this environment's SDK clients would send it:
/// `AWS_ENDPOINT_URL_<SERVICE>` when set (on the LocalStack pair, DynamoDB and
/// its stream to moto), else `AWS_ENDPOINT_URL`. Pair it with
/// [`config_through`] (or [`Stack::through`]) so that every client goes
/// through it.
pub async fn fault_proxy() -> platformsync_faults::FaultProxy {
    // The same refusal as local_config: never a proxy in front of real AWS.
    drop(local_config().await);
    let upstreams = platformsync_faults::Upstreams::from_env()
        .expect("the local stack's AWS_ENDPOINT_URL for the fault proxy");
    platformsync_faults::FaultProxy::start_routed(upstreams)
        .await
        .expect("fault proxy starts")
}

/// SDK configuration whose clients of every service talk to `proxy`, with
/// `configure` applied to the loader (retries, timeouts).
///
/// The endpoint is set on the loader on purpose: aws-config marks it
/// programmatic, and a programmatic endpoint wins over `AWS_ENDPOINT_URL`
/// and over every `AWS_ENDPOINT_URL_<SERVICE>` of the environment (each
/// client's `From<&SdkConfig>` consults the service variable only when the
/// shared endpoint did not come from code). `stack.config.to_builder()
/// .endpoint_url(..)` would not do: the built config keeps the origin
/// "environment", so `AWS_ENDPOINT_URL_DYNAMODB` would take DynamoDB past the
/// proxy.
pub async fn config_through(
    proxy: &platformsync_faults::FaultProxy,
    configure: impl FnOnce(aws_config::ConfigLoader) -> aws_config::ConfigLoader,
) -> aws_config::SdkConfig {
    configure(aws_config::defaults(aws_config::BehaviorVersion::latest()).endpoint_url(proxy.url()))
        .load()
        .await
}

impl Stack {
    /// This stack's SDK configuration, with every service through `proxy`
    /// (see [`config_through`]).
    pub async fn through(&self, proxy: &platformsync_faults::FaultProxy) -> aws_config::SdkConfig {
        config_through(proxy, |loader| loader).await
    }
}
