//! `mailrootctl stat`: one mailbox (or alias), one domain, or the whole cluster.
//!
//! The per-mailbox table is unchanged from the first version (scripts and the test harness
//! read the line that starts with the address); domain sums and the cluster line follow it.

use clap::Args;
use proto::v1::{ClusterStat, DomainStat, MailboxStat, StatReply, StatRequest};

use crate::{Failure, show_size};

#[derive(Args)]
pub struct StatArgs {
    /// A mailbox or alias address, or a domain (a name without @, or any name with
    /// --domain). None: every mailbox, every domain and the cluster's sums.
    #[arg(value_name = "ADDRESS|DOMAIN")]
    target: Option<String>,
    /// TARGET is a domain.
    #[arg(long, requires = "target")]
    domain: bool,
    /// Only the sums (domains, cluster), no line per mailbox.
    #[arg(long)]
    summary: bool,
}

impl StatArgs {
    pub fn request(&self) -> Result<StatRequest, Failure> {
        let mut req = StatRequest {
            summary_only: self.summary,
            ..StatRequest::default()
        };
        match &self.target {
            None => {}
            Some(t) if self.domain || !t.contains('@') => req.domain = t.clone(),
            Some(_) if self.summary => {
                return Err(Failure::Usage(
                    "--summary is for a domain or the whole cluster, not a mailbox".into(),
                ));
            }
            Some(t) => req.address = t.clone(),
        }
        Ok(req)
    }
}

pub fn print(reply: &StatReply, summary: bool) {
    if !summary {
        print_mailboxes(&reply.mailboxes);
    }
    if !reply.domains.is_empty() {
        if !summary {
            println!();
        }
        print_domains(&reply.domains);
    }
    if let Some(c) = &reply.cluster {
        println!();
        print_cluster(c);
    }
}

fn print_mailboxes(stats: &[MailboxStat]) {
    println!(
        "{:<40} {:>10} {:>14} {:>12} {:<8} POP3-SESSION",
        "MAILBOX", "MESSAGES", "BYTES", "QUOTA", "LOCK"
    );
    for s in stats {
        let session = if s.session_id.is_empty() {
            "-".to_string()
        } else {
            format!(
                "node={} session={} epoch={} age={}s",
                s.session_node,
                s.session_id,
                s.session_epoch,
                s.session_age_ms / 1000
            )
        };
        println!(
            "{:<40} {:>10} {:>14} {:>12} {:<8} {}",
            s.address,
            s.messages,
            s.bytes,
            show_size(s.quota),
            if s.locked { "locked" } else { "-" },
            session
        );
    }
}

/// Share of `limit` in use, "-" for unlimited.
fn quota_use(used: u64, limit: u64) -> String {
    if limit == 0 {
        "-".into()
    } else {
        format!("{}%", u128::from(used) * 100 / u128::from(limit))
    }
}

fn print_domains(domains: &[DomainStat]) {
    println!(
        "{:<40} {:>10} {:>10} {:>14} {:>12} {:>6} {:>10} LOCK",
        "DOMAIN", "MAILBOXES", "MESSAGES", "BYTES", "QUOTA", "USE", "NEAR-QUOTA"
    );
    for d in domains {
        println!(
            "{:<40} {:>10} {:>10} {:>14} {:>12} {:>6} {:>10} {}",
            d.domain,
            d.mailboxes,
            d.messages,
            d.bytes,
            show_size(d.quota),
            quota_use(d.bytes, d.quota),
            d.mailboxes_near_quota,
            if d.locked { "locked" } else { "-" },
        );
    }
}

/// One `key=value` line, for people and scripts alike.
fn print_cluster(c: &ClusterStat) {
    println!(
        "cluster: domains={} mailboxes={} messages={} bytes={} mailboxes-near-quota={} domains-near-quota={} queue-entries={} queue-recipients={}",
        c.domains,
        c.mailboxes,
        c.messages,
        c.bytes,
        c.mailboxes_near_quota,
        c.domains_near_quota,
        c.queue_entries,
        c.queue_recipients
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(target: Option<&str>, domain: bool, summary: bool) -> StatArgs {
        StatArgs {
            target: target.map(str::to_string),
            domain,
            summary,
        }
    }

    #[test]
    fn a_name_without_at_is_a_domain() {
        let req = args(Some("example.com"), false, false).request().ok();
        assert_eq!(
            req.map(|r| (r.address, r.domain)),
            Some((String::new(), "example.com".to_string()))
        );
        let req = args(Some("a@example.com"), false, false).request().ok();
        assert_eq!(
            req.map(|r| (r.address, r.domain)),
            Some(("a@example.com".to_string(), String::new()))
        );
        let req = args(Some("a@example.com"), true, false).request().ok();
        assert_eq!(req.map(|r| r.domain), Some("a@example.com".to_string()));
        assert!(args(Some("a@example.com"), false, true).request().is_err());
        let req = args(None, false, true).request().ok();
        assert_eq!(req.map(|r| r.summary_only), Some(true));
    }

    #[test]
    fn quota_use_is_a_share_of_the_limit() {
        assert_eq!(quota_use(50, 200), "25%");
        assert_eq!(quota_use(50, 0), "-");
        assert_eq!(quota_use(u64::MAX, u64::MAX), "100%");
    }
}
