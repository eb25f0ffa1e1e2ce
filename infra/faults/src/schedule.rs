//! Seeded fault timelines for chaos runs: the same seed gives the same
//! bursts, so a failing chaos run can be replayed exactly.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::FaultProxy;
use crate::rules::{Fault, Rule, seconds};

/// From `at` (measured from the start of [`Schedule::play`]) the proxy's
/// rules are `rules` (replacing the previous step's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub at_seconds: f64,
    pub rules: Vec<Rule>,
}

/// A deterministic sequence of rule sets over time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub steps: Vec<Step>,
}

/// splitmix64: tiny, good enough for picking bursts, and no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

impl Schedule {
    /// Bursts of one fault at a time over `total`: quiet gaps of about
    /// `mean_gap` (x0.5..1.5) alternate with bursts of about `mean_burst`
    /// (x0.5..1.5), each failing one of `targets` (`(service, operation)`,
    /// `"*"` allowed) with one of `faults`, both picked from `seed`. Each
    /// burst's rule also carries its window, so it ends on time even if the
    /// player lags. Empty `targets` or `faults` give an empty schedule.
    pub fn bursts(
        seed: u64,
        targets: &[(&str, &str)],
        faults: &[Fault],
        total: Duration,
        mean_burst: Duration,
        mean_gap: Duration,
    ) -> Self {
        let mut steps = Vec::new();
        if targets.is_empty() || faults.is_empty() {
            return Self { steps };
        }
        let mut rng = Rng(seed);
        let total = total.as_secs_f64();
        let mut t = 0.0;
        loop {
            t += mean_gap.as_secs_f64() * (0.5 + rng.unit());
            if t >= total {
                break;
            }
            let (service, operation) = *rng.pick(targets);
            let fault = rng.pick(faults).clone();
            let length = (mean_burst.as_secs_f64() * (0.5 + rng.unit())).min(total - t);
            let rule =
                Rule::new(service, operation, fault).for_duration(Duration::from_secs_f64(length));
            steps.push(Step {
                at_seconds: t,
                rules: vec![rule],
            });
            t += length;
            steps.push(Step {
                at_seconds: t,
                rules: Vec::new(),
            });
        }
        Self { steps }
    }

    /// The rules in force `elapsed` after the start.
    pub fn rules_at(&self, elapsed: Duration) -> &[Rule] {
        let t = elapsed.as_secs_f64();
        self.steps
            .iter()
            .take_while(|s| s.at_seconds <= t)
            .last()
            .map_or(&[], |s| &s.rules)
    }

    /// Total time the schedule spans.
    pub fn duration(&self) -> Duration {
        seconds(self.steps.last().map_or(0.0, |s| s.at_seconds))
    }

    /// Installs each step's rules on `proxy` at its time; returns after the
    /// last step. Run it alongside the workload (`tokio::join!`).
    pub async fn play(&self, proxy: &FaultProxy) {
        let start = tokio::time::Instant::now();
        for step in &self.steps {
            let at = seconds(step.at_seconds);
            tokio::time::sleep_until(start + at).await;
            proxy.set_rules(step.rules.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(seed: u64) -> Schedule {
        Schedule::bursts(
            seed,
            &[("dynamodb", "PutItem"), ("sqs", "*")],
            &[Fault::Throttle, Fault::Internal],
            Duration::from_secs(600),
            Duration::from_secs(20),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn same_seed_same_schedule() {
        assert_eq!(schedule(7), schedule(7));
        assert_ne!(schedule(7), schedule(8));
    }

    #[test]
    fn bursts_alternate_with_quiet_and_stay_in_bounds() {
        let s = schedule(42);
        assert!(s.steps.len() >= 4, "{s:?}");
        for pair in s.steps.chunks(2) {
            assert_eq!(pair[0].rules.len(), 1);
            if let Some(quiet) = pair.get(1) {
                assert!(quiet.rules.is_empty());
                let window = pair[0].rules[0].for_seconds.unwrap();
                assert!((quiet.at_seconds - pair[0].at_seconds - window).abs() < 1e-9);
                assert!((10.0..=30.0).contains(&window) || quiet.at_seconds >= 600.0 - 1e-9);
            }
        }
        assert!(s.duration() <= Duration::from_secs(600));
        let first = &s.steps[0];
        assert!(
            s.rules_at(Duration::from_secs_f64(first.at_seconds + 0.001))
                .len()
                == 1
        );
        assert!(s.rules_at(Duration::ZERO).is_empty());
    }

    #[tokio::test]
    async fn play_installs_each_step_on_time() {
        // Nothing is forwarded here, so any upstream will do.
        let proxy = FaultProxy::start("http://127.0.0.1:9").await.unwrap();
        let burst = Rule::new("sqs", "*", Fault::Throttle);
        let schedule = Schedule {
            steps: vec![
                Step {
                    at_seconds: 0.05,
                    rules: vec![burst.clone()],
                },
                Step {
                    at_seconds: 0.3,
                    rules: Vec::new(),
                },
            ],
        };
        let observe = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            proxy.stats().rules.len()
        };
        let ((), during) = tokio::join!(schedule.play(&proxy), observe);
        assert_eq!(during, 1);
        assert!(proxy.stats().rules.is_empty(), "the last step cleared them");
        assert_eq!(schedule.duration(), Duration::from_secs_f64(0.3));
    }

    #[test]
    fn nothing_to_pick_from_is_an_empty_schedule() {
        let s = Schedule::bursts(
            1,
            &[],
            &[Fault::Throttle],
            Duration::from_secs(10),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        assert!(s.steps.is_empty());
    }
}
