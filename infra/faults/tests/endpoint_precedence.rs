//! How aws-config orders endpoints, which the tests that use the proxy rely
//! on: an endpoint set on the loader (`aws_config::defaults(..)
//! .endpoint_url(proxy)`) wins over every `AWS_ENDPOINT_URL_<SERVICE>` of the
//! environment, so all of a test's clients go through the proxy even on the
//! LocalStack pair; one set with `SdkConfig::to_builder().endpoint_url(..)`
//! does not (the config keeps the origin "environment"). Its own test binary
//! with a single test: it changes the process environment.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use platformsync_faults::SERVICE_ENDPOINT_VARS;

mod common;

#[tokio::test]
async fn an_endpoint_set_on_the_loader_wins_over_service_variables() {
    // Routed from the environment as it is (the pair's DynamoDB on moto)...
    let Some(proxy) = common::proxy().await else {
        return;
    };
    // ... then every service variable the SDK reads names a dead port.
    let dead = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", probe.local_addr().unwrap())
    };
    let saved: Vec<(&str, Option<String>)> = SERVICE_ENDPOINT_VARS
        .iter()
        .map(|(name, _)| (*name, std::env::var(name).ok()))
        .collect();
    for (name, _) in SERVICE_ENDPOINT_VARS {
        // SAFETY: the only test of this binary, and no other thread reads the
        // environment while it is changed (the runtime is current-thread).
        unsafe { std::env::set_var(name, &dead) };
    }

    let conf = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(proxy.url())
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    let ddb = aws_sdk_dynamodb::Client::new(&conf)
        .list_tables()
        .send()
        .await;
    let streams = aws_sdk_dynamodbstreams::Client::new(&conf)
        .list_streams()
        .send()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&conf).list_queues().send().await;
    let sns = aws_sdk_sns::Client::new(&conf).list_topics().send().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&conf)
        .list_secrets()
        .send()
        .await;

    // The trap: an endpoint put on an environment-loaded config afterwards.
    let env_loaded = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    let rebuilt = env_loaded.to_builder().endpoint_url(proxy.url()).build();
    let bypassing = aws_sdk_dynamodb::Client::new(&rebuilt)
        .list_tables()
        .send()
        .await;

    for (name, value) in saved {
        // SAFETY: as above.
        unsafe {
            match value {
                Some(v) => std::env::set_var(name, v),
                None => std::env::remove_var(name),
            }
        }
    }

    ddb.expect("dynamodb through the proxy");
    streams.expect("dynamodb streams through the proxy");
    sqs.expect("sqs through the proxy");
    sns.expect("sns through the proxy");
    secrets.expect("secrets manager through the proxy");
    let stats = proxy.stats();
    assert_eq!(stats.calls("dynamodb", "ListTables"), 1, "{stats:?}");
    assert_eq!(stats.calls("streams.dynamodb", "ListStreams"), 1);
    assert_eq!(stats.calls("sqs", "ListQueues"), 1);
    assert_eq!(stats.calls("sns", "ListTopics"), 1);
    assert_eq!(stats.calls("secretsmanager", "ListSecrets"), 1);
    assert!(
        bypassing.is_err(),
        "to_builder().endpoint_url() lost to AWS_ENDPOINT_URL_DYNAMODB (the dead port)"
    );
}
