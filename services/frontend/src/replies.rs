//! The one table that turns store answers (gRPC statuses and replies) into protocol verdicts.
//! The sans-io sessions own the reply texts; this module only decides which verdict applies.

use proto::Reason;
use proto::v1::{CheckRecipientReply, DeliverReply, RecipientStatus};

use tonic::Status;

/// The store's machine-readable reason for a failure (`None` when it never reached the store).
pub fn reason(status: &Status) -> Option<Reason> {
    Reason::of(status)
}

fn log_temp(what: &str, status: &Status) {
    tracing::warn!(code = ?status.code(), error = %status.message(), "{what}: answering try-later");
}

/// RCPT verdict. `authenticated`: the client passed SMTP AUTH on a submission port, so a
/// non-hosted recipient is outbound mail (queued by the store at DATA) rather than a relay
/// attempt.
pub fn rcpt(result: Result<CheckRecipientReply, Status>, authenticated: bool) -> smtp::RcptVerdict {
    match result {
        Ok(r) => match RecipientStatus::try_from(r.status) {
            Ok(RecipientStatus::Accept) => smtp::RcptVerdict::Accept,
            Ok(RecipientStatus::UnknownUser) => smtp::RcptVerdict::UnknownUser,
            Ok(RecipientStatus::RelayDenied) if authenticated => smtp::RcptVerdict::Accept,
            Ok(RecipientStatus::RelayDenied) => smtp::RcptVerdict::RelayDenied,
            Ok(RecipientStatus::MailboxFull) => smtp::RcptVerdict::MailboxFull,
            Ok(RecipientStatus::TooBig) => smtp::RcptVerdict::TooBig,
            _ => smtp::RcptVerdict::TempFailure,
        },
        Err(status) => {
            log_temp("RCPT", &status);
            match reason(&status) {
                Some(Reason::DirectoryUnavailable) => smtp::RcptVerdict::DirectoryUnavailable,
                _ => smtp::RcptVerdict::TempFailure,
            }
        }
    }
}

/// RFC 4954 §6: a directory that does not answer is "454 4.7.0" (temporary), like any other
/// trouble that is not the client's credentials.
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
            // DirectoryUnavailable included: 454 4.7.0, never 535.
            _ => {
                log_temp("SMTP AUTH", &status);
                smtp::AuthVerdict::TempFailure
            }
        },
    }
}

/// The DATA verdict for a store delivery. Recipients that failed while others were stored or
/// queued are reported to the sender in a DSN that the store itself made and stored or queued
/// before it answered (store-node/src/store/delivery.rs), so the 250 never precedes a lost DSN.
pub fn deliver(result: Result<DeliverReply, Status>, id: &str) -> smtp::DeliverVerdict {
    let reply = match result {
        Ok(reply) => reply,
        Err(status) => {
            return match reason(&status) {
                Some(Reason::UnknownMailbox) => {
                    smtp::DeliverVerdict::Rejected("recipient mailbox no longer exists".into())
                }
                Some(Reason::RateLimited) => smtp::DeliverVerdict::RateLimited,
                _ => {
                    log_temp("DATA", &status);
                    smtp::DeliverVerdict::TempFailure
                }
            };
        }
    };
    let mut any_stored = false;
    let mut all_too_big = true;
    let mut all_quota = true;
    for r in &reply.results {
        let status = RecipientStatus::try_from(r.status).unwrap_or(RecipientStatus::Unspecified);
        // An alias whose targets partly failed still reached the others.
        any_stored |= !r.stored_mailboxes.is_empty() || status == RecipientStatus::Queued;
        if matches!(status, RecipientStatus::Accept | RecipientStatus::Queued) {
            continue;
        }
        all_too_big &= status == RecipientStatus::TooBig;
        all_quota &= matches!(
            status,
            RecipientStatus::TooBig | RecipientStatus::MailboxFull
        );
    }
    // RFC 5321 §6.1: once one copy is stored the answer is 250, and every recipient that
    // failed after that is reported in a DSN, never by a 5xx that would make the client send
    // the stored copies again.
    if any_stored {
        smtp::DeliverVerdict::Stored { id: id.to_string() }
    } else if all_too_big {
        smtp::DeliverVerdict::TooBig
    } else if all_quota {
        smtp::DeliverVerdict::MailboxFull
    } else {
        smtp::DeliverVerdict::Rejected("no recipient could take the message".into())
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
            Some(Reason::LoginDelay) => pop3::AuthOutcome::LoginDelay,
            // Throttled, a directory that did not answer (DirectoryUnavailable: never a bad
            // password) and store trouble: try again later, -ERR [SYS/TEMP].
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(reason: Reason) -> Status {
        let mut s = Status::failed_precondition("x");
        reason.attach(&mut s);
        s
    }

    #[test]
    fn an_unavailable_directory_is_always_try_later() {
        let s = || status(Reason::DirectoryUnavailable);
        assert_eq!(
            rcpt(Err(s()), false),
            smtp::RcptVerdict::DirectoryUnavailable
        );
        assert_eq!(smtp_auth(Err(s())), smtp::AuthVerdict::TempFailure);
        assert!(matches!(auth(&Err(s())), pop3::AuthOutcome::TempFailure));
        // Bad credentials stay what they are.
        assert_eq!(
            smtp_auth(Err(status(Reason::BadCredentials))),
            smtp::AuthVerdict::Invalid
        );
        assert!(matches!(
            auth(&Err(status(Reason::BadCredentials))),
            pop3::AuthOutcome::BadCredentials
        ));
    }
}
