//! Durable object storage under the store: the object layout and the fsync rules.
//!
//! # Layout
//! ```text
//! domains/<domain>                              JSON `DomainRecord` (quota, lock)
//! aliases/<domain>/<local>                      JSON `AliasRecord` (targets, lock)
//! mailboxes/<domain>/<local>/meta.json          JSON `MailboxRecord` (address, Argon2id hash)
//! mailboxes/<domain>/<local>/messages/<uidl>    the message, CRLF line endings, as delivered
//! ```
//! The listing of `mailboxes/` IS the message index: a message exists exactly when its object
//! exists, its size is the object's size and its UIDL is the object's name. There is no second
//! copy of that truth that could disagree with it after a crash.
//!
//! # Crash safety (local directory, the default: group commit)
//! A message put goes through four steps, and is acknowledged only after the last:
//! 1. write `staging/<uuid>` (object_store writes it to a temp name and renames; no fsync);
//! 2. `syncfs` — the staged bytes are on stable storage;
//! 3. rename `staging/<uuid>` -> its final path (an atomic rename(2));
//! 4. `syncfs` — the new directory entry is on stable storage.
//!
//! A crash before 2 or between 2 and 4 leaves at most a file under `staging/` (swept at start-up,
//! never listed as a message) or a complete message at its final path whose sender got no `250`
//! (it is then delivered, which is the safe direction); it never leaves a partial message
//! visible, because the final name only ever points at bytes that were synced first.
//! Steps 2 and 4 are *shared*: concurrent deliveries wait for one `syncfs` that starts after
//! their write finished (`Syncer`), so 50 concurrent deliveries cost about two syncs, not 100
//! fsyncs. That is the group commit; the benchmark (`cargo bench -p mailroot-store`) compares
//! it with one fsync per write (`Durability::PerWrite`, object_store's own `with_fsync`).
//!
//! object_store does not fsync the directory after a delete, so [`Objects::delete`] does that
//! itself (via the same syncer): a deletion acknowledged to a POP3 client stays deleted.
//!
//! # S3 (`--data s3://bucket/prefix`)
//! A PUT acknowledged by S3 is durable and atomic (never partially visible), which is the
//! whole contract above; endpoint and credentials come from the usual `AWS_*` variables
//! (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Result, StoreError};
use crate::names::Address;

/// How local writes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Staged writes and shared `syncfs` calls (see the module doc).
    GroupCommit,
    /// object_store's `with_fsync(true)`: fsync of file and directory on every write.
    PerWrite,
}

#[derive(Debug, Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// Set for the local-directory backend with group commit.
    syncer: Option<Arc<Syncer>>,
}

impl Objects {
    /// Opens the backend named by `--data`: `s3://bucket[/prefix]`, or a local directory
    /// (created if missing).
    pub fn open(data: &str, durability: Durability) -> Result<Objects> {
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
        let fs = LocalFileSystem::new_with_prefix(&root)?;
        Ok(match durability {
            Durability::PerWrite => Objects {
                store: Arc::new(fs.with_fsync(true)),
                syncer: None,
            },
            Durability::GroupCommit => Objects {
                store: Arc::new(fs),
                syncer: Some(Arc::new(Syncer::open(&root)?)),
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
        Ok(Objects {
            store,
            syncer: None,
        })
    }

    /// Number of `syncfs` calls made so far (0 without group commit).
    pub fn syncs(&self) -> u64 {
        self.syncer
            .as_ref()
            .map_or(0, |s| s.syncs.load(Ordering::Relaxed))
    }

    /// Writes an object durably (see the module doc for the local protocol).
    pub async fn put(&self, path: &Path, bytes: Bytes) -> Result<()> {
        let Some(syncer) = &self.syncer else {
            self.store.put(path, PutPayload::from(bytes)).await?;
            return Ok(());
        };
        let staged = Path::from_iter(["staging", &uuid::Uuid::new_v4().to_string()]);
        self.store.put(&staged, PutPayload::from(bytes)).await?;
        syncer.sync().await?;
        self.store.rename(&staged, path).await?;
        syncer.sync().await
    }

    pub async fn get(&self, path: &Path) -> Result<Bytes> {
        Ok(self.store.get(path).await?.bytes().await?)
    }

    /// Deletes an object durably; a missing object is not an error (deletes are retried after
    /// crashes).
    pub async fn delete(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        match &self.syncer {
            Some(syncer) => syncer.sync().await,
            None => Ok(()),
        }
    }

    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        Ok(self.store.list(Some(prefix)).try_collect().await?)
    }

    /// Removes staged writes left by a crash (start-up only).
    pub async fn sweep_staging(&self) -> Result<usize> {
        let staged = self.list(&Path::from("staging")).await?;
        for meta in &staged {
            self.delete(&meta.location).await?;
        }
        Ok(staged.len())
    }
}

/// Shares `syncfs(2)` calls among concurrent writers: a caller returns once a sync that
/// *started after its call* has completed, and callers that arrive while a sync runs are all
/// served by the next one.
#[derive(Debug)]
pub struct Syncer {
    dir: std::fs::File,
    /// Tickets handed out so far.
    requested: AtomicU64,
    /// Highest ticket covered by a completed sync; the mutex also makes syncs one at a time.
    completed: tokio::sync::Mutex<u64>,
    /// Number of syncfs calls made (for the benchmark and tests).
    pub syncs: AtomicU64,
}

impl Syncer {
    fn open(root: &std::path::Path) -> Result<Syncer> {
        let dir = std::fs::File::open(root)
            .map_err(|e| StoreError::Internal(format!("open {}: {e}", root.display())))?;
        Ok(Syncer {
            dir,
            requested: AtomicU64::new(0),
            completed: tokio::sync::Mutex::new(0),
            syncs: AtomicU64::new(0),
        })
    }

    pub async fn sync(self: &Arc<Self>) -> Result<()> {
        // Everything this caller wrote happened before this ticket was taken.
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut completed = self.completed.lock().await;
        if *completed >= ticket {
            return Ok(());
        }
        // Every ticket up to `upto` was taken after its writes; this sync starts after that.
        let upto = self.requested.load(Ordering::SeqCst);
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.syncfs())
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))??;
        *completed = upto;
        Ok(())
    }

    fn syncfs(&self) -> Result<()> {
        use std::os::fd::AsRawFd;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        // SAFETY: syncfs only reads the descriptor, which `self.dir` keeps open.
        let rc = unsafe { libc::syncfs(self.dir.as_raw_fd()) };
        if rc != 0 {
            return Err(StoreError::Internal(format!(
                "syncfs: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }
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
    Path::from_iter([
        "mailboxes",
        addr.domain.as_str(),
        addr.local.as_str(),
        "meta.json",
    ])
}

pub fn message_path(addr: &Address, uidl: &str) -> Path {
    Path::from_iter([
        "mailboxes",
        addr.domain.as_str(),
        addr.local.as_str(),
        "messages",
        uidl,
    ])
}

/// What a listed object under `mailboxes/` is.
pub enum MailboxObject<'a> {
    Meta { dir: String },
    Message { dir: String, uidl: &'a str },
    Other,
}

/// Classifies a listed object; `dir` is the (encoded) `<domain>/<local>` key of its mailbox.
pub fn classify(meta: &ObjectMeta) -> MailboxObject<'_> {
    let parts: Vec<&str> = meta.location.as_ref().split('/').collect();
    match parts.as_slice() {
        ["mailboxes", d, l, "meta.json"] => MailboxObject::Meta {
            dir: format!("{d}/{l}"),
        },
        ["mailboxes", d, l, "messages", uidl] if !uidl.contains('#') => MailboxObject::Message {
            dir: format!("{d}/{l}"),
            uidl,
        },
        _ => MailboxObject::Other,
    }
}
