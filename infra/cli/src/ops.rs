//! Resource names, AWS clients, and API keys (input and Secrets Manager).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use platformsync_aws::api_keys::ApiKeyStore;
use platformsync_aws::assignments::AssignmentStore;
use platformsync_aws::config_table::ConfigStore;
use platformsync_domain::endpoint::{EndpointId, EndpointSettings};
use secrecy::{ExposeSecret, SecretString};

use crate::{KeyArgs, Target};

/// The deployment's resource names, as template.yaml makes them from the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub stage: String,
    pub config_table: String,
    pub transactions_table: String,
    pub ledger_table: String,
    /// URL when given; else looked up by [`Names::delivery_queue_name`].
    pub delivery_queue_url: Option<String>,
    pub dead_letter_queue_url: Option<String>,
}

impl Names {
    pub fn of(target: &Target) -> Self {
        let stage = &target.stage;
        let or = |v: &Option<String>, suffix: &str| {
            v.clone()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| format!("platformsync-{stage}-{suffix}"))
        };
        Names {
            stage: stage.clone(),
            config_table: or(&target.config_table, "config"),
            transactions_table: or(&target.transactions_table, "transactions"),
            ledger_table: or(&target.delivery_ledger_table, "delivery-ledger"),
            delivery_queue_url: target.delivery_queue_url.clone().filter(|v| !v.is_empty()),
            dead_letter_queue_url: target
                .dead_letter_queue_url
                .clone()
                .filter(|v| !v.is_empty()),
        }
    }

    pub fn delivery_queue_name(&self) -> String {
        format!("platformsync-{}-delivery.fifo", self.stage)
    }

    pub fn dead_letter_queue_name(&self) -> String {
        format!("platformsync-{}-delivery-dlq.fifo", self.stage)
    }

    /// The ingest key SafeSync presents (template.yaml's `IngestKeySecret`).
    pub fn ingest_key_secret(&self) -> String {
        format!("platformsync/{}/ingest-key", self.stage)
    }

    /// Where an endpoint's API key is kept (template.yaml grants the push
    /// function read access under this prefix): derived from the endpoint
    /// id, as the push function derives it, never read from the record.
    pub fn endpoint_secret(
        &self,
        endpoint_id: &platformsync_domain::endpoint::EndpointId,
    ) -> String {
        endpoint_id.secret_name(&platformsync_domain::endpoint::endpoint_secret_prefix(
            &self.stage,
        ))
    }
}

/// Clients and names for one command.
pub(crate) struct Ops {
    pub names: Names,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub config: ConfigStore,
    pub assignments: AssignmentStore,
    pub api_keys: ApiKeyStore,
}

impl Ops {
    pub async fn connect(target: &Target) -> Self {
        let names = Names::of(target);
        let sdk = platformsync_aws::sdk_config().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        Ops {
            config: ConfigStore::new(dynamodb.clone(), names.config_table.clone()),
            assignments: AssignmentStore::new(dynamodb.clone(), names.config_table.clone()),
            api_keys: ApiKeyStore::new(dynamodb.clone(), names.config_table.clone()),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
            dynamodb,
            names,
        }
    }

    /// Creates the endpoint's secret, or puts a new version of it. Returns
    /// the version id. The key appears in no error text.
    pub async fn store_key(
        &self,
        secret_id: &str,
        endpoint_id: &EndpointId,
        key: &SecretString,
    ) -> Result<String> {
        let created = self
            .secrets
            .create_secret()
            .name(secret_id)
            .description(format!("API key of PlatformSync endpoint {endpoint_id}"))
            .secret_string(key.expose_secret())
            .send()
            .await;
        let version = match created {
            Ok(out) => out.version_id,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception()) =>
            {
                // A new key keeps the endpoint's signing secrets (signing_cmd.rs).
                let value = crate::signing_cmd::with_key(self, secret_id, key).await?;
                self.secrets
                    .put_secret_value()
                    .secret_id(secret_id)
                    .secret_string(value.expose_secret())
                    .send()
                    .await
                    .map_err(|e| sdk_error(e, &format!("PutSecretValue on {secret_id}")))?
                    .version_id
            }
            Err(e) => return Err(sdk_error(e, &format!("CreateSecret {secret_id}"))),
        };
        Ok(version.unwrap_or_default())
    }

    /// When the endpoint's secret last changed; `None` if it does not exist.
    pub async fn key_last_changed(&self, secret_id: &str) -> Result<Option<String>> {
        match self
            .secrets
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.last_changed_date()
                    .or(out.created_date())
                    .and_then(|d| d.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
                    .unwrap_or_else(|| "unknown".into()),
            )),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_error(e, &format!("DescribeSecret {secret_id}"))),
        }
    }

    /// The endpoint `id`, whichever customer has it: the id's claim names
    /// the owner (one read); endpoints registered before claims existed are
    /// found among every customer's.
    pub async fn find_endpoint(&self, id: &EndpointId) -> Result<EndpointSettings> {
        if let Some(owner) = self.config.endpoint_owner(id).await?
            && let Some(found) = self.config.endpoint(&owner, id).await?
        {
            return Ok(found);
        }
        for c in self.config.customers().await? {
            if let Some(found) = self
                .config
                .endpoints_of(&c.customer_id)
                .await?
                .into_iter()
                .find(|e| &e.endpoint_id == id)
            {
                return Ok(found);
            }
        }
        bail!("no endpoint {id} is registered")
    }

    /// The delivery queue's URL: given, or looked up by the stage's name.
    pub async fn delivery_queue_url(&self) -> Result<String> {
        if let Some(url) = &self.names.delivery_queue_url {
            return Ok(url.clone());
        }
        let name = self.names.delivery_queue_name();
        self.sqs
            .get_queue_url()
            .queue_name(&name)
            .send()
            .await
            .map_err(|e| sdk_error(e, &format!("GetQueueUrl {name}")))?
            .queue_url
            .with_context(|| format!("no URL for queue {name}"))
    }
}

/// An SDK error with its whole source chain (its `Display` alone says only
/// "service error").
pub(crate) fn sdk_error<E>(e: E, what: &str) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    anyhow::anyhow!("{what}: {}", platformsync_aws::error::chain(&e))
}

/// Where a key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Stdin,
    File(PathBuf),
    Env(String),
}

impl KeySource {
    /// The source chosen by `args`; `None` when no key option was given.
    pub(crate) fn of(args: &KeyArgs) -> Result<Option<KeySource>> {
        if args.key_argument.is_some() {
            bail!(
                "the API key is never accepted as an argument (it would end up in shell history and `ps`): use --key-stdin or --key-file PATH"
            );
        }
        Ok(if args.key_stdin {
            Some(KeySource::Stdin)
        } else {
            args.key_file.clone().map(KeySource::File)
        })
    }
}

/// Reads a key: one trailing newline (`\n` or `\r\n`) is dropped; an empty
/// key or one with a line break inside is refused. Error texts never contain
/// the key.
pub fn read_key(source: &KeySource, stdin: &mut dyn Read) -> Result<SecretString> {
    let (text, from) = match source {
        KeySource::Stdin => {
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .context("cannot read the API key from standard input")?;
            (text, "standard input".to_owned())
        }
        KeySource::File(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the key file {}", path.display()))?,
            path.display().to_string(),
        ),
        KeySource::Env(var) => (
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?,
            format!("environment variable {var}"),
        ),
    };
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        bail!("the API key read from {from} is empty");
    }
    if text.contains(['\n', '\r']) {
        bail!(
            "the API key read from {from} contains a line break (only one trailing newline is dropped)"
        );
    }
    Ok(SecretString::from(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(stage: &str) -> Target {
        Target {
            stage: stage.into(),
            config_table: None,
            transactions_table: None,
            delivery_ledger_table: None,
            delivery_queue_url: None,
            dead_letter_queue_url: None,
        }
    }

    #[test]
    fn names_follow_template_yaml() {
        let n = Names::of(&target("prod"));
        assert_eq!(n.config_table, "platformsync-prod-config");
        assert_eq!(n.transactions_table, "platformsync-prod-transactions");
        assert_eq!(n.ledger_table, "platformsync-prod-delivery-ledger");
        assert_eq!(n.delivery_queue_name(), "platformsync-prod-delivery.fifo");
        assert_eq!(
            n.dead_letter_queue_name(),
            "platformsync-prod-delivery-dlq.fifo"
        );
        assert_eq!(
            n.endpoint_secret(&platformsync_domain::endpoint::EndpointId::parse("ep-1").unwrap()),
            "platformsync/prod/endpoints/ep-1"
        );
        assert_eq!(n.ingest_key_secret(), "platformsync/prod/ingest-key");
        assert_eq!(n.delivery_queue_url, None);
        let mut t = target("prod");
        t.config_table = Some("mine".into());
        t.delivery_queue_url = Some("http://q".into());
        let n = Names::of(&t);
        assert_eq!(n.config_table, "mine");
        assert_eq!(n.delivery_queue_url.as_deref(), Some("http://q"));
    }

    #[test]
    fn keys_lose_one_trailing_newline_and_nothing_else() {
        let read = |text: &str| read_key(&KeySource::Stdin, &mut text.as_bytes());
        assert_eq!(read("abc\n").unwrap().expose_secret(), "abc");
        assert_eq!(read("abc\r\n").unwrap().expose_secret(), "abc");
        assert_eq!(read(" abc ").unwrap().expose_secret(), " abc ");
        let e = read("abc\n\n").unwrap_err().to_string();
        assert!(e.contains("line break") && !e.contains("abc"), "{e}");
        assert!(read("\n").unwrap_err().to_string().contains("empty"));
        assert!(read("").unwrap_err().to_string().contains("empty"));
        let e = read_key(
            &KeySource::File("/nonexistent/k".into()),
            &mut std::io::empty(),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/k"));
    }

    #[test]
    fn the_cli_parses_and_refuses_a_key_argument() {
        let cli = endpoint_add(&["--url", "https://x", "--key", "SECRET"]).unwrap();
        let crate::Command::Endpoint(crate::EndpointCommand::Add(add)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        let e = KeySource::of(&add.key).unwrap_err().to_string();
        assert!(e.contains("never accepted") && !e.contains("SECRET"), "{e}");
        assert!(
            endpoint_add(&["--key-stdin", "--key-file", "f"]).is_err(),
            "one key source"
        );
    }

    /// `platformsync endpoint add --customer a --id b` with `rest`.
    fn endpoint_add(rest: &[&str]) -> Result<crate::Cli, clap::Error> {
        let head = [
            "platformsync",
            "endpoint",
            "add",
            "--customer",
            "a",
            "--id",
            "b",
        ];
        crate::Cli::from_args(head.iter().chain(rest))
    }
}
