//! The one table that turns store answers (gRPC statuses and replies) into protocol verdicts.
//! The sans-io sessions own the reply texts; this module only decides which verdict applies.

use proto::Reason;
use proto::v1::{CheckRecipientReply, DeliverReply, RecipientStatus};

use mailroot_common::dsn;
use tonic::Status;

/// The store's machine-readable reason for a failure (`None` when it never reached the store).
pub fn reason(status: &Status) -> Option<Reason> {
    Reason::of(status)
}

fn log_temp(what: &str, status: &Status) {
    tracing::warn!(code = ?status.code(), error = %status.message(), "{what}: answering try-later");
}

/// RCPT verdict. `authenticated`: the client passed SMTP AUTH on a submission port, so a
/// non-hosted recipient is outbound mail rather than a relay attempt.
pub fn rcpt(result: Result<CheckRecipientReply, Status>, authenticated: bool) -> smtp::RcptVerdict {
    match result {
        Ok(r) => match RecipientStatus::try_from(r.status) {
            Ok(RecipientStatus::Accept) => smtp::RcptVerdict::Accept,
            Ok(RecipientStatus::UnknownUser) => smtp::RcptVerdict::UnknownUser,
            Ok(RecipientStatus::RelayDenied) if authenticated => {
                smtp::RcptVerdict::Refused(NO_OUTBOUND.to_string())
            }
            Ok(RecipientStatus::RelayDenied) => smtp::RcptVerdict::RelayDenied,
            Ok(RecipientStatus::MailboxFull) => smtp::RcptVerdict::MailboxFull,
            Ok(RecipientStatus::TooBig) => smtp::RcptVerdict::TooBig,
            _ => smtp::RcptVerdict::TempFailure,
        },
        Err(status) => {
            log_temp("RCPT", &status);
            smtp::RcptVerdict::TempFailure
        }
    }
}

/// Said to an authenticated sender for a non-hosted recipient until the outbound queue exists:
/// refused clearly at RCPT time, never accepted and dropped.
pub const NO_OUTBOUND: &str =
    "delivery to other domains is not available yet (no outbound queue); not accepted";

pub fn smtp_auth(result: Result<proto::v1::AuthenticateReply, Status>) -> smtp::AuthVerdict {
    match result {
        Ok(reply) => smtp::AuthVerdict::Ok {
            senders: reply.senders,
        },
        Err(status) => match reason(&status) {
            Some(
                Reason::BadCredentials
                | Reason::InvalidName
                | Reason::UnknownMailbox
                | Reason::Locked,
            ) => smtp::AuthVerdict::Invalid,
            _ => {
                log_temp("SMTP AUTH", &status);
                smtp::AuthVerdict::TempFailure
            }
        },
    }
}

/// The DATA verdict for a store delivery, plus the recipients that must go into a DSN.
pub fn deliver(
    result: Result<DeliverReply, Status>,
    id: &str,
) -> (smtp::DeliverVerdict, Vec<dsn::Failure>) {
    let reply = match result {
        Ok(reply) => reply,
        Err(status) if reason(&status) == Some(Reason::UnknownMailbox) => {
            return (
                smtp::DeliverVerdict::Rejected("recipient mailbox no longer exists".into()),
                vec![],
            );
        }
        Err(status) => {
            log_temp("DATA", &status);
            return (smtp::DeliverVerdict::TempFailure, vec![]);
        }
    };
    let mut failures = Vec::new();
    let mut any_stored = false;
    let mut all_too_big = true;
    let mut all_quota = true;
    for r in &reply.results {
        let status = RecipientStatus::try_from(r.status).unwrap_or(RecipientStatus::Unspecified);
        // An alias whose targets partly failed still reached the others.
        any_stored |= !r.stored_mailboxes.is_empty();
        let (code, diagnostic) = match status {
            RecipientStatus::Accept => continue,
            RecipientStatus::MailboxFull => ("5.2.2", "552 5.2.2 mailbox full"),
            RecipientStatus::TooBig => ("5.2.3", "552 5.2.3 message larger than the mailbox quota"),
            RecipientStatus::UnknownUser => ("5.1.1", "550 5.1.1 no such user here"),
            _ => ("5.0.0", "554 5.0.0 delivery failed"),
        };
        all_too_big &= status == RecipientStatus::TooBig;
        all_quota &= matches!(
            status,
            RecipientStatus::TooBig | RecipientStatus::MailboxFull
        );
        let targets: Vec<String> = if r.failed_mailboxes.is_empty() {
            vec![r.recipient.clone()]
        } else {
            r.failed_mailboxes.clone()
        };
        for recipient in targets {
            failures.push(dsn::Failure {
                recipient,
                status: code,
                diagnostic: diagnostic.to_string(),
            });
        }
    }
    // RFC 5321 §6.1: once one copy is stored the answer is 250, and every recipient that
    // failed after that is reported in a DSN, never by a 5xx that would make the client send
    // the stored copies again.
    if any_stored {
        (
            smtp::DeliverVerdict::Stored { id: id.to_string() },
            failures,
        )
    } else if all_too_big {
        (smtp::DeliverVerdict::TooBig, vec![])
    } else if all_quota {
        (smtp::DeliverVerdict::MailboxFull, vec![])
    } else {
        (
            smtp::DeliverVerdict::Rejected("no recipient could take the message".into()),
            vec![],
        )
    }
}

pub fn auth(result: &Result<proto::v1::OpenMaildropReply, Status>) -> pop3::AuthOutcome {
    match result {
        Ok(reply) => pop3::AuthOutcome::Ok {
            messages: reply
                .messages
                .iter()
                .map(|m| pop3::MessageInfo {
                    uidl: m.uidl.clone(),
                    size: m.size,
                })
                .collect(),
        },
        Err(status) => match reason(status) {
            Some(Reason::BadCredentials | Reason::InvalidName | Reason::UnknownMailbox) => {
                pop3::AuthOutcome::BadCredentials
            }
            Some(Reason::Locked) => pop3::AuthOutcome::Locked,
            Some(Reason::InUse) => pop3::AuthOutcome::InUse,
            // Throttled and store trouble: try again later.
            _ => {
                log_temp("POP3 login", status);
                pop3::AuthOutcome::TempFailure
            }
        },
    }
}

pub fn fetch(status: &Status) -> pop3::FetchError {
    match reason(status) {
        Some(Reason::NoSuchMessage | Reason::UnknownMailbox) => pop3::FetchError::Gone,
        _ => {
            log_temp("RETR", status);
            pop3::FetchError::TempFailure
        }
    }
}

pub fn commit(result: Result<u32, Status>) -> Result<(), pop3::CommitError> {
    result.map(|_| ()).map_err(|status| match reason(&status) {
        Some(Reason::LeaseLost) => {
            tracing::warn!("POP3 commit refused: the maildrop lease was lost (fenced)");
            pop3::CommitError::LostLock
        }
        _ => {
            log_temp("POP3 commit", &status);
            pop3::CommitError::TempFailure
        }
    })
}
