//! The gRPC face of the store: request validation, the auth GUID and admin token checks, and
//! the translation between proto types and `Store` calls. No storage logic lives here.
//! `admin.rs` is the administration service; `import.rs` its import and export streams.

use std::sync::Arc;

use proto::v1::admin_server::{Admin, AdminServer};
use proto::v1::store_server::{Store as StoreRpc, StoreServer};
use proto::v1::*;
use proto::{AUTH_GUID_HEADER, MAX_GRPC_MESSAGE};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::nodes::{self, Registry};
use crate::store::queue::{DeliveryReport, Outcome, Ret};
use crate::store::{Delivery, Recipient, RecipientParams, StatScope, Store};
use crate::throttle;

mod admin;
mod import;
pub use admin::AdminService;

type Reply<T> = Result<Response<T>, Status>;

/// Role URIs carried in the subject alternative names of cluster certificates
/// (`mailrootctl cluster init` issues them).
pub const ROLE_FRONTEND: &str = "urn:mailroot:role:frontend";
pub const ROLE_ADMIN: &str = "urn:mailroot:role:admin";

/// With mutual TLS on, the caller's certificate must carry `role`.
fn check_role(req: &Request<()>, role: &str) -> Result<(), Status> {
    let Some(certs) = req.peer_certs() else {
        return Err(Status::unauthenticated("a client certificate is required"));
    };
    let Some(leaf) = certs.first() else {
        return Err(Status::unauthenticated("a client certificate is required"));
    };
    let roles = roles_of(leaf.as_ref());
    if roles.iter().any(|r| r == role) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "this certificate (roles {roles:?}) may not call this API; it needs {role}"
        )))
    }
}

fn roles_of(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return vec![];
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return vec![];
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) if u.starts_with("urn:mailroot:role:") => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

/// Builds both services with their access checks. `mutual_tls`: callers must also present a
/// certificate with the right role (front-end for `Store`, admin for `Admin`). `stopping`:
/// cancelled when the node shuts down; it ends the `WatchSettings` streams.
pub fn services(
    store: Loaded,
    auth_guid: String,
    admin_token: String,
    store_id: String,
    mutual_tls: bool,
    stopping: CancellationToken,
) -> (
    InterceptedService<StoreServer<StoreService>, impl tonic::service::Interceptor + Clone>,
    InterceptedService<AdminServer<AdminService>, impl tonic::service::Interceptor + Clone>,
) {
    // The live front-ends: listed by the settings streams, shown by `ListNodes`.
    let nodes = Arc::new(Registry::default());
    let front = StoreServer::new(StoreService {
        store: store.clone(),
        store_id,
        stopping,
        nodes: nodes.clone(),
    })
    .max_decoding_message_size(MAX_GRPC_MESSAGE)
    .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let admin = AdminServer::new(AdminService { store, nodes });
    let guid_check = move |req: Request<()>| -> Result<Request<()>, Status> {
        if mutual_tls {
            check_role(&req, ROLE_FRONTEND)?;
        }
        match req.metadata().get(AUTH_GUID_HEADER).map(|v| v.as_bytes()) {
            Some(given) if constant_time_eq(given, auth_guid.as_bytes()) => Ok(req),
            Some(_) => Err(Status::unauthenticated(
                "auth GUID mismatch: this node does not belong to the cluster",
            )),
            None => Err(Status::unauthenticated("auth GUID missing")),
        }
    };
    let expected = format!("Bearer {admin_token}");
    let token_check = move |req: Request<()>| -> Result<Request<()>, Status> {
        if mutual_tls {
            check_role(&req, ROLE_ADMIN)?;
        }
        match req.metadata().get("authorization").map(|v| v.as_bytes()) {
            Some(given) if constant_time_eq(given, expected.as_bytes()) => Ok(req),
            _ => Err(Status::unauthenticated("admin token missing or wrong")),
        }
    };
    (
        InterceptedService::new(front, guid_check),
        InterceptedService::new(admin, token_check),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The store as the services see it: empty while the index loads at start-up, when every call
/// is answered "unavailable, starting" (front-ends answer 451 / -ERR [SYS/TEMP] and retry).
#[derive(Clone, Default)]
pub struct Loaded(std::sync::Arc<std::sync::OnceLock<Store>>);

impl Loaded {
    pub fn set(&self, store: Store) {
        let _ = self.0.set(store);
    }

    /// The store, once its index is loaded.
    pub fn loaded(&self) -> Option<&Store> {
        self.0.get()
    }

    fn get(&self) -> Result<&Store, Status> {
        self.loaded()
            .ok_or_else(|| crate::StoreError::Starting.into())
    }
}

/// The span of one call, a child of the caller's span when the call carries a trace context
/// (W3C `traceparent`, put there by the front-end's client interceptor): so one SMTP
/// delivery is one trace across the front-end and the store. Spans only reach the traces
/// (`--otlp-endpoint`); without it they cost nothing.
fn traced<T>(req: &Request<T>, span: tracing::Span) -> tracing::Span {
    mailroot_common::tracing_otel::child_of_caller(req.metadata(), span)
}

pub struct StoreService {
    store: Loaded,
    store_id: String,
    stopping: CancellationToken,
    nodes: Arc<Registry>,
}

#[tonic::async_trait]
impl StoreRpc for StoreService {
    async fn hello(&self, req: Request<HelloRequest>) -> Reply<HelloReply> {
        tracing::info!(node = %req.get_ref().node_name, "front-end connected");
        Ok(Response::new(HelloReply {
            store_id: self.store_id.clone(),
        }))
    }

    async fn check_recipient(
        &self,
        req: Request<CheckRecipientRequest>,
    ) -> Reply<CheckRecipientReply> {
        let req = req.into_inner();
        let (recipient, from_directory) = self
            .store
            .get()?
            .lookup_recipient(&req.address, req.size)
            .await?;
        let (status, mailboxes) = recipient_status(recipient);
        Ok(Response::new(CheckRecipientReply {
            status: status as i32,
            mailboxes,
            no_cache: from_directory,
        }))
    }

    async fn deliver(&self, req: Request<DeliverRequest>) -> Reply<DeliverReply> {
        let span = traced(
            &req,
            tracing::info_span!(
                "store.deliver",
                delivery.id = %req.get_ref().delivery_id,
                recipients = req.get_ref().recipients.len(),
                size = req.get_ref().message.len(),
            ),
        );
        async move {
            let req = req.into_inner();
            let (id, from) = (req.delivery_id.clone(), req.mail_from.clone());
            let delivery = Delivery {
                id: req.delivery_id,
                mail_from: req.mail_from,
                recipients: req.recipients,
                message: req.message,
                user: req.authenticated_user,
                reporting_host: req.reporting_host,
                envid: req.envid,
                ret: match DsnRet::try_from(req.ret) {
                    Ok(DsnRet::Full) => Ret::Full,
                    Ok(DsnRet::Hdrs) => Ret::Hdrs,
                    _ => Ret::Unspecified,
                },
                params: req
                    .recipient_params
                    .into_iter()
                    .map(|p| RecipientParams {
                        notify: p.notify,
                        orcpt: p.orcpt,
                    })
                    .collect(),
            };
            let outcomes = self.store.get()?.deliver_message(delivery).await?;
            let results: Vec<RecipientResult> = outcomes
                .into_iter()
                .map(|o| RecipientResult {
                    recipient: o.recipient,
                    status: recipient_status(o.status).0 as i32,
                    failed_mailboxes: o.failed,
                    stored_mailboxes: o.stored,
                })
                .collect();
            tracing::debug!(%id, %from, results = ?results.iter().map(|r| (&r.recipient, r.status)).collect::<Vec<_>>(), "delivered");
            Ok(Response::new(DeliverReply { results }))
        }
        .instrument(span)
        .await
    }

    async fn open_maildrop(&self, req: Request<OpenMaildropRequest>) -> Reply<OpenMaildropReply> {
        let span = traced(&req, tracing::info_span!("store.open_maildrop"));
        async move {
            let req = req.into_inner();
            let (addr, epoch, messages) = self
                .store
                .get()?
                .open_maildrop(
                    &req.user,
                    &req.password,
                    &req.session_id,
                    &req.node,
                    &req.client_ip,
                )
                .await?;
            Ok(Response::new(OpenMaildropReply {
                mailbox: addr.to_string(),
                messages: messages
                    .into_iter()
                    .map(|m| MessageInfo {
                        uidl: m.uidl,
                        size: m.size,
                    })
                    .collect(),
                lease_ttl_ms: self.store.get()?.lease_ttl().as_millis() as u64,
                epoch,
            }))
        }
        .instrument(span)
        .await
    }

    type FetchMessageStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<MessageChunk, Status>> + Send>>;

    /// Streams the message as it is read; for TOP it stops reading once the wanted lines are
    /// out (the cut is the POP3 crate's own, so the front-end's cut is a no-op on it).
    async fn fetch_message(
        &self,
        req: Request<FetchMessageRequest>,
    ) -> Reply<Self::FetchMessageStream> {
        let span = traced(&req, tracing::info_span!("store.fetch_message"));
        async move {
            let req = req.into_inner();
            let chunks = self
                .store
                .get()?
                .fetch_stream(&req.mailbox, &req.uidl)
                .await?;
            let cut = req
                .top_lines
                .map(|n| pop3::TopCut::new(usize::try_from(n).unwrap_or(usize::MAX)));
            let stream =
                futures::stream::unfold((chunks, cut), |(mut chunks, mut cut)| async move {
                    if cut.as_ref().is_some_and(pop3::TopCut::is_done) {
                        return None;
                    }
                    let item = match futures::StreamExt::next(&mut chunks).await? {
                        Err(e) => Err(Status::from(e)),
                        Ok(data) => {
                            let data = match &mut cut {
                                Some(c) => {
                                    let keep = c.cut(&data).len();
                                    data.slice(..keep)
                                }
                                None => data,
                            };
                            Ok(MessageChunk { data })
                        }
                    };
                    Some((item, (chunks, cut)))
                });
            Ok(Response::new(Box::pin(stream) as Self::FetchMessageStream))
        }
        .instrument(span)
        .await
    }

    async fn commit_maildrop(
        &self,
        req: Request<CommitMaildropRequest>,
    ) -> Reply<CommitMaildropReply> {
        let span = traced(&req, tracing::info_span!("store.commit_maildrop"));
        async move {
            let req = req.into_inner();
            let deleted = self
                .store
                .get()?
                .commit(&req.mailbox, req.epoch, &req.delete, &req.retrieved)
                .await?;
            Ok(Response::new(CommitMaildropReply { deleted }))
        }
        .instrument(span)
        .await
    }

    async fn renew_maildrop(&self, req: Request<MaildropSession>) -> Reply<RenewMaildropReply> {
        let req = req.into_inner();
        self.store.get()?.renew(&req.mailbox, req.epoch)?;
        Ok(Response::new(RenewMaildropReply {}))
    }

    async fn authenticate(&self, req: Request<AuthenticateRequest>) -> Reply<AuthenticateReply> {
        let span = traced(&req, tracing::info_span!("store.authenticate"));
        async move {
            let req = req.into_inner();
            let (addr, senders) = self
                .store
                .get()?
                .authenticate(&req.user, &req.password, &req.client_ip)
                .await?;
            Ok(Response::new(AuthenticateReply {
                mailbox: addr.to_string(),
                senders,
            }))
        }
        .instrument(span)
        .await
    }

    type WatchSettingsStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<Settings, Status>> + Send>>;

    async fn watch_settings(
        &self,
        req: Request<WatchSettingsRequest>,
    ) -> Reply<Self::WatchSettingsStream> {
        let peer = req.remote_addr();
        let req = req.into_inner();
        tracing::info!(node = %req.node_name, node_id = %req.node_id, ?peer, "front-end watches settings");
        let identity = nodes::Identity {
            id: req.node_id,
            hostname: req.node_name,
            version: req.version,
            listeners: req.listeners,
        };
        // Listed while this stream lives (`nodes.rs`): the guard goes with the stream.
        let registration = self.nodes.register(identity, peer);
        let rx = self.store.get()?.settings().subscribe();
        // The current value first, then every change (a slow watcher sees the latest), until
        // the node stops: the stream then ends cleanly, so graceful shutdown can complete and
        // the front-end reconnects (to this node restarted, or its successor).
        let stream = futures::StreamExt::take_until(
            tokio_stream::wrappers::WatchStream::new(rx).map(move |settings| {
                let _listed = &registration;
                Ok(settings)
            }),
            self.stopping.clone().cancelled_owned(),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report_node(&self, req: Request<NodeReport>) -> Reply<ReportNodeReply> {
        let req = req.into_inner();
        let registered = self
            .nodes
            .report(&req.node_id, req.pop3_sessions, req.smtp_sessions);
        Ok(Response::new(ReportNodeReply { registered }))
    }

    /// Waits at most `wait_ms` (and no longer than the store runs: a stopping store answers
    /// at once with what it has, so graceful shutdown is not held up).
    async fn claim_queue(&self, req: Request<ClaimQueueRequest>) -> Reply<ClaimQueueReply> {
        let req = req.into_inner();
        let store = self.store.get()?;
        let wait = std::time::Duration::from_millis(req.wait_ms);
        let claimed = tokio::select! {
            claimed = store.claim_queue(&req.node_id, req.max, wait) => claimed,
            () = self.stopping.cancelled() => Vec::new(),
        };
        let entries = claimed
            .into_iter()
            .map(|c| QueueEntry {
                id: c.id,
                mail_from: c.mail_from,
                recipients: c
                    .recipients
                    .into_iter()
                    .map(|r| QueuedRecipient {
                        address: r.address,
                        params: Some(proto::v1::RecipientParams {
                            notify: r.notify,
                            orcpt: r.orcpt,
                        }),
                    })
                    .collect(),
                size: c.size,
                envid: c.envid,
                ret: match c.ret {
                    Ret::Full => DsnRet::Full,
                    Ret::Hdrs => DsnRet::Hdrs,
                    Ret::Unspecified => DsnRet::Unspecified,
                } as i32,
                claim: c.claim,
                claim_ttl_ms: c.claim_ttl.as_millis() as u64,
                attempts: c.attempts,
            })
            .collect();
        Ok(Response::new(ClaimQueueReply { entries }))
    }

    type FetchQueuedStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<MessageChunk, Status>> + Send>>;

    async fn fetch_queued(&self, req: Request<QueueClaim>) -> Reply<Self::FetchQueuedStream> {
        let req = req.into_inner();
        let chunks = self.store.get()?.fetch_queued(&req.id, req.claim).await?;
        let stream = chunks.map(|chunk| match chunk {
            Ok(data) => Ok(MessageChunk { data }),
            Err(e) => Err(Status::from(e)),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn renew_claim(&self, req: Request<QueueClaim>) -> Reply<Empty> {
        let req = req.into_inner();
        self.store.get()?.renew_claim(&req.id, req.claim)?;
        Ok(Response::new(Empty {}))
    }

    async fn report_delivery(&self, req: Request<ReportDeliveryRequest>) -> Reply<Empty> {
        let req = req.into_inner();
        let results: Vec<DeliveryReport> = req
            .results
            .into_iter()
            .map(|r| DeliveryReport {
                recipient: r.recipient,
                outcome: match DeliveryOutcome::try_from(r.outcome) {
                    Ok(DeliveryOutcome::Delivered) => Outcome::Delivered,
                    Ok(DeliveryOutcome::Failed) => Outcome::Failed,
                    // Deferred, and anything a newer worker might send: retried, never lost.
                    _ => Outcome::Deferred,
                },
                status: r.status,
                diagnostic: r.diagnostic,
                remote_mta: r.remote_mta,
            })
            .collect();
        self.store
            .get()?
            .report_delivery(&req.id, req.claim, &results)
            .await?;
        Ok(Response::new(Empty {}))
    }

    async fn close_maildrop(&self, req: Request<MaildropSession>) -> Reply<Empty> {
        let req = req.into_inner();
        self.store.get()?.close(&req.mailbox, req.epoch)?;
        Ok(Response::new(Empty {}))
    }
}

fn recipient_status(r: Recipient) -> (RecipientStatus, Vec<String>) {
    match r {
        Recipient::Mailboxes(m) => (
            RecipientStatus::Accept,
            m.into_iter().map(|a| a.to_string()).collect(),
        ),
        Recipient::UnknownUser => (RecipientStatus::UnknownUser, vec![]),
        Recipient::RelayDenied => (RecipientStatus::RelayDenied, vec![]),
        Recipient::MailboxFull => (RecipientStatus::MailboxFull, vec![]),
        Recipient::TooBig => (RecipientStatus::TooBig, vec![]),
        Recipient::Queued => (RecipientStatus::Queued, vec![]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_while_the_index_loads_are_unavailable_starting() {
        let loaded = Loaded::default();
        let status = loaded.get().err().expect("no store yet");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(proto::Reason::of(&status), Some(proto::Reason::Starting));
    }
}
