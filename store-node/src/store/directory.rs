//! Domains bound to a directory (LDAP, `crate::directory`): what the directory's answers mean
//! for the store. A directory domain's users, passwords, aliases and disabled accounts live
//! in the directory; the store keeps their mail.
//!
//! - **Login**: the directory verifies it (search, then a bind as the user); local password
//!   hashes are never used in such a domain. The store's throttle and lock checks apply as
//!   for every login (`login.rs`).
//! - **Recipients**: an address of a directory domain is a local alias of that domain, else
//!   whatever the directory says — a user's address or one of its aliases (the alias
//!   attribute) resolves to the user's mailbox; an address the directory does not know, or
//!   knows as disabled, is an unknown user. A mailbox that exists here but whose user left the
//!   directory gets no more mail (its stored mail stays until an admin deletes it).
//! - **Mailboxes** are made on first delivery or first login, like `mailbox add` without a
//!   password (quota: the default, none of its own).
//! - **Unavailable directory**: `StoreError::DirectoryUnavailable`, a temporary failure that
//!   is never turned into "no such user" or "bad password"; it does not count as a failed
//!   login in the throttle.

use crate::directory::{DirEntry, LoginResult};
use crate::throttle;

use super::*;

impl Store {
    /// The directory of a hosted domain, if it is bound to one.
    pub(super) fn directory_of(&self, domain: &str) -> Option<Arc<DirectoryConfig>> {
        self.state().domains.get(domain)?.directory.clone()
    }

    /// `mailrootctl domain set`: binds the domain to a directory, changes it, or (None)
    /// unbinds it. A request without a bind password keeps the stored one. Everything known
    /// from the old binding (cached entries and logins, cached local passwords) is forgotten
    /// at once.
    pub async fn set_domain_directory(
        &self,
        raw: &str,
        directory: Option<&proto::v1::DirectoryConfig>,
    ) -> Result<()> {
        let name = names::domain(raw)?;
        let _admin = self.inner.admin.lock().await;
        let current = self
            .state()
            .domains
            .get(&name)
            .map(|d| d.directory.clone())
            .ok_or_else(|| StoreError::UnknownDomain(name.clone()))?;
        let kept = current.as_deref().map(|c| c.bind_password.as_str());
        let new = directory
            .map(|d| DirectoryConfig::from_proto(d, kept))
            .transpose()?
            .map(Arc::new);
        self.update_domain(&name, |d| d.directory = new).await?;
        self.forget_domain_logins(&name);
        self.inner.settings.directory_changed();
        Ok(())
    }

    /// Every domain with its directory, if any (`domain list`).
    pub fn list_domain_details(&self) -> Vec<(String, Option<Arc<DirectoryConfig>>)> {
        (self.state().domains.iter())
            .map(|(name, d)| (name.clone(), d.directory.clone()))
            .collect()
    }

    /// RCPT time, for every domain: a directory domain asks its directory (`check_recipient`
    /// answers the others). The flag says the answer came from a directory, which changes
    /// without the store knowing: front-ends must not cache it.
    pub async fn lookup_recipient(&self, raw: &str, size: u64) -> Result<(Recipient, bool)> {
        let local = self.check_recipient(raw, size);
        let Ok(addr) = Address::parse(raw) else {
            return Ok((local, false));
        };
        let Some(config) = self.directory_of(&addr.domain) else {
            return Ok((local, false));
        };
        if self.state().aliases.contains_key(&addr) {
            return Ok((local, false));
        }
        let Some(entry) = self.inner.directories.lookup(&config, &addr).await? else {
            return Ok((Recipient::UnknownUser, true));
        };
        if size > 0 {
            let state = self.state();
            if state.mailboxes.contains_key(&entry.mailbox) {
                match state.quota_check(&entry.mailbox, size) {
                    QuotaCheck::Fits => {}
                    QuotaCheck::Full => return Ok((Recipient::MailboxFull, true)),
                    QuotaCheck::TooBig => return Ok((Recipient::TooBig, true)),
                }
            }
        }
        Ok((Recipient::Mailboxes(vec![entry.mailbox]), true))
    }

    /// A login to a directory domain: the directory's verdict, then the mailbox made if it is
    /// the user's first, then the store's own lock. Returns the mailbox and the user's aliases
    /// from the directory.
    pub(super) async fn directory_credentials(
        &self,
        config: &DirectoryConfig,
        addr: &Address,
        password: &str,
        attempt: &throttle::Attempt,
    ) -> Result<(Address, Vec<Address>)> {
        match self.inner.directories.login(config, addr, password).await? {
            LoginResult::Ok(DirEntry {
                mailbox, aliases, ..
            }) => {
                self.inner.throttle.succeeded(attempt);
                self.ensure_directory_mailbox(&mailbox).await?;
                if self.state().is_locked(&mailbox) {
                    return Err(StoreError::Locked(mailbox.to_string()));
                }
                Ok((mailbox, aliases))
            }
            LoginResult::Refused => Err(self.login_failed(attempt).await),
        }
    }

    /// The mailbox of a directory user, made now if this is its first delivery or login.
    pub(super) async fn ensure_directory_mailbox(&self, addr: &Address) -> Result<()> {
        if self.state().mailboxes.contains_key(addr) {
            return Ok(());
        }
        let _admin = self.inner.admin.lock().await;
        {
            let state = self.state();
            if state.mailboxes.contains_key(addr) {
                return Ok(());
            }
            if (state.domains.get(&addr.domain)).is_none_or(|d| d.directory.is_none()) {
                return Err(StoreError::UnknownMailbox(addr.to_string()));
            }
        }
        self.create_mailbox(addr, Mailbox::new(String::new()))
            .await?;
        tracing::info!(mailbox = %addr, "mailbox made for a directory user");
        Ok(())
    }
}
