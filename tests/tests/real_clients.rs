//! Issue 3 with real, unmodified mail clients: swaks sends, curl (and mpop) retrieve.
//! The clients come from Debian packages that `tests/run.sh` installs. Without them these
//! tests SKIP loudly, unless MAILROOT_REQUIRE_CLIENTS=1 (set by tests/run.sh), where a missing
//! client is a failure.

use std::process::Command;

use mailroot_tests::{TestCluster, have_client};

const ALICE: &str = "alice@example.test";

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

fn curl_pop3(addr: std::net::SocketAddr, path: &str, extra: &[&str]) -> Vec<u8> {
    run(Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30"])
        .arg(format!("pop3://{addr}/{path}"))
        .args(["--user", &format!("{ALICE}:pw-alice")])
        .args(extra))
}

#[test]
fn swaks_sends_curl_retrieves_from_another_node() {
    if !have_client("swaks") || !have_client("curl") {
        return;
    }
    let c = TestCluster::with_mailboxes(2, &["alice"]);
    let body = "From: bob@remote.test\r\nTo: alice@example.test\r\nSubject: via swaks\r\n\r\nline one\r\n.dotted line\r\nlast line\r\n";
    let file = c.dir.path().join("message.eml");
    std::fs::write(&file, body).unwrap();
    let transcript = run(Command::new("swaks")
        .args(["--server", &c.fe(0).smtp.to_string()])
        .args([
            "--from",
            "bob@remote.test",
            "--to",
            ALICE,
            "--helo",
            "client.test",
        ])
        .arg("--data")
        .arg(&file));
    let transcript = String::from_utf8_lossy(&transcript);
    assert!(
        transcript.contains("<-  250 2.0.0"),
        "swaks transcript:\n{transcript}"
    );

    // UIDL through curl on both nodes: same listing.
    let uidl_a = curl_pop3(c.fe(0).pop3, "", &["--request", "UIDL"]);
    let uidl_b = curl_pop3(c.fe(1).pop3, "", &["--request", "UIDL"]);
    assert_eq!(uidl_a, uidl_b);
    assert_eq!(String::from_utf8_lossy(&uidl_a).lines().count(), 1);

    // RETR 1 through curl from the other node: the message, byte for byte after the trace
    // fields (swaks ends DATA with one more CRLF of its own, which is part of what it sent).
    let got = curl_pop3(c.fe(1).pop3, "1", &[]);
    let sent_by_swaks = format!("{body}\r\n");
    assert!(
        got.ends_with(sent_by_swaks.as_bytes()),
        "retrieved:\n{}",
        String::from_utf8_lossy(&got)
    );

    // DELE through curl (then curl QUITs): gone.
    curl_pop3(c.fe(1).pop3, "1", &["--request", "DELE", "--list-only"]);
    assert_eq!(c.stat(ALICE).0, 0);
}

#[test]
fn mpop_retrieves_what_swaks_sent() {
    if !have_client("swaks") || !have_client("mpop") {
        return;
    }
    let c = TestCluster::with_mailboxes(2, &["alice"]);
    for i in 0..3 {
        run(Command::new("swaks")
            .args(["--server", &c.fe(i % 2).smtp.to_string()])
            .args(["--from", "bob@remote.test", "--to", ALICE])
            .args(["--header", &format!("Subject: mpop test {i}")]));
    }
    let maildir = c.dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let pop3 = c.fe(1).pop3;
    let config = format!(
        "account default\nhost {}\nport {}\ntls off\nauth user\nuser {ALICE}\npassword pw-alice\ndelivery maildir {}\nkeep off\nuidls_file {}\n",
        pop3.ip(),
        pop3.port(),
        maildir.display(),
        c.dir.path().join("uidls").display()
    );
    let rc = c.dir.path().join("mpoprc");
    std::fs::write(&rc, config).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    run(Command::new("mpop").arg("--file").arg(&rc).arg("--quiet"));
    let fetched: Vec<String> = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(fetched.len(), 3, "mpop fetched {fetched:?}");
    for i in 0..3 {
        assert!(
            fetched
                .iter()
                .any(|m| m.contains(&format!("Subject: mpop test {i}")))
        );
    }
    // keep off: mpop deleted them on the server with DELE + QUIT.
    assert_eq!(c.stat(ALICE).0, 0);
}
