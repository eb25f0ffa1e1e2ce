//! Which addresses a customer endpoint may point at (server-side request forgery).
//!
//! Customers register their own URLs and we POST to them from inside AWS. Without
//! a guard, a URL (or a DNS name that later re-resolves) pointing at
//! `169.254.169.254`, `127.0.0.1` or a VPC address would let anyone with an
//! endpoint make PlatformSync read cloud credentials or poke internal services.
//!
//! The policy: an endpoint address must be public unicast. [`check_ip`] refuses
//! every special-purpose range, naming it, and looks *inside* IPv6 forms that
//! carry an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4), because
//! `::ffff:127.0.0.1` reaches 127.0.0.1 on a dual-stack host. An [`AllowList`] of
//! CIDRs overrides the refusal; it exists for local runs (a test receiver on
//! 127.0.0.1) and must stay empty in production.
//!
//! The check must be applied to *every address actually connected to*: the HTTP
//! client does it in its DNS resolver (so DNS rebinding cannot slip through) and,
//! for URLs whose host is a literal IP, before sending ([`vet_url`]).
//!
//! [`check_url`] is the syntactic half: WHATWG parsing (which canonicalises
//! `0x7f.1`, `2130706433`, `017700000001` and `127.1` to `127.0.0.1`, exactly as
//! the HTTP client will), HTTPS only, no credentials in the URL.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use thiserror::Error;
use url::{Host, Url};

/// Kind of special-purpose range an address was refused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockedRange {
    /// The cloud instance metadata service (IPv4 169.254.169.254, AWS IPv6 fd00:ec2::254).
    InstanceMetadata,
    Unspecified,
    Loopback,
    Private,
    LinkLocal,
    SharedAddressSpace,
    Multicast,
    Reserved,
    Broadcast,
    Benchmarking,
    IetfProtocol,
    Documentation,
    SixToFourRelay,
    UniqueLocal,
    SiteLocal,
    Teredo,
    LocalNat64,
    DiscardOnly,
    Orchid,
    /// IPv6 outside 2000::/3, the only block IANA allocates for global unicast.
    NotGlobalUnicast,
}

impl fmt::Display for BlockedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockedRange::InstanceMetadata => "instance metadata service",
            BlockedRange::Unspecified => "unspecified (\"this network\")",
            BlockedRange::Loopback => "loopback",
            BlockedRange::Private => "private",
            BlockedRange::LinkLocal => "link-local",
            BlockedRange::SharedAddressSpace => "carrier-grade NAT shared address space",
            BlockedRange::Multicast => "multicast",
            BlockedRange::Reserved => "reserved",
            BlockedRange::Broadcast => "broadcast",
            BlockedRange::Benchmarking => "benchmarking",
            BlockedRange::IetfProtocol => "IETF protocol assignments",
            BlockedRange::Documentation => "documentation",
            BlockedRange::SixToFourRelay => "6to4 relay anycast",
            BlockedRange::UniqueLocal => "unique-local",
            BlockedRange::SiteLocal => "site-local",
            BlockedRange::Teredo => "Teredo tunnelling",
            BlockedRange::LocalNat64 => "local-use NAT64",
            BlockedRange::DiscardOnly => "discard-only",
            BlockedRange::Orchid => "ORCHID",
            BlockedRange::NotGlobalUnicast => "non-global-unicast",
        })
    }
}

/// How an IPv6 address carries the IPv4 address that was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Embedding {
    /// `::ffff:0:0/96`
    Ipv4Mapped,
    /// `::ffff:0:0:0/96` (SIIT, RFC 2765)
    Ipv4Translated,
    /// `::/96` (deprecated)
    Ipv4Compatible,
    /// `64:ff9b::/96`
    Nat64,
    /// `2002::/16`
    SixToFour,
}

impl Embedding {
    fn cidr(self) -> Ipv6Net {
        match self {
            Embedding::Ipv4Mapped => V6_MAPPED,
            Embedding::Ipv4Translated => V6_TRANSLATED,
            Embedding::Ipv4Compatible => V6_COMPATIBLE,
            Embedding::Nat64 => V6_NAT64,
            Embedding::SixToFour => V6_6TO4,
        }
    }
}

impl fmt::Display for Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Embedding::Ipv4Mapped => "IPv4-mapped",
            Embedding::Ipv4Translated => "IPv4-translated",
            Embedding::Ipv4Compatible => "IPv4-compatible",
            Embedding::Nat64 => "NAT64",
            Embedding::SixToFour => "6to4",
        };
        write!(f, "{name} {}", self.cidr())
    }
}

/// An address the endpoint must not reach, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Forbidden {
    /// The address as resolved or written.
    pub ip: IpAddr,
    /// The kind of range it is in.
    pub range: BlockedRange,
    /// The exact range (for an embedded IPv4, the IPv4 range).
    pub cidr: IpNet,
    /// Set when `ip` is IPv6 and the refused address is the IPv4 inside it.
    pub embedded: Option<(Embedding, Ipv4Addr)>,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            Some((how, v4)) => write!(
                f,
                "{} embeds IPv4 {v4} ({how}), which is in the {} range {}",
                self.ip, self.range, self.cidr
            ),
            None => write!(
                f,
                "{} is in the {} range {}",
                self.ip, self.range, self.cidr
            ),
        }
    }
}

impl std::error::Error for Forbidden {}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn v6(s: [u16; 8], prefix: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        prefix,
    )
}

/// IPv4 refusals; the first match names the range, so specific entries come first.
const V4_RULES: &[(Ipv4Net, BlockedRange)] = &[
    (v4(255, 255, 255, 255, 32), BlockedRange::Broadcast),
    (v4(169, 254, 169, 254, 32), BlockedRange::InstanceMetadata),
    (v4(0, 0, 0, 0, 8), BlockedRange::Unspecified),
    (v4(127, 0, 0, 0, 8), BlockedRange::Loopback),
    (v4(10, 0, 0, 0, 8), BlockedRange::Private),
    (v4(172, 16, 0, 0, 12), BlockedRange::Private),
    (v4(192, 168, 0, 0, 16), BlockedRange::Private),
    (v4(169, 254, 0, 0, 16), BlockedRange::LinkLocal),
    (v4(100, 64, 0, 0, 10), BlockedRange::SharedAddressSpace),
    (v4(192, 0, 0, 0, 24), BlockedRange::IetfProtocol),
    (v4(192, 0, 2, 0, 24), BlockedRange::Documentation),
    (v4(198, 51, 100, 0, 24), BlockedRange::Documentation),
    (v4(203, 0, 113, 0, 24), BlockedRange::Documentation),
    (v4(198, 18, 0, 0, 15), BlockedRange::Benchmarking),
    (v4(192, 88, 99, 0, 24), BlockedRange::SixToFourRelay),
    (v4(224, 0, 0, 0, 4), BlockedRange::Multicast),
    (v4(240, 0, 0, 0, 4), BlockedRange::Reserved),
];

const V6_MAPPED: Ipv6Net = v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96);
const V6_TRANSLATED: Ipv6Net = v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96);
const V6_COMPATIBLE: Ipv6Net = v6([0; 8], 96);
const V6_NAT64: Ipv6Net = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
const V6_6TO4: Ipv6Net = v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);
const V6_GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// IPv6 refusals checked before the embedded-IPv4 forms and the 2000::/3 rule.
#[rustfmt::skip] // A table: one range a row.
const V6_RULES_FIRST: &[(Ipv6Net, BlockedRange)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), BlockedRange::Unspecified),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), BlockedRange::Loopback),
    (v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128), BlockedRange::InstanceMetadata),
];

/// IPv6 refusals for ranges that embed no IPv4 worth checking.
#[rustfmt::skip] // A table: one range a row.
const V6_RULES: &[(Ipv6Net, BlockedRange)] = &[
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), BlockedRange::LocalNat64),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), BlockedRange::DiscardOnly),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), BlockedRange::Documentation),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), BlockedRange::Documentation),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), BlockedRange::Teredo),
    (v6([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48), BlockedRange::Benchmarking),
    (v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28), BlockedRange::Orchid),
    (v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28), BlockedRange::Orchid),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), BlockedRange::IetfProtocol),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), BlockedRange::UniqueLocal),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), BlockedRange::LinkLocal),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), BlockedRange::SiteLocal),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), BlockedRange::Multicast),
];

/// Refuse any address that is not public unicast (no allow-list applied).
pub fn check_ip(ip: IpAddr) -> Result<(), Forbidden> {
    match ip {
        IpAddr::V4(v4) => check_v4(v4).map_err(|(range, cidr)| Forbidden {
            ip,
            range,
            cidr: IpNet::V4(cidr),
            embedded: None,
        }),
        IpAddr::V6(v6) => check_v6(v6),
    }
}

fn check_v4(ip: Ipv4Addr) -> Result<(), (BlockedRange, Ipv4Net)> {
    match V4_RULES.iter().find(|(net, _)| net.contains(&ip)) {
        Some(&(net, range)) => Err((range, net)),
        None => Ok(()),
    }
}

fn check_v6(ip: Ipv6Addr) -> Result<(), Forbidden> {
    let refuse = |range, cidr: Ipv6Net| Forbidden {
        ip: IpAddr::V6(ip),
        range,
        cidr: IpNet::V6(cidr),
        embedded: None,
    };
    if let Some(&(net, range)) = V6_RULES_FIRST.iter().find(|(net, _)| net.contains(&ip)) {
        return Err(refuse(range, net));
    }
    if let Some((how, inner)) = embedded_v4(ip) {
        return check_v4(inner).map_err(|(range, cidr)| Forbidden {
            ip: IpAddr::V6(ip),
            range,
            cidr: IpNet::V4(cidr),
            embedded: Some((how, inner)),
        });
    }
    if let Some(&(net, range)) = V6_RULES.iter().find(|(net, _)| net.contains(&ip)) {
        return Err(refuse(range, net));
    }
    if !V6_GLOBAL_UNICAST.contains(&ip) {
        return Err(refuse(BlockedRange::NotGlobalUnicast, V6_GLOBAL_UNICAST));
    }
    Ok(())
}

/// The IPv4 address an IPv6 address stands for, if it is one of the forms that
/// routes to (or through) an IPv4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<(Embedding, Ipv4Addr)> {
    let bits = u128::from(ip);
    // Truncation to the low 32 bits is the point: that is where these forms
    // keep the IPv4 address.
    let low = Ipv4Addr::from(bits as u32);
    [
        Embedding::Ipv4Mapped,
        Embedding::Ipv4Translated,
        Embedding::Nat64,
        Embedding::Ipv4Compatible,
    ]
    .into_iter()
    .find(|how| how.cidr().contains(&ip))
    .map(|how| (how, low))
    .or_else(|| {
        // 2002:AABB:CCDD::/48 carries AA.BB.CC.DD in bits 16..48.
        V6_6TO4
            .contains(&ip)
            .then(|| (Embedding::SixToFour, Ipv4Addr::from((bits >> 80) as u32)))
    })
}

/// CIDRs that may be reached although [`check_ip`] refuses them. For local runs
/// only (e.g. `127.0.0.0/8` for a test receiver); empty in production.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    nets: Vec<IpNet>,
}

/// Why an allow-list string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AllowListError {
    #[error(
        "allow-list entry {position} ({entry:?}) is not a CIDR like 127.0.0.0/8 or an IP address"
    )]
    Invalid { position: usize, entry: String },
    #[error(
        "allow-list entry {position} ({entry:?}) covers every address and would disable the SSRF guard"
    )]
    Everything { position: usize, entry: String },
}

impl AllowList {
    /// The production allow-list: nothing.
    pub fn none() -> Self {
        AllowList::default()
    }

    /// Build from CIDRs.
    pub fn new(nets: Vec<IpNet>) -> Self {
        AllowList { nets }
    }

    /// Parse a comma-separated list of CIDRs or bare addresses
    /// (`"127.0.0.0/8, ::1"`); empty entries are ignored, so `""` is the empty list.
    /// Entries are numbered from 1 in errors.
    pub fn parse(text: &str) -> Result<Self, AllowListError> {
        let mut nets = Vec::new();
        for (index, entry) in text.split(',').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let position = index + 1;
            let net = IpNet::from_str(entry)
                .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                .map_err(|_| AllowListError::Invalid {
                    position,
                    entry: entry.to_owned(),
                })?;
            if net.prefix_len() == 0 {
                return Err(AllowListError::Everything {
                    position,
                    entry: entry.to_owned(),
                });
            }
            nets.push(net.trunc());
        }
        Ok(AllowList { nets })
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether `ip` is explicitly allowed. An IPv4-mapped IPv6 address counts
    /// as its IPv4 address, since that is what it reaches.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        self.nets
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
    }

    /// [`check_ip`], unless the allow-list covers `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Forbidden> {
        if self.contains(ip) {
            Ok(())
        } else {
            check_ip(ip)
        }
    }
}

impl FromStr for AllowList {
    type Err = AllowListError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AllowList::parse(s)
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// Why an endpoint URL is unacceptable. Never echoes the URL itself: a query
/// string may hold a key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlError {
    #[error("endpoint URL does not parse: {0}")]
    Parse(#[from] url::ParseError),
    #[error("endpoint URL must use https, not {scheme:?}")]
    NotHttps { scheme: String },
    #[error(
        "endpoint URL must not contain a user name or password (they end up in logs); send credentials as the API key"
    )]
    Credentials,
    #[error("endpoint URL has no host")]
    NoHost,
    #[error("endpoint address refused: {0}")]
    Forbidden(#[from] Forbidden),
}

/// The host part of an endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointHost {
    /// A DNS name: every address it resolves to must be vetted at connect time.
    Domain(String),
    /// A literal address (canonical form): vetted before sending, since no DNS
    /// lookup happens.
    Ip(IpAddr),
}

impl fmt::Display for EndpointHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointHost::Domain(name) => f.write_str(name),
            EndpointHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            EndpointHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A syntactically acceptable endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    url: Url,
    host: EndpointHost,
    port: u16,
}

impl EndpointUrl {
    /// The canonical URL (WHATWG serialisation).
    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn into_url(self) -> Url {
        self.url
    }

    pub fn host(&self) -> &EndpointHost {
        &self.host
    }

    /// Explicit port, or 443.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_ip_literal(&self) -> bool {
        matches!(self.host, EndpointHost::Ip(_))
    }

    pub fn literal_ip(&self) -> Option<IpAddr> {
        match self.host {
            EndpointHost::Ip(ip) => Some(ip),
            EndpointHost::Domain(_) => None,
        }
    }

    /// `https://host:port/path`: safe to log (no query, no fragment).
    pub fn redacted(&self) -> String {
        format!("https://{}:{}{}", self.host, self.port, self.url.path())
    }
}

/// Parse and check an endpoint URL's form: https, a host, no credentials.
/// Does not vet the address: see [`vet_url`].
pub fn check_url(url: &str) -> Result<EndpointUrl, UrlError> {
    let url = Url::parse(url.trim())?;
    if url.scheme() != "https" {
        return Err(UrlError::NotHttps {
            scheme: url.scheme().to_owned(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let host = match url.host() {
        Some(Host::Domain(name)) if !name.is_empty() => {
            EndpointHost::Domain(name.to_ascii_lowercase())
        }
        Some(Host::Domain(_)) | None => return Err(UrlError::NoHost),
        Some(Host::Ipv4(ip)) => EndpointHost::Ip(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => EndpointHost::Ip(IpAddr::V6(ip)),
    };
    let port = url.port_or_known_default().unwrap_or(443);
    Ok(EndpointUrl { url, host, port })
}

/// [`check_url`], then refuse a literal-IP host that `allow` does not cover.
/// Domain names pass here; their addresses are vetted when resolved.
pub fn vet_url(url: &str, allow: &AllowList) -> Result<EndpointUrl, UrlError> {
    let endpoint = check_url(url)?;
    if let Some(ip) = endpoint.literal_ip() {
        allow.check(ip)?;
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn refused(url: &str) -> Forbidden {
        match vet_url(url, &AllowList::none()) {
            Err(UrlError::Forbidden(f)) => f,
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn rule_tables_name_network_addresses() {
        for (net, _) in V4_RULES {
            assert_eq!(*net, net.trunc(), "{net} has host bits");
        }
        for (net, _) in V6_RULES.iter().chain(V6_RULES_FIRST) {
            assert_eq!(*net, net.trunc(), "{net} has host bits");
        }
    }

    #[test]
    fn obfuscated_loopback_forms_are_canonicalised_then_refused() {
        for url in [
            "https://0x7f.1/",
            "https://2130706433/",
            "https://017700000001/",
            "https://127.1/",
            "https://0x7f000001/",
            "https://127.0.0.1:8443/x",
        ] {
            let endpoint = check_url(url).unwrap();
            assert_eq!(endpoint.literal_ip(), Some(ip("127.0.0.1")), "{url}");
            let f = refused(url);
            assert_eq!(f.range, BlockedRange::Loopback, "{url}");
            assert_eq!(f.cidr.to_string(), "127.0.0.0/8");
        }
    }

    #[test]
    fn refused_urls_name_their_range() {
        #[rustfmt::skip] // A table: one case a row.
        let cases: &[(&str, BlockedRange, &str)] = &[
            ("https://[::ffff:127.0.0.1]/", BlockedRange::Loopback, "127.0.0.0/8"),
            ("https://169.254.169.254/latest/meta-data", BlockedRange::InstanceMetadata, "169.254.169.254/32"),
            ("https://169.254.1.1/", BlockedRange::LinkLocal, "169.254.0.0/16"),
            ("https://[fd00::1]/", BlockedRange::UniqueLocal, "fc00::/7"),
            ("https://100.64.0.1/", BlockedRange::SharedAddressSpace, "100.64.0.0/10"),
            ("https://[::1]/", BlockedRange::Loopback, "::1/128"),
            ("https://10.0.0.1/", BlockedRange::Private, "10.0.0.0/8"),
            ("https://172.31.255.1/", BlockedRange::Private, "172.16.0.0/12"),
            ("https://192.168.1.1/", BlockedRange::Private, "192.168.0.0/16"),
            ("https://[fe80::1]/", BlockedRange::LinkLocal, "fe80::/10"),
            ("https://0.0.0.0/", BlockedRange::Unspecified, "0.0.0.0/8"),
            ("https://[::]/", BlockedRange::Unspecified, "::/128"),
            ("https://[64:ff9b::7f00:1]/", BlockedRange::Loopback, "127.0.0.0/8"),
            ("https://[2002:7f00:1::]/", BlockedRange::Loopback, "127.0.0.0/8"),
            ("https://[::7f00:1]/", BlockedRange::Loopback, "127.0.0.0/8"),
            ("https://[::ffff:0:a00:1]/", BlockedRange::Private, "10.0.0.0/8"),
            ("https://[::ffff:169.254.169.254]/", BlockedRange::InstanceMetadata, "169.254.169.254/32"),
            ("https://[fd00:ec2::254]/", BlockedRange::InstanceMetadata, "fd00:ec2::254/128"),
            ("https://224.0.0.1/", BlockedRange::Multicast, "224.0.0.0/4"),
            ("https://[ff02::1]/", BlockedRange::Multicast, "ff00::/8"),
            ("https://240.0.0.1/", BlockedRange::Reserved, "240.0.0.0/4"),
            ("https://255.255.255.255/", BlockedRange::Broadcast, "255.255.255.255/32"),
            ("https://198.19.0.1/", BlockedRange::Benchmarking, "198.18.0.0/15"),
            ("https://192.0.0.8/", BlockedRange::IetfProtocol, "192.0.0.0/24"),
            ("https://192.0.2.1/", BlockedRange::Documentation, "192.0.2.0/24"),
            ("https://198.51.100.1/", BlockedRange::Documentation, "198.51.100.0/24"),
            ("https://203.0.113.1/", BlockedRange::Documentation, "203.0.113.0/24"),
            ("https://[2001:db8::1]/", BlockedRange::Documentation, "2001:db8::/32"),
            ("https://[2001:0:4136:e378::1]/", BlockedRange::Teredo, "2001::/32"),
            ("https://[fec0::1]/", BlockedRange::SiteLocal, "fec0::/10"),
            ("https://[64:ff9b:1::1]/", BlockedRange::LocalNat64, "64:ff9b:1::/48"),
            ("https://[100::1]/", BlockedRange::DiscardOnly, "100::/64"),
            ("https://[4000::1]/", BlockedRange::NotGlobalUnicast, "2000::/3"),
        ];
        for &(url, range, cidr) in cases {
            let f = refused(url);
            assert_eq!(
                (f.range, f.cidr.to_string().as_str()),
                (range, cidr),
                "{url}"
            );
        }
    }

    #[test]
    fn refusal_messages_are_readable() {
        let f = refused("https://169.254.169.254/latest/meta-data");
        assert_eq!(
            f.to_string(),
            "169.254.169.254 is in the instance metadata service range 169.254.169.254/32"
        );
        let f = refused("https://[64:ff9b::7f00:1]/");
        assert_eq!(
            f.to_string(),
            "64:ff9b::7f00:1 embeds IPv4 127.0.0.1 (NAT64 64:ff9b::/96), which is in the loopback range 127.0.0.0/8"
        );
        assert_eq!(
            f.embedded,
            Some((Embedding::Nat64, Ipv4Addr::new(127, 0, 0, 1)))
        );
    }

    #[test]
    fn public_addresses_pass() {
        for url in [
            "https://93.184.215.14/",
            "https://[2606:4700::1111]/",
            "https://1.1.1.1:8443/hook",
            "https://[::ffff:93.184.215.14]/",
            "https://[64:ff9b::5db8:d70e]/",
            "https://[2002:5db8:d70e::1]/",
            "https://172.32.0.1/",
            "https://100.128.0.1/",
            "https://example.com/push",
        ] {
            assert!(vet_url(url, &AllowList::none()).is_ok(), "{url}");
        }
    }

    #[test]
    fn form_errors() {
        assert_eq!(
            check_url("http://example.com/"),
            Err(UrlError::NotHttps {
                scheme: "http".into()
            })
        );
        assert_eq!(
            check_url("https://user:pw@example.com/"),
            Err(UrlError::Credentials)
        );
        assert_eq!(
            check_url("https://user@example.com/"),
            Err(UrlError::Credentials)
        );
        assert_eq!(
            check_url("https://:pw@example.com/"),
            Err(UrlError::Credentials)
        );
        assert!(matches!(check_url("not a url"), Err(UrlError::Parse(_))));
        assert!(matches!(check_url("https://"), Err(UrlError::Parse(_))));
        assert!(matches!(
            check_url("ftp://example.com/"),
            Err(UrlError::NotHttps { .. })
        ));
        // A secret in the URL is never echoed back.
        let err = check_url("http://example.com/?apikey=SECRET123").unwrap_err();
        assert!(!err.to_string().contains("SECRET123"));
        let err = check_url("https://user:SECRET123@example.com/").unwrap_err();
        assert!(!err.to_string().contains("SECRET123"));
    }

    #[test]
    fn endpoint_url_parts() {
        let e = check_url("https://Example.COM/hook?x=1").unwrap();
        assert_eq!(e.host(), &EndpointHost::Domain("example.com".into()));
        assert_eq!(e.port(), 443);
        assert!(!e.is_ip_literal());
        assert_eq!(e.redacted(), "https://example.com:443/hook");
        let e = check_url("https://[2606:4700::1111]:8443/a/b?k=SECRET").unwrap();
        assert_eq!(e.literal_ip(), Some(ip("2606:4700::1111")));
        assert_eq!(e.port(), 8443);
        assert_eq!(e.redacted(), "https://[2606:4700::1111]:8443/a/b");
    }

    #[test]
    fn allow_list_overrides_refusals() {
        let allow = AllowList::parse("127.0.0.0/8").unwrap();
        for url in [
            "https://127.0.0.1:8443/",
            "https://0x7f.1/",
            "https://[::ffff:127.0.0.1]/",
        ] {
            assert!(vet_url(url, &allow).is_ok(), "{url}");
        }
        // Only what it covers.
        assert!(matches!(
            vet_url("https://[::1]/", &allow),
            Err(UrlError::Forbidden(_))
        ));
        assert!(matches!(
            vet_url("https://10.0.0.1/", &allow),
            Err(UrlError::Forbidden(_))
        ));
        // Form errors still apply.
        assert!(matches!(
            vet_url("http://127.0.0.1/", &allow),
            Err(UrlError::NotHttps { .. })
        ));
    }

    #[test]
    fn allow_list_parsing() {
        let allow = AllowList::parse(" 127.0.0.0/8 , ::1, 10.1.2.3/16,,").unwrap();
        assert_eq!(allow.to_string(), "127.0.0.0/8,::1/128,10.1.0.0/16");
        assert!(allow.contains(ip("10.1.200.7")));
        assert!(allow.contains(ip("::1")));
        assert!(!allow.contains(ip("10.2.0.1")));
        assert!(AllowList::parse("").unwrap().is_empty());
        assert_eq!(
            AllowList::parse("127.0.0.0/8, localhost"),
            Err(AllowListError::Invalid {
                position: 2,
                entry: "localhost".into()
            })
        );
        assert_eq!(
            AllowList::parse("10.0.0.0/33"),
            Err(AllowListError::Invalid {
                position: 1,
                entry: "10.0.0.0/33".into()
            })
        );
        assert!(matches!(
            AllowList::parse("0.0.0.0/0"),
            Err(AllowListError::Everything { .. })
        ));
        assert!(matches!(
            AllowList::parse("::/0"),
            Err(AllowListError::Everything { .. })
        ));
        let msg = AllowList::parse("1.2.3.4, nope").unwrap_err().to_string();
        assert!(msg.contains("entry 2") && msg.contains("nope"), "{msg}");
    }

    #[test]
    fn check_ip_directly() {
        assert!(check_ip(ip("8.8.8.8")).is_ok());
        assert!(check_ip(ip("2600::1")).is_ok());
        for (addr, range) in [
            ("127.255.255.255", BlockedRange::Loopback),
            ("::ffff:0.0.0.0", BlockedRange::Unspecified),
            ("fd00:ec2::253", BlockedRange::UniqueLocal),
            ("2001:2::1", BlockedRange::Benchmarking),
            ("2001:1::1", BlockedRange::IetfProtocol),
            ("192.88.99.1", BlockedRange::SixToFourRelay),
        ] {
            assert_eq!(check_ip(ip(addr)).unwrap_err().range, range, "{addr}");
        }
    }
}
