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
            let mb = self
                .mailboxes
                .get_mut(addr)
                .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
            mb.reserved += size;
            if let Some(dom) = self.domains.get_mut(&addr.domain) {
                dom.reserved += size;
            }
        }
        Ok(check)
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
