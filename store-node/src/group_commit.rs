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
use std::sync::{Condvar, Mutex};

use crate::error::{Result, StoreError};

#[derive(Default)]
struct State {
    /// Directories waiting for the next batch.
    dirs: BTreeSet<PathBuf>,
    /// Tickets handed out, and the highest ticket whose batch has completed.
    requested: u64,
    completed: u64,
    /// A caller is syncing a batch right now (the leader).
    leader: bool,
}

/// Fsyncs a directory; the seam that tests replace to inject failures.
pub type DirSync = dyn Fn(&std::path::Path) -> std::io::Result<()> + Send + Sync;

/// Leader-based group commit, called on the writers' own blocking threads: the first caller
/// that finds no batch in progress becomes the leader and syncs everything pending, again and
/// again while more arrives; the others sleep until a batch that includes their ticket is
/// done. No extra task or thread per batch.
pub struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
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

pub fn fsync_dir(dir: &std::path::Path) -> std::io::Result<()> {
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
            state: Mutex::new(State::default()),
            done: Condvar::new(),
            failed: AtomicBool::new(false),
            dir_syncs: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            sync_dir,
        }
    }

    /// Sync requests made so far (tests wait for concurrent writers to join a batch).
    pub fn tickets(&self) -> u64 {
        self.lock().requested
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once the entries of `dirs` are on stable storage (see the module doc). Blocks:
    /// call it on a blocking thread, after the writes whose entries it must cover.
    pub fn sync_dirs(&self, dirs: impl IntoIterator<Item = PathBuf>) -> Result<()> {
        let mut state = self.lock();
        state.dirs.extend(dirs);
        state.requested += 1;
        let ticket = state.requested;
        loop {
            self.check()?;
            if state.completed >= ticket {
                return Ok(());
            }
            if !state.leader {
                break;
            }
            state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        // Leader: sync batches until ours (and whatever came meanwhile) is done.
        state.leader = true;
        while state.completed < ticket && !self.has_failed() {
            let dirs = std::mem::take(&mut state.dirs);
            let upto = state.requested;
            // Every ticket after the last completed one is in this batch.
            let callers = upto - state.completed;
            drop(state);
            let started = std::time::Instant::now();
            let result = self.sync_batch(&dirs);
            metrics::histogram!(crate::metrics::FSYNC_BATCH_SECONDS).record(started.elapsed());
            metrics::histogram!(crate::metrics::FSYNC_BATCH_SIZE).record(callers as f64);
            state = self.lock();
            if result.is_ok() {
                state.completed = upto;
            }
        }
        state.leader = false;
        drop(state);
        self.done.notify_all();
        self.check()
    }

    fn sync_batch(&self, dirs: &BTreeSet<PathBuf>) -> std::result::Result<(), ()> {
        self.batches.fetch_add(1, Ordering::Relaxed);
        for dir in dirs {
            self.dir_syncs.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = (self.sync_dir)(dir) {
                self.fail(&format!("fsync {}: {e}", dir.display()));
                return Err(());
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
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    fn callers(gc: &Arc<GroupCommit>, n: usize) -> Vec<Result<()>> {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let gc = gc.clone();
                std::thread::spawn(move || gc.sync_dirs([PathBuf::from(format!("/d{}", i % 3))]))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    #[test]
    fn concurrent_callers_share_batches_and_each_dir_is_synced_once_per_batch() {
        let gc = Arc::new(GroupCommit::with_sync(Box::new(|_| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            Ok(())
        })));
        assert!(callers(&gc, 50).into_iter().all(|r| r.is_ok()));
        let batches = gc.batches.load(Ordering::Relaxed);
        assert!((1..50).contains(&batches), "batches: {batches}");
        // At most the three distinct directories per batch.
        assert!(gc.dir_syncs.load(Ordering::Relaxed) <= 3 * batches);
    }

    #[test]
    fn a_failed_sync_fails_the_whole_batch_and_everything_after_it() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let gc = Arc::new(GroupCommit::with_sync(Box::new(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            // Slow enough that the other callers join one batch.
            std::thread::sleep(std::time::Duration::from_millis(50));
            Err(std::io::Error::other("injected EIO"))
        })));
        let results = callers(&gc, 20);
        assert!(
            results.iter().all(|r| r.is_err()),
            "every caller must see the failure"
        );
        assert!(gc.has_failed());
        // Later calls fail at once, without syncing again (a second fsync could say Ok).
        let before = calls.load(Ordering::SeqCst);
        assert!(gc.sync_dirs([PathBuf::from("/x")]).is_err());
        assert_eq!(calls.load(Ordering::SeqCst), before);
    }
}
