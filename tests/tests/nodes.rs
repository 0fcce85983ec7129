//! Issue 12 (nodes): `mailrootctl nodes` lists the running front-ends as the store sees them,
//! with their session counts, and forgets one that was killed.

use std::time::Duration;

use mailroot_tests::{Pop3Client, SmtpClient, TestCluster, eventually};

#[derive(Debug, Clone)]
struct Row {
    id: String,
    hostname: String,
    version: String,
    peer: String,
    pop3: u32,
    smtp: u32,
    since: String,
    listeners: String,
}

/// `mailrootctl nodes`, one row per front-end (the columns are single words).
fn nodes(c: &TestCluster) -> Vec<Row> {
    let out = c.ctl_ok(&["nodes"], None);
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("NODE-ID"), "{out}");
    let rows: Vec<Row> = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.len() == 9)
        .map(|cols| Row {
            id: cols[0].into(),
            hostname: cols[1].into(),
            version: cols[2].into(),
            peer: cols[3].into(),
            pop3: cols[4].parse().expect("POP3 column"),
            smtp: cols[5].parse().expect("SMTP column"),
            since: cols[6].into(),
            listeners: cols[8].into(),
        })
        .collect();
    let noun = if rows.len() == 1 {
        "front-end"
    } else {
        "front-ends"
    };
    assert!(out.contains(&format!("{} {noun}", rows.len())), "{out}");
    rows
}

/// The row of the front-end whose POP3 listener is `fe`'s.
fn row_of(rows: &[Row], c: &TestCluster, fe: usize) -> Option<Row> {
    let pop3 = format!("pop3={}", c.fe(fe).pop3);
    rows.iter()
        .find(|r| r.listeners.split(',').any(|l| l == pop3))
        .cloned()
}

/// Polls until every front-end `0..n` shows `(pop3, smtp)` sessions as `want(fe)` says.
fn sessions_become(c: &TestCluster, what: &str, want: impl Fn(usize) -> (u32, u32)) {
    eventually(what, Duration::from_secs(3), || {
        let rows = nodes(c);
        (0..c.frontends.len())
            .all(|fe| row_of(&rows, c, fe).is_some_and(|r| (r.pop3, r.smtp) == want(fe)))
            .then_some(())
    });
}

#[test]
fn nodes_lists_the_live_frontends_with_their_sessions() {
    let mut c = TestCluster::with_mailboxes(3, &["alice"]);
    let rows = eventually("3 front-ends listed", Duration::from_secs(5), || {
        let rows = nodes(&c);
        (rows.len() == 3).then_some(rows)
    });
    let mut ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "node ids are distinct: {rows:?}");
    for r in &rows {
        // Same host name for all three: the node id tells them apart.
        assert_eq!(r.hostname, "mx.example.test");
        assert_eq!(r.version, env!("CARGO_PKG_VERSION"));
        assert!(r.peer.starts_with("127.0.0.1:"), "{r:?}");
        assert!(r.since.ends_with('Z') && r.since.len() == 20, "{r:?}");
    }
    for fe in 0..3 {
        assert!(row_of(&rows, &c, fe).is_some(), "front-end {fe}: {rows:?}");
    }
    sessions_become(&c, "no sessions anywhere", |_| (0, 0));

    // A POP3 session on front-end 1 counts there, and only there, while it is open.
    let mut pop = Pop3Client::connect(c.fe(1).pop3).unwrap();
    assert!(
        pop.login("alice@example.test", "pw-alice")
            .unwrap()
            .starts_with("+OK")
    );
    sessions_become(&c, "the POP3 session counted on front-end 1", |fe| {
        (u32::from(fe == 1), 0)
    });
    // An SMTP connection on front-end 0 is counted apart.
    let smtp = SmtpClient::connect(c.fe(0).smtp).unwrap();
    sessions_become(&c, "the SMTP session counted on front-end 0", |fe| {
        (u32::from(fe == 1), u32::from(fe == 0))
    });
    assert!(pop.cmd("QUIT").unwrap().starts_with("+OK"));
    drop(pop);
    drop(smtp);
    sessions_become(&c, "sessions closed", |_| (0, 0));

    // kill -9: the front-end's connection closes, and with it its settings stream.
    let killed = row_of(&nodes(&c), &c, 2).expect("front-end 2 listed").id;
    c.frontends[2].proc.kill();
    let rows = eventually(
        "the killed front-end leaves the list",
        Duration::from_secs(5),
        || {
            let rows = nodes(&c);
            (rows.len() == 2 && rows.iter().all(|r| r.id != killed)).then_some(rows)
        },
    );
    for fe in 0..2 {
        assert!(row_of(&rows, &c, fe).is_some(), "front-end {fe}: {rows:?}");
    }

    // --node-id names a node; it joins the list.
    let named = c.start_frontend_with(&c.auth_guid, &["--node-id", "edge-7"]);
    let pop3 = format!("pop3={}", named.pop3);
    eventually("the named front-end listed", Duration::from_secs(5), || {
        let rows = nodes(&c);
        (rows.len() == 3
            && rows
                .iter()
                .any(|r| r.id == "edge-7" && r.listeners.split(',').any(|l| l == pop3)))
        .then_some(())
    });
}

#[test]
fn a_bad_node_id_is_refused_at_start() {
    let c = TestCluster::start(0);
    let out = c
        .frontend_command(&c.auth_guid)
        .args(["--node-id", "has space"])
        .output()
        .expect("run the front-end");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--node-id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
