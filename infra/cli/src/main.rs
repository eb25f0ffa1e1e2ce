//! `platformsync`: the ops CLI. See the library docs and `platformsync --help`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use platformsync_cli::{Cli, Io, hint, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mut out, mut err, mut stdin) = (std::io::stdout(), std::io::stderr(), std::io::stdin());
    let interactive = stdin.is_terminal();
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        stdin: &mut stdin,
        interactive,
    };
    match run(cli, &mut io).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("platformsync: error: {e:#}");
            if let Some(hint) = hint(&e) {
                eprintln!("platformsync: hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}
