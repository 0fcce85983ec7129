//! The queue's background task: entries whose lifetime has passed are bounced (4.4.7) and
//! due delay notices are sent even when no worker claims anything — no front-end running, or
//! a destination that keeps deferring while its entry waits for the next retry. It runs every
//! [`SWEEP_EVERY`] or sooner when a deadline is nearer, skips entries a worker holds (its
//! report does the same work), and ends when the store is dropped. It also forgets old
//! outbound-limit counts (`outbound.rs`).

use super::super::notices::{Notice, Original};
use super::claims::{delay_reports, expired_report};
use super::*;

/// The longest the sweep sleeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Store {
    /// Starts the sweep; it holds the store only while a pass runs.
    pub(in crate::store) fn spawn_queue_sweeper(&self) {
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        tokio::spawn(async move {
            loop {
                let wait = {
                    let Some(inner) = weak.upgrade() else { return };
                    let store = Store { inner };
                    store.inner.outbound.prune(Instant::now());
                    store.sweep_queue().await
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    /// One pass over the queue; returns how long until the next one is needed.
    pub async fn sweep_queue(&self) -> Duration {
        let schedule = self.queue_schedule();
        let (now, now_ms) = (Instant::now(), now_ms());
        let mut due = Vec::new();
        let mut next = SWEEP_EVERY;
        {
            let entries = self.queue().lock();
            for e in entries.values().filter(|e| e.visible) {
                let expires = e.state.expires_ms(schedule.lifetime_ms());
                let deadline = (e.state)
                    .delay_notice_due_ms(schedule.delay_warning_ms())
                    .map_or(expires, |d| d.min(expires));
                if deadline > now_ms {
                    next = next.min(Duration::from_millis(deadline - now_ms));
                } else if e.live_claim(now).is_none() && !e.busy() {
                    due.push(e.state.id.clone());
                }
            }
        }
        for id in due {
            if let Err(e) = self.sweep_entry(&id, &schedule).await {
                tracing::warn!(%id, error = %e, "queue sweep failed; tried again on the next pass");
            }
        }
        let (entries, recipients) = self.queue_counts();
        metrics::gauge!(crate::metrics::QUEUE_ENTRIES).set(entries as f64);
        metrics::gauge!(crate::metrics::QUEUE_RECIPIENTS).set(recipients as f64);
        next
    }

    /// Bounces an expired entry, or sends its delay notice.
    async fn sweep_entry(&self, id: &str, schedule: &Schedule) -> Result<()> {
        let Ok(writer) = self.entry_writer(id) else {
            return Ok(());
        };
        // Someone else is writing it: the next pass looks again.
        let Ok(_writing) = writer.try_lock_owned() else {
            return Ok(());
        };
        let (mut state, size) = {
            let entries = self.queue().lock();
            match entries.get(id) {
                Some(e) if e.visible && e.live_claim(Instant::now()).is_none() => {
                    (e.state.clone(), e.size)
                }
                _ => return Ok(()),
            }
        };
        let before = state.clone();
        let now = now_ms();
        let expires = state.expires_ms(schedule.lifetime_ms());
        let notice = if now >= expires {
            let gone = std::mem::take(&mut state.recipients);
            let reports = (gone.iter())
                .filter(|r| r.notify().failure())
                .map(expired_report)
                .collect();
            tracing::info!(%id, recipients = ?gone.iter().map(|r| &r.address).collect::<Vec<_>>(), "queue lifetime passed: bounced");
            Notice::for_entry(&before, "expired", expires, reports)
        } else {
            let reports = delay_reports(&mut state, schedule, now);
            if !state.delay_notice_sent {
                return Ok(());
            }
            tracing::info!(%id, notified = reports.len(), "delay notice due");
            let stamp = state.created_ms.saturating_add(schedule.delay_warning_ms());
            Notice::for_entry(&before, "delayed", stamp, reports)
        };
        // The DSN first, then the state (`mod.rs`, Crash safety).
        self.send_notice(&notice, Original::Queued { id, size })
            .await?;
        self.persist_entry(&state).await?;
        self.settle_entry(state, false);
        Ok(())
    }
}
