//! Issue 12 (stat): `mailrootctl stat` for a domain and for the whole cluster prints sums that
//! match the mail sent; the per-mailbox output stays as it was.

use mailroot_tests::{SmtpClient, TestCluster};

/// The whitespace-separated columns of the line of `out` that starts with `name` + blank.
fn row<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{out}"))
        .split_whitespace()
        .collect()
}

fn cluster_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.starts_with("cluster: "))
        .unwrap_or_else(|| panic!("no cluster line in:\n{out}"))
}

#[test]
fn stat_sums_per_domain_and_for_the_cluster() {
    let c = TestCluster::with_mailboxes(1, &["alice", "bob"]);
    c.ctl_ok(&["domain", "add", "other.test"], None);
    c.add_mailbox("carol@other.test", "pw-carol");
    let sent = [
        ("alice@example.test", 3),
        ("bob@example.test", 2),
        ("carol@other.test", 4),
    ];
    for (to, n) in sent {
        for i in 0..n {
            let mut s = SmtpClient::connect(c.fe(0).smtp).unwrap();
            let body = "x".repeat(100 * (i + 1));
            let msg = format!("Subject: {i}\r\n\r\n{body}\r\n");
            let r = s.send_mail("x@remote.test", &[to], msg.as_bytes()).unwrap();
            assert!(r.starts_with("250"), "{r}");
            let _ = s.cmd("QUIT");
        }
    }
    let per: Vec<(u64, u64)> = sent.iter().map(|(to, _)| c.stat(to)).collect();
    for ((to, n), (messages, bytes)) in sent.iter().zip(&per) {
        assert_eq!(*messages, *n as u64, "{to}");
        assert!(*bytes > 100 * *n as u64, "{to}: {bytes} bytes");
    }
    let example_bytes = per[0].1 + per[1].1;
    let other_bytes = per[2].1;

    // One mailbox: the table as before, nothing else.
    let out = c.ctl_ok(&["stat", "alice@example.test"], None);
    assert_eq!(out.lines().count(), 2, "{out}");

    // A domain, by a name without @ or with --domain: its mailboxes, then its sums.
    for args in [
        &["stat", "example.test"][..],
        &["stat", "--domain", "example.test"][..],
    ] {
        let out = c.ctl_ok(args, None);
        row(&out, "alice@example.test");
        row(&out, "bob@example.test");
        assert!(!out.contains("carol@"), "{out}");
        let d = row(&out, "example.test");
        assert_eq!(
            d[1..4],
            ["2", "5", example_bytes.to_string().as_str()],
            "{out}"
        );
        assert!(!out.contains("cluster:"), "{out}");
    }

    // The cluster: every mailbox, every domain, and one summary line.
    let out = c.ctl_ok(&["stat"], None);
    row(&out, "carol@other.test");
    let d = row(&out, "other.test");
    assert_eq!(
        d[1..4],
        ["1", "4", other_bytes.to_string().as_str()],
        "{out}"
    );
    assert_eq!(
        cluster_line(&out),
        format!(
            "cluster: domains=2 mailboxes=3 messages=9 bytes={} mailboxes-near-quota=0 domains-near-quota=0 queue-entries=0 queue-recipients=0",
            example_bytes + other_bytes
        )
    );

    // Quota use: alice at 100 % of her own quota, other.test at 50 % of its pool.
    let alice_bytes = per[0].1.to_string();
    c.ctl_ok(&["quota", "set", "alice@example.test", &alice_bytes], None);
    let pool = (2 * other_bytes).to_string();
    c.ctl_ok(&["quota", "set", "--domain", "other.test", &pool], None);
    let out = c.ctl_ok(&["stat", "--summary"], None);
    assert!(
        !out.contains("alice@"),
        "--summary has no mailbox lines: {out}"
    );
    let d = row(&out, "example.test");
    assert_eq!((d[4], d[5], d[6]), ("unlimited", "-", "1"), "{out}");
    let d = row(&out, "other.test");
    assert_eq!((d[4], d[5], d[6]), (pool.as_str(), "50%", "0"), "{out}");
    assert!(
        cluster_line(&out).contains("mailboxes-near-quota=1 domains-near-quota=0 queue-entries=0"),
        "{out}"
    );

    let out = c.ctl(&["stat", "nosuch.test"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown domain nosuch.test"));
}
