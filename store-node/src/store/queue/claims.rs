//! The delivery workers' protocol: claim due entries, fetch a claimed message, renew the
//! claim, report the outcome per recipient. Claims are in memory only (`mod.rs`, Claims).
//!
//! A report needs the entry's current claim. Delivered recipients leave the entry (a success
//! DSN when NOTIFY asks for one), failed ones leave it with a DSN, deferred ones are retried
//! on the schedule (`schedule.rs`) until the queue lifetime has passed, then they fail with
//! 4.4.7 (RFC 3463: delivery time expired). Past the delay-warning time, the sender gets one
//! delay notice for what is still pending. The DSN is durable before the state that records
//! the outcome, and the state before the reply (`mod.rs`, Crash safety).

use futures::stream::BoxStream;
use mailroot_common::dsn::{Action, RecipientReport};

use crate::objects;

use super::super::notices::{self, Notice, Original};
use super::*;

/// The longest a claim call waits for an entry to become due.
pub const MAX_CLAIM_WAIT: Duration = Duration::from_secs(60);

/// RFC 3463 §3.5: the message was in the queue longer than allowed.
pub const EXPIRED_STATUS: &str = "4.4.7";
pub const EXPIRED_DIAGNOSTIC: &str = "delivery time expired";

/// A recipient to attempt, with its RFC 3461 parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecipient {
    pub address: String,
    pub notify: u32,
    pub orcpt: String,
}

/// An entry handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: String,
    /// "" = the null reverse-path.
    pub mail_from: String,
    pub recipients: Vec<PendingRecipient>,
    pub size: u64,
    pub envid: String,
    pub ret: Ret,
    /// The claim token: fetch, renew and report name it.
    pub claim: u64,
    pub claim_ttl: Duration,
    /// Attempts made before this one.
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The remote MX accepted it.
    Delivered,
    /// Try again later.
    Deferred,
    /// No retry: a DSN.
    Failed,
}

/// A worker's outcome for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub recipient: String,
    pub outcome: Outcome,
    /// Enhanced status code (RFC 3463).
    pub status: String,
    /// The remote reply or local reason.
    pub diagnostic: String,
    /// The remote host that answered ("" when none did).
    pub remote_mta: String,
}

impl Store {
    /// Claims up to `max` due entries for `node`, waiting up to `wait` (at most
    /// [`MAX_CLAIM_WAIT`]) for one to become due: new entries and retries wake the wait, and
    /// so does the time the earliest entry becomes due or its claim expires.
    pub async fn claim_queue(&self, node: &str, max: u32, wait: Duration) -> Vec<Claimed> {
        let deadline = Instant::now() + wait.min(MAX_CLAIM_WAIT);
        let max = max.max(1) as usize;
        loop {
            // Registered before looking, so a change between the look and the wait is seen.
            let changed = self.queue().changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (claimed, next) = self.try_claim(node, max);
            let now = Instant::now();
            if !claimed.is_empty() || now >= deadline {
                return claimed;
            }
            let wake = next.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    /// One look: the due entries claimed, and when the next one becomes claimable.
    fn try_claim(&self, node: &str, max: usize) -> (Vec<Claimed>, Option<Instant>) {
        let queue = self.queue();
        let (now, now_ms) = (Instant::now(), now_ms());
        let mut claimed = Vec::new();
        let mut next: Option<Instant> = None;
        let mut entries = queue.lock();
        for e in entries.values_mut().filter(|e| e.visible) {
            let due = instant_at(e.state.next_attempt_ms, now_ms, now);
            let free = match e.live_claim(now) {
                Some(c) => c.expires.max(due),
                None => due,
            };
            if free > now || e.busy() || claimed.len() == max {
                // A busy entry is being written; its writer wakes the claimers when done.
                if free > now {
                    next = Some(next.map_or(free, |n| n.min(free)));
                }
                continue;
            }
            let token = queue.token();
            e.claim = Some(Claim {
                token,
                node: node.to_string(),
                expires: now + queue.claim_ttl,
            });
            let s = &e.state;
            claimed.push(Claimed {
                id: s.id.clone(),
                mail_from: s.mail_from.clone(),
                recipients: (s.recipients.iter())
                    .map(|r| PendingRecipient {
                        address: r.address.clone(),
                        notify: r.notify,
                        orcpt: r.orcpt.clone(),
                    })
                    .collect(),
                size: e.size,
                envid: s.envid.clone(),
                ret: s.ret,
                claim: token,
                claim_ttl: queue.claim_ttl,
                attempts: s.attempts(),
            });
        }
        drop(entries);
        if !claimed.is_empty() {
            tracing::debug!(%node, entries = ?claimed.iter().map(|c| &c.id).collect::<Vec<_>>(), "queue entries claimed");
        }
        (claimed, next)
    }

    /// Checks that `token` is the entry's current claim (expired or not: a claim nobody else
    /// took yet is still the holder's), and returns the message size.
    fn check_claim(&self, id: &str, token: u64) -> Result<u64> {
        let entries = self.queue().lock();
        match entries.get(id) {
            Some(e) if e.visible && e.claim.as_ref().is_some_and(|c| c.token == token) => {
                Ok(e.size)
            }
            _ => Err(StoreError::UnknownQueueEntry(id.to_string())),
        }
    }

    /// The claimed entry's message in chunks (as `fetch_stream`).
    pub async fn fetch_queued(
        &self,
        id: &str,
        token: u64,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let size = self.check_claim(id, token)?;
        self.inner
            .objects
            .get_stream(&objects::queue_message_path(id), size)
            .await
    }

    /// Extends the claim by the claim TTL from now.
    pub fn renew_claim(&self, id: &str, token: u64) -> Result<()> {
        let ttl = self.queue().claim_ttl;
        let mut entries = self.queue().lock();
        match entries.get_mut(id).and_then(|e| e.claim.as_mut()) {
            Some(c) if c.token == token => {
                c.expires = Instant::now() + ttl;
                Ok(())
            }
            _ => Err(StoreError::UnknownQueueEntry(id.to_string())),
        }
    }

    /// Records a worker's outcomes and ends its claim (module doc). Durable before it
    /// returns; on an error nothing is recorded and the claim stays (the worker may report
    /// again, or the entry is attempted again after the claim expires).
    pub async fn report_delivery(
        &self,
        id: &str,
        token: u64,
        results: &[DeliveryReport],
    ) -> Result<()> {
        self.check_claim(id, token)?;
        let writer = self.entry_writer(id)?;
        let _writing = writer.lock_owned().await;
        // Re-read under the writer lock: the claim may have moved on while we waited.
        let (mut state, size) = {
            let entries = self.queue().lock();
            match entries.get(id) {
                Some(e) if e.visible && e.claim.as_ref().is_some_and(|c| c.token == token) => {
                    (e.state.clone(), e.size)
                }
                _ => return Err(StoreError::UnknownQueueEntry(id.to_string())),
            }
        };
        let before = state.clone();
        let schedule = self.queue_schedule();
        let now = now_ms();
        let expires = state.expires_ms(schedule.lifetime_ms());
        let mut reports = Vec::new();
        for result in results {
            let Some(i) = (state.recipients.iter())
                .position(|r| r.address.eq_ignore_ascii_case(&result.recipient))
            else {
                tracing::debug!(%id, recipient = %result.recipient, "report names no pending recipient; ignored");
                continue;
            };
            let r = &mut state.recipients[i];
            r.last_status = result.status.clone();
            r.last_diagnostic = result.diagnostic.clone();
            r.remote_mta = result.remote_mta.clone();
            match result.outcome {
                Outcome::Delivered => {
                    let r = state.recipients.remove(i);
                    if r.notify().success() {
                        let status = status_or(&result.status, "2.0.0");
                        reports.push(notices::queued_report(
                            &r,
                            Action::Relayed,
                            &status,
                            &result.diagnostic,
                        ));
                    }
                    tracing::info!(%id, recipient = %r.address, remote = %result.remote_mta, "queued message delivered");
                }
                Outcome::Failed => {
                    let r = state.recipients.remove(i);
                    if r.notify().failure() {
                        let status = status_or(&result.status, "5.0.0");
                        reports.push(notices::queued_report(
                            &r,
                            Action::Failed,
                            &status,
                            &result.diagnostic,
                        ));
                    }
                    tracing::info!(%id, recipient = %r.address, diagnostic = %result.diagnostic, "queued message failed");
                }
                Outcome::Deferred => {
                    r.attempts += 1;
                    if now >= expires {
                        let r = state.recipients.remove(i);
                        if r.notify().failure() {
                            reports.push(expired_report(&r));
                        }
                        tracing::info!(%id, recipient = %r.address, "queue lifetime passed: bounced");
                    }
                }
            }
        }
        reports.extend(delay_reports(&mut state, &schedule, now));
        state.next_attempt_ms =
            now.saturating_add(schedule.delay(state.attempts()).as_millis() as u64);
        // The DSN first, then the state (`mod.rs`, Crash safety).
        let notice = Notice::for_entry(&before, "report", before.next_attempt_ms, reports);
        self.send_notice(&notice, Original::Queued { id, size })
            .await?;
        self.persist_entry(&state).await?;
        tracing::debug!(%id, pending = state.recipients.len(), next_attempt_ms = state.next_attempt_ms, "delivery reported");
        self.settle_entry(state, true);
        Ok(())
    }
}

/// `given` when it is an RFC 3463 code of the right class, else `default`.
fn status_or(given: &str, default: &str) -> String {
    let class_ok = given.as_bytes().first() == default.as_bytes().first()
        && given.split('.').count() == 3
        && given
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if class_ok { given } else { default }.to_string()
}

/// The failure report of a recipient whose lifetime passed: 4.4.7, with its last reason.
pub(super) fn expired_report(r: &RecipientState) -> RecipientReport {
    let diagnostic = if r.last_diagnostic.is_empty() {
        EXPIRED_DIAGNOSTIC.to_string()
    } else {
        format!("{EXPIRED_DIAGNOSTIC}; last attempt: {}", r.last_diagnostic)
    };
    notices::queued_report(r, Action::Failed, EXPIRED_STATUS, &diagnostic)
}

/// The delay notice, when it is due (`queue-delay-warning` passed, none sent yet): one report
/// per pending recipient whose NOTIFY allows it, and the entry marked as notified.
pub(super) fn delay_reports(
    state: &mut EntryState,
    schedule: &Schedule,
    now: u64,
) -> Vec<RecipientReport> {
    let due = state.delay_notice_due_ms(schedule.delay_warning_ms());
    if due.is_none_or(|due| now < due) {
        return Vec::new();
    }
    state.delay_notice_sent = true;
    let until = system_time(state.expires_ms(schedule.lifetime_ms()));
    (state.recipients.iter())
        .filter(|r| r.notify().delay())
        .map(|r| {
            let status = status_or(&r.last_status, "4.0.0");
            let mut report =
                notices::queued_report(r, Action::Delayed, &status, &r.last_diagnostic);
            report.will_retry_until = Some(until);
            report
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(notify: u32) -> EntryState {
        EntryState {
            id: "e".into(),
            mail_from: "alice@example.test".into(),
            user: String::new(),
            envid: String::new(),
            ret: Ret::Unspecified,
            reporting_host: String::new(),
            created_ms: 1_000,
            next_attempt_ms: 1_000,
            delay_notice_sent: false,
            recipients: vec![RecipientState::new(
                "bob@remote.test".into(),
                notify,
                String::new(),
            )],
        }
    }

    #[test]
    fn delay_notice_once_after_the_warning_time() {
        let schedule = Schedule {
            delay_warning: Duration::from_secs(10),
            ..Schedule::default()
        };
        let mut s = state(0);
        assert!(delay_reports(&mut s, &schedule, 5_000).is_empty());
        assert!(!s.delay_notice_sent);
        let reports = delay_reports(&mut s, &schedule, 11_000);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].action, Action::Delayed);
        assert_eq!(reports[0].status, "4.0.0");
        assert!(reports[0].will_retry_until.is_some());
        assert!(s.delay_notice_sent);
        assert!(
            delay_reports(&mut s, &schedule, 12_000).is_empty(),
            "only once"
        );
        // NOTIFY without DELAY: marked, but nobody reported.
        let mut s = state(Notify::FAILURE);
        assert!(delay_reports(&mut s, &schedule, 11_000).is_empty());
        assert!(s.delay_notice_sent);
        // 0 = no delay notices.
        let off = Schedule {
            delay_warning: Duration::ZERO,
            ..Schedule::default()
        };
        let mut s = state(0);
        assert!(delay_reports(&mut s, &off, u64::MAX).is_empty());
    }

    #[test]
    fn statuses_keep_their_class() {
        assert_eq!(status_or("5.1.1", "5.0.0"), "5.1.1");
        assert_eq!(status_or("4.1.1", "5.0.0"), "5.0.0");
        assert_eq!(status_or("", "2.0.0"), "2.0.0");
        assert_eq!(status_or("5.x.1", "5.0.0"), "5.0.0");
    }

    #[test]
    fn expiry_names_the_last_reason() {
        let mut r = RecipientState::new("bob@remote.test".into(), 0, String::new());
        assert_eq!(
            expired_report(&r).diagnostic.as_deref(),
            Some(EXPIRED_DIAGNOSTIC)
        );
        r.last_diagnostic = "421 try later".into();
        let report = expired_report(&r);
        assert_eq!(report.status, "4.4.7");
        assert!(report.diagnostic.unwrap().ends_with("421 try later"));
    }
}
