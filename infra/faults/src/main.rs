//! `platformsync-faults`: the fault proxy as a process, for the local runner,
//! `make chaos` and shell scripts. Prints its URL on the first stdout line,
//! then serves until Ctrl-C or SIGTERM. Rules are changed through the control
//! endpoint (`/__faults`, see the library docs).
//!
//! Each service goes where the SDK would send it from this environment:
//! `AWS_ENDPOINT_URL_<SERVICE>` when set (the LocalStack pair's DynamoDB on
//! moto), else `--upstream` / `AWS_ENDPOINT_URL`.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use platformsync_faults::{FaultProxy, Upstreams, parse_rules};

#[derive(Parser, Debug)]
#[command(
    name = "platformsync-faults",
    about = "Fault-injecting proxy in front of the local AWS emulator"
)]
struct Args {
    /// The emulator, e.g. http://127.0.0.1:4566 (default: $AWS_ENDPOINT_URL):
    /// where services without an upstream of their own go.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    upstream: String,
    /// A service's own upstream, e.g. dynamodb=http://127.0.0.1:5000
    /// (repeatable; wins over AWS_ENDPOINT_URL_<SERVICE>).
    #[arg(long = "route", value_name = "SERVICE=URL")]
    routes: Vec<String>,
    /// Ignore AWS_ENDPOINT_URL_DYNAMODB, _DYNAMODB_STREAMS, _SQS, _SNS,
    /// _SECRETS_MANAGER, _CLOUDWATCH: every service to --upstream.
    #[arg(long)]
    single_upstream: bool,
    /// Port on 127.0.0.1 (0 = any free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Rules to start with: a JSON array of rules or {"rules": [...]}.
    #[arg(long)]
    rules: Option<std::path::PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let initial = match &args.rules {
        Some(path) => {
            let bytes = tokio::fs::read(path)
                .await
                .with_context(|| format!("reading {}", path.display()))?;
            parse_rules(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    let mut upstreams = Upstreams::new(&args.upstream);
    if !args.single_upstream {
        upstreams = upstreams.with_service_vars(|name| std::env::var(name).ok());
    }
    for route in &args.routes {
        let (service, url) = route
            .split_once('=')
            .with_context(|| format!("--route {route:?}: expected SERVICE=URL"))?;
        upstreams = upstreams.route(service, url);
    }
    let proxy = FaultProxy::start_routed_on(
        upstreams.clone(),
        SocketAddr::from(([127, 0, 0, 1], args.port)),
    )
    .await?;
    proxy.set_rules(initial);
    // The first line is the contract with scripts: they read the URL from it.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", proxy.url())?;
    stdout.flush()?;
    drop(stdout);
    eprintln!(
        "platformsync-faults: forwarding {} -> {}; control at {}/__faults",
        proxy.url(),
        upstreams,
        proxy.url()
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(proxy);
    Ok(())
}
