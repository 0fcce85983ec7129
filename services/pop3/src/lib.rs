//! Sans-io POP3 server session: RFC 1939 (POP3), RFC 2449 (CAPA, RESP-CODES), RFC 3206
//! (AUTH and SYS response codes), RFC 2595 (STLS) and RFC 5034 (AUTH PLAIN).
//!
//! The session owns the protocol state machine, the command syntax, every reply text and the
//! multi-line framing (byte-stuffing). It does no I/O, keeps no clock and knows nothing of the
//! store: the driver feeds received bytes with [`Session::feed`], takes [`Action`]s from
//! [`Session::poll`] and answers the ones that need the outside world (`Authenticate`,
//! `Fetch`, `Commit`, `StartTls`) with the matching `*_done` call. While an answer is pending
//! nothing further is processed, so pipelined commands (RFC 2449 PIPELINING) run in order.
//! It must never panic on any input: it is fuzzed.

mod answers;
pub mod body;
mod reply;

use std::collections::VecDeque;

pub use body::{Stuffer, TopCut};
pub use reply::Reply;

/// RFC 2449 §4: command lines are at most 255 octets including CRLF.
pub const MAX_LINE: usize = 255;
/// RFC 5034 §4: an AUTH exchange line may be longer than a command.
pub const MAX_AUTH_LINE: usize = 4096;
/// Default banner text; it names no product or version.
pub const DEFAULT_GREETING: &str = "POP3 server ready";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Banner text after `+OK `.
    pub greeting: String,
    /// Longest command line including CRLF.
    pub max_line: usize,
    /// A TLS acceptor exists: offer STLS while the connection is in clear.
    pub stls: bool,
    /// The connection is already TLS (implicit-TLS port).
    pub secure: bool,
    /// No password may cross in clear: USER/PASS and AUTH are neither advertised nor
    /// accepted before TLS (the seed's "SPA required").
    pub require_secure_auth: bool,
    /// RFC 2449 §6.7 EXPIRE before login: the cluster's retention, `per_user` when some
    /// domains have their own (`EXPIRE n USER`). After login the user's own value applies
    /// ([`Session::set_expire`]).
    pub expire: Expire,
    pub expire_per_user: bool,
    /// RFC 2449 §6.8 LOGIN-DELAY in seconds (the store enforces it); None: not advertised.
    pub login_delay: Option<u32>,
}

/// A retention policy as CAPA shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expire {
    /// Retrieved messages are never deleted by the server.
    #[default]
    Never,
    /// Retrieved messages are kept at least this many days after their first retrieval.
    Days(u64),
}

impl Expire {
    /// From a retention period: whole days, rounded up (a retention shorter than a day still
    /// keeps messages for a part of one; `EXPIRE 0` would tell clients to leave nothing).
    pub fn from_retention(retention: Option<std::time::Duration>) -> Expire {
        match retention {
            None => Expire::Never,
            Some(d) => Expire::Days(d.as_secs().div_ceil(86_400).max(1)),
        }
    }

    fn capability(self) -> String {
        match self {
            Expire::Never => "EXPIRE NEVER".into(),
            Expire::Days(n) => format!("EXPIRE {n}"),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            greeting: DEFAULT_GREETING.to_string(),
            max_line: MAX_LINE,
            stls: false,
            secure: false,
            require_secure_auth: false,
            expire: Expire::Never,
            expire_per_user: false,
            login_delay: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    pub uidl: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The maildrop snapshot, in order; message number = 1-based position.
    Ok {
        messages: Vec<MessageInfo>,
    },
    BadCredentials,
    Locked,
    InUse,
    TempFailure,
    /// RFC 2449 §8.1.1: logged in too recently.
    LoginDelay,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    Gone,
    TempFailure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitError {
    TempFailure,
    /// The maildrop lease was lost: nothing was deleted.
    LostLock,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the client.
    Send(Vec<u8>),
    /// Check credentials and open the maildrop; answer with [`Session::auth_done`].
    Authenticate { user: String, password: String },
    /// RETR/TOP: fetch the message (for TOP, `top` body lines are enough) and answer with
    /// [`Session::fetch_started`], [`Session::fetch_chunk`]s and [`Session::fetch_finished`]
    /// (or [`Session::fetch_failed`]); [`Session::fetch_done`] does all of it for a whole
    /// message.
    Fetch { uidl: String, top: Option<usize> },
    /// QUIT in the TRANSACTION state (RFC 1939 §6): remove the `delete` messages; `retrieved`
    /// were retrieved whole (RETR) in this session, which starts their retention period
    /// (RFC 2449 EXPIRE). Answer with [`Session::commit_done`]. Always emitted then, possibly
    /// with empty lists.
    Commit {
        delete: Vec<String>,
        retrieved: Vec<String>,
    },
    /// After `+OK Begin TLS negotiation`: flush, handshake, then [`Session::tls_started`].
    StartTls,
    /// Flush what was sent and close the connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Authorization,
    Transaction,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Auth,
    Fetch {
        /// Index of the message in the listing.
        index: usize,
        size: u64,
        top: Option<usize>,
        /// The `+OK` line was sent: from here a failure can only close the connection.
        started: bool,
        cut: Option<TopCut>,
        stuffer: Stuffer,
    },
    Commit {
        count: usize,
    },
    Tls,
}

/// What the next input line is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LineMode {
    Command,
    /// RFC 5034: the client's response to our `+ ` continuation of AUTH PLAIN.
    AuthResponse,
}

struct Message {
    info: MessageInfo,
    deleted: bool,
    /// Sent whole by RETR in this session.
    retrieved: bool,
}

pub struct Session {
    config: Config,
    state: State,
    input: Vec<u8>,
    /// Discarding the rest of an over-long line.
    skipping: bool,
    mode: LineMode,
    actions: VecDeque<Action>,
    pending: Option<Pending>,
    user: Option<String>,
    messages: Vec<Message>,
    /// The logged-in user's retention (CAPA in the TRANSACTION state).
    user_expire: Option<Expire>,
    /// Command lines processed (for the driver's metrics).
    commands: u64,
}

impl std::fmt::Debug for Session {
    // Hand-written so that buffered input (which may hold a password) is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state)
            .field("pending", &self.pending)
            .field("messages", &self.messages.len())
            .finish_non_exhaustive()
    }
}

fn parse_number(arg: &str) -> Option<usize> {
    if arg.is_empty() || arg.len() > 9 || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    arg.parse().ok()
}

impl Session {
    pub fn new(config: Config) -> Self {
        Session {
            config,
            state: State::Authorization,
            input: Vec::new(),
            skipping: false,
            mode: LineMode::Command,
            actions: VecDeque::new(),
            pending: None,
            user: None,
            messages: Vec::new(),
            user_expire: None,
            commands: 0,
        }
    }

    /// The retention of the user logging in (call before [`Session::auth_done`]): what CAPA
    /// shows from then on.
    pub fn set_expire(&mut self, expire: Expire) {
        self.user_expire = Some(expire);
    }

    /// Command lines processed so far (not SASL responses).
    pub fn commands(&self) -> u64 {
        self.commands
    }

    pub fn greeting(&self) -> Vec<u8> {
        Reply::Greeting(&self.config.greeting).to_bytes()
    }

    pub fn feed(&mut self, input: &[u8]) {
        if self.state != State::Closed {
            self.input.extend_from_slice(input);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub fn is_authenticated(&self) -> bool {
        self.state == State::Transaction
    }

    pub fn is_secure(&self) -> bool {
        self.config.secure
    }

    pub fn poll(&mut self) -> Option<Action> {
        loop {
            if let Some(a) = self.actions.pop_front() {
                return Some(a);
            }
            if self.pending.is_some() || self.state == State::Closed {
                return None;
            }
            let line = self.next_line()?;
            self.handle_line(line);
        }
    }

    /// True when credentials may be sent now (RFC 2595 §2.4 LOGINDISABLED semantics).
    fn login_allowed(&self) -> bool {
        self.config.secure || !self.config.require_secure_auth
    }

    fn send(&mut self, reply: Reply<'_>) {
        self.actions.push_back(Action::Send(reply.to_bytes()));
    }

    fn close_with(&mut self, reply: Reply<'_>) {
        self.send(reply);
        self.actions.push_back(Action::Close);
        self.state = State::Closed;
        self.input.clear();
    }

    /// Takes the next complete line (without CRLF) out of the buffer; handles over-long
    /// lines (reported once, then skipped up to the next LF).
    fn next_line(&mut self) -> Option<Result<String, Reply<'static>>> {
        let limit = match self.mode {
            LineMode::Command => self.config.max_line,
            LineMode::AuthResponse => MAX_AUTH_LINE,
        };
        loop {
            match self.input.iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    let raw: Vec<u8> = self.input.drain(..=pos).collect();
                    if self.skipping {
                        self.skipping = false;
                        continue;
                    }
                    if raw.len() > limit {
                        return Some(Err(Reply::LineTooLong));
                    }
                    let mut line = &raw[..raw.len() - 1];
                    if line.last() == Some(&b'\r') {
                        line = &line[..line.len() - 1];
                    }
                    if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
                        return Some(Err(Reply::InvalidCharacters));
                    }
                    return Some(
                        String::from_utf8(line.to_vec()).map_err(|_| Reply::InvalidCharacters),
                    );
                }
                None => {
                    if self.skipping {
                        self.input.clear();
                        return None;
                    }
                    if self.input.len() > limit {
                        self.input.clear();
                        self.skipping = true;
                        return Some(Err(Reply::LineTooLong));
                    }
                    return None;
                }
            }
        }
    }

    fn handle_line(&mut self, line: Result<String, Reply<'static>>) {
        if self.mode == LineMode::AuthResponse {
            self.mode = LineMode::Command;
            match line {
                Ok(l) => self.auth_plain_response(l.trim()),
                Err(_) => self.send(Reply::AuthDecode),
            }
            return;
        }
        match line {
            Ok(l) => self.command(&l),
            Err(reply) => self.send(reply),
        }
    }

    fn command(&mut self, line: &str) {
        self.commands += 1;
        let mut parts = line.split(' ').filter(|p| !p.is_empty());
        let verb = parts.next().unwrap_or("").to_ascii_uppercase();
        let args: Vec<&str> = parts.collect();
        match (self.state, verb.as_str()) {
            (_, "CAPA") => self.capa(&args),
            (_, "NOOP") if args.is_empty() => self.send(Reply::Ok),
            (_, "QUIT") if args.is_empty() => self.quit(),
            (_, "NOOP" | "QUIT") => self.send(Reply::NoArguments),
            (State::Authorization, "USER") => self.user(&args),
            (State::Authorization, "PASS") => self.pass(line),
            (State::Authorization, "STLS") => self.stls(&args),
            (State::Authorization, "AUTH") => self.auth(&args),
            (State::Authorization, "APOP") => self.send(Reply::NotSupported),
            (State::Transaction, "STAT") => self.stat(&args),
            (State::Transaction, "LIST") => self.list(&args, false),
            (State::Transaction, "UIDL") => self.list(&args, true),
            (State::Transaction, "RETR") => self.retr(&args),
            (State::Transaction, "TOP") => self.top(&args),
            (State::Transaction, "DELE") => self.dele(&args),
            (State::Transaction, "RSET") => self.rset(&args),
            (State::Authorization, "STAT" | "LIST" | "UIDL" | "RETR" | "TOP" | "DELE" | "RSET") => {
                self.send(Reply::NotAuthenticated)
            }
            (State::Transaction, "USER" | "PASS" | "STLS" | "AUTH" | "APOP") => {
                self.send(Reply::AlreadyAuthenticated)
            }
            _ => self.send(Reply::UnknownCommand),
        }
    }

    fn capa(&mut self, args: &[&str]) {
        if !args.is_empty() {
            return self.send(Reply::NoArguments);
        }
        let mut caps: Vec<String> = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
            .map(String::from)
            .into();
        // RFC 2449 §6.7/§6.8: `USER` only before login, where the value may differ per user.
        match (self.state, self.user_expire) {
            (State::Transaction, Some(expire)) => caps.push(expire.capability()),
            _ if self.config.expire_per_user => {
                caps.push(format!("{} USER", self.config.expire.capability()))
            }
            _ => caps.push(self.config.expire.capability()),
        }
        if let Some(delay) = self.config.login_delay {
            caps.push(format!("LOGIN-DELAY {delay}"));
        }
        if self.state == State::Authorization {
            if self.config.stls && !self.config.secure {
                caps.push("STLS".into());
            }
            if self.login_allowed() {
                caps.push("USER".into());
                caps.push("SASL PLAIN".into());
            }
        }
        let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
        self.send(Reply::Capabilities(&caps));
    }

    fn user(&mut self, args: &[&str]) {
        if !self.login_allowed() {
            return self.send(Reply::EncryptionRequired);
        }
        if args.len() != 1 {
            return self.send(Reply::UserSyntax);
        }
        self.user = Some(args[0].to_string());
        self.send(Reply::UserOk);
    }

    fn pass(&mut self, line: &str) {
        if !self.login_allowed() {
            return self.send(Reply::EncryptionRequired);
        }
        let Some(user) = self.user.take() else {
            return self.send(Reply::PassWithoutUser);
        };
        // RFC 1939 §7: the password is the rest of the line after "PASS " and may contain
        // spaces.
        let rest = line.trim_start();
        let password = rest.get(5..).unwrap_or("").to_string();
        if password.is_empty() {
            return self.send(Reply::PassSyntax);
        }
        self.start_auth(user, password);
    }

    fn start_auth(&mut self, user: String, password: String) {
        self.pending = Some(Pending::Auth);
        self.actions
            .push_back(Action::Authenticate { user, password });
    }

    /// RFC 2595 §4.
    fn stls(&mut self, args: &[&str]) {
        if !args.is_empty() {
            return self.send(Reply::NoArguments);
        }
        if self.config.secure {
            return self.send(Reply::AlreadyTls);
        }
        if !self.config.stls {
            return self.send(Reply::NotSupported);
        }
        self.send(Reply::BeginTls);
        self.actions.push_back(Action::StartTls);
        self.pending = Some(Pending::Tls);
    }

    /// RFC 5034: AUTH PLAIN [initial-response].
    fn auth(&mut self, args: &[&str]) {
        if args.is_empty() {
            // RFC 5034 §4 allows listing mechanisms this way; CAPA SASL is the standard place.
            return self.send(Reply::NotSupported);
        }
        if !self.login_allowed() {
            return self.send(Reply::EncryptionRequired);
        }
        if !args[0].eq_ignore_ascii_case("PLAIN") {
            return self.send(Reply::UnknownMechanism);
        }
        match args.get(1..) {
            Some([initial]) => self.auth_plain_response(initial),
            Some([]) => {
                self.mode = LineMode::AuthResponse;
                self.send(Reply::Continue);
            }
            _ => self.send(Reply::AuthDecode),
        }
    }

    fn auth_plain_response(&mut self, response: &str) {
        if response == "*" {
            return self.send(Reply::AuthCancelled);
        }
        let decoded = match base64_decode(response) {
            Some(d) => d,
            None => return self.send(Reply::AuthDecode),
        };
        // RFC 4616: [authzid] NUL authcid NUL passwd
        let parts: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
        let [authzid, user, password] = parts.as_slice() else {
            return self.send(Reply::AuthDecode);
        };
        let (Ok(authzid), Ok(user), Ok(password)) = (
            std::str::from_utf8(authzid),
            std::str::from_utf8(user),
            std::str::from_utf8(password),
        ) else {
            return self.send(Reply::AuthDecode);
        };
        if user.is_empty() || password.is_empty() || (!authzid.is_empty() && authzid != user) {
            return self.send(Reply::AuthDecode);
        }
        self.start_auth(user.to_string(), password.to_string());
    }

    /// Index of a live (not deleted) message from a message-number argument.
    fn message_arg(&self, arg: &str) -> Result<usize, Reply<'static>> {
        let n = parse_number(arg).ok_or(Reply::BadMessageNumber)?;
        match n
            .checked_sub(1)
            .and_then(|i| self.messages.get(i).map(|m| (i, m)))
        {
            Some((i, m)) if !m.deleted => Ok(i),
            Some(_) => Err(Reply::MessageDeleted),
            None => Err(Reply::NoSuchMessage),
        }
    }

    fn stat(&mut self, args: &[&str]) {
        if !args.is_empty() {
            return self.send(Reply::NoArguments);
        }
        let live = self.messages.iter().filter(|m| !m.deleted);
        let (count, size) = live.fold((0usize, 0u64), |(c, s), m| (c + 1, s + m.info.size));
        self.send(Reply::Stat { count, size });
    }

    fn list(&mut self, args: &[&str], uidl: bool) {
        match args {
            [] => {
                let mut lines = Vec::new();
                for (i, m) in self.messages.iter().enumerate().filter(|(_, m)| !m.deleted) {
                    lines.push(if uidl {
                        format!("{} {}", i + 1, m.info.uidl)
                    } else {
                        format!("{} {}", i + 1, m.info.size)
                    });
                }
                self.send(Reply::Listing(lines));
            }
            [arg] => match self.message_arg(arg) {
                Ok(i) => {
                    let m = &self.messages[i].info;
                    let text = if uidl {
                        format!("{} {}", i + 1, m.uidl)
                    } else {
                        format!("{} {}", i + 1, m.size)
                    };
                    self.send(Reply::OkText(text));
                }
                Err(r) => self.send(r),
            },
            _ => self.send(Reply::TooManyArguments),
        }
    }

    fn retr(&mut self, args: &[&str]) {
        let [arg] = args else {
            return self.send(Reply::OneMessageNumber);
        };
        match self.message_arg(arg) {
            Ok(i) => {
                self.start_fetch(i, None);
            }
            Err(r) => self.send(r),
        }
    }

    fn top(&mut self, args: &[&str]) {
        let [msg, lines] = args else {
            return self.send(Reply::TopSyntax);
        };
        let Some(lines) = parse_number(lines) else {
            return self.send(Reply::TopSyntax);
        };
        match self.message_arg(msg) {
            Ok(i) => {
                self.start_fetch(i, Some(lines));
            }
            Err(r) => self.send(r),
        }
    }

    fn start_fetch(&mut self, i: usize, top: Option<usize>) {
        let info = &self.messages[i].info;
        self.pending = Some(Pending::Fetch {
            index: i,
            size: info.size,
            top,
            started: false,
            cut: top.map(TopCut::new),
            stuffer: Stuffer::default(),
        });
        self.actions.push_back(Action::Fetch {
            uidl: info.uidl.clone(),
            top,
        });
    }

    fn dele(&mut self, args: &[&str]) {
        let [arg] = args else {
            return self.send(Reply::OneMessageNumber);
        };
        match self.message_arg(arg) {
            Ok(i) => {
                self.messages[i].deleted = true;
                self.send(Reply::Deleted(i + 1));
            }
            Err(r) => self.send(r),
        }
    }

    fn rset(&mut self, args: &[&str]) {
        if !args.is_empty() {
            return self.send(Reply::NoArguments);
        }
        for m in &mut self.messages {
            m.deleted = false;
        }
        self.stat(&[]);
    }

    fn quit(&mut self) {
        match self.state {
            State::Transaction => {
                let uidls = |keep: fn(&Message) -> bool| -> Vec<String> {
                    (self.messages.iter())
                        .filter(|m| keep(m))
                        .map(|m| m.info.uidl.clone())
                        .collect()
                };
                let delete = uidls(|m| m.deleted);
                // A deleted message's retention does not matter any more.
                let retrieved = uidls(|m| m.retrieved && !m.deleted);
                self.pending = Some(Pending::Commit {
                    count: delete.len(),
                });
                self.actions.push_back(Action::Commit { delete, retrieved });
            }
            _ => self.close_with(Reply::Bye),
        }
    }
}

/// Base64 (RFC 4648 §4); None on any malformed input.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("AGEAYg==").unwrap(), b"\0a\0b");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert!(base64_decode("YWJ").is_none());
        assert!(base64_decode("Y=Jj").is_none());
        assert!(base64_decode("YW=j").is_none());
    }
}
