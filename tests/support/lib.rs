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
    let host = endpoint
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or_default();
    assert!(
        matches!(host, "127.0.0.1" | "localhost" | "[::1]"),
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

    /// `Fn::GetAtt` of a resource of this deployment.
    pub fn attribute(&self, logical_id: &str, attribute: &str) -> String {
        self.deployment
            .attribute(logical_id, attribute)
            .unwrap_or_else(|| panic!("{logical_id}.{attribute} was not deployed"))
            .to_owned()
    }
}
