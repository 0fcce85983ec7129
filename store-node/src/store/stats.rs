//! `mailrootctl stat`: message counts, bytes, quotas and POP3 session holders per mailbox,
//! and their sums per domain and over the whole cluster.
//!
//! Every report is taken under one hold of the state lock, so its sums agree with its rows
//! even while deliveries go on; the cluster's outbound queue counts are read from the queue's
//! own index right after. Reads only; nothing here changes the state.

use super::*;

/// What `stat` is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatScope<'a> {
    /// A mailbox, or an alias (its target mailboxes).
    Mailbox(&'a str),
    /// A domain: its mailboxes and its sums.
    Domain(&'a str),
    /// Every mailbox, every domain's sums and the cluster's.
    Cluster,
}

/// Sums over the mailboxes of one domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainStat {
    pub domain: String,
    pub mailboxes: u64,
    pub messages: u64,
    pub bytes: u64,
    /// The domain's pool.
    pub quota: Option<u64>,
    pub locked: bool,
    /// Mailboxes at or above [`QUOTA_WARNING_PERCENT`] of their own quota.
    pub mailboxes_near_quota: u64,
}

impl DomainStat {
    /// At or above [`QUOTA_WARNING_PERCENT`] of its pool.
    pub fn near_quota(&self) -> bool {
        near(self.bytes, self.quota)
    }
}

/// Sums over every domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterStat {
    pub domains: u64,
    pub mailboxes: u64,
    pub messages: u64,
    pub bytes: u64,
    pub mailboxes_near_quota: u64,
    /// Domains at or above [`QUOTA_WARNING_PERCENT`] of their pool.
    pub domains_near_quota: u64,
    /// Outbound queue entries, and their recipients still to deliver.
    pub queue_entries: u64,
    pub queue_recipients: u64,
}

impl ClusterStat {
    pub fn sum(domains: &[DomainStat]) -> ClusterStat {
        domains.iter().fold(ClusterStat::default(), |mut c, d| {
            c.domains += 1;
            c.mailboxes += d.mailboxes;
            c.messages += d.messages;
            c.bytes += d.bytes;
            c.mailboxes_near_quota += d.mailboxes_near_quota;
            c.domains_near_quota += u64::from(d.near_quota());
            c
        })
    }
}

/// One `stat` answer; `domains` and `cluster` are empty/None for a mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatReport {
    pub mailboxes: Vec<MailboxStat>,
    pub domains: Vec<DomainStat>,
    pub cluster: Option<ClusterStat>,
}

/// Usage at or above the warning share of a limit (never for unlimited).
fn near(used: u64, limit: Option<u64>) -> bool {
    limit.is_some_and(|q| {
        u128::from(used) * 100 >= u128::from(q) * u128::from(QUOTA_WARNING_PERCENT)
    })
}

impl Store {
    /// Per mailbox: all of them, or those `address` (a mailbox or alias) resolves to.
    pub fn stat(&self, address: Option<&str>) -> Result<Vec<MailboxStat>> {
        let scope = address.map_or(StatScope::Cluster, StatScope::Mailbox);
        Ok(self.stat_report(scope, true)?.mailboxes)
    }

    /// The mailbox rows (when `with_mailboxes`) and the sums of `scope`, from one snapshot.
    pub fn stat_report(&self, scope: StatScope<'_>, with_mailboxes: bool) -> Result<StatReport> {
        let now = Instant::now();
        let state = self.state();
        let (wanted, domain): (Option<Vec<Address>>, Option<String>) = match scope {
            StatScope::Mailbox(raw) => {
                let addr = Address::parse(raw)?;
                let targets = state
                    .targets(&addr)
                    .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
                (Some(targets), None)
            }
            StatScope::Domain(raw) => {
                let name = names::domain(raw)?;
                if !state.domains.contains_key(&name) {
                    return Err(StoreError::UnknownDomain(name));
                }
                (None, Some(name))
            }
            StatScope::Cluster => (None, None),
        };
        let in_scope = |a: &Address| {
            wanted.as_ref().is_none_or(|w| w.contains(a))
                && domain.as_ref().is_none_or(|d| &a.domain == d)
        };
        let mailboxes = if with_mailboxes {
            (state.mailboxes.iter())
                .filter(|&(a, _)| in_scope(a))
                .map(|(a, mb)| MailboxStat {
                    address: a.to_string(),
                    messages: mb.messages.len() as u64,
                    bytes: mb.used,
                    locked: state.is_locked(a),
                    quota: mb.quota,
                    session: state.lease_holder(a, now).map(|l| LeaseInfo {
                        node: l.node.clone(),
                        session: l.session.clone(),
                        epoch: l.epoch,
                        age: now - l.granted,
                    }),
                })
                .collect()
        } else {
            Vec::new()
        };
        if wanted.is_some() {
            return Ok(StatReport {
                mailboxes,
                ..StatReport::default()
            });
        }
        let mut domains: BTreeMap<&str, DomainStat> = (state.domains.iter())
            .filter(|(name, _)| domain.as_ref().is_none_or(|d| d == *name))
            .map(|(name, d)| {
                let stat = DomainStat {
                    domain: name.clone(),
                    quota: d.quota,
                    locked: d.locked,
                    ..DomainStat::default()
                };
                (name.as_str(), stat)
            })
            .collect();
        for (addr, mb) in &state.mailboxes {
            if let Some(d) = domains.get_mut(addr.domain.as_str()) {
                d.mailboxes += 1;
                d.messages += mb.messages.len() as u64;
                d.bytes += mb.used;
                d.mailboxes_near_quota += u64::from(near(mb.used, mb.quota));
            }
        }
        let domains: Vec<DomainStat> = domains.into_values().collect();
        drop(state);
        let cluster = domain.is_none().then(|| {
            let (queue_entries, queue_recipients) = self.queue_counts();
            ClusterStat {
                queue_entries,
                queue_recipients,
                ..ClusterStat::sum(&domains)
            }
        });
        Ok(StatReport {
            mailboxes,
            domains,
            cluster,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_quota_is_the_warning_share_of_a_limit() {
        assert!(near(90, Some(100)));
        assert!(!near(89, Some(100)));
        assert!(near(200, Some(100)));
        assert!(!near(u64::MAX, None));
        assert!(near(u64::MAX, Some(u64::MAX)));
    }

    #[test]
    fn cluster_sums_domains() {
        let d = |bytes, quota, near| DomainStat {
            domain: "x".into(),
            mailboxes: 2,
            messages: 3,
            bytes,
            quota,
            locked: false,
            mailboxes_near_quota: near,
        };
        let c = ClusterStat::sum(&[d(100, Some(100), 1), d(5, None, 0)]);
        assert_eq!(
            c,
            ClusterStat {
                domains: 2,
                mailboxes: 4,
                messages: 6,
                bytes: 105,
                mailboxes_near_quota: 1,
                domains_near_quota: 1,
                queue_entries: 0,
                queue_recipients: 0,
            }
        );
    }
}
