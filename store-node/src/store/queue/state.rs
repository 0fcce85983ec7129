//! `queue/<id>/state.json`: the envelope and the per-recipient state of one outbound queue
//! entry, and the values the rest of the store reads from it. Only recipients still to be
//! delivered are in it: a delivered or failed one is removed by the state rewrite that
//! records its outcome.

use serde::{Deserialize, Serialize};

/// RFC 3461 §4.3 RET: what a DSN returns of the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ret {
    /// Not given: the header only.
    #[default]
    Unspecified,
    Full,
    Hdrs,
}

impl Ret {
    pub fn full(self) -> bool {
        self == Ret::Full
    }
}

/// RFC 3461 §4.1 NOTIFY as the proto's bit set (`Notify` in mailroot.proto).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notify(pub u32);

impl Notify {
    pub const NEVER: u32 = 1;
    pub const SUCCESS: u32 = 2;
    pub const FAILURE: u32 = 4;
    pub const DELAY: u32 = 8;

    fn never(self) -> bool {
        self.0 & Notify::NEVER != 0
    }

    /// §4.1: without NOTIFY, failures and (at the MTA's discretion) delays are reported.
    pub fn failure(self) -> bool {
        !self.never() && (self.0 == 0 || self.0 & Notify::FAILURE != 0)
    }

    pub fn delay(self) -> bool {
        !self.never() && (self.0 == 0 || self.0 & Notify::DELAY != 0)
    }

    pub fn success(self) -> bool {
        !self.never() && self.0 & Notify::SUCCESS != 0
    }
}

/// The whole `state.json` of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryState {
    /// The queue id (the delivery id, or the DSN's id): the entry's directory name.
    pub id: String,
    /// "" = the null reverse-path (a DSN): never answered with a DSN.
    pub mail_from: String,
    /// The submitting SMTP AUTH user ("" for mail the system made).
    #[serde(default)]
    pub user: String,
    /// RFC 3461 ENVID, as given (xtext).
    #[serde(default)]
    pub envid: String,
    #[serde(default)]
    pub ret: Ret,
    /// The front-end that accepted it: Reporting-MTA of its DSNs.
    #[serde(default)]
    pub reporting_host: String,
    pub created_ms: u64,
    /// Due at or after this time (ms since the Unix epoch).
    pub next_attempt_ms: u64,
    /// The one delay notice (RFC 3464 Action: delayed) was made.
    #[serde(default)]
    pub delay_notice_sent: bool,
    /// Still to be delivered.
    pub recipients: Vec<RecipientState>,
}

/// One pending recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientState {
    pub address: String,
    /// NOTIFY bits (0 = not given).
    #[serde(default)]
    pub notify: u32,
    /// ORCPT as given, or "".
    #[serde(default)]
    pub orcpt: String,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    /// The last attempt's enhanced status code, diagnostic and remote host ("" before one).
    #[serde(default)]
    pub last_status: String,
    #[serde(default)]
    pub last_diagnostic: String,
    #[serde(default)]
    pub remote_mta: String,
}

impl RecipientState {
    pub fn new(address: String, notify: u32, orcpt: String) -> RecipientState {
        RecipientState {
            address,
            notify,
            orcpt,
            attempts: 0,
            last_status: String::new(),
            last_diagnostic: String::new(),
            remote_mta: String::new(),
        }
    }

    pub fn notify(&self) -> Notify {
        Notify(self.notify)
    }
}

impl EntryState {
    /// Attempts made for the entry: those of its most tried pending recipient.
    pub fn attempts(&self) -> u32 {
        self.recipients
            .iter()
            .map(|r| r.attempts)
            .max()
            .unwrap_or(0)
    }

    /// The time after which its recipients are given up (`queue-lifetime`).
    pub fn expires_ms(&self, lifetime_ms: u64) -> u64 {
        self.created_ms.saturating_add(lifetime_ms)
    }

    /// The time its delay notice is due, if one still is.
    pub fn delay_notice_due_ms(&self, delay_warning_ms: u64) -> Option<u64> {
        (delay_warning_ms > 0 && !self.delay_notice_sent && !self.recipients.is_empty())
            .then(|| self.created_ms.saturating_add(delay_warning_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_rules_of_rfc_3461() {
        let unset = Notify(0);
        assert!(unset.failure() && unset.delay() && !unset.success());
        let never = Notify(Notify::NEVER);
        assert!(!never.failure() && !never.delay() && !never.success());
        let success = Notify(Notify::SUCCESS);
        assert!(!success.failure() && !success.delay() && success.success());
        let fd = Notify(Notify::FAILURE | Notify::DELAY);
        assert!(fd.failure() && fd.delay() && !fd.success());
        let failure = Notify(Notify::FAILURE);
        assert!(failure.failure() && !failure.delay());
    }

    #[test]
    fn state_round_trips_and_old_fields_default() {
        let state = EntryState {
            id: "0190c2a0-0000-7000-8000-000000000001".into(),
            mail_from: "alice@example.test".into(),
            user: "alice@example.test".into(),
            envid: "E1".into(),
            ret: Ret::Full,
            reporting_host: "mx.example.test".into(),
            created_ms: 1,
            next_attempt_ms: 2,
            delay_notice_sent: false,
            recipients: vec![RecipientState::new(
                "bob@remote.test".into(),
                Notify::FAILURE,
                "rfc822;bob@remote.test".into(),
            )],
        };
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains("\"ret\":\"full\""), "{json}");
        assert_eq!(serde_json::from_str::<EntryState>(&json).unwrap(), state);
        let minimal = r#"{"id":"x","mail_from":"","created_ms":5,"next_attempt_ms":5,
            "recipients":[{"address":"bob@remote.test"}]}"#;
        let s: EntryState = serde_json::from_str(minimal).unwrap();
        assert_eq!(
            (s.ret, s.attempts(), s.delay_notice_sent),
            (Ret::Unspecified, 0, false)
        );
        assert_eq!(s.delay_notice_due_ms(10), Some(15));
        assert_eq!(s.delay_notice_due_ms(0), None);
    }
}
