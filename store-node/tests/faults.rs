//! The store's promises under storage faults, with the fault-injection switchboard
//! (`faults.rs`, feature `fault-injection`) around the local object store: cancelled and failed
//! writes give their quota reservation back, an fsync failure fails every delivery of its
//! batch (and nothing of it is there after a restart), a mailbox deleted mid-write leaves the
//! domain pool exact; an outbound queue entry whose state cannot be written is not queued, and
//! a DSN is durable before the outcome it reports, made once when the state write fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mailroot_store::faults::{Fault, Faults, Op};
use mailroot_store::group_commit::GroupCommit;
use mailroot_store::objects::{Durability, Objects};
use mailroot_store::store::queue::{DeliveryReport, Outcome};
use mailroot_store::store::{Delivery, Recipient, Store};

const GUID: &str = "5f0c1a52-7a39-4f7e-9d2b-0a4c4d2e8b11";
const TTL: Duration = Duration::from_secs(5);

struct Fixture {
    dir: tempfile::TempDir,
    faults: Arc<Faults>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            faults: Faults::new(),
        }
    }

    /// The store on the fixture's directory, its storage wired through the switchboard.
    async fn open(&self) -> Store {
        self.open_with_objects().await.0
    }

    /// Also the store's storage handle (shared, so its group commit can be watched).
    async fn open_with_objects(&self) -> (Store, Objects) {
        let objects = Objects::open_with(
            self.dir.path().to_str().unwrap(),
            Durability::GroupCommit,
            GroupCommit::with_sync(self.faults.dir_sync()),
            true,
        )
        .unwrap()
        .with_faults(self.faults.clone());
        (
            Store::open(objects.clone(), GUID, TTL).await.unwrap(),
            objects,
        )
    }

    /// Message files present on disk for a mailbox, and their total size.
    fn on_disk(&self, domain: &str, local: &str) -> (usize, u64) {
        let dir = self
            .dir
            .path()
            .join("mailboxes")
            .join(domain)
            .join(local)
            .join("messages");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return (0, 0);
        };
        let sizes: Vec<u64> = entries
            .map(|e| e.unwrap().metadata().unwrap().len())
            .collect();
        (sizes.len(), sizes.iter().sum())
    }
}

fn msg(size: usize) -> Bytes {
    let mut body = b"Subject: x\r\n\r\n".to_vec();
    body.resize(size - 2, b'x');
    body.extend_from_slice(b"\r\n");
    Bytes::from(body)
}

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn setup(store: &Store) {
    store.add_domain("example.test").await.unwrap();
    for a in [
        "alice@example.test",
        "bob@example.test",
        "carol@example.test",
    ] {
        store.add_mailbox(a, "pw").await.unwrap();
    }
}

fn stat(store: &Store, addr: &str) -> (u64, u64) {
    let s = &store.stat(Some(addr)).unwrap()[0];
    (s.messages, s.bytes)
}

async fn deliver_one(store: &Store, to: &str, size: usize) -> Recipient {
    let outcomes = store
        .deliver(&id(), &[to.to_string()], msg(size))
        .await
        .unwrap();
    outcomes[0].status.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_or_failed_delivery_gives_its_reservation_back() {
    let fx = Fixture::new();
    let store = fx.open().await;
    setup(&store).await;
    let alice = "alice@example.test";
    store.set_quota(alice, false, Some(1000)).await.unwrap();

    // A delivery whose caller goes away while the write hangs (a front-end timeout, a reset).
    fx.faults.inject(Op::Put, "alice", Fault::Hang, Some(1));
    let caller = tokio::spawn({
        let store = store.clone();
        async move { store.deliver(&id(), &[alice.into()], msg(400)).await }
    });
    until("the write to hang", || fx.faults.hanging(Op::Put) == 1).await;
    assert_eq!(store.reserved(alice).unwrap(), (400, 400));
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    fx.faults.release();
    until("the reservation to be settled", || {
        store.reserved(alice).unwrap() == (0, 0)
    })
    .await;
    // The copy finished on its own (its sender got no 250: the safe direction), and usage is
    // exactly what is on disk.
    let (count, bytes) = fx.on_disk("example.test", "alice");
    assert_eq!(stat(&store, alice), (count as u64, bytes));
    assert_eq!(bytes, 400);

    // A write that fails gives its space back at once.
    fx.faults.inject(Op::Put, "alice", Fault::Fail, Some(1));
    let err = store
        .deliver(&id(), &[alice.into()], msg(300))
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "storage");
    assert_eq!(store.reserved(alice).unwrap(), (0, 0));
    assert_eq!(stat(&store, alice), (1, 400));

    // So a message that exactly fits what is left is accepted, and one octet more is not.
    assert!(matches!(
        deliver_one(&store, alice, 600).await,
        Recipient::Mailboxes(_)
    ));
    assert_eq!(stat(&store, alice), (2, 1000));
    assert_eq!(deliver_one(&store, alice, 10).await, Recipient::MailboxFull);
    assert_eq!(store.reserved(alice).unwrap(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_fsync_failure_fails_every_delivery_of_its_batch() {
    let fx = Fixture::new();
    let (store, objects) = fx.open_with_objects().await;
    setup(&store).await;
    let before = objects.sync_tickets();
    // The batch leader hangs in its directory sync while the other writers join the batch.
    fx.faults.inject(Op::DirSync, "", Fault::Hang, Some(1));
    let rcpts = [
        "alice@example.test",
        "bob@example.test",
        "carol@example.test",
    ];
    let tasks: Vec<_> = rcpts
        .iter()
        .map(|to| {
            let store = store.clone();
            let to = to.to_string();
            tokio::spawn(async move { store.deliver(&id(), &[to], msg(200)).await })
        })
        .collect();
    until("three writers in the batch", || {
        objects.sync_tickets() >= before + 3 && fx.faults.hanging(Op::DirSync) == 1
    })
    .await;
    // The leader's sync fails: the kernel reports a writeback error once, so nobody else in
    // the batch may take a later success for their own.
    fx.faults.inject(Op::DirSync, "", Fault::Fail, None);
    fx.faults.release();
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert_eq!(err.reason().as_str(), "storage", "{err}");
    }
    fx.faults.clear();
    // Until a restart the store acknowledges nothing, even though syncs would work again.
    let err = store
        .deliver(&id(), &["alice@example.test".into()], msg(100))
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "storage");
    for r in rcpts {
        assert_eq!(store.reserved(r).unwrap(), (0, 0));
    }
    drop(store);

    // After the restart none of the refused messages exists, and deliveries work again.
    let store = fx.open().await;
    for r in rcpts {
        assert_eq!(stat(&store, r), (0, 0), "{r}");
        let local = r.split('@').next().unwrap();
        assert_eq!(fx.on_disk("example.test", local), (0, 0), "{r}");
    }
    assert!(matches!(
        deliver_one(&store, "alice@example.test", 100).await,
        Recipient::Mailboxes(_)
    ));

    // A file's own fdatasync failing is the same story.
    fx.faults.inject(Op::FileSync, "", Fault::Fail, Some(1));
    let err = store
        .deliver(&id(), &["bob@example.test".into()], msg(100))
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "storage");
    assert!(
        store
            .deliver(&id(), &["carol@example.test".into()], msg(100))
            .await
            .is_err()
    );
    drop(store);
    let store = fx.open().await;
    assert_eq!(stat(&store, "alice@example.test"), (1, 100));
    assert_eq!(stat(&store, "bob@example.test"), (0, 0));
    assert_eq!(stat(&store, "carol@example.test"), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mailbox_deleted_mid_write_leaves_the_domain_pool_exact() {
    let fx = Fixture::new();
    let store = fx.open().await;
    setup(&store).await;
    store
        .set_quota("example.test", true, Some(10_000))
        .await
        .unwrap();
    deliver_one(&store, "alice@example.test", 300).await;
    fx.faults.inject(Op::Put, "bob", Fault::Hang, Some(1));
    let delivery = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .deliver(
                    &id(),
                    &["bob@example.test".into(), "alice@example.test".into()],
                    msg(500),
                )
                .await
        }
    });
    until("bob's copy to hang", || fx.faults.hanging(Op::Put) == 1).await;
    store.delete_mailbox("bob@example.test").await.unwrap();
    fx.faults.release();
    let outcomes = delivery.await.unwrap().unwrap();
    // Per recipient: bob's copy did not survive its mailbox, alice's is stored.
    assert_eq!(outcomes[0].status, Recipient::UnknownUser);
    assert_eq!(outcomes[0].failed, vec!["bob@example.test".to_string()]);
    assert!(matches!(outcomes[1].status, Recipient::Mailboxes(_)));
    assert_eq!(store.reserved("alice@example.test").unwrap(), (0, 0));
    assert_eq!(
        store.show_quota("example.test", true).unwrap(),
        (Some(10_000), 800)
    );
    assert_eq!(fx.on_disk("example.test", "bob"), (0, 0));
    drop(store);
    let store = fx.open().await;
    assert_eq!(
        store.show_quota("example.test", true).unwrap(),
        (Some(10_000), 800)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_session_is_granted_a_maildrop_while_its_deletions_are_in_flight() {
    let fx = Fixture::new();
    let store = fx.open().await;
    setup(&store).await;
    let alice = "alice@example.test";
    let (first, second) = (id(), id());
    for uidl in [&first, &second] {
        store
            .deliver(uidl, &[alice.into()], msg(100))
            .await
            .unwrap();
    }
    let (_, epoch, _) = store
        .open_maildrop(alice, "pw", "A", "n", "")
        .await
        .unwrap();
    fx.faults.inject(Op::Delete, "alice", Fault::Hang, Some(1));
    let commit = tokio::spawn({
        let store = store.clone();
        let first = first.clone();
        async move { store.commit(alice, epoch, &[first], &[]).await }
    });
    until("the delete to hang", || fx.faults.hanging(Op::Delete) == 1).await;
    // Even with the lease broken by an administrator, nobody gets the maildrop before the
    // deletion it was fenced for is durable: a new session never lists a message being deleted.
    assert!(store.break_session(alice).unwrap());
    let err = store
        .open_maildrop(alice, "pw", "B", "n", "")
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "in-use");
    fx.faults.release();
    assert_eq!(commit.await.unwrap().unwrap(), 1);
    let (_, _, list) = store
        .open_maildrop(alice, "pw", "B", "n", "")
        .await
        .unwrap();
    let uidls: Vec<_> = list.iter().map(|m| m.uidl.clone()).collect();
    assert_eq!(uidls, vec![second]);
}

/// A submission by alice to `to` (other domains: queued).
fn outbound(id: &str, to: &[&str]) -> Delivery {
    Delivery {
        id: id.to_string(),
        mail_from: "alice@example.test".into(),
        recipients: to.iter().map(|t| t.to_string()).collect(),
        message: msg(300),
        user: "alice@example.test".into(),
        reporting_host: "mx.example.test".into(),
        ..Delivery::default()
    }
}

fn outcome(recipient: &str, outcome: Outcome) -> DeliveryReport {
    DeliveryReport {
        recipient: recipient.into(),
        outcome,
        status: if outcome == Outcome::Failed {
            "5.1.1"
        } else {
            "4.0.0"
        }
        .into(),
        diagnostic: "550 5.1.1 no".into(),
        remote_mta: "mx.remote.test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queue_entry_whose_state_cannot_be_written_is_not_queued() {
    let fx = Fixture::new();
    let store = fx.open().await;
    setup(&store).await;
    let delivery = id();
    // The message is written, its state is not: the delivery is "try later" and nothing is
    // queued; the retry (same id) queues it once.
    fx.faults
        .inject(Op::Put, "state.json", Fault::Fail, Some(1));
    let err = store
        .deliver_message(outbound(&delivery, &["x@remote.test"]))
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "storage");
    assert!(store.list_queue().is_empty());
    assert!(
        !fx.dir
            .path()
            .join("queue")
            .join(&delivery)
            .join("message")
            .exists()
    );
    let out = store
        .deliver_message(outbound(&delivery, &["x@remote.test"]))
        .await
        .unwrap();
    assert_eq!(out[0].status, Recipient::Queued);
    drop(store);
    assert_eq!(fx.open().await.list_queue().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dsn_is_durable_before_the_outcome_and_made_once_when_the_state_write_fails() {
    let fx = Fixture::new();
    let store = fx.open().await;
    setup(&store).await;
    let alice = "alice@example.test";
    let delivery = id();
    store
        .deliver_message(outbound(&delivery, &["x@remote.test", "y@remote.test"]))
        .await
        .unwrap();
    let claimed = store
        .claim_queue("n", 1, Duration::ZERO)
        .await
        .pop()
        .unwrap();
    let results = [
        outcome("x@remote.test", Outcome::Failed),
        outcome("y@remote.test", Outcome::Deferred),
    ];
    // The DSN cannot be stored: nothing is recorded, the claim stays.
    fx.faults.inject(
        Op::Put,
        "mailboxes/example.test/alice",
        Fault::Fail,
        Some(1),
    );
    let err = store
        .report_delivery(&delivery, claimed.claim, &results)
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "storage");
    assert_eq!(stat(&store, alice).0, 0);
    let info = store.show_queue(&delivery).unwrap();
    assert_eq!((info.recipients.len(), info.attempts), (2, 0));
    // The DSN is stored, the state is not (a crash between the two): reported again, the
    // same outcome makes the same DSN, which the mailbox holds once.
    fx.faults
        .inject(Op::Put, "state.json", Fault::Fail, Some(1));
    assert!(
        store
            .report_delivery(&delivery, claimed.claim, &results)
            .await
            .is_err()
    );
    assert_eq!(stat(&store, alice).0, 1);
    assert_eq!(store.show_queue(&delivery).unwrap().recipients.len(), 2);
    store
        .report_delivery(&delivery, claimed.claim, &results)
        .await
        .unwrap();
    assert_eq!(stat(&store, alice).0, 1, "one DSN");
    let info = store.show_queue(&delivery).unwrap();
    assert_eq!(info.recipients.len(), 1);
    assert_eq!(
        (info.recipients[0].address.as_str(), info.attempts),
        ("y@remote.test", 1)
    );
}
