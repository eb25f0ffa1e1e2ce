//! Settings for local runs only, and the limits on them.
//!
//! `PLATFORMSYNC_EXTRA_CA_FILE` (extra trusted CAs) and
//! `PLATFORMSYNC_ALLOW_CIDRS` (ranges exempt from the SSRF refusal) exist so
//! a test receiver on loopback can be reached. On AWS Lambda they would only
//! weaken the guard, so [`crate::EndpointClient::new`] refuses them there:
//! a function is on Lambda when both `AWS_LAMBDA_FUNCTION_NAME` and
//! `AWS_LAMBDA_RUNTIME_API` are set (the Lambda runtime sets both; the local
//! runner sets neither).
//!
//! **Allow-list rule** (everywhere, local runs included): an entry may
//! exempt a range, never switch the guard off. Refused:
//! - an IPv4 entry shorter than /8 (`0.0.0.0/1`, `128.0.0.0/1`...);
//! - an IPv6 entry shorter than /16;
//! - an IPv6 entry holding a whole IPv4-embedding range (`::ffff:0:0/96`,
//!   `::ffff:0:0:0/96`, `::/96`, `64:ff9b::/96`, `2002::/16`), which would
//!   let every IPv4 address through in IPv6 form; an entry inside one of
//!   them obeys the IPv4 rule for the IPv4 range it stands for
//!   (`::ffff:127.0.0.0/104` = `127.0.0.0/8` is fine);
//! - more IPv4 space than four /8s in total (counted entry by entry), so
//!   many small entries cannot add up to everything.

use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};
use platformsync_delivery::ssrf::AllowList;
use thiserror::Error;

use crate::client::{ClientConfig, ClientError};

/// Shortest IPv4 prefix an allow-list entry may have.
pub const MIN_V4_PREFIX: u8 = 8;
/// Shortest IPv6 prefix an allow-list entry may have.
pub const MIN_V6_PREFIX: u8 = 16;
/// Most IPv4 addresses an allow-list may exempt in total: four /8s.
pub const MAX_V4_ADDRESSES: u64 = 4 << 24;

/// IPv6 ranges that carry an IPv4 address, with the bit where it starts.
const EMBEDDINGS: [([u16; 8], u8); 5] = [
    ([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
    ([0, 0, 0, 0, 0xffff, 0, 0, 0], 96),
    ([0; 8], 96),
    ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
    ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
];

/// An allow-list entry that would switch the SSRF guard off.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "allow-list entry {entry} is too broad ({reason}): entries must be IPv4 /{MIN_V4_PREFIX} or longer, IPv6 /{MIN_V6_PREFIX} or longer, not a whole IPv4-in-IPv6 range, and at most four /8s of IPv4 in total"
)]
pub struct TooBroad {
    pub entry: String,
    pub reason: &'static str,
}

/// Whether this process runs on AWS Lambda.
pub fn on_lambda() -> bool {
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    set("AWS_LAMBDA_FUNCTION_NAME") && set("AWS_LAMBDA_RUNTIME_API")
}

/// Refuses extra CAs and a non-empty allow-list on Lambda.
pub fn refuse_on_lambda(config: &ClientConfig, on_lambda: bool) -> Result<(), ClientError> {
    if !on_lambda {
        return Ok(());
    }
    if config.extra_ca_pem.is_some() {
        return Err(ClientError::LocalOnlyOnLambda("PLATFORMSYNC_EXTRA_CA_FILE"));
    }
    if !config.allow.is_empty() {
        return Err(ClientError::LocalOnlyOnLambda("PLATFORMSYNC_ALLOW_CIDRS"));
    }
    Ok(())
}

/// The module's allow-list rule.
pub fn check_allow_list(allow: &AllowList) -> Result<(), TooBroad> {
    let mut v4_total: u64 = 0;
    for net in allow.nets() {
        let too_broad = |reason| TooBroad {
            entry: net.to_string(),
            reason,
        };
        let v4_prefix = match net {
            IpNet::V4(n) => n.prefix_len(),
            IpNet::V6(n) => match embedded_prefix(n) {
                Embedded::Holds => return Err(too_broad("holds a whole IPv4-in-IPv6 range")),
                Embedded::Inside(p) => p,
                Embedded::No if n.prefix_len() < MIN_V6_PREFIX => {
                    return Err(too_broad("IPv6 prefix too short"));
                }
                Embedded::No => continue,
            },
        };
        if v4_prefix < MIN_V4_PREFIX {
            return Err(too_broad("IPv4 prefix too short"));
        }
        v4_total += 1u64 << (32 - u32::from(v4_prefix));
        if v4_total > MAX_V4_ADDRESSES {
            return Err(too_broad(
                "the entries add up to more than four /8s of IPv4",
            ));
        }
    }
    Ok(())
}

enum Embedded {
    /// Holds a whole embedding range.
    Holds,
    /// Inside one: the IPv4 prefix it stands for.
    Inside(u8),
    No,
}

fn embedded_prefix(net: &Ipv6Net) -> Embedded {
    for (segments, start) in EMBEDDINGS {
        let range = Ipv6Net::new(Ipv6Addr::from(segments), start).unwrap_or_default();
        if net.contains(&range) {
            return Embedded::Holds;
        }
        if range.contains(net) {
            // 6to4 carries the IPv4 address in bits 16..48.
            let bits = if start == 16 {
                32
            } else {
                128 - u32::from(start)
            };
            let v4 = i64::from(net.prefix_len()) - i64::from(start);
            return Embedded::Inside(v4.clamp(0, i64::from(bits)) as u8);
        }
    }
    Embedded::No
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), TooBroad> {
        check_allow_list(&AllowList::parse(text).unwrap())
    }

    #[test]
    fn ranges_that_switch_the_guard_off_are_refused() {
        for bad in [
            "0.0.0.0/1,128.0.0.0/1",
            "0.0.0.0/7",
            "10.0.0.0/8,11.0.0.0/8,12.0.0.0/8,13.0.0.0/8,14.0.0.0/8",
            "::/1",
            "8000::/1",
            "::ffff:0:0/96",
            "::ffff:0.0.0.0/97",
            "64:ff9b::/96",
            "2002::/16",
            "2002::/17",
            "::/95",
            "fc00::/7",
        ] {
            assert!(check(bad).is_err(), "{bad} accepted");
        }
        let e = check("0.0.0.0/1,128.0.0.0/1").unwrap_err().to_string();
        assert!(e.contains("0.0.0.0/1") && e.contains("/8"), "{e}");
    }

    #[test]
    fn local_ranges_are_accepted() {
        for ok in [
            "",
            "127.0.0.0/8",
            "127.0.0.0/8, ::1",
            "10.1.2.0/24,192.168.0.0/16,172.16.0.0/12",
            "::ffff:127.0.0.0/104",
            "fd00:1::/32",
            "2002:7f00::/24",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn local_only_settings_are_refused_on_lambda_only() {
        let mut config = ClientConfig::default();
        assert!(
            refuse_on_lambda(&config, true).is_ok(),
            "nothing local given"
        );
        config.allow = AllowList::parse("127.0.0.0/8").unwrap();
        assert!(refuse_on_lambda(&config, false).is_ok());
        let e = refuse_on_lambda(&config, true).unwrap_err().to_string();
        assert!(e.contains("PLATFORMSYNC_ALLOW_CIDRS"), "{e}");
        config.allow = AllowList::none();
        config.extra_ca_pem = Some(b"pem".to_vec());
        let e = refuse_on_lambda(&config, true).unwrap_err().to_string();
        assert!(e.contains("PLATFORMSYNC_EXTRA_CA_FILE"), "{e}");
    }
}
