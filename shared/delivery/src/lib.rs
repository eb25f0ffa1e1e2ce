//! PlatformSync delivery rules, as pure functions.
//!
//! Everything that decides *how* a batch reaches a customer endpoint, but does no
//! I/O itself, lives here so it can be tested exhaustively and reused by the push
//! function, the local runner and the operator CLI alike:
//!
//! - [`retry`]: when a failed batch is tried again, when it expires, and how
//!   PlatformSync's own downtime is credited back to the customer's 24 hours.
//! - [`ssrf`]: which addresses a customer endpoint may resolve to, and which URLs
//!   are acceptable at all.
//! - [`batching`]: how one endpoint's pending transactions are cut into ordered,
//!   size-bounded batches with deterministic deduplication and message ids.
//! - [`signing`]: Standard Webhooks signatures of pushes, signing secrets and
//!   their rotation, and the endpoint secret that holds them with the API key.
//!
//! No tokio, no AWS, no clock: callers pass `now`, seeds and sizes in, so every
//! decision is reproducible from its inputs.

pub mod batching;
pub mod incident;
pub mod retry;
pub mod signing;
pub mod split;
pub mod ssrf;

/// Delivery rule 1: only HTTP status 200 counts as delivered.
///
/// 201, 202, 204 and every 3xx are failed attempts: the public contract says 200,
/// and a receiver that answers anything else has not promised it stored the batch.
pub const fn is_delivered_status(status: u16) -> bool {
    status == 200
}

#[cfg(test)]
mod tests {
    use super::is_delivered_status;

    #[test]
    fn only_200_is_delivered() {
        assert!(is_delivered_status(200));
        for s in [
            100, 201, 202, 204, 301, 302, 304, 307, 308, 400, 401, 410, 429, 500, 503,
        ] {
            assert!(!is_delivered_status(s), "{s} must not count as delivered");
        }
    }
}
