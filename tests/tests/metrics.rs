//! Issue 12 through the real binaries: `--metrics` on the store and a front-end, `/metrics`
//! parsed with a real Prometheus text-format parser (`prometheus-parse`), counters that move
//! with the traffic the test sends, and `/healthz` / `/readyz` following the store's life and
//! the front-end's drain. Nothing sleeps: every wait polls with a deadline (`eventually`).

use std::net::SocketAddr;
use std::time::Duration;

use mailroot_tests::{DOMAIN, Options, Pop3Client, SmtpClient, TestCluster, eventually, http};
use prometheus_parse::{Scrape, Value};

/// Time for a front-end to notice the store (gone, or back: the settings stream reconnects
/// with a backoff of at most 2 s).
const NOTICE: Duration = Duration::from_secs(20);

fn cluster() -> TestCluster {
    let metrics = vec!["--metrics".to_string(), "127.0.0.1:0".to_string()];
    let options = Options {
        store: metrics.clone(),
        frontend: metrics,
        ..Options::default()
    };
    let c = TestCluster::start_with(1, options, tempfile::tempdir().expect("temp dir"));
    c.ctl_ok(&["domain", "add", DOMAIN], None);
    c.add_mailbox("alice@example.test", "pw-alice");
    c
}

fn fe_metrics(c: &TestCluster) -> SocketAddr {
    c.fe(0)
        .metrics
        .expect("metrics= in the front-end's ready line")
}

fn store_metrics(c: &TestCluster) -> SocketAddr {
    c.store_metrics.expect("metrics= in the store's ready line")
}

fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = http::get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The sum of every sample named `name` whose labels include `labels` (0 when none: a counter
/// appears at its first increment).
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn message(size: usize) -> Vec<u8> {
    let mut m = b"From: bob@remote.test\r\nSubject: metrics\r\n\r\n".to_vec();
    while m.len() + 2 < size {
        m.push(b'x');
        if m.len().is_multiple_of(70) {
            m.extend_from_slice(b"\r\n");
        }
    }
    m.extend_from_slice(b"\r\n");
    m
}

fn send(addr: SocketAddr, msg: &[u8]) -> String {
    let mut s = SmtpClient::connect(addr).unwrap();
    let r = s
        .send_mail("bob@remote.test", &["alice@example.test"], msg)
        .unwrap();
    let quit = s.cmd("QUIT").unwrap();
    assert!(quit.starts_with("221"), "{quit}");
    r
}

#[test]
fn counters_move_with_the_traffic() {
    let c = cluster();
    c.ctl_ok(&["quota", "set", "alice@example.test", "10KB"], None);
    let (fe0, st0) = (scrape(fe_metrics(&c)), scrape(store_metrics(&c)));

    // SMTP: one message stored (250), one refused at end of DATA because it no longer fits
    // (552 5.2.2, mailbox full).
    assert!(send(c.fe(0).smtp, &message(6000)).starts_with("250"));
    let full = send(c.fe(0).smtp, &message(6000));
    assert!(full.starts_with("552 5.2.2"), "{full}");

    let (fe1, st1) = (scrape(fe_metrics(&c)), scrape(store_metrics(&c)));
    let delta_fe =
        |name: &str, labels: &[(&str, &str)]| value(&fe1, name, labels) - value(&fe0, name, labels);
    let refusals = [("scope", "mailbox"), ("reason", "full")];
    assert_eq!(
        value(&st1, "mailroot_quota_refusals_total", &refusals)
            - value(&st0, "mailroot_quota_refusals_total", &refusals),
        1.0,
        "one copy refused for the mailbox quota"
    );
    let smtp = |class| [("protocol", "smtp"), ("class", class)];
    assert_eq!(delta_fe("mailroot_smtp_replies_total", &smtp("5xx")), 1.0);
    assert_eq!(
        delta_fe("mailroot_smtp_replies_total", &smtp("3xx")),
        2.0,
        "two 354s"
    );
    // Per session 220, EHLO, MAIL, RCPT and 221; and one 250 after DATA.
    assert_eq!(delta_fe("mailroot_smtp_replies_total", &smtp("2xx")), 11.0);
    assert_eq!(delta_fe("mailroot_smtp_replies_total", &smtp("4xx")), 0.0);
    assert_eq!(
        delta_fe("mailroot_sessions_total", &[("protocol", "smtp")]),
        2.0
    );
    // EHLO, MAIL, RCPT, DATA, QUIT per session.
    assert_eq!(
        delta_fe("mailroot_commands_total", &[("protocol", "smtp")]),
        10.0
    );
    assert!(delta_fe("mailroot_bytes_received_total", &[("protocol", "smtp")]) >= 12000.0);
    let deliver = [("method", "deliver"), ("result", "ok")];
    assert_eq!(delta_fe("mailroot_store_rpc_seconds_count", &deliver), 2.0);
    assert_eq!(
        delta_fe("mailroot_smtp_data_seconds_count", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        delta_fe("mailroot_smtp_data_seconds_count", &[("result", "failed")]),
        1.0
    );
    assert!(
        value(&st1, "mailroot_fsync_batch_size_count", &[])
            > value(&st0, "mailroot_fsync_batch_size_count", &[]),
        "the stored message went through a group commit"
    );

    // POP3: a wrong password, a login, a RETR, and a second session refused as IN-USE.
    let mut bad = Pop3Client::connect(c.fe(0).pop3).unwrap();
    assert!(
        bad.login("alice@example.test", "wrong")
            .unwrap()
            .starts_with("-ERR")
    );
    let mut p = Pop3Client::connect(c.fe(0).pop3).unwrap();
    let r = p.login("alice@example.test", "pw-alice").unwrap();
    assert!(r.starts_with("+OK"), "{r}");
    let mut other = Pop3Client::connect(c.fe(0).pop3).unwrap();
    let busy = other.login("alice@example.test", "pw-alice").unwrap();
    assert!(busy.starts_with("-ERR [IN-USE]"), "{busy}");
    assert!(!p.retr(1).unwrap().is_empty());

    let (fe2, st2) = (scrape(fe_metrics(&c)), scrape(store_metrics(&c)));
    // Described (a metric is rendered with its HELP once it has been recorded).
    for name in [
        "mailroot_quota_refusals_total",
        "mailroot_fsync_batch_size",
        "mailroot_password_hash_wait_seconds",
        "mailroot_lease_conflicts_total",
    ] {
        assert!(st2.docs.contains_key(name), "store: no HELP for {name}");
    }
    for name in [
        "mailroot_smtp_replies_total",
        "mailroot_pop3_login_seconds",
        "mailroot_store_rpc_seconds",
    ] {
        assert!(fe2.docs.contains_key(name), "front-end: no HELP for {name}");
    }
    let delta =
        |name: &str, labels: &[(&str, &str)]| value(&fe2, name, labels) - value(&fe1, name, labels);
    assert_eq!(
        delta("mailroot_pop3_login_seconds_count", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        delta("mailroot_pop3_login_seconds_count", &[("result", "failed")]),
        2.0,
        "the wrong password and the IN-USE refusal"
    );
    assert_eq!(delta("mailroot_pop3_retr_seconds_count", &[]), 1.0);
    let pop3 = |status| [("protocol", "pop3"), ("status", status)];
    assert!(delta("mailroot_pop3_replies_total", &pop3("err")) >= 2.0);
    // 3 greetings, USER/PASS twice that passed the USER step, the login, RETR.
    assert!(delta("mailroot_pop3_replies_total", &pop3("ok")) >= 6.0);
    assert_eq!(
        delta(
            "mailroot_store_rpc_seconds_count",
            &[("method", "open_maildrop")]
        ),
        3.0
    );
    assert_eq!(
        value(&st2, "mailroot_lease_conflicts_total", &[])
            - value(&st1, "mailroot_lease_conflicts_total", &[]),
        1.0
    );
    assert!(
        value(&st2, "mailroot_password_hash_wait_seconds_count", &[])
            > value(&st1, "mailroot_password_hash_wait_seconds_count", &[]),
        "the wrong password cost an Argon2id check"
    );

    // The lease broken by an administrator: the session's deletions are fenced.
    c.ctl_ok(&["mailbox", "unlock-session", "alice@example.test"], None);
    assert!(p.cmd("DELE 1").unwrap().starts_with("+OK"));
    let fenced = p.cmd("QUIT").unwrap();
    assert!(fenced.starts_with("-ERR"), "{fenced}");
    let st3 = scrape(store_metrics(&c));
    assert_eq!(
        value(&st3, "mailroot_fenced_commits_total", &[])
            - value(&st2, "mailroot_fenced_commits_total", &[]),
        1.0
    );

    // Every session ends: the active-connections gauge goes back to zero.
    drop((bad, other, p));
    eventually("no active connections", NOTICE, || {
        let s = scrape(fe_metrics(&c));
        (value(&s, "mailroot_active_connections", &[]) == 0.0).then_some(())
    });
}

fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http::get(addr, path).ok()
}

#[test]
fn readyz_follows_the_store_and_the_drain() {
    let mut c = cluster();
    assert_eq!(get(fe_metrics(&c), "/healthz").map(|r| r.0), Some(200));
    assert_eq!(get(store_metrics(&c), "/healthz").map(|r| r.0), Some(200));
    assert_eq!(get(store_metrics(&c), "/readyz").map(|r| r.0), Some(200));
    let fe = fe_metrics(&c);
    eventually("front-end ready", NOTICE, || {
        (get(fe, "/readyz")? == (200, "ready\n".to_string())).then_some(())
    });

    c.kill_store();
    let (_, reason) = eventually("front-end not ready without the store", NOTICE, || {
        get(fe, "/readyz").filter(|(status, _)| *status == 503)
    });
    assert!(reason.starts_with("not ready: "), "{reason}");
    assert_eq!(reason.lines().count(), 1, "{reason}");
    assert_eq!(
        get(fe, "/healthz").map(|r| r.0),
        Some(200),
        "alive all the same"
    );

    c.start_store();
    assert_eq!(get(store_metrics(&c), "/readyz").map(|r| r.0), Some(200));
    eventually("front-end ready again with the store back", NOTICE, || {
        (get(fe, "/readyz")?.0 == 200).then_some(())
    });

    // SIGTERM with a session open: the node drains (5 s by default) and says so at once.
    let mut s = SmtpClient::connect(c.fe(0).smtp).unwrap();
    assert!(s.cmd("EHLO client.test").unwrap().starts_with("250"));
    TestCluster::signal(&c.fe(0).proc, "TERM");
    let (_, reason) = eventually("front-end not ready while draining", NOTICE, || {
        get(fe, "/readyz").filter(|(status, _)| *status == 503)
    });
    assert!(reason.contains("draining"), "{reason}");
}

#[test]
fn the_outbound_queue_depth_is_a_gauge_of_the_store() {
    // No delivery worker: what is queued stays queued.
    let metrics = vec!["--metrics".to_string(), "127.0.0.1:0".to_string()];
    let mut frontend = metrics.clone();
    frontend.push("--outbound-workers=0".into());
    let options = Options {
        store: metrics,
        frontend,
        ..Options::default()
    };
    let c = TestCluster::start_with(1, options, tempfile::tempdir().expect("temp dir"));
    c.ctl_ok(&["domain", "add", DOMAIN], None);
    c.add_mailbox("alice@example.test", "pw-alice");
    let mut s = SmtpClient::connect(c.fe(0).submission).unwrap();
    assert!(s.cmd("EHLO client.test").unwrap().starts_with("250"));
    let token = mailroot_tests::clients::auth_plain("alice@example.test", "pw-alice");
    assert!(
        s.cmd(&format!("AUTH PLAIN {token}"))
            .unwrap()
            .starts_with("235")
    );
    let r = s
        .send_mail(
            "alice@example.test",
            &["a@one.invalid", "b@two.invalid"],
            b"Subject: out\r\n\r\nbody\r\n",
        )
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    eventually("the queue gauges count the entry", NOTICE, || {
        let st = scrape(store_metrics(&c));
        (value(&st, "mailroot_queue_entries", &[]) == 1.0
            && value(&st, "mailroot_queue_recipients", &[]) == 2.0)
            .then_some(())
    });
}
