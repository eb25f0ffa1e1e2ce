//! The shared SDK configuration: built once per process, at cold start, and
//! handed to every client.
//!
//! On Lambda everything the SDK needs is in the environment: the region
//! (`AWS_REGION`), the function role's credentials (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`). The `SdkConfig` is built
//! straight from those, without `aws_config`'s default provider chains: they
//! read profile files, probe for SSO, web identity and IMDS, and link STS and
//! the profile parser into every binary, for answers the environment already
//! gives (docs/benchmarks.md, cold init). Endpoint overrides work as with the
//! chains: `AWS_ENDPOINT_URL_<SERVICE>` (e.g. `AWS_ENDPOINT_URL_DYNAMODB`)
//! before `AWS_ENDPOINT_URL`, both ignored when
//! `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`; that is how the same binary
//! runs against moto or LocalStack.
//!
//! Without credentials in the environment (the CLI on an operator's machine
//! with a profile), tools built with the `default-chain` feature fall back to
//! the default chains; every path uses the same HTTP client.
//!
//! The HTTP client is aws-smithy-http-client's hyper client with rustls and
//! **ring** (not the SDK's default aws-lc) and the process's one root store
//! (`platformsync_tls::roots`, shared with push's reqwest client).

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use crate::config::{Function, Knob, Reader, knob};
use crate::env::EnvError;

/// Loads the shared SDK configuration; build every client from it, once, at
/// cold start. The SDK's standard retry mode, 3 attempts per call.
pub async fn sdk_config() -> SdkConfig {
    load(RetryConfig::standard(), None).await
}

/// How hard and how long the SDK tries each call: the function's
/// `AWS_MAX_ATTEMPTS`, `AWS_MAX_BACKOFF_MS`, `AWS_OPERATION_TIMEOUT_MS` and
/// `AWS_ATTEMPT_TIMEOUT_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calls {
    /// Attempts in the SDK's standard retry mode (backoff with jitter).
    pub max_attempts: u32,
    /// The longest pause between two attempts.
    pub max_backoff: Duration,
    /// One call, its retries included.
    pub operation_timeout: Duration,
    /// One try of a call.
    pub attempt_timeout: Duration,
}

impl Calls {
    /// The knobs [`Calls::from_knobs`] reads.
    pub const KNOBS: [&'static Knob; 4] = [
        &knob::AWS_MAX_ATTEMPTS,
        &knob::AWS_MAX_BACKOFF_MS,
        &knob::AWS_OPERATION_TIMEOUT_MS,
        &knob::AWS_ATTEMPT_TIMEOUT_MS,
    ];

    /// The knobs' defaults for `function`.
    pub fn defaults_for(function: Function) -> Calls {
        Calls {
            max_attempts: knob::AWS_MAX_ATTEMPTS.default_for(function).unwrap_or(3) as u32,
            max_backoff: knob::AWS_MAX_BACKOFF_MS.default_duration_for(function),
            operation_timeout: knob::AWS_OPERATION_TIMEOUT_MS.default_duration_for(function),
            attempt_timeout: knob::AWS_ATTEMPT_TIMEOUT_MS.default_duration_for(function),
        }
    }

    /// The function's knobs (defaults and bounds in [`crate::config`]).
    pub fn from_knobs(reader: &Reader<'_>) -> Result<Calls, EnvError> {
        Ok(Calls {
            max_attempts: reader.count(&knob::AWS_MAX_ATTEMPTS)?,
            max_backoff: reader.duration(&knob::AWS_MAX_BACKOFF_MS)?,
            operation_timeout: reader.duration(&knob::AWS_OPERATION_TIMEOUT_MS)?,
            attempt_timeout: reader.duration(&knob::AWS_ATTEMPT_TIMEOUT_MS)?,
        })
    }

    /// The SDK's standard retry mode with these attempts and pauses.
    pub fn retry(&self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_max_backoff(self.max_backoff)
    }

    /// The timeouts, for a client built from an `SdkConfig` that does not
    /// carry them (tests hand the functions their own).
    pub fn timeouts(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_timeout(self.operation_timeout)
            .operation_attempt_timeout(self.attempt_timeout)
            .build()
    }
}

/// The shared SDK configuration with every call bounded as `calls` says.
pub async fn sdk_config_for(calls: &Calls) -> SdkConfig {
    load(calls.retry(), Some(calls.timeouts())).await
}

/// aws-config's default connect timeout: a black-holed connection fails in
/// 3.1 s and is retried, instead of hanging until the function times out.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3_100);

async fn load(retry: RetryConfig, timeouts: Option<TimeoutConfig>) -> SdkConfig {
    let mut env = Environment::read(|name| std::env::var(name).ok());
    env.timeouts = timeouts;
    match env.credentials.clone() {
        Some(credentials) => env.config(credentials, retry),
        None => without_env_credentials(env, retry).await,
    }
}

#[cfg(feature = "default-chain")]
async fn without_env_credentials(env: Environment, retry: RetryConfig) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(env.timeouts())
        .http_client(http_client())
        .load()
        .await
}

/// A Lambda function always has its role's credentials in the environment;
/// without them every call fails with the SDK's "no credentials" error,
/// which names the cause.
#[cfg(not(feature = "default-chain"))]
async fn without_env_credentials(env: Environment, retry: RetryConfig) -> SdkConfig {
    tracing::error!(
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set: AWS calls will fail \
         (this build has no default credential chain)"
    );
    env.builder(retry).build()
}

/// What the SDK needs from the environment.
#[derive(Debug, Clone, Default)]
struct Environment {
    region: Option<String>,
    credentials: Option<Credentials>,
    endpoint_url: Option<String>,
    ignore_endpoint_urls: bool,
    /// `None`: only the connect timeout.
    timeouts: Option<TimeoutConfig>,
}

impl Environment {
    fn read(var: impl Fn(&str) -> Option<String>) -> Environment {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let ignore_endpoint_urls = var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let credentials = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(key), Some(secret)) => Some(Credentials::new(
                key,
                secret,
                var("AWS_SESSION_TOKEN"),
                None,
                "Environment",
            )),
            _ => None,
        };
        Environment {
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            credentials,
            endpoint_url: var("AWS_ENDPOINT_URL").filter(|_| !ignore_endpoint_urls),
            ignore_endpoint_urls,
            timeouts: None,
        }
    }

    fn timeouts(&self) -> TimeoutConfig {
        self.timeouts.clone().unwrap_or_else(|| {
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build()
        })
    }

    fn builder(&self, retry: RetryConfig) -> aws_types::sdk_config::Builder {
        let mut builder = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .retry_config(retry)
            .timeout_config(self.timeouts())
            .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
            .time_source(SharedTimeSource::default())
            .http_client(http_client())
            .service_config(EnvServiceConfig {
                ignore_endpoint_urls: self.ignore_endpoint_urls,
            });
        builder.set_region(self.region.clone().map(Region::new));
        builder.set_endpoint_url(self.endpoint_url.clone());
        builder
    }

    fn config(&self, credentials: Credentials, retry: RetryConfig) -> SdkConfig {
        self.builder(retry)
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build()
    }
}

/// Service-specific settings from the environment, as the SDK asks for them
/// when a client is built: `AWS_ENDPOINT_URL_DYNAMODB` before
/// `AWS_ENDPOINT_URL` (the service id upper-cased, spaces as underscores, as
/// the SDK's own environment lookup names them).
#[derive(Debug)]
struct EnvServiceConfig {
    ignore_endpoint_urls: bool,
}

impl LoadServiceConfig for EnvServiceConfig {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        self.lookup(key.env(), key.service_id(), |name| std::env::var(name).ok())
    }
}

impl EnvServiceConfig {
    fn lookup(
        &self,
        env: &str,
        service_id: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Option<String> {
        if self.ignore_endpoint_urls && env == "AWS_ENDPOINT_URL" {
            return None;
        }
        let service = service_id.to_uppercase().replace(' ', "_");
        var(&format!("{env}_{service}"))
            .filter(|v| !v.trim().is_empty())
            .or_else(|| var(env).filter(|v| !v.trim().is_empty()))
    }
}

/// A client built on its first use instead of at cold start.
///
/// Building an SDK client parses its crate's partition table (~0.4 M
/// instructions, docs/benchmarks.md, cold init) once per service. For a
/// client most containers never call (push's SNS client: notifications
/// only), that work is better never done; a client every invocation needs is
/// built at init, where it is paid once per container and not inside a
/// caller's request.
pub type OnFirstUse<C> = Arc<LazyLock<C, Box<dyn FnOnce() -> C + Send>>>;

/// Wraps `make` so that it runs on the first dereference.
pub fn on_first_use<C>(make: impl FnOnce() -> C + Send + 'static) -> OnFirstUse<C> {
    Arc::new(LazyLock::new(Box::new(make)))
}

/// The SDK's HTTP client for this process: rustls with ring, trusting the
/// process's one root store. Shared by every `SdkConfig` (and so every
/// client), which also share its connection pool.
pub fn http_client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // The SDK's trust store takes PEM: the process's roots, already
            // read and checked, never the system's files a second time.
            let trust = TrustStore::empty().with_pem_certificate(platformsync_tls::roots_pem());
            let tls = TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "SDK TLS context from the shared roots failed; using the SDK's own");
                    TlsContext::default()
                });
            let inner = aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .tls_context(tls)
                .build_https();
            SharedHttpClient::new(RootsLoaded { inner })
        })
        .clone()
}

/// The SDK checks its HTTP client each time a client is built by making a
/// connector and dropping it: the connector parses its root store, and the
/// check exists so that the SDK's own native-certificate loading happens at
/// init rather than on the first request. Here the roots are already loaded
/// (by [`http_client`], at init, from the process's shared store), so the
/// throwaway connectors would only parse the same certificates again, once per
/// client (push builds four), and be dropped. The real connector is built on
/// the first request and cached for the process, as before.
#[derive(Debug)]
struct RootsLoaded {
    inner: SharedHttpClient,
}

impl HttpClient for RootsLoaded {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // The inner client caches one connector (one pool) per timeout setting.
        self.inner.http_connector(settings, components)
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        let _ = (runtime_components, cfg);
        Ok(())
    }

    fn validate_final_config(
        &self,
        runtime_components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_final_config(runtime_components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn lambda_environment_gives_region_credentials_and_endpoint() {
        let e = Environment::read(env(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ]));
        assert_eq!(e.region.as_deref(), Some("eu-west-1"));
        let c = e
            .credentials
            .as_ref()
            .expect("credentials from the environment");
        assert_eq!(c.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(c.session_token(), Some("token"));
        assert_eq!(e.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        let conf = e.config(c.clone(), RetryConfig::standard().with_max_attempts(8));
        assert_eq!(conf.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(conf.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert_eq!(conf.retry_config().map(|r| r.max_attempts()), Some(8));
        assert!(conf.credentials_provider().is_some());
        assert!(conf.http_client().is_some());
    }

    #[test]
    fn calls_bound_every_call_and_keep_the_connect_timeout() {
        let vars = env(&[("AWS_OPERATION_TIMEOUT_MS", "7000")]);
        let reader = Reader::with_lookup(Function::Ingest, vars);
        let calls = Calls::from_knobs(&reader).expect("knobs in bounds");
        assert_eq!(calls.max_attempts, 8, "ingest's default");
        assert_eq!(calls.operation_timeout, Duration::from_secs(7));
        assert_eq!(calls.attempt_timeout, Duration::from_secs(3));
        let defaults = Calls::defaults_for(Function::Ingest);
        assert_eq!(
            (defaults.max_attempts, defaults.operation_timeout),
            (8, Duration::from_secs(10))
        );
        let retry = calls.retry();
        assert_eq!(retry.max_attempts(), 8);
        assert_eq!(retry.max_backoff(), Duration::from_secs(2));
        // The SDK's 20 s pause would outlast the operation timeout: a call
        // throttled at the end of a burst would time out, not be retried.
        for function in Function::ALL {
            let d = Calls::defaults_for(function);
            assert!(
                d.max_backoff * 2 <= d.operation_timeout,
                "{function:?}: {d:?}"
            );
        }
        let mut e = Environment::read(env(&[("AWS_REGION", "eu-west-1")]));
        e.timeouts = Some(calls.timeouts());
        let conf = e.config(
            Credentials::new("a", "b", None, None, "test"),
            RetryConfig::standard(),
        );
        let t = conf.timeout_config().expect("timeouts set");
        assert_eq!(t.operation_timeout(), Some(Duration::from_secs(7)));
        assert_eq!(t.operation_attempt_timeout(), Some(Duration::from_secs(3)));
        assert_eq!(t.connect_timeout(), Some(CONNECT_TIMEOUT));
        let without = Environment::read(env(&[])).timeouts();
        assert_eq!(without.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(without.operation_timeout(), None);
    }

    #[test]
    fn incomplete_credentials_and_blank_values_count_as_absent() {
        let e = Environment::read(env(&[
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "  "),
            ("AWS_ENDPOINT_URL", ""),
        ]));
        assert_eq!(e.region.as_deref(), Some("us-east-1"));
        assert!(e.credentials.is_none());
        assert!(e.endpoint_url.is_none());
    }

    #[test]
    fn a_client_on_first_use_is_built_once_when_first_used() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let built = Arc::new(AtomicUsize::new(0));
        let counter = built.clone();
        let client = on_first_use(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            "client"
        });
        assert_eq!(built.load(Ordering::SeqCst), 0, "not built before use");
        let shared = client.clone();
        assert_eq!(**client, "client");
        assert_eq!(**shared, "client");
        assert_eq!(
            built.load(Ordering::SeqCst),
            1,
            "built once, shared by clones"
        );
    }

    #[test]
    fn service_endpoint_comes_before_the_global_one_unless_ignored() {
        let vars = env(&[
            ("AWS_ENDPOINT_URL", "http://global"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://dynamo"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://secrets"),
        ]);
        let services = EnvServiceConfig {
            ignore_endpoint_urls: false,
        };
        let get = |id| services.lookup("AWS_ENDPOINT_URL", id, &vars);
        assert_eq!(get("DynamoDB").as_deref(), Some("http://dynamo"));
        assert_eq!(get("Secrets Manager").as_deref(), Some("http://secrets"));
        assert_eq!(get("SQS").as_deref(), Some("http://global"));
        let ignored = EnvServiceConfig {
            ignore_endpoint_urls: true,
        };
        assert_eq!(ignored.lookup("AWS_ENDPOINT_URL", "DynamoDB", &vars), None);
        let e = Environment::read(env(&[
            ("AWS_ENDPOINT_URL", "http://global"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]));
        assert!(e.endpoint_url.is_none());
    }
}
