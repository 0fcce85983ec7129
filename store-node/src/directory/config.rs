//! A domain's directory binding as the store keeps it (inside the domain's record,
//! `store/admin.rs`) and the rules it must satisfy before it is stored.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// `(mail=%s)`: the user whose mail address is the login or recipient address.
pub const DEFAULT_FILTER: &str = "(mail=%s)";
/// OpenLDAP's and 389-DS's attribute for a user's other addresses.
pub const DEFAULT_ALIAS_ATTR: &str = "mailAlternateAddress";
/// Locked accounts: OpenLDAP's ppolicy overlay (`pwdAccountLockedTime`) and 389-DS /
/// FreeIPA (`nsAccountLock`). AD's `userAccountControl` bit 0x2 is checked on every entry
/// whatever this filter says (`client.rs`).
pub const DEFAULT_DISABLED_FILTER: &str = "(|(pwdAccountLockedTime=*)(nsAccountLock=TRUE))";

/// A domain bound to an LDAP directory. `Debug` leaves the bind password out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryConfig {
    pub url: String,
    pub bind_dn: String,
    /// The service account's password, kept only in the domain record in the store's data
    /// directory; no RPC returns it.
    pub bind_password: String,
    pub base: String,
    pub filter: String,
    pub alias_attr: String,
    pub disabled_filter: String,
    #[serde(default)]
    pub starttls: bool,
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// PEM of the CA certificate(s) to trust ("" = the system's roots).
    #[serde(default)]
    pub ca_pem: String,
}

impl std::fmt::Debug for DirectoryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryConfig")
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("base", &self.base)
            .field("filter", &self.filter)
            .field("alias_attr", &self.alias_attr)
            .field("disabled_filter", &self.disabled_filter)
            .field("starttls", &self.starttls)
            .field("insecure_plaintext", &self.insecure_plaintext)
            .field("ca", &!self.ca_pem.is_empty())
            .finish_non_exhaustive()
    }
}

fn invalid(text: impl Into<String>) -> StoreError {
    StoreError::InvalidArgument(text.into())
}

impl DirectoryConfig {
    /// From the admin request: defaults filled in, every rule checked. `keep_password`: the
    /// password stored so far, used when the request carries none (`domain set` without
    /// `--bind-password-stdin`).
    pub fn from_proto(
        p: &proto::v1::DirectoryConfig,
        keep_password: Option<&str>,
    ) -> Result<DirectoryConfig> {
        let or = |v: &str, d: &str| {
            if v.trim().is_empty() {
                d.to_string()
            } else {
                v.trim().to_string()
            }
        };
        let bind_password = match (p.bind_password.as_str(), keep_password) {
            ("", Some(kept)) => kept.to_string(),
            (pw, _) => pw.to_string(),
        };
        let config = DirectoryConfig {
            url: p.url.trim().to_string(),
            bind_dn: p.bind_dn.trim().to_string(),
            bind_password,
            base: p.base.trim().to_string(),
            filter: or(&p.filter, DEFAULT_FILTER),
            alias_attr: or(&p.alias_attr, DEFAULT_ALIAS_ATTR),
            disabled_filter: or(&p.disabled_filter, DEFAULT_DISABLED_FILTER),
            starttls: p.starttls,
            insecure_plaintext: p.insecure_plaintext,
            ca_pem: p.ca_pem.clone(),
        };
        config.validate()?;
        Ok(config)
    }

    /// For listings: everything but the secrets.
    pub fn to_proto_public(&self) -> proto::v1::DirectoryConfig {
        proto::v1::DirectoryConfig {
            url: self.url.clone(),
            bind_dn: self.bind_dn.clone(),
            bind_password: String::new(),
            base: self.base.clone(),
            filter: self.filter.clone(),
            alias_attr: self.alias_attr.clone(),
            starttls: self.starttls,
            insecure_plaintext: self.insecure_plaintext,
            ca_pem: String::new(),
            disabled_filter: self.disabled_filter.clone(),
        }
    }

    /// Whether the connection is encrypted (ldaps:// or StartTLS).
    pub fn tls(&self) -> bool {
        self.url.starts_with("ldaps://") || self.starttls
    }

    pub fn validate(&self) -> Result<()> {
        let rest = if let Some(rest) = self.url.strip_prefix("ldaps://") {
            if self.starttls {
                return Err(invalid(
                    "--starttls is for ldap:// URLs (ldaps:// is TLS from the start)",
                ));
            }
            rest
        } else if let Some(rest) = self.url.strip_prefix("ldap://") {
            if !self.starttls && !self.insecure_plaintext {
                return Err(invalid(
                    "ldap:// without --starttls would send passwords in clear: use ldaps://, \
                     --starttls, or --insecure-plaintext",
                ));
            }
            rest
        } else {
            return Err(invalid(format!(
                "directory URL {:?} must start with ldaps:// or ldap://",
                self.url
            )));
        };
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains(['/', '?', ' ']) {
            return Err(invalid(format!(
                "directory URL {:?}: expected ldaps://host[:port]",
                self.url
            )));
        }
        if self.bind_dn.is_empty() {
            return Err(invalid("--bind-dn is required"));
        }
        if self.bind_password.is_empty() {
            return Err(invalid(
                "the bind password is empty (--bind-password-stdin)",
            ));
        }
        if self.base.is_empty() {
            return Err(invalid("--base is required"));
        }
        if !(self.filter.contains("%s") || self.filter.contains("%u")) {
            return Err(invalid(format!(
                "filter {:?} names no user: put %s (the address) or %u (its local part) in it",
                self.filter
            )));
        }
        let probe = super::filter::expand(&self.filter, "probe@example.org");
        if ldap3::parse_filter(&probe).is_err() || !self.filter.starts_with('(') {
            return Err(invalid(format!(
                "filter {:?} is not an LDAP filter (RFC 4515)",
                self.filter
            )));
        }
        if ldap3::parse_filter(&self.disabled_filter).is_err()
            || !self.disabled_filter.starts_with('(')
        {
            return Err(invalid(format!(
                "disabled filter {:?} is not an LDAP filter (RFC 4515)",
                self.disabled_filter
            )));
        }
        if !self
            .alias_attr
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';')
        {
            return Err(invalid(format!(
                "alias attribute {:?} is not an attribute name",
                self.alias_attr
            )));
        }
        if !self.ca_pem.is_empty() {
            super::client::roots(&self.ca_pem)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> proto::v1::DirectoryConfig {
        proto::v1::DirectoryConfig {
            url: "ldaps://dc.example.org:636".into(),
            bind_dn: "cn=svc,dc=example,dc=org".into(),
            bind_password: "s3cret".into(),
            base: "dc=example,dc=org".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_filled_in() {
        let c = DirectoryConfig::from_proto(&request(), None).unwrap();
        assert_eq!(c.filter, DEFAULT_FILTER);
        assert_eq!(c.alias_attr, DEFAULT_ALIAS_ATTR);
        assert_eq!(c.disabled_filter, DEFAULT_DISABLED_FILTER);
        assert!(c.tls());
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn plaintext_needs_the_flag() {
        let mut r = request();
        r.url = "ldap://dc.example.org".into();
        let err = DirectoryConfig::from_proto(&r, None).unwrap_err();
        assert!(err.to_string().contains("--insecure-plaintext"), "{err}");
        r.starttls = true;
        assert!(DirectoryConfig::from_proto(&r, None).unwrap().tls());
        r.starttls = false;
        r.insecure_plaintext = true;
        assert!(!DirectoryConfig::from_proto(&r, None).unwrap().tls());
    }

    #[test]
    fn bad_values_are_refused() {
        for change in [
            (|r: &mut proto::v1::DirectoryConfig| r.url = "http://x".into())
                as fn(&mut proto::v1::DirectoryConfig),
            |r| r.filter = "(uid=alice)".into(),
            |r| r.filter = "(mail=%s".into(),
            |r| r.disabled_filter = "locked".into(),
            |r| r.base = String::new(),
            |r| r.bind_password = String::new(),
            |r| r.alias_attr = "mail)(x".into(),
            |r| r.ca_pem = "not a pem".into(),
            |r| r.starttls = true,
        ] {
            let mut r = request();
            change(&mut r);
            assert!(DirectoryConfig::from_proto(&r, None).is_err(), "{r:?}");
        }
    }

    #[test]
    fn an_empty_password_keeps_the_stored_one() {
        let mut r = request();
        r.bind_password = String::new();
        let c = DirectoryConfig::from_proto(&r, Some("old")).unwrap();
        assert_eq!(c.bind_password, "old");
    }
}
