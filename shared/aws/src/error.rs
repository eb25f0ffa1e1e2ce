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
use std::error::Error as _;

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
        R: std::fmt::Debug,
    {
        let retryable = is_retryable(&err);
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        StoreError::Service {
            operation,
            resource: resource.into(),
            message,
            retryable,
        }
    }
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
