//! Cluster-wide settings (greeting, require-secure-auth, log-level): validated here, stored
//! durably as one object, and pushed to every front-end over the `WatchSettings` stream the
//! moment they change, so no front-end needs a restart or a poll. The log level also applies
//! to this process (`mailroot_common::logging`): the store is a node like the others.

use bytes::Bytes;
use object_store::path::Path;
use proto::v1::Settings;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use mailroot_common::logging::{self, LEVEL_RULE, LogLevel};

use crate::error::{Result, StoreError};
use crate::objects::Objects;

/// The seed's limit for the greeting text.
pub const MAX_GREETING: usize = 259;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Record {
    #[serde(default)]
    greeting: String,
    #[serde(default)]
    require_secure_auth: bool,
    #[serde(default)]
    version: u64,
    /// None: every node keeps its start-up filter (`RUST_LOG`).
    #[serde(default)]
    log_level: Option<u32>,
}

fn path() -> Path {
    Path::from_iter(["config", "settings.json"])
}

/// Checks a greeting: at most 259 characters, printable ASCII, no `<` or `>` (they would let
/// a banner forge an RFC 1939 APOP timestamp or confuse clients).
pub fn validate_greeting(text: &str) -> std::result::Result<(), &'static str> {
    if text.len() > MAX_GREETING {
        return Err("the greeting has at most 259 characters");
    }
    if !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("the greeting has only printable ASCII characters");
    }
    if text.contains(['<', '>']) {
        return Err("the greeting contains no < or >");
    }
    Ok(())
}

pub struct SettingsStore {
    tx: watch::Sender<Settings>,
    /// Serialises changes (read-modify-write of the one object).
    lock: tokio::sync::Mutex<()>,
}

impl SettingsStore {
    pub async fn load(objects: &Objects) -> Result<SettingsStore> {
        let record: Record = match objects.get(&path()).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: path().to_string(),
                detail: e.to_string(),
            })?,
            Err(StoreError::Storage(object_store::Error::NotFound { .. })) => Record::default(),
            Err(e) => return Err(e),
        };
        // Random start: a front-end's cache tagged by an earlier store process never matches;
        // never 0, which front-ends read as "unknown" (services/frontend/src/recipients.rs).
        let directory_version = uuid::Uuid::new_v4().as_u64_pair().0 | 1;
        let (tx, _) = watch::channel(to_proto(&record, directory_version));
        logging::apply(record.log_level);
        Ok(SettingsStore {
            tx,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn current(&self) -> Settings {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Settings> {
        self.tx.subscribe()
    }

    /// Applies `key = value`, writes it durably, then publishes it.
    pub async fn set(&self, objects: &Objects, key: &str, value: &str) -> Result<Settings> {
        let _guard = self.lock.lock().await;
        let cur = self.current();
        let mut record = Record {
            greeting: cur.greeting,
            require_secure_auth: cur.require_secure_auth,
            version: cur.version + 1,
            log_level: cur.log_level,
        };
        match key {
            "greeting" => {
                validate_greeting(value)
                    .map_err(|rule| StoreError::InvalidArgument(format!("greeting: {rule}")))?;
                record.greeting = value.to_string();
            }
            "require-secure-auth" => {
                record.require_secure_auth = match value {
                    "on" | "true" | "yes" => true,
                    "off" | "false" | "no" => false,
                    _ => {
                        return Err(StoreError::InvalidArgument(
                            "require-secure-auth: use on or off".into(),
                        ));
                    }
                }
            }
            "log-level" => record.log_level = parse_log_level(value)?,
            other => {
                return Err(StoreError::InvalidArgument(format!(
                    "unknown setting {other:?} (greeting, require-secure-auth, log-level)"
                )));
            }
        }
        let bytes =
            serde_json::to_vec_pretty(&record).map_err(|e| StoreError::Internal(e.to_string()))?;
        objects.put(&path(), Bytes::from(bytes)).await?;
        let settings = to_proto(&record, cur.directory_version);
        self.tx.send_replace(settings.clone());
        // Here rather than in a watcher task: by the time the caller logs the change, the new
        // level is in force on this node (level 0 silences that line too).
        logging::apply(settings.log_level);
        Ok(settings)
    }

    /// A domain, mailbox or alias was added or removed: front-ends forget cached RCPT answers.
    pub fn directory_changed(&self) {
        self.tx
            .send_modify(|s| s.directory_version = s.directory_version.wrapping_add(1));
    }
}

/// `0`..`3` (or the level's name), or `default`: back to each node's start-up filter.
fn parse_log_level(value: &str) -> Result<Option<u32>> {
    if value.trim().eq_ignore_ascii_case("default") {
        return Ok(None);
    }
    LogLevel::parse(value)
        .map(|l| Some(l.number()))
        .ok_or_else(|| StoreError::InvalidArgument(format!("log-level: {LEVEL_RULE}")))
}

fn to_proto(r: &Record, directory_version: u64) -> Settings {
    Settings {
        greeting: r.greeting.clone(),
        require_secure_auth: r.require_secure_auth,
        version: r.version,
        directory_version,
        log_level: r.log_level,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_rules() {
        assert!(validate_greeting("Welcome to the Example mail service").is_ok());
        assert!(validate_greeting(&"a".repeat(259)).is_ok());
        assert!(validate_greeting(&"a".repeat(260)).is_err());
        assert!(validate_greeting("hi <there>").is_err());
        assert!(validate_greeting("tab\there").is_err());
        assert!(validate_greeting("caf\u{e9}").is_err());
    }

    #[test]
    fn log_level_rules() {
        assert_eq!(parse_log_level("0").ok(), Some(Some(0)));
        assert_eq!(parse_log_level("3").ok(), Some(Some(3)));
        assert_eq!(parse_log_level("medium").ok(), Some(Some(2)));
        assert_eq!(parse_log_level("default").ok(), Some(None));
        for bad in ["7", "loud", "", "-1"] {
            let err = parse_log_level(bad).expect_err(bad).to_string();
            assert!(err.contains(LEVEL_RULE), "{bad}: {err}");
        }
    }
}
