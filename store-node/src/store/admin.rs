//! Administration (`mailrootctl`): domains, mailboxes, passwords, aliases, quotas and locks.
//! Every change is written durably first, then applied to the index.

use crate::objects;

use super::*;

impl Store {
    pub async fn add_domain(&self, raw: &str) -> Result<String> {
        self.add_domain_with(raw, None).await
    }

    /// A new domain, bound to a directory from the start when `directory` is given.
    pub async fn add_domain_with(
        &self,
        raw: &str,
        directory: Option<&proto::v1::DirectoryConfig>,
    ) -> Result<String> {
        let name = names::domain(raw)?;
        let directory = directory
            .map(|d| DirectoryConfig::from_proto(d, None))
            .transpose()?;
        let _admin = self.inner.admin.lock().await;
        if self.state().domains.contains_key(&name) {
            return Err(StoreError::DomainExists(name));
        }
        let domain = Domain {
            directory: directory.map(Arc::new),
            ..Domain::default()
        };
        self.write_domain(&name, &domain).await?;
        self.state().domains.insert(name.clone(), domain);
        self.inner.settings.directory_changed();
        Ok(name)
    }

    pub async fn delete_domain(&self, raw: &str, force: bool) -> Result<()> {
        let name = names::domain(raw)?;
        let _admin = self.inner.admin.lock().await;
        let (members, aliases) = {
            let state = self.state();
            if !state.domains.contains_key(&name) {
                return Err(StoreError::UnknownDomain(name));
            }
            // An alias elsewhere that points into this domain keeps it alive (its own aliases
            // go with it).
            if let Some(alias) = state
                .aliases_targeting(|t| t.domain == name)
                .find(|alias| alias.domain != name)
            {
                return Err(StoreError::AliasTarget {
                    name: format!("domain {name}"),
                    alias: alias.to_string(),
                });
            }
            let members: Vec<Address> = state
                .mailboxes
                .keys()
                .filter(|a| a.domain == name)
                .cloned()
                .collect();
            let aliases: Vec<Address> = state
                .aliases
                .keys()
                .filter(|a| a.domain == name)
                .cloned()
                .collect();
            (members, aliases)
        };
        let empty = members.is_empty() && aliases.is_empty();
        if !empty && !force {
            return Err(StoreError::DomainNotEmpty(
                name,
                members.len() + aliases.len(),
            ));
        }
        // Aliases first (they point at the mailboxes), then mailboxes, then the domain; a crash
        // anywhere leaves a consistent, smaller domain and the command can be repeated.
        for alias in &aliases {
            self.inner
                .objects
                .delete(&objects::alias_path(alias))
                .await?;
            self.state().aliases.remove(alias);
            self.inner.settings.directory_changed();
        }
        for addr in &members {
            self.remove_mailbox(addr).await?;
        }
        // Its DKIM key before the domain record (`dkim.rs`, crash safety).
        self.remove_dkim_key(&name).await?;
        self.inner
            .objects
            .delete(&objects::domain_path(&name))
            .await?;
        self.state().domains.remove(&name);
        self.inner.directories.forget_domain(&name);
        self.inner.settings.directory_changed();
        self.inner
            .settings
            .forget_domain(&self.inner.objects, &name)
            .await?;
        Ok(())
    }

    pub fn list_domains(&self) -> Vec<String> {
        self.state().domains.keys().cloned().collect()
    }

    pub async fn add_mailbox(&self, raw: &str, password: &str) -> Result<String> {
        let addr = Address::parse(raw)?;
        check_password(password)?;
        let hash = self.hash(password).await?;
        let _admin = self.inner.admin.lock().await;
        {
            let state = self.state();
            match state.domains.get(&addr.domain) {
                None => return Err(StoreError::UnknownDomain(addr.domain.clone())),
                Some(d) if d.directory.is_some() => return Err(directory_owns(&addr)),
                Some(_) => {}
            }
            if state.mailboxes.contains_key(&addr) {
                return Err(StoreError::MailboxExists(addr.to_string()));
            }
            if state.aliases.contains_key(&addr) {
                return Err(StoreError::AliasExists(addr.to_string()));
            }
        }
        self.create_mailbox(&addr, Mailbox::new(hash)).await?;
        Ok(addr.to_string())
    }

    /// Loads a mailbox for an admin change, applies `change`, writes it, then installs it.
    pub(super) async fn update_mailbox(
        &self,
        addr: &Address,
        change: impl FnOnce(&mut Mailbox),
    ) -> Result<()> {
        let mut mb = self
            .state()
            .mailboxes
            .get(addr)
            .cloned()
            .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
        change(&mut mb);
        self.write_mailbox(addr, &mb).await?;
        if let Some(current) = self.state().mailboxes.get_mut(addr) {
            // Only the admin-owned fields: messages and usage moved on meanwhile.
            current.password_hash = mb.password_hash;
            current.quota = mb.quota;
            current.locked = mb.locked;
        }
        Ok(())
    }

    pub(super) async fn update_domain(
        &self,
        name: &str,
        change: impl FnOnce(&mut Domain),
    ) -> Result<()> {
        let mut dom = self
            .state()
            .domains
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownDomain(name.to_string()))?;
        change(&mut dom);
        self.write_domain(name, &dom).await?;
        if let Some(current) = self.state().domains.get_mut(name) {
            current.quota = dom.quota;
            current.locked = dom.locked;
            current.directory = dom.directory;
        }
        Ok(())
    }

    pub async fn set_password(&self, raw: &str, password: &str) -> Result<()> {
        let addr = Address::parse(raw)?;
        check_password(password)?;
        if self.directory_of(&addr.domain).is_some() {
            return Err(directory_owns(&addr));
        }
        let hash = self.hash(password).await?;
        let _admin = self.inner.admin.lock().await;
        self.update_mailbox(&addr, |mb| mb.password_hash = hash)
            .await?;
        self.inner.credentials.forget(&addr);
        Ok(())
    }

    pub async fn delete_mailbox(&self, raw: &str) -> Result<()> {
        let addr = Address::parse(raw)?;
        let _admin = self.inner.admin.lock().await;
        {
            let state = self.state();
            if !state.mailboxes.contains_key(&addr) {
                return Err(StoreError::UnknownMailbox(addr.to_string()));
            }
            if let Some(alias) = state.aliases_targeting(|t| *t == addr).next() {
                return Err(StoreError::AliasTarget {
                    name: format!("mailbox {addr}"),
                    alias: alias.to_string(),
                });
            }
        }
        self.remove_mailbox(&addr).await
    }

    /// Removes the metadata first (the mailbox is gone from that moment, also after a crash),
    /// then its messages; a crash in between leaves messages without metadata, which `open`
    /// sweeps.
    pub(super) async fn remove_mailbox(&self, addr: &Address) -> Result<()> {
        self.inner
            .objects
            .delete(&objects::mailbox_meta_path(addr))
            .await?;
        let removed = {
            let mut state = self.state();
            state.leases.remove(addr);
            state.last_login.remove(addr);
            let removed = state.mailboxes.remove(addr);
            if let (Some(mb), Some(dom)) = (&removed, state.domains.get_mut(&addr.domain)) {
                dom.used -= mb.used;
            }
            removed
        };
        self.inner.credentials.forget(addr);
        self.inner.directories.forget_mailbox(addr);
        self.inner.settings.directory_changed();
        if let Some(mb) = removed {
            let paths: Vec<_> = (mb.messages.keys())
                .map(|uidl| objects::message_path(addr, uidl))
                .collect();
            self.inner.objects.delete_many(&paths).await?;
            // The retrieval record and the import markers last: without messages they name
            // nothing (`retention.rs`, `import.rs`).
            self.inner
                .objects
                .delete(&super::retention::record_path_in(&addr.domain, &addr.local))
                .await?;
            super::import::remove_markers(&self.inner.objects, &addr.domain, &addr.local).await?;
        }
        Ok(())
    }

    pub fn list_mailboxes(&self, domain: Option<&str>) -> Result<Vec<String>> {
        let domain = domain.map(names::domain).transpose()?;
        let state = self.state();
        if let Some(d) = &domain
            && !state.domains.contains_key(d)
        {
            return Err(StoreError::UnknownDomain(d.clone()));
        }
        Ok(state
            .mailboxes
            .keys()
            .filter(|a| domain.as_ref().is_none_or(|d| &a.domain == d))
            .map(|a| a.to_string())
            .collect())
    }

    /// `limit` None = unlimited. A limit below current usage is allowed (no new mail fits).
    pub async fn set_quota(&self, target: &str, domain: bool, limit: Option<u64>) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        if domain {
            let name = names::domain(target)?;
            self.update_domain(&name, |d| d.quota = limit).await
        } else {
            let addr = Address::parse(target)?;
            self.update_mailbox(&addr, |mb| {
                mb.quota = limit;
                mb.warned = false;
            })
            .await
        }
    }

    /// (limit, used) of a mailbox or domain.
    pub fn show_quota(&self, target: &str, domain: bool) -> Result<(Option<u64>, u64)> {
        let state = self.state();
        if domain {
            let name = names::domain(target)?;
            let d = state
                .domains
                .get(&name)
                .ok_or(StoreError::UnknownDomain(name))?;
            Ok((d.quota, d.used))
        } else {
            let addr = Address::parse(target)?;
            let mb = state
                .mailboxes
                .get(&addr)
                .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
            Ok((mb.quota, mb.used))
        }
    }

    /// Locks or unlocks a domain, a mailbox, or (through its targets) an alias.
    pub async fn set_lock(&self, target: &str, domain: bool, locked: bool) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        if domain {
            let name = names::domain(target)?;
            self.update_domain(&name, |d| d.locked = locked).await?;
            self.forget_domain_logins(&name);
            return Ok(());
        }
        let addr = Address::parse(target)?;
        let targets = self
            .state()
            .targets(&addr)
            .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
        for t in &targets {
            self.update_mailbox(t, |mb| mb.locked = locked).await?;
            self.inner.credentials.forget(t);
            self.inner.directories.forget_mailbox(t);
        }
        Ok(())
    }

    pub async fn add_alias(&self, raw: &str, raw_targets: &[String]) -> Result<()> {
        let alias = Address::parse(raw)?;
        if raw_targets.is_empty() {
            return Err(StoreError::InvalidArgument(
                "an alias needs at least one target".into(),
            ));
        }
        let targets = raw_targets
            .iter()
            .map(|t| Address::parse(t))
            .collect::<Result<Vec<_>>>()?;
        let _admin = self.inner.admin.lock().await;
        {
            let state = self.state();
            if !state.domains.contains_key(&alias.domain) {
                return Err(StoreError::UnknownDomain(alias.domain.clone()));
            }
            if state.mailboxes.contains_key(&alias) {
                return Err(StoreError::MailboxExists(alias.to_string()));
            }
            if state.aliases.contains_key(&alias) {
                return Err(StoreError::AliasExists(alias.to_string()));
            }
            if let Some(missing) = targets.iter().find(|t| !state.mailboxes.contains_key(*t)) {
                return Err(StoreError::UnknownMailbox(missing.to_string()));
            }
        }
        let record = AliasRecord {
            address: alias.to_string(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
        };
        self.put_json(&objects::alias_path(&alias), &record).await?;
        self.state().aliases.insert(alias, targets);
        self.inner.settings.directory_changed();
        Ok(())
    }

    pub async fn delete_alias(&self, raw: &str) -> Result<()> {
        let alias = Address::parse(raw)?;
        let _admin = self.inner.admin.lock().await;
        if !self.state().aliases.contains_key(&alias) {
            return Err(StoreError::UnknownAlias(alias.to_string()));
        }
        self.inner
            .objects
            .delete(&objects::alias_path(&alias))
            .await?;
        self.state().aliases.remove(&alias);
        self.inner.settings.directory_changed();
        Ok(())
    }

    pub fn list_aliases(&self, domain: Option<&str>) -> Result<Vec<(String, Vec<String>)>> {
        let domain = domain.map(names::domain).transpose()?;
        Ok(self
            .state()
            .aliases
            .iter()
            .filter(|(a, _)| domain.as_ref().is_none_or(|d| &a.domain == d))
            .map(|(a, t)| (a.to_string(), t.iter().map(|x| x.to_string()).collect()))
            .collect())
    }

    pub(super) async fn hash(&self, password: &str) -> Result<String> {
        self.inner.credentials.hash(password).await
    }

    /// Cached logins of a domain's mailboxes (password and directory caches) are gone: the
    /// next login of each is checked again.
    pub(super) fn forget_domain_logins(&self, name: &str) {
        let members: Vec<Address> = (self.state().mailboxes.keys())
            .filter(|a| a.domain == name)
            .cloned()
            .collect();
        for addr in &members {
            self.inner.credentials.forget(addr);
        }
        self.inner.directories.forget_domain(name);
    }

    /// Makes a new mailbox durable, installs it, and tells the front-ends' recipient caches.
    pub(super) async fn create_mailbox(&self, addr: &Address, mailbox: Mailbox) -> Result<()> {
        self.write_mailbox(addr, &mailbox).await?;
        self.state().mailboxes.insert(addr.clone(), mailbox);
        self.inner.settings.directory_changed();
        Ok(())
    }

    pub(super) async fn write_mailbox(&self, addr: &Address, mb: &Mailbox) -> Result<()> {
        let record = MailboxRecord {
            address: addr.to_string(),
            password_hash: mb.password_hash.clone(),
            quota: mb.quota,
            locked: mb.locked,
        };
        self.put_json(&objects::mailbox_meta_path(addr), &record)
            .await
    }

    pub(super) async fn write_domain(&self, name: &str, d: &Domain) -> Result<()> {
        let record = DomainRecord {
            name: name.to_string(),
            quota: d.quota,
            locked: d.locked,
            directory: d.directory.as_deref().cloned(),
        };
        self.put_json(&objects::domain_path(name), &record).await
    }

    pub(super) async fn put_json<T: Serialize>(
        &self,
        path: &object_store::path::Path,
        v: &T,
    ) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(v).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.inner.objects.put(path, Bytes::from(bytes)).await
    }
}

/// `mailbox add` / `passwd` in a domain whose users and passwords are in a directory.
fn directory_owns(addr: &Address) -> StoreError {
    StoreError::InvalidArgument(format!(
        "{} takes its users and passwords from its directory: {addr}'s mailbox is made at its \
         first delivery or login, its password is changed in the directory",
        addr.domain
    ))
}

fn check_password(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(StoreError::InvalidArgument("the password is empty".into()));
    }
    if password.chars().any(|c| c.is_control()) {
        return Err(StoreError::InvalidArgument(
            "the password contains control characters".into(),
        ));
    }
    Ok(())
}
