//! The functions of `template.yaml`, running natively: the same handler
//! code Lambda runs, chosen by each function's `BuildProperties.Binary`.

use anyhow::{Context, bail};
use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_lambda_events::streams::DynamoDbEventResponse;
use platformsync_template::FunctionSpec;
use std::time::Duration;

// Built once per runner: boxing keeps the enum small.
enum Handler {
    Ingest(Box<ingest::Ingest>),
    Fanout(Box<fanout::Fanout>),
    Push(Box<push::Push>),
    PullApi(Box<pull_api::PullApi>),
    StreamRecovery(Box<stream_recovery::StreamRecovery>),
}

/// One function and its Lambda timeout.
pub struct Function {
    pub logical_id: String,
    pub timeout: Duration,
    handler: Handler,
}

/// A function that did not answer: Lambda would report a function error
/// (timeout, crash) and retry the whole batch.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("{0} timed out after {1:?}")]
    Timeout(String, Duration),
    #[error("{0} has no handler for this kind of event")]
    WrongEvent(String),
}

impl Function {
    /// Builds the function as its `main.rs` does, from the environment the
    /// runner set from `template.yaml` before starting.
    pub async fn build(spec: &FunctionSpec) -> anyhow::Result<Self> {
        let handler = match spec.binary.as_str() {
            "ingest" => Handler::Ingest(Box::new(ingest::Ingest::from_env().await?)),
            "fanout" => Handler::Fanout(Box::new(fanout::Fanout::from_env().await?)),
            "push" => Handler::Push(Box::new(push::Push::from_env().await?)),
            "pull-api" => Handler::PullApi(Box::new(pull_api::PullApi::from_env().await?)),
            "stream-recovery" => Handler::StreamRecovery(Box::new(
                stream_recovery::StreamRecovery::from_env().await?,
            )),
            other => bail!("{}: no local handler for binary {other:?}", spec.logical_id),
        };
        Ok(Self {
            logical_id: spec.logical_id.clone(),
            timeout: spec.timeout,
            handler,
        })
    }

    async fn within_timeout<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, InvokeError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| InvokeError::Timeout(self.logical_id.clone(), self.timeout))
    }

    /// An HTTP API request; a function error becomes API Gateway's 502/503.
    pub async fn http(&self, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
        let result = match &self.handler {
            // The deadline of the template's timeout, as Lambda gives it:
            // ingest answers its own 503 before the runner's timer would.
            Handler::Ingest(f) => {
                let deadline = std::time::Instant::now() + self.timeout;
                self.within_timeout(f.handle_before(event, deadline)).await
            }
            Handler::PullApi(f) => self.within_timeout(f.handle(event)).await,
            _ => Err(InvokeError::WrongEvent(self.logical_id.clone())),
        };
        result.unwrap_or_else(|e| {
            tracing::error!(error = %e, "function error");
            let mut resp = ApiGatewayV2httpResponse::default();
            resp.status_code = 503;
            resp.body = Some(Body::Text(r#"{"message":"Service Unavailable"}"#.into()));
            resp
        })
    }

    pub async fn stream(&self, event: StreamEvent) -> Result<DynamoDbEventResponse, InvokeError> {
        match &self.handler {
            Handler::Fanout(f) => self.within_timeout(f.handle(event)).await,
            _ => Err(InvokeError::WrongEvent(self.logical_id.clone())),
        }
    }

    pub async fn sqs(&self, event: SqsEvent) -> Result<SqsBatchResponse, InvokeError> {
        match &self.handler {
            Handler::Push(f) => self.within_timeout(f.handle(event)).await,
            Handler::StreamRecovery(f) => self.within_timeout(f.handle(event)).await,
            _ => Err(InvokeError::WrongEvent(self.logical_id.clone())),
        }
    }
}

/// The environment of all functions, from `template.yaml`, as one map: the
/// functions share one process here, so a variable two functions set to
/// different values is refused rather than silently shared.
pub fn merged_environment(specs: &[FunctionSpec]) -> anyhow::Result<Vec<(String, String)>> {
    let mut merged: std::collections::BTreeMap<String, (String, &str)> = Default::default();
    for spec in specs {
        for (name, value) in &spec.environment {
            match merged.get(name) {
                Some((other, owner)) if other != value => {
                    bail!(
                        "{name} is {other:?} for {owner} but {value:?} for {}: give them one value or distinct names",
                        spec.logical_id
                    )
                }
                _ => {
                    merged.insert(name.clone(), (value.clone(), &spec.logical_id));
                }
            }
        }
    }
    Ok(merged.into_iter().map(|(k, (v, _))| (k, v)).collect())
}

/// Parses `NAME=VALUE`.
pub fn parse_assignment(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s.split_once('=').context("expected NAME=VALUE")?;
    Ok((k.to_owned(), v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(id: &str, env: &[(&str, &str)]) -> FunctionSpec {
        FunctionSpec {
            logical_id: id.into(),
            binary: "x".into(),
            timeout: Duration::from_secs(1),
            environment: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            events: vec![],
        }
    }

    #[test]
    fn shared_variables_must_agree() {
        let ok = merged_environment(&[
            spec("A", &[("T", "1"), ("X", "a")]),
            spec("B", &[("T", "1")]),
        ])
        .unwrap();
        assert_eq!(ok, vec![("T".into(), "1".into()), ("X".into(), "a".into())]);
        let err =
            merged_environment(&[spec("A", &[("T", "1")]), spec("B", &[("T", "2")])]).unwrap_err();
        assert!(err.to_string().contains("for A but \"2\" for B"), "{err}");
    }
}
