//! The store's state: domains, mailboxes, aliases and messages, kept in memory as an index over
//! the objects (see `objects.rs`), which are the durable truth. Every mutation writes the
//! object(s) first and updates the index only after the write is durable, so the index never
//! promises more than the disk holds; at start-up the index is rebuilt from a listing.
//!
//! # Quotas are exact
//! Usage of a mailbox is the sum of its message objects' sizes; usage of a domain is the sum
//! over its mailboxes. Both are *derived* from the listing at start-up, so they are exact after
//! any crash (there is no separate counter to drift). While running, a delivery first
//! *reserves* its size against the mailbox and the domain under the state lock (check and
//! reserve are one critical section, so concurrent deliveries from any number of front-ends
//! can never overshoot a limit), then writes, then turns the reservation into usage — or
//! releases it if the write failed. A crash loses only in-memory reservations, together with
//! the unacknowledged writes they belonged to.
//!
//! # Maildrop leases
//! RFC 1939 §8 asks for an exclusive-access lock on the maildrop. The store is the one place
//! that can grant it for the whole cluster: `open_maildrop` grants a lease to a session id, the
//! front-end renews it, and `commit` (the only call that deletes) is fenced by it: a session
//! whose lease expired or was broken cannot delete anything.
//!
//! # Layout
//! - `mod.rs`          — the index (`State`), the `Store` handle and its records.
//! - `recovery.rs`     — start-up: the index rebuilt from the objects, crash leftovers swept.
//! - `reservations.rs` — quota checks, the `Reservation` guard, usage bookkeeping.
//! - `delivery.rs`     — RCPT checks, deliveries, quota warnings.
//! - `login.rs`        — credentials (with `auth.rs`), SMTP AUTH.
//! - `directory.rs`    — domains bound to a directory (LDAP, `crate::directory`): logins,
//!   recipients and aliases from it, mailboxes made on first use, the binding itself.
//! - `maildrop.rs`     — POP3: open (lease grant), fetch, commit (fenced deletes).
//! - `leases.rs`       — the maildrop lease table: grants, renewals, epochs (fencing).
//! - `admin.rs`        — domains, mailboxes, aliases, quotas, locks.
//! - `stats.rs`        — `mailrootctl stat`: per mailbox, per domain and cluster-wide sums.
//! - `queue/`          — the outbound queue: entries, claims by delivery workers, the retry
//!   schedule, lifetimes and delay notices (see `queue/mod.rs`).
//! - `notices.rs`      — DSNs (RFC 3464) made by the store, delivered or queued durably.
//! - `outbound.rs`     — the outbound rate limit per submitting user.
//! - `dkim.rs`         — DKIM keys: generation, storage, the push to front-ends.
//! - `retention.rs`    — retrieved messages expire (RFC 2449 EXPIRE), POP3 LOGIN-DELAY.
//! - `import.rs`       — `mailrootctl import` (exactly once, import keys) and `export`.
//!
//! The in-memory lock is a `std::sync::Mutex` that is never held across an `.await`.
//! Administrative mutations are serialised by `admin` (a tokio mutex) so that check-then-write
//! sequences such as "domain exists, mailbox does not" cannot interleave.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::auth::Credentials;
use crate::directory::{Directories, DirectoryConfig};
use crate::error::{Result, StoreError};
use crate::names::{self, Address};
use crate::objects::Objects;
use crate::settings::SettingsStore;
use crate::throttle::Throttle;

mod admin;
mod delivery;
mod directory;
mod dkim;
mod import;
mod leases;
mod login;
mod maildrop;
mod notices;
mod outbound;
pub mod queue;
mod recovery;
mod reservations;
mod retention;
mod stats;

pub use delivery::{Delivery, RecipientParams};
pub use dkim::{DkimAlgorithm, DkimInfo};
pub use import::{ImportRequest, Imported, MAX_IMPORT_MESSAGE};
use leases::{Committing, Epochs, Lease};
use reservations::QuotaCheck;
pub use stats::{ClusterStat, DomainStat, StatReport, StatScope};

/// Share of the quota at which a mailbox gets one warning message.
pub const QUOTA_WARNING_PERCENT: u64 = 90;

#[derive(Debug, Serialize, Deserialize)]
struct DomainRecord {
    name: String,
    #[serde(default)]
    quota: Option<u64>,
    #[serde(default)]
    locked: bool,
    /// The domain's directory (LDAP), bind password included: the record is in the store's
    /// data directory, which only the store reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    directory: Option<DirectoryConfig>,
}

#[derive(Debug, Serialize, Deserialize)]
struct MailboxRecord {
    address: String,
    /// "" = no password yet (a mailbox made by an import): no login succeeds.
    password_hash: String,
    #[serde(default)]
    quota: Option<u64>,
    #[serde(default)]
    locked: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct AliasRecord {
    address: String,
    targets: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Domain {
    quota: Option<u64>,
    locked: bool,
    /// Bound to a directory: users, passwords, aliases and disabled accounts are there
    /// (`directory.rs`).
    directory: Option<Arc<DirectoryConfig>>,
    /// Sum of the sizes of all messages in the domain's mailboxes.
    used: u64,
    reserved: u64,
}

#[derive(Debug, Clone)]
struct Mailbox {
    /// "" for a mailbox made for a directory user: no local password.
    password_hash: String,
    quota: Option<u64>,
    locked: bool,
    /// UIDL -> size in octets. UIDLs are UUIDv7 strings, so key order is arrival order.
    messages: BTreeMap<String, u64>,
    used: u64,
    reserved: u64,
    /// A quota warning was delivered and usage has not dropped below the threshold since.
    warned: bool,
    /// UIDL -> when a POP3 session first retrieved it (Unix ms), durable in
    /// `retrieved.json` (`retention.rs`).
    retrieved: HashMap<String, u64>,
}

impl Mailbox {
    /// A new, empty mailbox; `password_hash` "" = no local password (a directory user's, or
    /// one made by an import before `mailbox passwd`).
    fn new(password_hash: String) -> Mailbox {
        Mailbox {
            password_hash,
            quota: None,
            locked: false,
            messages: BTreeMap::new(),
            used: 0,
            reserved: 0,
            warned: false,
            retrieved: HashMap::new(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    domains: BTreeMap<String, Domain>,
    mailboxes: BTreeMap<Address, Mailbox>,
    aliases: BTreeMap<Address, Vec<Address>>,
    leases: HashMap<Address, Lease>,
    /// Maildrops whose POP3 deletions are being made durable (`leases.rs`).
    committing: HashSet<Address>,
    /// When each maildrop was last opened, for LOGIN-DELAY (`retention.rs`; in memory only:
    /// a store restart forgets it, in the user's favour).
    last_login: HashMap<Address, Instant>,
}

/// How an address given at RCPT time resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    Mailboxes(Vec<Address>),
    UnknownUser,
    RelayDenied,
    MailboxFull,
    TooBig,
    /// Another domain, submitted by an authenticated user: durably in the outbound queue.
    Queued,
}

/// Outcome of a delivery for one requested recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientOutcome {
    pub recipient: String,
    pub status: Recipient,
    /// Mailboxes (of an alias) that did not get the message.
    pub failed: Vec<String>,
    /// Mailboxes that got it.
    pub stored: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    pub uidl: String,
    pub size: u64,
}

/// A maildrop lease as `mailrootctl stat` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub node: String,
    pub session: String,
    /// The grant's fencing token (`leases.rs`).
    pub epoch: u64,
    pub age: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxStat {
    pub address: String,
    pub messages: u64,
    pub bytes: u64,
    pub locked: bool,
    pub quota: Option<u64>,
    /// The current POP3 lease holder.
    pub session: Option<LeaseInfo>,
}

impl State {
    fn domain_hosted(&self, domain: &str) -> bool {
        self.domains.contains_key(domain)
    }

    /// Alias or mailbox -> mailboxes. None: no such name in a hosted domain.
    fn targets(&self, addr: &Address) -> Option<Vec<Address>> {
        if self.mailboxes.contains_key(addr) {
            return Some(vec![addr.clone()]);
        }
        self.aliases.get(addr).cloned()
    }

    /// Every alias with a target that satisfies `pred` (all of them, in name order: a guard
    /// must look at each, not at the first one found).
    fn aliases_targeting<'a>(
        &'a self,
        pred: impl Fn(&Address) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Address> + 'a {
        self.aliases
            .iter()
            .filter(move |(_, targets)| targets.iter().any(&pred))
            .map(|(alias, _)| alias)
    }

    fn is_locked(&self, addr: &Address) -> bool {
        self.mailboxes.get(addr).is_some_and(|m| m.locked)
            || self.domains.get(&addr.domain).is_some_and(|d| d.locked)
    }
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    objects: Objects,
    credentials: Credentials,
    directories: Directories,
    state: Mutex<State>,
    admin: tokio::sync::Mutex<()>,
    lease_ttl: Duration,
    epochs: Epochs,
    settings: SettingsStore,
    throttle: Throttle,
    queue: queue::Queue,
    outbound: outbound::OutboundLimit,
    dkim: Mutex<dkim::Keys>,
    /// Imports, one at a time: choosing a message's UIDL and writing it are one step
    /// (`import.rs`).
    imports: Arc<tokio::sync::Mutex<()>>,
    /// Cancelled when the store is dropped: ends its background task (`queue/sweep.rs`).
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Tunables of [`Store::open_with`].
#[derive(Debug, Clone)]
pub struct Options {
    pub lease_ttl: Duration,
    /// Base of the growing delay after failed logins (see `throttle.rs`).
    pub login_delay: Duration,
    /// Lifetime of a cached verified credential (`auth.rs`); zero turns the cache off.
    pub auth_cache_ttl: Duration,
    /// Lifetime of what a directory said (`directory/cache.rs`); zero turns it off.
    pub directory_cache_ttl: Duration,
    /// How long an outbound queue claim lives without renewal (`queue/claims.rs`).
    pub queue_claim_ttl: Duration,
    /// The sliding window of the `outbound-limit` setting (`outbound.rs`).
    pub outbound_limit_window: Duration,
}

impl Options {
    pub fn new(lease_ttl: Duration) -> Options {
        Options {
            lease_ttl,
            login_delay: Duration::from_millis(250),
            auth_cache_ttl: crate::auth::DEFAULT_CACHE_TTL,
            directory_cache_ttl: crate::directory::DEFAULT_TTL,
            queue_claim_ttl: queue::DEFAULT_CLAIM_TTL,
            outbound_limit_window: outbound::WINDOW,
        }
    }
}

fn lock_state(inner: &Inner) -> MutexGuard<'_, State> {
    // Every update under this lock is a handful of field writes that cannot panic halfway in
    // a way that matters, so a poisoned lock is still consistent.
    inner
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    fn state(&self) -> MutexGuard<'_, State> {
        lock_state(&self.inner)
    }

    /// Local storage failed to sync and refuses writes until a restart (`/readyz` says so).
    pub fn storage_failed(&self) -> bool {
        self.inner.objects.failed()
    }

    pub fn lease_ttl(&self) -> Duration {
        self.inner.lease_ttl
    }

    pub fn settings(&self) -> &SettingsStore {
        &self.inner.settings
    }

    /// `mailrootctl config set KEY VALUE`: durable first, then pushed to every front-end.
    pub async fn set_config(&self, key: &str, value: &str) -> Result<proto::v1::Settings> {
        self.inner
            .settings
            .set(&self.inner.objects, key, value, None)
            .await
    }

    /// `mailrootctl config set KEY VALUE --domain DOMAIN`: a hosted domain's own value
    /// (retention). Under the admin lock, so the domain cannot be deleted meanwhile.
    pub async fn set_domain_config(
        &self,
        domain: &str,
        key: &str,
        value: &str,
    ) -> Result<proto::v1::Settings> {
        let name = names::domain(domain)?;
        let _admin = self.inner.admin.lock().await;
        if !self.state().domains.contains_key(&name) {
            return Err(StoreError::UnknownDomain(name));
        }
        self.inner
            .settings
            .set(&self.inner.objects, key, value, Some(&name))
            .await
    }

    /// Argon2id computations made so far (tests and benchmarks: warm logins make none).
    pub fn password_hashes_computed(&self) -> u64 {
        self.inner
            .credentials
            .argon_runs
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}
