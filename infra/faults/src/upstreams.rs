//! Where the proxy forwards each service: a default upstream and, per
//! service, an upstream of its own, read the way the AWS SDKs read their
//! endpoints (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`).
//!
//! The LocalStack pair is why: LocalStack serves SQS, SNS, Secrets Manager
//! and CloudWatch (`AWS_ENDPOINT_URL`) while moto serves DynamoDB and its
//! stream (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_DYNAMODB_STREAMS`).
//! Clients send every service to the one proxy; the proxy sends each on to
//! where the SDK would have sent it without the proxy.

use std::collections::BTreeMap;

use crate::FaultError;
use crate::classify::canonical_service;

/// The per-service variables the Rust AWS SDK reads (`AWS_ENDPOINT_URL_` +
/// the service id in upper snake case), with the canonical service name
/// ([`canonical_service`]) the proxy classifies those calls as.
pub const SERVICE_ENDPOINT_VARS: &[(&str, &str)] = &[
    ("AWS_ENDPOINT_URL_DYNAMODB", "dynamodb"),
    ("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", "streams.dynamodb"),
    ("AWS_ENDPOINT_URL_SQS", "sqs"),
    ("AWS_ENDPOINT_URL_SNS", "sns"),
    ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "secretsmanager"),
    ("AWS_ENDPOINT_URL_CLOUDWATCH", "monitoring"),
];

/// The services of [`SERVICE_ENDPOINT_VARS`], for tests that go through
/// every service the proxy routes by name.
#[cfg(test)]
pub(crate) fn services() -> impl Iterator<Item = &'static str> {
    SERVICE_ENDPOINT_VARS.iter().map(|(_, service)| *service)
}

/// The default upstream and the services routed elsewhere. URLs are checked
/// when the proxy starts ([`crate::FaultProxy::start_routed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstreams {
    default: String,
    services: BTreeMap<String, String>,
}

impl Upstreams {
    /// Every service to `default` (`http://127.0.0.1:4566`).
    pub fn new(default: impl Into<String>) -> Self {
        Self {
            default: default.into().trim().to_owned(),
            services: BTreeMap::new(),
        }
    }

    /// `AWS_ENDPOINT_URL` as the default, and each `AWS_ENDPOINT_URL_<SERVICE>`
    /// of [`SERVICE_ENDPOINT_VARS`] that is set as that service's upstream:
    /// where the SDK would send each service from this environment.
    pub fn from_env() -> Result<Self, FaultError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Upstreams::from_env`] with the variables looked up by `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, FaultError> {
        let default = var("AWS_ENDPOINT_URL")
            .filter(|v| !v.trim().is_empty())
            .ok_or(FaultError::NoUpstream)?;
        Ok(Self::new(default).with_service_vars(var))
    }

    /// Adds a route for each per-service variable `var` knows, keeping the
    /// default (for a default given on a command line).
    pub fn with_service_vars(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        for (name, service) in SERVICE_ENDPOINT_VARS {
            if let Some(url) = var(name).filter(|v| !v.trim().is_empty()) {
                self = self.route(service, url);
            }
        }
        self
    }

    /// Sends `service` (`dynamodb`, `streams.dynamodb`, `sqs`, ...; aliases
    /// as [`canonical_service`] takes them) to `url`.
    pub fn route(mut self, service: &str, url: impl Into<String>) -> Self {
        self.services
            .insert(canonical_service(service), url.into().trim().to_owned());
        self
    }

    /// The upstream of services without a route of their own.
    pub fn default_url(&self) -> &str {
        &self.default
    }

    /// Where calls of `service` go.
    pub fn url_for(&self, service: &str) -> &str {
        self.services
            .get(&canonical_service(service))
            .map_or(&self.default, String::as_str)
    }

    /// The services with a route of their own, and their upstreams.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.services.iter().map(|(s, u)| (s.as_str(), u.as_str()))
    }
}

impl From<&str> for Upstreams {
    fn from(default: &str) -> Self {
        Self::new(default)
    }
}

impl std::fmt::Display for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.default)?;
        for (service, url) in self.routes() {
            write!(f, ", {service} -> {url}")?;
        }
        Ok(())
    }
}

/// Whether `url`'s host is this machine's loopback: tests check every
/// endpoint they are given with it, so they can never reach a real account.
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or_default();
    // An IPv6 host is bracketed and holds colons of its own.
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => rest.split(['/', ':']).next().unwrap_or_default(),
    };
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn only_loopback_hosts_are_local() {
        assert!(super::is_loopback_url("http://127.0.0.1:4566"));
        assert!(super::is_loopback_url("http://localhost/x"));
        assert!(super::is_loopback_url("http://[::1]:1"));
        assert!(!super::is_loopback_url(
            "https://dynamodb.us-east-1.amazonaws.com"
        ));
        assert!(!super::is_loopback_url(""));
    }

    #[test]
    fn the_pair_routes_dynamodb_and_its_stream_to_moto() {
        let up = Upstreams::from_vars(vars(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL_SQS", ""),
        ]))
        .unwrap();
        assert_eq!(up.url_for("dynamodb"), "http://127.0.0.1:5000");
        assert_eq!(up.url_for("streams.dynamodb"), "http://127.0.0.1:5000");
        assert_eq!(up.url_for("dynamodbstreams"), "http://127.0.0.1:5000");
        assert_eq!(up.url_for("sqs"), "http://127.0.0.1:4566", "empty = unset");
        assert_eq!(up.url_for("sns"), "http://127.0.0.1:4566");
        assert_eq!(up.url_for("unknown"), "http://127.0.0.1:4566");
        assert_eq!(up.routes().count(), 2);
    }

    #[test]
    fn every_sdk_variable_names_its_service() {
        let pairs: Vec<(&str, &str)> = SERVICE_ENDPOINT_VARS
            .iter()
            .map(|(name, _)| (*name, "http://127.0.0.1:1"))
            .chain([("AWS_ENDPOINT_URL", "http://127.0.0.1:2")])
            .collect();
        let up = Upstreams::from_vars(vars(&pairs)).unwrap();
        // CloudWatch is also known by its alias.
        for service in services().chain(["cloudwatch"]) {
            assert_eq!(up.url_for(service), "http://127.0.0.1:1", "{service}");
        }
        assert_eq!(up.url_for("sts"), "http://127.0.0.1:2");
    }

    #[test]
    fn without_a_default_there_is_nothing_to_forward_to() {
        assert!(matches!(
            Upstreams::from_vars(vars(&[("AWS_ENDPOINT_URL_DYNAMODB", "http://x:1")])),
            Err(FaultError::NoUpstream)
        ));
    }
}
