//! Fault injection around the local object store, for tests: fail, delay or hang a put, a
//! file sync, a rename (link), a directory sync or a delete, on command, for paths that
//! contain a given text. [`Op`] names the hook points (`objects.rs`, `group_commit.rs`); the
//! [`Faults`] switchboard itself exists only with the `fault-injection` feature, which only the
//! store's own tests turn on (a dev-dependency of the crate on itself), so a release binary
//! carries no way to inject anything.

/// A place in the write path where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// The start of an object write (before any byte is written).
    Put,
    /// `fdatasync` of a written file.
    FileSync,
    /// Giving a synced file its name (`linkat` of an unnamed file, or `rename` from staging).
    Rename,
    /// `fsync` of a directory by the group commit.
    DirSync,
    /// Unlinking an object.
    Delete,
}

#[cfg(feature = "fault-injection")]
pub use switchboard::{Fault, Faults};

#[cfg(feature = "fault-injection")]
mod switchboard {
    use std::collections::HashMap;
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};

    use super::Op;
    use crate::group_commit::DirSync;

    /// What happens at a hook point.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// The operation fails with EIO (a sync failing this way marks the storage failed).
        Fail,
        /// The operation goes ahead after this long.
        Delay(Duration),
        /// The operation waits until [`Faults::release`] (at most [`MAX_HANG`], then fails),
        /// then the rules are consulted again.
        Hang,
    }

    /// A hang that nobody releases ends here, so that a failing test cannot hold a blocking
    /// thread (and with it the test's runtime) forever.
    pub const MAX_HANG: Duration = Duration::from_secs(30);

    #[derive(Debug)]
    struct Rule {
        op: Op,
        path_contains: String,
        fault: Fault,
        /// How many more hits it applies to (`None`: all).
        remaining: Option<u32>,
    }

    #[derive(Debug, Default)]
    struct Board {
        rules: Vec<Rule>,
        /// Bumped by `release`: hanging operations wake up and look again.
        generation: u64,
        hanging: HashMap<Op, usize>,
        hits: HashMap<Op, u64>,
    }

    /// The switchboard shared by a test and the storage it drives.
    #[derive(Debug, Default)]
    pub struct Faults {
        board: Mutex<Board>,
        wake: Condvar,
    }

    impl Faults {
        pub fn new() -> Arc<Faults> {
            Arc::new(Faults::default())
        }

        fn board(&self) -> std::sync::MutexGuard<'_, Board> {
            self.board.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Adds a rule: `fault` at `op` for paths containing `path_contains` ("" for all),
        /// for the next `times` hits (`None`: until cleared). The oldest matching rule wins.
        pub fn inject(&self, op: Op, path_contains: &str, fault: Fault, times: Option<u32>) {
            self.board().rules.push(Rule {
                op,
                path_contains: path_contains.to_string(),
                fault,
                remaining: times,
            });
        }

        /// Removes every rule and releases every hang.
        pub fn clear(&self) {
            self.board().rules.clear();
            self.release();
        }

        /// Wakes every hanging operation; each consults the rules again.
        pub fn release(&self) {
            self.board().generation += 1;
            self.wake.notify_all();
        }

        /// Operations hanging at `op` right now (tests poll this).
        pub fn hanging(&self, op: Op) -> usize {
            self.board().hanging.get(&op).copied().unwrap_or(0)
        }

        /// Times `op` was reached so far, faulted or not.
        pub fn hits(&self, op: Op) -> u64 {
            self.board().hits.get(&op).copied().unwrap_or(0)
        }

        /// The hook: called on a blocking thread where `op` is about to happen to `path`.
        pub fn hit(&self, op: Op, path: &std::path::Path) -> std::io::Result<()> {
            let path = path.to_string_lossy();
            let mut board = self.board();
            *board.hits.entry(op).or_default() += 1;
            let started = Instant::now();
            loop {
                let Some(rule) = board.rules.iter_mut().find(|r| {
                    r.op == op && r.remaining != Some(0) && path.contains(&r.path_contains)
                }) else {
                    return Ok(());
                };
                if let Some(n) = &mut rule.remaining {
                    *n -= 1;
                }
                match rule.fault {
                    Fault::Fail => {
                        return Err(std::io::Error::from_raw_os_error(libc::EIO));
                    }
                    Fault::Delay(d) => {
                        drop(board);
                        std::thread::sleep(d);
                        return Ok(());
                    }
                    Fault::Hang => {
                        let generation = board.generation;
                        *board.hanging.entry(op).or_default() += 1;
                        while board.generation == generation {
                            let left = MAX_HANG.saturating_sub(started.elapsed());
                            if left.is_zero() {
                                *board.hanging.entry(op).or_default() -= 1;
                                return Err(std::io::Error::from(std::io::ErrorKind::TimedOut));
                            }
                            board = self
                                .wake
                                .wait_timeout(board, left)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                        *board.hanging.entry(op).or_default() -= 1;
                    }
                }
            }
        }

        /// A directory sync for [`crate::group_commit::GroupCommit::with_sync`] that passes
        /// through this switchboard first.
        pub fn dir_sync(self: &Arc<Self>) -> Box<DirSync> {
            let faults = self.clone();
            Box::new(move |dir| {
                faults.hit(Op::DirSync, dir)?;
                crate::group_commit::fsync_dir(dir)
            })
        }
    }
}
