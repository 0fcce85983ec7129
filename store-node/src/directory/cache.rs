//! A short-lived memory of what a directory said: entries found for an address, and logins
//! it verified. It spares the directory a search and two binds per RCPT and login, and it
//! carries users who were seen recently through a short directory outage.
//!
//! # Why it is safe
//! The security argument of the password cache (`crate::auth`) applies unchanged: a verified
//! login is remembered as `tag = BLAKE2b-MAC(K, address \0 password)` — never the password —
//! with `K` 32 random bytes drawn at start and never written anywhere, compared in constant
//! time. Only successes are remembered: a wrong password, an unknown or disabled user, and
//! an unreachable directory are asked again every time (and failed logins pay the
//! throttle's delay in `store/login.rs`), so guessing gains nothing from the cache.
//!
//! What it costs: for up to the TTL (`--directory-cache-ttl`, default 60 s) a user disabled,
//! removed or given a new password in the directory keeps working with what the store last
//! saw. A change of the domain's directory configuration, and a lock or delete of the
//! mailbox in mailroot, forget the entries at once. Every forget bumps a generation, and a
//! result fetched before a forget is not stored after it (no stale entry slips in while a
//! directory call is in flight).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::DirEntry;
use crate::auth::LoginTags;
use crate::names::Address;

/// Default lifetime of a cached entry or login.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Most entries of each kind; emptied of expired ones, then entirely, when full.
pub const MAX_ENTRIES: usize = 100_000;

struct Login {
    tag: [u8; 32],
    entry: DirEntry,
    expires: Instant,
}

#[derive(Default)]
struct Maps {
    /// Address asked for (a user's address or alias) -> its entry.
    entries: HashMap<Address, (DirEntry, Instant)>,
    /// Login address -> the verified login.
    logins: HashMap<Address, Login>,
}

pub struct Cache {
    ttl: Duration,
    tags: LoginTags,
    maps: Mutex<Maps>,
    generation: AtomicU64,
}

/// The cache's generation when a directory call started: results are kept only if nothing
/// was forgotten meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Generation(u64);

impl Cache {
    /// `ttl` zero turns the cache off.
    pub fn new(ttl: Duration) -> Cache {
        Cache {
            ttl,
            tags: LoginTags::new(),
            maps: Mutex::new(Maps::default()),
            generation: AtomicU64::new(0),
        }
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::SeqCst))
    }

    pub fn entry(&self, addr: &Address) -> Option<DirEntry> {
        let maps = self.maps();
        let (entry, expires) = maps.entries.get(addr)?;
        (*expires > Instant::now()).then(|| entry.clone())
    }

    pub fn put_entry(&self, addr: &Address, entry: &DirEntry, since: Generation) {
        if self.ttl.is_zero() {
            return;
        }
        let mut maps = self.maps();
        if self.generation.load(Ordering::SeqCst) != since.0 {
            return;
        }
        let now = Instant::now();
        if maps.entries.len() >= MAX_ENTRIES {
            maps.entries.retain(|_, (_, e)| *e > now);
            if maps.entries.len() >= MAX_ENTRIES {
                maps.entries.clear();
            }
        }
        maps.entries
            .insert(addr.clone(), (entry.clone(), now + self.ttl));
    }

    /// The entry of a login verified before with this very password, if still fresh.
    pub fn login(&self, addr: &Address, password: &str) -> Option<DirEntry> {
        let maps = self.maps();
        let login = maps.logins.get(addr)?;
        (login.expires > Instant::now() && self.tags.matches(addr, password, &login.tag))
            .then(|| login.entry.clone())
    }

    pub fn put_login(&self, addr: &Address, password: &str, entry: &DirEntry, since: Generation) {
        if self.ttl.is_zero() {
            return;
        }
        let tag = self.tags.tag(addr, password);
        let mut maps = self.maps();
        if self.generation.load(Ordering::SeqCst) != since.0 {
            return;
        }
        let now = Instant::now();
        if maps.logins.len() >= MAX_ENTRIES {
            maps.logins.retain(|_, l| l.expires > now);
            if maps.logins.len() >= MAX_ENTRIES {
                maps.logins.clear();
            }
        }
        maps.logins.insert(
            addr.clone(),
            Login {
                tag,
                entry: entry.clone(),
                expires: now + self.ttl,
            },
        );
    }

    /// Drops what is known about a domain (its directory configuration changed).
    pub fn forget_domain(&self, domain: &str) {
        let mut maps = self.maps();
        self.generation.fetch_add(1, Ordering::SeqCst);
        maps.entries
            .retain(|a, (e, _)| a.domain != domain && e.mailbox.domain != domain);
        maps.logins
            .retain(|a, l| a.domain != domain && l.entry.mailbox.domain != domain);
    }

    /// Drops what is known about a mailbox and its aliases (locked or deleted).
    pub fn forget_mailbox(&self, mailbox: &Address) {
        let mut maps = self.maps();
        self.generation.fetch_add(1, Ordering::SeqCst);
        maps.entries
            .retain(|a, (e, _)| a != mailbox && e.mailbox != *mailbox);
        maps.logins
            .retain(|a, l| a != mailbox && l.entry.mailbox != *mailbox);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn entry(mailbox: &str) -> DirEntry {
        DirEntry {
            dn: format!("uid={mailbox},dc=x"),
            mailbox: addr(mailbox),
            aliases: vec![],
        }
    }

    #[test]
    fn only_the_verified_password_hits() {
        let c = Cache::new(DEFAULT_TTL);
        let a = addr("a@x.test");
        c.put_login(&a, "pw", &entry("a@x.test"), c.generation());
        assert_eq!(c.login(&a, "pw"), Some(entry("a@x.test")));
        assert_eq!(c.login(&a, "pW"), None);
        assert_eq!(c.login(&addr("b@x.test"), "pw"), None);
    }

    #[test]
    fn forgetting_drops_entries_and_fences_calls_in_flight() {
        let c = Cache::new(DEFAULT_TTL);
        let a = addr("a@x.test");
        let al = addr("al@x.test");
        c.put_entry(&al, &entry("a@x.test"), c.generation());
        c.put_login(&a, "pw", &entry("a@x.test"), c.generation());
        let before = c.generation();
        c.forget_mailbox(&a);
        assert_eq!(c.entry(&al), None);
        assert_eq!(c.login(&a, "pw"), None);
        // A result fetched before the forget is not kept.
        c.put_entry(&al, &entry("a@x.test"), before);
        assert_eq!(c.entry(&al), None);
        c.put_entry(&al, &entry("a@x.test"), c.generation());
        assert!(c.entry(&al).is_some());
        c.forget_domain("x.test");
        assert_eq!(c.entry(&al), None);
    }

    #[test]
    fn ttl_zero_keeps_nothing() {
        let c = Cache::new(Duration::ZERO);
        let a = addr("a@x.test");
        c.put_login(&a, "pw", &entry("a@x.test"), c.generation());
        c.put_entry(&a, &entry("a@x.test"), c.generation());
        assert_eq!(c.login(&a, "pw"), None);
        assert_eq!(c.entry(&a), None);
    }
}
