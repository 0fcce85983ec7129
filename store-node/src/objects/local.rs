//! The local directory backend's write protocol (steps 1-3 of the crash-safety argument in
//! `objects.rs`): unnamed files linked into place, or staged files renamed into place, each
//! synced before it gets its name.

use std::path::PathBuf;

use super::{Local, Op, io_error, placement};
use crate::error::{Result, StoreError};

/// Why an unnamed-file write could not be used.
enum TmpFile {
    /// The filesystem has no O_TMPFILE (or /proc is missing): use the staging path.
    Unsupported,
    /// The target exists (a record being replaced): use the staging path, whose rename
    /// replaces atomically.
    Exists,
    /// The directory does not exist yet.
    NoDirectory,
    Failed(StoreError),
}

impl Local {
    /// The fault-injection hook (a no-op without the `fault-injection` feature).
    #[inline]
    pub(super) fn fault(&self, op: Op, path: &std::path::Path) -> std::io::Result<()> {
        #[cfg(feature = "fault-injection")]
        if let Some(faults) = &self.faults {
            return faults.hit(op, path);
        }
        let _ = (op, path);
        Ok(())
    }

    /// Steps 1-3 of the module doc, on a blocking thread. Returns the directories whose
    /// entries changed (step 4 syncs them) and whether the object is new.
    ///
    /// A new object is written as an unnamed file in its own directory (`O_TMPFILE`), synced,
    /// and then given its name with `linkat` — the same guarantee as staging + rename (the
    /// name only ever points at synced bytes; a crash before the link leaves no file at all),
    /// without a second directory, its lock or a rename. Replaced records, and filesystems
    /// without `O_TMPFILE`, take the staging path of the module doc.
    pub(super) fn write_synced(
        &self,
        staged: &std::path::Path,
        target: &std::path::Path,
        bytes: &[u8],
    ) -> Result<(Vec<PathBuf>, bool)> {
        self.fault(Op::Put, target)
            .map_err(|e| io_error("write", target, e))?;
        let parent = target
            .parent()
            .ok_or_else(|| StoreError::Internal(format!("{} has no parent", target.display())))?;
        let mut dirs = vec![parent.to_path_buf()];
        // The common case first: the directory exists and the object is new.
        let mut made = false;
        loop {
            match self.write_unnamed(parent, target, bytes) {
                Ok(()) => return Ok((dirs, true)),
                Err(TmpFile::Failed(e)) => return Err(e),
                Err(TmpFile::NoDirectory) if !made => {
                    self.make_dirs(parent, &mut dirs)?;
                    made = true;
                }
                Err(_) => break,
            }
        }
        if !made && !parent.exists() {
            self.make_dirs(parent, &mut dirs)?;
        }
        let created = !target.exists();
        self.write_staged(staged, bytes)?;
        self.fault(Op::Rename, target)
            .and_then(|()| std::fs::rename(staged, target))
            .map_err(|e| {
                let _ = std::fs::remove_file(staged);
                io_error("rename", target, e)
            })?;
        Ok((dirs, created))
    }

    /// Creates `dir` and its missing parents; each new directory's parent joins `dirs`, so
    /// that the new entries are synced too. Top down, so that a new domain directory is
    /// marked for spreading (`placement.rs`) before its first mailbox is made in it.
    fn make_dirs(&self, dir: &std::path::Path, dirs: &mut Vec<PathBuf>) -> Result<()> {
        let mut missing = Vec::new();
        let mut at = dir;
        while !at.exists() && at != self.root {
            let Some(up) = at.parent() else { break };
            dirs.push(up.to_path_buf());
            missing.push(at);
            at = up;
        }
        for new in missing.into_iter().rev() {
            match std::fs::create_dir(new) {
                Ok(()) if placement::holds_mailboxes(&self.root, new) => {
                    placement::spread_subdirectories(new)
                }
                Ok(()) => {}
                // A concurrent writer made it first.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error("mkdir", new, e)),
            }
        }
        Ok(())
    }

    fn write_unnamed(
        &self,
        dir: &std::path::Path,
        target: &std::path::Path,
        bytes: &[u8],
    ) -> std::result::Result<(), TmpFile> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        if !self.unnamed_files {
            return Err(TmpFile::Unsupported);
        }
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o640)
            .open(dir)
        {
            Ok(f) => f,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
                ) =>
            {
                return Err(TmpFile::Unsupported);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TmpFile::NoDirectory);
            }
            Err(e) => return Err(TmpFile::Failed(io_error("create in", dir, e))),
        };
        file.write_all(bytes)
            .map_err(|e| TmpFile::Failed(io_error("write in", dir, e)))?;
        if let Err(e) = self
            .fault(Op::FileSync, target)
            .and_then(|()| file.sync_data())
        {
            let why = format!("fdatasync in {}: {e}", dir.display());
            self.commit.fail(&why);
            return Err(TmpFile::Failed(StoreError::Durability(why)));
        }
        let source = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .expect("no NUL in a /proc path");
        let name = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
            .map_err(|_| TmpFile::Failed(StoreError::Internal("NUL in a path".into())))?;
        self.fault(Op::Rename, target)
            .map_err(|e| TmpFile::Failed(io_error("link", target, e)))?;
        // SAFETY: both paths are valid NUL-terminated strings; `file` keeps the fd open.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                source.as_ptr(),
                libc::AT_FDCWD,
                name.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EEXIST) => TmpFile::Exists,
                Some(libc::ENOENT) if !std::path::Path::new("/proc/self/fd").exists() => {
                    TmpFile::Unsupported
                }
                _ => TmpFile::Failed(io_error("link", target, e)),
            });
        }
        Ok(())
    }

    /// Step 1-2 of the staging path: a synced file under `staging/`.
    fn write_staged(&self, staged: &std::path::Path, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let staging = self.root.join("staging");
        if !staging.exists() {
            std::fs::create_dir_all(&staging).map_err(|e| io_error("mkdir", &staging, e))?;
        }
        let mut file = std::fs::File::create(staged).map_err(|e| io_error("create", staged, e))?;
        file.write_all(bytes)
            .map_err(|e| io_error("write", staged, e))?;
        if let Err(e) = self
            .fault(Op::FileSync, staged)
            .and_then(|()| file.sync_data())
        {
            let _ = std::fs::remove_file(staged);
            let why = format!("fdatasync {}: {e}", staged.display());
            self.commit.fail(&why);
            return Err(StoreError::Durability(why));
        }
        Ok(())
    }
}
