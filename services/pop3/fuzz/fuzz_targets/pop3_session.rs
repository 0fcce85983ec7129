//! Feeds arbitrary bytes, in arbitrary chunks, to a POP3 session and answers every request with
//! a verdict chosen by the input. The session must never panic and never hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pop3::{Action, AuthOutcome, CommitError, Config, FetchError, MessageInfo, Session};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let config = Config {
        stls: control & 1 != 0,
        require_secure_auth: control & 2 != 0,
        ..Config::default()
    };
    let mut s = Session::new(config);
    let chunk = usize::from(control >> 4) + 1;
    let mut turn = 0usize;
    for piece in input.chunks(chunk) {
        s.feed(piece);
        while let Some(action) = s.poll() {
            turn += 1;
            match action {
                Action::Authenticate { .. } => s.auth_done(match turn % 4 {
                    0 => AuthOutcome::Ok {
                        messages: vec![
                            MessageInfo { uidl: "a".into(), size: 10 },
                            MessageInfo { uidl: "b".into(), size: 0 },
                        ],
                    },
                    1 => AuthOutcome::InUse,
                    2 => AuthOutcome::TempFailure,
                    _ => AuthOutcome::BadCredentials,
                }),
                Action::Fetch { .. } => s.fetch_done(match turn % 3 {
                    0 => Ok(input.to_vec()),
                    1 => Err(FetchError::Gone),
                    _ => Err(FetchError::TempFailure),
                }),
                Action::Commit { .. } => s.commit_done(if turn % 2 == 0 {
                    Ok(())
                } else {
                    Err(CommitError::LostLock)
                }),
                Action::StartTls => s.tls_started(),
                Action::Send(_) | Action::Close => {}
            }
        }
    }
});
