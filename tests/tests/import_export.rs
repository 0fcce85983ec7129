//! Import of existing mail stores and export to maildir, with the real binaries: a Windows
//! POP3 service store, maildirs and mbox files imported with `mailrootctl import` come back
//! byte for byte over POP3 from two front-ends; an import run again (or after it was killed)
//! adds nothing twice; quotas are skipped or exceeded as asked; `mailrootctl export` into a
//! second cluster gives the same messages with the same UIDLs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use mailroot_tests::clients::{Pop3Client, SmtpClient};
use mailroot_tests::{TestCluster, eventually};

/// A message with everything that must survive: 8-bit octets, lines starting with a dot, a
/// lone "." line, "..", CRLF line ends.
fn message(tag: &str, i: usize, pad: usize) -> Vec<u8> {
    let mut m = format!(
        "From: sender@remote.test\r\nTo: someone\r\nSubject: {tag} {i}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(b"caf\xe9 na\xefve \xff\xfe\x80\r\n.leading dot\r\n.\r\n..two dots\r\n");
    m.extend_from_slice(&vec![b'x'; pad]);
    m.extend_from_slice(b"\r\nlast line\r\n");
    m
}

/// Writes `DIR/<domain>/P3_<local>.mbx/P3<n>.eml`, each file one minute newer than the one
/// before (the order the service received them).
fn write_winpop(root: &Path, mailboxes: &[(&str, &str, Vec<Vec<u8>>)]) {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_100_000_000);
    let mut n = 0u64;
    for (domain, local, messages) in mailboxes {
        let dir = root.join(domain).join(format!("P3_{local}.mbx"));
        std::fs::create_dir_all(&dir).unwrap();
        for m in messages {
            n += 1;
            let path = dir.join(format!("P3{}.eml", 47865 + n));
            std::fs::write(&path, m).unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(start + Duration::from_secs(60 * n)).unwrap();
        }
    }
}

/// The `import:` / `export:` summary line's counts.
fn summary(out: &str, prefix: &str) -> HashMap<String, u64> {
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} line in {out}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

fn import(cluster: &TestCluster, args: &[&str]) -> HashMap<String, u64> {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    summary(&cluster.ctl_ok(&all, None), "import:")
}

fn counts(s: &HashMap<String, u64>) -> [u64; 5] {
    [
        "imported",
        "already-present",
        "skipped-over-quota",
        "imported-over-quota",
        "failed",
    ]
    .map(|k| s[k])
}

/// Every message of a maildrop as (UIDL, bytes), in POP3 order.
fn retrieve_all(pop3: SocketAddr, user: &str, password: &str) -> Vec<(String, Vec<u8>)> {
    let mut c = Pop3Client::connect(pop3).unwrap();
    let r = c.login(user, password).unwrap();
    assert!(r.starts_with("+OK"), "login {user}: {r}");
    let uidls = c.uidl().unwrap();
    let all = uidls
        .into_iter()
        .map(|(n, u)| (u, c.retr(n).unwrap()))
        .collect();
    assert!(c.cmd("QUIT").unwrap().starts_with("+OK"));
    all
}

fn bodies(all: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
    all.iter().map(|(_, b)| b.clone()).collect()
}

fn set_password(cluster: &TestCluster, address: &str, password: &str) {
    cluster.ctl_ok(
        &["mailbox", "passwd", address, "--password-stdin"],
        Some(&format!("{password}\n")),
    );
}

fn login_reply(pop3: SocketAddr, user: &str, password: &str) -> String {
    let mut c = Pop3Client::connect(pop3).unwrap();
    c.login(user, password).unwrap()
}

#[test]
fn winpop_store_is_imported_byte_exact_once_and_served_by_both_front_ends() {
    let cluster = TestCluster::start(2);
    let dir = tempfile::tempdir().unwrap();
    let alice: Vec<Vec<u8>> = (0..3).map(|i| message("alice", i, 100)).collect();
    let bob: Vec<Vec<u8>> = (0..2).map(|i| message("bob", i, 10)).collect();
    let carol: Vec<Vec<u8>> = (0..2).map(|i| message("carol", i, 5000)).collect();
    write_winpop(
        dir.path(),
        &[
            ("example.com", "alice", alice.clone()),
            ("example.com", "bob", bob.clone()),
            ("example.com", "empty", vec![]),
            ("other.test", "carol", carol.clone()),
        ],
    );
    let src = dir.path().to_str().unwrap();
    let out = cluster.ctl_ok(&["import", "winpop", src], None);
    assert!(out.contains("domain other.test added"), "{out}");
    assert!(
        out.contains("mailbox alice@example.com added without a password"),
        "{out}"
    );
    assert_eq!(counts(&summary(&out, "import:")), [7, 0, 0, 0, 0], "{out}");
    let total: usize = alice.iter().chain(&bob).chain(&carol).map(Vec::len).sum();
    assert_eq!(summary(&out, "import:")["bytes"], total as u64);

    // No password yet: the mailbox takes mail, nobody logs in (not even with an empty one).
    let pop3 = cluster.fe(0).pop3;
    assert!(login_reply(pop3, "alice@example.com", "x").starts_with("-ERR"));
    assert!(login_reply(pop3, "alice@example.com", "").starts_with("-ERR"));
    for (addr, pw) in [
        ("alice@example.com", "pw-a"),
        ("bob@example.com", "pw-b"),
        ("empty@example.com", "pw-e"),
        ("carol@other.test", "pw-c"),
    ] {
        set_password(&cluster, addr, pw);
    }

    let mut seen = Vec::new();
    for fe in 0..2 {
        let pop3 = cluster.fe(fe).pop3;
        let a = retrieve_all(pop3, "alice@example.com", "pw-a");
        // Byte for byte, in the order the service received them.
        assert_eq!(bodies(&a), alice, "front-end {fe}");
        assert_eq!(bodies(&retrieve_all(pop3, "bob@example.com", "pw-b")), bob);
        assert_eq!(
            bodies(&retrieve_all(pop3, "carol@other.test", "pw-c")),
            carol
        );
        assert!(retrieve_all(pop3, "empty@example.com", "pw-e").is_empty());
        seen.push(a);
    }
    assert_eq!(seen[0], seen[1], "same UIDLs on both front-ends");

    // Run again: nothing twice.
    let again = import(&cluster, &["winpop", src]);
    assert_eq!(counts(&again), [0, 7, 0, 0, 0]);
    assert_eq!(again["bytes"], 0);
    assert_eq!(cluster.stat("alice@example.com").0, 3);
    assert_eq!(
        retrieve_all(cluster.fe(1).pop3, "alice@example.com", "pw-a"),
        seen[0]
    );
}

#[test]
fn an_interrupted_import_run_again_completes_without_duplicates() {
    let cluster = TestCluster::start(1);
    // A subset first (the same layout, fewer files), then the whole store.
    let whole = tempfile::tempdir().unwrap();
    let part = tempfile::tempdir().unwrap();
    let msgs: Vec<Vec<u8>> = (0..6).map(|i| message("dave", i, 50)).collect();
    write_winpop(whole.path(), &[("example.com", "dave", msgs.clone())]);
    write_winpop(part.path(), &[("example.com", "dave", msgs[..2].to_vec())]);
    let first = import(&cluster, &["winpop", part.path().to_str().unwrap()]);
    assert_eq!(counts(&first), [2, 0, 0, 0, 0]);
    let rest = import(&cluster, &["winpop", whole.path().to_str().unwrap()]);
    assert_eq!(counts(&rest), [4, 2, 0, 0, 0]);
    set_password(&cluster, "dave@example.com", "pw");
    assert_eq!(
        bodies(&retrieve_all(cluster.fe(0).pop3, "dave@example.com", "pw")),
        msgs
    );

    // A bigger store, and mailrootctl killed (SIGKILL) once the import is under way.
    let big = tempfile::tempdir().unwrap();
    let many: Vec<Vec<u8>> = (0..400).map(|i| message("erin", i, 2000)).collect();
    write_winpop(big.path(), &[("example.com", "erin", many.clone())]);
    let mut child = cluster
        .ctl_command()
        .args(["import", "winpop", big.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stored_before_kill = eventually("the import is under way", Duration::from_secs(30), || {
        let out = cluster.ctl(&["stat", "erin@example.com"], None);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let n: u64 = text
            .lines()
            .find(|l| l.starts_with("erin@example.com"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (n > 0).then_some(n)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let after = cluster.stat("erin@example.com").0;
    eprintln!("killed after {stored_before_kill}+ of 400 messages (stat then: {after})");
    let resumed = import(&cluster, &["winpop", big.path().to_str().unwrap()]);
    let c = counts(&resumed);
    assert_eq!(c[0] + c[1], 400, "{resumed:?}");
    // (A write the store had begun when the client died may finish after the stat above.)
    assert!(
        c[1] >= after && after > 0,
        "every message stored before the kill is already present: {resumed:?}, {after}"
    );
    assert_eq!(c[4], 0);
    set_password(&cluster, "erin@example.com", "pw");
    let got = retrieve_all(cluster.fe(0).pop3, "erin@example.com", "pw");
    assert_eq!(bodies(&got), many, "each message once, in order");
}

#[test]
fn maildir_and_mbox_imports_are_byte_exact_and_idempotent() {
    let cluster = TestCluster::start(2);
    let dir = tempfile::tempdir().unwrap();
    // A Dovecot-style maildir: LF line ends (made CRLF), one CRLF file, flags in cur/, a
    // subfolder (left out), tmp/ (never read).
    let md = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    let lf = b"Subject: lf\n\ncaf\xe9\n.\n..x\n".to_vec();
    let crlf = message("crlf", 0, 10);
    std::fs::write(md.join("cur/1600000001.M1P1.host:2,S"), &lf).unwrap();
    std::fs::write(md.join("new/1600000002.M1P1.host"), &crlf).unwrap();
    // Larger than a default gRPC message (4 MiB): the body is streamed in chunks.
    let big = message("big", 0, 6 << 20);
    std::fs::write(md.join("new/1600000004.M1P1.host"), &big).unwrap();
    std::fs::write(md.join("tmp/1600000003.M1P1.host"), b"partial").unwrap();
    std::fs::write(md.join(".Sent/cur/1600000000.M1P1.host:2,S"), b"sent\n").unwrap();
    cluster.ctl_ok(&["domain", "add", "example.com"], None);
    cluster.add_mailbox("frank@example.com", "pw-f");
    let out = cluster.ctl(
        &[
            "import",
            "maildir",
            md.to_str().unwrap(),
            "frank@example.com",
        ],
        None,
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(".Sent"),
        "the left-out folder is named: {stderr}"
    );
    let s = summary(&String::from_utf8_lossy(&out.stdout), "import:");
    assert_eq!(counts(&s), [3, 0, 0, 0, 0]);
    let expected_md = vec![
        b"Subject: lf\r\n\r\ncaf\xe9\r\n.\r\n..x\r\n".to_vec(),
        crlf,
        big,
    ];
    for fe in 0..2 {
        let got = retrieve_all(cluster.fe(fe).pop3, "frank@example.com", "pw-f");
        assert_eq!(bodies(&got), expected_md);
    }
    let md_arg = md.to_str().unwrap();
    assert_eq!(
        counts(&import(&cluster, &["maildir", md_arg, "frank@example.com"])),
        [0, 3, 0, 0, 0]
    );
    // --folders flattens the subfolder into the maildrop (and the rest is already there).
    assert_eq!(
        counts(&import(
            &cluster,
            &["maildir", md_arg, "frank@example.com", "--folders"]
        )),
        [1, 3, 0, 0, 0]
    );

    // mboxrd: `>From ` lines lose one `>`; a new mailbox is made for it.
    let mbox = dir.path().join("mail.mbox");
    std::fs::write(
        &mbox,
        b"From alice@x Tue Mar  5 12:00:00 2024\nSubject: one\n\n>From the start\n>>From quoted\n.\n\n\
          From bob@x Tue Mar  5 12:00:00 2024\nSubject: two\n\n\xe9t\xe9\n\n\
          From carol@x Wed Mar  6 08:00:00 2024\nSubject: three\n\nbody\nFrom inside, no blank before: kept\n",
    )
    .unwrap();
    let s = import(
        &cluster,
        &["mbox", mbox.to_str().unwrap(), "gina@example.com"],
    );
    assert_eq!(counts(&s), [3, 0, 0, 0, 0]);
    set_password(&cluster, "gina@example.com", "pw-g");
    let expected_mbox: Vec<Vec<u8>> = vec![
        b"Subject: one\r\n\r\nFrom the start\r\n>From quoted\r\n.\r\n".to_vec(),
        b"Subject: two\r\n\r\n\xe9t\xe9\r\n".to_vec(),
        b"Subject: three\r\n\r\nbody\r\nFrom inside, no blank before: kept\r\n".to_vec(),
    ];
    for fe in 0..2 {
        let got = retrieve_all(cluster.fe(fe).pop3, "gina@example.com", "pw-g");
        assert_eq!(bodies(&got), expected_mbox);
    }
    let again = import(
        &cluster,
        &["mbox", mbox.to_str().unwrap(), "gina@example.com"],
    );
    assert_eq!(counts(&again), [0, 3, 0, 0, 0]);
    assert_eq!(cluster.stat("gina@example.com").0, 3);
}

#[test]
fn over_quota_messages_are_skipped_or_allowed_as_asked() {
    let cluster = TestCluster::start(1);
    cluster.ctl_ok(&["domain", "add", "example.com"], None);
    cluster.add_mailbox("hank@example.com", "pw-h");
    cluster.ctl_ok(&["quota", "set", "hank@example.com", "10KB"], None);
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("md");
    std::fs::create_dir_all(md.join("new")).unwrap();
    let msgs: Vec<Vec<u8>> = (0..5).map(|i| message("hank", i, 2700)).collect();
    for (i, m) in msgs.iter().enumerate() {
        assert!(m.len() > 2800 && m.len() < 3000);
        std::fs::write(md.join(format!("new/{}.M0P0.h", 1_600_000_000 + i)), m).unwrap();
    }
    let md_arg = md.to_str().unwrap();
    // Three fit in 10240 octets; the other two are skipped and reported, not an error.
    let out = cluster.ctl(&["import", "maildir", md_arg, "hank@example.com"], None);
    assert!(out.status.success());
    let s = summary(&String::from_utf8_lossy(&out.stdout), "import:");
    assert_eq!(counts(&s), [3, 0, 2, 0, 0]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("over quota, skipped"));
    assert_eq!(cluster.stat("hank@example.com").0, 3);
    let got = retrieve_all(cluster.fe(0).pop3, "hank@example.com", "pw-h");
    assert_eq!(bodies(&got), msgs[..3].to_vec());

    // allow: the two come in beyond the quota, reported; the three are there already.
    let s = import(
        &cluster,
        &["maildir", md_arg, "hank@example.com", "--over-quota=allow"],
    );
    assert_eq!(counts(&s), [0, 3, 0, 2, 0]);
    let (n, bytes) = cluster.stat("hank@example.com");
    assert_eq!(n, 5);
    assert!(bytes > 10 * 1024, "beyond the quota: {bytes}");
    let got = retrieve_all(cluster.fe(0).pop3, "hank@example.com", "pw-h");
    assert_eq!(bodies(&got), msgs);
}

#[test]
fn export_then_import_into_a_second_cluster_keeps_bytes_and_uidls() {
    let a = TestCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    write_winpop(
        dir.path(),
        &[
            (
                "example.com",
                "ivan",
                (0..3).map(|i| message("ivan", i, 40)).collect(),
            ),
            (
                "example.com",
                "judy",
                (0..2).map(|i| message("judy", i, 40)).collect(),
            ),
        ],
    );
    import(&a, &["winpop", dir.path().to_str().unwrap()]);
    set_password(&a, "ivan@example.com", "pw-i");
    set_password(&a, "judy@example.com", "pw-j");
    // And a message delivered over SMTP (a UUIDv7 UIDL of its own).
    let mut smtp = SmtpClient::connect(a.fe(0).smtp).unwrap();
    let r = smtp
        .send_mail(
            "x@remote.test",
            &["ivan@example.com"],
            b"Subject: smtp\r\n\r\n.dot\r\n",
        )
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    let ivan_a = retrieve_all(a.fe(0).pop3, "ivan@example.com", "pw-i");
    let judy_a = retrieve_all(a.fe(0).pop3, "judy@example.com", "pw-j");
    assert_eq!(ivan_a.len(), 4);

    // A POP3 session holds ivan's maildrop meanwhile: export takes no lease.
    let mut session = Pop3Client::connect(a.fe(0).pop3).unwrap();
    assert!(
        session
            .login("ivan@example.com", "pw-i")
            .unwrap()
            .starts_with("+OK")
    );
    let out_dir = tempfile::tempdir().unwrap();
    let out = a.ctl_ok(
        &["export", "example.com", out_dir.path().to_str().unwrap()],
        None,
    );
    let s = summary(&out, "export:");
    assert_eq!((s["mailboxes"], s["messages"]), (2, 6), "{out}");
    assert!(session.cmd("QUIT").unwrap().starts_with("+OK"));
    let ivan_dir = out_dir.path().join("ivan@example.com");
    for sub in ["cur", "new", "tmp"] {
        assert!(ivan_dir.join(sub).is_dir());
    }
    // Exported again into the same directory: the same files, not twice as many.
    a.ctl_ok(
        &[
            "export",
            "ivan@example.com",
            out_dir.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(std::fs::read_dir(ivan_dir.join("new")).unwrap().count(), 4);

    let b = TestCluster::start(1);
    for (addr, pw) in [("ivan@example.com", "pw-i"), ("judy@example.com", "pw-j")] {
        let md = out_dir.path().join(addr);
        let s = import(&b, &["maildir", md.to_str().unwrap(), addr]);
        assert_eq!(s["failed"], 0);
        assert_eq!(s["imported"], if addr.starts_with("ivan") { 4 } else { 2 });
        set_password(&b, addr, pw);
    }
    // Same bytes, same UIDLs, same order.
    assert_eq!(
        retrieve_all(b.fe(0).pop3, "ivan@example.com", "pw-i"),
        ivan_a
    );
    assert_eq!(
        retrieve_all(b.fe(0).pop3, "judy@example.com", "pw-j"),
        judy_a
    );
    // Importing the export again adds nothing.
    let md = out_dir.path().join("ivan@example.com");
    let again = import(&b, &["maildir", md.to_str().unwrap(), "ivan@example.com"]);
    assert_eq!(counts(&again), [0, 4, 0, 0, 0]);
    // And into the first cluster, where the messages came from: already there by UIDL.
    let home = import(&a, &["maildir", md.to_str().unwrap(), "ivan@example.com"]);
    assert_eq!(counts(&home), [0, 4, 0, 0, 0]);
}
