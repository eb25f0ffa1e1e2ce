//! A progress bar with counts and rate for long runs (`replay` backfills,
//! `manifest`), on standard error and only when it is a terminal: tests,
//! pipes and `--json` get none.
//!
//! `indicatif` (default features off): it redraws at a bounded rate, knows
//! when standard error is not a terminal, and computes the rate and ETA;
//! the hand-written alternative is the same code with more edge cases.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(len: u64, unit: &str, json: bool) -> Self {
        let bar = if json {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
        };
        let template =
            format!("{{bar:30}} {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left) {{msg}}");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        Self { bar }
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
