//! Issue 10, point 7: SIGTERM (`docker stop`) and Ctrl-C stop nodes gracefully, with the real
//! binaries. A front-end refuses new connections at once, lets sessions in progress finish
//! until `--drain-timeout`, then tells the ones still open 421 4.3.2 / -ERR [SYS/TEMP]; a POP3
//! session gives its maildrop lease back at once and commits nothing without QUIT; the process
//! exits 0. The store ends its settings streams and exits within seconds of its last client.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mailroot_tests::{DOMAIN, Pop3Client, SmtpClient, TestCluster, eventually};

/// True when a TCP connection to `addr` is refused (nothing listens there any more).
fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

fn deliver(smtp: SocketAddr, to: &str, subject: &str) {
    let msg = format!("From: x@remote.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody\r\n");
    let reply = SmtpClient::connect(smtp)
        .unwrap()
        .send_mail("x@remote.test", &[to], msg.as_bytes())
        .unwrap();
    assert!(reply.starts_with("250 "), "{reply}");
}

#[test]
fn sessions_in_progress_finish_after_sigterm_while_new_connections_are_refused() {
    let c = TestCluster::with_mailboxes(1, &["alice", "bob"]);
    let alice = format!("alice@{DOMAIN}");
    let bob = format!("bob@{DOMAIN}");
    deliver(c.fe(0).smtp, &bob, "for bob");
    // The node that will be stopped; a long drain, so only the sessions can end it early.
    let mut fe = c.start_frontend_with(&c.auth_guid, &["--drain-timeout", "60"]);

    // An SMTP transaction half-way, and a POP3 session logged in (holding bob's lease).
    let mut smtp = SmtpClient::connect(fe.smtp).unwrap();
    assert!(smtp.cmd("EHLO client.test").unwrap().starts_with("250"));
    assert!(
        smtp.cmd("MAIL FROM:<x@remote.test>")
            .unwrap()
            .starts_with("250")
    );
    let rcpt = smtp.cmd(&format!("RCPT TO:<{alice}>")).unwrap();
    assert!(rcpt.starts_with("250"), "{rcpt}");
    let mut pop = Pop3Client::connect(fe.pop3).unwrap();
    let login = pop.login(&bob, "pw-bob").unwrap();
    assert!(login.starts_with("+OK"), "{login}");

    TestCluster::signal(&fe.proc, "TERM");
    let stopped = Instant::now();
    for (name, addr) in [
        ("smtp", fe.smtp),
        ("pop3", fe.pop3),
        ("submission", fe.submission),
        ("smtps", fe.smtps),
        ("pop3s", fe.pop3s),
    ] {
        eventually(
            &format!("{name} refuses new connections after SIGTERM"),
            Duration::from_secs(5),
            || refused(addr).then_some(()),
        );
    }
    assert!(
        fe.proc.child.try_wait().unwrap().is_none(),
        "exited with sessions in progress"
    );

    // Both sessions go on to the end.
    assert!(smtp.cmd("DATA").unwrap().starts_with("354"));
    smtp.send_raw(b"Subject: sent while draining\r\n\r\nstill accepted\r\n.\r\n")
        .unwrap();
    let queued = smtp.read_reply().unwrap();
    assert!(queued.starts_with("250 2.0.0"), "{queued}");
    assert!(smtp.cmd("QUIT").unwrap().starts_with("221"));
    let message = pop.retr(1).unwrap();
    assert!(String::from_utf8_lossy(&message).contains("Subject: for bob"));
    assert!(pop.cmd("DELE 1").unwrap().starts_with("+OK"));
    assert_eq!(pop.cmd("QUIT").unwrap(), "+OK bye (1 messages deleted)\r\n");

    // With its last session gone the node exits 0, long before the 60 s drain deadline.
    let status = fe.proc.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    eprintln!("front-end exited {:?} after SIGTERM", stopped.elapsed());
    assert_eq!(
        c.stat(&alice).0,
        1,
        "the DATA sent while draining is stored"
    );
    assert_eq!(
        c.stat(&bob).0,
        0,
        "the QUIT while draining committed its DELE"
    );
    let mut again = Pop3Client::connect(c.fe(0).pop3).unwrap();
    let login = again.login(&bob, "pw-bob").unwrap();
    assert!(login.starts_with("+OK"), "{login}");
}

#[test]
fn sessions_open_at_the_drain_deadline_are_told_and_pop3_commits_nothing() {
    let c = TestCluster::with_mailboxes(1, &["alice"]);
    let alice = format!("alice@{DOMAIN}");
    deliver(c.fe(0).smtp, &alice, "keep me");
    let mut fe = c.start_frontend_with(&c.auth_guid, &["--drain-timeout", "1"]);

    // POP3: logged in, a message marked deleted, then idle. SMTP: idle inside a transaction.
    let mut pop = Pop3Client::connect(fe.pop3).unwrap();
    assert!(pop.login(&alice, "pw-alice").unwrap().starts_with("+OK"));
    assert!(pop.cmd("DELE 1").unwrap().starts_with("+OK"));
    let mut smtp = SmtpClient::connect(fe.smtp).unwrap();
    assert!(smtp.cmd("EHLO client.test").unwrap().starts_with("250"));
    assert!(
        smtp.cmd("MAIL FROM:<x@remote.test>")
            .unwrap()
            .starts_with("250")
    );

    TestCluster::signal(&fe.proc, "TERM");
    let stopped = Instant::now();
    // The goodbye, then the close (drain reads up to the end of the connection).
    let rest = String::from_utf8(pop.drain()).unwrap();
    assert_eq!(
        rest,
        "-ERR [SYS/TEMP] server shutting down, try again later\r\n"
    );
    let told = stopped.elapsed();
    assert!(told >= Duration::from_millis(900), "told after {told:?}");
    // The lease came back with the goodbye: one login through another node, right away,
    // succeeds (the lease TTL is 2 s), and the DELE without QUIT removed nothing.
    let mut other = Pop3Client::connect(c.fe(0).pop3).unwrap();
    let login = other.login(&alice, "pw-alice").unwrap();
    assert!(
        login.starts_with("+OK maildrop locked and ready, 1 messages"),
        "{login}"
    );
    assert!(other.cmd("QUIT").unwrap().starts_with("+OK"));

    let bye = smtp.read_reply().unwrap();
    assert_eq!(
        bye,
        "421 4.3.2 mx.example.test service shutting down, closing connection\r\n"
    );
    let after = smtp.read_reply();
    assert!(
        after
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::UnexpectedEof),
        "{after:?}"
    );

    let status = fe.proc.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    eprintln!("front-end exited {:?} after SIGTERM", stopped.elapsed());
    assert_eq!(c.stat(&alice).0, 1);
}

#[test]
fn frontend_without_sessions_exits_0_at_once_on_ctrl_c() {
    let mut c = TestCluster::start(1);
    TestCluster::signal(&c.fe(0).proc, "INT");
    let status = c.frontends[0].proc.wait_exit(Duration::from_secs(3));
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn store_exits_within_seconds_of_sigterm_with_a_frontend_watching_settings() {
    let mut c = TestCluster::start(1);
    eventually(
        "the front-end's settings stream is open",
        Duration::from_secs(10),
        || {
            c.store
                .log_text()
                .contains("front-end watches settings")
                .then_some(())
        },
    );
    TestCluster::signal(&c.store, "TERM");
    let stopped = Instant::now();
    let status = c.store.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    eprintln!("store exited {:?} after SIGTERM", stopped.elapsed());

    // The front-end follows the store again once it is back: its settings stream reconnects.
    c.start_store();
    c.ctl_ok(&["config", "set", "greeting", "Back after a stop"], None);
    eventually(
        "the front-end has the new greeting",
        Duration::from_secs(10),
        || {
            let banner = SmtpClient::connect(c.fe(0).smtp).ok()?.banner;
            banner.contains("Back after a stop").then_some(())
        },
    );
}
