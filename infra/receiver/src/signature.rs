//! Signed pushes: what a customer does with PlatformSync's Standard Webhooks
//! headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
//!
//! Verified with the published `standardwebhooks` crate, not PlatformSync's
//! own signing code, exactly as a customer would: the signature is over the
//! raw body as received (before any JSON parsing), the timestamp must be
//! within 5 minutes of now, and during a rotation either secret the
//! receiver holds may match (the sender signs with both for a grace period).

use std::fmt;
use std::sync::Arc;

use hyper::HeaderMap;
use serde::{Deserialize, Serialize};
use standardwebhooks::Webhook;

/// The signing secrets (`whsec_...`) a receiver accepts.
#[derive(Clone)]
pub struct SignatureCheck {
    webhooks: Arc<Vec<Webhook>>,
}

/// What the signature check said about one push (in the request log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    Verified,
    Failed,
}

impl SignatureCheck {
    /// One check accepting any of `secrets` (`whsec_<base64>`). The error
    /// says which one is unusable by position, never its value.
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Result<Self, String> {
        if secrets.is_empty() {
            return Err("no signing secret given".into());
        }
        let webhooks = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Webhook::new(s.as_ref().trim())
                    .map_err(|_| format!("signing secret #{} is not a whsec_ secret", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            webhooks: Arc::new(webhooks),
        })
    }

    /// Reads secrets separated by whitespace or commas (an environment
    /// variable or a file with one per line).
    pub fn parse_list(text: &str) -> Result<Self, String> {
        let secrets: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .collect();
        Self::new(&secrets)
    }

    pub fn verify(&self, body: &[u8], headers: &HeaderMap) -> Signature {
        if self
            .webhooks
            .iter()
            .any(|w| w.verify(body, headers).is_ok())
        {
            Signature::Verified
        } else {
            Signature::Failed
        }
    }
}

impl fmt::Debug for SignatureCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SignatureCheck({} secret(s), redacted)",
            self.webhooks.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks / svix documentation's example secret.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OTHER: &str = "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBvZiAzMiBieXRlcw==";

    fn headers(secret: &str, body: &[u8], age: i64) -> HeaderMap {
        let ts = time::OffsetDateTime::now_utc().unix_timestamp() - age;
        let signature = Webhook::new(secret).unwrap().sign("m-1", ts, body).unwrap();
        let mut h = HeaderMap::new();
        h.insert("webhook-id", "m-1".parse().unwrap());
        h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        h.insert("webhook-signature", signature.parse().unwrap());
        h
    }

    #[test]
    fn either_secret_verifies_and_anything_else_fails() {
        let check = SignatureCheck::parse_list(&format!("{SECRET}, {OTHER}\n")).unwrap();
        let body = br#"{"Metadata":{}}"#;
        assert_eq!(
            check.verify(body, &headers(SECRET, body, 0)),
            Signature::Verified
        );
        assert_eq!(
            check.verify(body, &headers(OTHER, body, 0)),
            Signature::Verified
        );
        assert_eq!(
            check.verify(b"{}", &headers(SECRET, body, 0)),
            Signature::Failed
        );
        assert_eq!(
            check.verify(body, &headers(SECRET, body, 600)),
            Signature::Failed
        );
        assert_eq!(check.verify(body, &HeaderMap::new()), Signature::Failed);
        let only_other = SignatureCheck::new(&[OTHER]).unwrap();
        assert_eq!(
            only_other.verify(body, &headers(SECRET, body, 0)),
            Signature::Failed
        );
    }

    #[test]
    fn bad_secrets_are_refused_without_showing_them() {
        let err = SignatureCheck::new(&[SECRET, "whsec_%%%"]).unwrap_err();
        assert_eq!(err, "signing secret #2 is not a whsec_ secret");
        assert!(SignatureCheck::parse_list(" ,\n").is_err());
        let shown = format!("{:?}", SignatureCheck::new(&[SECRET]).unwrap());
        assert!(!shown.contains("MfKQ"), "{shown}");
    }
}
