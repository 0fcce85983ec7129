//! Start-up: the index is rebuilt from a listing of the objects (the listing IS the index:
//! `objects.rs`), usage is derived from the stored sizes, and leftovers of a crash are swept
//! (staged writes, messages of a deleted mailbox).

use std::collections::HashMap;

use crate::objects::{self, MailboxObject};

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

        let mut metas: HashMap<String, Address> = HashMap::new();
        let mut messages: HashMap<String, Vec<(String, u64)>> = HashMap::new();
        let listing = objects.list(&objects::mailboxes_prefix()).await?;
        for meta in &listing {
            match objects::classify(meta) {
                MailboxObject::Meta { dir } => {
                    let record: MailboxRecord = read_json(&objects, &meta.location).await?;
                    let addr = Address::parse(&record.address)?;
                    state.mailboxes.insert(
                        addr.clone(),
                        Mailbox {
                            password_hash: record.password_hash,
                            quota: record.quota,
                            locked: record.locked,
                            messages: BTreeMap::new(),
                            used: 0,
                            reserved: 0,
                            warned: false,
                        },
                    );
                    metas.insert(dir, addr);
                }
                MailboxObject::Message { dir, uidl } => {
                    messages
                        .entry(dir)
                        .or_default()
                        .push((uidl.to_string(), meta.size));
                }
                MailboxObject::Other => {
                    tracing::warn!(path = %meta.location, "ignoring unknown object");
                }
            }
        }
        for (dir, msgs) in messages {
            match metas.get(&dir).cloned() {
                Some(addr) if state.mailboxes.contains_key(&addr) => {
                    for (uidl, size) in msgs {
                        state.add_message(&addr, &uidl, size);
                    }
                }
                _ => {
                    tracing::warn!(mailbox = %dir, count = msgs.len(), "removing messages of a deleted mailbox");
                    let orphans: Vec<_> = listing
                        .iter()
                        .filter(|m| {
                            matches!(objects::classify(m), MailboxObject::Message { dir: d, .. } if d == dir)
                        })
                        .map(|m| m.location.clone())
                        .collect();
                    objects.delete_many(&orphans).await?;
                }
            }
        }
        // `settle` above marked mailboxes already over the threshold as warned: they were
        // warned before the restart (or are past the point where a warning would be news).
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
        Ok(Store {
            inner: Arc::new(Inner {
                settings,
                throttle: Throttle::new(options.login_delay),
                objects,
                credentials,
                state: Mutex::new(state),
                admin: tokio::sync::Mutex::new(()),
                lease_ttl: options.lease_ttl,
                epochs,
            }),
        })
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
