//! Deliveries: RCPT-time checks, storing a message for every recipient (each copy reserved,
//! written durably, then settled; see `reservations.rs`), and the quota warning.

use crate::objects;

use super::*;

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
        let writes = copies.iter().map(|(i, addr, uidl)| {
            let message = message.clone();
            async move { (*i, addr, self.store_copy(addr, uidl, message).await) }
        });
        let mut too_big = vec![false; outcomes.len()];
        for (i, addr, result) in futures::future::join_all(writes).await {
            match result? {
                QuotaCheck::Fits => {
                    outcomes[i].stored.push(addr.to_string());
                    continue;
                }
                QuotaCheck::Full => {}
                QuotaCheck::TooBig => too_big[i] = true,
            }
            outcomes[i].failed.push(addr.to_string());
        }
        for (o, too_big) in outcomes.iter_mut().zip(too_big) {
            if !o.failed.is_empty() {
                o.status = if too_big {
                    Recipient::TooBig
                } else {
                    Recipient::MailboxFull
                };
            }
        }
        Ok(outcomes)
    }

    /// One copy: reserve, write durably, settle. A storage error is returned as an error (the
    /// whole delivery is then answered "try later"; copies already written are found again by
    /// the retry through their UIDL).
    pub(super) async fn store_copy(
        &self,
        addr: &Address,
        uidl: &str,
        message: Bytes,
    ) -> Result<QuotaCheck> {
        let size = message.len() as u64;
        {
            let mut state = self.state();
            let mb = state
                .mailboxes
                .get(addr)
                .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
            if mb.messages.contains_key(uidl) {
                return Ok(QuotaCheck::Fits);
            }
            let check = state.reserve(addr, size)?;
            if check != QuotaCheck::Fits {
                return Ok(check);
            }
        }
        let path = objects::message_path(addr, uidl);
        if let Err(e) = self.inner.objects.put(&path, message).await {
            self.state().release(addr, size);
            return Err(e);
        }
        let warn = {
            let mut state = self.state();
            if !state.mailboxes.contains_key(addr) {
                // Deleted while we wrote: the start-up sweep removes the object.
                return Err(StoreError::UnknownMailbox(addr.to_string()));
            }
            state.settle(addr, uidl, size)
        };
        if warn {
            self.deliver_quota_warning(addr).await;
        }
        Ok(QuotaCheck::Fits)
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
            Ok(QuotaCheck::Fits) => {
                tracing::info!(mailbox = %addr, used, quota, "quota warning delivered")
            }
            Ok(_) => tracing::info!(mailbox = %addr, "no room left for the quota warning"),
            Err(e) => tracing::warn!(mailbox = %addr, error = %e, "quota warning not delivered"),
        }
    }
}
