//! Delivery Status Notifications (RFC 3464): the report a sender gets about the recipients of
//! a message — failed, delayed, delivered or relayed. Built with `mail-builder`.
//!
//! This module only builds the message (a `multipart/report`, RFC 6522); it decides nothing
//! about *whether* a DSN is due (RFC 3461 NOTIFY, the null reverse-path): the store does that
//! (`store-node/src/store/notices.rs`), and so far the front-end for its own partial failures.

use std::time::{SystemTime, UNIX_EPOCH};

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

/// The per-recipient `Action` field (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    /// Handed to a server that does not take over the duty to report success.
    Relayed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }

    /// The status class this action must carry when none (or a malformed one) is given.
    fn default_status(self) -> &'static str {
        match self {
            Action::Failed => "5.0.0",
            Action::Delayed => "4.0.0",
            Action::Delivered | Action::Relayed => "2.0.0",
        }
    }
}

/// What the report says about one recipient (RFC 3464 §2.3).
#[derive(Debug, Clone)]
pub struct RecipientReport {
    /// The address the message was (or was to be) delivered to: `Final-Recipient`.
    pub recipient: String,
    /// RFC 3461 ORCPT as given with RCPT TO (e.g. `rfc822;bob@example.org`, xtext):
    /// `Original-Recipient`.
    pub orcpt: Option<String>,
    pub action: Action,
    /// Enhanced status code (RFC 3463), e.g. "5.1.1".
    pub status: String,
    /// What the remote server said, or what went wrong: `Diagnostic-Code`.
    pub diagnostic: Option<String>,
    /// The remote host that answered: `Remote-MTA`.
    pub remote_mta: Option<String>,
    /// Delayed: the time after which the message is given up (`Will-Retry-Until`).
    pub will_retry_until: Option<SystemTime>,
}

/// One DSN: the per-message fields and the recipients it reports on.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// The reporting MTA's host name: `Reporting-MTA` and the `MAILER-DAEMON@` domain.
    pub reporting_host: &'a str,
    /// Where the DSN goes (the original reverse-path).
    pub sender: &'a str,
    /// RFC 3461 ENVID as given with MAIL FROM (xtext): `Original-Envelope-Id`.
    pub envid: Option<&'a str>,
    /// When the message arrived.
    pub arrival: SystemTime,
    /// RFC 3461 RET=FULL: the whole message is returned; otherwise only its header.
    pub return_full: bool,
    /// Unique id of this DSN: its Message-ID is `<id@reporting_host>`.
    pub id: &'a str,
    pub recipients: &'a [RecipientReport],
}

/// Subjects, by the gravest action reported.
pub const SUBJECT_FAILED: &str = "Undelivered Mail Returned to Sender";
pub const SUBJECT_DELAYED: &str = "Delayed Mail (still being retried)";
pub const SUBJECT_SUCCESS: &str = "Successful Mail Delivery Report";

/// Builds the DSN for `report` about `original` (the message as it was queued or stored).
/// Returns the complete message with CRLF line endings.
pub fn build_report(report: &Report<'_>, original: &[u8]) -> Vec<u8> {
    let host = one_line(report.reporting_host);
    let has = |a: Action| report.recipients.iter().any(|r| r.action == a);
    let subject = if has(Action::Failed) {
        SUBJECT_FAILED
    } else if has(Action::Delayed) {
        SUBJECT_DELAYED
    } else {
        SUBJECT_SUCCESS
    };
    let human = human_part(&host, report);
    let status = status_part(&host, report);
    let headers_end = original
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(original.len());
    // RFC 3462 / 6522: the third part is the returned message (RFC 3461 §4.3 RET=FULL) or
    // its header only. Written as it is (never re-encoded: RFC 2046 §5.2.1 allows only
    // 7bit, 8bit or binary for message/rfc822).
    let returned = if report.return_full {
        MimePart::new(ContentType::new("message/rfc822"), original.to_vec())
            .transfer_encoding(encoding_of(original))
    } else {
        let head = &original[..headers_end];
        MimePart::new(ContentType::new("text/rfc822-headers"), head.to_vec())
            .transfer_encoding(encoding_of(head))
    };
    let body = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", human),
            MimePart::new(ContentType::new("message/delivery-status"), status)
                .transfer_encoding("7bit"),
            returned,
        ],
    );
    let message = MessageBuilder::new()
        .from((
            "Mail Delivery System",
            format!("MAILER-DAEMON@{host}").as_str(),
        ))
        .to(report.sender.to_string())
        .subject(subject)
        .message_id(MessageId::new(format!("{}@{host}", one_line(report.id))))
        // RFC 3834 §5: machine-made, never to be answered automatically.
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(body)
        .write_to_vec()
        .unwrap_or_default();
    crlf(message)
}

/// The human-readable first part.
fn human_part(host: &str, report: &Report<'_>) -> String {
    let list = |action: Action| -> String {
        (report.recipients.iter())
            .filter(|r| r.action == action)
            .map(|r| {
                let why = r.diagnostic.as_deref().map(one_line).unwrap_or_default();
                if why.is_empty() {
                    format!("  <{}>\r\n", one_line(&r.recipient))
                } else {
                    format!("  <{}>: {why}\r\n", one_line(&r.recipient))
                }
            })
            .collect()
    };
    let mut text = format!("This is the mail system at {host}.\r\n");
    let failed = list(Action::Failed);
    if !failed.is_empty() {
        text.push_str(&format!(
            "\r\nYour message could not be delivered to the following recipients:\r\n\r\n{failed}"
        ));
    }
    let delayed = list(Action::Delayed);
    if !delayed.is_empty() {
        let until = (report.recipients.iter())
            .filter_map(|r| r.will_retry_until)
            .max()
            .map(|t| format!(" until {}", rfc5322_date(t)))
            .unwrap_or_default();
        text.push_str(&format!(
            "\r\nYour message has not been delivered yet to the following recipients; it is still being retried{until}. You need not send it again.\r\n\r\n{delayed}"
        ));
    }
    let done: String = list(Action::Delivered) + &list(Action::Relayed);
    if !done.is_empty() {
        text.push_str(&format!(
            "\r\nYour message was delivered (or handed on) to the following recipients, as you asked to be told:\r\n\r\n{done}"
        ));
    }
    text.push_str(if report.return_full {
        "\r\nYour message is attached.\r\n"
    } else {
        "\r\nThe header of your message is attached.\r\n"
    });
    text
}

/// The machine-readable `message/delivery-status` part (RFC 3464 §2.1).
fn status_part(host: &str, report: &Report<'_>) -> String {
    // §2.2: per-message fields.
    let mut status = String::new();
    if let Some(envid) = report.envid.filter(|e| !e.is_empty()) {
        // §2.2.1: the ENVID, decoded from xtext (RFC 3461 §4).
        status.push_str(&format!(
            "Original-Envelope-Id: {}\r\n",
            one_line(&xtext_decode(envid))
        ));
    }
    status.push_str(&format!(
        "Reporting-MTA: dns; {host}\r\nArrival-Date: {}\r\n",
        rfc5322_date(report.arrival)
    ));
    // §2.3: one block per recipient.
    for r in report.recipients {
        status.push_str("\r\n");
        if let Some(orcpt) = r.orcpt.as_deref().and_then(original_recipient) {
            status.push_str(&format!("Original-Recipient: {orcpt}\r\n"));
        }
        let code = if is_status_code(&r.status) {
            r.status.as_str()
        } else {
            r.action.default_status()
        };
        status.push_str(&format!(
            "Final-Recipient: rfc822; {}\r\nAction: {}\r\nStatus: {code}\r\n",
            one_line(&r.recipient),
            r.action.as_str(),
        ));
        if let Some(mta) = r.remote_mta.as_deref().filter(|m| !m.is_empty()) {
            status.push_str(&format!("Remote-MTA: dns; {}\r\n", one_line(mta)));
        }
        if let Some(diag) = r.diagnostic.as_deref().filter(|d| !d.is_empty()) {
            status.push_str(&format!("Diagnostic-Code: {}\r\n", diagnostic_code(diag)));
        }
        if let Some(until) = r.will_retry_until.filter(|_| r.action == Action::Delayed) {
            status.push_str(&format!("Will-Retry-Until: {}\r\n", rfc5322_date(until)));
        }
    }
    status
}

/// §2.3.6: `smtp; <reply>` when the text is an SMTP reply, an `X-` type otherwise (a local
/// reason such as "connection timed out").
fn diagnostic_code(text: &str) -> String {
    let text = one_line(text);
    let b = text.as_bytes();
    let smtp_reply = b.len() >= 3
        && b[..3].iter().all(u8::is_ascii_digit)
        && matches!(b.get(3), None | Some(b' ' | b'-'));
    if smtp_reply {
        format!("smtp; {text}")
    } else {
        format!("X-mailroot; {text}")
    }
}

/// §2.3.2: `Original-Recipient: address-type;address` from the ORCPT (decoded from xtext);
/// `None` when it has no address type.
fn original_recipient(orcpt: &str) -> Option<String> {
    let decoded = xtext_decode(orcpt);
    let (kind, addr) = decoded.split_once(';')?;
    let (kind, addr) = (kind.trim(), addr.trim());
    if kind.is_empty() || addr.is_empty() {
        return None;
    }
    Some(one_line(&format!("{kind};{addr}")))
}

/// RFC 3463 §2: `class.subject.detail`, class 2, 4 or 5.
fn is_status_code(s: &str) -> bool {
    let mut parts = s.split('.');
    let ok = |p: Option<&str>, max: usize| {
        p.is_some_and(|p| !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!(s.as_bytes().first(), Some(b'2' | b'4' | b'5'))
        && ok(parts.next(), 1)
        && ok(parts.next(), 3)
        && ok(parts.next(), 3)
        && parts.next().is_none()
}

/// RFC 3461 §4: `+XX` is the octet XX (hexadecimal); anything else is itself.
pub fn xtext_decode(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+'
            && let Some(hex) = b.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(octet) = u8::from_str_radix(hex, 16)
        {
            out.push(octet);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A header field value on one line of printable ASCII: a diagnostic from a remote server or
/// a decoded xtext must not smuggle a line break (a new field) into the report.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ' '..='~' => c,
            _ => ' ',
        })
        .collect::<String>()
        .trim()
        .to_string()
}

/// An RFC 5322 §3.3 date-time (UTC).
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Date::new(secs).to_rfc822()
}

/// 7bit when every octet is ASCII, 8bit otherwise (the part is never re-encoded).
fn encoding_of(bytes: &[u8]) -> &'static str {
    if bytes.is_ascii() { "7bit" } else { "8bit" }
}

/// One recipient the message could not be delivered to (the front-end's partial failures).
#[derive(Debug, Clone)]
pub struct Failure {
    pub recipient: String,
    /// Enhanced status code (RFC 3463), e.g. "5.2.2".
    pub status: &'static str,
    /// The SMTP reply a direct refusal would have given.
    pub diagnostic: String,
}

/// Builds the failure DSN for `failures` of `original`, sent to `sender` from
/// `MAILER-DAEMON@<hostname>`, with the original's header attached.
pub fn build(hostname: &str, sender: &str, original: &[u8], failures: &[Failure]) -> Vec<u8> {
    let recipients: Vec<RecipientReport> = failures
        .iter()
        .map(|f| RecipientReport {
            recipient: f.recipient.clone(),
            orcpt: None,
            action: Action::Failed,
            status: f.status.to_string(),
            diagnostic: Some(f.diagnostic.clone()),
            remote_mta: None,
            will_retry_until: None,
        })
        .collect();
    let id = format!(
        "dsn-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    build_report(
        &Report {
            reporting_host: hostname,
            sender,
            envid: None,
            arrival: SystemTime::now(),
            return_full: false,
            id: &id,
            recipients: &recipients,
        },
        original,
    )
}

/// mail-builder writes CRLF already; this guards the store's "CRLF only" invariant anyway.
fn crlf(bytes: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut prev = 0u8;
    for b in bytes {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &[u8] = b"From: a@x.test\r\nSubject: hi\r\n\r\nbody line\r\n";

    fn rcpt(action: Action, status: &str) -> RecipientReport {
        RecipientReport {
            recipient: "bob@remote.test".into(),
            orcpt: None,
            action,
            status: status.into(),
            diagnostic: Some("550 5.1.1 no such user".into()),
            remote_mta: Some("mx.remote.test".into()),
            will_retry_until: None,
        }
    }

    fn report<'a>(recipients: &'a [RecipientReport], full: bool) -> Report<'a> {
        Report {
            reporting_host: "mx.example.test",
            sender: "a@x.test",
            envid: Some("QQ314159+2Bx"),
            arrival: UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            return_full: full,
            id: "0190c2a0-0000-7000-8000-000000000001",
            recipients,
        }
    }

    #[test]
    fn dsn_is_a_multipart_report_naming_the_failed_recipient() {
        let dsn = build(
            "mx.example.test",
            "a@x.test",
            ORIGINAL,
            &[Failure {
                recipient: "full@example.test".into(),
                status: "5.2.2",
                diagnostic: "552 5.2.2 mailbox full".into(),
            }],
        );
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("MAILER-DAEMON@mx.example.test"), "{text}");
        assert!(text.contains("multipart/report"), "{text}");
        assert!(
            text.contains("report-type=\"delivery-status\"")
                || text.contains("report-type=delivery-status"),
            "{text}"
        );
        assert!(text.contains("Final-Recipient: rfc822; full@example.test"));
        assert!(text.contains("Action: failed"));
        assert!(text.contains("Status: 5.2.2"));
        assert!(text.contains("Diagnostic-Code: smtp; 552 5.2.2 mailbox full"));
        assert!(text.contains("Subject: Undelivered Mail Returned to Sender"));
        assert!(text.contains("Content-Type: text/rfc822-headers"), "{text}");
        assert!(text.contains("Subject: hi"));
        assert!(
            !text.contains("body line"),
            "original body must not be attached"
        );
        assert!(!text.replace("\r\n", "").contains('\n'), "bare LF in DSN");
    }

    #[test]
    fn ret_full_attaches_the_whole_message_unencoded() {
        let r = [rcpt(Action::Failed, "5.1.1")];
        let text = String::from_utf8(build_report(&report(&r, true), ORIGINAL)).unwrap();
        assert!(text.contains("Content-Type: message/rfc822"), "{text}");
        assert!(text.contains("From: a@x.test\r\nSubject: hi\r\n\r\nbody line\r\n"));
        assert!(!text.contains("text/rfc822-headers"));
    }

    #[test]
    fn per_recipient_fields_of_rfc_3464() {
        let mut failed = rcpt(Action::Failed, "5.1.1");
        failed.orcpt = Some("rfc822;Bob+2BTag@remote.test".into());
        let text = String::from_utf8(build_report(&report(&[failed], false), ORIGINAL)).unwrap();
        assert!(
            text.contains("Original-Envelope-Id: QQ314159+x\r\n"),
            "{text}"
        );
        assert!(text.contains("Reporting-MTA: dns; mx.example.test\r\n"));
        assert!(text.contains("Arrival-Date: "));
        assert!(text.contains("Original-Recipient: rfc822;Bob+Tag@remote.test\r\n"));
        assert!(text.contains("Remote-MTA: dns; mx.remote.test\r\n"));
        assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"));
        assert!(
            text.contains("Message-ID: <0190c2a0-0000-7000-8000-000000000001@mx.example.test>")
        );
        assert!(text.contains("Auto-Submitted: auto-replied"));
    }

    #[test]
    fn delay_notice_says_until_when_it_is_retried() {
        let mut delayed = rcpt(Action::Delayed, "4.4.1");
        delayed.diagnostic = Some("connection timed out".into());
        delayed.will_retry_until = Some(UNIX_EPOCH + std::time::Duration::from_secs(1_700_432_000));
        let text = String::from_utf8(build_report(&report(&[delayed], false), ORIGINAL)).unwrap();
        assert!(
            text.contains("Subject: Delayed Mail (still being retried)"),
            "{text}"
        );
        assert!(text.contains("Action: delayed\r\nStatus: 4.4.1\r\n"));
        assert!(text.contains("Will-Retry-Until: "), "{text}");
        assert!(text.contains("Diagnostic-Code: X-mailroot; connection timed out"));
    }

    #[test]
    fn success_and_bad_status_codes() {
        let ok = rcpt(Action::Relayed, "2.0.0");
        let text = String::from_utf8(build_report(&report(&[ok], false), ORIGINAL)).unwrap();
        assert!(text.contains("Subject: Successful Mail Delivery Report"));
        assert!(text.contains("Action: relayed\r\nStatus: 2.0.0"));
        let bad = rcpt(Action::Failed, "550 no");
        let text = String::from_utf8(build_report(&report(&[bad], false), ORIGINAL)).unwrap();
        assert!(text.contains("Status: 5.0.0\r\n"), "{text}");
    }

    #[test]
    fn remote_text_cannot_inject_fields() {
        let mut r = rcpt(Action::Failed, "5.1.1");
        r.diagnostic = Some("550 no\r\nAction: delivered".into());
        let text = String::from_utf8(build_report(&report(&[r], false), ORIGINAL)).unwrap();
        assert!(!text.contains("\r\nAction: delivered"), "{text}");
    }

    #[test]
    fn xtext() {
        assert_eq!(xtext_decode("a+2Bb+3Dc"), "a+b=c");
        assert_eq!(xtext_decode("plain"), "plain");
        assert_eq!(xtext_decode("bad+zz"), "bad+zz");
        assert_eq!(xtext_decode("end+2"), "end+2");
    }

    #[test]
    fn status_codes() {
        for good in ["5.1.1", "4.4.7", "2.0.0", "5.7.26"] {
            assert!(is_status_code(good), "{good}");
        }
        for bad in ["", "5.1", "3.0.0", "5.1.1.1", "5.a.1", "5..1"] {
            assert!(!is_status_code(bad), "{bad}");
        }
    }
}
