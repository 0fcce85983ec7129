//! The live front-ends, as `mailrootctl nodes` lists them.
//!
//! A front-end is listed exactly while its `WatchSettings` stream is open: opening the stream
//! registers it (with the identity the request carries), and the [`Registration`] guard that
//! the stream owns takes it off the list when the stream is dropped — the front-end stopped,
//! was killed (its connection closes), or went silent (HTTP/2 keepalive closes the connection,
//! `lib.rs`). No timer and no sweeping: the list cannot keep a node whose connection is gone.
//! `ReportNode` calls only update the session counts and the "last seen" time of a listed node.
//!
//! A front-end that reconnects registers again under the same node id before (or after) its
//! old stream is dropped; each registration has a generation number, and a guard removes the
//! entry only if it is still its own, so the late drop of an old stream never hides a node
//! that is connected.
//!
//! Memory only: after a store restart the list fills again as the front-ends reconnect.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// What a front-end says about itself when it opens its settings stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Empty from a front-end that predates node ids: it is listed under a made-up id.
    pub id: String,
    pub hostname: String,
    pub version: String,
    pub listeners: Vec<String>,
}

/// One listed front-end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub identity: Identity,
    /// Remote address of its settings stream.
    pub peer: Option<SocketAddr>,
    pub pop3_sessions: u32,
    pub smtp_sessions: u32,
    pub connected_at: SystemTime,
    pub connected_for: Duration,
    pub last_seen: Duration,
}

struct Entry {
    generation: u64,
    identity: Identity,
    peer: Option<SocketAddr>,
    pop3_sessions: u32,
    smtp_sessions: u32,
    connected_at: SystemTime,
    connected: Instant,
    last_seen: Instant,
}

#[derive(Default)]
struct Nodes {
    next_generation: u64,
    by_id: HashMap<String, Entry>,
}

/// The list, shared by the front-end and admin services.
#[derive(Default)]
pub struct Registry {
    nodes: Mutex<Nodes>,
}

/// Keeps a front-end listed; dropping it (with the settings stream) removes the node.
pub struct Registration {
    registry: Arc<Registry>,
    id: String,
    generation: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut nodes = self.registry.lock();
        if nodes
            .by_id
            .get(&self.id)
            .is_some_and(|e| e.generation == self.generation)
        {
            nodes.by_id.remove(&self.id);
            tracing::info!(node_id = %self.id, "front-end left (settings stream closed)");
        }
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Nodes> {
        // Every update is a few field writes; a poisoned lock is still consistent.
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists `identity` until the returned guard is dropped. A second registration under the
    /// same id replaces the first (a reconnect, or two front-ends given the same --node-id,
    /// which is logged).
    pub fn register(
        self: &Arc<Self>,
        mut identity: Identity,
        peer: Option<SocketAddr>,
    ) -> Registration {
        let mut nodes = self.lock();
        nodes.next_generation += 1;
        let generation = nodes.next_generation;
        if identity.id.is_empty() {
            identity.id = format!("unidentified-{generation}");
        }
        let now = Instant::now();
        let id = identity.id.clone();
        let previous = nodes.by_id.insert(
            id.clone(),
            Entry {
                generation,
                identity,
                peer,
                pop3_sessions: 0,
                smtp_sessions: 0,
                connected_at: SystemTime::now(),
                connected: now,
                last_seen: now,
            },
        );
        if let Some(previous) = previous
            && previous.peer.map(|p| p.ip()) != peer.map(|p| p.ip())
        {
            tracing::warn!(node_id = %id, old = ?previous.peer, new = ?peer,
                "two front-ends use the same node id; listing the newer one");
        }
        Registration {
            registry: self.clone(),
            id,
            generation,
        }
    }

    /// A listed node's current session counts; false when the node is not listed.
    pub fn report(&self, id: &str, pop3_sessions: u32, smtp_sessions: u32) -> bool {
        let mut nodes = self.lock();
        let Some(entry) = nodes.by_id.get_mut(id) else {
            return false;
        };
        entry.pop3_sessions = pop3_sessions;
        entry.smtp_sessions = smtp_sessions;
        entry.last_seen = Instant::now();
        true
    }

    /// Every listed node, by host name then id.
    pub fn list(&self) -> Vec<NodeView> {
        let now = Instant::now();
        let mut list: Vec<NodeView> = (self.lock().by_id.values())
            .map(|e| NodeView {
                identity: e.identity.clone(),
                peer: e.peer,
                pop3_sessions: e.pop3_sessions,
                smtp_sessions: e.smtp_sessions,
                connected_at: e.connected_at,
                connected_for: now - e.connected,
                last_seen: now - e.last_seen,
            })
            .collect();
        list.sort_by(|a, b| {
            (&a.identity.hostname, &a.identity.id).cmp(&(&b.identity.hostname, &b.identity.id))
        });
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> Identity {
        Identity {
            id: id.into(),
            hostname: "mx.example.test".into(),
            version: "0.1.0".into(),
            listeners: vec!["pop3=127.0.0.1:110".into()],
        }
    }

    #[test]
    fn listed_while_the_stream_is_open() {
        let registry = Arc::new(Registry::default());
        let a = registry.register(node("a"), None);
        let _b = registry.register(node("b"), None);
        assert_eq!(registry.list().len(), 2);
        assert!(registry.report("a", 1, 2));
        let listed = registry.list();
        assert_eq!((listed[0].pop3_sessions, listed[0].smtp_sessions), (1, 2));
        drop(a);
        let ids: Vec<String> = registry.list().into_iter().map(|n| n.identity.id).collect();
        assert_eq!(ids, ["b"]);
        assert!(!registry.report("a", 0, 0), "a report does not list a node");
        assert_eq!(registry.list().len(), 1);
    }

    #[test]
    fn an_old_stream_dropped_late_keeps_the_reconnected_node() {
        let registry = Arc::new(Registry::default());
        let old = registry.register(node("a"), None);
        let new = registry.register(node("a"), None);
        drop(old);
        assert_eq!(registry.list().len(), 1);
        drop(new);
        assert!(registry.list().is_empty());
    }

    #[test]
    fn nodes_without_an_id_are_listed_apart() {
        let registry = Arc::new(Registry::default());
        let _a = registry.register(node(""), None);
        let _b = registry.register(node(""), None);
        let listed = registry.list();
        assert_eq!(listed.len(), 2);
        assert_ne!(listed[0].identity.id, listed[1].identity.id);
    }
}
