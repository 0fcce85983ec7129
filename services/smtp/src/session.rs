//! [`Session`]: input buffering, command line framing and the SMTP state machine.
//!
//! Invariants the driver relies on:
//! - output depends only on the byte stream and the verdicts, never on how bytes were
//!   chunked (each reply is exactly one [`Action::Send`]);
//! - while a recipient check or delivery is outstanding nothing else is processed, so
//!   pipelined commands are answered in order (RFC 2920 3.1);
//! - at most a couple of actions are queued at a time: input is only parsed on demand in
//!   [`Session::poll`].

use std::collections::VecDeque;

mod auth;

use crate::command::{self, Verb};
use crate::data::{Outcome, Receiver};
use crate::reply::Reply;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::{
    Action, AuthVerdict, Config, DeliverVerdict, Envelope, MAX_AUTH_LINE, MAX_CONSECUTIVE_ERRORS,
    MAX_LINE, RcptParams, RcptVerdict, Ret,
};

/// An answer the driver still owes us.
#[derive(Debug)]
enum Pending {
    Rcpt { address: String, params: RcptParams },
    Deliver,
    Tls,
    Auth { user: String },
}

/// Where an AUTH exchange stands (RFC 4954 4): the next line is the client's response.
#[derive(Debug)]
enum AuthStep {
    /// PLAIN without an initial response: waiting for authzid\0user\0password.
    Plain,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password of `user`.
    LoginPassword { user: String },
}

/// The authenticated user and the addresses they may send as.
struct Authenticated {
    user: String,
    senders: Vec<String>,
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A mail transaction in progress (RFC 5321 3.3): started by MAIL, ended by the end of DATA,
/// RSET, EHLO/HELO.
#[derive(Debug)]
struct Transaction {
    mail_from: String,
    recipients: Vec<String>,
    /// Parallel to `recipients`.
    params: Vec<RcptParams>,
    declared_size: Option<u64>,
    ret: Option<Ret>,
    envid: Option<String>,
}

/// One SMTP server conversation. See the crate docs for the driver loop.
#[derive(Debug)]
pub struct Session {
    config: Config,
    /// Received bytes; `input[read..]` is not yet processed.
    input: Vec<u8>,
    read: usize,
    actions: VecDeque<Action>,
    helo: Option<String>,
    transaction: Option<Transaction>,
    /// `Some` between the 354 and the end of data.
    data: Option<Receiver>,
    pending: Option<Pending>,
    /// Dropping the rest of an over-long command line, through its LF.
    discarding: bool,
    errors: usize,
    closed: bool,
    auth_step: Option<AuthStep>,
    authenticated: Option<Authenticated>,
    /// Command lines processed (for the driver's metrics).
    commands: u64,
}

impl Session {
    pub fn new(config: Config) -> Self {
        Session {
            config,
            input: Vec::new(),
            read: 0,
            actions: VecDeque::new(),
            helo: None,
            transaction: None,
            data: None,
            pending: None,
            discarding: false,
            errors: 0,
            closed: false,
            auth_step: None,
            authenticated: None,
            commands: 0,
        }
    }

    /// Command lines processed so far (not DATA content, not AUTH responses).
    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// True once the connection is TLS (implicit, or after STARTTLS).
    pub fn is_secure(&self) -> bool {
        self.config.secure
    }

    /// RFC 3207 4.2: after the handshake the session starts over. Everything received before
    /// it and not yet processed — plaintext pipelined after STARTTLS — is discarded unread
    /// (CVE-2011-0411 class); HELO/EHLO, the transaction and any AUTH are forgotten.
    pub fn tls_started(&mut self) {
        if self.closed || !matches!(self.pending, Some(Pending::Tls)) {
            return;
        }
        self.pending = None;
        self.input.clear();
        self.read = 0;
        self.discarding = false;
        self.helo = None;
        self.transaction = None;
        self.auth_step = None;
        self.authenticated = None;
        self.config.secure = true;
    }

    /// The answer to [`Action::Authenticate`]; ignored if none is outstanding.
    pub fn auth_done(&mut self, verdict: AuthVerdict) {
        if self.closed || !matches!(self.pending, Some(Pending::Auth { .. })) {
            return;
        }
        let Some(Pending::Auth { user }) = self.pending.take() else {
            return;
        };
        let reply = match verdict {
            AuthVerdict::Ok { senders } => {
                self.authenticated = Some(Authenticated { user, senders });
                Reply::AuthOk
            }
            AuthVerdict::Invalid => Reply::AuthInvalid,
            AuthVerdict::TempFailure => Reply::AuthTemp,
        };
        self.reply(reply);
    }

    /// AUTH may be offered and used now (RFC 4954 with the require-secure-auth policy).
    fn auth_allowed(&self) -> bool {
        self.config.secure || !self.config.require_secure_auth
    }

    /// The 220 banner to send when the connection opens (RFC 5321 4.2, 3.1).
    pub fn greeting(&self) -> Vec<u8> {
        Reply::Greeting {
            hostname: self.config.hostname.clone(),
            greeting: self.config.greeting.clone(),
        }
        .to_bytes()
    }

    /// Appends received bytes, in any chunking. Ignored once closed.
    pub fn feed(&mut self, input: &[u8]) {
        if self.closed {
            return;
        }
        if self.read > 0 {
            self.input.drain(..self.read);
            self.read = 0;
        }
        self.input.extend_from_slice(input);
    }

    /// Received bytes not yet processed (for back-pressure in the driver while an answer is
    /// outstanding).
    pub fn buffered_len(&self) -> usize {
        self.input.len() - self.read
    }

    /// Octets of message data buffered by a DATA transfer in progress (0 outside DATA): the
    /// driver counts them against its node-wide limit of bytes in flight.
    pub fn data_buffered(&self) -> usize {
        self.data.as_ref().map_or(0, Receiver::buffered)
    }

    /// The driver has no memory for this message: the rest of it is read and dropped, and the
    /// end of data is answered `452 4.3.1` (the client may try again later).
    pub fn refuse_data_for_memory(&mut self) {
        if let Some(receiver) = self.data.as_mut() {
            receiver.refuse_for_memory();
        }
    }

    /// The next action, or `None` when more input is needed, an answer is outstanding, or the
    /// session is closed.
    pub fn poll(&mut self) -> Option<Action> {
        loop {
            if let Some(action) = self.actions.pop_front() {
                return Some(action);
            }
            if self.closed || self.pending.is_some() || !self.step() {
                return None;
            }
        }
    }

    /// The answer to [`Action::CheckRecipient`]; ignored if none is outstanding.
    pub fn rcpt_done(&mut self, verdict: RcptVerdict) {
        if self.closed || !matches!(self.pending, Some(Pending::Rcpt { .. })) {
            return;
        }
        let Some(Pending::Rcpt { address, params }) = self.pending.take() else {
            return;
        };
        let reply = match verdict {
            RcptVerdict::Accept => {
                if let Some(transaction) = self.transaction.as_mut() {
                    transaction.recipients.push(address);
                    transaction.params.push(params);
                }
                Reply::RcptOk
            }
            RcptVerdict::UnknownUser => Reply::UnknownUser { address },
            RcptVerdict::RelayDenied => Reply::RelayDenied { address },
            RcptVerdict::MailboxFull => Reply::RcptMailboxFull { address },
            RcptVerdict::TooBig => Reply::RcptTooBig { address },
            RcptVerdict::TempFailure => Reply::TempFailure,
            RcptVerdict::DirectoryUnavailable => Reply::DirectoryUnavailable,
            RcptVerdict::Refused(text) => Reply::RcptRefused { address, text },
        };
        self.reply(reply);
    }

    /// The answer to [`Action::Deliver`]; ignored if none is outstanding.
    pub fn deliver_done(&mut self, verdict: DeliverVerdict) {
        if self.closed || !matches!(self.pending, Some(Pending::Deliver)) {
            return;
        }
        self.pending = None;
        let reply = match verdict {
            DeliverVerdict::Stored { id } => Reply::Queued { id },
            DeliverVerdict::MailboxFull => Reply::MailboxFull,
            DeliverVerdict::TooBig => Reply::TooBigForQuota,
            DeliverVerdict::TempFailure => Reply::TempFailure,
            DeliverVerdict::RateLimited => Reply::RateLimited,
            DeliverVerdict::Rejected(text) => Reply::Rejected { text },
        };
        self.reply(reply);
    }

    /// The server is stopping and this session's time is up: `421 4.3.2`, then close
    /// (RFC 5321 3.8: a server may close with 421 at any time; a transaction in progress,
    /// even mid-DATA, is abandoned and the client retries later). Replies not yet handed out
    /// and any outstanding answer are dropped.
    pub fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.actions.clear();
        self.actions.push_back(Action::Send(
            Reply::ShuttingDown {
                hostname: self.config.hostname.clone(),
            }
            .to_bytes(),
        ));
        self.close();
    }

    /// True once [`Action::Close`] has been queued.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Queues one reply and enforces the consecutive-error limit.
    fn reply(&mut self, reply: Reply) {
        if reply.is_error() {
            self.errors += 1;
        } else {
            self.errors = 0;
        }
        self.actions.push_back(Action::Send(reply.to_bytes()));
        if self.errors >= MAX_CONSECUTIVE_ERRORS {
            self.actions
                .push_back(Action::Send(Reply::TooManyErrors.to_bytes()));
            self.close();
        }
    }

    fn close(&mut self) {
        self.actions.push_back(Action::Close);
        self.closed = true;
        self.input = Vec::new();
        self.read = 0;
        self.data = None;
        self.pending = None;
        self.auth_step = None;
    }

    /// Processes one unit of input (a command line, a discarded stretch, or DATA bytes).
    /// Returns false when nothing could be done without more input.
    fn step(&mut self) -> bool {
        let unread = &self.input[self.read..];
        if unread.is_empty() {
            return false;
        }

        if let Some(receiver) = self.data.as_mut() {
            let (consumed, outcome) = receiver.ingest(unread);
            self.read += consumed;
            if let Some(outcome) = outcome {
                self.data = None;
                self.end_of_data(outcome);
            }
            return true;
        }

        let lf = unread.iter().position(|&b| b == b'\n');
        if self.discarding {
            match lf {
                Some(i) => {
                    self.read += i + 1;
                    self.discarding = false;
                }
                None => self.read = self.input.len(),
            }
            return true;
        }

        // A line is a command, or the client's response inside an AUTH exchange, which may be
        // longer (RFC 4954 4). RFC 5321 4.5.3.1.4: 1000 octets including the line ending.
        let in_auth = self.auth_step.is_some();
        let limit = if in_auth { MAX_AUTH_LINE } else { MAX_LINE };
        match lf {
            Some(i) if i + 1 > limit => {
                self.read += i + 1;
                self.auth_step = None;
                self.reply(Reply::LineTooLong);
            }
            Some(i) => {
                // A bare LF is tolerated as a command line ending (never in DATA).
                let mut line = &unread[..i];
                if let Some(stripped) = line.strip_suffix(b"\r") {
                    line = stripped;
                }
                let line = line.to_vec();
                self.read += i + 1;
                if in_auth {
                    self.auth_response(&line);
                } else {
                    self.command(&line);
                }
            }
            // Cannot become a legal line any more: refuse now, drop the rest later.
            None if unread.len() >= limit => {
                self.read = self.input.len();
                self.discarding = true;
                self.auth_step = None;
                self.reply(Reply::LineTooLong);
            }
            None => return false,
        }
        true
    }

    fn end_of_data(&mut self, outcome: Outcome) {
        // RFC 5321 4.1.1.4: the transaction ends with DATA whatever the result.
        let transaction = self.transaction.take();
        match (outcome, transaction) {
            (Outcome::Message(message), Some(transaction)) => {
                let envelope = Envelope {
                    helo: self.helo.clone().unwrap_or_default(),
                    mail_from: transaction.mail_from,
                    recipients: transaction.recipients,
                    declared_size: transaction.declared_size,
                    authenticated: self.authenticated.as_ref().map(|a| a.user.clone()),
                    envid: transaction.envid,
                    ret: transaction.ret,
                    params: transaction.params,
                };
                self.pending = Some(Pending::Deliver);
                self.actions
                    .push_back(Action::Deliver { envelope, message });
            }
            (Outcome::Refuse(reply), _) => self.reply(reply),
            // DATA is only entered with a transaction; stay safe if that ever breaks.
            (Outcome::Message(_), None) => self.reply(Reply::NeedMail),
        }
    }

    fn command(&mut self, line: &[u8]) {
        self.commands += 1;
        if line.contains(&0) {
            self.reply(Reply::NulInCommand);
            return;
        }
        let (verb, args) = command::verb(line);
        match verb {
            Verb::Ehlo | Verb::Helo => match command::parse_hello(line) {
                Ok(host) => {
                    // RFC 5321 4.1.4: EHLO/HELO resets like RSET.
                    self.helo = Some(host);
                    self.transaction = None;
                    let hostname = self.config.hostname.clone();
                    self.reply(if verb == Verb::Ehlo {
                        Reply::Ehlo {
                            hostname,
                            max_size: self.config.max_message_size,
                            starttls: self.config.starttls && !self.config.secure,
                            auth: self.config.auth
                                && self.auth_allowed()
                                && self.authenticated.is_none(),
                        }
                    } else {
                        Reply::Helo { hostname }
                    });
                }
                Err(reply) => self.reply(reply),
            },
            Verb::Mail => {
                if self.helo.is_none() {
                    return self.reply(Reply::NeedHelo);
                }
                if self.transaction.is_some() {
                    return self.reply(Reply::NestedMail);
                }
                // RFC 6409 4.3 / RFC 4954 5: submission needs AUTH first.
                if self.config.submission && self.authenticated.is_none() {
                    return self.reply(Reply::AuthRequired);
                }
                match command::parse_mail(line, args) {
                    // RFC 1870 6.1: refuse a declared size we would refuse anyway.
                    Ok(mail)
                        if mail
                            .size
                            .is_some_and(|n| n > self.config.max_message_size as u64) =>
                    {
                        self.reply(Reply::SizeExceeded)
                    }
                    // An authenticated user sends only as one of their own addresses.
                    Ok(mail)
                        if !mail.from.is_empty()
                            && self.authenticated.as_ref().is_some_and(|a| {
                                !a.senders.iter().any(|s| s.eq_ignore_ascii_case(&mail.from))
                            }) =>
                    {
                        self.reply(Reply::SenderNotOwned)
                    }
                    Ok(mail) => {
                        self.transaction = Some(Transaction {
                            mail_from: mail.from,
                            recipients: Vec::new(),
                            params: Vec::new(),
                            declared_size: mail.size,
                            ret: mail.ret,
                            envid: mail.envid,
                        });
                        self.reply(Reply::MailOk);
                    }
                    Err(reply) => self.reply(reply),
                }
            }
            Verb::Rcpt => {
                let Some(transaction) = self.transaction.as_ref() else {
                    return self.reply(Reply::NeedMail);
                };
                let full = transaction.recipients.len() >= self.config.max_recipients;
                match command::parse_rcpt(line, args) {
                    // RFC 5321 4.5.3.1.10: 452 for too many recipients.
                    Ok(_) if full => self.reply(Reply::TooManyRecipients),
                    Ok((address, params)) => {
                        self.actions.push_back(Action::CheckRecipient {
                            address: address.clone(),
                            declared_size: transaction.declared_size,
                        });
                        self.pending = Some(Pending::Rcpt { address, params });
                    }
                    Err(reply) => self.reply(reply),
                }
            }
            Verb::Data => {
                if !command::is_blank(args) {
                    return self.reply(Reply::DataSyntax);
                }
                match self.transaction.as_ref() {
                    None => self.reply(Reply::NeedMail),
                    Some(t) if t.recipients.is_empty() => self.reply(Reply::NoValidRecipients),
                    Some(_) => {
                        self.data = Some(Receiver::new(self.config.max_message_size));
                        self.reply(Reply::StartData);
                    }
                }
            }
            Verb::Rset => {
                self.transaction = None;
                self.reply(Reply::Ok);
            }
            Verb::Noop => self.reply(Reply::Ok),
            Verb::Quit => {
                let hostname = self.config.hostname.clone();
                self.reply(Reply::Closing { hostname });
                if !self.closed {
                    self.close();
                }
            }
            Verb::Vrfy if command::is_blank(args) => self.reply(Reply::VrfySyntax),
            Verb::Vrfy => self.reply(Reply::Vrfy),
            Verb::Help => self.reply(Reply::Help),
            Verb::StartTls => self.starttls(args),
            Verb::Auth => self.auth(args),
            Verb::NotImplemented => self.reply(Reply::NotImplemented),
            Verb::Unknown => self.reply(Reply::Unrecognized),
        }
    }
}

/// Base64 (RFC 4648) to UTF-8 text; None when either step fails. "=" is the empty response.
fn decode(response: &[u8]) -> Option<String> {
    if response == b"=" {
        return Some(String::new());
    }
    String::from_utf8(BASE64.decode(response).ok()?).ok()
}
