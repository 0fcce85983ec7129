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

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::names::Address;

mod cache;
pub mod client;
mod config;
pub mod filter;

pub use cache::DEFAULT_TTL;
pub use client::LoginResult;
pub use config::{DEFAULT_ALIAS_ATTR, DEFAULT_DISABLED_FILTER, DEFAULT_FILTER, DirectoryConfig};

fn count(op: &'static str, result: &'static str) {
    metrics::counter!(crate::metrics::DIRECTORY_REQUESTS, "op" => op, "result" => result)
        .increment(1);
}

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
            count("lookup", "cached");
            return Ok(Some(entry));
        }
        let since = self.cache.generation();
        let started = Instant::now();
        let found = client::lookup(config, &address.domain, &address.to_string()).await;
        metrics::histogram!(crate::metrics::DIRECTORY_SECONDS).record(started.elapsed());
        let found = found.inspect_err(|_| count("lookup", "unavailable"))?;
        match &found {
            Some(entry) => {
                count("lookup", "found");
                self.cache.put_entry(address, entry, since);
            }
            None => count("lookup", "not_found"),
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
            count("login", "cached");
            return Ok(LoginResult::Ok(entry));
        }
        let since = self.cache.generation();
        let started = Instant::now();
        let result = client::login(config, &address.domain, &address.to_string(), password).await;
        metrics::histogram!(crate::metrics::DIRECTORY_SECONDS).record(started.elapsed());
        let result = result.inspect_err(|_| count("login", "unavailable"))?;
        match &result {
            LoginResult::Ok(entry) => {
                count("login", "ok");
                self.cache.put_login(address, password, entry, since);
                self.cache.put_entry(address, entry, since);
            }
            LoginResult::Refused => count("login", "refused"),
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
