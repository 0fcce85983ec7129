//! The store's semantics, run against every backend: the local directory (group commit; new
//! objects as unnamed files linked into place, and again through `staging/` + rename, the path
//! for filesystems without O_TMPFILE) and S3 (a real S3-compatible server, `s3s-fs`, started here as a process). The S3 half SKIPs
//! loudly when `s3s-fs` is not installed, unless MAILROOT_REQUIRE_S3=1 (tests/run.sh sets it
//! and installs `s3s-fs`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mailroot_store::group_commit::GroupCommit;
use mailroot_store::objects::{Durability, Objects};
use mailroot_store::store::queue::{DeliveryReport, Outcome};
use mailroot_store::store::{Delivery, Recipient, Store};
use object_store::aws::AmazonS3Builder;

const GUID: &str = "5f0c1a52-7a39-4f7e-9d2b-0a4c4d2e8b11";
const TTL: Duration = Duration::from_millis(600);

/// Where a suite run keeps its objects; reopening gives a fresh `Objects` on the same data.
enum Backend {
    /// The directory, and whether new objects are written as unnamed files.
    Local(tempfile::TempDir, bool),
    S3 {
        _dir: tempfile::TempDir,
        server: Child,
        port: u16,
        prefix: String,
    },
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Backend::S3 { server, .. } = self {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl Backend {
    fn local(unnamed_files: bool) -> Backend {
        Backend::Local(tempfile::tempdir().unwrap(), unnamed_files)
    }

    fn s3() -> Option<Backend> {
        let found = Command::new("s3s-fs").arg("--version").output().is_ok();
        if !found {
            assert!(
                std::env::var("MAILROOT_REQUIRE_S3").as_deref() != Ok("1"),
                "s3s-fs is required (MAILROOT_REQUIRE_S3=1) but not installed"
            );
            eprintln!(
                "SKIP: s3s-fs not installed (cargo install s3s-fs --features binary); S3 backend not tested"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mailroot")).unwrap();
        // s3s-fs cannot report a port it chose itself: take a free one from the OS.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "test-access", "--secret-key", "test-secret"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Backend::S3 {
            _dir: dir,
            server,
            port,
            prefix: format!("run-{}", uuid::Uuid::new_v4().simple()),
        })
    }

    fn objects(&self) -> Objects {
        match self {
            Backend::Local(dir, unnamed_files) => Objects::open_with(
                dir.path().to_str().unwrap(),
                Durability::GroupCommit,
                GroupCommit::default(),
                *unnamed_files,
            )
            .unwrap(),
            Backend::S3 { port, prefix, .. } => Objects::s3(
                AmazonS3Builder::new()
                    .with_bucket_name("mailroot")
                    .with_endpoint(format!("http://127.0.0.1:{port}"))
                    .with_allow_http(true)
                    .with_region("us-east-1")
                    .with_access_key_id("test-access")
                    .with_secret_access_key("test-secret")
                    .with_virtual_hosted_style_request(false),
                prefix,
            )
            .unwrap(),
        }
    }

    async fn open(&self) -> Store {
        Store::open(self.objects(), GUID, TTL).await.unwrap()
    }
}

fn msg(n: usize, size: usize) -> Bytes {
    let head = format!("Subject: {n}\r\n\r\n");
    let mut body = head.into_bytes();
    body.resize(size - 2, b'x');
    body.extend_from_slice(b"\r\n");
    Bytes::from(body)
}

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

async fn setup(store: &Store) {
    store.add_domain("example.test").await.unwrap();
    store.add_domain("other.test").await.unwrap();
    for a in ["alice@example.test", "bob@example.test", "carol@other.test"] {
        store.add_mailbox(a, &format!("pw-{a}")).await.unwrap();
    }
}

fn used(store: &Store, addr: &str) -> (u64, u64) {
    let s = &store.stat(Some(addr)).unwrap()[0];
    (s.messages, s.bytes)
}

// ---- the suite -------------------------------------------------------------------------------

async fn roundtrip_and_restart(b: &Backend) {
    let store = b.open().await;
    setup(&store).await;
    let m = msg(1, 300);
    let delivery = id();
    let out = store
        .deliver(&delivery, &["alice@example.test".into()], m.clone())
        .await
        .unwrap();
    assert!(matches!(out[0].status, Recipient::Mailboxes(_)));
    // A retry with the same delivery id stores nothing twice.
    store
        .deliver(&delivery, &["alice@example.test".into()], m.clone())
        .await
        .unwrap();
    assert_eq!(used(&store, "alice@example.test"), (1, 300));
    drop(store);

    let store = b.open().await;
    assert_eq!(used(&store, "alice@example.test"), (1, 300));
    let (addr, epoch, list) = store
        .open_maildrop("alice@example.test", "pw-alice@example.test", "s1", "n", "")
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].uidl, delivery);
    assert_eq!(store.fetch(&addr.to_string(), &delivery).await.unwrap(), m);
    assert_eq!(
        store
            .commit(
                "alice@example.test",
                epoch,
                std::slice::from_ref(&delivery),
                &[]
            )
            .await
            .unwrap(),
        1
    );
    drop(store);
    let store = b.open().await;
    assert_eq!(used(&store, "alice@example.test"), (0, 0));
}

async fn concurrent_deliveries_respect_mailbox_quota_exactly(b: &Backend) {
    let store = b.open().await;
    setup(&store).await;
    // Room for exactly 20 messages of 1000 bytes; the slack (< one message) leaves room for
    // the quota warning that crossing 90 % delivers, without room for a 21st message.
    const LIMIT: u64 = 20 * 1000 + 999;
    store
        .set_quota("alice@example.test", false, Some(LIMIT))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .deliver(&id(), &["alice@example.test".into()], msg(i, 1000))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match &t.await.unwrap()[0].status {
            Recipient::Mailboxes(_) => ok += 1,
            Recipient::MailboxFull => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let (count, bytes) = used(&store, "alice@example.test");
    assert_eq!(ok, 20, "accepted deliveries");
    assert_eq!(count, 21, "20 messages and one quota warning");
    assert!(bytes <= LIMIT, "usage {bytes} over the limit");
    // Usage equals the sum of stored sizes, also after a restart.
    let (_, _, list) = store
        .open_maildrop("alice@example.test", "pw-alice@example.test", "s", "n", "")
        .await
        .unwrap();
    assert_eq!(list.iter().map(|m| m.size).sum::<u64>(), bytes);
    drop(store);
    let store = b.open().await;
    assert_eq!(used(&store, "alice@example.test"), (count, bytes));
    assert_eq!(
        store.show_quota("alice@example.test", false).unwrap(),
        (Some(LIMIT), bytes)
    );
}

async fn domain_pool_quota_is_shared(b: &Backend) {
    let store = b.open().await;
    setup(&store).await;
    store
        .set_quota("example.test", true, Some(10 * 1000))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let store = store.clone();
            let to = if i % 2 == 0 {
                "alice@example.test"
            } else {
                "bob@example.test"
            };
            tokio::spawn(async move {
                store
                    .deliver(&id(), &[to.into()], msg(i, 1000))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if matches!(t.await.unwrap()[0].status, Recipient::Mailboxes(_)) {
            ok += 1;
        }
    }
    assert_eq!(ok, 10);
    let total = used(&store, "alice@example.test").1 + used(&store, "bob@example.test").1;
    assert_eq!(total, 10 * 1000);
    assert_eq!(
        store.show_quota("example.test", true).unwrap(),
        (Some(10_000), total)
    );
    // Another domain is not affected.
    let out = store
        .deliver(&id(), &["carol@other.test".into()], msg(0, 1000))
        .await
        .unwrap();
    assert!(matches!(out[0].status, Recipient::Mailboxes(_)));
    // RCPT-time check with a declared size.
    assert_eq!(
        store.check_recipient("alice@example.test", 500),
        Recipient::MailboxFull
    );
    assert_eq!(
        store.check_recipient("alice@example.test", 20_000),
        Recipient::TooBig
    );
}

async fn quota_warning_is_delivered_once(b: &Backend) {
    let store = b.open().await;
    setup(&store).await;
    store
        .set_quota("bob@example.test", false, Some(10_000))
        .await
        .unwrap();
    for i in 0..9 {
        store
            .deliver(&id(), &["bob@example.test".into()], msg(i, 1000))
            .await
            .unwrap();
    }
    // 9000 / 10000 = 90 %: one warning arrived besides the 9 messages.
    let (_, _, list) = store
        .open_maildrop("bob@example.test", "pw-bob@example.test", "s", "n", "")
        .await
        .unwrap();
    assert_eq!(list.len(), 10);
    let mut warnings = 0;
    for m in &list {
        let body = store.fetch("bob@example.test", &m.uidl).await.unwrap();
        if String::from_utf8_lossy(&body).contains("Subject: Your mailbox is almost full") {
            warnings += 1;
        }
    }
    assert_eq!(warnings, 1);
    // More mail above the threshold does not warn again.
    store
        .deliver(&id(), &["bob@example.test".into()], msg(10, 200))
        .await
        .unwrap();
    assert_eq!(used(&store, "bob@example.test").0, 11);
}

async fn aliases(b: &Backend) {
    let store = b.open().await;
    setup(&store).await;
    store
        .add_alias(
            "team@example.test",
            &["alice@example.test".into(), "carol@other.test".into()],
        )
        .await
        .unwrap();
    // Cross-domain fan-out; alias + target gives two copies.
    let out = store
        .deliver(
            &id(),
            &["team@example.test".into(), "alice@example.test".into()],
            msg(0, 100),
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(used(&store, "alice@example.test").0, 2);
    assert_eq!(used(&store, "carol@other.test").0, 1);
    // Login with the alias name and a target's password opens that target's maildrop.
    let (addr, _, list) = store
        .open_maildrop("team@example.test", "pw-carol@other.test", "s", "n", "")
        .await
        .unwrap();
    assert_eq!(addr.to_string(), "carol@other.test");
    assert_eq!(list.len(), 1);
    // Name collisions and dangling targets are refused.
    assert!(store.add_mailbox("team@example.test", "x").await.is_err());
    assert!(
        store
            .add_alias("alice@example.test", &["bob@example.test".into()])
            .await
            .is_err()
    );
    assert!(
        store
            .add_alias("x@example.test", &["nobody@example.test".into()])
            .await
            .is_err()
    );
    // Deleting a target (mailbox or its domain) is refused, naming the alias.
    let err = store
        .delete_mailbox("carol@other.test")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("team@example.test"), "{err}");
    let err = store
        .delete_domain("other.test", true)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("team@example.test"), "{err}");
    // Locking the alias locks the target.
    store
        .set_lock("team@example.test", false, true)
        .await
        .unwrap();
    assert!(
        store
            .open_maildrop("carol@other.test", "pw-carol@other.test", "s2", "n", "")
            .await
            .is_err()
    );
    store
        .set_lock("team@example.test", false, false)
        .await
        .unwrap();
    // Survives a restart; after the alias is gone the target can be deleted.
    drop(store);
    let store = b.open().await;
    assert_eq!(store.list_aliases(None).unwrap().len(), 1);
    store.delete_alias("team@example.test").await.unwrap();
    store.delete_mailbox("carol@other.test").await.unwrap();
}

async fn locks_refuse_login_but_not_delivery(b: &Backend) {
    let store = b.open().await;
    setup(&store).await;
    store
        .set_lock("alice@example.test", false, true)
        .await
        .unwrap();
    let err = store
        .open_maildrop("alice@example.test", "pw-alice@example.test", "s", "n", "")
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "locked");
    let out = store
        .deliver(&id(), &["alice@example.test".into()], msg(0, 100))
        .await
        .unwrap();
    assert!(matches!(out[0].status, Recipient::Mailboxes(_)));
    store
        .set_lock("alice@example.test", false, false)
        .await
        .unwrap();
    store.set_lock("example.test", true, true).await.unwrap();
    drop(store);
    let store = b.open().await; // locks are durable
    let err = store
        .open_maildrop("bob@example.test", "pw-bob@example.test", "s", "n", "")
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "locked");
    assert!(
        store
            .open_maildrop("carol@other.test", "pw-carol@other.test", "s", "n", "")
            .await
            .is_ok()
    );
    store.set_lock("example.test", true, false).await.unwrap();
    assert!(
        store
            .open_maildrop("alice@example.test", "pw-alice@example.test", "s3", "n", "")
            .await
            .is_ok()
    );
}

async fn maildrop_lease_is_exclusive_expires_and_fences(b: &Backend) {
    let store = b.open().await;
    setup(&store).await;
    let uidl = id();
    store
        .deliver(&uidl, &["alice@example.test".into()], msg(0, 100))
        .await
        .unwrap();
    let pw = "pw-alice@example.test";
    let alice = "alice@example.test";
    let (_, a, _) = store
        .open_maildrop(alice, pw, "A", "node-a", "")
        .await
        .unwrap();
    let err = store
        .open_maildrop(alice, pw, "B", "node-b", "")
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "in-use");
    let stat = &store.stat(Some(alice)).unwrap()[0];
    let lease = stat.session.as_ref().unwrap();
    assert_eq!((lease.node.as_str(), lease.epoch), ("node-a", a));
    // Renewal keeps it; without renewal it expires and B gets in, under a larger epoch.
    store.renew(alice, a).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let b_epoch = loop {
        match store.open_maildrop(alice, pw, "B", "node-b", "").await {
            Ok((_, e, _)) => break e,
            Err(e) => assert_eq!(e.reason().as_str(), "in-use"),
        }
        assert!(Instant::now() < deadline, "lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(b_epoch > a);
    // The stale holder A is fenced: it can neither renew nor delete.
    assert_eq!(
        store.renew(alice, a).unwrap_err().reason().as_str(),
        "lease-lost"
    );
    let err = store
        .commit(alice, a, std::slice::from_ref(&uidl), &[])
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "lease-lost");
    assert_eq!(used(&store, alice).0, 1);
    // B leaves; A still cannot take the maildrop back (another session came and went).
    store.close(alice, b_epoch).unwrap();
    assert_eq!(
        store.renew(alice, a).unwrap_err().reason().as_str(),
        "lease-lost"
    );
    // Release frees the maildrop at once; a lease that expired with nobody else coming is
    // taken back by its own renewal.
    let (_, c, _) = store.open_maildrop(alice, pw, "C", "n", "").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stat(Some(alice)).unwrap()[0].session.is_some() {
        assert!(Instant::now() < deadline, "lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.renew(alice, c).unwrap();
    assert_eq!(
        store
            .commit(alice, c, std::slice::from_ref(&uidl), &[])
            .await
            .unwrap(),
        1
    );
}

/// `mailbox unlock-session` sticks against a live old holder, and a store restart fences
/// every session granted before it.
async fn unlock_session_and_restart_fence_old_holders(b: &Backend) {
    let store = b.open().await;
    setup(&store).await;
    let alice = "alice@example.test";
    let pw = "pw-alice@example.test";
    let uidl = id();
    store
        .deliver(&uidl, &[alice.into()], msg(0, 100))
        .await
        .unwrap();
    let (_, old, _) = store
        .open_maildrop(alice, pw, "old", "n1", "")
        .await
        .unwrap();
    assert!(store.break_session(alice).unwrap());
    // The old holder is alive and renews: it does not get the maildrop back.
    assert_eq!(
        store.renew(alice, old).unwrap_err().reason().as_str(),
        "lease-lost"
    );
    let (_, new, _) = store
        .open_maildrop(alice, pw, "new", "n2", "")
        .await
        .unwrap();
    assert!(new > old);
    assert_eq!(
        store.renew(alice, old).unwrap_err().reason().as_str(),
        "lease-lost"
    );
    assert_eq!(
        store
            .commit(alice, old, std::slice::from_ref(&uidl), &[])
            .await
            .unwrap_err()
            .reason()
            .as_str(),
        "lease-lost"
    );
    store.renew(alice, new).unwrap();
    drop(store);

    // Restart: "new" held the lease; it is fenced now, and the next grant's epoch is larger
    // than any before the restart.
    let store = b.open().await;
    assert_eq!(
        store.renew(alice, new).unwrap_err().reason().as_str(),
        "lease-lost"
    );
    let (_, after, _) = store
        .open_maildrop(alice, pw, "after", "n3", "")
        .await
        .unwrap();
    assert!(after > new, "{after} > {new}");
    let stat = &store.stat(Some(alice)).unwrap()[0];
    assert_eq!(stat.session.as_ref().unwrap().epoch, after);
    assert_eq!(
        store
            .commit(alice, new, std::slice::from_ref(&uidl), &[])
            .await
            .unwrap_err()
            .reason()
            .as_str(),
        "lease-lost"
    );
    assert_eq!(used(&store, alice).0, 1);
    assert_eq!(store.commit(alice, after, &[uidl], &[]).await.unwrap(), 1);
    assert_eq!(used(&store, alice).0, 0);
}

/// `domain delete --force` must look at EVERY alias that points into the domain: an alias of
/// the domain itself (deleted with it) sorting before or after an outside alias must not hide
/// the outside one, which would be left dangling.
async fn alias_guard_holds_for_every_order_of_aliases(b: &Backend) {
    let store = b.open().await;
    setup(&store).await;
    for (inner, outer) in [("aaa", "zzz"), ("zzz", "aaa")] {
        let inner = format!("{inner}@example.test");
        let outer = format!("{outer}@other.test");
        store
            .add_alias(&inner, &["bob@example.test".into()])
            .await
            .unwrap();
        store
            .add_alias(&outer, &["alice@example.test".into()])
            .await
            .unwrap();
        let err = store.delete_domain("example.test", true).await.unwrap_err();
        assert_eq!(
            err.reason().as_str(),
            "alias-target",
            "{inner} {outer}: {err}"
        );
        assert!(err.to_string().contains(&outer), "{err}");
        assert!(store.list_domains().contains(&"example.test".to_string()));
        assert!(matches!(
            store.check_recipient(&outer, 0),
            Recipient::Mailboxes(_)
        ));
        store.delete_alias(&outer).await.unwrap();
        store.delete_alias(&inner).await.unwrap();
    }
    // With no alias outside, --force takes the domain and its own aliases.
    store
        .add_alias("team@example.test", &["bob@example.test".into()])
        .await
        .unwrap();
    store.delete_domain("example.test", true).await.unwrap();
    assert!(store.list_aliases(None).unwrap().is_empty());
}

async fn domain_and_mailbox_lifecycle(b: &Backend) {
    let store = b.open().await;
    setup(&store).await;
    store
        .deliver(&id(), &["bob@example.test".into()], msg(0, 100))
        .await
        .unwrap();
    assert_eq!(
        store
            .delete_domain("example.test", false)
            .await
            .unwrap_err()
            .reason()
            .as_str(),
        "domain-not-empty"
    );
    store.delete_domain("example.test", true).await.unwrap();
    assert_eq!(
        store.check_recipient("bob@example.test", 0),
        Recipient::RelayDenied
    );
    drop(store);
    let store = b.open().await;
    assert_eq!(store.list_domains(), vec!["other.test".to_string()]);
    assert_eq!(
        store.list_mailboxes(None).unwrap(),
        vec!["carol@other.test".to_string()]
    );
    // Re-creating the mailbox starts empty: the old mail went with it.
    store.add_domain("example.test").await.unwrap();
    store.add_mailbox("bob@example.test", "x").await.unwrap();
    assert_eq!(used(&store, "bob@example.test"), (0, 0));
}

/// The outbound queue uses only `Objects`: an entry, its state and its removal behave the
/// same on every backend.
async fn outbound_queue_survives_restart(b: &Backend) {
    let store = b.open().await;
    setup(&store).await;
    let delivery = id();
    let m = msg(7, 500);
    let out = store
        .deliver_message(Delivery {
            id: delivery.clone(),
            mail_from: "alice@example.test".into(),
            recipients: vec!["bob@example.test".into(), "x@remote.test".into()],
            message: m.clone(),
            user: "alice@example.test".into(),
            ..Delivery::default()
        })
        .await
        .unwrap();
    assert!(matches!(out[0].status, Recipient::Mailboxes(_)));
    assert_eq!(out[1].status, Recipient::Queued);
    drop(store);

    let store = b.open().await;
    let list = store.list_queue();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].id.as_str(), list[0].size),
        (delivery.as_str(), 500)
    );
    let claimed = store
        .claim_queue("n", 1, Duration::ZERO)
        .await
        .pop()
        .unwrap();
    let chunks: Vec<Bytes> = futures::TryStreamExt::try_collect(
        store.fetch_queued(&delivery, claimed.claim).await.unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(Bytes::from(chunks.concat()), m);
    store
        .report_delivery(
            &delivery,
            claimed.claim,
            &[DeliveryReport {
                recipient: "x@remote.test".into(),
                outcome: Outcome::Delivered,
                status: "2.0.0".into(),
                diagnostic: "250 ok".into(),
                remote_mta: "mx.remote.test".into(),
            }],
        )
        .await
        .unwrap();
    assert!(store.list_queue().is_empty());
    drop(store);
    assert!(b.open().await.list_queue().is_empty());
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let b = super::Backend::local(true);
                super::$name(&b).await;
            })*
        }
        mod local_staged {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let b = super::Backend::local(false);
                super::$name(&b).await;
            })*
        }
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some(b) = super::Backend::s3() else { return };
                super::$name(&b).await;
            })*
        }
    };
}

suite!(
    roundtrip_and_restart,
    concurrent_deliveries_respect_mailbox_quota_exactly,
    domain_pool_quota_is_shared,
    quota_warning_is_delivered_once,
    aliases,
    locks_refuse_login_but_not_delivery,
    maildrop_lease_is_exclusive_expires_and_fences,
    domain_and_mailbox_lifecycle,
    alias_guard_holds_for_every_order_of_aliases,
    unlock_session_and_restart_fence_old_holders,
    outbound_queue_survives_restart,
);
