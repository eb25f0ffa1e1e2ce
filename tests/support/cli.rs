//! The ops CLI (`platformsync`), run in-process against a [`Stack`] as `main`
//! would run it: argv parsed by clap, standard output and error captured,
//! standard input given.

use platformsync_cli::{Cli, Io};
use serde_json::Value;

use crate::Stack;

/// What a command printed, and its error as `main` would print it.
#[derive(Debug)]
pub struct CliOutcome {
    pub out: String,
    pub err: String,
    pub result: Result<(), String>,
}

impl CliOutcome {
    /// Standard output; panics, showing everything printed, if the command failed.
    pub fn ok(self) -> String {
        if let Err(e) = &self.result {
            panic!(
                "command failed: {e}\nstdout: {}\nstderr: {}",
                self.out, self.err
            );
        }
        self.out
    }

    /// Standard output as JSON (for commands run with `--json`).
    pub fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// The error; panics if the command succeeded.
    pub fn error(self) -> String {
        match self.result {
            Ok(()) => panic!("command succeeded: {}", self.out),
            Err(e) => e,
        }
    }

    /// Standard output on success, the error otherwise.
    pub fn into_result(self) -> Result<String, String> {
        self.result.map(|()| self.out)
    }

    /// Everything the command wrote anywhere (to check a secret never shows).
    pub fn all_text(&self) -> String {
        format!(
            "{}{}{}",
            self.out,
            self.err,
            self.result.as_ref().err().cloned().unwrap_or_default()
        )
    }
}

/// Runs `platformsync <args>` against `stack`, with `stdin` as standard input.
///
/// Every deployment name is given explicitly, before the command (the CLI
/// takes them there), so variables in the environment (`CONFIG_TABLE`...)
/// cannot redirect a test. A deployment flag at the start of `args` wins over
/// the stack's.
pub async fn run(stack: &Stack, args: &[&str], stdin: &str) -> CliOutcome {
    let deployment = [
        ("--stage", stack.stage.clone()),
        ("--config-table", stack.reference("ConfigTable")),
        (
            "--delivery-ledger-table",
            stack.reference("DeliveryLedgerTable"),
        ),
        ("--transactions-table", stack.reference("TransactionsTable")),
        ("--delivery-queue-url", stack.reference("DeliveryQueue")),
        (
            "--dead-letter-queue-url",
            stack.reference("DeliveryDeadLetterQueue"),
        ),
    ];
    let mut argv = vec!["platformsync".to_owned()];
    for (flag, value) in deployment {
        if !args.contains(&flag) {
            argv.extend([flag.to_owned(), value]);
        }
    }
    argv.extend(args.iter().map(|a| a.to_string()));
    let parsed = match Cli::from_args(&argv) {
        Ok(c) => c,
        Err(e) => {
            return CliOutcome {
                out: String::new(),
                err: String::new(),
                result: Err(e.to_string()),
            };
        }
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = stdin.as_bytes();
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        stdin: &mut input,
        interactive: false,
    };
    let result = platformsync_cli::run(parsed, &mut io)
        .await
        .map_err(|e| format!("{e:#}"));
    CliOutcome {
        out: String::from_utf8_lossy(&out).into_owned(),
        err: String::from_utf8_lossy(&err).into_owned(),
        result,
    }
}

/// `line` split into arguments as a shell would split it, so a test writes a
/// command as one line: on white space, and a single-quoted argument
/// (`'Acme Stores'`) kept whole.
pub fn args(line: &str) -> Vec<&str> {
    let mut args = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let (arg, after) = match rest.strip_prefix('\'') {
            Some(quoted) => quoted
                .split_once('\'')
                .unwrap_or_else(|| panic!("unclosed quote in {line:?}")),
            None => rest.split_once(char::is_whitespace).unwrap_or((rest, "")),
        };
        args.push(arg);
        rest = after.trim_start();
    }
    args
}

/// A file holding `key` (as `--key-file` reads it); the CLI never takes a
/// key as an argument.
pub fn key_file(key: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("psync-key-{}", uuid::Uuid::new_v4()));
    std::fs::write(&path, format!("{key}\n")).expect("key file written");
    path
}

/// `platformsync <args>`'s standard output; panics if it fails.
pub async fn ok(stack: &Stack, args: &[&str]) -> String {
    run(stack, args, "").await.ok()
}

/// `platformsync <args>`'s error, which must mention `needle`; panics if
/// the command succeeds.
pub async fn refused(stack: &Stack, args: &[&str], needle: &str) -> String {
    let e = run(stack, args, "").await.error();
    assert!(e.contains(needle), "expected {needle:?} in: {e}");
    e
}

/// `platformsync --json <args>`'s output as JSON; panics if it fails.
pub async fn json(stack: &Stack, args: &[&str]) -> Value {
    run(stack, &[&["--json"][..], args].concat(), "")
        .await
        .json()
}

/// Field `name` of every row of a JSON listing (`endpoint list --json`...),
/// in the listing's order; panics on a row without it.
pub fn column<'a>(listing: &'a Value, name: &str) -> Vec<&'a str> {
    listing
        .as_array()
        .unwrap_or_else(|| panic!("not a listing: {listing}"))
        .iter()
        .map(|row| {
            row[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} in {row}"))
        })
        .collect()
}
