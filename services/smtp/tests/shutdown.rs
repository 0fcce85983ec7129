//! `Session::shutdown`: what a draining front-end says to an SMTP session still open at its
//! deadline (RFC 5321 3.8: 421, then close; the transaction in progress is abandoned).

use smtp::{Action, Config, RcptVerdict, Session};

fn run(s: &mut Session, input: &[u8]) -> (String, usize, bool) {
    s.feed(input);
    let (mut out, mut delivered, mut closed) = (Vec::new(), 0, false);
    while let Some(a) = s.poll() {
        match a {
            Action::Send(b) => out.extend(b),
            Action::CheckRecipient { .. } => s.rcpt_done(RcptVerdict::Accept),
            Action::Deliver { .. } => delivered += 1,
            Action::Close => closed = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    (String::from_utf8(out).unwrap(), delivered, closed)
}

#[test]
fn shutdown_mid_data_says_421_4_3_2_and_delivers_nothing() {
    let mut s = Session::new(Config::new("mx.example.test"));
    let (out, _, _) = run(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nSubject: half\r\n",
    );
    assert!(
        out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"),
        "{out}"
    );
    s.shutdown();
    let (out, delivered, closed) = run(&mut s, b"");
    assert_eq!(
        out,
        "421 4.3.2 mx.example.test service shutting down, closing connection\r\n"
    );
    assert_eq!(delivered, 0);
    assert!(closed && s.is_closed());
    // The rest of the message arrives too late: ignored, nothing more is said.
    s.shutdown();
    assert_eq!(run(&mut s, b"body\r\n.\r\n"), (String::new(), 0, false));
}

#[test]
fn shutdown_after_quit_says_nothing() {
    let mut s = Session::new(Config::new("mx.example.test"));
    let (out, _, closed) = run(&mut s, b"QUIT\r\n");
    assert!(out.starts_with("221 ") && closed, "{out}");
    s.shutdown();
    assert_eq!(run(&mut s, b""), (String::new(), 0, false));
}
