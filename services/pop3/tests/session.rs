//! POP3 session behaviour, fed like a socket would: in one chunk, byte by byte, or randomly.

use pop3::{Action, AuthOutcome, CommitError, Config, FetchError, MessageInfo, Session};

const M1: &[u8] = b"Subject: one\r\n\r\nhello\r\n.dot line\r\n..two\r\n";
const M2: &[u8] = b"Subject: two\r\nX: y\r\n\r\nl1\r\nl2\r\nl3\r\n";

/// Everything the driver saw.
#[derive(Debug, Default, PartialEq, Eq)]
struct Transcript {
    output: Vec<u8>,
    commits: Vec<Vec<String>>,
    /// The `retrieved` list of each commit.
    retrieved: Vec<Vec<String>>,
    closed: bool,
    tls: usize,
}

/// A scripted driver: user alice / pw "secret word" has M1 and M2; bob is locked; carol in use.
fn drive(s: &mut Session, t: &mut Transcript, commit_result: &Result<(), CommitError>) {
    while let Some(a) = s.poll() {
        match a {
            Action::Send(b) => t.output.extend(b),
            Action::Authenticate { user, password } => {
                s.auth_done(match (user.as_str(), password.as_str()) {
                    ("alice", "secret word") => AuthOutcome::Ok {
                        messages: vec![
                            MessageInfo {
                                uidl: "u1".into(),
                                size: M1.len() as u64,
                            },
                            MessageInfo {
                                uidl: "u2".into(),
                                size: M2.len() as u64,
                            },
                        ],
                    },
                    ("bob", _) => AuthOutcome::Locked,
                    ("carol", _) => AuthOutcome::InUse,
                    ("dave", _) => AuthOutcome::TempFailure,
                    _ => AuthOutcome::BadCredentials,
                })
            }
            Action::Fetch { uidl, .. } => s.fetch_done(match uidl.as_str() {
                "u1" => Ok(M1.to_vec()),
                "u2" => Ok(M2.to_vec()),
                _ => Err(FetchError::Gone),
            }),
            Action::Commit { delete, retrieved } => {
                t.commits.push(delete);
                t.retrieved.push(retrieved);
                s.commit_done(commit_result.clone());
            }
            Action::StartTls => {
                t.tls += 1;
                s.tls_started();
            }
            Action::Close => t.closed = true,
        }
    }
}

fn run_chunked(config: Config, input: &[u8], chunks: &mut dyn FnMut() -> usize) -> Transcript {
    let mut s = Session::new(config);
    let mut t = Transcript {
        output: s.greeting(),
        ..Default::default()
    };
    let mut rest = input;
    while !rest.is_empty() {
        let n = chunks().clamp(1, rest.len());
        s.feed(&rest[..n]);
        rest = &rest[n..];
        drive(&mut s, &mut t, &Ok(()));
    }
    drive(&mut s, &mut t, &Ok(()));
    t
}

fn run(input: &[u8]) -> Transcript {
    run_chunked(Config::default(), input, &mut || usize::MAX)
}

fn text(t: &Transcript) -> String {
    String::from_utf8_lossy(&t.output).into_owned()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const FULL_SESSION: &[u8] = b"CAPA\r\nUSER alice\r\nPASS secret word\r\nSTAT\r\nLIST\r\nUIDL\r\nLIST 2\r\nUIDL 1\r\nRETR 1\r\nTOP 2 1\r\nRETR x\r\nLIST 3\r\nDELE 1\r\nDELE 1\r\nRETR 1\r\nSTAT\r\nRSET\r\nDELE 2\r\nLIST 1 2\r\nNOOP\r\nQUIT\r\n";

#[test]
fn same_output_whatever_the_chunking() {
    let whole = run(FULL_SESSION);
    let bytewise = run_chunked(Config::default(), FULL_SESSION, &mut || 1);
    assert_eq!(whole, bytewise);
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for _ in 0..50 {
        let random = run_chunked(Config::default(), FULL_SESSION, &mut || {
            (rng.next() % 17) as usize + 1
        });
        assert_eq!(whole, random);
    }
    assert_eq!(whole.commits, vec![vec!["u2".to_string()]]);
    // RETR 1 counts as retrieved, TOP 2 does not (and 2 is deleted anyway).
    assert_eq!(whole.retrieved, vec![vec!["u1".to_string()]]);
    assert!(whole.closed);
}

#[test]
fn full_session_replies() {
    let t = run(FULL_SESSION);
    let expected = format!(
        "+OK POP3 server ready\r\n\
         +OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\nUSER\r\nSASL PLAIN\r\n.\r\n\
         +OK send PASS\r\n\
         +OK maildrop locked and ready, 2 messages ({total} octets)\r\n\
         +OK 2 {total}\r\n\
         +OK listing follows\r\n1 {l1}\r\n2 {l2}\r\n.\r\n\
         +OK listing follows\r\n1 u1\r\n2 u2\r\n.\r\n\
         +OK 2 {l2}\r\n\
         +OK 1 u1\r\n\
         +OK {l1} octets\r\nSubject: one\r\n\r\nhello\r\n..dot line\r\n...two\r\n.\r\n\
         +OK\r\nSubject: two\r\nX: y\r\n\r\nl1\r\n.\r\n\
         -ERR invalid message number\r\n\
         -ERR no such message\r\n\
         +OK message 1 deleted\r\n\
         -ERR message already deleted\r\n\
         -ERR message already deleted\r\n\
         +OK 1 {l2}\r\n\
         +OK 2 {total}\r\n\
         +OK message 2 deleted\r\n\
         -ERR too many arguments\r\n\
         +OK\r\n\
         +OK bye (1 messages deleted)\r\n",
        total = M1.len() + M2.len(),
        l1 = M1.len(),
        l2 = M2.len()
    );
    assert_eq!(text(&t), expected);
}

#[test]
fn login_failures_and_states() {
    let t = run(b"STAT\r\nPASS x\r\nUSER\r\nUSER a b\r\nUSER alice\r\nPASS wrong\r\nPASS secret word\r\nUSER bob\r\nPASS x\r\nUSER carol\r\nPASS x\r\nUSER dave\r\nPASS x\r\nAPOP a b\r\nQUIT\r\n");
    let lines: Vec<String> = text(&t).lines().skip(1).map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            "-ERR not allowed before login",
            "-ERR send USER first",
            "-ERR syntax: USER name",
            "-ERR syntax: USER name",
            "+OK send PASS",
            "-ERR [AUTH] invalid user name or password",
            "-ERR send USER first",
            "+OK send PASS",
            "-ERR [AUTH] mailbox is locked by the administrator",
            "+OK send PASS",
            "-ERR [IN-USE] maildrop is already in use",
            "+OK send PASS",
            "-ERR [SYS/TEMP] temporary failure, try again later",
            "-ERR command not supported",
            "+OK bye",
        ]
    );
    assert!(t.commits.is_empty(), "QUIT before login commits nothing");
}

#[test]
fn hostile_lines_get_errors_and_the_session_goes_on() {
    let mut input = Vec::new();
    input.extend_from_slice(&[b'A'; 300]);
    input.extend_from_slice(b"\r\nNO\0OP\r\n\r\nFOO\r\nUSER alice\r\nPASS secret word\r\nRETR 00000000000000001\r\nRETR -1\r\nRETR 0\r\nTOP 1\r\nTOP 1 x\r\nDELE\r\nSTAT 1\r\nuidl 1\r\nQUIT\r\n");
    let t = run(&input);
    let lines: Vec<String> = text(&t).lines().skip(1).map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            "-ERR line too long",
            "-ERR invalid characters in command",
            "-ERR unknown command",
            "-ERR unknown command",
            "+OK send PASS",
            "+OK maildrop locked and ready, 2 messages (75 octets)",
            "-ERR invalid message number",
            "-ERR invalid message number",
            "-ERR no such message",
            "-ERR syntax: TOP msg n",
            "-ERR syntax: TOP msg n",
            "-ERR syntax: one message number expected",
            "-ERR this command takes no arguments",
            "+OK 1 u1",
            "+OK bye (0 messages deleted)",
        ]
    );
}

#[test]
fn commit_failure_and_lost_lock_close_with_error() {
    for (result, expect) in [
        (
            Err(CommitError::TempFailure),
            "-ERR [SYS/TEMP] some deleted messages not removed\r\n",
        ),
        (
            Err(CommitError::LostLock),
            "-ERR [IN-USE] maildrop lock lost, no messages were removed\r\n",
        ),
    ] {
        let mut s = Session::new(Config::default());
        let mut t = Transcript::default();
        s.feed(b"USER alice\r\nPASS secret word\r\nDELE 1\r\nQUIT\r\nNOOP\r\n");
        drive(&mut s, &mut t, &result);
        assert!(text(&t).ends_with(expect), "{}", text(&t));
        assert!(t.closed && s.is_closed());
        assert_eq!(t.commits, vec![vec!["u1".to_string()]]);
    }
}

#[test]
fn stls_discards_pipelined_plaintext_and_auth_plain_works() {
    let config = Config {
        stls: true,
        require_secure_auth: true,
        ..Config::default()
    };
    let mut s = Session::new(config);
    let mut t = Transcript::default();
    // Before TLS: no USER, no SASL, STLS offered; login refused.
    s.feed(b"CAPA\r\nUSER alice\r\nAUTH PLAIN AGFsaWNlAHNlY3JldCB3b3Jk\r\n");
    drive(&mut s, &mut t, &Ok(()));
    let before = text(&t);
    assert!(
        before.contains("STLS\r\n") && !before.contains("USER\r\n") && !before.contains("SASL"),
        "{before}"
    );
    assert_eq!(
        before
            .matches("-ERR [AUTH] plaintext login not allowed, use STLS first")
            .count(),
        2
    );
    // STLS with an injected command in the same packet: the injected one is never run.
    let mut t = Transcript::default();
    s.feed(b"STLS\r\nUSER alice\r\nPASS secret word\r\n");
    drive(&mut s, &mut t, &Ok(()));
    assert_eq!(text(&t), "+OK Begin TLS negotiation\r\n");
    assert_eq!(t.tls, 1);
    assert!(s.is_secure() && !s.is_authenticated());
    // After TLS: AUTH PLAIN with continuation.
    let mut t = Transcript::default();
    s.feed(b"CAPA\r\nSTLS\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldCB3b3Jk\r\nSTAT\r\n");
    drive(&mut s, &mut t, &Ok(()));
    let after = text(&t);
    assert!(
        after.contains("SASL PLAIN\r\n") && !after.contains("STLS\r\n"),
        "{after}"
    );
    assert!(
        after.contains("-ERR TLS already active\r\n+ \r\n+OK maildrop locked and ready"),
        "{after}"
    );
    assert!(s.is_authenticated());
}

#[test]
fn auth_plain_errors() {
    let t = run(b"AUTH\r\nAUTH CRAM-MD5\r\nAUTH PLAIN !!!!\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\nAUTH PLAIN eAB5AHo=\r\nAUTH PLAIN AGFsaWNlAHNlY3JldCB3b3Jk\r\nQUIT\r\n");
    let lines: Vec<String> = text(&t).lines().skip(1).map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            "-ERR command not supported",
            "-ERR unsupported SASL mechanism",
            "-ERR malformed SASL response",
            "+ ",
            "-ERR authentication cancelled",
            "-ERR [AUTH] invalid user name or password",
            "-ERR malformed SASL response",
            "+OK maildrop locked and ready, 2 messages (75 octets)",
            "+OK bye (0 messages deleted)",
        ]
    );
}

#[test]
fn dropped_connection_commits_nothing() {
    let mut s = Session::new(Config::default());
    let mut t = Transcript::default();
    s.feed(b"USER alice\r\nPASS secret word\r\nDELE 1\r\nDELE 2\r\n");
    drive(&mut s, &mut t, &Ok(()));
    assert!(t.commits.is_empty());
    assert!(!t.closed);
}

#[test]
fn never_panics_on_random_input() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let vocabulary: &[&[u8]] = &[
        b"USER alice\r\n",
        b"PASS secret word\r\n",
        b"RETR 1\r\n",
        b"TOP 2 0\r\n",
        b"DELE 1\r\n",
        b"RSET\r\n",
        b"QUIT\r\n",
        b"STLS\r\n",
        b"AUTH PLAIN\r\n",
        b"LIST\r\n",
        b"\r\n",
        b"\n",
        b"\0",
        b"\xff\xfe",
        b".",
        b"UIDL 999999999999\r\n",
        b"CAPA\r\n",
    ];
    for round in 0..2000usize {
        let mut input = Vec::new();
        for _ in 0..(rng.next() % 30) {
            if rng.next().is_multiple_of(3) {
                let len = (rng.next() % 40) as usize;
                input.extend((0..len).map(|_| rng.next() as u8));
            } else {
                input.extend_from_slice(vocabulary[(rng.next() as usize) % vocabulary.len()]);
            }
        }
        let config = Config {
            stls: round.is_multiple_of(2),
            require_secure_auth: round.is_multiple_of(3),
            max_line: 20 + round % 300,
            ..Config::default()
        };
        let mut s = Session::new(config);
        for chunk in input.chunks((rng.next() % 9 + 1) as usize) {
            s.feed(chunk);
            while let Some(a) = s.poll() {
                match a {
                    Action::Authenticate { .. } => s.auth_done(match rng.next() % 5 {
                        0 => AuthOutcome::Ok {
                            messages: vec![MessageInfo {
                                uidl: "u".into(),
                                size: 3,
                            }],
                        },
                        1 => AuthOutcome::Locked,
                        2 => AuthOutcome::InUse,
                        3 => AuthOutcome::TempFailure,
                        _ => AuthOutcome::BadCredentials,
                    }),
                    Action::Fetch { .. } => s.fetch_done(match rng.next() % 3 {
                        0 => Ok((0..(rng.next() % 50)).map(|_| rng.next() as u8).collect()),
                        1 => Err(FetchError::Gone),
                        _ => Err(FetchError::TempFailure),
                    }),
                    Action::Commit { .. } => s.commit_done(if rng.next().is_multiple_of(2) {
                        Ok(())
                    } else {
                        Err(CommitError::LostLock)
                    }),
                    Action::StartTls => s.tls_started(),
                    Action::Send(_) | Action::Close => {}
                }
                // Stray answers are ignored.
                if rng.next().is_multiple_of(7) {
                    s.auth_done(AuthOutcome::BadCredentials);
                    s.fetch_done(Err(FetchError::Gone));
                    s.commit_done(Ok(()));
                    s.tls_started();
                }
            }
        }
    }
}

/// Logs alice in and leaves the session waiting for the message of `command`.
fn pending_fetch(command: &[u8]) -> (Session, Transcript) {
    let mut s = Session::new(Config::default());
    let mut t = Transcript::default();
    s.feed(b"USER alice\r\nPASS secret word\r\n");
    drive(&mut s, &mut t, &Ok(()));
    t.output.clear();
    s.feed(command);
    let Some(Action::Fetch { .. }) = s.poll() else {
        panic!("expected a fetch");
    };
    (s, t)
}

fn collect(s: &mut Session, t: &mut Transcript) {
    while let Some(a) = s.poll() {
        match a {
            Action::Send(b) => t.output.extend(b),
            Action::Close => t.closed = true,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn streamed_retr_and_top_equal_the_whole_message_in_any_chunking() {
    for (command, message) in [
        (&b"RETR 1\r\n"[..], M1),
        (b"TOP 2 1\r\n", M2),
        (b"TOP 1 0\r\n", M1),
    ] {
        let (mut s, mut whole) = pending_fetch(command);
        s.fetch_done(Ok(message.to_vec()));
        collect(&mut s, &mut whole);
        for size in [1, 2, 3, 7] {
            let (mut s, mut t) = pending_fetch(command);
            s.fetch_started();
            for chunk in message.chunks(size) {
                if !s.fetch_chunk(chunk) {
                    break;
                }
            }
            s.fetch_finished();
            collect(&mut s, &mut t);
            assert_eq!(text(&t), text(&whole), "chunks of {size} for {command:?}");
        }
    }
}

#[test]
fn a_fetch_failing_after_its_first_chunk_closes_the_connection() {
    let (mut s, mut t) = pending_fetch(b"RETR 1\r\n");
    s.fetch_started();
    assert!(s.fetch_chunk(&M1[..5]));
    s.fetch_failed(FetchError::TempFailure);
    collect(&mut s, &mut t);
    assert!(t.closed);
    assert!(
        !text(&t).contains("-ERR"),
        "no -ERR inside a started response"
    );
    assert!(
        !text(&t).ends_with(".\r\n"),
        "no terminating dot for an incomplete message"
    );
    // Before the first chunk it is an ordinary -ERR and the session goes on.
    let (mut s, mut t) = pending_fetch(b"RETR 1\r\n");
    s.fetch_failed(FetchError::TempFailure);
    collect(&mut s, &mut t);
    assert!(!t.closed);
    assert!(text(&t).starts_with("-ERR [SYS/TEMP]"), "{}", text(&t));
}

#[test]
fn command_lines_are_counted_for_the_drivers_metrics() {
    let mut s = Session::new(Config::default());
    let mut t = Transcript::default();
    assert_eq!(s.commands(), 0);
    s.feed(b"CAPA\r\nUSER alice\r\nPASS secret word\r\nSTAT\r\nBOGUS\r\n");
    drive(&mut s, &mut t, &Ok(()));
    assert_eq!(s.commands(), 5, "unknown commands count too");
    s.feed(b"QUIT\r\n");
    drive(&mut s, &mut t, &Ok(()));
    assert_eq!(s.commands(), 6);
}

/// RFC 2449 §6.7/§6.8: EXPIRE (with USER before login when domains differ, the user's own
/// value after), LOGIN-DELAY, and the `[LOGIN-DELAY]` response code.
#[test]
fn expire_and_login_delay_capabilities() {
    let capa = |s: &mut Session| -> String {
        s.feed(b"CAPA\r\n");
        let mut out = Vec::new();
        while let Some(a) = s.poll() {
            if let Action::Send(b) = a {
                out.extend(b);
            }
        }
        String::from_utf8(out).unwrap()
    };
    let config = Config {
        expire: pop3::Expire::from_retention(Some(std::time::Duration::from_secs(30 * 86_400))),
        expire_per_user: true,
        login_delay: Some(900),
        ..Config::default()
    };
    let mut s = Session::new(config);
    let before = capa(&mut s);
    assert!(before.contains("\r\nEXPIRE 30 USER\r\n"), "{before}");
    assert!(before.contains("\r\nLOGIN-DELAY 900\r\n"), "{before}");
    s.feed(b"USER alice\r\nPASS pw\r\n");
    let mut out = Vec::new();
    while let Some(a) = s.poll() {
        match a {
            Action::Send(b) => out.extend(b),
            Action::Authenticate { .. } => {
                s.set_expire(pop3::Expire::Days(2));
                s.auth_done(AuthOutcome::Ok { messages: vec![] });
            }
            other => panic!("{other:?}"),
        }
    }
    let after = capa(&mut s);
    assert!(after.contains("\r\nEXPIRE 2\r\n"), "{after}");
    assert!(!after.contains("USER"), "{after}");

    // A short retention still says a day, never 0 (which means "leave nothing").
    assert_eq!(
        pop3::Expire::from_retention(Some(std::time::Duration::from_secs(2))),
        pop3::Expire::Days(1)
    );
    assert_eq!(pop3::Expire::from_retention(None), pop3::Expire::Never);

    let mut s = Session::new(Config::default());
    assert!(capa(&mut s).contains("\r\nEXPIRE NEVER\r\n"));
    s.feed(b"USER alice\r\nPASS pw\r\n");
    let mut out = Vec::new();
    while let Some(a) = s.poll() {
        match a {
            Action::Send(b) => out.extend(b),
            Action::Authenticate { .. } => s.auth_done(AuthOutcome::LoginDelay),
            other => panic!("{other:?}"),
        }
    }
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.ends_with("-ERR [LOGIN-DELAY] logged in too recently, try again later\r\n"),
        "{text}"
    );
}
