//! Deliveries: RCPT-time checks, storing a message for every recipient (each copy reserved,
//! written durably, then settled; see `reservations.rs`), queueing it for recipients in other
//! domains (`queue/`), the DSN for recipients that could not get it (`notices.rs`), and the
//! quota warning.

use mailroot_common::dsn::{self, RecipientReport};

use crate::objects;
use crate::settings::DEFAULT_OUTBOUND_LIMIT;

use super::notices::{self, Notice, Original};
use super::queue::{EntryState, RecipientState, Ret};
use super::*;

/// RFC 3461 parameters of one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientParams {
    /// NOTIFY bits (`queue::Notify`; 0 = not given).
    pub notify: u32,
    /// ORCPT as given, or "".
    pub orcpt: String,
}

/// A message and its envelope, as the front-end hands it over at the end of DATA.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// The front-end's UUID for it, reused on retries (the UIDL and the queue id).
    pub id: String,
    /// The reverse-path ("" = null): where DSNs go.
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub message: Bytes,
    /// The SMTP AUTH user ("" = none): only then are recipients in other domains queued.
    pub user: String,
    /// The front-end's host name, named in DSNs ("" = a front-end that makes its own DSNs
    /// for inbound partial failures: see `notify_partial_failure`).
    pub reporting_host: String,
    /// RFC 3461 ENVID and RET.
    pub envid: String,
    pub ret: Ret,
    /// Parallel to `recipients`, or empty (no parameters for any).
    pub params: Vec<RecipientParams>,
}

impl Delivery {
    fn params(&self, i: usize) -> RecipientParams {
        self.params.get(i).cloned().unwrap_or_default()
    }
}

/// The DSN status and diagnostic of a recipient that could not get the message.
fn failure_reason(status: &Recipient) -> Option<(&'static str, &'static str)> {
    match status {
        Recipient::MailboxFull => Some(("5.2.2", "552 5.2.2 mailbox full")),
        Recipient::TooBig => Some(("5.2.3", "552 5.2.3 message larger than the mailbox quota")),
        Recipient::UnknownUser => Some(("5.1.1", "550 5.1.1 no such user here")),
        Recipient::RelayDenied => Some(("5.7.1", "554 5.7.1 relay access denied")),
        Recipient::Mailboxes(_) | Recipient::Queued => None,
    }
}

/// What became of one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) enum Copy {
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

    /// Stores `message` in the mailbox of every recipient: a delivery without an envelope
    /// (no reverse-path, so no DSN; no user, so nothing is queued). See [`Store::deliver_message`].
    pub async fn deliver(
        &self,
        delivery_id: &str,
        recipients: &[String],
        message: Bytes,
    ) -> Result<Vec<RecipientOutcome>> {
        self.deliver_message(Delivery {
            id: delivery_id.to_string(),
            recipients: recipients.to_vec(),
            message,
            ..Delivery::default()
        })
        .await
    }

    /// Stores the message in the mailbox of every hosted recipient (each alias target) and,
    /// when an authenticated user submitted it, queues it once for all recipients in other
    /// domains (`queue/`); returns when every copy and the queue entry are durable, with one
    /// outcome per recipient. The UIDL and the queue id are the delivery id (the n-th extra
    /// copy in one mailbox, when an address and its alias are both given, gets `<id>-<n>`),
    /// so a retried delivery with the same id finds its copies and its entry present and does
    /// not store or queue them twice. Quota is reserved before each write (see the module doc).
    ///
    /// Before anything is stored, a delivery with remote recipients must fit the user's
    /// outbound limit (`outbound.rs`), or it fails as a whole with `RateLimited`. After the
    /// writes, when some recipients got the message and others did not (quota, a vanished
    /// mailbox), the sender's DSN is made and delivered or queued before this returns
    /// (`notices.rs`): the front-end's 250 never precedes a DSN that could still be lost.
    pub async fn deliver_message(&self, d: Delivery) -> Result<Vec<RecipientOutcome>> {
        let id = uuid::Uuid::parse_str(&d.id)
            .map_err(|_| StoreError::InvalidArgument("delivery id is not a UUID".into()))?
            .hyphenated()
            .to_string();
        if d.recipients.is_empty() {
            return Err(StoreError::InvalidArgument("no recipients".into()));
        }
        if !d.params.is_empty() && d.params.len() != d.recipients.len() {
            return Err(StoreError::InvalidArgument(
                "recipient parameters do not match the recipients".into(),
            ));
        }
        // (recipient index, mailbox, uidl)
        let mut copies: Vec<(usize, Address, String)> = Vec::new();
        let mut outcomes: Vec<RecipientOutcome> = Vec::new();
        let mut remote: Vec<RecipientState> = Vec::new();
        for (i, raw) in d.recipients.iter().enumerate() {
            let (mut status, from_directory) = self.lookup_recipient(raw, 0).await?;
            if from_directory && let Recipient::Mailboxes(targets) = &status {
                for t in targets {
                    self.ensure_directory_mailbox(t).await?;
                }
            }
            if status == Recipient::RelayDenied && !d.user.is_empty() && notices::routable(raw) {
                status = Recipient::Queued;
                if !remote.iter().any(|r| r.address.eq_ignore_ascii_case(raw)) {
                    let p = d.params(i);
                    remote.push(RecipientState::new(raw.clone(), p.notify, p.orcpt));
                }
            }
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
        if !remote.is_empty() {
            let limit =
                (self.inner.settings).read(|s| s.outbound_limit.unwrap_or(DEFAULT_OUTBOUND_LIMIT));
            if let Err(sent) = self
                .inner
                .outbound
                .admit(&d.user, &id, limit, Instant::now())
            {
                tracing::warn!(user = %d.user, limit, sent, %id, "outbound limit reached: delivery refused");
                return Err(StoreError::RateLimited {
                    user: d.user.clone(),
                    limit,
                });
            }
        }
        // Each copy, and the queue entry, is written by a task of its own: a caller that goes
        // away (front-end timeout or crash, client reset) cancels only the waiting, never a
        // copy halfway between reservation and settlement. A copy finished after its caller
        // left is a message whose sender got no 250: delivered, the safe direction.
        let queued = (!remote.is_empty()).then(|| {
            let now = queue::now_ms();
            let state = EntryState {
                id: id.clone(),
                mail_from: d.mail_from.clone(),
                user: d.user.clone(),
                envid: d.envid.clone(),
                ret: d.ret,
                reporting_host: d.reporting_host.clone(),
                created_ms: now,
                next_attempt_ms: now,
                delay_notice_sent: false,
                recipients: remote,
            };
            let (store, message) = (self.clone(), d.message.clone());
            tokio::spawn(async move { store.enqueue(state, message).await })
        });
        let writes = copies.iter().map(|(i, addr, uidl)| {
            let (store, addr, uidl) = (self.clone(), addr.clone(), uidl.clone());
            let task = tokio::spawn({
                let message = d.message.clone();
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
        if let Some(task) = queued {
            match task.await.map_err(|e| StoreError::Internal(e.to_string())) {
                Ok(Ok(new)) => {
                    if new {
                        tracing::info!(%id, user = %d.user, "queued for other domains");
                    }
                }
                Err(e) | Ok(Err(e)) => {
                    storage_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = storage_error {
            // A copy could not be made durable: the delivery as a whole is "try later". Copies
            // and the queue entry that were stored are found again by a retry with the same id.
            return Err(e);
        }
        for (o, why) in outcomes.iter_mut().zip(why) {
            if let Some(why) = why {
                o.status = why;
            }
        }
        self.notify_partial_failure(&d, &id, &outcomes).await?;
        Ok(outcomes)
    }

    /// RFC 5321 §6.1 / RFC 3464: once the message is stored or queued for one recipient, the
    /// others that failed are reported in a DSN, never by a 5xx that would make the client send
    /// the stored copies again; recipients with NOTIFY=SUCCESS get a "delivered" report. Made
    /// and delivered (or queued) before the delivery is answered.
    ///
    /// Only for a front-end that names itself (`reporting_host`): one that does not is older
    /// than the store's DSNs and makes its own (rolling upgrades, store first, must not give
    /// the sender two).
    async fn notify_partial_failure(
        &self,
        d: &Delivery,
        id: &str,
        outcomes: &[RecipientOutcome],
    ) -> Result<()> {
        let taken =
            (outcomes.iter()).any(|o| !o.stored.is_empty() || o.status == Recipient::Queued);
        if !taken || d.reporting_host.is_empty() {
            return Ok(());
        }
        let mut reports = Vec::new();
        for (i, o) in outcomes.iter().enumerate() {
            let p = d.params(i);
            let notify = queue::Notify(p.notify);
            let report =
                |recipient: &str, action, status: &str, diagnostic: Option<&str>| RecipientReport {
                    recipient: recipient.to_string(),
                    orcpt: (!p.orcpt.is_empty()).then(|| p.orcpt.clone()),
                    action,
                    status: status.to_string(),
                    diagnostic: diagnostic.map(str::to_string),
                    remote_mta: None,
                    will_retry_until: None,
                };
            if let Some((status, diagnostic)) = failure_reason(&o.status)
                && notify.failure()
            {
                let targets = if o.failed.is_empty() {
                    std::slice::from_ref(&o.recipient)
                } else {
                    o.failed.as_slice()
                };
                for t in targets {
                    reports.push(report(t, dsn::Action::Failed, status, Some(diagnostic)));
                }
            }
            if notify.success() {
                for t in &o.stored {
                    reports.push(report(t, dsn::Action::Delivered, "2.0.0", None));
                }
            }
        }
        if reports.is_empty() {
            return Ok(());
        }
        // The delivery id's time: a retried delivery makes the same DSN id (stored once).
        let stamp = uuid::Uuid::parse_str(id)
            .ok()
            .and_then(|u| u.get_timestamp())
            .map_or_else(queue::now_ms, |t| {
                let (secs, nanos) = t.to_unix();
                secs * 1000 + u64::from(nanos) / 1_000_000
            });
        let notice = Notice {
            id: notices::notice_id(stamp, &["inbound", id]),
            sender: d.mail_from.clone(),
            reporting_host: notices::reporting_host(&d.reporting_host),
            envid: d.envid.clone(),
            ret: d.ret,
            arrival: std::time::SystemTime::now(),
            recipients: reports,
        };
        self.send_notice(&notice, Original::Bytes(&d.message)).await
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
