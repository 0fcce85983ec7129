//! The front-end's TLS certificate is replaced without a restart: on SIGHUP and when the PEM
//! files change (services/frontend/src/tls.rs, `Certificates`). A broken file keeps the
//! current certificate. The served certificate is read with the openssl client.

use std::process::Command;
use std::time::Duration;

use mailroot_tests::{Options, TestCluster, bin, eventually, have_client};

/// SHA-256 fingerprint of the certificate `addr` (implicit TLS) presents.
fn served(addr: std::net::SocketAddr) -> Option<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        ))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn file_fingerprint(path: &std::path::Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(path)
        .output()
        .expect("openssl x509");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Two different certificates (with their keys), made by `mailrootctl cluster init`.
fn certificates(dir: &std::path::Path) -> [(std::path::PathBuf, std::path::PathBuf); 2] {
    ["a", "b"].map(|name| {
        let d = dir.join(name);
        let out = Command::new(bin("mailrootctl"))
            .args(["cluster", "init"])
            .arg(&d)
            .output()
            .expect("mailrootctl cluster init");
        assert!(out.status.success(), "{out:?}");
        (d.join("store.pem"), d.join("store-key.pem"))
    })
}

/// Replaces `dst` the way deployment tools do: a new file renamed over the old one.
fn install(src: &std::path::Path, dst: &std::path::Path) {
    let tmp = dst.with_extension("new");
    std::fs::copy(src, &tmp).unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}

#[test]
fn the_certificate_is_reloaded_on_sighup_and_on_file_change() {
    if !have_client("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let [a, b] = certificates(dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    install(&a.0, &cert);
    install(&a.1, &key);
    let options = Options {
        frontend: vec![
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ],
        ..Options::default()
    };
    let c = TestCluster::start_with(1, options, dir);
    let pop3s = c.fe(0).pop3s;
    let (fa, fb) = (file_fingerprint(&a.0), file_fingerprint(&b.0));
    assert_ne!(fa, fb);
    let wait = Duration::from_secs(20);
    assert_eq!(
        eventually("pop3s answers", wait, || served(pop3s)),
        fa,
        "the certificate given at start"
    );

    // SIGHUP after the files were replaced.
    install(&b.0, &cert);
    install(&b.1, &key);
    TestCluster::signal(&c.fe(0).proc, "HUP");
    eventually("certificate b is served", wait, || {
        (served(pop3s).as_deref() == Some(fb.as_str())).then_some(())
    });

    // A broken certificate file: the current one stays, and the log says why.
    std::fs::write(cert.with_extension("new"), "not a certificate").unwrap();
    std::fs::rename(cert.with_extension("new"), &cert).unwrap();
    TestCluster::signal(&c.fe(0).proc, "HUP");
    eventually("the failed reload is logged", wait, || {
        c.fe(0)
            .proc
            .log_text()
            .contains("TLS certificate NOT reloaded")
            .then_some(())
    });
    assert_eq!(served(pop3s).as_deref(), Some(fb.as_str()));

    // No signal at all: new files are noticed by their modification time.
    install(&a.0, &cert);
    install(&a.1, &key);
    eventually("certificate a is served again", wait, || {
        (served(pop3s).as_deref() == Some(fa.as_str())).then_some(())
    });
}
