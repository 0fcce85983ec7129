//! `mailroot-store` configuration: flags with `MAILROOT_*` environment fallbacks.

use clap::Parser;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
pub const DEFAULT_DATA: &str = "./mailroot-data";
/// How long a POP3 maildrop lease lives without renewal (front-ends renew at a third of it).
pub const DEFAULT_LEASE_TTL_SECS: f64 = 30.0;
pub const DEFAULT_LOGIN_DELAY_MS: u64 = 250;
pub const DEFAULT_AUTH_CACHE_TTL_SECS: u64 = 3600;
pub const DEFAULT_DIRECTORY_CACHE_TTL_SECS: u64 = 60;
/// How long an outbound queue claim lives without renewal (workers renew well before).
pub const DEFAULT_QUEUE_CLAIM_TTL_SECS: f64 = 60.0;
/// The outbound limit counts messages per user over this many seconds.
pub const DEFAULT_OUTBOUND_LIMIT_WINDOW_SECS: u64 = 3600;

#[derive(Debug, Clone, Parser)]
#[command(name = "mailroot-store", version, about = "mailroot store node")]
pub struct StoreConfig {
    /// Address to serve gRPC on (port 0 picks a free port; the chosen one is printed).
    #[arg(long, env = "MAILROOT_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Data location: a local directory.
    #[arg(long, env = "MAILROOT_DATA", default_value = DEFAULT_DATA)]
    pub data: String,
    /// The cluster's auth GUID; every front-end must present the same one.
    #[arg(long, env = "MAILROOT_AUTH_GUID")]
    pub auth_guid: String,
    /// Token that `mailrootctl` must present for administrative calls.
    #[arg(long, env = "MAILROOT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Seconds a POP3 maildrop lease lives without renewal; a dead front-end's sessions free
    /// their mailboxes after this long.
    #[arg(long, env = "MAILROOT_LEASE_TTL", default_value_t = DEFAULT_LEASE_TTL_SECS)]
    pub lease_ttl: f64,
    /// Base delay (ms) of the growing delay after failed logins (cluster-wide throttling).
    #[arg(long, env = "MAILROOT_LOGIN_DELAY_MS", default_value_t = DEFAULT_LOGIN_DELAY_MS)]
    pub login_delay_ms: u64,
    /// Seconds a verified password is remembered (keyed MAC, memory only; see
    /// store-node/src/auth.rs), so that a returning user's login costs no Argon2id. 0: off.
    #[arg(long, env = "MAILROOT_AUTH_CACHE_TTL", default_value_t = DEFAULT_AUTH_CACHE_TTL_SECS)]
    pub auth_cache_ttl: u64,
    /// Seconds what a domain's directory (LDAP) said is remembered: entries found for an
    /// address and verified logins (keyed MAC; see store-node/src/directory/cache.rs). 0: off.
    #[arg(long, env = "MAILROOT_DIRECTORY_CACHE_TTL", default_value_t = DEFAULT_DIRECTORY_CACHE_TTL_SECS)]
    pub directory_cache_ttl: u64,
    /// Seconds an outbound queue claim lives without renewal: a dead front-end's deliveries
    /// in progress are handed to another worker after this long.
    #[arg(long, env = "MAILROOT_QUEUE_CLAIM_TTL", default_value_t = DEFAULT_QUEUE_CLAIM_TTL_SECS)]
    pub queue_claim_ttl: f64,
    /// Seconds of the sliding window the `outbound-limit` setting counts messages over.
    #[arg(long, env = "MAILROOT_OUTBOUND_LIMIT_WINDOW", default_value_t = DEFAULT_OUTBOUND_LIMIT_WINDOW_SECS)]
    pub outbound_limit_window: u64,
    /// Mutual TLS on the gRPC port: the CA that signs front-end and admin certificates, and
    /// this store's own certificate and key.
    #[command(flatten)]
    pub cluster_tls: mailroot_common::flags::ClusterTls,
    /// Serve plaintext gRPC on a non-loopback address (the admin token and passwords then cross
    /// the network in clear; only for a private network you trust).
    #[arg(long, env = "MAILROOT_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
    #[command(flatten)]
    pub log: mailroot_common::logging::LogArgs,
    /// Prometheus `/metrics`, `/healthz` and `/readyz` (services/common/src/telemetry.rs).
    #[command(flatten)]
    pub metrics: mailroot_common::flags::MetricsListen,
    /// OpenTelemetry traces over OTLP/gRPC (services/common/src/tracing_otel.rs).
    #[command(flatten)]
    pub otlp: mailroot_common::flags::OtlpEndpoint,
}

impl StoreConfig {
    pub fn mutual_tls(&self) -> bool {
        self.cluster_tls.enabled()
    }

    pub fn lease_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.lease_ttl)
    }

    /// Start-up validation; the error names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if uuid::Uuid::parse_str(&self.auth_guid).is_err() {
            return Err(format!(
                "--auth-guid: {:?} is not a GUID (e.g. {})",
                self.auth_guid,
                uuid::Uuid::new_v4()
            ));
        }
        if self.admin_token.len() < 16 {
            return Err("--admin-token: must be at least 16 characters".into());
        }
        if !(0.5..=3600.0).contains(&self.lease_ttl) {
            return Err("--lease-ttl: must be between 0.5 and 3600 seconds".into());
        }
        if !(1..=7 * 86_400).contains(&self.outbound_limit_window) {
            return Err("--outbound-limit-window: must be between 1 second and 7 days".into());
        }
        if !(0.5..=3600.0).contains(&self.queue_claim_ttl) {
            return Err("--queue-claim-ttl: must be between 0.5 and 3600 seconds".into());
        }
        self.cluster_tls.validate()?;
        self.metrics.validate()?;
        self.otlp.validate()?;
        let given = usize::from(self.cluster_tls.enabled());
        let loopback = self
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        if given == 0 && !loopback && !self.insecure_plaintext {
            return Err(format!(
                "--listen {}: plaintext gRPC off loopback would send the admin token and passwords in clear; \
                 give --cluster-ca/--cluster-cert/--cluster-key (mailrootctl cluster init) or --insecure-plaintext",
                self.listen
            ));
        }
        if self.data.is_empty() {
            return Err("--data: must not be empty".into());
        }
        Ok(())
    }
}
