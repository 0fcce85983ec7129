//! The SMTP client session as a state machine (sans-io): replies in, actions out. One value
//! per connection to one server; `connection.rs` moves the bytes, applies the timeouts and
//! does the TLS handshake this machine asks for.
//!
//! ```text
//! greeting ─220→ EHLO ─5xx→ HELO
//!                 │2xx
//!                 ├─ STARTTLS offered ─→ STARTTLS ─220→ (handshake) → EHLO again
//!                 ├─ relay credentials ─→ AUTH PLAIN | AUTH LOGIN (only over TLS)
//!                 └→ MAIL FROM → RCPT TO … → DATA ─354→ message "." → final reply → QUIT
//! ```
//! With PIPELINING (RFC 2920 §3.1) MAIL, every RCPT and DATA go in one write and their
//! replies are read in order; without it, one command per reply. DATA is sent only when a
//! RCPT was accepted; a pipelined DATA answered 354 with no recipient accepted gets an
//! empty message (a lone ".", §3.1), so nothing is delivered.
//!
//! Owns the per-recipient outcome of one attempt at one server, and the decision whether a
//! failure is final for this attempt or the next MX host should be tried: anything before
//! the transaction (connection, greeting, EHLO, TLS, AUTH, a 4xx to MAIL) moves on; the
//! server's answers to RCPT and DATA are final. A failure after the message was sent is
//! final too (Deferred): the server may have it, and trying another host now risks a second
//! copy.

use crate::client::{Envelope, Outcome, RecipientResult};
use crate::command::{self, MailParams};
use crate::ehlo::Capabilities;
use crate::reply::{Class, Reply};

/// Which reply the session waits for; picks the timeout (RFC 5321 §4.5.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    DataInit,
    DataEnd,
}

impl Phase {
    /// How a failure while in this phase is described ("… while waiting for …").
    pub fn waiting_for(self) -> &'static str {
        match self {
            Phase::Greeting => "the server greeting",
            Phase::Ehlo => "the reply to EHLO/HELO",
            Phase::StartTls => "the reply to STARTTLS",
            Phase::Auth => "the reply to AUTH",
            Phase::Mail => "the reply to MAIL FROM",
            Phase::Rcpt => "the reply to RCPT TO",
            Phase::DataInit => "the reply to DATA",
            Phase::DataEnd => "the reply to the end of data",
        }
    }
}

/// What the driver does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes, then read the next reply.
    Send(Vec<u8>),
    /// Nothing to write: read the next reply (pipelined replies are still due).
    Read,
    /// The server said 220 to STARTTLS: do the handshake, then call `tls_established`.
    StartTls,
    /// Write the message (dot-stuffed, then "."), then read the reply.
    SendMessage,
    /// Over: say QUIT (the connection is usable) and close.
    Quit,
}

/// Why a host could not take the recipients still pending: the next host is tried, and
/// when none is left this becomes their Deferred result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFailure {
    pub status: String,
    pub diagnostic: String,
    pub remote_mta: Option<String>,
}

/// The result of one session: final results by recipient index (into the envelope), and
/// when some recipients are left without one, why.
#[derive(Debug, Default)]
pub struct HostOutcome {
    pub results: Vec<(usize, RecipientResult)>,
    pub failure: Option<HostFailure>,
}

/// What the session needs to know besides the envelope.
#[derive(Debug, Clone)]
pub struct SessionParams<'a> {
    /// Our EHLO name.
    pub hostname: &'a str,
    /// The server's name for Remote-MTA and messages.
    pub remote: &'a str,
    pub require_tls: bool,
    /// Relay credentials (`user`, `password`): AUTH, and only over TLS.
    pub credentials: Option<(&'a str, &'a str)>,
    pub message_len: usize,
    pub eight_bit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Handshake,
    AuthPlain,
    AuthLoginUser,
    AuthLoginPassword,
    AuthLoginDone,
    Mail,
    /// Waiting for the reply to RCPT number n (of `pending`).
    Rcpt(usize),
    DataInit,
    /// Pipelined DATA got 354 with no recipient accepted: a lone "." was sent.
    EmptyData,
    DataEnd,
    Done,
}

pub struct Session<'a> {
    params: SessionParams<'a>,
    envelope: &'a Envelope,
    /// Indices into `envelope.recipients` attempted in this session.
    pending: Vec<usize>,
    state: State,
    caps: Capabilities,
    tls: bool,
    pipelined: bool,
    answered: bool,
    /// Parallel to `pending`: accepted at RCPT; the final result once known.
    accepted: Vec<bool>,
    results: Vec<Option<RecipientResult>>,
    failure: Option<HostFailure>,
}

impl<'a> Session<'a> {
    /// A session for the recipients `pending` of `envelope`; the first thing to do is read
    /// the greeting.
    pub fn new(params: SessionParams<'a>, envelope: &'a Envelope, pending: Vec<usize>) -> Self {
        let n = pending.len();
        Session {
            params,
            envelope,
            pending,
            state: State::Greeting,
            caps: Capabilities::default(),
            tls: false,
            pipelined: false,
            answered: false,
            accepted: vec![false; n],
            results: vec![None; n],
            failure: None,
        }
    }

    /// The reply being waited for, or `None` when the session is over.
    pub fn phase(&self) -> Option<Phase> {
        Some(match self.state {
            State::Greeting => Phase::Greeting,
            State::Ehlo | State::Helo => Phase::Ehlo,
            State::StartTls | State::Handshake => Phase::StartTls,
            State::AuthPlain
            | State::AuthLoginUser
            | State::AuthLoginPassword
            | State::AuthLoginDone => Phase::Auth,
            State::Mail => Phase::Mail,
            State::Rcpt(_) => Phase::Rcpt,
            State::DataInit => Phase::DataInit,
            State::EmptyData | State::DataEnd => Phase::DataEnd,
            State::Done => return None,
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether MAIL, RCPT and DATA went out in one write (RFC 2920).
    pub fn pipelined(&self) -> bool {
        self.pipelined
    }

    /// The session is over; its results.
    pub fn into_outcome(self) -> HostOutcome {
        let results = self
            .pending
            .iter()
            .zip(self.results)
            .filter_map(|(&i, r)| r.map(|r| (i, r)))
            .collect::<Vec<_>>();
        let failure = if results.len() < self.pending.len() {
            self.failure.or_else(|| {
                Some(HostFailure {
                    status: "4.4.2".into(),
                    diagnostic: "session ended without a result".into(),
                    remote_mta: None,
                })
            })
        } else {
            None
        };
        HostOutcome { results, failure }
    }

    /// One complete reply from the server.
    pub fn on_reply(&mut self, reply: Reply) -> Action {
        self.answered = true;
        match self.state {
            State::Greeting => {
                if reply.code == 220 {
                    self.state = State::Ehlo;
                    Action::Send(command::ehlo(self.params.hostname))
                } else {
                    // 554 or 421 instead of a greeting (RFC 5321 §3.1): another host may.
                    self.next_host_reply(&reply)
                }
            }
            State::Ehlo => match reply.class() {
                Class::Positive => {
                    self.caps = Capabilities::from_ehlo(&reply);
                    self.after_hello()
                }
                // RFC 5321 §4.1.1.1: a server that does not know EHLO; say HELO instead.
                Class::Permanent => {
                    self.state = State::Helo;
                    Action::Send(command::helo(self.params.hostname))
                }
                _ => self.next_host_reply(&reply),
            },
            State::Helo => {
                if reply.is_positive() {
                    self.caps = Capabilities::default();
                    self.after_hello()
                } else {
                    self.next_host_reply(&reply)
                }
            }
            State::StartTls => {
                if reply.code == 220 {
                    self.state = State::Handshake;
                    Action::StartTls
                } else if self.params.require_tls {
                    self.next_host_reply(&reply)
                } else {
                    // RFC 3207 §4: the session goes on without TLS (opportunistic,
                    // RFC 7435 §3); STARTTLS is not offered again.
                    self.caps.starttls = false;
                    self.after_hello()
                }
            }
            State::Handshake => self.next_host_text("4.4.2", "reply during the TLS handshake"),
            State::AuthPlain | State::AuthLoginDone => {
                if reply.is_positive() {
                    self.start_mail()
                } else {
                    self.next_host_reply(&reply)
                }
            }
            State::AuthLoginUser | State::AuthLoginPassword if reply.code == 334 => {
                let (user, password) = self.params.credentials.unwrap_or(("", ""));
                if self.state == State::AuthLoginUser {
                    self.state = State::AuthLoginPassword;
                    Action::Send(command::auth_response(user))
                } else {
                    self.state = State::AuthLoginDone;
                    Action::Send(command::auth_response(password))
                }
            }
            State::AuthLoginUser | State::AuthLoginPassword => self.next_host_reply(&reply),
            State::Mail => self.on_mail_reply(reply),
            State::Rcpt(n) => self.on_rcpt_reply(n, reply),
            State::DataInit => self.on_data_reply(reply),
            State::EmptyData => {
                self.state = State::Done;
                Action::Quit
            }
            State::DataEnd => {
                self.finish_accepted(&reply);
                self.state = State::Done;
                Action::Quit
            }
            State::Done => Action::Quit,
        }
    }

    /// The TLS handshake asked for by `Action::StartTls` succeeded: start over with EHLO
    /// (RFC 3207 §4.2: the client discards what it knew about the server).
    pub fn tls_established(&mut self) -> Action {
        self.tls = true;
        self.caps = Capabilities::default();
        self.state = State::Ehlo;
        Action::Send(command::ehlo(self.params.hostname))
    }

    /// The connection failed (closed, timed out, unreadable reply, TLS handshake failed)
    /// while in the current phase; `what` says how, for the diagnostic. The session is over
    /// and the connection is not to be used again.
    pub fn on_failure(&mut self, what: &str) {
        let remote_mta = self.remote_mta();
        match self.state {
            State::DataEnd => {
                // The message was (being) sent: the server may have it. Final, Deferred.
                let failure = RecipientResult {
                    address: String::new(),
                    outcome: Outcome::Deferred,
                    status: "4.4.2".into(),
                    diagnostic: what.to_string(),
                    remote_mta,
                };
                for i in 0..self.pending.len() {
                    if self.accepted[i] && self.results[i].is_none() {
                        self.set_result(i, failure.clone());
                    }
                }
            }
            State::Done => {}
            state => {
                let status = match state {
                    State::Greeting if !self.answered => "4.4.1",
                    State::Handshake => "4.7.5",
                    _ => "4.4.2",
                };
                self.failure = Some(HostFailure {
                    status: status.into(),
                    diagnostic: what.to_string(),
                    remote_mta,
                });
            }
        }
        self.state = State::Done;
    }

    fn remote_mta(&self) -> Option<String> {
        self.answered.then(|| self.params.remote.to_string())
    }

    fn after_hello(&mut self) -> Action {
        if !self.tls && self.caps.starttls {
            self.state = State::StartTls;
            return Action::Send(command::STARTTLS.to_vec());
        }
        if !self.tls && self.params.require_tls {
            return self.next_host_text(
                "4.7.10",
                "TLS is required but the server did not offer STARTTLS",
            );
        }
        if let Some((user, password)) = self.params.credentials {
            if !self.tls {
                return self.next_host_text(
                    "4.7.10",
                    "relay credentials are only sent over TLS, and the server did not offer STARTTLS",
                );
            }
            if self.caps.auth_plain {
                self.state = State::AuthPlain;
                return Action::Send(command::auth_plain(user, password));
            }
            if self.caps.auth_login {
                self.state = State::AuthLoginUser;
                return Action::Send(command::AUTH_LOGIN.to_vec());
            }
            return self.next_host_text(
                "4.7.0",
                "the relay offers no AUTH mechanism we use (PLAIN, LOGIN)",
            );
        }
        self.start_mail()
    }

    fn start_mail(&mut self) -> Action {
        // RFC 1870 §6: a message larger than the server's fixed maximum is refused before
        // it is sent; the server said so in EHLO, so this is that server's final answer.
        if let Some(max) = self.caps.size
            && max > 0
            && self.params.message_len as u64 > max
        {
            let result = RecipientResult {
                address: String::new(),
                outcome: Outcome::Failed,
                status: "5.3.4".into(),
                diagnostic: format!(
                    "message size {} exceeds the fixed maximum message size of {} ({max})",
                    self.params.message_len, self.params.remote
                ),
                remote_mta: self.remote_mta(),
            };
            for i in 0..self.pending.len() {
                self.set_result(i, result.clone());
            }
            self.state = State::Done;
            return Action::Quit;
        }
        let params = MailParams {
            size: self.caps.size.map(|_| self.params.message_len),
            // RFC 6152: declared when offered; without 8BITMIME the message goes as it is
            // (what Postfix does; converting it to 7 bit is not this client's business).
            eight_bit: self.params.eight_bit && self.caps.eight_bit_mime,
            ret: self.envelope.ret.filter(|_| self.caps.dsn),
            envid: self.envelope.envid.as_deref().filter(|_| self.caps.dsn),
        };
        let mut out = command::mail_from(&self.envelope.mail_from, &params);
        self.state = State::Mail;
        if self.caps.pipelining {
            // RFC 2920 §3.1: MAIL, RCPT… and DATA in one group; DATA is the last.
            self.pipelined = true;
            for &i in &self.pending {
                out.extend(command::rcpt_to(
                    &self.envelope.recipients[i],
                    self.caps.dsn,
                ));
            }
            out.extend_from_slice(command::DATA);
        }
        Action::Send(out)
    }

    fn rcpt_command(&self, n: usize) -> Vec<u8> {
        command::rcpt_to(&self.envelope.recipients[self.pending[n]], self.caps.dsn)
    }

    fn on_mail_reply(&mut self, reply: Reply) -> Action {
        match reply.class() {
            Class::Positive => {
                self.state = State::Rcpt(0);
                if self.pipelined {
                    Action::Read
                } else {
                    Action::Send(self.rcpt_command(0))
                }
            }
            Class::Permanent => {
                let result = self.reply_result(&reply, Outcome::Failed);
                for i in 0..self.pending.len() {
                    self.set_result(i, result.clone());
                }
                self.state = State::Done;
                Action::Quit
            }
            // The pipelined RCPTs and DATA are answered too, but QUIT ends it all anyway.
            _ => self.next_host_reply(&reply),
        }
    }

    fn on_rcpt_reply(&mut self, n: usize, reply: Reply) -> Action {
        match reply.class() {
            Class::Positive => self.accepted[n] = true,
            Class::Permanent => {
                let r = self.reply_result(&reply, Outcome::Failed);
                self.set_result(n, r);
            }
            _ => {
                let r = self.reply_result(&reply, Outcome::Deferred);
                self.set_result(n, r);
            }
        }
        let any_accepted = self.accepted.iter().any(|&a| a);
        if n + 1 < self.pending.len() {
            self.state = State::Rcpt(n + 1);
            if self.pipelined {
                Action::Read
            } else {
                Action::Send(self.rcpt_command(n + 1))
            }
        } else if self.pipelined {
            self.state = State::DataInit;
            Action::Read
        } else if any_accepted {
            self.state = State::DataInit;
            Action::Send(command::DATA.to_vec())
        } else {
            // Nobody to send to: every recipient has its answer. QUIT (no RSET needed).
            self.state = State::Done;
            Action::Quit
        }
    }

    fn on_data_reply(&mut self, reply: Reply) -> Action {
        let any_accepted = self.accepted.iter().any(|&a| a);
        if reply.code == 354 {
            if any_accepted {
                self.state = State::DataEnd;
                return Action::SendMessage;
            }
            // RFC 2920 §3.1: DATA accepted although no RCPT was: send an empty message.
            self.state = State::EmptyData;
            return Action::Send(command::END_OF_DATA.to_vec());
        }
        // DATA refused (with pipelining this is the normal answer when no RCPT was
        // accepted): the accepted recipients take this reply as their result.
        self.finish_accepted(&reply);
        self.state = State::Done;
        Action::Quit
    }

    /// The reply to the end of data (or a refused DATA) decides for every accepted recipient.
    fn finish_accepted(&mut self, reply: &Reply) {
        let outcome = match reply.class() {
            Class::Positive => Outcome::Delivered,
            Class::Permanent => Outcome::Failed,
            Class::Intermediate | Class::Transient => Outcome::Deferred,
        };
        let result = self.reply_result(reply, outcome);
        for i in 0..self.pending.len() {
            if self.accepted[i] && self.results[i].is_none() {
                self.set_result(i, result.clone());
            }
        }
    }

    fn reply_result(&self, reply: &Reply, outcome: Outcome) -> RecipientResult {
        RecipientResult {
            address: String::new(),
            outcome,
            status: reply.status(),
            diagnostic: reply.diagnostic(),
            remote_mta: self.remote_mta(),
        }
    }

    fn set_result(&mut self, n: usize, mut result: RecipientResult) {
        result
            .address
            .clone_from(&self.envelope.recipients[self.pending[n]].address);
        self.results[n] = Some(result);
    }

    fn next_host_reply(&mut self, reply: &Reply) -> Action {
        self.failure = Some(HostFailure {
            status: match reply.class() {
                // A 5xx here (greeting, EHLO, AUTH) is about this host, not the
                // recipients: another host may take them, so it is not final.
                Class::Permanent => format!("4{}", &reply.status()[1..]),
                _ => reply.status(),
            },
            diagnostic: reply.diagnostic(),
            remote_mta: self.remote_mta(),
        });
        self.state = State::Done;
        Action::Quit
    }

    fn next_host_text(&mut self, status: &str, text: &str) -> Action {
        self.failure = Some(HostFailure {
            status: status.into(),
            diagnostic: format!("{}: {text}", self.params.remote),
            remote_mta: self.remote_mta(),
        });
        self.state = State::Done;
        Action::Quit
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
