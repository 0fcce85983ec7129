//! DKIM signatures checked by an independent verifier: dkimpy (Debian's python3-dkim), the
//! real `dkim.verify`, with the DNS TXT answer supplied through its `dnsfunc` (the record
//! our `public_txt` made). Keys are generated the way the store generates them (aws-lc-rs,
//! PKCS#8 DER).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::Ed25519KeyPair;
use mailroot_outbound::{DkimAlgorithm, public_txt, sign};
use mailroot_tests::{PYTHON, have_python_module};

const MESSAGE: &[u8] = b"From: Alice <alice@sign.test>\r\nTo: bob@dest.test\r\n\
Subject: signed  message\r\nDate: Wed, 02 Dec 2026 15:00:00 +0000\r\n\
Message-ID: <1@sign.test>\r\nX-Not-Signed: yes\r\n\r\nHello Bob,\r\n.dot line\r\n\r\n\r\n";

/// Verifies with dkimpy; the TXT record is answered for `<selector>._domainkey.<domain>`.
fn dkimpy_verifies(signed: &[u8], txt: &str) -> bool {
    let script = r#"
import sys, dkim
txt, msg = sys.argv[1].encode(), sys.stdin.buffer.read()
def dnsfunc(name, timeout=5):
    assert name in (b"sel1._domainkey.sign.test.", "sel1._domainkey.sign.test."), name
    return txt
print("PASS" if dkim.verify(msg, dnsfunc=dnsfunc) else "FAIL")
"#;
    let mut child = Command::new(PYTHON)
        .args(["-c", script, txt])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().unwrap().write_all(signed).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dkimpy failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match stdout.trim() {
        "PASS" => true,
        "FAIL" => false,
        other => panic!("dkimpy said {other:?}"),
    }
}

fn rsa_key() -> Vec<u8> {
    let key = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).unwrap();
    let der: aws_lc_rs::encoding::Pkcs8V1Der = key.as_der().unwrap();
    der.as_ref().to_vec()
}

fn ed25519_key() -> Vec<u8> {
    Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn check(algorithm: DkimAlgorithm, key: &[u8], k: &str) {
    let header = sign(MESSAGE, "sign.test", "sel1", algorithm, key).unwrap();
    assert!(header.starts_with("DKIM-Signature: v=1; a="), "{header}");
    assert!(header.ends_with("\r\n"), "{header}");
    assert!(header.contains(algorithm.name()), "{header}");
    assert!(header.contains("c=relaxed/relaxed"), "{header}");
    let h = header
        .split("h=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let signed: Vec<String> = h
        .split(':')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    for name in ["from", "to", "subject", "date", "message-id"] {
        assert!(signed.contains(&name.to_string()), "{name} not in h={h}");
    }
    assert!(!signed.contains(&"x-not-signed".to_string()), "h={h}");
    assert!(
        !signed.contains(&"cc".to_string()),
        "absent Cc is not listed: h={h}"
    );

    let txt = public_txt(algorithm, key).unwrap();
    assert!(txt.starts_with(&format!("v=DKIM1; k={k}; p=")), "{txt}");

    let mut signed_msg = header.clone().into_bytes();
    signed_msg.extend_from_slice(MESSAGE);
    assert!(
        dkimpy_verifies(&signed_msg, &txt),
        "{k}: a good signature must verify"
    );

    // Relaxed canonicalization survives whitespace changes a relay may make…
    let respaced = String::from_utf8(signed_msg.clone())
        .unwrap()
        .replace("Subject: signed  message", "Subject:  signed message")
        .replace("Hello Bob,\r\n", "Hello  Bob,  \r\n");
    assert!(dkimpy_verifies(respaced.as_bytes(), &txt), "{k}: relaxed");

    // …but not a changed body or a changed signed header.
    let tampered = String::from_utf8(signed_msg.clone())
        .unwrap()
        .replace("Hello Bob", "Hello Eve");
    assert!(
        !dkimpy_verifies(tampered.as_bytes(), &txt),
        "{k}: tampered body verified"
    );
    let tampered = String::from_utf8(signed_msg)
        .unwrap()
        .replace("To: bob@", "To: eve@");
    assert!(
        !dkimpy_verifies(tampered.as_bytes(), &txt),
        "{k}: tampered To verified"
    );
}

#[test]
fn rsa_sha256_signature_verifies_with_dkimpy() {
    if !have_python_module("dkim", "python3-dkim") {
        return;
    }
    check(DkimAlgorithm::RsaSha256, &rsa_key(), "rsa");
}

#[test]
fn ed25519_sha256_signature_verifies_with_dkimpy() {
    if !have_python_module("dkim", "python3-dkim") || !have_python_module("nacl", "python3-nacl") {
        return;
    }
    check(DkimAlgorithm::Ed25519Sha256, &ed25519_key(), "ed25519");
}

#[test]
fn a_key_of_the_other_algorithm_is_an_error() {
    assert!(
        sign(
            MESSAGE,
            "sign.test",
            "s",
            DkimAlgorithm::Ed25519Sha256,
            &rsa_key()
        )
        .is_err()
    );
    assert!(
        sign(
            MESSAGE,
            "sign.test",
            "s",
            DkimAlgorithm::RsaSha256,
            &ed25519_key()
        )
        .is_err()
    );
    // The Ed25519 record carries the raw 32-byte key.
    let txt = public_txt(DkimAlgorithm::Ed25519Sha256, &ed25519_key()).unwrap();
    let p = txt.split("p=").nth(1).unwrap();
    assert_eq!(p.len(), 44, "base64 of 32 bytes: {txt}");
}
