//! # platformsync-chaos: `make chaos`
//!
//! A soak run anyone can repeat: the local pipeline (moto, the fault proxy
//! of `infra/faults` in front of it, the runner, the reference receiver)
//! under a configurable load, with seeded faults everywhere at once: AWS
//! throttling bursts, runner SIGKILLs, a receiver failing at set rates (500,
//! 201, dropped connections, answers near the timeout), one endpoint down
//! for a while, SafeSync re-sending uploads. Then it waits for the drain and
//! reports, per endpoint, what was expected, delivered, lost, delivered under
//! two MessageIds, re-POSTed, leaked, out of order, and the notices sent.
//!
//! [`run::run`] does a run; [`report::markdown`] renders it; the
//! `platformsync-chaos` binary is the command line (`--help`).

pub mod load;
pub mod plan;
pub mod report;
pub mod run;
pub mod verdict;

pub use load::{Load, LoadOptions};
pub use plan::{FaultOptions, FaultPlan};
pub use run::{ChaosOptions, Outcome, run};
