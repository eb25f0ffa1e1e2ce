//! The SDK operations PlatformSync is built on behave on the local stack as on
//! AWS: conditional puts and stream reads on DynamoDB, FIFO group locking and
//! visibility changes on SQS, secret reads on Secrets Manager.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use platformsync_tests::{Emulator, Stack, skip_on};

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

#[tokio::test]
async fn conditional_put_stores_once_and_the_stream_carries_one_insert() {
    let stack = Stack::deploy().await;
    let table = stack.reference("TransactionsTable");
    let ddb = &stack.clients.dynamodb;
    let put = || {
        ddb.put_item()
            .table_name(&table)
            .item("SerialNumber", s("UT07761"))
            .item("SortKey", s("2018-12-07T11:54:27.0000000#sha:abc"))
            .item("Amount", s("5560.0"))
            .condition_expression("attribute_not_exists(SortKey)")
            .send()
    };
    put().await.expect("first put stores the item");
    let second = put().await.expect_err("second put must be refused");
    assert!(
        second
            .as_service_error()
            .is_some_and(|e| e.is_conditional_check_failed_exception()),
        "{second:?}"
    );

    let streams = aws_sdk_dynamodbstreams::Client::new(&stack.config);
    let stream_arn = stack.attribute("TransactionsTable", "StreamArn");
    let described = streams
        .describe_stream()
        .stream_arn(&stream_arn)
        .send()
        .await
        .unwrap();
    let shards = described.stream_description().unwrap().shards();
    assert!(!shards.is_empty());
    let mut inserts = Vec::new();
    for shard in shards {
        let iterator = streams
            .get_shard_iterator()
            .stream_arn(&stream_arn)
            .shard_id(shard.shard_id().unwrap())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap();
        let records = streams
            .get_records()
            .shard_iterator(iterator.shard_iterator().unwrap())
            .send()
            .await
            .unwrap();
        inserts.extend(
            records
                .records()
                .iter()
                .filter(|r| r.event_name().map(|e| e.as_str()) == Some("INSERT"))
                .cloned(),
        );
    }
    assert_eq!(
        inserts.len(),
        1,
        "one INSERT for one stored item: {inserts:?}"
    );
    let image = inserts[0].dynamodb().unwrap().new_image().unwrap();
    assert_eq!(
        image.get("Amount"),
        Some(&aws_sdk_dynamodbstreams::types::AttributeValue::S(
            "5560.0".into()
        )),
        "the stream's new image carries the exact decimal text"
    );
}

#[tokio::test]
async fn fifo_group_is_locked_in_flight_and_visibility_changes_take_effect() {
    skip_on!(
        Emulator::LocalStack,
        "LocalStack returns a message whose visibility timeout ended from a sweep that runs once \
         a second, so it can come back ~1 s late (1.7 s measured for a 1 s timeout); this test \
         waits 1.5 s, as AWS's documented timeout allows (docs/local-stack.md)"
    );
    let stack = Stack::deploy().await;
    let url = stack.reference("DeliveryQueue");
    let sqs = &stack.clients.sqs;
    for n in 1..=2 {
        sqs.send_message()
            .queue_url(&url)
            .message_group_id("endpoint-1")
            .message_deduplication_id(format!("batch-{n}"))
            .message_body(format!("batch {n}"))
            .send()
            .await
            .unwrap();
    }
    // A resend with a deduplication id already seen (a replayed fan-out) is
    // accepted but not delivered again.
    sqs.send_message()
        .queue_url(&url)
        .message_group_id("endpoint-1")
        .message_deduplication_id("batch-1")
        .message_body("batch 1 again")
        .send()
        .await
        .unwrap();
    let receive = || {
        sqs.receive_message()
            .queue_url(&url)
            .max_number_of_messages(1)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
    };
    let first = receive().await.unwrap();
    let m1 = &first.messages()[0];
    assert_eq!(m1.body(), Some("batch 1"));

    // While batch 1 is in flight its group is locked: batch 2 must wait.
    let blocked = receive().await.unwrap();
    assert!(
        blocked.messages().is_empty(),
        "group must stay locked: {blocked:?}"
    );

    // A visibility change (how the push function schedules its retries)
    // takes effect: after 1 s batch 1 comes back, with its receive count up.
    sqs.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(m1.receipt_handle().unwrap())
        .visibility_timeout(1)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let again = receive().await.unwrap();
    let m1_again = &again.messages()[0];
    assert_eq!(
        m1_again.body(),
        Some("batch 1"),
        "order holds after a retry"
    );
    assert_eq!(
        m1_again
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .map(String::as_str),
        Some("2")
    );
    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(m1_again.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    let next = receive().await.unwrap();
    assert_eq!(next.messages()[0].body(), Some("batch 2"));

    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(next.messages()[0].receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        receive().await.unwrap().messages().is_empty(),
        "the resend was deduplicated"
    );
}

#[tokio::test]
async fn secrets_are_read_back_and_the_ingest_key_is_generated() {
    let stack = Stack::deploy().await;
    let sm = &stack.clients.secrets;
    let name = format!("platformsync/{}/endpoints/ep-1", stack.stage);
    sm.create_secret()
        .name(&name)
        .secret_string("token-123")
        .send()
        .await
        .unwrap();
    let value = sm.get_secret_value().secret_id(&name).send().await.unwrap();
    assert_eq!(value.secret_string(), Some("token-123"));

    let ingest = sm
        .get_secret_value()
        .secret_id(stack.reference("IngestKeySecret"))
        .send()
        .await
        .unwrap();
    let key = ingest.secret_string().unwrap();
    assert_eq!(key.len(), 48);
    assert!(key.chars().all(|c| c.is_ascii_alphanumeric()));
}
