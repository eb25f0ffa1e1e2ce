//! Turns Mozilla's root certificates (webpki-root-certs, DER) into what the
//! functions need at run time, so that none of it is decoded or parsed at
//! cold start:
//!
//! - `roots.pem`: one PEM bundle, for the SDK client's trust store (which
//!   takes PEM only);
//! - `anchors.rs`: the same roots as rustls trust anchors (subject, public
//!   key, name constraints), parsed here by webpki, the parser rustls uses at
//!   run time, and written as static byte strings.

use base64::Engine as _;
use std::fmt::Write as _;

fn main() {
    let certs = webpki_root_certs::TLS_SERVER_ROOT_CERTS;
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    let mut pem = String::with_capacity(certs.len() * 2_000);
    for cert in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    std::fs::write(out.join("roots.pem"), pem).expect("write roots.pem");

    let mut anchors = String::from("&[\n");
    for cert in certs {
        // A root webpki cannot read would be ignored by rustls at run time
        // too; failing the build says so instead of trusting one root less.
        let anchor = webpki::anchor_from_trusted_cert(cert)
            .unwrap_or_else(|e| panic!("a compiled-in root does not parse: {e:?}"));
        let constraints = match &anchor.name_constraints {
            Some(nc) => format!("Some(Der::from_slice({}))", bytes(nc.as_ref())),
            None => "None".to_owned(),
        };
        writeln!(
            anchors,
            "    TrustAnchor {{ subject: Der::from_slice({}), subject_public_key_info: Der::from_slice({}), name_constraints: {} }},",
            bytes(anchor.subject.as_ref()),
            bytes(anchor.subject_public_key_info.as_ref()),
            constraints,
        )
        .expect("write to a String");
    }
    anchors.push(']');
    std::fs::write(out.join("anchors.rs"), anchors).expect("write anchors.rs");
    println!("cargo::rerun-if-changed=build.rs");
}

/// A byte string literal.
fn bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(3 + b.len() * 4);
    s.push_str("b\"");
    for byte in b {
        write!(s, "\\x{byte:02x}").expect("write to a String");
    }
    s.push('"');
    s
}
