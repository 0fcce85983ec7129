//! `mailrootctl`: every administrative change is made once, here, against the store node, and
//! is live on every front-end at once (front-ends keep no copy of it).
//!
//! Errors print one line (`mailrootctl: <what went wrong>`) and exit non-zero:
//! 1 for a refused request, 2 for bad usage, 3 when the store cannot be reached.

use clap::{Parser, Subcommand};
use proto::v1::admin_client::AdminClient;
use proto::v1::*;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

mod accounts;
mod cluster;
mod config;
mod export;
mod import;
mod nodes;
mod queue;
mod stat;
use tonic::{Request, Status};

pub use mailroot_common::flags::DEFAULT_STORE;

#[derive(Parser)]
#[command(name = "mailrootctl", version, about = "Administer a mailroot cluster")]
struct Cli {
    #[command(flatten)]
    store: mailroot_common::flags::StoreUrl,
    /// Admin token of the store node.
    #[arg(
        long,
        env = "MAILROOT_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    admin_token: Option<String>,
    /// The cluster CA verifies the store; the certificate is the admin one from `cluster init`.
    #[command(flatten)]
    cluster_tls: mailroot_common::flags::ClusterTls,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Hosted domains.
    #[command(subcommand)]
    Domain(accounts::DomainCmd),
    /// Mailboxes.
    #[command(subcommand)]
    Mailbox(accounts::MailboxCmd),
    /// Message count, bytes, quota, lock and POP3 session holder per mailbox, with sums per
    /// domain and for the cluster: one mailbox, one domain, or everything.
    Stat(stat::StatArgs),
    /// The live front-ends: node id, host, version, address, sessions now, connected since,
    /// last seen.
    Nodes,
    /// Mailbox and domain quotas.
    #[command(subcommand)]
    Quota(QuotaCmd),
    /// Aliases: one address delivering to one or more mailboxes (any hosted domain).
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Cluster-wide settings, live on every front-end within a second.
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Failed-login throttling: entries per (name, IP) (these lock), per IP and per name.
    #[command(subcommand)]
    Throttle(ThrottleCmd),
    /// Cluster bootstrap.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// The outbound queue: mail to other domains waiting for (another) delivery attempt.
    #[command(subcommand)]
    Queue(queue::QueueCmd),
    /// DKIM keys (RFC 6376): front-ends sign what users submit from a domain that has one.
    #[command(subcommand)]
    Dkim(queue::DkimCmd),
    /// Existing mail into the store, exactly once (run it again after an interruption):
    /// a Windows POP3 service store, a maildir or an mbox file.
    #[command(subcommand)]
    Import(import::ImportCmd),
    /// A mailbox, or every mailbox of a domain, as maildirs: DIR/<address>/{cur,new,tmp}
    /// (the POP3 UIDL kept in each file name).
    Export {
        #[arg(value_name = "ADDRESS|DOMAIN")]
        target: String,
        dir: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum ThrottleCmd {
    /// Show the current entries (all, or those of one login name or client IP).
    List {
        /// A login name (address) or a client IP address.
        #[arg(value_name = "ADDRESS|IP")]
        filter: Option<String>,
    },
    /// Remove entries, lifting their lockouts (all, or those of one login name or client IP).
    Clear {
        /// A login name (address) or a client IP address.
        #[arg(value_name = "ADDRESS|IP")]
        filter: Option<String>,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Write a cluster CA, store/front-end/admin certificates, the auth GUID and the admin
    /// token into DIR (nothing is overwritten).
    Init {
        dir: std::path::PathBuf,
        /// Extra DNS names or IP addresses of the store (besides store, localhost, 127.0.0.1).
        #[arg(long = "store-name")]
        store_names: Vec<String>,
        /// Do nothing (exit 0) when DIR already holds the complete set (a container's first
        /// start); a partial set is still refused.
        #[arg(long)]
        if_missing: bool,
        /// One directory per role (ca/, store/, frontend/, admin/), each with only what that
        /// role needs, to be kept in separate volumes.
        #[arg(long)]
        by_role: bool,
    },
}

#[derive(Subcommand)]
enum QuotaCmd {
    /// Set a quota: SIZE like 500KB, 20MB, 1GB (powers of 1024), a byte count, or `unlimited`.
    Set {
        /// Mailbox address, or the domain with --domain.
        target: String,
        size: String,
        #[arg(long)]
        domain: bool,
    },
    /// Show limit and usage.
    Show {
        target: String,
        #[arg(long)]
        domain: bool,
    },
}

#[derive(Subcommand)]
enum AliasCmd {
    Add {
        alias: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    Delete {
        alias: String,
    },
    List {
        domain: Option<String>,
    },
}

#[derive(Clone)]
struct Token(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type Client = AdminClient<InterceptedService<Channel, Token>>;

pub(crate) enum Failure {
    Usage(String),
    Refused(String),
    Unreachable(String),
}

/// An error and its sources, `: `-separated (tonic's own Display says only "transport error";
/// the cause — a refused certificate, an HTTP/2 reply to TLS — is further down).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// What to check when the store could not be talked to at all, from how we tried.
fn unreachable_hint(url: &str, tls: bool) -> &'static str {
    if url.starts_with("http://") {
        " (a store with cluster TLS takes only https:// and a client certificate: \
         --cluster-ca/--cluster-cert/--cluster-key, for the compose cluster deploy/.secrets/)"
    } else if !tls {
        " (the store takes only clients with a cluster certificate: \
         --cluster-ca/--cluster-cert/--cluster-key)"
    } else {
        " (the certificates must come from the store's cluster: `mailrootctl cluster init` \
         of that cluster, the admin ones)"
    }
}

impl From<Status> for Failure {
    fn from(s: Status) -> Failure {
        // No reply from the store at all: the connection or its TLS failed.
        if let Some(source) = std::error::Error::source(&s) {
            return Failure::Unreachable(format!(
                "cannot talk to the store: {}",
                error_chain(source)
            ));
        }
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                Failure::Unreachable(format!("store unreachable: {}", s.message()))
            }
            _ => Failure::Refused(s.message().to_string()),
        }
    }
}

/// `500KB`, `20MB`, `1GB` (powers of 1024), `123` (bytes) or `unlimited` (None).
fn parse_size(text: &str) -> Result<Option<u64>, Failure> {
    let t = text.trim().to_ascii_uppercase();
    if t == "UNLIMITED" {
        return Ok(None);
    }
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" => 1 << 10,
        "M" | "MB" => 1 << 20,
        "G" | "GB" => 1 << 30,
        _ => 0,
    };
    match digits.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)) {
        Some(n) if n > 0 && mult > 0 => Ok(Some(n)),
        _ => Err(Failure::Usage(format!(
            "bad size {text:?}: use e.g. 500KB, 20MB, 1GB, a byte count, or unlimited"
        ))),
    }
}

pub(crate) fn show_size(n: u64) -> String {
    if n == 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

async fn connect(cli: &Cli) -> Result<Client, Failure> {
    let endpoint = Endpoint::from_shared(cli.store.url.clone())
        .map_err(|e| Failure::Usage(format!("--store {}: {e}", cli.store)))?
        .connect_timeout(std::time::Duration::from_secs(5));
    let endpoint = match cli.cluster_tls.read().map_err(Failure::Usage)? {
        None => endpoint,
        Some(pem) => {
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pem.ca))
                .identity(Identity::from_pem(pem.cert, pem.key));
            endpoint
                .tls_config(tls)
                .map_err(|e| Failure::Usage(format!("TLS configuration: {e}")))?
        }
    };
    connect_endpoint(cli, endpoint).await
}

async fn connect_endpoint(cli: &Cli, endpoint: Endpoint) -> Result<Client, Failure> {
    let token = cli.admin_token.as_deref().ok_or_else(|| {
        Failure::Usage("--admin-token (or MAILROOT_ADMIN_TOKEN) is required".into())
    })?;
    let value = format!("Bearer {token}").parse().map_err(|_| {
        Failure::Usage("--admin-token has characters not allowed in a header".into())
    })?;
    let channel = endpoint.connect().await.map_err(|e| {
        Failure::Unreachable(format!(
            "cannot reach the store at {}: {}",
            cli.store,
            error_chain(&e)
        ))
    })?;
    Ok(AdminClient::with_interceptor(channel, Token(value)))
}

async fn execute(cli: Cli) -> Result<(), Failure> {
    if let Command::Cluster(ClusterCmd::Init {
        dir,
        store_names,
        if_missing,
        by_role,
    }) = &cli.command
    {
        if *if_missing && cluster::existing(dir, *by_role) == cluster::Existing::Complete {
            println!(
                "cluster secrets in {} are complete already; nothing written",
                dir.display()
            );
            return Ok(());
        }
        let files = cluster::init(dir, store_names, *by_role)
            .map_err(|e| Failure::Refused(e.to_string()))?;
        println!(
            "cluster secrets written to {}: {}",
            dir.display(),
            files.join(" ")
        );
        println!("keep ca-key.pem offline; give store.pem/store-key.pem + ca.pem to the store,");
        println!(
            "frontend.pem/frontend-key.pem + ca.pem to front-ends, admin.pem/admin-key.pem to admins"
        );
        return Ok(());
    }
    let mut c = connect(&cli).await?;
    match cli.command {
        Command::Domain(cmd) => accounts::domain(&mut c, cmd).await?,
        Command::Mailbox(cmd) => accounts::mailbox(&mut c, cmd).await?,
        Command::Queue(cmd) => queue::run(&mut c, cmd).await?,
        Command::Dkim(cmd) => queue::dkim(&mut c, cmd).await?,
        Command::Import(cmd) => import::run(&mut c, cmd).await?,
        Command::Export { target, dir } => export::run(&mut c, &target, &dir).await?,
        Command::Stat(args) => {
            let req = args.request()?;
            let summary = req.summary_only;
            let reply = c.stat(req).await?.into_inner();
            stat::print(&reply, summary);
        }
        Command::Nodes => {
            let nodes = c.list_nodes(Empty {}).await?.into_inner().nodes;
            nodes::print(&nodes);
        }
        Command::Quota(QuotaCmd::Set {
            target,
            size,
            domain,
        }) => {
            let limit = parse_size(&size)?;
            c.set_quota(SetQuotaRequest {
                target: target.clone(),
                domain,
                bytes: limit.unwrap_or(0),
            })
            .await?;
            println!("quota of {target} set to {}", show_size(limit.unwrap_or(0)));
        }
        Command::Quota(QuotaCmd::Show { target, domain }) => {
            let r = c
                .show_quota(ShowQuotaRequest { target, domain })
                .await?
                .into_inner();
            println!("{} limit={} used={}", r.target, show_size(r.limit), r.used);
        }
        Command::Config(cmd) => config::run(&mut c, cmd).await?,
        Command::Throttle(ThrottleCmd::List { filter }) => {
            let req = ThrottleRequest {
                filter: filter.unwrap_or_default(),
            };
            let entries = c.list_throttle(req).await?.into_inner().entries;
            println!(
                "{:<8} {:<40} {:<39} {:>8} {:<7} REMAINING",
                "KIND", "USER", "IP", "FAILURES", "LOCKED"
            );
            for e in entries {
                let kind = match ThrottleKind::try_from(e.kind) {
                    Ok(ThrottleKind::UserIp) => "user+ip",
                    Ok(ThrottleKind::Ip) => "ip",
                    Ok(ThrottleKind::User) => "user",
                    Ok(ThrottleKind::Unspecified) | Err(_) => "?",
                };
                let dash = |s: &str| {
                    if s.is_empty() {
                        "-".to_string()
                    } else {
                        s.to_string()
                    }
                };
                println!(
                    "{:<8} {:<40} {:<39} {:>8} {:<7} {}s",
                    kind,
                    dash(&e.user),
                    dash(&e.ip),
                    e.failures,
                    if e.locked { "locked" } else { "-" },
                    e.remaining_ms.div_ceil(1000)
                );
            }
        }
        Command::Throttle(ThrottleCmd::Clear { filter }) => {
            let filter = filter.unwrap_or_default();
            let cleared = c
                .clear_throttle(ThrottleRequest {
                    filter: filter.clone(),
                })
                .await?
                .into_inner()
                .cleared;
            let what = if filter.is_empty() {
                String::new()
            } else {
                format!(" of {filter}")
            };
            let noun = if cleared == 1 { "entry" } else { "entries" };
            println!("{cleared} throttle {noun}{what} cleared");
        }
        Command::Cluster(_) => unreachable!("handled before connecting"),
        Command::Alias(AliasCmd::Add { alias, targets }) => {
            c.add_alias(AliasRequest {
                alias: alias.clone(),
                targets: targets.clone(),
            })
            .await?;
            println!("alias {alias} -> {} added", targets.join(", "));
        }
        Command::Alias(AliasCmd::Delete { alias }) => {
            c.delete_alias(AddressRequest {
                address: alias.clone(),
            })
            .await?;
            println!("alias {alias} deleted");
        }
        Command::Alias(AliasCmd::List { domain }) => {
            let req = ListMailboxesRequest {
                domain: domain.unwrap_or_default(),
            };
            for a in c.list_aliases(req).await?.into_inner().aliases {
                println!("{} -> {}", a.alias, a.targets.join(", "));
            }
        }
    }
    Ok(())
}

fn main() {
    // SAFETY: the first thing the process does: no other thread exists.
    unsafe { mailroot_common::load_env_file() };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(cli_main());
}

async fn cli_main() {
    let cli = Cli::parse();
    let hint = unreachable_hint(&cli.store.url, cli.cluster_tls.enabled());
    if let Err(f) = execute(cli).await {
        let (code, msg) = match f {
            Failure::Refused(m) => (1, m),
            Failure::Usage(m) => (2, m),
            // The hint is about TLS: not for a store that is down or a wrong port.
            Failure::Unreachable(m)
                if m.contains("tcp connect error") || m.contains("timed out") =>
            {
                (3, m)
            }
            Failure::Unreachable(m) => (3, format!("{m}{hint}")),
        };
        eprintln!("mailrootctl: {msg}");
        std::process::exit(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("500KB").ok(), Some(Some(500 * 1024)));
        assert_eq!(parse_size("20MB").ok(), Some(Some(20 << 20)));
        assert_eq!(parse_size("1gb").ok(), Some(Some(1 << 30)));
        assert_eq!(parse_size("1234").ok(), Some(Some(1234)));
        assert_eq!(parse_size("unlimited").ok(), Some(None));
        for bad in ["", "MB", "0", "-1", "12XB", "1.5MB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
