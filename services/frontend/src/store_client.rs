//! The front-end's handle on the store: a lazily (re)connecting gRPC channel that stamps the
//! auth GUID on every call and retries calls that failed because the store was unreachable.
//!
//! Retries use `backon` (the `backoff` crate is unmaintained, RUSTSEC-2025-0012). Every call
//! retried here is idempotent: reads, and writes keyed by an id chosen before the first try
//! (a delivery id) or naming the exact objects to remove (a POP3 commit).
//!
//! Every call carries the caller's trace context when traces are on (`GuidStamp`).
//!
//! Every call is timed (`mailroot_store_rpc_seconds{method,result}`, retries included) and
//! its outcome kept as [`StoreClient::reachable`], one of the front-end's `/readyz` checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use proto::v1::store_client::StoreClient as RpcClient;
use proto::v1::*;
use proto::{AUTH_GUID_HEADER, MAX_GRPC_MESSAGE};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

use crate::config::{
    STORE_CONNECT_TIMEOUT, STORE_KEEPALIVE_INTERVAL, STORE_KEEPALIVE_TIMEOUT, STORE_RETRY_BUDGET,
};

type Guid = MetadataValue<tonic::metadata::Ascii>;
type Inner = RpcClient<InterceptedService<Channel, GuidStamp>>;

/// Stamps every call with the auth GUID and, when traces are on, the caller's trace context
/// (W3C `traceparent`): the store's span of the call is a child of the front-end's span that
/// made it (`smtp.deliver`, `pop3.login`, ...), in the same trace.
#[derive(Clone)]
pub struct GuidStamp(Guid);

impl tonic::service::Interceptor for GuidStamp {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert(AUTH_GUID_HEADER, self.0.clone());
        mailroot_common::tracing_otel::inject(req.metadata_mut());
        Ok(req)
    }
}

/// Identity of one POP3 session towards the store: the holder of a maildrop lease.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub node: String,
}

impl Session {
    pub fn new(node: &str) -> Session {
        Session {
            id: uuid::Uuid::new_v4().to_string(),
            node: node.to_string(),
        }
    }
}

/// HTTP/2 stream window for store replies: what one RETR may buffer in this node.
pub const FETCH_WINDOW: u32 = 256 * 1024;

#[derive(Clone)]
pub struct StoreClient {
    inner: Inner,
    /// False after a call failed for want of a store, true after any answer (`reachable`).
    reachable: Arc<AtomicBool>,
}

/// True when the status means "the store could not be reached or is overloaded", i.e. worth
/// another try, as opposed to an answer.
pub fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted
    ) || (status.code() == Code::Unknown && status.message().contains("transport"))
}

impl StoreClient {
    /// `tls`: (CA, certificate, key) PEM files for mutual TLS with the store.
    pub fn new(
        url: &str,
        auth_guid: &str,
        tls: Option<(&str, &str, &str)>,
    ) -> anyhow::Result<StoreClient> {
        let mut endpoint = Endpoint::from_shared(url.to_string())?
            .connect_timeout(STORE_CONNECT_TIMEOUT)
            .timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            // The settings stream never ends by itself, so a store that vanished without a
            // FIN/RST would otherwise leave it (and every call queued on the connection)
            // waiting forever; pings find out within interval + timeout.
            .http2_keep_alive_interval(STORE_KEEPALIVE_INTERVAL)
            .keep_alive_timeout(STORE_KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            // A RETR stream may run ahead of its POP3 client by one window (bounded memory
            // per session); all sessions together share the connection window.
            .initial_stream_window_size(FETCH_WINDOW)
            .initial_connection_window_size(64 * 1024 * 1024);
        if let Some((ca, cert, key)) = tls {
            let read = |flag: &str, path: &str| {
                std::fs::read(path).map_err(|e| anyhow::anyhow!("--{flag} {path}: {e}"))
            };
            endpoint = endpoint.tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(read("cluster-ca", ca)?))
                    .identity(Identity::from_pem(
                        read("cluster-cert", cert)?,
                        read("cluster-key", key)?,
                    )),
            )?;
        }
        let channel = endpoint.connect_lazy();
        let guid: Guid = auth_guid.parse()?;
        let inner = RpcClient::with_interceptor(channel, GuidStamp(guid))
            .max_decoding_message_size(MAX_GRPC_MESSAGE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE);
        Ok(StoreClient {
            inner,
            reachable: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Whether the store answered the last call (an error status is an answer too; only
    /// "could not reach it" is not). False until the first answer.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Records one call's outcome: its latency by method and result, and reachability. A
    /// status the store sent carries its reason (`proto::Reason`), even a "try later" one
    /// (storage trouble): only a transient status without one means the store was not reached.
    fn observe<T>(&self, method: &'static str, started: Instant, result: &Result<T, Status>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(status) if is_transient(status) && proto::Reason::of(status).is_none() => {
                "unavailable"
            }
            Err(_) => "error",
        };
        self.reachable
            .store(outcome != "unavailable", Ordering::Relaxed);
        metrics::histogram!(
            crate::metrics::STORE_RPC_SECONDS,
            "method" => method,
            "result" => outcome
        )
        .record(started.elapsed());
    }

    fn backoff() -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_millis(800))
            .with_total_delay(Some(STORE_RETRY_BUDGET))
            .without_max_times()
            .with_jitter()
    }

    /// `method`: the RPC's name, the `method` label of its latency.
    async fn call<T, F, Fut>(&self, method: &'static str, f: F) -> Result<T, Status>
    where
        F: Fn(Inner) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let attempt = || f(self.inner.clone());
        let result = attempt
            .retry(Self::backoff())
            .when(is_transient)
            .notify(|status, wait| {
                tracing::warn!(error = %status.message(), ?wait, "store unreachable, retrying");
            })
            .await
            .map(tonic::Response::into_inner);
        self.observe(method, started, &result);
        result
    }

    /// One try, no retry: used at start-up where the caller loops itself.
    pub async fn hello_once(&self, node_name: &str) -> Result<HelloReply, Status> {
        let req = HelloRequest {
            node_name: node_name.to_string(),
        };
        let started = Instant::now();
        let result = self.inner.clone().hello(req).await.map(|r| r.into_inner());
        self.observe("hello", started, &result);
        result
    }

    pub async fn check_recipient(
        &self,
        address: &str,
        size: u64,
    ) -> Result<CheckRecipientReply, Status> {
        self.call("check_recipient", |mut c| {
            let req = CheckRecipientRequest {
                address: address.to_string(),
                size,
            };
            async move { c.check_recipient(req).await }
        })
        .await
    }

    pub async fn deliver(&self, req: DeliverRequest) -> Result<DeliverReply, Status> {
        self.call("deliver", |mut c| {
            let req = req.clone();
            async move { c.deliver(req).await }
        })
        .await
    }

    pub async fn open_maildrop(
        &self,
        user: &str,
        password: &str,
        session: &Session,
        client_ip: &str,
    ) -> Result<OpenMaildropReply, Status> {
        self.call("open_maildrop", |mut c| {
            let req = OpenMaildropRequest {
                user: user.to_string(),
                password: password.to_string(),
                session_id: session.id.clone(),
                node: session.node.clone(),
                client_ip: client_ip.to_string(),
            };
            async move { c.open_maildrop(req).await }
        })
        .await
    }

    pub async fn authenticate(
        &self,
        user: &str,
        password: &str,
        client_ip: &str,
    ) -> Result<AuthenticateReply, Status> {
        self.call("authenticate", |mut c| {
            let req = AuthenticateRequest {
                user: user.to_string(),
                password: password.to_string(),
                client_ip: client_ip.to_string(),
            };
            async move { c.authenticate(req).await }
        })
        .await
    }

    /// The message as a stream of chunks (`top`: RFC 1939 TOP's body line count). Opening
    /// the stream is retried; a stream that breaks later is the caller's to handle.
    pub async fn fetch(
        &self,
        mailbox: &str,
        uidl: &str,
        top: Option<usize>,
    ) -> Result<tonic::Streaming<MessageChunk>, Status> {
        self.call("fetch_message", |mut c| {
            let req = FetchMessageRequest {
                mailbox: mailbox.to_string(),
                uidl: uidl.to_string(),
                top_lines: top.map(|n| n as u64),
            };
            async move { c.fetch_message(req).await }
        })
        .await
    }

    pub async fn commit(
        &self,
        mailbox: &str,
        session: &Session,
        epoch: u64,
        delete: &[String],
        retrieved: &[String],
    ) -> Result<u32, Status> {
        self.call("commit_maildrop", |mut c| {
            let req = CommitMaildropRequest {
                mailbox: mailbox.to_string(),
                delete: delete.to_vec(),
                session_id: session.id.clone(),
                epoch,
                retrieved: retrieved.to_vec(),
            };
            async move { c.commit_maildrop(req).await }
        })
        .await
        .map(|r| r.deleted)
    }

    /// Opens the settings stream (current value first, then every change); the store lists
    /// this node (`mailrootctl nodes`) while it is open.
    pub async fn watch_settings(
        &self,
        node: &crate::presence::Identity,
    ) -> Result<tonic::Streaming<Settings>, Status> {
        let req = WatchSettingsRequest {
            node_name: node.hostname.clone(),
            node_id: node.id.clone(),
            version: node.version.clone(),
            listeners: node.listeners.clone(),
        };
        let started = Instant::now();
        let result = self
            .inner
            .clone()
            .watch_settings(req)
            .await
            .map(|r| r.into_inner());
        self.observe("watch_settings", started, &result);
        result
    }

    /// One report of this node's session counts, no retry (`presence.rs`); true when the
    /// store lists the node.
    pub async fn report_node(
        &self,
        node_id: &str,
        sessions: crate::presence::Sessions,
    ) -> Result<bool, Status> {
        let req = NodeReport {
            node_id: node_id.to_string(),
            pop3_sessions: sessions.pop3,
            smtp_sessions: sessions.smtp,
        };
        let reply = self.inner.clone().report_node(req).await?;
        Ok(reply.into_inner().registered)
    }

    /// One renewal try; the renewal loop itself is the retry.
    pub async fn renew(&self, mailbox: &str, session: &Session, epoch: u64) -> Result<(), Status> {
        let req = MaildropSession {
            mailbox: mailbox.to_string(),
            session_id: session.id.clone(),
            epoch,
        };
        let started = Instant::now();
        let result = self.inner.clone().renew_maildrop(req).await.map(|_| ());
        self.observe("renew_maildrop", started, &result);
        result
    }

    pub async fn close(&self, mailbox: &str, session: &Session, epoch: u64) -> Result<(), Status> {
        self.call("close_maildrop", |mut c| {
            let req = MaildropSession {
                mailbox: mailbox.to_string(),
                session_id: session.id.clone(),
                epoch,
            };
            async move { c.close_maildrop(req).await }
        })
        .await
        .map(|_| ())
    }

    /// Claims up to `max` due outbound queue entries for this node, waiting in the store up to
    /// `wait` for one to become due (`delivery.rs`). One try: the worker loop is the retry.
    pub async fn claim_queue(
        &self,
        node_id: &str,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<QueueEntry>, Status> {
        let req = ClaimQueueRequest {
            node_id: node_id.to_string(),
            max,
            wait_ms: wait.as_millis() as u64,
        };
        let started = Instant::now();
        let result = self
            .inner
            .clone()
            .claim_queue(req)
            .await
            .map(|r| r.into_inner().entries);
        self.observe("claim_queue", started, &result);
        result
    }

    /// The claimed entry's message, whole (the worker sends it to several destinations).
    pub async fn fetch_queued(&self, claim: &QueueClaim) -> Result<Vec<u8>, Status> {
        let started = Instant::now();
        let result = async {
            let mut stream = self
                .call("fetch_queued", |mut c| {
                    let req = claim.clone();
                    async move { c.fetch_queued(req).await }
                })
                .await?;
            let mut message = Vec::new();
            while let Some(chunk) = stream.message().await? {
                message.extend_from_slice(&chunk.data);
            }
            Ok(message)
        }
        .await;
        self.observe("fetch_queued_body", started, &result);
        result
    }

    /// One renewal try; the renewal loop itself is the retry.
    pub async fn renew_claim(&self, claim: &QueueClaim) -> Result<(), Status> {
        let started = Instant::now();
        let result = self
            .inner
            .clone()
            .renew_claim(claim.clone())
            .await
            .map(|_| ());
        self.observe("renew_claim", started, &result);
        result
    }

    pub async fn report_delivery(
        &self,
        claim: &QueueClaim,
        results: Vec<DeliveryResult>,
    ) -> Result<(), Status> {
        self.call("report_delivery", |mut c| {
            let req = ReportDeliveryRequest {
                id: claim.id.clone(),
                claim: claim.claim,
                results: results.clone(),
            };
            async move { c.report_delivery(req).await }
        })
        .await
        .map(|_| ())
    }
}
