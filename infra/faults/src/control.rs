//! A client of the control endpoint, for Rust programs that drive a proxy
//! running in another process (the `platformsync-faults` binary).

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::rules::{Rule, Stats};
use crate::server::CONTROL_PATH;

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("invalid proxy URL {0:?}")]
    InvalidUrl(String),
    #[error("the proxy did not answer: {0}")]
    Unreachable(String),
    #[error("the proxy refused the request ({status}): {body}")]
    Refused { status: u16, body: String },
    #[error("unexpected answer from the proxy: {0}")]
    BadAnswer(String),
}

/// Drives a fault proxy through `/__faults`, e.g.
/// `FaultControl::new("http://127.0.0.1:4599")?.set_rules(&rules).await?`.
#[derive(Clone, Debug)]
pub struct FaultControl {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl FaultControl {
    /// `url`: the proxy's URL as the binary prints it.
    pub fn new(url: &str) -> Result<Self, ControlError> {
        let base = url.trim().trim_end_matches('/').to_owned();
        let uri: hyper::Uri = base
            .parse()
            .map_err(|_| ControlError::InvalidUrl(url.to_owned()))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(ControlError::InvalidUrl(url.to_owned()));
        }
        Ok(Self {
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// The rules with their counters, and the calls per operation.
    pub async fn stats(&self) -> Result<Stats, ControlError> {
        self.call(Method::GET, CONTROL_PATH, Vec::new()).await
    }

    /// Replaces the rules.
    pub async fn set_rules(&self, rules: &[Rule]) -> Result<Stats, ControlError> {
        let body = serde_json::to_vec(rules).map_err(|e| ControlError::BadAnswer(e.to_string()))?;
        self.call(Method::POST, CONTROL_PATH, body).await
    }

    /// Appends rules after the existing ones.
    pub async fn add_rules(&self, rules: &[Rule]) -> Result<Stats, ControlError> {
        let body = serde_json::to_vec(rules).map_err(|e| ControlError::BadAnswer(e.to_string()))?;
        self.call(Method::POST, "/__faults/append", body).await
    }

    /// Removes every rule and resets every counter.
    pub async fn clear(&self) -> Result<Stats, ControlError> {
        self.call(Method::DELETE, CONTROL_PATH, Vec::new()).await
    }

    /// Resets the counters, keeping the rules.
    pub async fn reset_stats(&self) -> Result<Stats, ControlError> {
        self.call(Method::DELETE, "/__faults/stats", Vec::new())
            .await
    }

    async fn call(&self, method: Method, path: &str, body: Vec<u8>) -> Result<Stats, ControlError> {
        let uri = format!("{}{path}", self.base);
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| ControlError::InvalidUrl(uri.clone()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| ControlError::Unreachable(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ControlError::Unreachable(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(ControlError::Refused {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ControlError::BadAnswer(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Fault, FaultProxy};

    #[tokio::test]
    async fn drives_a_proxy_over_http() {
        // Control requests never reach the upstream, so any will do.
        let proxy = FaultProxy::start("http://127.0.0.1:9").await.unwrap();
        let control = FaultControl::new(&proxy.url()).unwrap();
        let rule = Rule::new("sqs", "SendMessageBatch", Fault::Throttle).times(3);
        let stats = control
            .set_rules(std::slice::from_ref(&rule))
            .await
            .unwrap();
        assert_eq!(stats.rules[0].rule, rule);
        control
            .add_rules(&[Rule::new("sns", "*", Fault::Kms)])
            .await
            .unwrap();
        assert_eq!(proxy.stats().rules.len(), 2);
        assert_eq!(control.stats().await.unwrap().rules.len(), 2);
        assert!(control.reset_stats().await.unwrap().calls.is_empty());
        assert!(control.clear().await.unwrap().rules.is_empty());

        let bad = Rule::new(
            "sqs",
            "*",
            Fault::Hang {
                seconds: -1.0,
                forward: true,
            },
        );
        match control.set_rules(&[bad]).await {
            Err(ControlError::Refused { status: 400, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(FaultControl::new("https://x").is_err());
        drop(proxy);
    }
}
