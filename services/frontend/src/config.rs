//! `mailroot-frontend` configuration: flags with `MAILROOT_*` environment fallbacks.

use std::time::Duration;

use clap::Parser;

pub use mailroot_common::flags::DEFAULT_STORE;
pub const DEFAULT_POP3: &str = "0.0.0.0:110";
pub const DEFAULT_SMTP: &str = "0.0.0.0:25";
pub const DEFAULT_HOSTNAME: &str = "localhost";
/// RFC 1939 §3: the autologout timer is at least 10 minutes.
pub const POP3_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// RFC 5321 §4.5.3.2.7: a server waits at least 5 minutes for the next command.
pub const SMTP_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long a front-end keeps retrying one store call before answering "try later".
pub const STORE_RETRY_BUDGET: Duration = Duration::from_secs(3);
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;
/// Postfix's smtpd_client_connection_count_limit is 50 as well.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 50;
/// Clients exempt from the per-IP limit (Postfix's mynetworks idea): this host.
pub const DEFAULT_TRUSTED_NETWORKS: &str = "127.0.0.0/8,::1/128";
/// Node-wide limit on message bytes held in memory at once (DATA being received, RETR chunks
/// being sent); above it SMTP answers 452 4.3.1 and POP3 -ERR [SYS/TEMP].
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 256 * 1024 * 1024;
/// Longest a connection may last at all (slowloris clients that trickle bytes).
pub const DEFAULT_SESSION_TIMEOUT_SECS: u64 = 30 * 60;
/// After SIGTERM, how long sessions in progress may go on before they are told 421 / -ERR.
/// Below Docker's default 10 s stop timeout, with room for `drain::CLOSE_GRACE`.
pub const DEFAULT_DRAIN_TIMEOUT_SECS: u64 = 5;
/// How long a client may take for its TLS handshake (implicit TLS, STARTTLS, STLS).
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 30;
/// The store link: a connection attempt's limit, and HTTP/2 pings that find a dead store (or
/// a cut network) while the connection looks fine to TCP — the settings stream then breaks
/// and reconnects instead of waiting forever on a silent socket.
pub const STORE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const STORE_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub const STORE_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Outbound queue entries one front-end delivers at once.
pub const DEFAULT_OUTBOUND_WORKERS: usize = 8;
/// Connections at once from one front-end to one destination domain (Postfix: 20 per
/// destination for the whole server; several front-ends share a destination here).
pub const DEFAULT_OUTBOUND_PER_DESTINATION: usize = 5;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "mailroot-frontend",
    version,
    about = "mailroot front-end node (POP3, SMTP)"
)]
pub struct FrontendConfig {
    #[command(flatten)]
    pub store: mailroot_common::flags::StoreUrl,
    #[command(flatten)]
    pub cluster_tls: mailroot_common::flags::ClusterTls,
    /// Prometheus `/metrics`, `/healthz` and `/readyz` (services/common/src/telemetry.rs).
    #[command(flatten)]
    pub metrics: mailroot_common::flags::MetricsListen,
    /// OpenTelemetry traces over OTLP/gRPC (services/common/src/tracing_otel.rs).
    #[command(flatten)]
    pub otlp: mailroot_common::flags::OtlpEndpoint,
    /// The cluster's auth GUID (must match the store's).
    #[arg(long, env = "MAILROOT_AUTH_GUID")]
    pub auth_guid: String,
    /// Host name used in banners and trace headers (default: this machine's host name — a
    /// container's own —, or localhost when that is not a valid host name).
    #[arg(long, env = "MAILROOT_HOSTNAME", default_value_t = default_hostname())]
    pub hostname: String,
    /// POP3 listen address (port 0 picks a free port; the chosen one is printed).
    #[arg(long, env = "MAILROOT_POP3", default_value = DEFAULT_POP3)]
    pub pop3: String,
    /// SMTP (inbound, port 25) listen address. STARTTLS is offered; AUTH is not.
    #[arg(long, env = "MAILROOT_SMTP", default_value = DEFAULT_SMTP)]
    pub smtp: String,
    /// Submission (RFC 6409, port 587) listen address: STARTTLS, AUTH required before MAIL.
    #[arg(long, env = "MAILROOT_SUBMISSION")]
    pub submission: Option<String>,
    /// Submission over implicit TLS (RFC 8314, port 465) listen address.
    #[arg(long, env = "MAILROOT_SMTPS")]
    pub smtps: Option<String>,
    /// POP3 over implicit TLS (RFC 8314, port 995) listen address.
    #[arg(long, env = "MAILROOT_POP3S")]
    pub pop3s: Option<String>,
    /// PEM certificate chain for TLS; without it a self-signed one is generated at start.
    #[arg(long, env = "MAILROOT_TLS_CERT")]
    pub tls_cert: Option<String>,
    /// PEM private key for `--tls-cert`.
    #[arg(long, env = "MAILROOT_TLS_KEY")]
    pub tls_key: Option<String>,
    /// Networks (CIDR, comma-separated) of load balancers that send a PROXY protocol v2
    /// header; connections from them must carry one, connections from elsewhere must not.
    #[arg(long, env = "MAILROOT_PROXY_FROM", default_value = "")]
    pub proxy_protocol_from: String,
    /// Most simultaneous client connections on this node.
    #[arg(long, env = "MAILROOT_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Most simultaneous client connections from one IP address.
    #[arg(long, env = "MAILROOT_MAX_CONNECTIONS_PER_IP", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,
    /// Networks (CIDR, comma-separated) whose clients are exempt from
    /// --max-connections-per-ip (still counted against --max-connections).
    #[arg(long, env = "MAILROOT_TRUSTED_NETWORKS", default_value = DEFAULT_TRUSTED_NETWORKS)]
    pub trusted_networks: String,
    /// Most message bytes held in memory at once on this node (all connections together).
    #[arg(long, env = "MAILROOT_MAX_INFLIGHT_BYTES", default_value_t = DEFAULT_MAX_INFLIGHT_BYTES)]
    pub max_inflight_bytes: usize,
    /// Seconds a client may stay silent (default: RFC 5321's 5 minutes for SMTP, RFC 1939's
    /// 10 minutes for POP3).
    #[arg(long, env = "MAILROOT_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,
    /// Seconds a connection may last in all.
    #[arg(long, env = "MAILROOT_SESSION_TIMEOUT", default_value_t = DEFAULT_SESSION_TIMEOUT_SECS)]
    pub session_timeout: u64,
    /// Seconds sessions in progress may go on after SIGTERM/Ctrl-C (new connections are
    /// refused at once); then they are told 421 4.3.2 / -ERR [SYS/TEMP] and closed.
    #[arg(long, env = "MAILROOT_DRAIN_TIMEOUT", default_value_t = DEFAULT_DRAIN_TIMEOUT_SECS)]
    pub drain_timeout: u64,
    /// Seconds a client may take for a TLS handshake (implicit TLS, STARTTLS, STLS).
    #[arg(long, env = "MAILROOT_TLS_HANDSHAKE_TIMEOUT", default_value_t = DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS)]
    pub tls_handshake_timeout: u64,
    /// This node's id in `mailrootctl nodes` (default: a UUID made at each start). Letters,
    /// digits, `-`, `_`, `.` and `:`, at most 64.
    #[arg(long, env = "MAILROOT_NODE_ID")]
    pub node_id: Option<String>,
    /// Outbound queue entries this node delivers at once (0: this node runs no delivery
    /// worker; another front-end delivers).
    #[arg(long, env = "MAILROOT_OUTBOUND_WORKERS", default_value_t = DEFAULT_OUTBOUND_WORKERS)]
    pub outbound_workers: usize,
    /// Connections at once from this node to one destination domain (or the relay host).
    #[arg(long, env = "MAILROOT_OUTBOUND_PER_DESTINATION", default_value_t = DEFAULT_OUTBOUND_PER_DESTINATION)]
    pub outbound_per_destination: usize,
    /// Name servers for MX lookups, `IP:PORT` (comma-separated or repeated); default: the
    /// system's (/etc/resolv.conf).
    #[arg(
        long = "dns-server",
        env = "MAILROOT_DNS_SERVERS",
        value_delimiter = ','
    )]
    pub dns_server: Vec<String>,
    /// TCP port of remote mail exchangers (RFC 5321: 25).
    #[arg(long, env = "MAILROOT_OUTBOUND_PORT", default_value_t = 25)]
    pub outbound_port: u16,
    /// Send all outbound mail through this smarthost (`HOST:PORT`) instead of looking up MX
    /// records (a provider's relay). STARTTLS is used when offered.
    #[arg(long, env = "MAILROOT_RELAY_HOST")]
    pub relay_host: Option<String>,
    /// AUTH user for `--relay-host` (sent only over TLS).
    #[arg(long, env = "MAILROOT_RELAY_USER")]
    pub relay_user: Option<String>,
    /// AUTH password for `--relay-host` (prefer the environment variable).
    #[arg(long, env = "MAILROOT_RELAY_PASSWORD", hide_env_values = true)]
    pub relay_password: Option<String>,
    /// Seconds each step of an outbound SMTP conversation may take (default: RFC 5321
    /// §4.5.3.2's limits, 2 to 10 minutes per step).
    #[arg(long, env = "MAILROOT_OUTBOUND_TIMEOUT")]
    pub outbound_timeout: Option<u64>,
    /// Defer instead of sending in clear when a remote server offers no STARTTLS.
    #[arg(long, env = "MAILROOT_OUTBOUND_REQUIRE_TLS")]
    pub outbound_require_tls: bool,
    #[command(flatten)]
    pub log: mailroot_common::logging::LogArgs,
}

fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `--hostname` when neither the flag nor MAILROOT_HOSTNAME is given.
pub fn default_hostname() -> String {
    mailroot_common::system_hostname()
        .filter(|n| is_host_name(n))
        .unwrap_or_else(|| DEFAULT_HOSTNAME.to_string())
}

impl FrontendConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.store.validate()?;
        self.cluster_tls.validate()?;
        self.metrics.validate()?;
        self.otlp.validate()?;
        if uuid::Uuid::parse_str(&self.auth_guid).is_err() {
            return Err(format!("--auth-guid: {:?} is not a GUID", self.auth_guid));
        }
        if !is_host_name(&self.hostname) {
            return Err(format!(
                "--hostname: {:?} is not a host name",
                self.hostname
            ));
        }
        crate::proxy::parse_networks("proxy-protocol-from", &self.proxy_protocol_from)?;
        crate::proxy::parse_networks("trusted-networks", &self.trusted_networks)?;
        if self.max_inflight_bytes < 1024 * 1024 {
            return Err("--max-inflight-bytes: must be at least 1048576 (1 MiB)".into());
        }
        if self.tls_handshake_timeout == 0 {
            return Err("--tls-handshake-timeout: must be at least 1 second".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("--tls-cert and --tls-key go together".into());
        }
        self.dns_servers()?;
        if let Some(relay) = &self.relay_host {
            split_host_port("relay-host", relay)?;
        }
        if self.relay_user.is_some() != self.relay_password.is_some() {
            return Err("--relay-user and --relay-password go together".into());
        }
        if self.outbound_per_destination == 0 {
            return Err("--outbound-per-destination: must be at least 1".into());
        }
        if self.outbound_timeout == Some(0) {
            return Err("--outbound-timeout: must be at least 1 second".into());
        }
        if let Some(id) = &self.node_id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
        {
            return Err(format!(
                "--node-id: {id:?} must be 1 to 64 letters, digits, '-', '_', '.' or ':'"
            ));
        }
        Ok(())
    }
}

impl FrontendConfig {
    /// `--dns-server`: None = the system's name servers.
    pub fn dns_servers(&self) -> Result<Option<Vec<std::net::SocketAddr>>, String> {
        if self.dns_server.is_empty() {
            return Ok(None);
        }
        self.dns_server
            .iter()
            .map(|s| {
                s.trim().parse().map_err(|_| {
                    format!("--dns-server: {s:?} is not an IP:PORT address (e.g. 127.0.0.1:53)")
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// `HOST:PORT` (a bracketed IPv6 literal allowed).
pub fn split_host_port(flag: &str, text: &str) -> Result<(String, u16), String> {
    let bad = || format!("--{flag}: {text:?} is not HOST:PORT");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_defaults_to_the_machines_own() {
        let config = FrontendConfig::try_parse_from([
            "mailroot-frontend",
            "--auth-guid",
            "00000000-0000-0000-0000-000000000000",
        ])
        .unwrap();
        let machine = mailroot_common::system_hostname().unwrap();
        if std::env::var_os("MAILROOT_HOSTNAME").is_none() && is_host_name(&machine) {
            assert_eq!(config.hostname, machine);
        }
        assert!(is_host_name(&default_hostname()));
        assert!(!is_host_name("a_b") && !is_host_name(""));
        let given = FrontendConfig::try_parse_from([
            "mailroot-frontend",
            "--auth-guid",
            "00000000-0000-0000-0000-000000000000",
            "--hostname",
            "mx.example.test",
        ])
        .unwrap();
        assert_eq!(given.hostname, "mx.example.test");
    }
}
