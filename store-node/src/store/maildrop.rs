//! POP3 maildrops: the login that grants the lease, message fetches, and the UPDATE-state
//! commit whose deletes are fenced by the lease (`leases.rs`).

use crate::objects;

use super::*;

impl Store {
    /// POP3 login: checks credentials and grants the maildrop lease to `session`, under a new
    /// epoch (the fencing token the session renews and commits with).
    pub async fn open_maildrop(
        &self,
        user: &str,
        password: &str,
        session: &str,
        node: &str,
        client_ip: &str,
    ) -> Result<(Address, u64, Vec<MessageInfo>)> {
        if session.is_empty() {
            return Err(StoreError::InvalidArgument("no session id".into()));
        }
        let addr = self.check_credentials(user, password, client_ip).await?;
        let epoch = self.next_epoch().await?;
        {
            let mut state = self.state();
            if state.is_locked(&addr) {
                return Err(StoreError::Locked(addr.to_string()));
            }
            self.check_login_delay(&state, &addr)?;
            state.grant(&addr, session, node, epoch, self.inner.lease_ttl)?;
            state.last_login.insert(addr.clone(), Instant::now());
        }
        // Retention, under the new lease and before the listing (`retention.rs`).
        if let Err(e) = self.expire_at_login(&addr).await {
            let _ = self.close(&addr.to_string(), epoch);
            return Err(e);
        }
        let state = self.state();
        let messages = state
            .mailboxes
            .get(&addr)
            .map(|mb| {
                mb.messages
                    .iter()
                    .map(|(uidl, size)| MessageInfo {
                        uidl: uidl.clone(),
                        size: *size,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((addr, epoch, messages))
    }

    /// The size of a mailbox's message; None when the mailbox has no such message.
    pub(super) fn message_size(&self, addr: &Address, uidl: &str) -> Result<Option<u64>> {
        Ok(self
            .state()
            .mailboxes
            .get(addr)
            .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?
            .messages
            .get(uidl)
            .copied())
    }

    /// The message as a stream of chunks, read from storage as the stream is polled.
    pub async fn fetch_stream(
        &self,
        mailbox: &str,
        uidl: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes>>> {
        let addr = Address::parse(mailbox)?;
        let size = self
            .message_size(&addr, uidl)?
            .ok_or_else(|| StoreError::NoSuchMessage(uidl.to_string()))?;
        self.inner
            .objects
            .get_stream(&objects::message_path(&addr, uidl), size)
            .await
    }

    pub async fn fetch(&self, mailbox: &str, uidl: &str) -> Result<Bytes> {
        let addr = Address::parse(mailbox)?;
        let exists = self
            .state()
            .mailboxes
            .get(&addr)
            .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?
            .messages
            .contains_key(uidl);
        if !exists {
            return Err(StoreError::NoSuchMessage(uidl.to_string()));
        }
        self.inner
            .objects
            .get(&objects::message_path(&addr, uidl))
            .await
    }

    /// POP3 UPDATE state (RFC 1939 §6): removes the given messages durably, if the lease
    /// granted under `epoch` is still the maildrop's (fencing, atomic with the deletes: see
    /// `leases.rs`). Unknown UIDLs (already removed) are skipped, so a retried commit is
    /// harmless. `retrieved`: the messages the session retrieved whole, whose retention period
    /// starts now (`retention.rs`), recorded inside the same fence.
    pub async fn commit(
        &self,
        mailbox: &str,
        epoch: u64,
        delete: &[String],
        retrieved: &[String],
    ) -> Result<u32> {
        let addr = Address::parse(mailbox)?;
        let _committing = self.begin_commit(&addr, epoch)?;
        let present: Vec<&String> = {
            let state = self.state();
            let Some(mb) = state.mailboxes.get(&addr) else {
                return Ok(0);
            };
            delete
                .iter()
                .filter(|uidl| mb.messages.contains_key(*uidl))
                .collect()
        };
        let paths: Vec<_> = (present.iter())
            .map(|uidl| objects::message_path(&addr, uidl))
            .collect();
        // One directory sync for all of them.
        self.inner.objects.delete_many(&paths).await?;
        {
            let mut state = self.state();
            for uidl in &present {
                state.remove_message(&addr, uidl);
            }
        }
        self.record_retrieved(&addr, retrieved).await?;
        Ok(present.len() as u32)
    }
}
