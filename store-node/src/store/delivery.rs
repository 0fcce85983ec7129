//! Deliveries: RCPT-time checks, storing a message for every recipient (each copy reserved,
//! written durably, then settled; see `reservations.rs`), and the quota warning.

use crate::objects;

use super::*;

/// What became of one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Copy {
    Stored,
    Refused(QuotaCheck),
    /// The mailbox does not exist (any more): an alias pointing nowhere, or a mailbox deleted
    /// during the write.
    Gone,
}

impl Store {
    /// RCPT time: resolves the address and, with a declared size, checks every quota on the way.
    pub fn check_recipient(&self, raw: &str, size: u64) -> Recipient {
        let Some((_, dom)) = raw.rsplit_once('@') else {
            return Recipient::UnknownUser;
        };
        let Ok(dom) = names::domain(dom) else {
            return Recipient::RelayDenied;
        };
        let state = self.state();
        if !state.domain_hosted(&dom) {
            return Recipient::RelayDenied;
        }
        let Some(targets) = Address::parse(raw).ok().and_then(|a| state.targets(&a)) else {
            return Recipient::UnknownUser;
        };
        if size > 0 {
            for t in &targets {
                match state.quota_check(t, size) {
                    QuotaCheck::Fits => {}
                    QuotaCheck::Full => return Recipient::MailboxFull,
                    QuotaCheck::TooBig => return Recipient::TooBig,
                }
            }
        }
        Recipient::Mailboxes(targets)
    }

    /// Stores `message` in the mailbox of every recipient (each alias target) and returns when
    /// every copy is durable, with one outcome per recipient. The UIDL is `delivery_id` (the
    /// n-th extra copy in one mailbox, when an address and its alias are both given, gets
    /// `<id>-<n>`), so a retried delivery with the same id finds its copies present and does
    /// not store them twice. Quota is reserved before each write (see the module doc).
    pub async fn deliver(
        &self,
        delivery_id: &str,
        recipients: &[String],
        message: Bytes,
    ) -> Result<Vec<RecipientOutcome>> {
        let id = uuid::Uuid::parse_str(delivery_id)
            .map_err(|_| StoreError::InvalidArgument("delivery id is not a UUID".into()))?
            .hyphenated()
            .to_string();
        if recipients.is_empty() {
            return Err(StoreError::InvalidArgument("no recipients".into()));
        }
        // (recipient index, mailbox, uidl)
        let mut copies: Vec<(usize, Address, String)> = Vec::new();
        let mut outcomes: Vec<RecipientOutcome> = Vec::new();
        for (i, raw) in recipients.iter().enumerate() {
            let status = self.check_recipient(raw, 0);
            if let Recipient::Mailboxes(targets) = &status {
                for addr in targets {
                    let n = copies.iter().filter(|(_, a, _)| a == addr).count();
                    let uidl = if n == 0 {
                        id.clone()
                    } else {
                        format!("{id}-{n}")
                    };
                    copies.push((i, addr.clone(), uidl));
                }
            }
            outcomes.push(RecipientOutcome {
                recipient: raw.clone(),
                status,
                failed: Vec::new(),
                stored: Vec::new(),
            });
        }
        // Each copy is written by a task of its own: a caller that goes away (front-end
        // timeout or crash, client reset) cancels only the waiting, never a copy halfway
        // between reservation and settlement. A copy finished after its caller left is a
        // message whose sender got no 250: delivered, the safe direction.
        let writes = copies.iter().map(|(i, addr, uidl)| {
            let (store, addr, uidl) = (self.clone(), addr.clone(), uidl.clone());
            let task = tokio::spawn({
                let message = message.clone();
                async move { store.store_copy(&addr, &uidl, message).await }
            });
            async move { (*i, task.await) }
        });
        let mut why: Vec<Option<Recipient>> = vec![None; outcomes.len()];
        let mut storage_error = None;
        for ((i, joined), (_, addr, _)) in futures::future::join_all(writes)
            .await
            .into_iter()
            .zip(&copies)
        {
            let failure = match joined.map_err(|e| StoreError::Internal(e.to_string())) {
                Ok(Ok(Copy::Stored)) => {
                    outcomes[i].stored.push(addr.to_string());
                    continue;
                }
                Ok(Ok(Copy::Refused(QuotaCheck::TooBig))) => Recipient::TooBig,
                Ok(Ok(Copy::Refused(_))) => Recipient::MailboxFull,
                Ok(Ok(Copy::Gone)) => Recipient::UnknownUser,
                Err(e) | Ok(Err(e)) => {
                    storage_error.get_or_insert(e);
                    continue;
                }
            };
            outcomes[i].failed.push(addr.to_string());
            // A full mailbox is worth naming before a too-big or a vanished one.
            let w = &mut why[i];
            if w.is_none() || failure == Recipient::MailboxFull {
                *w = Some(failure);
            }
        }
        if let Some(e) = storage_error {
            // A copy could not be made durable: the delivery as a whole is "try later". Copies
            // that were stored are found again by a retry with the same id (their UIDL).
            return Err(e);
        }
        for (o, why) in outcomes.iter_mut().zip(why) {
            if let Some(why) = why {
                o.status = why;
            }
        }
        Ok(outcomes)
    }

    /// One copy: reserve, write durably, settle (see `reservations.rs`). A storage error is
    /// returned as an error; the reservation is given back whatever happens.
    pub(super) async fn store_copy(
        &self,
        addr: &Address,
        uidl: &str,
        message: Bytes,
    ) -> Result<Copy> {
        let size = message.len() as u64;
        let reservation = {
            let state = self.state();
            match state.mailboxes.get(addr) {
                None => return Ok(Copy::Gone),
                Some(mb) if mb.messages.contains_key(uidl) => return Ok(Copy::Stored),
                Some(_) => {}
            }
            drop(state);
            match self.reserve(addr, size) {
                Ok(Ok(r)) => r,
                Ok(Err(check)) => return Ok(Copy::Refused(check)),
                Err(StoreError::UnknownMailbox(_)) => return Ok(Copy::Gone),
                Err(e) => return Err(e),
            }
        };
        let path = objects::message_path(addr, uidl);
        self.inner.objects.put(&path, message).await?;
        let Some(warn) = reservation.settle(uidl) else {
            // The mailbox was deleted while we wrote: the copy must not outlive it (nor
            // appear in a mailbox re-created under the same name). Should this delete fail,
            // the start-up sweep removes it.
            if let Err(e) = self.inner.objects.delete(&path).await {
                tracing::warn!(mailbox = %addr, error = %e, "orphan copy of a deleted mailbox left for the start-up sweep");
            }
            return Ok(Copy::Gone);
        };
        if warn {
            self.deliver_quota_warning(addr).await;
        }
        Ok(Copy::Stored)
    }

    /// The seed left users unaware of a full mailbox; we tell them once, at the threshold.
    pub(super) async fn deliver_quota_warning(&self, addr: &Address) {
        let (used, quota) = {
            let state = self.state();
            match state.mailboxes.get(addr) {
                Some(mb) => (mb.used, mb.quota.unwrap_or(0)),
                None => return,
            }
        };
        let id = uuid::Uuid::now_v7();
        let text = format!(
            "From: MAILER-DAEMON <mailer-daemon@{domain}>\r\nTo: <{addr}>\r\nSubject: Your mailbox is almost full\r\nMessage-ID: <{id}@{domain}>\r\nAuto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nYour mailbox {addr} uses {used} of {quota} bytes ({pct}%).\r\nWhen it is full, new mail to you will be refused.\r\nPlease delete messages you no longer need.\r\n",
            domain = addr.domain,
            pct = used * 100 / quota.max(1),
        );
        match Box::pin(self.store_copy(addr, &id.to_string(), Bytes::from(text))).await {
            Ok(Copy::Stored) => {
                tracing::info!(mailbox = %addr, used, quota, "quota warning delivered")
            }
            Ok(_) => tracing::info!(mailbox = %addr, "no room left for the quota warning"),
            Err(e) => tracing::warn!(mailbox = %addr, error = %e, "quota warning not delivered"),
        }
    }
}
