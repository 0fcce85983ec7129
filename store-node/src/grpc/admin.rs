//! The administration service (`mailrootctl`): every admin RPC, answered from the store.

use super::*;

fn mailbox_stat(s: crate::store::MailboxStat) -> proto::v1::MailboxStat {
    let session = s.session.as_ref();
    proto::v1::MailboxStat {
        address: s.address,
        messages: s.messages,
        bytes: s.bytes,
        locked: s.locked,
        quota: s.quota.unwrap_or(0),
        session_node: session.map(|l| l.node.clone()).unwrap_or_default(),
        session_id: session.map(|l| l.session.clone()).unwrap_or_default(),
        session_age_ms: session.map_or(0, |l| l.age.as_millis() as u64),
        session_epoch: session.map_or(0, |l| l.epoch),
    }
}

fn queue_info(q: crate::store::queue::QueueInfo) -> QueueInfo {
    QueueInfo {
        id: q.id,
        mail_from: q.mail_from,
        recipients: q
            .recipients
            .into_iter()
            .map(|r| QueueRecipientInfo {
                address: r.address,
                state: r.state.to_string(),
                last_diagnostic: r.last_diagnostic,
            })
            .collect(),
        size: q.size,
        created_unix_ms: q.created_ms,
        next_attempt_unix_ms: q.next_attempt_ms,
        attempts: q.attempts,
        claimed_by: q.claimed_by,
        user: q.user,
    }
}

/// The settings as `mailrootctl` sees them: which domains sign with which selector, but the
/// DKIM private keys are for the front-ends' settings stream only (`DkimList` shows the
/// public halves).
fn without_private_keys(mut settings: Settings) -> Settings {
    for key in &mut settings.dkim_keys {
        key.private_key = Default::default();
    }
    settings
}

pub struct AdminService {
    pub(super) store: Loaded,
    pub(super) nodes: Arc<Registry>,
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn add_domain(&self, req: Request<AddDomainRequest>) -> Reply<Empty> {
        let req = req.into_inner();
        let name = self
            .store
            .get()?
            .add_domain_with(&req.domain, req.directory.as_ref())
            .await?;
        match &req.directory {
            Some(d) => {
                tracing::info!(domain = %name, directory = %d.url, base = %d.base, "domain added, bound to a directory")
            }
            None => tracing::info!(domain = %name, "domain added"),
        }
        Ok(Response::new(Empty {}))
    }

    async fn set_domain_directory(&self, req: Request<SetDomainDirectoryRequest>) -> Reply<Empty> {
        let req = req.into_inner();
        self.store
            .get()?
            .set_domain_directory(&req.domain, req.directory.as_ref())
            .await?;
        match &req.directory {
            Some(d) => {
                tracing::info!(domain = %req.domain, directory = %d.url, base = %d.base, "domain bound to a directory")
            }
            None => tracing::info!(domain = %req.domain, "domain unbound from its directory"),
        }
        Ok(Response::new(Empty {}))
    }

    async fn delete_domain(&self, req: Request<DeleteDomainRequest>) -> Reply<Empty> {
        let req = req.into_inner();
        self.store
            .get()?
            .delete_domain(&req.domain, req.force)
            .await?;
        tracing::info!(domain = %req.domain, "domain deleted");
        Ok(Response::new(Empty {}))
    }

    async fn list_domains(&self, _req: Request<Empty>) -> Reply<ListDomainsReply> {
        let details: Vec<DomainInfo> = (self.store.get()?.list_domain_details())
            .into_iter()
            .map(|(domain, directory)| DomainInfo {
                domain,
                has_ca: directory.as_ref().is_some_and(|d| !d.ca_pem.is_empty()),
                // Never the bind password (nor the CA's PEM).
                directory: directory.map(|d| d.to_proto_public()),
            })
            .collect();
        Ok(Response::new(ListDomainsReply {
            domains: details.iter().map(|d| d.domain.clone()).collect(),
            details,
        }))
    }

    async fn add_mailbox(&self, req: Request<MailboxRequest>) -> Reply<Empty> {
        let req = req.into_inner();
        let addr = self
            .store
            .get()?
            .add_mailbox(&req.address, &req.password)
            .await?;
        tracing::info!(mailbox = %addr, "mailbox added");
        Ok(Response::new(Empty {}))
    }

    async fn delete_mailbox(&self, req: Request<AddressRequest>) -> Reply<Empty> {
        self.store
            .get()?
            .delete_mailbox(&req.get_ref().address)
            .await?;
        tracing::info!(mailbox = %req.get_ref().address, "mailbox deleted");
        Ok(Response::new(Empty {}))
    }

    async fn list_mailboxes(
        &self,
        req: Request<ListMailboxesRequest>,
    ) -> Reply<ListMailboxesReply> {
        let addresses = self
            .store
            .get()?
            .list_mailboxes(non_empty(&req.get_ref().domain))?;
        Ok(Response::new(ListMailboxesReply { addresses }))
    }

    async fn set_password(&self, req: Request<MailboxRequest>) -> Reply<Empty> {
        let req = req.into_inner();
        self.store
            .get()?
            .set_password(&req.address, &req.password)
            .await?;
        Ok(Response::new(Empty {}))
    }

    async fn stat(&self, req: Request<StatRequest>) -> Reply<StatReply> {
        let req = req.into_inner();
        let scope = match (non_empty(&req.address), non_empty(&req.domain)) {
            (Some(address), None) => StatScope::Mailbox(address),
            (None, Some(domain)) => StatScope::Domain(domain),
            (None, None) => StatScope::Cluster,
            (Some(_), Some(_)) => {
                return Err(Status::invalid_argument(
                    "stat: a mailbox address or a domain, not both",
                ));
            }
        };
        let report = self.store.get()?.stat_report(scope, !req.summary_only)?;
        Ok(Response::new(StatReply {
            mailboxes: report.mailboxes.into_iter().map(mailbox_stat).collect(),
            domains: report
                .domains
                .into_iter()
                .map(|d| DomainStat {
                    domain: d.domain,
                    mailboxes: d.mailboxes,
                    messages: d.messages,
                    bytes: d.bytes,
                    quota: d.quota.unwrap_or(0),
                    locked: d.locked,
                    mailboxes_near_quota: d.mailboxes_near_quota,
                })
                .collect(),
            cluster: report.cluster.map(|c| ClusterStat {
                domains: c.domains,
                mailboxes: c.mailboxes,
                messages: c.messages,
                bytes: c.bytes,
                mailboxes_near_quota: c.mailboxes_near_quota,
                domains_near_quota: c.domains_near_quota,
                queue_entries: c.queue_entries,
                queue_recipients: c.queue_recipients,
            }),
        }))
    }

    async fn list_nodes(&self, _req: Request<Empty>) -> Reply<ListNodesReply> {
        let nodes = self
            .nodes
            .list()
            .into_iter()
            .map(|n| NodeInfo {
                node_id: n.identity.id,
                hostname: n.identity.hostname,
                version: n.identity.version,
                peer: n.peer.map(|p| p.to_string()).unwrap_or_default(),
                listeners: n.identity.listeners,
                pop3_sessions: n.pop3_sessions,
                smtp_sessions: n.smtp_sessions,
                connected_unix_ms: n
                    .connected_at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                connected_ms: n.connected_for.as_millis() as u64,
                last_seen_ms: n.last_seen.as_millis() as u64,
            })
            .collect();
        Ok(Response::new(ListNodesReply { nodes }))
    }

    async fn set_quota(&self, req: Request<SetQuotaRequest>) -> Reply<Empty> {
        let req = req.into_inner();
        let limit = (req.bytes > 0).then_some(req.bytes);
        self.store
            .get()?
            .set_quota(&req.target, req.domain, limit)
            .await?;
        tracing::info!(target = %req.target, domain = req.domain, ?limit, "quota set");
        Ok(Response::new(Empty {}))
    }

    async fn show_quota(&self, req: Request<ShowQuotaRequest>) -> Reply<ShowQuotaReply> {
        let req = req.into_inner();
        let (limit, used) = self.store.get()?.show_quota(&req.target, req.domain)?;
        Ok(Response::new(ShowQuotaReply {
            target: req.target,
            limit: limit.unwrap_or(0),
            used,
        }))
    }

    async fn add_alias(&self, req: Request<AliasRequest>) -> Reply<Empty> {
        let req = req.into_inner();
        self.store
            .get()?
            .add_alias(&req.alias, &req.targets)
            .await?;
        tracing::info!(alias = %req.alias, targets = ?req.targets, "alias added");
        Ok(Response::new(Empty {}))
    }

    async fn delete_alias(&self, req: Request<AddressRequest>) -> Reply<Empty> {
        self.store
            .get()?
            .delete_alias(&req.get_ref().address)
            .await?;
        Ok(Response::new(Empty {}))
    }

    async fn list_aliases(&self, req: Request<ListMailboxesRequest>) -> Reply<ListAliasesReply> {
        let aliases = self
            .store
            .get()?
            .list_aliases(non_empty(&req.get_ref().domain))?
            .into_iter()
            .map(|(alias, targets)| Alias { alias, targets })
            .collect();
        Ok(Response::new(ListAliasesReply { aliases }))
    }

    async fn set_lock(&self, req: Request<SetLockRequest>) -> Reply<Empty> {
        let req = req.into_inner();
        self.store
            .get()?
            .set_lock(&req.target, req.domain, req.locked)
            .await?;
        tracing::info!(target = %req.target, domain = req.domain, locked = req.locked, "lock changed");
        Ok(Response::new(Empty {}))
    }

    async fn set_config(&self, req: Request<SetConfigRequest>) -> Reply<Settings> {
        let req = req.into_inner();
        let store = self.store.get()?;
        let settings = match req.domain.as_str() {
            "" => store.set_config(&req.key, &req.value).await?,
            domain => {
                store
                    .set_domain_config(domain, &req.key, &req.value)
                    .await?
            }
        };
        tracing::info!(key = %req.key, domain = %req.domain, version = settings.version, "setting changed");
        Ok(Response::new(without_private_keys(settings)))
    }

    async fn get_config(&self, _req: Request<Empty>) -> Reply<Settings> {
        let settings = self.store.get()?.settings().current();
        Ok(Response::new(without_private_keys(settings)))
    }

    async fn list_throttle(&self, req: Request<ThrottleRequest>) -> Reply<ListThrottleReply> {
        let entries = self
            .store
            .get()?
            .throttle_list(&req.get_ref().filter)?
            .into_iter()
            .map(|v| {
                let kind = match &v.key {
                    throttle::Key::UserIp { .. } => ThrottleKind::UserIp,
                    throttle::Key::Ip(_) => ThrottleKind::Ip,
                    throttle::Key::User(_) => ThrottleKind::User,
                };
                ThrottleEntry {
                    kind: kind as i32,
                    user: v.key.user().unwrap_or_default().to_string(),
                    ip: v.key.ip().unwrap_or_default().to_string(),
                    failures: v.failures,
                    locked: v.locked,
                    remaining_ms: v.remaining.as_millis() as u64,
                }
            })
            .collect();
        Ok(Response::new(ListThrottleReply { entries }))
    }

    async fn clear_throttle(&self, req: Request<ThrottleRequest>) -> Reply<ClearThrottleReply> {
        let cleared = self.store.get()?.throttle_clear(&req.get_ref().filter)?;
        Ok(Response::new(ClearThrottleReply {
            cleared: cleared as u64,
        }))
    }

    async fn list_queue(&self, _req: Request<Empty>) -> Reply<ListQueueReply> {
        let entries = self
            .store
            .get()?
            .list_queue()
            .into_iter()
            .map(queue_info)
            .collect();
        Ok(Response::new(ListQueueReply { entries }))
    }

    async fn show_queue(&self, req: Request<QueueIdRequest>) -> Reply<QueueInfo> {
        let info = self.store.get()?.show_queue(&req.get_ref().id)?;
        Ok(Response::new(queue_info(info)))
    }

    async fn retry_queue(&self, req: Request<QueueIdRequest>) -> Reply<Empty> {
        self.store.get()?.retry_queue(&req.get_ref().id).await?;
        Ok(Response::new(Empty {}))
    }

    async fn delete_queue(&self, req: Request<QueueIdRequest>) -> Reply<Empty> {
        self.store.get()?.delete_queue(&req.get_ref().id).await?;
        Ok(Response::new(Empty {}))
    }

    async fn dkim_generate(&self, req: Request<DkimGenerateRequest>) -> Reply<DkimGenerateReply> {
        let req = req.into_inner();
        let (name, txt) = self
            .store
            .get()?
            .dkim_generate(&req.domain, &req.selector, &req.algorithm)
            .await?;
        Ok(Response::new(DkimGenerateReply { name, txt }))
    }

    async fn dkim_list(&self, _req: Request<Empty>) -> Reply<DkimListReply> {
        let keys = self
            .store
            .get()?
            .dkim_list()
            .into_iter()
            .map(|k| DkimInfo {
                domain: k.domain,
                selector: k.selector,
                algorithm: k.algorithm,
                name: k.name,
                txt: k.txt,
            })
            .collect();
        Ok(Response::new(DkimListReply { keys }))
    }

    async fn dkim_delete(&self, req: Request<DomainRequest>) -> Reply<Empty> {
        self.store.get()?.dkim_delete(&req.get_ref().domain).await?;
        Ok(Response::new(Empty {}))
    }

    async fn break_session(&self, req: Request<AddressRequest>) -> Reply<Empty> {
        let broke = self.store.get()?.break_session(&req.get_ref().address)?;
        tracing::info!(mailbox = %req.get_ref().address, broke, "maildrop session broken by admin");
        Ok(Response::new(Empty {}))
    }

    async fn prepare_import(
        &self,
        req: Request<PrepareImportRequest>,
    ) -> Reply<PrepareImportReply> {
        super::import::prepare(self, req).await
    }

    async fn import_message(
        &self,
        req: Request<tonic::Streaming<ImportChunk>>,
    ) -> Reply<ImportReply> {
        super::import::import_message(self, req).await
    }

    type ExportMessagesStream = super::import::ExportStream;

    async fn export_messages(
        &self,
        req: Request<AddressRequest>,
    ) -> Reply<Self::ExportMessagesStream> {
        super::import::export(self, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_settings_replies_carry_no_private_keys() {
        let settings = Settings {
            greeting: "hi".into(),
            dkim_keys: vec![DkimKey {
                domain: "example.test".into(),
                selector: "s".into(),
                algorithm: "ed25519-sha256".into(),
                private_key: vec![1, 2, 3].into(),
            }],
            ..Settings::default()
        };
        let shown = without_private_keys(settings);
        assert_eq!(shown.dkim_keys.len(), 1);
        assert!(shown.dkim_keys[0].private_key.is_empty());
        assert_eq!(shown.dkim_keys[0].selector, "s");
        assert_eq!(shown.greeting, "hi");
    }
}
