//! mailroot front-end node: speaks POP3 and SMTP to mail clients and gRPC to the store.
//! It holds NO mail state — it can be killed and started anywhere.
//!
//! # Layout
//! - `config.rs`       — `FrontendConfig` (flags + `MAILROOT_*` env) and the `DEFAULT_*`/timeouts.
//! - `store_client.rs` — gRPC client: auth GUID stamping, reconnects, `backon` retries.
//! - `replies.rs`      — the ONE table from store answers to POP3/SMTP verdicts.
//! - `smtp_conn.rs`    — drives `smtp::Session` (services/smtp) over a socket; trace headers.
//! - `dkim.rs`         — DKIM signing of submitted mail with the From: domain's key.
//! - `delivery.rs`     — outbound delivery workers: claim queue entries, deliver, report.
//! - `pop3_conn.rs`    — drives `pop3::Session` (services/pop3) over a socket.
//! - `proxy.rs`        — PROXY protocol v2 from the load balancer (real client addresses).
//! - `recipients.rs`   — RCPT answers cached per directory version (no store call per RCPT).
//! - `tls.rs`          — the rustls acceptor (PEM or self-signed) and the upgradable `Conn`.
//! - `drain.rs`        — graceful stop: the connection tasks and the drain deadline.
//! - `presence.rs`     — this node in `mailrootctl nodes`: identity and session reports.
//! - `health.rs`       — `/readyz`: store reachable, settings stream live, not draining.
//! - `metrics.rs`      — metric names and descriptions, the per-connection `Meter`.
//! - `lib.rs`          — `Node` (shared per-process state), `Service` and the accept loops.

pub mod config;
pub mod delivery;
pub mod dkim;
pub mod drain;
pub mod health;
pub mod metrics;
pub mod pop3_conn;
pub mod presence;
pub mod proxy;
pub mod recipients;
pub mod replies;
pub mod smtp_conn;
pub mod store_client;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use proto::v1::Settings;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::FrontendConfig;
pub use store_client::StoreClient;

/// What every connection of this node shares.
pub struct Node {
    pub config: FrontendConfig,
    pub store: StoreClient,
    /// Cluster-wide settings as last pushed by the store.
    pub settings: watch::Receiver<Settings>,
    /// For STARTTLS/STLS and the implicit-TLS listeners (reloaded on SIGHUP or file change).
    pub tls: Arc<tls::Certificates>,
    /// Load balancers whose connections start with a PROXY v2 header.
    pub proxy_from: Vec<ipnet::IpNet>,
    /// Clients exempt from the per-IP connection limit.
    pub trusted: Vec<ipnet::IpNet>,
    /// Message bytes this node may hold in memory at once (one permit per octet).
    pub inflight: tokio::sync::Semaphore,
    pub recipients: recipients::RecipientCache,
    /// The connection tasks and the deadline a graceful stop gives them.
    pub drain: drain::Drain,
    /// Who this node is in `mailrootctl nodes`.
    pub identity: presence::Identity,
    /// What `/readyz` answers (`health.rs`).
    pub health: Arc<health::Health>,
    connections: Mutex<Connections>,
    /// The open connections per protocol, for the store's node list (`presence.rs`).
    sessions: watch::Sender<presence::Sessions>,
}

#[derive(Default)]
struct Connections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    sessions: presence::Sessions,
}

impl Connections {
    fn count(&mut self, pop3: bool, up: bool) {
        let n = if pop3 {
            &mut self.sessions.pop3
        } else {
            &mut self.sessions.smtp
        };
        *n = if up { *n + 1 } else { n.saturating_sub(1) };
    }
}

/// A counted client connection; dropping it gives the slot back.
pub struct Slot {
    node: Arc<Node>,
    ip: IpAddr,
    pop3: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self
            .node
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
        c.count(self.pop3, false);
        self.node.sessions.send_replace(c.sessions);
    }
}

impl Node {
    /// A node whose settings follow the store's `WatchSettings` stream (reconnecting forever)
    /// and which reports its session counts to the store; `listeners` are shown in
    /// `mailrootctl nodes`.
    pub fn new(
        config: FrontendConfig,
        store: StoreClient,
        tls: Arc<tls::Certificates>,
        listeners: &[(Service, SocketAddr)],
    ) -> Arc<Node> {
        let identity =
            presence::Identity::new(config.node_id.as_deref(), &config.hostname, listeners);
        let (tx, rx) = watch::channel(Settings::default());
        let health = Arc::new(health::Health::default());
        tokio::spawn(follow_settings(
            store.clone(),
            identity.clone(),
            tx,
            health.clone(),
        ));
        let (sessions, sessions_rx) = watch::channel(presence::Sessions::default());
        tokio::spawn(presence::report(
            store.clone(),
            identity.id.clone(),
            sessions_rx,
        ));
        let proxy_from = proxy::parse_networks("proxy-protocol-from", &config.proxy_protocol_from)
            .unwrap_or_default();
        let trusted =
            proxy::parse_networks("trusted-networks", &config.trusted_networks).unwrap_or_default();
        Arc::new(Node {
            inflight: tokio::sync::Semaphore::new(config.max_inflight_bytes),
            recipients: recipients::RecipientCache::default(),
            drain: drain::Drain::default(),
            health,
            config,
            store,
            settings: rx,
            tls,
            proxy_from,
            trusted,
            identity,
            connections: Mutex::new(Connections::default()),
            sessions,
        })
    }

    /// `/readyz`: `Err(reason)` while clients should go to another node (`health.rs`).
    pub fn readiness(&self) -> Result<(), String> {
        self.health.readiness(self.store.reachable())
    }

    /// Takes a connection slot for a `service` client, or None when the node or the client
    /// IP is at its limit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, service: Service) -> Option<Slot> {
        let mut c = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        let trusted = self.trusted.iter().any(|n| n.contains(&ip));
        if c.total >= self.config.max_connections
            || (!trusted && from_ip >= self.config.max_connections_per_ip)
        {
            return None;
        }
        c.total += 1;
        *c.per_ip.entry(ip).or_default() += 1;
        c.count(service.is_pop3(), true);
        self.sessions.send_replace(c.sessions);
        Some(Slot {
            node: self.clone(),
            ip,
            pop3: service.is_pop3(),
        })
    }

    /// Reserves `bytes` of the node's in-flight budget without waiting; None when it is spent.
    pub fn reserve_memory(&self, bytes: usize) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let n = u32::try_from(bytes).ok()?;
        self.inflight.try_acquire_many(n).ok()
    }

    /// RCPT: the store's answer, from the cache when the directory has not changed since.
    pub async fn check_recipient(
        &self,
        address: &str,
        size: u64,
    ) -> Result<proto::v1::CheckRecipientReply, tonic::Status> {
        if size > 0 {
            return self.store.check_recipient(address, size).await;
        }
        let version = self.settings.borrow().directory_version;
        if version == recipients::UNKNOWN_VERSION {
            return self.store.check_recipient(address, 0).await;
        }
        if let Some(reply) = self.recipients.get(address, version) {
            return Ok(reply);
        }
        let reply = self.store.check_recipient(address, 0).await?;
        // A directory's answer changes without a directory version (`recipients.rs`).
        if !reply.no_cache {
            self.recipients.put(address, version, &reply);
        }
        Ok(reply)
    }

    pub fn idle_timeout(&self, service: Service) -> Duration {
        match (self.config.idle_timeout, service.is_pop3()) {
            (Some(secs), _) => Duration::from_secs(secs),
            (None, true) => config::POP3_IDLE_TIMEOUT,
            (None, false) => config::SMTP_IDLE_TIMEOUT,
        }
    }

    /// Limit on a client's TLS handshake (implicit TLS, STARTTLS, STLS alike).
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.config.tls_handshake_timeout)
    }

    pub fn smtp_config(&self, service: Service, secure: bool) -> smtp::Config {
        let mut config = smtp::Config::new(self.config.hostname.clone());
        let settings = self.settings.borrow();
        if !settings.greeting.is_empty() {
            config.greeting = settings.greeting.clone();
        }
        config.secure = secure;
        config.starttls = true;
        config.auth = service.is_submission();
        config.submission = service.is_submission();
        config.require_secure_auth = settings.require_secure_auth;
        config
    }

    pub fn pop3_config(&self, secure: bool) -> pop3::Config {
        let mut config = pop3::Config::default();
        let settings = self.settings.borrow();
        if !settings.greeting.is_empty() {
            config.greeting = settings.greeting.clone();
        }
        config.stls = true;
        config.secure = secure;
        config.require_secure_auth = settings.require_secure_auth;
        config.expire =
            pop3::Expire::from_retention(settings.retention_ms.map(Duration::from_millis));
        config.expire_per_user = !settings.domain_retention_ms.is_empty();
        config.login_delay = settings.login_delay_s.filter(|&s| s > 0);
        config
    }

    /// RFC 2449 EXPIRE for a logged-in mailbox: its domain's retention, else the cluster's.
    pub fn pop3_expire(&self, mailbox: &str) -> pop3::Expire {
        let domain = mailbox.rsplit_once('@').map_or("", |(_, d)| d);
        pop3::Expire::from_retention(self.settings.borrow().retention_for(domain))
    }
}

/// Keeps `tx` equal to the store's settings: a change made with `mailrootctl config set`
/// reaches this node as soon as the store has stored it (a push, not a poll).
///
/// The stream ends when the store stops (it ends it on shutdown), breaks when the connection
/// does (HTTP/2 keepalive finds a silent store, `store_client.rs`), and is opened again with
/// `backon`'s exponential backoff; the backoff starts over once a stream has delivered.
///
/// The cluster-wide log level is applied here, before anything else is logged about the
/// change: at level 0 not even the "settings updated" line appears. `health` says whether the
/// stream is live (`/readyz`).
async fn follow_settings(
    store: StoreClient,
    node: presence::Identity,
    tx: watch::Sender<Settings>,
    health: Arc<health::Health>,
) {
    let backoff = || {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(SETTINGS_RETRY_MAX)
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = backoff();
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            ::metrics::counter!(crate::metrics::SETTINGS_RECONNECTS).increment(1);
        }
        // Not following: directory changes could be missed, so RCPT asks the store again
        // (`recipients.rs`) until the stream is back with the current version.
        tx.send_modify(|s| s.directory_version = recipients::UNKNOWN_VERSION);
        match store.watch_settings(&node).await {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(settings)) => {
                        delays = backoff();
                        mailroot_common::logging::apply(settings.log_level);
                        health.set_settings_live(true);
                        if settings.version != tx.borrow().version {
                            tracing::info!(version = settings.version, "settings updated");
                        }
                        tx.send_replace(settings);
                    }
                    Ok(None) => {
                        tracing::info!("settings stream ended by the store; reconnecting");
                        health.set_settings_live(false);
                        break;
                    }
                    Err(status) => {
                        tracing::warn!(error = %status.message(), "settings stream broken; reconnecting");
                        health.set_settings_live(false);
                        break;
                    }
                }
            },
            Err(status) => {
                tracing::debug!(error = %status.message(), "settings stream unavailable");
            }
        }
        tokio::time::sleep(delays.next().unwrap_or(SETTINGS_RETRY_MAX)).await;
    }
}

/// Longest wait between two attempts to open the settings stream.
const SETTINGS_RETRY_MAX: Duration = Duration::from_secs(2);

/// Result of the start-up handshake with the store.
pub enum Handshake {
    Ok {
        store_id: String,
    },
    /// The store refused this node (auth GUID, certificate or role): it must not start.
    Refused(String),
    /// The store did not answer in time; the node starts and recovers once it is back.
    Unreachable(String),
}

/// A TLS handshake the store (or we) refused: a certificate problem, not an outage.
fn tls_rejection(status: &tonic::Status) -> Option<String> {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(status);
    while let Some(e) = source {
        let text = e.to_string();
        if text.contains("certificate") || text.contains("alert") {
            return Some(format!("TLS with the store failed: {text}"));
        }
        source = e.source();
    }
    None
}

/// Says hello to the store, retrying until `patience` runs out.
pub async fn handshake(store: &StoreClient, node_name: &str, patience: Duration) -> Handshake {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match store.hello_once(node_name).await {
            Ok(reply) => {
                return Handshake::Ok {
                    store_id: reply.store_id,
                };
            }
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                return Handshake::Refused(status.message().to_string());
            }
            Err(status) if tls_rejection(&status).is_some() => {
                return Handshake::Refused(tls_rejection(&status).unwrap_or_default());
            }
            Err(status) => {
                if tokio::time::Instant::now() >= deadline {
                    return Handshake::Unreachable(status.message().to_string());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// POP3, STLS offered (port 110).
    Pop3,
    /// POP3 over implicit TLS (port 995).
    Pop3s,
    /// Inbound SMTP for hosted domains, STARTTLS offered, no AUTH (port 25).
    Smtp,
    /// Submission: STARTTLS, AUTH required before MAIL (port 587).
    Submission,
    /// Submission over implicit TLS (port 465).
    Smtps,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Pop3 => "pop3",
            Service::Pop3s => "pop3s",
            Service::Smtp => "smtp",
            Service::Submission => "submission",
            Service::Smtps => "smtps",
        }
    }

    pub fn implicit_tls(self) -> bool {
        matches!(self, Service::Pop3s | Service::Smtps)
    }

    pub fn is_pop3(self) -> bool {
        matches!(self, Service::Pop3 | Service::Pop3s)
    }

    pub fn is_submission(self) -> bool {
        matches!(self, Service::Submission | Service::Smtps)
    }
}

/// Serves every listener until `shutdown` resolves, then stops gracefully (`drain.rs`):
/// the listeners close at once, sessions in progress get `--drain-timeout` to finish.
/// `metrics` (the `--metrics` listener) serves `/metrics`, `/healthz` and `/readyz` until the
/// process ends; `/readyz` says 503 from the moment the drain starts.
pub async fn run(
    node: Arc<Node>,
    listeners: Vec<(Service, TcpListener)>,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut ready = String::from("MAILROOT_READY");
    for (service, l) in &listeners {
        ready.push_str(&format!(" {}={}", service.name(), l.local_addr()?));
    }
    if let Some(l) = metrics {
        let n = node.clone();
        let addr = mailroot_common::telemetry::start(l, &[], Arc::new(move || n.readiness()))
            .map_err(std::io::Error::other)?;
        crate::metrics::describe();
        ready.push_str(&format!(" metrics={addr}"));
    }
    // Machine-readable readiness line for scripts and the test harness (stdout).
    println!("{ready}");
    tracing::info!(
        listeners = %ready.trim_start_matches("MAILROOT_READY "),
        store = %node.config.store,
        node_id = %node.identity.id,
        "front-end listening"
    );
    let tasks: Vec<_> = listeners
        .into_iter()
        .map(|(service, l)| tokio::spawn(accept_loop(l, node.clone(), service)))
        .collect();
    // Outbound delivery workers (`delivery.rs`): they stop claiming at the stop signal and
    // finish the delivery in hand, within the drain time.
    let stop_workers = tokio_util::sync::CancellationToken::new();
    let workers = delivery::start(&node, stop_workers.clone()).map_err(std::io::Error::other)?;
    shutdown.await;
    node.health.set_draining();
    stop_workers.cancel();
    for t in &tasks {
        t.abort();
    }
    // Each accept loop owns its listener: once it is gone the socket is closed and new
    // connections are refused.
    for t in tasks {
        let _ = t.await;
    }
    tracing::info!(
        sessions = node.drain.open(),
        "stopping: listeners closed, new connections are refused"
    );
    let drain = Duration::from_secs(node.config.drain_timeout);
    let (_, finished) = tokio::join!(
        node.drain.finish(drain),
        tokio::time::timeout(drain, futures::future::join_all(workers))
    );
    if finished.is_err() {
        tracing::warn!(
            "outbound deliveries still running at the end of the drain time; their entries are attempted again"
        );
    }
    Ok(())
}

async fn accept_loop(listener: TcpListener, node: Arc<Node>, service: Service) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(service = service.name(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        node.drain
            .spawn(connection(stream, peer, node.clone(), service));
    }
}

/// One client connection: PROXY header, connection limits, implicit TLS, then the session.
async fn connection(
    mut stream: tokio::net::TcpStream,
    mut peer: std::net::SocketAddr,
    node: Arc<Node>,
    service: Service,
) {
    if proxy::expected_from(&node.proxy_from, &peer) {
        match proxy::read_header(&mut stream, peer).await {
            Ok(client) => peer = client,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "no valid PROXY header from the balancer");
                return;
            }
        }
    }
    let Some(_slot) = node.admit(peer.ip(), service) else {
        tracing::warn!(%peer, service = service.name(), "connection limit reached");
        crate::metrics::Meter::refused(service);
        let refusal: &[u8] = if service.is_pop3() {
            b"-ERR [SYS/TEMP] too many connections, try again later\r\n"
        } else {
            b"421 4.7.0 too many connections, try again later\r\n"
        };
        use tokio::io::AsyncWriteExt;
        if !service.implicit_tls() {
            let _ = stream.write_all(refusal).await;
        }
        return;
    };
    tracing::debug!(%peer, service = service.name(), "client connected");
    let meter = crate::metrics::Meter::admit(service);
    let conn = if service.implicit_tls() {
        // A handshake still running at the drain deadline has no session to close yet.
        let acceptor = node.tls.acceptor();
        let handshake = tls::handshake(&acceptor, stream, node.tls_handshake_timeout());
        let done = tokio::select! {
            () = node.drain.deadline().cancelled() => return,
            done = handshake => done,
        };
        meter.tls_handshake(done.is_ok());
        match done {
            Ok(tls) => tls::Conn::Tls(Box::new(tls)),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
        }
    } else {
        tls::Conn::Plain(stream)
    };
    let limit = Duration::from_secs(node.config.session_timeout);
    let served = if service.is_pop3() {
        tokio::time::timeout(limit, pop3_conn::serve(conn, peer, node, service, meter)).await
    } else {
        tokio::time::timeout(limit, smtp_conn::serve(conn, peer, node, service, meter)).await
    };
    let Ok(result) = served else {
        tracing::info!(%peer, service = service.name(), "session time limit reached, closed");
        return;
    };
    if let Err(e) = result {
        tracing::debug!(service = service.name(), %peer, error = %e, "connection ended with an error");
    }
}
