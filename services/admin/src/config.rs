//! `mailrootctl config`: the cluster-wide settings (store-node/src/settings.rs), live on every
//! front-end within a second.

use clap::Subcommand;
use proto::v1::{Empty, SetConfigRequest, Settings};

use crate::{Client, Failure};

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// `greeting TEXT` (at most 259 printable ASCII characters, no < or >; "" = default),
    /// `require-secure-auth on|off`, `log-level 0|1|2|3|default` (none, minimum = warn,
    /// medium = info, maximum = debug; default = each node's RUST_LOG at start-up); the
    /// outbound queue's `queue-retry-min`, `queue-retry-max`, `queue-lifetime`,
    /// `queue-delay-warning` (durations like 30s, 5m, 4h, 5d) and `outbound-limit N`
    /// (messages to other domains per user per hour, 0 = unlimited); `retention 30d|never`
    /// (retrieved POP3 messages are deleted that long after their first retrieval, RFC 2449
    /// EXPIRE; with --domain for one domain, `default` there returns to the cluster's) and
    /// `login-delay 15m|off` (least time between two POP3 logins to a maildrop, LOGIN-DELAY).
    Set {
        key: String,
        value: String,
        /// The setting of one hosted domain (only retention has one).
        #[arg(long)]
        domain: Option<String>,
    },
    /// Show every setting.
    Show,
}

pub async fn run(c: &mut Client, cmd: ConfigCmd) -> Result<(), Failure> {
    match cmd {
        ConfigCmd::Set { key, value, domain } => {
            let s = c
                .set_config(SetConfigRequest {
                    key: key.clone(),
                    value,
                    domain: domain.clone().unwrap_or_default(),
                })
                .await?
                .into_inner();
            match domain {
                Some(d) => println!("{key} of {d} set (settings version {})", s.version),
                None => println!("{key} set (settings version {})", s.version),
            }
        }
        ConfigCmd::Show => show(c.get_config(Empty {}).await?.into_inner()),
    }
    Ok(())
}

/// `30d`, `12h`, `90s`: the largest whole unit.
fn duration(ms: u64) -> String {
    let s = ms / 1000;
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s > 0 && s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

fn show(s: Settings) {
    let greeting = if s.greeting.is_empty() {
        "(default)"
    } else {
        &s.greeting
    };
    println!("greeting: {greeting}");
    let secure = if s.require_secure_auth { "on" } else { "off" };
    println!("require-secure-auth: {secure}");
    let level = s.log_level.map_or_else(
        || "default (each node's RUST_LOG at start-up)".to_string(),
        |n| match mailroot_common::logging::LogLevel::from_number(n) {
            Some(level) => level.to_string(),
            None => format!("{n} (out of range)"),
        },
    );
    println!("log-level: {level}");
    let or_default = |ms: Option<u64>, default: &str| {
        ms.map_or_else(|| format!("{default} (default)"), duration)
    };
    println!(
        "queue-retry-min: {}",
        or_default(s.queue_retry_min_ms, "5m")
    );
    println!(
        "queue-retry-max: {}",
        or_default(s.queue_retry_max_ms, "1h")
    );
    println!("queue-lifetime: {}", or_default(s.queue_lifetime_ms, "5d"));
    println!(
        "queue-delay-warning: {}",
        or_default(s.queue_delay_warning_ms, "4h")
    );
    let limit = s.outbound_limit.map_or_else(
        || "200 (default)".to_string(),
        |n| match n {
            0 => "unlimited".to_string(),
            n => format!("{n} per user per hour"),
        },
    );
    println!("outbound-limit: {limit}");
    let retention = |ms: u64| match ms {
        0 => "never".to_string(),
        ms => format!("{} after the first retrieval", duration(ms)),
    };
    println!("retention: {}", retention(s.retention_ms.unwrap_or(0)));
    let mut domains: Vec<_> = s.domain_retention_ms.iter().collect();
    domains.sort();
    for (domain, ms) in domains {
        println!("retention of {domain}: {}", retention(*ms));
    }
    let delay = match s.login_delay_s.unwrap_or(0) {
        0 => "off".to_string(),
        n => duration(u64::from(n) * 1000),
    };
    println!("login-delay: {delay}");
    let keys: Vec<String> = (s.dkim_keys.iter())
        .map(|k| format!("{}:{}", k.domain, k.selector))
        .collect();
    let keys = if keys.is_empty() {
        "(no keys)".to_string()
    } else {
        keys.join(" ")
    };
    println!("dkim: {keys}");
    println!("version: {}", s.version);
}
