//! Session tests through the public API, with a scripted synchronous driver.

use smtp::{
    Action, AuthVerdict, Config, DeliverVerdict, Envelope, MAX_CONSECUTIVE_ERRORS, MAX_LINE,
    RcptVerdict, Session,
};

/// Small deterministic PRNG (xorshift64*), so tests need no extra dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Verdicts by address: the local part picks the answer.
fn rcpt_verdict(address: &str) -> RcptVerdict {
    match address.split('@').next().unwrap_or("") {
        "nobody" => RcptVerdict::UnknownUser,
        "relay" => RcptVerdict::RelayDenied,
        "full" => RcptVerdict::MailboxFull,
        "huge" => RcptVerdict::TooBig,
        "later" => RcptVerdict::TempFailure,
        _ => RcptVerdict::Accept,
    }
}

/// Everything a session did, as seen by the driver.
#[derive(Debug, Default, PartialEq, Eq)]
struct Transcript {
    output: Vec<u8>,
    checked: Vec<String>,
    delivered: Vec<(Envelope, Vec<u8>)>,
    closed: bool,
}

impl Transcript {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    fn replies(&self) -> Vec<String> {
        self.text()
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// A synchronous driver: answers recipient checks with [`rcpt_verdict`] and deliveries with
/// the next verdict from `deliveries` (Stored with a counter id when the script runs out).
struct Driver {
    session: Session,
    deliveries: Vec<DeliverVerdict>,
    transcript: Transcript,
}

impl Driver {
    fn new(config: Config) -> Self {
        let session = Session::new(config);
        let mut transcript = Transcript::default();
        transcript.output.extend(session.greeting());
        Driver {
            session,
            deliveries: Vec::new(),
            transcript,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.transcript.closed {
            return;
        }
        self.session.feed(bytes);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(action) = self.session.poll() {
            match action {
                Action::Send(bytes) => self.transcript.output.extend(bytes),
                Action::CheckRecipient { address, .. } => {
                    let verdict = rcpt_verdict(&address);
                    self.transcript.checked.push(address);
                    self.session.rcpt_done(verdict);
                }
                Action::Deliver { envelope, message } => {
                    self.transcript.delivered.push((envelope, message));
                    let verdict = if self.deliveries.is_empty() {
                        DeliverVerdict::Stored {
                            id: format!("Q{}", self.transcript.delivered.len()),
                        }
                    } else {
                        self.deliveries.remove(0)
                    };
                    self.session.deliver_done(verdict);
                }
                Action::Close => {
                    assert!(self.session.is_closed());
                    self.transcript.closed = true;
                }
                Action::StartTls => self.session.tls_started(),
                Action::Authenticate { user, .. } => self.session.auth_done(if user == "good" {
                    AuthVerdict::Ok {
                        senders: vec!["good@b.c".into()],
                    }
                } else {
                    AuthVerdict::Invalid
                }),
            }
        }
    }
}

fn config() -> Config {
    Config::new("mx.example.test")
}

/// Runs `input` in one chunk.
fn run(input: &[u8]) -> Transcript {
    run_with(config(), Vec::new(), input)
}

fn run_with(config: Config, deliveries: Vec<DeliverVerdict>, input: &[u8]) -> Transcript {
    let mut driver = Driver::new(config);
    driver.deliveries = deliveries;
    driver.feed(input);
    driver.transcript
}

fn run_chunked(config: Config, input: &[u8], mut next_len: impl FnMut() -> usize) -> Transcript {
    let mut driver = Driver::new(config);
    let mut rest = input;
    while !rest.is_empty() {
        let n = next_len().clamp(1, rest.len());
        driver.feed(&rest[..n]);
        rest = &rest[n..];
    }
    driver.transcript
}

const GREETING: &str = "220 mx.example.test ESMTP ready";
const EHLO_REPLY: &str = "250-mx.example.test\r\n250-SIZE 26214400\r\n250-PIPELINING\r\n\
                          250-8BITMIME\r\n250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n";

/// Sessions exercising most of the protocol, for the chunking invariance test.
fn sample_sessions() -> Vec<Vec<u8>> {
    let long_command = format!("NOOP {}\r\n", "x".repeat(1500));
    let long_data_line = format!("{}\r\n", "y".repeat(1200));
    vec![
        // Plain session, pipelined, with refused recipients and dot-stuffing.
        b"EHLO client.example\r\n\
          MAIL FROM:<alice@client.example> SIZE=120 BODY=8BITMIME\r\n\
          RCPT TO:<bob@mx.example.test>\r\n\
          RCPT TO:<nobody@mx.example.test>\r\n\
          RCPT TO:<relay@elsewhere.example>\r\n\
          RCPT TO:<full@mx.example.test>\r\n\
          RCPT TO:<later@mx.example.test>\r\n\
          RCPT TO:<Postmaster>\r\n\
          DATA\r\n\
          Subject: hi\r\n\r\n..leading dot\r\n\r\n..\r\nend\r\n.\r\n\
          MAIL FROM:<>\r\nRSET\r\nFOO\r\nMAIL FROM:<x@y.z>\r\nRCPT TO:<c@d.e>\r\n\
          DATA\r\n.\r\nQUIT\r\nNOOP\r\n"
            .to_vec(),
        // Errors, sequence problems, bare-LF commands, long lines, smuggling.
        [
            b"NOOP\nHELO\r\nMAIL FROM:<a@b.c>\r\nHELO h.example\nDATA\r\n".as_slice(),
            long_command.as_bytes(),
            b"MAIL FROM:<a@b.c> SIZE=999999999999\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<u@v.w>\r\n\
              DATA\r\nhello\n.\nMAIL FROM:<x@y>\r\n...\r\n.\r\n\
              MAIL FROM:<a@b.c>\r\nRCPT TO:<u@v.w>\r\nDATA\r\n",
            long_data_line.as_bytes(),
            b".\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<u@v.w>\r\nDATA\r\nok\r\n.\r\nQUIT\r\n",
        ]
        .concat(),
        // Never-ending garbage until the error limit closes the session.
        b"BLAH\r\n".repeat(MAX_CONSECUTIVE_ERRORS + 5),
    ]
}

#[test]
fn chunk_size_invariance() {
    for (n, input) in sample_sessions().iter().enumerate() {
        let whole = run(input);
        assert!(
            whole.closed,
            "session {n} should end closed:\n{}",
            whole.text()
        );
        let bytewise = run_chunked(config(), input, || 1);
        assert_eq!(whole, bytewise, "session {n}, one byte at a time");
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 + n as u64);
        for round in 0..50 {
            let max = [2, 7, 64, 1500][round % 4];
            let chunked = run_chunked(config(), input, || 1 + rng.below(max));
            assert_eq!(whole, chunked, "session {n}, random chunks, round {round}");
        }
    }
}

#[test]
fn full_session_replies_and_delivery() {
    let t = run(&sample_sessions()[0]);
    let expected = format!(
        "{GREETING}\r\n{EHLO_REPLY}\
         250 2.1.0 OK\r\n\
         250 2.1.5 OK\r\n\
         550 5.1.1 <nobody@mx.example.test>: no such user here\r\n\
         550 5.7.1 <relay@elsewhere.example>: relay access denied\r\n\
         552 5.2.2 <full@mx.example.test>: mailbox full\r\n\
         451 4.3.0 temporary failure, try again later\r\n\
         250 2.1.5 OK\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n\
         250 2.0.0 OK queued as Q1\r\n\
         250 2.1.0 OK\r\n\
         250 2.0.0 OK\r\n\
         500 5.5.1 command unrecognized\r\n\
         250 2.1.0 OK\r\n\
         250 2.1.5 OK\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n\
         250 2.0.0 OK queued as Q2\r\n\
         221 2.0.0 mx.example.test closing connection\r\n"
    );
    assert_eq!(t.text(), expected);
    assert!(t.closed);
    assert_eq!(
        t.checked,
        [
            "bob@mx.example.test",
            "nobody@mx.example.test",
            "relay@elsewhere.example",
            "full@mx.example.test",
            "later@mx.example.test",
            "postmaster",
            "c@d.e"
        ]
    );
    assert_eq!(t.delivered.len(), 2);
    let (envelope, message) = &t.delivered[0];
    assert_eq!(
        envelope,
        &Envelope {
            helo: "client.example".into(),
            mail_from: "alice@client.example".into(),
            recipients: vec!["bob@mx.example.test".into(), "postmaster".into()],
            declared_size: Some(120),
            authenticated: None,
            envid: None,
            ret: None,
            params: vec![Default::default(); 2],
        }
    );
    assert_eq!(
        message.as_slice(),
        b"Subject: hi\r\n\r\n.leading dot\r\n\r\n.\r\nend\r\n"
    );
    let (envelope, message) = &t.delivered[1];
    assert_eq!(envelope.mail_from, "x@y.z");
    assert_eq!(envelope.declared_size, None);
    assert_eq!(envelope.recipients, ["c@d.e"]);
    assert!(message.is_empty());
}

#[test]
fn greeting_and_custom_config() {
    let mut config = Config::new("h");
    config.greeting = "hello there".into();
    config.max_message_size = 1234;
    let t = run_with(config, Vec::new(), b"EHLO x\r\nHELO y\r\n");
    assert_eq!(
        t.text(),
        "220 h hello there\r\n250-h\r\n250-SIZE 1234\r\n250-PIPELINING\r\n250-8BITMIME\r\n\
         250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n250 h\r\n"
    );
    let d = Config::new("x");
    assert_eq!(d.greeting, "ESMTP ready");
    assert_eq!(d.max_message_size, smtp::DEFAULT_MAX_MESSAGE_SIZE);
    assert_eq!(d.max_recipients, smtp::DEFAULT_MAX_RECIPIENTS);
}

/// Replies after the greeting for `input`, one per command.
fn replies(input: &str) -> Vec<String> {
    let mut r = run(input.as_bytes()).replies();
    r.remove(0);
    r
}

#[test]
fn simple_commands() {
    assert_eq!(
        replies("NOOP\r\nRSET\r\nVRFY bob\r\nVRFY\r\nHELP\r\nEXPN list\r\n"),
        [
            "250 2.0.0 OK",
            "250 2.0.0 OK",
            "252 2.5.0 cannot VRFY user, but will accept message and attempt delivery",
            "501 5.5.4 syntax: VRFY address",
            "214 2.0.0 commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
            "502 5.5.1 command not implemented",
        ]
    );
    assert_eq!(
        replies("AUTH PLAIN AGJvYgBzZWNyZXQ=\r\nSTARTTLS\r\nBDAT 10 LAST\r\nWHAT\r\nquit\r\n"),
        [
            "502 5.5.1 command not implemented",
            "502 5.5.1 command not implemented",
            "502 5.5.1 command not implemented",
            "500 5.5.1 command unrecognized",
            "221 2.0.0 mx.example.test closing connection",
        ]
    );
}

#[test]
fn quit_closes_and_ignores_the_rest() {
    let t = run(b"QUIT\r\nNOOP\r\n");
    assert!(t.closed);
    assert_eq!(t.replies().len(), 2);
    let mut s = Session::new(config());
    s.feed(b"QUIT\r\n");
    assert!(matches!(s.poll(), Some(Action::Send(_))));
    assert_eq!(s.poll(), Some(Action::Close));
    assert!(s.is_closed());
    s.feed(b"NOOP\r\n");
    assert_eq!(s.poll(), None);
}

#[test]
fn hello_syntax_and_reset() {
    assert_eq!(
        replies(
            "EHLO\r\nHELO \r\nEHLO a.b\r\nMAIL FROM:<a@b.c>\r\nEHLO a.b\r\nRCPT TO:<d@e.f>\r\n"
        ),
        [
            "501 5.5.4 syntax: EHLO/HELO domain",
            "501 5.5.4 syntax: EHLO/HELO domain",
            "250-mx.example.test",
            "250-SIZE 26214400",
            "250-PIPELINING",
            "250-8BITMIME",
            "250-DSN",
            "250 ENHANCEDSTATUSCODES",
            "250 2.1.0 OK",
            "250-mx.example.test",
            "250-SIZE 26214400",
            "250-PIPELINING",
            "250-8BITMIME",
            "250-DSN",
            "250 ENHANCEDSTATUSCODES",
            // EHLO reset the transaction.
            "503 5.5.1 need MAIL command first",
        ]
    );
}

#[test]
fn mail_sequence_and_syntax() {
    assert_eq!(
        replies(
            "MAIL FROM:<a@b.c>\r\nHELO h\r\nMAIL FROM:a@b.c\r\nMAIL FROM:<a@@b.c>\r\n\
             MAIL FROM:<a@b.c> FOO=1\r\nMAIL FROM:<a@b.c> SIZE=26214401\r\n\
             MAIL FROM:<a@b.c> SIZE=26214400\r\nMAIL FROM:<d@e.f>\r\nRSET\r\nMAIL FROM:<>\r\n"
        ),
        [
            "503 5.5.1 send EHLO/HELO first",
            "250 mx.example.test",
            "501 5.5.4 syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME]",
            "501 5.1.7 bad sender address syntax",
            "555 5.5.4 unsupported MAIL FROM parameter",
            "552 5.3.4 message size exceeds fixed maximum message size",
            "250 2.1.0 OK",
            "503 5.5.1 nested MAIL command",
            "250 2.0.0 OK",
            "250 2.1.0 OK",
        ]
    );
}

#[test]
fn rcpt_sequence_and_syntax() {
    assert_eq!(
        replies(
            "HELO h\r\nRCPT TO:<a@b.c>\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:a@b.c\r\n\
             RCPT TO:<>\r\nRCPT TO:<a@b.c> NOTIFY=NEVER\r\nRCPT TO:<a@b.c> RRVS=2030-01-01T00:00:00Z\r\n\
             RCPT TO:<a@b.c>\r\n"
        ),
        [
            "250 mx.example.test",
            "503 5.5.1 need MAIL command first",
            "250 2.1.0 OK",
            "501 5.1.3 bad recipient address syntax",
            "501 5.1.3 bad recipient address syntax",
            // RFC 3461: advertised, so accepted.
            "250 2.1.5 OK",
            "555 5.5.4 unsupported RCPT TO parameter",
            "250 2.1.5 OK",
        ]
    );
}

#[test]
fn too_many_recipients() {
    let mut config = config();
    config.max_recipients = 2;
    let t = run_with(
        config,
        Vec::new(),
        b"HELO h\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<nobody@x.y>\r\nRCPT TO:<r1@x.y>\r\n\
          RCPT TO:<r2@x.y>\r\nRCPT TO:<r3@x.y>\r\nDATA\r\nx\r\n.\r\n",
    );
    let r = t.replies();
    assert_eq!(
        &r[3..7],
        [
            "550 5.1.1 <nobody@x.y>: no such user here",
            "250 2.1.5 OK",
            "250 2.1.5 OK",
            "452 4.5.3 too many recipients",
        ]
    );
    // The over-limit recipient is not even checked.
    assert_eq!(t.checked, ["nobody@x.y", "r1@x.y", "r2@x.y"]);
    assert_eq!(t.delivered[0].0.recipients, ["r1@x.y", "r2@x.y"]);
}

#[test]
fn data_sequence() {
    assert_eq!(
        replies(
            "DATA\r\nHELO h\r\nDATA\r\nMAIL FROM:<a@b.c>\r\nDATA\r\nRCPT TO:<nobody@b.c>\r\n\
             DATA\r\nRCPT TO:<ok@b.c>\r\nDATA now\r\n"
        ),
        [
            "503 5.5.1 need MAIL command first",
            "250 mx.example.test",
            "503 5.5.1 need MAIL command first",
            "250 2.1.0 OK",
            "554 5.5.1 no valid recipients",
            "550 5.1.1 <nobody@b.c>: no such user here",
            "554 5.5.1 no valid recipients",
            "250 2.1.5 OK",
            "501 5.5.4 syntax: DATA takes no arguments",
        ]
    );
}

const TXN: &str = "HELO h\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<u@b.c>\r\nDATA\r\n";

/// Runs one transaction with `body` after the 354, then NOOP; returns the replies after the
/// 354 and what was delivered.
fn data(body: &[u8]) -> (Vec<String>, Vec<Vec<u8>>) {
    data_with(config(), Vec::new(), body)
}

fn data_with(
    config: Config,
    deliveries: Vec<DeliverVerdict>,
    body: &[u8],
) -> (Vec<String>, Vec<Vec<u8>>) {
    let input = [TXN.as_bytes(), body, b"NOOP\r\n"].concat();
    let t = run_with(config, deliveries, &input);
    let replies = t.replies();
    let after = replies
        .iter()
        .position(|r| r.starts_with("354 "))
        .expect("354");
    (
        replies[after + 1..].to_vec(),
        t.delivered.into_iter().map(|(_, m)| m).collect(),
    )
}

#[test]
fn delivery_verdicts() {
    let cases = [
        (
            DeliverVerdict::Stored { id: "abc".into() },
            "250 2.0.0 OK queued as abc",
        ),
        (DeliverVerdict::MailboxFull, "552 5.2.2 mailbox full"),
        (
            DeliverVerdict::TooBig,
            "552 5.2.3 message larger than the mailbox quota",
        ),
        (
            DeliverVerdict::TempFailure,
            "451 4.3.0 temporary failure, try again later",
        ),
        (
            DeliverVerdict::Rejected("spam\r\nlooking".into()),
            "554 5.0.0 spam??looking",
        ),
    ];
    for (verdict, reply) in cases {
        let (r, delivered) = data_with(config(), vec![verdict], b"hi\r\n.\r\n");
        assert_eq!(r, [reply, "250 2.0.0 OK"]);
        assert_eq!(delivered, [b"hi\r\n"]);
    }
}

#[test]
fn transaction_is_reset_after_data() {
    let t = run([
        TXN,
        "x\r\n.\r\nRCPT TO:<v@b.c>\r\nMAIL FROM:<z@b.c>\r\nRCPT TO:<w@b.c>\r\nDATA\r\n",
        "y\r\n.\r\n",
    ]
    .concat()
    .as_bytes());
    let r = t.replies();
    assert_eq!(r[5], "250 2.0.0 OK queued as Q1");
    assert_eq!(r[6], "503 5.5.1 need MAIL command first");
    assert_eq!(t.delivered.len(), 2);
    let envelope = &t.delivered[1].0;
    assert_eq!(envelope.helo, "h");
    assert_eq!(envelope.mail_from, "z@b.c");
    assert_eq!(envelope.recipients, ["w@b.c"]);
}

#[test]
fn empty_message_and_dot_lines() {
    assert_eq!(
        data(b".\r\n"),
        (
            vec!["250 2.0.0 OK queued as Q1".into(), "250 2.0.0 OK".into()],
            vec![vec![]]
        )
    );
    assert_eq!(data(b"..\r\n.\r\n").1, [b".\r\n"]);
    assert_eq!(
        data(b"...\r\n..x\r\n.y\r\nz.\r\n\r\n.\r\n").1,
        [b"..\r\n.x\r\ny\r\nz.\r\n\r\n"]
    );
    // A message may contain what looks like SMTP commands.
    assert_eq!(
        data(b"MAIL FROM:<x@y.z>\r\nQUIT\r\n.\r\n").1,
        [b"MAIL FROM:<x@y.z>\r\nQUIT\r\n"]
    );
}

#[test]
fn smuggling_is_not_an_end_of_data() {
    let input = b"EHLO h\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<u@b.c>\r\n\
                  DATA\r\nhello\n.\nMAIL FROM:<x@y>\r\n...\r\n.\r\nNOOP\r\n";
    let t = run(input);
    let r = t.replies();
    let after = r.iter().position(|l| l.starts_with("354 ")).unwrap();
    // Exactly one end of data; the smuggled MAIL FROM is message text, never a command, and
    // the message as a whole is refused for its bare LFs (RFC 5321 2.3.8).
    assert_eq!(
        &r[after + 1..],
        [
            "550 5.6.2 bare CR or LF or NUL not allowed in message (RFC 5321 2.3.8)",
            "250 2.0.0 OK",
        ]
    );
    assert!(t.delivered.is_empty());
    assert_eq!(
        t.replies().iter().filter(|l| *l == "250 2.1.0 OK").count(),
        1
    );

    for body in [
        &b"a\r.\rMAIL FROM:<x@y>\r\n.\r\n"[..],
        b"a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n",
        b"a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n",
        b"a\r\n.\rMAIL FROM:<x@y>\r\n.\r\n",
        b"a\r\r\n.\r\n",
        b"a\0\r\n.\r\n",
    ] {
        let (r, delivered) = data(body);
        assert_eq!(
            r,
            [
                "550 5.6.2 bare CR or LF or NUL not allowed in message (RFC 5321 2.3.8)",
                "250 2.0.0 OK"
            ],
            "{body:?}"
        );
        assert!(delivered.is_empty());
    }
}

#[test]
fn oversize_message_is_consumed_then_refused() {
    let mut config = config();
    config.max_message_size = 10;
    let (r, delivered) = data_with(config.clone(), Vec::new(), b"0123456\r\n.\r\n");
    assert_eq!(r[0], "250 2.0.0 OK queued as Q1");
    assert_eq!(delivered.len(), 1);
    let body = b"0123456789\r\nMAIL FROM:<x@y.z>\r\n.\r\n";
    let (r, delivered) = data_with(config, Vec::new(), body);
    assert_eq!(
        r,
        [
            "552 5.3.4 message size exceeds fixed maximum message size",
            "250 2.0.0 OK"
        ]
    );
    assert!(delivered.is_empty());
}

#[test]
fn long_lines() {
    // Command: exactly 1000 octets with CRLF is fine, 1001 is not; the session goes on.
    let ok = format!("NOOP {}\r\n", "x".repeat(MAX_LINE - 7));
    assert_eq!(ok.len(), MAX_LINE);
    let long = format!("NOOP {}\r\n", "x".repeat(MAX_LINE - 6));
    let huge = format!("NOOP {}\r\n", "x".repeat(100_000));
    assert_eq!(
        replies(&format!("{ok}{long}{huge}NOOP\r\n")),
        [
            "250 2.0.0 OK",
            "500 5.5.2 line too long",
            "500 5.5.2 line too long",
            "250 2.0.0 OK"
        ]
    );
    // Data.
    let mut body = vec![b'x'; MAX_LINE - 1];
    body.extend_from_slice(b"\r\n.\r\n");
    let (r, delivered) = data(&body);
    assert_eq!(r, ["500 5.5.2 line too long", "250 2.0.0 OK"]);
    assert!(delivered.is_empty());
    let mut body = vec![b'x'; MAX_LINE - 2];
    body.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(data(&body).1.len(), 1);
}

#[test]
fn nul_and_bare_lf_in_commands() {
    assert_eq!(
        replies("NO\0OP\r\nNOOP\nHELO h\n"),
        [
            "500 5.5.2 NUL character not allowed in command",
            "250 2.0.0 OK",
            "250 mx.example.test"
        ]
    );
}

#[test]
fn too_many_errors_closes() {
    let input = "X\r\n".repeat(MAX_CONSECUTIVE_ERRORS - 1) + "NOOP\r\n" + &"X\r\n".repeat(100);
    let t = run(input.as_bytes());
    let r = t.replies();
    assert!(t.closed);
    // The NOOP reset the count: 19 + 1 + 20 replies, then 421.
    assert_eq!(r.len(), 1 + MAX_CONSECUTIVE_ERRORS * 2 + 1);
    assert_eq!(r.last().unwrap(), "421 4.7.0 too many errors");
}

#[test]
fn pipelined_commands_wait_for_answers() {
    let mut s = Session::new(config());
    s.feed(b"HELO h\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<u@b.c>\r\nRCPT TO:<v@b.c>\r\nDATA\r\n");
    assert!(matches!(s.poll(), Some(Action::Send(_))));
    assert!(matches!(s.poll(), Some(Action::Send(_))));
    assert_eq!(
        s.poll(),
        Some(Action::CheckRecipient {
            address: "u@b.c".into(),
            declared_size: None,
        })
    );
    // Waiting: nothing more, whatever arrives; stray answers are ignored.
    assert_eq!(s.poll(), None);
    s.feed(b"hello\r\n.\r\n");
    assert_eq!(s.poll(), None);
    s.deliver_done(DeliverVerdict::TempFailure);
    assert_eq!(s.poll(), None);
    s.rcpt_done(RcptVerdict::Accept);
    assert_eq!(s.poll(), Some(Action::Send(b"250 2.1.5 OK\r\n".to_vec())));
    assert_eq!(
        s.poll(),
        Some(Action::CheckRecipient {
            address: "v@b.c".into(),
            declared_size: None,
        })
    );
    s.rcpt_done(RcptVerdict::UnknownUser);
    s.rcpt_done(RcptVerdict::Accept); // stray, ignored
    assert_eq!(
        s.poll(),
        Some(Action::Send(
            b"550 5.1.1 <v@b.c>: no such user here\r\n".to_vec()
        ))
    );
    assert!(matches!(s.poll(), Some(Action::Send(b)) if b.starts_with(b"354 ")));
    let Some(Action::Deliver { envelope, message }) = s.poll() else {
        panic!("expected Deliver");
    };
    assert_eq!(envelope.recipients, ["u@b.c"]);
    assert_eq!(message, b"hello\r\n");
    assert_eq!(s.poll(), None);
    s.deliver_done(DeliverVerdict::Stored { id: "7".into() });
    assert_eq!(
        s.poll(),
        Some(Action::Send(b"250 2.0.0 OK queued as 7\r\n".to_vec()))
    );
    assert_eq!(s.poll(), None);
    assert_eq!(s.buffered_len(), 0);
}

/// Builds a pseudo-random byte string from SMTP-ish fragments and raw bytes.
fn random_input(rng: &mut Rng) -> Vec<u8> {
    const FRAGMENTS: &[&[u8]] = &[
        b"EHLO x\r\n",
        b"HELO y\r\n",
        b"MAIL FROM:<a@b.c>\r\n",
        b"MAIL FROM:<> SIZE=10\r\n",
        b"MAIL FROM:<a@b.c> SIZE=99999999999999999999999\r\n",
        b"RCPT TO:<u@v.w>\r\n",
        b"RCPT TO:<Postmaster>\r\n",
        b"RCPT TO:<\"q u\"@v.w> NOTIFY=NEVER\r\n",
        b"DATA\r\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"QUIT\r\n",
        b"VRFY x\r\n",
        b"BDAT 5 LAST\r\n",
        b".\r\n",
        b"..\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b".",
        b"\0",
        b"<",
        b">",
        b"@",
        b"\"",
        b"\\",
        b" ",
        b":",
        b"=",
        b"\xff\xfe",
    ];
    let mut out = Vec::new();
    for _ in 0..rng.below(60) {
        match rng.below(10) {
            0..=5 => out.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())]),
            6 | 7 => (0..rng.below(20)).for_each(|_| out.push(rng.next() as u8)),
            8 => out.extend(std::iter::repeat_n(b'x', rng.below(3 * MAX_LINE))),
            _ => out.extend_from_slice(b"MAIL FROM:<a@b.c>\r\nRCPT TO:<u@v.w>\r\nDATA\r\n"),
        }
    }
    out
}

fn random_rcpt(rng: &mut Rng) -> RcptVerdict {
    match rng.below(5) {
        0 => RcptVerdict::UnknownUser,
        1 => RcptVerdict::RelayDenied,
        2 => RcptVerdict::MailboxFull,
        3 => RcptVerdict::TempFailure,
        4 => RcptVerdict::TooBig,
        _ => RcptVerdict::Accept,
    }
}

fn random_deliver(rng: &mut Rng) -> DeliverVerdict {
    match rng.below(4) {
        0 => DeliverVerdict::MailboxFull,
        1 => DeliverVerdict::TempFailure,
        2 => DeliverVerdict::Rejected("no\r\n".into()),
        _ => DeliverVerdict::Stored { id: "id".into() },
    }
}

/// No input, chunking or answer timing may panic; answers may come late or be stray.
#[test]
fn no_panic_on_random_input() {
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    for _ in 0..3000 {
        let mut config = config();
        config.max_message_size = 1 + rng.below(5000);
        config.max_recipients = rng.below(4);
        config.starttls = rng.below(2) == 0;
        config.auth = rng.below(2) == 0;
        config.submission = rng.below(2) == 0;
        config.require_secure_auth = rng.below(2) == 0;
        let input = if rng.below(4) == 0 {
            (0..rng.below(4000)).map(|_| rng.next() as u8).collect()
        } else {
            random_input(&mut rng)
        };
        let mut s = Session::new(config);
        let mut rest = input.as_slice();
        let mut owed_rcpt = 0usize;
        let mut owed_deliver = 0usize;
        let mut owed_tls = 0usize;
        let mut owed_auth = 0usize;
        loop {
            let mut drained = true;
            if !rest.is_empty() {
                let n = (1 + rng.below(300)).min(rest.len());
                s.feed(&rest[..n]);
                rest = &rest[n..];
            }
            while let Some(action) = s.poll() {
                match action {
                    Action::CheckRecipient { address, .. } => {
                        assert!(!address.is_empty());
                        owed_rcpt += 1;
                    }
                    Action::Deliver { message, .. } => {
                        assert!(message.is_empty() || message.ends_with(b"\r\n"));
                        owed_deliver += 1;
                    }
                    Action::Send(bytes) => assert!(bytes.ends_with(b"\r\n")),
                    Action::Close => assert!(s.is_closed()),
                    Action::StartTls => owed_tls += 1,
                    Action::Authenticate { .. } => owed_auth += 1,
                }
                // Sometimes answer (or feed more) before draining everything.
                if rng.below(2) == 0 {
                    drained = false;
                    break;
                }
            }
            // Answer (possibly late), sometimes with a stray extra answer.
            if owed_rcpt > 0 || rng.below(10) == 0 {
                owed_rcpt = owed_rcpt.saturating_sub(1);
                s.rcpt_done(random_rcpt(&mut rng));
            }
            if owed_deliver > 0 || rng.below(10) == 0 {
                owed_deliver = owed_deliver.saturating_sub(1);
                s.deliver_done(random_deliver(&mut rng));
            }
            if owed_tls > 0 || rng.below(10) == 0 {
                owed_tls = owed_tls.saturating_sub(1);
                s.tls_started();
            }
            if owed_auth > 0 || rng.below(10) == 0 {
                owed_auth = owed_auth.saturating_sub(1);
                s.auth_done(match rng.below(3) {
                    0 => AuthVerdict::Ok {
                        senders: vec!["a@b.c".into()],
                    },
                    1 => AuthVerdict::Invalid,
                    _ => AuthVerdict::TempFailure,
                });
            }
            if rest.is_empty()
                && owed_rcpt == 0
                && owed_deliver == 0
                && owed_tls == 0
                && owed_auth == 0
                && drained
            {
                break;
            }
        }
    }
}

/// The same random inputs with a synchronous driver give the same transcript in any chunking.
#[test]
fn random_input_chunk_invariance() {
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    for _ in 0..500 {
        let input = random_input(&mut rng);
        let mut config = config();
        config.max_message_size = 1 + rng.below(3000);
        config.max_recipients = 1 + rng.below(3);
        let whole = run_with(config.clone(), Vec::new(), &input);
        let chunked = run_chunked(config.clone(), &input, || 1 + rng.below(40));
        assert_eq!(whole, chunked);
    }
}

#[test]
fn declared_size_reaches_the_recipient_check_and_quota_verdicts_reply_552() {
    let mut s = Session::new(config());
    s.feed(
        b"EHLO h\r\nMAIL FROM:<a@b.c> SIZE=5000\r\nRCPT TO:<huge@b.c>\r\nRCPT TO:<full@b.c>\r\n",
    );
    let mut out = Vec::new();
    let mut sizes = Vec::new();
    while let Some(a) = s.poll() {
        match a {
            Action::Send(b) => out.extend(b),
            Action::CheckRecipient {
                address,
                declared_size,
            } => {
                sizes.push(declared_size);
                s.rcpt_done(rcpt_verdict(&address));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sizes, vec![Some(5000), Some(5000)]);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("552 5.2.3 <huge@b.c>: message larger than the mailbox quota\r\n"),
        "{text}"
    );
    assert!(
        text.contains("552 5.2.2 <full@b.c>: mailbox full\r\n"),
        "{text}"
    );
}

#[test]
fn command_lines_are_counted_for_the_drivers_metrics() {
    let mut d = Driver::new(config());
    assert_eq!(d.session.commands(), 0);
    d.feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n");
    assert_eq!(d.session.commands(), 4);
    // Message lines and the end of data are content, not commands.
    d.feed(b"Subject: x\r\n\r\nHELO not a command\r\n.\r\nQUIT\r\n");
    assert_eq!(d.session.commands(), 5, "{}", d.transcript.text());
    assert_eq!(d.transcript.delivered.len(), 1);
}
