//! Cluster-wide brute-force throttling of logins (POP3 and SMTP AUTH on every front-end).
//! The counters live here, in the store, so an attacker gains nothing by spreading attempts
//! over front-ends. Failures are counted per login name and per client IP: after a few free
//! failures each further one is answered after a growing delay, and past a limit the key is
//! refused outright for a while. A success clears the login name's counter only (not the
//! IP's: one known password must not reset an address-spraying attacker), and other users and
//! IPs are never affected.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures older than this are forgotten.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures answered without delay.
pub const FREE_FAILURES: u32 = 3;
/// Failures after which the key is refused until the window passes.
pub const LOCKOUT_AFTER: u32 = 10;
/// Upper bound of the delay, in multiples of the base delay.
const MAX_FACTOR: u32 = 16;

#[derive(Debug)]
struct Entry {
    failures: u32,
    last: Instant,
}

#[derive(Debug)]
pub struct Throttle {
    base_delay: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead (after this delay if the attempt fails).
    Allow,
    /// Too many failures: refuse without checking the password.
    Refuse,
}

pub fn keys(user: &str, ip: &str) -> Vec<String> {
    let mut keys = vec![format!("user:{}", user.to_lowercase())];
    if !ip.is_empty() {
        keys.push(format!("ip:{ip}"));
    }
    keys
}

impl Throttle {
    pub fn new(base_delay: Duration) -> Throttle {
        Throttle {
            base_delay,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn check(&self, keys: &[String]) -> Verdict {
        let now = Instant::now();
        let mut entries = self.entries();
        entries.retain(|_, e| now.duration_since(e.last) < WINDOW);
        if keys
            .iter()
            .any(|k| entries.get(k).is_some_and(|e| e.failures >= LOCKOUT_AFTER))
        {
            Verdict::Refuse
        } else {
            Verdict::Allow
        }
    }

    /// Records a failure and returns how long to hold the answer back.
    pub fn failed(&self, keys: &[String]) -> Duration {
        let now = Instant::now();
        let mut entries = self.entries();
        let mut worst = 0;
        for k in keys {
            let e = entries.entry(k.clone()).or_insert(Entry {
                failures: 0,
                last: now,
            });
            e.failures += 1;
            e.last = now;
            worst = worst.max(e.failures);
        }
        match worst.checked_sub(FREE_FAILURES) {
            None | Some(0) => Duration::ZERO,
            Some(n) => self.base_delay * (1u32 << (n - 1).min(31)).min(MAX_FACTOR),
        }
    }

    pub fn succeeded(&self, user_key: &str) {
        self.entries().remove(user_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_then_refuses_and_spares_others() {
        let t = Throttle::new(Duration::from_millis(10));
        let bad = keys("mallory@example.test", "192.0.2.1");
        let mut delays = Vec::new();
        for _ in 0..LOCKOUT_AFTER {
            assert_eq!(t.check(&bad), Verdict::Allow);
            delays.push(t.failed(&bad));
        }
        assert_eq!(delays[..3], [Duration::ZERO; 3]);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert!(delays[9] > delays[4]);
        assert_eq!(t.check(&bad), Verdict::Refuse);
        // Another user from another IP is not affected; the same IP is.
        assert_eq!(
            t.check(&keys("alice@example.test", "192.0.2.9")),
            Verdict::Allow
        );
        assert_eq!(
            t.check(&keys("alice@example.test", "192.0.2.1")),
            Verdict::Refuse
        );
    }
}
