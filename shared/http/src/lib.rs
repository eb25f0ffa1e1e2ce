//! The outbound HTTPS client PlatformSync uses to POST batches to customer endpoints.
//!
//! Customer endpoints are untrusted, customer-controlled URLs reached from inside
//! AWS, with a secret API key attached to every request. This crate is the one
//! place that talks to them, so the rules are enforced once:
//!
//! - **SSRF**: every address connected to is vetted with
//!   [`platformsync_delivery::ssrf`]. Names are resolved by [`GuardedResolver`],
//!   which returns only vetted addresses, and reqwest connects to exactly those
//!   (no second lookup, so DNS rebinding between check and connect is
//!   impossible). Literal-IP URLs skip the resolver, so
//!   [`EndpointClient::post`] vets them itself. Proxies are disabled: a proxy
//!   would resolve the name on our behalf, past the guard.
//! - **TLS**: rustls only (no OpenSSL), verification always on. Extra CA
//!   certificates can be *added* for local runs; nothing can turn checks off.
//! - **Delivery semantics**: redirects are never followed (a 3xx is a failed
//!   attempt, and following one could lead to an unvetted host with our key); one
//!   overall deadline per attempt (3 min by default, delivery rule 1); only
//!   status 200 counts as delivered.
//! - **No secret in errors**: errors name `https://host:port/path` only; the
//!   query string and header values (which carry the API key) never appear in an
//!   error's text, and any echo of them in reqwest's messages or in the
//!   receiver's response body is scrubbed.
//!
//! One [`EndpointClient`] (one reqwest client, one connection pool) is meant to
//! be built per process, outside the Lambda handler.

pub mod client;
pub mod local;
pub mod resolver;

pub use client::{AttemptError, ClientConfig, ClientError, EndpointClient, Refusal, Response};
pub use resolver::{GuardedResolver, ResolveError};
