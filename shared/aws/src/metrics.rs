//! CloudWatch metrics as embedded metric format (EMF) log lines.
//!
//! On Lambda, a JSON line on stdout with an `_aws` block becomes metrics with
//! no API call, no extra latency and no `cloudwatch:PutMetricData` permission.
//! Locally the line is just a log line.
//!
//! Every line carries `"level"` equal to the function's application log
//! level (`AWS_LAMBDA_LOG_LEVEL`, set by Lambda with the JSON log format):
//! Lambda gives a line without a level the level INFO and drops it when the
//! log level is WARN or ERROR, which would silently drop the metrics and
//! blind the alarms built on them. Written by hand rather than through
//! `metrics` + `metrics_cloudwatch_embedded`: one flush per invocation of a
//! handful of counters is all we need.

use serde_json::{Map, Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

pub const NAMESPACE: &str = "PlatformSync";

/// A set of metrics sharing one dimension set, flushed as one line.
#[derive(Debug, Clone)]
pub struct Metrics {
    dimensions: Vec<(&'static str, String)>,
    values: Vec<(&'static str, f64, &'static str)>,
}

impl Metrics {
    /// Metrics of one function (dimension `Function`).
    pub fn for_function(function: &'static str) -> Self {
        Self {
            dimensions: vec![("Function", function.to_owned())],
            values: Vec::new(),
        }
    }

    pub fn count(&mut self, name: &'static str, value: usize) -> &mut Self {
        self.values.push((name, value as f64, "Count"));
        self
    }

    pub fn millis(&mut self, name: &'static str, value: u128) -> &mut Self {
        self.values.push((name, value as f64, "Milliseconds"));
        self
    }

    /// The EMF document.
    pub fn to_json(&self) -> Value {
        self.to_json_at(&log_level())
    }

    fn to_json_at(&self, level: &str) -> Value {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let mut doc = Map::new();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [self.dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                    "Metrics": self.values.iter()
                        .map(|(name, _, unit)| json!({"Name": name, "Unit": unit}))
                        .collect::<Vec<_>>(),
                }],
            }),
        );
        doc.insert("level".into(), Value::String(level.to_owned()));
        for (k, v) in &self.dimensions {
            doc.insert((*k).into(), Value::String(v.clone()));
        }
        for (name, value, _) in &self.values {
            doc.insert((*name).into(), json!(value));
        }
        Value::Object(doc)
    }

    /// Writes the line to stdout, where Lambda's log agent picks it up.
    pub fn flush(&self) {
        if !self.values.is_empty() {
            println!("{}", self.to_json());
        }
    }
}

/// The level metric lines are written at: the configured application log
/// level, so Lambda's log-level filter always lets them through.
fn log_level() -> String {
    level_from(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref())
}

fn level_from(configured: Option<&str>) -> String {
    match configured.map(|l| l.trim().to_ascii_uppercase()) {
        Some(l) if ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"].contains(&l.as_str()) => l,
        _ => "INFO".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_every_metric_and_dimension() {
        let mut m = Metrics::for_function("ingest");
        m.count("Accepted", 3).millis("DurationMs", 12);
        let doc = m.to_json();
        assert_eq!(doc["Function"], "ingest");
        assert_eq!(doc["Accepted"], 3.0);
        let decl = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(decl["Namespace"], NAMESPACE);
        assert_eq!(decl["Dimensions"][0][0], "Function");
        assert_eq!(decl["Metrics"][1]["Unit"], "Milliseconds");
        assert!(doc["level"].is_string());
    }

    #[test]
    fn metric_lines_carry_the_configured_level() {
        assert_eq!(level_from(Some("warn")), "WARN");
        assert_eq!(level_from(Some("ERROR")), "ERROR");
        assert_eq!(level_from(Some("bogus")), "INFO");
        assert_eq!(level_from(None), "INFO");
        let mut m = Metrics::for_function("fanout");
        m.count("Parked", 1);
        assert_eq!(m.to_json_at("WARN")["level"], "WARN");
    }
}
