//! Issue 12 (log level): `mailrootctl config set log-level N` is live on every node — the
//! store and every running front-end — within a second, and `--log-format json` writes one
//! JSON object per line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mailroot_tests::{Pop3Client, SmtpClient, TestCluster, eventually};

const ALICE: &str = "alice@example.test";
const RULE: &str = "log-level: use 0 (none), 1 (minimum), 2 (medium), 3 (maximum) or default";

fn log_len(path: &Path) -> usize {
    std::fs::metadata(path).map_or(0, |m| m.len() as usize)
}

/// What `path` got since it was `from` bytes long.
fn log_since(path: &Path, from: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(bytes.get(from..).unwrap_or_default()).into_owned()
}

fn has_line(text: &str, parts: &[&str]) -> bool {
    text.lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

/// A delivery to alice, a POP3 session that reads it, and a failed login, through `fe`.
fn traffic(c: &TestCluster, fe: usize) {
    let mut s = SmtpClient::connect(c.fe(fe).smtp).unwrap();
    let msg = b"Subject: t\r\n\r\nhello\r\n";
    let r = s.send_mail("x@remote.test", &[ALICE], msg).unwrap();
    assert!(r.starts_with("250"), "{r}");
    let _ = s.cmd("QUIT");
    let mut p = Pop3Client::connect(c.fe(fe).pop3).unwrap();
    assert!(p.login(ALICE, "pw-alice").unwrap().starts_with("+OK"));
    assert!(p.cmd("QUIT").unwrap().starts_with("+OK"));
    let mut p = Pop3Client::connect(c.fe(fe).pop3).unwrap();
    assert!(p.login(ALICE, "wrong").unwrap().starts_with("-ERR"));
}

/// The log of every node: the store, then the front-ends.
fn logs(c: &TestCluster) -> Vec<(String, PathBuf)> {
    let mut logs = vec![("store".to_string(), c.store.log.clone())];
    for (n, fe) in c.frontends.iter().enumerate() {
        logs.push((format!("front-end {n}"), fe.proc.log.clone()));
    }
    logs
}

#[test]
fn log_level_is_live_on_every_node_and_0_silences_them() {
    let c = TestCluster::with_mailboxes(2, &["alice"]);

    // Start-up filter (RUST_LOG unset: info): connections and deliveries log nothing at debug.
    let before: Vec<usize> = logs(&c).iter().map(|(_, p)| log_len(p)).collect();
    for fe in 0..2 {
        traffic(&c, fe);
    }
    // (Unless the test runs with a RUST_LOG of its own, which the nodes inherit.)
    let startup_info = std::env::var_os("RUST_LOG").is_none();
    for ((name, path), from) in logs(&c).iter().zip(&before) {
        let new = log_since(path, *from);
        assert!(
            !startup_info || !new.contains("DEBUG"),
            "{name} logged at debug before: {new}"
        );
    }

    // 3 (maximum): debug lines from both front-ends and the store within a second. Each
    // poll makes a front-end log "client connected" (a POP3 connection) and the store
    // "delivered" (a delivery), and looks at what the node wrote since.
    c.ctl_ok(&["config", "set", "log-level", "3"], None);
    let set = Instant::now();
    let mut pending: BTreeMap<String, PathBuf> = logs(&c).into_iter().collect();
    eventually(
        "debug lines from every node",
        Duration::from_secs(1),
        || {
            let marks: Vec<(String, usize)> = pending
                .iter()
                .map(|(name, path)| (name.clone(), log_len(path)))
                .collect();
            for fe in 0..2 {
                let _ = Pop3Client::connect(c.fe(fe).pop3);
            }
            let mut s = SmtpClient::connect(c.fe(0).smtp).ok()?;
            let _ = s.send_mail("x@remote.test", &[ALICE], b"Subject: d\r\n\r\nd\r\n");
            for (name, from) in marks {
                let new = log_since(&pending[&name], from);
                let wanted: &[&str] = if name == "store" {
                    &["DEBUG", "delivered"]
                } else {
                    &["DEBUG", "client connected"]
                };
                if has_line(&new, wanted) {
                    pending.remove(&name);
                }
            }
            pending.is_empty().then_some(())
        },
    );
    eprintln!("level 3 in force on every node after {:?}", set.elapsed());
    for (name, path) in logs(&c) {
        let text = log_since(&path, 0);
        assert!(
            has_line(&text, &["log level set cluster-wide", "level=3"]),
            "{name} did not announce level 3: {text}"
        );
    }

    // 0 (none): each node's last line announces it (written under the old filter); after
    // that, deliveries, POP3 sessions and a failed login add nothing to any log.
    c.ctl_ok(&["config", "set", "log-level", "0"], None);
    let set = Instant::now();
    let marks: Vec<(String, PathBuf, usize)> = eventually(
        "every node announces level 0",
        Duration::from_secs(1),
        || {
            let mut marks = Vec::new();
            for (name, path) in logs(&c) {
                let text = log_since(&path, 0);
                let (_, last) = text.rsplit_once("log level set cluster-wide")?;
                if !last.starts_with(" level=0") {
                    return None;
                }
                marks.push((name, path.clone(), log_len(&path)));
            }
            Some(marks)
        },
    );
    eprintln!("level 0 in force on every node after {:?}", set.elapsed());
    for fe in 0..2 {
        traffic(&c, fe);
        let _ = Pop3Client::connect(c.fe(fe).pop3);
    }
    for (name, path, len) in &marks {
        let new = log_since(path, *len);
        assert!(new.is_empty(), "{name} logged at level 0: {new}");
    }

    // default: back to each node's start-up filter (info), announced again.
    c.ctl_ok(&["config", "set", "log-level", "default"], None);
    for (name, path) in logs(&c) {
        eventually(
            &format!("{name} back to its start-up filter"),
            Duration::from_secs(1),
            || has_line(&log_since(&path, 0), &["log level cleared"]).then_some(()),
        );
    }
    let mark = log_len(&c.fe(0).proc.log);
    let _ = Pop3Client::connect(c.fe(0).pop3).unwrap();
    traffic(&c, 0);
    let new = log_since(&c.fe(0).proc.log, mark);
    assert!(
        !startup_info || !new.contains("DEBUG"),
        "debug after default: {new}"
    );
}

#[test]
fn invalid_log_levels_are_refused_with_the_rule() {
    let c = TestCluster::start(0);
    for bad in ["7", "4", "loud", "1.5", ""] {
        let out = c.ctl(&["config", "set", "log-level", bad], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad:?} accepted");
        assert!(err.contains(RULE), "{bad:?}: {err}");
    }
    let show = c.ctl_ok(&["config", "show"], None);
    assert!(show.contains("log-level: default"), "{show}");
    c.ctl_ok(&["config", "set", "log-level", "2"], None);
    let show = c.ctl_ok(&["config", "show"], None);
    assert!(show.contains("log-level: 2 (medium)"), "{show}");
    c.ctl_ok(&["config", "set", "log-level", "maximum"], None);
    let show = c.ctl_ok(&["config", "show"], None);
    assert!(show.contains("log-level: 3 (maximum)"), "{show}");
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let c = TestCluster::start(0);
    let fe = c.start_frontend_with(&c.auth_guid, &["--log-format", "json"]);
    let text = eventually(
        "the front-end's start-up lines",
        Duration::from_secs(5),
        || {
            let text = fe.proc.log_text();
            text.contains("front-end listening").then_some(text)
        },
    );
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not a JSON object: {line}"
        );
    }
    assert!(text.contains(r#""level":"INFO""#), "{text}");
    assert!(
        text.contains(r#""message":"front-end listening""#),
        "{text}"
    );
    assert!(text.contains(r#""target":"mailroot_frontend""#), "{text}");
}
