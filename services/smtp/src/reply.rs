//! Every reply the server sends, in one place (RFC 5321 4.2, enhanced codes RFC 3463).
//!
//! Text that comes from outside (addresses, queue ids, rejection texts, the configured
//! hostname) is sanitised so it can never inject CR/LF into the reply stream.

/// Longest piece of foreign text put into a reply; keeps reply lines far below the
/// 512-octet limit of RFC 5321 4.5.3.1.5.
const MAX_FOREIGN_TEXT: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Greeting {
        hostname: String,
        greeting: String,
    },
    Ehlo {
        hostname: String,
        max_size: usize,
        starttls: bool,
        auth: bool,
    },
    Helo {
        hostname: String,
    },
    ReadyTls,
    AlreadyTls,
    StartTlsSyntax,
    AuthChallenge(&'static str),
    AuthOk,
    AuthInvalid,
    AuthTemp,
    AuthCancelled,
    AuthDecode,
    AuthSyntax,
    AuthMechanism,
    EncryptionRequired,
    AuthRequired,
    AlreadyAuthenticated,
    AuthInTransaction,
    SenderNotOwned,
    RcptRefused {
        address: String,
        text: String,
    },
    /// RSET, NOOP.
    Ok,
    MailOk,
    RcptOk,
    StartData,
    Queued {
        id: String,
    },
    Closing {
        hostname: String,
    },
    Vrfy,
    Help,

    NeedHelo,
    NestedMail,
    NeedMail,
    NoValidRecipients,

    HelloSyntax,
    MailSyntax,
    SenderSyntax,
    RcptSyntax,
    DataSyntax,
    VrfySyntax,
    UnsupportedMailParam,
    UnsupportedRcptParam,
    SizeExceeded,
    TooManyRecipients,

    UnknownUser {
        address: String,
    },
    RelayDenied {
        address: String,
    },
    RcptMailboxFull {
        address: String,
    },
    RcptTooBig {
        address: String,
    },
    TempFailure,
    /// The recipient's directory (LDAP) did not answer (RFC 3463 X.4.3).
    DirectoryUnavailable,
    /// The sender's outbound messages per hour are used up.
    RateLimited,
    /// The node has no memory left for more message data in flight (RFC 3463 X.3.1).
    InsufficientStorage,
    MailboxFull,
    TooBigForQuota,
    Rejected {
        text: String,
    },

    BareCrLfNul,
    LineTooLong,
    NulInCommand,
    Unrecognized,
    NotImplemented,
    TooManyErrors,
    /// RFC 5321 3.8 / 4.2.2: the service is closing the channel (RFC 3463 X.3.2: system not
    /// accepting network messages).
    ShuttingDown {
        hostname: String,
    },
}

impl Reply {
    /// The reply line(s) without the final CRLF.
    fn text(&self) -> String {
        match self {
            Reply::Greeting { hostname, greeting } => {
                format!("220 {} {}", clean(hostname), clean(greeting))
            }
            // RFC 5321 4.1.1.1: first line is the domain; RFC 1870, 2920, 6152, 2034 keywords.
            Reply::Ehlo {
                hostname,
                max_size,
                starttls,
                auth,
            } => {
                let mut text = format!(
                    "250-{}\r\n250-SIZE {max_size}\r\n250-PIPELINING\r\n250-8BITMIME\r\n",
                    clean(hostname)
                );
                if *starttls {
                    text.push_str("250-STARTTLS\r\n");
                }
                if *auth {
                    text.push_str("250-AUTH PLAIN LOGIN\r\n");
                }
                text.push_str("250-DSN\r\n250 ENHANCEDSTATUSCODES");
                text
            }
            // RFC 3207 4.
            Reply::ReadyTls => "220 2.0.0 Ready to start TLS".into(),
            Reply::AlreadyTls => "503 5.5.1 TLS already active".into(),
            Reply::StartTlsSyntax => "501 5.5.4 Syntax: STARTTLS".into(),
            // RFC 4954 4, 6.
            Reply::AuthChallenge(c) => format!("334 {c}"),
            Reply::AuthOk => "235 2.7.0 Authentication successful".into(),
            Reply::AuthInvalid => "535 5.7.8 Authentication credentials invalid".into(),
            Reply::AuthTemp => "454 4.7.0 Temporary authentication failure".into(),
            Reply::AuthCancelled => "501 5.0.0 Authentication cancelled".into(),
            Reply::AuthDecode => "501 5.5.2 Cannot decode response".into(),
            Reply::AuthSyntax => "501 5.5.4 Syntax: AUTH mechanism [initial-response]".into(),
            Reply::AuthMechanism => "504 5.5.4 Unrecognized authentication type".into(),
            Reply::EncryptionRequired => {
                "538 5.7.11 Encryption required for requested authentication mechanism".into()
            }
            Reply::AuthRequired => "530 5.7.0 Authentication required".into(),
            Reply::AlreadyAuthenticated => "503 5.5.1 Already authenticated".into(),
            Reply::AuthInTransaction => {
                "503 5.5.1 AUTH not allowed during a mail transaction".into()
            }
            Reply::SenderNotOwned => {
                "553 5.7.1 Sender address rejected: not owned by the authenticated user".into()
            }
            Reply::RcptRefused { address, text } => {
                format!("550 5.7.1 <{}>: {}", clean(address), clean(text))
            }
            Reply::Helo { hostname } => format!("250 {}", clean(hostname)),
            Reply::Ok => "250 2.0.0 OK".into(),
            Reply::MailOk => "250 2.1.0 OK".into(),
            Reply::RcptOk => "250 2.1.5 OK".into(),
            Reply::StartData => "354 End data with <CR><LF>.<CR><LF>".into(),
            Reply::Queued { id } => format!("250 2.0.0 OK queued as {}", clean(id)),
            Reply::Closing { hostname } => {
                format!("221 2.0.0 {} closing connection", clean(hostname))
            }
            // RFC 5321 3.5.3: 252 when we will not verify but will accept.
            Reply::Vrfy => {
                "252 2.5.0 cannot VRFY user, but will accept message and attempt delivery".into()
            }
            Reply::Help => {
                "214 2.0.0 commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT".into()
            }

            Reply::NeedHelo => "503 5.5.1 send EHLO/HELO first".into(),
            Reply::NestedMail => "503 5.5.1 nested MAIL command".into(),
            Reply::NeedMail => "503 5.5.1 need MAIL command first".into(),
            // RFC 2920 3.1: DATA after all RCPTs failed.
            Reply::NoValidRecipients => "554 5.5.1 no valid recipients".into(),

            Reply::HelloSyntax => "501 5.5.4 syntax: EHLO/HELO domain".into(),
            Reply::MailSyntax => {
                "501 5.5.4 syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME]".into()
            }
            Reply::SenderSyntax => "501 5.1.7 bad sender address syntax".into(),
            Reply::RcptSyntax => "501 5.1.3 bad recipient address syntax".into(),
            Reply::DataSyntax => "501 5.5.4 syntax: DATA takes no arguments".into(),
            Reply::VrfySyntax => "501 5.5.4 syntax: VRFY address".into(),
            // RFC 5321 4.1.1.11: parameters of extensions we did not advertise.
            Reply::UnsupportedMailParam => "555 5.5.4 unsupported MAIL FROM parameter".into(),
            Reply::UnsupportedRcptParam => "555 5.5.4 unsupported RCPT TO parameter".into(),
            // RFC 1870 6.
            Reply::SizeExceeded => {
                "552 5.3.4 message size exceeds fixed maximum message size".into()
            }
            // RFC 5321 4.5.3.1.10.
            Reply::TooManyRecipients => "452 4.5.3 too many recipients".into(),

            Reply::UnknownUser { address } => {
                format!("550 5.1.1 <{}>: no such user here", clean(address))
            }
            Reply::RelayDenied { address } => {
                format!("550 5.7.1 <{}>: relay access denied", clean(address))
            }
            Reply::RcptMailboxFull { address } => {
                format!("552 5.2.2 <{}>: mailbox full", clean(address))
            }
            Reply::RcptTooBig { address } => format!(
                "552 5.2.3 <{}>: message larger than the mailbox quota",
                clean(address)
            ),
            Reply::TempFailure => "451 4.3.0 temporary failure, try again later".into(),
            Reply::DirectoryUnavailable => {
                "451 4.4.3 directory server unavailable, try again later".into()
            }
            // RFC 3463 X.7.1: delivery not authorized (here: for now), try later.
            Reply::RateLimited => {
                "451 4.7.1 too many messages to other domains this hour, try again later".into()
            }
            Reply::InsufficientStorage => {
                "452 4.3.1 insufficient system storage, try again later".into()
            }
            Reply::MailboxFull => "552 5.2.2 mailbox full".into(),
            Reply::TooBigForQuota => "552 5.2.3 message larger than the mailbox quota".into(),
            Reply::Rejected { text } => format!("554 5.0.0 {}", clean(text)),

            // RFC 5321 2.3.8: CR and LF only as CRLF; smuggling defence.
            Reply::BareCrLfNul => {
                "550 5.6.2 bare CR or LF or NUL not allowed in message (RFC 5321 2.3.8)".into()
            }
            Reply::LineTooLong => "500 5.5.2 line too long".into(),
            Reply::NulInCommand => "500 5.5.2 NUL character not allowed in command".into(),
            Reply::Unrecognized => "500 5.5.1 command unrecognized".into(),
            Reply::NotImplemented => "502 5.5.1 command not implemented".into(),
            Reply::TooManyErrors => "421 4.7.0 too many errors".into(),
            Reply::ShuttingDown { hostname } => format!(
                "421 4.3.2 {} service shutting down, closing connection",
                clean(hostname)
            ),
        }
    }

    /// The reply as written to the wire, CRLF-terminated.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut text = self.text().into_bytes();
        text.extend_from_slice(b"\r\n");
        text
    }

    /// Whether this reply counts towards [`crate::MAX_CONSECUTIVE_ERRORS`] (4yz and 5yz).
    pub(crate) fn is_error(&self) -> bool {
        // Every text starts with a three-digit code; see `text`.
        matches!(self.text().as_bytes().first(), Some(b'4' | b'5'))
    }
}

/// Foreign text made safe for a reply line: control characters become `?` and the length is
/// capped (on a char boundary).
fn clean(text: &str) -> String {
    text.chars()
        .take(MAX_FOREIGN_TEXT)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_text_cannot_inject_lines() {
        let r = Reply::Rejected {
            text: "no\r\n250 fake".into(),
        };
        assert_eq!(r.to_bytes(), b"554 5.0.0 no??250 fake\r\n");
    }

    #[test]
    fn foreign_text_is_capped() {
        let r = Reply::Queued {
            id: "é".repeat(10_000),
        };
        assert!(r.to_bytes().len() < 512 * 2);
    }

    #[test]
    fn an_unavailable_directory_is_a_temporary_directory_failure() {
        // RFC 3463 X.4.3: directory server failure; never 550 "no such user".
        assert_eq!(
            Reply::DirectoryUnavailable.to_bytes(),
            b"451 4.4.3 directory server unavailable, try again later\r\n"
        );
    }

    #[test]
    fn error_classification() {
        assert!(Reply::TempFailure.is_error());
        assert!(Reply::Unrecognized.is_error());
        assert!(!Reply::StartData.is_error());
        assert!(!Reply::Ok.is_error());
    }
}
