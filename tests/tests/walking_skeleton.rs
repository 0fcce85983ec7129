//! Issue 3: a store and two front-ends as real processes; mail flows end to end.

use std::time::Duration;

use mailroot_tests::{DOMAIN, Pop3Client, SmtpClient, TestCluster, eventually};

const ALICE: &str = "alice@example.test";
const ALICE_PW: &str = "pw-alice";

/// A message with CRLF line endings, lines that need dot-stuffing and 8-bit content.
fn sample_message(tag: &str) -> Vec<u8> {
    format!(
        "From: Bob <bob@remote.test>\r\nTo: Alice <{ALICE}>\r\nSubject: test {tag}\r\nMessage-ID: <{tag}@remote.test>\r\n\r\nHello Alice,\r\n.a line starting with a dot\r\n..two dots\r\n.\r\nnot the end\r\n\u{e9}t\u{e9} 8-bit\r\n"
    )
    .into_bytes()
}

/// The stored message is the sent one with only RFC 5321 §4.4 trace fields in front.
fn assert_delivered_intact(retrieved: &[u8], sent: &[u8]) {
    assert!(
        retrieved.ends_with(sent),
        "retrieved message does not end with the sent bytes:\n{}",
        String::from_utf8_lossy(retrieved)
    );
    let prefix = String::from_utf8_lossy(&retrieved[..retrieved.len() - sent.len()]).into_owned();
    assert!(
        prefix.starts_with("Return-Path: <bob@remote.test>\r\nReceived: from client.test"),
        "{prefix}"
    );
    for line in prefix.split("\r\n").filter(|l| !l.is_empty()) {
        assert!(
            line.starts_with("Return-Path:")
                || line.starts_with("Received:")
                || line.starts_with('\t'),
            "unexpected header in front of the message: {line:?}"
        );
    }
}

fn deliver(c: &TestCluster, fe: usize, tag: &str) -> Vec<u8> {
    let msg = sample_message(tag);
    let mut smtp = SmtpClient::connect(c.fe(fe).smtp).unwrap();
    let reply = smtp.send_mail("bob@remote.test", &[ALICE], &msg).unwrap();
    assert!(reply.starts_with("250 "), "DATA reply: {reply}");
    assert!(smtp.cmd("QUIT").unwrap().starts_with("221"));
    msg
}

fn login(c: &TestCluster, fe: usize) -> Pop3Client {
    let mut pop = Pop3Client::connect(c.fe(fe).pop3).unwrap();
    assert!(pop.banner.starts_with("+OK"), "{}", pop.banner);
    let r = pop.login(ALICE, ALICE_PW).unwrap();
    assert!(r.starts_with("+OK"), "login: {r}");
    pop
}

#[test]
fn smtp_on_one_node_pop3_on_another_byte_identical_same_uidl() {
    let c = TestCluster::with_mailboxes(2, &["alice"]);
    let sent = deliver(&c, 0, "cross-node");

    let mut a = login(&c, 0);
    let uidl_a = a.uidl().unwrap();
    assert!(a.cmd("QUIT").unwrap().starts_with("+OK"));
    let mut b = login(&c, 1);
    let uidl_b = b.uidl().unwrap();
    assert_eq!(uidl_a, uidl_b, "UIDLs differ between front-ends");
    assert_eq!(uidl_b.len(), 1);
    let got = b.retr(1).unwrap();
    assert_delivered_intact(&got, &sent);
    let stat = b.cmd("STAT").unwrap();
    assert_eq!(stat.trim_end(), format!("+OK 1 {}", got.len()));
    // LIST reports the same size as the bytes RETR returned (RFC 1939 §5: exact octet count).
    assert_eq!(
        b.cmd("LIST 1").unwrap().trim_end(),
        format!("+OK 1 {}", got.len())
    );
    assert!(b.cmd("QUIT").unwrap().starts_with("+OK"));
    assert_eq!(c.stat(ALICE), (1, got.len() as u64));
}

#[test]
fn dele_rset_and_dropped_connection_keep_mail_dele_quit_removes_it() {
    let c = TestCluster::with_mailboxes(2, &["alice"]);
    deliver(&c, 0, "keep-me");

    // DELE then RSET then QUIT: nothing deleted.
    let mut p = login(&c, 1);
    assert!(p.cmd("DELE 1").unwrap().starts_with("+OK"));
    assert!(p.cmd("RSET").unwrap().starts_with("+OK"));
    assert!(p.cmd("QUIT").unwrap().starts_with("+OK"));
    assert_eq!(c.stat(ALICE).0, 1);

    // DELE then the connection drops (no QUIT): nothing deleted.
    let mut p = login(&c, 0);
    assert!(p.cmd("DELE 1").unwrap().starts_with("+OK"));
    drop(p);
    // The other node must still see the message; poll, because the drop is asynchronous.
    let mut p = eventually(
        "mailbox readable after a dropped session",
        Duration::from_secs(10),
        || {
            let mut p = Pop3Client::connect(c.fe(1).pop3).ok()?;
            p.login(ALICE, ALICE_PW)
                .ok()?
                .starts_with("+OK")
                .then_some(p)
        },
    );
    assert_eq!(p.uidl().unwrap().len(), 1);

    // DELE then QUIT: removed, for every node.
    assert!(p.cmd("DELE 1").unwrap().starts_with("+OK"));
    assert!(p.cmd("QUIT").unwrap().starts_with("+OK"));
    assert_eq!(c.stat(ALICE), (0, 0));
    let mut p = login(&c, 0);
    assert_eq!(p.cmd("STAT").unwrap().trim_end(), "+OK 0 0");
}

#[test]
fn unknown_and_foreign_recipients_are_refused() {
    let c = TestCluster::with_mailboxes(1, &["alice"]);
    let mut s = SmtpClient::connect(c.fe(0).smtp).unwrap();
    assert!(s.cmd("EHLO client.test").unwrap().starts_with("250"));
    assert!(
        s.cmd("MAIL FROM:<bob@remote.test>")
            .unwrap()
            .starts_with("250")
    );
    let unknown = s.cmd(&format!("RCPT TO:<nobody@{DOMAIN}>")).unwrap();
    assert!(unknown.starts_with("550 5.1.1"), "{unknown}");
    let foreign = s.cmd("RCPT TO:<someone@elsewhere.test>").unwrap();
    assert!(foreign.starts_with("550 5.7.1"), "{foreign}");
    // No accepted recipient: DATA is refused, nothing stored.
    let data = s.cmd("DATA").unwrap();
    assert!(data.starts_with("5"), "{data}");
    // Upper-case form of a hosted address is the same mailbox.
    let ok = s.cmd("RCPT TO:<ALICE@Example.Test>").unwrap();
    assert!(ok.starts_with("250"), "{ok}");
    assert!(s.cmd("QUIT").unwrap().starts_with("221"));
    assert_eq!(c.stat(ALICE).0, 0);
}

#[test]
fn store_restart_between_delivery_and_retrieval_loses_nothing() {
    let mut c = TestCluster::with_mailboxes(2, &["alice"]);
    let first = deliver(&c, 0, "before-crash-1");
    let second = deliver(&c, 1, "before-crash-2");

    c.kill_store();
    // While the store is down the front-ends answer "try later", not an error or a hang. (RCPT
    // answers are cached while the settings stream is live: a front-end answers 451 at RCPT
    // once it has seen the stream break, at once in practice; polled here.)
    let mut s = eventually(
        "451 at RCPT while the store is down",
        Duration::from_secs(5),
        || {
            let mut s = SmtpClient::connect(c.fe(0).smtp).unwrap();
            assert!(s.cmd("EHLO client.test").unwrap().starts_with("250"));
            assert!(
                s.cmd("MAIL FROM:<bob@remote.test>")
                    .unwrap()
                    .starts_with("250")
            );
            let r = s.cmd(&format!("RCPT TO:<{ALICE}>")).unwrap();
            r.starts_with("451 4.3.0").then_some(s)
        },
    );
    let mut p = Pop3Client::connect(c.fe(1).pop3).unwrap();
    let r = p.login(ALICE, ALICE_PW).unwrap();
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");

    c.start_store();
    // The front-ends reconnect by themselves.
    let mut p = eventually(
        "front-end recovers after the store restart",
        Duration::from_secs(20),
        || {
            let mut p = Pop3Client::connect(c.fe(1).pop3).ok()?;
            p.login(ALICE, ALICE_PW)
                .ok()?
                .starts_with("+OK")
                .then_some(p)
        },
    );
    assert_eq!(p.uidl().unwrap().len(), 2);
    assert_delivered_intact(&p.retr(1).unwrap(), &first);
    assert_delivered_intact(&p.retr(2).unwrap(), &second);
    assert!(p.cmd("QUIT").unwrap().starts_with("+OK"));
    // The SMTP session that saw 451 can go on now.
    let r = s.cmd(&format!("RCPT TO:<{ALICE}>")).unwrap();
    assert!(r.starts_with("250"), "{r}");
}

#[test]
fn frontend_with_wrong_auth_guid_refuses_to_start() {
    let c = TestCluster::start(0);
    let wrong = uuid::Uuid::new_v4().to_string();
    let out = c
        .frontend_command(&wrong)
        .output()
        .expect("run mailroot-frontend");
    assert!(!out.status.success(), "front-end with a wrong GUID started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth GUID mismatch"), "stderr: {stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("MAILROOT_READY"));
}

#[test]
fn mailrootctl_reports_clear_errors() {
    let c = TestCluster::with_mailboxes(0, &["alice"]);
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (
            &["mailbox", "add", "bob@unknown.test", "--password-stdin"],
            Some("x\n"),
            "unknown domain",
        ),
        (
            &["mailbox", "add", ALICE, "--password-stdin"],
            Some("x\n"),
            "already exists",
        ),
        (
            &["mailbox", "add", "a:b@example.test", "--password-stdin"],
            Some("x\n"),
            "invalid name",
        ),
        (&["domain", "add", "bad_domain.test"], None, "invalid name"),
        (&["domain", "add", DOMAIN], None, "already exists"),
        (&["domain", "delete", DOMAIN], None, "--force"),
        (&["stat", "nobody@example.test"], None, "unknown mailbox"),
    ];
    for (args, stdin, expect) in cases {
        let out = c.ctl(args, *stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with("mailrootctl: ") && err.contains(expect),
            "{args:?}: {err}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
    }
    // A wrong admin token is refused.
    let out = c
        .ctl_command()
        .args(["domain", "list"])
        .env("MAILROOT_ADMIN_TOKEN", "wrong-token-0123456789")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin token"));
    // Lists and passwd work.
    assert_eq!(c.ctl_ok(&["domain", "list"], None).trim(), DOMAIN);
    assert_eq!(c.ctl_ok(&["mailbox", "list"], None).trim(), ALICE);
    c.ctl_ok(
        &["mailbox", "passwd", ALICE, "--password-stdin"],
        Some("new-secret\n"),
    );
    c.ctl_ok(&["domain", "delete", DOMAIN, "--force"], None);
    assert_eq!(c.ctl_ok(&["domain", "list"], None).trim(), "");
}
