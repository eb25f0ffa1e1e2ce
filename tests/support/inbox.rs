//! A queue subscribed to the notifications topic: what SNS delivered, as a
//! subscriber would see it.

use aws_sdk_sqs::types::Message;

/// An SQS queue subscribed to an SNS topic.
pub struct Inbox {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl Inbox {
    /// Creates queue `name` and subscribes it to `topic_arn`. With `raw`,
    /// messages arrive as published (attributes as message attributes);
    /// without, as SNS envelopes (JSON with `Message`, `MessageAttributes`).
    pub async fn subscribe(
        config: &aws_config::SdkConfig,
        topic_arn: &str,
        name: &str,
        raw: bool,
    ) -> Inbox {
        let sqs = aws_sdk_sqs::Client::new(config);
        let url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("inbox queue created")
            .queue_url
            .expect("a queue has a URL");
        let arn = platformsync_bootstrap::queue_arn(&sqs, &url)
            .await
            .unwrap_or_else(|e| panic!("inbox queue: {e}"));
        let mut subscribe = aws_sdk_sns::Client::new(config)
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(arn);
        if raw {
            subscribe = subscribe.attributes("RawMessageDelivery", "true");
        }
        subscribe.send().await.expect("inbox subscribed");
        Inbox { sqs, url }
    }

    /// Every message delivered so far (received with its attributes, then
    /// deleted), until a one-second poll comes back empty.
    pub async fn drain(&self) -> Vec<Message> {
        let mut all = Vec::new();
        loop {
            let messages = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive from the inbox")
                .messages
                .unwrap_or_default();
            if messages.is_empty() {
                return all;
            }
            for m in &messages {
                self.sqs
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("inbox message deleted");
            }
            all.extend(messages);
        }
    }
}
