//! The deployment's alarms in ALARM state (CloudWatch `DescribeAlarms`,
//! prefix `platformsync-<stage>-`), each with the command to run first and
//! its section of docs/runbook.md (the section's name is the alarm's name
//! after the prefix).

use anyhow::Result;
use aws_sdk_cloudwatch::types::StateValue;
use serde::Serialize;

use crate::ops::sdk_error;

/// An alarm in ALARM state and what to do.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Firing {
    pub name: String,
    pub reason: String,
    pub since: Option<String>,
    /// What to run first.
    pub command: String,
    /// `docs/runbook.md#<section>`.
    pub runbook: String,
}

/// The command to run first for the alarm named `<prefix><suffix>`, and its
/// runbook section. Every alarm of template.yaml has a row (tests/cli.rs
/// checks both against the template and the runbook).
pub(crate) fn advice(suffix: &str) -> (&'static str, &'static str) {
    match suffix {
        "dead-letter-queue-not-empty" => (
            "aws sqs receive-message --queue-url <dead-letter queue> --attribute-names All --message-attribute-names All",
            "dead-letter-queue-not-empty",
        ),
        "delivery-backlog-age" => ("platformsync status", "delivery-backlog-age"),
        "delivery-near-retention" => ("platformsync status", "delivery-near-retention"),
        "push-our-failures" => ("platformsync status", "push-our-failures"),
        "push-parked" => ("platformsync expired list", "push-parked"),
        "stream-iterator-age" => ("platformsync status", "stream-iterator-age"),
        "stream-failures" => ("platformsync status", "stream-failures"),
        "stream-failure-age" => ("platformsync status", "stream-failure-age"),
        "stream-recovery-unreadable-range" => (
            "platformsync replay --endpoint E --from T1 --to T2",
            "stream-recovery-unreadable-range",
        ),
        "fanout-unreadable" => (
            "aws dynamodb query --table-name <config table> --key-condition-expression \"PK = :pk\"",
            "fanout-unreadable",
        ),
        "fanout-oversized" => (
            "aws dynamodb query --table-name <config table> --key-condition-expression \"PK = :pk\"",
            "fanout-oversized",
        ),
        "fanout-unowned" => ("platformsync safe list", "fanout-unowned"),
        "fanout-parked" => (
            "aws dynamodb query --table-name <config table> --key-condition-expression \"PK = :pk\"",
            "fanout-parked",
        ),
        "fanout-plan-write-failed" => ("platformsync status", "fanout-plan-write-failed"),
        "fanout-progress-write-failed" => ("platformsync status", "fanout-progress-write-failed"),
        "ingest-5xx-rate" => ("platformsync status", "ingest-5xx-rate"),
        // Errors and throttles of every function, and anything new.
        _ => ("platformsync status", "function-errors--throttles"),
    }
}

/// The stage's alarms in ALARM state.
pub(crate) async fn firing(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    stage: &str,
) -> Result<Vec<Firing>> {
    let prefix = format!("platformsync-{stage}-");
    let mut firing = Vec::new();
    let mut pages = cloudwatch
        .describe_alarms()
        .alarm_name_prefix(&prefix)
        .state_value(StateValue::Alarm)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error(e, "DescribeAlarms"))?;
        // Filtered here too: not every emulator honours `StateValue`.
        for alarm in page
            .metric_alarms()
            .iter()
            .filter(|a| a.state_value() == Some(&StateValue::Alarm))
        {
            let name = alarm.alarm_name().unwrap_or_default().to_owned();
            let suffix = name.strip_prefix(&prefix).unwrap_or(&name);
            let (command, section) = advice(suffix);
            firing.push(Firing {
                reason: alarm.state_reason().unwrap_or_default().to_owned(),
                since: alarm
                    .state_updated_timestamp()
                    .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
                command: command.to_owned(),
                runbook: format!("docs/runbook.md#{section}"),
                name,
            });
        }
    }
    firing.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(firing)
}

#[cfg(test)]
mod tests {
    use super::advice;

    /// Every alarm of template.yaml points at a section of docs/runbook.md.
    #[test]
    fn every_alarm_has_a_runbook_section() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let template = std::fs::read_to_string(root.join("template.yaml")).unwrap();
        let runbook = std::fs::read_to_string(root.join("docs/runbook.md")).unwrap();
        let anchors: Vec<String> = runbook
            .lines()
            .filter_map(|l| l.strip_prefix("### "))
            .map(|h| {
                h.to_lowercase()
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ')
                    .map(|c| if c == ' ' { '-' } else { c })
                    .collect()
            })
            .collect();
        let mut seen = 0;
        for line in template.lines() {
            let Some(rest) = line
                .trim()
                .strip_prefix("AlarmName: !Sub \"platformsync-${Stage}-")
            else {
                continue;
            };
            let suffix = rest.trim_end_matches('"');
            let (command, section) = advice(suffix);
            assert!(
                command.starts_with("platformsync ") || command.starts_with("aws "),
                "{suffix}"
            );
            assert!(
                anchors.iter().any(|a| a == section),
                "{suffix}: no section {section} in {anchors:?}"
            );
            seen += 1;
        }
        assert!(seen >= 20, "alarms read from template.yaml: {seen}");
    }
}
