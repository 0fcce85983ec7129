//! Delivery of one message to the recipients of one destination domain: what the caller
//! gives (configuration, envelope), what it gets back (a result per recipient), and the
//! order in which hosts are tried (RFC 5321 §5.1: MX preference, then each address).
//!
//! Owns the host loop: a host that cannot take the recipients (no connection, timeout, TLS
//! failure, 4xx before the transaction) passes them on to the next; the conversation with
//! one host is `connection.rs` (I/O) driving `session.rs` (the protocol). Never panics on
//! server input and never returns an error: every recipient gets a result.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::connection;
use crate::routing::{MxHost, Resolver, RouteError};
use crate::session::HostFailure;

pub use crate::limiter::{Limiter, Permit};

/// The port MX hosts take mail on ("smtp", 25).
pub const DEFAULT_PORT: u16 = 25;

/// How the client delivers. `ClientConfig::new(hostname)` gives the defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Our EHLO name.
    pub hostname: String,
    /// The port of the MX hosts: 25; tests use a loopback port (front-end `--outbound-port`).
    pub port: u16,
    /// RFC 5321 §4.5.3.2 defaults via `Timeouts::default()`.
    pub timeouts: Timeouts,
    /// `--relay-host HOST:PORT` [+ credentials]: no MX lookup, always this host.
    pub relay: Option<Relay>,
    /// false = opportunistic STARTTLS (RFC 7435, the default); true = a server without
    /// STARTTLS (or whose handshake fails) is not used.
    pub require_tls: bool,
}

impl ClientConfig {
    pub fn new(hostname: impl Into<String>) -> ClientConfig {
        ClientConfig {
            hostname: hostname.into(),
            port: DEFAULT_PORT,
            timeouts: Timeouts::default(),
            relay: None,
            require_tls: false,
        }
    }
}

/// A smart host that takes all outbound mail.
#[derive(Debug, Clone)]
pub struct Relay {
    pub host: String,
    pub port: u16,
    /// Used with AUTH (PLAIN or LOGIN), and only over TLS.
    pub username: Option<String>,
    pub password: Option<String>,
}

/// How long to wait for each step (RFC 5321 §4.5.3.2). EHLO and the STARTTLS/AUTH
/// exchanges use `ehlo`; `connect` is the TCP connection (and the TLS handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// §4.5.3.2.1: initial 220 message, 5 minutes.
    pub greeting: Duration,
    pub ehlo: Duration,
    /// §4.5.3.2.2: MAIL, 5 minutes.
    pub mail: Duration,
    /// §4.5.3.2.3: RCPT, 5 minutes.
    pub rcpt: Duration,
    /// §4.5.3.2.4: DATA initiation (the 354), 2 minutes.
    pub data_init: Duration,
    /// §4.5.3.2.5: each data block written, 3 minutes.
    pub data_block: Duration,
    /// §4.5.3.2.6: DATA termination (the reply to "."), 10 minutes.
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        const MIN: u64 = 60;
        Timeouts {
            connect: Duration::from_secs(5 * MIN),
            greeting: Duration::from_secs(5 * MIN),
            ehlo: Duration::from_secs(5 * MIN),
            mail: Duration::from_secs(5 * MIN),
            rcpt: Duration::from_secs(5 * MIN),
            data_init: Duration::from_secs(2 * MIN),
            data_block: Duration::from_secs(3 * MIN),
            data_end: Duration::from_secs(10 * MIN),
        }
    }
}

impl Timeouts {
    /// Every timeout set to `d` (tests).
    pub fn all(d: Duration) -> Timeouts {
        Timeouts {
            connect: d,
            greeting: d,
            ehlo: d,
            mail: d,
            rcpt: d,
            data_init: d,
            data_block: d,
            data_end: d,
        }
    }
}

/// The SMTP envelope of one delivery.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// "" = the null reverse-path `<>` (a DSN).
    pub mail_from: String,
    pub recipients: Vec<Recipient>,
    /// RFC 3461 ENVID (xtext as given); sent only to servers that offer DSN.
    pub envid: Option<String>,
    /// RFC 3461 RET=FULL|HDRS; sent only to servers that offer DSN.
    pub ret: Option<Ret>,
}

#[derive(Debug, Clone, Default)]
pub struct Recipient {
    pub address: String,
    /// RFC 3461 NOTIFY; empty = not given.
    pub notify: Notify,
    /// RFC 3461 ORCPT, as given (e.g. "rfc822;bob@example.org").
    pub orcpt: Option<String>,
}

impl Recipient {
    /// A recipient without DSN parameters.
    pub fn new(address: impl Into<String>) -> Recipient {
        Recipient {
            address: address.into(),
            ..Recipient::default()
        }
    }
}

/// RFC 3461 NOTIFY and RET are the SMTP session's own types (services/smtp): the values a
/// client gave on submission travel to the remote server unchanged.
pub use smtp::{Notify, Ret};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server said 2xx to the end of data.
    Delivered,
    /// 4xx, no answer, no route for now: retry later.
    Deferred,
    /// 5xx, or the domain has no mail route: a DSN, no retry.
    Failed,
}

/// What happened to one recipient in this attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    pub address: String,
    pub outcome: Outcome,
    /// Enhanced status code (RFC 3463), e.g. "2.0.0", "4.4.1", "5.1.1"; derived from the
    /// basic reply code when the server gave none.
    pub status: String,
    /// The DSN's Diagnostic-Code: "smtp; 550 5.1.1 <x@y>: no such user", or what went
    /// wrong ("connect to mx.example.org[192.0.2.1]:25: connection timed out").
    pub diagnostic: String,
    /// The server that answered (its MX or relay host name); `None` when none did.
    pub remote_mta: Option<String>,
}

/// Delivers one message to all recipients of ONE domain (the worker groups recipients by
/// domain). Routing: the relay host if configured, else `Resolver::route(domain)`. Hosts are
/// tried in preference order and each host's addresses in turn: connection failure, timeout,
/// TLS failure, 4xx at greeting/EHLO/MAIL move on to the next; if all fail, every recipient
/// left is Deferred (Failed when routing was permanent). A 4xx/5xx at RCPT is final for this
/// attempt. `message` is the complete message with CRLF line endings, NOT dot-stuffed.
/// Results come in the order of `envelope.recipients`.
pub async fn deliver(
    resolver: &Resolver,
    config: &ClientConfig,
    domain: &str,
    envelope: &Envelope,
    message: &[u8],
) -> Vec<RecipientResult> {
    let n = envelope.recipients.len();
    let mut results: Vec<Option<RecipientResult>> = vec![None; n];
    if n == 0 {
        return Vec::new();
    }

    let (hosts, port, credentials) = match &config.relay {
        Some(relay) => {
            let creds = match (&relay.username, &relay.password) {
                (Some(u), Some(p)) => Some((u.as_str(), p.as_str())),
                _ => None,
            };
            (relay_host(resolver, &relay.host).await, relay.port, creds)
        }
        None => (resolver.route(domain).await, config.port, None),
    };
    let hosts = match hosts {
        Ok(hosts) => hosts,
        Err(e) => return all(envelope, &route_failure(domain, &e)),
    };

    let mut last_failure = HostFailure {
        status: "4.4.4".into(),
        diagnostic: format!("no mail host for {domain} has an address"),
        remote_mta: None,
    };
    'hosts: for host in &hosts {
        for &ip in &host.addrs {
            let pending: Vec<usize> = (0..n).filter(|&i| results[i].is_none()).collect();
            if pending.is_empty() {
                break 'hosts;
            }
            let addr = SocketAddr::new(ip, port);
            let outcome = connection::attempt(
                config,
                &host.name,
                addr,
                credentials,
                envelope,
                pending,
                message,
            )
            .await;
            for (i, r) in outcome.results {
                results[i] = Some(r);
            }
            if let Some(f) = outcome.failure {
                tracing::debug!(host = %host.name, %addr, diagnostic = %f.diagnostic, "host failed; trying the next");
                last_failure = f;
            }
        }
    }

    let deferred = RecipientResult {
        address: String::new(),
        outcome: Outcome::Deferred,
        status: last_failure.status,
        diagnostic: last_failure.diagnostic,
        remote_mta: last_failure.remote_mta,
    };
    results
        .into_iter()
        .zip(&envelope.recipients)
        .map(|(r, rcpt)| {
            r.unwrap_or_else(|| RecipientResult {
                address: rcpt.address.clone(),
                ..deferred.clone()
            })
        })
        .collect()
}

/// The relay as one "MX host": an IP literal as it is, a name through the resolver. A relay
/// name that does not resolve is our configuration's fault, not the recipients': always
/// temporary, never a bounce.
async fn relay_host(resolver: &Resolver, host: &str) -> Result<Vec<MxHost>, RouteError> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let addrs = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => resolver.addresses(host).await.map_err(|e| match e {
            RouteError::Permanent { message, .. } => {
                RouteError::Temporary(format!("relay host: {message}"))
            }
            temporary => temporary,
        })?,
    };
    Ok(vec![MxHost {
        name: host.to_string(),
        preference: 0,
        addrs,
    }])
}

fn route_failure(domain: &str, e: &RouteError) -> RecipientResult {
    match e {
        RouteError::Temporary(msg) => RecipientResult {
            address: String::new(),
            outcome: Outcome::Deferred,
            // RFC 3463 X.4.3: directory server failure.
            status: "4.4.3".into(),
            diagnostic: format!("DNS lookup for {domain} failed: {msg}"),
            remote_mta: None,
        },
        RouteError::Permanent { status, message } => RecipientResult {
            address: String::new(),
            outcome: Outcome::Failed,
            status: (*status).to_string(),
            diagnostic: message.clone(),
            remote_mta: None,
        },
    }
}

fn all(envelope: &Envelope, result: &RecipientResult) -> Vec<RecipientResult> {
    envelope
        .recipients
        .iter()
        .map(|r| RecipientResult {
            address: r.address.clone(),
            ..result.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_bits_round_trip_with_the_proto_values() {
        for bits in 0..16 {
            assert_eq!(Notify::from_bits(bits).bits(), bits);
        }
        assert!(Notify::from_bits(0).is_empty());
        assert!(Notify::from_bits(4).failure);
    }

    #[test]
    fn default_timeouts_are_rfc_5321() {
        let t = Timeouts::default();
        assert_eq!(t.greeting, Duration::from_secs(300));
        assert_eq!(t.data_init, Duration::from_secs(120));
        assert_eq!(t.data_block, Duration::from_secs(180));
        assert_eq!(t.data_end, Duration::from_secs(600));
        assert_eq!(
            Timeouts::all(Duration::from_secs(1)).data_end,
            Duration::from_secs(1)
        );
    }
}
