//! Drives one SMTP connection: socket bytes into the sans-io `smtp::Session`, its actions out
//! to the socket and the store. Adds the RFC 5321 §4.4 trace fields at delivery.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use proto::v1::{DeliverRequest, DsnRet, RecipientParams};
use tokio::io::AsyncWriteExt;
use tracing::Instrument;

use crate::metrics::Meter;
use crate::tls::{Conn, Input};
use crate::{Node, Service, replies};

const IDLE_TIMEOUT_REPLY: &[u8] = b"421 4.4.2 idle timeout, closing connection\r\n";

pub async fn serve(
    mut stream: Conn,
    peer: SocketAddr,
    node: Arc<Node>,
    service: Service,
    mut meter: Meter,
) -> std::io::Result<()> {
    let mut session = smtp::Session::new(node.smtp_config(service, stream.is_tls()));
    let greeting = session.greeting();
    meter.smtp_sent(&greeting);
    stream.write_all(&greeting).await?;
    let mut authenticated = false;
    // This connection's share of the node's in-flight budget: what its DATA buffers.
    let mut memory: Option<tokio::sync::SemaphorePermit<'_>> = None;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(action) = session.poll() {
            match action {
                smtp::Action::Send(bytes) => {
                    meter.smtp_sent(&bytes);
                    out.extend_from_slice(&bytes);
                }
                smtp::Action::CheckRecipient {
                    address,
                    declared_size,
                } => {
                    let size = declared_size.unwrap_or(0);
                    let result = node.check_recipient(&address, size).await;
                    session.rcpt_done(replies::rcpt(result, authenticated));
                }
                smtp::Action::Deliver { envelope, message } => {
                    // Let the client see earlier pipelined replies while the store writes.
                    stream.write_all(&out).await?;
                    out.clear();
                    let started = Instant::now();
                    // One trace per delivery: the store's span of the Deliver call is its child.
                    let span = tracing::info_span!(
                        "smtp.deliver",
                        delivery.id = tracing::field::Empty,
                        recipients = envelope.recipients.len(),
                        size = message.len(),
                        authenticated = envelope.authenticated.is_some(),
                        service = service.name(),
                    );
                    let verdict = deliver(&node, peer, envelope, message)
                        .instrument(span)
                        .await;
                    let stored = matches!(verdict, smtp::DeliverVerdict::Stored { .. });
                    metrics::histogram!(
                        crate::metrics::SMTP_DATA_SECONDS,
                        "result" => crate::metrics::result(stored)
                    )
                    .record(started.elapsed());
                    memory = None;
                    session.deliver_done(verdict);
                }
                smtp::Action::StartTls => {
                    let ok = stream
                        .start_tls(&mut out, &node.tls.acceptor(), node.tls_handshake_timeout())
                        .await?;
                    meter.tls_handshake(ok);
                    if !ok {
                        return Ok(());
                    }
                    session.tls_started();
                }
                smtp::Action::Authenticate {
                    authzid,
                    user,
                    password,
                } => {
                    let verdict = if !authzid.is_empty() && authzid != user {
                        // Acting for someone else (proxy authorization) is not offered.
                        smtp::AuthVerdict::Invalid
                    } else {
                        let ip = peer.ip().to_string();
                        let auth = node.store.authenticate(&user, &password, &ip);
                        replies::smtp_auth(auth.instrument(tracing::info_span!("smtp.auth")).await)
                    };
                    authenticated = matches!(verdict, smtp::AuthVerdict::Ok { .. });
                    tracing::info!(%peer, %user, ok = authenticated, "SMTP AUTH");
                    session.auth_done(verdict);
                }
                smtp::Action::Close => {
                    meter.commands(session.commands());
                    stream.write_all(&out).await?;
                    stream.shutdown().await.ok();
                    return Ok(());
                }
            }
        }
        meter.commands(session.commands());
        if session.is_closed() {
            stream.write_all(&out).await?;
            return Ok(());
        }
        account_data(&node, &mut session, &mut memory);
        let input = stream
            .flush_and_read(
                &mut out,
                &mut buf,
                node.idle_timeout(service),
                IDLE_TIMEOUT_REPLY,
                node.drain.deadline(),
            )
            .await?;
        match input {
            Input::Bytes(n) => {
                meter.received(n);
                session.feed(&buf[..n]);
            }
            Input::Ended => return Ok(()),
            // The node's drain deadline passed: the session says goodbye (its Close action
            // ends this loop above).
            Input::Stop => session.shutdown(),
        }
    }
}

/// Keeps the connection's reservation of the node's in-flight budget at least as large as the
/// DATA it buffers; when the budget is spent the message is refused with 452 4.3.1 (read to
/// its end and dropped), never buffered beyond the limit.
fn account_data<'a>(
    node: &'a Node,
    session: &mut smtp::Session,
    memory: &mut Option<tokio::sync::SemaphorePermit<'a>>,
) {
    let buffered = session.data_buffered();
    if buffered == 0 {
        *memory = None;
        return;
    }
    let held = memory.as_ref().map_or(0, |p| p.num_permits());
    if buffered <= held {
        return;
    }
    // Reserve ahead in steps of 256 KiB so that a large message takes few reservations.
    let want = (buffered - held).next_multiple_of(256 * 1024);
    match node.reserve_memory(want) {
        Some(more) => match memory {
            Some(m) => m.merge(more),
            None => *memory = Some(more),
        },
        None => {
            tracing::warn!("DATA refused: the node's in-flight memory limit is reached");
            session.refuse_data_for_memory();
            *memory = None;
        }
    }
}

/// Stores the message for every accepted recipient and queues it for those in other domains
/// (authenticated submissions only). When the store could place it for some recipients but not
/// others (quota), the message is accepted and the store sends the sender a DSN for the rest
/// (RFC 3464); when it could place it for none, the whole DATA is refused.
async fn deliver(
    node: &Node,
    peer: SocketAddr,
    envelope: smtp::Envelope,
    message: Vec<u8>,
) -> smtp::DeliverVerdict {
    let id = uuid::Uuid::now_v7().to_string();
    tracing::Span::current().record("delivery.id", id.as_str());
    let trace = trace_headers(node, peer, &envelope, &id);
    // DKIM (RFC 6376) for mail our own users submit, when the From: domain has a key.
    let key = envelope
        .authenticated
        .as_ref()
        .and_then(|_| crate::dkim::key_for(&node.settings.borrow(), &message));
    let signature = key.and_then(|key| crate::dkim::sign(&key, &message));
    let mut stored =
        Vec::with_capacity(trace.len() + signature.as_ref().map_or(0, String::len) + message.len());
    stored.extend_from_slice(trace.as_bytes());
    if let Some(signature) = &signature {
        stored.extend_from_slice(signature.as_bytes());
    }
    stored.extend_from_slice(&message);
    drop(message);
    let result = node
        .store
        .deliver(DeliverRequest {
            delivery_id: id.clone(),
            mail_from: envelope.mail_from.clone(),
            recipients: envelope.recipients.clone(),
            message: stored.into(),
            authenticated_user: envelope.authenticated.clone().unwrap_or_default(),
            reporting_host: node.config.hostname.clone(),
            envid: envelope.envid.clone().unwrap_or_default(),
            ret: match envelope.ret {
                None => DsnRet::Unspecified,
                Some(smtp::Ret::Full) => DsnRet::Full,
                Some(smtp::Ret::Headers) => DsnRet::Hdrs,
            } as i32,
            recipient_params: envelope.params.iter().map(recipient_params).collect(),
        })
        .await;
    let verdict = replies::deliver(result, &id);
    tracing::info!(%id, %peer, from = %envelope.mail_from, to = ?envelope.recipients, ?verdict, signed = signature.is_some(), "DATA done");
    verdict
}

/// RFC 3461 NOTIFY/ORCPT as the store takes them (`Notify::bits` are the proto's values).
fn recipient_params(p: &smtp::RcptParams) -> RecipientParams {
    RecipientParams {
        notify: p.notify.bits(),
        orcpt: p.orcpt.clone().unwrap_or_default(),
    }
}

/// `Return-Path` (RFC 5321 §4.4, added at final delivery) and `Received` (§4.4, "time stamp").
fn trace_headers(node: &Node, peer: SocketAddr, env: &smtp::Envelope, id: &str) -> String {
    let helo: String = env
        .helo
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let rcpt = match env.recipients.as_slice() {
        [one] => format!("\r\n\tfor <{one}>"),
        _ => String::new(),
    };
    format!(
        "Return-Path: <{from}>\r\nReceived: from {helo} ([{ip}])\r\n\tby {host} with ESMTP id {id}{rcpt};\r\n\t{date}\r\n",
        from = env.mail_from,
        ip = peer.ip(),
        host = node.config.hostname,
    )
}
