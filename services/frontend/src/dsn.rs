//! Delivery Status Notifications (RFC 3464): the report a sender gets when some recipients of
//! an accepted message could not get it (the seed's NDR). Built with `mail-builder`.

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::MimePart;

/// One recipient the message could not be delivered to.
#[derive(Debug, Clone)]
pub struct Failure {
    pub recipient: String,
    /// Enhanced status code (RFC 3463), e.g. "5.2.2".
    pub status: &'static str,
    /// The SMTP reply a direct refusal would have given.
    pub diagnostic: String,
}

/// Builds the DSN for `failures` of `original`, sent to `sender` from
/// `MAILER-DAEMON@<hostname>`. Returns the complete message with CRLF line endings.
pub fn build(hostname: &str, sender: &str, original: &[u8], failures: &[Failure]) -> Vec<u8> {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let list: String = failures
        .iter()
        .map(|f| format!("  <{}>: {}\r\n", f.recipient, f.diagnostic))
        .collect();
    let human = format!(
        "This is the mail system at {hostname}.\r\n\r\nYour message could not be delivered to the following recipients:\r\n\r\n{list}\r\nAll other recipients received it. The headers of your message are attached.\r\n"
    );
    let mut status = format!("Reporting-MTA: dns; {hostname}\r\nArrival-Date: {date}\r\n");
    for f in failures {
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\nDiagnostic-Code: smtp; {}\r\n",
            f.recipient, f.status, f.diagnostic
        ));
    }
    let headers_end = original
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(original.len());
    let headers = String::from_utf8_lossy(&original[..headers_end]).into_owned();
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", human),
            MimePart::new(ContentType::new("message/delivery-status"), status)
                .transfer_encoding("7bit"),
            MimePart::new(ContentType::new("text/rfc822-headers"), headers),
        ],
    );
    let message = MessageBuilder::new()
        .from((
            "Mail Delivery System",
            format!("MAILER-DAEMON@{hostname}").as_str(),
        ))
        .to(sender.to_string())
        .subject("Undelivered Mail Returned to Sender")
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-replied"),
        )
        .body(report)
        .write_to_vec()
        .unwrap_or_default();
    crlf(message)
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

    #[test]
    fn dsn_is_a_multipart_report_naming_the_failed_recipient() {
        let original = b"From: a@x.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let dsn = build(
            "mx.example.test",
            "a@x.test",
            original,
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
        assert!(text.contains("Status: 5.2.2"));
        assert!(text.contains("Subject: hi"));
        assert!(
            !text.contains("body\r\n--"),
            "original body must not be attached"
        );
        assert!(!text.replace("\r\n", "").contains('\n'), "bare LF in DSN");
    }
}
