//! Directory domains when the directory does not answer, and the binding's durability. (The
//! conversation with a real OpenLDAP is tests/tests/directory.rs.)

mod support;

use mailroot_store::StoreError;
use mailroot_store::store::Recipient;
use support::*;

const DOMAIN: &str = "example.org";

fn directory(url: &str) -> proto::v1::DirectoryConfig {
    proto::v1::DirectoryConfig {
        url: url.to_string(),
        bind_dn: "cn=mailroot,dc=example,dc=org".into(),
        bind_password: "service-secret".into(),
        base: "ou=people,dc=example,dc=org".into(),
        insecure_plaintext: true,
        ..Default::default()
    }
}

fn unavailable<T>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::DirectoryUnavailable(_)))
}

/// A directory that takes connections (the kernel's backlog) and never says a word: every
/// call ends "unavailable" after the store's timeouts, and none is a failed login.
#[tokio::test]
async fn a_silent_directory_is_a_temporary_failure_not_a_bad_login() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldap://{}", silent.local_addr().unwrap());
    let f = Fixture::new();
    let store = f.open().await;
    store
        .add_domain_with(DOMAIN, Some(&directory(&url)))
        .await
        .unwrap();
    let r = store.lookup_recipient("bob@example.org", 0).await;
    assert!(unavailable(&r), "{r:?}");
    let r = store
        .authenticate("bob@example.org", "bob-pw", "192.0.2.1")
        .await;
    assert!(unavailable(&r), "{r:?}");
    let r = store
        .open_maildrop("bob@example.org", "x", "s1", "node", "192.0.2.1")
        .await;
    assert!(
        unavailable(&r),
        "not a bad password: {:?}",
        r.map(|(a, ..)| a)
    );
    assert!(
        store.throttle_list("").unwrap().is_empty(),
        "an unanswering directory is no failed login"
    );
    // A delivery to the domain cannot be decided either: try later, nothing stored.
    let r = store
        .deliver(&id(), &["bob@example.org".to_string()], msg("hi"))
        .await;
    assert!(unavailable(&r), "{r:?}");
    assert!(store.list_mailboxes(Some(DOMAIN)).unwrap().is_empty());
    drop(silent);
}

#[tokio::test]
async fn a_closed_port_is_unavailable_and_an_empty_password_never_reaches_it() {
    // A port nobody listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = Fixture::new();
    let store = f.open().await;
    store
        .add_domain_with(
            DOMAIN,
            Some(&directory(&format!("ldap://127.0.0.1:{port}"))),
        )
        .await
        .unwrap();
    let r = store.authenticate("bob@example.org", "bob-pw", "").await;
    assert!(unavailable(&r), "{r:?}");
    let r = store.authenticate("bob@example.org", "", "").await;
    assert!(matches!(r, Err(StoreError::BadCredentials)), "{r:?}");
    // Its users and passwords are the directory's.
    let r = store.add_mailbox("bob@example.org", "local-pw").await;
    assert!(matches!(r, Err(StoreError::InvalidArgument(_))), "{r:?}");
}

#[tokio::test]
async fn the_binding_survives_a_restart_and_lives_next_to_password_domains() {
    let f = Fixture::new();
    let store = f.open().await;
    let mut config = directory("ldaps://dc.example.org:636");
    config.insecure_plaintext = false;
    config.alias_attr = "proxyAddresses".into();
    store.add_domain_with(DOMAIN, Some(&config)).await.unwrap();
    store.add_domain("example.test").await.unwrap();
    store.add_mailbox(ALICE, "pw-alice").await.unwrap();
    // Refused: plaintext without the flag, on `set` as on `add`.
    let mut plain = directory("ldap://dc.example.org");
    plain.insecure_plaintext = false;
    let r = store.set_domain_directory(DOMAIN, Some(&plain)).await;
    assert!(matches!(r, Err(StoreError::InvalidArgument(_))), "{r:?}");
    drop(store);

    let store = f.open().await;
    let details = store.list_domain_details();
    let (_, bound) = details.iter().find(|(d, _)| d == DOMAIN).unwrap();
    let bound = bound.as_ref().expect("still bound after the restart");
    assert_eq!(bound.url, "ldaps://dc.example.org:636");
    assert_eq!(bound.alias_attr, "proxyAddresses");
    assert_eq!(bound.bind_password, "service-secret");
    assert!(
        details
            .iter()
            .any(|(d, b)| d == "example.test" && b.is_none())
    );
    // The password domain answers from the store alone.
    assert_eq!(
        store.lookup_recipient(ALICE, 0).await.unwrap(),
        (Recipient::Mailboxes(vec![ALICE.parse_address()]), false)
    );
    let (mailbox, _) = store.authenticate(ALICE, "pw-alice", "").await.unwrap();
    assert_eq!(mailbox.to_string(), ALICE);

    // `set` without a password keeps the stored one; unbinding forgets the directory.
    let mut change = config.clone();
    change.bind_password = String::new();
    change.base = "ou=staff,dc=example,dc=org".into();
    store
        .set_domain_directory(DOMAIN, Some(&change))
        .await
        .unwrap();
    drop(store);
    let store = f.open().await;
    let details = store.list_domain_details();
    let bound = details[0].1.as_ref().unwrap();
    assert_eq!(
        (bound.base.as_str(), bound.bind_password.as_str()),
        ("ou=staff,dc=example,dc=org", "service-secret")
    );
    store.set_domain_directory(DOMAIN, None).await.unwrap();
    drop(store);
    let store = f.open().await;
    assert!(store.list_domain_details().iter().all(|(_, b)| b.is_none()));
    assert_eq!(
        store.lookup_recipient("bob@example.org", 0).await.unwrap(),
        (Recipient::UnknownUser, false)
    );
}

trait ParseAddress {
    fn parse_address(&self) -> mailroot_store::names::Address;
}

impl ParseAddress for &str {
    fn parse_address(&self) -> mailroot_store::names::Address {
        mailroot_store::names::Address::parse(self).unwrap()
    }
}
