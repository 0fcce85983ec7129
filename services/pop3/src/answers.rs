//! The driver's answers to the session's [`Action`]s: the outcome of a login, the pieces of
//! a fetched message, the result of a commit, TLS being up, and shutdown.

use super::*;

impl Session {
    pub fn auth_done(&mut self, outcome: AuthOutcome) {
        if self.pending != Some(Pending::Auth) {
            return;
        }
        self.pending = None;
        match outcome {
            AuthOutcome::Ok { messages } => {
                self.messages = messages
                    .into_iter()
                    .map(|info| Message {
                        info,
                        deleted: false,
                        retrieved: false,
                    })
                    .collect();
                self.state = State::Transaction;
                let count = self.messages.len();
                let size = self.messages.iter().map(|m| m.info.size).sum();
                self.send(Reply::LoggedIn { count, size });
            }
            AuthOutcome::BadCredentials => self.send(Reply::BadCredentials),
            AuthOutcome::Locked => self.send(Reply::Locked),
            AuthOutcome::InUse => self.send(Reply::InUse),
            AuthOutcome::TempFailure => self.send(Reply::TempFailure),
            AuthOutcome::LoginDelay => self.send(Reply::LoginDelay),
        }
        if self.state != State::Transaction {
            self.user_expire = None;
        }
    }

    /// The whole message at once (or the failure): started, one chunk, finished.
    pub fn fetch_done(&mut self, result: Result<Vec<u8>, FetchError>) {
        match result {
            Ok(message) => {
                self.fetch_started();
                self.fetch_chunk(&message);
                self.fetch_finished();
            }
            Err(e) => self.fetch_failed(e),
        }
    }

    /// The message exists and its first chunk is coming: the `+OK` line.
    pub fn fetch_started(&mut self) {
        let Some(Pending::Fetch {
            size, top, started, ..
        }) = &mut self.pending
        else {
            return;
        };
        if *started {
            return;
        }
        *started = true;
        let reply = match top {
            None => Reply::RetrHeader(*size),
            Some(_) => Reply::Ok,
        };
        self.send(reply);
    }

    /// The next chunk of the message. Returns false when no more is wanted (TOP has its lines).
    pub fn fetch_chunk(&mut self, chunk: &[u8]) -> bool {
        let Some(Pending::Fetch {
            started: true,
            cut,
            stuffer,
            ..
        }) = &mut self.pending
        else {
            return false;
        };
        let part = match cut {
            Some(cut) => cut.cut(chunk),
            None => chunk,
        };
        let mut out = Vec::new();
        stuffer.push(part, &mut out);
        let more = !cut.as_ref().is_some_and(TopCut::is_done);
        if !out.is_empty() {
            self.actions.push_back(Action::Send(out));
        }
        more
    }

    /// The message is complete: the terminating line.
    pub fn fetch_finished(&mut self) {
        let Some(Pending::Fetch {
            index,
            top,
            started: true,
            stuffer,
            ..
        }) = &mut self.pending
        else {
            return;
        };
        let mut out = Vec::new();
        stuffer.finish(&mut out);
        if top.is_none()
            && let Some(m) = self.messages.get_mut(*index)
        {
            m.retrieved = true;
        }
        self.pending = None;
        self.actions.push_back(Action::Send(out));
    }

    /// The message could not be read. Before the `+OK` line that is an `-ERR`; after it the
    /// response cannot be ended honestly, so the connection is closed (the client sees no
    /// terminating dot and knows the message is incomplete).
    pub fn fetch_failed(&mut self, error: FetchError) {
        let Some(Pending::Fetch { started, .. }) = &self.pending else {
            return;
        };
        let started = *started;
        self.pending = None;
        match (started, error) {
            (true, _) => {
                self.state = State::Closed;
                self.actions.push_back(Action::Close);
            }
            (false, FetchError::Gone) => self.send(Reply::NoSuchMessage),
            (false, FetchError::TempFailure) => self.send(Reply::TempFailure),
        }
    }

    pub fn commit_done(&mut self, result: Result<(), CommitError>) {
        let Some(Pending::Commit { count }) = self.pending.clone() else {
            return;
        };
        self.pending = None;
        match result {
            Ok(()) => self.close_with(Reply::ByeDeleted(count)),
            Err(CommitError::TempFailure) => self.close_with(Reply::CommitFailed),
            Err(CommitError::LostLock) => self.close_with(Reply::LostLock),
        }
    }

    /// The server is stopping and this session's time is up: `-ERR [SYS/TEMP]`, then close.
    /// RFC 1939 §6: only QUIT in the TRANSACTION state enters the UPDATE state, so this
    /// emits no [`Action::Commit`] — messages marked with DELE stay in the maildrop (the
    /// driver only releases its lease). An answer still outstanding is abandoned.
    pub fn shutdown(&mut self) {
        if self.state == State::Closed {
            return;
        }
        self.pending = None;
        self.actions.clear();
        self.close_with(Reply::ShuttingDown);
    }

    /// RFC 2595 §4: after the handshake the client starts over; anything it sent in clear after
    /// STLS is discarded unread (CVE-2011-0411 class).
    pub fn tls_started(&mut self) {
        if self.pending != Some(Pending::Tls) {
            return;
        }
        self.pending = None;
        self.input.clear();
        self.skipping = false;
        self.user = None;
        self.config.secure = true;
    }
}
