//! TLS for STARTTLS (RFC 3207) in the opportunistic mode of RFC 7435: the handshake must
//! succeed (the server proves it holds the key of the certificate it shows, and the session
//! is encrypted), but the certificate itself is not checked against a CA or the host name:
//! MX host names come from unauthenticated DNS, so a verified name would prove nothing
//! (RFC 7435 §1.3; authenticated MX TLS is DANE or MTA-STS, not done here).
//!
//! Owns the rustls client configuration; uses the aws-lc-rs provider, the one the rest of
//! the workspace uses.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::OutboundError;

/// Accepts any certificate, but checks the handshake signatures made with its key.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The client configuration, made once per process.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, OutboundError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let verifier = AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            };
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(OutboundError::Tls)
}

/// The name sent as SNI: the MX host name when it is a DNS name, else the address.
pub fn server_name(host: &str, ip: IpAddr) -> ServerName<'static> {
    ServerName::try_from(host.trim_end_matches('.').to_string())
        .unwrap_or_else(|_| ServerName::IpAddress(ip.into()))
}
