//! The TLS settings every outbound client of a process shares.
//!
//! A Lambda function talks TLS to AWS (the SDK's HTTP client) and, in push,
//! to customer endpoints (reqwest, `platformsync-http`). Both are built on
//! rustls, and both take what they trust and how they encrypt from here:
//!
//! - **One crypto provider, ring** ([`provider`]). The SDK's default client
//!   and reqwest's `rustls` feature would each link aws-lc (about 2 MB per
//!   binary, most of the 6 MB budget); ring covers every cipher suite AWS
//!   endpoints and customer endpoints negotiate (TLS 1.2 and 1.3, ECDHE with
//!   AES-GCM or ChaCha20).
//! - **One root store per process** ([`roots`]). The system's CA bundle
//!   (`SSL_CERT_FILE` / `SSL_CERT_DIR`, else the distribution's usual places,
//!   as `rustls-native-certs` finds them) is read and parsed once, the first
//!   time any client is built, instead of once per client: that read is most
//!   of a function's cold init (docs/benchmarks.md).

use base64::Engine as _;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use std::sync::{Arc, OnceLock};

/// ring, the process's one crypto provider, shared by every client.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's trusted root certificates, loaded once per process.
#[derive(Debug)]
pub struct Roots {
    store: Arc<RootCertStore>,
    /// The certificates the store accepted, PEM-encoded, for clients that
    /// take PEM (the SDK's trust store); certificates rustls cannot parse are
    /// left out here as they are in the store.
    pem: Vec<u8>,
    /// Certificates found but not usable as trust anchors.
    pub skipped: usize,
}

impl Roots {
    /// The parsed store (for a rustls `ClientConfig`); cloning the `Arc` is free.
    pub fn store(&self) -> Arc<RootCertStore> {
        self.store.clone()
    }

    /// The same certificates as PEM.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    fn load() -> Roots {
        let found = rustls_native_certs::load_native_certs();
        if !found.errors.is_empty() {
            // Unreadable files among the CA locations; what could be read is used.
            tracing::warn!(errors = ?found.errors, "some root certificates could not be loaded");
        }
        Self::from_certs(found.certs)
    }

    fn from_certs(certs: Vec<CertificateDer<'static>>) -> Roots {
        let mut store = RootCertStore::empty();
        let mut pem = Vec::with_capacity(certs.len() * 2_000);
        let mut skipped = 0;
        for cert in certs {
            if store.add(cert.clone()).is_ok() {
                push_pem(&mut pem, &cert);
            } else {
                skipped += 1;
            }
        }
        if store.is_empty() {
            tracing::warn!("no usable root certificates found (SSL_CERT_FILE / SSL_CERT_DIR)");
        }
        Roots {
            store: Arc::new(store),
            pem,
            skipped,
        }
    }
}

/// The process's root certificates: read from the system on the first call,
/// shared afterwards.
pub fn roots() -> &'static Roots {
    static ROOTS: OnceLock<Roots> = OnceLock::new();
    ROOTS.get_or_init(Roots::load)
}

fn push_pem(out: &mut Vec<u8>, der: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END CERTIFICATE-----\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn pem_round_trips_the_accepted_certificates_only() {
        let system = rustls_native_certs::load_native_certs().certs;
        let Some(good) = system.first().cloned() else {
            // No system CA store on this machine: nothing to round-trip.
            return;
        };
        let bad = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let roots = Roots::from_certs(vec![good.clone(), bad]);
        assert_eq!(roots.len(), 1);
        assert_eq!(roots.skipped, 1);
        let back: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(roots.pem())
            .collect::<Result<_, _>>()
            .expect("our PEM parses");
        assert_eq!(back, vec![good]);
    }

    #[test]
    fn roots_are_loaded_once() {
        assert!(std::ptr::eq(roots(), roots()));
        assert!(Arc::ptr_eq(&roots().store(), &roots().store()));
    }
}

#[cfg(test)]
mod timing {
    /// Where the root store's load time goes (run with
    /// `cargo test --profile bench -p platformsync-tls -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn load_phases() {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let t = std::time::Instant::now();
        let bytes = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap();
        let read = t.elapsed();
        let t = std::time::Instant::now();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .unwrap();
        let decode = t.elapsed();
        let t = std::time::Instant::now();
        let mut store = rustls::RootCertStore::empty();
        for c in certs.clone() {
            let _ = store.add(c);
        }
        let parse = t.elapsed();
        let t = std::time::Instant::now();
        let mut pem = Vec::new();
        for c in &certs {
            super::push_pem(&mut pem, c);
        }
        let encode = t.elapsed();
        let t = std::time::Instant::now();
        let n = rustls_native_certs::load_native_certs().certs.len();
        let native = t.elapsed();
        eprintln!(
            "certs {} read {read:?} decode {decode:?} parse {parse:?} encode {encode:?} native({n}) {native:?}",
            certs.len()
        );
    }
}
