//! `platformsync-chaos`: `make chaos` (see the library docs and
//! docs/reliability.md). Needs the local stack (`AWS_ENDPOINT_URL`) and the
//! built binaries; `make chaos` provides both.

use std::path::PathBuf;

use clap::Parser;
use platformsync_chaos::{ChaosOptions, FaultOptions, LoadOptions, report, run};

/// The whole local pipeline under seeded, mixed failure; exits 1 when
/// anything is lost, delivered under two MessageIds or leaked.
#[derive(Parser, Debug)]
#[command(name = "platformsync-chaos", version)]
struct Args {
    /// Everything random (load, kill times, AWS bursts, outage, receiver draws) follows from it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 100_000)]
    transactions: usize,
    #[arg(long, default_value_t = 500)]
    safes: usize,
    #[arg(long, default_value_t = 3)]
    customers: usize,
    /// The first takes everything; the others only CashIn, in smaller batches.
    #[arg(long, default_value_t = 2)]
    endpoints_per_customer: usize,
    /// Items per upload.
    #[arg(long, default_value_t = 500)]
    upload_size: usize,
    /// Chance that an upload is followed by a re-read of an earlier one.
    #[arg(long, default_value_t = 0.05)]
    resend_rate: f64,
    /// Runner SIGKILLs during the faults.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// How long the faults last, from the first upload.
    #[arg(long, default_value_t = 900.0)]
    chaos_seconds: f64,
    /// Receiver: share of pushes answered 500.
    #[arg(long, default_value_t = 0.03)]
    error_rate: f64,
    /// Receiver: share answered 201 (not a 200: not delivered).
    #[arg(long, default_value_t = 0.01)]
    created_rate: f64,
    /// Receiver: share whose connection is dropped without an answer.
    #[arg(long, default_value_t = 0.01)]
    drop_rate: f64,
    /// Receiver: share answered 0.8-1.2x the attempt timeout late.
    #[arg(long, default_value_t = 0.01)]
    slow_rate: f64,
    /// The push's attempt timeout (ATTEMPT_TIMEOUT_SECONDS of the runner).
    #[arg(long, default_value_t = 10)]
    attempt_timeout_seconds: u64,
    /// One endpoint answers 503 this long (0: no outage).
    #[arg(long, default_value_t = 120.0)]
    outage_seconds: f64,
    /// AWS bursts: mean length.
    #[arg(long, default_value_t = 10.0)]
    aws_burst_seconds: f64,
    /// AWS bursts: mean quiet gap between them.
    #[arg(long, default_value_t = 40.0)]
    aws_gap_seconds: f64,
    /// AWS faults of the bursts: throttle, internal, unavailable.
    #[arg(long, value_delimiter = ',', default_value = "throttle")]
    aws_faults: Vec<String>,
    /// After the faults and the last upload: how long everything may take to arrive.
    #[arg(long, default_value_t = 1800.0)]
    drain_deadline_seconds: f64,
    /// After everything arrived: how long to watch for late repeats.
    #[arg(long, default_value_t = 40.0)]
    settle_seconds: f64,
    /// The runner's SQS visibility timeout (seconds).
    #[arg(long, default_value_t = 30)]
    visibility_timeout_seconds: u64,
    /// Write the report (Markdown) here too, e.g. docs/reliability.md.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Where the pipeline's state goes (a directory per run's stage).
    #[arg(long, default_value = ".local/chaos")]
    state_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = std::env::current_dir()?;
    let options = ChaosOptions {
        state_dir: root.join(&args.state_dir),
        root,
        load: LoadOptions {
            seed: args.seed,
            transactions: args.transactions,
            safes: args.safes,
            customers: args.customers,
            endpoints_per_customer: args.endpoints_per_customer,
            upload_size: args.upload_size,
            resend_rate: args.resend_rate,
        },
        faults: FaultOptions {
            seed: args.seed,
            chaos_seconds: args.chaos_seconds,
            kills: args.kills,
            error_rate: args.error_rate,
            created_rate: args.created_rate,
            drop_rate: args.drop_rate,
            slow_rate: args.slow_rate,
            attempt_timeout_seconds: args.attempt_timeout_seconds,
            outage_seconds: args.outage_seconds,
            aws_burst_seconds: args.aws_burst_seconds,
            aws_gap_seconds: args.aws_gap_seconds,
            aws_faults: args.aws_faults.clone(),
        },
        drain_deadline_seconds: args.drain_deadline_seconds,
        settle_seconds: args.settle_seconds,
        visibility_timeout_seconds: args.visibility_timeout_seconds,
        progress_seconds: 30.0,
    };
    let outcome = run(&options).await?;
    let mut argv: Vec<String> = std::env::args().collect();
    if let Some(first) = argv.first_mut() {
        "platformsync-chaos".clone_into(first);
    }
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let text = report::markdown(&argv.join(" "), &options, &outcome, &date);
    println!("{text}");
    if let Some(path) = &args.report {
        std::fs::write(path, &text)?;
        eprintln!("chaos: report written to {}", path.display());
    }
    if outcome.failed() || outcome.drained_seconds.is_none() {
        std::process::exit(1);
    }
    Ok(())
}
