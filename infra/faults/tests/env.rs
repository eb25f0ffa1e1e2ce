//! `AWS_ENDPOINT_URL_<SERVICE>` sends one service's traffic through the proxy
//! while the others go to the emulator directly. Its own test binary with a
//! single test: it changes the process environment.

use aws_config::BehaviorVersion;
mod common;

#[tokio::test]
async fn a_service_specific_endpoint_routes_only_that_service_through_the_proxy() {
    let Some(proxy) = common::proxy().await else {
        return;
    };
    // SAFETY: the only test of this binary, and no other thread reads the
    // environment while it is changed (the runtime is current-thread).
    unsafe { std::env::set_var("AWS_ENDPOINT_URL_SQS", proxy.url()) };
    let conf = aws_config::defaults(BehaviorVersion::latest()).load().await;
    aws_sdk_sqs::Client::new(&conf)
        .list_queues()
        .send()
        .await
        .expect("sqs through the proxy");
    aws_sdk_dynamodb::Client::new(&conf)
        .list_tables()
        .send()
        .await
        .expect("dynamodb straight to the emulator");
    unsafe { std::env::remove_var("AWS_ENDPOINT_URL_SQS") };

    let stats = proxy.stats();
    assert_eq!(stats.calls("sqs", "ListQueues"), 1, "{stats:?}");
    assert_eq!(stats.service_calls("dynamodb"), 0, "{stats:?}");
}
