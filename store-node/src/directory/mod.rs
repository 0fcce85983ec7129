//! Directory (LDAP) authentication: a domain bound to an Active Directory or OpenLDAP server
//! has its users, their passwords, their aliases and their disabled state there, not in the
//! store. This module owns the conversation with the directory and the short cache of its
//! answers; `store/directory.rs` decides what the answers mean for logins and deliveries.
//!
//! # Layout
//! - `config.rs` — `DirectoryConfig` (kept in the domain record) and its validation.
//! - `filter.rs` — the search filters, built with every address piece escaped (RFC 4515).
//! - `client.rs` — connect, service bind, search, user bind (`ldap3`), with timeouts; every
//!   failure to get an answer is `StoreError::DirectoryUnavailable` (a temporary failure).
//! - `cache.rs`  — entries and verified logins, briefly (the security argument is there).
//!
//! This module must not decide about mailboxes, quotas or locks, and it never returns or
//! logs the service account's password.

use std::time::Duration;

use crate::error::Result;
use crate::names::Address;

mod cache;
pub mod client;
mod config;
pub mod filter;

pub use cache::DEFAULT_TTL;
pub use client::LoginResult;
pub use config::{DEFAULT_ALIAS_ATTR, DEFAULT_DISABLED_FILTER, DEFAULT_FILTER, DirectoryConfig};

/// A user as the directory has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub dn: String,
    /// The mailbox its mail goes to: its `mail` value in the bound domain, else the address
    /// it was found by.
    pub mailbox: Address,
    /// Its other addresses (the alias attribute), delivered to `mailbox`.
    pub aliases: Vec<Address>,
}

/// The directories of every bound domain, through one cache.
pub struct Directories {
    cache: cache::Cache,
}

impl Directories {
    /// `ttl` zero turns the cache off.
    pub fn new(ttl: Duration) -> Directories {
        Directories {
            cache: cache::Cache::new(ttl),
        }
    }

    /// The enabled entry that `address` (a user's address or alias) names in `config`'s
    /// directory.
    pub async fn lookup(
        &self,
        config: &DirectoryConfig,
        address: &Address,
    ) -> Result<Option<DirEntry>> {
        if let Some(entry) = self.cache.entry(address) {
            return Ok(Some(entry));
        }
        let since = self.cache.generation();
        let found = client::lookup(config, &address.domain, &address.to_string()).await?;
        if let Some(entry) = &found {
            self.cache.put_entry(address, entry, since);
        }
        Ok(found)
    }

    /// Verifies a login against the directory (or a fresh verified login with the same
    /// password, `cache.rs`).
    pub async fn login(
        &self,
        config: &DirectoryConfig,
        address: &Address,
        password: &str,
    ) -> Result<LoginResult> {
        if password.is_empty() {
            return Ok(LoginResult::Refused);
        }
        if let Some(entry) = self.cache.login(address, password) {
            return Ok(LoginResult::Ok(entry));
        }
        let since = self.cache.generation();
        let result = client::login(config, &address.domain, &address.to_string(), password).await?;
        if let LoginResult::Ok(entry) = &result {
            self.cache.put_login(address, password, entry, since);
            self.cache.put_entry(address, entry, since);
        }
        Ok(result)
    }

    /// The domain's directory configuration changed (or it was unbound, or deleted).
    pub fn forget_domain(&self, domain: &str) {
        self.cache.forget_domain(domain);
    }

    /// The mailbox was locked or deleted.
    pub fn forget_mailbox(&self, mailbox: &Address) {
        self.cache.forget_mailbox(mailbox);
    }
}
