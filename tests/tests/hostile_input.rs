//! Issue 5: hostile input against a running front-end. Every case gets a clear protocol error,
//! nothing is stored, and the node keeps serving: a normal session succeeds afterwards.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mailroot_tests::{Pop3Client, SmtpClient, TestCluster};

/// Sends `input` after the banner and reads until `expect` shows up (or the server closes /
/// the deadline passes); returns everything read.
fn exchange(addr: SocketAddr, input: &[u8], expect: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut seen = Vec::new();
    // Writes may fail once the server gave up on us; what it said is what counts.
    let _ = s.write_all(input);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
        if String::from_utf8_lossy(&seen).contains(expect) {
            break;
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn big(n: usize) -> String {
    "x".repeat(n)
}

#[test]
fn hostile_smtp_and_pop3_input_table() {
    let c = TestCluster::with_mailboxes(1, &["alice"]);
    let smtp = c.fe(0).smtp;
    let pop3 = c.fe(0).pop3;
    let start = "EHLO h\r\nMAIL FROM:<b@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n";
    let mut many_rcpt = String::from("EHLO h\r\nMAIL FROM:<b@remote.test>\r\n");
    for _ in 0..101 {
        many_rcpt.push_str("RCPT TO:<alice@example.test>\r\n");
    }
    let mut oversized = String::from(start);
    oversized.push_str(&format!("{}\r\n", big(998)).repeat(26 * 1024));
    oversized.push_str(".\r\n");
    let cases: Vec<(&str, SocketAddr, Vec<u8>, &str)> = vec![
        ("command line over 1000 octets", smtp, format!("NOOP {}\r\nNOOP\r\n", big(1200)).into_bytes(), "500 5.5.2"),
        ("huge EHLO argument", smtp, format!("EHLO {}\r\n", big(5000)).into_bytes(), "500 5.5.2"),
        ("NUL in a command", smtp, b"NO\0OP\r\n".to_vec(), "500 5.5.2"),
        ("garbage command", smtp, b"\xff\xfe\xfd\r\n".to_vec(), "500 5.5.1"),
        ("too many recipients", smtp, many_rcpt.into_bytes(), "452 4.5.3"),
        ("declared SIZE over the maximum", smtp, b"EHLO h\r\nMAIL FROM:<b@remote.test> SIZE=999999999\r\n".to_vec(), "552 5.3.4"),
        ("message over the maximum size", smtp, oversized.into_bytes(), "552 5.3.4"),
        ("bare LF in the message", smtp, format!("{start}Subject: x\nbody\r\n.\r\n").into_bytes(), "550 5.6.2"),
        ("LF.LF smuggling", smtp, format!("{start}hi\n.\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nsmuggled\r\n.\r\n").into_bytes(), "550 5.6.2"),
        ("data line over 1000 octets", smtp, format!("{start}{}\r\n.\r\n", big(1500)).into_bytes(), "500 5.5.2"),
        ("RCPT before MAIL", smtp, b"EHLO h\r\nRCPT TO:<alice@example.test>\r\n".to_vec(), "503 5.5.1"),
        ("POP3 line over 255 octets", pop3, format!("USER {}\r\n", big(400)).into_bytes(), "-ERR line too long"),
        ("POP3 NUL", pop3, b"US\0ER a\r\n".to_vec(), "-ERR invalid characters"),
        ("POP3 missing argument", pop3, b"USER\r\n".to_vec(), "-ERR syntax: USER name"),
        ("POP3 extra arguments", pop3, b"USER a b c\r\n".to_vec(), "-ERR syntax: USER name"),
        ("POP3 garbage message number", pop3, b"USER alice@example.test\r\nPASS pw-alice\r\nRETR 1x\r\n".to_vec(), "-ERR invalid message number"),
        ("POP3 command before login", pop3, b"RETR 1\r\n".to_vec(), "-ERR not allowed before login"),
    ];
    for (name, addr, input, expect) in cases {
        let got = exchange(addr, &input, expect);
        assert!(
            got.contains(expect),
            "{name}: expected {expect:?}, got {:?}",
            &got[..got.len().min(2000)]
        );
    }
    // Pipelining abuse: 5000 commands in one write are all answered, in order.
    let mut flood = "NOOP\r\n".repeat(5000);
    flood.push_str("QUIT\r\n");
    let got = exchange(smtp, flood.as_bytes(), "221 2.0.0");
    assert_eq!(
        got.matches("250 2.0.0 OK").count(),
        5000,
        "NOOP flood not fully answered"
    );
    assert!(
        got.ends_with("closing connection\r\n"),
        "{}",
        &got[got.len().saturating_sub(200)..]
    );

    // Nothing above was stored, and a normal session works.
    let (count, _) = c.stat("alice@example.test");
    assert_eq!(count, 0, "hostile input stored a message");
    let mut s = SmtpClient::connect(smtp).unwrap();
    assert!(
        s.send_mail(
            "b@remote.test",
            &["alice@example.test"],
            b"Subject: fine\r\n\r\nok\r\n"
        )
        .unwrap()
        .starts_with("250 ")
    );
    let mut p = Pop3Client::connect(pop3).unwrap();
    assert!(
        p.login("alice@example.test", "pw-alice")
            .unwrap()
            .starts_with("+OK")
    );
    assert_eq!(p.uidl().unwrap().len(), 1);
}

#[test]
fn too_many_errors_close_the_session() {
    let c = TestCluster::with_mailboxes(1, &["alice"]);
    let got = exchange(c.fe(0).smtp, "BOGUS\r\n".repeat(30).as_bytes(), "421 4.7.0");
    assert!(got.contains("421 4.7.0"), "{got}");
}

#[test]
fn connection_limits_idle_and_session_timeouts() {
    let c = TestCluster::with_mailboxes(0, &["alice"]);
    let fe = c.start_frontend_with(
        &c.auth_guid,
        &[
            "--max-connections-per-ip",
            "3",
            // Loopback is trusted (exempt) by default; here only 127.0.0.2 is.
            "--trusted-networks",
            "127.0.0.2/32",
            "--idle-timeout",
            "1",
            "--session-timeout",
            "3",
        ],
    );
    // Per-IP limit: the 4th simultaneous connection is refused with a clear reply.
    let held: Vec<_> = (0..3)
        .map(|_| SmtpClient::connect(fe.smtp).unwrap())
        .collect();
    let refused = exchange(fe.smtp, b"", "421");
    assert!(
        refused.contains("421 4.7.0 too many connections"),
        "{refused}"
    );
    let refused = exchange(fe.pop3, b"", "-ERR");
    assert!(
        refused.contains("-ERR [SYS/TEMP] too many connections"),
        "{refused}"
    );
    // The refusal is said once, then the connection is closed.
    let mut s = TcpStream::connect(fe.smtp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&all),
        "421 4.7.0 too many connections, try again later\r\n"
    );
    // A trusted network is exempt from the per-IP limit (Postfix's mynetworks).
    let trusted: Vec<_> = (0..5)
        .map(|_| Pop3Client::connect_from(fe.pop3, "127.0.0.2".parse().unwrap()).unwrap())
        .collect();
    assert!(trusted.iter().all(|p| p.banner.starts_with("+OK")));
    drop(held);
    drop(trusted);
    // Idle: a silent client is told and disconnected. (Poll: the server frees the slots of
    // the connections dropped above when it sees them close.)
    mailroot_tests::eventually(
        "idle client told and disconnected",
        Duration::from_secs(20),
        || {
            exchange(fe.smtp, b"", "421 4.4.2")
                .contains("421 4.4.2")
                .then_some(())
        },
    );
    // Slowloris: one byte every 300 ms never trips the idle timer, the session limit ends it.
    let mut s = TcpStream::connect(fe.pop3).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let started = Instant::now();
    let mut closed = false;
    let mut buf = [0u8; 256];
    while started.elapsed() < Duration::from_secs(15) {
        if s.write_all(b"N").is_err() {
            closed = true;
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    }
    assert!(closed, "a trickling client was never disconnected");
    // The node still serves.
    let p = Pop3Client::connect(fe.pop3).unwrap();
    assert!(p.banner.starts_with("+OK"));
}
