//! `template.yaml` as data: the one description of PlatformSync's resources.
//!
//! The local stack has no CloudFormation, so the bootstrap and the local runner
//! read the same SAM template the cloud deploys and resolve the few intrinsic
//! functions it uses themselves. That is what keeps local and cloud from
//! drifting: a table, queue, topic or secret exists locally only because the
//! template declares it.
//!
//! - [`Template::parse`] reads YAML, turning CloudFormation short tags (`!Ref`,
//!   `!Sub`, `!GetAtt`, ...) into their long JSON forms (`{"Ref": ..}`), so the
//!   rest of the crate works on plain `serde_json::Value`s.
//! - [`Resolver`] evaluates intrinsics against parameters, pseudo parameters and
//!   the physical ids/attributes of resources created so far.
//! - [`spec`] turns resolved properties into typed specs (tables, queues,
//!   topics, secrets) the bootstrap can create.

pub mod function;
pub mod spec;

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub use function::{EventSource, FunctionSpec};
pub use spec::{LocalResource, QueueSpec, SecretSpec, TableSpec, TopicSpec};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("template: {0}")]
    Shape(String),
    #[error("resource {logical_id}: {message}")]
    Resource { logical_id: String, message: String },
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The value refers to a resource not created yet (or not emulated).
    #[error("{0} is not available (not created yet, or not emulated locally)")]
    Unresolved(String),
    #[error("unknown parameter or pseudo parameter {0}")]
    UnknownParameter(String),
    #[error("unsupported intrinsic function {0}")]
    Unsupported(String),
    #[error("malformed {function}: {message}")]
    Malformed {
        function: &'static str,
        message: String,
    },
}

/// One entry of `Resources`.
#[derive(Debug, Clone)]
pub struct Resource {
    pub logical_id: String,
    pub kind: String,
    pub condition: Option<String>,
    /// Properties with intrinsics still unresolved.
    pub properties: Value,
    /// The resource's `Metadata` (SAM build settings for functions).
    pub metadata: Value,
    /// `DeletionPolicy` (`Retain` keeps data through `sam delete`).
    pub deletion_policy: Option<String>,
    /// `UpdateReplacePolicy` (`Retain` keeps data through a replacement).
    pub update_replace_policy: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Template {
    parameter_defaults: BTreeMap<String, Value>,
    globals: Map<String, Value>,
    conditions: BTreeMap<String, Value>,
    resources: BTreeMap<String, Resource>,
}

impl Template {
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TemplateError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(yaml: &str) -> Result<Self, TemplateError> {
        let raw: serde_norway::Value = serde_norway::from_str(yaml)?;
        let root = yaml_to_json(raw)?;
        let section = |name: &str| -> Map<String, Value> {
            root.get(name)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };

        let parameter_defaults = section("Parameters")
            .into_iter()
            .filter_map(|(name, p)| p.get("Default").cloned().map(|d| (name, d)))
            .collect();
        let conditions = section("Conditions").into_iter().collect();

        let mut resources = BTreeMap::new();
        for (logical_id, body) in section("Resources") {
            let kind = body
                .get("Type")
                .and_then(Value::as_str)
                .ok_or_else(|| TemplateError::Resource {
                    logical_id: logical_id.clone(),
                    message: "has no Type".into(),
                })?
                .to_owned();
            let condition = body
                .get("Condition")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let properties = body.get("Properties").cloned().unwrap_or(Value::Null);
            let metadata = body.get("Metadata").cloned().unwrap_or(Value::Null);
            let policy = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
            resources.insert(
                logical_id.clone(),
                Resource {
                    logical_id,
                    kind,
                    condition,
                    properties,
                    metadata,
                    deletion_policy: policy("DeletionPolicy"),
                    update_replace_policy: policy("UpdateReplacePolicy"),
                },
            );
        }
        if resources.is_empty() {
            return Err(TemplateError::Shape("no Resources".into()));
        }
        Ok(Self {
            parameter_defaults,
            globals: section("Globals"),
            conditions,
            resources,
        })
    }

    /// The `Globals` section (SAM), intrinsics unresolved.
    pub fn globals(&self) -> &Map<String, Value> {
        &self.globals
    }

    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.resources.values()
    }

    pub fn resource(&self, logical_id: &str) -> Option<&Resource> {
        self.resources.get(logical_id)
    }

    /// Parameter defaults as strings (how `Ref` sees them), overridden by `overrides`.
    pub fn parameters(&self, overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = self
            .parameter_defaults
            .iter()
            .map(|(k, v)| (k.clone(), scalar_string(v)))
            .collect();
        out.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    /// Other resources this one's properties refer to (through `Ref`,
    /// `Fn::GetAtt` or `Fn::Sub`), so they can be created first.
    pub fn dependencies(&self, resource: &Resource) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut properties = resource.properties.clone();
        if resource.kind == "AWS::Serverless::Function" {
            // SAM turns a DeploymentPreference into a CodeDeploy deployment
            // group that comes after the function; its alarms usually watch
            // the function, so they are no dependency of it.
            if let Some(map) = properties.as_object_mut() {
                map.remove("DeploymentPreference");
            }
        }
        collect_references(&properties, &mut out);
        out.retain(|id| self.resources.contains_key(id) && id != &resource.logical_id);
        out
    }

    /// Resources in an order where every resource comes after the ones it
    /// refers to. A reference cycle is an error (CloudFormation rejects it too).
    pub fn creation_order(&self) -> Result<Vec<&Resource>, TemplateError> {
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut order = Vec::with_capacity(self.resources.len());
        while order.len() < self.resources.len() {
            let before = order.len();
            for r in self.resources.values() {
                if done.contains(r.logical_id.as_str()) {
                    continue;
                }
                if self
                    .dependencies(r)
                    .iter()
                    .all(|d| done.contains(d.as_str()))
                {
                    done.insert(&r.logical_id);
                    order.push(r);
                }
            }
            if order.len() == before {
                return Err(TemplateError::Shape(
                    "resources refer to each other in a cycle".into(),
                ));
            }
        }
        Ok(order)
    }
}

/// What a created resource answers to `Ref` and `Fn::GetAtt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Physical {
    #[serde(rename = "Ref")]
    pub reference: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// Evaluates intrinsic functions.
#[derive(Debug, Clone)]
pub struct Resolver {
    parameters: BTreeMap<String, String>,
    conditions: BTreeMap<String, Value>,
    stack_name: String,
    region: String,
    account_id: String,
    physical: BTreeMap<String, Physical>,
}

impl Resolver {
    /// A resolver for `template` with its parameter defaults overridden by
    /// `overrides`.
    pub fn new(
        template: &Template,
        overrides: &BTreeMap<String, String>,
        stack_name: impl Into<String>,
        region: impl Into<String>,
        account_id: impl Into<String>,
    ) -> Self {
        Self {
            parameters: template.parameters(overrides),
            conditions: template.conditions.clone(),
            stack_name: stack_name.into(),
            region: region.into(),
            account_id: account_id.into(),
            physical: BTreeMap::new(),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Records a created resource so later `Ref`/`GetAtt` can see it.
    pub fn record(&mut self, logical_id: impl Into<String>, physical: Physical) {
        self.physical.insert(logical_id.into(), physical);
    }

    pub fn physical(&self) -> &BTreeMap<String, Physical> {
        &self.physical
    }

    /// Resolves every intrinsic inside `value`. `AWS::NoValue` removes the
    /// property that holds it, as CloudFormation does.
    pub fn resolve(&self, value: &Value) -> Result<Value, ResolveError> {
        Ok(self.resolve_opt(value)?.unwrap_or(Value::Null))
    }

    fn resolve_opt(&self, value: &Value) -> Result<Option<Value>, ResolveError> {
        match value {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    if let Some(v) = self.resolve_opt(item)? {
                        out.push(v);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            Value::Object(map) => {
                if let Some((name, arg)) = single_intrinsic(map) {
                    return self.intrinsic(name, arg);
                }
                let mut out = Map::new();
                for (k, v) in map {
                    if let Some(v) = self.resolve_opt(v)? {
                        out.insert(k.clone(), v);
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            other => Ok(Some(other.clone())),
        }
    }

    fn intrinsic(&self, name: &str, arg: &Value) -> Result<Option<Value>, ResolveError> {
        match name {
            "Ref" => {
                let target = arg.as_str().ok_or(ResolveError::Malformed {
                    function: "Ref",
                    message: "expects a name".into(),
                })?;
                if target == "AWS::NoValue" {
                    return Ok(None);
                }
                self.reference(target).map(|s| Some(Value::String(s)))
            }
            "Fn::GetAtt" => {
                let (res, attr) = get_att_parts(arg)?;
                self.attribute(&res, &attr).map(|s| Some(Value::String(s)))
            }
            "Fn::Sub" => self.sub(arg).map(|s| Some(Value::String(s))),
            "Fn::Join" => {
                let parts =
                    arg.as_array()
                        .filter(|a| a.len() == 2)
                        .ok_or(ResolveError::Malformed {
                            function: "Fn::Join",
                            message: "expects [delimiter, [values]]".into(),
                        })?;
                let delimiter = parts[0].as_str().unwrap_or_default();
                let values = self.resolve(&parts[1])?;
                let values = values.as_array().ok_or(ResolveError::Malformed {
                    function: "Fn::Join",
                    message: "second argument must be a list".into(),
                })?;
                let joined: Vec<String> = values.iter().map(scalar_string).collect();
                Ok(Some(Value::String(joined.join(delimiter))))
            }
            "Fn::If" => {
                let parts =
                    arg.as_array()
                        .filter(|a| a.len() == 3)
                        .ok_or(ResolveError::Malformed {
                            function: "Fn::If",
                            message: "expects [condition, then, else]".into(),
                        })?;
                let name = parts[0].as_str().unwrap_or_default();
                let branch = if self.condition(name)? {
                    &parts[1]
                } else {
                    &parts[2]
                };
                self.resolve_opt(branch)
            }
            other => Err(ResolveError::Unsupported(other.to_owned())),
        }
    }

    fn reference(&self, target: &str) -> Result<String, ResolveError> {
        match target {
            "AWS::StackName" => return Ok(self.stack_name.clone()),
            "AWS::Region" => return Ok(self.region.clone()),
            "AWS::AccountId" => return Ok(self.account_id.clone()),
            "AWS::Partition" => return Ok("aws".into()),
            "AWS::URLSuffix" => return Ok("amazonaws.com".into()),
            _ => {}
        }
        if let Some(p) = self.parameters.get(target) {
            return Ok(p.clone());
        }
        if let Some(r) = self.physical.get(target) {
            return Ok(r.reference.clone());
        }
        if target.starts_with("AWS::") {
            return Err(ResolveError::UnknownParameter(target.into()));
        }
        Err(ResolveError::Unresolved(target.into()))
    }

    fn attribute(&self, resource: &str, attr: &str) -> Result<String, ResolveError> {
        self.physical
            .get(resource)
            .and_then(|p| p.attributes.get(attr))
            .cloned()
            .ok_or_else(|| ResolveError::Unresolved(format!("{resource}.{attr}")))
    }

    fn sub(&self, arg: &Value) -> Result<String, ResolveError> {
        let (text, vars) =
            match arg {
                Value::String(s) => (s.as_str(), Map::new()),
                Value::Array(a) if a.len() == 2 => {
                    let text = a[0].as_str().ok_or(ResolveError::Malformed {
                        function: "Fn::Sub",
                        message: "first element must be a string".into(),
                    })?;
                    let vars = self.resolve(&a[1])?.as_object().cloned().ok_or(
                        ResolveError::Malformed {
                            function: "Fn::Sub",
                            message: "second element must be a map".into(),
                        },
                    )?;
                    (text, vars)
                }
                _ => {
                    return Err(ResolveError::Malformed {
                        function: "Fn::Sub",
                        message: "expects a string or [string, map]".into(),
                    });
                }
            };
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or(ResolveError::Malformed {
                function: "Fn::Sub",
                message: format!("unclosed ${{ in {text:?}"),
            })?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                // `${!Literal}` writes `${Literal}` unchanged.
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(&scalar_string(v));
            } else if let Some((res, attr)) = name.split_once('.') {
                out.push_str(&self.attribute(res, attr)?);
            } else {
                out.push_str(&self.reference(name)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Whether a resource's `Condition` holds under these parameters.
    pub fn is_enabled(&self, resource: &Resource) -> Result<bool, ResolveError> {
        match &resource.condition {
            None => Ok(true),
            Some(name) => self.condition(name),
        }
    }

    /// Evaluates a named condition of the template.
    pub fn condition(&self, name: &str) -> Result<bool, ResolveError> {
        let body = self
            .conditions
            .get(name)
            .ok_or_else(|| ResolveError::Unresolved(format!("condition {name}")))?;
        self.eval_condition(body)
    }

    fn eval_condition(&self, body: &Value) -> Result<bool, ResolveError> {
        let map = body.as_object().ok_or(ResolveError::Malformed {
            function: "Condition",
            message: "expects a function".into(),
        })?;
        let (name, arg) = single_intrinsic(map).ok_or(ResolveError::Malformed {
            function: "Condition",
            message: "expects a single function".into(),
        })?;
        let list = || {
            arg.as_array().ok_or(ResolveError::Malformed {
                function: "Condition",
                message: format!("{name} expects a list"),
            })
        };
        match name {
            "Fn::Equals" => {
                let l = list()?;
                if l.len() != 2 {
                    return Err(ResolveError::Malformed {
                        function: "Fn::Equals",
                        message: "expects two values".into(),
                    });
                }
                Ok(scalar_string(&self.resolve(&l[0])?) == scalar_string(&self.resolve(&l[1])?))
            }
            "Fn::Not" => Ok(!self.eval_condition(list()?.first().unwrap_or(&Value::Null))?),
            "Fn::And" => list()?
                .iter()
                .try_fold(true, |acc, c| Ok(acc && self.eval_condition(c)?)),
            "Fn::Or" => list()?
                .iter()
                .try_fold(false, |acc, c| Ok(acc || self.eval_condition(c)?)),
            "Condition" => self.condition(arg.as_str().unwrap_or_default()),
            other => Err(ResolveError::Unsupported(other.to_owned())),
        }
    }
}

/// `{"Ref": x}` / `{"Fn::...": x}` / `{"Condition": x}`: an object with one
/// key naming an intrinsic.
fn single_intrinsic(map: &Map<String, Value>) -> Option<(&str, &Value)> {
    if map.len() != 1 {
        return None;
    }
    let (k, v) = map.iter().next()?;
    (k == "Ref" || k == "Condition" || k.starts_with("Fn::")).then_some((k.as_str(), v))
}

fn get_att_parts(arg: &Value) -> Result<(String, String), ResolveError> {
    let malformed = || ResolveError::Malformed {
        function: "Fn::GetAtt",
        message: format!("expects [Resource, Attribute], got {arg}"),
    };
    match arg {
        Value::String(s) => s
            .split_once('.')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .ok_or_else(malformed),
        Value::Array(a) if a.len() == 2 => match (a[0].as_str(), a[1].as_str()) {
            (Some(r), Some(at)) => Ok((r.to_owned(), at.to_owned())),
            _ => Err(malformed()),
        },
        _ => Err(malformed()),
    }
}

fn collect_references(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        Value::Object(map) => {
            if let Some((name, arg)) = single_intrinsic(map) {
                match name {
                    "Ref" => {
                        if let Some(s) = arg.as_str() {
                            out.insert(s.to_owned());
                        }
                        return;
                    }
                    "Fn::GetAtt" => {
                        if let Ok((r, _)) = get_att_parts(arg) {
                            out.insert(r);
                        }
                        return;
                    }
                    "Fn::Sub" => {
                        let text = match arg {
                            Value::String(s) => Some(s.as_str()),
                            Value::Array(a) => {
                                a.get(1)
                                    .into_iter()
                                    .for_each(|v| collect_references(v, out));
                                a.first().and_then(Value::as_str)
                            }
                            _ => None,
                        };
                        for name in text.into_iter().flat_map(sub_names) {
                            let res = name.split_once('.').map_or(name, |(r, _)| r);
                            out.insert(res.to_owned());
                        }
                        return;
                    }
                    _ => {}
                }
            }
            map.values().for_each(|v| collect_references(v, out));
        }
        _ => {}
    }
}

fn sub_names(text: &str) -> impl Iterator<Item = &str> {
    text.split("${")
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name))
        .filter(|name| !name.starts_with('!'))
}

/// How CloudFormation turns a scalar into a string (numbers as written,
/// booleans as `true`/`false`).
pub fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Converts YAML to JSON, rewriting short-form tags to long-form intrinsics.
fn yaml_to_json(v: serde_norway::Value) -> Result<Value, TemplateError> {
    use serde_norway::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n)
            .map_err(|e| TemplateError::Shape(format!("number {n}: {e}")))?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    other => {
                        return Err(TemplateError::Shape(format!(
                            "mapping key must be a string, got {other:?}"
                        )));
                    }
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = yaml_to_json(tagged.value)?;
            let long = match tag {
                "Ref" | "Condition" => tag.to_owned(),
                "GetAtt" => {
                    // `!GetAtt A.B` is a string; the long form is a list.
                    let inner = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((a, b)) => Value::Array(vec![a.into(), b.into()]),
                            None => Value::String(s),
                        },
                        other => other,
                    };
                    let mut m = Map::new();
                    m.insert("Fn::GetAtt".into(), inner);
                    return Ok(Value::Object(m));
                }
                other => format!("Fn::{other}"),
            };
            let mut m = Map::new();
            m.insert(long, inner);
            Value::Object(m)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const YAML: &str = r#"
Parameters:
  Stage: {Type: String, Default: prod}
  Window: {Type: Number, Default: 86400}
  Email: {Type: String, Default: ""}
Conditions:
  HasEmail: !Not [!Equals [!Ref Email, ""]]
Resources:
  Dlq:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "app-${Stage}-dlq.fifo"
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-${Stage}.fifo"
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Dlq.Arn
        maxReceiveCount: 5
      Tag: !Sub ["${X}-${!Literal}", {X: !Ref Window}]
      Gone: !Ref AWS::NoValue
  Sub:
    Type: AWS::SNS::Subscription
    Condition: HasEmail
    Properties: {Endpoint: !Ref Email, TopicArn: !Sub "${Queue.Arn}"}
"#;

    fn resolver(t: &Template, overrides: &[(&str, &str)]) -> Resolver {
        let o = overrides
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Resolver::new(t, &o, "stack", "us-east-1", "123456789012")
    }

    #[test]
    fn short_tags_become_long_form() {
        let t = Template::parse(YAML).unwrap();
        let q = t.resource("Queue").unwrap();
        assert_eq!(
            q.properties["RedrivePolicy"]["deadLetterTargetArn"],
            json!({"Fn::GetAtt": ["Dlq", "Arn"]})
        );
        assert_eq!(
            q.properties["QueueName"],
            json!({"Fn::Sub": "${AWS::StackName}-${Stage}.fifo"})
        );
    }

    #[test]
    fn creation_order_puts_dependencies_first() {
        let t = Template::parse(YAML).unwrap();
        let order: Vec<_> = t
            .creation_order()
            .unwrap()
            .iter()
            .map(|r| r.logical_id.as_str())
            .collect();
        let pos = |id| order.iter().position(|x| *x == id).unwrap();
        assert!(pos("Dlq") < pos("Queue"));
        assert!(pos("Queue") < pos("Sub"));
        assert_eq!(
            t.dependencies(t.resource("Sub").unwrap()),
            BTreeSet::from(["Queue".to_string()])
        );
    }

    #[test]
    fn resolves_ref_sub_getatt_and_novalue() {
        let t = Template::parse(YAML).unwrap();
        let mut r = resolver(&t, &[("Stage", "test")]);
        let q = t.resource("Queue").unwrap();
        assert_eq!(
            r.resolve(&q.properties).unwrap_err(),
            ResolveError::Unresolved("Dlq.Arn".into())
        );
        r.record(
            "Dlq",
            Physical {
                reference: "url".into(),
                attributes: BTreeMap::from([("Arn".into(), "arn:dlq".into())]),
            },
        );
        let resolved = r.resolve(&q.properties).unwrap();
        assert_eq!(
            resolved,
            json!({
                "QueueName": "stack-test.fifo",
                "RedrivePolicy": {"deadLetterTargetArn": "arn:dlq", "maxReceiveCount": 5},
                "Tag": "86400-${Literal}"
            })
        );
    }

    #[test]
    fn conditions_follow_parameters() {
        let t = Template::parse(YAML).unwrap();
        let sub = t.resource("Sub").unwrap();
        assert!(!resolver(&t, &[]).is_enabled(sub).unwrap());
        assert!(resolver(&t, &[("Email", "a@b.c")]).is_enabled(sub).unwrap());
    }

    #[test]
    fn unknown_pseudo_parameter_and_bad_sub_are_errors() {
        let t = Template::parse(YAML).unwrap();
        let r = resolver(&t, &[]);
        assert_eq!(
            r.resolve(&json!({"Ref": "AWS::Nope"})).unwrap_err(),
            ResolveError::UnknownParameter("AWS::Nope".into())
        );
        assert!(matches!(
            r.resolve(&json!({"Fn::Sub": "a ${Stage"})).unwrap_err(),
            ResolveError::Malformed {
                function: "Fn::Sub",
                ..
            }
        ));
        assert_eq!(
            r.resolve(&json!({"Fn::FindInMap": ["a", "b", "c"]}))
                .unwrap_err(),
            ResolveError::Unsupported("Fn::FindInMap".into())
        );
    }

    #[test]
    fn a_deployment_preference_watching_its_function_is_no_cycle() {
        let t = Template::parse(
            r#"
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      DeploymentPreference: {Alarms: [!Ref Errors]}
  Errors:
    Type: AWS::CloudWatch::Alarm
    Properties: {Dimensions: [{Name: FunctionName, Value: !Ref Fn}]}
"#,
        )
        .unwrap();
        let order: Vec<_> = t
            .creation_order()
            .unwrap()
            .iter()
            .map(|r| r.logical_id.clone())
            .collect();
        assert_eq!(order, ["Fn", "Errors"]);
    }

    #[test]
    fn the_project_template_parses_and_orders() {
        let t =
            Template::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml")).unwrap();
        let order = t.creation_order().unwrap();
        assert!(order.len() >= 8);
    }
}
