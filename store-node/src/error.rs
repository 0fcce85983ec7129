//! `StoreError`: every way a store operation can fail, and the ONE place where it becomes a
//! gRPC status. The machine-readable `reason()` travels in the `x-mailroot-error` metadata so
//! front-ends and `mailrootctl` never parse message texts.

use proto::Reason;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unknown domain {0}")]
    UnknownDomain(String),
    #[error("domain {0} already exists")]
    DomainExists(String),
    #[error("domain {0} is not empty ({1} mailboxes); use --force to delete it with all its mail")]
    DomainNotEmpty(String, usize),
    #[error("unknown mailbox {0}")]
    UnknownMailbox(String),
    #[error("mailbox {0} already exists")]
    MailboxExists(String),
    #[error("invalid name {name:?}: {rule}")]
    InvalidName { name: String, rule: &'static str },
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    #[error("invalid user name or password")]
    BadCredentials,
    #[error("no such message {0}")]
    NoSuchMessage(String),
    #[error("{0} is locked by the administrator")]
    Locked(String),
    #[error("maildrop {0} is already in use by another POP3 session")]
    InUse(String),
    #[error("the maildrop lease of {0} was lost")]
    LeaseLost(String),
    #[error("too many failed logins; try again later")]
    Throttled,
    #[error("alias {0} already exists")]
    AliasExists(String),
    #[error("unknown alias {0}")]
    UnknownAlias(String),
    #[error("{name} is still the target of alias {alias}; delete the alias first")]
    AliasTarget { name: String, alias: String },
    #[error("storage failure: {0}")]
    Storage(#[from] object_store::Error),
    /// Local storage failed to read, write, name or remove a file.
    #[error("storage I/O failure: {0}")]
    Io(String),
    /// Local storage could not make a write durable (see `group_commit.rs`).
    #[error("storage could not sync: {0}")]
    Durability(String),
    #[error("corrupt metadata at {path}: {detail}")]
    Corrupt { path: String, detail: String },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("the store is starting (loading its index); try again shortly")]
    Starting,
    /// The submitting user sent `limit` messages to other domains within the last hour.
    #[error("{user} sent {limit} messages to other domains within the last hour; try again later")]
    RateLimited { user: String, limit: u32 },
    /// No such outbound queue entry, or the caller's claim on it is no longer the current one.
    #[error("no outbound queue entry {0} (or the claim on it was lost)")]
    UnknownQueueEntry(String),
    /// RFC 2449 LOGIN-DELAY: the maildrop was opened less than the login delay ago.
    #[error("{mailbox} was opened less than {delay_s} seconds ago; try again later")]
    LoginDelay { mailbox: String, delay_s: u32 },
    /// The domain's directory (LDAP) gave no answer: unreachable, timed out, TLS or the
    /// service bind failed (`directory/client.rs`). Never a "no such user".
    #[error("directory unavailable: {0}")]
    DirectoryUnavailable(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// The machine-readable reason sent next to the status (`proto::Reason`).
    pub fn reason(&self) -> Reason {
        match self {
            StoreError::UnknownDomain(_) => Reason::UnknownDomain,
            StoreError::DomainExists(_) => Reason::DomainExists,
            StoreError::DomainNotEmpty(..) => Reason::DomainNotEmpty,
            StoreError::UnknownMailbox(_) => Reason::UnknownMailbox,
            StoreError::MailboxExists(_) => Reason::MailboxExists,
            StoreError::InvalidName { .. } => Reason::InvalidName,
            StoreError::InvalidArgument(_) => Reason::InvalidArgument,
            StoreError::BadCredentials => Reason::BadCredentials,
            StoreError::NoSuchMessage(_) => Reason::NoSuchMessage,
            StoreError::Locked(_) => Reason::Locked,
            StoreError::Throttled => Reason::Throttled,
            StoreError::InUse(_) => Reason::InUse,
            StoreError::LeaseLost(_) => Reason::LeaseLost,
            StoreError::AliasExists(_) => Reason::AliasExists,
            StoreError::UnknownAlias(_) => Reason::UnknownAlias,
            StoreError::AliasTarget { .. } => Reason::AliasTarget,
            StoreError::Storage(_) | StoreError::Io(_) | StoreError::Durability(_) => {
                Reason::Storage
            }
            StoreError::Corrupt { .. } => Reason::Corrupt,
            StoreError::Internal(_) => Reason::Internal,
            StoreError::Starting => Reason::Starting,
            StoreError::RateLimited { .. } => Reason::RateLimited,
            StoreError::UnknownQueueEntry(_) => Reason::UnknownQueueEntry,
            StoreError::LoginDelay { .. } => Reason::LoginDelay,
            StoreError::DirectoryUnavailable(_) => Reason::DirectoryUnavailable,
        }
    }

    fn code(&self) -> Code {
        match self {
            StoreError::UnknownDomain(_)
            | StoreError::UnknownMailbox(_)
            | StoreError::NoSuchMessage(_)
            | StoreError::UnknownAlias(_)
            | StoreError::UnknownQueueEntry(_) => Code::NotFound,
            StoreError::DomainExists(_)
            | StoreError::MailboxExists(_)
            | StoreError::AliasExists(_) => Code::AlreadyExists,
            StoreError::DomainNotEmpty(..)
            | StoreError::AliasTarget { .. }
            | StoreError::InUse(_)
            | StoreError::LeaseLost(_) => Code::FailedPrecondition,
            StoreError::Locked(_) => Code::PermissionDenied,
            // Not Unavailable/ResourceExhausted: front-ends must not retry it.
            StoreError::Throttled => Code::FailedPrecondition,
            StoreError::InvalidName { .. } | StoreError::InvalidArgument(_) => {
                Code::InvalidArgument
            }
            StoreError::BadCredentials => Code::PermissionDenied,
            // Storage trouble is worth a retry by the caller (SMTP 451, POP3 [SYS/TEMP]).
            StoreError::Storage(_) | StoreError::Io(_) | StoreError::Durability(_) => {
                Code::Unavailable
            }
            StoreError::Corrupt { .. } | StoreError::Internal(_) => Code::Internal,
            StoreError::Starting => Code::Unavailable,
            // Temporary for the sender (451 4.7.1), but not for the front-end's RPC retries.
            StoreError::RateLimited { .. } => Code::FailedPrecondition,
            // Not to be retried by the front-end: the client tries again after the delay.
            StoreError::LoginDelay { .. } => Code::FailedPrecondition,
            // Temporary for the client (451 4.4.3, 454 4.7.0, [SYS/TEMP]); the store already
            // waited out its own timeouts, so the front-end must not retry the call.
            StoreError::DirectoryUnavailable(_) => Code::FailedPrecondition,
        }
    }
}

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Status {
        if matches!(
            err,
            StoreError::Storage(_)
                | StoreError::Io(_)
                | StoreError::Durability(_)
                | StoreError::Corrupt { .. }
                | StoreError::Internal(_)
        ) {
            tracing::error!(error = %err, "store operation failed");
        }
        if let StoreError::DirectoryUnavailable(why) = &err {
            tracing::warn!(error = %why, "directory unavailable: answering try-later");
        }
        let mut status = Status::new(err.code(), err.to_string());
        err.reason().attach(&mut status);
        status
    }
}
