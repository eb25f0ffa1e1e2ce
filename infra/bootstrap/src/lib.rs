//! Creates the resources `template.yaml` declares on a local AWS emulator
//! (moto or LocalStack), and records their physical ids so the local runner
//! and tests can resolve the functions' environment exactly as CloudFormation
//! would.
//!
//! Idempotent: running it twice against the same emulator creates nothing new
//! and answers the same physical ids.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use platformsync_template::spec::{self, KeyElement};
use platformsync_template::{
    LocalResource, Physical, QueueSpec, Resolver, SecretSpec, TableSpec, Template, TopicSpec,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Template(#[from] platformsync_template::TemplateError),
    #[error("resource {logical_id}: {source}")]
    Resolve {
        logical_id: String,
        #[source]
        source: platformsync_template::ResolveError,
    },
    #[error("creating {logical_id} ({name}): {message}")]
    Create {
        logical_id: String,
        name: String,
        message: String,
    },
}

/// The clients the bootstrap needs, built from one SDK configuration.
#[derive(Clone, Debug)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Clients {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            sns: aws_sdk_sns::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
        }
    }
}

/// What to deploy: template parameters and pseudo parameters.
#[derive(Debug, Clone)]
pub struct Options {
    pub parameters: BTreeMap<String, String>,
    pub stack_name: String,
    pub region: String,
    pub account_id: String,
}

/// One created resource: its template type, what `Ref` and `GetAtt` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Deployed {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(flatten)]
    pub physical: Physical,
}

/// The outcome of a bootstrap, written to `.local/<stage>/resources.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Deployment {
    pub stack_name: String,
    pub region: String,
    pub account_id: String,
    pub parameters: BTreeMap<String, String>,
    pub resources: BTreeMap<String, Deployed>,
    /// Resources of the template not created locally, with the reason.
    pub not_emulated: BTreeMap<String, String>,
}

impl Deployment {
    /// A resolver that answers `Ref`/`GetAtt` for every created resource, for
    /// resolving function environments against this deployment.
    pub fn resolver(&self, template: &Template) -> Resolver {
        let mut r = Resolver::new(
            template,
            &self.parameters,
            &self.stack_name,
            &self.region,
            &self.account_id,
        );
        for (id, d) in &self.resources {
            r.record(id, d.physical.clone());
        }
        // Resources played rather than created (the HTTP API, the functions)
        // answer `Ref` with a local placeholder, so what refers to them (an
        // event's `ApiId`) still resolves.
        for id in self.not_emulated.keys() {
            r.record(
                id,
                Physical {
                    reference: format!("local:{id}"),
                    attributes: BTreeMap::new(),
                },
            );
        }
        r
    }

    /// `Ref` of a created resource.
    pub fn reference(&self, logical_id: &str) -> Option<&str> {
        self.resources
            .get(logical_id)
            .map(|d| d.physical.reference.as_str())
    }

    /// `Fn::GetAtt` of a created resource.
    pub fn attribute(&self, logical_id: &str, attribute: &str) -> Option<&str> {
        self.resources
            .get(logical_id)
            .and_then(|d| d.physical.attributes.get(attribute))
            .map(String::as_str)
    }
}

/// Creates every emulated resource of `template`, dependencies first.
pub async fn bootstrap(
    template: &Template,
    options: &Options,
    clients: &Clients,
) -> Result<Deployment, BootstrapError> {
    let mut resolver = Resolver::new(
        template,
        &options.parameters,
        &options.stack_name,
        &options.region,
        &options.account_id,
    );
    let mut deployment = Deployment {
        stack_name: options.stack_name.clone(),
        region: options.region.clone(),
        account_id: options.account_id.clone(),
        parameters: template.parameters(&options.parameters),
        ..Deployment::default()
    };
    for resource in template.creation_order()? {
        let id = &resource.logical_id;
        let resolve_err = |source| BootstrapError::Resolve {
            logical_id: id.clone(),
            source,
        };
        if let Some(why) = spec::not_emulated(&resource.kind) {
            deployment.not_emulated.insert(id.clone(), why.to_owned());
            continue;
        }
        if !resolver.is_enabled(resource).map_err(resolve_err)? {
            deployment
                .not_emulated
                .insert(id.clone(), "its condition is false".to_owned());
            continue;
        }
        let props = resolver
            .resolve(&resource.properties)
            .map_err(resolve_err)?;
        let Some(local) = spec::local_resource(resource, &props)? else {
            continue;
        };
        let physical = create(clients, id, &local).await?;
        resolver.record(id, physical.clone());
        deployment.resources.insert(
            id.clone(),
            Deployed {
                kind: resource.kind.clone(),
                physical,
            },
        );
    }
    Ok(deployment)
}

async fn create(
    clients: &Clients,
    logical_id: &str,
    resource: &LocalResource,
) -> Result<Physical, BootstrapError> {
    let (name, result) = match resource {
        LocalResource::Table(t) => (&t.name, create_table(&clients.dynamodb, t).await),
        LocalResource::Queue(q) => (&q.name, create_queue(&clients.sqs, q).await),
        LocalResource::Topic(t) => (&t.name, create_topic(&clients.sns, t).await),
        LocalResource::Secret(s) => (&s.name, create_secret(&clients.secrets, s).await),
    };
    result.map_err(|message| BootstrapError::Create {
        logical_id: logical_id.to_owned(),
        name: name.clone(),
        message,
    })
}

/// Formats an SDK error with its service code and message, which the plain
/// `Display` of `SdkError` hides.
fn sdk_error<E, R>(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    platformsync_aws::error::chain(&e)
}

fn key_elements(keys: &[KeyElement]) -> Result<Vec<KeySchemaElement>, String> {
    keys.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

async fn create_table(
    ddb: &aws_sdk_dynamodb::Client,
    spec: &TableSpec,
) -> Result<Physical, String> {
    let mut req = ddb
        .create_table()
        .table_name(&spec.name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_elements(&spec.key_schema)?));
    for (name, kind) in &spec.attributes {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::from(kind.as_str()))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    for gsi in &spec.global_indexes {
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&gsi.name)
                .set_key_schema(Some(key_elements(&gsi.key_schema)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(gsi.projection.as_str()))
                        .build(),
                )
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(view) = &spec.stream_view_type {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view.as_str()))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    match req.send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(sdk_error(e)),
    }
    if let Some(attr) = &spec.ttl_attribute {
        let current = ddb
            .describe_time_to_live()
            .table_name(&spec.name)
            .send()
            .await
            .map_err(sdk_error)?;
        let enabled = current
            .time_to_live_description()
            .and_then(|d| d.attribute_name())
            == Some(attr.as_str());
        if !enabled {
            ddb.update_time_to_live()
                .table_name(&spec.name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attr)
                        .enabled(true)
                        .build()
                        .map_err(|e| e.to_string())?,
                )
                .send()
                .await
                .map_err(sdk_error)?;
        }
    }
    let described = ddb
        .describe_table()
        .table_name(&spec.name)
        .send()
        .await
        .map_err(sdk_error)?;
    let table = described.table().ok_or("DescribeTable returned no table")?;
    let mut attributes = BTreeMap::new();
    if let Some(arn) = table.table_arn() {
        attributes.insert("Arn".to_owned(), arn.to_owned());
    }
    if let Some(arn) = table.latest_stream_arn() {
        attributes.insert("StreamArn".to_owned(), arn.to_owned());
    }
    Ok(Physical {
        reference: spec.name.clone(),
        attributes,
    })
}

/// The ARN of a queue could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the ARN of queue {url}: {message}")]
pub struct QueueArnError {
    pub url: String,
    pub message: String,
}

/// The ARN of the queue at `url`: SQS answers a create with the URL only,
/// while a subscription or an event source names the queue by its ARN.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, QueueArnError> {
    let error = |message: String| QueueArnError {
        url: url.to_owned(),
        message,
    };
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| error(sdk_error(e)))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| error("GetQueueAttributes returned no QueueArn".to_owned()))
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, spec: &QueueSpec) -> Result<Physical, String> {
    let attributes: HashMap<QueueAttributeName, String> = spec
        .attributes
        .iter()
        .map(|(k, v)| (QueueAttributeName::from(k.as_str()), v.clone()))
        .collect();
    let url = match sqs
        .create_queue()
        .queue_name(&spec.name)
        .set_attributes(Some(attributes.clone()))
        .send()
        .await
    {
        Ok(out) => out.queue_url().unwrap_or_default().to_owned(),
        // The queue exists with other attributes (the template changed):
        // bring it in line, as a stack update would.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_queue_name_exists()) =>
        {
            let url = sqs
                .get_queue_url()
                .queue_name(&spec.name)
                .send()
                .await
                .map_err(sdk_error)?
                .queue_url()
                .unwrap_or_default()
                .to_owned();
            let mutable = attributes
                .into_iter()
                .filter(|(k, _)| *k != QueueAttributeName::FifoQueue)
                .collect();
            sqs.set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(mutable))
                .send()
                .await
                .map_err(sdk_error)?;
            url
        }
        Err(e) => return Err(sdk_error(e)),
    };
    let arn = queue_arn(sqs, &url).await.map_err(|e| e.to_string())?;
    Ok(Physical {
        reference: url.clone(),
        attributes: BTreeMap::from([
            ("Arn".to_owned(), arn),
            ("QueueName".to_owned(), spec.name.clone()),
            ("QueueUrl".to_owned(), url),
        ]),
    })
}

async fn create_topic(sns: &aws_sdk_sns::Client, spec: &TopicSpec) -> Result<Physical, String> {
    let mut req = sns.create_topic().name(&spec.name);
    if spec.fifo {
        req = req.attributes("FifoTopic", "true");
    }
    let arn = req
        .send()
        .await
        .map_err(sdk_error)?
        .topic_arn()
        .ok_or("CreateTopic returned no TopicArn")?
        .to_owned();
    Ok(Physical {
        reference: arn.clone(),
        attributes: BTreeMap::from([
            ("TopicArn".to_owned(), arn),
            ("TopicName".to_owned(), spec.name.clone()),
        ]),
    })
}

async fn create_secret(
    sm: &aws_sdk_secretsmanager::Client,
    spec: &SecretSpec,
) -> Result<Physical, String> {
    let arn = match sm.describe_secret().secret_id(&spec.name).send().await {
        Ok(existing) => existing.arn().unwrap_or_default().to_owned(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            let mut req = sm
                .create_secret()
                .name(&spec.name)
                .set_description(spec.description.clone());
            if let Some(len) = spec.generate_length {
                req = req.secret_string(generate_secret(len));
            }
            req.send()
                .await
                .map_err(sdk_error)?
                .arn()
                .unwrap_or_default()
                .to_owned()
        }
        Err(e) => return Err(sdk_error(e)),
    };
    Ok(Physical {
        reference: arn.clone(),
        attributes: BTreeMap::from([("Id".to_owned(), arn)]),
    })
}

/// A random alphanumeric value, as `GenerateSecretString` with
/// `ExcludePunctuation` would make it.
fn generate_secret(len: usize) -> String {
    let mut out = String::with_capacity(len + 32);
    while out.len() < len {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_the_requested_length_and_differ() {
        let a = generate_secret(48);
        assert_eq!(a.len(), 48);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, generate_secret(48));
    }

    #[test]
    fn deployment_round_trips_as_json() {
        let d = Deployment {
            stack_name: "s".into(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            parameters: BTreeMap::from([("Stage".into(), "local".into())]),
            resources: BTreeMap::from([(
                "Q".into(),
                Deployed {
                    kind: "AWS::SQS::Queue".into(),
                    physical: Physical {
                        reference: "http://q".into(),
                        attributes: BTreeMap::from([("Arn".into(), "arn:q".into())]),
                    },
                },
            )]),
            not_emulated: BTreeMap::new(),
        };
        let text = serde_json::to_string(&d).unwrap();
        assert!(text.contains(r#""Ref":"http://q""#), "{text}");
        assert_eq!(serde_json::from_str::<Deployment>(&text).unwrap(), d);
        assert_eq!(d.attribute("Q", "Arn"), Some("arn:q"));
    }
}
