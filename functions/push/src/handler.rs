//! The edge: Lambda's SQS event in, the partial batch response out. Builds
//! the clients once per container (with operation and attempt timeouts on
//! every AWS client, so the bookkeeping after a POST fits its budget) and
//! hands the messages, as [`Envelope`]s, to the [flow](crate::flow).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use platformsync_aws::SdkConfig;
use platformsync_aws::config::{Function, Reader};
use platformsync_aws::config_table::ConfigStore;
use platformsync_aws::env::EnvError;
use platformsync_aws::health::HealthStore;
use platformsync_aws::ledger::Ledger;
use platformsync_aws::metrics::Metrics;
use platformsync_aws::notifier::Notifier;
use platformsync_aws::parked::ParkedStore;
use platformsync_aws::redelivery::Redelivery;
use platformsync_aws::secrets::{MAX_TTL, SecretCache};
use platformsync_http::{ClientConfig, ClientError, EndpointClient};

use crate::attempt::Attempt;
use crate::flow::{Envelope, Flow, Timing};
use crate::outcome::Outcome;
use crate::policy::Rules;
use crate::ports::AwsPorts;
use crate::settings::Settings;

/// Time kept after a POST's deadline for the ledger, health, queue and
/// notification calls that follow it: at most a few AWS calls in sequence,
/// each bounded by the operation timeout.
pub const AFTER_ATTEMPT: Duration = Duration::from_secs(20);

/// [`Push::handle`]'s budget beyond one attempt (the local runner and tests
/// have no Lambda deadline).
const DEFAULT_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("cannot build the endpoint HTTPS client: {0}")]
    Client(#[from] ClientError),
}

/// The push function: clients built once per container.
pub struct Push {
    flow: Flow<AwsPorts>,
    settings: Settings,
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Push")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// "24 h", "10 s": the window as notifications state it.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

impl Push {
    pub fn new(sdk: &SdkConfig, settings: Settings) -> Result<Self, InitError> {
        let http = EndpointClient::new(ClientConfig {
            attempt_timeout: settings.attempt_timeout,
            extra_ca_pem: settings.extra_ca_pem.clone(),
            allow: settings.allow.clone(),
            ..ClientConfig::default()
        })?;
        // Every AWS call is bounded: a slow ledger write cannot run the
        // invocation into its timeout (and the batch into a blind re-POST).
        let timeouts = settings.calls.timeouts();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .timeout_config(timeouts.clone())
                .build(),
        );
        let secrets = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(sdk)
                .timeout_config(timeouts.clone())
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk)
                .timeout_config(timeouts.clone())
                .build(),
        );
        let sns = sns_client(sdk, timeouts);
        let timing = Timing {
            attempt_timeout: settings.attempt_timeout,
            after_attempt: AFTER_ATTEMPT,
            our_backoff_base: settings.our_backoff_base,
            our_backoff_cap: settings.our_backoff_cap,
        };
        let rules = Rules {
            window: settings.retry_window,
            probe_interval: settings.probe_interval,
            lateness_tolerance: settings.lateness_tolerance,
            ..Rules::default()
        };
        let ports = AwsPorts {
            attempt: Attempt {
                http,
                secrets: SecretCache::new(secrets, MAX_TTL),
                needs: settings.attempt_timeout + AFTER_ATTEMPT,
                secret_prefix: settings.endpoint_secret_prefix.clone(),
            },
            config: ConfigStore::new(dynamodb.clone(), &settings.config_table),
            ledger: Ledger::new(dynamodb.clone(), &settings.ledger_table),
            health: HealthStore::new(dynamodb.clone(), &settings.config_table),
            parked: ParkedStore::new(dynamodb, &settings.ledger_table),
            notifier: Notifier::on_first_use(sns, &settings.topic_arn),
            queue: Redelivery::new(sqs, &settings.queue_url, &settings.dead_letter_url),
            config_cache: settings.config_cache,
            window: human(settings.retry_window),
            endpoints: Mutex::new(HashMap::new()),
        };
        Ok(Self {
            flow: Flow {
                ports,
                rules,
                timing,
            },
            settings,
        })
    }

    pub async fn from_env() -> Result<Self, InitError> {
        let reader = Reader::from_env(Function::Push);
        let settings = Settings::load(&reader)?;
        // The SDK's standard retry mode absorbs short throttling, within the
        // operation timeout.
        let sdk = platformsync_aws::sdk_config_for(&settings.calls).await;
        Self::new(&sdk, settings)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Handles one event with time for one full attempt per endpoint (no
    /// Lambda deadline: tests, the local runner).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let deadline = Instant::now() + self.settings.attempt_timeout + DEFAULT_MARGIN;
        self.handle_before(event, deadline).await
    }

    /// Handles one event; a batch is only started while a whole attempt and
    /// its bookkeeping fit before `deadline` (the Lambda deadline).
    pub async fn handle_before(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let started = Instant::now();
        // The bodies move into the envelopes: a 1,000-transaction batch is
        // ~430 KB, ten of them an event; a copy would double the peak.
        let envelopes: Vec<Envelope> = event.records.into_iter().map(envelope).collect();
        let outcomes = self.flow.run(&envelopes, deadline).await;

        let mut failed = Vec::new();
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for (message, outcome) in &outcomes {
            *counts.entry(outcome.metric()).or_default() += 1;
            if !outcome.is_acknowledged() {
                failed.push(message.id.clone());
            }
        }
        let mut metrics = Metrics::for_function("push");
        let mut names: Vec<_> = counts.into_iter().collect();
        names.sort();
        for (name, count) in names {
            metrics.count(name, count);
        }
        metrics.millis("DurationMs", started.elapsed().as_millis());
        metrics.flush();
        platformsync_aws::lambda::sqs_response(failed)
    }
}

/// The SNS client, to be built on the first notification, not at cold
/// start: most containers never send one (docs/benchmarks.md, cold init).
fn sns_client(
    sdk: &SdkConfig,
    timeouts: aws_sdk_sns::config::timeout::TimeoutConfig,
) -> impl FnOnce() -> aws_sdk_sns::Client + Send + 'static {
    let config = aws_sdk_sns::config::Builder::from(sdk)
        .timeout_config(timeouts)
        .build();
    move || aws_sdk_sns::Client::from_conf(config)
}

/// The flow's view of an SQS message.
fn envelope(mut m: SqsMessage) -> Envelope {
    Envelope {
        id: m.message_id.take().unwrap_or_default(),
        receipt: m.receipt_handle.take(),
        group: m.attributes.get("MessageGroupId").cloned(),
        body: m.body.take().unwrap_or_default(),
        receive_count: m
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1),
        sent_at: m
            .attributes
            .get("SentTimestamp")
            .and_then(|t| t.parse::<i128>().ok())
            .and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok()),
        replayed: m
            .message_attributes
            .get(platformsync_aws::parked::REPLAYED_ATTRIBUTE)
            .and_then(|a| a.string_value.as_deref())
            == Some("true"),
    }
}

/// Outcomes as the handler reports them (re-exported for tests).
pub type MessageOutcome = Outcome;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_keep_ids_group_and_receives() {
        let mut m = SqsMessage::default();
        m.message_id = Some("m-1".into());
        m.receipt_handle = Some("r-1".into());
        m.body = Some("{}".into());
        m.attributes.insert("MessageGroupId".into(), "ep".into());
        m.attributes
            .insert("ApproximateReceiveCount".into(), "3".into());
        m.attributes
            .insert("SentTimestamp".into(), "1767225600000".into());
        let e = envelope(m.clone());
        assert_eq!(e.body, "{}");
        assert_eq!(e.sent_at.map(|t| t.unix_timestamp()), Some(1_767_225_600));
        assert_eq!((e.id.as_str(), e.receipt.as_deref()), ("m-1", Some("r-1")));
        assert_eq!((e.group.as_deref(), e.receive_count), (Some("ep"), 3));
        assert!(!e.replayed);
        let mut a = aws_lambda_events::sqs::SqsMessageAttribute::default();
        a.string_value = Some("true".into());
        a.data_type = Some("String".into());
        m.message_attributes.insert("Replayed".into(), a);
        assert!(
            envelope(m).replayed,
            "a batch replayed from the parked store"
        );
    }

    /// Building an SDK client panics on a configuration it cannot use; built
    /// lazily, that would be at a notification, inside a handler. The
    /// functions' own `SdkConfig` builds it.
    #[tokio::test]
    async fn the_sns_client_builds_from_the_functions_sdk_config() {
        let sdk = platformsync_aws::sdk_config().await;
        let timeouts = aws_sdk_sns::config::timeout::TimeoutConfig::builder()
            .operation_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(2))
            .build();
        let client = sns_client(&sdk, timeouts)();
        assert_eq!(
            client
                .config()
                .timeout_config()
                .and_then(|t| t.operation_timeout()),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn windows_read_naturally() {
        assert_eq!(human(Duration::from_secs(86_400)), "24 h");
        assert_eq!(human(Duration::from_secs(600)), "10 min");
        assert_eq!(human(Duration::from_secs(10)), "10 s");
    }
}
