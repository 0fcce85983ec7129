//! STARTTLS (RFC 3207), AUTH PLAIN/LOGIN (RFC 4954), submission and require-secure-auth.

use smtp::{Action, AuthVerdict, Config, DeliverVerdict, RcptVerdict, Session};

#[derive(Default, Debug, PartialEq, Eq)]
struct Seen {
    out: String,
    auths: Vec<(String, String, String)>,
    tls: usize,
    delivered: Vec<smtp::Envelope>,
}

fn run(s: &mut Session, input: &[u8], seen: &mut Seen) {
    s.feed(input);
    while let Some(a) = s.poll() {
        match a {
            Action::Send(b) => seen.out.push_str(&String::from_utf8_lossy(&b)),
            Action::StartTls => {
                seen.tls += 1;
                s.tls_started();
            }
            Action::Authenticate {
                authzid,
                user,
                password,
            } => {
                let ok = user == "alice@example.test" && password == "secret";
                seen.auths.push((authzid, user, password));
                s.auth_done(if ok {
                    AuthVerdict::Ok {
                        senders: vec!["alice@example.test".into(), "team@example.test".into()],
                    }
                } else {
                    AuthVerdict::Invalid
                });
            }
            Action::CheckRecipient { .. } => s.rcpt_done(RcptVerdict::Accept),
            Action::Deliver { envelope, .. } => {
                seen.delivered.push(envelope);
                s.deliver_done(DeliverVerdict::Stored { id: "1".into() });
            }
            Action::Close => {}
        }
    }
}

fn submission() -> Config {
    let mut c = Config::new("mx.example.test");
    c.starttls = true;
    c.auth = true;
    c.submission = true;
    c
}

// base64("\0alice@example.test\0secret")
const PLAIN: &str = "AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=";

#[test]
fn ehlo_advertises_by_configuration() {
    for (starttls, secure, auth, rsa, expect_tls, expect_auth) in [
        (false, false, false, false, false, false),
        (true, false, false, false, true, false),
        (true, true, false, false, false, false),
        (true, false, true, false, true, true),
        (true, false, true, true, true, false),
        (false, true, true, true, false, true),
    ] {
        let mut c = Config::new("h");
        c.starttls = starttls;
        c.secure = secure;
        c.auth = auth;
        c.require_secure_auth = rsa;
        let mut s = Session::new(c);
        let mut seen = Seen::default();
        run(&mut s, b"EHLO x\r\n", &mut seen);
        assert_eq!(
            seen.out.contains("250-STARTTLS\r\n"),
            expect_tls,
            "{seen:?}"
        );
        assert_eq!(
            seen.out.contains("250-AUTH PLAIN LOGIN\r\n"),
            expect_auth,
            "{seen:?}"
        );
        assert!(seen.out.ends_with("250 ENHANCEDSTATUSCODES\r\n"));
    }
}

#[test]
fn starttls_discards_pipelined_plaintext_and_resets_the_session() {
    let mut s = Session::new(submission());
    let mut seen = Seen::default();
    // The injected commands arrive in the same packet as STARTTLS.
    run(
        &mut s,
        b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<v@x.test>\r\n",
        &mut seen,
    );
    assert_eq!(seen.tls, 1);
    assert!(
        seen.out.ends_with("220 2.0.0 Ready to start TLS\r\n"),
        "{}",
        seen.out
    );
    assert!(
        !seen.out.contains("2.1.0"),
        "injected MAIL was executed: {}",
        seen.out
    );
    assert!(s.is_secure());
    // After the handshake the client must EHLO again; STARTTLS is gone from the list.
    let mut seen = Seen::default();
    run(
        &mut s,
        b"MAIL FROM:<a@b.c>\r\nEHLO x\r\nSTARTTLS\r\n",
        &mut seen,
    );
    assert!(seen.out.starts_with("503 5.5.1"), "{}", seen.out);
    assert!(!seen.out.contains("STARTTLS"), "{}", seen.out);
    assert!(
        seen.out.ends_with("503 5.5.1 TLS already active\r\n"),
        "{}",
        seen.out
    );
    // STARTTLS not offered: 502; with arguments: 501.
    let mut plain = Session::new(Config::new("h"));
    let mut seen = Seen::default();
    run(&mut plain, b"EHLO x\r\nSTARTTLS\r\n", &mut seen);
    assert!(
        seen.out.ends_with("502 5.5.1 command not implemented\r\n"),
        "{}",
        seen.out
    );
    let mut s = Session::new(submission());
    let mut seen = Seen::default();
    run(&mut s, b"EHLO x\r\nSTARTTLS now\r\n", &mut seen);
    assert!(
        seen.out.ends_with("501 5.5.4 Syntax: STARTTLS\r\n"),
        "{}",
        seen.out
    );
}

#[test]
fn auth_plain_login_and_their_errors() {
    let cases: &[(&str, &str)] = &[
        (&format!("AUTH PLAIN {PLAIN}\r\n"), "235 2.7.0"),
        (&format!("AUTH PLAIN\r\n{PLAIN}\r\n"), "334 \r\n235 2.7.0"),
        (
            "AUTH LOGIN\r\nYWxpY2VAZXhhbXBsZS50ZXN0\r\nc2VjcmV0\r\n",
            "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0",
        ),
        (
            "AUTH LOGIN YWxpY2VAZXhhbXBsZS50ZXN0\r\nc2VjcmV0\r\n",
            "334 UGFzc3dvcmQ6\r\n235 2.7.0",
        ),
        (
            "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==\r\n",
            "535 5.7.8",
        ),
        ("AUTH PLAIN\r\n*\r\n", "501 5.0.0 Authentication cancelled"),
        ("AUTH PLAIN !!!notbase64\r\n", "501 5.5.2"),
        ("AUTH PLAIN YWJj\r\n", "501 5.5.2"),
        ("AUTH CRAM-MD5\r\n", "504 5.5.4"),
        ("AUTH\r\n", "501 5.5.4"),
    ];
    for (input, expect) in cases {
        let mut s = Session::new(submission());
        let mut seen = Seen::default();
        run(&mut s, format!("EHLO x\r\n{input}").as_bytes(), &mut seen);
        assert!(seen.out.contains(expect), "{input:?}: {}", seen.out);
    }
    // AUTH before EHLO, twice, during a transaction.
    let mut s = Session::new(submission());
    let mut seen = Seen::default();
    run(
        &mut s,
        format!("AUTH PLAIN {PLAIN}\r\nEHLO x\r\nAUTH PLAIN {PLAIN}\r\nAUTH PLAIN {PLAIN}\r\nMAIL FROM:<alice@example.test>\r\nAUTH LOGIN\r\n").as_bytes(),
        &mut seen,
    );
    let codes: Vec<&str> = seen
        .out
        .lines()
        .filter(|l| !l.starts_with("250-"))
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        ["503", "250", "235", "503", "250", "503"],
        "{}",
        seen.out
    );
    // The authzid is passed on for the driver to judge.
    assert_eq!(seen.auths[0].0, "");
}

#[test]
fn submission_requires_auth_and_owned_senders() {
    let mut s = Session::new(submission());
    let mut seen = Seen::default();
    run(
        &mut s,
        b"EHLO x\r\nMAIL FROM:<alice@example.test>\r\n",
        &mut seen,
    );
    assert!(
        seen.out.ends_with("530 5.7.0 Authentication required\r\n"),
        "{}",
        seen.out
    );
    let mut seen = Seen::default();
    run(
        &mut s,
        format!("AUTH PLAIN {PLAIN}\r\nMAIL FROM:<ceo@example.test>\r\nMAIL FROM:<TEAM@example.test>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nhi\r\n.\r\n").as_bytes(),
        &mut seen,
    );
    assert!(
        seen.out.contains("553 5.7.1 Sender address rejected"),
        "{}",
        seen.out
    );
    assert!(seen.out.contains("250 2.1.0"), "{}", seen.out);
    assert_eq!(seen.delivered.len(), 1);
    assert_eq!(
        seen.delivered[0].authenticated.as_deref(),
        Some("alice@example.test")
    );
    // The null sender is allowed too.
    let mut seen = Seen::default();
    run(&mut s, b"MAIL FROM:<>\r\n", &mut seen);
    assert!(seen.out.starts_with("250 2.1.0"), "{}", seen.out);
}

#[test]
fn require_secure_auth_refuses_auth_before_tls_only() {
    let mut c = submission();
    c.require_secure_auth = true;
    let mut s = Session::new(c);
    let mut seen = Seen::default();
    run(
        &mut s,
        format!("EHLO x\r\nAUTH PLAIN {PLAIN}\r\n").as_bytes(),
        &mut seen,
    );
    assert!(
        seen.out
            .ends_with("538 5.7.11 Encryption required for requested authentication mechanism\r\n"),
        "{}",
        seen.out
    );
    assert!(seen.auths.is_empty());
    let mut seen = Seen::default();
    run(&mut s, b"STARTTLS\r\n", &mut seen);
    let mut seen = Seen::default();
    run(
        &mut s,
        format!("EHLO x\r\nAUTH PLAIN {PLAIN}\r\n").as_bytes(),
        &mut seen,
    );
    assert!(seen.out.contains("250-AUTH PLAIN LOGIN"), "{}", seen.out);
    assert!(
        seen.out
            .ends_with("235 2.7.0 Authentication successful\r\n"),
        "{}",
        seen.out
    );
}

#[test]
fn auth_session_is_chunk_invariant() {
    let input = String::from(
        "EHLO x\r\nSTARTTLS\r\nEHLO x\r\nAUTH LOGIN\r\nYWxpY2VAZXhhbXBsZS50ZXN0\r\nc2VjcmV0\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<b@c.d>\r\nDATA\r\n.hi\r\n.\r\nQUIT\r\n",
    );
    let whole = {
        let mut s = Session::new(submission());
        let mut seen = Seen::default();
        run(&mut s, input.as_bytes(), &mut seen);
        seen
    };
    // STARTTLS discards what arrived with it, so a byte-wise client is one that waits for the
    // 220 before sending on: feed up to STARTTLS, then the rest byte by byte.
    let split = input.find("STARTTLS\r\n").unwrap() + "STARTTLS\r\n".len();
    let mut s = Session::new(submission());
    let mut bytewise = Seen::default();
    for b in input[..split].bytes() {
        run(&mut s, &[b], &mut bytewise);
    }
    for b in input[split..].bytes() {
        run(&mut s, &[b], &mut bytewise);
    }
    assert_eq!(
        whole.delivered.len(),
        0,
        "the one-chunk client lost its commands to STARTTLS"
    );
    assert_eq!(bytewise.delivered.len(), 1, "{}", bytewise.out);
    // And a one-chunk client that waits for the handshake gets the same as the byte-wise one.
    let mut s = Session::new(submission());
    let mut two = Seen::default();
    run(&mut s, &input.as_bytes()[..split], &mut two);
    run(&mut s, &input.as_bytes()[split..], &mut two);
    assert_eq!(two, bytewise);
}
