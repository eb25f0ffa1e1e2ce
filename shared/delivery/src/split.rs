//! Splitting a batch the endpoint keeps refusing (delivery rules 4 and 5).
//!
//! When the endpoint answers the same batch [`SPLIT_AFTER_REFUSALS`] times in a
//! row with a client error (4xx other than 401, 403, 408 and 429: those are
//! about the key, the clock or the load, not the content), the batch is split
//! in halves, recursively, to isolate the transactions the endpoint refuses.
//! Each part is a batch of its own with a **derived `MessageId`**: a
//! deterministic function of the parent's `MessageId` and the part's range of
//! transactions, so a part posted again after a crash carries the same
//! `MessageId` with the same content, and no `MessageId` ever carries other
//! content than the first time it was posted.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A batch refused this many times in a row with a client error is split.
pub const SPLIT_AFTER_REFUSALS: u32 = 3;

/// Whether an HTTP status is a refusal of the batch's content.
pub const fn is_refusal(status: u16) -> bool {
    matches!(status, 400..=499) && !matches!(status, 401 | 403 | 408 | 429)
}

/// The `MessageId` of the part `start..end` of the batch `parent`.
pub fn derived_message_id(parent: Uuid, start: usize, end: usize) -> Uuid {
    let mut hasher = Sha256::new();
    hasher.update(b"platformsync/split/v1\0");
    hasher.update(parent.as_bytes());
    hasher.update((start as u64).to_be_bytes());
    hasher.update((end as u64).to_be_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // RFC 4122 layout (version 4 bits, variant) so receivers that validate
    // UUIDs accept it; the value itself is a hash, not random.
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The two halves of `start..end` (the first one the larger when odd).
pub fn halves(start: usize, end: usize) -> [(usize, usize); 2] {
    let mid = start + (end - start).div_ceil(2);
    [(start, mid), (mid, end)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_content_errors_only() {
        for s in [400, 404, 409, 410, 413, 415, 422, 499] {
            assert!(is_refusal(s), "{s}");
        }
        for s in [200, 201, 301, 401, 403, 408, 429, 500, 503] {
            assert!(!is_refusal(s), "{s}");
        }
    }

    #[test]
    fn derived_ids_are_deterministic_and_distinct() {
        let p = Uuid::from_u128(7);
        assert_eq!(derived_message_id(p, 0, 5), derived_message_id(p, 0, 5));
        assert_ne!(derived_message_id(p, 0, 5), derived_message_id(p, 0, 4));
        assert_ne!(derived_message_id(p, 0, 5), derived_message_id(p, 5, 10));
        assert_ne!(
            derived_message_id(p, 0, 5),
            derived_message_id(Uuid::from_u128(8), 0, 5)
        );
        assert_ne!(derived_message_id(p, 0, 5), p);
    }

    #[test]
    fn halves_cover_the_range() {
        assert_eq!(halves(0, 5), [(0, 3), (3, 5)]);
        assert_eq!(halves(4, 6), [(4, 5), (5, 6)]);
        assert_eq!(halves(0, 1000), [(0, 500), (500, 1000)]);
    }
}
