//! Failure modes for soak runs (`make chaos`), and the log of every push
//! request. Not something a production receiver needs: they let a test
//! make this receiver misbehave the way real endpoints do, at random but
//! repeatably (a seed), and see exactly what PlatformSync sent.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How often a push fails, and how. Each push draws once, in arrival order,
/// from a generator seeded with `seed`: `drop_rate` of the pushes lose their
/// connection, the next `error_rate` get a 500, the next `created_rate` a
/// 201 (not a 200, so not delivered), the next `slow_rate` are answered
/// normally but only after `slow_seconds` (pick a range around the sender's
/// timeout: some answers arrive just in time, some just too late). The rest
/// are handled normally. All rates 0 (the default): no chaos.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailureRates {
    pub seed: u64,
    pub drop_rate: f64,
    pub error_rate: f64,
    pub created_rate: f64,
    pub slow_rate: f64,
    /// `[min, max]` seconds of a slow answer.
    pub slow_seconds: [f64; 2],
}

impl FailureRates {
    /// Whether the rates make sense: each in 0..=1, summing to at most 1,
    /// and a slow range of finite, non-negative seconds, min <= max.
    pub fn check(&self) -> Result<(), String> {
        let rates = [
            self.drop_rate,
            self.error_rate,
            self.created_rate,
            self.slow_rate,
        ];
        if rates.iter().any(|r| !(0.0..=1.0).contains(r)) {
            return Err("every rate must be between 0 and 1".into());
        }
        if rates.iter().sum::<f64>() > 1.0 + 1e-9 {
            return Err("the rates must add up to at most 1".into());
        }
        let [lo, hi] = self.slow_seconds;
        if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi && hi <= 3600.0) {
            return Err("slow_seconds must be [min, max] with 0 <= min <= max <= 3600".into());
        }
        Ok(())
    }
}

/// What the draw decided for one push.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Draw {
    Normal,
    Drop,
    Error,
    Created,
    Slow(Duration),
}

/// The failure rates with their generator.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chaos {
    rates: FailureRates,
    state: u64,
}

impl Chaos {
    pub(crate) fn new(rates: FailureRates) -> Self {
        let state = rates.seed;
        Chaos { rates, state }
    }

    /// splitmix64 in [0, 1): tiny and dependency-free.
    fn unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn draw(&mut self) -> Draw {
        let r = &self.rates;
        if r.drop_rate + r.error_rate + r.created_rate + r.slow_rate <= 0.0 {
            return Draw::Normal;
        }
        let (drop, error, created, slow) = (r.drop_rate, r.error_rate, r.created_rate, r.slow_rate);
        let [lo, hi] = r.slow_seconds;
        let u = self.unit();
        if u < drop {
            Draw::Drop
        } else if u < drop + error {
            Draw::Error
        } else if u < drop + error + created {
            Draw::Created
        } else if u < drop + error + created + slow {
            let seconds = lo + (hi - lo) * self.unit();
            Draw::Slow(Duration::from_secs_f64(seconds))
        } else {
            Draw::Normal
        }
    }
}

/// One endpoint (request path) down until `until`, answering `status`.
#[derive(Debug, Clone)]
pub(crate) struct Outage {
    pub until: Instant,
    pub status: u16,
}

/// Outages per request path.
pub(crate) type Outages = HashMap<String, Outage>;

/// What the receiver did with one push request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new `MessageId`: recorded, answered 200.
    Recorded,
    /// A `MessageId` already recorded: answered 200, not recorded again.
    Repeat,
    /// Failed on purpose (`/_control/fail` or the error rate).
    Injected,
    /// Answered 201 on purpose: not a 200, so not delivered.
    Created,
    /// Connection closed on purpose without an answer.
    Dropped,
    /// The path is in an outage (`/_control/outage`).
    Outage,
    /// Wrong or missing key (401).
    Unauthorized,
    /// Missing or bad signature, or a stale timestamp (401; signed pushes).
    BadSignature,
    /// Not a push payload (400).
    BadRequest,
    /// Could not write `received.jsonl` (500).
    NotStored,
    /// The sender closed the connection before the answer, before
    /// anything was recorded (e.g. during a `/_control/slow` delay).
    Abandoned,
}

/// One push request, whatever became of it (`GET /_control/requests`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushRequest {
    pub path: String,
    /// `Metadata.MessageId`, when the body was read far enough to know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// RFC 3339, UTC: when the request arrived.
    pub received_at: String,
    /// The status answered; 0 when the connection was dropped.
    pub status: u16,
    pub outcome: Outcome,
    /// Records in the body (0 when not read).
    pub records: u64,
    /// A digest of the records as sent, when read: a repeat with the same
    /// digest as the first recorded POST of its `MessageId` carried the same
    /// content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Seconds the answer was held back on purpose (slow answers).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delayed_seconds: f64,
    /// The sender closed the connection before the (slow) answer: what
    /// was recorded stays recorded, but the sender never saw the 200.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sender_left: bool,
    /// The signature check, when the receiver verifies signed pushes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::Signature>,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// A digest of a push's records as sent (64-bit SipHash with fixed keys:
/// stable within a build, enough to tell two bodies apart in a test).
pub(crate) fn digest(records: &[Box<serde_json::value::RawValue>]) -> String {
    #[allow(deprecated)] // SipHasher: fixed keys, unlike RandomState.
    let mut hasher = std::hash::SipHasher::new();
    for record in records {
        record.get().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(seed: u64) -> FailureRates {
        FailureRates {
            seed,
            drop_rate: 0.1,
            error_rate: 0.2,
            created_rate: 0.1,
            slow_rate: 0.1,
            slow_seconds: [1.0, 2.0],
        }
    }

    #[test]
    fn same_seed_same_draws_and_rates_roughly_hold() {
        let draws = |seed| {
            let mut c = Chaos::new(rates(seed));
            (0..10_000).map(|_| c.draw()).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
        let d = draws(3);
        let share = |f: &dyn Fn(&Draw) -> bool| d.iter().filter(|x| f(x)).count() as f64 / 1e4;
        assert!((share(&|x| *x == Draw::Drop) - 0.1).abs() < 0.02);
        assert!((share(&|x| *x == Draw::Error) - 0.2).abs() < 0.02);
        assert!((share(&|x| *x == Draw::Created) - 0.1).abs() < 0.02);
        assert!((share(&|x| matches!(x, Draw::Slow(_))) - 0.1).abs() < 0.02);
        for x in &d {
            if let Draw::Slow(s) = x {
                assert!((1.0..=2.0).contains(&s.as_secs_f64()));
            }
        }
    }

    #[test]
    fn no_rates_no_chaos_and_bad_rates_refused() {
        let mut c = Chaos::default();
        assert!((0..100).all(|_| c.draw() == Draw::Normal));
        assert!(rates(1).check().is_ok());
        let mut r = rates(1);
        r.error_rate = 0.9;
        assert!(r.check().is_err());
        r = rates(1);
        r.slow_seconds = [3.0, 1.0];
        assert!(r.check().is_err());
        r = rates(1);
        r.drop_rate = f64::NAN;
        assert!(r.check().is_err());
    }

    #[test]
    fn digests_tell_bodies_apart() {
        let a: Vec<Box<serde_json::value::RawValue>> =
            serde_json::from_str(r#"[{"a":1},{"b":2}]"#).unwrap();
        let b: Vec<Box<serde_json::value::RawValue>> =
            serde_json::from_str(r#"[{"a":1},{"b":3}]"#).unwrap();
        assert_eq!(digest(&a), digest(&a.clone()));
        assert_ne!(digest(&a), digest(&b));
    }
}
