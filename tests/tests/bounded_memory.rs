//! Issue 9: bodies are streamed with bounded memory. A client that pipelines RETR of 100 x 1 MB
//! and reads slowly gets every byte intact while the front-end's RSS stays small; DATA over the
//! node's in-flight budget is answered 452 4.3.1 and the node keeps serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mailroot_tests::{SmtpClient, TestCluster};

const MESSAGES: usize = 100;
const MESSAGE_SIZE: usize = 1024 * 1024;
const RSS_LIMIT_KB: u64 = 64 * 1024;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A 1 MB message whose every line says which message and line it is; some lines start with
/// a dot, so that stuffing is exercised.
fn message(n: usize) -> Vec<u8> {
    let mut m = format!("Subject: message {n}\r\n\r\n").into_bytes();
    let mut line = 0;
    while m.len() < MESSAGE_SIZE {
        let text = if line % 97 == 0 {
            format!(".message {n} line {line} starts with a dot\r\n")
        } else {
            format!("message {n} line {line} {}\r\n", "x".repeat(40))
        };
        m.extend_from_slice(text.as_bytes());
        line += 1;
    }
    m
}

/// Reads one RETR response from `buf` at `at`: ("+OK ..." line, unstuffed body, next offset).
fn parse_response(buf: &[u8], mut at: usize) -> (String, Vec<u8>, usize) {
    let eol = at + buf[at..].windows(2).position(|w| w == b"\r\n").unwrap();
    let first = String::from_utf8_lossy(&buf[at..eol]).into_owned();
    at = eol + 2;
    let mut body = Vec::new();
    loop {
        let end = at + buf[at..].windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        let line = &buf[at..end];
        at = end;
        if line == b".\r\n" {
            return (first, body, at);
        }
        body.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
}

#[test]
fn pipelined_retr_of_100_megabytes_read_slowly_keeps_the_front_end_small() {
    let c = TestCluster::with_mailboxes(1, &["alice"]);
    let fe = c.fe(0);
    let mut smtp = SmtpClient::connect(fe.smtp).unwrap();
    let sent: Vec<Vec<u8>> = (0..MESSAGES).map(message).collect();
    for m in &sent {
        let r = smtp
            .send_mail("sender@remote.test", &["alice@example.test"], m)
            .unwrap();
        assert!(r.starts_with("250"), "{r}");
        assert!(smtp.cmd("RSET").unwrap().starts_with("250"));
    }
    let pid = fe.proc.child.id();
    let before = rss_kb(pid);

    // Raw socket: every RETR in one write, then read in small, slow pieces.
    let mut s = TcpStream::connect(fe.pop3).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut commands = String::from("USER alice@example.test\r\nPASS pw-alice\r\n");
    for n in 1..=MESSAGES {
        commands.push_str(&format!("RETR {n}\r\n"));
    }
    commands.push_str("QUIT\r\n");
    let mut received = Vec::with_capacity(MESSAGES * (MESSAGE_SIZE + 4096));
    let mut piece = [0u8; 16 * 1024];
    s.write_all(commands.as_bytes()).unwrap();
    let mut peak = 0;
    let mut reads = 0u64;
    loop {
        match s.read(&mut piece) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&piece[..n]),
            Err(e) => panic!("read: {e}"),
        }
        reads += 1;
        if reads.is_multiple_of(64) {
            peak = peak.max(rss_kb(pid));
            // A slow reader: the front-end must wait for it, not buffer for it.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    peak = peak.max(rss_kb(pid));
    eprintln!("front-end RSS: {before} kB before, peak {peak} kB while serving 100 MB");
    assert!(
        peak < RSS_LIMIT_KB,
        "front-end RSS peaked at {peak} kB (limit {RSS_LIMIT_KB} kB)"
    );

    let text_start = String::from_utf8_lossy(&received[..200.min(received.len())]).into_owned();
    assert!(text_start.starts_with("+OK"), "{text_start}");
    // Banner, USER, PASS lines, then the responses.
    let mut at = 0;
    for _ in 0..3 {
        at += received[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap()
            + 2;
    }
    for (n, m) in sent.iter().enumerate() {
        let (first, body, next) = parse_response(&received, at);
        at = next;
        assert!(first.starts_with("+OK"), "RETR {}: {first}", n + 1);
        let octets: usize = first
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert_eq!(body.len(), octets, "RETR {}: size", n + 1);
        // The stored message is the sent one with trace fields in front.
        assert!(body.ends_with(m), "RETR {}: bytes differ", n + 1);
    }
    let rest = String::from_utf8_lossy(&received[at..]).into_owned();
    assert!(rest.starts_with("+OK"), "QUIT: {rest}");
}

#[test]
fn data_over_the_in_flight_budget_gets_452_and_the_node_keeps_serving() {
    let c = TestCluster::with_mailboxes(0, &["alice"]);
    let fe = c.start_frontend_with(&c.auth_guid, &["--max-inflight-bytes", "1048576"]);
    let mut smtp = SmtpClient::connect(fe.smtp).unwrap();
    let big = vec![b'y'; 70]
        .into_iter()
        .chain(*b"\r\n")
        .cycle()
        .take(72 * 44_000)
        .collect::<Vec<u8>>();
    let r = smtp
        .send_mail("sender@remote.test", &["alice@example.test"], &big)
        .unwrap();
    assert!(r.starts_with("452 4.3.1"), "{r}");
    // Same connection, a message that fits: accepted.
    assert!(smtp.cmd("RSET").unwrap().starts_with("250"));
    let r = smtp
        .send_mail(
            "sender@remote.test",
            &["alice@example.test"],
            b"Subject: small\r\n\r\nfits\r\n",
        )
        .unwrap();
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(c.stat("alice@example.test").0, 1);
}
