//! One command line (without its line ending) → verb and parsed arguments.
//!
//! The verb is split off here so the session can check command sequence (503) before syntax;
//! EHLO/HELO/MAIL/RCPT arguments are parsed by `smtp-proto` (RFC 5321 4.1.1, 4.1.2), and this
//! module narrows its result to what we advertise: SIZE (RFC 1870), BODY=7BIT|8BITMIME
//! (RFC 6152) and the DSN parameters RET, ENVID, NOTIFY and ORCPT (RFC 3461). Anything else is
//! refused with 555 (RFC 5321 4.1.1.11).

use std::borrow::Cow;

use smtp_proto::{
    Error as ParseError, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MAIL_RET_FULL, MAIL_RET_HDRS,
    MailFrom, RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS,
    Request,
};

use crate::reply::Reply;
use crate::{Notify, RcptParams, Ret};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    Auth,
    /// Known commands we do not offer: EXPN (RFC 5321 3.5.3), BDAT, ETRN, ATRN, BURL.
    NotImplemented,
    Unknown,
}

/// Splits `line` into its verb and the argument bytes after the first space.
pub(crate) fn verb(line: &[u8]) -> (Verb, &[u8]) {
    let (word, args) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    let is = |name: &str| word.eq_ignore_ascii_case(name.as_bytes());
    let verb = if is("EHLO") {
        Verb::Ehlo
    } else if is("HELO") {
        Verb::Helo
    } else if is("MAIL") {
        Verb::Mail
    } else if is("RCPT") {
        Verb::Rcpt
    } else if is("DATA") {
        Verb::Data
    } else if is("RSET") {
        Verb::Rset
    } else if is("NOOP") {
        Verb::Noop
    } else if is("QUIT") {
        Verb::Quit
    } else if is("VRFY") {
        Verb::Vrfy
    } else if is("HELP") {
        Verb::Help
    } else if is("STARTTLS") {
        Verb::StartTls
    } else if is("AUTH") {
        Verb::Auth
    } else if ["EXPN", "BDAT", "ETRN", "ATRN", "BURL"]
        .iter()
        .any(|n| is(n))
    {
        Verb::NotImplemented
    } else {
        Verb::Unknown
    };
    (verb, args)
}

/// True if the arguments are empty or only spaces/tabs.
pub(crate) fn is_blank(args: &[u8]) -> bool {
    args.iter().all(|&b| b == b' ' || b == b'\t')
}

/// Runs the `smtp-proto` parser over one line. It wants the line ending, so add it back.
fn parse_request(line: &[u8]) -> Result<Request<String>, ParseError> {
    let mut framed = Vec::with_capacity(line.len() + 2);
    framed.extend_from_slice(line);
    framed.extend_from_slice(b"\r\n");
    Request::parse(&mut framed.iter()).map(Request::into_owned)
}

/// EHLO/HELO argument (RFC 5321 4.1.1.1).
pub(crate) fn parse_hello(line: &[u8]) -> Result<String, Reply> {
    match parse_request(line) {
        Ok(Request::Ehlo { host } | Request::Helo { host }) if !host.is_empty() => Ok(host),
        _ => Err(Reply::HelloSyntax),
    }
}

/// A parsed `MAIL FROM:` (RFC 5321 4.1.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mail {
    pub from: String,
    pub size: Option<u64>,
    /// RFC 3461 4.3 RET.
    pub ret: Option<Ret>,
    /// RFC 3461 4.4 ENVID (xtext decoded).
    pub envid: Option<String>,
}

/// `MAIL FROM:<reverse-path> [SIZE=n] [BODY=7BIT|8BITMIME]`.
pub(crate) fn parse_mail(line: &[u8], args: &[u8]) -> Result<Mail, Reply> {
    let from = match parse_request(line) {
        Ok(Request::Mail { from }) => from,
        Ok(_) => return Err(Reply::MailSyntax),
        Err(ParseError::InvalidSenderAddress) => return Err(Reply::SenderSyntax),
        Err(ParseError::UnsupportedParameter { .. }) => return Err(Reply::UnsupportedMailParam),
        // A SIZE too large to count is still a size problem (RFC 1870 6.1), not syntax.
        Err(ParseError::InvalidParameter { param: "SIZE" }) if size_param(args).is_some() => {
            return Err(Reply::SizeExceeded);
        }
        Err(_) => return Err(Reply::MailSyntax),
    };
    if !only_advertised_mail_params(&from) {
        return Err(Reply::UnsupportedMailParam);
    }
    // smtp-proto maps `<postmaster>` to "" like `<>`; only the real `<>` is a null sender.
    if from.address.is_empty() && !bracketed(args).is_some_and(|inner| inner.trim().is_empty()) {
        return Err(Reply::SenderSyntax);
    }
    if !from.address.is_empty() && !is_mailbox(&from.address) {
        return Err(Reply::SenderSyntax);
    }
    // smtp-proto reports an absent SIZE as 0; look at the line to tell `SIZE=0` apart.
    let size = match size_param(args) {
        Some(Some(n)) => Some(n),
        Some(None) => return Err(Reply::SizeExceeded),
        None if from.size != 0 => Some(from.size as u64),
        None => None,
    };
    // RFC 3461 4.3: RET=FULL and RET=HDRS together is a syntax error.
    let ret = match (
        from.flags & MAIL_RET_FULL != 0,
        from.flags & MAIL_RET_HDRS != 0,
    ) {
        (true, true) => return Err(Reply::MailSyntax),
        (true, false) => Some(Ret::Full),
        (false, true) => Some(Ret::Headers),
        (false, false) => None,
    };
    Ok(Mail {
        from: from.address,
        size,
        ret,
        envid: from.env_id,
    })
}

/// Only extensions from our EHLO reply may appear on MAIL (RFC 5321 4.1.1.11).
fn only_advertised_mail_params(from: &MailFrom<String>) -> bool {
    from.flags & !(MAIL_BODY_7BIT | MAIL_BODY_8BITMIME | MAIL_RET_FULL | MAIL_RET_HDRS) == 0
        && from.trans_id.is_none()
        && from.by == 0
        && from.solicit.is_none()
        && from.mtrk.is_none()
        && from.auth.is_none()
        && from.hold_for == 0
        && from.hold_until == 0
        && from.mt_priority == 0
}

/// `RCPT TO:<forward-path> [NOTIFY=...] [ORCPT=rfc822;...]` (RFC 5321 4.1.1.3, RFC 3461 4.1,
/// 4.2). `<Postmaster>` without a domain is passed through as `postmaster` (RFC 5321 4.5.1).
pub(crate) fn parse_rcpt(line: &[u8], args: &[u8]) -> Result<(String, RcptParams), Reply> {
    let to = match parse_request(line) {
        Ok(Request::Rcpt { to }) => to,
        Err(ParseError::UnsupportedParameter { .. }) => return Err(Reply::UnsupportedRcptParam),
        _ => return Err(Reply::RcptSyntax),
    };
    // No RRVS (RFC 7293) or CONNEG advertised.
    if to.rrvs != 0 {
        return Err(Reply::UnsupportedRcptParam);
    }
    let notify = Notify {
        never: to.flags & RCPT_NOTIFY_NEVER != 0,
        success: to.flags & RCPT_NOTIFY_SUCCESS != 0,
        failure: to.flags & RCPT_NOTIFY_FAILURE != 0,
        delay: to.flags & RCPT_NOTIFY_DELAY != 0,
    };
    // RFC 3461 4.1: NEVER stands alone.
    if notify.never && (notify.success || notify.failure || notify.delay) {
        return Err(Reply::RcptSyntax);
    }
    let params = RcptParams {
        notify,
        orcpt: to.orcpt.map(|a| format!("rfc822;{a}")),
    };
    if to.address.is_empty() {
        return match bracketed(args) {
            Some(inner) if inner.trim().eq_ignore_ascii_case("postmaster") => {
                Ok(("postmaster".to_string(), params))
            }
            _ => Err(Reply::RcptSyntax),
        };
    }
    if !is_mailbox(&to.address) {
        return Err(Reply::RcptSyntax);
    }
    Ok((to.address, params))
}

/// `local-part@domain` with both parts present (RFC 5321 4.1.2 `Mailbox`); smtp-proto lets
/// an empty domain through.
fn is_mailbox(address: &str) -> bool {
    address
        .rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
}

/// The text between the first `<` and the next `>`.
fn bracketed(args: &[u8]) -> Option<Cow<'_, str>> {
    let open = args.iter().position(|&b| b == b'<')?;
    let rest = &args[open + 1..];
    let close = rest.iter().position(|&b| b == b'>')?;
    Some(String::from_utf8_lossy(&rest[..close]))
}

/// Looks for a `SIZE=` parameter after the path: `None` if absent, `Some(Some(n))` if it
/// fits in a u64, `Some(None)` if it is all digits but too large to represent.
fn size_param(args: &[u8]) -> Option<Option<u64>> {
    let after_path = match args.iter().rposition(|&b| b == b'>') {
        Some(i) => &args[i + 1..],
        None => args,
    };
    after_path
        .split(|&b| b == b' ' || b == b'\t')
        .find_map(|token| {
            let value = token
                .get(..5)
                .filter(|key| key.eq_ignore_ascii_case(b"SIZE="))
                .map(|_| &token[5..])?;
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some(
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(verb(b"ehlo x").0, Verb::Ehlo);
        assert_eq!(verb(b"MaIl FROM:<a@b>"), (Verb::Mail, &b"FROM:<a@b>"[..]));
        assert_eq!(verb(b"DATA").0, Verb::Data);
        assert_eq!(verb(b"StartTLS").0, Verb::StartTls);
        assert_eq!(verb(b"EXPN x").0, Verb::NotImplemented);
        assert_eq!(verb(b"MAILX").0, Verb::Unknown);
        assert_eq!(verb(b"").0, Verb::Unknown);
    }

    fn mail(line: &str) -> Result<Mail, Reply> {
        let (_, args) = verb(line.as_bytes());
        parse_mail(line.as_bytes(), args)
    }

    fn rcpt(line: &str) -> Result<String, Reply> {
        rcpt_params(line).map(|(a, _)| a)
    }

    fn rcpt_params(line: &str) -> Result<(String, RcptParams), Reply> {
        let (_, args) = verb(line.as_bytes());
        parse_rcpt(line.as_bytes(), args)
    }

    #[test]
    fn mail_parameters() {
        assert_eq!(
            mail("MAIL FROM:<a@b.c>"),
            Ok(Mail {
                from: "a@b.c".into(),
                size: None,
                ret: None,
                envid: None,
            })
        );
        assert_eq!(mail("MAIL FROM:<a@b.c> SIZE=0").unwrap().size, Some(0));
        assert_eq!(
            mail("MAIL FROM:<a@b.c> size=123 BODY=8BITMIME")
                .unwrap()
                .size,
            Some(123)
        );
        assert_eq!(mail("MAIL FROM:<> BODY=7BIT").unwrap().from, "");
        assert_eq!(
            mail("MAIL FROM:<a@b.c> SIZE=99999999999999999999999999"),
            Err(Reply::SizeExceeded)
        );
        assert_eq!(
            mail("MAIL FROM:<a@b.c> FOO=bar"),
            Err(Reply::UnsupportedMailParam)
        );
        assert_eq!(
            mail("MAIL FROM:<a@b.c> RET=FULL").unwrap().ret,
            Some(Ret::Full)
        );
        let m = mail("MAIL FROM:<a@b.c> RET=HDRS ENVID=QQ314159").unwrap();
        assert_eq!(
            (m.ret, m.envid.as_deref()),
            (Some(Ret::Headers), Some("QQ314159"))
        );
        assert_eq!(
            mail("MAIL FROM:<a@b.c> RET=FULL RET=HDRS"),
            Err(Reply::MailSyntax)
        );
        assert_eq!(
            mail("MAIL FROM:<a@b.c> BODY=BINARYMIME"),
            Err(Reply::UnsupportedMailParam)
        );
        assert_eq!(mail("MAIL FROM:<postmaster>"), Err(Reply::SenderSyntax));
        assert_eq!(mail("MAIL FROM:<a@@b>"), Err(Reply::SenderSyntax));
        assert_eq!(mail("MAIL FROM:<a@>"), Err(Reply::SenderSyntax));
        assert_eq!(mail("MAIL FROM:a@b"), Err(Reply::MailSyntax));
        assert_eq!(mail("MAIL"), Err(Reply::MailSyntax));
    }

    #[test]
    fn rcpt_parameters() {
        assert_eq!(rcpt("RCPT TO:<u@d.e>"), Ok("u@d.e".into()));
        assert_eq!(rcpt("RCPT TO:<Postmaster>"), Ok("postmaster".into()));
        assert_eq!(rcpt("RCPT TO:<>"), Err(Reply::RcptSyntax));
        assert_eq!(rcpt("RCPT TO:u@d.e"), Err(Reply::RcptSyntax));
        assert_eq!(rcpt("RCPT TO:<u@>"), Err(Reply::RcptSyntax));
        let (_, p) = rcpt_params("RCPT TO:<u@d.e> NOTIFY=NEVER").unwrap();
        assert!(p.notify.never && !p.notify.failure);
        let (_, p) =
            rcpt_params("RCPT TO:<u@d.e> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;U+40d.e").unwrap();
        assert!(p.notify.success && p.notify.delay && !p.notify.failure);
        assert_eq!(p.orcpt.as_deref(), Some("rfc822;U@d.e"));
        assert_eq!(
            rcpt("RCPT TO:<u@d.e> NOTIFY=NEVER,SUCCESS"),
            Err(Reply::RcptSyntax)
        );
        assert_eq!(
            rcpt("RCPT TO:<u@d.e> NOTIFY=SOMETIMES"),
            Err(Reply::RcptSyntax)
        );
        assert_eq!(
            rcpt("RCPT TO:<u@d.e> X=1"),
            Err(Reply::UnsupportedRcptParam)
        );
    }

    #[test]
    fn hello_argument() {
        assert_eq!(
            parse_hello(b"EHLO client.example"),
            Ok("client.example".into())
        );
        assert_eq!(parse_hello(b"HELO [192.0.2.1]"), Ok("[192.0.2.1]".into()));
        assert_eq!(parse_hello(b"EHLO"), Err(Reply::HelloSyntax));
        assert_eq!(parse_hello(b"EHLO "), Err(Reply::HelloSyntax));
    }
}
