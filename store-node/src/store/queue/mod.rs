//! The outbound queue: mail for other domains, held durably until a front-end's delivery
//! worker has handed it to the remote MX, it has failed for good, or its lifetime has passed.
//! This module owns the queue's objects, its in-memory index and the claims on its entries;
//! the SMTP client that delivers is the front-end's, and the DSNs it leads to are made by
//! `store/notices.rs`.
//!
//! # Layout
//! ```text
//! queue/<id>/message      the message as submitted (the front-end's trace headers included),
//!                         written once and never changed
//! queue/<id>/state.json   `EntryState`: envelope (reverse-path, submitting user, ENVID, RET,
//!                         reporting host), created and next-attempt times, the delay-notice
//!                         flag, and each recipient still pending with its NOTIFY/ORCPT,
//!                         attempts and last diagnostic
//! ```
//! `<id>` is the delivery id (the front-end's UUIDv7, so a retried delivery finds its entry)
//! or, for a DSN to a remote sender, the DSN's id. `state.json` existing IS the entry.
//!
//! # Crash safety
//! Every write goes through `Objects::put` (written, synced, then named, directory synced —
//! group-committed locally; an acknowledged PUT on S3) and every delete through
//! `Objects::delete` (unlinked, directory synced).
//! - A new entry: 1. put `message`; 2. put `state.json`; 3. only then is it in the index and
//!   the delivery answered `RECIPIENT_STATUS_QUEUED` (the front-end's 250). A crash before 2
//!   completes leaves at most a `message` without `state.json`, whose sender got no 250:
//!   start-up (`store/recovery.rs`) deletes it. A crash after 2 but before the reply leaves a
//!   complete entry whose sender may send again: the front-end's retry carries the same
//!   delivery id and finds it (not queued twice); a new SMTP transaction is a new message, the
//!   usual duplicate after a lost 250 (RFC 1047).
//! - An update (a delivery report, the sweep's delay notice, `queue retry`) rewrites
//!   `state.json` with one put, which replaces atomically (rename or link of a synced file; a
//!   PUT): a crash leaves the old state or the new one, never a mix.
//! - An entry with no pending recipient left (or `queue delete`) is removed: `state.json`
//!   first, then `message`. A crash between leaves a message without state: swept as above.
//! - A DSN is made durable (stored in the hosted sender's mailbox, or queued) BEFORE the state
//!   write that records its recipients' outcome. A crash between leaves those recipients
//!   pending: they are attempted again, and the same outcome makes the same DSN under the same
//!   id (`notices::notice_id`: the entry, the event, the attempt count, the outcomes), which a
//!   mailbox (UIDL) or the queue (id) holds only once. So a DSN is never lost; the sender gets
//!   two only when the repeated attempt has another outcome than the first (or the first DSN
//!   was already fetched and deleted by POP3, or had been delivered by a remote worker).
//!
//! # Claims (memory only)
//! Delivery workers in the front-ends claim due entries (`claims.rs`). A claim is a lease with
//! a token: fetching the message, renewing and reporting need the entry's current token, and
//! an expired claim lets another worker take the entry. Claims are not persisted: after a
//! store restart every entry is unclaimed, and the tokens start from a fresh random value, so
//! no token handed out before the restart names a claim after it. A delivery a worker had
//! finished but not yet reported is then made again — the one duplicate the queue admits (RFC
//! 1047: a duplicate beats a loss).
//!
//! # Concurrency
//! The index is a `std::sync::Mutex`, never held across an `.await`. Everything that writes an
//! entry's objects (a report, the sweep, `queue retry`/`delete`) holds that entry's `writer`
//! lock (a tokio mutex) from its check to its index update, so two of them never interleave;
//! claimers skip an entry whose writer lock is taken. A new entry is in the index, invisible
//! and with its writer lock held, while its objects are written: a concurrent delivery with
//! the same id waits for it and then finds it.
//!
//! # Layout of the module
//! - `mod.rs`      — the index, new entries, the object helpers, start-up loading.
//! - `state.rs`    — `state.json` (`EntryState`), RET and NOTIFY.
//! - `schedule.rs` — retry delays, lifetime and delay warning from the settings (`backon`).
//! - `claims.rs`   — claim, fetch, renew, report (the worker protocol).
//! - `sweep.rs`    — the background task: lifetimes and delay notices without any worker.
//! - `admin.rs`    — `mailrootctl queue` list/show/retry/delete, and the counts for `stat`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::objects;

use super::*;

mod admin;
mod claims;
mod schedule;
mod state;
mod sweep;

pub use admin::{QueueInfo, QueueRecipientInfo};
pub use claims::{Claimed, DeliveryReport, MAX_CLAIM_WAIT, Outcome, PendingRecipient};
pub use schedule::Schedule;
pub use state::{EntryState, Notify, RecipientState, Ret};

/// How long a claim lives without renewal, unless `Options::queue_claim_ttl` says otherwise.
pub const DEFAULT_CLAIM_TTL: Duration = Duration::from_secs(60);

/// The queue's in-memory index.
pub(in crate::store) struct Queue {
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Woken when an entry becomes due earlier than before (new, retried, claim ended).
    changed: tokio::sync::Notify,
    /// Claim tokens: from a random start, never reused within a process.
    next_token: AtomicU64,
    claim_ttl: Duration,
}

struct Entry {
    state: EntryState,
    /// The message's size in octets.
    size: u64,
    /// False while its objects are being written (a new entry).
    visible: bool,
    claim: Option<Claim>,
    /// Held by whoever writes this entry's objects (module doc, Concurrency).
    writer: Arc<tokio::sync::Mutex<()>>,
}

struct Claim {
    token: u64,
    node: String,
    expires: Instant,
}

impl Entry {
    fn live_claim(&self, now: Instant) -> Option<&Claim> {
        self.claim.as_ref().filter(|c| c.expires > now)
    }

    fn busy(&self) -> bool {
        self.writer.try_lock().is_err()
    }
}

impl Queue {
    /// The index over the entries found at start-up: (state, message size).
    pub(in crate::store) fn new(claim_ttl: Duration, loaded: Vec<(EntryState, u64)>) -> Queue {
        let entries = loaded
            .into_iter()
            .map(|(state, size)| {
                let entry = Entry {
                    state,
                    size,
                    visible: true,
                    claim: None,
                    writer: Arc::default(),
                };
                (entry.state.id.clone(), entry)
            })
            .collect();
        Queue {
            entries: Mutex::new(entries),
            changed: tokio::sync::Notify::new(),
            // Random start (module doc, Claims); the top bit clear, so it never wraps.
            next_token: AtomicU64::new((uuid::Uuid::new_v4().as_u64_pair().0 >> 1) | 1),
            claim_ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // Updates under this lock are plain field writes: a poisoned lock is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn token(&self) -> u64 {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    fn wake(&self) {
        self.changed.notify_waiters();
    }
}

/// Milliseconds since the Unix epoch, the clock of everything the queue persists.
pub(in crate::store) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `ms` (Unix epoch) as a `SystemTime`.
pub(in crate::store) fn system_time(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// The `Instant` at which the wall-clock time `ms` is reached (now, if it has passed).
fn instant_at(ms: u64, now_ms: u64, now: Instant) -> Instant {
    now + Duration::from_millis(ms.saturating_sub(now_ms))
}

impl Store {
    pub(in crate::store) fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    /// The retry schedule the settings give now.
    pub fn queue_schedule(&self) -> Schedule {
        self.inner.settings.read(Schedule::of)
    }

    /// Adds an entry durably (module doc: message, then state) and returns true, or returns
    /// false when an entry with this id exists already (a retried delivery).
    pub(in crate::store) async fn enqueue(
        &self,
        state: EntryState,
        message: Bytes,
    ) -> Result<bool> {
        let id = state.id.clone();
        let size = message.len() as u64;
        let _writing = loop {
            let existing = {
                let mut entries = self.queue().lock();
                match entries.get(&id) {
                    Some(e) if e.visible => return Ok(false),
                    Some(e) => e.writer.clone(),
                    None => {
                        let writer: Arc<tokio::sync::Mutex<()>> = Arc::default();
                        let guard = writer
                            .clone()
                            .try_lock_owned()
                            .expect("a new mutex is free");
                        entries.insert(
                            id.clone(),
                            Entry {
                                state: state.clone(),
                                size,
                                visible: false,
                                claim: None,
                                writer,
                            },
                        );
                        break guard;
                    }
                }
            };
            // A concurrent delivery with this id is writing it: once it is done, the entry is
            // either there (visible) or gone (its writing failed, and this one tries).
            let _wait = existing.lock_owned().await;
            if self.queue().lock().get(&id).is_some_and(|e| e.visible) {
                return Ok(false);
            }
        };
        let written = async {
            self.inner
                .objects
                .put(&objects::queue_message_path(&id), message)
                .await?;
            self.write_entry_state(&state).await
        }
        .await;
        match written {
            Ok(()) => {
                if let Some(e) = self.queue().lock().get_mut(&id) {
                    e.visible = true;
                }
                self.queue().wake();
                Ok(true)
            }
            Err(e) => {
                self.queue().lock().remove(&id);
                // Never acknowledged: a message left behind is rewritten by a retry or swept
                // at start-up.
                let _ = self
                    .inner
                    .objects
                    .delete(&objects::queue_message_path(&id))
                    .await;
                Err(e)
            }
        }
    }

    /// Rewrites `state.json` (one atomic put).
    async fn write_entry_state(&self, state: &EntryState) -> Result<()> {
        self.put_json(&objects::queue_state_path(&state.id), state)
            .await
    }

    /// Removes an entry's objects: state first, then message (module doc).
    async fn delete_entry_objects(&self, id: &str) -> Result<()> {
        self.inner
            .objects
            .delete(&objects::queue_state_path(id))
            .await?;
        self.inner
            .objects
            .delete(&objects::queue_message_path(id))
            .await
    }

    /// The writer lock of a visible entry, to be awaited by one who will write it.
    fn entry_writer(&self, id: &str) -> Result<Arc<tokio::sync::Mutex<()>>> {
        self.queue()
            .lock()
            .get(id)
            .filter(|e| e.visible)
            .map(|e| e.writer.clone())
            .ok_or_else(|| StoreError::UnknownQueueEntry(id.to_string()))
    }

    /// After a write: the entry's new state in the index (or its removal when no recipient
    /// is pending); with `end_claim`, the claim on it ends (a report).
    fn settle_entry(&self, state: EntryState, end_claim: bool) {
        let mut entries = self.queue().lock();
        if state.recipients.is_empty() {
            entries.remove(&state.id);
        } else if let Some(e) = entries.get_mut(&state.id) {
            e.state = state;
            if end_claim {
                e.claim = None;
            }
        }
        drop(entries);
        self.queue().wake();
    }

    /// Writes the entry's new state, or removes it when no recipient is pending.
    async fn persist_entry(&self, state: &EntryState) -> Result<()> {
        if state.recipients.is_empty() {
            self.delete_entry_objects(&state.id).await
        } else {
            self.write_entry_state(state).await
        }
    }
}

/// Start-up (`store/recovery.rs`): every entry, as (state, message size). A `message` without
/// `state.json` is a crash between the two writes of a new entry (or the two deletes of a
/// removal) and is deleted; a `state.json` without `message` cannot be delivered and is
/// removed with an error line.
pub(in crate::store) async fn load(objects: &Objects) -> Result<Vec<(EntryState, u64)>> {
    #[derive(Default)]
    struct Found {
        message: Option<u64>,
        state: bool,
    }
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    for meta in objects.list(&objects::queue_prefix()).await? {
        let parts: Vec<String> = meta
            .location
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        let [_, id, name] = parts.as_slice() else {
            continue;
        };
        let f = found.entry(id.clone()).or_default();
        match name.as_str() {
            "message" => f.message = Some(meta.size),
            "state.json" => f.state = true,
            _ => {}
        }
    }
    let mut entries = Vec::new();
    for (id, f) in found {
        match (f.state, f.message) {
            (true, Some(size)) => {
                let path = objects::queue_state_path(&id);
                let bytes = objects.get(&path).await?;
                let state: EntryState =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        path: path.to_string(),
                        detail: e.to_string(),
                    })?;
                entries.push((state, size));
            }
            (false, Some(_)) => {
                tracing::warn!(%id, "removing a queued message without state (a crash before it was queued)");
                objects.delete(&objects::queue_message_path(&id)).await?;
            }
            (true, None) => {
                tracing::error!(%id, "queue entry without its message: removed, it cannot be delivered");
                objects.delete(&objects::queue_state_path(&id)).await?;
            }
            (false, None) => {}
        }
    }
    Ok(entries)
}
