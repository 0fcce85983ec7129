//! Credentials: login names, aliases, throttling, and the password check itself (bounded and
//! cached in `auth.rs`); SMTP AUTH. A domain bound to a directory has its logins verified
//! there instead (`directory.rs`), under the same throttle and lock checks.

use crate::throttle;

use super::*;

impl Store {
    /// Checks credentials: `user` is a full address or alias, or a bare mailbox name when
    /// exactly one domain is hosted. An alias logs in with one of its targets' passwords and
    /// means that target. Failures are throttled cluster-wide per (name, client IP), per IP and
    /// per name (`throttle.rs`); only the first locks, and only failures are held back.
    pub(super) async fn check_credentials(
        &self,
        user: &str,
        password: &str,
        client_ip: &str,
    ) -> Result<Address> {
        Ok(self.check_login(user, password, client_ip).await?.0)
    }

    /// [`Store::check_credentials`], with the aliases a directory gave for the user (none for
    /// a password-file domain). A directory domain's logins are the directory's to verify
    /// (`directory.rs`); its failures to answer are not failed logins.
    async fn check_login(
        &self,
        user: &str,
        password: &str,
        client_ip: &str,
    ) -> Result<(Address, Vec<Address>)> {
        let attempt = throttle::Attempt::new(&self.throttle_name(user), client_ip);
        if self.inner.throttle.check(&attempt) == throttle::Verdict::Refuse {
            metrics::counter!(crate::metrics::THROTTLE_EVENTS, "event" => "refused").increment(1);
            tracing::warn!(%user, %client_ip, "login refused: too many failures for this name from this address");
            return Err(StoreError::Throttled);
        }
        let login = self.login_address(&self.state(), user);
        if let Some(addr) = &login
            && let Some(config) = self.directory_of(&addr.domain)
        {
            return self
                .directory_credentials(&config, addr, password, &attempt)
                .await;
        }
        let candidates: Vec<(Address, String)> = {
            let state = self.state();
            login
                .and_then(|a| state.targets(&a))
                .unwrap_or_default()
                .into_iter()
                .filter_map(|a| {
                    let hash = state.mailboxes.get(&a)?.password_hash.clone();
                    // No local password: a directory user's mailbox, or one made by an
                    // import before `mailbox passwd`: nothing to log in with here.
                    (!hash.is_empty()).then_some((a, hash))
                })
                .collect()
        };
        if candidates.is_empty() {
            // Same cost as a real check.
            self.inner.credentials.verify_nobody(password).await;
        }
        for (addr, hash) in candidates {
            if self
                .inner
                .credentials
                .verify(&addr, password, &hash)
                .await?
            {
                self.inner.throttle.succeeded(&attempt);
                if self.state().is_locked(&addr) {
                    return Err(StoreError::Locked(addr.to_string()));
                }
                return Ok((addr, Vec::new()));
            }
        }
        Err(self.login_failed(&attempt).await)
    }

    /// A refused login: counted in the throttle, answered after its delay.
    pub(super) async fn login_failed(&self, attempt: &throttle::Attempt) -> StoreError {
        let delay = self.inner.throttle.failed(attempt);
        if !delay.is_zero() {
            metrics::counter!(crate::metrics::THROTTLE_EVENTS, "event" => "delayed").increment(1);
        }
        tracing::info!(?attempt, ?delay, "login failed");
        tokio::time::sleep(delay).await;
        StoreError::BadCredentials
    }

    /// SMTP AUTH: the mailbox and every address it may send as (itself and its aliases).
    pub async fn authenticate(
        &self,
        user: &str,
        password: &str,
        client_ip: &str,
    ) -> Result<(Address, Vec<String>)> {
        let (addr, directory_aliases) = self.check_login(user, password, client_ip).await?;
        let state = self.state();
        let mut senders = vec![addr.to_string()];
        // The user's aliases in the directory, where they are addresses of a hosted domain.
        senders.extend(
            (directory_aliases.iter())
                .filter(|a| state.domain_hosted(&a.domain))
                .map(|a| a.to_string()),
        );
        senders.extend(
            state
                .aliases
                .iter()
                .filter(|(_, targets)| targets.contains(&addr))
                .map(|(alias, _)| alias.to_string()),
        );
        Ok((addr, senders))
    }

    /// The name a login counts against in the throttle: one spelling per mailbox or alias
    /// (`carol`, `Carol@Example.test` → `carol@example.test`), else the name as typed.
    fn throttle_name(&self, user: &str) -> String {
        match self.login_address(&self.state(), user) {
            Some(addr) => addr.to_string(),
            None => user.to_lowercase(),
        }
    }

    /// `mailrootctl throttle list|clear [ADDRESS|IP]`: which entries an argument means.
    fn throttle_filter(&self, raw: &str) -> Result<throttle::Filter> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(throttle::Filter::All);
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(StoreError::InvalidArgument(format!(
                "{raw:?} is neither a login name nor an IP address"
            )));
        }
        let ip = throttle::canonical_ip(raw);
        Ok(if ip.is_empty() {
            throttle::Filter::User(self.throttle_name(raw))
        } else {
            throttle::Filter::Ip(ip)
        })
    }

    /// The throttle entries of a login name or client IP (all for "").
    pub fn throttle_list(&self, filter: &str) -> Result<Vec<throttle::EntryView>> {
        Ok(self.inner.throttle.list(&self.throttle_filter(filter)?))
    }

    /// Forgets the throttle entries of a login name or client IP (all for ""), lifting their
    /// lockouts; returns how many there were.
    pub fn throttle_clear(&self, filter: &str) -> Result<usize> {
        let filter = self.throttle_filter(filter)?;
        let cleared = self.inner.throttle.clear(&filter);
        tracing::info!(?filter, cleared, "throttle entries cleared by admin");
        Ok(cleared)
    }

    pub(super) fn login_address(&self, state: &State, user: &str) -> Option<Address> {
        if user.contains('@') {
            return Address::parse(user).ok();
        }
        let mut domains = state.domains.keys();
        match (domains.next(), domains.next()) {
            (Some(only), None) => Some(Address {
                local: names::local_part(user).ok()?,
                domain: only.clone(),
            }),
            _ => None,
        }
    }
}
