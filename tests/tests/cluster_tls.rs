//! Issue 5, links between nodes: `mailrootctl cluster init`, mutual TLS with roles, and the
//! refusal of plaintext gRPC off loopback.

use std::path::Path;
use std::process::Command;

use mailroot_tests::{Options, Pop3Client, SmtpClient, TestCluster, bin};

fn init(dir: &Path, sub: &str) -> std::path::PathBuf {
    let out = Command::new(bin("mailrootctl"))
        .args(["cluster", "init"])
        .arg(dir.join(sub))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join(sub)
}

fn flags(dir: &Path, cert: &str) -> Vec<String> {
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    vec![
        "--cluster-ca".into(),
        p("ca.pem"),
        "--cluster-cert".into(),
        p(&format!("{cert}.pem")),
        "--cluster-key".into(),
        p(&format!("{cert}-key.pem")),
    ]
}

#[test]
fn mutual_tls_cluster_with_roles() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = init(tmp.path(), "pki");
    let other = init(tmp.path(), "other-pki");
    // Secrets are not readable by others, and init never overwrites.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [
            "ca-key.pem",
            "store-key.pem",
            "frontend-key.pem",
            "admin-key.pem",
            "cluster.env",
        ] {
            let mode = std::fs::metadata(pki.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{f} mode {mode:o}");
        }
    }
    let again = Command::new(bin("mailrootctl"))
        .args(["cluster", "init"])
        .arg(&pki)
        .output()
        .unwrap();
    assert!(!again.status.success());
    // --if-missing (the compose file's init service, at every start): a complete set is left
    // as it is; a partial one is still refused; an empty one is filled.
    let ca_before = std::fs::read(pki.join("ca.pem")).unwrap();
    let if_missing = |dir: &Path| {
        Command::new(bin("mailrootctl"))
            .args(["cluster", "init", "--if-missing"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let out = if_missing(&pki);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(pki.join("ca.pem")).unwrap(), ca_before);
    let partial = tmp.path().join("partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::copy(pki.join("ca.pem"), partial.join("ca.pem")).unwrap();
    let out = if_missing(&partial);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("partial set"), "{err}");
    assert!(!partial.join("ca-key.pem").exists());
    let fresh = if_missing(&tmp.path().join("fresh"));
    assert!(fresh.status.success());
    assert!(tmp.path().join("fresh/cluster.env").exists());

    let options = Options {
        store: flags(&pki, "store"),
        frontend: flags(&pki, "frontend"),
        ctl: flags(&pki, "admin"),
        tls: true,
        ..Options::default()
    };
    let c = TestCluster::start_with(1, options, tmp);
    c.ctl_ok(&["domain", "add", "example.test"], None);
    c.add_mailbox("alice@example.test", "pw-alice");
    let mut s = SmtpClient::connect(c.fe(0).smtp).unwrap();
    assert!(
        s.send_mail(
            "b@remote.test",
            &["alice@example.test"],
            b"Subject: tls\r\n\r\nx\r\n"
        )
        .unwrap()
        .starts_with("250 ")
    );
    let mut p = Pop3Client::connect(c.fe(0).pop3).unwrap();
    assert!(
        p.login("alice@example.test", "pw-alice")
            .unwrap()
            .starts_with("+OK")
    );

    // A front-end identity cannot call admin RPCs, even with the admin token.
    let out = Command::new(bin("mailrootctl"))
        .env("MAILROOT_STORE", c.store_url())
        .env("MAILROOT_ADMIN_TOKEN", &c.admin_token)
        .args(flags(&pki, "frontend"))
        .args(["domain", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("urn:mailroot:role:admin"), "{err}");
    // The admin token alone, without a certificate, gets nowhere.
    let out = Command::new(bin("mailrootctl"))
        .env("MAILROOT_STORE", c.store_url())
        .env("MAILROOT_ADMIN_TOKEN", &c.admin_token)
        .args(["domain", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    // A front-end with an admin certificate (wrong role) or a certificate of another CA
    // refuses to start.
    for (dir, cert) in [(&pki, "admin"), (&other, "frontend")] {
        let mut cmd = c.frontend_command_base(&c.auth_guid);
        cmd.args(flags(dir, cert));
        let out = cmd.output().unwrap();
        assert!(
            !out.status.success(),
            "front-end with {cert} of {} started",
            dir.display()
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refused this node"), "{err}");
    }
}

#[test]
fn plaintext_grpc_off_loopback_needs_an_explicit_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let base = |extra: &[&str]| {
        let mut cmd = Command::new(bin("mailroot-store"));
        cmd.args([
            "--listen",
            "0.0.0.0:0",
            "--auth-guid",
            "5f0c1a52-7a39-4f7e-9d2b-0a4c4d2e8b11",
        ])
        .args(["--admin-token", "0123456789abcdef0123"])
        .arg("--data")
        .arg(tmp.path().join("d"))
        .args(extra);
        cmd
    };
    let out = base(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--insecure-plaintext"), "{err}");
    // With the flag it starts, and says so loudly.
    let (mut proc, _) =
        mailroot_tests::Proc::start(base(&["--insecure-plaintext"]), tmp.path().join("s.log"));
    mailroot_tests::eventually(
        "the loud warning",
        std::time::Duration::from_secs(10),
        || proc.log_text().contains("INSECURE").then_some(()),
    );
    proc.kill();
}

/// `cluster init --by-role`: one directory per role with only that role's share (the compose
/// file keeps each in its own volume), and a cluster runs on them.
#[test]
fn by_role_secrets_give_each_role_only_its_share() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("roles");
    let run = || {
        Command::new(bin("mailrootctl"))
            .args(["cluster", "init", "--by-role", "--if-missing"])
            .arg(&pki)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = |role: &str| {
        let mut names: Vec<String> = std::fs::read_dir(pki.join(role))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(files("ca"), ["ca-key.pem", "ca.pem"]);
    assert_eq!(
        files("store"),
        ["ca.pem", "cluster.env", "store-key.pem", "store.pem"]
    );
    assert_eq!(
        files("frontend"),
        ["ca.pem", "cluster.env", "frontend-key.pem", "frontend.pem"]
    );
    assert_eq!(
        files("admin"),
        ["admin-key.pem", "admin.pem", "ca.pem", "cluster.env"]
    );
    let env = |role: &str| std::fs::read_to_string(pki.join(role).join("cluster.env")).unwrap();
    assert!(
        env("store").contains("MAILROOT_AUTH_GUID=")
            && env("store").contains("MAILROOT_ADMIN_TOKEN=")
    );
    assert!(env("frontend").contains("MAILROOT_AUTH_GUID="));
    assert!(
        !env("frontend").contains("ADMIN_TOKEN"),
        "a front-end holds no admin token"
    );
    assert!(
        !env("admin").contains("AUTH_GUID"),
        "an admin needs no GUID"
    );
    // At the next start the set is complete: nothing is written again.
    let ca = std::fs::read(pki.join("ca/ca.pem")).unwrap();
    assert!(run().status.success());
    assert_eq!(std::fs::read(pki.join("ca/ca.pem")).unwrap(), ca);

    // A cluster on the role directories (with the GUID and token each role was given).
    let value = |role: &str, key: &str| {
        env(role)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
            .unwrap()
    };
    let options = Options {
        store: flags(&pki.join("store"), "store"),
        frontend: flags(&pki.join("frontend"), "frontend"),
        ctl: flags(&pki.join("admin"), "admin"),
        tls: true,
        ..Options::default()
    };
    // The store and the front-ends were given one GUID, the store and the admins one token.
    assert_eq!(
        value("store", "MAILROOT_AUTH_GUID"),
        value("frontend", "MAILROOT_AUTH_GUID")
    );
    assert_eq!(
        value("store", "MAILROOT_ADMIN_TOKEN"),
        value("admin", "MAILROOT_ADMIN_TOKEN")
    );
    // (The harness passes a GUID and token of its own as flags; the certificates are what
    // this checks.)
    let c = TestCluster::start_with(1, options, tmp);
    c.ctl_ok(&["domain", "add", "example.test"], None);
    c.add_mailbox("alice@example.test", "pw-alice");
    let mut s = SmtpClient::connect(c.fe(0).smtp).unwrap();
    assert!(
        s.send_mail(
            "b@remote.test",
            &["alice@example.test"],
            b"Subject: roles\r\n\r\nx\r\n"
        )
        .unwrap()
        .starts_with("250 ")
    );
}
