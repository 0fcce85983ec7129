//! The crate's one error type. Delivery itself never fails with it (every recipient gets a
//! `RecipientResult`); it is for set-up (resolver, TLS configuration) and DKIM keys.

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The system resolver configuration could not be read or used.
    #[error("DNS resolver: {0}")]
    Resolver(String),
    /// The TLS client configuration could not be built.
    #[error("TLS: {0}")]
    Tls(String),
    /// A DKIM private key that is not PKCS#8 DER of the named algorithm.
    #[error("DKIM key: {0}")]
    DkimKey(String),
    /// Signing failed (e.g. a message without a header).
    #[error("DKIM signing: {0}")]
    DkimSign(String),
}
