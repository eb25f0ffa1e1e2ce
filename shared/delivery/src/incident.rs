//! An endpoint's incident state (delivery rules 2, 3 and 7): what the push
//! function remembers about one endpoint between attempts.
//!
//! One value per endpoint, stored in the endpoint's health item and changed
//! once per attempt. Batches of one endpoint are attempted one at a time (the
//! delivery queue's FIFO group is the endpoint), so the state is the
//! endpoint's, not a batch's:
//!
//! - **The retry delay** follows the endpoint's consecutive failed attempts
//!   across its batches; a 200 resets them ([`crate::retry::retry_delay`]).
//! - **The window** belongs to the incident: it runs from `failing_since` (the
//!   first failed attempt since the endpoint's last 200) for the window plus
//!   the time credited for our own downtime. When it ends, every batch queued
//!   for the endpoint expires together.
//! - **Notices** are claimed here, at most one of each kind per incident.
//!
//! Pure data and arithmetic: the decisions are the push function's policy.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::retry::ScheduledAttempt;

/// One incident: from an endpoint's first failed attempt until it recovers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// When it opened; also its id in notifications.
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    /// The "failing" notice of this incident was sent (claimed).
    #[serde(default)]
    pub failing_notified: bool,
    /// The window ended: batches are parked, not retried.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expired_at: Option<OffsetDateTime>,
    /// The "expired" notice of this incident was sent (claimed).
    #[serde(default)]
    pub expired_notified: bool,
}

impl Incident {
    pub fn opened(at: OffsetDateTime) -> Self {
        Incident {
            opened_at: at,
            failing_notified: false,
            expired_at: None,
            expired_notified: false,
        }
    }

    /// The id notifications carry (RFC 3339 of the opening).
    pub fn id(&self) -> String {
        rfc3339(self.opened_at)
    }
}

/// The batch at the head of the endpoint's queue and its attempts so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub message_id: String,
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub first_attempt_at: OffsetDateTime,
}

/// A batch the endpoint refused with a client error (4xx other than
/// 401/403/408/429), and how many times in a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub message_id: String,
    pub times: u32,
}

/// What push remembers about one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EndpointState {
    /// Failed attempts since the last 200, across batches.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// 200s since the last failed attempt.
    #[serde(default)]
    pub consecutive_successes: u32,
    /// Start of the first failed attempt since the last 200: the window's start.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub failing_since: Option<OffsetDateTime>,
    /// Our own downtime credited to the window since `failing_since`.
    #[serde(default, rename = "credited_ms", with = "crate::retry::duration_ms")]
    pub credited: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Incident>,
    /// The retry scheduled after the latest failure, until it is attempted:
    /// lateness beyond the tolerance is our downtime, credited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<ScheduledAttempt>,
    /// While expired: no probe attempt before this.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_probe_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Head>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// Latest failure, redacted (never a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_failure_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_delivered_at: Option<OffsetDateTime>,
}

/// Where an endpoint stands, as operators and the policy's tests name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// No incident.
    Healthy,
    /// An incident whose "failing" notice has not gone out (yet).
    Failing,
    /// An incident whose "failing" notice went out.
    FailingNotified,
    /// The incident's window ended: batches are parked.
    Expired,
}

impl EndpointState {
    pub fn phase(&self) -> Phase {
        match &self.incident {
            None => Phase::Healthy,
            Some(i) if i.expired_at.is_some() => Phase::Expired,
            Some(i) if i.failing_notified => Phase::FailingNotified,
            Some(_) => Phase::Failing,
        }
    }

    pub fn is_expired(&self) -> bool {
        self.phase() == Phase::Expired
    }

    /// When the incident's window ends: failing since + window + credited.
    pub fn deadline(&self, window: Duration) -> Option<OffsetDateTime> {
        self.failing_since
            .map(|since| plus(since, window.saturating_add(self.credited)))
    }

    /// An attempt starts at `now`: credits the lateness of the scheduled
    /// retry beyond `max(tolerance, delay / 2)` (our downtime: the function
    /// was not running, or our own AWS calls were failing) while a window is
    /// running, and tracks the head batch's attempts. Returns the credit.
    pub fn start_attempt(
        &mut self,
        message_id: &str,
        now: OffsetDateTime,
        tolerance: Duration,
    ) -> Duration {
        let mut credited = Duration::ZERO;
        if let Some(scheduled) = self.next_attempt.take()
            && self.failing_since.is_some()
        {
            let lateness = since(now, scheduled.due_at());
            if lateness > tolerance.max(scheduled.delay / 2) {
                credited = lateness;
                self.credited = self.credited.saturating_add(lateness);
            }
        }
        match &mut self.head {
            Some(head) if head.message_id == message_id => {
                head.attempts = head.attempts.saturating_add(1)
            }
            _ => {
                self.head = Some(Head {
                    message_id: message_id.to_owned(),
                    attempts: 1,
                    first_attempt_at: now,
                })
            }
        }
        credited
    }

    /// Attempts of `message_id` so far (the current one included).
    pub fn attempts_of(&self, message_id: &str) -> u32 {
        self.head
            .as_ref()
            .filter(|h| h.message_id == message_id)
            .map_or(0, |h| h.attempts)
    }

    /// Consecutive refusals of `message_id`.
    pub fn refusals_of(&self, message_id: &str) -> u32 {
        self.refusal
            .as_ref()
            .filter(|r| r.message_id == message_id)
            .map_or(0, |r| r.times)
    }

    /// An operator resumed the endpoint: delivery starts again at once and
    /// the incident's window starts afresh; the next 200 closes the incident
    /// with a "recovered" notice (its "expired" notice went out).
    pub fn resume(&mut self) {
        if let Some(incident) = &mut self.incident {
            incident.expired_at = None;
        }
        self.failing_since = None;
        self.credited = Duration::ZERO;
        self.consecutive_failures = 0;
        self.next_probe_at = None;
        self.next_attempt = None;
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `later - earlier`, zero if `later` is not later.
pub fn since(later: OffsetDateTime, earlier: OffsetDateTime) -> Duration {
    Duration::try_from(later - earlier).unwrap_or(Duration::ZERO)
}

/// `at + d`, saturating instead of panicking.
pub fn plus(at: OffsetDateTime, d: Duration) -> OffsetDateTime {
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| at.checked_add(d))
        .unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-10 08:00:00 UTC);

    #[test]
    fn lateness_is_credited_only_while_a_window_runs() {
        let mut s = EndpointState {
            failing_since: Some(T0),
            next_attempt: Some(ScheduledAttempt {
                decided_at: T0,
                delay: Duration::from_secs(2),
            }),
            ..Default::default()
        };
        let late = T0 + time::Duration::seconds(62);
        assert_eq!(
            s.start_attempt("m", late, Duration::from_secs(30)),
            Duration::from_secs(60)
        );
        assert_eq!(
            s.deadline(Duration::from_secs(100)),
            Some(T0 + time::Duration::seconds(160))
        );
        // On time: nothing.
        s.next_attempt = Some(ScheduledAttempt {
            decided_at: late,
            delay: Duration::from_secs(5),
        });
        assert_eq!(
            s.start_attempt(
                "m",
                late + time::Duration::seconds(10),
                Duration::from_secs(30)
            ),
            Duration::ZERO
        );
        assert_eq!(s.attempts_of("m"), 2);
        assert_eq!(s.attempts_of("other"), 0);
    }

    #[test]
    fn state_round_trips_and_old_items_read() {
        let mut s = EndpointState {
            incident: Some(Incident::opened(T0)),
            failing_since: Some(T0),
            credited: Duration::from_millis(1500),
            ..Default::default()
        };
        s.start_attempt("m", T0, Duration::ZERO);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"credited_ms\":1500"), "{json}");
        let back: EndpointState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let empty: EndpointState = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.phase(), Phase::Healthy);
    }

    #[test]
    fn resume_clears_expiry_and_restarts_the_window() {
        let mut inc = Incident::opened(T0);
        inc.expired_at = Some(T0);
        inc.expired_notified = true;
        let mut s = EndpointState {
            incident: Some(inc),
            failing_since: Some(T0),
            consecutive_failures: 30,
            ..Default::default()
        };
        assert_eq!(s.phase(), Phase::Expired);
        s.resume();
        assert_eq!(s.phase(), Phase::Failing);
        assert!(s.failing_since.is_none() && s.consecutive_failures == 0);
    }
}
