//! Quota bookkeeping: checks, reservations and usage.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QuotaCheck {
    Fits,
    Full,
    TooBig,
}

impl State {
    pub(super) fn quota_check(&self, addr: &Address, size: u64) -> QuotaCheck {
        let (Some(mb), Some(dom)) = (self.mailboxes.get(addr), self.domains.get(&addr.domain))
        else {
            return QuotaCheck::Fits;
        };
        let limits = [
            (mb.quota, mb.used + mb.reserved),
            (dom.quota, dom.used + dom.reserved),
        ];
        if limits.iter().any(|(q, _)| q.is_some_and(|q| size > q)) {
            return QuotaCheck::TooBig;
        }
        if limits
            .iter()
            .any(|(q, used)| q.is_some_and(|q| used + size > q))
        {
            return QuotaCheck::Full;
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

    /// Turns a reservation into a stored message. Returns true when the mailbox just crossed
    /// the warning threshold.
    pub(super) fn settle(&mut self, addr: &Address, uidl: &str, size: u64) -> bool {
        self.release(addr, size);
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
