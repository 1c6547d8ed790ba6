//! Per-registry TLS: which roots to trust (public roots plus the registry's
//! own CA), verification off only when the registry says so, and naming
//! TLS failures the way operators recognise them.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::domain::Tls;

/// Builds the rustls config for a registry.
pub fn client_config(tls: &Tls) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if tls.verify {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if !tls.ca_cert_pem.is_empty() {
            for cert in CertificateDer::pem_slice_iter(tls.ca_cert_pem.as_bytes()) {
                let cert =
                    cert.map_err(|_| "the stored CA certificate is not valid PEM".to_string())?;
                roots
                    .add(cert)
                    .map_err(|e| format!("the stored CA certificate is not usable: {e}"))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    };
    Ok(config)
}

/// Accepts any certificate (still checking handshake signatures so the
/// connection is at least consistent). Used only for registries whose
/// `tls.verify` is false.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS failure found in an error's source chain, in operator terms:
/// `unknown authority`, `name mismatch`, `expired`, …
pub fn classify(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(describe(tls));
        }
        // rustls errors travel inside io::Error through hyper.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(describe(tls));
        }
        cur = e.source();
    }
    // Some layers (hyper-util's connector) re-box the rustls error as a
    // plain message; recognise rustls' own wording as a last resort.
    let mut text = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        text.push_str(&e.to_string());
        text.push('\n');
        cur = e.source();
    }
    let (_, rest) = text.split_once("invalid peer certificate: ")?;
    let kind = rest
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default();
    Some(match kind {
        "UnknownIssuer" => describe(&rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        )),
        "NotValidForName" | "NotValidForNameContext" => describe(
            &rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
        ),
        "Expired" | "ExpiredContext" => describe(&rustls::Error::InvalidCertificate(
            CertificateError::Expired,
        )),
        other => format!("invalid certificate: {other}"),
    })
}

fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "unknown authority (certificate signed by an untrusted CA; store the registry's CA certificate)".into(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "name mismatch (the certificate is not valid for this host)".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired certificate".into(),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "certificate not valid yet".into(),
            CertificateError::Revoked => "revoked certificate".into(),
            other => format!("invalid certificate: {other:?}"),
        },
        other => format!("TLS error: {other}"),
    }
}
