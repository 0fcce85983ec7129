//! The outbound rate limit: messages with at least one recipient in another domain, per
//! submitting (SMTP AUTH) user, per sliding hour, cluster-wide because every front-end's
//! deliveries come through here. The limit is the `outbound-limit` setting (0: unlimited).
//!
//! In memory only: a store restart forgets the window, so a user may send up to one more
//! hour's worth right after it. A message is counted once per delivery id (a front-end's
//! retried delivery is not counted twice), when it is admitted, whether or not its storage
//! then succeeds. DSNs the store queues have no user and are never counted.

use std::collections::{HashMap, VecDeque};

use super::*;

/// The window the limit counts over, unless `Options::outbound_limit_window` says otherwise
/// (the store's `--outbound-limit-window`).
pub const WINDOW: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub(super) struct OutboundLimit {
    window: Duration,
    /// User -> (admitted at, delivery id), oldest first.
    sent: Mutex<HashMap<String, VecDeque<(Instant, String)>>>,
}

impl Default for OutboundLimit {
    fn default() -> Self {
        OutboundLimit::new(WINDOW)
    }
}

impl OutboundLimit {
    pub(super) fn new(window: Duration) -> OutboundLimit {
        OutboundLimit {
            window,
            sent: Mutex::default(),
        }
    }

    /// Admits message `id` of `user` under `limit` per window, counting it; `Err(count)`
    /// when the user has sent `limit` messages within the window already.
    pub(super) fn admit(
        &self,
        user: &str,
        id: &str,
        limit: u32,
        now: Instant,
    ) -> std::result::Result<(), usize> {
        if limit == 0 {
            return Ok(());
        }
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let window = sent.entry(user.to_ascii_lowercase()).or_default();
        while window
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= self.window)
        {
            window.pop_front();
        }
        if window.iter().any(|(_, counted)| counted == id) {
            return Ok(());
        }
        if window.len() >= limit as usize {
            return Err(window.len());
        }
        window.push_back((now, id.to_string()));
        Ok(())
    }

    /// Forgets what has left the window (the queue's sweep calls it), so memory follows the
    /// users active in the last hour.
    pub(super) fn prune(&self, now: Instant) {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        sent.retain(|_, window| {
            window.retain(|(at, _)| now.duration_since(*at) < self.window);
            !window.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_user_per_sliding_hour() {
        let limit = OutboundLimit::default();
        let t0 = Instant::now();
        assert_eq!(limit.admit("alice@x.test", "1", 2, t0), Ok(()));
        assert_eq!(limit.admit("Alice@X.test", "2", 2, t0), Ok(()));
        assert_eq!(limit.admit("alice@x.test", "3", 2, t0), Err(2));
        // A retried delivery is not counted again, and other users have their own count.
        assert_eq!(limit.admit("alice@x.test", "2", 2, t0), Ok(()));
        assert_eq!(limit.admit("bob@x.test", "4", 2, t0), Ok(()));
        // The window slides: an hour after the first messages there is room again.
        let almost = t0 + WINDOW - Duration::from_millis(1);
        assert_eq!(limit.admit("alice@x.test", "5", 2, almost), Err(2));
        assert_eq!(limit.admit("alice@x.test", "5", 2, t0 + WINDOW), Ok(()));
        assert_eq!(limit.admit("alice@x.test", "6", 2, t0 + WINDOW), Ok(()));
        assert_eq!(limit.admit("alice@x.test", "7", 2, t0 + WINDOW), Err(2));
        // 0 = unlimited.
        assert_eq!(limit.admit("alice@x.test", "7", 0, t0 + WINDOW), Ok(()));
        limit.prune(t0 + WINDOW * 3);
        assert!(limit.sent.lock().unwrap().is_empty());
    }
}
