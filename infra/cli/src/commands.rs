//! `customer`, `safe` and `endpoint` commands.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, bail};
use platformsync_domain::endpoint::{
    Customer, CustomerId, EndpointId, EndpointSettings, EndpointType, KeyPlacement,
    normalize_whitelist_entry,
};
use platformsync_domain::ownership::BEGINNING;
use platformsync_domain::payload::DEFAULT_KEY_NAME;
use platformsync_domain::serial::SerialNumber;
use platformsync_domain::time::SafeDateTime;
use platformsync_domain::types::{AuditType, MessageKind, TransactionType};
use serde_json::json;

use crate::ops::{KeySource, Ops};
use crate::table::{self, or_dash};
use crate::url_guard;
use crate::{
    Cmd, CustomerCommand, EndpointAdd, EndpointCommand, EndpointRef, EndpointTypeArg,
    EndpointUpdate, Io, MessageTypeArg, PlacementArg, SafeCommand, SettingsArgs,
};

fn customer_id(s: &str) -> Result<CustomerId> {
    Ok(CustomerId::parse(s)?)
}

fn endpoint_id(s: &str) -> Result<EndpointId> {
    Ok(EndpointId::parse(s)?)
}

/// `--customer` and `--id` as typed ids.
fn typed_ref(r: &EndpointRef) -> Result<(CustomerId, EndpointId)> {
    Ok((customer_id(&r.customer)?, endpoint_id(&r.id)?))
}

async fn existing_customer(ops: &Ops, id: &CustomerId) -> Result<Customer> {
    ops.config
        .customer(id)
        .await
        .with_context(|| format!("reading customer {id}"))?
        .with_context(|| {
            format!("customer {id} does not exist (add it with `platformsync customer add`)")
        })
}

/// The customer's endpoint `id`, with its key's secret name derived from
/// the id, whatever an old record says.
async fn existing_endpoint(
    ops: &Ops,
    customer: &CustomerId,
    id: &EndpointId,
) -> Result<EndpointSettings> {
    let mut e = ops
        .config
        .endpoint(customer, id)
        .await?
        .with_context(|| format!("customer {customer} has no endpoint {id}"))?;
    e.api_key_secret = ops.names.endpoint_secret(id);
    Ok(e)
}

fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
}

pub(crate) async fn customer(cmd: Cmd<'_, '_>, command: CustomerCommand) -> Result<()> {
    let Cmd { target, json, io } = cmd;
    match command {
        CustomerCommand::Add {
            id,
            name,
            notify,
            replace,
        } => {
            let id = customer_id(&id)?;
            let name = name.trim().to_owned();
            if name.is_empty() {
                bail!("the customer name must not be empty");
            }
            if let Some(bad) = notify.iter().find(|e| !valid_email(e)) {
                bail!("{bad:?} is not an e-mail address");
            }
            let ops = Ops::connect(target).await;
            if !replace && ops.config.customer(&id).await?.is_some() {
                bail!(
                    "customer {id} already exists (use --replace to overwrite its name and recipients)"
                );
            }
            let customer = Customer {
                customer_id: id.clone(),
                name,
                notification_recipients: notify,
            };
            ops.config.put_customer(&customer).await?;
            if json {
                table::json(io.out, &customer)
            } else {
                writeln!(io.out, "customer {id} saved")?;
                Ok(())
            }
        }
        CustomerCommand::List => {
            let ops = Ops::connect(target).await;
            let mut customers = ops.config.customers().await?;
            customers.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
            let mut safes: HashMap<CustomerId, usize> = HashMap::new();
            for s in ops.config.safes().await? {
                *safes.entry(s.customer_id).or_default() += 1;
            }
            let mut rows = Vec::new();
            let mut out = Vec::new();
            for c in &customers {
                let endpoints = ops.config.endpoints_of(&c.customer_id).await?.len();
                let safe_count = safes.get(&c.customer_id).copied().unwrap_or(0);
                rows.push(vec![
                    c.customer_id.to_string(),
                    c.name.clone(),
                    or_dash(c.notification_recipients.join(", ")),
                    endpoints.to_string(),
                    safe_count.to_string(),
                ]);
                let mut v = serde_json::to_value(c)?;
                v["Endpoints"] = json!(endpoints);
                v["Safes"] = json!(safe_count);
                out.push(v);
            }
            if json {
                table::json(io.out, &out)
            } else {
                table::print(
                    io.out,
                    &["CUSTOMER", "NAME", "NOTIFY", "ENDPOINTS", "SAFES"],
                    &rows,
                )
            }
        }
    }
}

pub(crate) async fn safe(cmd: Cmd<'_, '_>, command: SafeCommand) -> Result<()> {
    let Cmd { target, json, io } = cmd;
    match command {
        SafeCommand::Assign {
            serials,
            customer,
            from,
        } => {
            let customer = customer_id(&customer)?;
            let serials: Vec<String> = serials
                .iter()
                .map(|s| {
                    SerialNumber::parse(s)
                        .map(|s| s.as_str().to_owned())
                        .map_err(|e| anyhow::anyhow!("serial number {s:?}: {e}"))
                })
                .collect::<Result<_>>()?;
            let from = from.as_deref().map(assignment_bound).transpose()?;
            let ops = Ops::connect(target).await;
            existing_customer(&ops, &customer).await?;
            assign(&ops, &serials, &customer, from.as_deref(), json, io).await
        }
        SafeCommand::History { serial } => {
            let serial = SerialNumber::parse(&serial)
                .map_err(|e| anyhow::anyhow!("serial number {serial:?}: {e}"))?;
            let ops = Ops::connect(target).await;
            let history = ops.assignments.history(&serial).await?;
            let periods = platformsync_domain::ownership::periods(&history);
            table::list(
                io.out,
                json,
                &periods,
                &["CUSTOMER", "FROM", "UNTIL"],
                |p| {
                    vec![
                        p.customer_id.to_string(),
                        shown_bound(&p.from),
                        p.until
                            .as_deref()
                            .map(shown_bound)
                            .unwrap_or_else(|| "-".into()),
                    ]
                },
            )
        }
        SafeCommand::List { customer } => {
            let customer = customer.as_deref().map(customer_id).transpose()?;
            let ops = Ops::connect(target).await;
            let mut safes = ops.config.safes().await?;
            if let Some(c) = &customer {
                safes.retain(|s| s.customer_id == *c);
            }
            safes.sort_by(|a, b| {
                (&a.customer_id, &a.serial_number).cmp(&(&b.customer_id, &b.serial_number))
            });
            table::list(io.out, json, &safes, &["SERIAL", "CUSTOMER"], |s| {
                vec![s.serial_number.to_string(), s.customer_id.to_string()]
            })
        }
    }
}

/// `--from` as an assignment bound (the transactions table's sort-key time
/// form): `YYYY-MM-DD` is midnight; a time is read like a
/// `TransactionDateTime` (safe-local, an offset is ignored).
pub(crate) fn assignment_bound(value: &str) -> Result<String> {
    let value = value.trim();
    let full = if value.len() == 10 {
        format!("{value}T00:00:00")
    } else {
        value.to_owned()
    };
    let t = SafeDateTime::parse(&full).map_err(|e| {
        anyhow::anyhow!("--from {value:?}: {e} (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)")
    })?;
    Ok(t.sort_key())
}

/// A bound as staff read it (`from the first transaction` for the beginning).
fn shown_bound(bound: &str) -> String {
    if bound == BEGINNING {
        "first transaction".into()
    } else {
        bound.to_owned()
    }
}

/// Now, UTC wall clock, as a bound.
fn now_bound() -> String {
    let now = time::OffsetDateTime::now_utc();
    let text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.nanosecond() / 100
    );
    text
}

/// Assigns validated, upper-cased `serials` to an existing customer from
/// `from` (a bound; default: the first transaction for a safe nobody owned,
/// now for a move). Writes the dated history and the customers' periods,
/// then the `OWNER` item the fan-out reads (the latest assignment's
/// customer), as before dates existed.
pub(crate) async fn assign(
    ops: &Ops,
    serials: &[String],
    customer: &CustomerId,
    from: Option<&str>,
    json: bool,
    io: &mut Io<'_>,
) -> Result<()> {
    let parsed = serials
        .iter()
        .map(|s| SerialNumber::parse(s).with_context(|| format!("serial number {s:?}")))
        .collect::<Result<Vec<_>>>()?;
    let before = ops.config.safe_owners(&parsed).await?;
    let assigned_at = crate::rfc3339(time::OffsetDateTime::now_utc());
    let mut out = Vec::new();
    for serial in &parsed {
        // An owner item naming an id that is not one (edited by hand) is what
        // this command repairs: replaced, never kept as the earlier owner.
        let legacy = match before.get(serial).map(|c| (c, CustomerId::parse(c))) {
            Some((_, Ok(owner))) => Some(owner),
            Some((text, Err(_))) => {
                writeln!(
                    io.err,
                    "safe {serial}: its stored owner {text:?} is not a customer id; replaced"
                )?;
                None
            }
            None => None,
        };
        let effective = match from {
            Some(f) => f.to_owned(),
            None if legacy.is_none() && ops.assignments.history(serial).await?.is_empty() => {
                BEGINNING.to_owned()
            }
            None => now_bound(),
        };
        let done = ops
            .assignments
            .assign(serial, customer, &effective, &assigned_at, legacy.as_ref())
            .await
            .with_context(|| format!("assigning safe {serial}"))?;
        ops.config.assign_safe(serial, &done.latest).await?;
        let previous = done
            .previous
            .as_ref()
            .or(legacy.as_ref())
            .filter(|p| *p != customer);
        if !json {
            let shown = shown_bound(&effective);
            match previous {
                Some(p) => writeln!(io.out, "safe {serial} -> {customer} from {shown} (was {p})")?,
                None => writeln!(io.out, "safe {serial} -> {customer} from {shown}")?,
            }
        }
        out.push(json!({
            "SerialNumber": serial.as_str(),
            "CustomerId": customer,
            "From": effective,
            "PreviousCustomerId": previous,
            "CurrentCustomerId": done.latest,
        }));
    }
    if json {
        table::json(io.out, &out)?;
    }
    Ok(())
}

fn parse_metadata(entries: &[String]) -> Result<Vec<(String, String)>> {
    entries
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
            _ => bail!("--metadata {e:?}: expected KEY=VALUE"),
        })
        .collect()
}

/// Applies the given settings to `e`; notes for the operator (legacy codes
/// stored as names).
fn apply(e: &mut EndpointSettings, s: &SettingsArgs) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    if let Some(url) = &s.url {
        e.url = url.trim().to_owned();
    }
    if let Some(t) = s.endpoint_type {
        e.endpoint_type = match t {
            EndpointTypeArg::Production => EndpointType::Production,
            EndpointTypeArg::Test => EndpointType::Test,
            EndpointTypeArg::Development => EndpointType::Development,
        };
    }
    if let Some(name) = &s.key_name {
        e.api_key_name = name.clone();
    }
    if let Some(p) = s.key_placement {
        e.api_key_placement = match p {
            PlacementArg::Header => KeyPlacement::Header,
            PlacementArg::Body => KeyPlacement::Body,
            PlacementArg::Query => KeyPlacement::Query,
            PlacementArg::Metadata => KeyPlacement::Metadata,
        };
    }
    if s.raw_key {
        e.bearer = false;
    }
    if s.bearer {
        e.bearer = true;
    }
    for (k, v) in parse_metadata(&s.metadata)? {
        e.metadata.insert(k, v);
    }
    if !s.whitelist.is_empty() {
        let mut list: Vec<String> = Vec::new();
        for name in s
            .whitelist
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
        {
            // Names are stored as given (either vocabulary matches); a legacy
            // code is stored as its name, so the list reads the same
            // everywhere. Unknown ones are refused here with the known names.
            let Some(stored) = normalize_whitelist_entry(name) else {
                let known: Vec<&str> = TransactionType::ALL
                    .iter()
                    .map(|t| t.canonical_name())
                    .chain(TransactionType::ALL.iter().filter_map(|t| t.alias()))
                    .chain(AuditType::ALL.iter().map(|t| t.canonical_name()))
                    .collect();
                bail!(
                    "--whitelist {name:?} is not a transaction or audit type; known: {}",
                    known.join(", ")
                );
            };
            if stored != name {
                notes.push(format!(
                    "--whitelist {name}: legacy code of {stored}, stored as {stored}"
                ));
            }
            if !list.iter().any(|n| n.eq_ignore_ascii_case(&stored)) {
                list.push(stored);
            }
        }
        if list.is_empty() {
            bail!("--whitelist is empty: name at least one type, or leave it out to send all");
        }
        e.whitelist = Some(list);
    }
    if !s.message_types.is_empty() {
        let mut kinds: Vec<MessageKind> = s
            .message_types
            .iter()
            .map(|m| match m {
                MessageTypeArg::Transactions => MessageKind::Transactions,
                MessageTypeArg::AuditTransactions => MessageKind::AuditTransactions,
            })
            .collect();
        kinds.sort();
        kinds.dedup();
        e.message_types = kinds;
    }
    if let Some(n) = s.max_batch_size {
        e.max_batch_size = n;
    }
    if let Some(v) = &s.payload_version {
        e.payload_version = if v.trim().eq_ignore_ascii_case("latest") {
            None
        } else {
            Some(v.trim().to_owned())
        };
    }
    if s.disabled {
        e.enabled = false;
    }
    if s.enabled {
        e.enabled = true;
    }
    Ok(notes)
}

/// Refuses a URL the push function would refuse (literal non-public address,
/// port policy); warns about a name that resolves to a non-public address.
async fn check_url(url: &str, io: &mut Io<'_>) -> Result<()> {
    let allow = url_guard::allow_list()?;
    let endpoint = url_guard::check(url, &allow)?;
    for warning in url_guard::resolution_warnings(&endpoint, &allow).await {
        writeln!(io.err, "warning: {warning}")?;
    }
    Ok(())
}

fn print_notes(notes: &[String], io: &mut Io<'_>) -> Result<()> {
    for note in notes {
        writeln!(io.err, "note: {note}")?;
    }
    Ok(())
}

/// Checks the settings (and the key against its placement) before anything is written.
fn validate(e: &EndpointSettings, key: Option<&secrecy::SecretString>) -> Result<()> {
    e.validate()
        .with_context(|| format!("endpoint {} not saved", e.endpoint_id))?;
    if let Some(key) = key {
        e.api_key(key.clone()).map(drop).with_context(|| {
            format!(
                "endpoint {} not saved: the API key does not suit its placement",
                e.endpoint_id
            )
        })?;
    }
    Ok(())
}

/// Every endpoint of every customer.
async fn all_endpoints(ops: &Ops) -> Result<Vec<EndpointSettings>> {
    let mut customers = ops.config.customers().await?;
    customers.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    let mut all = Vec::new();
    for c in customers {
        all.extend(ops.config.endpoints_of(&c.customer_id).await?);
    }
    Ok(all)
}

pub(crate) async fn endpoint(cmd: Cmd<'_, '_>, command: EndpointCommand) -> Result<()> {
    match command {
        EndpointCommand::Add(args) => add(cmd, args).await,
        EndpointCommand::Update(args) => update(cmd, args).await,
        EndpointCommand::Signing(c) => {
            crate::signing_cmd::run(cmd.target, c, cmd.json, cmd.io).await
        }
        EndpointCommand::Disable { endpoint, dry_run } => {
            crate::parked_cmd::disable(cmd, &endpoint, dry_run).await
        }
        EndpointCommand::Enable {
            endpoint,
            settle,
            dry_run,
        } => crate::parked_cmd::enable(cmd, &endpoint, settle, dry_run).await,
        EndpointCommand::RotateKey {
            endpoint,
            key,
            dry_run,
        } => crate::parked_cmd::rotate_key(cmd, &endpoint, &key, dry_run).await,
        EndpointCommand::ClaimIds => claim_ids(cmd).await,
        EndpointCommand::List { customer } => {
            let Cmd { target, json, io } = cmd;
            let customer = customer.as_deref().map(customer_id).transpose()?;
            let ops = Ops::connect(target).await;
            let endpoints = match &customer {
                Some(c) => {
                    existing_customer(&ops, c).await?;
                    ops.config.endpoints_of(c).await?
                }
                None => all_endpoints(&ops).await?,
            };
            table::list(
                io.out,
                json,
                &endpoints,
                &[
                    "ENDPOINT",
                    "CUSTOMER",
                    "TYPE",
                    "URL",
                    "KEY",
                    "MESSAGES",
                    "WHITELIST",
                    "BATCH",
                    "ENABLED",
                ],
                |e| {
                    vec![
                        e.endpoint_id.to_string(),
                        e.customer_id.to_string(),
                        format!("{:?}", e.endpoint_type).to_lowercase(),
                        e.url.clone(),
                        key_description(e),
                        message_types(e),
                        e.whitelist
                            .as_ref()
                            .map(|w| w.join(","))
                            .unwrap_or_else(|| "all".into()),
                        e.max_batch_size.to_string(),
                        if e.enabled { "yes" } else { "no" }.into(),
                    ]
                },
            )
        }
        EndpointCommand::Show { customer, id } => {
            let Cmd { target, json, io } = cmd;
            let (customer, id) = (customer_id(&customer)?, endpoint_id(&id)?);
            let ops = Ops::connect(target).await;
            let e = existing_endpoint(&ops, &customer, &id).await?;
            let changed = ops.key_last_changed(&e.api_key_secret).await?;
            show(&e, changed.as_deref(), json, io)
        }
    }
}

/// The one-time upgrade step for endpoints stored before ids were claimed.
/// Shared ids are an error, not a listing: until they are renamed, only the
/// holder may change the endpoint, and the other customer's pushes are at risk.
async fn claim_ids(cmd: Cmd<'_, '_>) -> Result<()> {
    let Cmd { target, json, io } = cmd;
    let ops = Ops::connect(target).await;
    let shared = ops.config.claim_existing_endpoints().await?;
    if json {
        let rows: Vec<_> = shared
            .iter()
            .map(|(id, customer, holder)| {
                json!({"EndpointId": id, "Customer": customer, "HeldBy": holder})
            })
            .collect();
        table::json(io.out, &json!({"Shared": rows}))?;
    } else if shared.is_empty() {
        writeln!(io.out, "every endpoint id is claimed by its one customer")?;
    } else {
        let rows: Vec<Vec<String>> = shared
            .iter()
            .map(|(id, customer, holder)| vec![id.clone(), customer.clone(), holder.clone()])
            .collect();
        table::print(io.out, &["ENDPOINT", "CUSTOMER", "HELD BY"], &rows)?;
    }
    if shared.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} endpoint id(s) are used by two customers: give the customer's endpoint a new id \
             (`endpoint add` with a new --id, then remove the old record), see docs/runbook.md",
            shared.len()
        )
    }
}

fn key_description(e: &EndpointSettings) -> String {
    match e.api_key_placement {
        KeyPlacement::Header if e.bearer => format!("header {}: Bearer", e.api_key_name),
        KeyPlacement::Header => format!("header {}: raw", e.api_key_name),
        KeyPlacement::Query => format!("query ?{}=", e.api_key_name),
        KeyPlacement::Body => format!("body .{}", e.api_key_name),
        KeyPlacement::Metadata => format!("metadata .Metadata.{}", e.api_key_name),
    }
}

fn message_types(e: &EndpointSettings) -> String {
    e.message_types
        .iter()
        .map(|k| k.wire_name())
        .collect::<Vec<_>>()
        .join(",")
}

fn show(
    e: &EndpointSettings,
    key_changed: Option<&str>,
    json: bool,
    io: &mut Io<'_>,
) -> Result<()> {
    if json {
        let mut v = serde_json::to_value(e)?;
        v["ApiKeyStored"] = json!(key_changed.is_some());
        v["ApiKeyLastChanged"] = json!(key_changed);
        return table::json(io.out, &v);
    }
    let metadata = e
        .metadata
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows: Vec<(&str, String)> = vec![
        ("Endpoint", e.endpoint_id.to_string()),
        ("Customer", e.customer_id.to_string()),
        ("URL", e.url.clone()),
        ("Type", format!("{:?}", e.endpoint_type).to_lowercase()),
        ("Enabled", if e.enabled { "yes" } else { "no" }.into()),
        ("API key", key_description(e)),
        ("API key secret", e.api_key_secret.clone()),
        (
            "API key stored",
            match key_changed {
                Some(at) => format!("yes (last changed {at})"),
                None => {
                    "NO: the secret does not exist; set it with `endpoint update --key-file`".into()
                }
            },
        ),
        ("Message types", message_types(e)),
        (
            "Whitelist",
            e.whitelist
                .as_ref()
                .map(|w| w.join(", "))
                .unwrap_or_else(|| "all types".into()),
        ),
        ("Max batch size", e.max_batch_size.to_string()),
        (
            "Payload version",
            e.payload_version.clone().unwrap_or_else(|| "latest".into()),
        ),
        ("Metadata", or_dash(metadata)),
    ];
    for (k, v) in rows {
        writeln!(io.out, "{:<16} {v}", format!("{k}:"))?;
    }
    Ok(())
}

async fn add(cmd: Cmd<'_, '_>, args: EndpointAdd) -> Result<()> {
    let Cmd { target, json, io } = cmd;
    let (customer, id) = typed_ref(&args.endpoint)?;
    let Some(source) = KeySource::of(&args.key)? else {
        bail!("endpoint add needs the API key: --key-stdin or --key-file PATH");
    };
    let Some(url) = args.settings.url.clone() else {
        bail!("endpoint add needs --url https://...");
    };
    let names = crate::Names::of(target);
    let mut e = EndpointSettings {
        endpoint_id: id.clone(),
        customer_id: customer.clone(),
        url,
        endpoint_type: EndpointType::default(),
        api_key_name: DEFAULT_KEY_NAME.to_owned(),
        api_key_placement: KeyPlacement::default(),
        bearer: true,
        api_key_secret: names.endpoint_secret(&id),
        metadata: BTreeMap::new(),
        whitelist: None,
        message_types: vec![MessageKind::Transactions],
        max_batch_size: platformsync_domain::endpoint::MAX_BATCH_SIZE,
        payload_version: None,
        enabled: true,
        signing: false,
    };
    let notes = apply(&mut e, &args.settings)?;
    // Settings first: a bad URL is reported before the key is even asked for.
    validate(&e, None)?;
    check_url(&e.url, io).await?;
    print_notes(&notes, io)?;
    let key = io.read_key(&source)?;
    validate(&e, Some(&key))?;

    let ops = Ops::connect(target).await;
    existing_customer(&ops, &customer).await?;
    if ops.config.endpoint(&customer, &id).await?.is_some() {
        bail!("customer {customer} already has endpoint {id}: use `platformsync endpoint update`");
    }
    // The secret, the ledger and the queue group are per endpoint id: the
    // store claims the id for this customer atomically (another customer's
    // id is refused here, before the key is touched), then the key, then
    // the settings (stored settings always have a key).
    ops.config.claim_endpoint_id(&customer, &id).await?;
    let version = ops.store_key(&e.api_key_secret, &id, &key).await?;
    ops.config.put_endpoint(&e).await?;
    if json {
        let mut v = serde_json::to_value(&e)?;
        v["ApiKeyVersion"] = json!(version);
        table::json(io.out, &v)
    } else {
        writeln!(
            io.out,
            "endpoint {id} added for customer {customer}; API key stored in Secrets Manager as {}",
            e.api_key_secret
        )?;
        Ok(())
    }
}

async fn update(cmd: Cmd<'_, '_>, args: EndpointUpdate) -> Result<()> {
    let Cmd { target, json, io } = cmd;
    let (customer, id) = typed_ref(&args.endpoint)?;
    let source = KeySource::of(&args.key)?;
    let ops = Ops::connect(target).await;
    let mut e = existing_endpoint(&ops, &customer, &id).await?;
    let before = e.clone();
    if args.clear_metadata {
        e.metadata.clear();
    }
    for k in &args.remove_metadata {
        if e.metadata.remove(k).is_none() {
            bail!("--remove-metadata {k:?}: endpoint {id} has no such metadata");
        }
    }
    if args.clear_whitelist {
        e.whitelist = None;
    }
    let notes = apply(&mut e, &args.settings)?;
    validate(&e, None)?;
    if e.url != before.url {
        check_url(&e.url, io).await?;
    }
    print_notes(&notes, io)?;
    let key = match &source {
        Some(source) => {
            let key = io.read_key(source)?;
            validate(&e, Some(&key))?;
            Some(key)
        }
        None => None,
    };
    if key.is_none() && e == before {
        bail!(
            "nothing to change: give a setting to change, or --key-stdin / --key-file to rotate the key"
        );
    }
    let version = match &key {
        Some(key) => Some(ops.store_key(&e.api_key_secret, &id, key).await?),
        None => None,
    };
    if e != before {
        ops.config.put_endpoint(&e).await?;
    }
    if json {
        let mut v = serde_json::to_value(&e)?;
        v["ApiKeyRotated"] = json!(version.is_some());
        v["ApiKeyVersion"] = json!(version);
        table::json(io.out, &v)
    } else {
        let mut what = Vec::new();
        if e != before {
            what.push("settings saved".to_owned());
        }
        if key.is_some() {
            what.push(format!(
                "API key rotated (new version of {})",
                e.api_key_secret
            ));
        }
        writeln!(io.out, "endpoint {id}: {}", what.join("; "))?;
        Ok(())
    }
}
