//! The session fed scripted replies: what it sends, and what each recipient gets.

use super::*;
use crate::client::{Notify, Recipient, Ret};
use crate::reply::ReplyReader;

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope {
        mail_from: "s@here.test".into(),
        recipients: rcpts.iter().map(|r| Recipient::new(*r)).collect(),
        envid: None,
        ret: None,
    }
}

fn params() -> SessionParams<'static> {
    SessionParams {
        hostname: "me.test",
        remote: "mx.there.test",
        require_tls: false,
        credentials: None,
        message_len: 100,
        eight_bit: false,
    }
}

fn reply(text: &str) -> Reply {
    let mut r = ReplyReader::new();
    r.feed(text.as_bytes()).unwrap();
    r.next_reply().expect("a complete reply")
}

const EHLO_PIPE: &str =
    "250-mx.there.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-DSN\r\n250 8BITMIME\r\n";
const EHLO_PLAIN: &str = "250-mx.there.test\r\n250 SIZE\r\n";

/// Feeds `replies` one by one; returns everything the session asked to send (message
/// bodies as "<message>", TLS as "<tls>"), and the outcome.
fn converse(session: &mut Session<'_>, replies: &[&str]) -> Vec<String> {
    let mut sent = Vec::new();
    for r in replies {
        assert!(
            session.phase().is_some(),
            "session over before {r:?}; sent {sent:?}"
        );
        let mut action = session.on_reply(reply(r));
        loop {
            match action {
                Action::Send(b) => sent.push(String::from_utf8(b).unwrap()),
                Action::SendMessage => sent.push("<message>".into()),
                Action::StartTls => {
                    sent.push("<tls>".into());
                    action = session.tls_established();
                    continue;
                }
                Action::Quit => sent.push("<quit>".into()),
                Action::Read => {}
            }
            break;
        }
    }
    sent
}

fn outcomes(o: &HostOutcome) -> Vec<(usize, Outcome, String)> {
    o.results
        .iter()
        .map(|(i, r)| (*i, r.outcome, r.status.clone()))
        .collect()
}

#[test]
fn one_command_at_a_time_without_pipelining() {
    let env = envelope(&["a@there.test", "b@there.test"]);
    let mut s = Session::new(params(), &env, vec![0, 1]);
    let sent = converse(
        &mut s,
        &[
            "220 mx.there.test ESMTP\r\n",
            EHLO_PLAIN,
            "250 2.1.0 ok\r\n",
            "250 2.1.5 ok\r\n",
            "550 5.1.1 <b@there.test>: no such user\r\n",
            "354 go\r\n",
            "250 2.0.0 queued as X\r\n",
        ],
    );
    assert_eq!(
        sent,
        [
            "EHLO me.test\r\n",
            "MAIL FROM:<s@here.test> SIZE=100\r\n",
            "RCPT TO:<a@there.test>\r\n",
            "RCPT TO:<b@there.test>\r\n",
            "DATA\r\n",
            "<message>",
            "<quit>"
        ]
    );
    assert!(!s.pipelined());
    let o = s.into_outcome();
    assert!(o.failure.is_none());
    assert_eq!(
        outcomes(&o),
        [
            (0, Outcome::Delivered, "2.0.0".into()),
            (1, Outcome::Failed, "5.1.1".into())
        ]
    );
    assert_eq!(o.results[0].1.diagnostic, "smtp; 250 2.0.0 queued as X");
    assert_eq!(o.results[1].1.address, "b@there.test");
    assert_eq!(o.results[1].1.remote_mta.as_deref(), Some("mx.there.test"));
}

#[test]
fn pipelines_mail_rcpt_and_data_in_one_write_with_dsn_parameters() {
    let mut env = envelope(&["a@there.test", "b@there.test"]);
    env.envid = Some("ID1".into());
    env.ret = Some(Ret::Headers);
    env.recipients[1].notify = Notify::from_bits(Notify::FAILURE | Notify::DELAY);
    env.recipients[1].orcpt = Some("rfc822;b@there.test".into());
    let mut s = Session::new(
        SessionParams {
            eight_bit: true,
            ..params()
        },
        &env,
        vec![0, 1],
    );
    let sent = converse(
        &mut s,
        &[
            "220 hi\r\n",
            EHLO_PIPE,
            "250 ok\r\n",
            "451 4.3.0 later\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "250 ok\r\n",
        ],
    );
    assert_eq!(
        sent,
        [
            "EHLO me.test\r\n",
            "MAIL FROM:<s@here.test> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=ID1\r\n\
             RCPT TO:<a@there.test>\r\n\
             RCPT TO:<b@there.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b@there.test\r\n\
             DATA\r\n",
            "<message>",
            "<quit>"
        ]
    );
    assert!(s.pipelined());
    assert_eq!(
        outcomes(&s.into_outcome()),
        [
            (0, Outcome::Deferred, "4.3.0".into()),
            (1, Outcome::Delivered, "2.0.0".into())
        ]
    );
}

#[test]
fn pipelined_data_accepted_with_no_recipient_sends_an_empty_message() {
    let env = envelope(&["a@there.test"]);
    let mut s = Session::new(params(), &env, vec![0]);
    let sent = converse(
        &mut s,
        &[
            "220 hi\r\n",
            EHLO_PIPE,
            "250 ok\r\n",
            "550 no\r\n",
            "354 go ahead anyway\r\n",
            "250 nothing\r\n",
        ],
    );
    assert_eq!(sent[2..], [".\r\n", "<quit>"]);
    assert_eq!(
        outcomes(&s.into_outcome()),
        [(0, Outcome::Failed, "5.0.0".into())]
    );
}

#[test]
fn no_data_without_an_accepted_recipient() {
    let env = envelope(&["a@there.test"]);
    let mut s = Session::new(params(), &env, vec![0]);
    let sent = converse(
        &mut s,
        &["220 hi\r\n", EHLO_PLAIN, "250 ok\r\n", "450 4.2.1 busy\r\n"],
    );
    assert_eq!(sent.last().unwrap(), "<quit>");
    assert!(!sent.iter().any(|c| c == "DATA\r\n"));
    assert_eq!(
        outcomes(&s.into_outcome()),
        [(0, Outcome::Deferred, "4.2.1".into())]
    );
}

#[test]
fn ehlo_refused_falls_back_to_helo_without_extensions() {
    let env = envelope(&["a@there.test"]);
    let mut s = Session::new(params(), &env, vec![0]);
    let sent = converse(
        &mut s,
        &["220 old\r\n", "502 what\r\n", "250 hello\r\n", "250 ok\r\n"],
    );
    assert_eq!(sent[1], "HELO me.test\r\n");
    assert_eq!(sent[2], "MAIL FROM:<s@here.test>\r\n");
}

#[test]
fn starttls_then_ehlo_again_and_auth_only_over_tls() {
    let env = envelope(&["a@there.test"]);
    let p = SessionParams {
        credentials: Some(("user", "pw")),
        ..params()
    };
    let mut s = Session::new(p.clone(), &env, vec![0]);
    let sent = converse(
        &mut s,
        &[
            "220 hi\r\n",
            "250-x\r\n250-STARTTLS\r\n250 AUTH LOGIN\r\n",
            "220 go ahead\r\n",
            "250-x\r\n250 AUTH LOGIN\r\n",
            "334 VXNlcm5hbWU6\r\n",
            "334 UGFzc3dvcmQ6\r\n",
            "235 ok\r\n",
        ],
    );
    assert_eq!(
        sent,
        [
            "EHLO me.test\r\n",
            "STARTTLS\r\n",
            "<tls>",
            "EHLO me.test\r\n",
            "AUTH LOGIN\r\n",
            "dXNlcg==\r\n",
            "cHc=\r\n",
            "MAIL FROM:<s@here.test>\r\n"
        ]
    );
    assert!(s.is_tls());

    // Without STARTTLS the credentials are not sent: the next host is tried.
    let mut s = Session::new(p, &env, vec![0]);
    let sent = converse(&mut s, &["220 hi\r\n", "250-x\r\n250 AUTH PLAIN\r\n"]);
    assert_eq!(sent.last().unwrap(), "<quit>");
    let o = s.into_outcome();
    assert!(o.results.is_empty());
    assert_eq!(o.failure.unwrap().status, "4.7.10");
}

#[test]
fn require_tls_without_starttls_moves_on() {
    let env = envelope(&["a@there.test"]);
    let p = SessionParams {
        require_tls: true,
        ..params()
    };
    let mut s = Session::new(p, &env, vec![0]);
    converse(&mut s, &["220 hi\r\n", EHLO_PIPE]);
    let o = s.into_outcome();
    assert!(o.results.is_empty());
    let f = o.failure.unwrap();
    assert_eq!(f.status, "4.7.10");
    assert!(f.diagnostic.contains("STARTTLS"), "{}", f.diagnostic);
}

#[test]
fn refused_starttls_goes_on_in_plaintext_when_opportunistic() {
    let env = envelope(&["a@there.test"]);
    let mut s = Session::new(params(), &env, vec![0]);
    let sent = converse(
        &mut s,
        &[
            "220 hi\r\n",
            "250-x\r\n250 STARTTLS\r\n",
            "454 4.7.0 no TLS now\r\n",
        ],
    );
    assert_eq!(sent.last().unwrap(), "MAIL FROM:<s@here.test>\r\n");
    assert!(!s.is_tls());
}

#[test]
fn mail_replies_decide_for_every_recipient_or_move_on() {
    let env = envelope(&["a@there.test", "b@there.test"]);
    let mut s = Session::new(params(), &env, vec![0, 1]);
    converse(
        &mut s,
        &["220 hi\r\n", EHLO_PLAIN, "553 5.7.1 sender rejected\r\n"],
    );
    assert_eq!(
        outcomes(&s.into_outcome()),
        [
            (0, Outcome::Failed, "5.7.1".into()),
            (1, Outcome::Failed, "5.7.1".into())
        ]
    );

    let mut s = Session::new(params(), &env, vec![0, 1]);
    converse(&mut s, &["220 hi\r\n", EHLO_PLAIN, "451 4.3.0 later\r\n"]);
    let o = s.into_outcome();
    assert!(o.results.is_empty());
    assert_eq!(o.failure.unwrap().diagnostic, "smtp; 451 4.3.0 later");
}

#[test]
fn greeting_rejections_move_on_as_temporary() {
    let env = envelope(&["a@there.test"]);
    let mut s = Session::new(params(), &env, vec![0]);
    converse(&mut s, &["554 5.3.2 go away\r\n"]);
    let f = s.into_outcome().failure.unwrap();
    assert_eq!(f.status, "4.3.2");
    assert_eq!(f.diagnostic, "smtp; 554 5.3.2 go away");
    assert_eq!(f.remote_mta.as_deref(), Some("mx.there.test"));
}

#[test]
fn messages_over_the_servers_size_fail_before_mail() {
    let env = envelope(&["a@there.test"]);
    let p = SessionParams {
        message_len: 5000,
        ..params()
    };
    let mut s = Session::new(p, &env, vec![0]);
    let sent = converse(&mut s, &["220 hi\r\n", EHLO_PIPE]);
    assert_eq!(sent.last().unwrap(), "<quit>");
    assert_eq!(
        outcomes(&s.into_outcome()),
        [(0, Outcome::Failed, "5.3.4".into())]
    );
}

#[test]
fn failures_before_data_move_on_and_after_data_are_final() {
    let env = envelope(&["a@there.test", "b@there.test"]);
    // Lost after the first RCPT was refused: that answer stays, the other goes on.
    let mut s = Session::new(params(), &env, vec![0, 1]);
    converse(
        &mut s,
        &["220 hi\r\n", EHLO_PLAIN, "250 ok\r\n", "550 no\r\n"],
    );
    s.on_failure("lost connection");
    let o = s.into_outcome();
    assert_eq!(outcomes(&o), [(0, Outcome::Failed, "5.0.0".into())]);
    assert_eq!(o.failure.unwrap().status, "4.4.2");

    // Lost after the message was sent: Deferred, final.
    let mut s = Session::new(params(), &env, vec![0, 1]);
    converse(
        &mut s,
        &[
            "220 hi\r\n",
            EHLO_PLAIN,
            "250 ok\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
        ],
    );
    s.on_failure("timed out after end of data");
    let o = s.into_outcome();
    assert!(o.failure.is_none());
    assert_eq!(
        outcomes(&o),
        [
            (0, Outcome::Deferred, "4.4.2".into()),
            (1, Outcome::Deferred, "4.4.2".into())
        ]
    );

    // No greeting at all: nobody answered.
    let mut s = Session::new(params(), &env, vec![0, 1]);
    s.on_failure("timed out waiting for the greeting");
    let f = s.into_outcome().failure.unwrap();
    assert_eq!((f.status.as_str(), f.remote_mta), ("4.4.1", None));
}

/// Whatever a server answers, the session ends, never panics, and every recipient ends up
/// with a result or with the host failure that passes it on.
#[test]
fn any_reply_sequence_ends_with_every_recipient_accounted_for() {
    let codes = [
        "220", "221", "235", "250", "251", "334", "354", "421", "450", "451", "500", "502", "530",
        "550", "554", "199", "999",
    ];
    let ehlos = [
        EHLO_PIPE,
        EHLO_PLAIN,
        "250-x\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let env = envelope(&["a@x", "b@x", "c@x"]);
    for _ in 0..3000 {
        let p = SessionParams {
            credentials: (next() % 2 == 0).then_some(("u", "p")),
            require_tls: next() % 3 == 0,
            ..params()
        };
        let mut s = Session::new(p, &env, vec![0, 1, 2]);
        let mut steps = 0;
        while s.phase().is_some() {
            steps += 1;
            assert!(steps < 100, "the session does not end");
            let r = if s.phase() == Some(Phase::Ehlo) && next() % 2 == 0 {
                reply(ehlos[(next() % 3) as usize])
            } else {
                reply(&format!(
                    "{} text\r\n",
                    codes[(next() % codes.len() as u64) as usize]
                ))
            };
            match s.on_reply(r) {
                Action::StartTls => {
                    if next() % 2 == 0 {
                        s.tls_established();
                    } else {
                        s.on_failure("handshake failed");
                    }
                }
                _ if next() % 40 == 0 => s.on_failure("lost"),
                _ => {}
            }
        }
        let o = s.into_outcome();
        if o.failure.is_none() {
            assert_eq!(o.results.len(), 3);
        }
        assert!(o.results.len() <= 3);
    }
}
