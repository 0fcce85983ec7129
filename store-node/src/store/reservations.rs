//! Quota bookkeeping: checks, reservations and usage.
//!
//! A delivery holds its space as a [`Reservation`]: taken under the state lock together with
//! the check (so concurrent deliveries can never overshoot a limit), turned into usage by
//! [`Reservation::settle`] once the copy is durable, and given back by `Drop` in every other
//! case — a failed write, a cancelled task, a mailbox deleted while its copy was written. No
//! path has to remember to release: "exact" holds while running, not only after a restart.

use super::*;

/// Space held in a mailbox and its domain for one copy being written.
#[must_use = "dropping a reservation gives its space back"]
pub(super) struct Reservation {
    inner: Arc<Inner>,
    addr: Address,
    size: u64,
    held: bool,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("addr", &self.addr)
            .field("size", &self.size)
            .field("held", &self.held)
            .finish()
    }
}

impl Store {
    /// Checks every quota for `size` more octets in `addr` and reserves them in one step.
    pub(super) fn reserve(
        &self,
        addr: &Address,
        size: u64,
    ) -> Result<std::result::Result<Reservation, QuotaCheck>> {
        let mut state = self.state();
        let check = state.reserve(addr, size)?;
        if check != QuotaCheck::Fits {
            return Ok(Err(check));
        }
        Ok(Ok(Reservation {
            inner: self.inner.clone(),
            addr: addr.clone(),
            size,
            held: true,
        }))
    }

    /// Reserves `size` octets whatever the quotas say: an import told to go beyond them
    /// (`import.rs`, `--over-quota=allow`). Usage then shows the overshoot; deliveries keep
    /// being refused until it is gone.
    pub(super) fn reserve_beyond_quota(&self, addr: &Address, size: u64) -> Result<Reservation> {
        self.state().hold(addr, size)?;
        Ok(Reservation {
            inner: self.inner.clone(),
            addr: addr.clone(),
            size,
            held: true,
        })
    }
}

impl Reservation {
    /// The copy `uidl` is durable: the reservation becomes usage. `None` when the mailbox was
    /// deleted meanwhile (the space goes back to the domain; the caller removes the orphan
    /// copy); otherwise whether the mailbox just crossed the warning threshold.
    pub(super) fn settle(mut self, uidl: &str) -> Option<bool> {
        let mut state = lock_state(&self.inner);
        self.held = false;
        state.release(&self.addr, self.size);
        if !state.mailboxes.contains_key(&self.addr) {
            return None;
        }
        Some(state.add_message(&self.addr, uidl, self.size))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held {
            lock_state(&self.inner).release(&self.addr, self.size);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QuotaCheck {
    Fits,
    Full,
    TooBig,
}

/// Every quota refusal (RCPT with SIZE, or a copy at delivery) is decided in
/// [`State::quota_check`] and counted here, by the limit that refused it.
fn refused(check: QuotaCheck, scope: &'static str) -> QuotaCheck {
    let reason = match check {
        QuotaCheck::TooBig => "too_big",
        _ => "full",
    };
    metrics::counter!(crate::metrics::QUOTA_REFUSALS, "scope" => scope, "reason" => reason)
        .increment(1);
    check
}

impl State {
    pub(super) fn quota_check(&self, addr: &Address, size: u64) -> QuotaCheck {
        let (Some(mb), Some(dom)) = (self.mailboxes.get(addr), self.domains.get(&addr.domain))
        else {
            return QuotaCheck::Fits;
        };
        let limits = [
            ("mailbox", mb.quota, mb.used + mb.reserved),
            ("domain", dom.quota, dom.used + dom.reserved),
        ];
        if let Some(&(scope, ..)) = limits.iter().find(|(_, q, _)| q.is_some_and(|q| size > q)) {
            return refused(QuotaCheck::TooBig, scope);
        }
        if let Some(&(scope, ..)) = limits
            .iter()
            .find(|(_, q, used)| q.is_some_and(|q| used + size > q))
        {
            return refused(QuotaCheck::Full, scope);
        }
        QuotaCheck::Fits
    }

    /// Check and reserve in one step (the caller holds the state lock).
    pub(super) fn reserve(&mut self, addr: &Address, size: u64) -> Result<QuotaCheck> {
        let check = self.quota_check(addr, size);
        if check == QuotaCheck::Fits {
            self.hold(addr, size)?;
        }
        Ok(check)
    }

    /// Adds `size` to the mailbox's and its domain's reservations, unchecked.
    fn hold(&mut self, addr: &Address, size: u64) -> Result<()> {
        let mb = self
            .mailboxes
            .get_mut(addr)
            .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
        mb.reserved += size;
        if let Some(dom) = self.domains.get_mut(&addr.domain) {
            dom.reserved += size;
        }
        Ok(())
    }

    pub(super) fn release(&mut self, addr: &Address, size: u64) {
        if let Some(mb) = self.mailboxes.get_mut(addr) {
            mb.reserved = mb.reserved.saturating_sub(size);
        }
        if let Some(dom) = self.domains.get_mut(&addr.domain) {
            dom.reserved = dom.reserved.saturating_sub(size);
        }
    }

    /// Adds a stored message to the usage (start-up, and [`Reservation::settle`]). Returns
    /// true when the mailbox just crossed the warning threshold.
    pub(super) fn add_message(&mut self, addr: &Address, uidl: &str, size: u64) -> bool {
        let Some(mb) = self.mailboxes.get_mut(addr) else {
            return false;
        };
        if mb.messages.insert(uidl.to_string(), size).is_none() {
            mb.used += size;
            if let Some(dom) = self.domains.get_mut(&addr.domain) {
                dom.used += size;
            }
        }
        match mb.quota {
            Some(q) if !mb.warned && mb.used * 100 >= q * QUOTA_WARNING_PERCENT => {
                mb.warned = true;
                true
            }
            _ => false,
        }
    }

    pub(super) fn remove_message(&mut self, addr: &Address, uidl: &str) {
        let Some(mb) = self.mailboxes.get_mut(addr) else {
            return;
        };
        if let Some(size) = mb.messages.remove(uidl) {
            mb.retrieved.remove(uidl);
            mb.used -= size;
            if let Some(dom) = self.domains.get_mut(&addr.domain) {
                dom.used -= size;
            }
            if mb
                .quota
                .is_some_and(|q| mb.used * 100 < q * QUOTA_WARNING_PERCENT)
            {
                mb.warned = false;
            }
        }
    }
}

impl Store {
    /// Octets reserved right now by copies being written: (the mailbox's, its domain's).
    pub fn reserved(&self, mailbox: &str) -> Result<(u64, u64)> {
        let addr = Address::parse(mailbox)?;
        let state = self.state();
        let mb = state.mailboxes.get(&addr).map_or(0, |m| m.reserved);
        let dom = state
            .domains
            .get(&addr.domain)
            .ok_or_else(|| StoreError::UnknownDomain(addr.domain.clone()))?
            .reserved;
        Ok((mb, dom))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Durability;

    async fn store(dir: &tempfile::TempDir) -> Store {
        let objects = Objects::open(dir.path().to_str().unwrap(), Durability::GroupCommit).unwrap();
        let store = Store::open(
            objects,
            "5f0c1a52-7a39-4f7e-9d2b-0a4c4d2e8b11",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        store.add_domain("example.test").await.unwrap();
        store.add_mailbox("a@example.test", "pw").await.unwrap();
        store
            .set_quota("a@example.test", false, Some(100))
            .await
            .unwrap();
        store
            .set_quota("example.test", true, Some(150))
            .await
            .unwrap();
        store
    }

    fn a() -> Address {
        Address::parse("a@example.test").unwrap()
    }

    #[tokio::test]
    async fn a_dropped_reservation_gives_its_space_back_to_mailbox_and_domain() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let r = store.reserve(&a(), 60).unwrap().unwrap();
        assert_eq!(store.reserved("a@example.test").unwrap(), (60, 60));
        // Check and reserve are one step: 60 + 60 > 100 is refused while the first is held.
        assert_eq!(
            store.reserve(&a(), 60).unwrap().unwrap_err(),
            QuotaCheck::Full
        );
        assert_eq!(
            store.reserve(&a(), 101).unwrap().unwrap_err(),
            QuotaCheck::TooBig
        );
        drop(r);
        assert_eq!(store.reserved("a@example.test").unwrap(), (0, 0));
        let r = store.reserve(&a(), 60).unwrap().unwrap();
        r.settle("m1").unwrap();
        assert_eq!(store.reserved("a@example.test").unwrap(), (0, 0));
        assert_eq!(
            store.show_quota("a@example.test", false).unwrap(),
            (Some(100), 60)
        );
        assert_eq!(
            store.show_quota("example.test", true).unwrap(),
            (Some(150), 60)
        );
    }

    #[tokio::test]
    async fn settling_into_a_deleted_mailbox_returns_the_domain_share() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let r = store.reserve(&a(), 50).unwrap().unwrap();
        store.delete_mailbox("a@example.test").await.unwrap();
        assert_eq!(r.settle("m1"), None);
        let state = store.state();
        let dom = &state.domains["example.test"];
        assert_eq!((dom.used, dom.reserved), (0, 0));
    }
}
