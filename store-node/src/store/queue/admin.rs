//! `mailrootctl queue`: list and show entries, make one due now, delete one without a DSN;
//! and the queue's counts for `mailrootctl stat`.

use super::*;

/// One pending recipient as `queue show` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecipientInfo {
    pub address: String,
    /// "pending": not yet attempted, or deferred (every recipient in an entry is pending;
    /// delivered and failed ones have left it).
    pub state: &'static str,
    pub attempts: u32,
    pub last_diagnostic: String,
}

/// One entry as `queue list`/`show` give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub id: String,
    pub mail_from: String,
    pub recipients: Vec<QueueRecipientInfo>,
    pub size: u64,
    pub created_ms: u64,
    pub next_attempt_ms: u64,
    pub attempts: u32,
    /// The node holding a live claim ("" when none).
    pub claimed_by: String,
    pub user: String,
}

fn info(e: &Entry, now: Instant) -> QueueInfo {
    let s = &e.state;
    QueueInfo {
        id: s.id.clone(),
        mail_from: s.mail_from.clone(),
        recipients: (s.recipients.iter())
            .map(|r| QueueRecipientInfo {
                address: r.address.clone(),
                state: "pending",
                attempts: r.attempts,
                last_diagnostic: r.last_diagnostic.clone(),
            })
            .collect(),
        size: e.size,
        created_ms: s.created_ms,
        next_attempt_ms: s.next_attempt_ms,
        attempts: s.attempts(),
        claimed_by: e
            .live_claim(now)
            .map(|c| c.node.clone())
            .unwrap_or_default(),
        user: s.user.clone(),
    }
}

impl Store {
    /// Every entry, oldest first.
    pub fn list_queue(&self) -> Vec<QueueInfo> {
        let now = Instant::now();
        (self.queue().lock().values())
            .filter(|e| e.visible)
            .map(|e| info(e, now))
            .collect()
    }

    pub fn show_queue(&self, id: &str) -> Result<QueueInfo> {
        let now = Instant::now();
        (self.queue().lock().get(id))
            .filter(|e| e.visible)
            .map(|e| info(e, now))
            .ok_or_else(|| StoreError::UnknownQueueEntry(id.to_string()))
    }

    /// Makes the entry due now (durably) and wakes the claimers. A claim held on it stays: its
    /// worker is attempting it right now.
    pub async fn retry_queue(&self, id: &str) -> Result<()> {
        let writer = self.entry_writer(id)?;
        let _writing = writer.lock_owned().await;
        let mut state = (self.queue().lock().get(id))
            .filter(|e| e.visible)
            .map(|e| e.state.clone())
            .ok_or_else(|| StoreError::UnknownQueueEntry(id.to_string()))?;
        state.next_attempt_ms = now_ms();
        self.write_entry_state(&state).await?;
        tracing::info!(%id, "queue entry due now (admin retry)");
        self.settle_entry(state, false);
        Ok(())
    }

    /// Removes the entry without a DSN (like Postfix's `postsuper -d`). A worker holding a
    /// claim on it finds its claim gone when it reports.
    pub async fn delete_queue(&self, id: &str) -> Result<()> {
        let writer = self.entry_writer(id)?;
        let _writing = writer.lock_owned().await;
        if !(self.queue().lock().get(id)).is_some_and(|e| e.visible) {
            return Err(StoreError::UnknownQueueEntry(id.to_string()));
        }
        self.delete_entry_objects(id).await?;
        self.queue().lock().remove(id);
        tracing::info!(%id, "queue entry deleted by the administrator (no DSN)");
        Ok(())
    }

    /// (entries, recipients still to deliver).
    pub fn queue_counts(&self) -> (u64, u64) {
        let entries = self.queue().lock();
        let visible = entries.values().filter(|e| e.visible);
        visible.fold((0, 0), |(n, r), e| {
            (n + 1, r + e.state.recipients.len() as u64)
        })
    }
}
