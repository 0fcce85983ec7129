//! Issue 10, point 6: failed logins lock one (login name, client IP) pair, never a whole
//! address — behind a NAT one attacker must not lock everyone out — and `mailrootctl throttle
//! list|clear` shows and lifts the entries. The store runs with a 20 ms base delay (the
//! harness's `--login-delay-ms`), so ten failures take about a second and a half.

use std::net::{IpAddr, SocketAddr};

use mailroot_tests::{Pop3Client, TestCluster};

const CAROL: &str = "carol@example.test";
const BOB: &str = "bob@example.test";
/// `throttle::LOCKOUT_AFTER` in the store.
const LOCKOUT_AFTER: usize = 10;

fn login_from(pop3: SocketAddr, from: &str, user: &str, pass: &str) -> String {
    let from: IpAddr = from.parse().expect("test address");
    let mut p = Pop3Client::connect_from(pop3, from).expect("connect");
    let r = p.login(user, pass).expect("login");
    if r.starts_with("+OK") {
        // Release the maildrop lease at once for the next login of the same mailbox.
        assert!(p.cmd("QUIT").expect("QUIT").starts_with("+OK"));
    }
    r
}

/// Data lines of `mailrootctl throttle list`, split into columns (the header dropped).
fn throttle_rows(c: &TestCluster, filter: Option<&str>) -> Vec<Vec<String>> {
    let mut args = vec!["throttle", "list"];
    args.extend(filter);
    let out = c.ctl_ok(&args, None);
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("KIND"), "no header in {out:?}");
    lines
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn one_users_failures_lock_only_that_user_from_that_address() {
    let c = TestCluster::with_mailboxes(1, &["carol", "bob"]);
    let pop3 = c.fe(0).pop3;

    for i in 0..LOCKOUT_AFTER {
        let r = login_from(pop3, "127.0.0.1", CAROL, "wrong");
        assert!(r.starts_with("-ERR [AUTH]"), "failure {i}: {r}");
    }
    // The pair is locked: even carol's right password is refused, as "try again later".
    let r = login_from(pop3, "127.0.0.1", CAROL, "pw-carol");
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");
    // Another user from the same address logs in (success is never held back).
    let r = login_from(pop3, "127.0.0.1", BOB, "pw-bob");
    assert!(r.starts_with("+OK"), "{r}");

    // The entries: carol's pair (locked), the address and carol's name (delay only).
    let rows = throttle_rows(&c, None);
    let row = |kind: &str| {
        rows.iter()
            .find(|r| r[0] == kind)
            .unwrap_or_else(|| panic!("no {kind} row in {rows:?}"))
            .clone()
    };
    assert_eq!(rows.len(), 3, "{rows:?}");
    let pair = row("user+ip");
    assert_eq!(pair[1..5], [CAROL, "127.0.0.1", "10", "locked"], "{pair:?}");
    let ip = row("ip");
    assert_eq!(ip[1..5], ["-", "127.0.0.1", "10", "-"], "{ip:?}");
    let user = row("user");
    assert_eq!(user[1..5], [CAROL, "-", "10", "-"], "{user:?}");
    assert!(throttle_rows(&c, Some(BOB)).is_empty());
    assert_eq!(throttle_rows(&c, Some("127.0.0.1")).len(), 2);

    // The lockout is per address: carol from elsewhere logs in, and stays locked out here.
    let r = login_from(pop3, "127.0.0.2", CAROL, "pw-carol");
    assert!(r.starts_with("+OK"), "{r}");
    let r = login_from(pop3, "127.0.0.1", CAROL, "pw-carol");
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");

    // Her success cleared her name counter; clearing her entries lifts the pair's lock.
    let out = c.ctl_ok(&["throttle", "clear", CAROL], None);
    assert_eq!(out.trim(), format!("1 throttle entry of {CAROL} cleared"));
    let r = login_from(pop3, "127.0.0.1", CAROL, "pw-carol");
    assert!(r.starts_with("+OK"), "{r}");

    // The address's counter stays until cleared (a success never resets it).
    let rows = throttle_rows(&c, Some("127.0.0.1"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], "ip");
    let out = c.ctl_ok(&["throttle", "clear"], None);
    assert_eq!(out.trim(), "1 throttle entry cleared");
    assert!(throttle_rows(&c, None).is_empty());

    // A filter that is neither a name nor an address is refused (exit 1, one line).
    let out = c.ctl(&["throttle", "list", "not a name"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("mailrootctl: ") && err.contains("neither a login name nor an IP"),
        "{err}"
    );
}
