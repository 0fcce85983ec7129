//! The LDAP conversation (RFC 4511) with a domain's directory, over `ldap3`: connect
//! (ldaps://, StartTLS, or plaintext only when the domain allows it), bind as the service
//! account, search for the one entry an address names, and — for a login — bind as that
//! entry with the user's password on the same connection.
//!
//! Every failure to get an answer (no connection, TLS failure, timeout, the service bind
//! refused, a server error) is `DirectoryUnavailable`: a temporary failure, never a "no such
//! user" or "bad password" the directory did not say. Each exchange runs in a task of its
//! own, so a malformed reply that makes `ldap3` panic ends that task only.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use super::{DirEntry, DirectoryConfig, filter};
use crate::error::{Result, StoreError};
use crate::names::Address;

/// Connecting (TCP and TLS) may take this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Each LDAP operation (bind, search) may take this long.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);
/// A whole exchange may take this long, whatever its steps.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(8);

/// LDAP result codes (RFC 4511 §4.1.9).
const RC_SUCCESS: u32 = 0;
const RC_INAPPROPRIATE_AUTHENTICATION: u32 = 48;
const RC_INVALID_CREDENTIALS: u32 = 49;
const RC_INSUFFICIENT_ACCESS_RIGHTS: u32 = 50;
const RC_UNWILLING_TO_PERFORM: u32 = 53;
/// AD's userAccountControl ACCOUNTDISABLE flag.
const UAC_ACCOUNTDISABLE: u64 = 0x2;

/// What the directory said about a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginResult {
    Ok(DirEntry),
    /// No (enabled) entry for the name, or the password was refused by the bind.
    Refused,
}

fn unavailable(what: impl std::fmt::Display) -> StoreError {
    StoreError::DirectoryUnavailable(what.to_string())
}

/// The CA certificates of a PEM text (at least one).
pub fn roots(pem: &str) -> Result<rustls::RootCertStore> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| StoreError::InvalidArgument(format!("CA file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| StoreError::InvalidArgument(format!("CA file: {e}")))?;
    }
    if roots.is_empty() {
        return Err(StoreError::InvalidArgument(
            "the CA file holds no PEM certificate".into(),
        ));
    }
    Ok(roots)
}

/// The system's CA certificates, read once (a directory without `--ca-file`).
static SYSTEM_ROOTS: LazyLock<Arc<rustls::RootCertStore>> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "reading the system's CA certificates");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system CA certificates for directories");
    Arc::new(roots)
});

fn settings(config: &DirectoryConfig) -> Result<LdapConnSettings> {
    let roots = if config.ca_pem.is_empty() {
        SYSTEM_ROOTS.clone()
    } else {
        Arc::new(roots(&config.ca_pem)?)
    };
    // Always our own TLS configuration, with the provider named: never a process default.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Internal(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(LdapConnSettings::new()
        .set_conn_timeout(CONNECT_TIMEOUT)
        .set_starttls(config.starttls)
        .set_config(Arc::new(tls)))
}

/// Runs `exchange` on a fresh connection bound as the service account, in a task of its own,
/// within [`EXCHANGE_TIMEOUT`].
async fn with_service_bind<T, F, Fut>(config: &DirectoryConfig, exchange: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(ldap3::Ldap) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>> + Send,
{
    let config = config.clone();
    let mut task = tokio::spawn(async move {
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings(&config)?, &config.url)
            .await
            .map_err(|e| unavailable(format!("cannot connect to {}: {e}", config.url)))?;
        ldap3::drive!(conn);
        let bound = ldap
            .with_timeout(OPERATION_TIMEOUT)
            .simple_bind(&config.bind_dn, &config.bind_password)
            .await
            .map_err(|e| unavailable(format!("{}: service bind: {e}", config.url)))?;
        if bound.rc != RC_SUCCESS {
            return Err(unavailable(format!(
                "{}: the service account {} was refused (rc {}: {}); check --bind-dn and its password",
                config.url, config.bind_dn, bound.rc, bound.text
            )));
        }
        let mut ldap_end = ldap.clone();
        let result = exchange(ldap).await;
        // The answer does not wait for the goodbye (an unbind has no reply, RFC 4511 §4.3).
        tokio::spawn(async move {
            let _ = tokio::time::timeout(OPERATION_TIMEOUT, ldap_end.unbind()).await;
        });
        result
    });
    match tokio::time::timeout(EXCHANGE_TIMEOUT, &mut task).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(unavailable(format!("directory exchange failed: {e}"))),
        Err(_) => {
            task.abort();
            Err(unavailable("directory exchange timed out"))
        }
    }
}

/// The one enabled entry `address` names, if any (several: none, with a warning).
async fn search(
    ldap: &mut ldap3::Ldap,
    config: &DirectoryConfig,
    domain: &str,
    address: &str,
) -> Result<Option<DirEntry>> {
    let filter = filter::lookup(config, address);
    let attrs = ["mail", config.alias_attr.as_str(), "userAccountControl"];
    let (entries, _) = ldap
        .with_timeout(OPERATION_TIMEOUT)
        .search(&config.base, Scope::Subtree, &filter, attrs.to_vec())
        .await
        .map_err(|e| unavailable(format!("{}: search: {e}", config.url)))?
        .non_error()
        .map_err(|e| unavailable(format!("{}: search: {e}", config.url)))?;
    let entries: Vec<SearchEntry> = entries
        .into_iter()
        .filter(is_entry)
        .map(SearchEntry::construct)
        .collect();
    let entry = match entries.len() {
        0 => return Ok(None),
        1 => entries.into_iter().next().expect("one entry"),
        n => {
            tracing::warn!(%address, entries = n, base = %config.base, "directory filter matches several entries: treated as no such user");
            return Ok(None);
        }
    };
    if disabled(ldap, config, &entry.dn).await? {
        tracing::info!(%address, dn = %entry.dn, "directory account disabled (disabled filter)");
        return Ok(None);
    }
    Ok(dir_entry(config, domain, address, entry))
}

/// Whether the entry matches the disabled filter: a base search on the entry itself, so that
/// a filter the server cannot evaluate (an attribute it does not know: Undefined) disables
/// nobody instead of hiding everybody.
async fn disabled(ldap: &mut ldap3::Ldap, config: &DirectoryConfig, dn: &str) -> Result<bool> {
    let (entries, _) = ldap
        .with_timeout(OPERATION_TIMEOUT)
        .search(dn, Scope::Base, &config.disabled_filter, vec!["1.1"])
        .await
        .map_err(|e| unavailable(format!("{}: search: {e}", config.url)))?
        .non_error()
        .map_err(|e| unavailable(format!("{}: search: {e}", config.url)))?;
    Ok(entries.iter().any(is_entry))
}

/// An entry, not a continuation reference (RFC 4511 §4.5.3: AD answers searches at a
/// domain's root with references to its other partitions) nor an intermediate response.
fn is_entry(e: &ldap3::ResultEntry) -> bool {
    !e.is_ref() && !e.is_intermediate()
}

fn attr<'a>(entry: &'a SearchEntry, name: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map_or(&[], |(_, v)| v.as_slice())
}

/// The entry as the store uses it; None for an AD account with ACCOUNTDISABLE set.
fn dir_entry(
    config: &DirectoryConfig,
    domain: &str,
    address: &str,
    entry: SearchEntry,
) -> Option<DirEntry> {
    let disabled = attr(&entry, "userAccountControl")
        .iter()
        .filter_map(|v| v.trim().parse::<i64>().ok())
        .any(|v| v as u64 & UAC_ACCOUNTDISABLE != 0);
    if disabled {
        tracing::info!(%address, dn = %entry.dn, "directory account disabled (userAccountControl)");
        return None;
    }
    let mailbox = attr(&entry, "mail")
        .iter()
        .filter_map(|m| Address::parse(m.trim()).ok())
        .find(|m| m.domain == domain)
        .or_else(|| Address::parse(address).ok())?;
    let aliases = attr(&entry, &config.alias_attr)
        .iter()
        .filter_map(|v| filter::alias_value(&config.alias_attr, v))
        .filter(|a| *a != mailbox)
        .collect();
    Some(DirEntry {
        dn: entry.dn,
        mailbox,
        aliases,
    })
}

/// The enabled entry `address` names (a user's address or one of its aliases).
pub async fn lookup(
    config: &DirectoryConfig,
    domain: &str,
    address: &str,
) -> Result<Option<DirEntry>> {
    let (c, d, a) = (config.clone(), domain.to_string(), address.to_string());
    with_service_bind(config, move |mut ldap| async move {
        search(&mut ldap, &c, &d, &a).await
    })
    .await
}

/// Search, then bind as the entry found with `password` (never empty: an empty password
/// would be an unauthenticated bind, RFC 4513 §5.1.2, which many servers "accept").
pub async fn login(
    config: &DirectoryConfig,
    domain: &str,
    address: &str,
    password: &str,
) -> Result<LoginResult> {
    if password.is_empty() {
        return Ok(LoginResult::Refused);
    }
    let (c, d, a, pw) = (
        config.clone(),
        domain.to_string(),
        address.to_string(),
        password.to_string(),
    );
    with_service_bind(config, move |mut ldap| async move {
        let Some(entry) = search(&mut ldap, &c, &d, &a).await? else {
            return Ok(LoginResult::Refused);
        };
        let bound = ldap
            .with_timeout(OPERATION_TIMEOUT)
            .simple_bind(&entry.dn, &pw)
            .await
            .map_err(|e| unavailable(format!("{}: user bind: {e}", c.url)))?;
        match bound.rc {
            RC_SUCCESS => Ok(LoginResult::Ok(entry)),
            RC_INVALID_CREDENTIALS
            | RC_INAPPROPRIATE_AUTHENTICATION
            | RC_INSUFFICIENT_ACCESS_RIGHTS
            | RC_UNWILLING_TO_PERFORM => Ok(LoginResult::Refused),
            rc => Err(unavailable(format!(
                "{}: user bind answered rc {rc}: {}",
                c.url, bound.text
            ))),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(alias_attr: &str) -> DirectoryConfig {
        DirectoryConfig {
            url: "ldaps://dc".into(),
            bind_dn: "cn=s".into(),
            bind_password: "p".into(),
            base: "dc=x".into(),
            filter: "(mail=%s)".into(),
            alias_attr: alias_attr.into(),
            disabled_filter: "(nsAccountLock=TRUE)".into(),
            starttls: false,
            insecure_plaintext: false,
            ca_pem: String::new(),
        }
    }

    fn entry(attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: "cn=Erin,ou=staff,dc=corp,dc=example".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            bin_attrs: HashMap::new(),
        }
    }

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[test]
    fn the_mailbox_is_the_mail_value_in_the_domain() {
        let e = entry(&[
            ("mail", &["erin@other.example", "Erin@Corp.Example"]),
            (
                "proxyAddresses",
                &[
                    "SMTP:erin@corp.example",
                    "smtp:info@corp.example",
                    "X500:/o=x",
                ],
            ),
        ]);
        let d = dir_entry(
            &config("proxyAddresses"),
            "corp.example",
            "info@corp.example",
            e,
        )
        .unwrap();
        assert_eq!(d.mailbox, addr("erin@corp.example"));
        // Itself is not its own alias; X500 is no address.
        assert_eq!(d.aliases, vec![addr("info@corp.example")]);
        // Without a mail value in the domain: the address it was found by.
        let e = entry(&[("MAIL", &["erin@other.example"])]);
        let d = dir_entry(
            &config("mailAlternateAddress"),
            "corp.example",
            "erin@corp.example",
            e,
        )
        .unwrap();
        assert_eq!(d.mailbox, addr("erin@corp.example"));
    }

    #[test]
    fn an_ad_account_with_accountdisable_is_nobody() {
        let c = config("proxyAddresses");
        let e = |uac: &str| SearchEntry {
            dn: "cn=Erin,dc=corp,dc=example".into(),
            attrs: HashMap::from([
                ("mail".to_string(), vec!["erin@corp.example".to_string()]),
                ("userAccountControl".to_string(), vec![uac.to_string()]),
            ]),
            bin_attrs: HashMap::new(),
        };
        assert!(dir_entry(&c, "corp.example", "erin@corp.example", e("514")).is_none());
        assert!(dir_entry(&c, "corp.example", "erin@corp.example", e("66050")).is_none());
        assert!(dir_entry(&c, "corp.example", "erin@corp.example", e("512")).is_some());
        assert!(dir_entry(&c, "corp.example", "erin@corp.example", e("66048")).is_some());
    }
}
