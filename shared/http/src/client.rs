//! [`EndpointClient`]: one POST attempt to a customer endpoint.

use std::error::Error as StdError;
use std::time::Duration;

use platformsync_delivery::is_delivered_status;
use platformsync_delivery::retry::parse_retry_after;
use platformsync_delivery::ssrf::{AllowList, UrlError, vet_url};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use thiserror::Error;
use time::OffsetDateTime;

use crate::resolver::{GuardedResolver, ResolveError};

/// Delivery rule 1: no response within 3 minutes is a failed attempt.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3 * 60);

/// How much of a response body is kept for the last-error record.
pub const BODY_SNIPPET_BYTES: usize = 512;

/// Secrets shorter than this are not scrubbed from error text: replacing "1"
/// everywhere would garble messages, and no real key is that short.
const MIN_SCRUB_LEN: usize = 4;

const REDACTED: &str = "[redacted]";

/// How the client is built; one per process.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Whole-attempt deadline: connect, TLS, send, and read the response head
    /// and snippet.
    pub attempt_timeout: Duration,
    /// Extra trusted CA certificates (PEM, one or more) for local runs. Added to
    /// the system's roots, never replacing them; verification stays on.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Ranges exempt from the SSRF refusal; empty in production.
    pub allow: AllowList,
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            extra_ca_pem: None,
            allow: AllowList::none(),
            user_agent: concat!("PlatformSync/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The client could not be built (a configuration error, fatal at start-up).
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("extra CA certificates are not valid PEM: {0}")]
    InvalidCa(String),
    #[error("extra CA PEM contains no certificate")]
    NoCaCertificate,
    #[error("cannot build the HTTPS client: {0}")]
    Build(String),
    /// A setting for local runs only was given to a Lambda function.
    #[error(
        "{0} is for local runs only and is refused on AWS Lambda (it would weaken the TLS or SSRF guard in production)"
    )]
    LocalOnlyOnLambda(&'static str),
    #[error(transparent)]
    AllowList(#[from] crate::local::TooBroad),
}

/// What the endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// `Retry-After`, as delay-seconds or HTTP-date, relative to receipt.
    pub retry_after: Option<Duration>,
    /// The first [`BODY_SNIPPET_BYTES`] bytes of the body (lossy UTF-8), with any
    /// echo of our secrets removed: for the last-error record.
    pub body_snippet: String,
}

impl Response {
    /// Only 200 is delivered; 201, 204 and 3xx are failed attempts.
    pub fn is_delivered(&self) -> bool {
        is_delivered_status(self.status)
    }
}

/// Why a request was not sent at all.
#[derive(Debug, Error)]
pub enum Refusal {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Address(ResolveError),
    #[error("request header {name:?} is not valid")]
    InvalidHeader { name: String },
}

/// A failed attempt, without a response. The text names `https://host:port/path`
/// only: never the query string, never a header value.
#[derive(Debug, Error)]
pub enum AttemptError {
    #[error("refused before sending: {0}")]
    Refused(Refusal),
    #[error("{target}: no response within {after:?}")]
    Timeout { target: String, after: Duration },
    #[error("{target}: connection failed: {detail}")]
    Connect { target: String, detail: String },
    #[error("{target}: TLS failed: {detail}")]
    Tls { target: String, detail: String },
    #[error("{target}: {detail}")]
    Other { target: String, detail: String },
}

impl AttemptError {
    /// A refusal is a permanent configuration problem, not a flaky endpoint.
    pub fn is_refused(&self) -> bool {
        matches!(self, AttemptError::Refused(_))
    }
}

/// The HTTPS client for customer endpoints.
#[derive(Debug, Clone)]
pub struct EndpointClient {
    http: reqwest::Client,
    allow: AllowList,
    attempt_timeout: Duration,
}

impl EndpointClient {
    /// Refuses local-only settings on Lambda ([`crate::local`]) and an
    /// allow-list that would switch the SSRF guard off.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        crate::local::refuse_on_lambda(&config, crate::local::on_lambda())?;
        crate::local::check_allow_list(&config.allow)?;
        let tls = tls_config(config.extra_ca_pem.as_deref())?;
        let builder = reqwest::Client::builder()
            // rustls with ring and the process's one root store
            // (platformsync-tls), shared with the AWS SDK's client: one crypto
            // provider in the binary, the CA bundle read once per process.
            .tls_backend_preconfigured(tls)
            .https_only(true)
            // A 3xx is a failed attempt; following it could carry the key to an
            // unvetted host.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve endpoint names itself, past the guard.
            .no_proxy()
            // One attempt is exactly one request: retrying is the delivery
            // schedule's job, which counts and records every attempt.
            .retry(reqwest::retry::never())
            .dns_resolver(GuardedResolver::new(config.allow.clone()))
            .timeout(config.attempt_timeout)
            .user_agent(config.user_agent);
        let http = builder
            .build()
            .map_err(|e| ClientError::Build(chain(&e.without_url())))?;
        Ok(EndpointClient {
            http,
            allow: config.allow,
            attempt_timeout: config.attempt_timeout,
        })
    }

    /// One POST attempt. `query` pairs are appended to the URL's own query;
    /// `headers` are sent as given (marked sensitive); `Content-Type` defaults to
    /// `application/json`. An `Ok` is any HTTP response: check
    /// [`Response::is_delivered`].
    pub async fn post(
        &self,
        url: &str,
        query: &[(String, String)],
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Response, AttemptError> {
        let secrets: Vec<&str> = query
            .iter()
            .chain(headers)
            .map(|(_, v)| v.as_str())
            .filter(|v| v.len() >= MIN_SCRUB_LEN)
            .collect();
        let scrub = |text: &str| scrub(text, &secrets);

        // Literal IPs never reach the resolver: vet them here.
        let endpoint =
            vet_url(url, &self.allow).map_err(|e| AttemptError::Refused(Refusal::Url(e)))?;
        let target = endpoint.redacted();
        let mut full_url = endpoint.into_url();
        if !query.is_empty() {
            let mut pairs = full_url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        let header_map = header_map(headers).map_err(AttemptError::Refused)?;

        let sent = self
            .http
            .post(full_url)
            .headers(header_map)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return Err(self.classify(e, target, &scrub)),
        };

        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, OffsetDateTime::now_utc()));

        // Only a snippet: a huge or endless body must not hold the attempt.
        let mut snippet = Vec::with_capacity(BODY_SNIPPET_BYTES);
        while snippet.len() < BODY_SNIPPET_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = BODY_SNIPPET_BYTES - snippet.len();
                    snippet.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                // The status is what counts; a body cut short is still a response.
                Err(e) => {
                    tracing::debug!(endpoint = %target, error = %scrub(&chain(&e.without_url())), "response body read failed");
                    break;
                }
            }
        }
        Ok(Response {
            status,
            retry_after,
            body_snippet: scrub(&String::from_utf8_lossy(&snippet)),
        })
    }

    fn classify(
        &self,
        error: reqwest::Error,
        target: String,
        scrub: &dyn Fn(&str) -> String,
    ) -> AttemptError {
        let error = error.without_url();
        if let Some(ResolveError::Refused { host, refusals }) = find::<ResolveError>(&error) {
            return AttemptError::Refused(Refusal::Address(ResolveError::Refused {
                host: host.clone(),
                refusals: refusals.clone(),
            }));
        }
        let detail = scrub(&chain(&error));
        if error.is_timeout() {
            return AttemptError::Timeout {
                target,
                after: self.attempt_timeout,
            };
        }
        if is_tls(&error) {
            return AttemptError::Tls { target, detail };
        }
        if error.is_connect() {
            return AttemptError::Connect { target, detail };
        }
        AttemptError::Other { target, detail }
    }
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, Refusal> {
    let mut map = HeaderMap::with_capacity(headers.len() + 1);
    for (name, value) in headers {
        let invalid = || Refusal::InvalidHeader { name: name.clone() };
        let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let mut header_value = HeaderValue::from_str(value).map_err(|_| invalid())?;
        // Keeps the value out of reqwest's and hyper's Debug output.
        header_value.set_sensitive(true);
        map.append(header_name, header_value);
    }
    if !map.contains_key(CONTENT_TYPE) {
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(map)
}

/// The messages of an error and its sources, joined, without repeats (reqwest
/// and hyper often wrap an error in one with the same text).
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = next(e);
    }
    parts.join(": ")
}

fn find<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = next(e);
    }
    None
}

/// The rustls configuration of the endpoint client: ring, the process's root
/// store, plus `extra` CA certificates (local runs) added to it, never
/// replacing it. Verification is always on (webpki, as rustls does it).
fn tls_config(extra: Option<&[u8]>) -> Result<rustls::ClientConfig, ClientError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let shared = platformsync_tls::roots();
    let roots = match extra {
        None => shared.store(),
        Some(pem) => {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ClientError::InvalidCa(e.to_string()))?;
            if certs.is_empty() {
                return Err(ClientError::NoCaCertificate);
            }
            let mut store = (*shared.store()).clone();
            for cert in certs {
                store
                    .add(cert)
                    .map_err(|e| ClientError::InvalidCa(e.to_string()))?;
            }
            std::sync::Arc::new(store)
        }
    };
    if roots.is_empty() {
        // Nothing could ever verify: refuse to start rather than fail every attempt.
        return Err(ClientError::Build(
            "no trusted root certificates (the compiled-in roots and PLATFORMSYNC_EXTRA_CA_FILE are both empty)".into(),
        ));
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(platformsync_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Build(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // reqwest is built with HTTP/1.1 only.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// rustls reports through (nested) `io::Error`s wrapping a `rustls::Error`.
fn is_tls(error: &(dyn StdError + 'static)) -> bool {
    find::<rustls::Error>(error).is_some()
}

/// The next error down the chain. `io::Error::source` skips the error it wraps
/// (returning *that* error's source), which would hide a wrapped
/// `rustls::Error`; so step into an `io::Error`'s payload explicitly.
fn next<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    match error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => Some(inner as &(dyn StdError + 'static)),
        None => error.source(),
    }
}

fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if out.contains(secret) {
            out = out.replace(secret, REDACTED);
        }
        // Also the form it takes in a URL.
        let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        if encoded != *secret && out.contains(&encoded) {
            out = out.replace(&encoded, REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_plain_and_encoded_secrets() {
        let secrets = ["SECRET123", "Bearer a b/c"];
        assert_eq!(
            scrub(
                "GET /x?apikey=SECRET123 with Bearer a b/c or Bearer+a+b%2Fc",
                &secrets
            ),
            "GET /x?apikey=[redacted] with [redacted] or [redacted]"
        );
    }

    #[test]
    fn invalid_header_names_the_header_not_the_value() {
        let err = header_map(&[("Authorization".into(), "Bearer SECRET\n".into())]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("Authorization") && !text.contains("SECRET"),
            "{text}"
        );
        assert!(header_map(&[("bad name".into(), "v".into())]).is_err());
    }

    #[test]
    fn content_type_defaults_to_json_unless_given() {
        let map = header_map(&[]).unwrap();
        assert_eq!(map[CONTENT_TYPE], "application/json");
        let map = header_map(&[("content-type".into(), "application/x-custom".into())]).unwrap();
        assert_eq!(map.get_all(CONTENT_TYPE).iter().count(), 1);
        assert_eq!(map[CONTENT_TYPE], "application/x-custom");
    }

    #[test]
    fn header_values_are_sensitive() {
        let map = header_map(&[("Authorization".into(), "Bearer SECRET".into())]).unwrap();
        assert!(map["authorization"].is_sensitive());
        assert!(!format!("{map:?}").contains("SECRET"));
    }
}
