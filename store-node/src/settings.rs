//! Cluster-wide settings (greeting, require-secure-auth, log-level, the outbound queue's
//! schedule and the outbound limit): validated here, stored durably as one object, and pushed
//! to every front-end over the `WatchSettings` stream the moment they change, so no front-end
//! needs a restart or a poll. The log level also applies to this process
//! (`mailroot_common::logging`): the store is a node like the others.
//!
//! The stream also carries what is not a setting of this object but must reach every
//! front-end at once: the directory version (`directory_changed`) and the DKIM keys
//! (`store/dkim.rs`, each in its own object, pushed with `set_dkim_keys`).

use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use proto::v1::{DkimKey, Settings};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use mailroot_common::logging::{self, LEVEL_RULE, LogLevel};

use crate::error::{Result, StoreError};
use crate::objects::Objects;

/// The seed's limit for the greeting text.
pub const MAX_GREETING: usize = 259;

/// Defaults of the outbound queue's settings (the proto's `Settings` fields 7-11).
pub const DEFAULT_QUEUE_RETRY_MIN: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_QUEUE_RETRY_MAX: Duration = Duration::from_secs(60 * 60);
pub const DEFAULT_QUEUE_LIFETIME: Duration = Duration::from_secs(5 * 24 * 3600);
pub const DEFAULT_QUEUE_DELAY_WARNING: Duration = Duration::from_secs(4 * 3600);
pub const DEFAULT_OUTBOUND_LIMIT: u32 = 200;
/// Longest queue duration accepted (Postfix's `maximal_queue_lifetime` has the same bound).
pub const MAX_QUEUE_DURATION: Duration = Duration::from_secs(100 * 24 * 3600);
/// How a queue duration is written.
pub const DURATION_RULE: &str =
    "a duration such as 30s, 5m, 4h or 5d (or plain seconds), or default";

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
    /// The outbound queue (None: the default).
    #[serde(default)]
    queue_retry_min_ms: Option<u64>,
    #[serde(default)]
    queue_retry_max_ms: Option<u64>,
    #[serde(default)]
    queue_lifetime_ms: Option<u64>,
    #[serde(default)]
    queue_delay_warning_ms: Option<u64>,
    #[serde(default)]
    outbound_limit: Option<u32>,
    /// Retention of retrieved messages (None: never), and per-domain values (0: never).
    #[serde(default)]
    retention_ms: Option<u64>,
    #[serde(default)]
    domain_retention_ms: std::collections::BTreeMap<String, u64>,
    /// RFC 2449 LOGIN-DELAY in seconds (None: none).
    #[serde(default)]
    login_delay_s: Option<u32>,
}

impl Record {
    fn of(s: &Settings) -> Record {
        Record {
            greeting: s.greeting.clone(),
            require_secure_auth: s.require_secure_auth,
            version: s.version,
            log_level: s.log_level,
            queue_retry_min_ms: s.queue_retry_min_ms,
            queue_retry_max_ms: s.queue_retry_max_ms,
            queue_lifetime_ms: s.queue_lifetime_ms,
            queue_delay_warning_ms: s.queue_delay_warning_ms,
            outbound_limit: s.outbound_limit,
            retention_ms: s.retention_ms,
            domain_retention_ms: s.domain_retention_ms.clone().into_iter().collect(),
            login_delay_s: s.login_delay_s,
        }
    }
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
        let live = Settings {
            directory_version,
            ..Settings::default()
        };
        let (tx, _) = watch::channel(to_proto(&record, &live));
        logging::apply(record.log_level);
        Ok(SettingsStore {
            tx,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn current(&self) -> Settings {
        self.tx.borrow().clone()
    }

    /// A value computed from the current settings, without copying them.
    pub fn read<T>(&self, f: impl FnOnce(&Settings) -> T) -> T {
        f(&self.tx.borrow())
    }

    pub fn subscribe(&self) -> watch::Receiver<Settings> {
        self.tx.subscribe()
    }

    /// Applies `key = value`, writes it durably, then publishes it. With `domain` (a hosted
    /// domain, checked by the caller) the value is that domain's own: only `retention` has
    /// one; `default` removes it.
    pub async fn set(
        &self,
        objects: &Objects,
        key: &str,
        value: &str,
        domain: Option<&str>,
    ) -> Result<Settings> {
        let _guard = self.lock.lock().await;
        let cur = self.current();
        let mut record = Record::of(&cur);
        record.version += 1;
        if let Some(domain) = domain {
            if key != "retention" {
                return Err(StoreError::InvalidArgument(format!(
                    "{key} is cluster-wide; only retention has a value per domain"
                )));
            }
            match parse_retention(value)? {
                Retention::Default => record.domain_retention_ms.remove(domain),
                Retention::Never => record.domain_retention_ms.insert(domain.to_string(), 0),
                Retention::After(ms) => record.domain_retention_ms.insert(domain.to_string(), ms),
            };
            return self.publish(objects, record).await;
        }
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
            "queue-retry-min" => record.queue_retry_min_ms = parse_queue_duration(key, value)?,
            "queue-retry-max" => record.queue_retry_max_ms = parse_queue_duration(key, value)?,
            "queue-lifetime" => record.queue_lifetime_ms = parse_queue_duration(key, value)?,
            "queue-delay-warning" => {
                record.queue_delay_warning_ms = parse_queue_duration(key, value)?
            }
            "outbound-limit" => record.outbound_limit = parse_outbound_limit(value)?,
            "retention" => {
                record.retention_ms = match parse_retention(value)? {
                    Retention::Default | Retention::Never => None,
                    Retention::After(ms) => Some(ms),
                }
            }
            "login-delay" => record.login_delay_s = parse_login_delay(value)?,
            other => {
                return Err(StoreError::InvalidArgument(format!(
                    "unknown setting {other:?} (greeting, require-secure-auth, log-level, \
                     queue-retry-min, queue-retry-max, queue-lifetime, queue-delay-warning, \
                     outbound-limit, retention, login-delay)"
                )));
            }
        }
        let (min, max) = (
            record
                .queue_retry_min_ms
                .map_or(DEFAULT_QUEUE_RETRY_MIN, Duration::from_millis),
            record
                .queue_retry_max_ms
                .map_or(DEFAULT_QUEUE_RETRY_MAX, Duration::from_millis),
        );
        if min > max {
            return Err(StoreError::InvalidArgument(format!(
                "{key}: queue-retry-min ({}) would be above queue-retry-max ({})",
                show_duration(min),
                show_duration(max)
            )));
        }
        self.publish(objects, record).await
    }

    /// Writes the record durably, then sends it to every watcher.
    async fn publish(&self, objects: &Objects, record: Record) -> Result<Settings> {
        let bytes =
            serde_json::to_vec_pretty(&record).map_err(|e| StoreError::Internal(e.to_string()))?;
        objects.put(&path(), Bytes::from(bytes)).await?;
        // The record's fields replace, the live ones (directory version, DKIM keys) are kept
        // as they are now: a change of those while this one was written is not undone.
        let mut settings = Settings::default();
        self.tx.send_modify(|live| {
            *live = to_proto(&record, live);
            settings = live.clone();
        });
        // Here rather than in a watcher task: by the time the caller logs the change, the new
        // level is in force on this node (level 0 silences that line too).
        logging::apply(settings.log_level);
        Ok(settings)
    }

    /// The DKIM keys changed (`store/dkim.rs`, durable already): every watcher gets them now.
    pub fn set_dkim_keys(&self, keys: Vec<DkimKey>) {
        self.tx.send_modify(|s| s.dkim_keys = keys);
    }

    /// A domain was deleted: its own settings go with it (a domain added again later under
    /// the same name starts from the cluster-wide values).
    pub async fn forget_domain(&self, objects: &Objects, domain: &str) -> Result<()> {
        let _guard = self.lock.lock().await;
        let mut record = Record::of(&self.current());
        if record.domain_retention_ms.remove(domain).is_some() {
            record.version += 1;
            self.publish(objects, record).await?;
        }
        Ok(())
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

/// `queue-*` values: a duration with a unit (`30s`, `5m`, `4h`, `5d`) or plain seconds, at
/// least one second and at most [`MAX_QUEUE_DURATION`] (`queue-delay-warning` may be 0: no
/// delay notices), or `default`. Returns milliseconds.
fn parse_queue_duration(key: &str, value: &str) -> Result<Option<u64>> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("default") {
        return Ok(None);
    }
    let d = parse_duration(value).ok_or_else(|| {
        StoreError::InvalidArgument(format!("{key}: {value:?} is not {DURATION_RULE}"))
    })?;
    let zero_allowed = key == "queue-delay-warning";
    if d.is_zero() && zero_allowed {
        return Ok(Some(0));
    }
    if d < Duration::from_secs(1) || d > MAX_QUEUE_DURATION {
        let low = if zero_allowed { "0 (off) or " } else { "" };
        return Err(StoreError::InvalidArgument(format!(
            "{key}: {value:?} is out of range; use {low}1s to {}",
            show_duration(MAX_QUEUE_DURATION)
        )));
    }
    Ok(Some(d.as_millis() as u64))
}

/// `30s`, `5m`, `4h`, `5d` or plain seconds (`90`).
pub fn parse_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    let (digits, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => value.split_at(i),
        None => (value, "s"),
    };
    if digits.is_empty() {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let secs = match unit.to_ascii_lowercase().as_str() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 24 * 3600,
        _ => return None,
    };
    n.checked_mul(secs).map(Duration::from_secs)
}

/// The largest whole unit that divides the duration: `5m`, `4h`, `90s`.
pub fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, n) in [("d", 24 * 3600), ("h", 3600), ("m", 60)] {
        if s > 0 && s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

/// How a `retention` value was written.
pub const RETENTION_RULE: &str =
    "a duration such as 30d, 12h or 90s (at least 1s, at most 3650d), never, or default";
/// Longest retention accepted (ten years).
pub const MAX_RETENTION: Duration = Duration::from_secs(3650 * 24 * 3600);
/// Longest login delay accepted (a day).
pub const MAX_LOGIN_DELAY: Duration = Duration::from_secs(24 * 3600);

enum Retention {
    /// Back to the cluster-wide value (for a domain) or off (cluster-wide).
    Default,
    Never,
    After(u64),
}

fn parse_retention(value: &str) -> Result<Retention> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("default") {
        return Ok(Retention::Default);
    }
    if ["never", "off"]
        .iter()
        .any(|v| value.eq_ignore_ascii_case(v))
    {
        return Ok(Retention::Never);
    }
    match parse_duration(value) {
        Some(d) if d >= Duration::from_secs(1) && d <= MAX_RETENTION => {
            Ok(Retention::After(d.as_millis() as u64))
        }
        _ => Err(StoreError::InvalidArgument(format!(
            "retention: {value:?} is not {RETENTION_RULE}"
        ))),
    }
}

/// Seconds between two logins to one maildrop; 0, off or default: none.
fn parse_login_delay(value: &str) -> Result<Option<u32>> {
    let value = value.trim();
    if ["default", "off", "none"]
        .iter()
        .any(|v| value.eq_ignore_ascii_case(v))
    {
        return Ok(None);
    }
    match parse_duration(value) {
        Some(d) if d.is_zero() => Ok(None),
        Some(d) if d <= MAX_LOGIN_DELAY => Ok(Some(d.as_secs() as u32)),
        _ => Err(StoreError::InvalidArgument(format!(
            "login-delay: {value:?} is not a duration such as 15m or 900 (at most 1d), or off"
        ))),
    }
}

/// Messages to other domains per user per hour; 0 = unlimited; `default`.
fn parse_outbound_limit(value: &str) -> Result<Option<u32>> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("default") {
        return Ok(None);
    }
    value.parse::<u32>().map(Some).map_err(|_| {
        StoreError::InvalidArgument(format!(
            "outbound-limit: {value:?} is not a number of messages per hour (0 = unlimited), or default"
        ))
    })
}

/// The settings object as sent, with the parts that live elsewhere (`live`: directory
/// version, DKIM keys) kept.
fn to_proto(r: &Record, live: &Settings) -> Settings {
    Settings {
        greeting: r.greeting.clone(),
        require_secure_auth: r.require_secure_auth,
        version: r.version,
        directory_version: live.directory_version,
        dkim_keys: live.dkim_keys.clone(),
        log_level: r.log_level,
        queue_retry_min_ms: r.queue_retry_min_ms,
        queue_retry_max_ms: r.queue_retry_max_ms,
        queue_lifetime_ms: r.queue_lifetime_ms,
        queue_delay_warning_ms: r.queue_delay_warning_ms,
        outbound_limit: r.outbound_limit,
        retention_ms: r.retention_ms,
        domain_retention_ms: r.domain_retention_ms.clone().into_iter().collect(),
        login_delay_s: r.login_delay_s,
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
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("4h"), Some(Duration::from_secs(4 * 3600)));
        assert_eq!(parse_duration("5d"), Some(Duration::from_secs(5 * 86400)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 2H "), Some(Duration::from_secs(7200)));
        for bad in ["", "m", "5x", "-5m", "1.5h", "5 m", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(show_duration(Duration::from_secs(300)), "5m");
        assert_eq!(show_duration(Duration::from_secs(90)), "90s");
        assert_eq!(show_duration(Duration::from_secs(5 * 86400)), "5d");
    }

    #[test]
    fn queue_setting_rules() {
        assert_eq!(
            parse_queue_duration("queue-lifetime", "5d").ok(),
            Some(Some(5 * 86_400_000))
        );
        assert_eq!(
            parse_queue_duration("queue-lifetime", "default").ok(),
            Some(None)
        );
        assert_eq!(
            parse_queue_duration("queue-delay-warning", "0").ok(),
            Some(Some(0))
        );
        let err = parse_queue_duration("queue-lifetime", "0")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("queue-lifetime") && err.contains("out of range"),
            "{err}"
        );
        let err = parse_queue_duration("queue-retry-min", "soon")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("queue-retry-min") && err.contains(DURATION_RULE),
            "{err}"
        );
        assert!(parse_queue_duration("queue-lifetime", "101d").is_err());
        assert_eq!(parse_outbound_limit("0").ok(), Some(Some(0)));
        assert_eq!(parse_outbound_limit("default").ok(), Some(None));
        let err = parse_outbound_limit("lots").unwrap_err().to_string();
        assert!(err.contains("outbound-limit"), "{err}");
    }

    #[test]
    fn retention_and_login_delay_rules() {
        assert!(matches!(
            parse_retention("30d"),
            Ok(Retention::After(2_592_000_000))
        ));
        assert!(matches!(parse_retention("2s"), Ok(Retention::After(2000))));
        assert!(matches!(parse_retention("never"), Ok(Retention::Never)));
        assert!(matches!(parse_retention("Default"), Ok(Retention::Default)));
        for bad in ["0", "0s", "soon", "3651d", ""] {
            let err = parse_retention(bad).err().expect(bad).to_string();
            assert!(err.contains(RETENTION_RULE), "{bad}: {err}");
        }
        assert_eq!(parse_login_delay("15m").ok(), Some(Some(900)));
        assert_eq!(parse_login_delay("0").ok(), Some(None));
        assert_eq!(parse_login_delay("off").ok(), Some(None));
        assert!(parse_login_delay("2d").is_err());
        let mut s = Settings {
            retention_ms: Some(1000),
            ..Settings::default()
        };
        assert_eq!(s.retention_for("a.test"), Some(Duration::from_secs(1)));
        s.domain_retention_ms.insert("a.test".into(), 0);
        s.domain_retention_ms.insert("b.test".into(), 5000);
        assert_eq!(s.retention_for("a.test"), None);
        assert_eq!(s.retention_for("b.test"), Some(Duration::from_secs(5)));
        assert_eq!(s.retention_for("c.test"), Some(Duration::from_secs(1)));
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
