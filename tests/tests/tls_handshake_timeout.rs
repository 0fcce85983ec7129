//! Issue 10, point 8: a client that asks for TLS (STARTTLS, STLS) and then never starts the
//! handshake is disconnected after `--tls-handshake-timeout`, like one that connects to an
//! implicit-TLS port and sends nothing. The flag is set to 1 s here (default 30 s).

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mailroot_tests::{Pop3Client, SmtpClient, TestCluster};

/// The limit given to the front-end, and the longest a test waits for the disconnection.
const LIMIT: Duration = Duration::from_secs(1);
const PATIENCE: Duration = Duration::from_secs(10);

fn assert_cut_after_the_limit(what: &str, since: Instant) {
    let waited = since.elapsed();
    eprintln!("{what}: disconnected after {waited:?}");
    assert!(
        waited >= LIMIT - Duration::from_millis(100),
        "{what}: cut too early ({waited:?})"
    );
    assert!(waited < PATIENCE, "{what}: cut too late ({waited:?})");
}

#[test]
fn silent_clients_after_starttls_stls_or_on_implicit_tls_are_disconnected() {
    let c = TestCluster::start(0);
    let fe = c.start_frontend_with(&c.auth_guid, &["--tls-handshake-timeout", "1"]);

    // SMTP STARTTLS (RFC 3207), on the inbound and the submission port.
    for addr in [fe.smtp, fe.submission] {
        let mut smtp = SmtpClient::connect(addr).unwrap();
        assert!(smtp.cmd("EHLO client.test").unwrap().contains("STARTTLS"));
        let go = smtp.cmd("STARTTLS").unwrap();
        assert!(go.starts_with("220 2.0.0"), "{go}");
        let asked = Instant::now();
        let after = smtp.read_reply();
        assert!(
            after
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::UnexpectedEof),
            "{after:?}"
        );
        assert_cut_after_the_limit("STARTTLS", asked);
    }

    // POP3 STLS (RFC 2595).
    let mut pop = Pop3Client::connect(fe.pop3).unwrap();
    let go = pop.cmd("STLS").unwrap();
    assert_eq!(go, "+OK Begin TLS negotiation\r\n");
    let asked = Instant::now();
    assert!(pop.drain().is_empty());
    assert_cut_after_the_limit("STLS", asked);

    // Implicit TLS (RFC 8314): the same limit.
    for addr in [fe.pop3s, fe.smtps] {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let connected = Instant::now();
        let mut byte = [0u8; 1];
        let n = tcp.read(&mut byte).unwrap();
        assert_eq!(n, 0, "implicit TLS: the server spoke first");
        assert_cut_after_the_limit("implicit TLS", connected);
    }
}

#[test]
fn a_zero_handshake_timeout_is_refused_at_start() {
    let c = TestCluster::start(0);
    let out = c
        .frontend_command(&c.auth_guid)
        .args(["--tls-handshake-timeout", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-handshake-timeout"), "{err}");
}
