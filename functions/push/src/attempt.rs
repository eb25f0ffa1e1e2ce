//! One attempt: the endpoint's key, payload v1 rendered for the endpoint
//! (version, metadata, key placement), one POST, and what the answer means
//! ([`AttemptResult`]). A 401 or 403 makes the key be fetched again and the
//! POST be repeated once inside the same attempt (the key may have been
//! rotated since we cached it).
//!
//! Failures of our own AWS calls (Secrets Manager throttled, AccessDenied,
//! KMS, internal errors, timeouts) are [`Posted::Ours`]: not an attempt, not
//! the customer's. So is an endpoint secret we cannot read, or a signing
//! endpoint whose secret holds no valid signing secret: our configuration,
//! never charged to the customer.
//!
//! A signing endpoint's POST carries the Standard Webhooks headers
//! (`webhook-id` = the MessageId, `webhook-timestamp` = now, signed again on
//! every POST, `webhook-signature` over exactly the bytes sent); the signing
//! secrets come with the key from the endpoint's secret
//! ([`platformsync_delivery::signing::EndpointSecret`]), one `GetSecretValue`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use platformsync_aws::StoreError;
use platformsync_aws::secrets::SecretCache;
use platformsync_delivery::signing::{
    EndpointSecret, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SigningSecret, sign,
};
use platformsync_delivery::split::is_refusal;
use platformsync_domain::endpoint::EndpointSettings;
use platformsync_domain::payload::{PayloadItems, RenderInput, render};
use platformsync_http::{EndpointClient, Response};
use secrecy::{ExposeSecret, SecretString};

use crate::policy::AttemptResult;
use crate::ports::Outgoing;

/// Response body text kept in the last error.
const SNIPPET_CHARS: usize = 200;

/// What became of an attempt.
#[derive(Debug)]
pub enum Posted {
    /// The endpoint's part: delivered, failed or refused.
    Answer(AttemptResult),
    /// Ours failed before the endpoint was reached: not an attempt.
    Ours(StoreError),
}

impl Posted {
    fn failed(error: impl Into<String>) -> Self {
        Posted::Answer(AttemptResult::Failed {
            error: error.into(),
            retry_after: None,
        })
    }
}

/// The HTTPS client and the key cache, built once per container.
pub struct Attempt {
    pub(crate) http: EndpointClient,
    pub(crate) secrets: SecretCache,
    /// One whole attempt plus the bookkeeping after it.
    pub(crate) needs: Duration,
    /// `platformsync/<stage>/endpoints/`: an endpoint's key is the secret
    /// named after its id under this prefix, never the name its record
    /// holds (a record must not be able to point at another's key).
    pub(crate) secret_prefix: String,
}

/// Removes `secret` from text the endpoint sent back (a receiver that echoes
/// the body would echo a key placed in the body). The HTTP client already
/// scrubs header and query values.
pub(crate) fn scrub(text: &str, secret: &SecretString) -> String {
    let secret = secret.expose_secret();
    if secret.len() >= 4 && text.contains(secret) {
        text.replace(secret, "[redacted]")
    } else {
        text.to_owned()
    }
}

impl Attempt {
    pub async fn post(
        &self,
        endpoint: &EndpointSettings,
        outgoing: &Outgoing<'_>,
        deadline: Instant,
    ) -> Posted {
        let secret_name = endpoint.endpoint_id.secret_name(&self.secret_prefix);
        let secret = match self.secrets.get(&secret_name).await {
            Ok(value) => match self.usable(endpoint, &secret_name, &value) {
                Ok(secret) => secret,
                // Signing was just switched on and the cached value predates
                // it: the stored one may already hold the signing secret.
                Err(_) if endpoint.signing => match self.fetch(endpoint, &secret_name).await {
                    Ok(secret) => secret,
                    Err(e) => return Posted::Ours(e),
                },
                Err(e) => return Posted::Ours(e),
            },
            Err(e) => return Posted::Ours(e),
        };
        let response = match self.post_once(endpoint, outgoing, &secret).await {
            Ok(response) => response,
            Err(answer) => return answer,
        };
        let (response, secret) = if matches!(response.status, 401 | 403) {
            let time_left = deadline.saturating_duration_since(Instant::now());
            if time_left < self.needs {
                // Refreshing now still helps the next attempt.
                let _ = self.secrets.refresh(&secret_name).await;
                (response, secret)
            } else {
                tracing::info!(
                    status = response.status,
                    "endpoint refused the key: fetching it again"
                );
                let secret = match self.fetch(endpoint, &secret_name).await {
                    Ok(secret) => secret,
                    Err(e) => return Posted::Ours(e),
                };
                match self.post_once(endpoint, outgoing, &secret).await {
                    Ok(response) => (response, secret),
                    Err(answer) => return answer,
                }
            }
        } else {
            (response, secret)
        };
        if response.is_delivered() {
            return Posted::Answer(AttemptResult::Delivered);
        }
        let snippet: String = scrub(&response.body_snippet, &secret.key)
            .chars()
            .take(SNIPPET_CHARS)
            .collect();
        let snippet = snippet.trim();
        let error = if snippet.is_empty() {
            format!("HTTP {}", response.status)
        } else {
            format!("HTTP {}: {snippet}", response.status)
        };
        if is_refusal(response.status) {
            Posted::Answer(AttemptResult::Refused { error })
        } else {
            Posted::Answer(AttemptResult::Failed {
                error,
                retry_after: response.retry_after,
            })
        }
    }

    /// The endpoint's secret fetched now, whatever the cache holds.
    async fn fetch(
        &self,
        endpoint: &EndpointSettings,
        secret_name: &str,
    ) -> Result<EndpointSecret, StoreError> {
        let value = self.secrets.refresh(secret_name).await?;
        self.usable(endpoint, secret_name, &value)
    }

    /// Reads the stored value: the key, and for a signing endpoint at least
    /// one signing secret valid now. The error names the secret, never a value.
    fn usable(
        &self,
        endpoint: &EndpointSettings,
        secret_name: &str,
        value: &SecretString,
    ) -> Result<EndpointSecret, StoreError> {
        let malformed = |message: String| StoreError::Malformed {
            resource: "secrets manager".into(),
            key: secret_name.to_owned(),
            message,
        };
        let secret =
            EndpointSecret::parse(value.expose_secret()).map_err(|e| malformed(e.to_string()))?;
        if endpoint.signing && secret.signing_at(unix_now()).is_empty() {
            return Err(malformed(
                "the endpoint signs its pushes but its secret holds no valid signing secret \
                 (`platformsync endpoint signing enable`)"
                    .into(),
            ));
        }
        Ok(secret)
    }

    /// Renders the batch for the endpoint and posts it once.
    async fn post_once(
        &self,
        endpoint: &EndpointSettings,
        outgoing: &Outgoing<'_>,
        secret: &EndpointSecret,
    ) -> Result<Response, Posted> {
        let config =
            |e: &dyn std::fmt::Display| Posted::failed(format!("endpoint settings unusable: {e}"));
        let version = endpoint.payload_version().map_err(|e| config(&e))?;
        let key = endpoint
            .api_key(secret.key.clone())
            .map_err(|e| config(&e))?;
        let rendered = render(
            version,
            &RenderInput {
                message_id: outgoing.message_id,
                correlation_id: None,
                endpoint_metadata: &endpoint.metadata,
                items: PayloadItems::Raw {
                    kind: outgoing.kind,
                    items: outgoing.payloads,
                },
                api_key: &key,
            },
        );
        // Exposed only for the duration of the call; the client marks
        // headers sensitive and scrubs these values from its errors.
        let mut headers: Vec<(String, String)> = rendered
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .collect();
        if endpoint.signing {
            // Checked in `usable`, but the time may have moved past the end
            // of every secret's validity since: never send an empty
            // signature (the customer would refuse it and the failure would
            // count against its endpoint); it is our secret that is wrong.
            let signers: Vec<SigningSecret> = secret.signing_at(unix_now());
            if signers.is_empty() {
                return Err(Posted::Ours(StoreError::Malformed {
                    resource: "secrets manager".into(),
                    key: format!("endpoint {}", endpoint.endpoint_id),
                    message: "no signing secret valid now".into(),
                }));
            }
            headers.extend(webhook_headers(
                &outgoing.message_id.to_string(),
                unix_now(),
                &rendered.body,
                &signers,
            ));
        }
        let query: Vec<(String, String)> = rendered
            .query
            .iter()
            .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
            .collect();
        self.http
            .post(&endpoint.url, &query, &headers, rendered.body)
            .await
            .map_err(|e| Posted::failed(scrub(&e.to_string(), &secret.key)))
    }
}

/// Unix seconds now (0 before 1970: a broken clock signs stale, the
/// receiver refuses, and the attempt fails visibly).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The Standard Webhooks headers of one POST of `body`.
pub(crate) fn webhook_headers(
    message_id: &str,
    timestamp: i64,
    body: &[u8],
    secrets: &[SigningSecret],
) -> [(String, String); 3] {
    [
        (HEADER_ID.to_owned(), message_id.to_owned()),
        (HEADER_TIMESTAMP.to_owned(), timestamp.to_string()),
        (
            HEADER_SIGNATURE.to_owned(),
            sign(message_id, timestamp, body, secrets),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_headers_sign_the_body_sent_under_the_message_id() {
        let secret = SigningSecret::from_bytes(vec![5; 32]).unwrap();
        let headers = webhook_headers("m-1", 1_700_000_000, b"{}", std::slice::from_ref(&secret));
        assert_eq!(headers[0], ("webhook-id".into(), "m-1".into()));
        assert_eq!(
            headers[1],
            ("webhook-timestamp".into(), "1700000000".into())
        );
        assert_eq!(headers[2].0, "webhook-signature");
        assert_eq!(headers[2].1, sign("m-1", 1_700_000_000, b"{}", &[secret]));
        assert!(headers[2].1.starts_with("v1,"));
    }

    #[test]
    fn scrub_removes_an_echoed_key() {
        let secret = SecretString::from("tok-123456".to_owned());
        assert_eq!(scrub("bad key tok-123456", &secret), "bad key [redacted]");
    }
}
