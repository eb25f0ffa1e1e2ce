//! `platformsync-receiver`: the reference customer endpoint as a program.
//!
//! ```sh
//! RECEIVER_API_KEY=s3cret platformsync-receiver --state-dir .local/receiver --port 0
//! ```
//!
//! With `RECEIVER_SIGNING_SECRETS="whsec_..."` (or `--signing-secrets-file`)
//! it also verifies every push's Standard Webhooks signature (401 if bad).
//!
//! Prints its URL, writes `<state-dir>/receiver.json` (`url`, `port`,
//! `ca_pem`, `received`, `pid`) and serves until Ctrl-C or SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use platformsync_receiver::{Config, KeyCheck, Placement, RECEIVED_FILE, Receiver, SignatureCheck};

/// A reference HTTPS endpoint for PlatformSync pushes.
#[derive(Debug, Parser)]
#[command(name = "platformsync-receiver", version)]
struct Args {
    /// Holds ca.pem, the server certificate, received.jsonl and receiver.json.
    #[arg(long, default_value = ".local/receiver")]
    state_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port; 0 picks a free one (see receiver.json).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// File holding the API key to require (one trailing newline is ignored).
    #[arg(long, group = "key")]
    key_file: Option<PathBuf>,
    /// Environment variable holding the API key to require.
    /// (Default: RECEIVER_API_KEY.)
    #[arg(long, group = "key")]
    key_env: Option<String>,
    /// Accept pushes without checking any key (experiments only).
    #[arg(long, group = "key")]
    no_key_check: bool,
    /// Header, query parameter or property carrying the key.
    #[arg(long, default_value = "Authorization")]
    key_name: String,
    /// Where the key is: header, query, body or metadata.
    #[arg(long, default_value = "header")]
    key_placement: Placement,
    /// Header placement: the raw key instead of `Bearer <key>`.
    #[arg(long)]
    raw_key: bool,
    /// File with the endpoint's signing secrets (`whsec_...`, one per line;
    /// two during a rotation): every push must carry a valid signature.
    #[arg(long, group = "signing")]
    signing_secrets_file: Option<PathBuf>,
    /// Environment variable with the signing secrets (space or comma
    /// separated). (Default: RECEIVER_SIGNING_SECRETS; unset: no check.)
    #[arg(long, group = "signing")]
    signing_secrets_env: Option<String>,
}

fn read_signing(args: &Args) -> Result<Option<SignatureCheck>> {
    let text = if let Some(path) = &args.signing_secrets_file {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the signing secrets file {}", path.display()))?
    } else {
        let var = args
            .signing_secrets_env
            .as_deref()
            .unwrap_or("RECEIVER_SIGNING_SECRETS");
        match std::env::var(var) {
            Ok(text) => text,
            Err(_) if args.signing_secrets_env.is_none() => return Ok(None),
            Err(_) => bail!("{var} is not set"),
        }
    };
    SignatureCheck::parse_list(&text)
        .map(Some)
        .map_err(anyhow::Error::msg)
}

fn read_key(args: &Args) -> Result<Option<String>> {
    if args.no_key_check {
        return Ok(None);
    }
    let key = if let Some(path) = &args.key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        text.strip_suffix('\r').unwrap_or(text).to_owned()
    } else {
        let var = args.key_env.as_deref().unwrap_or("RECEIVER_API_KEY");
        std::env::var(var).with_context(|| {
            format!("no API key: set {var}, or pass --key-file PATH (or --no-key-check)")
        })?
    };
    if key.is_empty() {
        bail!("the API key is empty");
    }
    Ok(Some(key))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let placement = match args.key_placement {
        Placement::Header { .. } => Placement::Header {
            bearer: !args.raw_key,
        },
        other => other,
    };
    let key = read_key(&args)?.map(|key| KeyCheck::new(&args.key_name, placement, key));
    if key.is_none() {
        eprintln!("platformsync-receiver: WARNING: no key check, any request is accepted");
    }
    let signing = read_signing(&args)?;
    if signing.is_some() {
        eprintln!("platformsync-receiver: verifying signed pushes (webhook-signature)");
    }
    let handle = Receiver::start(Config {
        bind: SocketAddr::new(args.bind, args.port),
        state_dir: Some(args.state_dir.clone()),
        key,
        signing,
    })
    .await?;

    let ca_path = args.state_dir.join("ca.pem");
    let info = serde_json::json!({
        "url": handle.url,
        "port": handle.addr.port(),
        "ca_pem": absolute(&ca_path),
        "received": absolute(&args.state_dir.join(RECEIVED_FILE)),
        "pid": std::process::id(),
    });
    // Written whole, then renamed: a script polling for it never reads half a file.
    let info_path = args.state_dir.join("receiver.json");
    let partial = args.state_dir.join("receiver.json.partial");
    std::fs::write(&partial, format!("{info:#}\n"))
        .and_then(|()| std::fs::rename(&partial, &info_path))
        .with_context(|| format!("cannot write {}", info_path.display()))?;
    println!("{}", handle.url);
    eprintln!(
        "platformsync-receiver: listening on {} (trust {}; control API: {}/_control/received)",
        handle.url,
        ca_path.display(),
        handle.url
    );

    wait_for_signal().await;
    eprintln!("platformsync-receiver: stopping");
    handle.shutdown().await;
    Ok(())
}

fn absolute(path: &std::path::Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
