//! Where mail for a domain goes (RFC 5321 §5.1): its MX hosts in preference order, equal
//! preferences in random order, each with its A and AAAA addresses; no MX record means the
//! domain itself is the one mail host (the "implicit MX"); a null MX (RFC 7505) or a domain
//! that does not exist means no mail can go there at all.
//!
//! Owns the mapping of DNS answers to "permanent" and "temporary": only an authoritative
//! answer (NXDOMAIN, a null MX, a name with no MX and no address) is permanent; everything
//! else (SERVFAIL, REFUSED, timeouts) is temporary, since a retry may see the real answer.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{TokioResolver, net::DnsError};

use crate::error::OutboundError;

/// One DNS query may take this long per attempt.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPTS: usize = 2;

/// A DNS resolver for mail routing. Cheap to share (`&Resolver` from many tasks).
pub struct Resolver {
    inner: TokioResolver,
}

/// One mail host of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// Its name as published (no trailing dot); the domain itself for an implicit MX.
    pub name: String,
    pub preference: u16,
    /// A and AAAA records, IPv4 first.
    pub addrs: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Try again later (DNS failure or timeout).
    Temporary(String),
    /// No mail can be delivered to this domain: "5.1.2" (no such domain), "5.1.10" (null
    /// MX, RFC 7505 §4.2), "5.4.4" (neither MX nor address records).
    Permanent {
        status: &'static str,
        message: String,
    },
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::Temporary(m) => write!(f, "temporary: {m}"),
            RouteError::Permanent { status, message } => write!(f, "{status} {message}"),
        }
    }
}

/// A TLS client configuration that trusts nothing: the resolver is never asked to use TLS.
fn no_roots_tls() -> Result<rustls::ClientConfig, OutboundError> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OutboundError::Resolver(e.to_string()))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

impl Resolver {
    /// System name servers (/etc/resolv.conf), or `servers` (UDP and TCP) when given
    /// (the front-end's `--dns-server IP:PORT` flag; tests point it at a dnsmasq on loopback).
    pub fn new(servers: Option<Vec<SocketAddr>>) -> Result<Resolver, OutboundError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match servers {
            Some(servers) => {
                let name_servers = servers
                    .into_iter()
                    .map(|s| {
                        let mut udp = ConnectionConfig::udp();
                        udp.port = s.port();
                        let mut tcp = ConnectionConfig::tcp();
                        tcp.port = s.port();
                        NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                    })
                    .collect();
                let mut builder = TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(name_servers),
                    provider,
                );
                // Given servers are the whole truth (tests): no /etc/hosts.
                builder.options_mut().use_hosts_file = ResolveHosts::Never;
                builder
            }
            None => TokioResolver::builder(provider)
                .map_err(|e| OutboundError::Resolver(e.to_string()))?,
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = QUERY_TIMEOUT;
        options.attempts = ATTEMPTS;
        // Mail domains are always absolute: never try the search list.
        options.ndots = 0;
        // hickory is built with TLS (mail-auth turns its DNS-over-TLS on) and would otherwise
        // load the system's CA certificates here — which a minimal image (FROM scratch) does
        // not have, and the resolver never needs: name servers are asked over UDP and TCP.
        let builder = builder.with_tls_config(no_roots_tls()?);
        let inner = builder
            .build()
            .map_err(|e| OutboundError::Resolver(e.to_string()))?;
        Ok(Resolver { inner })
    }

    /// MX hosts in preference order (equal preferences shuffled), each with its addresses
    /// (A and AAAA). No MX record: the domain itself is the implicit MX (RFC 5321 §5.1).
    /// NXDOMAIN / null MX (RFC 7505): `Err(RouteError::Permanent)`; DNS failure or
    /// timeout: `Temporary`. MX hosts without any address are left out; when that leaves
    /// none, the answer is `Temporary` (their names may resolve later).
    pub async fn route(&self, domain: &str) -> Result<Vec<MxHost>, RouteError> {
        let domain = domain.trim_end_matches('.');
        let fqdn = format!("{domain}.");
        let records = match self.inner.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            Err(e) => match classify(&e) {
                Dns::NoSuchDomain => return Err(no_such_domain(domain)),
                Dns::NoRecords => Vec::new(),
                Dns::Failure => return Err(temporary(domain, "MX", &e)),
            },
        };

        if records.is_empty() {
            // RFC 5321 §5.1: the domain is its own mail host when it has an address.
            return match self.addresses(domain).await {
                Ok(addrs) => Ok(vec![MxHost {
                    name: domain.to_string(),
                    preference: 0,
                    addrs,
                }]),
                Err(RouteError::Permanent { .. }) => Err(RouteError::Permanent {
                    status: "5.4.4",
                    message: format!("{domain} has no MX and no address record"),
                }),
                Err(e) => Err(e),
            };
        }
        // RFC 7505 §3: a single MX of preference 0 with the root as exchange. A null MX
        // next to real ones is a misconfiguration; the real ones are used then (§4.3 asks
        // senders to treat it as null only when it is the only record, hence the filter).
        if records.iter().all(|(_, name)| is_root(name)) {
            return Err(RouteError::Permanent {
                status: "5.1.10",
                message: format!("{domain} does not accept mail (null MX, RFC 7505)"),
            });
        }

        let mut hosts = Vec::new();
        let mut last_error = None;
        for (preference, name) in order(records) {
            let name = name.trim_end_matches('.').to_string();
            match self.addresses(&name).await {
                Ok(addrs) => hosts.push(MxHost {
                    name,
                    preference,
                    addrs,
                }),
                Err(e) => last_error = Some(e),
            }
        }
        if hosts.is_empty() {
            let why = last_error.map(|e| e.to_string()).unwrap_or_default();
            return Err(RouteError::Temporary(format!(
                "no MX host of {domain} has an address ({why})"
            )));
        }
        Ok(hosts)
    }

    /// A and AAAA records of `host`. NXDOMAIN or no address at all is `Permanent` (5.1.2);
    /// a DNS failure `Temporary`.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, RouteError> {
        let host = host.trim_end_matches('.');
        let fqdn = format!("{host}.");
        let mut addrs = Vec::new();
        let mut temporary_error = None;
        let mut nxdomain = false;
        // Asked separately so that a failure of one family does not hide the other.
        let v4 = self.inner.ipv4_lookup(fqdn.as_str()).await;
        let v6 = self.inner.ipv6_lookup(fqdn.as_str()).await;
        for (lookup, kind) in [(v4, "A"), (v6, "AAAA")] {
            match lookup {
                Ok(l) => addrs.extend(l.answers().iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(e) => match classify(&e) {
                    Dns::NoSuchDomain => nxdomain = true,
                    Dns::NoRecords => {}
                    Dns::Failure => temporary_error = Some(temporary(host, kind, &e)),
                },
            }
        }
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        if let Some(e) = temporary_error {
            return Err(e);
        }
        if nxdomain {
            return Err(no_such_domain(host));
        }
        Err(RouteError::Permanent {
            status: "5.1.2",
            message: format!("{host} has no address record"),
        })
    }
}

enum Dns {
    /// NXDOMAIN: the name does not exist.
    NoSuchDomain,
    /// The name exists, without records of the type asked.
    NoRecords,
    /// SERVFAIL, REFUSED, timeout, I/O: nothing known.
    Failure,
}

fn classify(e: &NetError) -> Dns {
    if let NetError::Dns(DnsError::NoRecordsFound(nr)) = e {
        return match nr.response_code {
            ResponseCode::NXDomain => Dns::NoSuchDomain,
            ResponseCode::NoError => Dns::NoRecords,
            _ => Dns::Failure,
        };
    }
    Dns::Failure
}

fn no_such_domain(domain: &str) -> RouteError {
    RouteError::Permanent {
        status: "5.1.2",
        message: format!("{domain}: no such domain (NXDOMAIN)"),
    }
}

fn temporary(name: &str, kind: &str, e: &NetError) -> RouteError {
    RouteError::Temporary(format!("{kind} lookup for {name}: {e}"))
}

fn is_root(name: &str) -> bool {
    name.is_empty() || name == "."
}

/// RFC 5321 §5.1: lowest preference first; hosts of equal preference in random order (to
/// spread the load); null-MX entries among real ones dropped.
fn order(records: Vec<(u16, String)>) -> Vec<(u16, String)> {
    let mut keyed: Vec<(u16, u64, String)> = records
        .into_iter()
        .filter(|(_, name)| !is_root(name))
        .map(|(p, name)| (p, random(), name))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(p, _, name)| (p, name)).collect()
}

/// A random number from the standard library's randomly keyed hasher (enough for a
/// shuffle; no cryptographic use).
fn random() -> u64 {
    RandomState::new().hash_one(std::time::Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_preference_and_shuffles_equal_ones() {
        let records = vec![
            (20, "c.example.".to_string()),
            (10, "a.example.".to_string()),
            (10, "b.example.".to_string()),
            (0, ".".to_string()),
            (30, "d.example.".to_string()),
        ];
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..200 {
            let o = order(records.clone());
            let prefs: Vec<u16> = o.iter().map(|(p, _)| *p).collect();
            assert_eq!(prefs, [10, 10, 20, 30]);
            assert_eq!(o[2].1, "c.example.");
            firsts.insert(o[0].1.clone());
        }
        // Both hosts of preference 10 come first sometimes (p = 2^-199 to fail by chance).
        assert_eq!(firsts.len(), 2, "{firsts:?}");
    }
}
