//! Imports at the store (`store/import.rs`): the crash window between the message and its
//! marker (a restart, the marker file gone) is found again by the deterministic UIDL; a
//! message imported and then deleted by POP3 does not come back; a mailbox deleted and made
//! again takes imports afresh; a mailbox made by an import has no password until one is set.

mod support;

use bytes::Bytes;
use mailroot_store::StoreError;
use mailroot_store::store::{ImportRequest, Imported};
use support::*;

fn request(address: &str, source: &str) -> ImportRequest {
    ImportRequest {
        address: address.to_string(),
        source_id: source.to_string(),
        received_ms: 1_100_000_000_000,
        ..ImportRequest::default()
    }
}

fn body(n: u32) -> Bytes {
    let mut m = format!("Subject: {n}\r\n\r\n.\r\n").into_bytes();
    m.extend_from_slice(b"\xe9\r\n");
    Bytes::from(m)
}

fn stored_uidl(i: Imported) -> String {
    match i {
        Imported::Stored { uidl, over_quota } => {
            assert!(!over_quota);
            uidl
        }
        other => panic!("not stored: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_message_and_marker_is_found_again_after_a_restart() {
    let f = Fixture::new();
    let store = f.setup().await;
    let uidl = stored_uidl(
        store
            .import_message(request(ALICE, "mbox:0"), body(1))
            .await
            .unwrap(),
    );
    drop(store);
    // The state a crash after the message's fsync and before the marker's leaves behind.
    let markers = f.dir.path().join("mailboxes/example.test/alice/imported");
    let files: Vec<_> = std::fs::read_dir(&markers).unwrap().collect();
    assert_eq!(files.len(), 1);
    std::fs::remove_file(files[0].as_ref().unwrap().path()).unwrap();
    let store = f.open().await;
    let again = store
        .import_message(request(ALICE, "mbox:0"), body(1))
        .await
        .unwrap();
    assert_eq!(again, Imported::AlreadyPresent { uidl: uidl.clone() });
    assert_eq!(
        std::fs::read_dir(&markers).unwrap().count(),
        1,
        "marker written now"
    );
    assert_eq!(mailbox(&store, ALICE).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_after_import_stays_deleted_and_a_new_mailbox_starts_afresh() {
    let f = Fixture::new();
    let store = f.setup().await;
    let uidl = stored_uidl(
        store
            .import_message(request(BOB, "winpop:a/P3_bob.mbx/P31.eml"), body(2))
            .await
            .unwrap(),
    );
    // POP3: RETR, DELE, QUIT.
    let (_, epoch, list) = store
        .open_maildrop(BOB, &password(BOB), "s1", "test", "")
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    store
        .commit(BOB, epoch, std::slice::from_ref(&uidl), &[])
        .await
        .unwrap();
    store.close(BOB, epoch).unwrap();
    let again = store
        .import_message(request(BOB, "winpop:a/P3_bob.mbx/P31.eml"), body(2))
        .await
        .unwrap();
    assert_eq!(again, Imported::AlreadyPresent { uidl });
    assert!(mailbox(&store, BOB).await.is_empty(), "not brought back");

    // Deleted with its markers: the same import into a new mailbox of that name stores it.
    store.delete_mailbox(BOB).await.unwrap();
    assert_eq!(
        store.prepare_import(BOB, true).await.unwrap(),
        (false, true)
    );
    let fresh = store
        .import_message(request(BOB, "winpop:a/P3_bob.mbx/P31.eml"), body(2))
        .await
        .unwrap();
    assert!(matches!(fresh, Imported::Stored { .. }), "{fresh:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_made_by_an_import_has_no_password_until_one_is_set() {
    let f = Fixture::new();
    let store = f.setup().await;
    let new = "new@fresh.test";
    assert!(matches!(
        store.prepare_import(new, false).await,
        Err(StoreError::UnknownDomain(_))
    ));
    assert_eq!(store.prepare_import(new, true).await.unwrap(), (true, true));
    assert_eq!(
        store.prepare_import(new, true).await.unwrap(),
        (false, false)
    );
    store
        .import_message(request(new, "mbox:0"), body(3))
        .await
        .unwrap();
    for pw in ["", "x", "pw"] {
        let r = store.open_maildrop(new, pw, "s", "test", "").await;
        assert!(
            matches!(r, Err(StoreError::BadCredentials)),
            "{pw:?}: {r:?}"
        );
        assert!(matches!(
            store.authenticate(new, pw, "").await,
            Err(StoreError::BadCredentials)
        ));
    }
    store.set_password(new, "pw").await.unwrap();
    let (_, epoch, list) = store
        .open_maildrop(new, "pw", "s", "test", "")
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    store.close(new, epoch).unwrap();
    // It survives a restart as it is.
    drop(store);
    let store = f.open().await;
    assert_eq!(store.stat(Some(new)).unwrap()[0].messages, 1);
}
