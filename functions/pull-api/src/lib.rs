//! The pull API: customers fetch what they missed from the push API.
//!
//! `GET /v1/transactions` and `GET /v1/audit-transactions`, with the
//! customer's API key (`x-api-key` or `Authorization: Bearer`). A request,
//! as [`PullApi::handle`] walks it:
//!
//! 1. **Authenticate** (`platformsync_aws::api_keys`): one `GetItem` by key
//!    id, salted hash compared in constant time; 401 otherwise.
//! 2. **Parse** ([`request`], pure): filters `SerialNumber`, `From`, `To`
//!    (safe-local `TransactionDateTime`, `From` inclusive, `To` exclusive),
//!    `TransactionType` (either vocabulary, repeatable), and `Page` +
//!    `PageSize` or a `PageToken` ([`token`]).
//! 3. **Ranges** ([`ranges`], pure): the customer's ownership periods
//!    (`platformsync_aws::assignments`, one `Query`) intersected with the
//!    filters give key ranges of the transactions table: partition = serial,
//!    sort key between two time bounds. A customer sees a safe's
//!    transactions only for the time it owned the safe.
//! 4. **Read** ([`paging`] over [`store`]): `Query` on the table's own keys,
//!    no scan, no index. Results are ordered by serial number, then safe
//!    time, then identity: the table's key order, stable across requests.
//!    Page numbers count every match first (`Select=COUNT`) for `Total`; a
//!    `NextPageToken` resumes after the last item returned, reading only
//!    what it returns.
//! 5. **Render** ([`response`]): the stored payload v1 of each transaction,
//!    byte for byte as pushed (exact decimals).

mod handler;
pub mod paging;
pub mod ranges;
pub mod request;
pub mod response;
mod settings;
pub mod store;
pub mod token;

pub use handler::{PullApi, Stats};
pub use settings::{InitError, Settings};
