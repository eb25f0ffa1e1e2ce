//! `ingest-key rotate`: a new value for the key SafeSync presents.
//!
//! `PutSecretValue` makes the new value `AWSCURRENT` and the value it
//! replaces `AWSPREVIOUS`. The ingest function accepts both
//! (`platformsync_aws::ingest_key`), and a container that still caches the
//! old value looks again when it sees a key it does not know, so SafeSync
//! can switch whenever it likes: no upload gets a 401 for either key. The
//! old key stops working at the next rotation; to revoke a leaked key at
//! once, rotate twice.
//!
//! A generated key comes from Secrets Manager's `GetRandomPassword` (48
//! letters and digits, as template.yaml's first key) and is printed once, on
//! standard output, for handing to SafeSync; a key read from standard input
//! or a file is never printed. Nothing logs it; errors never contain it.

use anyhow::{Result, bail};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::ops::{KeySource, Ops, sdk_error};
use crate::{IngestKeyCommand, Io, KeyArgs, Target, table};

/// Length of a generated key (template.yaml's `GenerateSecretString`).
pub const GENERATED_LENGTH: i64 = 48;

pub(crate) async fn run(
    target: &Target,
    command: IngestKeyCommand,
    json: bool,
    io: &mut Io<'_>,
) -> Result<()> {
    match command {
        IngestKeyCommand::Rotate { key, secret_id } => {
            rotate(target, &key, secret_id, json, io).await
        }
    }
}

async fn rotate(
    target: &Target,
    key: &KeyArgs,
    secret_id: Option<String>,
    json: bool,
    io: &mut Io<'_>,
) -> Result<()> {
    let source = KeySource::of(key)?;
    // Read the given key before touching AWS: a bad one changes nothing.
    let given = match &source {
        Some(source) => Some(io.read_key(source)?),
        None => None,
    };
    let ops = Ops::connect(target).await;
    let secret_id = secret_id
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| ops.names.ingest_key_secret());
    let (value, generated) = match given {
        Some(value) => (value, false),
        None => (generate(&ops).await?, true),
    };
    // PutSecretValue, never CreateSecret: a wrong stage must fail, not make
    // a secret no function reads.
    let out = ops
        .secrets
        .put_secret_value()
        .secret_id(&secret_id)
        .secret_string(value.expose_secret())
        .send()
        .await
        .map_err(|e| sdk_error(e, &format!("PutSecretValue on {secret_id}")))?;
    let version = out.version_id.unwrap_or_default();
    if json {
        let mut v = json!({
            "SecretId": secret_id,
            "VersionId": version,
            "Generated": generated,
            "PreviousKeyValidUntil": "the next rotation",
        });
        if generated {
            v["Key"] = json!(value.expose_secret());
        }
        return table::json(io.out, &v);
    }
    writeln!(
        io.out,
        "ingest key rotated: new version {version} of {secret_id} (AWSCURRENT)"
    )?;
    if generated {
        writeln!(
            io.err,
            "the new key follows, shown this once: give it to SafeSync"
        )?;
        writeln!(io.out, "{}", value.expose_secret())?;
    }
    writeln!(
        io.err,
        "the previous key keeps working until the next rotation (AWSPREVIOUS); rotate again to revoke it"
    )?;
    Ok(())
}

/// A new random key from Secrets Manager.
async fn generate(ops: &Ops) -> Result<SecretString> {
    let out = ops
        .secrets
        .get_random_password()
        .password_length(GENERATED_LENGTH)
        .exclude_punctuation(true)
        .include_space(false)
        .require_each_included_type(true)
        .send()
        .await
        .map_err(|e| sdk_error(e, "GetRandomPassword"))?;
    match out.random_password {
        Some(p) if !p.is_empty() => Ok(SecretString::from(p)),
        _ => bail!("GetRandomPassword returned no password"),
    }
}
