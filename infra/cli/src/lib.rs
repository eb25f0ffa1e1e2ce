//! `platformsync`, the ops CLI: customers, safes, endpoints (and their API
//! keys in Secrets Manager), the state of delivery, and the SafeSync
//! simulator.
//!
//! It talks to whatever the standard AWS environment points at
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials): the local stack after
//! `source .local/stack.env`, or a real account. Resource names follow
//! template.yaml from the stage (`PLATFORMSYNC_STAGE`, default `local`):
//! `platformsync-<stage>-config` and so on; each can be overridden by its own
//! variable or flag ([`Target`]).
//!
//! The library exposes [`Cli`] and [`run`] so tests run every command
//! in-process with their own input and output, and [`simulate::day`] so the
//! demo and the tests can generate the same uploads the `simulate` command
//! sends.

mod alarms;
mod api_key;
mod attempts_cmd;
mod backfill_cmd;
mod commands;
mod held_cmd;
mod ingest_key;
mod manifest_cmd;
mod ops;
mod parked_cmd;
mod progress;
mod signing_cmd;
pub mod simulate;
mod simulate_cmd;
mod status;
mod table;
pub mod url_guard;

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use ops::{KeySource, Names, read_key};
pub use signing_cmd::SigningCommand;

/// The PlatformSync ops CLI.
/// `at` in RFC 3339: how every time the CLI stores or prints is written (the
/// stores' codec).
pub(crate) fn rfc3339(at: time::OffsetDateTime) -> String {
    platformsync_domain::record::rfc3339(at).unwrap_or_default()
}

#[derive(Debug, Parser)]
#[command(name = "platformsync", version, about, long_about = None)]
pub struct Cli {
    /// Not `global`: the deployment is chosen once, before the command, so
    /// `--help` lists these flags once instead of under every subcommand.
    #[command(
        flatten,
        next_help_heading = "Deployment (before the command; usually from the environment)"
    )]
    pub target: Target,
    /// Print JSON instead of tables (every listing, `show`, `status`, `simulate`).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses arguments (the first is the program name) as `main` does,
    /// without exiting on an error.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Self as Parser>::try_parse_from(args)
    }
}

/// Which deployment to talk to. Names default to template.yaml's, from the stage.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Deployment stage: resources are named `platformsync-<stage>-...`.
    #[arg(long, env = "PLATFORMSYNC_STAGE", default_value = "local")]
    pub stage: String,
    /// Configuration table (default `platformsync-<stage>-config`).
    #[arg(long, env = "CONFIG_TABLE", hide_env_values = true)]
    pub config_table: Option<String>,
    /// Transactions table (default `platformsync-<stage>-transactions`).
    #[arg(long, env = "TRANSACTIONS_TABLE")]
    pub transactions_table: Option<String>,
    /// Delivery ledger table (default `platformsync-<stage>-delivery-ledger`).
    #[arg(long, env = "DELIVERY_LEDGER_TABLE")]
    pub delivery_ledger_table: Option<String>,
    /// Delivery queue URL (default: looked up by name, `platformsync-<stage>-delivery.fifo`).
    #[arg(long, env = "DELIVERY_QUEUE_URL")]
    pub delivery_queue_url: Option<String>,
    /// Dead-letter queue URL (default: looked up by name, `platformsync-<stage>-delivery-dlq.fifo`).
    #[arg(long, env = "DEAD_LETTER_QUEUE_URL")]
    pub dead_letter_queue_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Customers: who owns safes and endpoints, and who is told of failures.
    #[command(subcommand)]
    Customer(CustomerCommand),
    /// The safe registry: which customer owns which safe.
    #[command(subcommand)]
    Safe(SafeCommand),
    /// Customer endpoints: settings, and their API keys in Secrets Manager.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// The key SafeSync presents to the ingest API (Secrets Manager).
    #[command(subcommand)]
    IngestKey(IngestKeyCommand),
    /// Customers' keys for the pull API (only a salted hash is stored).
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
    /// Queue depths, dead letters, alarms firing (with the command to run), and per
    /// endpoint: incident, last delivery, parked batches, oldest undelivered.
    Status,
    /// Sends a simulated SafeSync day to the ingest API.
    Simulate(SimulateArgs),
    /// Parked batches (expired or disabled endpoints, refused parts): list, show, replay.
    #[command(subcommand)]
    Expired(ExpiredCommand),
    /// Transactions held by a data-quality check: list, show, release (pushed once), discard.
    #[command(subcommand)]
    Held(HeldCommand),
    /// Re-sends an endpoint's transactions of a time window from the transactions table
    /// (backfill), skipping what the ledger shows delivered unless --force; resumable.
    Replay(ReplayArgs),
    /// Every delivery attempt to an endpoint (time, outcome, latency, error), last 30 days.
    Attempts {
        #[arg(long)]
        endpoint: String,
        /// Only this batch's (its MessageId).
        #[arg(long)]
        batch: Option<String>,
    },
    /// Daily reconciliation: per safe, delivered transactions and totals per currency.
    Manifest {
        #[arg(long)]
        customer: String,
        /// Safe-local day, YYYY-MM-DD.
        #[arg(long)]
        day: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    #[arg(long)]
    pub endpoint: String,
    /// Window start, safe-local: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (inclusive).
    #[arg(long)]
    pub from: String,
    /// Window end, safe-local (exclusive).
    #[arg(long)]
    pub to: String,
    /// Also re-send what the ledger shows as delivered.
    #[arg(long)]
    pub force: bool,
    /// Ignore this backfill's checkpoint and start the window again.
    #[arg(long)]
    pub restart: bool,
    /// Queue at most this many batches, then stop (a re-run continues).
    #[arg(long)]
    pub max_batches: Option<usize>,
    /// Say what would be queued; queue nothing, write no checkpoint.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum HeldCommand {
    /// Held transactions with their reasons (all safes: a table scan; or --safe).
    List {
        /// Only these safes (repeat): one query each instead of a scan.
        #[arg(long)]
        safe: Vec<String>,
    },
    /// One transaction (any status), its reasons, decision and payload.
    Show {
        /// `SERIAL|SORTKEY`, as `held list` prints it.
        #[arg(long)]
        key: String,
    },
    /// Releases a held transaction: the fan-out pushes it, once.
    Release(DecideArgs),
    /// Discards a held transaction: never pushed; who and why are kept.
    Discard(DecideArgs),
}

/// What `held release` and `held discard` take.
#[derive(Debug, Clone, Args)]
pub struct DecideArgs {
    /// `SERIAL|SORTKEY`, as `held list` prints it.
    #[arg(long)]
    pub key: String,
    /// Who decides (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    /// Why (kept with the transaction).
    #[arg(long)]
    pub reason: String,
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum ExpiredCommand {
    /// Parked batches with endpoint, age, attempts and last error, oldest first per endpoint.
    List {
        /// Only this endpoint's (default: every endpoint's).
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// One parked batch, with its transactions' keys.
    Show {
        #[arg(long)]
        endpoint: String,
        /// The parked id or the batch's MessageId.
        #[arg(long)]
        id: String,
    },
    /// Queues parked batches again, in their original order and MessageId; each is
    /// removed only once queued.
    Replay {
        /// This endpoint's parked batches.
        #[arg(long, required_unless_present = "all")]
        endpoint: Option<String>,
        /// Only this one (parked id or MessageId; must be the endpoint's oldest unless --force).
        #[arg(long, requires = "endpoint")]
        id: Option<String>,
        /// Every endpoint's parked batches.
        #[arg(long, conflicts_with = "endpoint")]
        all: bool,
        /// Replay even to a disabled or still expired endpoint, or out of order.
        #[arg(long)]
        force: bool,
        /// Say what would be queued; queue nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Registers a customer.
    Add {
        /// 1 to 64 of `[a-z0-9-]`.
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// E-mail address told about failures (repeat for several).
        #[arg(long = "notify", value_name = "EMAIL")]
        notify: Vec<String>,
        /// Overwrite an existing customer's name and recipients.
        #[arg(long)]
        replace: bool,
    },
    /// Lists customers, with their endpoint and safe counts.
    List,
}

#[derive(Debug, Subcommand)]
pub enum SafeCommand {
    /// Assigns safes to a customer (a safe belongs to one customer at a time).
    ///
    /// The assignment holds from --from until the safe's next assignment:
    /// the pull API shows each customer a safe's transactions of its own
    /// period only (by TransactionDateTime, the safe's local time).
    /// A safe assigned before assignments had dates has no history yet (the
    /// pull API shows it to nobody): assign it again, to its owner, and its
    /// history starts at its first transaction.
    Assign {
        /// Serial numbers (3 to 32 of `[A-Za-z0-9-]`; stored upper-cased).
        #[arg(required = true, value_name = "SERIAL")]
        serials: Vec<String>,
        #[arg(long)]
        customer: String,
        /// Safe-local time the assignment takes effect: YYYY-MM-DD or
        /// YYYY-MM-DDTHH:MM:SS[.fffffff] (an offset is ignored). Default: a
        /// safe's first assignment holds from its first transaction, a move
        /// from now (UTC wall clock).
        #[arg(long, value_name = "TIME", verbatim_doc_comment)]
        from: Option<String>,
    },
    /// A safe's assignments over time (who owned it when).
    History {
        #[arg(value_name = "SERIAL")]
        serial: String,
    },
    /// Lists safes and their owners.
    List {
        /// Only this customer's safes.
        #[arg(long)]
        customer: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Registers an endpoint; its API key is read from standard input or a file.
    Add(EndpointAdd),
    /// Changes an endpoint's settings; with a key option, rotates its API key.
    Update(EndpointUpdate),
    /// Signed pushes (Standard Webhooks headers), opt-in: enable, rotate, disable.
    #[command(subcommand)]
    Signing(SigningCommand),
    /// Lists endpoints (all, or one customer's).
    List {
        #[arg(long)]
        customer: Option<String>,
    },
    /// Shows one endpoint's settings and its key's secret id (never the key).
    Show {
        #[arg(long)]
        customer: String,
        #[arg(long)]
        id: String,
    },
    /// Stops posting to an endpoint: its batches are parked (kept, in order).
    Disable {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Enables an endpoint, resumes its incident, and replays its parked batches in order.
    Enable {
        #[arg(long)]
        endpoint: String,
        /// Seconds to wait after enabling, before replaying, for the push
        /// function's settings cache (`CONFIG_CACHE_SECONDS`) to run out.
        #[arg(long, default_value_t = 30)]
        settle: u64,
        #[arg(long)]
        dry_run: bool,
    },
    /// Claims the id of every endpoint registered before ids were claimed
    /// (run once after upgrading); lists ids two customers still share, which
    /// staff must rename, and fails while any remain.
    ClaimIds,
    /// Puts a new API key (standard input by default); never prints a key.
    RotateKey {
        #[arg(long)]
        endpoint: String,
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum IngestKeyCommand {
    /// Puts a new ingest key (AWSCURRENT); the old one keeps working until the
    /// next rotation (AWSPREVIOUS), so SafeSync can switch without a 401.
    ///
    /// Without --key-stdin / --key-file a key is generated (48 letters and
    /// digits) and printed once on standard output; a given key is never
    /// printed. Rotate twice to revoke a leaked key at once.
    Rotate {
        #[command(flatten)]
        key: KeyArgs,
        /// The secret (default `platformsync/<stage>/ingest-key`, as template.yaml names it).
        #[arg(long, value_name = "ID")]
        secret_id: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Makes a new pull-API key for a customer and prints it, this once.
    Create {
        #[arg(long)]
        customer: String,
        /// A note for staff: who the key was given to.
        #[arg(long)]
        label: Option<String>,
    },
    /// Lists a customer's keys (id, created, revoked; never the key).
    List {
        #[arg(long)]
        customer: String,
    },
    /// Revokes a key: the next request with it gets 401.
    Revoke {
        #[arg(long)]
        customer: String,
        /// The key's id (`apikey list`; the 16 hex digits after `psk_`).
        #[arg(long)]
        key_id: String,
    },
}

/// Where an API key comes from. Never a command-line argument.
#[derive(Debug, Clone, Default, Args)]
#[group(multiple = false)]
pub struct KeyArgs {
    /// Read the API key from standard input (one trailing newline is dropped).
    #[arg(long)]
    pub key_stdin: bool,
    /// Read the API key from a file (one trailing newline is dropped).
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Refused: a key on the command line ends up in shell history and `ps`.
    #[arg(long = "key", alias = "api-key", hide = true, value_name = "KEY")]
    pub key_argument: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EndpointTypeArg {
    Production,
    Test,
    Development,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlacementArg {
    Header,
    Body,
    Query,
    Metadata,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MessageTypeArg {
    #[value(name = "Transactions", alias = "transactions")]
    Transactions,
    #[value(
        name = "AuditTransactions",
        alias = "audittransactions",
        alias = "audit"
    )]
    AuditTransactions,
}

/// Settings shared by `endpoint add` and `endpoint update`; absent = default
/// (add) or unchanged (update).
#[derive(Debug, Clone, Default, Args)]
pub struct SettingsArgs {
    /// Public HTTPS URL that accepts POST.
    ///
    /// Refused: a host that is a literal non-public address (loopback,
    /// private, link-local, the instance metadata service 169.254.169.254,
    /// ...), and ports below 1024 other than 443 (port policy: 443 or
    /// 1024-65535). A name that resolves to a non-public address is
    /// registered with a warning: deliveries are refused while it does.
    /// `PLATFORMSYNC_ALLOW_CIDRS` exempts ranges (local runs only).
    #[arg(long, verbatim_doc_comment)]
    pub url: Option<String>,
    /// A label for staff.
    #[arg(long = "type", value_enum)]
    pub endpoint_type: Option<EndpointTypeArg>,
    /// Header, query parameter or property name of the key (default `Authorization`).
    #[arg(long)]
    pub key_name: Option<String>,
    /// Where the key goes (default header).
    #[arg(long, value_enum)]
    pub key_placement: Option<PlacementArg>,
    /// Header placement: send the raw key, without `Bearer `.
    #[arg(long, conflicts_with = "bearer")]
    pub raw_key: bool,
    /// Header placement: send `Bearer <key>` (the default; undoes --raw-key).
    #[arg(long)]
    pub bearer: bool,
    /// Metadata added to every payload's `Metadata` (repeat: K=V).
    #[arg(long = "metadata", value_name = "K=V")]
    pub metadata: Vec<String>,
    /// Transaction or audit type to send, either vocabulary (repeat, or comma-separated); absent = all.
    /// A legacy numeric code (`30`) is stored as its name (`CashIn`).
    #[arg(long = "whitelist", value_name = "TYPE", value_delimiter = ',')]
    pub whitelist: Vec<String>,
    /// Message types to send (default Transactions).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub message_types: Vec<MessageTypeArg>,
    /// Most transactions per POST, 1 to 1000 (default 1000).
    #[arg(long)]
    pub max_batch_size: Option<u16>,
    /// Pin the payload version (`1`); `latest` unpins.
    #[arg(long)]
    pub payload_version: Option<String>,
    /// Stop sending to this endpoint.
    #[arg(long, conflicts_with = "enabled")]
    pub disabled: bool,
    /// Send to this endpoint again (undoes --disabled).
    #[arg(long)]
    pub enabled: bool,
}

/// Which endpoint: its customer and its id.
#[derive(Debug, Clone, Args)]
pub struct EndpointRef {
    #[arg(long)]
    pub customer: String,
    /// Endpoint id, unique across customers (1 to 64 of `[a-z0-9-]`).
    #[arg(long)]
    pub id: String,
}

#[derive(Debug, Clone, Args)]
pub struct EndpointAdd {
    #[command(flatten)]
    pub endpoint: EndpointRef,
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct EndpointUpdate {
    #[command(flatten)]
    pub endpoint: EndpointRef,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Remove metadata keys (repeat).
    #[arg(long = "remove-metadata", value_name = "K")]
    pub remove_metadata: Vec<String>,
    /// Remove all metadata before applying --metadata.
    #[arg(long)]
    pub clear_metadata: bool,
    /// Send every type again (drop the whitelist).
    #[arg(long, conflicts_with = "whitelist")]
    pub clear_whitelist: bool,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Base URL of the API (`<URL>/v1/uploads` is posted to).
    #[arg(long, required_unless_present = "dry_run")]
    pub api: Option<String>,
    /// Read the ingest key from standard input.
    #[arg(long, group = "ingest_key")]
    pub key_stdin: bool,
    /// Read the ingest key from a file.
    #[arg(long, group = "ingest_key", value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Read the ingest key from an environment variable.
    #[arg(long, group = "ingest_key", value_name = "VAR")]
    pub key_env: Option<String>,
    /// Distinct safes.
    #[arg(long, default_value_t = 7)]
    pub safes: usize,
    /// Distinct valid transactions (before duplicates).
    #[arg(long, default_value_t = 500)]
    pub transactions: usize,
    /// Distinct valid audit records (default: a fifth of --transactions, at least 8).
    #[arg(long)]
    pub audits: Option<usize>,
    /// Seed: the same seed and date give the same uploads.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Uploads the day is cut into.
    #[arg(long, default_value_t = 4)]
    pub uploads: usize,
    /// Business day, YYYY-MM-DD (default: two days ago).
    #[arg(long, value_parser = simulate::parse_date)]
    pub date: Option<time::Date>,
    /// Assign the simulated safes to this customer first (so their transactions are pushed).
    #[arg(long, value_name = "CUSTOMER")]
    pub assign_to: Option<String>,
    /// Print the serials and expected counts; send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Where a command reads and writes: the process's streams, or a test's buffers.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub stdin: &'a mut dyn Read,
    /// Standard input is a terminal: prompt before reading a key from it.
    pub interactive: bool,
}

impl Io<'_> {
    /// Reads a key from `source`, prompting on `err` when stdin is a terminal.
    pub(crate) fn read_key(&mut self, source: &KeySource) -> anyhow::Result<secrecy::SecretString> {
        if *source == KeySource::Stdin && self.interactive {
            let _ = writeln!(self.err, "API key (then Enter and Ctrl-D):");
        }
        read_key(source, self.stdin)
    }
}

/// What every command is given: the deployment, whether to print JSON
/// (`--json`), and where to read and write.
pub(crate) struct Cmd<'a, 'io> {
    pub target: &'a Target,
    pub json: bool,
    pub io: &'a mut Io<'io>,
}

/// Runs one command.
pub async fn run(cli: Cli, io: &mut Io<'_>) -> anyhow::Result<()> {
    let cmd = Cmd {
        target: &cli.target,
        json: cli.json,
        io,
    };
    match cli.command {
        Command::Customer(c) => commands::customer(cmd, c).await,
        Command::Safe(c) => commands::safe(cmd, c).await,
        Command::Endpoint(c) => commands::endpoint(cmd, c).await,
        Command::IngestKey(c) => ingest_key::run(cmd.target, c, cmd.json, cmd.io).await,
        Command::Apikey(c) => api_key::run(cmd.target, c, cmd.json, cmd.io).await,
        Command::Status => status::run(cmd).await,
        Command::Simulate(args) => simulate_cmd::run(cmd.target, args, cmd.json, cmd.io).await,
        Command::Expired(c) => parked_cmd::expired(cmd, c).await,
        Command::Held(c) => held_cmd::run(cmd, c).await,
        Command::Replay(args) => backfill_cmd::run(cmd, args).await,
        Command::Attempts { endpoint, batch } => {
            attempts_cmd::run(cmd.target, &endpoint, batch.as_deref(), cmd.json, cmd.io).await
        }
        Command::Manifest { customer, day } => manifest_cmd::run(cmd, &customer, &day).await,
    }
}

/// A hint for errors that usually mean "wrong target", printed after the error.
pub fn hint(error: &anyhow::Error) -> Option<&'static str> {
    let text = format!("{error:#}");
    if text.contains("ResourceNotFound") || text.contains("NonExistentQueue") {
        Some(
            "the resource does not exist: is PLATFORMSYNC_STAGE (or the table/queue variables) right, and is the stack deployed (`make up`)?",
        )
    } else if text.contains("dispatch failure") || text.contains("Connection refused") {
        Some(
            "cannot reach AWS: for the local stack run `make up` and `source .local/stack.env` (AWS_ENDPOINT_URL)",
        )
    } else if text.contains("credentials") {
        Some("no AWS credentials: `source .local/stack.env` for the local stack")
    } else {
        None
    }
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    fn help(path: &[&str]) -> String {
        let mut command = super::Cli::command();
        command.build();
        let mut current = &mut command;
        for name in path {
            current = current
                .find_subcommand_mut(name)
                .unwrap_or_else(|| panic!("no subcommand {name}"));
        }
        current.render_long_help().to_string()
    }

    #[test]
    fn deployment_flags_are_listed_once_at_the_top() {
        let top = help(&[]);
        assert_eq!(top.matches("--config-table").count(), 1, "{top}");
        assert!(top.contains("Deployment"), "{top}");
        for path in [
            &["endpoint", "list"][..],
            &["status"],
            &["expired", "replay"],
        ] {
            let sub = help(path);
            assert!(!sub.contains("--config-table"), "{path:?}: {sub}");
            assert!(!sub.contains("--delivery-queue-url"), "{path:?}: {sub}");
            assert!(
                sub.contains("--json"),
                "--json stays usable anywhere: {sub}"
            );
        }
    }

    #[test]
    fn the_deployment_is_chosen_before_the_command() {
        let cli = super::Cli::from_args(["platformsync", "--stage", "prod", "status", "--json"])
            .expect("flags before the command");
        assert_eq!(cli.target.stage, "prod");
        assert!(cli.json);
        assert!(super::Cli::from_args(["platformsync", "status", "--stage", "prod"]).is_err());
    }
}
