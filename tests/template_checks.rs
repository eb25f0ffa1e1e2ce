//! template.yaml against the code: each function's policy allows every AWS
//! call it makes.
//!
//! Functions reach AWS only through `platformsync_aws` modules, so the calls
//! are found by reading the sources: a permission removed from the template
//! fails here, not in production. (Environment variables are held together
//! with the knob table by `shared/aws/tests/configuration.rs`.)

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// SDK operation (as called: `.put_item()`) to the IAM action it needs.
const OPERATIONS: &[(&str, &str)] = &[
    (".put_item()", "dynamodb:PutItem"),
    (".get_item()", "dynamodb:GetItem"),
    (".update_item()", "dynamodb:UpdateItem"),
    (".delete_item()", "dynamodb:DeleteItem"),
    (".batch_get_item()", "dynamodb:BatchGetItem"),
    (".batch_write_item()", "dynamodb:BatchWriteItem"),
    (".query()", "dynamodb:Query"),
    (".scan()", "dynamodb:Scan"),
    (".send_message()", "sqs:SendMessage"),
    (".send_message_batch()", "sqs:SendMessage"),
    (
        ".change_message_visibility()",
        "sqs:ChangeMessageVisibility",
    ),
    (
        ".change_message_visibility_batch()",
        "sqs:ChangeMessageVisibility",
    ),
    (".delete_message()", "sqs:DeleteMessage"),
    (".delete_message_batch()", "sqs:DeleteMessage"),
    (".publish()", "sns:Publish"),
    (".get_secret_value()", "secretsmanager:GetSecretValue"),
];

fn sources(dir: &Path) -> String {
    let mut text = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return text;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    text
}

/// `platformsync_aws::<module>` paths a function's code uses.
fn aws_modules(source: &str) -> BTreeSet<String> {
    source
        .split("platformsync_aws::")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

/// The methods of an adapter module: name, the SDK operations in its body
/// and the methods of its own it calls (`self.name(`).
fn methods(module: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let ident = |rest: &str| -> String {
        rest.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeMap::new();
    for chunk in module.split("fn ").skip(1) {
        let name = ident(chunk);
        // Its own methods (`self.x(`) and the shared DynamoDB helpers
        // (`dynamo::x(`) it calls.
        let calls = chunk
            .split("self.")
            .skip(1)
            .chain(chunk.split("dynamo::").skip(1))
            .map(ident)
            .collect();
        out.insert(name, (chunk.to_owned(), calls));
    }
    out
}

/// IAM actions of the SDK calls the function makes, directly or through the
/// adapter methods it calls (followed through their private helpers).
fn actions_needed(function_source: &str, root: &Path) -> BTreeSet<&'static str> {
    let ops_in = |text: &str| -> BTreeSet<&'static str> {
        OPERATIONS
            .iter()
            .filter(|(call, _)| text.contains(call))
            .map(|(_, a)| *a)
            .collect()
    };
    let mut needed = ops_in(function_source);
    for module in aws_modules(function_source) {
        let path = root.join(format!("shared/aws/src/{module}.rs"));
        let helpers = root.join("shared/aws/src/dynamo.rs");
        let methods = methods(&format!(
            "{}\n{}",
            std::fs::read_to_string(path).unwrap_or_default(),
            std::fs::read_to_string(helpers).unwrap_or_default()
        ));
        let mut todo: Vec<String> = methods
            .keys()
            .filter(|m| {
                function_source.contains(&format!(".{m}("))
                    || function_source.contains(&format!("::{m}("))
            })
            .cloned()
            .collect();
        let mut seen = BTreeSet::new();
        while let Some(m) = todo.pop() {
            if !seen.insert(m.clone()) {
                continue;
            }
            if let Some((body, calls)) = methods.get(&m) {
                needed.extend(ops_in(body));
                todo.extend(calls.iter().filter(|c| methods.contains_key(*c)).cloned());
            }
        }
    }
    needed
}

/// Actions the function's inline policy statements allow.
fn actions_allowed(properties: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for policy in properties["Policies"].as_array().into_iter().flatten() {
        for statement in policy["Statement"].as_array().into_iter().flatten() {
            if statement["Effect"] != "Allow" {
                continue;
            }
            match &statement["Action"] {
                Value::String(a) => {
                    out.insert(a.clone());
                }
                Value::Array(list) => {
                    out.extend(list.iter().filter_map(|a| a.as_str().map(str::to_owned)))
                }
                _ => {}
            }
        }
    }
    out
}

struct Function {
    logical_id: String,
    binary: String,
    properties: Value,
}

fn functions() -> Vec<Function> {
    let template = platformsync_tests::template();
    let mut out = Vec::new();
    for r in template.resources() {
        if r.kind != "AWS::Serverless::Function" {
            continue;
        }
        out.push(Function {
            logical_id: r.logical_id.clone(),
            binary: r.metadata["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            properties: r.properties.clone(),
        });
    }
    out
}

#[test]
fn every_function_may_make_the_calls_it_makes() {
    let root = platformsync_tests::repo_root();
    for f in functions() {
        let source = sources(&root.join("functions").join(&f.binary).join("src"));
        let allowed = actions_allowed(&f.properties);
        for action in actions_needed(&source, &root) {
            assert!(
                allowed.contains(action),
                "{} calls {action} but its policy does not allow it (allowed: {allowed:?})",
                f.logical_id
            );
        }
        assert!(
            !allowed.iter().any(|a| a == "*" || a.ends_with(":*")),
            "{}: no wildcard actions",
            f.logical_id
        );
    }
}

#[test]
fn the_checks_notice_a_missing_variable_or_permission() {
    // The scanners themselves find what they must.
    let props: Value = serde_json::json!({"Policies": [{"Statement": [
        {"Effect": "Allow", "Action": ["dynamodb:PutItem"], "Resource": "x"}
    ]}]});
    assert_eq!(
        actions_allowed(&props),
        BTreeSet::from(["dynamodb:PutItem".to_owned()])
    );
    let root = platformsync_tests::repo_root();
    let needed = actions_needed(
        "use platformsync_aws::transactions::TransactionStore; store.insert_new(&r)",
        &root,
    );
    assert_eq!(
        needed,
        BTreeSet::from(["dynamodb:PutItem"]),
        "only what is called"
    );
    // Through a shared helper too.
    let needed = actions_needed(
        "use platformsync_aws::config_table::ConfigStore; store.safe_owners(&s)",
        &root,
    );
    assert_eq!(needed, BTreeSet::from(["dynamodb:BatchGetItem"]));
}

/// The statements of a function's inline policies.
fn statements(properties: &Value) -> Vec<Value> {
    properties["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["Statement"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn ingest_writes_only_the_sequence_item_of_the_config_table() {
    // The template limits ingest's PutItem on the config table to the
    // attributes of a sequence-progress item (an owner, assignment or
    // endpoint item has others): those attributes must be exactly what the
    // code writes, or every upload of a new safe is denied on AWS.
    let ingest = functions()
        .into_iter()
        .find(|f| f.logical_id == "IngestFunction")
        .expect("IngestFunction");
    let writes: Vec<Value> = statements(&ingest.properties)
        .into_iter()
        .filter(|s| s["Resource"] == serde_json::json!({"Fn::GetAtt": ["ConfigTable", "Arn"]}))
        .filter(|s| {
            let actions = &s["Action"];
            actions == "dynamodb:PutItem"
                || actions
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| a == "dynamodb:PutItem"))
        })
        .collect();
    assert_eq!(writes.len(), 1, "one write statement: {writes:?}");
    let condition = &writes[0]["Condition"];
    assert_eq!(
        condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"],
        serde_json::json!(["SAFE#*"])
    );
    let allowed: BTreeSet<String> = condition["ForAllValues:StringEquals"]["dynamodb:Attributes"]
        .as_array()
        .expect("dynamodb:Attributes")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let record = platformsync_aws::config_table::SequenceRecord {
        contiguous: 1,
        pending: vec![3],
        version: 2,
    };
    let item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
        serde_dynamo::to_item(&record).unwrap();
    let written: BTreeSet<String> = item
        .keys()
        .cloned()
        .chain(["PK".to_owned(), "SK".to_owned()])
        .collect();
    assert_eq!(written, allowed, "sequence item attributes vs the template");
    // An owner item carries an attribute outside the list.
    assert!(!allowed.contains("CustomerId"));
}

#[test]
fn data_survives_delete_and_replacement() {
    let template = platformsync_tests::template();
    let mut data = 0;
    for r in template.resources() {
        let kind = r.kind.as_str();
        if !matches!(kind, "AWS::DynamoDB::Table" | "AWS::SecretsManager::Secret") {
            continue;
        }
        data += 1;
        assert_eq!(
            r.deletion_policy.as_deref(),
            Some("Retain"),
            "{}",
            r.logical_id
        );
        assert_eq!(
            r.update_replace_policy.as_deref(),
            Some("Retain"),
            "{}",
            r.logical_id
        );
        if kind == "AWS::DynamoDB::Table" {
            assert_eq!(
                r.properties["DeletionProtectionEnabled"], true,
                "{}: deletion protection",
                r.logical_id
            );
        }
    }
    assert!(data >= 5, "four tables and the ingest key");
}

#[test]
fn every_function_logs_to_a_group_with_retention() {
    let template = platformsync_tests::template();
    for f in functions() {
        let group = f.properties["LoggingConfig"]["LogGroup"]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: LoggingConfig.LogGroup", f.logical_id));
        let group = template
            .resource(group)
            .unwrap_or_else(|| panic!("{}: log group {group}", f.logical_id));
        assert_eq!(group.kind, "AWS::Logs::LogGroup");
        assert_eq!(
            group.properties["RetentionInDays"],
            serde_json::json!({"Ref": "LogRetentionDays"}),
            "{}",
            f.logical_id
        );
    }
    // START/REPORT lines are INFO-level platform events in JSON format.
    assert_eq!(
        template.globals()["Function"]["LoggingConfig"]["SystemLogLevel"],
        "INFO"
    );
    for alarm in template
        .resources()
        .filter(|r| r.kind == "AWS::CloudWatch::Alarm")
    {
        assert_eq!(
            alarm.properties["OKActions"], alarm.properties["AlarmActions"],
            "{}: OK actions",
            alarm.logical_id
        );
    }
}

#[test]
fn an_upload_flood_cannot_starve_delivery() {
    let template = platformsync_tests::template();
    let api = template.resource("HttpApi").expect("HttpApi");
    let defaults = &api.properties["DefaultRouteSettings"];
    assert_eq!(
        defaults["ThrottlingRateLimit"],
        serde_json::json!({"Ref": "ApiThrottlingRateLimit"})
    );
    assert_eq!(
        defaults["ThrottlingBurstLimit"],
        serde_json::json!({"Ref": "ApiThrottlingBurstLimit"})
    );
    assert!(
        api.properties["AccessLogSettings"]["DestinationArn"].is_object(),
        "access logs"
    );
    let format = api.properties["AccessLogSettings"]["Format"]
        .as_str()
        .unwrap_or_default();
    for secret in ["header", "authorization", "body", "querystring"] {
        assert!(
            !format.to_ascii_lowercase().contains(secret),
            "the access log never carries the ingest key or payload ({secret})"
        );
    }
    let ingest = template.resource("IngestFunction").expect("IngestFunction");
    assert_eq!(
        ingest.properties["ReservedConcurrentExecutions"],
        serde_json::json!({"Fn::If": ["ReservesIngestConcurrency",
            {"Ref": "IngestReservedConcurrency"}, {"Ref": "AWS::NoValue"}]})
    );
}
