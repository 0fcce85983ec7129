//! TLS for the mail ports (rustls with its default aws-lc-rs provider, the one crypto
//! provider in the process): STARTTLS/STLS upgrades and implicit-TLS listeners share one
//! acceptor. With no `--tls-cert/--tls-key`, a self-signed certificate for the host name is
//! generated at start (rcgen) and a warning is logged. [`Certificates`] holds the acceptor
//! and replaces it when the PEM files change (SIGHUP, or a new modification time).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Builds the acceptor from PEM files, or from a fresh self-signed certificate.
pub fn acceptor(
    cert: Option<&str>,
    key: Option<&str>,
    hostname: &str,
) -> anyhow::Result<TlsAcceptor> {
    let (chain, key) = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| anyhow::anyhow!("--tls-cert {cert}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("--tls-cert {cert}: {e}"))?;
            if chain.is_empty() {
                anyhow::bail!("--tls-cert {cert}: no certificate in the file");
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| anyhow::anyhow!("--tls-key {key}: {e}"))?;
            (chain, key)
        }
        (None, None) => {
            tracing::warn!(%hostname, "no --tls-cert/--tls-key given: using a self-signed certificate generated at start; clients will not trust it");
            let cert = rcgen::generate_simple_self_signed(vec![hostname.to_string()])?;
            let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der())
                .map_err(|e| anyhow::anyhow!("generated key: {e}"))?;
            (vec![cert.cert.der().clone()], key)
        }
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// How often the PEM files' modification times are looked at.
pub const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// The node's TLS acceptor, replaceable while it runs: `--tls-cert`/`--tls-key` are read
/// again on SIGHUP and whenever either file's modification time changes (looked at every
/// [`RELOAD_CHECK`]), so a renewed certificate (certbot, a secrets volume) serves the next
/// handshake without a restart; connections already in TLS keep theirs. A reload that fails
/// (a half-written file, a key that does not match) keeps the current certificate and logs
/// why, so a bad file never takes TLS down.
pub struct Certificates {
    current: RwLock<TlsAcceptor>,
    files: Option<(String, String)>,
    hostname: String,
    /// Modification times of the files as last loaded.
    loaded: RwLock<Option<(SystemTime, SystemTime)>>,
}

impl Certificates {
    pub fn load(
        cert: Option<&str>,
        key: Option<&str>,
        hostname: &str,
    ) -> anyhow::Result<Arc<Certificates>> {
        let files = cert.zip(key).map(|(c, k)| (c.to_string(), k.to_string()));
        let stamp = files.as_ref().and_then(|(c, k)| modified(c, k));
        Ok(Arc::new(Certificates {
            current: RwLock::new(acceptor(cert, key, hostname)?),
            files,
            hostname: hostname.to_string(),
            loaded: RwLock::new(stamp),
        }))
    }

    /// The acceptor for the next handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the files again; `Ok(false)` when there are none (self-signed).
    pub fn reload(&self) -> anyhow::Result<bool> {
        let Some((cert, key)) = &self.files else {
            return Ok(false);
        };
        // Remembered even when the files are bad, so that they are not tried again every few
        // seconds; the next change (or SIGHUP) tries again.
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = modified(cert, key);
        let fresh = acceptor(Some(cert), Some(key), &self.hostname)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(true)
    }

    fn changed(&self) -> bool {
        let Some((cert, key)) = &self.files else {
            return false;
        };
        let now = modified(cert, key);
        now.is_some() && now != *self.loaded.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Reloads on SIGHUP and on a file change, for as long as the process runs.
    pub fn watch(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut hup = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::hangup(),
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "no SIGHUP handler; TLS files are reloaded on change only");
                    None
                }
            };
            let mut tick = tokio::time::interval(RELOAD_CHECK);
            loop {
                let why = tokio::select! {
                    Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => "SIGHUP",
                    _ = tick.tick() => {
                        if !this.changed() {
                            continue;
                        }
                        "file change"
                    }
                };
                match this.reload() {
                    Ok(true) => tracing::info!(why, "TLS certificate reloaded"),
                    Ok(false) => {
                        tracing::info!(why, "no --tls-cert/--tls-key to reload (self-signed)")
                    }
                    Err(e) => {
                        tracing::error!(why, error = %e, "TLS certificate NOT reloaded; the current one stays")
                    }
                }
            }
        });
    }
}

fn modified(cert: &str, key: &str) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &str| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

/// A client connection: plain TCP, or TLS (implicit, or after STARTTLS/STLS).
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only during an upgrade; never seen by I/O.
    Upgrading,
}

impl Conn {
    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }

    /// STARTTLS/STLS: the TLS handshake on the same TCP connection, within `limit` (a client
    /// that sends STARTTLS and then nothing must not hold the connection, like an implicit-TLS
    /// client that never starts its handshake). Whatever the client sent in plaintext after
    /// the command and before the handshake is the session's to discard; bytes still in the
    /// socket are read by the handshake and make it fail.
    pub async fn upgrade(&mut self, acceptor: &TlsAcceptor, limit: Duration) -> io::Result<()> {
        match std::mem::replace(self, Conn::Upgrading) {
            Conn::Plain(tcp) => {
                let tls = handshake(acceptor, tcp, limit).await?;
                *self = Conn::Tls(Box::new(tls));
                Ok(())
            }
            other => {
                *self = other;
                Err(io::Error::other("connection is already TLS"))
            }
        }
    }
}

/// The server side of a TLS handshake (implicit TLS, STARTTLS, STLS), within `limit`.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    limit: Duration,
) -> io::Result<TlsStream<TcpStream>> {
    match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no TLS handshake within {limit:?}"),
        )),
    }
}

impl Conn {
    /// STARTTLS/STLS in the drivers: send the pending replies (the "go ahead" included), then
    /// the handshake. `false`: the handshake failed and the connection is over.
    pub async fn start_tls(
        &mut self,
        out: &mut Vec<u8>,
        acceptor: &TlsAcceptor,
        limit: Duration,
    ) -> io::Result<bool> {
        use tokio::io::AsyncWriteExt;
        self.write_all(out).await?;
        out.clear();
        self.flush().await?;
        match self.upgrade(acceptor, limit).await {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake after STARTTLS/STLS failed");
                Ok(false)
            }
        }
    }

    /// The driver loops' shared step: send the pending replies, then wait for more input.
    /// A client that stayed silent past `idle` is told `idle_reply` and the input has
    /// [`Input::Ended`]; once `stop` is cancelled (the node's drain deadline) the wait ends
    /// with [`Input::Stop`] instead, even with input available, so the driver can say goodbye.
    pub async fn flush_and_read(
        &mut self,
        out: &mut Vec<u8>,
        buf: &mut [u8],
        idle: Duration,
        idle_reply: &[u8],
        stop: &CancellationToken,
    ) -> io::Result<Input> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if !out.is_empty() {
            self.write_all(out).await?;
            out.clear();
        }
        let read = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(Input::Stop),
            read = tokio::time::timeout(idle, self.read(buf)) => read,
        };
        match read {
            Ok(Ok(0)) => Ok(Input::Ended),
            Ok(Ok(n)) => Ok(Input::Bytes(n)),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                self.write_all(idle_reply).await.ok();
                Ok(Input::Ended)
            }
        }
    }
}

/// What waiting for client input ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// This many bytes arrived in the buffer.
    Bytes(usize),
    /// The client closed, or stayed silent too long (and was told so): the connection is over.
    Ended,
    /// The node is stopping: the session must say goodbye and close.
    Stop,
}

fn upgrading() -> io::Error {
    io::Error::other("I/O during TLS upgrade")
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}
