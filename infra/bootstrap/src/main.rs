//! `platformsync-bootstrap`: creates template.yaml's resources on the local
//! emulator and writes what it created as JSON.

use anyhow::{Context, bail};
use clap::Parser;
use platformsync_bootstrap::{Clients, Options, bootstrap};
use platformsync_template::Template;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(about = "Create the resources of template.yaml on a local AWS emulator")]
struct Args {
    /// The SAM template to read.
    #[arg(long, default_value = "template.yaml")]
    template: PathBuf,
    /// Deployment stage (the template's `Stage` parameter).
    #[arg(long, env = "PLATFORMSYNC_STAGE", default_value = "local")]
    stage: String,
    /// Other template parameters, as NAME=VALUE.
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Where to write the created resources' physical ids as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the generated ingest key to this file (mode 0600), for
    /// local tools that play SafeSync.
    #[arg(long)]
    ingest_key_out: Option<PathBuf>,
    /// Account id for `AWS::AccountId` (moto's default).
    #[arg(long, env = "AWS_ACCOUNT_ID", default_value = "123456789012")]
    account_id: String,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Creating resources is for emulators only: never touch a real account by
    // accident because an environment variable was missing.
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        bail!(
            "AWS_ENDPOINT_URL is not set: the bootstrap only creates resources on a local emulator (source .local/stack.env)"
        );
    }
    let template = Template::load(&args.template)?;
    let config = platformsync_aws::sdk_config().await;
    let region = config
        .region()
        .map(|r| r.to_string())
        .context("no AWS region configured (AWS_REGION)")?;
    let mut parameters: BTreeMap<String, String> = args.params.into_iter().collect();
    parameters.insert("Stage".into(), args.stage.clone());
    let options = Options {
        stack_name: format!("platformsync-{}", args.stage),
        region,
        account_id: args.account_id,
        parameters,
    };
    let clients = Clients::new(&config);
    let deployment = bootstrap(&template, &options, &clients).await?;
    if let Some(path) = &args.ingest_key_out {
        let arn = deployment
            .reference("IngestKeySecret")
            .context("template.yaml has no IngestKeySecret")?;
        let key = clients
            .secrets
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .context("reading the ingest key")?;
        let key = key.secret_string().context("the ingest key has no value")?;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("writing {}", path.display()))?;
        file.write_all(key.as_bytes())?;
    }
    let json = serde_json::to_string_pretty(&deployment)?;
    match &args.out {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, json + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "bootstrap: {} resources ready on {}, {} not emulated; written to {}",
                deployment.resources.len(),
                std::env::var("AWS_ENDPOINT_URL").unwrap_or_default(),
                deployment.not_emulated.len(),
                path.display()
            );
        }
        None => println!("{json}"),
    }
    Ok(())
}
