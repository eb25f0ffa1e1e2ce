//! `apikey create|list|revoke`: customers' keys for the pull API.
//!
//! A new key is printed once, on standard output, for handing to the
//! customer; the configuration table keeps only its id, a random salt and
//! SHA-256(salt || secret) (`platformsync_aws::api_keys`). A lost key cannot
//! be shown again: create another and revoke the lost one. Revocation takes
//! effect on the next request (no cache).

use anyhow::{Result, bail};
use platformsync_domain::endpoint::CustomerId;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::ops::Ops;
use crate::table::{self, or_dash};
use crate::{ApiKeyCommand, Io, Target};

fn now() -> String {
    crate::rfc3339(time::OffsetDateTime::now_utc())
}

async fn existing_customer(ops: &Ops, id: &str) -> Result<CustomerId> {
    let id = CustomerId::parse(id)?;
    if ops.config.customer(&id).await?.is_none() {
        bail!("customer {id} does not exist (add it with `platformsync customer add`)");
    }
    Ok(id)
}

pub(crate) async fn run(
    target: &Target,
    command: ApiKeyCommand,
    json: bool,
    io: &mut Io<'_>,
) -> Result<()> {
    let ops = Ops::connect(target).await;
    match command {
        ApiKeyCommand::Create { customer, label } => {
            let customer = existing_customer(&ops, &customer).await?;
            let label = label.map(|l| l.trim().to_owned()).filter(|l| !l.is_empty());
            let (key, record) = ops.api_keys.create(&customer, &now(), label).await?;
            if json {
                return table::json(
                    io.out,
                    &json!({
                        "KeyId": record.key_id,
                        "CustomerId": record.customer_id,
                        "CreatedAt": record.created_at,
                        "Label": record.label,
                        "Key": key.expose_secret(),
                    }),
                );
            }
            writeln!(
                io.err,
                "pull-API key {} created for {customer}; it follows, shown this once: give it to the customer",
                record.key_id
            )?;
            writeln!(io.out, "{}", key.expose_secret())?;
            Ok(())
        }
        ApiKeyCommand::List { customer } => {
            let customer = existing_customer(&ops, &customer).await?;
            let keys = ops.api_keys.list(&customer).await?;
            if json {
                let out: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "KeyId": k.key_id,
                            "CustomerId": k.customer_id,
                            "CreatedAt": k.created_at,
                            "RevokedAt": k.revoked_at,
                            "Label": k.label,
                        })
                    })
                    .collect();
                return table::json(io.out, &out);
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        k.key_id.clone(),
                        k.created_at.clone(),
                        or_dash(k.revoked_at.clone().unwrap_or_default()),
                        or_dash(k.label.clone().unwrap_or_default()),
                    ]
                })
                .collect();
            table::print(io.out, &["KEY ID", "CREATED", "REVOKED", "LABEL"], &rows)
        }
        ApiKeyCommand::Revoke { customer, key_id } => {
            let customer = CustomerId::parse(&customer)?;
            let key_id = key_id.trim().to_ascii_lowercase();
            if !ops.api_keys.revoke(&customer, &key_id, &now()).await? {
                bail!(
                    "customer {customer} has no API key {key_id} (see `platformsync apikey list`)"
                );
            }
            if json {
                return table::json(
                    io.out,
                    &json!({"KeyId": key_id, "CustomerId": customer, "Revoked": true}),
                );
            }
            writeln!(io.out, "API key {key_id} of {customer} revoked")?;
            Ok(())
        }
    }
}
