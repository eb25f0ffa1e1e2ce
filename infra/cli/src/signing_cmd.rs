//! `endpoint signing enable|rotate|disable`: signed pushes (Standard
//! Webhooks), opt-in per endpoint.
//!
//! The signing secrets are kept with the API key in the endpoint's own
//! secret (`platformsync/<stage>/endpoints/<id>`, an `EndpointSecret`
//! document once signing is on), so the push function's cache refresh stays
//! one `GetSecretValue` and a secret holding only the plain key still reads.
//! The new `whsec_...` secret is printed once on standard output (what the
//! customer verifies with); an old one is never printed.
//!
//! Order of writes, so push never sees signing on without a secret: enable
//! stores the secret, then switches the record's flag on; disable switches
//! the flag off, then removes the secrets.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use platformsync_delivery::signing::{DEFAULT_GRACE_SECONDS, EndpointSecret, SigningSecret};
use platformsync_domain::endpoint::{EndpointId, EndpointSettings};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ops::{Ops, sdk_error};
use crate::{Io, Target, table};

/// How long push may keep an endpoint's secret cached: a rotation's new
/// secret may not be signed with before it ends.
const KEY_CACHE_SECONDS: i64 = platformsync_aws::secrets::MAX_TTL.as_secs() as i64;

/// The longest grace period a rotation may give the old secret.
const MAX_GRACE_HOURS: f64 = 30.0 * 24.0;

#[derive(Debug, Subcommand)]
pub enum SigningCommand {
    /// Signs the endpoint's pushes from now on; prints the new secret once.
    Enable {
        #[arg(long)]
        endpoint: String,
    },
    /// A new signing secret (printed once); the old one keeps signing too
    /// for the grace period, so the customer can switch without a failure.
    Rotate {
        #[arg(long)]
        endpoint: String,
        /// How long pushes carry the old secret's signature too (fractions
        /// allowed).
        #[arg(long, default_value_t = (DEFAULT_GRACE_SECONDS / 3600) as f64)]
        grace_hours: f64,
    },
    /// Stops signing the endpoint's pushes and forgets its signing secrets.
    Disable {
        #[arg(long)]
        endpoint: String,
    },
}

pub(crate) async fn run(
    target: &Target,
    command: SigningCommand,
    json: bool,
    io: &mut Io<'_>,
) -> Result<()> {
    let ops = Ops::connect(target).await;
    let now = OffsetDateTime::now_utc();
    match command {
        SigningCommand::Enable { endpoint } => {
            let mut settings = find_endpoint(&ops, &endpoint).await?;
            let secret_id = ops.names.endpoint_secret(&settings.endpoint_id);
            let mut stored = read(&ops, &secret_id).await?;
            if settings.signing && !stored.signing_at(now.unix_timestamp()).is_empty() {
                bail!(
                    "endpoint {endpoint} already signs its pushes: \
                     `endpoint signing rotate` gives it a new secret"
                );
            }
            let new = generate()?;
            // Any leftover secret (a half-finished earlier run) stops at once.
            stored.rotate(new.clone(), now.unix_timestamp(), 0);
            write(&ops, &secret_id, &stored).await?;
            settings.signing = true;
            ops.config.put_endpoint(&settings).await?;
            report(
                io,
                json,
                &endpoint,
                &new,
                None,
                &format!(
                    "endpoint {endpoint} signs its pushes (webhook-id, webhook-timestamp, \
                     webhook-signature) within 30 s (the push function's settings cache); \
                     its signing secret follows, shown this once: give it to the customer"
                ),
            )
        }
        SigningCommand::Rotate {
            endpoint,
            grace_hours,
        } => {
            if !(0.0..=MAX_GRACE_HOURS).contains(&grace_hours) {
                bail!("--grace-hours must be 0 to {MAX_GRACE_HOURS}, got {grace_hours}");
            }
            let grace_seconds = (grace_hours * 3600.0).round() as i64;
            if grace_seconds < KEY_CACHE_SECONDS {
                // Push may sign with the old secret alone until its key
                // cache runs out; a customer that stops accepting it sooner
                // refuses pushes, which count against its endpoint.
                writeln!(
                    io.err,
                    "warning: a grace under {} minutes: pushes may carry only the old signature \
                     for up to {} minutes (the push function's key cache); the customer must \
                     accept both secrets at least that long",
                    KEY_CACHE_SECONDS / 60,
                    KEY_CACHE_SECONDS / 60
                )?;
            }
            let settings = find_endpoint(&ops, &endpoint).await?;
            if !settings.signing {
                bail!(
                    "endpoint {endpoint} does not sign its pushes: `endpoint signing enable` first"
                );
            }
            let secret_id = ops.names.endpoint_secret(&settings.endpoint_id);
            let mut stored = read(&ops, &secret_id).await?;
            let new = generate()?;
            stored.rotate(new.clone(), now.unix_timestamp(), grace_seconds);
            write(&ops, &secret_id, &stored).await?;
            let until = now + time::Duration::seconds(grace_seconds);
            let until = until.format(&Rfc3339).unwrap_or_default();
            report(
                io,
                json,
                &endpoint,
                &new,
                Some(&until),
                &format!(
                    "new signing secret for {endpoint}, shown this once: give it to the customer. \
                     Pushes carry the previous secret's signature too until {until}, then only \
                     the new one's (the new one signs within 5 minutes: the push function's key cache)"
                ),
            )
        }
        SigningCommand::Disable { endpoint } => {
            let mut settings = find_endpoint(&ops, &endpoint).await?;
            let was = settings.signing;
            if was {
                settings.signing = false;
                ops.config.put_endpoint(&settings).await?;
            }
            let secret_id = ops.names.endpoint_secret(&settings.endpoint_id);
            let mut stored = read(&ops, &secret_id).await?;
            let had = stored.signing.len();
            if had > 0 {
                stored.clear_signing();
                write(&ops, &secret_id, &stored).await?;
            }
            if json {
                return table::json(
                    io.out,
                    &serde_json::json!({"EndpointId": endpoint, "Signing": false,
                        "WasSigning": was, "SecretsRemoved": had}),
                );
            }
            writeln!(
                io.out,
                "endpoint {endpoint} no longer signs its pushes (within 30 s: the push \
                 function's settings cache); {had} signing secret(s) removed"
            )?;
            Ok(())
        }
    }
}

/// The value `endpoint update --key-*` / `endpoint rotate-key` stores for
/// `key`: the key alone, or, when the endpoint's secret holds signing
/// secrets, the document with the new key and the same signing secrets
/// (a key rotation must not drop them).
pub(crate) async fn with_key(
    ops: &Ops,
    secret_id: &str,
    key: &SecretString,
) -> Result<SecretString> {
    let mut stored = match current(ops, secret_id).await? {
        Some(value) => EndpointSecret::parse(value.expose_secret())
            .with_context(|| format!("the endpoint secret {secret_id} cannot be read"))?,
        None => return Ok(key.clone()),
    };
    stored.key = key.clone();
    Ok(stored.to_stored())
}

async fn find_endpoint(ops: &Ops, endpoint: &str) -> Result<EndpointSettings> {
    let id = EndpointId::parse(endpoint).map_err(anyhow::Error::msg)?;
    ops.find_endpoint(&id).await
}

/// A new secret of 32 bytes from two v4 UUIDs (`getrandom`, the OS's
/// CSPRNG): 244 random bits, as the pull-API keys are made.
fn generate() -> Result<SigningSecret> {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    Ok(SigningSecret::from_bytes(bytes)?)
}

async fn current(ops: &Ops, secret_id: &str) -> Result<Option<SecretString>> {
    match ops
        .secrets
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .secret_string()
            .map(|s| SecretString::from(s.to_owned()))),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_error(e, &format!("GetSecretValue on {secret_id}"))),
    }
}

async fn read(ops: &Ops, secret_id: &str) -> Result<EndpointSecret> {
    let value = current(ops, secret_id).await?.with_context(|| {
        format!(
            "the endpoint's key secret {secret_id} does not exist: set the key with \
             `endpoint update --key-file` first"
        )
    })?;
    EndpointSecret::parse(value.expose_secret())
        .with_context(|| format!("the endpoint secret {secret_id} cannot be read"))
}

async fn write(ops: &Ops, secret_id: &str, stored: &EndpointSecret) -> Result<()> {
    ops.secrets
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(stored.to_stored().expose_secret())
        .send()
        .await
        .map_err(|e| sdk_error(e, &format!("PutSecretValue on {secret_id}")))?;
    Ok(())
}

/// The new secret on standard output (alone, or in `--json`), the note on
/// standard error.
fn report(
    io: &mut Io<'_>,
    json: bool,
    endpoint: &str,
    new: &SigningSecret,
    previous_until: Option<&str>,
    note: &str,
) -> Result<()> {
    let text = new.to_text();
    if json {
        return table::json(
            io.out,
            &serde_json::json!({"EndpointId": endpoint, "Signing": true,
                "SigningSecret": text.expose_secret(), "PreviousSignsUntil": previous_until}),
        );
    }
    writeln!(io.err, "{note}")?;
    writeln!(io.out, "{}", text.expose_secret())?;
    Ok(())
}
