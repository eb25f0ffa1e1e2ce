//! The outcome policy: what an attempt's result does to the endpoint's
//! incident and to the batch. Pure: no I/O, no clock (callers pass `now`),
//! so every (attempt result x incident state) case is unit-tested below.
//!
//! The rules (docs/delivery.md states them for customers):
//!
//! - **Before an attempt** ([`gate`]): a disabled endpoint's batch is parked,
//!   not attempted. While the endpoint's incident is expired, a batch is
//!   parked at once, except one probe attempt per probe interval.
//! - **Delivered (200)**: the endpoint's consecutive failures and the
//!   incident's window reset. "Recovered" goes out only if the incident's
//!   "failing" notice did, after [`Rules::recovered_after_successes`] 200s in
//!   a row, or at the first 200 after the incident expired (a successful
//!   probe); an incident nobody was told about closes silently.
//! - **Failed** (anything but 200 that is not a refusal, see below): the
//!   endpoint's consecutive failures grow, the incident opens (its window
//!   starts at this attempt) or goes on. "Failing" goes out once per incident
//!   after [`Rules::failing_after_failures`] failures in a row or
//!   [`Rules::failing_after`] of failing. When the window (plus credited
//!   downtime of ours) is over, the incident expires: this batch and every
//!   batch queued after it are parked, "expired" goes out once. Otherwise the
//!   batch is retried after the endpoint's delay (seconds first, up to the
//!   hourly ceiling), never past the window's end.
//! - **Refused** (a 4xx other than 401/403/408/429: the endpoint answers, it
//!   refuses this content): the incident is untouched; the batch is retried
//!   on the schedule of its own refusals, and after
//!   [`Rules::split_after_refusals`] in a row it is split.
//!
//! Failures of our own AWS calls never reach this policy: they are not an
//! attempt (the handler backs off without touching the state).

use std::time::Duration;

use platformsync_delivery::incident::{EndpointState, Incident, plus, since};
use platformsync_delivery::retry::{
    DEFAULT_WINDOW, MAX_ERROR_CHARS, ScheduledAttempt, retry_delay,
};
use platformsync_delivery::split::SPLIT_AFTER_REFUSALS;
use time::OffsetDateTime;

/// How long an expired endpoint waits between probe attempts.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// Lateness of a scheduled retry below max(this, half its delay) is normal
/// queue latency, not our downtime.
pub const DEFAULT_LATENESS_TOLERANCE: Duration = Duration::from_secs(30);

/// The policy's parameters; [`Rules::default`] is production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The incident's window (delivery rule 2: 24 h).
    pub window: Duration,
    /// While expired: at most one probe attempt this often.
    pub probe_interval: Duration,
    /// "Failing" after this many failed attempts in a row...
    pub failing_after_failures: u32,
    /// ... or this long failing, whichever comes first.
    pub failing_after: Duration,
    /// "Recovered" after this many 200s in a row.
    pub recovered_after_successes: u32,
    /// A batch refused this many times in a row is split.
    pub split_after_refusals: u32,
    pub lateness_tolerance: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            window: DEFAULT_WINDOW,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            failing_after_failures: 3,
            failing_after: Duration::from_secs(5 * 60),
            recovered_after_successes: 3,
            split_after_refusals: SPLIT_AFTER_REFUSALS,
            lateness_tolerance: DEFAULT_LATENESS_TOLERANCE,
        }
    }
}

/// Why a batch is parked (kept for operations to list and replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParkReason {
    /// The endpoint's incident outlasted the window.
    Expired,
    /// The endpoint is disabled.
    Disabled,
    /// The endpoint refused this transaction (after a split).
    Refused,
    /// The endpoint is resuming: a new batch waits behind the replayed
    /// backlog.
    Behind,
}

impl ParkReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ParkReason::Expired => "expired",
            ParkReason::Disabled => "disabled",
            ParkReason::Refused => "refused",
            ParkReason::Behind => "resuming",
        }
    }
}

/// What to do with a batch before attempting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Attempt,
    /// The endpoint is expired and a probe is due: attempt this one.
    Probe,
    Park(ParkReason),
}

/// What an attempt came to (failures of ours are not attempts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// HTTP 200.
    Delivered,
    /// Any other answer, no answer, a timeout, a refused address.
    Failed {
        error: String,
        retry_after: Option<Duration>,
    },
    /// A 4xx other than 401/403/408/429: the content is refused.
    Refused { error: String },
}

/// Notices to the customer's recipients and support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Notice {
    Failing,
    Expired,
    Recovered,
}

/// What becomes of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Delivered: acknowledge (delete) it.
    Acknowledge,
    /// Try again after this delay (the group waits behind it).
    RetryIn(Duration),
    /// Keep it aside, acknowledge it.
    Park(ParkReason),
    /// Split it to isolate what the endpoint refuses.
    Split,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effects {
    pub next: Next,
    /// In the order they are to be sent.
    pub notices: Vec<Notice>,
    /// The incident expired now: the batches after this one are parked too.
    pub park_rest: bool,
}

impl Effects {
    fn of(next: Next) -> Self {
        Effects {
            next,
            notices: Vec::new(),
            park_rest: false,
        }
    }
}

/// Where a batch stands against its endpoint's parked backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backlog {
    /// The endpoint is not resuming: no backlog to keep order with.
    Clear,
    /// The endpoint is resuming and this batch is new: it belongs behind the
    /// backlog being replayed, so it is parked (in order) and replayed after.
    Behind,
    /// A batch replayed from the backlog: delivered (resuming or not).
    Replayed,
}

/// A batch's place: `resuming` is the endpoint's health item's flag,
/// `replayed` the message's mark.
pub fn backlog(resuming: bool, replayed: bool) -> Backlog {
    match (resuming, replayed) {
        (_, true) => Backlog::Replayed,
        (true, false) => Backlog::Behind,
        (false, false) => Backlog::Clear,
    }
}

/// Before an attempt: attempt, probe or park. A disabled endpoint parks
/// everything; an expired one parks all but one probe per interval, also
/// while resuming (the replay loop stops when the endpoint expires again:
/// without probes it could never be seen to recover); a resuming one parks
/// new batches behind its backlog.
pub fn gate(state: &EndpointState, disabled: bool, backlog: Backlog, now: OffsetDateTime) -> Gate {
    if disabled {
        return Gate::Park(ParkReason::Disabled);
    }
    if state.is_expired() {
        return match state.next_probe_at {
            Some(at) if now < at => Gate::Park(ParkReason::Expired),
            _ => Gate::Probe,
        };
    }
    if backlog == Backlog::Behind {
        return Gate::Park(ParkReason::Behind);
    }
    Gate::Attempt
}

/// A healthy endpoint's `LastDeliveredAt` is written at most this often
/// when a delivery changes nothing else (see [`needs_save`]).
pub const DELIVERED_AT_REFRESH: Duration = Duration::from_secs(60);

/// Whether the state after a batch must be written, `stored` being the state
/// as the batch found it. A delivery to a healthy endpoint with no incident
/// changes only its delivery time and success count (which matters only
/// while an incident is open): that write is skipped, one call less per
/// delivered batch, unless the stored delivery time is older than
/// `refresh` (people read it in `status`). Anything else is written.
pub fn needs_save(
    stored: &EndpointState,
    after: &EndpointState,
    now: OffsetDateTime,
    refresh: Duration,
) -> bool {
    if stored.incident.is_some() || after.incident.is_some() {
        return stored != after;
    }
    let fresh = stored
        .last_delivered_at
        .is_some_and(|at| since(now, at) < refresh);
    if !fresh {
        return stored != after;
    }
    let mut a = stored.clone();
    let mut b = after.clone();
    for s in [&mut a, &mut b] {
        s.consecutive_successes = 0;
        s.last_delivered_at = None;
    }
    a != b
}

fn truncated(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}

/// Applies an attempt's result to the endpoint's state. `started_at` is when
/// the attempt started (the window of a new incident starts there), `now`
/// when it ended; `seed` picks the jitter.
pub fn on_attempt(
    state: &mut EndpointState,
    message_id: &str,
    started_at: OffsetDateTime,
    result: &AttemptResult,
    now: OffsetDateTime,
    seed: u64,
    rules: &Rules,
) -> Effects {
    let expired = state.is_expired();
    match result {
        AttemptResult::Delivered => delivered(state, now, rules),
        AttemptResult::Failed { .. } | AttemptResult::Refused { .. } if expired => {
            // A failed probe: parked like the rest, next probe later.
            let error = match result {
                AttemptResult::Failed { error, .. } | AttemptResult::Refused { error } => error,
                AttemptResult::Delivered => "",
            };
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            state.consecutive_successes = 0;
            state.last_error = Some(truncated(error));
            state.last_failure_at = Some(now);
            state.next_probe_at = Some(plus(now, rules.probe_interval));
            Effects::of(Next::Park(ParkReason::Expired))
        }
        AttemptResult::Failed { error, retry_after } => {
            failed(state, started_at, error, *retry_after, now, seed, rules)
        }
        AttemptResult::Refused { error } => {
            let times = state.refusals_of(message_id).saturating_add(1);
            state.refusal = Some(platformsync_delivery::incident::Refusal {
                message_id: message_id.to_owned(),
                times,
            });
            state.last_error = Some(truncated(error));
            state.last_failure_at = Some(now);
            if times >= rules.split_after_refusals {
                Effects::of(Next::Split)
            } else {
                Effects::of(Next::RetryIn(retry_delay(times, seed, None, Duration::MAX)))
            }
        }
    }
}

fn delivered(state: &mut EndpointState, now: OffsetDateTime, rules: &Rules) -> Effects {
    state.consecutive_failures = 0;
    state.consecutive_successes = state.consecutive_successes.saturating_add(1);
    state.failing_since = None;
    state.credited = Duration::ZERO;
    state.next_attempt = None;
    state.next_probe_at = None;
    state.refusal = None;
    state.head = None;
    state.last_delivered_at = Some(now);
    let mut effects = Effects::of(Next::Acknowledge);
    if let Some(incident) = &mut state.incident {
        incident.expired_at = None;
        if !incident.failing_notified && !incident.expired_notified {
            // Nobody was told it failed: nothing to recover from.
            state.incident = None;
        } else if incident.expired_notified
            || state.consecutive_successes >= rules.recovered_after_successes
        {
            effects.notices.push(Notice::Recovered);
            state.incident = None;
        }
    }
    effects
}

fn failed(
    state: &mut EndpointState,
    started_at: OffsetDateTime,
    error: &str,
    retry_after: Option<Duration>,
    now: OffsetDateTime,
    seed: u64,
    rules: &Rules,
) -> Effects {
    state.consecutive_failures = state.consecutive_failures.saturating_add(1);
    state.consecutive_successes = 0;
    let failing_since = *state.failing_since.get_or_insert(started_at);
    state.last_error = Some(truncated(error));
    state.last_failure_at = Some(now);
    let deadline = state
        .deadline(rules.window)
        .unwrap_or_else(|| plus(failing_since, rules.window));
    let failures = state.consecutive_failures;
    let incident = state.incident.get_or_insert_with(|| Incident::opened(now));
    let mut notices = Vec::new();
    if now >= deadline {
        incident.expired_at = Some(now);
        if !incident.failing_notified {
            incident.failing_notified = true;
            notices.push(Notice::Failing);
        }
        if !incident.expired_notified {
            incident.expired_notified = true;
            notices.push(Notice::Expired);
        }
        state.next_attempt = None;
        state.next_probe_at = Some(plus(now, rules.probe_interval));
        return Effects {
            next: Next::Park(ParkReason::Expired),
            notices,
            park_rest: true,
        };
    }
    if !incident.failing_notified
        && (failures >= rules.failing_after_failures
            || since(now, failing_since) >= rules.failing_after)
    {
        incident.failing_notified = true;
        notices.push(Notice::Failing);
    }
    let delay = retry_delay(failures, seed, retry_after, since(deadline, now));
    state.next_attempt = Some(ScheduledAttempt {
        decided_at: now,
        delay,
    });
    Effects {
        next: Next::RetryIn(delay),
        notices,
        park_rest: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platformsync_delivery::incident::Phase;
    use platformsync_delivery::retry::{CEILING, SCHEDULE};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-10 08:00:00 UTC);

    fn at(secs: i64) -> OffsetDateTime {
        T0 + time::Duration::seconds(secs)
    }

    fn rules() -> Rules {
        Rules {
            window: Duration::from_secs(3600),
            ..Rules::default()
        }
    }

    fn failed() -> AttemptResult {
        AttemptResult::Failed {
            error: "HTTP 503".into(),
            retry_after: None,
        }
    }

    fn refused() -> AttemptResult {
        AttemptResult::Refused {
            error: "HTTP 422: bad".into(),
        }
    }

    /// The incident states the policy distinguishes, each at `at(100)`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Case {
        Healthy,
        /// One failure, nobody told yet.
        Failing,
        /// Two failures: the next one is the third.
        FailingTwice,
        FailingNotified,
        /// Failing notified, two 200s since: the next is the third.
        Recovering,
        /// The window ends before the next attempt ends.
        AtDeadline,
        /// Expired, probe due.
        ExpiredProbeDue,
        /// Expired, probe not due.
        ExpiredWaiting,
        /// Refused twice already (the next refusal splits).
        RefusedTwice,
    }

    const CASES: [Case; 9] = [
        Case::Healthy,
        Case::Failing,
        Case::FailingTwice,
        Case::FailingNotified,
        Case::Recovering,
        Case::AtDeadline,
        Case::ExpiredProbeDue,
        Case::ExpiredWaiting,
        Case::RefusedTwice,
    ];

    fn state(case: Case) -> EndpointState {
        let mut incident = Incident::opened(at(0));
        let mut s = EndpointState::default();
        let failing = |s: &mut EndpointState, n: u32| {
            s.consecutive_failures = n;
            s.failing_since = Some(at(0));
        };
        match case {
            Case::Healthy => {}
            Case::Failing => {
                failing(&mut s, 1);
                s.incident = Some(incident);
            }
            Case::FailingTwice => {
                failing(&mut s, 2);
                s.incident = Some(incident);
            }
            Case::FailingNotified => {
                failing(&mut s, 5);
                incident.failing_notified = true;
                s.incident = Some(incident);
            }
            Case::Recovering => {
                s.consecutive_successes = 2;
                incident.failing_notified = true;
                s.incident = Some(incident);
            }
            Case::AtDeadline => {
                failing(&mut s, 20);
                s.failing_since = Some(at(100) - time::Duration::seconds(3600));
                incident.failing_notified = true;
                s.incident = Some(incident);
            }
            Case::ExpiredProbeDue | Case::ExpiredWaiting => {
                failing(&mut s, 30);
                incident.failing_notified = true;
                incident.expired_notified = true;
                incident.expired_at = Some(at(10));
                s.incident = Some(incident);
                s.next_probe_at = Some(if case == Case::ExpiredProbeDue {
                    at(50)
                } else {
                    at(500)
                });
            }
            Case::RefusedTwice => {
                s.refusal = Some(platformsync_delivery::incident::Refusal {
                    message_id: "m".into(),
                    times: 2,
                });
            }
        }
        s
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Delivered,
        Failed,
        Refused,
    }

    /// Expected (gate, next, notices, phase after) for every case x result.
    fn expected(case: Case, kind: Kind) -> (Gate, &'static str, Vec<Notice>, Phase) {
        use Notice::*;
        let gate = match case {
            Case::ExpiredProbeDue => Gate::Probe,
            Case::ExpiredWaiting => Gate::Park(ParkReason::Expired),
            _ => Gate::Attempt,
        };
        let (next, notices, phase) = match (case, kind) {
            (
                Case::Healthy | Case::Failing | Case::FailingTwice | Case::RefusedTwice,
                Kind::Delivered,
            ) => ("ack", vec![], Phase::Healthy),
            (Case::FailingNotified, Kind::Delivered) => ("ack", vec![], Phase::FailingNotified),
            (Case::Recovering, Kind::Delivered) => ("ack", vec![Recovered], Phase::Healthy),
            (Case::AtDeadline, Kind::Delivered) => ("ack", vec![], Phase::FailingNotified),
            (Case::ExpiredProbeDue | Case::ExpiredWaiting, Kind::Delivered) => {
                ("ack", vec![Recovered], Phase::Healthy)
            }
            (Case::Healthy | Case::Failing | Case::RefusedTwice, Kind::Failed) => {
                ("retry", vec![], Phase::Failing)
            }
            (Case::FailingTwice, Kind::Failed) => ("retry", vec![Failing], Phase::FailingNotified),
            (Case::FailingNotified | Case::Recovering, Kind::Failed) => {
                ("retry", vec![], Phase::FailingNotified)
            }
            (Case::AtDeadline, Kind::Failed) => ("park", vec![Expired], Phase::Expired),
            (Case::ExpiredProbeDue | Case::ExpiredWaiting, Kind::Failed | Kind::Refused) => {
                ("park", vec![], Phase::Expired)
            }
            (Case::Healthy, Kind::Refused) => ("retry", vec![], Phase::Healthy),
            (Case::Failing | Case::FailingTwice, Kind::Refused) => {
                ("retry", vec![], Phase::Failing)
            }
            (Case::FailingNotified | Case::Recovering | Case::AtDeadline, Kind::Refused) => {
                ("retry", vec![], Phase::FailingNotified)
            }
            (Case::RefusedTwice, Kind::Refused) => ("split", vec![], Phase::Healthy),
        };
        (gate, next, notices, phase)
    }

    #[test]
    fn every_attempt_result_in_every_incident_state() {
        let now = at(100);
        for case in CASES {
            for kind in [Kind::Delivered, Kind::Failed, Kind::Refused] {
                let (gate_expected, next_expected, notices_expected, phase_expected) =
                    expected(case, kind);
                let mut s = state(case);
                assert_eq!(
                    gate(&s, false, Backlog::Clear, now),
                    gate_expected,
                    "{case:?}"
                );
                assert_eq!(
                    gate(&s, true, Backlog::Clear, now),
                    Gate::Park(ParkReason::Disabled),
                    "{case:?}: disabled parks"
                );
                let result = match kind {
                    Kind::Delivered => AttemptResult::Delivered,
                    Kind::Failed => failed(),
                    Kind::Refused => refused(),
                };
                let e = on_attempt(&mut s, "m", now, &result, now, 1, &rules());
                let next = match e.next {
                    Next::Acknowledge => "ack",
                    Next::RetryIn(_) => "retry",
                    Next::Park(ParkReason::Expired) => "park",
                    Next::Park(_) => "park-other",
                    Next::Split => "split",
                };
                assert_eq!(next, next_expected, "{case:?} x {kind:?}");
                assert_eq!(e.notices, notices_expected, "{case:?} x {kind:?}");
                assert_eq!(s.phase(), phase_expected, "{case:?} x {kind:?}");
                assert_eq!(
                    e.park_rest,
                    case == Case::AtDeadline && kind == Kind::Failed,
                    "{case:?} x {kind:?}: only a fresh expiry parks the rest"
                );
            }
        }
    }

    /// Every incident state x every place against the backlog x enabled or
    /// not: a disabled endpoint parks everything; an expired one probes or
    /// parks as expired, resuming or not (so it can be seen to recover); a
    /// resuming one parks new batches behind its backlog in every other
    /// state; a replayed batch gets the gate a batch of a non-resuming
    /// endpoint gets.
    #[test]
    fn resuming_parks_new_batches_and_delivers_replayed_ones_in_every_state() {
        let now = at(100);
        assert_eq!(backlog(false, false), Backlog::Clear);
        assert_eq!(backlog(true, false), Backlog::Behind);
        assert_eq!(backlog(true, true), Backlog::Replayed);
        assert_eq!(backlog(false, true), Backlog::Replayed);
        for case in CASES {
            let s = state(case);
            let (clear, ..) = expected(case, Kind::Delivered);
            for disabled in [false, true] {
                for place in [Backlog::Clear, Backlog::Behind, Backlog::Replayed] {
                    let want = match (disabled, place) {
                        (true, _) => Gate::Park(ParkReason::Disabled),
                        (false, Backlog::Behind) if s.is_expired() => clear,
                        (false, Backlog::Behind) => Gate::Park(ParkReason::Behind),
                        (false, Backlog::Clear | Backlog::Replayed) => clear,
                    };
                    assert_eq!(
                        gate(&s, disabled, place, now),
                        want,
                        "{case:?} disabled={disabled} {place:?}"
                    );
                }
            }
        }
        assert_eq!(ParkReason::Behind.as_str(), "resuming");
    }

    /// The health write is skipped only for a delivery to a healthy endpoint
    /// whose stored delivery time is fresh; every incident state, every
    /// failure and refusal, and a stale delivery time are written.
    #[test]
    fn a_delivery_that_changes_nothing_material_is_not_written() {
        let r = rules();
        let now = at(100);
        let refresh = DELIVERED_AT_REFRESH;
        for case in CASES {
            for kind in [Kind::Delivered, Kind::Failed, Kind::Refused] {
                for last_delivered in [None, Some(at(90)), Some(at(0))] {
                    let mut stored = state(case);
                    stored.last_delivered_at = last_delivered;
                    let mut after = stored.clone();
                    after.start_attempt("m", now, r.lateness_tolerance);
                    let result = match kind {
                        Kind::Delivered => AttemptResult::Delivered,
                        Kind::Failed => failed(),
                        Kind::Refused => refused(),
                    };
                    on_attempt(&mut after, "m", now, &result, now, 1, &r);
                    let skipped = case == Case::Healthy
                        && kind == Kind::Delivered
                        && last_delivered == Some(at(90));
                    assert_eq!(
                        needs_save(&stored, &after, now, refresh),
                        !skipped,
                        "{case:?} x {kind:?}, delivered at {last_delivered:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn at_most_one_notice_of_each_kind_per_incident() {
        let r = rules();
        let mut s = EndpointState::default();
        let mut sent = Vec::new();
        let mut now = at(0);
        // Fails for the whole window and beyond, probes included.
        for _ in 0..200 {
            let g = gate(&s, false, Backlog::Clear, now);
            if g == Gate::Park(ParkReason::Expired) {
                now += time::Duration::seconds(60);
                continue;
            }
            let e = on_attempt(&mut s, "m", now, &failed(), now, 3, &r);
            sent.extend(e.notices);
            now += time::Duration::seconds(60);
        }
        assert_eq!(sent, vec![Notice::Failing, Notice::Expired]);
        // A probe succeeds.
        now += time::Duration::seconds(3600);
        assert_eq!(gate(&s, false, Backlog::Clear, now), Gate::Probe);
        let e = on_attempt(&mut s, "m", now, &AttemptResult::Delivered, now, 3, &r);
        assert_eq!(e.notices, vec![Notice::Recovered]);
        assert_eq!(s.phase(), Phase::Healthy);
    }

    #[test]
    fn flapping_sends_nothing() {
        // Every third attempt fails, forever: never three failures in a row,
        // and a 200 restarts the window.
        let r = rules();
        let mut s = EndpointState::default();
        let mut sent = Vec::new();
        for i in 0..3000i64 {
            let result = if i % 3 == 2 {
                failed()
            } else {
                AttemptResult::Delivered
            };
            sent.extend(on_attempt(&mut s, "m", at(i * 10), &result, at(i * 10), 1, &r).notices);
        }
        assert!(sent.is_empty(), "{sent:?}");
    }

    #[test]
    fn a_success_resets_the_escalation() {
        let r = rules();
        let mut s = EndpointState::default();
        let delay = |e: Effects| match e.next {
            Next::RetryIn(d) => d,
            other => panic!("{other:?}"),
        };
        let base = |n: i64| SCHEDULE[n as usize];
        for n in 0..4 {
            let d = delay(on_attempt(&mut s, "a", at(n), &failed(), at(n), 9, &r));
            assert!(
                d >= base(n).mul_f64(0.79) && d <= base(n).mul_f64(1.21),
                "{n}: {d:?}"
            );
        }
        on_attempt(
            &mut s,
            "a",
            at(10),
            &AttemptResult::Delivered,
            at(10),
            9,
            &r,
        );
        // Another batch's failure starts from the first step again.
        let d = delay(on_attempt(&mut s, "b", at(11), &failed(), at(11), 9, &r));
        assert!(d <= Duration::from_secs(3), "{d:?}");
    }

    #[test]
    fn an_endpoint_failing_everything_reaches_the_ceiling_then_expires() {
        let r = Rules::default();
        let mut s = EndpointState::default();
        let mut now = T0;
        let mut delays = Vec::new();
        loop {
            s.start_attempt("m", now, r.lateness_tolerance);
            let e = on_attempt(&mut s, "m", now, &failed(), now, 5, &r);
            match e.next {
                Next::RetryIn(d) => {
                    delays.push(d);
                    now += time::Duration::try_from(d).unwrap();
                }
                Next::Park(ParkReason::Expired) => break,
                other => panic!("{other:?}"),
            }
        }
        assert!(
            delays.iter().any(|d| *d >= CEILING.mul_f64(0.8)),
            "{delays:?}"
        );
        assert!(delays.iter().all(|d| *d <= CEILING.mul_f64(1.2)));
        assert_eq!(
            now,
            T0 + time::Duration::hours(24),
            "expires at the window's end"
        );
        assert!(
            (31..=36).contains(&delays.len()),
            "{} attempts",
            delays.len() + 1
        );
    }

    #[test]
    fn our_downtime_moves_the_deadline() {
        let r = rules();
        let mut s = EndpointState::default();
        s.start_attempt("m", at(0), r.lateness_tolerance);
        let Next::RetryIn(d) = on_attempt(&mut s, "m", at(0), &failed(), at(0), 1, &r).next else {
            panic!()
        };
        // Our outage: the retry starts 2 h after it was due.
        let due = at(0) + time::Duration::try_from(d).unwrap();
        let start = due + time::Duration::hours(2);
        assert_eq!(
            s.start_attempt("m", start, r.lateness_tolerance),
            Duration::from_secs(7200)
        );
        let e = on_attempt(&mut s, "m", start, &failed(), start, 1, &r);
        assert!(matches!(e.next, Next::RetryIn(_)), "not expired: {e:?}");
        assert_eq!(s.deadline(r.window), Some(at(3600 + 7200)));
    }

    #[test]
    fn failing_after_five_minutes_even_without_three_failures() {
        let r = rules();
        let mut s = EndpointState::default();
        assert!(
            on_attempt(&mut s, "m", at(0), &failed(), at(180), 1, &r)
                .notices
                .is_empty()
        );
        let e = on_attempt(&mut s, "m", at(190), &failed(), at(370), 1, &r);
        assert_eq!(e.notices, vec![Notice::Failing]);
    }

    #[test]
    fn refusals_split_after_three_and_do_not_open_an_incident() {
        let r = rules();
        let mut s = EndpointState::default();
        for _ in 0..2 {
            assert!(matches!(
                on_attempt(&mut s, "m", at(0), &refused(), at(0), 1, &r).next,
                Next::RetryIn(d) if d <= Duration::from_secs(6)
            ));
        }
        assert_eq!(
            on_attempt(&mut s, "m", at(0), &refused(), at(0), 1, &r).next,
            Next::Split
        );
        assert_eq!(s.phase(), Phase::Healthy);
        // Another batch's refusal starts its own count.
        assert!(matches!(
            on_attempt(&mut s, "n", at(0), &refused(), at(0), 1, &r).next,
            Next::RetryIn(_)
        ));
    }
}
