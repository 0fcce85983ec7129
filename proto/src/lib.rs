//! The wire contract between front-ends, `mailrootctl` and the store node.
//!
//! Nothing but the generated types lives here, plus the names of the metadata headers every
//! caller must send and the reading of settings that the store and the front-ends must agree
//! on (so both sides agree on them in one place).

pub mod v1 {
    tonic::include_proto!("mailroot.v1");
}

impl v1::Settings {
    /// The retention that applies to the mailboxes of `domain`: the domain's own value, else
    /// the cluster's. None: never (CAPA `EXPIRE NEVER`).
    pub fn retention_for(&self, domain: &str) -> Option<std::time::Duration> {
        let ms = self
            .domain_retention_ms
            .get(domain)
            .copied()
            .or(self.retention_ms)?;
        (ms > 0).then(|| std::time::Duration::from_millis(ms))
    }
}

/// Metadata header carrying the cluster auth GUID on every `Store` call.
pub const AUTH_GUID_HEADER: &str = "x-mailroot-auth-guid";
/// Metadata header carrying the machine-readable reason of an error status.
pub const ERROR_REASON_HEADER: &str = "x-mailroot-error";
/// Largest gRPC message either side accepts: a maximum-size mail (25 MB) plus room.
pub const MAX_GRPC_MESSAGE: usize = 64 * 1024 * 1024;

/// Why the store refused or failed a call: sent as [`ERROR_REASON_HEADER`] next to every error
/// status, so that front-ends and `mailrootctl` decide on this enum and never on message
/// texts. The store maps its error enum to it in one place; front-ends map it to protocol
/// replies in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    UnknownDomain,
    DomainExists,
    DomainNotEmpty,
    UnknownMailbox,
    MailboxExists,
    InvalidName,
    InvalidArgument,
    BadCredentials,
    NoSuchMessage,
    Locked,
    Throttled,
    InUse,
    LeaseLost,
    AliasExists,
    UnknownAlias,
    AliasTarget,
    /// Storage could not make a write durable or could not be reached: try again later.
    Storage,
    Corrupt,
    Internal,
    /// The store is loading its index: try again shortly.
    Starting,
    /// The submitting user sent more outbound messages this hour than the limit allows.
    RateLimited,
    /// No such outbound queue entry (or the claim on it is no longer held).
    UnknownQueueEntry,
    /// RFC 2449 LOGIN-DELAY: the maildrop was opened too recently; try again later.
    LoginDelay,
    /// The domain's directory (LDAP) did not answer or failed: try again later (SMTP RCPT
    /// 451 4.4.3, AUTH 454 4.7.0, POP3 -ERR [SYS/TEMP]); never "no such user".
    DirectoryUnavailable,
}

impl Reason {
    pub const ALL: [Reason; 24] = [
        Reason::UnknownDomain,
        Reason::DomainExists,
        Reason::DomainNotEmpty,
        Reason::UnknownMailbox,
        Reason::MailboxExists,
        Reason::InvalidName,
        Reason::InvalidArgument,
        Reason::BadCredentials,
        Reason::NoSuchMessage,
        Reason::Locked,
        Reason::Throttled,
        Reason::InUse,
        Reason::LeaseLost,
        Reason::AliasExists,
        Reason::UnknownAlias,
        Reason::AliasTarget,
        Reason::Storage,
        Reason::Corrupt,
        Reason::Internal,
        Reason::Starting,
        Reason::RateLimited,
        Reason::UnknownQueueEntry,
        Reason::LoginDelay,
        Reason::DirectoryUnavailable,
    ];

    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownDomain => "unknown-domain",
            Reason::DomainExists => "domain-exists",
            Reason::DomainNotEmpty => "domain-not-empty",
            Reason::UnknownMailbox => "unknown-mailbox",
            Reason::MailboxExists => "mailbox-exists",
            Reason::InvalidName => "invalid-name",
            Reason::InvalidArgument => "invalid-argument",
            Reason::BadCredentials => "bad-credentials",
            Reason::NoSuchMessage => "no-such-message",
            Reason::Locked => "locked",
            Reason::Throttled => "throttled",
            Reason::InUse => "in-use",
            Reason::LeaseLost => "lease-lost",
            Reason::AliasExists => "alias-exists",
            Reason::UnknownAlias => "unknown-alias",
            Reason::AliasTarget => "alias-target",
            Reason::Storage => "storage",
            Reason::Corrupt => "corrupt",
            Reason::Internal => "internal",
            Reason::Starting => "starting",
            Reason::RateLimited => "rate-limited",
            Reason::UnknownQueueEntry => "unknown-queue-entry",
            Reason::LoginDelay => "login-delay",
            Reason::DirectoryUnavailable => "directory-unavailable",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// The reason carried by a status; `None` when the failure never reached the store
    /// (connection refused, timeout) or came from an older store.
    pub fn of(status: &tonic::Status) -> Option<Reason> {
        status
            .metadata()
            .get(ERROR_REASON_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(Reason::parse)
    }

    /// Attaches this reason to a status.
    pub fn attach(self, status: &mut tonic::Status) {
        status.metadata_mut().insert(
            ERROR_REASON_HEADER,
            tonic::metadata::MetadataValue::from_static(self.as_str()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_a_status() {
        for r in Reason::ALL {
            let mut status = tonic::Status::unavailable("x");
            r.attach(&mut status);
            assert_eq!(Reason::of(&status), Some(r));
        }
        assert_eq!(Reason::of(&tonic::Status::unavailable("x")), None);
    }
}
