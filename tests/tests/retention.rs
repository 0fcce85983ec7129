//! Retention (RFC 2449 EXPIRE) and LOGIN-DELAY, with the real binaries: retrieved messages
//! disappear after the retention, unretrieved (or only TOP-read) ones stay, the retrieval
//! time survives a store crash, CAPA advertises both, per-domain values override the
//! cluster's.

use std::net::SocketAddr;
use std::time::Duration;

use mailroot_tests::clients::{Pop3Client, SmtpClient};
use mailroot_tests::{DOMAIN, TestCluster, eventually};

fn deliver(smtp: SocketAddr, to: &str, subject: &str) {
    let msg = format!("From: a@remote.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody\r\n");
    let mut c = SmtpClient::connect(smtp).unwrap();
    let r = c.send_mail("a@remote.test", &[to], msg.as_bytes()).unwrap();
    assert!(r.starts_with("250"), "{r}");
}

/// The CAPA listing, as lines.
fn capa(c: &mut Pop3Client) -> Vec<String> {
    let r = c.cmd("CAPA").unwrap();
    assert!(r.starts_with("+OK"), "CAPA: {r}");
    String::from_utf8(c.read_multiline().unwrap())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn capa_before_login(pop3: SocketAddr) -> Vec<String> {
    capa(&mut Pop3Client::connect(pop3).unwrap())
}

/// Logs in, returns the UIDL listing and the session.
fn open(pop3: SocketAddr, user: &str) -> (Pop3Client, Vec<(u32, String)>) {
    let mut c = Pop3Client::connect(pop3).unwrap();
    let r = c
        .login(user, &format!("pw-{}", user.split('@').next().unwrap()))
        .unwrap();
    assert!(r.starts_with("+OK"), "login {user}: {r}");
    let uidls = c.uidl().unwrap();
    (c, uidls)
}

fn quit(mut c: Pop3Client) {
    let r = c.cmd("QUIT").unwrap();
    assert!(r.starts_with("+OK"), "QUIT: {r}");
}

fn subject_of(c: &mut Pop3Client, n: u32) -> String {
    let text = String::from_utf8(c.retr(n).unwrap()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn retrieved_messages_expire_after_the_retention_and_unretrieved_ones_stay() {
    let mut cluster = TestCluster::with_mailboxes(1, &["alice"]);
    let alice = format!("alice@{DOMAIN}");
    let (pop3, smtp) = (cluster.fe(0).pop3, cluster.fe(0).smtp);
    for subject in ["one", "two", "three"] {
        deliver(smtp, &alice, subject);
    }
    // Off by default: CAPA says so (RFC 2449 §6.7).
    assert!(
        capa_before_login(pop3).contains(&"EXPIRE NEVER".to_string()),
        "{:?}",
        capa_before_login(pop3)
    );

    // Retention off: RETR 1 and TOP 2 (which does not count), then QUIT. The retrieval is
    // recorded anyway, so turning retention on later applies to it.
    let (mut c, uidls) = open(pop3, &alice);
    assert_eq!(uidls.len(), 3);
    assert_eq!(subject_of(&mut c, 1), "one");
    let r = c.cmd("TOP 2 0").unwrap();
    assert!(r.starts_with("+OK"), "{r}");
    c.read_multiline().unwrap();
    quit(c);
    // A session that ends without QUIT (no UPDATE state) retrieves nothing for retention.
    let (mut c, _) = open(pop3, &alice);
    assert_eq!(subject_of(&mut c, 3), "three");
    drop(c);

    // The retrieval time is durable: it survives a kill -9 of the store.
    cluster.kill_store();
    cluster.start_store();
    eventually("the store serves again", Duration::from_secs(20), || {
        cluster
            .ctl(&["domain", "list"], None)
            .status
            .success()
            .then_some(())
    });

    cluster.ctl_ok(&["config", "set", "retention", "2s"], None);
    // A retention under a day still says one day: `EXPIRE 0` would mean "leave nothing".
    eventually("CAPA shows EXPIRE 1", Duration::from_secs(10), || {
        capa_before_login(pop3)
            .contains(&"EXPIRE 1".to_string())
            .then_some(())
    });
    // The store's own sweep deletes message one (nobody logs in meanwhile); two and three
    // were not retrieved by a session that quit, so they stay.
    eventually("message one expires", Duration::from_secs(30), || {
        (cluster.stat(&alice).0 == 2).then_some(())
    });
    let (mut c, uidls) = open(pop3, &alice);
    assert_eq!(uidls.len(), 2);
    assert!(capa(&mut c).contains(&"EXPIRE 1".to_string()));
    assert_eq!(subject_of(&mut c, 1), "two");
    quit(c);

    // Message two was retrieved just now: it goes too, and login itself expires it (before
    // the listing is made), so the next session never lists it.
    eventually("message two expires", Duration::from_secs(30), || {
        let (c, uidls) = open(pop3, &alice);
        quit(c);
        (uidls.len() == 1).then_some(())
    });
    let (mut c, _) = open(pop3, &alice);
    let r = c.cmd("TOP 1 0").unwrap();
    assert!(r.starts_with("+OK"), "{r}");
    let head = String::from_utf8(c.read_multiline().unwrap()).unwrap();
    assert!(head.contains("Subject: three"), "{head}");
    quit(c);
    assert_eq!(cluster.stat(&alice).0, 1);

    // Per domain: this domain never expires; CAPA says USER before login (it varies), and
    // the user's own value after.
    cluster.ctl_ok(
        &["config", "set", "retention", "never", "--domain", DOMAIN],
        None,
    );
    eventually("CAPA shows EXPIRE 1 USER", Duration::from_secs(10), || {
        capa_before_login(pop3)
            .contains(&"EXPIRE 1 USER".to_string())
            .then_some(())
    });
    let (mut c, _) = open(pop3, &alice);
    assert!(capa(&mut c).contains(&"EXPIRE NEVER".to_string()));
    assert_eq!(subject_of(&mut c, 1), "three");
    quit(c);
    let show = cluster.ctl_ok(&["config", "show"], None);
    assert!(
        show.contains("retention: 2s after the first retrieval"),
        "{show}"
    );
    assert!(
        show.contains(&format!("retention of {DOMAIN}: never")),
        "{show}"
    );

    // Bad values are refused with the rule; a domain that is not hosted is refused.
    let out = cluster.ctl(&["config", "set", "retention", "soon"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("never"));
    let out = cluster.ctl(
        &[
            "config",
            "set",
            "retention",
            "1d",
            "--domain",
            "nowhere.test",
        ],
        None,
    );
    assert!(!out.status.success());
    let out = cluster.ctl(
        &["config", "set", "login-delay", "1m", "--domain", DOMAIN],
        None,
    );
    assert!(!out.status.success(), "login-delay is cluster-wide");
}

#[test]
fn login_delay_refuses_a_second_login_too_soon() {
    let cluster = TestCluster::with_mailboxes(2, &["bob"]);
    let bob = format!("bob@{DOMAIN}");
    cluster.ctl_ok(&["config", "set", "login-delay", "1h"], None);
    let pop3 = cluster.fe(0).pop3;
    eventually("CAPA shows LOGIN-DELAY", Duration::from_secs(10), || {
        capa_before_login(pop3)
            .contains(&"LOGIN-DELAY 3600".to_string())
            .then_some(())
    });
    let (c, _) = open(pop3, &bob);
    quit(c);
    // Cluster-wide: the other front-end refuses too (RFC 2449 §8.1.1 response code).
    let mut c = Pop3Client::connect(cluster.fe(1).pop3).unwrap();
    let r = c.login(&bob, "pw-bob").unwrap();
    assert!(r.starts_with("-ERR [LOGIN-DELAY]"), "{r}");
    // A wrong password is still just a wrong password.
    let mut c = Pop3Client::connect(pop3).unwrap();
    let r = c.login(&bob, "wrong").unwrap();
    assert!(r.starts_with("-ERR [AUTH]"), "{r}");

    cluster.ctl_ok(&["config", "set", "login-delay", "off"], None);
    eventually("login allowed again", Duration::from_secs(10), || {
        let mut c = Pop3Client::connect(pop3).ok()?;
        let r = c.login(&bob, "pw-bob").ok()?;
        r.starts_with("+OK").then(|| quit(c))
    });
    assert!(
        !capa_before_login(pop3)
            .iter()
            .any(|l| l.starts_with("LOGIN-DELAY")),
        "not advertised when off"
    );
}
