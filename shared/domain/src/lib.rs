//! PlatformSync domain model: pure types and rules, no I/O, no AWS, no async.
//!
//! # Module map
//!
//! | module | what |
//! |---|---|
//! | [`serial`] | [`SerialNumber`](serial::SerialNumber): the safe's identity, validated and upper-cased once |
//! | [`types`] | [`TransactionType`](types::TransactionType), [`AuditType`](types::AuditType), [`MessageKind`](types::MessageKind) |
//! | [`money`] | [`Amount`](money::Amount), [`UnitValue`](money::UnitValue): exact decimals that keep their scale |
//! | [`time`] | [`RetrievedOn`](time::RetrievedOn), [`SafeDateTime`](time::SafeDateTime): validated, kept verbatim |
//! | [`fields`] | validated string fields (`Register`, `Currency`, `UserName`, ...) |
//! | [`transaction`] | [`Transaction`](transaction::Transaction), [`AuditTransaction`](transaction::AuditTransaction): payload v1 serialisation and the stored-form round trip |
//! | [`upload`] | [`parse_upload`](upload::parse_upload): the ingest parser, one outcome per item |
//! | [`batch`] | [`BatchMessage`](batch::BatchMessage): the delivery queue message (fan-out to push) |
//! | [`ownership`] | who owned a safe when: [`Assignment`](ownership::Assignment), [`Period`](ownership::Period), [`Ownership`](ownership::Ownership) |
//! | [`endpoint`] | [`EndpointSettings`](endpoint::EndpointSettings), [`Customer`](endpoint::Customer): what staff configure, validated |
//! | [`dedup`] | [`DedupKey`](dedup::DedupKey), [`StorageKey`](dedup::StorageKey) |
//! | [`quality`] | [`check`](quality::check): hold reasons |
//! | [`record`] | what is stored: [`StoredTransaction`](record::StoredTransaction), [`DeliveryStatus`](record::DeliveryStatus), [`HoldNote`](record::HoldNote), staff's [`HoldDecision`](record::HoldDecision), [`RejectRecord`](record::RejectRecord) |
//! | [`sequence`] | [`Progress`](sequence::Progress): sequence-gap detection per safe |
//! | [`payload`] | [`render_v1`](payload::render_v1): the push request, with the API key placed |
//! | `testdata` | (feature `testdata`) generator of realistic uploads |
//!
//! # Decisions
//!
//! * **Unknown transaction type: rejected, not held.** The spec lists "an
//!   unknown type" among hold reasons, but a record whose type is unknown
//!   cannot be built as a [`Transaction`](transaction::Transaction). The upload
//!   parser rejects it with code `unknown_type`, naming the value received;
//!   the raw item text is kept in the rejects table, where staff can see it
//!   and replay it once the type is known. Holds ([`quality`]) are for records
//!   that parsed but look wrong.
//! * **`RetrievedOn` accepts offsets.** The docs say UTC, but the captured real
//!   payload carries `-06:00`; any `Z` or `±HH:MM` is accepted and the text is
//!   passed through verbatim. An offset is required.
//! * **`TransactionDateTime`** is safe-local time, offset optional, passed
//!   through verbatim. Its sort key drops the offset (a safe's own wall clock
//!   orders its transactions).
//! * **Future-date rule.** Without an offset, a local time may be at most
//!   UTC+14 ahead, so it is "in the future" only when `local - 14h` is after
//!   `now + margin`; with an offset the instant is exact. The margin defaults
//!   to 1 hour ([`quality::QualityPolicy`]).
//! * **Serial numbers** are trimmed of surrounding ASCII whitespace before
//!   validation (padded fixed-width exports must not create a second safe) and
//!   stored upper-cased.
//! * **Money never touches `f64`.** Decimals are read from the raw JSON number
//!   text with `Decimal::from_str_exact` and written back from their own text
//!   through `serde_json`'s `RawValue` (feature `raw_value`; the workspace does
//!   not enable `arbitrary_precision`). Exponent notation is refused.
//! * **Strict items.** Unknown fields, duplicate keys, wrong JSON types and
//!   out-of-range numbers reject the item (a typo must not pass silently).
//!   `null` for an optional field means absent. A field belonging to the other
//!   record kind (e.g. `DoorName` on a transaction) is tolerated only when
//!   `null` (or `[]` for `Denominations`), since one upstream class may
//!   serialise both kinds.
//! * **`SequenceNumber`** is an upload-only field: read, used for the dedup key,
//!   kept on the struct, never written into the push payload.
//! * **Dedup** never looks at `RetrievedOn`: a re-read of the same transaction
//!   is the same transaction.

pub mod batch;
pub mod dedup;
pub mod endpoint;
pub mod fields;
pub mod money;
pub mod ownership;
pub mod payload;
pub mod quality;
pub mod record;
pub mod sequence;
pub mod serial;
pub mod time;
pub mod transaction;
pub mod types;
pub mod upload;

#[cfg(any(test, feature = "testdata"))]
pub mod testdata;
