//! `StoreError`: every way a store operation can fail, and the ONE place where it becomes a
//! gRPC status. The machine-readable `reason()` travels in the `x-mailroot-error` metadata so
//! front-ends and `mailrootctl` never parse message texts.

use proto::ERROR_REASON_HEADER;
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
    /// Local storage could not make a write durable (see `group_commit.rs`).
    #[error("storage could not sync: {0}")]
    Durability(String),
    #[error("corrupt metadata at {path}: {detail}")]
    Corrupt { path: String, detail: String },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Stable, machine-readable reason sent next to the status.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::UnknownDomain(_) => "unknown-domain",
            StoreError::DomainExists(_) => "domain-exists",
            StoreError::DomainNotEmpty(..) => "domain-not-empty",
            StoreError::UnknownMailbox(_) => "unknown-mailbox",
            StoreError::MailboxExists(_) => "mailbox-exists",
            StoreError::InvalidName { .. } => "invalid-name",
            StoreError::InvalidArgument(_) => "invalid-argument",
            StoreError::BadCredentials => "bad-credentials",
            StoreError::NoSuchMessage(_) => "no-such-message",
            StoreError::Locked(_) => "locked",
            StoreError::Throttled => "throttled",
            StoreError::InUse(_) => "in-use",
            StoreError::LeaseLost(_) => "lease-lost",
            StoreError::AliasExists(_) => "alias-exists",
            StoreError::UnknownAlias(_) => "unknown-alias",
            StoreError::AliasTarget { .. } => "alias-target",
            StoreError::Storage(_) | StoreError::Durability(_) => "storage",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Internal(_) => "internal",
        }
    }

    fn code(&self) -> Code {
        match self {
            StoreError::UnknownDomain(_)
            | StoreError::UnknownMailbox(_)
            | StoreError::NoSuchMessage(_)
            | StoreError::UnknownAlias(_) => Code::NotFound,
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
            StoreError::Storage(_) | StoreError::Durability(_) => Code::Unavailable,
            StoreError::Corrupt { .. } | StoreError::Internal(_) => Code::Internal,
        }
    }
}

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Status {
        if matches!(
            err,
            StoreError::Storage(_)
                | StoreError::Durability(_)
                | StoreError::Corrupt { .. }
                | StoreError::Internal(_)
        ) {
            tracing::error!(error = %err, "store operation failed");
        }
        let mut status = Status::new(err.code(), err.to_string());
        status.metadata_mut().insert(
            ERROR_REASON_HEADER,
            tonic::metadata::MetadataValue::from_static(err.reason()),
        );
        status
    }
}
