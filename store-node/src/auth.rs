//! Password checks that scale: Argon2id work bounded by a semaphore sized to the cores, and a
//! cache of *verified* credentials so that a returning user's login costs a keyed hash, not
//! an Argon2id computation.
//!
//! # The cache and why it is safe
//! After a password was verified with Argon2id, the store remembers, for that mailbox,
//! `tag = BLAKE2b-MAC(K, mailbox \0 password)` together with the password hash it was
//! verified against and an expiry (`--auth-cache-ttl`). `K` is 32 random bytes drawn at start
//! from the OS and never written anywhere, so the cache is worthless outside this process and
//! is gone after a restart. A later login with the same mailbox and password computes the
//! same tag and is accepted without Argon2id when all of this holds:
//! - the entry has not expired;
//! - the mailbox's *current* password hash is the one the entry was verified against: a
//!   password change replaces the hash, so an old password stops working at once even if
//!   `forget` were missed;
//! - the tag matches, compared in constant time (`Mac::verify_slice`).
//!
//! Password change, lock and delete also `forget` the entry explicitly. Locks are checked
//! after every successful password check anyway, cached or not. Failed logins are never
//! cached: a wrong password always costs a full Argon2id check (and the throttle's delay), so
//! guessing gains nothing from the cache, and an unknown user costs an Argon2id check too
//! (no user-enumeration timing oracle; only the *right* password is fast).
//! What it costs: someone who can read the store's memory (and thus `K` and the tags) can test
//! guesses at MAC speed instead of Argon2id speed — but such a reader also sees the passwords
//! in the requests themselves. Dovecot's auth cache, the comparison, keeps verified plain
//! credentials in memory with the same exposure.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use blake2::Blake2bMac;
use blake2::digest::consts::U32;
use blake2::digest::{KeyInit, Mac};
use tokio::sync::Semaphore;

use crate::error::{Result, StoreError};
use crate::names::Address;
use crate::password::Hasher;

type Tagger = Blake2bMac<U32>;

/// Tags of verified (address, password) pairs, `BLAKE2b-MAC(K, address \0 password)`, under
/// a key `K` drawn at start and never written anywhere (the module doc has the argument).
/// The password cache here and the directory's login cache (`directory/cache.rs`) keep these
/// instead of passwords.
pub struct LoginTags {
    key: [u8; 32],
}

impl LoginTags {
    pub fn new() -> LoginTags {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        LoginTags { key }
    }

    fn mac(&self, addr: &Address, password: &str) -> Tagger {
        let mut mac =
            <Tagger as KeyInit>::new_from_slice(&self.key).expect("BLAKE2b accepts a 32-byte key");
        mac.update(addr.to_string().as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac
    }

    pub fn tag(&self, addr: &Address, password: &str) -> [u8; 32] {
        self.mac(addr, password).finalize().into_bytes().into()
    }

    /// Whether `tag` is this pair's, compared in constant time (`Mac::verify_slice`).
    pub fn matches(&self, addr: &Address, password: &str, tag: &[u8; 32]) -> bool {
        self.mac(addr, password).verify_slice(tag).is_ok()
    }
}

impl Default for LoginTags {
    fn default() -> Self {
        Self::new()
    }
}

/// Default lifetime of a cached credential.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(3600);
/// Most cached credentials; the oldest half is dropped when full.
pub const MAX_CACHE_ENTRIES: usize = 100_000;

struct Entry {
    tag: [u8; 32],
    /// The password hash the password was verified against.
    hash: String,
    expires: Instant,
}

pub struct Credentials {
    hasher: Hasher,
    /// Bounds concurrent Argon2id computations (each takes ~19 MiB): logins queue, memory
    /// stays flat.
    permits: Semaphore,
    tags: LoginTags,
    ttl: Duration,
    cache: Mutex<HashMap<Address, Entry>>,
    /// Verified against when a login names no mailbox, so that unknown users cost as much
    /// time as wrong passwords.
    dummy_hash: String,
    /// Argon2id computations made (hashes and verifications), for tests and benchmarks.
    pub argon_runs: AtomicU64,
}

impl Credentials {
    /// `ttl` zero turns the cache off.
    pub fn new(auth_guid: &str, ttl: Duration) -> Result<Credentials> {
        let hasher = Hasher::new(auth_guid);
        let dummy_hash = hasher.hash(&uuid::Uuid::new_v4().to_string())?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Credentials {
            hasher,
            permits: Semaphore::new(cores),
            tags: LoginTags::new(),
            ttl,
            cache: Mutex::new(HashMap::new()),
            dummy_hash,
            argon_runs: AtomicU64::new(0),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<Address, Entry>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Does `password` match `stored_hash`, the current hash of `addr`?
    pub async fn verify(&self, addr: &Address, password: &str, stored_hash: &str) -> Result<bool> {
        if self.ttl.is_zero() {
            return self.argon_verify(password, stored_hash).await;
        }
        let hit = self.cache().get(addr).is_some_and(|e| {
            e.expires > Instant::now()
                && e.hash == stored_hash
                && self.tags.matches(addr, password, &e.tag)
        });
        if hit {
            return Ok(true);
        }
        let ok = self.argon_verify(password, stored_hash).await?;
        if ok {
            let mut cache = self.cache();
            if cache.len() >= MAX_CACHE_ENTRIES {
                let now = Instant::now();
                cache.retain(|_, e| e.expires > now);
                if cache.len() >= MAX_CACHE_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert(
                addr.clone(),
                Entry {
                    tag: self.tags.tag(addr, password),
                    hash: stored_hash.to_string(),
                    expires: Instant::now() + self.ttl,
                },
            );
        }
        Ok(ok)
    }

    /// The same work as a real check, for a login that names no mailbox.
    pub async fn verify_nobody(&self, password: &str) {
        let _ = self.argon_verify(password, &self.dummy_hash).await;
    }

    /// Drops the cached credential of `addr` (password change, lock, delete).
    pub fn forget(&self, addr: &Address) {
        self.cache().remove(addr);
    }

    pub async fn hash(&self, password: &str) -> Result<String> {
        let _permit = self.permit().await?;
        self.argon_runs.fetch_add(1, Ordering::Relaxed);
        let hasher = self.hasher.clone();
        let password = password.to_string();
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    async fn argon_verify(&self, password: &str, hash: &str) -> Result<bool> {
        let _permit = self.permit().await?;
        self.argon_runs.fetch_add(1, Ordering::Relaxed);
        let hasher = self.hasher.clone();
        let password = password.to_string();
        let hash = hash.to_string();
        tokio::task::spawn_blocking(move || hasher.verify(&password, &hash))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    /// An Argon2id slot; the wait is the password-hash queue a busy store shows first.
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        let queued = Instant::now();
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        metrics::histogram!(crate::metrics::PASSWORD_HASH_WAIT_SECONDS).record(queued.elapsed());
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: &str = "5f0c1a52-7a39-4f7e-9d2b-0a4c4d2e8b11";

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[tokio::test]
    async fn a_verified_password_is_served_from_the_cache() {
        let c = Credentials::new(GUID, DEFAULT_CACHE_TTL).unwrap();
        let h = c.hash("pw").await.unwrap();
        let a = addr("a@x.test");
        assert!(c.verify(&a, "pw", &h).await.unwrap());
        let runs = c.argon_runs.load(Ordering::Relaxed);
        for _ in 0..5 {
            assert!(c.verify(&a, "pw", &h).await.unwrap());
        }
        assert_eq!(
            c.argon_runs.load(Ordering::Relaxed),
            runs,
            "warm logins cost no Argon2id"
        );
    }

    #[tokio::test]
    async fn wrong_passwords_always_pay_and_are_never_cached() {
        let c = Credentials::new(GUID, DEFAULT_CACHE_TTL).unwrap();
        let h = c.hash("pw").await.unwrap();
        let a = addr("a@x.test");
        assert!(c.verify(&a, "pw", &h).await.unwrap());
        let runs = c.argon_runs.load(Ordering::Relaxed);
        assert!(!c.verify(&a, "pW", &h).await.unwrap());
        assert!(!c.verify(&a, "pW", &h).await.unwrap());
        assert_eq!(c.argon_runs.load(Ordering::Relaxed), runs + 2);
        // The right one still hits.
        assert!(c.verify(&a, "pw", &h).await.unwrap());
        assert_eq!(c.argon_runs.load(Ordering::Relaxed), runs + 2);
    }

    #[tokio::test]
    async fn a_new_hash_or_forget_invalidates_at_once() {
        let c = Credentials::new(GUID, DEFAULT_CACHE_TTL).unwrap();
        let old = c.hash("old").await.unwrap();
        let a = addr("a@x.test");
        assert!(c.verify(&a, "old", &old).await.unwrap());
        // Password changed: the entry was verified against another hash.
        let new = c.hash("new").await.unwrap();
        assert!(!c.verify(&a, "old", &new).await.unwrap());
        assert!(c.verify(&a, "new", &new).await.unwrap());
        c.forget(&a);
        let runs = c.argon_runs.load(Ordering::Relaxed);
        assert!(c.verify(&a, "new", &new).await.unwrap());
        assert_eq!(c.argon_runs.load(Ordering::Relaxed), runs + 1);
    }

    #[tokio::test]
    async fn the_tag_binds_the_mailbox() {
        let c = Credentials::new(GUID, DEFAULT_CACHE_TTL).unwrap();
        let h = c.hash("pw").await.unwrap();
        assert!(c.verify(&addr("a@x.test"), "pw", &h).await.unwrap());
        let runs = c.argon_runs.load(Ordering::Relaxed);
        // Same hash string under another name: not a hit (it was verified for a@ only).
        assert!(c.verify(&addr("b@x.test"), "pw", &h).await.unwrap());
        assert_eq!(c.argon_runs.load(Ordering::Relaxed), runs + 1);
    }

    #[tokio::test]
    async fn ttl_zero_turns_the_cache_off() {
        let c = Credentials::new(GUID, Duration::ZERO).unwrap();
        let h = c.hash("pw").await.unwrap();
        let a = addr("a@x.test");
        let runs = c.argon_runs.load(Ordering::Relaxed);
        assert!(c.verify(&a, "pw", &h).await.unwrap());
        assert!(c.verify(&a, "pw", &h).await.unwrap());
        assert_eq!(c.argon_runs.load(Ordering::Relaxed), runs + 2);
    }
}
