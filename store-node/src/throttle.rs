//! Cluster-wide brute-force throttling of logins (POP3 and SMTP AUTH on every front-end).
//! The counters live here, in the store, so an attacker gains nothing by spreading attempts
//! over front-ends. This module owns the counters and the verdict; it does not check passwords,
//! sleep, or know about mailboxes (`store/login.rs` does, and canonicalises the login name).
//!
//! # Keys
//! Every failed login counts against three keys:
//!
//! | key                  | after `FREE_FAILURES`        | after `LOCKOUT_AFTER`            |
//! |----------------------|------------------------------|----------------------------------|
//! | (login name, IP)     | growing delay                | **refused** until the window ends |
//! | client IP            | growing delay                | growing delay (never refused)    |
//! | login name (any IP)  | growing delay                | growing delay (never refused)    |
//!
//! The delay holds back the *failure* answer only (`MAX_FACTOR` × the base at most); a login
//! with the right password is answered at once unless its own (name, IP) pair is locked. A
//! success clears the pair and the name's cross-IP counter, never the IP's (one known
//! password — the attacker's own mailbox — must not reset an attacker spraying from that IP).
//! Entries are forgotten `WINDOW` after their last failure; refused attempts are not counted,
//! so a lockout ends `WINDOW` after the failure that caused it (or at `mailrootctl throttle
//! clear`).
//!
//! # Security argument
//! Why only the pair locks: many users share one address behind a NAT, a carrier-grade NAT or a
//! load balancer without PROXY. If the IP key locked, one attacker there would lock every
//! user out; if the name key locked, anyone anywhere could lock any user out by typing ten
//! wrong passwords. A pair lockout hurts only that name from that address.
//!
//! What an attacker *can* do:
//! - From one address: `LOCKOUT_AFTER` guesses per name per `WINDOW`, and, over many names
//!   (password spraying), guesses slowed by the IP delay — per connection: the delay does not
//!   stop concurrent connections, which the front-ends bound per IP
//!   (`--max-connections-per-ip`, except for `--trusted-networks`).
//! - From N addresses against one name: `LOCKOUT_AFTER` × N guesses per `WINDOW`, each answered
//!   after the name's delay (again per connection).
//! - Lock one name out from its own address (a user behind the attacker's NAT). An
//!   administrator lifts it with `mailrootctl throttle clear NAME`; it lifts itself after
//!   `WINDOW`.
//! - Slow the failed attempts of others from a shared address or of one name everywhere, by at
//!   most `MAX_FACTOR` × the base delay. Their correct passwords are never slowed.
//!
//! What an attacker *cannot* do: lock out any user other than a name it targets from its own
//! address; make a correct login wait; reset its counters by logging in to its own mailbox
//! from the same address; gain anything by spreading attempts over front-ends (the counters
//! are here); double its budget by spelling one name differently (`carol`, `CAROL@…` and
//! `carol@…` are one key, see `store/login.rs`). It can still use one alias per target as a
//! separate name: an alias is its own login name.
//!
//! An address that is not a valid IP (an old front-end sends none) counts as one shared
//! address, `""`: pairs with it then lock the name for every such front-end.
//!
//! Memory: a failure adds at most three entries (its pair, its IP, its name), each forgotten
//! `WINDOW` after its last failure; names are cut to `MAX_NAME_CHARS` characters. Expired entries are swept at most once per
//! `SWEEP_EVERY`; lookups ignore them in between.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures older than this are forgotten.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures answered without delay.
pub const FREE_FAILURES: u32 = 3;
/// Failures after which a (name, IP) pair is refused until the window passes.
pub const LOCKOUT_AFTER: u32 = 10;
/// Upper bound of the delay, in multiples of the base delay.
const MAX_FACTOR: u32 = 16;
/// Longer login names are cut (no valid address is longer: 64 + 1 + 253).
const MAX_NAME_CHARS: usize = 320;
/// How often expired entries are removed from the map.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// What a counter counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// One login name from one client address: the only key that locks.
    UserIp { user: String, ip: String },
    /// One client address, whatever the name: delay only.
    Ip(String),
    /// One login name, from any address: delay only.
    User(String),
}

impl Key {
    fn locks(&self) -> bool {
        matches!(self, Key::UserIp { .. })
    }

    pub fn user(&self) -> Option<&str> {
        match self {
            Key::UserIp { user, .. } | Key::User(user) => Some(user),
            Key::Ip(_) => None,
        }
    }

    pub fn ip(&self) -> Option<&str> {
        match self {
            Key::UserIp { ip, .. } | Key::Ip(ip) => Some(ip),
            Key::User(_) => None,
        }
    }
}

/// The keys one login attempt counts against. `user` should already be canonical (the store
/// resolves bare names and case); it is lower-cased and cut here as a last resort.
#[derive(Debug, Clone)]
pub struct Attempt {
    keys: Vec<Key>,
}

impl Attempt {
    pub fn new(user: &str, client_ip: &str) -> Attempt {
        let user: String = user.to_lowercase().chars().take(MAX_NAME_CHARS).collect();
        let ip = canonical_ip(client_ip);
        let mut keys = vec![Key::UserIp {
            user: user.clone(),
            ip: ip.clone(),
        }];
        if !ip.is_empty() {
            keys.push(Key::Ip(ip));
        }
        keys.push(Key::User(user));
        Attempt { keys }
    }
}

/// One spelling per address: `::ffff:192.0.2.1` is `192.0.2.1`. Anything that is not an IP
/// is the shared unknown address `""`.
pub fn canonical_ip(raw: &str) -> String {
    raw.trim()
        .parse::<IpAddr>()
        .map(|ip| ip.to_canonical().to_string())
        .unwrap_or_default()
}

/// Which entries `mailrootctl throttle list|clear` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    /// Entries of this (canonical) client address: its IP key and its pairs.
    Ip(String),
    /// Entries of this (canonical) login name: its name key and its pairs.
    User(String),
}

impl Filter {
    fn matches(&self, key: &Key) -> bool {
        match self {
            Filter::All => true,
            Filter::Ip(ip) => key.ip() == Some(ip.as_str()),
            Filter::User(user) => key.user() == Some(user.as_str()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead (after a delay if the attempt fails).
    Allow,
    /// Too many failures for this name from this address: refuse without checking the password.
    Refuse,
}

/// One counter as `mailrootctl throttle list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    pub key: Key,
    pub failures: u32,
    /// Refused until `remaining` has passed.
    pub locked: bool,
    /// Until the entry is forgotten (and a lock lifted).
    pub remaining: Duration,
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    last: Instant,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) < WINDOW
    }

    fn locked(&self, key: &Key) -> bool {
        key.locks() && self.failures >= LOCKOUT_AFTER
    }
}

#[derive(Debug)]
struct Table {
    entries: HashMap<Key, Entry>,
    swept: Instant,
}

impl Table {
    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.swept) >= SWEEP_EVERY {
            self.entries.retain(|_, e| e.live(now));
            self.swept = now;
        }
    }

    fn live(&self, key: &Key, now: Instant) -> Option<&Entry> {
        self.entries.get(key).filter(|e| e.live(now))
    }
}

#[derive(Debug)]
pub struct Throttle {
    base_delay: Duration,
    table: Mutex<Table>,
}

impl Throttle {
    pub fn new(base_delay: Duration) -> Throttle {
        Throttle {
            base_delay,
            table: Mutex::new(Table {
                entries: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every update is a few field writes; a poisoned table is still consistent.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before the password check: may this attempt proceed at all?
    pub fn check(&self, attempt: &Attempt) -> Verdict {
        self.check_at(attempt, Instant::now())
    }

    fn check_at(&self, attempt: &Attempt, now: Instant) -> Verdict {
        let mut table = self.table();
        table.sweep(now);
        let locked = attempt
            .keys
            .iter()
            .any(|k| table.live(k, now).is_some_and(|e| e.locked(k)));
        if locked {
            Verdict::Refuse
        } else {
            Verdict::Allow
        }
    }

    /// Records a failure and returns how long to hold the answer back: it grows with the most
    /// failures among the attempt's keys (so per IP and per name too), and is bounded.
    pub fn failed(&self, attempt: &Attempt) -> Duration {
        self.failed_at(attempt, Instant::now())
    }

    fn failed_at(&self, attempt: &Attempt, now: Instant) -> Duration {
        let mut table = self.table();
        let mut worst = 0;
        for k in &attempt.keys {
            let e = table.entries.entry(k.clone()).or_insert(Entry {
                failures: 0,
                last: now,
            });
            if !e.live(now) {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            worst = worst.max(e.failures);
        }
        match worst.checked_sub(FREE_FAILURES) {
            None | Some(0) => Duration::ZERO,
            Some(n) => self.base_delay * (1u32 << (n - 1).min(31)).min(MAX_FACTOR),
        }
    }

    /// The right password: forget this name's failures from this address and its cross-address
    /// counter. The IP's counter stays (see the module doc).
    pub fn succeeded(&self, attempt: &Attempt) {
        let mut table = self.table();
        for k in attempt.keys.iter().filter(|k| !matches!(k, Key::Ip(_))) {
            table.entries.remove(k);
        }
    }

    /// Live entries matching `filter`, sorted by key.
    pub fn list(&self, filter: &Filter) -> Vec<EntryView> {
        self.list_at(filter, Instant::now())
    }

    fn list_at(&self, filter: &Filter, now: Instant) -> Vec<EntryView> {
        let table = self.table();
        let mut views: Vec<EntryView> = table
            .entries
            .iter()
            .filter(|(k, e)| e.live(now) && filter.matches(k))
            .map(|(k, e)| EntryView {
                key: k.clone(),
                failures: e.failures,
                locked: e.locked(k),
                remaining: WINDOW.saturating_sub(now.saturating_duration_since(e.last)),
            })
            .collect();
        views.sort_by(|a, b| a.key.cmp(&b.key));
        views
    }

    /// Removes the entries matching `filter`; returns how many live ones there were.
    pub fn clear(&self, filter: &Filter) -> usize {
        self.clear_at(filter, Instant::now())
    }

    fn clear_at(&self, filter: &Filter, now: Instant) -> usize {
        let mut table = self.table();
        let mut cleared = 0;
        table.entries.retain(|k, e| {
            if !filter.matches(k) {
                return true;
            }
            cleared += usize::from(e.live(now));
            false
        });
        cleared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(10);

    fn fail_n(t: &Throttle, a: &Attempt, n: u32, now: Instant) -> Vec<Duration> {
        (0..n)
            .map(|_| {
                assert_eq!(t.check_at(a, now), Verdict::Allow);
                t.failed_at(a, now)
            })
            .collect()
    }

    #[test]
    fn delay_grows_bounded_then_the_pair_is_refused() {
        let t = Throttle::new(BASE);
        let now = Instant::now();
        let carol = Attempt::new("carol@example.test", "192.0.2.1");
        let delays = fail_n(&t, &carol, LOCKOUT_AFTER, now);
        assert_eq!(delays[..3], [Duration::ZERO; 3]);
        assert_eq!(delays[3], BASE);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert!(delays.iter().all(|d| *d <= BASE * MAX_FACTOR));
        assert_eq!(delays[9], BASE * MAX_FACTOR);
        assert_eq!(t.check_at(&carol, now), Verdict::Refuse);
        // Other spellings of the same pair are the same key.
        assert_eq!(
            t.check_at(&Attempt::new("CAROL@example.test", "::ffff:192.0.2.1"), now),
            Verdict::Refuse
        );
    }

    #[test]
    fn the_ip_never_locks_out_other_users() {
        let t = Throttle::new(BASE);
        let now = Instant::now();
        let carol = Attempt::new("carol@example.test", "192.0.2.1");
        for _ in 0..3 * LOCKOUT_AFTER {
            t.failed_at(&carol, now);
        }
        // Bob from the same address (a NAT) still gets to try, and his right password
        // clears nothing that would unlock carol.
        let bob = Attempt::new("bob@example.test", "192.0.2.1");
        assert_eq!(t.check_at(&bob, now), Verdict::Allow);
        t.succeeded(&bob);
        assert_eq!(t.check_at(&carol, now), Verdict::Refuse);
        // Bob's own failures from there are slowed by the IP's count, at most MAX_FACTOR.
        assert_eq!(t.failed_at(&bob, now), BASE * MAX_FACTOR);
        assert_eq!(t.check_at(&bob, now), Verdict::Allow);
        // Many users sprayed from one address: none of them locks (each pair has 1 failure),
        // and the address never does.
        for i in 0..50 {
            let a = Attempt::new(&format!("u{i}@example.test"), "192.0.2.1");
            assert_eq!(t.check_at(&a, now), Verdict::Allow);
            t.failed_at(&a, now);
        }
        assert_eq!(t.check_at(&bob, now), Verdict::Allow);
    }

    #[test]
    fn one_name_from_many_addresses_is_slowed_not_locked() {
        let t = Throttle::new(BASE);
        let now = Instant::now();
        let mut last = Duration::ZERO;
        for i in 0..(3 * LOCKOUT_AFTER) {
            let a = Attempt::new("carol@example.test", &format!("198.51.100.{i}"));
            assert_eq!(t.check_at(&a, now), Verdict::Allow);
            last = t.failed_at(&a, now);
        }
        // The name's cross-address counter slows every further failure for carol...
        assert_eq!(last, BASE * MAX_FACTOR);
        // ...but carol from her own address is not locked out.
        let home = Attempt::new("carol@example.test", "203.0.113.7");
        assert_eq!(t.check_at(&home, now), Verdict::Allow);
        // Her success clears the name counter; the attacker's pairs keep their counts.
        t.succeeded(&home);
        assert!(
            t.list_at(&Filter::All, now)
                .iter()
                .all(|v| !matches!(v.key, Key::User(_)))
        );
        assert_eq!(
            t.list_at(&Filter::User("carol@example.test".into()), now)
                .len(),
            3 * LOCKOUT_AFTER as usize
        );
    }

    #[test]
    fn success_clears_the_pair_but_not_the_ip() {
        let t = Throttle::new(BASE);
        let now = Instant::now();
        let carol = Attempt::new("carol@example.test", "192.0.2.1");
        fail_n(&t, &carol, LOCKOUT_AFTER - 1, now);
        t.succeeded(&carol);
        assert_eq!(
            t.list_at(&Filter::All, now),
            vec![EntryView {
                key: Key::Ip("192.0.2.1".into()),
                failures: LOCKOUT_AFTER - 1,
                locked: false,
                remaining: WINDOW,
            }]
        );
        // Carol's next failure is still slowed by the address's history.
        assert!(t.failed_at(&carol, now) > Duration::ZERO);
    }

    #[test]
    fn the_window_forgets_and_lifts_the_lock() {
        let t = Throttle::new(BASE);
        let start = Instant::now();
        let carol = Attempt::new("carol@example.test", "192.0.2.1");
        fail_n(&t, &carol, LOCKOUT_AFTER, start);
        let almost = start + WINDOW - Duration::from_secs(1);
        assert_eq!(t.check_at(&carol, almost), Verdict::Refuse);
        let views = t.list_at(&Filter::All, almost);
        assert_eq!(views.len(), 3);
        assert!(views.iter().all(|v| v.remaining == Duration::from_secs(1)));
        let after = start + WINDOW;
        assert_eq!(t.check_at(&carol, after), Verdict::Allow);
        assert!(t.list_at(&Filter::All, after).is_empty());
        // Counting starts again from zero: the first failures are free again.
        assert_eq!(t.failed_at(&carol, after), Duration::ZERO);
        assert_eq!(t.list_at(&Filter::All, after)[0].failures, 1);
    }

    #[test]
    fn list_and_clear_by_name_and_by_address() {
        let t = Throttle::new(BASE);
        let now = Instant::now();
        fail_n(
            &t,
            &Attempt::new("carol@example.test", "192.0.2.1"),
            LOCKOUT_AFTER,
            now,
        );
        fail_n(&t, &Attempt::new("bob@example.test", "192.0.2.2"), 1, now);
        // carol: her pair (locked) and her name counter.
        let carol = Filter::User("carol@example.test".into());
        let views = t.list_at(&carol, now);
        assert_eq!(views.len(), 2);
        assert!(views.iter().all(|v| v.failures == LOCKOUT_AFTER));
        assert_eq!(views.iter().filter(|v| v.locked).count(), 1);
        // 192.0.2.1: carol's pair and the address counter.
        assert_eq!(t.list_at(&Filter::Ip("192.0.2.1".into()), now).len(), 2);
        assert_eq!(t.clear_at(&carol, now), 2);
        assert_eq!(
            t.check_at(&Attempt::new("carol@example.test", "192.0.2.1"), now),
            Verdict::Allow
        );
        assert_eq!(t.clear_at(&carol, now), 0);
        assert_eq!(t.clear_at(&Filter::All, now), 4);
        assert!(t.list_at(&Filter::All, now).is_empty());
    }

    #[test]
    fn addresses_are_canonical() {
        assert_eq!(canonical_ip("::ffff:127.0.0.1"), "127.0.0.1");
        assert_eq!(canonical_ip("2001:DB8::1"), "2001:db8::1");
        assert_eq!(canonical_ip("not an ip"), "");
        let a = Attempt::new(&"X".repeat(1000), "");
        assert_eq!(
            a.keys,
            vec![
                Key::UserIp {
                    user: "x".repeat(MAX_NAME_CHARS),
                    ip: String::new()
                },
                Key::User("x".repeat(MAX_NAME_CHARS)),
            ]
        );
    }
}
