//! Import of existing mail (`mailrootctl import`) and export (`mailrootctl export`).
//!
//! # Layout
//! ```text
//! mailboxes/<domain>/<local>/messages/<uidl>       the imported message (as a delivery's)
//! mailboxes/<domain>/<local>/imported/<key>        import marker: the UIDL it was stored as
//! ```
//! The import key is `SHA-256(source id, 0, bytes)` in hex: the same message of the same
//! source (an import run again, or resumed after an interruption) has the same key; two
//! identical messages at two places of one source have two.
//!
//! # Exactly once, and crash safety
//! The UIDL of an imported message is *deterministic*: the UIDL the caller asked to keep (an
//! exported message's) when it is free, else a UUIDv7 made from the source's receipt time and
//! the first ten octets of the key. An import then takes these steps, each acknowledged only
//! after the one before:
//! 1. the marker exists: the message was imported before (`ALREADY_PRESENT`), even if the
//!    user has deleted it since (an import run again must not bring deleted mail back);
//! 2. a message with identical bytes is at the UIDL it would get: a crash came between 3 and
//!    4 of an earlier run, so it is present (its marker is written now);
//! 3. the message is written exactly as a delivery's copy (`delivery.rs::store_copy`'s path:
//!    quota reservation, `Objects::put` with its `fdatasync` and group-committed directory
//!    fsync, then the index);
//! 4. the marker is written, through the same durable `put`.
//!
//! A crash before 3 completes leaves nothing (or a swept staging file); between 3 and 4 a
//! message without marker, found by step 2 next time; after 4 both. Steps 3 and 4 run in a
//! task of their own, so a caller that goes away (mailrootctl killed) cannot cut between them.
//! A mailbox deleted meanwhile takes its markers with it (`remove_mailbox`, start-up sweep).
//!
//! Imports run one at a time (a store-wide lock held from the marker check until the marker
//! is written): two runs importing into one mailbox at once could otherwise both pick the
//! same free kept UIDL for two different messages. One mailrootctl imports one message after
//! another anyway; only concurrent runs wait for each other. Deliveries are not held up:
//! their UIDLs are fresh UUIDv7s.
//!
//! Quotas are checked like a delivery's; over them, the caller chooses to skip the message
//! or to store it beyond the quota (reported). Imports send no DSN and queue nothing.
//!
//! Export reads a snapshot of a mailbox's UIDLs and streams each message; it takes no POP3
//! lease (reading needs none: a message deleted meanwhile is left out).

use aws_lc_rs::digest;

use crate::objects;

use super::*;

/// The largest message an import takes: the most a delivery can carry.
pub const MAX_IMPORT_MESSAGE: usize = proto::MAX_GRPC_MESSAGE;

/// One message to import.
#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    pub address: String,
    pub source_id: String,
    /// Unix ms when the source received it (0 = unknown).
    pub received_ms: u64,
    /// A UIDL to keep when free.
    pub uidl: Option<String>,
    /// Store it beyond the quota instead of skipping it.
    pub allow_over_quota: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    Stored { uidl: String, over_quota: bool },
    AlreadyPresent { uidl: String },
    SkippedOverQuota,
}

/// The import key of a message: SHA-256 over the source id, a 0 octet and the bytes, in hex.
pub fn import_key(source_id: &str, message: &[u8]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(source_id.as_bytes());
    ctx.update(&[0]);
    ctx.update(message);
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The UIDL an imported message gets when no kept one is free: a UUIDv7 of the source's
/// receipt time whose other bits come from the key (the same message gets the same UIDL).
pub fn derived_uidl(received_ms: u64, key: &str) -> String {
    let mut bits = [0u8; 10];
    for (i, b) in bits.iter_mut().enumerate() {
        *b = u8::from_str_radix(&key[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    uuid::Builder::from_unix_timestamp_millis(received_ms, &bits)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// A UIDL we may keep: RFC 1939 §7 (1 to 70 octets 0x21..0x7E) and a safe object name.
fn keepable_uidl(uidl: &str) -> bool {
    (1..=70).contains(&uidl.len())
        && uidl.bytes().all(|b| (0x21..=0x7e).contains(&b))
        && !uidl.contains(['/', '\\', '#', '*', '?'])
        && uidl != "."
        && uidl != ".."
}

/// `mailboxes/<domain>/<local>/imported`.
fn markers_dir_in(domain: &str, local: &str) -> object_store::path::Path {
    object_store::path::Path::from_iter(["mailboxes", domain, local, "imported"])
}

fn marker_path(addr: &Address, key: &str) -> object_store::path::Path {
    markers_dir_in(&addr.domain, &addr.local).join(key)
}

/// Removes a mailbox's import markers (mailbox deletion, and the start-up sweep of a deleted
/// mailbox's leftovers).
pub(super) async fn remove_markers(objects: &Objects, domain: &str, local: &str) -> Result<()> {
    let markers = objects.list(&markers_dir_in(domain, local)).await?;
    let paths: Vec<_> = markers.into_iter().map(|m| m.location).collect();
    objects.delete_many(&paths).await
}

impl Store {
    /// Makes sure `address` is a mailbox; with `create`, its domain and the mailbox are made
    /// when missing (the mailbox without a password). Returns (domain created, mailbox
    /// created).
    pub async fn prepare_import(&self, raw: &str, create: bool) -> Result<(bool, bool)> {
        let addr = Address::parse(raw)?;
        let _admin = self.inner.admin.lock().await;
        let (has_domain, has_mailbox) = {
            let state = self.state();
            if state.aliases.contains_key(&addr) {
                return Err(StoreError::AliasExists(addr.to_string()));
            }
            (
                state.domains.contains_key(&addr.domain),
                state.mailboxes.contains_key(&addr),
            )
        };
        if has_mailbox {
            return Ok((false, false));
        }
        if !create {
            return Err(if has_domain {
                StoreError::UnknownMailbox(addr.to_string())
            } else {
                StoreError::UnknownDomain(addr.domain.clone())
            });
        }
        if !has_domain {
            let domain = Domain::default();
            self.write_domain(&addr.domain, &domain).await?;
            self.state().domains.insert(addr.domain.clone(), domain);
            tracing::info!(domain = %addr.domain, "domain added by an import");
        }
        self.create_mailbox(&addr, Mailbox::new(String::new()))
            .await?;
        tracing::info!(mailbox = %addr, "mailbox added by an import, without a password");
        Ok((!has_domain, true))
    }

    /// Imports one message (see the module doc for the steps and their crash safety).
    pub async fn import_message(&self, req: ImportRequest, message: Bytes) -> Result<Imported> {
        let addr = Address::parse(&req.address)?;
        if message.len() > MAX_IMPORT_MESSAGE {
            return Err(StoreError::InvalidArgument(format!(
                "the message is larger than {MAX_IMPORT_MESSAGE} octets"
            )));
        }
        if !self.state().mailboxes.contains_key(&addr) {
            return Err(StoreError::UnknownMailbox(addr.to_string()));
        }
        let key = import_key(&req.source_id, &message);
        let marker = marker_path(&addr, &key);
        // Held until the message and its marker are written (moved into the task below).
        let one_at_a_time = self.inner.imports.clone().lock_owned().await;
        match self.inner.objects.get(&marker).await {
            Ok(uidl) => {
                return Ok(Imported::AlreadyPresent {
                    uidl: String::from_utf8_lossy(&uidl).into_owned(),
                });
            }
            Err(StoreError::Storage(object_store::Error::NotFound { .. })) => {}
            Err(e) => return Err(e),
        }
        let derived = derived_uidl(req.received_ms, &key);
        let candidates = req
            .uidl
            .iter()
            .filter(|u| keepable_uidl(u))
            .chain(std::iter::once(&derived));
        let mut chosen = None;
        for uidl in candidates {
            let taken = self.message_size(&addr, uidl)?;
            match taken {
                None => {
                    chosen = Some(uidl.clone());
                    break;
                }
                Some(size) if size == message.len() as u64 => {
                    let there = match self.fetch(&addr.to_string(), uidl).await {
                        Ok(b) => b,
                        Err(StoreError::NoSuchMessage(_)) => continue,
                        Err(e) => return Err(e),
                    };
                    if there == message {
                        // Step 2: stored by a run that did not get to its marker.
                        self.put_marker(&marker, uidl).await?;
                        return Ok(Imported::AlreadyPresent { uidl: uidl.clone() });
                    }
                }
                Some(_) => {}
            }
        }
        let Some(uidl) = chosen else {
            return Err(StoreError::Internal(format!(
                "no free UIDL for an imported message in {addr} (key {key})"
            )));
        };
        let size = message.len() as u64;
        let (reservation, over_quota) = match self.reserve(&addr, size)? {
            Ok(r) => (r, false),
            Err(_) if req.allow_over_quota => (self.reserve_beyond_quota(&addr, size)?, true),
            Err(_) => return Ok(Imported::SkippedOverQuota),
        };
        // Steps 3 and 4 in a task of their own (module doc).
        let store = self.clone();
        let task = tokio::spawn(async move {
            let _one_at_a_time = one_at_a_time;
            let path = objects::message_path(&addr, &uidl);
            store.inner.objects.put(&path, message).await?;
            let Some(warn) = reservation.settle(&uidl) else {
                if let Err(e) = store.inner.objects.delete(&path).await {
                    tracing::warn!(mailbox = %addr, error = %e, "orphan import of a deleted mailbox left for the start-up sweep");
                }
                return Err(StoreError::UnknownMailbox(addr.to_string()));
            };
            store.put_marker(&marker, &uidl).await?;
            if warn {
                store.deliver_quota_warning(&addr).await;
            }
            Ok(Imported::Stored { uidl, over_quota })
        });
        task.await
            .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    async fn put_marker(&self, marker: &object_store::path::Path, uidl: &str) -> Result<()> {
        self.inner
            .objects
            .put(marker, Bytes::from(uidl.to_string()))
            .await
    }

    /// The messages of a mailbox to export, in POP3 order, as (UIDL, size).
    pub fn export_list(&self, raw: &str) -> Result<Vec<MessageInfo>> {
        let addr = Address::parse(raw)?;
        let state = self.state();
        let mb = state
            .mailboxes
            .get(&addr)
            .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
        Ok(mb
            .messages
            .iter()
            .map(|(uidl, size)| MessageInfo {
                uidl: uidl.clone(),
                size: *size,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_binds_source_and_bytes() {
        let a = import_key("winpop:P31.eml", b"hello\r\n");
        assert_eq!(a.len(), 64);
        assert_eq!(a, import_key("winpop:P31.eml", b"hello\r\n"));
        assert_ne!(a, import_key("winpop:P32.eml", b"hello\r\n"));
        assert_ne!(a, import_key("winpop:P31.eml", b"hello!\r\n"));
    }

    #[test]
    fn derived_uidls_are_deterministic_uuidv7_in_time_order() {
        let k = import_key("x", b"y");
        let u = derived_uidl(1_600_000_000_000, &k);
        assert_eq!(u, derived_uidl(1_600_000_000_000, &k));
        let parsed = uuid::Uuid::parse_str(&u).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert!(u < derived_uidl(1_600_000_000_001, &k));
        assert_ne!(u, derived_uidl(1_600_000_000_000, &import_key("x", b"z")));
    }

    #[test]
    fn only_safe_uidls_are_kept() {
        assert!(keepable_uidl("0190a3c4-1b2c-7d3e-8f40-123456789abc"));
        for bad in ["", ".", "..", "a/b", "a b", "a#1", &"x".repeat(71), "é"] {
            assert!(!keepable_uidl(bad), "{bad:?}");
        }
    }
}
