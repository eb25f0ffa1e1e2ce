//! DNS resolution that only ever hands reqwest vetted addresses.

use std::io;
use std::net::SocketAddr;

use platformsync_delivery::ssrf::{AllowList, Forbidden};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use thiserror::Error;

/// Resolves with the system resolver (tokio's `lookup_host`) and drops every
/// address the SSRF policy refuses. If some addresses of a name are public and
/// others not, only the public ones are used; if none is left, resolution fails
/// with [`ResolveError::Refused`], which the client reports as a refusal.
#[derive(Debug, Clone, Default)]
pub struct GuardedResolver {
    allow: AllowList,
}

/// Why a name yielded no usable address.
#[derive(Debug, Error)]
pub enum ResolveError {
    #[error("DNS lookup of {host} failed")]
    Lookup {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("DNS lookup of {host} returned no address")]
    NoAddress { host: String },
    #[error("{host} resolves only to refused addresses: {}", list(.refusals))]
    Refused {
        host: String,
        refusals: Vec<Forbidden>,
    },
}

fn list(refusals: &[Forbidden]) -> String {
    refusals
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl GuardedResolver {
    pub fn new(allow: AllowList) -> Self {
        GuardedResolver { allow }
    }

    /// Resolve `host` and keep the addresses the policy accepts.
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        // Port 0: reqwest puts the URL's port on whatever we return.
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|source| ResolveError::Lookup {
                host: host.to_owned(),
                source,
            })?
            .collect();
        vet(host, &self.allow, found)
    }
}

/// Split resolved addresses into accepted and refused.
fn vet(
    host: &str,
    allow: &AllowList,
    found: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, ResolveError> {
    if found.is_empty() {
        return Err(ResolveError::NoAddress {
            host: host.to_owned(),
        });
    }
    let mut accepted = Vec::with_capacity(found.len());
    let mut refusals = Vec::new();
    for addr in found {
        match allow.check(addr.ip()) {
            Ok(()) => accepted.push(addr),
            Err(refusal) => refusals.push(refusal),
        }
    }
    if !refusals.is_empty() {
        tracing::warn!(
            host,
            refused = %list(&refusals),
            kept = accepted.len(),
            "endpoint name resolves to refused addresses"
        );
    }
    if accepted.is_empty() {
        return Err(ResolveError::Refused {
            host: host.to_owned(),
            refusals,
        });
    }
    Ok(accepted)
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let addrs = this.lookup(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn keeps_only_vetted_addresses() {
        let found = vec![addr("10.0.0.1:0"), addr("93.184.215.14:0"), addr("[::1]:0")];
        let kept = vet("mixed.example", &AllowList::none(), found).unwrap();
        assert_eq!(kept, vec![addr("93.184.215.14:0")]);
    }

    #[test]
    fn refuses_when_nothing_is_left() {
        let found = vec![addr("127.0.0.1:0"), addr("169.254.169.254:0")];
        let err = vet("evil.example", &AllowList::none(), found).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("evil.example"), "{text}");
        assert!(text.contains("instance metadata"), "{text}");
        assert!(matches!(err, ResolveError::Refused { ref refusals, .. } if refusals.len() == 2));
    }

    #[test]
    fn allow_list_lets_loopback_through() {
        let allow = AllowList::parse("127.0.0.0/8").unwrap();
        let found = vec![addr("127.0.0.1:0"), addr("[::1]:0")];
        assert_eq!(
            vet("localhost", &allow, found).unwrap(),
            vec![addr("127.0.0.1:0")]
        );
    }

    #[test]
    fn empty_answer_is_an_error() {
        assert!(matches!(
            vet("nothing.example", &AllowList::none(), vec![]),
            Err(ResolveError::NoAddress { .. })
        ));
    }

    #[tokio::test]
    async fn resolves_localhost_only_when_allowed() {
        let refused = GuardedResolver::default().lookup("localhost").await;
        assert!(
            matches!(refused, Err(ResolveError::Refused { .. })),
            "{refused:?}"
        );
        let allowed = GuardedResolver::new(AllowList::parse("127.0.0.0/8, ::1").unwrap())
            .lookup("localhost")
            .await
            .unwrap();
        assert!(allowed.iter().all(|a| a.ip().is_loopback()));
    }
}
