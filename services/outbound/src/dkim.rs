//! DKIM signing (RFC 6376) of outgoing messages with RSA-SHA256 or Ed25519-SHA256
//! (RFC 8463), and the DNS TXT record that publishes the key, so that the signer and the
//! key generator (the store, `mailrootctl dkim generate`) agree on the record.
//!
//! Keys are PKCS#8 DER for both algorithms, as aws-lc-rs makes them
//! (`rsa::KeyPair::generate(KeySize::Rsa2048)` then `.to_pkcs8()`,
//! `Ed25519KeyPair::generate_pkcs8`). Signing itself is mail-auth's (on aws-lc-rs).
//!
//! Owns which header fields are signed and the canonicalization (relaxed/relaxed,
//! RFC 6376 §3.4.2, §3.4.4: survives the header refolding and whitespace changes that
//! relays commonly make).

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Signature};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::OutboundError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl DkimAlgorithm {
    /// The `a=` tag value: "rsa-sha256" / "ed25519-sha256" (also `DkimKey.algorithm` in
    /// mailroot.proto).
    pub fn name(self) -> &'static str {
        match self {
            DkimAlgorithm::RsaSha256 => "rsa-sha256",
            DkimAlgorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    /// From the `a=` name ("rsa-sha256", "ed25519-sha256").
    pub fn from_name(name: &str) -> Option<DkimAlgorithm> {
        match name.to_ascii_lowercase().as_str() {
            "rsa-sha256" => Some(DkimAlgorithm::RsaSha256),
            "ed25519-sha256" => Some(DkimAlgorithm::Ed25519Sha256),
            _ => None,
        }
    }
}

/// Signed when present (RFC 6376 §5.4.1's recommended set, as far as mail carries them).
/// From is always signed (§5.4: it is REQUIRED).
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// Signs `message` (CRLF) for `domain`/`selector` with a PKCS#8 DER private key; returns the
/// complete `DKIM-Signature: ...\r\n` header field to prepend. relaxed/relaxed
/// canonicalization; signs the fields of `SIGNED_HEADERS` that are present (From always).
pub fn sign(
    message: &[u8],
    domain: &str,
    selector: &str,
    algorithm: DkimAlgorithm,
    pkcs8_der: &[u8],
) -> Result<String, OutboundError> {
    let headers = headers_to_sign(message);
    let signature = match algorithm {
        DkimAlgorithm::RsaSha256 => {
            let key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(
                PrivatePkcs8KeyDer::from(pkcs8_der),
            ))
            .map_err(|e| OutboundError::DkimKey(format!("not a PKCS#8 RSA key: {e}")))?;
            signed(key, domain, selector, headers, message)?
        }
        DkimAlgorithm::Ed25519Sha256 => {
            let key = Ed25519Key::from_pkcs8_der(pkcs8_der)
                .or_else(|_| Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8_der))
                .map_err(|e| OutboundError::DkimKey(format!("not a PKCS#8 Ed25519 key: {e}")))?;
            signed(key, domain, selector, headers, message)?
        }
    };
    Ok(signature.to_header())
}

/// The signature of `message` with `key`, relaxed/relaxed over `headers`.
fn signed<K: SigningKey>(
    key: K,
    domain: &str,
    selector: &str,
    headers: Vec<&'static str>,
    message: &[u8],
) -> Result<Signature, OutboundError> {
    DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(headers)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(message)
        .map_err(|e| OutboundError::DkimSign(e.to_string()))
}

/// The DNS TXT record value at `<selector>._domainkey.<domain>` for this key:
/// `v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo DER>` or
/// `v=DKIM1; k=ed25519; p=<base64 of the raw 32-byte key>` (RFC 6376 §3.6.1, RFC 8463 §4).
pub fn public_txt(algorithm: DkimAlgorithm, pkcs8_der: &[u8]) -> Result<String, OutboundError> {
    match algorithm {
        DkimAlgorithm::RsaSha256 => {
            let key = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8_der)
                .map_err(|e| OutboundError::DkimKey(format!("not a PKCS#8 RSA key: {e}")))?;
            let spki: PublicKeyX509Der<'static> = key
                .public_key()
                .as_der()
                .map_err(|e| OutboundError::DkimKey(format!("RSA public key: {e}")))?;
            Ok(format!(
                "v=DKIM1; k=rsa; p={}",
                BASE64.encode(spki.as_ref())
            ))
        }
        DkimAlgorithm::Ed25519Sha256 => {
            let key = Ed25519KeyPair::from_pkcs8(pkcs8_der)
                .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8_der))
                .map_err(|e| OutboundError::DkimKey(format!("not a PKCS#8 Ed25519 key: {e}")))?;
            Ok(format!(
                "v=DKIM1; k=ed25519; p={}",
                BASE64.encode(key.public_key().as_ref())
            ))
        }
    }
}

/// The names of `SIGNED_HEADERS` present in the message's header section, plus From.
fn headers_to_sign(message: &[u8]) -> Vec<&'static str> {
    let mut present = vec![false; SIGNED_HEADERS.len()];
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break; // end of the header section (RFC 5322 §2.1)
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue; // a folded continuation
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if let Some(i) = SIGNED_HEADERS
            .iter()
            .position(|h| h.as_bytes().eq_ignore_ascii_case(name))
        {
            present[i] = true;
        }
    }
    SIGNED_HEADERS
        .iter()
        .zip(present)
        .filter(|(name, present)| *present || **name == "From")
        .map(|(name, _)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_present_headers_and_from_always() {
        let msg = b"Subject: hi\r\nto: a@b\r\nX-Other: 1\r\n folded: no\r\nDate: now\r\n\r\nFrom: body\r\n";
        assert_eq!(headers_to_sign(msg), ["From", "To", "Subject", "Date"]);
    }

    #[test]
    fn algorithm_names_round_trip() {
        for a in [DkimAlgorithm::RsaSha256, DkimAlgorithm::Ed25519Sha256] {
            assert_eq!(DkimAlgorithm::from_name(a.name()), Some(a));
        }
        assert_eq!(DkimAlgorithm::from_name("rsa-sha1"), None);
    }

    #[test]
    fn keys_of_the_wrong_kind_are_errors_not_panics() {
        for alg in [DkimAlgorithm::RsaSha256, DkimAlgorithm::Ed25519Sha256] {
            assert!(matches!(
                sign(b"From: a@b\r\n\r\nx\r\n", "b", "s", alg, b"garbage"),
                Err(OutboundError::DkimKey(_))
            ));
            assert!(public_txt(alg, b"").is_err());
        }
    }
}
