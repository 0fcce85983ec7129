//! Issue 5 (greeting part): settings are made once with mailrootctl and pushed by the store to
//! every running front-end, with no restart.

use std::time::{Duration, Instant};

use mailroot_tests::{Pop3Client, SmtpClient, TestCluster, eventually};

#[test]
fn greeting_change_reaches_two_running_frontends_within_a_second() {
    let c = TestCluster::start(2);
    // The default banner names no product or version.
    let smtp = SmtpClient::connect(c.fe(0).smtp).unwrap().banner;
    let pop = Pop3Client::connect(c.fe(1).pop3).unwrap().banner;
    assert_eq!(smtp, "220 mx.example.test ESMTP ready\r\n");
    assert!(pop.starts_with("+OK "), "{pop}");
    for banner in [&smtp, &pop] {
        let lower = banner.to_lowercase();
        assert!(
            !lower.contains("mailroot") && !lower.contains("0.1"),
            "{banner}"
        );
    }

    let text = "Welcome to Example Corp mail, authorised use only";
    c.ctl_ok(&["config", "set", "greeting", text], None);
    let changed = Instant::now();
    for fe in 0..2 {
        eventually("new SMTP banner", Duration::from_secs(1), || {
            let b = SmtpClient::connect(c.fe(fe).smtp).ok()?.banner;
            (b == format!("220 mx.example.test {text}\r\n")).then_some(())
        });
        eventually("new POP3 banner", Duration::from_secs(1), || {
            let b = Pop3Client::connect(c.fe(fe).pop3).ok()?.banner;
            (b == format!("+OK {text}\r\n")).then_some(())
        });
    }
    eprintln!(
        "greeting visible on both front-ends after {:?}",
        changed.elapsed()
    );
    assert!(c.ctl_ok(&["config", "show"], None).contains(text));
}

#[test]
fn invalid_greetings_are_refused_with_the_rule() {
    let c = TestCluster::start(0);
    let long = "a".repeat(260);
    let cases = [
        (long.as_str(), "at most 259"),
        ("hello <world>", "no < or >"),
        ("caf\u{e9}", "printable ASCII"),
        ("tab\there", "printable ASCII"),
    ];
    for (text, rule) in cases {
        let out = c.ctl(&["config", "set", "greeting", text], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text:?} accepted");
        assert!(err.contains(rule), "{text:?}: {err}");
    }
    // 259 characters is fine.
    c.ctl_ok(&["config", "set", "greeting", &"b".repeat(259)], None);
    let out = c.ctl(&["config", "set", "nonsense", "x"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown setting"));
}

#[test]
fn settings_survive_a_store_restart() {
    let mut c = TestCluster::start(1);
    c.ctl_ok(&["config", "set", "greeting", "Persistent banner"], None);
    c.kill_store();
    c.start_store();
    assert!(
        c.ctl_ok(&["config", "show"], None)
            .contains("Persistent banner")
    );
    eventually(
        "front-end keeps the banner after the store restart",
        Duration::from_secs(10),
        || {
            let b = SmtpClient::connect(c.fe(0).smtp).ok()?.banner;
            b.contains("Persistent banner").then_some(())
        },
    );
}

/// RCPT answers are cached on the front-ends (issue 9), but an added or deleted mailbox or
/// alias reaches RCPT on every running front-end within a second, like any other setting.
#[test]
fn directory_changes_reach_rcpt_on_every_frontend_within_a_second() {
    let c = TestCluster::with_mailboxes(2, &["alice"]);
    let rcpt = |fe: usize, address: &str| -> String {
        let mut s = SmtpClient::connect(c.fe(fe).smtp).unwrap();
        assert!(s.cmd("EHLO client.test").unwrap().starts_with("250"));
        assert!(
            s.cmd("MAIL FROM:<x@remote.test>")
                .unwrap()
                .starts_with("250")
        );
        s.cmd(&format!("RCPT TO:<{address}>")).unwrap()
    };
    // Asked (and cached) while the names do not exist.
    for fe in 0..2 {
        assert!(rcpt(fe, "bob@example.test").starts_with("550 5.1.1"));
        assert!(rcpt(fe, "sales@example.test").starts_with("550 5.1.1"));
        assert!(rcpt(fe, "alice@example.test").starts_with("250"));
    }
    c.add_mailbox("bob@example.test", "pw-bob");
    c.ctl_ok(
        &["alias", "add", "sales@example.test", "alice@example.test"],
        None,
    );
    for fe in 0..2 {
        for address in ["bob@example.test", "sales@example.test"] {
            eventually("RCPT accepted after add", Duration::from_secs(1), || {
                rcpt(fe, address).starts_with("250").then_some(())
            });
        }
    }
    c.ctl_ok(&["alias", "delete", "sales@example.test"], None);
    c.ctl_ok(&["mailbox", "delete", "bob@example.test"], None);
    for fe in 0..2 {
        for address in ["bob@example.test", "sales@example.test"] {
            eventually("RCPT refused after delete", Duration::from_secs(1), || {
                rcpt(fe, address).starts_with("550 5.1.1").then_some(())
            });
        }
    }
}
