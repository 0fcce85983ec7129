//! Arbitrary bytes, in arbitrary chunks, into an SMTP session whose every request gets a verdict
//! chosen by the input. The session must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp::{Action, AuthVerdict, Config, DeliverVerdict, RcptVerdict, Session};

pub fn drive(control: u8, input: &[u8]) {
    let mut config = Config::new("mx.fuzz.test");
    config.starttls = control & 1 != 0;
    config.auth = control & 2 != 0;
    config.submission = control & 4 != 0;
    config.require_secure_auth = control & 8 != 0;
    config.max_message_size = 4096;
    config.max_recipients = 5;
    let mut s = Session::new(config);
    let chunk = usize::from(control >> 4) + 1;
    let mut turn = 0usize;
    for piece in input.chunks(chunk) {
        s.feed(piece);
        while let Some(action) = s.poll() {
            turn += 1;
            match action {
                Action::CheckRecipient { .. } => s.rcpt_done(match turn % 5 {
                    0 => RcptVerdict::UnknownUser,
                    1 => RcptVerdict::RelayDenied,
                    2 => RcptVerdict::MailboxFull,
                    3 => RcptVerdict::TooBig,
                    _ => RcptVerdict::Accept,
                }),
                Action::Deliver { .. } => s.deliver_done(match turn % 3 {
                    0 => DeliverVerdict::Stored { id: "x".into() },
                    1 => DeliverVerdict::MailboxFull,
                    _ => DeliverVerdict::TempFailure,
                }),
                Action::Authenticate { .. } => s.auth_done(match turn % 3 {
                    0 => AuthVerdict::Ok {
                        senders: vec!["a@fuzz.test".into()],
                    },
                    1 => AuthVerdict::Invalid,
                    _ => AuthVerdict::TempFailure,
                }),
                Action::StartTls => s.tls_started(),
                Action::Send(_) | Action::Close => {}
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some((&control, input)) = data.split_first() {
        drive(control, input);
    }
});
