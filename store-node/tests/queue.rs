//! The outbound queue in the store: entries durable across restarts and queued once, relay
//! still refused without a user, the workers' claim/fetch/renew/report protocol with claim
//! expiry and stale tokens, the retry schedule, the outbound rate limit, the admin calls and
//! the start-up sweep. A store opened on a temp dir, restarted by reopening it (as in
//! `store_suite.rs`); time-based behaviour runs with short settings, waited for by polling
//! with a deadline.

mod support;

use std::time::{Duration, Instant};

use mailroot_store::store::queue::Outcome;
use mailroot_store::store::{Delivery, Recipient};
use proto::Reason;
use support::*;

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
    report_one(
        &store,
        &c,
        "bob@remote.test",
        Outcome::Delivered,
        "2.0.0",
        "250 ok",
    )
    .await;
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
        report_one(
            &store,
            &c,
            "slow@remote.test",
            Outcome::Deferred,
            "4.2.0",
            "421 try later",
        )
        .await;
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
