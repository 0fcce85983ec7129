//! `/readyz` of a front-end: may a load balancer send it clients? Yes only while all of this
//! holds:
//! - the store answers (the last store call did not fail for want of a connection;
//!   `StoreClient::reachable`);
//! - the settings stream is open and has delivered the current settings (`follow_settings` in
//!   `lib.rs`): without it greeting, policy and directory changes would go unseen;
//! - the node is not draining after SIGTERM (`drain.rs`): sessions in progress may finish, new
//!   ones belong on another node.
//!
//! This module only holds the flags and the verdict; the places named above set them.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Health {
    settings_live: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    /// The settings stream opened and delivered (`true`), or ended or broke (`false`).
    pub fn set_settings_live(&self, live: bool) {
        self.settings_live.store(live, Ordering::Relaxed);
        metrics::gauge!(crate::metrics::SETTINGS_LIVE).set(if live { 1.0 } else { 0.0 });
    }

    /// SIGTERM/Ctrl-C: the node stops taking clients (never undone).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready; otherwise the one-line reason `/readyz` gives with its 503.
    pub fn readiness(&self, store_reachable: bool) -> Result<(), String> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("draining: stopping after SIGTERM, new sessions go elsewhere".into());
        }
        if !store_reachable {
            return Err("store unreachable".into());
        }
        if !self.settings_live.load(Ordering::Relaxed) {
            return Err("settings stream from the store is down".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_store_and_settings_and_not_draining() {
        let h = Health::default();
        assert!(h.readiness(true).unwrap_err().contains("settings"));
        h.set_settings_live(true);
        assert_eq!(h.readiness(true), Ok(()));
        assert_eq!(h.readiness(false), Err("store unreachable".into()));
        h.set_settings_live(false);
        assert!(h.readiness(true).is_err());
        h.set_settings_live(true);
        h.set_draining();
        assert!(h.readiness(true).unwrap_err().starts_with("draining"));
    }
}
