//! `platformsync-runner`: the functions of template.yaml, run natively
//! against the local stack, with their event sources played as Lambda plays
//! them. Configuration comes from template.yaml and the bootstrap's record of
//! what it created, so the runner and the cloud read the same description.

mod checkpoints;
mod functions;
mod http_api;
mod queues;
mod streams;

use anyhow::Context;
use clap::Parser;
use functions::Function;
use platformsync_bootstrap::Deployment;
use platformsync_template::{EventSource, Template};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::info;

#[derive(Parser, Debug)]
#[command(about = "Run PlatformSync's functions locally, fed as Lambda would feed them")]
struct Args {
    #[arg(long, default_value = "template.yaml")]
    template: PathBuf,
    /// What the bootstrap created (its --out file).
    #[arg(long)]
    deployment: PathBuf,
    /// Where the runner keeps its stream checkpoints and writes runner.json.
    #[arg(long)]
    state_dir: PathBuf,
    /// Port of the local HTTP API (0: any free port; see runner.json).
    #[arg(long, default_value_t = 0)]
    api_port: u16,
    /// Extra environment for the functions, NAME=VALUE (local-only settings
    /// such as PLATFORMSYNC_EXTRA_CA_FILE); wins over template.yaml.
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Visibility timeout for SQS messages the runner receives, in seconds
    /// (default: the queue's own, as on AWS). Shorter means faster recovery
    /// of in-flight messages after the runner is killed.
    #[arg(long)]
    sqs_visibility_timeout: Option<u64>,
    /// Pause between polls of an idle stream shard, in milliseconds.
    #[arg(long, default_value_t = 250)]
    stream_poll_ms: u64,
    /// Local override of the stream's MaximumRecordAgeInSeconds (to play
    /// an outage longer than the record age in seconds, not hours).
    #[arg(long, env = "PLATFORMSYNC_STREAM_MAX_RECORD_AGE_SECONDS")]
    stream_max_record_age_seconds: Option<u64>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    functions::parse_assignment(s).map_err(|e| e.to_string())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let template = Template::load(&args.template)?;
    let deployment: Deployment = serde_json::from_slice(
        &std::fs::read(&args.deployment)
            .with_context(|| format!("reading {}", args.deployment.display()))?,
    )
    .with_context(|| {
        format!(
            "{} is not a bootstrap deployment",
            args.deployment.display()
        )
    })?;
    let specs = template.functions(&deployment.resolver(&template))?;

    let mut environment = functions::merged_environment(&specs)?;
    environment.extend(args.env.iter().cloned());
    for (name, value) in &environment {
        // SAFETY: no other thread exists yet (the async runtime starts
        // below), so nothing can read the environment while it changes.
        unsafe { std::env::set_var(name, value) };
    }

    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args, specs))
}

async fn run(args: Args, specs: Vec<platformsync_template::FunctionSpec>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.state_dir)?;
    let sdk = platformsync_aws::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
    let checkpoints = Arc::new(checkpoints::Checkpoints::load(
        args.state_dir.join("checkpoints.json"),
    ));
    let (stop, stopped) = watch::channel(false);

    let mut routes = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for spec in &specs {
        let function = Arc::new(
            Function::build(spec)
                .await
                .with_context(|| format!("starting {}", spec.logical_id))?,
        );
        for event in &spec.events {
            match event {
                EventSource::HttpApi { path, method, .. } => routes.push(http_api::Route {
                    method: method.parse().context("HTTP method")?,
                    path: path.clone(),
                    function: function.clone(),
                }),
                EventSource::DynamoDbStream {
                    stream_arn,
                    batch_size,
                    starting_position,
                    maximum_retry_attempts,
                    maximum_record_age,
                    bisect_on_error,
                    on_failure,
                    ..
                } => {
                    let on_failure_queue_url = match on_failure {
                        Some(arn) => Some(queues::queue_url(&sqs, arn).await?),
                        None => None,
                    };
                    tasks.spawn(streams::run(
                        streams::StreamSource {
                            function: function.clone(),
                            stream_arn: stream_arn.clone(),
                            batch_size: *batch_size,
                            starting_position: starting_position.clone(),
                            max_retries: *maximum_retry_attempts,
                            max_record_age: args
                                .stream_max_record_age_seconds
                                .map(Duration::from_secs)
                                .or(*maximum_record_age),
                            bisect_on_error: *bisect_on_error,
                            on_failure_queue_url,
                            poll_interval: Duration::from_millis(args.stream_poll_ms),
                        },
                        streams.clone(),
                        sqs.clone(),
                        checkpoints.clone(),
                        stopped.clone(),
                    ));
                }
                EventSource::Sqs {
                    queue_arn,
                    batch_size,
                    maximum_concurrency,
                    ..
                } => {
                    let url = queues::queue_url(&sqs, queue_arn).await?;
                    // Lambda runs several pollers per queue and FIFO group
                    // locking keeps each group in order across them. moto
                    // does not lock a group against concurrent long polls
                    // (a message sent during the wait goes to the second
                    // poller while its group's head is in flight), so a FIFO
                    // queue gets one poller here; the handler still runs the
                    // batch's groups concurrently.
                    let pollers = if queue_arn.ends_with(".fifo") {
                        1
                    } else {
                        maximum_concurrency.unwrap_or(2).clamp(1, 4)
                    };
                    for _ in 0..pollers {
                        tasks.spawn(queues::run(
                            queues::QueueSource {
                                function: function.clone(),
                                queue_arn: queue_arn.clone(),
                                queue_url: url.clone(),
                                batch_size: *batch_size,
                                visibility_timeout: args
                                    .sqs_visibility_timeout
                                    .map(Duration::from_secs),
                            },
                            sqs.clone(),
                            stopped.clone(),
                        ));
                    }
                }
                EventSource::Schedule { name, .. } => {
                    anyhow::bail!("{}: schedule {name} has no local handler", spec.logical_id)
                }
            }
        }
    }

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.api_port)).await?;
    let api_url = format!("http://{}", listener.local_addr()?);
    tasks.spawn(async move {
        if let Err(e) = http_api::serve(listener, routes).await {
            tracing::error!(error = %e, "http api stopped");
        }
    });
    let info = serde_json::json!({"ApiUrl": api_url, "Pid": std::process::id()});
    std::fs::write(args.state_dir.join("runner.json"), info.to_string())?;
    info!(api_url = %api_url, functions = specs.len(), "runner ready");

    shutdown_signal().await;
    info!("stopping");
    let _ = stop.send(true);
    // Give in-flight invocations a moment; what does not finish is retried
    // by its event source after a restart, as on Lambda.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
