//! Outbound mail end to end, with the rest of the world on loopback: a real DNS server
//! (dnsmasq, the front-ends' `--dns-server`) and real receiving MXs (Postfix's smtp-sink,
//! deferring, rejecting or stalling on request), real binaries, and real clients (swaks,
//! python3-dkim's verifier). Nothing reaches the internet.

use std::process::Command;
use std::time::Duration;

use mailroot_tests::remote::{Dns, Sink, free_port};
use mailroot_tests::{
    DOMAIN, Options, PYTHON, Pop3Client, SmtpClient, TestCluster, eventually, have_client,
    have_python_module,
};

const ALICE: &str = "alice@example.test";
const WAIT: Duration = Duration::from_secs(30);

/// A cluster whose front-ends deliver to `remote.test` (MX 10 mx1 = 127.0.0.2, MX 20 mx2 =
/// 127.0.0.3) through a dnsmasq; `broken.test` has a name server that never answers
/// (SERVFAIL: retried), every other name under `test` does not exist (NXDOMAIN: bounced).
struct World {
    c: TestCluster,
    _dns: Dns,
    port: u16,
}

fn tools() -> bool {
    have_client("dnsmasq") && have_client("/usr/sbin/smtp-sink")
}

impl World {
    fn start(frontends: usize, fe_extra: &[&str]) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let dead = free_port([127, 0, 0, 1].into(), false);
        let dns = Dns::start(
            dir.path(),
            &[
                "--mx-host=remote.test,mx1.remote.test,10".into(),
                "--mx-host=remote.test,mx2.remote.test,20".into(),
                "--host-record=mx1.remote.test,127.0.0.2".into(),
                "--host-record=mx2.remote.test,127.0.0.3".into(),
                format!("--server=/broken.test/127.0.0.1#{dead}"),
            ],
        );
        let port = free_port([127, 0, 0, 2].into(), false);
        let mut frontend: Vec<String> = vec![
            dns.flag(),
            format!("--outbound-port={port}"),
            "--outbound-timeout=3".into(),
        ];
        frontend.extend(fe_extra.iter().map(|s| s.to_string()));
        let options = Options {
            // Short claims (a killed worker's entry moves on quickly) and a short outbound-limit
            // window (the limit lets mail through again within the test).
            store: vec![
                "--queue-claim-ttl".into(),
                "2".into(),
                "--outbound-limit-window".into(),
                "4".into(),
            ],
            frontend,
            ..Options::default()
        };
        let mut c = TestCluster::start_with(0, options, dir);
        for n in 0..frontends {
            let guid = c.auth_guid.clone();
            let fe = c.start_frontend_with(&guid, &[&format!("--node-id=fe-{n}")]);
            c.frontends.push(fe);
        }
        c.ctl_ok(&["domain", "add", DOMAIN], None);
        c.add_mailbox(ALICE, "pw-alice");
        c.add_mailbox("bob@example.test", "pw-bob");
        for (key, value) in [("queue-retry-min", "1s"), ("queue-retry-max", "2s")] {
            c.ctl_ok(&["config", "set", key, value], None);
        }
        World { c, _dns: dns, port }
    }

    /// An MX of remote.test: `mx` 1 or 2.
    fn sink(&self, mx: u8, extra: &[&str]) -> Sink {
        Sink::start(
            self.c.dir.path(),
            [127, 0, 0, mx + 1].into(),
            self.port,
            extra,
        )
    }

    /// AUTH PLAIN on front-end `fe`'s submission port, then one message; the final reply.
    fn submit(&self, fe: usize, to: &[&str], subject: &str) -> String {
        let mut s = SmtpClient::connect(self.c.fe(fe).submission).unwrap();
        let ehlo = s.cmd("EHLO client.test").unwrap();
        assert!(ehlo.contains("AUTH"), "{ehlo}");
        let token = mailroot_tests::clients::auth_plain(ALICE, "pw-alice");
        let r = s.cmd(&format!("AUTH PLAIN {token}")).unwrap();
        assert!(r.starts_with("235"), "AUTH: {r}");
        let message = format!(
            "From: Alice <{ALICE}>\r\nTo: {}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.test>\r\n\r\nHello from mailroot.\r\n.leading dot\r\n",
            to.join(", ")
        );
        let r = s.cmd(&format!("MAIL FROM:<{ALICE}>")).unwrap();
        assert!(r.starts_with("250"), "MAIL: {r}");
        for rcpt in to {
            let r = s.cmd(&format!("RCPT TO:<{rcpt}>")).unwrap();
            assert!(r.starts_with("250"), "RCPT {rcpt}: {r}");
        }
        let r = s.cmd("DATA").unwrap();
        assert!(r.starts_with("354"), "DATA: {r}");
        s.send_raw(&mailroot_tests::clients::dot_stuff(message.as_bytes()))
            .unwrap();
        s.send_raw(b".\r\n").unwrap();
        s.read_reply().unwrap()
    }

    fn queue_len(&self) -> usize {
        let out = self.c.ctl_ok(&["queue", "list"], None);
        out.lines()
            .skip(1)
            .filter(|l| !l.contains(" entries,") && !l.contains(" entry,"))
            .count()
    }

    fn wait_queue_empty(&self) {
        eventually("the outbound queue is empty", WAIT, || {
            (self.queue_len() == 0).then_some(())
        });
    }

    /// The messages in `user`'s mailbox, retrieved over POP3.
    fn mailbox(&self, user: &str) -> Vec<String> {
        let mut p = Pop3Client::connect(self.c.fe(0).pop3).unwrap();
        let local = user.split('@').next().unwrap();
        let r = p.login(user, &format!("pw-{local}")).unwrap();
        assert!(r.starts_with("+OK"), "login: {r}");
        let n = p.uidl().unwrap().len() as u32;
        let out = (1..=n)
            .map(|i| String::from_utf8_lossy(&p.retr(i).unwrap()).into_owned())
            .collect();
        let _ = p.cmd("QUIT");
        out
    }
}

fn dsns(messages: &[String]) -> Vec<&String> {
    messages
        .iter()
        .filter(|m| m.contains("multipart/report") && m.contains("delivery-status"))
        .collect()
}

#[test]
fn submission_reaches_the_remote_mx_with_a_dkim_signature_that_verifies() {
    if !tools() || !have_client("swaks") || !have_python_module("dkim", "python3-dkim") {
        return;
    }
    let w = World::start(1, &[]);
    let mx = w.sink(1, &[]);
    let out = w.c.ctl_ok(&["dkim", "generate", DOMAIN, "sel1"], None);
    let record = out
        .lines()
        .find_map(|l| l.strip_prefix("sel1._domainkey.example.test IN TXT "))
        .unwrap_or_else(|| panic!("no DNS record printed: {out}"))
        .trim_matches('"')
        .to_string();
    // The key reaches the front-end with the settings stream: the version that carries it.
    let show = w.c.ctl_ok(&["config", "show"], None);
    assert!(show.contains("dkim: example.test:sel1"), "{show}");
    let version = show
        .lines()
        .find_map(|l| l.strip_prefix("version: "))
        .unwrap()
        .to_string();
    eventually("the front-end has the DKIM key", WAIT, || {
        w.c.fe(0)
            .proc
            .log_text()
            .contains(&format!("settings updated version={version}"))
            .then_some(())
    });
    let body = format!(
        "From: Alice <{ALICE}>\r\nTo: bob@remote.test\r\nSubject: signed\r\nMessage-ID: <signed@example.test>\r\n\r\nHello.\r\n.leading dot\r\n\r\n8-bit: gr\u{fc}\u{df}e\r\n"
    );
    let file = w.c.dir.path().join("signed.eml");
    std::fs::write(&file, &body).unwrap();
    let swaks = Command::new("swaks")
        .args(["--server", &w.c.fe(0).submission.to_string()])
        .args(["--tls", "--auth", "PLAIN", "--auth-user", ALICE])
        .args(["--auth-password", "pw-alice"])
        .args(["--from", ALICE, "--to", "bob@remote.test"])
        .arg("--data")
        .arg(&file)
        .output()
        .expect("swaks");
    let transcript = String::from_utf8_lossy(&swaks.stdout);
    assert!(transcript.contains("<~  250 2.0.0"), "{transcript}");
    let dump = eventually("the message reaches remote.test's MX", WAIT, || {
        mx.messages()
            .into_iter()
            .find(|d| d.message.contains("Subject: signed"))
    });
    assert_eq!(
        dump.mail_args.split_whitespace().next(),
        Some("<alice@example.test>")
    );
    assert!(
        !dump.message.contains("Return-Path:"),
        "relayed mail carries no Return-Path: {}",
        dump.message
    );
    assert!(
        dump.message.contains("\n.leading dot\n"),
        "dot transparency: {}",
        dump.message
    );
    assert!(dump.message.contains("DKIM-Signature:"), "{}", dump.message);
    // An independent verifier: dkimpy, with the TXT record we were told to publish.
    let crlf = dump.message.trim_end_matches('\n').replace('\n', "\r\n") + "\r\n";
    let verify = |message: &str| {
        let path = w.c.dir.path().join("verify.eml");
        std::fs::write(&path, message).unwrap();
        let out = Command::new(PYTHON)
            .arg("-c")
            .arg(
                "import sys, dkim\n\
                 msg = open(sys.argv[1], 'rb').read()\n\
                 txt = sys.argv[2].encode()\n\
                 ok = dkim.verify(msg, dnsfunc=lambda name, timeout=5: txt)\n\
                 print('verified' if ok else 'FAILED')\n",
            )
            .arg(&path)
            .arg(&record)
            .output()
            .expect("python3 dkim");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
            + &String::from_utf8_lossy(&out.stderr)
    };
    assert_eq!(verify(&crlf), "verified");
    assert_eq!(
        verify(&crlf.replace("Hello.", "Hellp.")),
        "FAILED",
        "a changed body must not verify"
    );
    w.wait_queue_empty();
}

#[test]
fn a_4xx_is_retried_until_the_250_and_a_5xx_gives_exactly_one_dsn() {
    if !tools() {
        return;
    }
    let w = World::start(1, &[]);
    // mx1 defers every RCPT (450), mx2 is down: the entry is deferred and retried.
    let deferring = w.sink(1, &["-r", "RCPT"]);
    let r = w.submit(0, &["carol@remote.test"], "deferred");
    assert!(r.starts_with("250"), "{r}");
    let id = eventually("a deferred attempt is recorded", WAIT, || {
        let out = w.c.ctl_ok(&["queue", "list"], None);
        let line = out
            .lines()
            .find(|l| l.contains("carol@remote.test"))?
            .to_string();
        let id = line.split_whitespace().next()?.to_string();
        let show = w.c.ctl_ok(&["queue", "show", &id], None);
        show.contains("450").then_some(id)
    });
    let out = w.c.ctl_ok(&["stat", "--summary"], None);
    assert!(out.contains("queue-entries=1 queue-recipients=1"), "{out}");
    drop(deferring);
    // Now mx1 accepts: the next scheduled retry (1-2 s here) delivers, once; nobody asks for
    // it (`queue retry` is the kill test's).
    let mx = w.sink(1, &[]);
    eventually("delivered after the retry", WAIT, || {
        mx.messages()
            .into_iter()
            .find(|d| d.message.contains("Subject: deferred"))
    });
    w.wait_queue_empty();
    assert!(!w.c.ctl(&["queue", "show", &id], None).status.success());
    assert_eq!(mx.messages().len(), 1);
    assert!(
        dsns(&w.mailbox(ALICE)).is_empty(),
        "no DSN for a delivered message"
    );
    drop(mx);

    // A 5xx: one DSN in alice's mailbox, naming the recipient and the remote's answer.
    let _rejecting = w.sink(1, &["-f", "RCPT"]);
    let r = w.submit(0, &["dave@remote.test"], "rejected");
    assert!(r.starts_with("250"), "{r}");
    w.wait_queue_empty();
    let messages = eventually("the DSN arrives", WAIT, || {
        let m = w.mailbox(ALICE);
        (!dsns(&m).is_empty()).then_some(m)
    });
    let found = dsns(&messages);
    assert_eq!(found.len(), 1, "exactly one DSN: {messages:?}");
    let dsn = found[0];
    assert!(dsn.contains("dave@remote.test"), "{dsn}");
    assert!(dsn.contains("Action: failed"), "{dsn}");
    assert!(dsn.contains("Status: 5."), "{dsn}");
    assert!(
        dsn.contains("Subject: rejected"),
        "the original's header is returned: {dsn}"
    );
}

#[test]
fn expiry_and_unresolvable_domains_bounce_once() {
    if !tools() {
        return;
    }
    let w = World::start(1, &[]);
    w.c.ctl_ok(&["config", "set", "queue-lifetime", "4s"], None);
    let _deferring = w.sink(1, &["-r", "RCPT"]);
    // Deferred for ever: expires. No such domain: bounced at once. A broken DNS: retried,
    // then expires.
    for (to, subject) in [
        ("erin@remote.test", "expiring"),
        ("frank@nosuch.test", "nxdomain"),
        ("gina@broken.test", "servfail"),
    ] {
        let r = w.submit(0, &[to], subject);
        assert!(r.starts_with("250"), "{r}");
    }
    w.wait_queue_empty();
    let messages = eventually("three DSNs", WAIT, || {
        let m = w.mailbox(ALICE);
        (dsns(&m).len() >= 3).then_some(m)
    });
    let found = dsns(&messages);
    assert_eq!(found.len(), 3, "one DSN per message: {messages:?}");
    let about = |who: &str| {
        let hits: Vec<_> = found.iter().filter(|m| m.contains(who)).collect();
        assert_eq!(hits.len(), 1, "one DSN naming {who}");
        hits[0].to_string()
    };
    assert!(about("erin@remote.test").contains("Status: 4.4.7"));
    assert!(about("frank@nosuch.test").contains("Status: 5.1."));
    assert!(about("gina@broken.test").contains("Status: 4.4.7"));
}

#[test]
fn a_partly_failed_inbound_message_bounces_to_the_remote_sender_and_a_dsn_never_bounces() {
    if !tools() {
        return;
    }
    let w = World::start(1, &[]);
    let mx = w.sink(1, &[]);
    // bob's mailbox cannot take it: 250 for alice, a DSN to the remote sender.
    w.c.ctl_ok(&["quota", "set", "bob@example.test", "100"], None);
    let mut s = SmtpClient::connect(w.c.fe(0).smtp).unwrap();
    let message = b"From: zoe@remote.test\r\nTo: alice@example.test, bob@example.test\r\nSubject: inbound\r\n\r\nA body longer than one hundred octets, so that bob's quota of 100 bytes cannot take it at all.\r\n";
    let r = s
        .send_mail("zoe@remote.test", &[ALICE, "bob@example.test"], message)
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    let dsn = eventually("the DSN reaches zoe's MX", WAIT, || {
        mx.messages()
            .into_iter()
            .find(|d| d.message.contains("delivery-status"))
    });
    assert_eq!(
        dsn.mail_args.split_whitespace().next(),
        Some("<>"),
        "a DSN has the null sender"
    );
    assert!(dsn.rcpt_args.iter().any(|r| r.contains("zoe@remote.test")));
    assert!(dsn.message.contains("bob@example.test"), "{}", dsn.message);
    assert!(
        !dsn.message.contains("Final-Recipient: rfc822; alice@"),
        "{}",
        dsn.message
    );
    w.wait_queue_empty();
    assert_eq!(w.mailbox(ALICE).len(), 1);
    drop(mx);

    // The same, but zoe's MX rejects the DSN: nothing more (no DSN about a DSN).
    let rejecting = w.sink(1, &["-f", "RCPT"]);
    let mut s = SmtpClient::connect(w.c.fe(0).smtp).unwrap();
    let r = s
        .send_mail("zoe@remote.test", &[ALICE, "bob@example.test"], message)
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    w.wait_queue_empty();
    assert!(rejecting.messages().is_empty());
    let log = std::fs::read_to_string(w.c.store.log.clone()).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_remote_that_hangs_is_cut_by_the_timeouts_and_the_next_mx_is_tried() {
    if !tools() {
        return;
    }
    let w = World::start(1, &[]);
    // mx1 stalls 20 s before answering EHLO (our timeout is 3 s); mx2 works.
    let hanging = w.sink(1, &["-W", "EHLO:20"]);
    let mx2 = w.sink(2, &[]);
    let r = w.submit(0, &["hank@remote.test"], "hung");
    assert!(r.starts_with("250"), "{r}");
    eventually("delivered through the second MX", WAIT, || {
        mx2.messages()
            .into_iter()
            .find(|d| d.message.contains("Subject: hung"))
    });
    w.wait_queue_empty();
    assert!(hanging.messages().is_empty());
}

#[test]
fn a_killed_worker_leaves_its_entry_to_another_front_end_and_a_store_restart_keeps_the_queue() {
    if !tools() {
        return;
    }
    let mut w = World::start(2, &[]);
    // Both MXs down: the entry is deferred; a store restart (kill -9) keeps it.
    let r = w.submit(0, &["ivy@remote.test"], "persistent");
    assert!(r.starts_with("250"), "{r}");
    eventually("one failed attempt", WAIT, || {
        let out = w.c.ctl_ok(&["queue", "list"], None);
        out.lines()
            .find(|l| l.contains("ivy@remote.test"))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
            .filter(|attempts| attempts != "0")
    });
    w.c.kill_store();
    w.c.start_store();
    let out = w.c.ctl_ok(&["queue", "list"], None);
    assert!(
        out.contains("ivy@remote.test"),
        "the queue survives a store restart: {out}"
    );

    // mx1 stalls before answering RCPT: the worker holding the entry is mid-delivery when
    // its front-end is killed; the other front-end delivers once the claim expires. (No
    // PIPELINING here: smtp-sink answers a pipelined DATA while its RCPT reply is delayed.)
    let mx = w.sink(1, &["-p", "-W", "RCPT:2"]);
    let id = out
        .lines()
        .find(|l| l.contains("ivy@remote.test"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    w.c.ctl_ok(&["queue", "retry", &id], None);
    let holder = eventually("a front-end claims the entry", WAIT, || {
        let show = w.c.ctl_ok(&["queue", "show", &id], None);
        let by = show
            .lines()
            .find_map(|l| l.strip_prefix("claimed-by: "))?
            .to_string();
        (by != "-").then_some(by)
    });
    let victim = if holder == "fe-0" { 0 } else { 1 };
    // Mid-delivery: the holder's SMTP connection to the MX is open (it stalls at RCPT) and
    // nothing has arrived yet.
    eventually("the worker is connected to the MX", WAIT, || {
        established_to(mx.addr).then_some(())
    });
    w.c.frontends[victim].proc.kill();
    assert!(
        mx.messages().is_empty(),
        "killed before the remote's 250: {:?}",
        mx.messages()
    );
    eventually("the other front-end delivers", WAIT, || {
        mx.messages()
            .into_iter()
            .find(|d| d.message.contains("Subject: persistent"))
    });
    w.wait_queue_empty();
    // The README's promise: killed before the remote's 250, so exactly one copy.
    assert_eq!(mx.messages().len(), 1, "{:?}", mx.messages());
}

#[test]
fn the_outbound_limit_answers_451_4_7_1() {
    if !tools() {
        return;
    }
    let w = World::start(1, &[]);
    let _mx = w.sink(1, &[]);
    w.c.ctl_ok(&["config", "set", "outbound-limit", "2"], None);
    for n in 0..2 {
        let r = w.submit(0, &["jo@remote.test"], &format!("limited{n}"));
        assert!(r.starts_with("250"), "{r}");
    }
    let r = w.submit(0, &["jo@remote.test"], "limited2");
    assert!(r.starts_with("451 4.7.1"), "{r}");
    // Local mail is not outbound mail: still accepted.
    let r = w.submit(0, &["bob@example.test"], "local");
    assert!(r.starts_with("250"), "{r}");
    // Once the first messages have left the window (4 s here, an hour by default), the user
    // may send again; refusals in between were not counted.
    eventually("accepted again after the window", WAIT, || {
        let r = w.submit(0, &["jo@remote.test"], "limited3");
        if !r.starts_with("451 4.7.1") {
            assert!(r.starts_with("250"), "{r}");
            return Some(());
        }
        None
    });
}

#[test]
fn queue_delete_removes_an_entry_without_a_dsn() {
    if !tools() {
        return;
    }
    let w = World::start(1, &[]);
    let r = w.submit(0, &["kim@remote.test"], "deleted");
    assert!(r.starts_with("250"), "{r}");
    let id = eventually("queued", WAIT, || {
        let out = w.c.ctl_ok(&["queue", "list"], None);
        out.lines()
            .find(|l| l.contains("kim@remote.test"))
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
    });
    let show = w.c.ctl_ok(&["queue", "show", &id], None);
    assert!(show.contains("from: alice@example.test"), "{show}");
    assert!(show.contains("user: alice@example.test"), "{show}");
    w.c.ctl_ok(&["queue", "delete", &id], None);
    assert_eq!(w.queue_len(), 0);
    let out = w.c.ctl(&["queue", "show", &id], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(dsns(&w.mailbox(ALICE)).is_empty());
}

/// Whether an ESTABLISHED TCP connection to `addr` (IPv4) exists on this machine
/// (`/proc/net/tcp`: remote address as little-endian hex, state 01).
fn established_to(addr: std::net::SocketAddr) -> bool {
    let std::net::SocketAddr::V4(v4) = addr else {
        return false;
    };
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2] == want && f[3] == "01"
        })
}
