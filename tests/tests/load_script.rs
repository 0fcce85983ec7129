//! `tests/load.sh` (the load command for users) against a real store and front-end: a short,
//! bounded run of all three phases (smtp-source, postal, rabid) must send and retrieve mail
//! with no error, and end with its machine-readable `LOAD_SUMMARY` line.
//! The tools come from Debian packages (`tests/install-load-tools.sh`). Without them this test
//! SKIPs loudly, unless MAILROOT_REQUIRE_CLIENTS=1, where a missing tool is a failure.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use mailroot_tests::{DOMAIN, TestCluster};

const USERS: usize = 6;
const PASSWORD: &str = "pw-load";
const MESSAGES: u64 = 40;

fn load_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("load.sh")
}

/// Like `have_client`, for the load tools (some live in /usr/sbin, which `load.sh` knows).
fn have_load_tools() -> bool {
    let out = Command::new(load_script())
        .arg("--check-tools")
        .output()
        .expect("run tests/load.sh --check-tools");
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(
            std::env::var("MAILROOT_REQUIRE_CLIENTS").as_deref() != Ok("1"),
            "the load tools are required (MAILROOT_REQUIRE_CLIENTS=1) but missing:\n{why}"
        );
        eprintln!("SKIP: the load tools are not installed; run tests/install-load-tools.sh\n{why}");
    }
    out.status.success()
}

/// The `key=value` pairs of the `LOAD_SUMMARY` line.
fn summary(stdout: &str) -> HashMap<String, String> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("LOAD_SUMMARY "))
        .unwrap_or_else(|| panic!("no LOAD_SUMMARY line in:\n{stdout}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn number(s: &HashMap<String, String>, key: &str) -> f64 {
    s.get(key)
        .unwrap_or_else(|| panic!("no {key}= in the summary {s:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key}= is not a number in {s:?}"))
}

#[test]
fn load_script_sends_and_retrieves_without_errors() {
    if !have_load_tools() {
        return;
    }
    let c = TestCluster::start(1);
    c.ctl_ok(&["domain", "add", DOMAIN], None);
    for i in 0..USERS {
        c.add_mailbox(&format!("load{i}@{DOMAIN}"), PASSWORD);
    }
    let fe = c.fe(0);
    let out = Command::new(load_script())
        .arg(fe.smtp.to_string())
        .arg(fe.pop3.to_string())
        .args(["--messages", &MESSAGES.to_string()])
        // The front-end's per-IP connection limit: stay well below it.
        .args(["--concurrency", "3"])
        .args(["--size", "2k"])
        .args(["--users", &format!("load0..load{}@{DOMAIN}", USERS - 1)])
        .args(["--password", PASSWORD])
        .args(["--session-seconds", "2"])
        .args(["--duration", "30"])
        .output()
        .expect("run tests/load.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/load.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let s = summary(&stdout);
    assert_eq!(number(&s, "errors"), 0.0, "{stdout}");
    assert_eq!(number(&s, "smtp_sent"), MESSAGES as f64, "{stdout}");
    assert_eq!(number(&s, "smtp_errors"), 0.0, "{stdout}");
    assert!(number(&s, "smtp_msgs_per_s") > 0.0, "{stdout}");
    assert!(number(&s, "smtp_p50_ms") > 0.0, "{stdout}");
    assert!(number(&s, "postal_msgs") > 0.0, "{stdout}");
    assert_eq!(number(&s, "postal_errors"), 0.0, "{stdout}");
    assert!(number(&s, "pop3_sessions") > 0.0, "{stdout}");
    assert!(number(&s, "pop3_retrieved") > 0.0, "{stdout}");
    assert_eq!(number(&s, "pop3_errors"), 0.0, "{stdout}");
    eprintln!("{stdout}");
}
