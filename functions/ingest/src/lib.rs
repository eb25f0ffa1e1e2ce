//! The ingest function: `POST /v1/uploads` from SafeSync.
//!
//! One upload, as [`Ingest::handle`] walks it:
//!
//! 1. **Authenticate**: the ingest key (Secrets Manager, cached) against the
//!    `x-api-key` header or `Authorization: Bearer`, in constant time. 401
//!    otherwise, before the body is even read.
//! 2. **Parse** (`platformsync_domain::upload`): a body that is not an upload
//!    is refused whole (400, kept in the rejects table for support); each item
//!    is parsed on its own, so one malformed item is rejected with its reason
//!    while the rest are kept.
//! 3. **Classify** ([`plan`]): rejects go to the rejects table; valid items
//!    are checked for data quality and stored `Deliverable` or `Held`.
//! 4. **Store** each valid item once: a conditional put on its storage key,
//!    concurrently with a bound; an existing key is a duplicate, never
//!    rewritten.
//! 5. **Report**: counts, rejects, sequence gaps and unowned safes; 503 with
//!    per-item statuses if anything could not be stored, so SafeSync re-sends
//!    the whole upload (everything already stored is then a duplicate).
//!
//! `handler` is that flow; `auth` the key check; `budget` how long its writes may run before the
//! Lambda deadline; `settings` what it reads from the environment,
//! `clients` the stores it talks to, `answer` the policy of what SafeSync is
//! told, `sequences` the advisory journal tracking, `plan` the pure
//! classification, `http` and `response` the wire.

mod answer;
mod auth;
mod budget;
mod clients;
mod handler;
pub mod plan;
pub mod response;
mod sequences;
mod settings;
mod writes;

pub use handler::Ingest;
pub use response::{ItemStatus, UploadResponse};
pub use settings::{InitError, MAX_BODY_BYTES, Settings};
