//! The whole pipeline on one machine, for `make demo` and the end-to-end
//! tests: template.yaml deployed on the local stack under a stage of its
//! own, the reference receiver (in-process) as the customer's endpoint, and
//! the local runner as a child process playing the functions' event sources.
//!
//! The runner is a separate process on purpose: the end-to-end tests kill it
//! (SIGKILL) mid-run and start it again, as a crash would.

use anyhow::{Context, bail};
use platformsync_bootstrap::{Clients, Deployment, Options, bootstrap};
use platformsync_receiver::{
    Config as ReceiverConfig, KeyCheck, Placement, Receiver, ReceiverHandle,
};
use platformsync_template::Template;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How to start a pipeline.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Repository root (template.yaml, target/).
    pub root: PathBuf,
    /// Where the deployment record, runner state and receiver state go.
    pub state_dir: PathBuf,
    pub stage: String,
    /// Template parameters beyond `Stage` (e.g. `RetryWindowSeconds`).
    pub parameters: BTreeMap<String, String>,
    /// Visibility timeout the runner uses for received messages: short, so a
    /// killed runner's in-flight batches come back quickly.
    pub sqs_visibility_timeout: Duration,
    /// Extra environment of the runner process, e.g. `AWS_ENDPOINT_URL` of a
    /// fault proxy, `RUST_LOG`. Not for the functions' own knobs: the runner
    /// sets each function's `Environment` from the template over it.
    pub runner_env: Vec<(String, String)>,
    /// Knobs for the functions (`ATTEMPT_TIMEOUT_SECONDS`...), passed as the
    /// runner's `--env`, which wins over the template's values.
    pub function_env: Vec<(String, String)>,
}

impl PipelineOptions {
    pub fn new(
        root: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
        stage: impl Into<String>,
    ) -> Self {
        Self {
            root: root.into(),
            state_dir: state_dir.into(),
            stage: stage.into(),
            parameters: BTreeMap::new(),
            sqs_visibility_timeout: Duration::from_secs(20),
            runner_env: Vec::new(),
            function_env: Vec::new(),
        }
    }
}

/// A running pipeline.
pub struct Pipeline {
    pub options: PipelineOptions,
    pub sdk: aws_config::SdkConfig,
    pub deployment: Deployment,
    pub receiver: ReceiverHandle,
    /// The key the receiver requires (raw `Authorization` header).
    pub receiver_key: String,
    pub ingest_key: String,
    pub api_url: String,
    runner: Option<tokio::process::Child>,
    http: reqwest::Client,
}

/// One upload's answer and when it was sent.
#[derive(Debug, Clone)]
pub struct UploadResult {
    pub status: u16,
    pub body: serde_json::Value,
    pub sent_at: time::OffsetDateTime,
}

impl Pipeline {
    /// Deploys the template under the stage, starts the receiver and the runner.
    pub async fn start(options: PipelineOptions) -> anyhow::Result<Self> {
        if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
            bail!(
                "AWS_ENDPOINT_URL is not set: start the local stack first (make up, or source .local/stack.env)"
            );
        }
        std::fs::create_dir_all(&options.state_dir)?;
        let sdk = platformsync_aws::sdk_config().await;
        // One copy of template.yaml for the whole run: a runner restarted
        // later runs the template it was deployed from, even if the file in
        // the working tree changes meanwhile.
        let template_copy = options.state_dir.join("template.yaml");
        std::fs::copy(options.root.join("template.yaml"), &template_copy)
            .context("copying template.yaml")?;
        let template = Template::load(&template_copy)?;
        let mut parameters = options.parameters.clone();
        parameters.insert("Stage".into(), options.stage.clone());
        let deployment = bootstrap(
            &template,
            &Options {
                parameters,
                stack_name: format!("platformsync-{}", options.stage),
                region: sdk
                    .region()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "us-east-1".into()),
                account_id: "123456789012".into(),
            },
            &Clients::new(&sdk),
        )
        .await?;
        std::fs::write(
            options.state_dir.join("resources.json"),
            serde_json::to_vec_pretty(&deployment)?,
        )?;
        let ingest_key = secret(&sdk, reference(&deployment, "IngestKeySecret")?).await?;

        let receiver_key = uuid::Uuid::new_v4().simple().to_string();
        let receiver = Receiver::start(ReceiverConfig {
            state_dir: Some(options.state_dir.join("receiver")),
            key: Some(KeyCheck::new(
                "Authorization",
                Placement::Header { bearer: false },
                receiver_key.clone(),
            )),
            ..ReceiverConfig::default()
        })
        .await?;

        let mut pipeline = Self {
            options,
            sdk,
            deployment,
            receiver,
            receiver_key,
            ingest_key,
            api_url: String::new(),
            runner: None,
            http: {
                // reqwest is built without a provider of its own.
                platformsync_tls::install_default();
                reqwest::Client::new()
            },
        };
        pipeline.start_runner().await?;
        Ok(pipeline)
    }

    fn runner_dir(&self) -> PathBuf {
        self.options.state_dir.join("runner")
    }

    /// Starts the runner process and waits until its API answers.
    pub async fn start_runner(&mut self) -> anyhow::Result<()> {
        let binary = binary(&self.options.root, "platformsync-runner")?;
        let dir = self.runner_dir();
        std::fs::create_dir_all(&dir)?;
        let _ = std::fs::remove_file(dir.join("runner.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("runner.log"))?;
        let ca = self.options.state_dir.join("receiver").join("ca.pem");
        let child = tokio::process::Command::new(binary)
            .current_dir(&self.options.root)
            .arg("--template")
            .arg(self.options.state_dir.join("template.yaml"))
            .arg("--deployment")
            .arg(self.options.state_dir.join("resources.json"))
            .arg("--state-dir")
            .arg(&dir)
            .arg("--sqs-visibility-timeout")
            .arg(self.options.sqs_visibility_timeout.as_secs().to_string())
            .arg("--env")
            .arg(format!("PLATFORMSYNC_EXTRA_CA_FILE={}", ca.display()))
            .arg("--env")
            .arg("PLATFORMSYNC_ALLOW_CIDRS=127.0.0.0/8")
            .args(
                self.options
                    .function_env
                    .iter()
                    .flat_map(|(k, v)| ["--env".to_owned(), format!("{k}={v}")]),
            )
            .envs(self.options.runner_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("starting the runner")?;
        self.runner = Some(child);
        let started = Instant::now();
        loop {
            if let Ok(bytes) = std::fs::read(dir.join("runner.json")) {
                let info: serde_json::Value = serde_json::from_slice(&bytes)?;
                self.api_url = info["ApiUrl"].as_str().unwrap_or_default().to_owned();
                return Ok(());
            }
            if let Some(child) = self.runner.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the runner exited ({status}) before it was ready; see {}",
                    dir.join("runner.log").display()
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the runner was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The runner's process id, while it runs.
    pub fn runner_pid(&self) -> Option<u32> {
        self.runner.as_ref().and_then(|c| c.id())
    }

    /// Kills the runner at once (SIGKILL), as a crash would.
    pub async fn kill_runner(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.runner.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Stops the runner politely, then the receiver.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.runner.take()
            && let Some(pid) = child.id()
        {
            // SIGTERM: let in-flight invocations finish.
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        self.receiver.shutdown().await;
    }

    /// `Ref` of a deployed resource.
    pub fn reference(&self, logical_id: &str) -> anyhow::Result<&str> {
        reference(&self.deployment, logical_id)
    }

    /// Runs an ops CLI command in-process against this deployment; returns
    /// what it printed.
    pub async fn cli(&self, args: &[&str], stdin: &str) -> anyhow::Result<String> {
        let mut argv = vec!["platformsync", "--stage", &self.options.stage];
        argv.extend_from_slice(args);
        let cli = platformsync_cli::Cli::from_args(argv)?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut input = stdin.as_bytes();
        let mut io = platformsync_cli::Io {
            out: &mut out,
            err: &mut err,
            stdin: &mut input,
            interactive: false,
        };
        platformsync_cli::run(cli, &mut io).await.with_context(|| {
            format!(
                "platformsync {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&err)
            )
        })?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Registers a customer, its safes and one endpoint per `(id, path,
    /// extra endpoint flags)` on the receiver.
    pub async fn register(
        &self,
        customer: &str,
        serials: &[String],
        endpoints: &[(&str, &str, &[&str])],
    ) -> anyhow::Result<()> {
        self.cli(
            &["customer", "add", "--id", customer, "--name", customer],
            "",
        )
        .await?;
        let mut assign = vec!["safe", "assign"];
        assign.extend(serials.iter().map(String::as_str));
        assign.extend(["--customer", customer]);
        self.cli(&assign, "").await?;
        for (id, path, extra) in endpoints {
            let url = format!("{}{}", self.receiver.url().trim_end_matches('/'), path);
            let mut args = vec![
                "endpoint",
                "add",
                "--customer",
                customer,
                "--id",
                id,
                "--url",
                &url,
                "--raw-key",
                "--key-stdin",
            ];
            args.extend_from_slice(extra);
            self.cli(&args, &self.receiver_key).await?;
        }
        Ok(())
    }

    /// POSTs an upload to the local HTTP API, as SafeSync does.
    pub async fn upload(&self, body: Vec<u8>) -> anyhow::Result<UploadResult> {
        let sent_at = time::OffsetDateTime::now_utc();
        let resp = self
            .http
            .post(format!("{}/v1/uploads", self.api_url))
            .header("x-api-key", &self.ingest_key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        Ok(UploadResult {
            status,
            body,
            sent_at,
        })
    }

    /// Waits until `done` holds (checked every 250 ms) or `timeout` passes.
    pub async fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if done(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        done(self)
    }
}

fn reference<'a>(deployment: &'a Deployment, logical_id: &str) -> anyhow::Result<&'a str> {
    deployment
        .reference(logical_id)
        .with_context(|| format!("{logical_id} was not deployed"))
}

async fn secret(sdk: &aws_config::SdkConfig, id: &str) -> anyhow::Result<String> {
    let out = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .context("reading the ingest key")?;
    out.secret_string()
        .map(str::to_owned)
        .context("the ingest key has no value")
}

/// A binary of this workspace, built by `cargo build` (make test and make
/// demo build them first).
pub fn binary(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let path = target.join("debug").join(name);
    if !path.exists() {
        bail!(
            "{} is not built: run `cargo build --bins` first",
            path.display()
        );
    }
    Ok(path)
}

/// Percentile (0-100) of `values`, nearest rank; `None` when empty.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values.get(rank.min(values.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile(&mut v, 99.0), Some(99.0));
        assert_eq!(percentile(&mut [], 50.0), None);
        assert_eq!(percentile(&mut [3.0], 99.0), Some(3.0));
    }
}
