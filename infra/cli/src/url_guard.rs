//! Where an endpoint may point, checked when it is registered (the push
//! function checks again at every connection: see
//! `platformsync_delivery::ssrf`).
//!
//! - **Addresses**: a URL whose host is a literal address that is not public
//!   unicast (`https://169.254.169.254/`, `https://10.0.0.5/`,
//!   `https://[::ffff:127.0.0.1]/`, `https://2130706433/`) is refused with
//!   the range it is in. A name is resolved once: if it resolves to such an
//!   address a warning is printed (names change, so this is not a refusal;
//!   the push function refuses those addresses whenever it connects).
//! - **Ports** ([`check_port`]): 443, or an unprivileged port (1024-65535).
//!   Ports 1-1023 other than 443 belong to other services (SSH 22, SMTP 25,
//!   DNS 53, HTTP 80...); an endpoint there is a mistake or an attempt to
//!   make PlatformSync talk to them, so it is refused.
//! - **Local stacks**: `PLATFORMSYNC_ALLOW_CIDRS` (the push function's
//!   variable) exempts ranges; when it is unset and the AWS endpoint is a
//!   loopback address (the local stack), loopback is exempt, as the local
//!   runner exempts it for the push function. Never on a real account.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use platformsync_delivery::ssrf::{AllowList, EndpointUrl, UrlError, vet_url};

/// The variable the push function reads; the same ranges are exempt here.
pub const ALLOW_CIDRS_VAR: &str = "PLATFORMSYNC_ALLOW_CIDRS";

/// How long the one look-up of a name may take before registration goes on.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The port policy; see the module docs.
pub fn check_port(port: u16) -> Result<()> {
    if port == 443 || port >= 1024 {
        return Ok(());
    }
    bail!(
        "endpoint port {port} is refused: use 443 or an unprivileged port (1024-65535); ports below 1024 belong to other services"
    )
}

/// The exempt ranges: `PLATFORMSYNC_ALLOW_CIDRS`, else loopback for a local
/// stack, else none.
pub fn allow_list() -> Result<AllowList> {
    if let Ok(text) = std::env::var(ALLOW_CIDRS_VAR)
        && !text.trim().is_empty()
    {
        return AllowList::parse(&text).with_context(|| format!("{ALLOW_CIDRS_VAR} is invalid"));
    }
    if local_stack() {
        return Ok(AllowList::parse("127.0.0.0/8, ::1")?);
    }
    Ok(AllowList::none())
}

/// Whether the AWS endpoint is on this machine (the local stack: moto, the
/// fault proxy, or LocalStack's `localhost.localstack.cloud`).
fn local_stack() -> bool {
    ["AWS_ENDPOINT_URL", "PLATFORMSYNC_AWS_ENDPOINT"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .any(|endpoint| is_loopback_url(&endpoint))
}

fn is_loopback_url(endpoint: &str) -> bool {
    url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
        .is_some_and(|host| match host {
            url::Host::Domain(d) => {
                let d = d.to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost") || d == "localhost.localstack.cloud"
            }
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        })
}

/// Refuses a URL the push function would refuse for its address or that
/// breaks the port policy. Domain names pass; see [`resolution_warnings`].
pub fn check(url: &str, allow: &AllowList) -> Result<EndpointUrl> {
    let endpoint = vet_url(url, allow).map_err(|e| match e {
        UrlError::Forbidden(f) => anyhow::anyhow!(
            "endpoint URL refused: {f}; PlatformSync only delivers to public addresses"
        ),
        other => anyhow::anyhow!("endpoint URL refused: {other}"),
    })?;
    check_port(endpoint.port())?;
    Ok(endpoint)
}

/// Warnings about what the URL's name resolves to now: addresses the push
/// function will refuse, or no answer at all. Empty for a literal address.
pub async fn resolution_warnings(endpoint: &EndpointUrl, allow: &AllowList) -> Vec<String> {
    if endpoint.is_ip_literal() {
        return Vec::new();
    }
    let host = endpoint.host().to_string();
    let lookup = tokio::net::lookup_host((host.as_str(), endpoint.port()));
    let addresses: Vec<IpAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
        Ok(Err(e)) => {
            return vec![format!(
                "{host} does not resolve now ({e}); deliveries start once it resolves to a public address"
            )];
        }
        Err(_) => {
            return vec![format!(
                "{host} did not resolve within {} s; deliveries need it to resolve to a public address",
                RESOLVE_TIMEOUT.as_secs()
            )];
        }
    };
    let mut warnings: Vec<String> = addresses
        .into_iter()
        .filter_map(|ip| allow.check(ip).err())
        .map(|f| {
            format!(
                "{host} resolves to {f}: PlatformSync refuses to deliver there, so deliveries will fail while it does"
            )
        })
        .collect();
    warnings.dedup();
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_blocked_addresses_are_refused_with_their_range() {
        let none = AllowList::none();
        for (url, range) in [
            ("https://169.254.169.254/", "instance metadata"),
            (
                "https://169.254.169.254:8443/latest/meta-data",
                "instance metadata",
            ),
            ("https://10.0.0.5/push", "private"),
            ("https://127.1/", "loopback"),
            ("https://2130706433/", "loopback"),
            ("https://[::ffff:127.0.0.1]/", "loopback"),
            ("https://[fd00:ec2::254]/", "instance metadata"),
            ("https://0.0.0.0/", "unspecified"),
        ] {
            let e = check(url, &none).unwrap_err().to_string();
            assert!(e.contains(range) && e.contains("refused"), "{url}: {e}");
        }
        assert!(check("https://hooks.example.com/push", &none).is_ok());
        assert!(check("https://93.184.215.14:8443/", &none).is_ok());
        let local = AllowList::parse("127.0.0.0/8").unwrap();
        assert!(check("https://127.0.0.1:45123/in", &local).is_ok());
        assert!(check("https://169.254.169.254/", &local).is_err());
    }

    #[test]
    fn local_stacks_are_recognised() {
        for local in [
            "http://127.0.0.1:45577",
            "http://localhost:4566",
            "http://[::1]:4566",
            "http://localhost.localstack.cloud:4566",
        ] {
            assert!(is_loopback_url(local), "{local}");
        }
        for remote in ["https://dynamodb.us-east-1.amazonaws.com", "not a url", ""] {
            assert!(!is_loopback_url(remote), "{remote}");
        }
    }

    #[test]
    fn port_policy() {
        for ok in [443, 1024, 8443, 65535] {
            assert!(check_port(ok).is_ok(), "{ok}");
        }
        for refused in [1, 22, 25, 80, 444, 1023] {
            let e = check_port(refused).unwrap_err().to_string();
            assert!(e.contains(&refused.to_string()), "{e}");
        }
        assert!(check("https://hooks.example.com:25/", &AllowList::none()).is_err());
        assert!(check("https://hooks.example.com:443/", &AllowList::none()).is_ok());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_a_blocked_address_is_warned_about() {
        let none = AllowList::none();
        let endpoint = check("https://localhost:8443/", &none).unwrap();
        let warnings = resolution_warnings(&endpoint, &none).await;
        assert!(
            warnings.iter().any(|w| w.contains("loopback")),
            "{warnings:?}"
        );
        let allowed = AllowList::parse("127.0.0.0/8, ::1").unwrap();
        assert!(resolution_warnings(&endpoint, &allowed).await.is_empty());
        let literal = check("https://93.184.215.14/", &none).unwrap();
        assert!(resolution_warnings(&literal, &none).await.is_empty());
    }
}
