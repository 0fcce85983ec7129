//! The maildrop lease table: RFC 1939 §8 exclusive access for the whole cluster.

use super::*;

#[derive(Debug, Clone)]
pub(super) struct Lease {
    pub(super) session: String,
    pub(super) node: String,
    pub(super) granted: Instant,
    pub(super) expires: Instant,
}

impl State {
    pub(super) fn lease_holder(&self, addr: &Address, now: Instant) -> Option<&Lease> {
        self.leases.get(addr).filter(|l| l.expires > now)
    }
}

impl Store {
    /// Extends the lease of `session`. A lease that expired without anyone else taking it is
    /// taken again (this also re-establishes leases after a store restart); one held by another
    /// session is lost for good.
    pub fn renew(&self, mailbox: &str, session: &str) -> Result<()> {
        let addr = Address::parse(mailbox)?;
        let now = Instant::now();
        let mut state = self.state();
        if let Some(holder) = state.lease_holder(&addr, now)
            && holder.session != session
        {
            return Err(StoreError::LeaseLost(addr.to_string()));
        }
        let ttl = self.inner.lease_ttl;
        let lease = state.leases.entry(addr).or_insert_with(|| Lease {
            session: session.to_string(),
            node: String::new(),
            granted: now,
            expires: now,
        });
        lease.session = session.to_string();
        lease.expires = now + ttl;
        Ok(())
    }

    pub fn close(&self, mailbox: &str, session: &str) -> Result<()> {
        let addr = Address::parse(mailbox)?;
        let mut state = self.state();
        if state
            .leases
            .get(&addr)
            .is_some_and(|l| l.session == session)
        {
            state.leases.remove(&addr);
        }
        Ok(())
    }

    pub(super) fn check_fence(&self, addr: &Address, session: &str) -> Result<()> {
        let state = self.state();
        match state.lease_holder(addr, Instant::now()) {
            Some(l) if l.session == session => Ok(()),
            _ => Err(StoreError::LeaseLost(addr.to_string())),
        }
    }

    /// `mailrootctl mailbox unlock-session`: frees a maildrop held by a (possibly dead) session.
    pub fn break_session(&self, raw: &str) -> Result<bool> {
        let addr = Address::parse(raw)?;
        let mut state = self.state();
        let targets = state
            .targets(&addr)
            .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
        let mut broke = false;
        for t in targets {
            broke |= state.leases.remove(&t).is_some();
        }
        Ok(broke)
    }
}
