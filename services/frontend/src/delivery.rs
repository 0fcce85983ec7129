//! The outbound delivery workers. Every front-end runs `--outbound-workers` of them (0: none):
//! each claims one due entry of the store's outbound queue at a time, keeps the claim alive
//! while it delivers, delivers to every destination domain of the entry with
//! `mailroot_outbound` (MX routing, opportunistic STARTTLS, PIPELINING, RFC 5321 timeouts,
//! at most `--outbound-per-destination` connections per domain from this node) and reports
//! each recipient's outcome to the store, which retries, bounces and sends DSNs
//! (store-node/src/store/queue). Front-ends keep no queue state: a claim is a lease in the
//! store, and the claim of a worker that died (kill -9, a cut link) expires, after which a
//! worker on any front-end takes the entry.
//!
//! # What can be delivered twice (RFC 1047)
//! A remote MX that accepted the message (its 250 after the data) for a recipient whose
//! outcome never reached the store gets the message again at the next attempt: the worker died
//! or lost its link between that 250 and its report, or the store restarted in between (claims
//! live in the store's memory only). Nothing is lost in any of these cases; the README says
//! so. A stop (SIGTERM) lets deliveries in progress finish and report before the node exits
//! (within `--drain-timeout`), so a planned restart does not cause such a duplicate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailroot_outbound as outbound;
use proto::Reason;
use proto::v1::{DeliveryOutcome, DeliveryResult, DsnRet, QueueClaim, QueueEntry, QueuedRecipient};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Node;
use crate::metrics as names;

/// How long one claim call waits in the store for an entry to become due.
const CLAIM_WAIT: Duration = Duration::from_secs(20);
/// After the store could not be reached: the wait before the next claim.
const CLAIM_RETRY: Duration = Duration::from_secs(1);

/// What every worker of this node shares.
pub struct Workers {
    resolver: outbound::Resolver,
    client: outbound::ClientConfig,
    limiter: outbound::Limiter,
}

/// Starts the node's workers; they stop claiming when `stop` is cancelled and end once their
/// delivery in progress is reported.
pub fn start(node: &Arc<Node>, stop: CancellationToken) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let config = &node.config;
    if config.outbound_workers == 0 {
        return Ok(Vec::new());
    }
    let workers = Arc::new(Workers {
        resolver: outbound::Resolver::new(config.dns_servers().map_err(anyhow::Error::msg)?)?,
        client: client_config(config)?,
        limiter: outbound::Limiter::new(config.outbound_per_destination),
    });
    Ok((0..config.outbound_workers)
        .map(|_| tokio::spawn(work(node.clone(), workers.clone(), stop.clone())))
        .collect())
}

/// The SMTP client's settings from the front-end's flags.
fn client_config(config: &crate::FrontendConfig) -> anyhow::Result<outbound::ClientConfig> {
    let mut client = outbound::ClientConfig::new(config.hostname.clone());
    client.port = config.outbound_port;
    client.require_tls = config.outbound_require_tls;
    if let Some(secs) = config.outbound_timeout {
        client.timeouts = outbound::Timeouts::all(Duration::from_secs(secs));
    }
    if let Some(relay) = &config.relay_host {
        let (host, port) =
            crate::config::split_host_port("relay-host", relay).map_err(anyhow::Error::msg)?;
        client.relay = Some(outbound::Relay {
            host,
            port,
            username: config.relay_user.clone(),
            password: config.relay_password.clone(),
        });
    }
    Ok(client)
}

async fn work(node: Arc<Node>, workers: Arc<Workers>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let claimed = tokio::select! {
            () = stop.cancelled() => return,
            claimed = node.store.claim_queue(&node.identity.id, 1, CLAIM_WAIT) => claimed,
        };
        match claimed {
            Ok(entries) => {
                for entry in entries {
                    deliver_entry(&node, &workers, entry).await;
                }
            }
            Err(status) => {
                tracing::debug!(error = %status.message(), "outbound queue claim failed");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(CLAIM_RETRY) => {}
                }
            }
        }
    }
}

/// One claimed entry: fetch, deliver per destination domain, report.
async fn deliver_entry(node: &Node, workers: &Workers, entry: QueueEntry) {
    let started = Instant::now();
    let claim = QueueClaim {
        id: entry.id.clone(),
        claim: entry.claim,
    };
    // The claim stays ours while we deliver (a slow remote may take minutes).
    let renewing = {
        let store = node.store.clone();
        let claim = claim.clone();
        let every = Duration::from_millis(entry.claim_ttl_ms.max(300) / 3);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(status) = store.renew_claim(&claim).await
                    && Reason::of(&status) == Some(Reason::UnknownQueueEntry)
                {
                    tracing::warn!(id = %claim.id, "outbound claim lost while delivering");
                    return;
                }
            }
        })
    };
    let _renewing = AbortOnDrop(renewing);
    // The message is held in memory while it is sent: it counts against the node's budget.
    let _memory = match u32::try_from(entry.size) {
        Ok(n) if n > 0 => node.inflight.acquire_many(n).await.ok(),
        _ => None,
    };
    let message = match node.store.fetch_queued(&claim).await {
        Ok(m) => m,
        Err(status) => {
            // The claim expires and the entry is attempted again (here or elsewhere).
            tracing::warn!(id = %entry.id, error = %status.message(), "queued message could not be read; left for the next attempt");
            return;
        }
    };
    let message = strip_return_path(&message);
    let mut by_domain: BTreeMap<String, Vec<&QueuedRecipient>> = BTreeMap::new();
    for r in &entry.recipients {
        let domain = r
            .address
            .rsplit_once('@')
            .map_or(String::new(), |(_, d)| d.to_ascii_lowercase());
        by_domain.entry(domain).or_default().push(r);
    }
    let attempts = by_domain.iter().map(|(domain, recipients)| {
        let envelope = envelope(&entry, recipients);
        async move {
            if domain.is_empty() {
                return recipients
                    .iter()
                    .map(|r| DeliveryResult {
                        recipient: r.address.clone(),
                        outcome: DeliveryOutcome::Failed as i32,
                        status: "5.1.3".into(),
                        diagnostic: "no domain in the recipient address".into(),
                        remote_mta: String::new(),
                    })
                    .collect::<Vec<_>>();
            }
            let _slot = workers.limiter.acquire(domain).await;
            outbound::deliver(
                &workers.resolver,
                &workers.client,
                domain,
                &envelope,
                message,
            )
            .await
            .into_iter()
            .map(result)
            .collect()
        }
    });
    let results: Vec<DeliveryResult> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .flatten()
        .collect();
    for r in &results {
        let outcome = match DeliveryOutcome::try_from(r.outcome) {
            Ok(DeliveryOutcome::Delivered) => "delivered",
            Ok(DeliveryOutcome::Failed) => "failed",
            _ => "deferred",
        };
        ::metrics::counter!(names::OUTBOUND_RECIPIENTS, "outcome" => outcome).increment(1);
        tracing::info!(id = %entry.id, to = %r.recipient, outcome, status = %r.status, remote = %r.remote_mta, diagnostic = %r.diagnostic, "outbound attempt");
    }
    ::metrics::histogram!(names::OUTBOUND_ATTEMPT_SECONDS).record(started.elapsed());
    if let Err(status) = node.store.report_delivery(&claim, results).await {
        // The claim expires and the entry is attempted again: a recipient delivered just now
        // gets a second copy (the module doc).
        tracing::warn!(id = %entry.id, error = %status.message(), "delivery report not taken by the store");
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// RFC 5321 §4.4: Return-Path is added at final delivery; a message relayed onward must not
/// carry one. The front-end put one on top for local mailboxes; it goes here.
fn strip_return_path(message: &[u8]) -> &[u8] {
    let mut rest = message;
    while rest.len() >= 12 && rest[..12].eq_ignore_ascii_case(b"return-path:") {
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        rest = &rest[end + 2..];
        // A folded Return-Path continues on lines that start with white space.
        while rest.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            rest = &rest[end + 2..];
        }
    }
    rest
}

fn envelope(entry: &QueueEntry, recipients: &[&QueuedRecipient]) -> outbound::Envelope {
    outbound::Envelope {
        mail_from: entry.mail_from.clone(),
        recipients: recipients
            .iter()
            .map(|r| {
                let params = r.params.clone().unwrap_or_default();
                outbound::Recipient {
                    address: r.address.clone(),
                    // The proto's Notify values are the bits this takes.
                    notify: outbound::Notify::from_bits(params.notify),
                    orcpt: (!params.orcpt.is_empty()).then_some(params.orcpt),
                }
            })
            .collect(),
        envid: (!entry.envid.is_empty()).then(|| entry.envid.clone()),
        ret: match DsnRet::try_from(entry.ret) {
            Ok(DsnRet::Full) => Some(outbound::Ret::Full),
            Ok(DsnRet::Hdrs) => Some(outbound::Ret::Headers),
            _ => None,
        },
    }
}

fn result(r: outbound::RecipientResult) -> DeliveryResult {
    DeliveryResult {
        recipient: r.address,
        outcome: match r.outcome {
            outbound::Outcome::Delivered => DeliveryOutcome::Delivered,
            outbound::Outcome::Deferred => DeliveryOutcome::Deferred,
            outbound::Outcome::Failed => DeliveryOutcome::Failed,
        } as i32,
        status: r.status,
        diagnostic: r.diagnostic,
        remote_mta: r.remote_mta.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_bits_are_the_protos_values() {
        use proto::v1::Notify as P;
        let pairs = [
            (smtp::Notify::NEVER, P::Never),
            (smtp::Notify::SUCCESS, P::Success),
            (smtp::Notify::FAILURE, P::Failure),
            (smtp::Notify::DELAY, P::Delay),
        ];
        for (bit, value) in pairs {
            assert_eq!(bit, value as u32);
        }
    }

    #[test]
    fn return_path_is_stripped_from_the_top_only() {
        assert_eq!(
            strip_return_path(b"Return-Path: <a@b.c>\r\nReceived: x\r\n\r\nReturn-Path: body\r\n"),
            b"Received: x\r\n\r\nReturn-Path: body\r\n"
        );
        assert_eq!(
            strip_return_path(b"return-path:\r\n <a@b.c>\r\nSubject: y\r\n\r\n"),
            b"Subject: y\r\n\r\n"
        );
        assert_eq!(
            strip_return_path(b"Subject: z\r\n\r\n"),
            b"Subject: z\r\n\r\n"
        );
    }
}
