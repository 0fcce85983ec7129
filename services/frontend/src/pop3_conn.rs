//! Drives one POP3 connection: socket bytes into the sans-io `pop3::Session`, its actions out
//! to the socket and the store. A connection that drops without QUIT commits nothing
//! (RFC 1939 §6: deletions happen only in the UPDATE state).
//!
//! After login the store holds a cluster-wide maildrop lease for this session (RFC 1939 §8
//! exclusive access); a background task renews it at a third of its TTL, and the lease is
//! released when the connection ends, however it ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::metrics::Meter;
use crate::store_client::Session;
use crate::tls::{Conn, Input};
use crate::{Node, Service, replies};

const IDLE_TIMEOUT_REPLY: &[u8] = b"-ERR autologout timer expired, closing connection\r\n";

/// The maildrop this connection holds, and the task keeping its lease alive.
struct Held {
    mailbox: String,
    /// The grant's fencing token: renewals, the commit and the release name it.
    epoch: u64,
    renewer: JoinHandle<()>,
}

pub async fn serve(
    stream: Conn,
    peer: SocketAddr,
    node: Arc<Node>,
    service: Service,
    mut meter: Meter,
) -> std::io::Result<()> {
    let session = Session::new(&node.config.hostname);
    let mut held: Option<Held> = None;
    let result = drive(
        stream, peer, &node, service, &session, &mut held, &mut meter,
    )
    .await;
    if let Some(h) = held {
        release(&node, h, &session).await;
    }
    result
}

/// Stops renewing the lease and gives it back.
async fn release(node: &Node, held: Held, session: &Session) {
    held.renewer.abort();
    if let Err(status) = node.store.close(&held.mailbox, session, held.epoch).await {
        // The lease then simply expires after its TTL.
        tracing::warn!(mailbox = %held.mailbox, error = %status.message(), "could not release the maildrop lease");
    }
}

async fn drive(
    mut stream: Conn,
    peer: SocketAddr,
    node: &Arc<Node>,
    service: Service,
    session: &Session,
    held: &mut Option<Held>,
    meter: &mut Meter,
) -> std::io::Result<()> {
    let mut pop = pop3::Session::new(node.pop3_config(stream.is_tls()));
    let greeting = pop.greeting();
    meter.pop3_sent(&greeting);
    stream.write_all(&greeting).await?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(action) = pop.poll() {
            match action {
                pop3::Action::Send(bytes) => {
                    meter.pop3_sent(&bytes);
                    out.extend_from_slice(&bytes);
                }
                pop3::Action::Authenticate { user, password } => {
                    let ip = peer.ip().to_string();
                    let started = Instant::now();
                    let result = node
                        .store
                        .open_maildrop(&user, &password, session, &ip)
                        .instrument(tracing::info_span!("pop3.login"))
                        .await;
                    metrics::histogram!(
                        crate::metrics::POP3_LOGIN_SECONDS,
                        "result" => crate::metrics::result(result.is_ok())
                    )
                    .record(started.elapsed());
                    let outcome = replies::auth(&result);
                    match result {
                        Ok(reply) => {
                            tracing::info!(%peer, mailbox = %reply.mailbox, messages = reply.messages.len(), "POP3 login");
                            pop.set_expire(node.pop3_expire(&reply.mailbox));
                            let ttl = Duration::from_millis(reply.lease_ttl_ms.max(300));
                            *held = Some(Held {
                                renewer: spawn_renewer(
                                    node.clone(),
                                    reply.mailbox.clone(),
                                    session.clone(),
                                    reply.epoch,
                                    ttl,
                                ),
                                mailbox: reply.mailbox,
                                epoch: reply.epoch,
                            });
                        }
                        Err(status) => {
                            tracing::info!(%peer, %user, reason = ?replies::reason(&status), "POP3 login refused");
                        }
                    }
                    pop.auth_done(outcome);
                }
                pop3::Action::Fetch { uidl, top } => match held {
                    Some(h) => {
                        send_message(
                            &mut stream,
                            &mut out,
                            &mut pop,
                            node,
                            meter,
                            &h.mailbox,
                            &uidl,
                            top,
                        )
                        .instrument(tracing::info_span!("pop3.retr", top = top.is_some()))
                        .await?
                    }
                    None => pop.fetch_failed(pop3::FetchError::Gone),
                },
                pop3::Action::Commit { delete, retrieved } => {
                    let nothing = delete.is_empty() && retrieved.is_empty();
                    let result = match (&held, nothing) {
                        (_, true) => Ok(()),
                        (Some(h), false) => replies::commit(
                            node.store
                                .commit(&h.mailbox, session, h.epoch, &delete, &retrieved)
                                .instrument(tracing::info_span!(
                                    "pop3.commit",
                                    deletes = delete.len()
                                ))
                                .await,
                        ),
                        (None, false) => Err(pop3::CommitError::TempFailure),
                    };
                    // RFC 1939 §6: the UPDATE state releases the maildrop before the reply, so
                    // the client can log in again (anywhere) as soon as it has read it.
                    if let Some(h) = held.take() {
                        release(node, h, session).await;
                    }
                    pop.commit_done(result);
                }
                pop3::Action::StartTls => {
                    let ok = stream
                        .start_tls(&mut out, &node.tls.acceptor(), node.tls_handshake_timeout())
                        .await?;
                    meter.tls_handshake(ok);
                    if !ok {
                        return Ok(());
                    }
                    pop.tls_started();
                }
                pop3::Action::Close => {
                    meter.commands(pop.commands());
                    stream.write_all(&out).await?;
                    stream.shutdown().await.ok();
                    return Ok(());
                }
            }
            // Pipelined commands: replies go out as they are produced, never piling up.
            if out.len() >= FLUSH_AT {
                stream.write_all(&out).await?;
                out.clear();
            }
        }
        meter.commands(pop.commands());
        if pop.is_closed() {
            stream.write_all(&out).await?;
            return Ok(());
        }
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
                pop.feed(&buf[..n]);
            }
            Input::Ended => return Ok(()),
            // The node's drain deadline passed: the session says goodbye and its Close action
            // ends this loop above. Nothing is committed (no QUIT, no UPDATE state); as after
            // QUIT, the lease goes back before the reply, so the client may log in again
            // through another node as soon as it has read it.
            Input::Stop => {
                if let Some(h) = held.take() {
                    release(node, h, session).await;
                }
                pop.shutdown();
            }
        }
    }
}

/// Replies are written once this much is pending (and at the end of every batch of input).
const FLUSH_AT: usize = 64 * 1024;

/// RETR/TOP: streams the message from the store to the client chunk by chunk. At most one
/// chunk (plus the HTTP/2 window, `store_client::FETCH_WINDOW`) is held in memory, counted
/// against the node's in-flight budget; a client that reads slowly slows the stream down.
/// The `+OK` line is counted here; the body only as bytes (`metrics.rs`).
#[allow(clippy::too_many_arguments)]
async fn send_message(
    stream: &mut Conn,
    out: &mut Vec<u8>,
    pop: &mut pop3::Session,
    node: &Arc<Node>,
    meter: &Meter,
    mailbox: &str,
    uidl: &str,
    top: Option<usize>,
) -> std::io::Result<()> {
    let started = Instant::now();
    let budget = FLUSH_AT + crate::store_client::FETCH_WINDOW as usize;
    let Some(_memory) = node.reserve_memory(budget) else {
        tracing::warn!(%mailbox, "RETR refused: the node's in-flight memory limit is reached");
        pop.fetch_failed(pop3::FetchError::TempFailure);
        return Ok(());
    };
    let mut chunks = match node.store.fetch(mailbox, uidl, top).await {
        Ok(chunks) => chunks,
        Err(status) => {
            pop.fetch_failed(replies::fetch(&status));
            return Ok(());
        }
    };
    pop.fetch_started();
    meter.pop3_reply("ok");
    loop {
        match chunks.message().await {
            Ok(Some(chunk)) => {
                let more = pop.fetch_chunk(&chunk.data);
                // Only this fetch's output can be queued while it is pending.
                while let Some(pop3::Action::Send(bytes)) = pop.poll() {
                    meter.body_sent(&bytes);
                    out.extend_from_slice(&bytes);
                }
                if out.len() >= FLUSH_AT {
                    stream.write_all(out).await?;
                    out.clear();
                }
                if !more {
                    break;
                }
            }
            Ok(None) => break,
            Err(status) => {
                tracing::warn!(%mailbox, %uidl, error = %status.message(), "RETR stream broke; closing the connection");
                pop.fetch_failed(pop3::FetchError::TempFailure);
                return Ok(());
            }
        }
    }
    pop.fetch_finished();
    metrics::histogram!(crate::metrics::POP3_RETR_SECONDS).record(started.elapsed());
    Ok(())
}

/// Renews the lease every third of its TTL until aborted. A lease taken over by another
/// session is lost for good: the store's fencing then refuses this session's deletions.
fn spawn_renewer(
    node: Arc<Node>,
    mailbox: String,
    session: Session,
    epoch: u64,
    ttl: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ttl / 3);
        tick.tick().await;
        loop {
            tick.tick().await;
            match node.store.renew(&mailbox, &session, epoch).await {
                Ok(()) => {}
                Err(status) if replies::reason(&status) == Some(proto::Reason::LeaseLost) => {
                    tracing::warn!(%mailbox, "maildrop lease lost to another session");
                    return;
                }
                Err(status) => {
                    tracing::warn!(%mailbox, error = %status.message(), "lease renewal failed, will retry");
                }
            }
        }
    })
}
