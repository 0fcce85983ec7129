//! Credentials: login names, aliases, throttling, and the password check itself (bounded and
//! cached in `auth.rs`); SMTP AUTH.

use crate::throttle;

use super::*;

impl Store {
    /// Checks credentials: `user` is a full address or alias, or a bare mailbox name when
    /// exactly one domain is hosted. An alias logs in with one of its targets' passwords and
    /// means that target. Failures are throttled cluster-wide per name and client IP.
    pub(super) async fn check_credentials(
        &self,
        user: &str,
        password: &str,
        client_ip: &str,
    ) -> Result<Address> {
        let keys = throttle::keys(user, client_ip);
        if self.inner.throttle.check(&keys) == throttle::Verdict::Refuse {
            tracing::warn!(%user, %client_ip, "login refused: too many failures");
            return Err(StoreError::Throttled);
        }
        let candidates: Vec<(Address, String)> = {
            let state = self.state();
            self.login_address(&state, user)
                .and_then(|a| state.targets(&a))
                .unwrap_or_default()
                .into_iter()
                .filter_map(|a| {
                    let hash = state.mailboxes.get(&a)?.password_hash.clone();
                    Some((a, hash))
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
                self.inner.throttle.succeeded(&keys[0]);
                if self.state().is_locked(&addr) {
                    return Err(StoreError::Locked(addr.to_string()));
                }
                return Ok(addr);
            }
        }
        let delay = self.inner.throttle.failed(&keys);
        tracing::info!(%user, %client_ip, ?delay, "login failed");
        tokio::time::sleep(delay).await;
        Err(StoreError::BadCredentials)
    }

    /// SMTP AUTH: the mailbox and every address it may send as (itself and its aliases).
    pub async fn authenticate(
        &self,
        user: &str,
        password: &str,
        client_ip: &str,
    ) -> Result<(Address, Vec<String>)> {
        let addr = self.check_credentials(user, password, client_ip).await?;
        let state = self.state();
        let mut senders = vec![addr.to_string()];
        senders.extend(
            state
                .aliases
                .iter()
                .filter(|(_, targets)| targets.contains(&addr))
                .map(|(alias, _)| alias.to_string()),
        );
        Ok((addr, senders))
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
