// Without any service feature nothing calls AWS, so the SDK error helpers
// are unused; they are compiled for every feature set regardless.
#![cfg_attr(
    not(any(
        feature = "dynamodb",
        feature = "secrets",
        feature = "sqs",
        feature = "sns"
    )),
    allow(dead_code)
)]

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// A failed call to a store, with what it was about.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The service refused or failed after the SDK's retries.
    #[error("{operation} on {resource}: {message}")]
    Service {
        operation: &'static str,
        resource: String,
        message: String,
        /// Throttling or a transient failure: trying again later may work.
        retryable: bool,
    },
    /// An item did not have the shape this code writes.
    #[error("{resource}: malformed item {key}: {message}")]
    Malformed {
        resource: String,
        key: String,
        message: String,
    },
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Service {
                retryable: true,
                ..
            }
        )
    }

    /// Wraps an SDK error; its `Display` alone hides the service's message,
    /// so the whole source chain is kept.
    pub(crate) fn sdk<E, R>(
        operation: &'static str,
        resource: impl Into<String>,
        err: SdkError<E, R>,
    ) -> Self
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug + 'static,
    {
        let retryable = is_retryable(&err);
        let message = chain(&err);
        StoreError::Service {
            operation,
            resource: resource.into(),
            message,
            retryable,
        }
    }
}

/// An error and every source under it, as one line (`a: b: c`). An SDK
/// error's own `Display` is only "service error"; the service's code and
/// message are in its sources.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

fn is_retryable<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => matches!(
            e.err().code(),
            Some(
                "ThrottlingException"
                    | "ProvisionedThroughputExceededException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
                    | "TransactionConflictException"
            )
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("service error")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("ConditionalCheckFailedException: the item exists")]
    struct Inner;

    #[test]
    fn the_chain_keeps_what_the_outer_display_hides() {
        assert_eq!(
            super::chain(&Outer(Inner)),
            "service error: ConditionalCheckFailedException: the item exists"
        );
    }
}
