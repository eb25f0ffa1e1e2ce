//! Rules (what to fail, how, how often) and the counters of what the proxy saw.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::classify::{Call, canonical_service};

/// What an injected failure looks like to the client.
///
/// JSON: `"throttle"`, `"internal"`, `"unavailable"`, `"access_denied"`,
/// `"kms"`, `{"hang": {"seconds": 5}}`, `{"hang": {"seconds": 5, "forward": false}}`
/// or `{"lose_answer": {"seconds": 5}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// The service's throttling error (retried by the SDK as throttling).
    Throttle,
    /// A 500 internal error (retried by the SDK as transient).
    Internal,
    /// A 503 service unavailable (retried by the SDK as transient).
    Unavailable,
    /// AccessDenied (not retried by the SDK).
    AccessDenied,
    /// A KMS failure of the service's encryption key (not retried).
    Kms,
    /// Holds the request for `seconds`. Then, with `forward` (the default),
    /// the request is forwarded to the emulator even if the client has given
    /// up meanwhile, as a request that timed out at the client may still have
    /// been carried out by AWS; with `forward: false` the connection is
    /// closed without an answer and the emulator never sees the request.
    Hang {
        seconds: f64,
        #[serde(default = "yes")]
        forward: bool,
    },
    /// Forwards the request at once (the emulator carries it out), then
    /// holds the answer for `seconds` and closes the connection without it:
    /// a write that landed while its client timed out and retried.
    LoseAnswer { seconds: f64 },
    /// Any other error, in the service's protocol: `__type`/`x-amzn-ErrorType`
    /// (JSON) or `<Code>` (query) `code`, with `status`. `query_code` is the
    /// code of SQS's `x-amzn-query-error` header, which the SQS SDK reports
    /// instead of `code` (default: `code`). E.g.
    /// `{"error": {"status": 400, "code": "ThrottlingException"}}` for DynamoDB's
    /// other throttling error, or `KMSInvalidStateException`.
    Error {
        status: u16,
        code: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query_code: Option<String>,
    },
}

/// Seconds from a rule or schedule as a duration, never panicking: negative
/// or NaN is zero, anything huge is capped at a year.
pub(crate) fn seconds(s: f64) -> Duration {
    const YEAR: f64 = 365.0 * 24.0 * 3600.0;
    if s.is_nan() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(s.clamp(0.0, YEAR))
}

fn yes() -> bool {
    true
}

fn any_operation() -> String {
    "*".to_owned()
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One rule. JSON, e.g.:
///
/// ```json
/// {"service": "dynamodb", "operation": "PutItem", "fault": "throttle",
///  "times": 2, "for_seconds": 30, "after": 1}
/// ```
///
/// `operation` defaults to `"*"`; `times` (alias `limit`) fails at most N
/// matching calls, then the rule is spent; `for_seconds` (alias
/// `window_seconds`) makes the rule active only for that long after it was
/// installed; `after` (alias `skip`) lets the first K matching calls through
/// before failing any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `dynamodb`, `streams.dynamodb`, `sqs`, `sns`, `secretsmanager`,
    /// `monitoring` (alias `cloudwatch`), ... or `*`.
    pub service: String,
    /// `PutItem`, `SendMessageBatch`, `Publish`, ... or `*` (any).
    #[serde(default = "any_operation")]
    pub operation: String,
    pub fault: Fault,
    #[serde(default, alias = "limit", skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    #[serde(
        default,
        alias = "window_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub for_seconds: Option<f64>,
    #[serde(default, alias = "skip", skip_serializing_if = "is_zero")]
    pub after: u64,
}

impl Rule {
    /// A rule failing every call of `service`/`operation` (`"*"` for any) with `fault`.
    pub fn new(service: &str, operation: &str, fault: Fault) -> Self {
        Self {
            service: service.to_owned(),
            operation: operation.to_owned(),
            fault,
            times: None,
            for_seconds: None,
            after: 0,
        }
    }

    /// Fails at most `n` matching calls; then the rule is spent.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// Active for `window` from the moment it is installed.
    pub fn for_duration(mut self, window: Duration) -> Self {
        self.for_seconds = Some(window.as_secs_f64());
        self
    }

    /// Lets the first `k` matching calls through.
    pub fn after(mut self, k: u64) -> Self {
        self.after = k;
        self
    }

    /// Whether the rule names this call's service and operation (regardless
    /// of whether it is still active).
    pub fn matches(&self, call: &Call) -> bool {
        let service_ok = self.service == "*" || canonical_service(&self.service) == call.service;
        let op_ok = self.operation == "*" || self.operation.eq_ignore_ascii_case(&call.operation);
        service_ok && op_ok
    }

    /// Checks values serde cannot: a window or hang must be a finite,
    /// non-negative number of seconds.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |s: f64| s.is_finite() && s >= 0.0;
        if let Some(s) = self.for_seconds
            && !ok(s)
        {
            return Err(format!("for_seconds must be >= 0, got {s}"));
        }
        if let Fault::Hang { seconds, .. } | Fault::LoseAnswer { seconds } = self.fault
            && !ok(seconds)
        {
            return Err(format!("seconds must be >= 0, got {seconds}"));
        }
        if let Fault::Error {
            status,
            code,
            query_code,
        } = &self.fault
        {
            if !(400..=599).contains(status) {
                return Err(format!("error status must be 400-599, got {status}"));
            }
            let token = |c: &str| {
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-:#".contains(&b))
            };
            if !token(code) || !query_code.as_deref().is_none_or(token) {
                return Err(format!(
                    "error code must be a non-empty token of letters, digits and ._-:#, got {code:?}"
                ));
            }
        }
        if self.service.trim().is_empty() {
            return Err("service must not be empty (use \"*\" for any)".to_owned());
        }
        Ok(())
    }
}

/// A rule with its counters, as [`crate::FaultProxy::stats`] reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleStats {
    pub rule: Rule,
    /// Calls the rule decided on while active (let through by `after`, or failed).
    pub matched: u64,
    /// Calls it failed.
    pub failed: u64,
    /// False once spent (`times` reached) or past its window.
    pub active: bool,
}

/// Every call the proxy saw for one service and operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationStats {
    pub service: String,
    pub operation: String,
    /// Requests received (failed ones included): requests per operation, for cost measurements.
    pub calls: u64,
    /// Of those, failed by a rule.
    pub failed: u64,
}

/// The rules with their counters, and per-operation call counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub rules: Vec<RuleStats>,
    pub calls: Vec<OperationStats>,
}

impl Stats {
    fn operation(&self, service: &str, operation: &str) -> Option<&OperationStats> {
        let service = canonical_service(service);
        self.calls
            .iter()
            .find(|c| c.service == service && c.operation == operation)
    }

    /// Requests seen for `service`/`operation` (0 if none).
    pub fn calls(&self, service: &str, operation: &str) -> u64 {
        self.operation(service, operation).map_or(0, |c| c.calls)
    }

    /// Requests of `service`/`operation` failed by a rule.
    pub fn failed(&self, service: &str, operation: &str) -> u64 {
        self.operation(service, operation).map_or(0, |c| c.failed)
    }

    /// Requests seen for every operation of `service`.
    pub fn service_calls(&self, service: &str) -> u64 {
        let service = canonical_service(service);
        self.calls
            .iter()
            .filter(|c| c.service == service)
            .map(|c| c.calls)
            .sum()
    }
}

#[derive(Debug)]
struct Installed {
    rule: Rule,
    installed: Instant,
    matched: u64,
    failed: u64,
}

impl Installed {
    fn active(&self, now: Instant) -> bool {
        let spent = self.rule.times.is_some_and(|n| self.failed >= n);
        let expired = self
            .rule
            .for_seconds
            .is_some_and(|s| now.saturating_duration_since(self.installed).as_secs_f64() >= s);
        !spent && !expired
    }
}

#[derive(Debug, Default)]
struct Counts {
    calls: u64,
    failed: u64,
}

/// The rules and counters; the proxy keeps one behind a mutex.
#[derive(Debug, Default)]
pub(crate) struct State {
    rules: Vec<Installed>,
    calls: BTreeMap<(String, String), Counts>,
}

impl State {
    pub(crate) fn set_rules(&mut self, rules: Vec<Rule>, now: Instant) {
        self.rules = rules
            .into_iter()
            .map(|rule| Installed {
                rule,
                installed: now,
                matched: 0,
                failed: 0,
            })
            .collect();
    }

    pub(crate) fn add_rule(&mut self, rule: Rule, now: Instant) {
        self.rules.push(Installed {
            rule,
            installed: now,
            matched: 0,
            failed: 0,
        });
    }

    pub(crate) fn clear_rules(&mut self) {
        self.rules.clear();
    }

    pub(crate) fn reset_counts(&mut self) {
        self.calls.clear();
        for r in &mut self.rules {
            r.matched = 0;
            r.failed = 0;
        }
    }

    /// Counts the call and decides its fate: the fault of the first active
    /// rule naming it, unless that rule still lets calls through (`after`).
    pub(crate) fn decide(&mut self, call: &Call, now: Instant) -> Option<Fault> {
        let counts = self
            .calls
            .entry((call.service.clone(), call.operation.clone()))
            .or_default();
        counts.calls += 1;
        let rule = self
            .rules
            .iter_mut()
            .find(|r| r.rule.matches(call) && r.active(now))?;
        rule.matched += 1;
        if rule.matched <= rule.rule.after {
            return None;
        }
        rule.failed += 1;
        counts.failed += 1;
        Some(rule.rule.fault.clone())
    }

    pub(crate) fn stats(&self, now: Instant) -> Stats {
        Stats {
            rules: self
                .rules
                .iter()
                .map(|r| RuleStats {
                    rule: r.rule.clone(),
                    matched: r.matched,
                    failed: r.failed,
                    active: r.active(now),
                })
                .collect(),
            calls: self
                .calls
                .iter()
                .map(|((service, operation), c)| OperationStats {
                    service: service.clone(),
                    operation: operation.clone(),
                    calls: c.calls,
                    failed: c.failed,
                })
                .collect(),
        }
    }
}

/// Parses the rules a control request or a `--rules` file carries: either a
/// JSON array of rules or an object `{"rules": [...]}`.
pub fn parse_rules(json: &[u8]) -> Result<Vec<Rule>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapped {
        rules: Vec<Rule>,
    }
    let rules = if json.trim_ascii_start().starts_with(b"{") {
        serde_json::from_slice::<Wrapped>(json).map(|w| w.rules)
    } else {
        serde_json::from_slice::<Vec<Rule>>(json)
    }
    .map_err(|e| e.to_string())?;
    for (i, rule) in rules.iter().enumerate() {
        rule.validate().map_err(|e| format!("rule {i}: {e}"))?;
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Protocol;

    fn call(service: &str, operation: &str) -> Call {
        Call {
            service: service.to_owned(),
            operation: operation.to_owned(),
            protocol: Protocol::AwsJson,
        }
    }

    #[test]
    fn times_limits_failures_then_the_rule_is_spent() {
        let now = Instant::now();
        let mut state = State::default();
        state.set_rules(
            vec![Rule::new("dynamodb", "PutItem", Fault::Throttle).times(2)],
            now,
        );
        let put = call("dynamodb", "PutItem");
        assert_eq!(state.decide(&put, now), Some(Fault::Throttle));
        assert_eq!(state.decide(&call("dynamodb", "GetItem"), now), None);
        assert_eq!(state.decide(&put, now), Some(Fault::Throttle));
        assert_eq!(state.decide(&put, now), None);
        let stats = state.stats(now);
        assert_eq!(stats.rules[0].failed, 2);
        assert!(!stats.rules[0].active);
        assert_eq!(stats.calls("dynamodb", "PutItem"), 3);
        assert_eq!(stats.failed("dynamodb", "PutItem"), 2);
        assert_eq!(stats.calls("dynamodb", "GetItem"), 1);
        assert_eq!(stats.service_calls("dynamodb"), 4);
    }

    #[test]
    fn after_lets_the_first_calls_through() {
        let now = Instant::now();
        let mut state = State::default();
        state.set_rules(
            vec![
                Rule::new("sqs", "*", Fault::Internal).after(2).times(1),
                Rule::new("*", "*", Fault::AccessDenied),
            ],
            now,
        );
        let send = call("sqs", "SendMessage");
        // First match wins: the sqs rule lets two through, the catch-all is not consulted.
        assert_eq!(state.decide(&send, now), None);
        assert_eq!(state.decide(&send, now), None);
        assert_eq!(state.decide(&send, now), Some(Fault::Internal));
        // Spent: the next rule takes over.
        assert_eq!(state.decide(&send, now), Some(Fault::AccessDenied));
        assert_eq!(state.stats(now).rules[0].matched, 3);
    }

    #[test]
    fn seconds_never_panic() {
        assert_eq!(seconds(-1.0), Duration::ZERO);
        assert_eq!(seconds(f64::NAN), Duration::ZERO);
        assert_eq!(seconds(1.5), Duration::from_millis(1500));
        assert!(seconds(f64::INFINITY) <= Duration::from_secs(366 * 24 * 3600));
    }

    #[test]
    fn windows_expire() {
        let now = Instant::now();
        let mut state = State::default();
        state.set_rules(
            vec![
                Rule::new("sns", "Publish", Fault::Throttle).for_duration(Duration::from_secs(10)),
            ],
            now,
        );
        let publish = call("sns", "Publish");
        assert!(
            state
                .decide(&publish, now + Duration::from_secs(9))
                .is_some()
        );
        assert!(
            state
                .decide(&publish, now + Duration::from_secs(10))
                .is_none()
        );
    }

    #[test]
    fn service_aliases_and_operation_case() {
        let rule = Rule::new("CloudWatch", "putmetricdata", Fault::Throttle);
        assert!(rule.matches(&call("monitoring", "PutMetricData")));
        assert!(!rule.matches(&call("monitoring", "GetMetricData")));
    }

    #[test]
    fn rule_json_round_trips_with_aliases() {
        let rules = parse_rules(
            br#"[{"service":"dynamodb","operation":"PutItem","fault":"throttle","limit":2},
                 {"service":"sqs","fault":{"hang":{"seconds":1.5}},"window_seconds":3,"skip":1}]"#,
        )
        .unwrap();
        assert_eq!(
            rules[0],
            Rule::new("dynamodb", "PutItem", Fault::Throttle).times(2)
        );
        assert_eq!(
            rules[1],
            Rule::new(
                "sqs",
                "*",
                Fault::Hang {
                    seconds: 1.5,
                    forward: true
                }
            )
            .for_duration(Duration::from_secs(3))
            .after(1)
        );
        let json = serde_json::to_string(&rules).unwrap();
        assert_eq!(parse_rules(json.as_bytes()).unwrap(), rules);
        let wrapped = format!("{{\"rules\":{json}}}");
        assert_eq!(parse_rules(wrapped.as_bytes()).unwrap(), rules);
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        let err = parse_rules(br#"[{"service":"sqs","fault":"throttle","time":2}]"#).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
        let err = parse_rules(br#"{"rules":[{"service":"sqs","fault":"slow"}]}"#).unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
        let err =
            parse_rules(br#"[{"service":"sqs","fault":{"error":{"status":200,"code":"Fine"}}}]"#)
                .unwrap_err();
        assert!(err.contains("400-599"), "{err}");
        let err =
            parse_rules(br#"[{"service":"sqs","fault":{"error":{"status":400,"code":"a\r\nb"}}}]"#)
                .unwrap_err();
        assert!(err.contains("token"), "{err}");
        let ok = parse_rules(
            br#"[{"service":"dynamodb","fault":{"error":{"status":400,"code":"ThrottlingException"}}}]"#,
        )
        .unwrap();
        assert_eq!(
            ok[0].fault,
            Fault::Error {
                status: 400,
                code: "ThrottlingException".into(),
                query_code: None
            }
        );
        let err =
            parse_rules(br#"[{"service":"sqs","fault":{"hang":{"seconds":-1}}}]"#).unwrap_err();
        assert!(err.contains("rule 0"), "{err}");
    }
}
