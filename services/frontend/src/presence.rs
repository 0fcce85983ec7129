//! How this front-end shows up in `mailrootctl nodes`: its identity (node id, host name,
//! version, listeners), sent with every opening of the settings stream (`lib.rs`), and its
//! client session counts, reported to the store when they change and as a heartbeat.
//!
//! The store lists a node only while its settings stream is open (store-node/src/nodes.rs),
//! so a killed node disappears with its connection; the reports only keep the counts and the
//! "last seen" time current. They are best effort: one try each, no retry, because the next
//! change or heartbeat carries the current counts anyway. This module must not count
//! anything itself: the counts come from the connection slots (`lib.rs`, `Node::admit`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;

use crate::Service;
use crate::store_client::StoreClient;

/// Heartbeat: the longest time between two reports.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest time between two reports, however fast the counts change.
pub const REPORT_MIN_GAP: Duration = Duration::from_millis(250);
/// A report the store did not place (the settings stream is still opening, or the store
/// restarted): the next one goes out after this long, not a whole heartbeat later.
pub const UNREGISTERED_RETRY: Duration = Duration::from_secs(1);

/// Who this front-end is, as `mailrootctl nodes` shows it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `--node-id`, or a UUID made at this process's start: distinct per front-end even when
    /// several run with the same host name.
    pub id: String,
    pub hostname: String,
    pub version: String,
    /// "service=address" of every listener.
    pub listeners: Vec<String>,
}

impl Identity {
    pub fn new(node_id: Option<&str>, hostname: &str, listeners: &[(Service, SocketAddr)]) -> Self {
        Identity {
            id: node_id.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string),
            hostname: hostname.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            listeners: listeners
                .iter()
                .map(|(service, addr)| format!("{}={addr}", service.name()))
                .collect(),
        }
    }
}

/// Client connections open now, per protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sessions {
    pub pop3: u32,
    pub smtp: u32,
}

/// Reports `sessions` to the store whenever it changes (at most every [`REPORT_MIN_GAP`]) and
/// at least every [`REPORT_INTERVAL`], until the node is gone.
pub async fn report(store: StoreClient, node_id: String, mut sessions: watch::Receiver<Sessions>) {
    loop {
        let now = *sessions.borrow_and_update();
        let registered = match store.report_node(&node_id, now).await {
            Ok(registered) => registered,
            Err(status) => {
                tracing::debug!(error = %status.message(), "session report not delivered");
                false
            }
        };
        tokio::time::sleep(REPORT_MIN_GAP).await;
        let wait = if registered {
            REPORT_INTERVAL
        } else {
            UNREGISTERED_RETRY
        };
        if let Ok(Err(_)) = tokio::time::timeout(wait, sessions.changed()).await {
            return;
        }
    }
}
