//! The faults of a run, decided from the seed before anything starts: the
//! same seed and settings give the same timeline (AWS bursts, runner kills,
//! the endpoint outage) and the same receiver draws, so a run that found a
//! problem can be replayed.

use std::time::Duration;

use platformsync_domain::testdata::Rng;
use platformsync_faults::{Fault, Schedule};
use platformsync_receiver::FailureRates;
use serde::Serialize;

/// The fault settings of a run.
#[derive(Debug, Clone, Serialize)]
pub struct FaultOptions {
    pub seed: u64,
    /// Faults happen in `[0, chaos_seconds)` after the load starts.
    pub chaos_seconds: f64,
    /// Runner SIGKILLs, at random times in the window.
    pub kills: usize,
    /// Receiver: shares of pushes answered 500, 201, dropped, slow.
    pub error_rate: f64,
    pub created_rate: f64,
    pub drop_rate: f64,
    pub slow_rate: f64,
    /// The push's attempt timeout the runner is given; slow answers take
    /// 0.8 to 1.2 times this.
    pub attempt_timeout_seconds: u64,
    /// One endpoint down (503) this long, starting in the window's first half.
    pub outage_seconds: f64,
    /// AWS throttling bursts through the fault proxy: mean burst and gap.
    pub aws_burst_seconds: f64,
    pub aws_gap_seconds: f64,
    /// Faults of the bursts (`throttle`, `internal`, `unavailable`).
    pub aws_faults: Vec<String>,
}

/// One runner kill: SIGKILL at `at`, restart `down` later.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kill {
    pub at_seconds: f64,
    pub down_seconds: f64,
}

/// One endpoint's outage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutagePlan {
    pub endpoint: usize,
    pub at_seconds: f64,
    pub seconds: f64,
}

/// Every fault of a run.
#[derive(Debug, Clone, Serialize)]
pub struct FaultPlan {
    pub kills: Vec<Kill>,
    pub outage: Option<OutagePlan>,
    pub aws: Schedule,
    pub receiver: FailureRates,
}

/// What the bursts fail: DynamoDB and SQS, everything or one busy call.
pub const AWS_TARGETS: [(&str, &str); 5] = [
    ("dynamodb", "*"),
    ("dynamodb", "PutItem"),
    ("dynamodb", "GetItem"),
    ("sqs", "*"),
    ("sqs", "SendMessageBatch"),
];

pub fn fault(name: &str) -> anyhow::Result<Fault> {
    Ok(match name {
        "throttle" => Fault::Throttle,
        "internal" => Fault::Internal,
        "unavailable" => Fault::Unavailable,
        other => anyhow::bail!("unknown AWS fault {other:?} (throttle, internal, unavailable)"),
    })
}

impl FaultPlan {
    /// `endpoints`: how many there are (one of them gets the outage).
    pub fn new(o: &FaultOptions, endpoints: usize) -> anyhow::Result<Self> {
        let mut rng = Rng::new(o.seed ^ 0xC4A0_5000);
        let window = o.chaos_seconds.max(0.0);
        let mut kills: Vec<Kill> = (0..o.kills)
            .map(|_| Kill {
                at_seconds: rng.between(0.05, 0.95) * window,
                down_seconds: rng.between(0.5, 4.0),
            })
            .collect();
        kills.sort_by(|a, b| a.at_seconds.total_cmp(&b.at_seconds));
        let outage = (o.outage_seconds > 0.0 && endpoints > 0).then(|| OutagePlan {
            endpoint: rng.below(endpoints as u64) as usize,
            at_seconds: rng.between(0.1, 0.5) * window,
            seconds: o.outage_seconds,
        });
        let faults = o
            .aws_faults
            .iter()
            .map(|f| fault(f))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let aws = Schedule::bursts(
            o.seed,
            &AWS_TARGETS,
            &faults,
            Duration::from_secs_f64(window),
            Duration::from_secs_f64(o.aws_burst_seconds.max(0.1)),
            Duration::from_secs_f64(o.aws_gap_seconds.max(0.1)),
        );
        let timeout = o.attempt_timeout_seconds as f64;
        let receiver = FailureRates {
            seed: o.seed,
            drop_rate: o.drop_rate,
            error_rate: o.error_rate,
            created_rate: o.created_rate,
            slow_rate: o.slow_rate,
            slow_seconds: [0.8 * timeout, 1.2 * timeout],
        };
        receiver.check().map_err(anyhow::Error::msg)?;
        Ok(FaultPlan {
            kills,
            outage,
            aws,
            receiver,
        })
    }

    /// Seconds of AWS bursts in the plan.
    pub fn aws_burst_seconds(&self) -> f64 {
        self.aws
            .steps
            .iter()
            .flat_map(|s| &s.rules)
            .filter_map(|r| r.for_seconds)
            .sum()
    }

    pub fn aws_bursts(&self) -> usize {
        self.aws
            .steps
            .iter()
            .filter(|s| !s.rules.is_empty())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(seed: u64) -> FaultOptions {
        FaultOptions {
            seed,
            chaos_seconds: 600.0,
            kills: 20,
            error_rate: 0.03,
            created_rate: 0.01,
            drop_rate: 0.01,
            slow_rate: 0.01,
            attempt_timeout_seconds: 10,
            outage_seconds: 120.0,
            aws_burst_seconds: 10.0,
            aws_gap_seconds: 40.0,
            aws_faults: vec!["throttle".into()],
        }
    }

    #[test]
    fn same_seed_same_faults() {
        let a = FaultPlan::new(&options(11), 6).unwrap();
        let b = FaultPlan::new(&options(11), 6).unwrap();
        let c = FaultPlan::new(&options(12), 6).unwrap();
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert_ne!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&c).unwrap()
        );
        assert_eq!(a.kills.len(), 20);
        assert!(
            a.kills
                .windows(2)
                .all(|w| w[0].at_seconds <= w[1].at_seconds)
        );
        assert!(a.kills.iter().all(|k| k.at_seconds < 600.0));
        let outage = a.outage.clone().unwrap();
        assert!(outage.endpoint < 6 && outage.at_seconds < 300.0);
        assert!(a.aws_bursts() > 3, "{a:?}");
        assert_eq!(a.receiver.slow_seconds, [8.0, 12.0]);
    }

    #[test]
    fn unknown_faults_and_bad_rates_refused() {
        let mut o = options(1);
        o.aws_faults = vec!["nope".into()];
        assert!(FaultPlan::new(&o, 6).is_err());
        let mut o = options(1);
        o.error_rate = 2.0;
        assert!(FaultPlan::new(&o, 6).is_err());
    }
}
