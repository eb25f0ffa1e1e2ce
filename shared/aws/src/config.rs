//! Every knob of every function, in one table: its environment name, the
//! functions that read it, its unit, default and bounds, and what it does.
//!
//! The functions read their environment only through [`Reader`], which
//! accepts only knobs this table gives to the function. `docs/configuration.md`
//! is rendered from the table ([`render_markdown`]) and a test compares the two;
//! another test holds `template.yaml`'s `Environment` of each function against
//! the table, and one scans the sources for environment reads outside it. So a
//! knob added to one place only (the code, the template or the docs) fails a
//! test.
//!
//! One rule for bad values: a value that is not a whole number, or lies
//! outside the knob's bounds, is an error at cold start naming the variable
//! ([`EnvError::Invalid`]); nothing is clamped silently. A required knob that
//! is unset or blank is [`EnvError::Missing`]. An unset optional knob takes
//! its default.

use std::time::Duration;

use crate::env::EnvError;

/// The functions of `template.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Function {
    Ingest,
    PullApi,
    Fanout,
    StreamRecovery,
    Push,
}

impl Function {
    pub const ALL: [Function; 5] = [
        Function::Ingest,
        Function::PullApi,
        Function::Fanout,
        Function::StreamRecovery,
        Function::Push,
    ];

    /// Its resource in `template.yaml`.
    pub const fn logical_id(self) -> &'static str {
        match self {
            Function::Ingest => "IngestFunction",
            Function::PullApi => "PullApiFunction",
            Function::Fanout => "FanoutFunction",
            Function::StreamRecovery => "StreamRecoveryFunction",
            Function::Push => "PushFunction",
        }
    }

    /// Its crate (and `BuildProperties.Binary`).
    pub const fn binary(self) -> &'static str {
        match self {
            Function::Ingest => "ingest",
            Function::PullApi => "pull-api",
            Function::Fanout => "fanout",
            Function::StreamRecovery => "stream-recovery",
            Function::Push => "push",
        }
    }
}

/// What a knob's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A name, URL, ARN, path or list, taken as written (trimmed).
    Text,
    Count,
    Seconds,
    Milliseconds,
    Hours,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::Text => "text",
            Unit::Count => "count",
            Unit::Seconds => "seconds",
            Unit::Milliseconds => "milliseconds",
            Unit::Hours => "hours",
        }
    }
}

/// What an unset knob means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// It must be set (`template.yaml` sets it for every function that reads it).
    Required,
    /// Unset means what the text says (text knobs).
    Unset(&'static str),
    /// One number for every function.
    Number(u64),
    /// A number per function (the SDK settings, sized to each function's
    /// budget); every function of the knob is listed.
    PerFunction(&'static [(Function, u64)]),
}

/// One setting a function reads from its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knob {
    pub name: &'static str,
    pub functions: &'static [Function],
    pub unit: Unit,
    pub default: DefaultValue,
    /// Inclusive bounds of a number (unused for text).
    pub min: u64,
    pub max: u64,
    /// Set only by local runs (the runner's `--env`); on AWS its absence is
    /// the secure default and `template.yaml` must not set it.
    pub local_only: bool,
    pub doc: &'static str,
}

impl Knob {
    /// Whether `function` reads this knob.
    pub fn read_by(&self, function: Function) -> bool {
        self.functions.contains(&function)
    }

    /// The default number for `function`, if the knob has one.
    pub const fn default_for(&self, function: Function) -> Option<u64> {
        match self.default {
            DefaultValue::Number(n) => Some(n),
            DefaultValue::PerFunction(list) => {
                let mut i = 0;
                while i < list.len() {
                    if list[i].0 as u8 == function as u8 {
                        return Some(list[i].1);
                    }
                    i += 1;
                }
                None
            }
            DefaultValue::Required | DefaultValue::Unset(_) => None,
        }
    }

    /// `function`'s default as a duration, in the knob's unit (zero for a
    /// knob without a number default: a table mistake the tests catch).
    pub const fn default_duration_for(&self, function: Function) -> Duration {
        match self.default_for(function) {
            Some(n) => self.as_duration(n),
            None => Duration::ZERO,
        }
    }

    const fn as_duration(&self, n: u64) -> Duration {
        match self.unit {
            Unit::Milliseconds => Duration::from_millis(n),
            Unit::Hours => Duration::from_secs(n.saturating_mul(3600)),
            Unit::Seconds | Unit::Count | Unit::Text => Duration::from_secs(n),
        }
    }
}

macro_rules! knobs {
    ($($(#[$meta:meta])* $id:ident { $($field:ident: $value:expr),* $(,)? })*) => {
        /// The knobs, one constant each (its name is the variable's).
        pub mod knob {
            #[allow(unused_imports)]
            use super::{DefaultValue, Function::*, Knob, Unit};
            $(
                $(#[$meta])*
                pub const $id: Knob = Knob {
                    name: stringify!($id),
                    $($field: $value),*
                };
            )*
        }
        /// Every knob, in the order of the documentation.
        pub const KNOBS: &[Knob] = &[$(knob::$id),*];
    };
}

knobs! {
    TRANSACTIONS_TABLE {
        functions: &[Ingest, PullApi, Fanout, StreamRecovery],
        unit: Unit::Text, default: DefaultValue::Required,
        min: 0, max: 0, local_only: false,
        doc: "The transactions table. The fan-out reads bodies of records a replayed (bisected) batch no longer holds from it.",
    }
    CONFIG_TABLE {
        functions: &[Ingest, PullApi, Fanout, StreamRecovery, Push],
        unit: Unit::Text, default: DefaultValue::Required,
        min: 0, max: 0, local_only: false,
        doc: "The config table: customers, safes and their owners, endpoints, health, plans, API keys.",
    }
    REJECTS_TABLE {
        functions: &[Ingest],
        unit: Unit::Text, default: DefaultValue::Required,
        min: 0, max: 0, local_only: false,
        doc: "Where rejected items are kept raw (30 days).",
    }
    INGEST_KEY_SECRET_ARN {
        functions: &[Ingest],
        unit: Unit::Text, default: DefaultValue::Required,
        min: 0, max: 0, local_only: false,
        doc: "The secret holding the key SafeSync presents (AWSCURRENT and AWSPREVIOUS are both accepted).",
    }
    WRITE_CONCURRENCY {
        functions: &[Ingest],
        unit: Unit::Count, default: DefaultValue::Number(32),
        min: 1, max: 256, local_only: false,
        doc: "Safes of one upload written at once; each safe's items go one after another in its time order (a safe with over 250 items in steps of a few), so this bounds an upload's puts in flight.",
    }
    FUTURE_MARGIN_SECONDS {
        functions: &[Ingest],
        unit: Unit::Seconds, default: DefaultValue::Number(3600),
        min: 0, max: 86_400, local_only: false,
        doc: "A transaction dated further than this in the future is held for review.",
    }
    RETRIEVED_ON_MAX_AGE_HOURS {
        functions: &[Ingest],
        unit: Unit::Hours, default: DefaultValue::Number(0),
        min: 0, max: 87_600, local_only: false,
        doc: "A `RetrievedOn` older than this is held for review; 0 = no limit (SafeSync re-sends and backfills carry old read times).",
    }
    DELIVERY_QUEUE_URL {
        functions: &[Fanout, StreamRecovery, Push],
        unit: Unit::Text, default: DefaultValue::Required,
        min: 0, max: 0, local_only: false,
        doc: "The delivery queue (FIFO, message group = endpoint): the fan-out sends to it, push is fed by it.",
    }
    CONFIG_CACHE_SECONDS {
        functions: &[Fanout, StreamRecovery, Push],
        unit: Unit::Seconds, default: DefaultValue::Number(30),
        min: 0, max: 3600, local_only: false,
        doc: "How long a container reuses safe owners and endpoint settings: the bound on how stale routing and endpoint edits (URL, key name) can be.",
    }
    TIME_BUDGET_SECONDS {
        functions: &[Fanout, StreamRecovery],
        unit: Unit::Seconds, default: DefaultValue::Number(50),
        min: 1, max: 900, local_only: false,
        doc: "Time allowed when no Lambda deadline is known (the local runner, tests); keep it below the function's timeout.",
    }
    DEADLINE_MARGIN_SECONDS {
        functions: &[Ingest, Fanout, StreamRecovery],
        unit: Unit::Seconds,
        default: DefaultValue::PerFunction(&[(Ingest, 4), (Fanout, 10), (StreamRecovery, 10)]),
        min: 0, max: 300, local_only: false,
        doc: "Fan-out: no AWS request starts closer than this to the deadline: one request's worst case plus the answer, so at least `AWS_OPERATION_TIMEOUT_MS` (an error otherwise). Ingest (1 s to under its 29 s timeout, an error otherwise): writes still running this long before the deadline are answered \"not stored, re-send\" (503), and the advisory reads after them (owners, sequence gaps) stop at half of it, so SafeSync gets our answer rather than API Gateway's timeout.",
    }
    SEND_ATTEMPTS {
        functions: &[Fanout, StreamRecovery],
        unit: Unit::Count, default: DefaultValue::Number(5),
        min: 1, max: 20, local_only: false,
        doc: "Attempts per message within one invocation, the first included; beyond them Lambda retries the batch, from its plan.",
    }
    DELIVERY_LEDGER_TABLE {
        functions: &[Push],
        unit: Unit::Text, default: DefaultValue::Required,
        min: 0, max: 0, local_only: false,
        doc: "Delivered batches (by MessageId), attempt records and parked batches.",
    }
    DEAD_LETTER_QUEUE_URL {
        functions: &[Push],
        unit: Unit::Text, default: DefaultValue::Required,
        min: 0, max: 0, local_only: false,
        doc: "Where malformed queue bodies go.",
    }
    NOTIFICATIONS_TOPIC_ARN {
        functions: &[Push],
        unit: Unit::Text, default: DefaultValue::Required,
        min: 0, max: 0, local_only: false,
        doc: "Failing / expired / recovered / refused notices.",
    }
    ENDPOINT_SECRET_PREFIX {
        functions: &[Push],
        unit: Unit::Text,
        default: DefaultValue::Unset("`platformsync/<stage>/endpoints/`, the stage read from `CONFIG_TABLE` named `platformsync-<stage>-config`; an error if it is named otherwise"),
        min: 0, max: 0, local_only: false,
        doc: "Where endpoints' API keys live: the secret's name is this prefix and the endpoint id, never read from a record.",
    }
    RETRY_WINDOW_SECONDS {
        functions: &[Push],
        unit: Unit::Seconds, default: DefaultValue::Number(86_400),
        min: 10, max: 1_209_600, local_only: false,
        doc: "An endpoint's incident window, from its first failed attempt since its last 200 (plus our credited downtime); the template's `RetryWindowSeconds` parameter.",
    }
    PROBE_INTERVAL_SECONDS {
        functions: &[Push],
        unit: Unit::Seconds, default: DefaultValue::Number(900),
        min: 1, max: 86_400, local_only: false,
        doc: "While an endpoint is expired, at most one probe attempt this often.",
    }
    LATENESS_TOLERANCE_SECONDS {
        functions: &[Push],
        unit: Unit::Seconds, default: DefaultValue::Number(30),
        min: 0, max: 3600, local_only: false,
        doc: "A retry later than due by more than max(this, half its delay) was delayed by us: the lateness is credited to the incident's window.",
    }
    OUR_BACKOFF_BASE_SECONDS {
        functions: &[Push],
        unit: Unit::Seconds, default: DefaultValue::Number(5),
        min: 1, max: 43_200, local_only: false,
        doc: "A batch that met a failure of our own AWS calls backs off from this, doubling per receive (the endpoint's state untouched).",
    }
    OUR_BACKOFF_CAP_SECONDS {
        functions: &[Push],
        unit: Unit::Seconds, default: DefaultValue::Number(1800),
        min: 1, max: 43_200, local_only: false,
        doc: "... up to this: ~700 receives in the queue's 14 days at most, below maxReceiveCount (1000). 43,200 is SQS's visibility limit.",
    }
    ATTEMPT_TIMEOUT_SECONDS {
        functions: &[Push],
        unit: Unit::Seconds, default: DefaultValue::Number(180),
        min: 1, max: 600, local_only: false,
        doc: "One POST to an endpoint, connect to response. The function's timeout must exceed it by the 20 s kept for bookkeeping.",
    }
    AWS_MAX_ATTEMPTS {
        functions: &[Ingest, PullApi, Fanout, StreamRecovery, Push],
        unit: Unit::Count,
        default: DefaultValue::PerFunction(&[(Ingest, 8), (PullApi, 5), (Fanout, 3), (StreamRecovery, 3), (Push, 4)]),
        min: 1, max: 10, local_only: false,
        doc: "Attempts per AWS call in the SDK's standard retry mode (exponential backoff with jitter), within the operation timeout. Ingest retries throttled puts longest, so an upload is answered 503 only when DynamoDB stays unavailable. The SDK also keeps a retry quota per process and service (500 tokens: a retried throttle costs 5, a retried timeout 10, a success gives them back): once spent, calls are not retried until successes refill it, and ingest answers the items \"not stored, re-send\".",
    }
    AWS_MAX_BACKOFF_MS {
        functions: &[Ingest, PullApi, Fanout, StreamRecovery, Push],
        unit: Unit::Milliseconds,
        default: DefaultValue::Number(2000),
        min: 100, max: 20_000, local_only: false,
        doc: "The longest pause between two attempts of an AWS call (the SDK's own is 20 s, doubling from 1 s with jitter). Kept well under the operation timeout, so a call throttled at the end of a short burst is tried again instead of sleeping past its timeout.",
    }
    AWS_OPERATION_TIMEOUT_MS {
        functions: &[Ingest, PullApi, Fanout, StreamRecovery, Push],
        unit: Unit::Milliseconds,
        default: DefaultValue::PerFunction(&[(Ingest, 10_000), (PullApi, 10_000), (Fanout, 8000), (StreamRecovery, 8000), (Push, 5000)]),
        min: 100, max: 60_000, local_only: false,
        doc: "Every AWS call, its retries included. Push: the calls after a POST fit the 20 s kept for bookkeeping. Fan-out: below `DEADLINE_MARGIN_SECONDS`, so no request outlives the invocation. Ingest and pull API: a call that cannot finish is answered 503 well inside API Gateway's 30 s.",
    }
    AWS_ATTEMPT_TIMEOUT_MS {
        functions: &[Ingest, PullApi, Fanout, StreamRecovery, Push],
        unit: Unit::Milliseconds,
        default: DefaultValue::PerFunction(&[(Ingest, 3000), (PullApi, 3000), (Fanout, 3000), (StreamRecovery, 3000), (Push, 2000)]),
        min: 100, max: 60_000, local_only: false,
        doc: "One try of an AWS call (at most the operation timeout).",
    }
    PLATFORMSYNC_EXTRA_CA_FILE {
        functions: &[Push],
        unit: Unit::Text, default: DefaultValue::Unset("only the system's roots are trusted"),
        min: 0, max: 0, local_only: true,
        doc: "Extra trusted CA certificates (PEM file) for endpoints: the local CA of test receivers. Refused on Lambda.",
    }
    PLATFORMSYNC_ALLOW_CIDRS {
        functions: &[Push],
        unit: Unit::Text, default: DefaultValue::Unset("nothing is exempt from the SSRF refusal"),
        min: 0, max: 0, local_only: true,
        doc: "Comma-separated address ranges exempt from the SSRF refusal (e.g. `127.0.0.0/8` for local receivers). Refused on Lambda.",
    }
}

/// Variables that Lambda or the AWS environment sets, read by shared code
/// (the SDK configuration, logging, the Lambda check), not by `template.yaml`.
/// Listed so the source scan knows them; they are not knobs.
pub const PLATFORM_VARIABLES: &[(&str, &str)] = &[
    (
        "AWS_REGION",
        "the region (Lambda sets it); `AWS_DEFAULT_REGION` when unset",
    ),
    ("AWS_DEFAULT_REGION", "see `AWS_REGION`"),
    (
        "AWS_ACCESS_KEY_ID",
        "credentials (Lambda sets the function role's)",
    ),
    ("AWS_SECRET_ACCESS_KEY", "see `AWS_ACCESS_KEY_ID`"),
    ("AWS_SESSION_TOKEN", "see `AWS_ACCESS_KEY_ID`"),
    (
        "AWS_ENDPOINT_URL",
        "another endpoint for every AWS service (the local stack)",
    ),
    (
        "AWS_ENDPOINT_URL_<SERVICE>",
        "another endpoint for one service, e.g. `AWS_ENDPOINT_URL_DYNAMODB`",
    ),
    (
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "ignore the two above",
    ),
    (
        "AWS_LAMBDA_LOG_LEVEL",
        "the log level (`LoggingConfig.ApplicationLogLevel`)",
    ),
    ("AWS_LAMBDA_LOG_FORMAT", "JSON log lines when `JSON`"),
    (
        "RUST_LOG",
        "the log level outside Lambda (its first bare level)",
    ),
    (
        "AWS_LAMBDA_FUNCTION_NAME",
        "with `AWS_LAMBDA_RUNTIME_API`: running on Lambda",
    ),
    ("AWS_LAMBDA_RUNTIME_API", "see `AWS_LAMBDA_FUNCTION_NAME`"),
];

/// The knob called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Knob> {
    KNOBS.iter().find(|k| k.name == name)
}

/// The knobs `function` reads.
pub fn knobs_of(function: Function) -> impl Iterator<Item = &'static Knob> {
    KNOBS.iter().filter(move |k| k.read_by(function))
}

/// A variable's value by name.
type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Reads one function's knobs, from the process environment or any lookup
/// (tests, the local runner).
pub struct Reader<'a> {
    function: Function,
    lookup: Lookup<'a>,
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("function", &self.function)
            .finish_non_exhaustive()
    }
}

impl<'a> Reader<'a> {
    /// `function`'s knobs from the process environment (Lambda).
    pub fn from_env(function: Function) -> Reader<'static> {
        Reader {
            function,
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }

    /// `function`'s knobs from `lookup`.
    pub fn with_lookup(function: Function, lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Reader {
            function,
            lookup: Box::new(lookup),
        }
    }

    pub fn function(&self) -> Function {
        self.function
    }

    /// The knob's trimmed value, `None` when unset or blank.
    fn raw(&self, knob: &Knob) -> Result<Option<String>, EnvError> {
        if !knob.read_by(self.function) {
            return Err(EnvError::Invalid {
                name: knob.name,
                reason: format!(
                    "not a knob of {} (shared/aws/src/config.rs)",
                    self.function.binary()
                ),
            });
        }
        Ok((self.lookup)(knob.name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()))
    }

    /// A required text knob.
    pub fn text(&self, knob: &Knob) -> Result<String, EnvError> {
        self.raw(knob)?.ok_or(EnvError::Missing(knob.name))
    }

    /// An optional text knob (`None`: its documented default applies).
    pub fn optional_text(&self, knob: &Knob) -> Result<Option<String>, EnvError> {
        self.raw(knob)
    }

    /// A number knob: its default when unset, an error outside its bounds.
    pub fn number(&self, knob: &Knob) -> Result<u64, EnvError> {
        let invalid = |reason: String| EnvError::Invalid {
            name: knob.name,
            reason,
        };
        let value = match self.raw(knob)? {
            Some(text) => text
                .parse::<u64>()
                .map_err(|e| invalid(format!("{text:?} is not a whole number: {e}")))?,
            None => match knob.default_for(self.function) {
                Some(n) => n,
                None => return Err(EnvError::Missing(knob.name)),
            },
        };
        if value < knob.min || value > knob.max {
            return Err(invalid(format!(
                "{value} is outside {}..={} {}",
                knob.min,
                knob.max,
                knob.unit.label()
            )));
        }
        Ok(value)
    }

    /// A number knob as a count that fits `u32` (every count's bounds do).
    pub fn count(&self, knob: &Knob) -> Result<u32, EnvError> {
        let n = self.number(knob)?;
        u32::try_from(n).map_err(|_| EnvError::Invalid {
            name: knob.name,
            reason: format!("{n} is too large"),
        })
    }

    /// A number knob in its unit (seconds, milliseconds or hours) as a duration.
    pub fn duration(&self, knob: &Knob) -> Result<Duration, EnvError> {
        Ok(knob.as_duration(self.number(knob)?))
    }
}

/// `docs/configuration.md`, rendered from the table.
pub fn render_markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "# Configuration\n\n\
         <!-- Generated from shared/aws/src/config.rs by a test; do not edit by hand.\n     \
         Regenerate: UPDATE_CONFIG_DOCS=1 cargo test -p platformsync-aws --test configuration -->\n\n\
         Every setting a function reads from its environment (`template.yaml`'s\n\
         `Environment.Variables`). The table in `shared/aws/src/config.rs` is the only\n\
         place a setting is defined; the functions read their environment only through\n\
         it, and tests fail when this page, the template or the code disagree with it.\n\n\
         A value that is not a whole number, or lies outside its bounds, stops the\n\
         function at cold start with an error naming the variable; nothing is clamped.\n\
         A required setting that is unset or blank is an error too. An unset optional\n\
         setting takes its default.\n",
    );
    for function in Function::ALL {
        out.push_str(&format!(
            "\n## {} (`{}`)\n\n| variable | unit | default | bounds | what it does |\n|---|---|---|---|---|\n",
            function.binary(),
            function.logical_id()
        ));
        for k in knobs_of(function) {
            let default = match k.default {
                DefaultValue::Required => "required".to_owned(),
                DefaultValue::Unset(meaning) => format!("unset: {meaning}"),
                DefaultValue::Number(_) | DefaultValue::PerFunction(_) => k
                    .default_for(function)
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
            };
            let bounds = match k.unit {
                Unit::Text => String::new(),
                _ => format!("{}..={}", k.min, k.max),
            };
            let doc = if k.local_only {
                format!("**Local runs only.** {}", k.doc)
            } else {
                k.doc.to_owned()
            };
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                k.name,
                k.unit.label(),
                default,
                bounds,
                doc
            ));
        }
    }
    out.push_str(
        "\n## Set by Lambda and the AWS environment\n\n\
         Read by shared code (SDK configuration, logging), never set in `template.yaml`.\n\n\
         | variable | what it does |\n|---|---|\n",
    );
    for (name, doc) in PLATFORM_VARIABLES {
        out.push_str(&format!("| `{name}` | {doc} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn reader(function: Function, vars: &[(&str, &str)]) -> Reader<'static> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Reader::with_lookup(function, move |name| vars.get(name).cloned())
    }

    #[test]
    fn the_table_is_consistent() {
        let mut names = BTreeSet::new();
        for k in KNOBS {
            assert!(names.insert(k.name), "{} twice", k.name);
            assert!(!k.functions.is_empty(), "{}: read by nobody", k.name);
            assert!(!k.doc.is_empty(), "{}: no doc", k.name);
            match (k.unit, k.default) {
                (Unit::Text, DefaultValue::Required | DefaultValue::Unset(_)) => {}
                (Unit::Text, _) => panic!("{}: a text knob has no number default", k.name),
                (_, DefaultValue::Required | DefaultValue::Unset(_)) => {
                    panic!("{}: a number knob needs a default", k.name)
                }
                _ => {
                    assert!(k.min <= k.max, "{}", k.name);
                    for f in k.functions {
                        let d = k.default_for(*f);
                        assert!(d.is_some(), "{}: no default for {f:?}", k.name);
                        let d = d.unwrap_or_default();
                        assert!(
                            (k.min..=k.max).contains(&d),
                            "{}: default {d} out of bounds",
                            k.name
                        );
                    }
                }
            }
            if let DefaultValue::PerFunction(list) = k.default {
                let listed: BTreeSet<_> = list.iter().map(|(f, _)| *f).collect();
                let readers: BTreeSet<_> = k.functions.iter().copied().collect();
                assert_eq!(listed, readers, "{}: a default for each reader", k.name);
            }
        }
    }

    #[test]
    fn an_unset_knob_takes_its_default_and_a_set_one_its_value() {
        let r = reader(Function::Push, &[]);
        assert_eq!(r.number(&knob::CONFIG_CACHE_SECONDS), Ok(30));
        assert_eq!(r.count(&knob::AWS_MAX_ATTEMPTS), Ok(4));
        let r = reader(Function::Ingest, &[]);
        assert_eq!(r.count(&knob::AWS_MAX_ATTEMPTS), Ok(8));
        let r = reader(Function::Push, &[("CONFIG_CACHE_SECONDS", " 120 ")]);
        assert_eq!(
            r.duration(&knob::CONFIG_CACHE_SECONDS),
            Ok(Duration::from_secs(120))
        );
        let r = reader(Function::Push, &[("AWS_ATTEMPT_TIMEOUT_MS", "1500")]);
        assert_eq!(
            r.duration(&knob::AWS_ATTEMPT_TIMEOUT_MS),
            Ok(Duration::from_millis(1500))
        );
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_variable() {
        let r = reader(Function::Fanout, &[("CONFIG_CACHE_SECONDS", "3601")]);
        let e = r.number(&knob::CONFIG_CACHE_SECONDS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable CONFIG_CACHE_SECONDS is invalid: 3601 is outside 0..=3600 seconds"
        );
        let r = reader(Function::Fanout, &[("SEND_ATTEMPTS", "0")]);
        assert!(matches!(
            r.number(&knob::SEND_ATTEMPTS),
            Err(EnvError::Invalid {
                name: "SEND_ATTEMPTS",
                ..
            })
        ));
        let r = reader(Function::Fanout, &[("SEND_ATTEMPTS", "five")]);
        assert!(
            r.number(&knob::SEND_ATTEMPTS)
                .unwrap_err()
                .to_string()
                .contains("SEND_ATTEMPTS")
        );
        let r = reader(Function::Ingest, &[("TRANSACTIONS_TABLE", "  ")]);
        assert_eq!(
            r.text(&knob::TRANSACTIONS_TABLE),
            Err(EnvError::Missing("TRANSACTIONS_TABLE"))
        );
    }

    #[test]
    fn a_function_reads_only_its_own_knobs() {
        let r = reader(Function::Ingest, &[("SEND_ATTEMPTS", "3")]);
        let e = r.number(&knob::SEND_ATTEMPTS).unwrap_err();
        assert!(e.to_string().contains("not a knob of ingest"), "{e}");
    }

    #[test]
    fn durations_follow_the_unit() {
        assert_eq!(
            knob::RETRY_WINDOW_SECONDS.default_duration_for(Function::Push),
            Duration::from_secs(86_400)
        );
        let r = reader(Function::Ingest, &[("RETRIEVED_ON_MAX_AGE_HOURS", "2")]);
        assert_eq!(
            r.duration(&knob::RETRIEVED_ON_MAX_AGE_HOURS),
            Ok(Duration::from_secs(7200))
        );
    }
}
