//! Where the filesystem puts a mailbox: each domain directory (`mailboxes/<domain>`) is marked
//! as the top of a directory hierarchy (`FS_TOPDIR_FL`, what `chattr +T` sets), so that ext4's
//! Orlov allocator spreads the mailbox directories made in it over the block groups with the
//! most room, as it does for top-level directories and home directories, instead of packing
//! every mailbox next to its parent.
//!
//! # Why
//! ext4 puts a new file in its directory's block group. Without a journal, its inode
//! allocator then passes over every inode of that group that was freed in the last 1-5
//! minutes (`recently_deleted()` in `fs/ext4/ialloc.c`, a buffer-cache lookup each), at
//! every file creation. A mailbox packed beside another program's busy directory (an MTA's
//! queue, which frees one file per message) pays for that program's deletions at every
//! delivery: measured on this project's benchmark machine, with the data in /tmp beside
//! Postfix's queue, more than half the store's CPU went there and its throughput halved
//! (docs/performance.md). Spread mailboxes start in the emptiest groups and keep their own
//! groups. With a journal, the hint only spreads the mailboxes; other filesystems do not
//! know the flag, and the store then goes on without it (best effort, never an error).
//!
//! Only domain directories get the flag: their children are mailboxes, each a directory tree
//! of its own. A mailbox's own subdirectories (`messages/`) stay beside the mailbox.

use std::os::fd::AsRawFd;
use std::path::Path;

/// `FS_TOPDIR_FL` of `linux/fs.h` (not in the libc crate). The flag ioctls take an `int`,
/// whatever their numbers say.
pub(super) const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// `root/mailboxes`, the parent of the domain directories.
fn mailboxes_dir(root: &Path) -> std::path::PathBuf {
    root.join(super::mailboxes_prefix().as_ref())
}

/// True for `root/mailboxes/<domain>`: a directory whose children are mailboxes.
pub(super) fn holds_mailboxes(root: &Path, dir: &Path) -> bool {
    dir.parent() == Some(mailboxes_dir(root).as_path())
}

/// The inode flags of an open file, or the error of a filesystem without them.
fn flags_of(file: &std::fs::File) -> std::io::Result<libc::c_int> {
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer, which outlives the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(flags)
}

/// Marks `dir` so that the filesystem spreads its subdirectories (module doc). Best effort:
/// a filesystem without the flag, or a data directory of another owner, leaves it unmarked.
pub(super) fn spread_subdirectories(dir: &Path) {
    let set = || -> std::io::Result<()> {
        let file = std::fs::File::open(dir)?;
        let current = flags_of(&file)?;
        if current & FS_TOPDIR_FL != 0 {
            return Ok(());
        }
        let new = current | FS_TOPDIR_FL;
        // SAFETY: FS_IOC_SETFLAGS reads one int through the pointer, which outlives the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &new) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    if let Err(e) = set() {
        tracing::debug!(dir = %dir.display(), error = %e, "mailboxes are not spread over block groups (no FS_TOPDIR_FL here)");
    }
}

/// Marks the domain directories of an existing data directory (made before this store
/// version, or by hand): mailboxes made from now on are spread.
pub(super) fn spread_existing(root: &Path) {
    let Ok(domains) = std::fs::read_dir(mailboxes_dir(root)) else {
        return;
    };
    for entry in domains.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            spread_subdirectories(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{Durability, Objects, meta_path_in};

    fn flags(dir: &Path) -> std::io::Result<libc::c_int> {
        flags_of(&std::fs::File::open(dir)?)
    }

    /// True when the filesystem under `dir` keeps the flag (ext4 does; tmpfs does not).
    fn keeps_the_flag(dir: &Path) -> bool {
        let probe = dir.join("probe");
        std::fs::create_dir(&probe).unwrap();
        spread_subdirectories(&probe);
        let kept = flags(&probe).is_ok_and(|f| f & FS_TOPDIR_FL != 0);
        std::fs::remove_dir(&probe).unwrap();
        kept
    }

    fn marked(dir: &Path) -> bool {
        flags(dir).unwrap() & FS_TOPDIR_FL != 0
    }

    #[tokio::test]
    async fn a_new_domain_directory_spreads_its_mailboxes_and_an_old_one_is_marked_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        if !keeps_the_flag(tmp.path()) {
            eprintln!(
                "SKIP: the filesystem of {} has no FS_TOPDIR_FL",
                tmp.path().display()
            );
            return;
        }
        // A data directory from before: a domain directory without the flag.
        let data = tmp.path().join("data");
        let old = data.join("mailboxes/old.test/u1");
        std::fs::create_dir_all(&old).unwrap();
        assert!(!marked(&data.join("mailboxes/old.test")));

        let objects = Objects::open(data.to_str().unwrap(), Durability::GroupCommit).unwrap();
        assert!(marked(&data.join("mailboxes/old.test")), "marked at open");

        objects
            .put(
                &meta_path_in("new.test", "u1"),
                bytes::Bytes::from_static(b"{}"),
            )
            .await
            .unwrap();
        let root = data.canonicalize().unwrap();
        assert!(
            marked(&root.join("mailboxes/new.test")),
            "a new domain directory"
        );
        // Only the domain directories: not the mailboxes above or below them.
        assert!(!marked(&root.join("mailboxes")));
        assert!(!marked(&root.join("mailboxes/new.test/u1")));
        assert!(!marked(&old));
    }

    #[test]
    fn only_domain_directories_hold_mailboxes() {
        let root = Path::new("/data");
        assert!(holds_mailboxes(
            root,
            Path::new("/data/mailboxes/example.test")
        ));
        assert!(!holds_mailboxes(root, Path::new("/data/mailboxes")));
        assert!(!holds_mailboxes(
            root,
            Path::new("/data/mailboxes/example.test/u1")
        ));
        assert!(!holds_mailboxes(root, Path::new("/data/queue/x")));
        assert!(!holds_mailboxes(
            root,
            Path::new("/elsewhere/mailboxes/example.test")
        ));
    }
}
