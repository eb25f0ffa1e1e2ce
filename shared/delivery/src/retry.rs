//! Retry schedule of the push function (delivery rules 1, 2 and 7).
//!
//! A failed attempt is retried by changing the SQS message's visibility timeout,
//! so every decision below ends in "make the message visible again in N whole
//! seconds" or "expire it". The rules, as they go into the runbook:
//!
//! # Delay after the endpoint's Nth consecutive failed attempt
//!
//! The delay follows the **endpoint's** consecutive failed attempts, across
//! its batches (a 200 resets the count), not one batch's luck: an endpoint
//! that drops one request now and then is retried within seconds, and only an
//! endpoint that keeps failing backs off to the hourly ceiling.
//!
//! | consecutive failed attempts of the endpoint | base delay |
//! |---|---|
//! | 1 | 2 s |
//! | 2 | 5 s |
//! | 3 | 15 s |
//! | 4 | 30 s |
//! | 5 | 1 min |
//! | 6 | 2 min |
//! | 7 | 5 min |
//! | 8 | 10 min |
//! | 9 | 30 min |
//! | 10 and later | 1 h (the ceiling) |
//!
//! - **Jitter**: each delay is multiplied by a factor in [0.8, 1.2] (+-20 %) so that
//!   the batches of an endpoint that failed together do not all come back in the
//!   same second. The factor is derived from a seed the caller passes (see
//!   [`seed_for`]: message id + attempt number), so a given attempt always gets the
//!   same delay and tests can pin it. Never below 1 s.
//! - **`Retry-After`** from the endpoint is honoured within bounds: we never retry
//!   sooner than the schedule says (a receiver cannot make us hammer it), and a
//!   longer `Retry-After` is used but clamped to at most 2 h (a receiver cannot park
//!   its own data for a day).
//! - **SQS cap**: one visibility change is at most 12 h (43,200 s); longer delays
//!   are clamped. Delays are rounded *up* to whole seconds, SQS's unit.
//!
//! # The 24-hour window and our own downtime
//!
//! A batch is retried for a window (default 24 h, configurable) measured from its
//! **first** attempt; when an attempt fails at or after the deadline, the batch
//! expires (kept for operations to see and replay, and the customer is told).
//!
//! "Time spent down by PlatformSync does not eat the customer's 24 hours": every
//! retry records when it was scheduled and with which delay. When the next attempt
//! actually starts later than due by more than a tolerance (the larger of 2 min and
//! 50 % of the delay, which absorbs normal SQS and Lambda latency), the whole
//! lateness was ours (queue not drained, function throttled or failing, region
//! outage) and is credited back:
//!
//! `deadline = first_attempt_at + window + credited`
//!
//! Lateness is measured from the moment the retry was *scheduled* (after the
//! failed attempt finished), not from the start of the previous attempt, so a
//! customer endpoint that takes its full 3 minutes to time out is never mistaken
//! for our downtime.
//!
//! **Last attempt at the deadline**: if the next scheduled attempt would land after
//! the deadline while the deadline is still ahead, one last attempt is scheduled
//! *at* the deadline instead, so the customer gets the full window. With the table
//! above, an endpoint failing everything and no downtime, that is about 33
//! attempts in 24 h (nine in the first 49 minutes, then hourly, plus the one at
//! the deadline); jitter moves the count by one or two either way.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, PrimitiveDateTime};

/// Base delays after the 1st, 2nd, ... consecutive failed attempt of an
/// endpoint; the last entry (the ceiling) repeats.
pub const SCHEDULE: [Duration; 10] = [
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(2 * 60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
];

/// The schedule's ceiling: an endpoint failing for hours is tried hourly.
pub const CEILING: Duration = Duration::from_secs(60 * 60);

/// Delivery rule 2: a batch is retried for 24 h from its first attempt.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Jitter amplitude in per mille (200 = +-20 %).
pub const JITTER_PER_MILLE: u64 = 200;

/// No retry is scheduled sooner than this, whatever the jitter or the deadline.
pub const MIN_DELAY: Duration = Duration::from_secs(1);

/// Longest `Retry-After` we honour.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(2 * 60 * 60);

/// SQS `ChangeMessageVisibility` accepts at most 12 h.
pub const SQS_MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// Lateness below max(this, half the delay) is normal queue latency, not downtime.
pub const LATENESS_TOLERANCE: Duration = Duration::from_secs(2 * 60);

/// `last_error` is stored in DynamoDB with the state: keep items small.
pub const MAX_ERROR_CHARS: usize = 1024;

/// Base delay (no jitter) after `failed_attempts` failed attempts; 0 counts as 1.
pub fn base_delay(failed_attempts: u32) -> Duration {
    let index = (failed_attempts.max(1) as usize - 1).min(SCHEDULE.len() - 1);
    SCHEDULE[index]
}

/// `base` multiplied by a factor in [0.8, 1.2] chosen by `seed`; never below 1 s.
pub fn jitter(base: Duration, seed: u64) -> Duration {
    let span = 2 * JITTER_PER_MILLE + 1;
    let per_mille = 1000 - JITTER_PER_MILLE + splitmix64(seed) % span;
    // u128 keeps the multiplication exact for any Duration.
    let millis = base.as_millis().saturating_mul(u128::from(per_mille)) / 1000;
    let millis = u64::try_from(millis).unwrap_or(u64::MAX);
    Duration::from_millis(millis).max(MIN_DELAY)
}

/// The schedule's delay (table + jitter) after `failed_attempts` failures.
pub fn scheduled_delay(failed_attempts: u32, seed: u64) -> Duration {
    jitter(base_delay(failed_attempts), seed)
}

/// The delay before the next attempt of an endpoint after its
/// `consecutive_failures`th consecutive failed attempt: schedule + jitter,
/// `Retry-After` honoured within bounds, whole seconds, at most one SQS
/// visibility change, and never past `remaining` (the time left in the
/// incident's window: one last attempt lands on the deadline).
pub fn retry_delay(
    consecutive_failures: u32,
    seed: u64,
    retry_after: Option<Duration>,
    remaining: Duration,
) -> Duration {
    let delay = apply_retry_after(scheduled_delay(consecutive_failures, seed), retry_after);
    let delay = ceil_to_secs(clamp_visibility(delay)).max(MIN_DELAY);
    if delay > remaining {
        ceil_to_secs(remaining).max(MIN_DELAY)
    } else {
        delay
    }
}

/// Combine the schedule with the endpoint's `Retry-After`: never sooner than the
/// schedule, never later than [`MAX_RETRY_AFTER`] because of the header.
pub fn apply_retry_after(scheduled: Duration, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(asked) => scheduled.max(asked.min(MAX_RETRY_AFTER)),
        None => scheduled,
    }
}

/// Clamp to what one SQS visibility change accepts.
pub fn clamp_visibility(delay: Duration) -> Duration {
    delay.min(SQS_MAX_VISIBILITY)
}

/// A jitter seed for one attempt of one message: stable across Lambda
/// invocations (no process-random hashing), different per attempt.
pub fn seed_for(message_id: &str, attempt: u32) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(b"platformsync/retry-jitter/v1\0");
    hasher.update(message_id.as_bytes());
    hasher.update(attempt.to_be_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Parse a `Retry-After` header value: delay-seconds or an HTTP-date
/// (IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`). A date in the past is a
/// zero delay. `None` for anything unparseable: the header is then ignored and
/// the schedule alone decides.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // An absurdly long number is "very late"; the 2 h clamp handles it.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    Some(since(at, now))
}

/// What the push function does with a batch after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Make the SQS message visible again after this many whole seconds.
    RetryIn(Duration),
    /// The window is over: stop retrying, keep the batch for replay, notify.
    Expire,
}

impl Decision {
    /// The value for SQS `ChangeMessageVisibility` (`VisibilityTimeout`, i32 s).
    pub fn visibility_timeout_secs(&self) -> Option<i32> {
        match self {
            Decision::RetryIn(delay) => Some(i32::try_from(delay.as_secs()).unwrap_or(i32::MAX)),
            Decision::Expire => None,
        }
    }
}

/// A retry that has been scheduled but not yet attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledAttempt {
    /// When the delay was set (the failed attempt had finished).
    #[serde(with = "time::serde::rfc3339")]
    pub decided_at: OffsetDateTime,
    /// The visibility delay that was set.
    #[serde(rename = "delay_ms", with = "duration_ms")]
    pub delay: Duration,
}

impl ScheduledAttempt {
    /// When the attempt should start if PlatformSync is healthy.
    pub fn due_at(&self) -> OffsetDateTime {
        plus(self.decided_at, self.delay)
    }

    /// Lateness above this is our downtime.
    pub fn tolerance(&self) -> Duration {
        LATENESS_TOLERANCE.max(self.delay / 2)
    }
}

/// Delivery history of one batch, stored in DynamoDB between attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptState {
    /// Start of the first attempt: the window is measured from here.
    #[serde(with = "time::serde::rfc3339")]
    pub first_attempt_at: OffsetDateTime,
    /// Start of the latest attempt.
    #[serde(with = "time::serde::rfc3339")]
    pub last_attempt_at: OffsetDateTime,
    /// Attempts started so far (the first one included).
    pub attempts: u32,
    /// Our own downtime credited back to the customer's window.
    #[serde(rename = "credited_ms", with = "duration_ms")]
    pub credited: Duration,
    /// Short description of the latest failure, for operators and notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The retry scheduled by the latest failure, until it is attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<ScheduledAttempt>,
}

impl AttemptState {
    /// State of a batch whose first attempt starts at `now`.
    pub fn first(now: OffsetDateTime) -> Self {
        AttemptState {
            first_attempt_at: now,
            last_attempt_at: now,
            attempts: 1,
            credited: Duration::ZERO,
            last_error: None,
            next_attempt: None,
        }
    }

    /// Record that a retry starts at `now`, crediting our downtime if it starts
    /// much later than scheduled. Returns the time credited by this call.
    ///
    /// The scheduled delay is read from [`AttemptState::next_attempt`], set by
    /// [`on_failure`], so it is persisted with the rest of the state. A retry with
    /// no schedule on record (e.g. the function died mid-attempt and SQS
    /// redelivered on its own) credits nothing: we only credit what we can prove.
    pub fn record_attempt(&mut self, now: OffsetDateTime) -> Duration {
        let mut newly_credited = Duration::ZERO;
        if let Some(scheduled) = self.next_attempt.take() {
            let lateness = since(now, scheduled.due_at());
            if lateness > scheduled.tolerance() {
                newly_credited = lateness;
                self.credited = self.credited.saturating_add(lateness);
            }
        }
        self.attempts = self.attempts.saturating_add(1);
        self.last_attempt_at = now;
        newly_credited
    }

    /// When retrying stops: first attempt + window + credited downtime.
    pub fn deadline(&self, window: Duration) -> OffsetDateTime {
        plus(self.first_attempt_at, window.saturating_add(self.credited))
    }

    /// Keep a failure description, truncated to [`MAX_ERROR_CHARS`] characters.
    /// The caller must pass text that is already free of secrets.
    pub fn record_error(&mut self, error: &str) {
        self.last_error = Some(error.chars().take(MAX_ERROR_CHARS).collect());
    }
}

/// Decide what happens after the latest attempt (started per `state`) failed at
/// `now`; on a retry the schedule is recorded in `state.next_attempt`.
///
/// `retry_after` is the endpoint's `Retry-After`, already parsed
/// ([`parse_retry_after`]); `seed` picks the jitter ([`seed_for`]).
pub fn on_failure(
    state: &mut AttemptState,
    now: OffsetDateTime,
    retry_after: Option<Duration>,
    window: Duration,
    seed: u64,
) -> Decision {
    let deadline = state.deadline(window);
    if now >= deadline {
        state.next_attempt = None;
        return Decision::Expire;
    }
    let delay = scheduled_delay(state.attempts, seed);
    let delay = apply_retry_after(delay, retry_after);
    let delay = ceil_to_secs(clamp_visibility(delay)).max(MIN_DELAY);
    // Past the deadline? Then one last attempt exactly at it (rounded up to the
    // next whole second), so the customer gets the whole window.
    let remaining = since(deadline, now);
    let delay = if delay > remaining {
        ceil_to_secs(remaining).max(MIN_DELAY)
    } else {
        delay
    };
    state.next_attempt = Some(ScheduledAttempt {
        decided_at: now,
        delay,
    });
    Decision::RetryIn(delay)
}

/// `later - earlier`, zero if `later` is not later (clock skew, early redelivery).
fn since(later: OffsetDateTime, earlier: OffsetDateTime) -> Duration {
    Duration::try_from(later - earlier).unwrap_or(Duration::ZERO)
}

/// `at + delay`, saturating at the end of time instead of panicking.
fn plus(at: OffsetDateTime, delay: Duration) -> OffsetDateTime {
    time::Duration::try_from(delay)
        .ok()
        .and_then(|d| at.checked_add(d))
        .unwrap_or_else(|| PrimitiveDateTime::MAX.assume_utc())
}

fn ceil_to_secs(d: Duration) -> Duration {
    let extra = u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(d.as_secs().saturating_add(extra))
}

/// SplitMix64 finaliser: spreads nearby seeds (attempt 3 vs 4) over the range.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Durations as integer milliseconds: readable in the DynamoDB console, unlike
/// serde's default `{secs, nanos}` map (also the incident state's).
pub(crate) mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-10 08:00:00 UTC);
    const MIN: u64 = 60;
    const HOUR: u64 = 3600;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn every_row_of_the_table() {
        let rows = [
            (0, 2),
            (1, 2),
            (2, 5),
            (3, 15),
            (4, 30),
            (5, MIN),
            (6, 2 * MIN),
            (7, 5 * MIN),
            (8, 10 * MIN),
            (9, 30 * MIN),
            (10, HOUR),
            (11, HOUR),
            (100, HOUR),
            (u32::MAX, HOUR),
        ];
        for (failed, expected) in rows {
            assert_eq!(
                base_delay(failed),
                secs(expected),
                "after {failed} failures"
            );
        }
    }

    #[test]
    fn jitter_stays_within_20_percent_and_is_deterministic() {
        for failed in 1..=8 {
            let base = base_delay(failed);
            let (lo, hi) = (base.mul_f64(0.8), base.mul_f64(1.2));
            let mut seen_low = false;
            let mut seen_high = false;
            for seed in 0..2000u64 {
                let d = scheduled_delay(failed, seed);
                assert!(d >= lo && d <= hi, "{d:?} outside [{lo:?}, {hi:?}]");
                assert_eq!(d, scheduled_delay(failed, seed), "same seed, same delay");
                seen_low |= d < base.mul_f64(0.85);
                seen_high |= d > base.mul_f64(1.15);
            }
            assert!(
                seen_low && seen_high,
                "jitter should use the whole +-20 % range"
            );
        }
    }

    #[test]
    fn jitter_never_below_one_second() {
        for seed in 0..100 {
            assert!(jitter(Duration::from_millis(100), seed) >= MIN_DELAY);
            assert!(jitter(Duration::ZERO, seed) >= MIN_DELAY);
        }
    }

    #[test]
    fn seeds_differ_per_attempt_and_message() {
        assert_eq!(seed_for("m-1", 3), seed_for("m-1", 3));
        assert_ne!(seed_for("m-1", 3), seed_for("m-1", 4));
        assert_ne!(seed_for("m-1", 3), seed_for("m-2", 3));
    }

    #[test]
    fn retry_after_never_shortens_and_is_clamped_to_two_hours() {
        let scheduled = secs(5 * MIN);
        assert_eq!(apply_retry_after(scheduled, None), scheduled);
        assert_eq!(apply_retry_after(scheduled, Some(secs(10))), scheduled);
        assert_eq!(
            apply_retry_after(scheduled, Some(secs(90 * MIN))),
            secs(90 * MIN)
        );
        assert_eq!(
            apply_retry_after(scheduled, Some(secs(2 * HOUR))),
            secs(2 * HOUR)
        );
        assert_eq!(
            apply_retry_after(scheduled, Some(secs(9 * HOUR))),
            secs(2 * HOUR)
        );
        assert_eq!(
            apply_retry_after(scheduled, Some(Duration::MAX)),
            secs(2 * HOUR)
        );
    }

    #[test]
    fn retry_after_flows_through_on_failure() {
        let mut state = AttemptState::first(T0);
        let now = T0 + time::Duration::seconds(3);
        let d = on_failure(&mut state, now, Some(secs(45 * MIN)), DEFAULT_WINDOW, 7);
        assert_eq!(d, Decision::RetryIn(secs(45 * MIN)));
        let d = on_failure(&mut state, now, Some(secs(30 * HOUR)), DEFAULT_WINDOW, 7);
        assert_eq!(d, Decision::RetryIn(secs(2 * HOUR)));
        // A Retry-After shorter than the schedule changes nothing.
        let plain = on_failure(&mut state.clone(), now, None, DEFAULT_WINDOW, 7);
        let short = on_failure(&mut state, now, Some(secs(1)), DEFAULT_WINDOW, 7);
        assert_eq!(plain, short);
    }

    #[test]
    fn visibility_is_clamped_to_twelve_hours() {
        assert_eq!(clamp_visibility(secs(13 * HOUR)), SQS_MAX_VISIBILITY);
        assert_eq!(clamp_visibility(Duration::MAX), SQS_MAX_VISIBILITY);
        assert_eq!(clamp_visibility(secs(HOUR)), secs(HOUR));
        assert_eq!(
            Decision::RetryIn(SQS_MAX_VISIBILITY).visibility_timeout_secs(),
            Some(43_200)
        );
        assert_eq!(Decision::Expire.visibility_timeout_secs(), None);
    }

    #[test]
    fn delays_are_whole_seconds() {
        let mut state = AttemptState::first(T0);
        for seed in 0..200 {
            match on_failure(&mut state, T0, None, DEFAULT_WINDOW, seed) {
                Decision::RetryIn(d) => assert_eq!(d.subsec_nanos(), 0),
                Decision::Expire => panic!("must not expire at the first attempt"),
            }
        }
    }

    #[test]
    fn expires_exactly_at_the_window() {
        let mut state = AttemptState::first(T0);
        state.attempts = 25;
        let deadline = T0 + time::Duration::hours(24);
        assert_eq!(state.deadline(DEFAULT_WINDOW), deadline);

        let at = on_failure(&mut state.clone(), deadline, None, DEFAULT_WINDOW, 1);
        assert_eq!(at, Decision::Expire);
        let after = deadline + time::Duration::seconds(1);
        assert_eq!(
            on_failure(&mut state.clone(), after, None, DEFAULT_WINDOW, 1),
            Decision::Expire
        );

        // One millisecond before: a last attempt, at (just after) the deadline.
        let before = deadline - time::Duration::milliseconds(1);
        assert_eq!(
            on_failure(&mut state, before, None, DEFAULT_WINDOW, 1),
            Decision::RetryIn(MIN_DELAY)
        );
    }

    #[test]
    fn last_attempt_lands_on_the_deadline() {
        let mut state = AttemptState::first(T0);
        state.attempts = 20; // 1 h delays now
        let now = T0 + time::Duration::hours(23) + time::Duration::minutes(40);
        let d = on_failure(&mut state, now, None, DEFAULT_WINDOW, 99);
        assert_eq!(d, Decision::RetryIn(secs(20 * MIN)));
        let next = state.next_attempt.map(|s| s.due_at());
        assert_eq!(next, Some(T0 + time::Duration::hours(24)));
    }

    #[test]
    fn custom_window() {
        let mut state = AttemptState::first(T0);
        let window = secs(HOUR);
        // 1 s before the end: the (2 s) delay is cut to the deadline.
        let late = T0 + time::Duration::minutes(59) + time::Duration::seconds(59);
        assert_eq!(
            on_failure(&mut state, late, None, window, 1),
            Decision::RetryIn(secs(1))
        );
        let end = T0 + time::Duration::hours(1);
        assert_eq!(
            on_failure(&mut state, end, None, window, 1),
            Decision::Expire
        );
    }

    #[test]
    fn normal_latency_is_not_credited() {
        let mut state = AttemptState::first(T0);
        let Decision::RetryIn(d) = on_failure(&mut state, T0, None, DEFAULT_WINDOW, 3) else {
            panic!("first failure must retry");
        };
        // 90 s late on a ~30 s delay: within the 2 min tolerance.
        let now = T0 + time::Duration::try_from(d).unwrap() + time::Duration::seconds(90);
        assert_eq!(state.record_attempt(now), Duration::ZERO);
        assert_eq!(state.credited, Duration::ZERO);
        assert_eq!(state.attempts, 2);
        assert_eq!(state.last_attempt_at, now);
        assert!(state.next_attempt.is_none());
    }

    #[test]
    fn a_slow_customer_is_not_our_downtime() {
        // The attempt started at T0 and timed out 3 min later; the retry is
        // scheduled from the failure, so the 3 min are not lateness.
        let mut state = AttemptState::first(T0);
        let failed_at = T0 + time::Duration::minutes(3);
        let Decision::RetryIn(d) = on_failure(&mut state, failed_at, None, DEFAULT_WINDOW, 3)
        else {
            panic!("must retry");
        };
        let next = failed_at + time::Duration::try_from(d).unwrap() + time::Duration::seconds(2);
        assert_eq!(state.record_attempt(next), Duration::ZERO);
    }

    #[test]
    fn a_three_hour_outage_moves_the_deadline_by_three_hours() {
        let mut state = AttemptState::first(T0);
        state.attempts = 10;
        let failed_at = T0 + time::Duration::hours(5);
        let Decision::RetryIn(d) = on_failure(&mut state, failed_at, None, DEFAULT_WINDOW, 11)
        else {
            panic!("must retry");
        };
        let due = failed_at + time::Duration::try_from(d).unwrap();
        let before = state.deadline(DEFAULT_WINDOW);
        // Queue not drained for 3 h: the retry starts 3 h after it was due.
        let credited = state.record_attempt(due + time::Duration::hours(3));
        assert_eq!(credited, secs(3 * HOUR));
        assert_eq!(
            state.deadline(DEFAULT_WINDOW) - before,
            time::Duration::hours(3)
        );
        assert_eq!(
            state.deadline(DEFAULT_WINDOW),
            T0 + time::Duration::hours(27)
        );
        // So at 25 h it still retries instead of expiring.
        let at_25h = T0 + time::Duration::hours(25);
        assert!(matches!(
            on_failure(&mut state, at_25h, None, DEFAULT_WINDOW, 1),
            Decision::RetryIn(_)
        ));
    }

    #[test]
    fn redelivery_without_a_schedule_credits_nothing() {
        let mut state = AttemptState::first(T0);
        assert_eq!(
            state.record_attempt(T0 + time::Duration::hours(6)),
            Duration::ZERO
        );
        assert_eq!(state.attempts, 2);
    }

    #[test]
    fn clock_skew_does_not_panic_or_credit() {
        let mut state = AttemptState::first(T0);
        let _ = on_failure(&mut state, T0, None, DEFAULT_WINDOW, 1);
        assert_eq!(
            state.record_attempt(T0 - time::Duration::hours(1)),
            Duration::ZERO
        );
        let far = PrimitiveDateTime::MAX.assume_utc();
        assert_eq!(
            on_failure(&mut state, far, None, Duration::MAX, 1),
            Decision::Expire
        );
    }

    /// Simulate a healthy PlatformSync and an endpoint that never answers 200.
    fn simulate(window: Duration, message_id: &str) -> (u32, OffsetDateTime) {
        let mut state = AttemptState::first(T0);
        let mut now = T0;
        loop {
            let seed = seed_for(message_id, state.attempts);
            match on_failure(&mut state, now, None, window, seed) {
                Decision::RetryIn(d) => {
                    now += time::Duration::try_from(d).unwrap();
                    state.record_attempt(now);
                }
                Decision::Expire => return (state.attempts, now),
            }
            assert!(state.attempts < 1000, "runaway schedule");
        }
    }

    #[test]
    fn attempts_in_24_hours() {
        let (attempts, expired_at) = simulate(DEFAULT_WINDOW, "message-x");
        println!("attempts in 24 h: {attempts}, expired at {expired_at}");
        assert!((32..=35).contains(&attempts), "{attempts} attempts");
        assert_eq!(expired_at, T0 + time::Duration::hours(24));
        for i in 0..50 {
            let (attempts, _) = simulate(DEFAULT_WINDOW, &format!("message-{i}"));
            assert!((32..=36).contains(&attempts), "{attempts} attempts");
        }
    }

    #[test]
    fn retry_after_parsing() {
        let now = datetime!(1994-11-06 08:49:00 UTC);
        assert_eq!(parse_retry_after("120", now), Some(secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(secs(37))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-5", "1.5", "soon", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut state = AttemptState::first(T0);
        state.record_error("HTTP 503: maintenance");
        let _ = on_failure(&mut state, T0, None, DEFAULT_WINDOW, 5);
        state.credited = Duration::from_millis(1500);
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains("\"credited_ms\":1500"), "{json}");
        assert!(
            json.contains("\"first_attempt_at\":\"2026-01-10T08:00:00Z\""),
            "{json}"
        );
        let back: AttemptState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn last_error_is_truncated() {
        let mut state = AttemptState::first(T0);
        state.record_error(&"é".repeat(5000));
        assert_eq!(
            state.last_error.as_deref().map(|e| e.chars().count()),
            Some(MAX_ERROR_CHARS)
        );
    }
}
