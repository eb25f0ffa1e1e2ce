//! Typed specs of the resources the local stack emulates, read from resolved
//! template properties.
//!
//! Every resource type in the template must be classified here: either it is
//! created locally, or it is named as not emulated (functions run in the local
//! runner; alarms, dashboards and subscriptions have no local meaning). An
//! unknown type is an error, so a new kind of resource cannot silently be
//! missing from the local stack.

use crate::{Resource, TemplateError, scalar_string};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalResource {
    Table(TableSpec),
    Queue(QueueSpec),
    Topic(TopicSpec),
    Secret(SecretSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyElement {
    pub name: String,
    /// `HASH` or `RANGE`.
    pub key_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondaryIndex {
    pub name: String,
    pub key_schema: Vec<KeyElement>,
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    pub key_schema: Vec<KeyElement>,
    /// Attribute name to type (`S`, `N`, `B`).
    pub attributes: BTreeMap<String, String>,
    pub global_indexes: Vec<SecondaryIndex>,
    /// `NEW_IMAGE`, `NEW_AND_OLD_IMAGES`, ... when the table has a stream.
    pub stream_view_type: Option<String>,
    pub ttl_attribute: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub fifo: bool,
    /// SQS attributes as the `CreateQueue` API takes them (`RedrivePolicy` as JSON text).
    pub attributes: BTreeMap<String, String>,
}

impl QueueSpec {
    /// The redrive policy's dead-letter target ARN and max receive count.
    pub fn redrive(&self) -> Option<(String, u32)> {
        let policy: Value = serde_json::from_str(self.attributes.get("RedrivePolicy")?).ok()?;
        let arn = policy.get("deadLetterTargetArn")?.as_str()?.to_owned();
        let max = scalar_string(policy.get("maxReceiveCount")?).parse().ok()?;
        Some((arn, max))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub fifo: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub name: String,
    pub description: Option<String>,
    /// Length of the value to generate when the template asks for one.
    pub generate_length: Option<usize>,
}

/// Resource types that exist in the template but are not created by the local
/// bootstrap, and why.
pub const NOT_EMULATED: &[(&str, &str)] = &[
    ("AWS::Serverless::Function", "run by the local runner"),
    ("AWS::Serverless::HttpApi", "served by the local runner"),
    ("AWS::Lambda::Permission", "no Lambda service locally"),
    (
        "AWS::Lambda::EventSourceMapping",
        "played by the local runner",
    ),
    ("AWS::SNS::Subscription", "no e-mail locally"),
    ("AWS::SNS::TopicPolicy", "no resource policies locally"),
    ("AWS::SQS::QueuePolicy", "no resource policies locally"),
    ("AWS::CloudWatch::Alarm", "alarms are for operations on AWS"),
    (
        "AWS::CloudWatch::Dashboard",
        "dashboards are for operations on AWS",
    ),
    ("AWS::Logs::LogGroup", "logs go to the terminal locally"),
    ("AWS::IAM::Role", "no IAM locally"),
];

/// Why `kind` is not created by the local bootstrap, or `None` if it is.
pub fn not_emulated(kind: &str) -> Option<&'static str> {
    NOT_EMULATED
        .iter()
        .find(|(t, _)| *t == kind)
        .map(|(_, why)| *why)
}

/// Reads a resolved resource as something to create locally, `Ok(None)` for a
/// type in [`NOT_EMULATED`].
pub fn local_resource(
    resource: &Resource,
    props: &Value,
) -> Result<Option<LocalResource>, TemplateError> {
    let err = |message: String| TemplateError::Resource {
        logical_id: resource.logical_id.clone(),
        message,
    };
    let string = |key: &str| -> Result<String, TemplateError> {
        props
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| err(format!("needs {key} (local names must be explicit)")))
    };
    let flag = |key: &str| props.get(key).is_some_and(|v| scalar_string(v) == "true");

    Ok(Some(match resource.kind.as_str() {
        "AWS::DynamoDB::Table" => {
            let keys = key_schema(props.get("KeySchema")).map_err(&err)?;
            let attributes = props
                .get("AttributeDefinitions")
                .and_then(Value::as_array)
                .ok_or_else(|| err("needs AttributeDefinitions".into()))?
                .iter()
                .map(|a| {
                    Some((
                        a.get("AttributeName")?.as_str()?.to_owned(),
                        a.get("AttributeType")?.as_str()?.to_owned(),
                    ))
                })
                .collect::<Option<BTreeMap<_, _>>>()
                .ok_or_else(|| err("malformed AttributeDefinitions".into()))?;
            let global_indexes = props
                .get("GlobalSecondaryIndexes")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .map(|gsi| {
                            Ok(SecondaryIndex {
                                name: gsi
                                    .get("IndexName")
                                    .and_then(Value::as_str)
                                    .ok_or("index needs IndexName")?
                                    .to_owned(),
                                key_schema: key_schema(gsi.get("KeySchema"))?,
                                projection: gsi
                                    .pointer("/Projection/ProjectionType")
                                    .and_then(Value::as_str)
                                    .unwrap_or("ALL")
                                    .to_owned(),
                            })
                        })
                        .collect::<Result<Vec<_>, String>>()
                })
                .transpose()
                .map_err(&err)?
                .unwrap_or_default();
            let ttl = props.get("TimeToLiveSpecification");
            LocalResource::Table(TableSpec {
                name: string("TableName")?,
                key_schema: keys,
                attributes,
                global_indexes,
                stream_view_type: props
                    .pointer("/StreamSpecification/StreamViewType")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                ttl_attribute: ttl
                    .filter(|t| t.get("Enabled").is_some_and(|e| scalar_string(e) == "true"))
                    .and_then(|t| t.get("AttributeName"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
        }
        "AWS::SQS::Queue" => {
            let name = string("QueueName")?;
            let mut attributes = BTreeMap::new();
            for (key, value) in props.as_object().into_iter().flatten() {
                match key.as_str() {
                    "QueueName" | "Tags" => {}
                    "RedrivePolicy" | "RedriveAllowPolicy" => {
                        // CloudFormation takes an object, the SQS API a JSON string.
                        let text = match value {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        attributes.insert(key.clone(), text);
                    }
                    _ => {
                        attributes.insert(key.clone(), scalar_string(value));
                    }
                }
            }
            let fifo = flag("FifoQueue");
            if fifo != name.ends_with(".fifo") {
                return Err(err(
                    "a FIFO queue's name must end in .fifo, and only its".into()
                ));
            }
            LocalResource::Queue(QueueSpec {
                name,
                fifo,
                attributes,
            })
        }
        "AWS::SNS::Topic" => LocalResource::Topic(TopicSpec {
            name: string("TopicName")?,
            fifo: flag("FifoTopic"),
        }),
        "AWS::SecretsManager::Secret" => LocalResource::Secret(SecretSpec {
            name: string("Name")?,
            description: props
                .get("Description")
                .and_then(Value::as_str)
                .map(str::to_owned),
            generate_length: props.get("GenerateSecretString").map(|g| {
                g.get("PasswordLength")
                    .and_then(|l| scalar_string(l).parse().ok())
                    .unwrap_or(32)
            }),
        }),
        other if not_emulated(other).is_some() => return Ok(None),
        other => {
            return Err(err(format!(
                "type {other} is neither created locally nor listed as not emulated"
            )));
        }
    }))
}

fn key_schema(v: Option<&Value>) -> Result<Vec<KeyElement>, String> {
    v.and_then(Value::as_array)
        .ok_or("needs KeySchema")?
        .iter()
        .map(|k| {
            Some(KeyElement {
                name: k.get("AttributeName")?.as_str()?.to_owned(),
                key_type: k.get("KeyType")?.as_str()?.to_owned(),
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| "malformed KeySchema".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Physical, Resolver, Template};

    /// Resolves the project's template the way the bootstrap does, recording
    /// made-up physical ids as it goes.
    fn project_specs() -> Vec<(String, LocalResource)> {
        let t =
            Template::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml")).unwrap();
        let overrides = BTreeMap::from([("Stage".to_string(), "unit".to_string())]);
        let mut r = Resolver::new(&t, &overrides, "stack", "us-east-1", "123456789012");
        let mut out = Vec::new();
        for res in t.creation_order().unwrap() {
            if not_emulated(&res.kind).is_some() || !r.is_enabled(res).unwrap() {
                continue;
            }
            let props = r.resolve(&res.properties).unwrap();
            if let Some(spec) = local_resource(res, &props).unwrap() {
                r.record(
                    &res.logical_id,
                    Physical {
                        reference: format!("ref:{}", res.logical_id),
                        attributes: BTreeMap::from([(
                            "Arn".into(),
                            format!("arn:{}", res.logical_id),
                        )]),
                    },
                );
                out.push((res.logical_id.clone(), spec));
            }
        }
        out
    }

    #[test]
    fn project_template_declares_the_foundation_resources() {
        let specs = project_specs();
        let get = |id: &str| {
            specs
                .iter()
                .find(|(l, _)| l == id)
                .map(|(_, s)| s.clone())
                .unwrap()
        };
        let LocalResource::Table(tx) = get("TransactionsTable") else {
            panic!()
        };
        assert_eq!(tx.name, "platformsync-unit-transactions");
        assert_eq!(tx.stream_view_type.as_deref(), Some("NEW_IMAGE"));
        assert_eq!(tx.key_schema[0].name, "SerialNumber");
        let LocalResource::Table(rejects) = get("RejectsTable") else {
            panic!()
        };
        assert_eq!(rejects.ttl_attribute.as_deref(), Some("ExpiresAt"));
        let LocalResource::Queue(q) = get("DeliveryQueue") else {
            panic!()
        };
        assert!(q.fifo);
        assert_eq!(
            q.redrive(),
            Some(("arn:DeliveryDeadLetterQueue".into(), 1000))
        );
        assert_eq!(
            q.attributes.get("FifoQueue").map(String::as_str),
            Some("true")
        );
        let LocalResource::Secret(s) = get("IngestKeySecret") else {
            panic!()
        };
        assert_eq!(s.name, "platformsync/unit/ingest-key");
        assert_eq!(s.generate_length, Some(48));
        assert!(specs.iter().any(|(id, _)| id == "NotificationsTopic"));
        // Conditional subscriptions are off without a support e-mail and are
        // never emulated anyway.
        assert!(!specs.iter().any(|(id, _)| id.contains("Subscription")));
    }

    #[test]
    fn unknown_types_are_refused() {
        let res = Resource {
            logical_id: "X".into(),
            kind: "AWS::Kinesis::Stream".into(),
            condition: None,
            properties: Value::Null,
            metadata: Value::Null,
            deletion_policy: None,
            update_replace_policy: None,
        };
        let e = local_resource(&res, &Value::Null).unwrap_err().to_string();
        assert!(e.contains("AWS::Kinesis::Stream"), "{e}");
    }

    #[test]
    fn fifo_flag_and_name_must_agree() {
        let res = Resource {
            logical_id: "Q".into(),
            kind: "AWS::SQS::Queue".into(),
            condition: None,
            properties: Value::Null,
            metadata: Value::Null,
            deletion_policy: None,
            update_replace_policy: None,
        };
        let props = serde_json::json!({"QueueName": "q", "FifoQueue": true});
        assert!(local_resource(&res, &props).is_err());
    }
}
