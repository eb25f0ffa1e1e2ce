//! The functions of `template.yaml` as the local runner plays them: which
//! binary, with which environment, fed by which event sources with which
//! settings (batch sizes, windows, response types), all read from the same
//! template the cloud deploys.
//!
//! Event sources come in two forms: SAM `Events` on the function (HTTP API
//! routes, schedules) and `AWS::Lambda::EventSourceMapping` resources whose
//! `FunctionName` refers to the function (streams and queues: a mapping of
//! our own lets the function's policy name the stream or queue, where SAM's
//! `DynamoDB`/`SQS` events attach AWS-managed policies granting every stream
//! and queue of the account). A mapping is read as the SAM event of the same
//! kind would be, its logical id as the event's name.

use crate::{Resolver, Template, TemplateError, scalar_string};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// One `AWS::Serverless::Function`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`: which crate's handler runs.
    pub binary: String,
    pub timeout: Duration,
    /// `Globals.Function.Environment` merged with the function's own.
    pub environment: BTreeMap<String, String>,
    pub events: Vec<EventSource>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventSource {
    HttpApi {
        name: String,
        path: String,
        method: String,
    },
    DynamoDbStream {
        name: String,
        stream_arn: String,
        batch_size: usize,
        starting_position: String,
        batching_window: Duration,
        /// `MaximumRetryAttempts`: `None` = retry until the record expires
        /// (`-1`, also Lambda's default when absent).
        maximum_retry_attempts: Option<u32>,
        /// `MaximumRecordAgeInSeconds`: `None` = no limit but the stream's
        /// retention (`-1`, Lambda's default).
        maximum_record_age: Option<Duration>,
        bisect_on_error: bool,
        report_batch_item_failures: bool,
        /// `DestinationConfig.OnFailure.Destination` (an ARN).
        on_failure: Option<String>,
    },
    Sqs {
        name: String,
        queue_arn: String,
        batch_size: usize,
        batching_window: Duration,
        report_batch_item_failures: bool,
        maximum_concurrency: Option<usize>,
    },
    Schedule {
        name: String,
        every: Duration,
    },
}

impl Template {
    /// Every function of the template with its events, resolved against
    /// `resolver` (which must know the created resources).
    pub fn functions(&self, resolver: &Resolver) -> Result<Vec<FunctionSpec>, TemplateError> {
        let globals = self.globals.get("Function").cloned().unwrap_or(Value::Null);
        let globals = resolver.resolve(&globals)?;
        let mut out = Vec::new();
        for r in self.resources() {
            if r.kind != "AWS::Serverless::Function" || !resolver.is_enabled(r)? {
                continue;
            }
            let err = |message: String| TemplateError::Resource {
                logical_id: r.logical_id.clone(),
                message,
            };
            // Only what the runner plays: other properties may refer to
            // resources the local stack does not create (log groups, the
            // alias of AutoPublishAlias).
            let played: serde_json::Map<String, Value> = ["Timeout", "Environment", "Events"]
                .iter()
                .filter_map(|k| Some(((*k).to_owned(), r.properties.get(*k)?.clone())))
                .collect();
            let props = resolver
                .resolve(&Value::Object(played))
                .map_err(|e| err(e.to_string()))?;
            let binary = r
                .metadata
                .pointer("/BuildProperties/Binary")
                .and_then(Value::as_str)
                .ok_or_else(|| err("needs Metadata.BuildProperties.Binary".into()))?
                .to_owned();
            let timeout = props
                .get("Timeout")
                .or_else(|| globals.get("Timeout"))
                .and_then(|t| scalar_string(t).parse::<u64>().ok())
                .unwrap_or(3);
            let mut environment = variables(&globals);
            environment.extend(variables(&props));
            let mut events = Vec::new();
            for (name, event) in props
                .get("Events")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                events.push(event_source(name, event).map_err(err)?);
            }
            for mapping in self.mappings_of(&r.logical_id) {
                if !resolver.is_enabled(mapping)? {
                    continue;
                }
                events.push(mapping_source(mapping, resolver)?);
            }
            out.push(FunctionSpec {
                logical_id: r.logical_id.clone(),
                binary,
                timeout: Duration::from_secs(timeout),
                environment,
                events,
            });
        }
        Ok(out)
    }
}

impl Template {
    /// The `AWS::Lambda::EventSourceMapping` resources that invoke the
    /// function `logical_id`: `FunctionName` is `!Ref <id>`, `!Ref <id>.Alias`
    /// (SAM's alias of `AutoPublishAlias`) or `!GetAtt <id>.Arn`.
    pub fn mappings_of<'a>(
        &'a self,
        logical_id: &'a str,
    ) -> impl Iterator<Item = &'a crate::Resource> + 'a {
        self.resources().filter(move |r| {
            r.kind == "AWS::Lambda::EventSourceMapping"
                && mapping_target(&r.properties).as_deref() == Some(logical_id)
        })
    }
}

/// The logical id of the function a mapping's `FunctionName` refers to.
fn mapping_target(props: &Value) -> Option<String> {
    let name = props.get("FunctionName")?;
    if let Some(target) = name.get("Ref").and_then(Value::as_str) {
        return Some(
            target
                .split_once('.')
                .map_or(target, |(id, _)| id)
                .to_owned(),
        );
    }
    match name.get("Fn::GetAtt")? {
        Value::Array(parts) => parts.first()?.as_str().map(str::to_owned),
        Value::String(s) => s.split_once('.').map(|(id, _)| id.to_owned()),
        _ => None,
    }
}

/// A mapping as the SAM event it stands for: `EventSourceArn` becomes the
/// event's `Stream` (a DynamoDB stream ARN) or `Queue` (an SQS queue ARN);
/// every other setting has the same name in both forms.
fn mapping_source(
    mapping: &crate::Resource,
    resolver: &Resolver,
) -> Result<EventSource, TemplateError> {
    let err = |message: String| TemplateError::Resource {
        logical_id: mapping.logical_id.clone(),
        message,
    };
    let mut props = mapping.properties.clone();
    // The function itself is not a resource the local stack creates.
    if let Some(map) = props.as_object_mut() {
        map.remove("FunctionName");
    }
    let mut props = resolver.resolve(&props).map_err(|e| err(e.to_string()))?;
    let map = props
        .as_object_mut()
        .ok_or_else(|| err("needs Properties".into()))?;
    let arn = map
        .remove("EventSourceArn")
        .map(|v| scalar_string(&v))
        .ok_or_else(|| err("needs EventSourceArn (streams and queues only)".into()))?;
    let (kind, key) = match arn.split(':').nth(2) {
        Some("dynamodb") => ("DynamoDB", "Stream"),
        Some("sqs") => ("SQS", "Queue"),
        other => {
            return Err(err(format!(
                "event source {arn:?} ({}) is not played by the local runner",
                other.unwrap_or("not an ARN")
            )));
        }
    };
    map.insert(key.into(), Value::String(arn));
    let event = serde_json::json!({"Type": kind, "Properties": props});
    event_source(&mapping.logical_id, &event).map_err(err)
}

fn variables(props: &Value) -> BTreeMap<String, String> {
    props
        .pointer("/Environment/Variables")
        .and_then(Value::as_object)
        .map(|vars| {
            vars.iter()
                .map(|(k, v)| (k.clone(), scalar_string(v)))
                .collect()
        })
        .unwrap_or_default()
}

fn event_source(name: &str, event: &Value) -> Result<EventSource, String> {
    let kind = event
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let p = event.get("Properties").cloned().unwrap_or(Value::Null);
    let string = |key: &str| {
        p.get(key)
            .map(scalar_string)
            .ok_or_else(|| format!("event {name} needs {key}"))
    };
    let number = |key: &str| {
        p.get(key)
            .and_then(|v| scalar_string(v).parse::<u64>().ok())
    };
    // -1 means "no limit" for the stream's retry settings; anything else
    // that is not a count is refused rather than read as unlimited.
    let limit = |key: &str| -> Result<Option<u64>, String> {
        match p.get(key).map(scalar_string) {
            None => Ok(None),
            Some(v) if v == "-1" => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("event {name}: {key} must be -1 or a count, got {v:?}")),
        }
    };
    let reports = p
        .get("FunctionResponseTypes")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(|t| t == "ReportBatchItemFailures"));
    let name = name.to_owned();
    Ok(match kind {
        "HttpApi" => EventSource::HttpApi {
            path: string("Path")?,
            method: string("Method")?.to_uppercase(),
            name,
        },
        "DynamoDB" => EventSource::DynamoDbStream {
            stream_arn: string("Stream")?,
            batch_size: number("BatchSize").unwrap_or(100) as usize,
            starting_position: string("StartingPosition")?,
            batching_window: Duration::from_secs(
                number("MaximumBatchingWindowInSeconds").unwrap_or(0),
            ),
            maximum_retry_attempts: limit("MaximumRetryAttempts")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            maximum_record_age: limit("MaximumRecordAgeInSeconds")?.map(Duration::from_secs),
            bisect_on_error: p
                .get("BisectBatchOnFunctionError")
                .is_some_and(|b| scalar_string(b) == "true"),
            report_batch_item_failures: reports,
            on_failure: p
                .pointer("/DestinationConfig/OnFailure/Destination")
                .map(scalar_string),
            name,
        },
        "SQS" => EventSource::Sqs {
            queue_arn: string("Queue")?,
            batch_size: number("BatchSize").unwrap_or(10) as usize,
            batching_window: Duration::from_secs(
                number("MaximumBatchingWindowInSeconds").unwrap_or(0),
            ),
            report_batch_item_failures: reports,
            maximum_concurrency: p
                .pointer("/ScalingConfig/MaximumConcurrency")
                .and_then(|v| scalar_string(v).parse().ok()),
            name,
        },
        "Schedule" | "ScheduleV2" => {
            let expr = string("Schedule").or_else(|_| string("ScheduleExpression"))?;
            EventSource::Schedule {
                every: rate(&expr).ok_or_else(|| {
                    format!("event {name}: unsupported schedule {expr:?}; use rate(...)")
                })?,
                name,
            }
        }
        other => {
            return Err(format!(
                "event {name}: type {other} is not played by the local runner"
            ));
        }
    })
}

/// `rate(5 minutes)` as a duration (cron expressions are not played locally).
fn rate(expr: &str) -> Option<Duration> {
    let inner = expr.strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok()?;
    let secs = match unit.trim_end_matches('s') {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n * secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Physical;

    const YAML: &str = r#"
Parameters:
  Stage: {Type: String, Default: t}
Globals:
  Function:
    Timeout: 30
    Environment:
      Variables:
        LOG: info
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties: {TableName: !Sub "x-${Stage}"}
  Queue:
    Type: AWS::SQS::Queue
    Properties: {QueueName: q}
  Fn:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties: {Binary: fanout}
    Properties:
      Timeout: 60
      Environment:
        Variables:
          TABLE: !Ref Table
      Events:
        Stream:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Table.StreamArn
            StartingPosition: TRIM_HORIZON
            BatchSize: 500
            MaximumBatchingWindowInSeconds: 1
            BisectBatchOnFunctionError: true
            MaximumRetryAttempts: 5
            MaximumRecordAgeInSeconds: 3600
            FunctionResponseTypes: [ReportBatchItemFailures]
            DestinationConfig:
              OnFailure:
                Destination: !GetAtt Queue.Arn
        Jobs:
          Type: SQS
          Properties:
            Queue: !GetAtt Queue.Arn
            BatchSize: 10
            ScalingConfig: {MaximumConcurrency: 2}
        Tick:
          Type: Schedule
          Properties: {Schedule: rate(5 minutes)}
        Api:
          Type: HttpApi
          Properties: {Path: /v1/uploads, Method: post}
"#;

    /// A created resource as the bootstrap records it: its `Ref` and attributes.
    fn physical(reference: &str, attributes: &[(&str, &str)]) -> Physical {
        Physical {
            reference: reference.into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    /// A created resource: logical id, `Ref`, attributes.
    type Deployed<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    /// A resolver of `t` (stack `s`) that knows `resources`.
    fn deployed(t: &Template, resources: &[Deployed<'_>]) -> Resolver {
        let mut r = Resolver::new(t, &BTreeMap::new(), "s", "us-east-1", "1");
        for (id, reference, attributes) in resources {
            r.record(*id, physical(reference, attributes));
        }
        r
    }

    #[test]
    fn physical_keeps_the_ref_and_every_attribute() {
        let p = physical("r", &[("Arn", "a"), ("StreamArn", "s")]);
        assert_eq!(p.reference, "r");
        assert_eq!(
            p.attributes,
            BTreeMap::from([("Arn".into(), "a".into()), ("StreamArn".into(), "s".into())])
        );
        assert!(physical("x", &[]).attributes.is_empty());
    }

    #[test]
    fn functions_resolve_with_globals_and_events() {
        let t = Template::parse(YAML).unwrap();
        let r = deployed(
            &t,
            &[
                ("Table", "x-t", &[("StreamArn", "arn:stream")]),
                ("Queue", "http://q", &[("Arn", "arn:q")]),
            ],
        );
        let f = &t.functions(&r).unwrap()[0];
        assert_eq!(f.binary, "fanout");
        assert_eq!(f.timeout, Duration::from_secs(60));
        assert_eq!(f.environment["LOG"], "info");
        assert_eq!(f.environment["TABLE"], "x-t");
        assert!(f.events.contains(&EventSource::DynamoDbStream {
            name: "Stream".into(),
            stream_arn: "arn:stream".into(),
            batch_size: 500,
            starting_position: "TRIM_HORIZON".into(),
            batching_window: Duration::from_secs(1),
            maximum_retry_attempts: Some(5),
            maximum_record_age: Some(Duration::from_secs(3600)),
            bisect_on_error: true,
            report_batch_item_failures: true,
            on_failure: Some("arn:q".into()),
        }));
        assert!(f.events.contains(&EventSource::Sqs {
            name: "Jobs".into(),
            queue_arn: "arn:q".into(),
            batch_size: 10,
            batching_window: Duration::ZERO,
            report_batch_item_failures: false,
            maximum_concurrency: Some(2),
        }));
        assert!(f.events.contains(&EventSource::Schedule {
            name: "Tick".into(),
            every: Duration::from_secs(300)
        }));
        assert!(f.events.contains(&EventSource::HttpApi {
            name: "Api".into(),
            path: "/v1/uploads".into(),
            method: "POST".into()
        }));
    }

    const MAPPINGS: &str = r#"
Parameters:
  Off: {Type: String, Default: "yes"}
Conditions:
  Never: !Equals [!Ref Off, "no"]
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties: {TableName: t}
  Queue:
    Type: AWS::SQS::Queue
    Properties: {QueueName: q}
  Fn:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties: {Binary: fanout}
    Properties:
      Events:
        Api:
          Type: HttpApi
          Properties: {Path: /p, Method: get}
  Other:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties: {Binary: push}
    Properties: {}
  StreamMapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: !Ref Fn
      EventSourceArn: !GetAtt Table.StreamArn
      StartingPosition: TRIM_HORIZON
      BatchSize: 1000
      MaximumRetryAttempts: -1
      MaximumRecordAgeInSeconds: 43200
      BisectBatchOnFunctionError: true
      FunctionResponseTypes: [ReportBatchItemFailures]
      DestinationConfig:
        OnFailure:
          Destination: !GetAtt Queue.Arn
  QueueMapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: !Ref Other.Alias
      EventSourceArn: !GetAtt Queue.Arn
      BatchSize: 5
      ScalingConfig: {MaximumConcurrency: 3}
  ArnMapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: !GetAtt Other.Arn
      EventSourceArn: !GetAtt Queue.Arn
  Disabled:
    Type: AWS::Lambda::EventSourceMapping
    Condition: Never
    Properties:
      FunctionName: !Ref Fn
      EventSourceArn: !GetAtt Queue.Arn
"#;

    #[test]
    fn event_source_mappings_are_read_as_the_functions_events() {
        let t = Template::parse(MAPPINGS).unwrap();
        let r = deployed(
            &t,
            &[
                (
                    "Table",
                    "t",
                    &[("StreamArn", "arn:aws:dynamodb:us-east-1:1:table/t/stream/x")],
                ),
                ("Queue", "http://q", &[("Arn", "arn:aws:sqs:us-east-1:1:q")]),
            ],
        );
        let functions = t.functions(&r).unwrap();
        let f = functions.iter().find(|f| f.logical_id == "Fn").unwrap();
        assert_eq!(f.events.len(), 2, "{:?}", f.events);
        assert!(f.events.contains(&EventSource::HttpApi {
            name: "Api".into(),
            path: "/p".into(),
            method: "GET".into()
        }));
        assert!(f.events.contains(&EventSource::DynamoDbStream {
            name: "StreamMapping".into(),
            stream_arn: "arn:aws:dynamodb:us-east-1:1:table/t/stream/x".into(),
            batch_size: 1000,
            starting_position: "TRIM_HORIZON".into(),
            batching_window: Duration::ZERO,
            maximum_retry_attempts: None,
            maximum_record_age: Some(Duration::from_secs(43200)),
            bisect_on_error: true,
            report_batch_item_failures: true,
            on_failure: Some("arn:aws:sqs:us-east-1:1:q".into()),
        }));
        let other = functions.iter().find(|f| f.logical_id == "Other").unwrap();
        assert_eq!(
            other.events,
            vec![
                EventSource::Sqs {
                    name: "ArnMapping".into(),
                    queue_arn: "arn:aws:sqs:us-east-1:1:q".into(),
                    batch_size: 10,
                    batching_window: Duration::ZERO,
                    report_batch_item_failures: false,
                    maximum_concurrency: None,
                },
                EventSource::Sqs {
                    name: "QueueMapping".into(),
                    queue_arn: "arn:aws:sqs:us-east-1:1:q".into(),
                    batch_size: 5,
                    batching_window: Duration::ZERO,
                    report_batch_item_failures: false,
                    maximum_concurrency: Some(3),
                },
            ]
        );
    }

    #[test]
    fn a_mapping_of_an_unplayed_source_is_refused() {
        let yaml = MAPPINGS.replace("!GetAtt Table.StreamArn", "arn:aws:kafka:x:1:cluster/c");
        let t = Template::parse(&yaml).unwrap();
        let r = deployed(
            &t,
            &[("Queue", "http://q", &[("Arn", "arn:aws:sqs:us-east-1:1:q")])],
        );
        let e = t.functions(&r).unwrap_err().to_string();
        assert!(e.contains("StreamMapping") && e.contains("kafka"), "{e}");
    }

    #[test]
    fn the_project_functions_keep_their_streams_and_queues() {
        let t =
            Template::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml")).unwrap();
        let overrides = BTreeMap::from([("Stage".to_string(), "unit".to_string())]);
        let mut r = Resolver::new(&t, &overrides, "s", "us-east-1", "1");
        for res in t.resources() {
            let service = match res.kind.as_str() {
                "AWS::DynamoDB::Table" => "dynamodb",
                "AWS::SQS::Queue" => "sqs",
                _ => continue,
            };
            let arn = format!("arn:aws:{service}:us-east-1:1:{}", res.logical_id);
            let stream = format!("{arn}/stream/s");
            r.record(
                &res.logical_id,
                physical(
                    &res.logical_id,
                    &[
                        ("Arn", &arn),
                        ("StreamArn", &stream),
                        ("QueueName", &res.logical_id),
                    ],
                ),
            );
        }
        // Everything else answers `Ref` only, as the bootstrap's
        // deployment records it (placeholders for what it does not create).
        for other in t.resources() {
            if !r.physical().contains_key(&other.logical_id) {
                r.record(&other.logical_id, physical(&other.logical_id, &[]));
            }
        }
        let functions = t.functions(&r).unwrap();
        let events = |id: &str| {
            functions
                .iter()
                .find(|f| f.logical_id == id)
                .map(|f| f.events.clone())
                .unwrap_or_default()
        };
        assert!(events("FanoutFunction").iter().any(|e| matches!(e,
            EventSource::DynamoDbStream { stream_arn, batch_size: 1000, bisect_on_error: true,
                report_batch_item_failures: true, on_failure: Some(q), maximum_retry_attempts: None, .. }
            if stream_arn.contains("TransactionsTable/stream") && q.ends_with("StreamFailureQueue"))));
        assert!(events("PushFunction").iter().any(|e| matches!(e,
            EventSource::Sqs { queue_arn, report_batch_item_failures: true, maximum_concurrency: Some(50), .. }
            if queue_arn.ends_with(":DeliveryQueue"))));
        assert!(events("StreamRecoveryFunction").iter().any(|e| matches!(e,
            EventSource::Sqs { queue_arn, batch_size: 1, .. }
            if queue_arn.ends_with(":StreamFailureQueue"))));
        assert!(events("IngestFunction").iter().any(|e| matches!(e,
            EventSource::HttpApi { path, method, .. } if path == "/v1/uploads" && method == "POST")));
    }

    #[test]
    fn unlimited_stream_retries_are_minus_one_and_typos_are_refused() {
        let event = |extra: &str| {
            let yaml = format!(
                "Type: DynamoDB\nProperties:\n  Stream: s\n  StartingPosition: LATEST\n{extra}"
            );
            let v: serde_norway::Value = serde_norway::from_str(&yaml).unwrap();
            event_source("E", &serde_json::to_value(v).unwrap())
        };
        match event("  MaximumRetryAttempts: -1\n  MaximumRecordAgeInSeconds: -1\n").unwrap() {
            EventSource::DynamoDbStream {
                maximum_retry_attempts,
                maximum_record_age,
                ..
            } => assert_eq!((maximum_retry_attempts, maximum_record_age), (None, None)),
            other => panic!("{other:?}"),
        }
        match event("  MaximumRecordAgeInSeconds: 43200\n").unwrap() {
            EventSource::DynamoDbStream {
                maximum_record_age, ..
            } => assert_eq!(maximum_record_age, Some(Duration::from_secs(43200))),
            other => panic!("{other:?}"),
        }
        assert!(event("  MaximumRetryAttempts: lots\n").is_err());
    }

    #[test]
    fn rates_parse() {
        assert_eq!(rate("rate(1 minute)"), Some(Duration::from_secs(60)));
        assert_eq!(rate("rate(2 hours)"), Some(Duration::from_secs(7200)));
        assert_eq!(rate("cron(0 * * * ? *)"), None);
    }
}
