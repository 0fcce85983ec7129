//! DKIM keys made by the store: generated, stored durably, pushed to every settings watcher,
//! their TXT record matching the private key (checked with aws-lc-rs), deleted alone or with
//! their domain.

mod support;

use std::time::Duration;

use proto::Reason;
use support::*;

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
