//! The outbound queue, the DSNs the store makes, the outbound rate limit and DKIM keys, on a
//! store opened on a temp dir (restarted by reopening it), as in `store_suite.rs`. Time-based
//! behaviour (claim expiry, lifetimes, delay notices) runs with short settings and is waited
//! for by polling with a deadline.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::TryStreamExt;
use mailroot_store::objects::{Durability, Objects};
use mailroot_store::store::queue::{Claimed, DeliveryReport, Notify, Outcome, Ret};
use mailroot_store::store::{Delivery, Options, Recipient, RecipientParams, Store};
use proto::Reason;

const GUID: &str = "5f0c1a52-7a39-4f7e-9d2b-0a4c4d2e8b11";
const LEASE_TTL: Duration = Duration::from_secs(5);
const DEADLINE: Duration = Duration::from_secs(20);

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const CAROL: &str = "carol@example.test";

struct Fixture {
    dir: tempfile::TempDir,
    claim_ttl: Duration,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_claim_ttl(Duration::from_secs(60))
    }

    fn with_claim_ttl(claim_ttl: Duration) -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            claim_ttl,
        }
    }

    async fn open(&self) -> Store {
        let objects =
            Objects::open(self.dir.path().to_str().unwrap(), Durability::GroupCommit).unwrap();
        let options = Options {
            queue_claim_ttl: self.claim_ttl,
            ..Options::new(LEASE_TTL)
        };
        Store::open_with(objects, GUID, options).await.unwrap()
    }

    /// A fresh store with example.test (alice, bob, carol) and other.test (dave).
    async fn setup(&self) -> Store {
        let store = self.open().await;
        store.add_domain("example.test").await.unwrap();
        store.add_domain("other.test").await.unwrap();
        for a in [ALICE, BOB, CAROL, "dave@other.test"] {
            store.add_mailbox(a, &password(a)).await.unwrap();
        }
        store
    }

    fn queue_files(&self, id: &str) -> Vec<String> {
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

fn password(addr: &str) -> String {
    format!("pw-{addr}")
}

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn msg(subject: &str) -> Bytes {
    Bytes::from(format!(
        "From: <{ALICE}>\r\nSubject: {subject}\r\nMessage-ID: <{}@example.test>\r\n\r\nthe body of {subject}\r\n",
        id()
    ))
}

/// A submission by `user` (its own address as the reverse-path).
fn submission(id: &str, user: &str, recipients: &[&str], message: Bytes) -> Delivery {
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
async fn queue_one(store: &Store, to: &str) -> String {
    let id = id();
    let out = store
        .deliver_message(submission(&id, ALICE, &[to], msg("queued")))
        .await
        .unwrap();
    assert_eq!(out[0].status, Recipient::Queued);
    id
}

/// Every message in a mailbox, oldest first, read without holding its maildrop.
async fn mailbox(store: &Store, addr: &str) -> Vec<String> {
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

async fn claim_one(store: &Store, node: &str) -> Claimed {
    let mut claimed = store.claim_queue(node, 10, Duration::ZERO).await;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    claimed.remove(0)
}

async fn fetch(store: &Store, c: &Claimed) -> Bytes {
    let chunks: Vec<Bytes> = store
        .fetch_queued(&c.id, c.claim)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    Bytes::from(chunks.concat())
}

fn result(recipient: &str, outcome: Outcome, status: &str, diagnostic: &str) -> DeliveryReport {
    DeliveryReport {
        recipient: recipient.to_string(),
        outcome,
        status: status.to_string(),
        diagnostic: diagnostic.to_string(),
        remote_mta: "mx.remote.test".to_string(),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Polls `check` until it gives a value, failing after [`DEADLINE`].
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_delivery_is_durable_and_queued_once() {
    let f = Fixture::new();
    let store = f.setup().await;
    let id = id();
    let message = msg("durable");
    let d = submission(
        &id,
        ALICE,
        &[
            BOB,
            "carol@remote.test",
            "dave@remote.test",
            "Carol@remote.test",
        ],
        message.clone(),
    );
    let out = store.deliver_message(d.clone()).await.unwrap();
    let statuses: Vec<_> = out.iter().map(|o| o.status.clone()).collect();
    assert!(matches!(statuses[0], Recipient::Mailboxes(_)));
    assert_eq!(
        &statuses[1..],
        [Recipient::Queued, Recipient::Queued, Recipient::Queued]
    );
    // One entry holding every remote recipient once; its objects are on disk.
    let list = store.list_queue();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, id);
    assert_eq!(list[0].user, ALICE);
    let pending: Vec<_> = list[0]
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(pending, ["carol@remote.test", "dave@remote.test"]);
    assert_eq!(f.queue_files(&id), ["message", "state.json"]);

    // A retry with the same id stores and queues nothing twice.
    store.deliver_message(d).await.unwrap();
    assert_eq!(store.list_queue().len(), 1);
    assert_eq!(mailbox(&store, BOB).await.len(), 1);

    // After a restart the entry is there, with its recipients and its bytes.
    drop(store);
    let store = f.open().await;
    let info = store.show_queue(&id).unwrap();
    assert_eq!(info.recipients.len(), 2);
    assert_eq!(info.size, message.len() as u64);
    assert_eq!((info.attempts, info.mail_from.as_str()), (0, ALICE));
    let c = claim_one(&store, "node-a").await;
    assert_eq!(c.id, id);
    assert_eq!(fetch(&store, &c).await, message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_without_a_user_is_still_refused() {
    let f = Fixture::new();
    let store = f.setup().await;
    let d = Delivery {
        user: String::new(),
        ..submission(&id(), ALICE, &["bob@remote.test"], msg("relay"))
    };
    let out = store.deliver_message(d).await.unwrap();
    assert_eq!(out[0].status, Recipient::RelayDenied);
    assert!(store.list_queue().is_empty());
    // Nothing was taken, so there is no DSN either (the front-end refuses the DATA).
    assert!(mailbox(&store, ALICE).await.is_empty());
    // An address no MTA could be asked about is refused even with a user.
    let out = store
        .deliver_message(submission(&id(), ALICE, &["bob@[192.0.2.1]"], msg("x")))
        .await
        .unwrap();
    assert_eq!(out[0].status, Recipient::RelayDenied);
    assert!(store.list_queue().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_fetch_and_report_delivered_removes_the_entry() {
    let f = Fixture::new();
    let store = f.setup().await;
    let id = queue_one(&store, "bob@remote.test").await;
    let c = claim_one(&store, "node-a").await;
    assert_eq!(c.recipients[0].address, "bob@remote.test");
    assert_eq!((c.attempts, c.claim_ttl), (0, Duration::from_secs(60)));
    assert!(
        fetch(&store, &c)
            .await
            .starts_with(b"From: <alice@example.test>")
    );
    assert_eq!(store.show_queue(&id).unwrap().claimed_by, "node-a");
    store.renew_claim(&id, c.claim).unwrap();
    store
        .report_delivery(
            &id,
            c.claim,
            &[result(
                "bob@remote.test",
                Outcome::Delivered,
                "2.0.0",
                "250 ok",
            )],
        )
        .await
        .unwrap();
    assert!(store.list_queue().is_empty());
    assert!(f.queue_files(&id).is_empty(), "objects removed");
    assert_eq!(
        store.show_queue(&id).unwrap_err().reason(),
        Reason::UnknownQueueEntry
    );
    // NOTIFY not given: no success notice.
    assert!(mailbox(&store, ALICE).await.is_empty());
    drop(store);
    assert!(f.open().await.list_queue().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_exclusive_until_its_ttl_passes_and_a_stale_token_is_refused() {
    let f = Fixture::with_claim_ttl(Duration::from_secs(1));
    let store = f.setup().await;
    let id = queue_one(&store, "bob@remote.test").await;
    let a = claim_one(&store, "node-a").await;
    assert!(
        store
            .claim_queue("node-b", 10, Duration::ZERO)
            .await
            .is_empty()
    );
    // Renewed, the claim outlives several TTLs.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        store.renew_claim(&id, a.claim).unwrap();
        assert!(
            store
                .claim_queue("node-b", 10, Duration::ZERO)
                .await
                .is_empty()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Left alone it expires: a waiting claimer is woken by the expiry and gets the entry.
    let started = Instant::now();
    let b = store
        .claim_queue("node-b", 10, Duration::from_secs(10))
        .await;
    assert_eq!(b.len(), 1, "the claim never expired");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let b = &b[0];
    assert_ne!(a.claim, b.claim);
    assert_eq!(store.show_queue(&id).unwrap().claimed_by, "node-b");
    // node-a's token names no claim any more: fetch, renew and report are refused.
    let stale = |e: mailroot_store::StoreError| assert_eq!(e.reason(), Reason::UnknownQueueEntry);
    stale(store.fetch_queued(&id, a.claim).await.err().unwrap());
    stale(store.renew_claim(&id, a.claim).unwrap_err());
    stale(
        store
            .report_delivery(
                &id,
                a.claim,
                &[result("bob@remote.test", Outcome::Delivered, "", "")],
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        store.list_queue().len(),
        1,
        "the stale report changed nothing"
    );
    assert_eq!(fetch(&store, b).await.len() as u64, b.size);
    // Claims are memory only: after a restart the entry is unclaimed, and the old token
    // names nothing.
    drop(store);
    let store = f.open().await;
    assert_eq!(store.show_queue(&id).unwrap().claimed_by, "");
    stale(store.renew_claim(&id, b.claim).unwrap_err());
    let c = claim_one(&store, "node-c").await;
    assert_ne!(c.claim, b.claim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_recipient_gives_exactly_one_dsn_in_the_hosted_senders_mailbox() {
    let f = Fixture::new();
    let store = f.setup().await;
    let id = queue_one(&store, "nobody@remote.test").await;
    let c = claim_one(&store, "node-a").await;
    store
        .report_delivery(
            &id,
            c.claim,
            &[result(
                "nobody@remote.test",
                Outcome::Failed,
                "5.1.1",
                "550 5.1.1 no such user",
            )],
        )
        .await
        .unwrap();
    assert!(store.list_queue().is_empty());
    let inbox = mailbox(&store, ALICE).await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let dsn = &inbox[0];
    for part in [
        "Return-Path: <>\r\n",
        "From: \"Mail Delivery System\" <MAILER-DAEMON@mx1.example.test>",
        "Subject: Undelivered Mail Returned to Sender",
        "Reporting-MTA: dns; mx1.example.test",
        "Final-Recipient: rfc822; nobody@remote.test",
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; mx.remote.test",
        "Diagnostic-Code: smtp; 550 5.1.1 no such user",
        "Content-Type: text/rfc822-headers",
        "Subject: queued",
    ] {
        assert!(dsn.contains(part), "{part:?} missing in\n{dsn}");
    }
    assert!(
        !dsn.contains("the body of queued"),
        "RET not FULL: the header only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_senders_dsn_is_queued_with_the_null_sender_and_is_never_bounced() {
    let f = Fixture::new();
    let store = f.setup().await;
    let id = id();
    let d = Delivery {
        mail_from: "someone@elsewhere.test".into(),
        ret: Ret::Full,
        envid: "ENV+2B1".into(),
        ..submission(&id, ALICE, &["x@remote.test"], msg("from afar"))
    };
    store.deliver_message(d).await.unwrap();
    let c = claim_one(&store, "node-a").await;
    store
        .report_delivery(
            &id,
            c.claim,
            &[result(
                "x@remote.test",
                Outcome::Failed,
                "5.7.1",
                "554 5.7.1 refused",
            )],
        )
        .await
        .unwrap();
    let list = store.list_queue();
    assert_eq!(list.len(), 1, "the DSN is queued");
    let dsn_entry = &list[0];
    assert_ne!(dsn_entry.id, id);
    assert_eq!(dsn_entry.mail_from, "", "null reverse-path");
    assert_eq!(dsn_entry.user, "", "no user: not rate limited");
    assert_eq!(dsn_entry.recipients[0].address, "someone@elsewhere.test");
    let c = claim_one(&store, "node-a").await;
    assert_eq!(c.mail_from, "");
    let text = String::from_utf8(fetch(&store, &c).await.to_vec()).unwrap();
    assert!(text.contains("To: <someone@elsewhere.test>"), "{text}");
    assert!(text.contains("Original-Envelope-Id: ENV+1"), "{text}");
    assert!(
        text.contains("Content-Type: message/rfc822"),
        "RET=FULL: {text}"
    );
    assert!(text.contains("the body of from afar"), "{text}");
    // The DSN itself fails: it is dropped, nothing more is queued or delivered.
    store
        .report_delivery(
            &c.id,
            c.claim,
            &[result(
                "someone@elsewhere.test",
                Outcome::Failed,
                "5.1.1",
                "550 no",
            )],
        )
        .await
        .unwrap();
    assert!(store.list_queue().is_empty());
    assert!(mailbox(&store, ALICE).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_decides_which_reports_are_made() {
    let f = Fixture::new();
    let store = f.setup().await;
    let rcpts = [
        "never@remote.test",
        "success@remote.test",
        "failure@remote.test",
    ];
    let id = id();
    let d = Delivery {
        params: vec![
            RecipientParams {
                notify: Notify::NEVER,
                orcpt: String::new(),
            },
            RecipientParams {
                notify: Notify::SUCCESS,
                orcpt: "rfc822;Success@remote.test".into(),
            },
            RecipientParams {
                notify: Notify::FAILURE,
                orcpt: String::new(),
            },
        ],
        ..submission(&id, ALICE, &rcpts, msg("notify"))
    };
    store.deliver_message(d).await.unwrap();
    let c = claim_one(&store, "node-a").await;
    assert_eq!(c.recipients[0].notify, Notify::NEVER);
    assert_eq!(c.recipients[1].orcpt, "rfc822;Success@remote.test");
    // NEVER fails: no report. SUCCESS is delivered: "relayed". FAILURE is delivered: none.
    store
        .report_delivery(
            &id,
            c.claim,
            &[
                result("never@remote.test", Outcome::Failed, "5.1.1", "550 no"),
                result("success@remote.test", Outcome::Delivered, "2.0.0", "250 ok"),
                result("failure@remote.test", Outcome::Delivered, "2.0.0", "250 ok"),
            ],
        )
        .await
        .unwrap();
    let inbox = mailbox(&store, ALICE).await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let dsn = &inbox[0];
    assert!(
        dsn.contains("Subject: Successful Mail Delivery Report"),
        "{dsn}"
    );
    assert!(dsn.contains("Original-Recipient: rfc822;Success@remote.test"));
    assert!(dsn.contains(
        "Final-Recipient: rfc822; success@remote.test\r\nAction: relayed\r\nStatus: 2.0.0"
    ));
    assert!(
        !dsn.contains("never@remote.test") && !dsn.contains("Final-Recipient: rfc822; failure@")
    );
    assert!(store.list_queue().is_empty());

    // NEVER alone, failed: no DSN at all.
    let id = self::id();
    let d = Delivery {
        params: vec![RecipientParams {
            notify: Notify::NEVER,
            orcpt: String::new(),
        }],
        ..submission(&id, ALICE, &["x@remote.test"], msg("never"))
    };
    store.deliver_message(d).await.unwrap();
    let c = claim_one(&store, "node-a").await;
    store
        .report_delivery(
            &id,
            c.claim,
            &[result("x@remote.test", Outcome::Failed, "5.1.1", "550 no")],
        )
        .await
        .unwrap();
    assert!(store.list_queue().is_empty());
    assert_eq!(mailbox(&store, ALICE).await.len(), 1, "no second DSN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_recipients_follow_the_schedule() {
    let f = Fixture::new();
    let store = f.setup().await;
    store.set_config("queue-retry-min", "30s").await.unwrap();
    store.set_config("queue-retry-max", "1m").await.unwrap();
    let id = queue_one(&store, "slow@remote.test").await;
    let mut expected = Vec::new();
    for attempt in 1..=3u32 {
        let c = claim_one(&store, "node-a").await;
        assert_eq!(c.attempts, attempt - 1);
        let before = unix_ms();
        store
            .report_delivery(
                &id,
                c.claim,
                &[result(
                    "slow@remote.test",
                    Outcome::Deferred,
                    "4.2.0",
                    "421 try later",
                )],
            )
            .await
            .unwrap();
        let after = unix_ms();
        let info = store.show_queue(&id).unwrap();
        assert_eq!(info.attempts, attempt);
        assert_eq!(info.recipients[0].last_diagnostic, "421 try later");
        assert_eq!(info.claimed_by, "", "the report ends the claim");
        // 30 s, then doubled, capped at 1 min.
        let delay = [30_000, 60_000, 60_000][attempt as usize - 1];
        assert!(
            (before + delay..=after + delay).contains(&info.next_attempt_ms),
            "attempt {attempt}: next {} not {delay} ms after {before}..{after}",
            info.next_attempt_ms
        );
        expected.push(info.next_attempt_ms);
        // Not due: nobody gets it.
        assert!(
            store
                .claim_queue("node-b", 10, Duration::ZERO)
                .await
                .is_empty()
        );
        if attempt < 3 {
            store.retry_queue(&id).await.unwrap();
        }
    }
    // The schedule is durable.
    drop(store);
    let store = f.open().await;
    let info = store.show_queue(&id).unwrap();
    assert_eq!((info.attempts, info.next_attempt_ms), (3, expected[2]));
    // Bad values are refused with the setting's name.
    let err = store.set_config("queue-retry-min", "2h").await.unwrap_err();
    assert!(err.to_string().contains("queue-retry-max"), "{err}");
    let err = store
        .set_config("queue-lifetime", "soon")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("queue-lifetime"), "{err}");
    let settings = store.settings().current();
    assert_eq!(
        (settings.queue_retry_min_ms, settings.queue_retry_max_ms),
        (Some(30_000), Some(60_000))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_lifetime_an_entry_is_bounced_once_with_4_4_7() {
    let f = Fixture::new();
    let store = f.setup().await;
    store.set_config("queue-lifetime", "1s").await.unwrap();
    // No worker at all: the store's sweep bounces it.
    let id = queue_one(&store, "gone@remote.test").await;
    eventually("the sweep to bounce the entry", async || {
        store.show_queue(&id).is_err().then_some(())
    })
    .await;
    let inbox = mailbox(&store, ALICE).await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert!(inbox[0].contains("Final-Recipient: rfc822; gone@remote.test"));
    assert!(
        inbox[0].contains("Action: failed\r\nStatus: 4.4.7"),
        "{}",
        inbox[0]
    );
    assert!(inbox[0].contains("delivery time expired"));
    store.sweep_queue().await;
    assert_eq!(mailbox(&store, ALICE).await.len(), 1, "bounced once");

    // A worker that reports a deferral past the lifetime bounces it too, with the last
    // reason. (A lifetime long enough for the claim to come before the sweep.)
    store.set_config("queue-lifetime", "3s").await.unwrap();
    let id = queue_one(&store, "late@remote.test").await;
    let c = claim_one(&store, "node-a").await;
    let created = store.show_queue(&id).unwrap().created_ms;
    eventually("the lifetime to pass", async || {
        (unix_ms() > created + 3000).then_some(())
    })
    .await;
    store
        .report_delivery(
            &id,
            c.claim,
            &[result(
                "late@remote.test",
                Outcome::Deferred,
                "4.4.1",
                "connection timed out",
            )],
        )
        .await
        .unwrap();
    assert!(store.show_queue(&id).is_err());
    let inbox = mailbox(&store, ALICE).await;
    assert_eq!(inbox.len(), 2);
    let dsn = inbox
        .iter()
        .find(|m| m.contains("late@remote.test"))
        .unwrap();
    assert!(dsn.contains("Status: 4.4.7"), "{dsn}");
    assert!(
        dsn.contains("delivery time expired; last attempt: connection timed out"),
        "{dsn}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delay_notice_is_sent_once() {
    let f = Fixture::new();
    let store = f.setup().await;
    store.set_config("queue-delay-warning", "1s").await.unwrap();
    let id = queue_one(&store, "slow@remote.test").await;
    let c = claim_one(&store, "node-a").await;
    store
        .report_delivery(
            &id,
            c.claim,
            &[result(
                "slow@remote.test",
                Outcome::Deferred,
                "4.2.2",
                "452 4.2.2 mailbox full",
            )],
        )
        .await
        .unwrap();
    let inbox = eventually("the delay notice", async || {
        let inbox = mailbox(&store, ALICE).await;
        (!inbox.is_empty()).then_some(inbox)
    })
    .await;
    let dsn = &inbox[0];
    for part in [
        "Subject: Delayed Mail (still being retried)",
        "Final-Recipient: rfc822; slow@remote.test\r\nAction: delayed\r\nStatus: 4.2.2",
        "Diagnostic-Code: smtp; 452 4.2.2 mailbox full",
        "Will-Retry-Until: ",
    ] {
        assert!(dsn.contains(part), "{part:?} missing in\n{dsn}");
    }
    // Still pending, and never notified again: not by later sweeps, not after a restart.
    assert_eq!(store.show_queue(&id).unwrap().recipients.len(), 1);
    for _ in 0..3 {
        store.sweep_queue().await;
    }
    drop(store);
    let store = f.open().await;
    store.sweep_queue().await;
    assert_eq!(mailbox(&store, ALICE).await.len(), 1);
    assert!(store.show_queue(&id).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_partial_failure_makes_the_dsn_before_the_reply() {
    let f = Fixture::new();
    let store = f.setup().await;
    // Bob's mailbox is full: a message fits his quota, but not the room left.
    store
        .deliver(&id(), &[BOB.into()], msg("earlier"))
        .await
        .unwrap();
    let used = store.show_quota(BOB, false).unwrap().1;
    store.set_quota(BOB, false, Some(used + 10)).await.unwrap();
    // A hosted sender: the DSN is in its mailbox when the delivery returns.
    let id1 = id();
    let d = Delivery {
        mail_from: CAROL.into(),
        user: String::new(),
        ..submission(&id1, CAROL, &[ALICE, BOB], msg("partly"))
    };
    let out = store.deliver_message(d.clone()).await.unwrap();
    assert!(matches!(out[0].status, Recipient::Mailboxes(_)));
    assert_eq!(out[1].status, Recipient::MailboxFull);
    let inbox = mailbox(&store, CAROL).await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert!(
        inbox[0].contains(
            "Final-Recipient: rfc822; bob@example.test\r\nAction: failed\r\nStatus: 5.2.2"
        )
    );
    assert!(inbox[0].contains("552 5.2.2 mailbox full"));
    assert!(!inbox[0].contains("Final-Recipient: rfc822; alice@"));
    // The front-end's retry with the same id makes no second DSN.
    store.deliver_message(d).await.unwrap();
    assert_eq!(mailbox(&store, CAROL).await.len(), 1);
    assert_eq!(mailbox(&store, ALICE).await.len(), 1);

    // A remote sender: the DSN is queued, with the null reverse-path.
    let d = Delivery {
        mail_from: "someone@elsewhere.test".into(),
        user: String::new(),
        ..submission(&id(), CAROL, &[ALICE, BOB], msg("from afar"))
    };
    store.deliver_message(d).await.unwrap();
    let list = store.list_queue();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].mail_from, "");
    assert_eq!(list[0].recipients[0].address, "someone@elsewhere.test");

    // Nothing stored: no DSN (the front-end refuses the DATA instead).
    let d = Delivery {
        mail_from: CAROL.into(),
        user: String::new(),
        ..submission(&id(), CAROL, &[BOB], msg("all full"))
    };
    assert_eq!(
        store.deliver_message(d).await.unwrap()[0].status,
        Recipient::MailboxFull
    );
    assert_eq!(mailbox(&store, CAROL).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbound_limit_counts_messages_per_user() {
    let f = Fixture::new();
    let store = f.setup().await;
    store.set_config("outbound-limit", "3").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = id();
        store
            .deliver_message(submission(
                &id,
                ALICE,
                &["x@remote.test"],
                msg(&format!("m{i}")),
            ))
            .await
            .unwrap();
        ids.push(id);
    }
    // The 4th is refused as a whole: not even its local copy is stored.
    let err = store
        .deliver_message(submission(&id(), ALICE, &[BOB, "x@remote.test"], msg("m3")))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::RateLimited);
    assert!(err.to_string().contains(ALICE), "{err}");
    assert!(mailbox(&store, BOB).await.is_empty());
    assert_eq!(store.list_queue().len(), 3);
    // A retried delivery is not counted again; local mail is not counted at all; another
    // user has a count of its own.
    store
        .deliver_message(submission(&ids[2], ALICE, &["x@remote.test"], msg("m2")))
        .await
        .unwrap();
    store
        .deliver_message(submission(&id(), ALICE, &[BOB], msg("local")))
        .await
        .unwrap();
    store
        .deliver_message(submission(&id(), CAROL, &["x@remote.test"], msg("carol")))
        .await
        .unwrap();
    assert_eq!(store.list_queue().len(), 4);
    // 0 = unlimited.
    store.set_config("outbound-limit", "0").await.unwrap();
    store
        .deliver_message(submission(&id(), ALICE, &["x@remote.test"], msg("m4")))
        .await
        .unwrap();
    assert_eq!(store.list_queue().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lists_shows_retries_deletes_and_stat_counts() {
    let f = Fixture::new();
    let store = f.setup().await;
    let one = queue_one(&store, "a@remote.test").await;
    let two_id = id();
    store
        .deliver_message(submission(
            &two_id,
            ALICE,
            &["b@remote.test", "c@remote.test"],
            msg("two"),
        ))
        .await
        .unwrap();
    let list = store.list_queue();
    assert_eq!(
        list.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [one.as_str(), two_id.as_str()]
    );
    let cluster = store
        .stat_report(mailroot_store::store::StatScope::Cluster, false)
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!((cluster.queue_entries, cluster.queue_recipients), (2, 3));

    // Show: pending, with the last diagnostic, and who holds a claim.
    let mut claimed = store.claim_queue("node-a", 1, Duration::ZERO).await;
    let c = claimed.remove(0);
    assert_eq!(c.id, one);
    store
        .report_delivery(
            &one,
            c.claim,
            &[result(
                "a@remote.test",
                Outcome::Deferred,
                "4.0.0",
                "451 later",
            )],
        )
        .await
        .unwrap();
    let info = store.show_queue(&one).unwrap();
    assert_eq!(info.recipients[0].state, "pending");
    assert_eq!(info.recipients[0].last_diagnostic, "451 later");
    assert!(info.next_attempt_ms > unix_ms());
    let two = claim_one(&store, "node-b").await;
    assert_eq!(store.show_queue(&two_id).unwrap().claimed_by, "node-b");

    // Retry makes a deferred entry due now and wakes a waiting claimer.
    let waiter = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .claim_queue("node-c", 1, Duration::from_secs(15))
                .await
        }
    });
    store.retry_queue(&one).await.unwrap();
    let woken = waiter.await.unwrap();
    assert_eq!(woken.len(), 1, "retry did not wake the claimer");
    assert_eq!(woken[0].id, one);

    // Delete removes an entry without a DSN, claimed or not.
    store.delete_queue(&two_id).await.unwrap();
    assert_eq!(
        store.show_queue(&two_id).unwrap_err().reason(),
        Reason::UnknownQueueEntry
    );
    assert_eq!(
        store
            .report_delivery(&two_id, two.claim, &[])
            .await
            .unwrap_err()
            .reason(),
        Reason::UnknownQueueEntry
    );
    assert!(f.queue_files(&two_id).is_empty());
    assert_eq!(
        store.delete_queue(&two_id).await.unwrap_err().reason(),
        Reason::UnknownQueueEntry
    );
    assert_eq!(
        store.retry_queue("nope").await.unwrap_err().reason(),
        Reason::UnknownQueueEntry
    );
    assert!(mailbox(&store, ALICE).await.is_empty());
    let cluster = store
        .stat_report(mailroot_store::store::StatScope::Cluster, true)
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!((cluster.queue_entries, cluster.queue_recipients), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_removes_a_message_without_state() {
    let f = Fixture::new();
    let store = f.setup().await;
    let kept = queue_one(&store, "a@remote.test").await;
    drop(store);
    // A crash between the two writes of a new entry: the message alone.
    let orphan = id();
    let dir = f.dir.path().join("queue").join(&orphan);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("message"), b"Subject: half\r\n\r\nx\r\n").unwrap();
    let store = f.open().await;
    assert!(
        f.queue_files(&orphan).is_empty(),
        "the orphan message was removed"
    );
    let list = store.list_queue();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_keys_are_made_stored_pushed_and_deleted() {
    use aws_lc_rs::signature::{self, KeyPair, UnparsedPublicKey};
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let f = Fixture::new();
    let store = f.setup().await;
    let mut watcher = store.settings().subscribe();
    watcher.borrow_and_update();

    let (name, txt) = store
        .dkim_generate("example.test", "s2026", "")
        .await
        .unwrap();
    assert_eq!(name, "s2026._domainkey.example.test");
    let p = txt.strip_prefix("v=DKIM1; k=rsa; p=").expect(&txt);
    // Every watcher is told at once, and the key it gets is the TXT's private half.
    tokio::time::timeout(Duration::from_secs(5), watcher.changed())
        .await
        .expect("settings change pushed")
        .unwrap();
    let keys = watcher.borrow_and_update().dkim_keys.clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (
            keys[0].domain.as_str(),
            keys[0].selector.as_str(),
            keys[0].algorithm.as_str()
        ),
        ("example.test", "s2026", "rsa-sha256")
    );
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&keys[0].private_key).unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut sig = vec![0; pair.public_modulus_len()];
    pair.sign(&signature::RSA_PKCS1_SHA256, &rng, b"signed data", &mut sig)
        .unwrap();
    let spki = b64.decode(p).unwrap();
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &spki)
        .verify(b"signed data", &sig)
        .expect("the TXT's public key verifies the private key's signature");

    // Ed25519: the TXT holds the raw public key.
    let (_, txt) = store
        .dkim_generate("other.test", "ed", "ed25519")
        .await
        .unwrap();
    let p = txt.strip_prefix("v=DKIM1; k=ed25519; p=").expect(&txt);
    let keys = store.settings().current().dkim_keys;
    let ed = keys.iter().find(|k| k.domain == "other.test").unwrap();
    assert_eq!(ed.algorithm, "ed25519-sha256");
    let pair = signature::Ed25519KeyPair::from_pkcs8(&ed.private_key).unwrap();
    assert_eq!(
        pair.public_key().as_ref(),
        b64.decode(p).unwrap().as_slice()
    );

    let list = store.dkim_list();
    assert_eq!(list.len(), 2);
    assert!(
        list[0].txt.split("p=").nth(1).unwrap().len() > 300,
        "RSA 2048"
    );

    // Only hosted domains; only known algorithms and well-formed selectors.
    assert_eq!(
        store
            .dkim_generate("nowhere.test", "s", "rsa")
            .await
            .unwrap_err()
            .reason(),
        Reason::UnknownDomain
    );
    assert!(
        store
            .dkim_generate("example.test", "s", "dsa")
            .await
            .is_err()
    );
    assert!(
        store
            .dkim_generate("example.test", "bad_sel", "rsa")
            .await
            .is_err()
    );

    // Durable: loaded at start-up and pushed again.
    drop(store);
    let store = f.open().await;
    assert_eq!(store.dkim_list(), list);
    assert_eq!(store.settings().current().dkim_keys.len(), 2);
    // Deleted by itself, or with its domain.
    store.dkim_delete("example.test").await.unwrap();
    assert!(store.dkim_delete("example.test").await.is_err());
    store.delete_domain("other.test", true).await.unwrap();
    assert!(store.dkim_list().is_empty());
    assert!(store.settings().current().dkim_keys.is_empty());
    drop(store);
    let store = f.open().await;
    assert!(store.dkim_list().is_empty());
}
