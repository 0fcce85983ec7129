//! A cache of the store's RCPT answers, so that the common RCPT (no `SIZE=`) costs no store
//! call: which addresses exist does not change between two admin commands.
//!
//! Every answer is tagged with the store's `directory_version` as this node knew it when it
//! asked; the store changes that version whenever a domain, mailbox or alias is added or
//! removed and pushes it on the settings stream, and an entry is used only while its tag is
//! the current version. So an admin change reaches RCPT as fast as any other setting (the
//! push), and an answer can be stale only for that push's flight time. That staleness is
//! harmless: the store checks every recipient again at delivery, per recipient (a mailbox
//! deleted meanwhile gets its 5xx or DSN there). Answers that depend on quota use (RCPT with
//! `SIZE=`) are never cached. While the settings stream is down, changes could be missed, so
//! the cache is not used at all then (every RCPT asks the store, and gets 451 if it is away).
//! Answers for domains bound to a directory (LDAP) come with `no_cache`: the directory
//! changes without the store's version moving, so they are never kept here (the store keeps
//! them briefly itself, `store-node/src/directory/cache.rs`).

use std::collections::HashMap;
use std::sync::Mutex;

use proto::v1::CheckRecipientReply;

/// The version while this node does not follow the store's settings stream (not yet, or
/// the stream broke): nothing is cached or served from the cache then.
pub const UNKNOWN_VERSION: u64 = 0;

/// Most cached answers; the cache is emptied when full.
pub const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct RecipientCache {
    entries: Mutex<HashMap<String, (u64, CheckRecipientReply)>>,
}

impl RecipientCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, CheckRecipientReply)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer for `address` if it was given under directory `version`.
    pub fn get(&self, address: &str, version: u64) -> Option<CheckRecipientReply> {
        match self.lock().get(&address.to_ascii_lowercase()) {
            Some((v, reply)) if *v == version => Some(reply.clone()),
            _ => None,
        }
    }

    /// Remembers an answer given while this node knew directory `version`.
    pub fn put(&self, address: &str, version: u64, reply: &CheckRecipientReply) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(address.to_ascii_lowercase(), (version, reply.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_counts_only_under_its_version() {
        let c = RecipientCache::default();
        let reply = CheckRecipientReply {
            status: 1,
            mailboxes: vec!["a@x.test".into()],
            no_cache: false,
        };
        c.put("A@x.test", 7, &reply);
        assert_eq!(c.get("a@X.TEST", 7), Some(reply));
        assert_eq!(c.get("a@x.test", 8), None);
    }
}
