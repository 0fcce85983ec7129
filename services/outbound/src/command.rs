//! The commands the client sends (RFC 5321 §4.1.1) with their extension parameters, and the
//! message body's transparency (dot-stuffing, §4.5.2). Sans-io: values in, bytes out.
//!
//! Owns the exact bytes on the wire; must not decide *whether* to send something (that is
//! `session.rs`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::client::{Notify, Recipient, Ret};

pub fn ehlo(hostname: &str) -> Vec<u8> {
    format!("EHLO {hostname}\r\n").into_bytes()
}

pub fn helo(hostname: &str) -> Vec<u8> {
    format!("HELO {hostname}\r\n").into_bytes()
}

pub const STARTTLS: &[u8] = b"STARTTLS\r\n";
pub const DATA: &[u8] = b"DATA\r\n";
pub const QUIT: &[u8] = b"QUIT\r\n";
/// What ends the message (§4.1.1.4); the body sent before it always ends with CRLF.
pub const END_OF_DATA: &[u8] = b".\r\n";

/// The parameters of MAIL FROM the server allows (each only when its extension was offered).
#[derive(Debug, Clone, Default)]
pub struct MailParams<'a> {
    /// RFC 1870 §6: the message size in octets (before dot-stuffing).
    pub size: Option<usize>,
    /// RFC 6152 §3: BODY=8BITMIME.
    pub eight_bit: bool,
    /// RFC 3461 §4.3, §4.4: RET= and ENVID= (ENVID is xtext, passed as given).
    pub ret: Option<Ret>,
    pub envid: Option<&'a str>,
}

/// `MAIL FROM:<addr> [SIZE=n] [BODY=8BITMIME] [RET=..] [ENVID=..]`; "" is the null path `<>`.
pub fn mail_from(address: &str, params: &MailParams<'_>) -> Vec<u8> {
    let mut line = format!("MAIL FROM:<{address}>");
    if let Some(size) = params.size {
        line.push_str(&format!(" SIZE={size}"));
    }
    if params.eight_bit {
        line.push_str(" BODY=8BITMIME");
    }
    if let Some(ret) = params.ret {
        line.push_str(match ret {
            Ret::Full => " RET=FULL",
            Ret::Headers => " RET=HDRS",
        });
    }
    if let Some(envid) = params.envid.filter(|e| !e.is_empty()) {
        line.push_str(&format!(" ENVID={envid}"));
    }
    line.push_str("\r\n");
    line.into_bytes()
}

/// `RCPT TO:<addr> [NOTIFY=..] [ORCPT=..]`, the RFC 3461 §4.1, §4.2 parameters only with `dsn`.
pub fn rcpt_to(recipient: &Recipient, dsn: bool) -> Vec<u8> {
    let mut line = format!("RCPT TO:<{}>", recipient.address);
    if dsn {
        if let Some(notify) = notify_param(recipient.notify) {
            line.push_str(&format!(" NOTIFY={notify}"));
        }
        if let Some(orcpt) = recipient.orcpt.as_deref().filter(|o| !o.is_empty()) {
            line.push_str(&format!(" ORCPT={orcpt}"));
        }
    }
    line.push_str("\r\n");
    line.into_bytes()
}

/// RFC 3461 §4.1: NEVER alone, or a list of SUCCESS, FAILURE, DELAY; nothing when not given.
fn notify_param(n: Notify) -> Option<String> {
    if n.never {
        return Some("NEVER".into());
    }
    let list: Vec<&str> = [
        (n.success, "SUCCESS"),
        (n.failure, "FAILURE"),
        (n.delay, "DELAY"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    (!list.is_empty()).then(|| list.join(","))
}

/// RFC 4616: `AUTH PLAIN base64(\0user\0password)` with the initial response (RFC 4954 §4).
pub fn auth_plain(user: &str, password: &str) -> Vec<u8> {
    let token = BASE64.encode(format!("\0{user}\0{password}"));
    format!("AUTH PLAIN {token}\r\n").into_bytes()
}

pub const AUTH_LOGIN: &[u8] = b"AUTH LOGIN\r\n";

/// One base64 line answering a 334 challenge of AUTH LOGIN.
pub fn auth_response(value: &str) -> Vec<u8> {
    format!("{}\r\n", BASE64.encode(value)).into_bytes()
}

/// Whether the message has octets above 127 (RFC 6152: then BODY=8BITMIME is due).
pub fn is_eight_bit(message: &[u8]) -> bool {
    message.iter().any(|&b| b >= 0x80)
}

/// Dot-stuffing (RFC 5321 §4.5.2) of a message in chunks is the same transparency rule as
/// a POP3 multi-line response (RFC 1939 §3): one implementation serves both. A line starts at
/// the beginning of the message and after every LF (a bare LF too); `finish` ends the data
/// with CRLF "." CRLF.
pub use pop3::Stuffer as DotStuffer;

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = DotStuffer::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn dot_stuffing_is_chunk_invariant() {
        let msg = b".starts\r\nmiddle . dot\r\n.\r\n..two\r\nbare\n.lf\r\nend";
        let expected = b"..starts\r\nmiddle . dot\r\n..\r\n...two\r\nbare\n..lf\r\nend\r\n.\r\n";
        assert_eq!(stuff(&[msg]), expected);
        let ones: Vec<&[u8]> = msg.chunks(1).collect();
        assert_eq!(stuff(&ones), expected);
        let threes: Vec<&[u8]> = msg.chunks(3).collect();
        assert_eq!(stuff(&threes), expected);
        assert_eq!(stuff(&[b"a\r\n"]), b"a\r\n.\r\n");
        assert_eq!(stuff(&[]), b".\r\n");
    }

    #[test]
    fn mail_and_rcpt_parameters() {
        let p = MailParams {
            size: Some(1234),
            eight_bit: true,
            ret: Some(Ret::Headers),
            envid: Some("QQ314159"),
        };
        assert_eq!(
            mail_from("", &p),
            b"MAIL FROM:<> SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=QQ314159\r\n"
        );
        assert_eq!(
            mail_from("a@b", &MailParams::default()),
            b"MAIL FROM:<a@b>\r\n"
        );
        let mut r = Recipient {
            address: "x@y".into(),
            notify: Notify {
                success: true,
                failure: true,
                ..Notify::default()
            },
            orcpt: Some("rfc822;x@y".into()),
        };
        assert_eq!(
            rcpt_to(&r, true),
            b"RCPT TO:<x@y> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y\r\n"
        );
        assert_eq!(rcpt_to(&r, false), b"RCPT TO:<x@y>\r\n");
        r.notify = Notify {
            never: true,
            ..Notify::default()
        };
        r.orcpt = None;
        assert_eq!(rcpt_to(&r, true), b"RCPT TO:<x@y> NOTIFY=NEVER\r\n");
    }

    #[test]
    fn auth_encodings() {
        assert_eq!(auth_plain("u", "p"), b"AUTH PLAIN AHUAcA==\r\n");
        assert_eq!(auth_response("u"), b"dQ==\r\n");
    }
}
