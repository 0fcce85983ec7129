//! `Session::shutdown`: what a draining front-end says to a POP3 session still open at its
//! deadline. RFC 1939 §6: without QUIT there is no UPDATE state, so nothing is committed.

use pop3::{Action, AuthOutcome, Config, MessageInfo, Session};

/// Feeds `input`, answering a login with two messages; returns the output and the commits.
fn run(s: &mut Session, input: &[u8]) -> (String, Vec<Vec<String>>, bool) {
    s.feed(input);
    let (mut out, mut commits, mut closed) = (Vec::new(), Vec::new(), false);
    while let Some(a) = s.poll() {
        match a {
            Action::Send(b) => out.extend(b),
            Action::Authenticate { .. } => s.auth_done(AuthOutcome::Ok {
                messages: ["u1", "u2"]
                    .map(|u| MessageInfo {
                        uidl: u.into(),
                        size: 10,
                    })
                    .to_vec(),
            }),
            Action::Commit { delete, .. } => commits.push(delete),
            Action::Close => closed = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    (String::from_utf8(out).unwrap(), commits, closed)
}

#[test]
fn shutdown_after_dele_commits_nothing_and_says_sys_temp() {
    let mut s = Session::new(Config::default());
    let (out, _, _) = run(&mut s, b"USER alice\r\nPASS pw\r\nDELE 1\r\n");
    assert!(out.ends_with("+OK message 1 deleted\r\n"), "{out}");
    s.shutdown();
    let (out, commits, closed) = run(&mut s, b"");
    assert_eq!(
        out,
        "-ERR [SYS/TEMP] server shutting down, try again later\r\n"
    );
    assert!(commits.is_empty(), "no UPDATE state without QUIT");
    assert!(closed && s.is_closed());
    // Input after the close is ignored, and a second shutdown says nothing more.
    s.shutdown();
    assert_eq!(run(&mut s, b"QUIT\r\n"), (String::new(), vec![], false));
}

#[test]
fn shutdown_before_login_and_after_quit() {
    let mut s = Session::new(Config::default());
    s.shutdown();
    let (out, _, closed) = run(&mut s, b"");
    assert!(out.starts_with("-ERR [SYS/TEMP]") && closed, "{out}");

    let mut s = Session::new(Config::default());
    let (out, _, closed) = run(&mut s, b"QUIT\r\n");
    assert_eq!((out.as_str(), closed), ("+OK bye\r\n", true));
    s.shutdown();
    assert_eq!(run(&mut s, b""), (String::new(), vec![], false));
}
