//! Retention of retrieved messages (RFC 2449 §6.7 EXPIRE) and the POP3 login delay (RFC 2449
//! §6.8 LOGIN-DELAY).
//!
//! Users who leave mail on the server "can quickly exceed their quota" (the Windows POP3
//! service's own warning). With `mailrootctl config set retention 30d` (cluster-wide, or per
//! domain with `--domain`), a message a POP3 session has retrieved is deleted 30 days after
//! its *first* retrieval; messages never retrieved stay. Front-ends advertise it in CAPA
//! (`EXPIRE 30`, `EXPIRE NEVER` when off), LOGIN-DELAY when one is configured.
//!
//! # What counts as retrieved
//! A session reports the messages it retrieved whole (RETR, not TOP) with its QUIT
//! (`CommitMaildrop.retrieved`). A session that ends without QUIT (dropped connection, RFC
//! 1939 §6: no UPDATE state) reports nothing: like its deletions, its retrievals do not count.
//!
//! # Durable record and crash safety
//! `mailboxes/<domain>/<local>/retrieved.json` maps UIDL -> first retrieval (Unix ms). It is
//! written (atomically, durably: `objects.rs`) inside the QUIT's fence, after the QUIT's
//! deletions, and the index is updated only after the write. A crash before the write loses
//! the retrieval time: the message is kept until it is retrieved again — the safe direction.
//! Expiry deletes the messages first (one directory sync for all) and rewrites the record
//! without them afterwards; a crash in between leaves entries for messages that no longer
//! exist, which start-up drops (`prune`). Nothing here can delete a message that was not
//! recorded as retrieved more than the retention ago.
//!
//! # Fenced like a QUIT
//! Expiry never removes a message from under a session's listing:
//! - at login, the new session expires its maildrop *after* it was granted the lease and
//!   *before* its listing is made, so the listing never names an expired message;
//! - the background sweep only touches a maildrop that no session holds (no lease entry at
//!   all, not even an expired one that its session might still renew) and no commit is in
//!   flight for, and marks it committing for the duration (`leases.rs`): meanwhile no login
//!   is granted it, exactly as during a QUIT's deletions.
//!
//! # LOGIN-DELAY
//! The store remembers when each maildrop was last opened (in memory: a restart forgets it,
//! in the users' favour) and refuses a POP3 login that comes sooner than the delay after the
//! previous one with `-ERR [LOGIN-DELAY]` (RFC 2449 §8.1.1). SMTP AUTH is not affected.

use std::collections::BTreeMap;

use crate::objects;

use super::queue::now_ms;
use super::*;

/// The longest the sweep sleeps (it wakes sooner when a message is due sooner).
pub const SWEEP_AT_MOST: Duration = Duration::from_secs(60);
/// The shortest: a retention of seconds is for tests, not worth a busier loop.
pub const SWEEP_AT_LEAST: Duration = Duration::from_millis(500);

/// The durable record of a mailbox's retrieved messages.
type Record = BTreeMap<String, u64>;

fn record_path(addr: &Address) -> object_store::path::Path {
    record_path_in(&addr.domain, &addr.local)
}

/// `mailboxes/<domain>/<local>/retrieved.json`.
pub(super) fn record_path_in(domain: &str, local: &str) -> object_store::path::Path {
    object_store::path::Path::from_iter(["mailboxes", domain, local, "retrieved.json"])
}

/// Start-up: a mailbox's record (empty when it has none).
pub(super) async fn load(objects: &Objects, domain: &str, local: &str) -> Result<Record> {
    let path = record_path_in(domain, local);
    match objects.get(&path).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: path.to_string(),
            detail: e.to_string(),
        }),
        Err(StoreError::Storage(object_store::Error::NotFound { .. })) => Ok(Record::new()),
        Err(e) => Err(e),
    }
}

/// Entries of messages that no longer exist go (a crash between expiry's two steps).
pub(super) fn prune(record: Record, messages: &BTreeMap<String, u64>) -> HashMap<String, u64> {
    record
        .into_iter()
        .filter(|(uidl, _)| messages.contains_key(uidl))
        .collect()
}

impl Store {
    /// The retention that applies to `addr` now (None: never).
    fn retention_of(&self, addr: &Address) -> Option<Duration> {
        (self.inner.settings).read(|s| s.retention_for(&addr.domain))
    }

    /// Writes the record durably; an empty one is removed instead.
    async fn write_record(&self, addr: &Address, record: &Record) -> Result<()> {
        if record.is_empty() {
            return self.inner.objects.delete(&record_path(addr)).await;
        }
        let json = serde_json::to_vec(record).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.inner
            .objects
            .put(&record_path(addr), Bytes::from(json))
            .await
    }

    /// QUIT: the first retrieval of `uidls` is now. Called inside the commit's fence.
    pub(super) async fn record_retrieved(&self, addr: &Address, uidls: &[String]) -> Result<()> {
        let now = now_ms();
        let record: Record = {
            let state = self.state();
            let Some(mb) = state.mailboxes.get(addr) else {
                return Ok(());
            };
            let mut fresh = uidls
                .iter()
                .filter(|u| mb.messages.contains_key(*u) && !mb.retrieved.contains_key(*u))
                .peekable();
            if fresh.peek().is_none() {
                return Ok(());
            }
            let fresh: Vec<(String, u64)> = fresh.map(|u| (u.clone(), now)).collect();
            (mb.retrieved.iter())
                .filter(|(u, _)| mb.messages.contains_key(*u))
                .map(|(u, t)| (u.clone(), *t))
                .chain(fresh)
                .collect()
        };
        self.write_record(addr, &record).await?;
        if let Some(mb) = self.state().mailboxes.get_mut(addr) {
            mb.retrieved = prune(record, &mb.messages);
        }
        Ok(())
    }

    /// Removes the messages of `addr` retrieved more than `retention` ago, durably. The
    /// caller holds the maildrop's fence (a fresh lease before its listing, or committing).
    async fn expire_mailbox(&self, addr: &Address, retention: Duration) -> Result<usize> {
        let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
        let due: Vec<String> = {
            let state = self.state();
            let Some(mb) = state.mailboxes.get(addr) else {
                return Ok(0);
            };
            (mb.retrieved.iter())
                .filter(|(u, t)| **t <= cutoff && mb.messages.contains_key(*u))
                .map(|(u, _)| u.clone())
                .collect()
        };
        if due.is_empty() {
            return Ok(0);
        }
        let paths: Vec<_> = due.iter().map(|u| objects::message_path(addr, u)).collect();
        self.inner.objects.delete_many(&paths).await?;
        let remaining: Record = {
            let mut state = self.state();
            for uidl in &due {
                state.remove_message(addr, uidl);
            }
            (state.mailboxes.get(addr))
                .map(|mb| mb.retrieved.iter().map(|(u, t)| (u.clone(), *t)).collect())
                .unwrap_or_default()
        };
        self.write_record(addr, &remaining).await?;
        metrics::counter!(crate::metrics::RETENTION_EXPIRED).increment(due.len() as u64);
        tracing::info!(mailbox = %addr, count = due.len(), retention = ?retention, "retrieved messages expired");
        Ok(due.len())
    }

    /// Login: expiry under the session's fresh lease, before its listing is made.
    pub(super) async fn expire_at_login(&self, addr: &Address) -> Result<()> {
        if let Some(retention) = self.retention_of(addr) {
            self.expire_mailbox(addr, retention).await?;
        }
        Ok(())
    }

    /// RFC 2449 LOGIN-DELAY: refuses a login sooner than the delay after the last granted
    /// one. Under the state lock, before the grant (which notes its time).
    pub(super) fn check_login_delay(&self, state: &State, addr: &Address) -> Result<()> {
        let delay = (self.inner.settings).read(|s| s.login_delay_s.unwrap_or(0));
        let now = Instant::now();
        if delay > 0
            && let Some(last) = state.last_login.get(addr)
            && now.duration_since(*last) < Duration::from_secs(u64::from(delay))
        {
            metrics::counter!(crate::metrics::LOGIN_DELAY_REFUSALS).increment(1);
            return Err(StoreError::LoginDelay {
                mailbox: addr.to_string(),
                delay_s: delay,
            });
        }
        Ok(())
    }

    /// Starts the sweep; it holds the store only while a pass runs and ends with the store.
    /// A settings change (a new retention) starts a pass at once.
    pub(super) fn spawn_retention_sweeper(&self) {
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        let mut settings = self.inner.settings.subscribe();
        tokio::spawn(async move {
            loop {
                let wait = {
                    let Some(inner) = weak.upgrade() else { return };
                    Store { inner }.sweep_retention().await
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    changed = settings.changed() => if changed.is_err() { return },
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    /// One pass: expires what is due in every maildrop nobody holds; returns how long until
    /// the next pass is needed.
    pub async fn sweep_retention(&self) -> Duration {
        let settings = self.inner.settings.current();
        let now = now_ms();
        let mut next = SWEEP_AT_MOST;
        let mut due = Vec::new();
        {
            let mut state = self.state();
            let mut fence = Vec::new();
            for (addr, mb) in &state.mailboxes {
                let Some(retention) = settings.retention_for(&addr.domain) else {
                    continue;
                };
                let retention = retention.as_millis() as u64;
                let Some(oldest) = mb.retrieved.values().min() else {
                    continue;
                };
                let at = oldest.saturating_add(retention);
                if at > now {
                    next = next.min(Duration::from_millis(at - now));
                } else if !state.leases.contains_key(addr) && !state.committing.contains(addr) {
                    fence.push(addr.clone());
                }
            }
            for addr in fence {
                state.committing.insert(addr.clone());
                due.push(Committing::new(&self.inner, addr));
            }
        }
        for guard in due {
            let addr = guard.addr().clone();
            if let Some(retention) = settings.retention_for(&addr.domain)
                && let Err(e) = self.expire_mailbox(&addr, retention).await
            {
                tracing::warn!(mailbox = %addr, error = %e, "retention sweep failed; tried again on the next pass");
            }
        }
        next.max(SWEEP_AT_LEAST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_only_existing_messages() {
        let record: Record = [("a".to_string(), 1), ("gone".to_string(), 2)].into();
        let messages: BTreeMap<String, u64> = [("a".to_string(), 10), ("b".to_string(), 5)].into();
        let kept = prune(record, &messages);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept.get("a"), Some(&1));
    }
}
