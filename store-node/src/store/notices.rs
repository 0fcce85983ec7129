//! Delivery status notifications (RFC 3464) made by the store: for recipients of an inbound
//! delivery that could not be stored while others were (`delivery.rs`), and for outbound
//! recipients that failed, expired, are delayed, or were relayed with NOTIFY=SUCCESS
//! (`queue/`). The message itself is built by `mailroot_common::dsn`.
//!
//! A DSN is sent by delivering it, durably, before the caller goes on: to a hosted sender
//! straight into its mailbox (with `Return-Path: <>`, like the quota warning), to a remote
//! sender by queueing it with the null reverse-path and no user (so it is not rate limited).
//! RFC 3461 §6.2 / RFC 5321 §4.5.5: no DSN is ever sent to the null reverse-path, so a DSN
//! that fails is dropped (logged) and bounces cannot loop. Whether a recipient is reported
//! at all (NOTIFY) is decided by the callers with `queue::Notify`.

use std::time::SystemTime;

use blake2::{Blake2s256, Digest};
use mailroot_common::dsn::{self, RecipientReport};

use crate::objects;

use super::queue::{EntryState, RecipientState, Ret};
use super::*;

/// One DSN to make and send.
#[derive(Debug, Clone)]
pub(super) struct Notice {
    /// Its id (`notice_id`): the UIDL in a hosted mailbox, the queue id for a remote sender.
    pub id: String,
    /// The original reverse-path: where the DSN goes.
    pub sender: String,
    pub reporting_host: String,
    pub envid: String,
    pub ret: Ret,
    pub arrival: SystemTime,
    pub recipients: Vec<RecipientReport>,
}

/// Where the original message is, for the DSN's third part.
pub(super) enum Original<'a> {
    Bytes(&'a [u8]),
    /// A queued message of this size (read only when the DSN is really made).
    Queued {
        id: &'a str,
        size: u64,
    },
}

/// A DSN's id: a UUIDv7 whose time is `stamp_ms` and whose other bits are a hash of `parts`.
/// The same event (same entry, same kind, same attempt count and outcome) gives the same id,
/// so a DSN made again after a crash (`queue/mod.rs`, crash safety) is stored once.
pub(super) fn notice_id(stamp_ms: u64, parts: &[&str]) -> String {
    let mut hash = Blake2s256::new();
    for p in parts {
        hash.update((p.len() as u64).to_le_bytes());
        hash.update(p.as_bytes());
    }
    let digest = hash.finalize();
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(stamp_ms, &bits)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The host named in a DSN: the front-end's, or this machine's when none was given.
pub(super) fn reporting_host(given: &str) -> String {
    if !given.is_empty() {
        return given.to_string();
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // fails.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = (rc == 0)
        .then(|| {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        })
        .filter(|n| names::domain(n).is_ok());
    name.unwrap_or_else(|| "localhost".to_string())
}

/// The report on one queued recipient.
pub(super) fn queued_report(
    r: &RecipientState,
    action: dsn::Action,
    status: &str,
    diagnostic: &str,
) -> RecipientReport {
    RecipientReport {
        recipient: r.address.clone(),
        orcpt: (!r.orcpt.is_empty()).then(|| r.orcpt.clone()),
        action,
        status: status.to_string(),
        diagnostic: (!diagnostic.is_empty()).then(|| diagnostic.to_string()),
        remote_mta: (!r.remote_mta.is_empty()).then(|| r.remote_mta.clone()),
        will_retry_until: None,
    }
}

impl Notice {
    /// A DSN about recipients of the queue entry `state`, for the event named by `event`
    /// (with the time it is stamped with: see `notice_id`).
    pub(super) fn for_entry(
        state: &EntryState,
        event: &str,
        stamp_ms: u64,
        recipients: Vec<RecipientReport>,
    ) -> Notice {
        let attempts = state.attempts().to_string();
        let mut parts = vec![state.id.as_str(), event, attempts.as_str()];
        let outcomes: Vec<String> = (recipients.iter())
            .map(|r| format!("{} {}", r.recipient, r.action.as_str()))
            .collect();
        parts.extend(outcomes.iter().map(String::as_str));
        Notice {
            id: notice_id(stamp_ms, &parts),
            sender: state.mail_from.clone(),
            reporting_host: reporting_host(&state.reporting_host),
            envid: state.envid.clone(),
            ret: state.ret,
            arrival: queue::system_time(state.created_ms),
            recipients,
        }
    }
}

impl Store {
    /// Makes the DSN and delivers it durably (module doc). Returns an error only when storage
    /// failed: the caller must then not record the outcome, so that the DSN is made again.
    pub(super) async fn send_notice(&self, notice: &Notice, original: Original<'_>) -> Result<()> {
        if notice.recipients.is_empty() {
            return Ok(());
        }
        let about: Vec<&str> = (notice.recipients.iter())
            .map(|r| r.recipient.as_str())
            .collect();
        if notice.sender.is_empty() {
            tracing::info!(recipients = ?about, "no DSN: the message has the null reverse-path (a DSN itself)");
            return Ok(());
        }
        // A sender of a directory domain (its address or an alias there) is asked of the
        // directory; a directory that does not answer makes the DSN fail, to be made again.
        let (route, from_directory) = self.lookup_recipient(&notice.sender, 0).await?;
        if from_directory && let Recipient::Mailboxes(targets) = &route {
            for t in targets {
                self.ensure_directory_mailbox(t).await?;
            }
        }
        let remote = matches!(route, Recipient::RelayDenied) && routable(&notice.sender);
        let targets = match route {
            Recipient::Mailboxes(targets) => targets,
            _ if remote => Vec::new(),
            _ => {
                tracing::warn!(sender = %notice.sender, recipients = ?about, "DSN dropped: its sender is no mailbox here and no routable address");
                return Ok(());
            }
        };
        let original = match original {
            Original::Bytes(b) => Bytes::copy_from_slice(b),
            Original::Queued { id, size } => {
                self.queued_original(id, size, notice.ret.full()).await?
            }
        };
        let report = dsn::build_report(
            &dsn::Report {
                reporting_host: &notice.reporting_host,
                sender: &notice.sender,
                envid: (!notice.envid.is_empty()).then_some(notice.envid.as_str()),
                arrival: notice.arrival,
                return_full: notice.ret.full(),
                id: &notice.id,
                recipients: &notice.recipients,
            },
            &original,
        );
        if remote {
            let now = queue::now_ms();
            let state = EntryState {
                id: notice.id.clone(),
                mail_from: String::new(),
                user: String::new(),
                envid: String::new(),
                ret: Ret::Unspecified,
                reporting_host: notice.reporting_host.clone(),
                created_ms: now,
                next_attempt_ms: now,
                delay_notice_sent: false,
                recipients: vec![RecipientState::new(
                    notice.sender.clone(),
                    queue::Notify::NEVER,
                    String::new(),
                )],
            };
            let queued = Box::pin(self.enqueue(state, Bytes::from(report))).await?;
            tracing::info!(id = %notice.id, sender = %notice.sender, recipients = ?about, queued, "DSN queued for a remote sender");
            return Ok(());
        }
        // RFC 5321 §4.4: the final delivery adds Return-Path, here the null reverse-path.
        let mut stored = format!(
            "Return-Path: <>\r\nReceived: by {host} with LOCAL id {id};\r\n\t{date}\r\n",
            host = notice.reporting_host,
            id = notice.id,
            date = dsn::rfc5322_date(SystemTime::now()),
        )
        .into_bytes();
        stored.extend_from_slice(&report);
        let stored = Bytes::from(stored);
        for target in &targets {
            match Box::pin(self.store_copy(target, &notice.id, stored.clone())).await? {
                delivery::Copy::Stored => {
                    tracing::info!(id = %notice.id, mailbox = %target, recipients = ?about, "DSN delivered")
                }
                other => {
                    tracing::warn!(id = %notice.id, mailbox = %target, outcome = ?other, "DSN dropped: the sender's mailbox cannot take it")
                }
            }
        }
        Ok(())
    }

    /// A queued message for a DSN: the whole of it (RET=FULL), or its header only, read no
    /// further than the blank line.
    async fn queued_original(&self, id: &str, size: u64, full: bool) -> Result<Bytes> {
        let path = objects::queue_message_path(id);
        if full {
            return self.inner.objects.get(&path).await;
        }
        let mut chunks = self.inner.objects.get_stream(&path, size).await?;
        let mut head = Vec::new();
        while let Some(chunk) = futures::StreamExt::next(&mut chunks).await {
            let from = head.len().saturating_sub(3);
            head.extend_from_slice(&chunk?);
            if let Some(end) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                head.truncate(from + end + 4);
                break;
            }
        }
        Ok(Bytes::from(head))
    }
}

/// An address another MTA can be asked to deliver to: a local part and a valid domain name.
pub(super) fn routable(addr: &str) -> bool {
    addr.rsplit_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !local.chars().any(|c| c.is_control() || c == ' ')
            && names::domain(domain).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_ids_are_v7_and_follow_their_event() {
        let a = notice_id(1_700_000_000_000, &["entry", "report", "1", "bob failed"]);
        assert_eq!(
            a,
            notice_id(1_700_000_000_000, &["entry", "report", "1", "bob failed"])
        );
        assert_ne!(
            a,
            notice_id(1_700_000_000_000, &["entry", "report", "2", "bob failed"])
        );
        // Parts are length-prefixed: moving a boundary is another event.
        assert_ne!(notice_id(1, &["ab", "c"]), notice_id(1, &["a", "bc"]));
        let uuid = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        let (secs, _) = uuid.get_timestamp().unwrap().to_unix();
        assert_eq!(secs, 1_700_000_000);
    }

    #[test]
    fn routable_addresses() {
        assert!(routable("bob@remote.test"));
        assert!(!routable("bob"));
        assert!(!routable("@remote.test"));
        assert!(!routable("bob@[192.0.2.1]"));
        assert!(!routable("bo b@remote.test"));
    }

    #[test]
    fn a_reporting_host_is_always_named() {
        assert_eq!(reporting_host("mx.example.test"), "mx.example.test");
        assert!(!reporting_host("").is_empty());
    }
}
