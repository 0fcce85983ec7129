//! Sans-io SMTP server session (RFC 5321) with SIZE (RFC 1870), PIPELINING (RFC 2920),
//! 8BITMIME (RFC 6152), DSN (RFC 3461) and ENHANCEDSTATUSCODES (RFC 2034, RFC 3463).
//!
//! # What this crate owns
//! The SMTP conversation with one client: line framing and length limits, command parsing
//! (via Stalwart's `smtp-proto` parser), the HELO → MAIL → RCPT → DATA state machine, the
//! strict DATA receiver (only `<CRLF>.<CRLF>` ends a message, bare CR/LF/NUL are refused) and
//! every reply text. Bytes go in through [`Session::feed`]; [`Session::poll`] hands out
//! [`Action`]s: bytes to write, a recipient to check, a message to deliver, or close.
//!
//! # What it must not do
//! No sockets, no tokio, no clock, no store access and no panics on any input: the tokio
//! driver in `services/frontend` owns I/O, timeouts, TLS and the store client, and answers
//! [`Action::CheckRecipient`] / [`Action::Deliver`] with [`Session::rcpt_done`] /
//! [`Session::deliver_done`]. AUTH, STARTTLS and BDAT are not implemented (and not
//! advertised) yet.
//!
//! # Layout
//! - `reply.rs`: every reply the server can send (the one place for wire texts).
//! - `command.rs`: one command line → verb + parsed arguments (uses `smtp-proto`).
//! - `data.rs`: the DATA receiver (end-of-data detection, dot-unstuffing, limits).
//! - `session.rs`: [`Session`], input buffering, line framing and the state machine.

mod command;
mod data;
mod reply;
mod session;

pub use session::Session;

/// RFC 4954 4: an AUTH response line may be this long (octets, with CRLF).
pub const MAX_AUTH_LINE: usize = 12288;

/// Default for [`Config::max_message_size`], advertised with `SIZE` (RFC 1870).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 25 * 1024 * 1024;
/// Default for [`Config::max_recipients`] (RFC 5321 4.5.3.1.8 requires at least 100).
pub const DEFAULT_MAX_RECIPIENTS: usize = 100;
/// Longest command or text line, in octets including the CRLF
/// (RFC 5321 4.5.3.1.4 and 4.5.3.1.6).
pub const MAX_LINE: usize = 1000;
/// Consecutive error replies (4xx/5xx) after which the session replies 421 and closes.
pub const MAX_CONSECUTIVE_ERRORS: usize = 20;
/// Default banner text after `220 <hostname> `; deliberately names no product or version.
pub const DEFAULT_GREETING: &str = "ESMTP ready";

/// Per-listener settings for a [`Session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Used in the banner, the EHLO/HELO reply and the 221 reply.
    pub hostname: String,
    /// Banner text after `220 <hostname> `.
    pub greeting: String,
    /// Largest accepted message (content after dot-unstuffing), advertised in `SIZE`.
    pub max_message_size: usize,
    /// Most accepted recipients per transaction.
    pub max_recipients: usize,
    /// A TLS acceptor exists: advertise and accept STARTTLS while the connection is in clear
    /// (RFC 3207).
    pub starttls: bool,
    /// The connection is already TLS (implicit-TLS port, RFC 8314).
    pub secure: bool,
    /// Offer AUTH PLAIN and LOGIN (RFC 4954; submission listeners).
    pub auth: bool,
    /// RFC 6409 submission: MAIL needs a successful AUTH first.
    pub submission: bool,
    /// No AUTH before TLS: not advertised, and refused with 538 (the seed's "SPA required").
    pub require_secure_auth: bool,
}

impl Config {
    /// A config with the given hostname and defaults for everything else.
    pub fn new(hostname: impl Into<String>) -> Self {
        Config {
            hostname: hostname.into(),
            greeting: DEFAULT_GREETING.to_string(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            starttls: false,
            secure: false,
            auth: false,
            submission: false,
            require_secure_auth: false,
        }
    }
}

/// The envelope of one mail transaction (RFC 5321 2.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// EHLO/HELO argument.
    pub helo: String,
    /// Reverse-path without `<>`; `""` for the null sender `<>`.
    pub mail_from: String,
    /// Accepted forward-paths without `<>`, in the order they were accepted.
    pub recipients: Vec<String>,
    /// `MAIL FROM ... SIZE=` (RFC 1870), if given.
    pub declared_size: Option<u64>,
    /// The user who passed SMTP AUTH on this connection, if any.
    pub authenticated: Option<String>,
    /// RFC 3461 ENVID given with MAIL FROM.
    pub envid: Option<String>,
    /// RFC 3461 RET given with MAIL FROM.
    pub ret: Option<Ret>,
    /// RFC 3461 NOTIFY and ORCPT of each accepted recipient, parallel to `recipients`.
    pub params: Vec<RcptParams>,
}

/// RFC 3461 4.3: what a DSN returns of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Headers,
}

/// RFC 3461 4.1 NOTIFY; all false = not given (the server's default: failures and delays).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    pub const NEVER: u32 = 1;
    pub const SUCCESS: u32 = 2;
    pub const FAILURE: u32 = 4;
    pub const DELAY: u32 = 8;

    /// From a bit set with the values of `mailroot.proto`'s `Notify` enum (1 NEVER,
    /// 2 SUCCESS, 4 FAILURE, 8 DELAY; 0 = not given).
    pub fn from_bits(bits: u32) -> Notify {
        Notify {
            never: bits & Self::NEVER != 0,
            success: bits & Self::SUCCESS != 0,
            failure: bits & Self::FAILURE != 0,
            delay: bits & Self::DELAY != 0,
        }
    }

    pub fn bits(self) -> u32 {
        [
            (self.never, Self::NEVER),
            (self.success, Self::SUCCESS),
            (self.failure, Self::FAILURE),
            (self.delay, Self::DELAY),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | bit)
    }

    pub fn is_empty(self) -> bool {
        self == Notify::default()
    }
}

/// The DSN parameters of one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    pub notify: Notify,
    /// RFC 3461 4.2 ORCPT as `rfc822;<address>` (xtext decoded).
    pub orcpt: Option<String>,
}

/// The driver's answer to [`Action::CheckRecipient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptVerdict {
    Accept,
    UnknownUser,
    RelayDenied,
    MailboxFull,
    /// Larger than the recipient's quota itself: it can never fit (552 5.2.3, a per-mailbox
    /// limit in RFC 3463; X.3.4 is the system-wide size limit).
    TooBig,
    TempFailure,
    /// The domain's directory (LDAP) did not answer: "451 4.4.3" (RFC 3463 X.4.3, directory
    /// server failure), never "no such user".
    DirectoryUnavailable,
    /// Refused by policy: "550 5.7.1 <addr>: text" (e.g. no outbound delivery yet).
    Refused(String),
}

/// The driver's answer to [`Action::Authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Authenticated; these are the addresses the user may give in MAIL FROM.
    Ok {
        senders: Vec<String>,
    },
    Invalid,
    TempFailure,
}

/// The driver's answer to [`Action::Deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliverVerdict {
    Stored {
        id: String,
    },
    MailboxFull,
    /// Larger than every recipient's quota (552 5.2.3, a per-mailbox limit).
    TooBig,
    TempFailure,
    /// The authenticated sender's outbound limit per hour is reached (451 4.7.1).
    RateLimited,
    Rejected(String),
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the client.
    Send(Vec<u8>),
    /// RCPT TO: check the address, then call [`Session::rcpt_done`].
    CheckRecipient {
        address: String,
        /// `MAIL FROM ... SIZE=` of this transaction, so quotas can refuse early (RFC 1870).
        declared_size: Option<u64>,
    },
    /// End of DATA: `message` is the dot-unstuffed content with CRLF line endings, without the
    /// terminating `.\r\n`. Store it, then call [`Session::deliver_done`].
    Deliver {
        envelope: Envelope,
        message: Vec<u8>,
    },
    /// After "220 2.0.0 Ready to start TLS": flush, do the TLS handshake, then call
    /// [`Session::tls_started`]. Nothing is processed until then.
    StartTls,
    /// AUTH: check the credentials, then call [`Session::auth_done`].
    Authenticate {
        authzid: String,
        user: String,
        password: String,
    },
    /// Flush what was sent and close the connection (after 221, or 421).
    Close,
}
