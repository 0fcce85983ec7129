//! Durable object storage under the store: the object layout and the fsync rules.
//!
//! # Layout
//! ```text
//! domains/<domain>                              JSON `DomainRecord` (quota, lock)
//! aliases/<domain>/<local>                      JSON `AliasRecord` (targets, lock)
//! mailboxes/<domain>/<local>/meta.json          JSON `MailboxRecord` (address, Argon2id hash)
//! mailboxes/<domain>/<local>/messages/<uidl>    the message, CRLF line endings, as delivered
//! mailboxes/<domain>/<local>/imported/<key>     import marker (`store/import.rs`): its UIDL
//! leases/epoch                                  JSON high-water mark of lease epochs
//! queue/<id>/message                            an outbound message, as submitted (written once)
//! queue/<id>/state.json                         JSON envelope and per-recipient state
//! dkim/<domain>                                 JSON DKIM key (selector, algorithm, PKCS#8)
//! ```
//! The outbound queue's own crash-safety argument is in `store/queue/mod.rs`. Each
//! `mailboxes/<domain>` directory is marked so that ext4 spreads its mailboxes over block
//! groups (`placement.rs`).
//! The listing of `mailboxes/` IS the message index: a message exists exactly when its object
//! exists, its size is the object's size and its UIDL is the object's name. There is no second
//! copy of that truth that could disagree with it after a crash.
//!
//! # Crash safety (local directory, the default: group commit)
//! A message put goes through four steps, and is acknowledged only after the last:
//! 1. write `staging/<uuid>` (a new file on the same filesystem);
//! 2. `fdatasync` it — the bytes are on stable storage (each writer in its own blocking
//!    task, so concurrent writers' syncs run in parallel);
//! 3. rename `staging/<uuid>` -> its final path (an atomic rename(2)); a directory created
//!    for it on the way is remembered together with its parent;
//! 4. `fsync` of the final directory (and of the parents of new directories), shared by all
//!    concurrent writers through the group commit (`group_commit.rs`): one fsync per
//!    directory per batch.
//!
//! A crash before 3 leaves at most a file under `staging/` (swept at start-up, never listed
//! as a message); a crash between 3 and 4 leaves either no message or a complete one at its
//! final path whose sender got no `250` (it is then delivered, which is the safe direction);
//! it never leaves a partial message visible, because the final name only ever points at
//! bytes that were synced first. If step 2 or 4 fails, the write is answered with an error
//! (451 / try later), its file is removed again, and the group commit refuses every later
//! write until the store is restarted: after a failed fsync the kernel may have dropped dirty
//! pages of *other* files, and only a restart, which re-reads the disk, knows what is there.
//! Unlike `syncfs`, this flushes only the batch's own files and directories, not other
//! writers' data on a shared volume. The benchmark (`cargo bench -p mailroot-store`) compares
//! it with one fsync per write (`Durability::PerWrite`, object_store's own `with_fsync`).
//!
//! Deletes unlink the files and then fsync their directories through the same group commit
//! ([`Objects::delete_many`]: all deletions of one POP3 QUIT share one sync per directory), so
//! a deletion acknowledged to a POP3 client stays deleted.
//!
//! # S3 (`--data s3://bucket/prefix`)
//! A PUT acknowledged by S3 is durable and atomic (never partially visible), which is the
//! whole contract above; endpoint and credentials come from the usual `AWS_*` variables
//! (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Result, StoreError};
use crate::faults::Op;
use crate::group_commit::GroupCommit;
use crate::names::Address;

mod local;
mod placement;

/// How local writes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Staged writes, `fdatasync` per file and group-committed directory fsyncs (module doc).
    GroupCommit,
    /// object_store's `with_fsync(true)`: fsync of file and directory on every write.
    PerWrite,
}

/// Read size of streamed message fetches.
pub const CHUNK: usize = 128 * 1024;

#[derive(Debug, Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// Set for the local-directory backend with group commit.
    local: Option<Arc<Local>>,
}

#[derive(Debug)]
struct Local {
    fs: LocalFileSystem,
    root: PathBuf,
    commit: Arc<GroupCommit>,
    /// New objects are written as unnamed files (`O_TMPFILE`) where the filesystem allows.
    unnamed_files: bool,
    #[cfg(feature = "fault-injection")]
    faults: Option<Arc<crate::faults::Faults>>,
}

impl Objects {
    /// Opens the backend named by `--data`: `s3://bucket[/prefix]`, or a local directory
    /// (created if missing).
    pub fn open(data: &str, durability: Durability) -> Result<Objects> {
        Objects::open_with(data, durability, GroupCommit::default(), true)
    }

    /// Like [`Objects::open`] with a given group commit (tests inject sync failures) and,
    /// with `unnamed_files` false, new objects written through `staging/` as well (tests
    /// cover both paths).
    pub fn open_with(
        data: &str,
        durability: Durability,
        commit: GroupCommit,
        unnamed_files: bool,
    ) -> Result<Objects> {
        if let Some(rest) = data.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            return Objects::s3(AmazonS3Builder::from_env().with_bucket_name(bucket), prefix);
        }
        let root = PathBuf::from(data);
        std::fs::create_dir_all(&root).map_err(|e| {
            StoreError::Internal(format!("cannot create data directory {data}: {e}"))
        })?;
        let root = root.canonicalize().map_err(|e| {
            StoreError::Internal(format!("cannot resolve data directory {data}: {e}"))
        })?;
        placement::spread_existing(&root);
        let fs = LocalFileSystem::new_with_prefix(&root)?;
        Ok(match durability {
            Durability::PerWrite => Objects {
                store: Arc::new(fs.with_fsync(true)),
                local: None,
            },
            Durability::GroupCommit => Objects {
                store: Arc::new(LocalFileSystem::new_with_prefix(&root)?),
                local: Some(Arc::new(Local {
                    fs,
                    root,
                    commit: Arc::new(commit),
                    unnamed_files,
                    #[cfg(feature = "fault-injection")]
                    faults: None,
                })),
            },
        })
    }

    /// An S3 backend from an explicit builder, under `prefix` inside the bucket.
    pub fn s3(builder: AmazonS3Builder, prefix: &str) -> Result<Objects> {
        let s3 = builder.build()?;
        let store: Arc<dyn ObjectStore> = match prefix.trim_matches('/') {
            "" => Arc::new(s3),
            p => Arc::new(PrefixStore::new(s3, p)),
        };
        Ok(Objects { store, local: None })
    }

    /// Routes the local backend's writes, syncs and deletes through `faults` (tests; pair it
    /// with a group commit made with [`crate::faults::Faults::dir_sync`]).
    #[cfg(feature = "fault-injection")]
    pub fn with_faults(self, faults: Arc<crate::faults::Faults>) -> Objects {
        let local = self.local.map(|l| {
            let mut l = Arc::try_unwrap(l).expect("with_faults right after open");
            l.faults = Some(faults);
            Arc::new(l)
        });
        Objects { local, ..self }
    }

    /// Sync requests made to the group commit so far (0 without it).
    pub fn sync_tickets(&self) -> u64 {
        self.local.as_ref().map_or(0, |l| l.commit.tickets())
    }

    /// Directory fsyncs made so far (0 without group commit).
    pub fn syncs(&self) -> u64 {
        self.local.as_ref().map_or(0, |l| {
            l.commit
                .dir_syncs
                .load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// True when local storage failed to sync and refuses writes (see `group_commit.rs`).
    pub fn failed(&self) -> bool {
        self.local.as_ref().is_some_and(|l| l.commit.has_failed())
    }

    /// Writes an object durably (see the module doc for the local protocol).
    pub async fn put(&self, path: &Path, bytes: Bytes) -> Result<()> {
        let Some(local) = &self.local else {
            self.store.put(path, PutPayload::from(bytes)).await?;
            return Ok(());
        };
        local.commit.check()?;
        let target = local.fs.path_to_filesystem(path)?;
        let staged = local
            .root
            .join("staging")
            .join(uuid::Uuid::new_v4().to_string());
        let l = local.clone();
        let placed = target.clone();
        tokio::task::spawn_blocking(move || {
            let (dirs, created) = l.write_synced(&staged, &placed, &bytes)?;
            if let Err(e) = l.commit.sync_dirs(dirs) {
                // Not acknowledged: a new object (a message) is taken back, so that it is not
                // found after a restart either. A replaced record (metadata) stays: removing
                // it would lose the old version too.
                if created {
                    let _ = std::fs::remove_file(&placed);
                }
                return Err(e);
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    pub async fn get(&self, path: &Path) -> Result<Bytes> {
        Ok(self.store.get(path).await?.bytes().await?)
    }

    /// The object in chunks of at most [`CHUNK`] octets, read as the stream is polled. `size`
    /// is the object's size as indexed: locally each chunk is then one exact read (a small
    /// message is one read in all, with no extra read to find the end).
    pub async fn get_stream(
        &self,
        path: &Path,
        size: u64,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let Some(local) = &self.local else {
            let stream = self.store.get(path).await?.into_stream();
            return Ok(Box::pin(stream.map_err(StoreError::from)));
        };
        let file_path = local.fs.path_to_filesystem(path)?;
        let not_found = path.to_string();
        let first = (size as usize).min(CHUNK);
        let (file, chunk) = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut file = std::fs::File::open(&file_path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    StoreError::NoSuchMessage(not_found)
                } else {
                    StoreError::Internal(format!("open {}: {e}", file_path.display()))
                }
            })?;
            let mut buf = vec![0u8; first];
            file.read_exact(&mut buf)
                .map_err(|e| StoreError::Internal(format!("read {}: {e}", file_path.display())))?;
            Ok::<_, StoreError>((file, Bytes::from(buf)))
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))??;
        let rest = size - first as u64;
        let first = futures::stream::once(async move { Ok(chunk) });
        let more = futures::stream::try_unfold((file, rest), |(mut file, rest)| async move {
            if rest == 0 {
                return Ok(None);
            }
            let n = (rest as usize).min(CHUNK);
            let (file, chunk) = tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut buf = vec![0u8; n];
                file.read_exact(&mut buf)
                    .map_err(|e| StoreError::Internal(format!("read: {e}")))?;
                Ok::<_, StoreError>((file, Bytes::from(buf)))
            })
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))??;
            Ok(Some((chunk, (file, rest - n as u64))))
        });
        Ok(Box::pin(first.chain(more)))
    }

    /// Deletes an object durably; a missing object is not an error (deletes are retried after
    /// crashes).
    pub async fn delete(&self, path: &Path) -> Result<()> {
        self.delete_many(std::slice::from_ref(path)).await
    }

    /// Deletes objects durably, with one directory sync per directory for all of them.
    pub async fn delete_many(&self, paths: &[Path]) -> Result<()> {
        let Some(local) = &self.local else {
            for path in paths {
                match self.store.delete(path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(());
        };
        local.commit.check()?;
        let files = paths
            .iter()
            .map(|p| local.fs.path_to_filesystem(p))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let l = local.clone();
        tokio::task::spawn_blocking(move || {
            let mut dirs = std::collections::BTreeSet::new();
            for file in &files {
                match l
                    .fault(Op::Delete, file)
                    .and_then(|()| std::fs::remove_file(file))
                {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error("remove", file, e)),
                }
                if let Some(parent) = file.parent() {
                    dirs.insert(parent.to_path_buf());
                }
            }
            if dirs.is_empty() {
                return Ok(());
            }
            l.commit.sync_dirs(dirs)
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    /// Every mailbox directory as its (domain, local) path segments, whether or not its
    /// metadata object exists (start-up sweeps the ones without).
    pub async fn mailbox_dirs(&self) -> Result<Vec<(String, String)>> {
        let mut dirs = Vec::new();
        let domains = self
            .store
            .list_with_delimiter(Some(&mailboxes_prefix()))
            .await?;
        for domain in domains.common_prefixes {
            let Some(d) = domain.filename().map(str::to_string) else {
                continue;
            };
            let locals = self.store.list_with_delimiter(Some(&domain)).await?;
            for local in locals.common_prefixes {
                if let Some(l) = local.filename() {
                    dirs.push((d.clone(), l.to_string()));
                }
            }
        }
        Ok(dirs)
    }

    /// The messages of one mailbox as (UIDL, size), in no particular order. Locally this is
    /// one directory read and one `statx` per message on a blocking thread, so start-up can
    /// list many mailboxes in parallel.
    pub async fn list_messages(&self, domain: &str, local: &str) -> Result<Vec<(String, u64)>> {
        let prefix = messages_dir_in(domain, local);
        let Some(l) = &self.local else {
            let listing = self.list(&prefix).await?;
            return Ok(listing
                .into_iter()
                .filter_map(|m| {
                    let uidl = m.location.filename()?.to_string();
                    (!uidl.contains('#')).then_some((uidl, m.size))
                })
                .collect());
        };
        let dir = l.fs.path_to_filesystem(&prefix)?;
        tokio::task::spawn_blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_error("list", &dir, e)),
            };
            let mut messages = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| io_error("list", &dir, e))?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                // object_store's own temporary files (`name#n`) are not messages.
                if name.contains('#') {
                    continue;
                }
                match entry.metadata() {
                    Ok(meta) if meta.is_file() => messages.push((name, meta.len())),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("stat", &entry.path(), e)),
                }
            }
            Ok(messages)
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        Ok(self.store.list(Some(prefix)).try_collect().await?)
    }

    /// Removes staged writes left by a crash (start-up only).
    pub async fn sweep_staging(&self) -> Result<usize> {
        let staged = self.list(&Path::from("staging")).await?;
        let paths: Vec<Path> = staged.iter().map(|m| m.location.clone()).collect();
        self.delete_many(&paths).await?;
        Ok(staged.len())
    }
}

fn io_error(what: &str, p: &std::path::Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what} {}: {e}", p.display()))
}

/// The persisted high-water mark of maildrop lease epochs (`store/leases.rs`).
pub fn lease_epoch_path() -> Path {
    Path::from_iter(["leases", "epoch"])
}

/// Every outbound queue entry lives under it (`store/queue/mod.rs`).
pub fn queue_prefix() -> Path {
    Path::from("queue")
}

pub fn queue_message_path(id: &str) -> Path {
    Path::from_iter(["queue", id, "message"])
}

pub fn queue_state_path(id: &str) -> Path {
    Path::from_iter(["queue", id, "state.json"])
}

pub fn dkim_prefix() -> Path {
    Path::from("dkim")
}

pub fn dkim_path(domain: &str) -> Path {
    Path::from_iter(["dkim", domain])
}

pub fn domains_prefix() -> Path {
    Path::from("domains")
}

pub fn domain_path(domain: &str) -> Path {
    Path::from_iter(["domains", domain])
}

pub fn aliases_prefix() -> Path {
    Path::from("aliases")
}

pub fn alias_path(addr: &Address) -> Path {
    Path::from_iter(["aliases", addr.domain.as_str(), addr.local.as_str()])
}

pub fn mailboxes_prefix() -> Path {
    Path::from("mailboxes")
}

pub fn mailbox_meta_path(addr: &Address) -> Path {
    meta_path_in(&addr.domain, &addr.local)
}

/// `mailboxes/<domain>/<local>/meta.json` from the directory's path segments.
pub fn meta_path_in(domain: &str, local: &str) -> Path {
    Path::from_iter(["mailboxes", domain, local, "meta.json"])
}

/// `mailboxes/<domain>/<local>/messages`: the directory of a mailbox's messages.
pub fn messages_dir_in(domain: &str, local: &str) -> Path {
    Path::from_iter(["mailboxes", domain, local, "messages"])
}

pub fn message_path(addr: &Address, uidl: &str) -> Path {
    message_path_in(&addr.domain, &addr.local, uidl)
}

pub fn message_path_in(domain: &str, local: &str, uidl: &str) -> Path {
    messages_dir_in(domain, local).join(uidl)
}
