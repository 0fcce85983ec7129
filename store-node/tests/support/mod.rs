//! What the queue, DSN and DKIM tests share: a store on a temp dir (reopened to restart it),
//! a hosted directory, submissions, a mailbox reader and polling with a deadline.
#![allow(dead_code)] // each test crate uses its own part

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::TryStreamExt;
use mailroot_store::objects::{Durability, Objects};
use mailroot_store::store::queue::{Claimed, DeliveryReport, Outcome};
use mailroot_store::store::{Delivery, Options, Recipient, Store};

pub const GUID: &str = "5f0c1a52-7a39-4f7e-9d2b-0a4c4d2e8b11";
pub const LEASE_TTL: Duration = Duration::from_secs(5);
pub const DEADLINE: Duration = Duration::from_secs(20);

pub const ALICE: &str = "alice@example.test";
pub const BOB: &str = "bob@example.test";
pub const CAROL: &str = "carol@example.test";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    claim_ttl: Duration,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_claim_ttl(Duration::from_secs(60))
    }

    pub fn with_claim_ttl(claim_ttl: Duration) -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            claim_ttl,
        }
    }

    pub async fn open(&self) -> Store {
        let objects =
            Objects::open(self.dir.path().to_str().unwrap(), Durability::GroupCommit).unwrap();
        let options = Options {
            queue_claim_ttl: self.claim_ttl,
            ..Options::new(LEASE_TTL)
        };
        Store::open_with(objects, GUID, options).await.unwrap()
    }

    /// A fresh store with example.test (alice, bob, carol) and other.test (dave).
    pub async fn setup(&self) -> Store {
        let store = self.open().await;
        store.add_domain("example.test").await.unwrap();
        store.add_domain("other.test").await.unwrap();
        for a in [ALICE, BOB, CAROL, "dave@other.test"] {
            store.add_mailbox(a, &password(a)).await.unwrap();
        }
        store
    }

    pub fn queue_files(&self, id: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("queue").join(id)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

pub fn password(addr: &str) -> String {
    format!("pw-{addr}")
}

pub fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn msg(subject: &str) -> Bytes {
    Bytes::from(format!(
        "From: <{ALICE}>\r\nSubject: {subject}\r\nMessage-ID: <{}@example.test>\r\n\r\nthe body of {subject}\r\n",
        id()
    ))
}

/// A submission by `user` (its own address as the reverse-path).
pub fn submission(id: &str, user: &str, recipients: &[&str], message: Bytes) -> Delivery {
    Delivery {
        id: id.to_string(),
        mail_from: user.to_string(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        message,
        user: user.to_string(),
        reporting_host: "mx1.example.test".into(),
        ..Delivery::default()
    }
}

/// Queues one message from alice to `to` and returns its id.
pub async fn queue_one(store: &Store, to: &str) -> String {
    let id = id();
    let out = store
        .deliver_message(submission(&id, ALICE, &[to], msg("queued")))
        .await
        .unwrap();
    assert_eq!(out[0].status, Recipient::Queued);
    id
}

/// Every message in a mailbox, oldest first, read without holding its maildrop.
pub async fn mailbox(store: &Store, addr: &str) -> Vec<String> {
    let (_, epoch, list) = store
        .open_maildrop(addr, &password(addr), "test-reader", "test", "")
        .await
        .unwrap();
    let mut texts = Vec::new();
    for m in &list {
        let bytes = store.fetch(addr, &m.uidl).await.unwrap();
        texts.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    store.close(addr, epoch).unwrap();
    texts
}

pub async fn claim_one(store: &Store, node: &str) -> Claimed {
    let mut claimed = store.claim_queue(node, 10, Duration::ZERO).await;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    claimed.remove(0)
}

pub async fn fetch(store: &Store, c: &Claimed) -> Bytes {
    let chunks: Vec<Bytes> = store
        .fetch_queued(&c.id, c.claim)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    Bytes::from(chunks.concat())
}

pub fn result(recipient: &str, outcome: Outcome, status: &str, diagnostic: &str) -> DeliveryReport {
    DeliveryReport {
        recipient: recipient.to_string(),
        outcome,
        status: status.to_string(),
        diagnostic: diagnostic.to_string(),
        remote_mta: "mx.remote.test".to_string(),
    }
}

/// Reports one recipient's outcome for the claimed entry `c`.
pub async fn report_one(
    store: &Store,
    c: &Claimed,
    recipient: &str,
    outcome: Outcome,
    status: &str,
    diagnostic: &str,
) {
    store
        .report_delivery(
            &c.id,
            c.claim,
            &[result(recipient, outcome, status, diagnostic)],
        )
        .await
        .unwrap();
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Polls `check` until it gives a value, failing after [`DEADLINE`].
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
