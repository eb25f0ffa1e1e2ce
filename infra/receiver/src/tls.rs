//! The receiver's certificate: a private CA made on first start, and a server
//! certificate for `localhost`, `127.0.0.1` and `::1` signed by it.
//!
//! With a state directory, `ca.pem`, `server.pem` and `server-key.pem` are
//! written there and reused on the next start, so a client that trusts
//! `ca.pem` keeps trusting a restarted receiver. The CA's private key is never
//! written anywhere: once the server certificate is signed it is dropped, so
//! nothing else can ever be issued under this CA.
//!
//! This is the one local CA of the repository: the test receivers
//! (`tests/support/receiver.rs`, `shared/http/tests/https.rs`) serve
//! [`generate`]'s certificate through [`server_config`] too.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::ReceiverError;

/// PEM texts of the CA certificate and the server's certificate and key.
#[derive(Debug, Clone)]
pub struct Material {
    pub ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
}

pub(crate) const CA_FILE: &str = "ca.pem";
const SERVER_FILE: &str = "server.pem";
const SERVER_KEY_FILE: &str = "server-key.pem";

fn tls_error(e: impl std::fmt::Display) -> ReceiverError {
    ReceiverError::Tls(e.to_string())
}

/// A fresh CA and a server certificate for `localhost`, `127.0.0.1` and
/// `::1` signed by it (the CA's key is dropped on return).
pub fn generate() -> Result<Material, ReceiverError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.distinguished_name.push(
        DnType::CommonName,
        "PlatformSync reference receiver local CA",
    );
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(tls_error)?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(tls_error)?;

    let server_key = KeyPair::generate().map_err(tls_error)?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .map_err(tls_error)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = params.signed_by(&server_key, &ca).map_err(tls_error)?;
    Ok(Material {
        ca_pem: ca.pem(),
        server_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
    })
}

/// The material kept in `dir`, or a fresh one written there.
pub(crate) fn load_or_create(dir: &Path) -> Result<Material, ReceiverError> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    if let (Some(ca_pem), Some(server_pem), Some(server_key_pem)) =
        (read(CA_FILE), read(SERVER_FILE), read(SERVER_KEY_FILE))
    {
        return Ok(Material {
            ca_pem,
            server_pem,
            server_key_pem,
        });
    }
    let material = generate()?;
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| ReceiverError::Io {
            path: dir.join(name),
            source: e,
        })
    };
    write(SERVER_KEY_FILE, &material.server_key_pem)?;
    restrict(&dir.join(SERVER_KEY_FILE));
    write(SERVER_FILE, &material.server_pem)?;
    write(CA_FILE, &material.ca_pem)?;
    Ok(material)
}

#[cfg(unix)]
fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict(_: &Path) {}

/// The rustls server configuration serving `material`'s certificate
/// (HTTP/1.1 offered by ALPN).
pub fn server_config(material: &Material) -> Result<Arc<ServerConfig>, ReceiverError> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(material.server_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(tls_error)?;
    let key =
        PrivateKeyDer::from_pem_slice(material.server_key_pem.as_bytes()).map_err(tls_error)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
