//! Group commit of directory entries for the local backend: one `fsync` per directory per
//! batch, shared by every write or delete that waits for it, and an error that fails the whole
//! batch and every batch after it.
//!
//! # What a batch makes durable
//! A writer first makes its *file* durable itself (`fdatasync`, in its own blocking task, so
//! concurrent writers' data syncs run in parallel and the filesystem's journal merges them),
//! renames it into place, and then calls [`GroupCommit::sync_dirs`] with the directories
//! whose entries it changed. Callers that arrive while a batch is being synced are collected
//! into the next batch; each distinct directory of a batch is fsynced once. A caller returns
//! only after a sync of its directories that *started after its call* has completed, so its
//! rename (or unlink) is on stable storage when it returns `Ok`.
//!
//! # Errors (the "fsyncgate" rule)
//! The kernel reports a writeback error to one `fsync` caller only and may then drop the dirty
//! pages: syncing again would report success for data that is gone. So a failed sync fails
//! every caller of its batch, and the group commit stays *failed*: every later call fails at
//! once, and the store acknowledges nothing until it is restarted (start-up re-reads the disk,
//! which is the truth). See also `Objects::put`, which removes its file when the batch fails.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::error::{Result, StoreError};

type Waiter = oneshot::Sender<std::result::Result<(), String>>;

#[derive(Default)]
struct Pending {
    dirs: BTreeSet<PathBuf>,
    waiters: Vec<Waiter>,
    /// A flusher task is running (it takes `Pending` batches until none is left).
    flushing: bool,
}

/// Fsyncs a directory; the seam that tests replace to inject failures.
pub type DirSync = dyn Fn(&std::path::Path) -> std::io::Result<()> + Send + Sync;

pub struct GroupCommit {
    pending: Mutex<Pending>,
    /// Set by the first failed sync; never cleared (see the module doc).
    failed: AtomicBool,
    /// Directory fsyncs made so far, and batches (for benchmarks and tests).
    pub dir_syncs: AtomicU64,
    pub batches: AtomicU64,
    sync_dir: Box<DirSync>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("failed", &self.failed)
            .field("dir_syncs", &self.dir_syncs)
            .finish_non_exhaustive()
    }
}

fn fsync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit::with_sync(Box::new(fsync_dir))
    }
}

impl GroupCommit {
    pub fn with_sync(sync_dir: Box<DirSync>) -> GroupCommit {
        GroupCommit {
            pending: Mutex::new(Pending::default()),
            failed: AtomicBool::new(false),
            dir_syncs: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            sync_dir,
        }
    }

    /// True once a sync has failed: nothing written since can be trusted to be durable.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Marks the storage as failed (a writer's own `fdatasync` failed).
    pub fn fail(&self, why: &str) {
        if !self.failed.swap(true, Ordering::SeqCst) {
            tracing::error!(error = %why, "local storage failed to sync: refusing every write until the store is restarted");
        }
    }

    pub fn check(&self) -> Result<()> {
        if self.has_failed() {
            return Err(failed_error());
        }
        Ok(())
    }

    /// Returns once the entries of `dirs` are on stable storage (see the module doc).
    pub async fn sync_dirs(
        self: &Arc<Self>,
        dirs: impl IntoIterator<Item = PathBuf>,
    ) -> Result<()> {
        self.check()?;
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.dirs.extend(dirs);
            p.waiters.push(tx);
            !std::mem::replace(&mut p.flushing, true)
        };
        if start {
            let this = self.clone();
            tokio::spawn(async move { this.flush().await });
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Durability(e)),
            Err(_) => Err(StoreError::Durability("sync task ended".into())),
        }
    }

    /// Takes batches until none is pending.
    async fn flush(self: Arc<Self>) {
        loop {
            let (dirs, waiters) = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if p.waiters.is_empty() {
                    p.flushing = false;
                    return;
                }
                (std::mem::take(&mut p.dirs), std::mem::take(&mut p.waiters))
            };
            let this = self.clone();
            let result = tokio::task::spawn_blocking(move || this.sync_batch(&dirs))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    }

    fn sync_batch(&self, dirs: &BTreeSet<PathBuf>) -> std::result::Result<(), String> {
        if self.has_failed() {
            return Err(failed_error().to_string());
        }
        self.batches.fetch_add(1, Ordering::Relaxed);
        for dir in dirs {
            self.dir_syncs.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = (self.sync_dir)(dir) {
                let why = format!("fsync {}: {e}", dir.display());
                self.fail(&why);
                return Err(why);
            }
        }
        Ok(())
    }
}

fn failed_error() -> StoreError {
    StoreError::Durability(
        "an earlier fsync failed; the store acknowledges no writes until it is restarted".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_batches_and_each_dir_is_synced_once_per_batch() {
        let gc = Arc::new(GroupCommit::default());
        let dir = tempfile::tempdir().unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let gc = gc.clone();
                let d = dir.path().to_path_buf();
                tokio::spawn(async move { gc.sync_dirs([d]).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let batches = gc.batches.load(Ordering::Relaxed);
        assert!((1..50).contains(&batches), "batches: {batches}");
        assert_eq!(gc.dir_syncs.load(Ordering::Relaxed), batches);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_sync_fails_the_whole_batch_and_everything_after_it() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let gc = Arc::new(GroupCommit::with_sync(Box::new(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            // Slow enough that the other callers join one batch.
            std::thread::sleep(std::time::Duration::from_millis(50));
            Err(std::io::Error::other("injected EIO"))
        })));
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let gc = gc.clone();
                tokio::spawn(async move { gc.sync_dirs([PathBuf::from(format!("/d{i}"))]).await })
            })
            .collect();
        for t in tasks {
            assert!(
                t.await.unwrap().is_err(),
                "every caller must see the failure"
            );
        }
        assert!(gc.has_failed());
        // Later calls fail at once, without syncing again (a second fsync could say Ok).
        let before = calls.load(Ordering::SeqCst);
        assert!(gc.sync_dirs([PathBuf::from("/x")]).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), before);
    }
}
