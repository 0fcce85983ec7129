//! Start-up: the index is rebuilt from a listing of the objects (the listing IS the index:
//! `objects.rs`), usage is derived from the stored sizes, and leftovers of a crash are swept
//! (staged writes, messages of a deleted mailbox, queued messages without their state: see
//! `queue/mod.rs`). The outbound queue and the DKIM keys are loaded, and the queue's
//! background sweep is started.

use futures::StreamExt;

use crate::objects;

use super::retention;

/// Mailboxes read at the same time during start-up.
const LOAD_PARALLELISM: usize = 16;

use super::*;

impl Store {
    /// Opens the store and rebuilds the index from the objects. Messages whose mailbox has no
    /// metadata (a crash in the middle of `mailbox delete`) are removed here.
    pub async fn open(objects: Objects, auth_guid: &str, lease_ttl: Duration) -> Result<Store> {
        Store::open_with(objects, auth_guid, Options::new(lease_ttl)).await
    }

    pub async fn open_with(objects: Objects, auth_guid: &str, options: Options) -> Result<Store> {
        let credentials = Credentials::new(auth_guid, options.auth_cache_ttl)?;
        let mut state = State::default();
        let swept = objects.sweep_staging().await?;
        if swept > 0 {
            tracing::warn!(count = swept, "removed staged writes left by a crash");
        }

        for meta in objects.list(&objects::domains_prefix()).await? {
            let record: DomainRecord = read_json(&objects, &meta.location).await?;
            state.domains.insert(
                record.name,
                Domain {
                    quota: record.quota,
                    locked: record.locked,
                    directory: record.directory.map(Arc::new),
                    ..Domain::default()
                },
            );
        }
        for meta in objects.list(&objects::aliases_prefix()).await? {
            let record: AliasRecord = read_json(&objects, &meta.location).await?;
            let targets = record
                .targets
                .iter()
                .map(|t| Address::parse(t))
                .collect::<Result<Vec<_>>>()?;
            state
                .aliases
                .insert(Address::parse(&record.address)?, targets);
        }

        // Every mailbox is read in parallel: its metadata and the listing of its messages
        // (the listing IS the index). Cold, this is bound by directory and inode reads, which
        // the disk serves faster with several in flight.
        let dirs = objects.mailbox_dirs().await?;
        let mut loads = futures::stream::iter(dirs)
            .map(|(domain, local)| {
                let objects = objects.clone();
                async move {
                    let meta = objects::meta_path_in(&domain, &local);
                    let record = match read_json::<MailboxRecord>(&objects, &meta).await {
                        Ok(record) => Some(record),
                        Err(StoreError::Storage(object_store::Error::NotFound { .. })) => None,
                        Err(e) => return Err(e),
                    };
                    let messages = objects.list_messages(&domain, &local).await?;
                    let retrieved = match &record {
                        Some(_) => retention::load(&objects, &domain, &local).await?,
                        None => Default::default(),
                    };
                    Ok::<_, StoreError>((domain, local, record, messages, retrieved))
                }
            })
            .buffer_unordered(LOAD_PARALLELISM)
            .boxed();
        while let Some(load) = loads.next().await {
            let (domain, local, record, mut messages, retrieved) = load?;
            let Some(record) = record else {
                // A crash in the middle of `mailbox delete`: the metadata went first.
                if !messages.is_empty() {
                    tracing::warn!(mailbox = %format!("{local}@{domain}"), count = messages.len(), "removing messages of a deleted mailbox");
                    let orphans: Vec<_> = messages
                        .iter()
                        .map(|(uidl, _)| objects::message_path_in(&domain, &local, uidl))
                        .collect();
                    objects.delete_many(&orphans).await?;
                }
                objects
                    .delete(&retention::record_path_in(&domain, &local))
                    .await?;
                super::import::remove_markers(&objects, &domain, &local).await?;
                continue;
            };
            let addr = Address::parse(&record.address)?;
            // UIDLs are UUIDv7 strings: sorted, they are arrival order, and a sorted run
            // builds the map in one pass.
            messages.sort_unstable();
            state.load_mailbox(addr, record, messages, retrieved);
        }
        drop(loads);
        tracing::info!(
            domains = state.domains.len(),
            mailboxes = state.mailboxes.len(),
            aliases = state.aliases.len(),
            messages = state
                .mailboxes
                .values()
                .map(|m| m.messages.len())
                .sum::<usize>(),
            "store index loaded"
        );
        let settings = SettingsStore::load(&objects).await?;
        let epochs = Epochs::load(&objects).await?;
        let entries = queue::load(&objects).await?;
        tracing::info!(
            entries = entries.len(),
            recipients = entries
                .iter()
                .map(|(s, _)| s.recipients.len())
                .sum::<usize>(),
            "outbound queue loaded"
        );
        let keys = dkim::load(&objects, &state.domains).await?;
        let store = Store {
            inner: Arc::new(Inner {
                settings,
                throttle: Throttle::new(options.login_delay),
                objects,
                credentials,
                directories: Directories::new(options.directory_cache_ttl),
                state: Mutex::new(state),
                admin: tokio::sync::Mutex::new(()),
                lease_ttl: options.lease_ttl,
                epochs,
                queue: queue::Queue::new(options.queue_claim_ttl, entries),
                outbound: outbound::OutboundLimit::new(options.outbound_limit_window),
                dkim: Mutex::new(keys),
                imports: Arc::default(),
                stop: tokio_util::sync::CancellationToken::new(),
            }),
        };
        store.publish_dkim();
        store.spawn_queue_sweeper();
        store.spawn_retention_sweeper();
        Ok(store)
    }
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    objects: &Objects,
    path: &object_store::path::Path,
) -> Result<T> {
    let bytes = objects.get(path).await?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_string(),
        detail: e.to_string(),
    })
}

impl State {
    /// One mailbox as found at start-up, with its messages sorted by UIDL. A mailbox already
    /// over the warning threshold counts as warned: it was warned before the restart (or is
    /// past the point where a warning would be news).
    fn load_mailbox(
        &mut self,
        addr: Address,
        record: MailboxRecord,
        messages: Vec<(String, u64)>,
        retrieved: std::collections::BTreeMap<String, u64>,
    ) {
        let used: u64 = messages.iter().map(|(_, size)| size).sum();
        let warned = record
            .quota
            .is_some_and(|q| used * 100 >= q * QUOTA_WARNING_PERCENT);
        if let Some(dom) = self.domains.get_mut(&addr.domain) {
            dom.used += used;
        }
        let messages: BTreeMap<String, u64> = messages.into_iter().collect();
        self.mailboxes.insert(
            addr,
            Mailbox {
                password_hash: record.password_hash,
                quota: record.quota,
                locked: record.locked,
                retrieved: retention::prune(retrieved, &messages),
                messages,
                used,
                reserved: 0,
                warned,
            },
        );
    }
}
