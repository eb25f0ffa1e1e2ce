//! Every table, queue, topic and secret of template.yaml exists on the local
//! stack after bootstrap, with the settings the template gives it.

use aws_sdk_sqs::types::QueueAttributeName;
use platformsync_template::spec::{LocalResource, local_resource, not_emulated};
use platformsync_tests::{Stack, template};

#[tokio::test]
async fn every_template_resource_exists_locally_as_declared() {
    let stack = Stack::deploy().await;
    let template = template();
    let resolver = stack.deployment.resolver(&template);
    let mut checked = 0;
    for resource in template.resources() {
        if not_emulated(&resource.kind).is_some() || !resolver.is_enabled(resource).unwrap() {
            continue;
        }
        let props = resolver.resolve(&resource.properties).unwrap();
        let spec = local_resource(resource, &props).unwrap().unwrap();
        let id = &resource.logical_id;
        match spec {
            LocalResource::Table(t) => {
                let d = stack
                    .clients
                    .dynamodb
                    .describe_table()
                    .table_name(&t.name)
                    .send()
                    .await
                    .unwrap();
                let table = d.table().unwrap();
                let keys: Vec<(String, String)> = table
                    .key_schema()
                    .iter()
                    .map(|k| {
                        (
                            k.attribute_name().to_owned(),
                            k.key_type().as_str().to_owned(),
                        )
                    })
                    .collect();
                let want: Vec<(String, String)> = t
                    .key_schema
                    .iter()
                    .map(|k| (k.name.clone(), k.key_type.clone()))
                    .collect();
                assert_eq!(keys, want, "{id}: key schema");
                let stream = table.stream_specification();
                assert_eq!(
                    stream.map(|s| s.stream_enabled()).unwrap_or(false),
                    t.stream_view_type.is_some(),
                    "{id}: stream enabled"
                );
                assert_eq!(
                    stream
                        .and_then(|s| s.stream_view_type())
                        .map(|v| v.as_str().to_owned()),
                    t.stream_view_type,
                    "{id}: stream view type"
                );
                if t.stream_view_type.is_some() {
                    assert!(table.latest_stream_arn().is_some(), "{id}: stream ARN");
                }
                let ttl = stack
                    .clients
                    .dynamodb
                    .describe_time_to_live()
                    .table_name(&t.name)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    ttl.time_to_live_description()
                        .and_then(|d| d.attribute_name())
                        .map(str::to_owned),
                    t.ttl_attribute,
                    "{id}: time to live"
                );
                assert_eq!(stack.reference(id), t.name);
            }
            LocalResource::Queue(q) => {
                let url = stack.reference(id);
                let attrs = stack
                    .clients
                    .sqs
                    .get_queue_attributes()
                    .queue_url(&url)
                    .attribute_names(QueueAttributeName::All)
                    .send()
                    .await
                    .unwrap();
                let attrs = attrs.attributes().unwrap();
                let fifo = attrs
                    .get(&QueueAttributeName::FifoQueue)
                    .map(String::as_str)
                    == Some("true");
                assert_eq!(fifo, q.fifo, "{id}: FIFO flag");
                assert!(url.contains(&q.name), "{id}: {url} names {}", q.name);
                let redrive = attrs
                    .get(&QueueAttributeName::RedrivePolicy)
                    .map(|p| serde_json::from_str::<serde_json::Value>(p).unwrap());
                match q.redrive() {
                    Some((dlq_arn, max)) => {
                        let redrive = redrive.unwrap_or_else(|| panic!("{id}: no redrive policy"));
                        assert_eq!(
                            redrive["deadLetterTargetArn"],
                            dlq_arn.as_str(),
                            "{id}: DLQ"
                        );
                        assert_eq!(
                            redrive["maxReceiveCount"].to_string().trim_matches('"'),
                            max.to_string(),
                            "{id}: maxReceiveCount"
                        );
                    }
                    None => assert!(redrive.is_none(), "{id}: unexpected redrive policy"),
                }
                for (name, what) in [
                    (QueueAttributeName::VisibilityTimeout, "visibility"),
                    (QueueAttributeName::MessageRetentionPeriod, "retention"),
                ] {
                    if let Some(v) = q.attributes.get(name.as_str()) {
                        assert_eq!(attrs.get(&name), Some(v), "{id}: {what}");
                    }
                }
            }
            LocalResource::Topic(t) => {
                let arn = stack.reference(id);
                assert!(arn.ends_with(&format!(":{}", t.name)), "{id}: {arn}");
                stack
                    .clients
                    .sns
                    .get_topic_attributes()
                    .topic_arn(&arn)
                    .send()
                    .await
                    .unwrap();
            }
            LocalResource::Secret(s) => {
                let d = stack
                    .clients
                    .secrets
                    .describe_secret()
                    .secret_id(&s.name)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(d.name(), Some(s.name.as_str()), "{id}: secret name");
            }
        }
        checked += 1;
    }
    // 4 tables, 3 queues, 2 topics, 1 secret at least.
    assert!(checked >= 10, "only {checked} resources checked");
    // The delivery queue's dead-letter target is this stage's own DLQ.
    assert!(
        stack
            .attribute("DeliveryDeadLetterQueue", "Arn")
            .contains(&stack.stage),
        "DLQ belongs to the stage"
    );
}

#[tokio::test]
async fn bootstrap_is_idempotent() {
    let first = Stack::deploy().await;
    let again = Stack::deploy_stage(&first.stage).await;
    assert_eq!(first.deployment, again.deployment);
}
