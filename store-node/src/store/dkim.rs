//! DKIM keys (RFC 6376), one per hosted domain: generated here (aws-lc-rs), stored durably,
//! pushed to every front-end in `Settings.dkim_keys` (the front-ends sign authenticated
//! submissions with them), and shown as the DNS TXT record to publish.
//!
//! # Layout
//! `dkim/<domain>`: JSON `DkimRecord` — selector, algorithm (`rsa-sha256` or
//! `ed25519-sha256`, RFC 8463) and the private key as base64 PKCS#8 DER.
//!
//! # Crash safety
//! One object per key, written with one atomic put before the index and the settings stream
//! change (a crash leaves the old key or the new one; the record is the truth at start-up).
//! Deleting a key unlinks it (directory synced) before the front-ends are told. Deleting a
//! domain deletes its key before the domain record, so a crash between leaves a domain
//! without a key, never a key without a domain; a key found for a domain that is not hosted
//! (an older store) is ignored and removed at start-up.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use proto::v1::DkimKey;

use crate::objects;

use super::*;

/// The algorithms, as asked for and as RFC 6376 §3.3 / RFC 8463 name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    Rsa,
    Ed25519,
}

impl DkimAlgorithm {
    /// `rsa` (also the default, for "") or `ed25519`.
    pub fn parse(text: &str) -> Result<DkimAlgorithm> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "rsa" | "rsa-sha256" => Ok(DkimAlgorithm::Rsa),
            "ed25519" | "ed25519-sha256" => Ok(DkimAlgorithm::Ed25519),
            other => Err(StoreError::InvalidArgument(format!(
                "DKIM algorithm {other:?}: use rsa (2048 bits, the default) or ed25519"
            ))),
        }
    }

    /// The `a=` tag value a signature carries.
    pub fn name(self) -> &'static str {
        match self {
            DkimAlgorithm::Rsa => "rsa-sha256",
            DkimAlgorithm::Ed25519 => "ed25519-sha256",
        }
    }

    fn of_record(name: &str) -> Option<DkimAlgorithm> {
        [DkimAlgorithm::Rsa, DkimAlgorithm::Ed25519]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DkimRecord {
    domain: String,
    selector: String,
    /// `rsa-sha256` or `ed25519-sha256`.
    algorithm: String,
    /// Base64 of the PKCS#8 DER.
    private_key: String,
}

/// A loaded key: its record's values and the TXT record derived from it.
#[derive(Debug, Clone)]
pub(super) struct Key {
    selector: String,
    algorithm: DkimAlgorithm,
    pkcs8: Vec<u8>,
    txt: String,
}

/// A key as `mailrootctl dkim list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimInfo {
    pub domain: String,
    pub selector: String,
    pub algorithm: String,
    /// `<selector>._domainkey.<domain>`.
    pub name: String,
    /// `v=DKIM1; k=...; p=...`.
    pub txt: String,
}

/// The keys by domain.
pub(super) type Keys = BTreeMap<String, Key>;

/// RFC 6376 §3.6.2.1: where the public key is published.
fn record_name(selector: &str, domain: &str) -> String {
    format!("{selector}._domainkey.{domain}")
}

/// RFC 6376 §3.6.1 (and RFC 8463 §4 for ed25519): the TXT record of a private key. RSA's `p=`
/// is the SubjectPublicKeyInfo DER; Ed25519's is the raw 32-octet public key.
fn txt_of(algorithm: DkimAlgorithm, pkcs8: &[u8]) -> std::result::Result<String, String> {
    let (k, public) = match algorithm {
        DkimAlgorithm::Rsa => {
            let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8).map_err(|e| e.to_string())?;
            let spki: PublicKeyX509Der<'static> =
                pair.public_key().as_der().map_err(|e| e.to_string())?;
            ("rsa", spki.as_ref().to_vec())
        }
        DkimAlgorithm::Ed25519 => {
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| e.to_string())?;
            ("ed25519", pair.public_key().as_ref().to_vec())
        }
    };
    Ok(format!("v=DKIM1; k={k}; p={}", BASE64.encode(public)))
}

/// A new private key as PKCS#8 DER (CPU-bound: RSA takes a moment).
fn generate(algorithm: DkimAlgorithm) -> Result<Vec<u8>> {
    let failed = |what: &str| StoreError::Internal(format!("DKIM key generation failed: {what}"));
    match algorithm {
        DkimAlgorithm::Rsa => {
            let pair =
                aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).map_err(|_| failed("rsa"))?;
            let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| failed("rsa pkcs8"))?;
            Ok(der.as_ref().to_vec())
        }
        DkimAlgorithm::Ed25519 => {
            let pair = Ed25519KeyPair::generate().map_err(|_| failed("ed25519"))?;
            // PKCS#8 v2 (with the public key): what ring and aws-lc both read back.
            let doc = pair.to_pkcs8().map_err(|_| failed("ed25519 pkcs8"))?;
            Ok(doc.as_ref().to_vec())
        }
    }
}

fn key_of(record: &DkimRecord, path: &str) -> Result<Key> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_string(),
        detail,
    };
    let algorithm = DkimAlgorithm::of_record(&record.algorithm)
        .ok_or_else(|| corrupt(format!("unknown algorithm {:?}", record.algorithm)))?;
    let pkcs8 = BASE64
        .decode(&record.private_key)
        .map_err(|e| corrupt(e.to_string()))?;
    let txt = txt_of(algorithm, &pkcs8).map_err(corrupt)?;
    Ok(Key {
        selector: record.selector.clone(),
        algorithm,
        pkcs8,
        txt,
    })
}

/// Start-up: every key of a hosted domain (others are removed: module doc).
pub(super) async fn load(objects: &Objects, hosted: &BTreeMap<String, Domain>) -> Result<Keys> {
    let mut keys = Keys::new();
    for meta in objects.list(&objects::dkim_prefix()).await? {
        let path = meta.location.to_string();
        let bytes = objects.get(&meta.location).await?;
        let record: DkimRecord =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        if !hosted.contains_key(&record.domain) {
            tracing::warn!(domain = %record.domain, "removing the DKIM key of a domain that is not hosted");
            objects.delete(&meta.location).await?;
            continue;
        }
        keys.insert(record.domain.clone(), key_of(&record, &path)?);
    }
    Ok(keys)
}

/// The keys as the settings stream carries them.
pub(super) fn settings_keys(keys: &Keys) -> Vec<DkimKey> {
    keys.iter()
        .map(|(domain, k)| DkimKey {
            domain: domain.clone(),
            selector: k.selector.clone(),
            algorithm: k.algorithm.name().to_string(),
            private_key: k.pkcs8.clone().into(),
        })
        .collect()
}

impl Store {
    fn dkim(&self) -> MutexGuard<'_, Keys> {
        self.inner.dkim.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a key for a hosted domain (replacing its key) and returns (DNS name, TXT value).
    pub async fn dkim_generate(
        &self,
        domain: &str,
        selector: &str,
        algorithm: &str,
    ) -> Result<(String, String)> {
        let domain = names::domain(domain)?;
        // RFC 6376 §3.1: a selector is one or more DNS labels.
        let selector = names::domain(selector).map_err(|_| {
            StoreError::InvalidArgument(format!(
                "DKIM selector {selector:?}: one or more DNS labels (letters, digits, hyphens), e.g. mail2026"
            ))
        })?;
        let algorithm = DkimAlgorithm::parse(algorithm)?;
        let _admin = self.inner.admin.lock().await;
        if !self.state().domain_hosted(&domain) {
            return Err(StoreError::UnknownDomain(domain));
        }
        let pkcs8 = tokio::task::spawn_blocking(move || generate(algorithm))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))??;
        let record = DkimRecord {
            domain: domain.clone(),
            selector: selector.clone(),
            algorithm: algorithm.name().to_string(),
            private_key: BASE64.encode(&pkcs8),
        };
        let path = objects::dkim_path(&domain);
        let key = key_of(&record, path.as_ref())?;
        self.put_json(&path, &record).await?;
        let txt = key.txt.clone();
        self.dkim().insert(domain.clone(), key);
        self.publish_dkim();
        tracing::info!(%domain, %selector, algorithm = algorithm.name(), "DKIM key generated");
        Ok((record_name(&selector, &domain), txt))
    }

    pub fn dkim_list(&self) -> Vec<DkimInfo> {
        self.dkim()
            .iter()
            .map(|(domain, k)| DkimInfo {
                domain: domain.clone(),
                selector: k.selector.clone(),
                algorithm: k.algorithm.name().to_string(),
                name: record_name(&k.selector, domain),
                txt: k.txt.clone(),
            })
            .collect()
    }

    pub async fn dkim_delete(&self, domain: &str) -> Result<()> {
        let domain = names::domain(domain)?;
        let _admin = self.inner.admin.lock().await;
        if !self.dkim().contains_key(&domain) {
            return Err(StoreError::InvalidArgument(format!(
                "{domain} has no DKIM key"
            )));
        }
        self.remove_dkim_key(&domain).await
    }

    /// Deletes the key (if any) durably, then tells the front-ends (admin lock held).
    pub(super) async fn remove_dkim_key(&self, domain: &str) -> Result<()> {
        if !self.dkim().contains_key(domain) {
            return Ok(());
        }
        self.inner
            .objects
            .delete(&objects::dkim_path(domain))
            .await?;
        self.dkim().remove(domain);
        self.publish_dkim();
        tracing::info!(%domain, "DKIM key deleted");
        Ok(())
    }

    /// Every watcher of the settings stream gets the keys now.
    pub(super) fn publish_dkim(&self) {
        let keys = settings_keys(&self.dkim());
        self.inner.settings.set_dkim_keys(keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms() {
        assert_eq!(DkimAlgorithm::parse("").unwrap(), DkimAlgorithm::Rsa);
        assert_eq!(DkimAlgorithm::parse("RSA").unwrap(), DkimAlgorithm::Rsa);
        assert_eq!(
            DkimAlgorithm::parse("ed25519").unwrap(),
            DkimAlgorithm::Ed25519
        );
        assert!(DkimAlgorithm::parse("dsa").is_err());
        assert_eq!(
            DkimAlgorithm::of_record("ed25519-sha256"),
            Some(DkimAlgorithm::Ed25519)
        );
    }

    #[test]
    fn ed25519_txt_is_the_raw_public_key() {
        let pkcs8 = generate(DkimAlgorithm::Ed25519).unwrap();
        let txt = txt_of(DkimAlgorithm::Ed25519, &pkcs8).unwrap();
        let p = txt.strip_prefix("v=DKIM1; k=ed25519; p=").unwrap();
        assert_eq!(BASE64.decode(p).unwrap().len(), 32);
        assert_eq!(
            record_name("s1", "example.test"),
            "s1._domainkey.example.test"
        );
    }
}
