//! `mailrootctl queue` and `mailrootctl dkim`: the outbound queue (store-node/src/store/queue)
//! and the DKIM keys front-ends sign with.
//!
//! `queue list` prints one line per entry with single-word columns (scripts split on
//! whitespace): ID AGE SIZE ATTEMPTS NEXT CLAIMED-BY FROM RECIPIENTS.

use clap::Subcommand;
use proto::v1::*;

use crate::{Client, Failure};

#[derive(Subcommand)]
pub enum QueueCmd {
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
pub enum DkimCmd {
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `90s`, `12m`, `3h`, `2d`: the largest unit that keeps a whole number >= 1.
fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

pub fn print_list(entries: &[QueueInfo]) {
    println!(
        "{:<36} {:>5} {:>9} {:>8} {:>6} {:<36} {:<30} RECIPIENTS",
        "ID", "AGE", "SIZE", "ATTEMPTS", "NEXT", "CLAIMED-BY", "FROM"
    );
    let now = now_ms();
    let mut recipients = 0;
    for e in entries {
        recipients += e.recipients.len();
        let next = if e.next_attempt_unix_ms <= now {
            "now".to_string()
        } else {
            span(e.next_attempt_unix_ms - now)
        };
        let from = if e.mail_from.is_empty() {
            "<>"
        } else {
            &e.mail_from
        };
        let to: Vec<&str> = e.recipients.iter().map(|r| r.address.as_str()).collect();
        println!(
            "{:<36} {:>5} {:>9} {:>8} {:>6} {:<36} {:<30} {}",
            e.id,
            span(now.saturating_sub(e.created_unix_ms)),
            e.size,
            e.attempts,
            next,
            dash(&e.claimed_by),
            from,
            to.join(",")
        );
    }
    let noun = if entries.len() == 1 {
        "entry"
    } else {
        "entries"
    };
    println!("{} {noun}, {recipients} recipients", entries.len());
}

pub fn print_entry(e: &QueueInfo) {
    let now = now_ms();
    println!("id: {}", e.id);
    println!(
        "from: {}",
        if e.mail_from.is_empty() {
            "<>"
        } else {
            &e.mail_from
        }
    );
    println!("user: {}", dash(&e.user));
    println!("size: {}", e.size);
    println!("age: {}", span(now.saturating_sub(e.created_unix_ms)));
    println!("attempts: {}", e.attempts);
    println!(
        "next-attempt: {}",
        if e.next_attempt_unix_ms <= now {
            "now".to_string()
        } else {
            format!("in {}", span(e.next_attempt_unix_ms - now))
        }
    );
    println!("claimed-by: {}", dash(&e.claimed_by));
    for r in &e.recipients {
        println!(
            "recipient: {} {} {}",
            r.address,
            r.state,
            dash(&r.last_diagnostic)
        );
    }
}

pub fn print_dkim(keys: &[DkimInfo]) {
    for k in keys {
        println!(
            "{} selector={} algorithm={}",
            k.domain, k.selector, k.algorithm
        );
        println!("  {} IN TXT \"{}\"", k.name, k.txt);
    }
    let noun = if keys.len() == 1 { "key" } else { "keys" };
    println!("{} DKIM {noun}", keys.len());
}

pub async fn run(c: &mut Client, cmd: QueueCmd) -> Result<(), Failure> {
    match cmd {
        QueueCmd::List => {
            let entries = c.list_queue(Empty {}).await?.into_inner().entries;
            print_list(&entries);
        }
        QueueCmd::Show { id } => {
            let entry = c.show_queue(QueueIdRequest { id }).await?.into_inner();
            print_entry(&entry);
        }
        QueueCmd::Retry { id } => {
            c.retry_queue(QueueIdRequest { id: id.clone() }).await?;
            println!("queue entry {id} is due now");
        }
        QueueCmd::Delete { id } => {
            c.delete_queue(QueueIdRequest { id: id.clone() }).await?;
            println!("queue entry {id} deleted");
        }
    }
    Ok(())
}

pub async fn dkim(c: &mut Client, cmd: DkimCmd) -> Result<(), Failure> {
    match cmd {
        DkimCmd::Generate {
            domain,
            selector,
            algorithm,
        } => {
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
        DkimCmd::List => {
            let keys = c.dkim_list(Empty {}).await?.into_inner().keys;
            print_dkim(&keys);
        }
        DkimCmd::Delete { domain } => {
            c.dkim_delete(DomainRequest {
                domain: domain.clone(),
            })
            .await?;
            println!("DKIM key of {domain} deleted; its mail is no longer signed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(119_999), "119s");
        assert_eq!(span(120_000), "2m");
        assert_eq!(span(3 * 3_600_000), "3h");
        assert_eq!(span(3_600_000), "60m");
        assert_eq!(span(7_200_000), "2h");
        assert_eq!(span(5 * 86_400_000), "5d");
    }
}
