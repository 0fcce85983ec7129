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
//! The in-memory lock is a `std::sync::Mutex` that is never held across an `.await`.
//! Administrative mutations are serialised by `admin` (a tokio mutex) so that check-then-write
//! sequences such as "domain exists, mailbox does not" cannot interleave.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::auth::Credentials;
use crate::error::{Result, StoreError};
use crate::names::{self, Address};
use crate::objects::{self, MailboxObject, Objects};
use crate::settings::SettingsStore;
use crate::throttle::{self, Throttle};

/// Share of the quota at which a mailbox gets one warning message.
pub const QUOTA_WARNING_PERCENT: u64 = 90;

#[derive(Debug, Serialize, Deserialize)]
struct DomainRecord {
    name: String,
    #[serde(default)]
    quota: Option<u64>,
    #[serde(default)]
    locked: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct MailboxRecord {
    address: String,
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
    /// Sum of the sizes of all messages in the domain's mailboxes.
    used: u64,
    reserved: u64,
}

#[derive(Debug, Clone)]
struct Mailbox {
    password_hash: String,
    quota: Option<u64>,
    locked: bool,
    /// UIDL -> size in octets. UIDLs are UUIDv7 strings, so key order is arrival order.
    messages: BTreeMap<String, u64>,
    used: u64,
    reserved: u64,
    /// A quota warning was delivered and usage has not dropped below the threshold since.
    warned: bool,
}

#[derive(Debug, Clone)]
struct Lease {
    session: String,
    node: String,
    granted: Instant,
    expires: Instant,
}

#[derive(Debug, Default)]
struct State {
    domains: BTreeMap<String, Domain>,
    mailboxes: BTreeMap<Address, Mailbox>,
    aliases: BTreeMap<Address, Vec<Address>>,
    leases: HashMap<Address, Lease>,
}

/// How an address given at RCPT time resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    Mailboxes(Vec<Address>),
    UnknownUser,
    RelayDenied,
    MailboxFull,
    TooBig,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxStat {
    pub address: String,
    pub messages: u64,
    pub bytes: u64,
    pub locked: bool,
    pub quota: Option<u64>,
    /// (node, session id, age) of the current POP3 lease holder.
    pub session: Option<(String, String, Duration)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuotaCheck {
    Fits,
    Full,
    TooBig,
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

    fn quota_check(&self, addr: &Address, size: u64) -> QuotaCheck {
        let (Some(mb), Some(dom)) = (self.mailboxes.get(addr), self.domains.get(&addr.domain))
        else {
            return QuotaCheck::Fits;
        };
        let limits = [
            (mb.quota, mb.used + mb.reserved),
            (dom.quota, dom.used + dom.reserved),
        ];
        if limits.iter().any(|(q, _)| q.is_some_and(|q| size > q)) {
            return QuotaCheck::TooBig;
        }
        if limits
            .iter()
            .any(|(q, used)| q.is_some_and(|q| used + size > q))
        {
            return QuotaCheck::Full;
        }
        QuotaCheck::Fits
    }

    /// Check and reserve in one step (the caller holds the state lock).
    fn reserve(&mut self, addr: &Address, size: u64) -> Result<QuotaCheck> {
        let check = self.quota_check(addr, size);
        if check == QuotaCheck::Fits {
            let mb = self
                .mailboxes
                .get_mut(addr)
                .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
            mb.reserved += size;
            if let Some(dom) = self.domains.get_mut(&addr.domain) {
                dom.reserved += size;
            }
        }
        Ok(check)
    }

    fn release(&mut self, addr: &Address, size: u64) {
        if let Some(mb) = self.mailboxes.get_mut(addr) {
            mb.reserved = mb.reserved.saturating_sub(size);
        }
        if let Some(dom) = self.domains.get_mut(&addr.domain) {
            dom.reserved = dom.reserved.saturating_sub(size);
        }
    }

    /// Turns a reservation into a stored message. Returns true when the mailbox just crossed
    /// the warning threshold.
    fn settle(&mut self, addr: &Address, uidl: &str, size: u64) -> bool {
        self.release(addr, size);
        let Some(mb) = self.mailboxes.get_mut(addr) else {
            return false;
        };
        if mb.messages.insert(uidl.to_string(), size).is_none() {
            mb.used += size;
            if let Some(dom) = self.domains.get_mut(&addr.domain) {
                dom.used += size;
            }
        }
        match mb.quota {
            Some(q) if !mb.warned && mb.used * 100 >= q * QUOTA_WARNING_PERCENT => {
                mb.warned = true;
                true
            }
            _ => false,
        }
    }

    fn remove_message(&mut self, addr: &Address, uidl: &str) {
        let Some(mb) = self.mailboxes.get_mut(addr) else {
            return;
        };
        if let Some(size) = mb.messages.remove(uidl) {
            mb.used -= size;
            if let Some(dom) = self.domains.get_mut(&addr.domain) {
                dom.used -= size;
            }
            if mb
                .quota
                .is_some_and(|q| mb.used * 100 < q * QUOTA_WARNING_PERCENT)
            {
                mb.warned = false;
            }
        }
    }

    fn aliases_targeting<'a>(
        &'a self,
        pred: impl Fn(&Address) -> bool + 'a,
    ) -> Option<&'a Address> {
        self.aliases
            .iter()
            .find(|(_, targets)| targets.iter().any(&pred))
            .map(|(alias, _)| alias)
    }

    fn is_locked(&self, addr: &Address) -> bool {
        self.mailboxes.get(addr).is_some_and(|m| m.locked)
            || self.domains.get(&addr.domain).is_some_and(|d| d.locked)
    }

    fn lease_holder(&self, addr: &Address, now: Instant) -> Option<&Lease> {
        self.leases.get(addr).filter(|l| l.expires > now)
    }
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    objects: Objects,
    credentials: Credentials,
    state: Mutex<State>,
    admin: tokio::sync::Mutex<()>,
    lease_ttl: Duration,
    settings: SettingsStore,
    throttle: Throttle,
}

/// Tunables of [`Store::open_with`].
#[derive(Debug, Clone)]
pub struct Options {
    pub lease_ttl: Duration,
    /// Base of the growing delay after failed logins (see `throttle.rs`).
    pub login_delay: Duration,
    /// Lifetime of a cached verified credential (`auth.rs`); zero turns the cache off.
    pub auth_cache_ttl: Duration,
}

impl Options {
    pub fn new(lease_ttl: Duration) -> Options {
        Options {
            lease_ttl,
            login_delay: Duration::from_millis(250),
            auth_cache_ttl: crate::auth::DEFAULT_CACHE_TTL,
        }
    }
}

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
                        state.settle(&addr, &uidl, size);
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
        Ok(Store {
            inner: Arc::new(Inner {
                settings,
                throttle: Throttle::new(options.login_delay),
                objects,
                credentials,
                state: Mutex::new(state),
                admin: tokio::sync::Mutex::new(()),
                lease_ttl: options.lease_ttl,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update under this lock is a handful of field writes that cannot panic halfway
        // in a way that matters, so a poisoned lock is still consistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
            .set(&self.inner.objects, key, value)
            .await
    }

    // ---- front-end operations ------------------------------------------------------------

    /// RCPT time: resolves the address and, with a declared size, checks every quota on the way.
    pub fn check_recipient(&self, raw: &str, size: u64) -> Recipient {
        let Some((_, dom)) = raw.rsplit_once('@') else {
            return Recipient::UnknownUser;
        };
        let Ok(dom) = names::domain(dom) else {
            return Recipient::RelayDenied;
        };
        let state = self.state();
        if !state.domain_hosted(&dom) {
            return Recipient::RelayDenied;
        }
        let Some(targets) = Address::parse(raw).ok().and_then(|a| state.targets(&a)) else {
            return Recipient::UnknownUser;
        };
        if size > 0 {
            for t in &targets {
                match state.quota_check(t, size) {
                    QuotaCheck::Fits => {}
                    QuotaCheck::Full => return Recipient::MailboxFull,
                    QuotaCheck::TooBig => return Recipient::TooBig,
                }
            }
        }
        Recipient::Mailboxes(targets)
    }

    /// Stores `message` in the mailbox of every recipient (each alias target) and returns when
    /// every copy is durable, with one outcome per recipient. The UIDL is `delivery_id` (the
    /// n-th extra copy in one mailbox, when an address and its alias are both given, gets
    /// `<id>-<n>`), so a retried delivery with the same id finds its copies present and does
    /// not store them twice. Quota is reserved before each write (see the module doc).
    pub async fn deliver(
        &self,
        delivery_id: &str,
        recipients: &[String],
        message: Bytes,
    ) -> Result<Vec<RecipientOutcome>> {
        let id = uuid::Uuid::parse_str(delivery_id)
            .map_err(|_| StoreError::InvalidArgument("delivery id is not a UUID".into()))?
            .hyphenated()
            .to_string();
        if recipients.is_empty() {
            return Err(StoreError::InvalidArgument("no recipients".into()));
        }
        // (recipient index, mailbox, uidl)
        let mut copies: Vec<(usize, Address, String)> = Vec::new();
        let mut outcomes: Vec<RecipientOutcome> = Vec::new();
        for (i, raw) in recipients.iter().enumerate() {
            let status = self.check_recipient(raw, 0);
            if let Recipient::Mailboxes(targets) = &status {
                for addr in targets {
                    let n = copies.iter().filter(|(_, a, _)| a == addr).count();
                    let uidl = if n == 0 {
                        id.clone()
                    } else {
                        format!("{id}-{n}")
                    };
                    copies.push((i, addr.clone(), uidl));
                }
            }
            outcomes.push(RecipientOutcome {
                recipient: raw.clone(),
                status,
                failed: Vec::new(),
                stored: Vec::new(),
            });
        }
        let writes = copies.iter().map(|(i, addr, uidl)| {
            let message = message.clone();
            async move { (*i, addr, self.store_copy(addr, uidl, message).await) }
        });
        let mut too_big = vec![false; outcomes.len()];
        for (i, addr, result) in futures::future::join_all(writes).await {
            match result? {
                QuotaCheck::Fits => {
                    outcomes[i].stored.push(addr.to_string());
                    continue;
                }
                QuotaCheck::Full => {}
                QuotaCheck::TooBig => too_big[i] = true,
            }
            outcomes[i].failed.push(addr.to_string());
        }
        for (o, too_big) in outcomes.iter_mut().zip(too_big) {
            if !o.failed.is_empty() {
                o.status = if too_big {
                    Recipient::TooBig
                } else {
                    Recipient::MailboxFull
                };
            }
        }
        Ok(outcomes)
    }

    /// One copy: reserve, write durably, settle. A storage error is returned as an error (the
    /// whole delivery is then answered "try later"; copies already written are found again by
    /// the retry through their UIDL).
    async fn store_copy(&self, addr: &Address, uidl: &str, message: Bytes) -> Result<QuotaCheck> {
        let size = message.len() as u64;
        {
            let mut state = self.state();
            let mb = state
                .mailboxes
                .get(addr)
                .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
            if mb.messages.contains_key(uidl) {
                return Ok(QuotaCheck::Fits);
            }
            let check = state.reserve(addr, size)?;
            if check != QuotaCheck::Fits {
                return Ok(check);
            }
        }
        let path = objects::message_path(addr, uidl);
        if let Err(e) = self.inner.objects.put(&path, message).await {
            self.state().release(addr, size);
            return Err(e);
        }
        let warn = {
            let mut state = self.state();
            if !state.mailboxes.contains_key(addr) {
                // Deleted while we wrote: the start-up sweep removes the object.
                return Err(StoreError::UnknownMailbox(addr.to_string()));
            }
            state.settle(addr, uidl, size)
        };
        if warn {
            self.deliver_quota_warning(addr).await;
        }
        Ok(QuotaCheck::Fits)
    }

    /// The seed left users unaware of a full mailbox; we tell them once, at the threshold.
    async fn deliver_quota_warning(&self, addr: &Address) {
        let (used, quota) = {
            let state = self.state();
            match state.mailboxes.get(addr) {
                Some(mb) => (mb.used, mb.quota.unwrap_or(0)),
                None => return,
            }
        };
        let id = uuid::Uuid::now_v7();
        let text = format!(
            "From: MAILER-DAEMON <mailer-daemon@{domain}>\r\nTo: <{addr}>\r\nSubject: Your mailbox is almost full\r\nMessage-ID: <{id}@{domain}>\r\nAuto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nYour mailbox {addr} uses {used} of {quota} bytes ({pct}%).\r\nWhen it is full, new mail to you will be refused.\r\nPlease delete messages you no longer need.\r\n",
            domain = addr.domain,
            pct = used * 100 / quota.max(1),
        );
        match Box::pin(self.store_copy(addr, &id.to_string(), Bytes::from(text))).await {
            Ok(QuotaCheck::Fits) => {
                tracing::info!(mailbox = %addr, used, quota, "quota warning delivered")
            }
            Ok(_) => tracing::info!(mailbox = %addr, "no room left for the quota warning"),
            Err(e) => tracing::warn!(mailbox = %addr, error = %e, "quota warning not delivered"),
        }
    }

    /// Checks credentials: `user` is a full address or alias, or a bare mailbox name when
    /// exactly one domain is hosted. An alias logs in with one of its targets' passwords and
    /// means that target. Failures are throttled cluster-wide per name and client IP.
    async fn check_credentials(
        &self,
        user: &str,
        password: &str,
        client_ip: &str,
    ) -> Result<Address> {
        let keys = throttle::keys(user, client_ip);
        if self.inner.throttle.check(&keys) == throttle::Verdict::Refuse {
            tracing::warn!(%user, %client_ip, "login refused: too many failures");
            return Err(StoreError::Throttled);
        }
        let candidates: Vec<(Address, String)> = {
            let state = self.state();
            self.login_address(&state, user)
                .and_then(|a| state.targets(&a))
                .unwrap_or_default()
                .into_iter()
                .filter_map(|a| {
                    let hash = state.mailboxes.get(&a)?.password_hash.clone();
                    Some((a, hash))
                })
                .collect()
        };
        if candidates.is_empty() {
            // Same cost as a real check.
            self.inner.credentials.verify_nobody(password).await;
        }
        for (addr, hash) in candidates {
            if self
                .inner
                .credentials
                .verify(&addr, password, &hash)
                .await?
            {
                self.inner.throttle.succeeded(&keys[0]);
                if self.state().is_locked(&addr) {
                    return Err(StoreError::Locked(addr.to_string()));
                }
                return Ok(addr);
            }
        }
        let delay = self.inner.throttle.failed(&keys);
        tracing::info!(%user, %client_ip, ?delay, "login failed");
        tokio::time::sleep(delay).await;
        Err(StoreError::BadCredentials)
    }

    /// SMTP AUTH: the mailbox and every address it may send as (itself and its aliases).
    pub async fn authenticate(
        &self,
        user: &str,
        password: &str,
        client_ip: &str,
    ) -> Result<(Address, Vec<String>)> {
        let addr = self.check_credentials(user, password, client_ip).await?;
        let state = self.state();
        let mut senders = vec![addr.to_string()];
        senders.extend(
            state
                .aliases
                .iter()
                .filter(|(_, targets)| targets.contains(&addr))
                .map(|(alias, _)| alias.to_string()),
        );
        Ok((addr, senders))
    }

    /// POP3 login: checks credentials and grants the maildrop lease to `session`.
    pub async fn open_maildrop(
        &self,
        user: &str,
        password: &str,
        session: &str,
        node: &str,
        client_ip: &str,
    ) -> Result<(Address, Vec<MessageInfo>)> {
        if session.is_empty() {
            return Err(StoreError::InvalidArgument("no session id".into()));
        }
        let addr = self.check_credentials(user, password, client_ip).await?;
        let now = Instant::now();
        let mut state = self.state();
        if state.is_locked(&addr) {
            return Err(StoreError::Locked(addr.to_string()));
        }
        if let Some(holder) = state.lease_holder(&addr, now)
            && holder.session != session
        {
            return Err(StoreError::InUse(addr.to_string()));
        }
        state.leases.insert(
            addr.clone(),
            Lease {
                session: session.to_string(),
                node: node.to_string(),
                granted: now,
                expires: now + self.inner.lease_ttl,
            },
        );
        let messages = state
            .mailboxes
            .get(&addr)
            .map(|mb| {
                mb.messages
                    .iter()
                    .map(|(uidl, size)| MessageInfo {
                        uidl: uidl.clone(),
                        size: *size,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((addr, messages))
    }

    fn login_address(&self, state: &State, user: &str) -> Option<Address> {
        if user.contains('@') {
            return Address::parse(user).ok();
        }
        let mut domains = state.domains.keys();
        match (domains.next(), domains.next()) {
            (Some(only), None) => Some(Address {
                local: names::local_part(user).ok()?,
                domain: only.clone(),
            }),
            _ => None,
        }
    }

    /// Extends the lease of `session`. A lease that expired without anyone else taking it is
    /// taken again (this also re-establishes leases after a store restart); one held by another
    /// session is lost for good.
    pub fn renew(&self, mailbox: &str, session: &str) -> Result<()> {
        let addr = Address::parse(mailbox)?;
        let now = Instant::now();
        let mut state = self.state();
        if let Some(holder) = state.lease_holder(&addr, now)
            && holder.session != session
        {
            return Err(StoreError::LeaseLost(addr.to_string()));
        }
        let ttl = self.inner.lease_ttl;
        let lease = state.leases.entry(addr).or_insert_with(|| Lease {
            session: session.to_string(),
            node: String::new(),
            granted: now,
            expires: now,
        });
        lease.session = session.to_string();
        lease.expires = now + ttl;
        Ok(())
    }

    pub fn close(&self, mailbox: &str, session: &str) -> Result<()> {
        let addr = Address::parse(mailbox)?;
        let mut state = self.state();
        if state
            .leases
            .get(&addr)
            .is_some_and(|l| l.session == session)
        {
            state.leases.remove(&addr);
        }
        Ok(())
    }

    fn check_fence(&self, addr: &Address, session: &str) -> Result<()> {
        let state = self.state();
        match state.lease_holder(addr, Instant::now()) {
            Some(l) if l.session == session => Ok(()),
            _ => Err(StoreError::LeaseLost(addr.to_string())),
        }
    }

    /// The message as a stream of chunks, read from storage as the stream is polled.
    pub async fn fetch_stream(
        &self,
        mailbox: &str,
        uidl: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes>>> {
        let addr = Address::parse(mailbox)?;
        let size = self
            .state()
            .mailboxes
            .get(&addr)
            .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?
            .messages
            .get(uidl)
            .copied()
            .ok_or_else(|| StoreError::NoSuchMessage(uidl.to_string()))?;
        self.inner
            .objects
            .get_stream(&objects::message_path(&addr, uidl), size)
            .await
    }

    pub async fn fetch(&self, mailbox: &str, uidl: &str) -> Result<Bytes> {
        let addr = Address::parse(mailbox)?;
        let exists = self
            .state()
            .mailboxes
            .get(&addr)
            .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?
            .messages
            .contains_key(uidl);
        if !exists {
            return Err(StoreError::NoSuchMessage(uidl.to_string()));
        }
        self.inner
            .objects
            .get(&objects::message_path(&addr, uidl))
            .await
    }

    /// POP3 UPDATE state (RFC 1939 §6): removes the given messages durably, if `session` still
    /// holds the maildrop lease (fencing). Unknown UIDLs (already removed) are skipped, so a
    /// retried commit is harmless.
    pub async fn commit(&self, mailbox: &str, session: &str, delete: &[String]) -> Result<u32> {
        let addr = Address::parse(mailbox)?;
        self.check_fence(&addr, session)?;
        let present: Vec<&String> = {
            let state = self.state();
            let Some(mb) = state.mailboxes.get(&addr) else {
                return Ok(0);
            };
            delete
                .iter()
                .filter(|uidl| mb.messages.contains_key(*uidl))
                .collect()
        };
        let paths: Vec<_> = (present.iter())
            .map(|uidl| objects::message_path(&addr, uidl))
            .collect();
        // One directory sync for all of them.
        self.inner.objects.delete_many(&paths).await?;
        let mut state = self.state();
        for uidl in &present {
            state.remove_message(&addr, uidl);
        }
        Ok(present.len() as u32)
    }

    // ---- administration --------------------------------------------------------------------

    pub async fn add_domain(&self, raw: &str) -> Result<String> {
        let name = names::domain(raw)?;
        let _admin = self.inner.admin.lock().await;
        if self.state().domains.contains_key(&name) {
            return Err(StoreError::DomainExists(name));
        }
        let domain = Domain::default();
        self.write_domain(&name, &domain).await?;
        self.state().domains.insert(name.clone(), domain);
        self.inner.settings.directory_changed();
        Ok(name)
    }

    pub async fn delete_domain(&self, raw: &str, force: bool) -> Result<()> {
        let name = names::domain(raw)?;
        let _admin = self.inner.admin.lock().await;
        let (members, aliases) = {
            let state = self.state();
            if !state.domains.contains_key(&name) {
                return Err(StoreError::UnknownDomain(name));
            }
            // An alias elsewhere that points into this domain keeps it alive.
            if let Some(alias) = state.aliases_targeting(|t| t.domain == name)
                && alias.domain != name
            {
                return Err(StoreError::AliasTarget {
                    name: format!("domain {name}"),
                    alias: alias.to_string(),
                });
            }
            let members: Vec<Address> = state
                .mailboxes
                .keys()
                .filter(|a| a.domain == name)
                .cloned()
                .collect();
            let aliases: Vec<Address> = state
                .aliases
                .keys()
                .filter(|a| a.domain == name)
                .cloned()
                .collect();
            (members, aliases)
        };
        let empty = members.is_empty() && aliases.is_empty();
        if !empty && !force {
            return Err(StoreError::DomainNotEmpty(
                name,
                members.len() + aliases.len(),
            ));
        }
        // Aliases first (they point at the mailboxes), then mailboxes, then the domain; a crash
        // anywhere leaves a consistent, smaller domain and the command can be repeated.
        for alias in &aliases {
            self.inner
                .objects
                .delete(&objects::alias_path(alias))
                .await?;
            self.state().aliases.remove(alias);
            self.inner.settings.directory_changed();
        }
        for addr in &members {
            self.remove_mailbox(addr).await?;
        }
        self.inner
            .objects
            .delete(&objects::domain_path(&name))
            .await?;
        self.state().domains.remove(&name);
        self.inner.settings.directory_changed();
        Ok(())
    }

    pub fn list_domains(&self) -> Vec<String> {
        self.state().domains.keys().cloned().collect()
    }

    pub async fn add_mailbox(&self, raw: &str, password: &str) -> Result<String> {
        let addr = Address::parse(raw)?;
        check_password(password)?;
        let hash = self.hash(password).await?;
        let _admin = self.inner.admin.lock().await;
        {
            let state = self.state();
            if !state.domains.contains_key(&addr.domain) {
                return Err(StoreError::UnknownDomain(addr.domain.clone()));
            }
            if state.mailboxes.contains_key(&addr) {
                return Err(StoreError::MailboxExists(addr.to_string()));
            }
            if state.aliases.contains_key(&addr) {
                return Err(StoreError::AliasExists(addr.to_string()));
            }
        }
        let mailbox = Mailbox {
            password_hash: hash,
            quota: None,
            locked: false,
            messages: BTreeMap::new(),
            used: 0,
            reserved: 0,
            warned: false,
        };
        self.write_mailbox(&addr, &mailbox).await?;
        self.state().mailboxes.insert(addr.clone(), mailbox);
        self.inner.settings.directory_changed();
        Ok(addr.to_string())
    }

    /// Loads a mailbox for an admin change, applies `change`, writes it, then installs it.
    async fn update_mailbox(
        &self,
        addr: &Address,
        change: impl FnOnce(&mut Mailbox),
    ) -> Result<()> {
        let mut mb = self
            .state()
            .mailboxes
            .get(addr)
            .cloned()
            .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
        change(&mut mb);
        self.write_mailbox(addr, &mb).await?;
        if let Some(current) = self.state().mailboxes.get_mut(addr) {
            // Only the admin-owned fields: messages and usage moved on meanwhile.
            current.password_hash = mb.password_hash;
            current.quota = mb.quota;
            current.locked = mb.locked;
        }
        Ok(())
    }

    async fn update_domain(&self, name: &str, change: impl FnOnce(&mut Domain)) -> Result<()> {
        let mut dom = self
            .state()
            .domains
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownDomain(name.to_string()))?;
        change(&mut dom);
        self.write_domain(name, &dom).await?;
        if let Some(current) = self.state().domains.get_mut(name) {
            current.quota = dom.quota;
            current.locked = dom.locked;
        }
        Ok(())
    }

    pub async fn set_password(&self, raw: &str, password: &str) -> Result<()> {
        let addr = Address::parse(raw)?;
        check_password(password)?;
        let hash = self.hash(password).await?;
        let _admin = self.inner.admin.lock().await;
        self.update_mailbox(&addr, |mb| mb.password_hash = hash)
            .await?;
        self.inner.credentials.forget(&addr);
        Ok(())
    }

    pub async fn delete_mailbox(&self, raw: &str) -> Result<()> {
        let addr = Address::parse(raw)?;
        let _admin = self.inner.admin.lock().await;
        {
            let state = self.state();
            if !state.mailboxes.contains_key(&addr) {
                return Err(StoreError::UnknownMailbox(addr.to_string()));
            }
            if let Some(alias) = state.aliases_targeting(|t| *t == addr) {
                return Err(StoreError::AliasTarget {
                    name: format!("mailbox {addr}"),
                    alias: alias.to_string(),
                });
            }
        }
        self.remove_mailbox(&addr).await
    }

    /// Removes the metadata first (the mailbox is gone from that moment, also after a crash),
    /// then its messages; a crash in between leaves messages without metadata, which `open`
    /// sweeps.
    async fn remove_mailbox(&self, addr: &Address) -> Result<()> {
        self.inner
            .objects
            .delete(&objects::mailbox_meta_path(addr))
            .await?;
        let removed = {
            let mut state = self.state();
            state.leases.remove(addr);
            let removed = state.mailboxes.remove(addr);
            if let (Some(mb), Some(dom)) = (&removed, state.domains.get_mut(&addr.domain)) {
                dom.used -= mb.used;
            }
            removed
        };
        self.inner.credentials.forget(addr);
        self.inner.settings.directory_changed();
        if let Some(mb) = removed {
            let paths: Vec<_> = (mb.messages.keys())
                .map(|uidl| objects::message_path(addr, uidl))
                .collect();
            self.inner.objects.delete_many(&paths).await?;
        }
        Ok(())
    }

    pub fn list_mailboxes(&self, domain: Option<&str>) -> Result<Vec<String>> {
        let domain = domain.map(names::domain).transpose()?;
        let state = self.state();
        if let Some(d) = &domain
            && !state.domains.contains_key(d)
        {
            return Err(StoreError::UnknownDomain(d.clone()));
        }
        Ok(state
            .mailboxes
            .keys()
            .filter(|a| domain.as_ref().is_none_or(|d| &a.domain == d))
            .map(|a| a.to_string())
            .collect())
    }

    pub fn stat(&self, address: Option<&str>) -> Result<Vec<MailboxStat>> {
        let now = Instant::now();
        let state = self.state();
        let wanted: Option<Vec<Address>> = match address {
            None => None,
            Some(raw) => {
                let addr = Address::parse(raw)?;
                Some(
                    state
                        .targets(&addr)
                        .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?,
                )
            }
        };
        Ok(state
            .mailboxes
            .iter()
            .filter(|(a, _)| wanted.as_ref().is_none_or(|w| w.contains(a)))
            .map(|(a, mb)| MailboxStat {
                address: a.to_string(),
                messages: mb.messages.len() as u64,
                bytes: mb.used,
                locked: state.is_locked(a),
                quota: mb.quota,
                session: state
                    .lease_holder(a, now)
                    .map(|l| (l.node.clone(), l.session.clone(), now - l.granted)),
            })
            .collect())
    }

    // ---- quotas, locks, aliases -------------------------------------------------------------

    /// `limit` None = unlimited. A limit below current usage is allowed (no new mail fits).
    pub async fn set_quota(&self, target: &str, domain: bool, limit: Option<u64>) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        if domain {
            let name = names::domain(target)?;
            self.update_domain(&name, |d| d.quota = limit).await
        } else {
            let addr = Address::parse(target)?;
            self.update_mailbox(&addr, |mb| {
                mb.quota = limit;
                mb.warned = false;
            })
            .await
        }
    }

    /// (limit, used) of a mailbox or domain.
    pub fn show_quota(&self, target: &str, domain: bool) -> Result<(Option<u64>, u64)> {
        let state = self.state();
        if domain {
            let name = names::domain(target)?;
            let d = state
                .domains
                .get(&name)
                .ok_or(StoreError::UnknownDomain(name))?;
            Ok((d.quota, d.used))
        } else {
            let addr = Address::parse(target)?;
            let mb = state
                .mailboxes
                .get(&addr)
                .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
            Ok((mb.quota, mb.used))
        }
    }

    /// Locks or unlocks a domain, a mailbox, or (through its targets) an alias.
    pub async fn set_lock(&self, target: &str, domain: bool, locked: bool) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        if domain {
            let name = names::domain(target)?;
            self.update_domain(&name, |d| d.locked = locked).await?;
            let members: Vec<Address> = (self.state().mailboxes.keys())
                .filter(|a| a.domain == name)
                .cloned()
                .collect();
            for addr in &members {
                self.inner.credentials.forget(addr);
            }
            return Ok(());
        }
        let addr = Address::parse(target)?;
        let targets = self
            .state()
            .targets(&addr)
            .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
        for t in &targets {
            self.update_mailbox(t, |mb| mb.locked = locked).await?;
            self.inner.credentials.forget(t);
        }
        Ok(())
    }

    pub async fn add_alias(&self, raw: &str, raw_targets: &[String]) -> Result<()> {
        let alias = Address::parse(raw)?;
        if raw_targets.is_empty() {
            return Err(StoreError::InvalidArgument(
                "an alias needs at least one target".into(),
            ));
        }
        let targets = raw_targets
            .iter()
            .map(|t| Address::parse(t))
            .collect::<Result<Vec<_>>>()?;
        let _admin = self.inner.admin.lock().await;
        {
            let state = self.state();
            if !state.domains.contains_key(&alias.domain) {
                return Err(StoreError::UnknownDomain(alias.domain.clone()));
            }
            if state.mailboxes.contains_key(&alias) {
                return Err(StoreError::MailboxExists(alias.to_string()));
            }
            if state.aliases.contains_key(&alias) {
                return Err(StoreError::AliasExists(alias.to_string()));
            }
            if let Some(missing) = targets.iter().find(|t| !state.mailboxes.contains_key(*t)) {
                return Err(StoreError::UnknownMailbox(missing.to_string()));
            }
        }
        let record = AliasRecord {
            address: alias.to_string(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
        };
        self.put_json(&objects::alias_path(&alias), &record).await?;
        self.state().aliases.insert(alias, targets);
        self.inner.settings.directory_changed();
        Ok(())
    }

    pub async fn delete_alias(&self, raw: &str) -> Result<()> {
        let alias = Address::parse(raw)?;
        let _admin = self.inner.admin.lock().await;
        if !self.state().aliases.contains_key(&alias) {
            return Err(StoreError::UnknownAlias(alias.to_string()));
        }
        self.inner
            .objects
            .delete(&objects::alias_path(&alias))
            .await?;
        self.state().aliases.remove(&alias);
        self.inner.settings.directory_changed();
        Ok(())
    }

    pub fn list_aliases(&self, domain: Option<&str>) -> Result<Vec<(String, Vec<String>)>> {
        let domain = domain.map(names::domain).transpose()?;
        Ok(self
            .state()
            .aliases
            .iter()
            .filter(|(a, _)| domain.as_ref().is_none_or(|d| &a.domain == d))
            .map(|(a, t)| (a.to_string(), t.iter().map(|x| x.to_string()).collect()))
            .collect())
    }

    /// `mailrootctl mailbox unlock-session`: frees a maildrop held by a (possibly dead) session.
    pub fn break_session(&self, raw: &str) -> Result<bool> {
        let addr = Address::parse(raw)?;
        let mut state = self.state();
        let targets = state
            .targets(&addr)
            .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
        let mut broke = false;
        for t in targets {
            broke |= state.leases.remove(&t).is_some();
        }
        Ok(broke)
    }

    // ---- helpers ---------------------------------------------------------------------------

    async fn hash(&self, password: &str) -> Result<String> {
        self.inner.credentials.hash(password).await
    }

    /// Argon2id computations made so far (tests and benchmarks: warm logins make none).
    pub fn password_hashes_computed(&self) -> u64 {
        self.inner
            .credentials
            .argon_runs
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn write_mailbox(&self, addr: &Address, mb: &Mailbox) -> Result<()> {
        let record = MailboxRecord {
            address: addr.to_string(),
            password_hash: mb.password_hash.clone(),
            quota: mb.quota,
            locked: mb.locked,
        };
        self.put_json(&objects::mailbox_meta_path(addr), &record)
            .await
    }

    async fn write_domain(&self, name: &str, d: &Domain) -> Result<()> {
        let record = DomainRecord {
            name: name.to_string(),
            quota: d.quota,
            locked: d.locked,
        };
        self.put_json(&objects::domain_path(name), &record).await
    }

    async fn put_json<T: Serialize>(&self, path: &object_store::path::Path, v: &T) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(v).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.inner.objects.put(path, Bytes::from(bytes)).await
    }
}

fn check_password(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(StoreError::InvalidArgument("the password is empty".into()));
    }
    if password.chars().any(|c| c.is_control()) {
        return Err(StoreError::InvalidArgument(
            "the password contains control characters".into(),
        ));
    }
    Ok(())
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
