//! `mailrootctl`: every administrative change is made once, here, against the store node, and
//! is live on every front-end at once (front-ends keep no copy of it).
//!
//! Errors print one line (`mailrootctl: <what went wrong>`) and exit non-zero:
//! 1 for a refused request, 2 for bad usage, 3 when the store cannot be reached.

use std::io::Read;

use clap::{Parser, Subcommand};
use proto::v1::admin_client::AdminClient;
use proto::v1::*;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

mod cluster;
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
    Domain(DomainCmd),
    /// Mailboxes.
    #[command(subcommand)]
    Mailbox(MailboxCmd),
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
    Config(ConfigCmd),
    /// Failed-login throttling: entries per (name, IP) (these lock), per IP and per name.
    #[command(subcommand)]
    Throttle(ThrottleCmd),
    /// Cluster bootstrap.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// The outbound queue: mail to other domains waiting for (another) delivery attempt.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// DKIM keys (RFC 6376): front-ends sign what users submit from a domain that has one.
    #[command(subcommand)]
    Dkim(DkimCmd),
}

#[derive(Subcommand)]
enum QueueCmd {
    /// Every entry: age, size, attempts, next attempt, claiming node, sender, recipients.
    List,
    /// One entry, with each pending recipient's last diagnostic.
    Show { id: String },
    /// Attempt the entry now (its deferred recipients are tried at once).
    Retry { id: String },
    /// Remove the entry without telling the sender (like Postfix's `postsuper -d`).
    Delete { id: String },
}

#[derive(Subcommand)]
enum DkimCmd {
    /// Make a key for DOMAIN (replacing its key) and print the DNS TXT record to publish at
    /// SELECTOR._domainkey.DOMAIN. Signing starts at once.
    Generate {
        domain: String,
        selector: String,
        /// rsa (2048 bits) or ed25519 (RFC 8463; not every verifier knows it yet).
        #[arg(long, default_value = "rsa")]
        algorithm: String,
    },
    /// Every domain's key and its DNS record.
    List,
    /// Stop signing for DOMAIN and forget its key.
    Delete { domain: String },
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
enum ConfigCmd {
    /// `greeting TEXT` (at most 259 printable ASCII characters, no < or >; "" = default),
    /// `require-secure-auth on|off`, `log-level 0|1|2|3|default` (none, minimum = warn,
    /// medium = info, maximum = debug; default = each node's RUST_LOG at start-up); the
    /// outbound queue's `queue-retry-min`, `queue-retry-max`, `queue-lifetime`,
    /// `queue-delay-warning` (durations like 30s, 5m, 4h, 5d) and `outbound-limit N`
    /// (messages to other domains per user per hour, 0 = unlimited).
    Set { key: String, value: String },
    /// Show every setting.
    Show,
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

#[derive(Subcommand)]
enum DomainCmd {
    Add {
        domain: String,
    },
    /// Delete a domain; with --force also all its mailboxes and their mail.
    Delete {
        domain: String,
        #[arg(long)]
        force: bool,
    },
    List,
    /// Refuse POP3 logins for every mailbox of the domain.
    Lock {
        domain: String,
    },
    Unlock {
        domain: String,
    },
}

#[derive(Subcommand)]
enum MailboxCmd {
    /// Create a mailbox; the password is read from standard input (first line).
    Add {
        address: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Delete a mailbox and all its mail.
    Delete {
        address: String,
    },
    /// List mailboxes (of one domain, or all).
    List {
        domain: Option<String>,
    },
    /// Change a mailbox password; the new password is read from standard input.
    Passwd {
        address: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Refuse POP3 logins (SMTP delivery continues). An alias locks its targets.
    Lock {
        address: String,
    },
    Unlock {
        address: String,
    },
    /// Break the cluster-wide POP3 session lock held on a mailbox (e.g. by a dead front-end).
    UnlockSession {
        address: String,
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

fn read_password() -> Result<String, Failure> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Failure::Usage(format!("cannot read the password from stdin: {e}")))?;
    let line = input.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(Failure::Usage("no password on standard input".into()));
    }
    Ok(line)
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
        Command::Domain(DomainCmd::Add { domain }) => {
            c.add_domain(DomainRequest {
                domain: domain.clone(),
            })
            .await?;
            println!("domain {domain} added");
        }
        Command::Domain(DomainCmd::Delete { domain, force }) => {
            c.delete_domain(DeleteDomainRequest {
                domain: domain.clone(),
                force,
            })
            .await?;
            println!("domain {domain} deleted");
        }
        Command::Domain(DomainCmd::List) => {
            for d in c.list_domains(Empty {}).await?.into_inner().domains {
                println!("{d}");
            }
        }
        Command::Mailbox(MailboxCmd::Add { address, .. }) => {
            let password = read_password()?;
            c.add_mailbox(MailboxRequest {
                address: address.clone(),
                password,
            })
            .await?;
            println!("mailbox {address} added");
        }
        Command::Mailbox(MailboxCmd::Delete { address }) => {
            c.delete_mailbox(AddressRequest {
                address: address.clone(),
            })
            .await?;
            println!("mailbox {address} deleted");
        }
        Command::Mailbox(MailboxCmd::List { domain }) => {
            let req = ListMailboxesRequest {
                domain: domain.unwrap_or_default(),
            };
            for a in c.list_mailboxes(req).await?.into_inner().addresses {
                println!("{a}");
            }
        }
        Command::Mailbox(MailboxCmd::Passwd { address, .. }) => {
            let password = read_password()?;
            c.set_password(MailboxRequest {
                address: address.clone(),
                password,
            })
            .await?;
            println!("password of {address} changed");
        }
        Command::Domain(DomainCmd::Lock { domain }) => {
            set_lock(&mut c, domain, true, true).await?;
        }
        Command::Domain(DomainCmd::Unlock { domain }) => {
            set_lock(&mut c, domain, true, false).await?;
        }
        Command::Mailbox(MailboxCmd::Lock { address }) => {
            set_lock(&mut c, address, false, true).await?;
        }
        Command::Mailbox(MailboxCmd::Unlock { address }) => {
            set_lock(&mut c, address, false, false).await?;
        }
        Command::Mailbox(MailboxCmd::UnlockSession { address }) => {
            c.break_session(AddressRequest {
                address: address.clone(),
            })
            .await?;
            println!("POP3 session lock of {address} broken");
        }
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
        Command::Config(ConfigCmd::Set { key, value }) => {
            let s = c
                .set_config(SetConfigRequest {
                    key: key.clone(),
                    value,
                })
                .await?
                .into_inner();
            println!("{key} set (settings version {})", s.version);
        }
        Command::Config(ConfigCmd::Show) => {
            let s = c.get_config(Empty {}).await?.into_inner();
            println!(
                "greeting: {}",
                if s.greeting.is_empty() {
                    "(default)"
                } else {
                    &s.greeting
                }
            );
            println!(
                "require-secure-auth: {}",
                if s.require_secure_auth { "on" } else { "off" }
            );
            let level = s.log_level.map_or_else(
                || "default (each node's RUST_LOG at start-up)".to_string(),
                |n| match mailroot_common::logging::LogLevel::from_number(n) {
                    Some(level) => level.to_string(),
                    None => format!("{n} (out of range)"),
                },
            );
            println!("log-level: {level}");
            let duration = |ms: Option<u64>, default: &str| {
                ms.map_or_else(
                    || format!("{default} (default)"),
                    |ms| format!("{}s", ms / 1000),
                )
            };
            println!("queue-retry-min: {}", duration(s.queue_retry_min_ms, "5m"));
            println!("queue-retry-max: {}", duration(s.queue_retry_max_ms, "1h"));
            println!("queue-lifetime: {}", duration(s.queue_lifetime_ms, "5d"));
            println!(
                "queue-delay-warning: {}",
                duration(s.queue_delay_warning_ms, "4h")
            );
            println!(
                "outbound-limit: {}",
                s.outbound_limit.map_or_else(
                    || "200 (default)".to_string(),
                    |n| if n == 0 {
                        "unlimited".to_string()
                    } else {
                        format!("{n} per user per hour")
                    }
                )
            );
            let keys: Vec<String> = s
                .dkim_keys
                .iter()
                .map(|k| format!("{}:{}", k.domain, k.selector))
                .collect();
            println!(
                "dkim: {}",
                if keys.is_empty() {
                    "(no keys)".to_string()
                } else {
                    keys.join(" ")
                }
            );
            println!("version: {}", s.version);
        }
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
        Command::Queue(QueueCmd::List) => {
            let entries = c.list_queue(Empty {}).await?.into_inner().entries;
            queue::print_list(&entries);
        }
        Command::Queue(QueueCmd::Show { id }) => {
            let entry = c.show_queue(QueueIdRequest { id }).await?.into_inner();
            queue::print_entry(&entry);
        }
        Command::Queue(QueueCmd::Retry { id }) => {
            c.retry_queue(QueueIdRequest { id: id.clone() }).await?;
            println!("queue entry {id} is due now");
        }
        Command::Queue(QueueCmd::Delete { id }) => {
            c.delete_queue(QueueIdRequest { id: id.clone() }).await?;
            println!("queue entry {id} deleted");
        }
        Command::Dkim(DkimCmd::Generate {
            domain,
            selector,
            algorithm,
        }) => {
            let r = c
                .dkim_generate(DkimGenerateRequest {
                    domain: domain.clone(),
                    selector,
                    algorithm,
                })
                .await?
                .into_inner();
            println!("DKIM key for {domain} made; publish this DNS record:");
            println!("{} IN TXT \"{}\"", r.name, r.txt);
        }
        Command::Dkim(DkimCmd::List) => {
            let keys = c.dkim_list(Empty {}).await?.into_inner().keys;
            queue::print_dkim(&keys);
        }
        Command::Dkim(DkimCmd::Delete { domain }) => {
            c.dkim_delete(DomainRequest {
                domain: domain.clone(),
            })
            .await?;
            println!("DKIM key of {domain} deleted; its mail is no longer signed");
        }
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

async fn set_lock(
    c: &mut Client,
    target: String,
    domain: bool,
    locked: bool,
) -> Result<(), Failure> {
    c.set_lock(SetLockRequest {
        target: target.clone(),
        domain,
        locked,
    })
    .await?;
    println!("{target} {}", if locked { "locked" } else { "unlocked" });
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
