//! DSNs (RFC 3464) made by the store: for failed, expired and delayed outbound recipients, for
//! NOTIFY=SUCCESS, and for inbound partial failures; into a hosted sender's mailbox or queued
//! for a remote one with the null reverse-path, never for a DSN itself, as RFC 3461 NOTIFY
//! asks. Time-based behaviour runs with short settings, waited for by polling with a deadline.

mod support;

use mailroot_store::store::queue::{Notify, Outcome, Ret};
use mailroot_store::store::{Delivery, Recipient, RecipientParams};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_recipient_gives_exactly_one_dsn_in_the_hosted_senders_mailbox() {
    let f = Fixture::new();
    let store = f.setup().await;
    queue_one(&store, "nobody@remote.test").await;
    let c = claim_one(&store, "node-a").await;
    report_one(
        &store,
        &c,
        "nobody@remote.test",
        Outcome::Failed,
        "5.1.1",
        "550 5.1.1 no such user",
    )
    .await;
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
    report_one(
        &store,
        &c,
        "x@remote.test",
        Outcome::Failed,
        "5.7.1",
        "554 5.7.1 refused",
    )
    .await;
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
    report_one(
        &store,
        &c,
        "someone@elsewhere.test",
        Outcome::Failed,
        "5.1.1",
        "550 no",
    )
    .await;
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
    report_one(
        &store,
        &c,
        "x@remote.test",
        Outcome::Failed,
        "5.1.1",
        "550 no",
    )
    .await;
    assert!(store.list_queue().is_empty());
    assert_eq!(mailbox(&store, ALICE).await.len(), 1, "no second DSN");
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
    report_one(
        &store,
        &c,
        "late@remote.test",
        Outcome::Deferred,
        "4.4.1",
        "connection timed out",
    )
    .await;
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
    report_one(
        &store,
        &c,
        "slow@remote.test",
        Outcome::Deferred,
        "4.2.2",
        "452 4.2.2 mailbox full",
    )
    .await;
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
        .deliver(&id(), &[BOB.into()], msg(&"earlier ".repeat(200)))
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

    // A front-end that does not name itself is older than the store's DSNs and makes its own:
    // the store makes none (no second DSN during a rolling upgrade).
    let d = Delivery {
        mail_from: CAROL.into(),
        user: String::new(),
        reporting_host: String::new(),
        ..submission(&id(), CAROL, &[ALICE, BOB], msg("old front-end"))
    };
    assert_eq!(
        store.deliver_message(d).await.unwrap()[1].status,
        Recipient::MailboxFull
    );
    assert_eq!(mailbox(&store, CAROL).await.len(), 1);

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
