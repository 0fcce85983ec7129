//! Issue 4 through the real binaries: quotas, DSNs, aliases, locks, the cluster-wide POP3
//! lock and durability under kill -9.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailroot_tests::{DOMAIN, LEASE_TTL, Pop3Client, SmtpClient, TestCluster, eventually};

fn message(tag: &str, size: usize) -> Vec<u8> {
    let mut m = format!("From: bob@remote.test\r\nSubject: {tag}\r\n\r\n").into_bytes();
    while m.len() + 2 < size {
        m.push(b'x');
        if m.len() % 70 == 0 {
            m.extend_from_slice(b"\r\n");
        }
    }
    m.extend_from_slice(b"\r\n");
    m
}

fn send(addr: std::net::SocketAddr, from: &str, to: &[&str], msg: &[u8]) -> String {
    let mut s = SmtpClient::connect(addr).unwrap();
    let r = s.send_mail(from, to, msg).unwrap();
    let _ = s.cmd("QUIT");
    r
}

fn pop(c: &TestCluster, fe: usize, user: &str, pw: &str) -> (Pop3Client, String) {
    let mut p = Pop3Client::connect(c.fe(fe).pop3).unwrap();
    let r = p.login(user, pw).unwrap();
    (p, r)
}

fn messages_of(c: &TestCluster, fe: usize, user: &str, pw: &str) -> Vec<Vec<u8>> {
    let (mut p, r) = pop(c, fe, user, pw);
    assert!(r.starts_with("+OK"), "{user}: {r}");
    let n = p.uidl().unwrap().len();
    let all = (1..=n as u32).map(|i| p.retr(i).unwrap()).collect();
    p.cmd("QUIT").unwrap();
    all
}

/// 50 concurrent SMTP deliveries, alternating between two front-ends.
fn flood(c: &TestCluster, to: &'static [&'static str], size: usize) -> Vec<String> {
    let replies = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for i in 0..50 {
            let addr = c.fe(i % 2).smtp;
            let replies = replies.clone();
            scope.spawn(move || {
                let to = to[i % to.len()];
                let r = send(
                    addr,
                    "bob@remote.test",
                    &[to],
                    &message(&format!("flood {i}"), size),
                );
                replies.lock().unwrap().push(r);
            });
        }
    });
    Arc::try_unwrap(replies).unwrap().into_inner().unwrap()
}

/// Stored size of one flood message for `to` (trace fields included): delivered once, measured
/// with `mailrootctl stat`, then removed again.
fn stored_size(c: &TestCluster, to: &str, pw: &str, size: usize) -> u64 {
    assert!(
        send(
            c.fe(0).smtp,
            "bob@remote.test",
            &[to],
            &message("flood 00", size)
        )
        .starts_with("250 ")
    );
    let bytes = c.stat(to).1;
    let (mut p, r) = pop(c, 0, to, pw);
    assert!(r.starts_with("+OK"), "{r}");
    p.cmd("DELE 1").unwrap();
    p.cmd("QUIT").unwrap();
    assert_eq!(c.stat(to), (0, 0));
    bytes
}

#[test]
fn concurrent_deliveries_from_two_nodes_fill_a_mailbox_quota_exactly() {
    let c = TestCluster::with_mailboxes(2, &["alice"]);
    let one = stored_size(&c, "alice@example.test", "pw-alice", 2000);
    // Room for exactly 20 messages; the slack (half a message) holds the 90 % warning but
    // no 21st message.
    let limit = 20 * one + one / 2;
    c.ctl_ok(
        &["quota", "set", "alice@example.test", &limit.to_string()],
        None,
    );
    let replies = flood(&c, &["alice@example.test"], 2000);
    let ok = replies.iter().filter(|r| r.starts_with("250 ")).count();
    let full = replies
        .iter()
        .filter(|r| r.starts_with("552 5.2.2"))
        .count();
    assert_eq!((ok, full), (20, 30), "{replies:?}");
    let (count, bytes) = c.stat("alice@example.test");
    assert_eq!(count, 21, "20 messages + 1 quota warning");
    assert!(bytes <= limit);
    let stored = messages_of(&c, 1, "alice@example.test", "pw-alice");
    assert_eq!(
        stored.iter().map(|m| m.len() as u64).sum::<u64>(),
        bytes,
        "usage != sum of sizes"
    );
    assert_eq!(
        stored
            .iter()
            .filter(|m| String::from_utf8_lossy(m).contains("almost full"))
            .count(),
        1
    );
    let show = c.ctl_ok(&["quota", "show", "alice@example.test"], None);
    assert!(
        show.contains(&format!("limit={limit} used={bytes}")),
        "{show}"
    );
}

#[test]
fn concurrent_deliveries_fill_a_domain_pool_exactly() {
    // Two mailboxes whose names have the same length, so their copies have the same size.
    let c = TestCluster::with_mailboxes(2, &["alice", "carol"]);
    let one = stored_size(&c, "alice@example.test", "pw-alice", 2000);
    let limit = 20 * one + one / 2;
    c.ctl_ok(
        &["quota", "set", "--domain", DOMAIN, &limit.to_string()],
        None,
    );
    let replies = flood(&c, &["alice@example.test", "carol@example.test"], 2000);
    let ok = replies.iter().filter(|r| r.starts_with("250 ")).count();
    assert_eq!(ok, 20, "{replies:?}");
    assert!(
        replies
            .iter()
            .all(|r| r.starts_with("250 ") || r.starts_with("552 5.2.2"))
    );
    let total = c.stat("alice@example.test").1 + c.stat("carol@example.test").1;
    assert_eq!(total, 20 * one);
    let show = c.ctl_ok(&["quota", "show", "--domain", DOMAIN], None);
    assert!(show.contains(&format!("used={total}")), "{show}");
}

#[test]
fn rcpt_with_declared_size_is_refused_early() {
    let c = TestCluster::with_mailboxes(1, &["alice"]);
    c.ctl_ok(&["quota", "set", "alice@example.test", "10KB"], None);
    let mut s = SmtpClient::connect(c.fe(0).smtp).unwrap();
    s.cmd("EHLO client.test").unwrap();
    s.cmd("MAIL FROM:<bob@remote.test> SIZE=20000").unwrap();
    let r = s.cmd("RCPT TO:<alice@example.test>").unwrap();
    assert!(r.starts_with("552 5.2.3"), "{r}");
    s.cmd("RSET").unwrap();
    s.cmd("MAIL FROM:<bob@remote.test> SIZE=5000").unwrap();
    assert!(
        s.cmd("RCPT TO:<alice@example.test>")
            .unwrap()
            .starts_with("250")
    );
}

#[test]
fn over_quota_recipient_gets_a_dsn_to_a_hosted_sender_others_get_the_mail() {
    let c = TestCluster::with_mailboxes(2, &["alice", "bob", "carol", "sender"]);
    c.ctl_ok(&["quota", "set", "bob@example.test", "1KB"], None);
    let msg = message("multi", 3000);
    // One failing recipient between two that are stored: one 250 for the stored copies (RFC
    // 5321 §6.1), never a 5xx that would make the client send them again, and one DSN.
    let r = send(
        c.fe(0).smtp,
        "sender@example.test",
        &[
            "alice@example.test",
            "bob@example.test",
            "carol@example.test",
        ],
        &msg,
    );
    assert!(r.starts_with("250 "), "{r}");
    assert_eq!(c.stat("alice@example.test").0, 1);
    assert_eq!(c.stat("bob@example.test").0, 0);
    assert_eq!(c.stat("carol@example.test").0, 1);
    let mut dsns = eventually(
        "DSN in the sender's mailbox",
        Duration::from_secs(10),
        || Some(messages_of(&c, 1, "sender@example.test", "pw-sender")).filter(|m| !m.is_empty()),
    );
    assert_eq!(dsns.len(), 1, "exactly one DSN");
    let dsn = dsns.pop().unwrap();
    let text = String::from_utf8_lossy(&dsn);
    assert!(!text.contains("Final-Recipient: rfc822; alice@"), "{text}");
    assert!(!text.contains("Final-Recipient: rfc822; carol@"), "{text}");
    assert!(text.contains("Return-Path: <>"), "{text}");
    assert!(
        text.contains("From: \"Mail Delivery System\" <MAILER-DAEMON@mx.example.test>"),
        "{text}"
    );
    assert!(text.contains("multipart/report"), "{text}");
    assert!(
        text.contains("Final-Recipient: rfc822; bob@example.test"),
        "{text}"
    );
    assert!(text.contains("Status: 5.2.3"), "{text}");
    assert!(
        text.contains("Subject: multi"),
        "original headers attached: {text}"
    );
}

#[test]
fn aliases_fan_out_across_domains_log_in_and_protect_their_targets() {
    let c = TestCluster::with_mailboxes(2, &["alice", "bob"]);
    c.ctl_ok(&["domain", "add", "other.test"], None);
    c.add_mailbox("carol@other.test", "pw-carol");
    c.ctl_ok(
        &[
            "alias",
            "add",
            "team@example.test",
            "alice@example.test",
            "carol@other.test",
        ],
        None,
    );
    assert!(
        c.ctl_ok(&["alias", "list"], None)
            .contains("team@example.test -> alice@example.test, carol@other.test")
    );
    // Mail to the alias lands in each target; alias + target in one message gives two copies.
    assert!(
        send(
            c.fe(0).smtp,
            "x@remote.test",
            &["team@example.test"],
            &message("to-team", 300)
        )
        .starts_with("250 ")
    );
    assert!(
        send(
            c.fe(1).smtp,
            "x@remote.test",
            &["team@example.test", "alice@example.test"],
            &message("both", 300)
        )
        .starts_with("250 ")
    );
    assert_eq!(c.stat("alice@example.test").0, 3);
    assert_eq!(c.stat("carol@other.test").0, 2);
    // Alias name + target's password opens the target's maildrop.
    let (mut p, r) = pop(&c, 1, "team@example.test", "pw-carol");
    assert!(r.starts_with("+OK"), "{r}");
    assert_eq!(p.uidl().unwrap().len(), 2);
    p.cmd("QUIT").unwrap();
    // Deleting a target is refused, naming the alias.
    let out = c.ctl(&["mailbox", "delete", "carol@other.test"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("team@example.test"));
    let out = c.ctl(&["domain", "delete", "other.test", "--force"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("team@example.test"));
    // Locking the alias locks the target.
    c.ctl_ok(&["mailbox", "lock", "team@example.test"], None);
    let (_, r) = pop(&c, 0, "carol@other.test", "pw-carol");
    assert!(r.starts_with("-ERR [AUTH]"), "{r}");
    c.ctl_ok(&["mailbox", "unlock", "team@example.test"], None);
    c.ctl_ok(&["alias", "delete", "team@example.test"], None);
    c.ctl_ok(&["mailbox", "delete", "carol@other.test"], None);
}

#[test]
fn locked_mailbox_and_domain_refuse_pop3_but_receive_mail() {
    let c = TestCluster::with_mailboxes(2, &["alice", "bob"]);
    c.ctl_ok(&["mailbox", "lock", "alice@example.test"], None);
    let (_, r) = pop(&c, 0, "alice@example.test", "pw-alice");
    assert!(r.starts_with("-ERR [AUTH]"), "{r}");
    assert!(
        send(
            c.fe(1).smtp,
            "x@remote.test",
            &["alice@example.test"],
            &message("while-locked", 200)
        )
        .starts_with("250 ")
    );
    assert!(
        c.ctl_ok(&["stat", "alice@example.test"], None)
            .contains("locked")
    );
    c.ctl_ok(&["mailbox", "unlock", "alice@example.test"], None);
    let (_, r) = pop(&c, 1, "alice@example.test", "pw-alice");
    assert!(r.starts_with("+OK"), "{r}");

    c.ctl_ok(&["domain", "lock", DOMAIN], None);
    let (_, r) = pop(&c, 0, "bob@example.test", "pw-bob");
    assert!(r.starts_with("-ERR [AUTH]"), "{r}");
    c.ctl_ok(&["domain", "unlock", DOMAIN], None);
    let (_, r) = pop(&c, 0, "bob@example.test", "pw-bob");
    assert!(r.starts_with("+OK"), "{r}");
}

#[test]
fn mailbox_name_rules() {
    let c = TestCluster::with_mailboxes(0, &[]);
    for ch in [
        '@', '(', ')', '/', '\\', '[', ']', ':', ';', ',', '"', '<', '>', '*', '=', '?',
    ] {
        let addr = format!("a{ch}b@{DOMAIN}");
        let out = c.ctl(&["mailbox", "add", &addr, "--password-stdin"], Some("pw\n"));
        assert_eq!(out.status.code(), Some(1), "{addr} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid name"),
            "{addr}"
        );
    }
    for local in [String::new(), "a".repeat(65)] {
        let out = c.ctl(
            &[
                "mailbox",
                "add",
                &format!("{local}@{DOMAIN}"),
                "--password-stdin",
            ],
            Some("pw\n"),
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "length {} accepted",
            local.len()
        );
    }
    c.add_mailbox(&format!("{}@{DOMAIN}", "a".repeat(64)), "pw");
    // A mailbox may not take an alias's name.
    c.add_mailbox(&format!("x@{DOMAIN}"), "pw");
    c.ctl_ok(
        &[
            "alias",
            "add",
            &format!("y@{DOMAIN}"),
            &format!("x@{DOMAIN}"),
        ],
        None,
    );
    let out = c.ctl(
        &["mailbox", "add", &format!("Y@{DOMAIN}"), "--password-stdin"],
        Some("pw\n"),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("alias"),
        "{:?}",
        out
    );
}

#[test]
fn second_login_on_any_node_is_in_use_and_the_lock_is_visible_and_breakable() {
    let c = TestCluster::with_mailboxes(2, &["alice"]);
    let (mut a, r) = pop(&c, 0, "alice@example.test", "pw-alice");
    assert!(r.starts_with("+OK"), "{r}");
    let (_, r) = pop(&c, 1, "alice@example.test", "pw-alice");
    assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
    let (_, r) = pop(&c, 0, "alice@example.test", "pw-alice");
    assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
    let stat = c.ctl_ok(&["stat", "alice@example.test"], None);
    assert!(stat.contains("node=mx.example.test session="), "{stat}");
    // The session outlives several lease TTLs thanks to renewals.
    let until = Instant::now() + LEASE_TTL * 2;
    while Instant::now() < until {
        assert!(a.cmd("NOOP").unwrap().starts_with("+OK"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, r) = pop(&c, 1, "alice@example.test", "pw-alice");
    assert!(
        r.starts_with("-ERR [IN-USE]"),
        "renewal did not hold the lease: {r}"
    );
    // QUIT releases it at once.
    assert!(a.cmd("QUIT").unwrap().starts_with("+OK"));
    let (mut b, r) = pop(&c, 1, "alice@example.test", "pw-alice");
    assert!(r.starts_with("+OK"), "{r}");
    // An admin can break it.
    c.ctl_ok(&["mailbox", "unlock-session", "alice@example.test"], None);
    let (_, r) = pop(&c, 0, "alice@example.test", "pw-alice");
    assert!(r.starts_with("+OK"), "{r}");
    let _ = b.cmd("QUIT");
}

#[test]
fn lease_expires_after_kill_9_of_the_holding_frontend() {
    let mut c = TestCluster::with_mailboxes(2, &["alice"]);
    let (_a, r) = pop(&c, 0, "alice@example.test", "pw-alice");
    assert!(r.starts_with("+OK"), "{r}");
    c.frontends[0].proc.kill();
    let start = Instant::now();
    let (_b, r) = eventually("lease of the dead node expires", LEASE_TTL * 5, || {
        let (p, r) = pop(&c, 1, "alice@example.test", "pw-alice");
        (!r.starts_with("-ERR [IN-USE]")).then_some((p, r))
    });
    assert!(r.starts_with("+OK"), "{r}");
    assert!(start.elapsed() < LEASE_TTL * 5);
}

#[test]
fn a_frozen_stale_holder_cannot_delete() {
    let c = TestCluster::with_mailboxes(2, &["alice"]);
    assert!(
        send(
            c.fe(1).smtp,
            "x@remote.test",
            &["alice@example.test"],
            &message("keep", 200)
        )
        .starts_with("250 ")
    );
    let (mut stale, r) = pop(&c, 0, "alice@example.test", "pw-alice");
    assert!(r.starts_with("+OK"), "{r}");
    assert!(stale.cmd("DELE 1").unwrap().starts_with("+OK"));
    // Freeze node 0 (its renewals stop), let the lease expire, take the maildrop on node 1.
    TestCluster::signal(&c.fe(0).proc, "STOP");
    let (mut fresh, _) = eventually(
        "lease expires while node 0 is frozen",
        LEASE_TTL * 5,
        || {
            let (p, r) = pop(&c, 1, "alice@example.test", "pw-alice");
            r.starts_with("+OK").then_some((p, r))
        },
    );
    TestCluster::signal(&c.fe(0).proc, "CONT");
    // The stale session's QUIT must not delete anything: the store fences it.
    let r = stale.cmd("QUIT").unwrap();
    assert!(
        r.starts_with("-ERR"),
        "stale holder's commit was accepted: {r}"
    );
    assert_eq!(c.stat("alice@example.test").0, 1);
    assert_eq!(fresh.uidl().unwrap().len(), 1);
    let _ = fresh.cmd("QUIT");
}

#[test]
fn kill_9_of_the_store_while_five_senders_deliver_loses_nothing_acknowledged() {
    let mut c = TestCluster::with_mailboxes(2, &["alice"]);
    c.ctl_ok(&["quota", "set", "alice@example.test", "100MB"], None);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..5)
        .map(|s| {
            let addr = c.fe(s % 2).smtp;
            let acked = acked.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 400 {
                    n += 1;
                    let tag = format!("s{s}-m{n}");
                    let r = match SmtpClient::connect(addr) {
                        Ok(mut cl) => cl.send_mail(
                            "bob@remote.test",
                            &["alice@example.test"],
                            &message(&tag, 600),
                        ),
                        Err(e) => Err(e),
                    };
                    if r.is_ok_and(|r| r.starts_with("250 ")) {
                        acked.lock().unwrap().push(tag);
                    }
                }
            })
        })
        .collect();
    eventually(
        "some deliveries acknowledged",
        Duration::from_secs(30),
        || (acked.lock().unwrap().len() >= 20).then_some(()),
    );
    c.kill_store();
    let at_kill = acked.lock().unwrap().len();
    c.start_store();
    eventually(
        "deliveries acknowledged after the restart",
        Duration::from_secs(30),
        || (acked.lock().unwrap().len() >= at_kill + 10).then_some(()),
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for s in senders {
        s.join().unwrap();
    }
    // Restart once more (kill -9) so the index is rebuilt purely from what is on disk.
    c.kill_store();
    c.start_store();
    let acked = acked.lock().unwrap().clone();
    let stored = eventually("mailbox readable", Duration::from_secs(20), || {
        let mut p = Pop3Client::connect(c.fe(0).pop3).ok()?;
        if !p
            .login("alice@example.test", "pw-alice")
            .ok()?
            .starts_with("+OK")
        {
            return None;
        }
        let n = p.uidl().ok()?.len();
        let all: Vec<Vec<u8>> = (1..=n as u32).map(|i| p.retr(i).unwrap()).collect();
        let _ = p.cmd("QUIT");
        Some(all)
    });
    let subjects: Vec<String> = stored
        .iter()
        .filter_map(|m| {
            String::from_utf8_lossy(m)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        })
        .collect();
    for tag in &acked {
        let copies = subjects.iter().filter(|s| *s == tag).count();
        assert_eq!(copies, 1, "acknowledged {tag} stored {copies} times");
    }
    // Nothing unacknowledged beyond in-flight ones at the kill, and no partial message.
    for m in &stored {
        assert!(
            m.ends_with(b"\r\n") && m.len() > 600,
            "partial message: {}",
            m.len()
        );
    }
    assert!(
        subjects.len() <= acked.len() + 5,
        "{} stored, {} acked",
        subjects.len(),
        acked.len()
    );
    let (count, bytes) = c.stat("alice@example.test");
    assert_eq!(count as usize, stored.len());
    assert_eq!(bytes, stored.iter().map(|m| m.len() as u64).sum::<u64>());
}

/// The lease's epoch from `mailrootctl stat` (None when the maildrop is free).
fn lease_epoch(c: &TestCluster, address: &str) -> Option<u64> {
    let out = c.ctl_ok(&["stat", address], None);
    let line = out.lines().find(|l| l.starts_with(address))?;
    let field = line.split_whitespace().find(|f| f.starts_with("epoch="))?;
    field["epoch=".len()..].parse().ok()
}

#[test]
fn unlock_session_sticks_and_a_store_restart_fences_the_old_session() {
    let mut c = TestCluster::with_mailboxes(2, &["alice"]);
    let alice = "alice@example.test";
    for tag in ["one", "two", "three"] {
        let r = send(c.fe(0).smtp, "x@remote.test", &[alice], &message(tag, 300));
        assert!(r.starts_with("250 "), "{r}");
    }
    let (mut old, r) = pop(&c, 0, alice, "pw-alice");
    assert!(r.starts_with("+OK"), "{r}");
    assert!(old.cmd("DELE 1").unwrap().starts_with("+OK"));
    let first = lease_epoch(&c, alice).expect("epoch shown by mailrootctl stat");

    // unlock-session against a live holder that keeps renewing: it does not come back.
    c.ctl_ok(&["mailbox", "unlock-session", alice], None);
    let (mut new, r) = pop(&c, 1, alice, "pw-alice");
    assert!(r.starts_with("+OK"), "{r}");
    let second = lease_epoch(&c, alice).unwrap();
    assert!(second > first, "{second} > {first}");
    let until = Instant::now() + LEASE_TTL * 2;
    while Instant::now() < until {
        assert!(old.cmd("NOOP").unwrap().starts_with("+OK"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        lease_epoch(&c, alice),
        Some(second),
        "the old holder renewed it back"
    );
    let r = old.cmd("QUIT").unwrap();
    assert!(r.starts_with("-ERR"), "a fenced session's deletions: {r}");
    assert_eq!(c.stat(alice).0, 3);
    assert!(new.cmd("QUIT").unwrap().starts_with("+OK"));

    // A store restart fences the session that held the lease before it.
    let (mut before, r) = pop(&c, 0, alice, "pw-alice");
    assert!(r.starts_with("+OK"), "{r}");
    assert!(before.cmd("DELE 1").unwrap().starts_with("+OK"));
    c.kill_store();
    c.start_store();
    let (mut after, _) = eventually("a login after the restart", Duration::from_secs(20), || {
        let (p, r) = pop(&c, 1, alice, "pw-alice");
        r.starts_with("+OK").then_some((p, r))
    });
    assert!(lease_epoch(&c, alice).unwrap() > second);
    let r = before.cmd("QUIT").unwrap();
    assert!(
        r.starts_with("-ERR"),
        "the pre-restart session's commit: {r}"
    );
    assert_eq!(c.stat(alice).0, 3);
    assert!(after.cmd("DELE 1").unwrap().starts_with("+OK"));
    assert!(after.cmd("QUIT").unwrap().starts_with("+OK"));
    assert_eq!(c.stat(alice).0, 2);
}
