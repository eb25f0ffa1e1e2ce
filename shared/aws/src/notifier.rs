//! Failure notifications, published to the notifications SNS topic.
//!
//! Every message carries three string message attributes, so who gets what is
//! decided by subscription filter policies, not by code:
//!
//! | attribute | values |
//! |---|---|
//! | `customer` | the customer id (`acme`) |
//! | `endpoint` | the endpoint id (`acme-prod`) |
//! | `kind` | `failing`, `expired`, `recovered` or `refused` |
//!
//! Filter policies (`FilterPolicyScope: MessageAttributes`, the default):
//!
//! - a customer's recipients: `{"customer": ["acme"]}`
//! - one endpoint only: `{"endpoint": ["acme-prod"]}`
//! - only expirations (a pager): `{"kind": ["expired"]}`
//! - support: no filter policy (receives everything).
//!
//! The subject and body are human-readable. The body names the customer's
//! notification recipients, the endpoint's host (never its query string), the
//! latest error (already redacted by the HTTP client) and what happens next.
//! No token is ever part of a notification: nothing here has access to one.

use std::fmt::Write as _;

use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;

use crate::StoreError;
use crate::sdk::{OnFirstUse, on_first_use};

/// SNS subjects: at most 100 printable ASCII characters, no line breaks.
const MAX_SUBJECT: usize = 100;

/// Most characters of the endpoint's answer a notification quotes.
pub const MAX_ERROR_CHARS: usize = 300;

/// Text the customer's endpoint controls (its response body, within the
/// last error) as one bounded line: control characters (line breaks, ESC,
/// bidi overrides and other format characters) become spaces, runs of
/// spaces one, at most [`MAX_ERROR_CHARS`] characters (then `...`). A
/// receiver cannot forge lines of our notification or hide text in it.
pub fn one_line(text: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut space = false;
    for c in text.chars() {
        let c = if c.is_control() || is_format(c) || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if space || out.is_empty() {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        if count == MAX_ERROR_CHARS {
            let trimmed = out.trim_end().len();
            out.truncate(trimmed);
            out.push_str("...");
            return out;
        }
        out.push(c);
        count += 1;
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out
}

/// Unicode format characters that reorder or hide text (bidi controls,
/// zero-width characters, BOM).
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    /// An endpoint keeps failing (sustained failure: once per incident).
    Failing,
    /// The incident outlasted the retry window: the endpoint's queued
    /// batches were set aside (parked) for replay.
    Expired,
    /// The endpoint accepts batches again after an incident.
    Recovered,
    /// The endpoint refused some transactions of a batch (a 4xx on them
    /// alone): they were set aside, the rest delivered.
    Refused,
}

impl NotificationKind {
    /// The `kind` message attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Failing => "failing",
            NotificationKind::Expired => "expired",
            NotificationKind::Recovered => "recovered",
            NotificationKind::Refused => "refused",
        }
    }
}

/// What a notification says.
#[derive(Debug, Clone)]
pub struct Notification {
    pub kind: NotificationKind,
    pub customer_id: String,
    /// The customer's name, when known.
    pub customer_name: Option<String>,
    pub endpoint_id: String,
    /// `https://host:port/path` (no query, no credentials).
    pub endpoint: String,
    /// The customer's notification recipients (e-mail addresses).
    pub recipients: Vec<String>,
    pub incident_id: String,
    pub failing_since: String,
    /// The batch that triggered it.
    pub message_id: String,
    /// Latest failure, redacted (failing, expired).
    pub last_error: Option<String>,
    /// Attempts of the triggering batch.
    pub attempts: u32,
    /// Human-readable retry window, e.g. `24 h`.
    pub window: String,
    /// Where set-aside batches are kept (the parked-batches store).
    pub kept_in: Option<String>,
    /// Transactions set aside (refused), when some were.
    pub refused: Option<usize>,
}

impl Notification {
    pub fn subject(&self) -> String {
        let who = self.customer_name.as_deref().unwrap_or(&self.customer_id);
        let text = match self.kind {
            NotificationKind::Failing => {
                format!(
                    "PlatformSync: endpoint {} of {who} is failing",
                    self.endpoint_id
                )
            }
            NotificationKind::Expired => format!(
                "PlatformSync: undelivered batch expired for endpoint {} of {who}",
                self.endpoint_id
            ),
            NotificationKind::Recovered => {
                format!(
                    "PlatformSync: endpoint {} of {who} recovered",
                    self.endpoint_id
                )
            }
            NotificationKind::Refused => format!(
                "PlatformSync: endpoint {} of {who} refused transactions",
                self.endpoint_id
            ),
        };
        text.chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .take(MAX_SUBJECT)
            .collect()
    }

    pub fn body(&self) -> String {
        let who = match &self.customer_name {
            Some(name) => format!("{name} ({})", self.customer_id),
            None => self.customer_id.clone(),
        };
        let mut b = String::new();
        // Writing to a String cannot fail.
        let _ = match self.kind {
            NotificationKind::Failing => writeln!(
                b,
                "PlatformSync keeps failing to deliver batches of transactions to endpoint {} of \
                 {who}.\n\n\
                 Deliveries to this endpoint wait and are retried in order, first within seconds, \
                 then less often (up to hourly) while it keeps failing. If it has not accepted a \
                 batch for {} from the first failure (time PlatformSync itself was down is not \
                 counted), its queued batches are set aside for replay and you are told. You \
                 will be told when it recovers.",
                self.endpoint_id, self.window
            ),
            NotificationKind::Expired => writeln!(
                b,
                "Endpoint {} of {who} has not accepted a batch of transactions for {} and its \
                 queued batches are no longer retried.\n\n\
                 They are kept{} for operations to replay, in order; nothing is lost. New \
                 batches for this endpoint are set aside too, and one is tried now and then: \
                 when the endpoint accepts it (or operations enable it again), delivery resumes \
                 and you are told.",
                self.endpoint_id,
                self.window,
                self.kept_in
                    .as_deref()
                    .map(|q| format!(" ({q})"))
                    .unwrap_or_default()
            ),
            NotificationKind::Recovered => writeln!(
                b,
                "Endpoint {} of {who} accepts deliveries again. Pending batches are being \
                 delivered in order; after a failure, receivers may see batches in a different \
                 order than they were made (each carries its MessageId).",
                self.endpoint_id
            ),
            NotificationKind::Refused => writeln!(
                b,
                "Endpoint {} of {who} kept refusing a batch of transactions with a client error. \
                 The batch was split to find what it refuses: {} transaction(s) were set aside{} \
                 with the endpoint's answer, for operations to replay once the endpoint accepts \
                 them; the rest of the batch was delivered, in order.",
                self.endpoint_id,
                self.refused.unwrap_or_default(),
                self.kept_in
                    .as_deref()
                    .map(|q| format!(" ({q})"))
                    .unwrap_or_default()
            ),
        };
        let _ = writeln!(b);
        let _ = writeln!(b, "Endpoint:        {}", self.endpoint);
        let _ = writeln!(b, "Incident:        {}", self.incident_id);
        let _ = writeln!(b, "Failing since:   {}", self.failing_since);
        let _ = writeln!(b, "Batch MessageId: {}", self.message_id);
        if self.kind != NotificationKind::Recovered {
            let _ = writeln!(b, "Attempts:        {}", self.attempts);
        }
        if let Some(error) = &self.last_error {
            let _ = writeln!(b, "Last error:      {}", one_line(error));
        }
        let _ = writeln!(
            b,
            "Recipients:      {}",
            if self.recipients.is_empty() {
                "(none configured for this customer; Loomis support only)".to_owned()
            } else {
                self.recipients.join(", ")
            }
        );
        b
    }
}

#[derive(Debug, Clone)]
pub struct Notifier {
    client: OnFirstUse<Client>,
    topic_arn: String,
}

fn attribute(value: &str) -> Result<MessageAttributeValue, StoreError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| StoreError::Malformed {
            resource: "sns message attribute".into(),
            key: value.to_owned(),
            message: e.to_string(),
        })
}

impl Notifier {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self::on_first_use(move || client, topic_arn)
    }

    /// A notifier whose client `make` builds on the first notification:
    /// most containers never send one, so they never pay for the client
    /// (its endpoint tables are parsed when it is built).
    pub fn on_first_use(
        make: impl FnOnce() -> Client + Send + 'static,
        topic_arn: impl Into<String>,
    ) -> Self {
        Self {
            client: on_first_use(make),
            topic_arn: topic_arn.into(),
        }
    }

    pub async fn publish(&self, notification: &Notification) -> Result<(), StoreError> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(notification.subject())
            .message(notification.body())
            .message_attributes("customer", attribute(&notification.customer_id)?)
            .message_attributes("endpoint", attribute(&notification.endpoint_id)?)
            .message_attributes("kind", attribute(notification.kind.as_str())?)
            .send()
            .await
            .map_err(|e| StoreError::sdk("Publish", &self.topic_arn, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: NotificationKind) -> Notification {
        Notification {
            kind,
            customer_id: "acme".into(),
            customer_name: Some("Acme Retail".into()),
            endpoint_id: "acme-prod".into(),
            endpoint: "https://hooks.acme.example:443/push".into(),
            recipients: vec!["ops@acme.example".into(), "cash@acme.example".into()],
            incident_id: "2026-01-10T08:00:00Z".into(),
            failing_since: "2026-01-10T08:00:00Z".into(),
            message_id: "6f1c".into(),
            last_error: Some("HTTP 503".into()),
            attempts: 3,
            window: "24 h".into(),
            kept_in: Some("parked batches".into()),
            refused: None,
        }
    }

    #[test]
    fn subjects_are_short_ascii_one_liners() {
        for kind in [
            NotificationKind::Failing,
            NotificationKind::Expired,
            NotificationKind::Recovered,
            NotificationKind::Refused,
        ] {
            let mut n = sample(kind);
            n.customer_name = Some(format!("Ächme\n{}", "x".repeat(200)));
            let subject = n.subject();
            assert!(subject.len() <= MAX_SUBJECT, "{subject}");
            assert!(subject.chars().all(|c| c.is_ascii_graphic() || c == ' '));
        }
    }

    #[test]
    fn the_endpoints_answer_is_one_bounded_line() {
        let mut n = sample(NotificationKind::Failing);
        n.last_error = Some(format!(
            "HTTP 500: oops\r\nRecipients: attacker@evil.example\n\u{1b}[31m\u{202E}x\t{}",
            "a".repeat(5000)
        ));
        let body = n.body();
        let line = body.lines().find(|l| l.starts_with("Last error:")).unwrap();
        assert!(
            line.contains("HTTP 500: oops Recipients: attacker@evil.example"),
            "{line}"
        );
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{202E}'),
            "{line:?}"
        );
        assert!(line.ends_with("...") && line.chars().count() < MAX_ERROR_CHARS + 30);
        assert_eq!(
            body.lines()
                .filter(|l| l.starts_with("Recipients:"))
                .count(),
            1,
            "no forged line"
        );
        assert_eq!(one_line("  a \n\n b  "), "a b");
        assert_eq!(one_line(""), "");
    }

    #[test]
    fn body_names_recipients_endpoint_and_error() {
        let body = sample(NotificationKind::Expired).body();
        for needle in [
            "ops@acme.example, cash@acme.example",
            "https://hooks.acme.example:443/push",
            "HTTP 503",
            "Attempts:        3",
            "parked batches",
            "24 h",
        ] {
            assert!(body.contains(needle), "{needle} missing from:\n{body}");
        }
        let recovered = sample(NotificationKind::Recovered).body();
        assert!(
            recovered.contains("accepts deliveries again"),
            "{recovered}"
        );
    }
}
