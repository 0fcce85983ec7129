//! One connection to one server: connects, reads replies, writes what the session asks for,
//! and does the TLS handshake — each step under its RFC 5321 §4.5.3.2 timeout. The protocol
//! decisions are all `session.rs`; this module only moves bytes and turns I/O failures into
//! words for the diagnostic.
//!
//! Must not leave a connection half-used: after any failure the session is told and the
//! socket is dropped; after a normal end QUIT is said (its reply awaited briefly).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use crate::client::{ClientConfig, Envelope, Timeouts};
use crate::command::{self, DotStuffer};
use crate::reply::{Reply, ReplyReader};
use crate::session::{Action, HostFailure, HostOutcome, Phase, Session, SessionParams};
use crate::tls;

/// The message goes out in blocks of this size, each under the data-block timeout.
const BLOCK: usize = 64 * 1024;
/// QUIT's reply is waited for at most this long (the mail is already decided).
const QUIT_WAIT: Duration = Duration::from_secs(10);

/// One attempt at one address of one host for the recipients `pending` (indices into
/// `envelope.recipients`).
pub async fn attempt(
    config: &ClientConfig,
    host: &str,
    addr: SocketAddr,
    credentials: Option<(&str, &str)>,
    envelope: &Envelope,
    pending: Vec<usize>,
    message: &[u8],
) -> HostOutcome {
    let peer = format!("{host}[{}]:{}", addr.ip(), addr.port());
    let tcp = match timeout(config.timeouts.connect, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return connect_failed(&peer, &e.to_string()),
        Err(_) => return connect_failed(&peer, "connection timed out"),
    };
    let _ = tcp.set_nodelay(true);
    let params = SessionParams {
        hostname: &config.hostname,
        remote: host,
        require_tls: config.require_tls,
        credentials,
        message_len: message.len(),
        eight_bit: command::is_eight_bit(message),
    };
    let mut session = Session::new(params, envelope, pending);
    let mut conn = Connection {
        stream: Some(Either::Left(tcp)),
        reader: ReplyReader::new(),
        buf: vec![0; 16 * 1024],
        timeouts: config.timeouts,
        peer,
        host: host.to_string(),
        addr,
    };
    conn.run(&mut session, message).await;
    tracing::debug!(peer = %conn.peer, tls = session.is_tls(), pipelined = session.pipelined(), "session ended");
    session.into_outcome()
}

fn connect_failed(peer: &str, why: &str) -> HostOutcome {
    HostOutcome {
        results: Vec::new(),
        failure: Some(HostFailure {
            // RFC 3463 X.4.1: no answer from host.
            status: "4.4.1".into(),
            diagnostic: format!("connect to {peer}: {why}"),
            remote_mta: None,
        }),
    }
}

struct Connection {
    /// `None` only after STARTTLS took the plain stream and the handshake failed.
    stream: Option<Stream>,
    reader: ReplyReader,
    buf: Vec<u8>,
    timeouts: Timeouts,
    peer: String,
    host: String,
    addr: SocketAddr,
}

impl Connection {
    async fn run(&mut self, session: &mut Session<'_>, message: &[u8]) {
        let mut action = Action::Read;
        loop {
            let Some(phase) = session.phase() else {
                // Only Quit ends a session without a failure.
                self.quit().await;
                return;
            };
            let wait = self.reply_timeout(phase);
            let step = match action {
                Action::Send(bytes) => self.write(&bytes, wait, phase).await,
                Action::Read => Ok(()),
                Action::SendMessage => self.send_message(message, phase).await,
                Action::StartTls => match self.start_tls().await {
                    Ok(()) => {
                        action = session.tls_established();
                        continue;
                    }
                    Err(e) => Err(e),
                },
                Action::Quit => {
                    self.quit().await;
                    return;
                }
            };
            if let Err(what) = step {
                session.on_failure(&what);
                return;
            }
            match self.read_reply(wait, phase).await {
                Ok(reply) => {
                    tracing::trace!(peer = %self.peer, %reply, "reply");
                    action = session.on_reply(reply);
                }
                Err(what) => {
                    session.on_failure(&what);
                    return;
                }
            }
        }
    }

    fn reply_timeout(&self, phase: Phase) -> Duration {
        let t = &self.timeouts;
        match phase {
            Phase::Greeting => t.greeting,
            Phase::Ehlo | Phase::StartTls | Phase::Auth => t.ehlo,
            Phase::Mail => t.mail,
            Phase::Rcpt => t.rcpt,
            Phase::DataInit => t.data_init,
            Phase::DataEnd => t.data_end,
        }
    }

    async fn write(&mut self, bytes: &[u8], wait: Duration, phase: Phase) -> Result<(), String> {
        match timeout(wait, write_flush(self.stream.as_mut(), bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.io_failure(&e, phase)),
            Err(_) => Err(format!(
                "conversation with {} timed out while sending before {}",
                self.peer,
                phase.waiting_for()
            )),
        }
    }

    /// The message, dot-stuffed, then ".": each block under the data-block timeout.
    async fn send_message(&mut self, message: &[u8], phase: Phase) -> Result<(), String> {
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::with_capacity(BLOCK + BLOCK / 8);
        for chunk in message.chunks(BLOCK) {
            out.clear();
            stuffer.push(chunk, &mut out);
            self.write_block(&out, phase).await?;
        }
        out.clear();
        stuffer.finish(&mut out);
        self.write_block(&out, phase).await
    }

    async fn write_block(&mut self, block: &[u8], phase: Phase) -> Result<(), String> {
        match timeout(
            self.timeouts.data_block,
            write_flush(self.stream.as_mut(), block),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.io_failure(&e, phase)),
            Err(_) => Err(format!(
                "conversation with {} timed out while sending the message",
                self.peer
            )),
        }
    }

    async fn read_reply(&mut self, wait: Duration, phase: Phase) -> Result<Reply, String> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(reply) = self.reader.next_reply() {
                return Ok(reply);
            }
            let n = match timeout_at(deadline, read_some(self.stream.as_mut(), &mut self.buf)).await
            {
                Ok(Ok(0)) => {
                    return Err(format!(
                        "lost connection with {} while waiting for {}",
                        self.peer,
                        phase.waiting_for()
                    ));
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(self.io_failure(&e, phase)),
                Err(_) => {
                    return Err(format!(
                        "conversation with {} timed out while waiting for {}",
                        self.peer,
                        phase.waiting_for()
                    ));
                }
            };
            if let Err(e) = self.reader.feed(&self.buf[..n]) {
                return Err(format!("{} sent an invalid reply: {e}", self.peer));
            }
        }
    }

    fn io_failure(&self, e: &io::Error, phase: Phase) -> String {
        format!(
            "error talking to {} while waiting for {}: {e}",
            self.peer,
            phase.waiting_for()
        )
    }

    /// RFC 3207 §4.2: the handshake right after the 220; nothing the server sent before it
    /// may be used after it (§5: a reply pipelined behind the 220 would be an injection).
    async fn start_tls(&mut self) -> Result<(), String> {
        if self.reader.has_partial() || self.reader.next_reply().is_some() {
            return Err(format!(
                "{} sent more than its reply to STARTTLS before the handshake",
                self.peer
            ));
        }
        let fail = |why: String| format!("TLS handshake with {} failed: {why}", self.peer);
        let config = tls::client_config().map_err(|e| fail(e.to_string()))?;
        let Some(Either::Left(tcp)) = self.stream.take() else {
            return Err(fail("not a plain connection".into()));
        };
        let name = tls::server_name(&self.host, self.addr.ip());
        let handshake = TlsConnector::from(config).connect(name, tcp);
        match timeout(self.timeouts.ehlo, handshake).await {
            Ok(Ok(tls)) => {
                self.stream = Some(Either::Right(Box::new(tls)));
                self.reader = ReplyReader::new();
                Ok(())
            }
            Ok(Err(e)) => Err(fail(e.to_string())),
            Err(_) => Err(fail("timed out".into())),
        }
    }

    /// RFC 5321 §4.1.1.10: QUIT, and its reply for a short while; failures do not matter.
    async fn quit(&mut self) {
        let wait = self.timeouts.ehlo.min(QUIT_WAIT);
        if let Ok(Ok(())) = timeout(wait, write_flush(self.stream.as_mut(), command::QUIT)).await {
            let _ = self.read_reply(wait, Phase::Ehlo).await;
        }
        if let Some(stream) = self.stream.as_mut() {
            let _ = timeout(wait, stream.shutdown()).await;
        }
    }
}

/// Writes and flushes (a TLS stream may hold written bytes until flushed).
async fn write_flush(stream: Option<&mut Stream>, bytes: &[u8]) -> io::Result<()> {
    let stream = stream.ok_or_else(closed)?;
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// The connection before STARTTLS (left) and after it (right).
type Stream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

/// Reads into `buf`; `None` is the stream a failed handshake consumed.
async fn read_some(stream: Option<&mut Stream>, buf: &mut [u8]) -> io::Result<usize> {
    stream.ok_or_else(closed)?.read(buf).await
}
