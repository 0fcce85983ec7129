//! The store's metric names, their descriptions and its readiness check. The counting itself
//! happens where the event is decided (group commit, quota check, throttle, leases, the
//! Argon2id queue), with the `metrics` macros and the names below; without `--metrics` no
//! recorder is installed and they cost next to nothing. Labels are bounded: no addresses,
//! mailbox names or IPs, only the fixed values listed with each name.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Callers (writes and deletes) whose directory entries one group-commit batch made durable.
pub const FSYNC_BATCH_SIZE: &str = "mailroot_fsync_batch_size";
/// Time to fsync one batch's directories.
pub const FSYNC_BATCH_SECONDS: &str = "mailroot_fsync_batch_seconds";
/// Copies or RCPTs refused for quota; `scope` = mailbox | domain, `reason` = full | too_big.
pub const QUOTA_REFUSALS: &str = "mailroot_quota_refusals_total";
/// Login throttling; `event` = delayed (a failure answered late) | refused (pair locked).
pub const THROTTLE_EVENTS: &str = "mailroot_throttle_events_total";
/// POP3 logins refused because another session holds the maildrop (`[IN-USE]`).
pub const LEASE_CONFLICTS: &str = "mailroot_lease_conflicts_total";
/// POP3 commits refused because the session's lease was lost (fencing, `LeaseLost`).
pub const FENCED_COMMITS: &str = "mailroot_fenced_commits_total";
/// Retrieved messages deleted by retention (`store/retention.rs`).
pub const RETENTION_EXPIRED: &str = "mailroot_retention_expired_total";
/// POP3 logins refused by LOGIN-DELAY.
pub const LOGIN_DELAY_REFUSALS: &str = "mailroot_login_delay_refusals_total";
/// Questions to domains' directories (LDAP); `op` = lookup | login, `result` = cached |
/// found | not_found (lookups) | ok | refused (logins) | unavailable.
pub const DIRECTORY_REQUESTS: &str = "mailroot_directory_requests_total";
/// Time to get a directory's answer (connect, binds, searches), whatever it was.
pub const DIRECTORY_SECONDS: &str = "mailroot_directory_seconds";
/// Time a password check or hash waited for an Argon2id slot (one per core).
pub const PASSWORD_HASH_WAIT_SECONDS: &str = "mailroot_password_hash_wait_seconds";

/// The outbound queue now: entries, and recipients still to deliver (updated by the queue
/// sweep, at least once a second).
pub const QUEUE_ENTRIES: &str = "mailroot_queue_entries";
pub const QUEUE_RECIPIENTS: &str = "mailroot_queue_recipients";

/// Bucket boundaries for histograms that are not durations.
pub const BUCKETS: &[(&str, &[f64])] = &[(
    FSYNC_BATCH_SIZE,
    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
)];

/// Gives every metric its `# HELP` text (call once, after the recorder is installed).
pub fn describe() {
    describe_histogram!(
        FSYNC_BATCH_SIZE,
        Unit::Count,
        "Writes and deletes made durable by one group-commit batch of directory fsyncs"
    );
    describe_histogram!(
        FSYNC_BATCH_SECONDS,
        Unit::Seconds,
        "Time to fsync the directories of one group-commit batch"
    );
    describe_counter!(
        QUOTA_REFUSALS,
        "Deliveries or RCPTs refused for quota, by scope (mailbox, domain) and reason (full, too_big)"
    );
    describe_counter!(
        DIRECTORY_REQUESTS,
        "Directory (LDAP) lookups and logins, by op (lookup, login) and result (cached, found, not_found, ok, refused, unavailable)"
    );
    describe_histogram!(
        DIRECTORY_SECONDS,
        Unit::Seconds,
        "Time to get a directory's answer (connect, binds, searches), cache misses only"
    );
    describe_counter!(
        THROTTLE_EVENTS,
        "Login throttling: failures answered after a delay, attempts refused by a lockout"
    );
    describe_counter!(
        LEASE_CONFLICTS,
        "POP3 logins refused because another session holds the maildrop (IN-USE)"
    );
    describe_counter!(
        FENCED_COMMITS,
        "POP3 commits refused because the session's maildrop lease was lost (fencing)"
    );
    describe_counter!(
        RETENTION_EXPIRED,
        "Retrieved messages deleted because their retention period ended"
    );
    describe_counter!(
        LOGIN_DELAY_REFUSALS,
        "POP3 logins refused because the maildrop was opened less than the login delay ago"
    );
    describe_histogram!(
        PASSWORD_HASH_WAIT_SECONDS,
        Unit::Seconds,
        "Time a login or password change waited for an Argon2id slot"
    );
    describe_gauge!(QUEUE_ENTRIES, "Outbound queue entries");
    describe_gauge!(
        QUEUE_RECIPIENTS,
        "Recipients in the outbound queue still to deliver"
    );
}

/// `/readyz` of the store: the index is loaded (`store` is set once `Store::open` finished) and
/// storage still takes writes (no failed group commit, `Objects::failed`).
pub fn readiness(store: crate::grpc::Loaded) -> mailroot_common::telemetry::Readiness {
    std::sync::Arc::new(move || match store.loaded() {
        None => Err("index loading".into()),
        Some(s) if s.storage_failed() => {
            Err("storage failed (an fsync failed): writes refused until restart".into())
        }
        Some(_) => Ok(()),
    })
}
