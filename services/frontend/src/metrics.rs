//! The front-end's metric names, their descriptions, and [`Meter`], which the connection
//! drivers feed as a session goes. Without `--metrics` no recorder is installed and every
//! call here is a no-op. Labels are bounded: `protocol` is a listener kind
//! ([`Service::name`]), `method` a store RPC, `class`/`status`/`result` fixed words; never
//! an address, a user or an IP.
//!
//! Reply classes are read from the bytes the sessions produce: every SMTP `Send` is replies
//! only (the final line of each carries the code), and every POP3 `Send` in the driver's main
//! loop is one reply (`+OK`/`-ERR`), a SASL continuation (`+ `) or the end of a message body
//! (`.`); message bodies themselves go through `pop3_conn::send_message` and are never read.

use metrics::{Counter, Unit, describe_counter, describe_gauge, describe_histogram};

use crate::Service;

/// Client connections admitted, by `protocol`.
pub const SESSIONS: &str = "mailroot_sessions_total";
/// Client connections open now, by `protocol`.
pub const ACTIVE_CONNECTIONS: &str = "mailroot_active_connections";
/// Connections refused by `--max-connections` / `--max-connections-per-ip`, by `protocol`.
pub const CONNECTIONS_REFUSED: &str = "mailroot_connections_refused_total";
/// Command lines processed, by `protocol`.
pub const COMMANDS: &str = "mailroot_commands_total";
/// SMTP replies by `protocol` and `class` (2xx, 3xx, 4xx, 5xx).
pub const SMTP_REPLIES: &str = "mailroot_smtp_replies_total";
/// POP3 replies by `protocol` and `status` (ok, err).
pub const POP3_REPLIES: &str = "mailroot_pop3_replies_total";
/// Octets read from and written to clients, by `protocol` (TLS records not counted).
pub const BYTES_RECEIVED: &str = "mailroot_bytes_received_total";
pub const BYTES_SENT: &str = "mailroot_bytes_sent_total";
/// TLS handshakes (implicit TLS, STARTTLS, STLS) by `protocol` and `result` (ok, failed).
pub const TLS_HANDSHAKES: &str = "mailroot_tls_handshakes_total";
/// End of DATA to the store's answer (the 250 waits for the fsync), by `result`.
pub const SMTP_DATA_SECONDS: &str = "mailroot_smtp_data_seconds";
/// POP3 login (password check and maildrop lease in the store), by `result` (ok, failed).
pub const POP3_LOGIN_SECONDS: &str = "mailroot_pop3_login_seconds";
/// RETR/TOP from the request until the whole message is queued for the client.
pub const POP3_RETR_SECONDS: &str = "mailroot_pop3_retr_seconds";
/// Outbound recipients attempted by this node's delivery workers, by `outcome` (delivered,
/// deferred, failed).
pub const OUTBOUND_RECIPIENTS: &str = "mailroot_outbound_recipients_total";
/// One queue entry's delivery attempt, claim to report.
pub const OUTBOUND_ATTEMPT_SECONDS: &str = "mailroot_outbound_attempt_seconds";
/// Store calls made by this node, by `method` and `result` (ok, error, unavailable),
/// retries included: what a session waited.
pub const STORE_RPC_SECONDS: &str = "mailroot_store_rpc_seconds";
/// Attempts to open the settings stream again after it ended, broke or could not be opened.
pub const SETTINGS_RECONNECTS: &str = "mailroot_settings_stream_reconnects_total";
/// 1 while the settings stream from the store is open and current, else 0.
pub const SETTINGS_LIVE: &str = "mailroot_settings_stream_up";

/// Gives every metric its `# HELP` text (call once, after the recorder is installed).
pub fn describe() {
    describe_counter!(SESSIONS, "Client connections admitted, by protocol");
    describe_gauge!(
        ACTIVE_CONNECTIONS,
        "Client connections open now, by protocol"
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Client connections refused by the connection limits, by protocol"
    );
    describe_counter!(COMMANDS, "Command lines processed, by protocol");
    describe_counter!(SMTP_REPLIES, "SMTP replies sent, by protocol and class");
    describe_counter!(POP3_REPLIES, "POP3 replies sent, by protocol and status");
    describe_counter!(BYTES_RECEIVED, Unit::Bytes, "Octets read from clients");
    describe_counter!(BYTES_SENT, Unit::Bytes, "Octets written to clients");
    describe_counter!(
        TLS_HANDSHAKES,
        "Client TLS handshakes, by protocol and result"
    );
    describe_histogram!(
        SMTP_DATA_SECONDS,
        Unit::Seconds,
        "End of DATA to the store's answer (250 only after fsync), by result"
    );
    describe_histogram!(
        POP3_LOGIN_SECONDS,
        Unit::Seconds,
        "POP3 login: password check and maildrop lease, by result"
    );
    describe_histogram!(
        POP3_RETR_SECONDS,
        Unit::Seconds,
        "POP3 RETR/TOP from request until the whole message is queued for the client"
    );
    describe_histogram!(
        STORE_RPC_SECONDS,
        Unit::Seconds,
        "Store calls by method and result, retries included"
    );
    describe_counter!(
        SETTINGS_RECONNECTS,
        "Attempts to reopen the settings stream after it ended, broke or failed to open"
    );
    describe_gauge!(
        SETTINGS_LIVE,
        "1 while the settings stream from the store is open"
    );
    describe_counter!(
        OUTBOUND_RECIPIENTS,
        "Outbound recipients attempted by this node, by outcome (delivered, deferred, failed)"
    );
    describe_histogram!(
        OUTBOUND_ATTEMPT_SECONDS,
        Unit::Seconds,
        "One outbound queue entry's delivery attempt, claim to report"
    );
}

/// One client connection's metrics: counted as a session and as an active connection from
/// [`Meter::admit`] until dropped.
pub struct Meter {
    protocol: &'static str,
    commands_seen: u64,
    commands: Counter,
    received: Counter,
    sent: Counter,
}

impl Meter {
    /// A connection was admitted (after the connection limits).
    pub fn admit(service: Service) -> Meter {
        let protocol = service.name();
        metrics::counter!(SESSIONS, "protocol" => protocol).increment(1);
        metrics::gauge!(ACTIVE_CONNECTIONS, "protocol" => protocol).increment(1.0);
        Meter {
            protocol,
            commands_seen: 0,
            commands: metrics::counter!(COMMANDS, "protocol" => protocol),
            received: metrics::counter!(BYTES_RECEIVED, "protocol" => protocol),
            sent: metrics::counter!(BYTES_SENT, "protocol" => protocol),
        }
    }

    /// A connection refused by the limits (no session).
    pub fn refused(service: Service) {
        metrics::counter!(CONNECTIONS_REFUSED, "protocol" => service.name()).increment(1);
    }

    /// The session's running count of command lines (`Session::commands`).
    pub fn commands(&mut self, total: u64) {
        self.commands
            .increment(total.saturating_sub(self.commands_seen));
        self.commands_seen = self.commands_seen.max(total);
    }

    pub fn received(&self, octets: usize) {
        self.received.increment(octets as u64);
    }

    /// Bytes from the SMTP session: counted, and each reply by class.
    pub fn smtp_sent(&self, bytes: &[u8]) {
        self.sent.increment(bytes.len() as u64);
        for class in smtp_reply_classes(bytes) {
            metrics::counter!(SMTP_REPLIES, "protocol" => self.protocol, "class" => class)
                .increment(1);
        }
    }

    /// A reply (or the end of a message body) from the POP3 session, outside a RETR body.
    pub fn pop3_sent(&self, bytes: &[u8]) {
        self.sent.increment(bytes.len() as u64);
        if let Some(status) = pop3_status(bytes) {
            self.pop3_reply(status);
        }
    }

    /// Part of a message body (RETR/TOP): counted as bytes only.
    pub fn body_sent(&self, bytes: &[u8]) {
        self.sent.increment(bytes.len() as u64);
    }

    pub fn pop3_reply(&self, status: &'static str) {
        metrics::counter!(POP3_REPLIES, "protocol" => self.protocol, "status" => status)
            .increment(1);
    }

    pub fn tls_handshake(&self, ok: bool) {
        tls_handshake(self.protocol, ok);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        metrics::gauge!(ACTIVE_CONNECTIONS, "protocol" => self.protocol).decrement(1.0);
    }
}

pub fn tls_handshake(protocol: &'static str, ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    metrics::counter!(TLS_HANDSHAKES, "protocol" => protocol, "result" => result).increment(1);
}

/// `ok`/`failed`, the `result` label of the latency histograms.
pub fn result(ok: bool) -> &'static str {
    if ok { "ok" } else { "failed" }
}

/// The class of every complete SMTP reply in `bytes`: RFC 5321 §4.2, a reply's last line is
/// `ddd SP text` or `ddd` alone; `ddd-` lines continue it.
pub fn smtp_reply_classes(bytes: &[u8]) -> impl Iterator<Item = &'static str> + '_ {
    bytes.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let last = line.len() == 3 || line.get(3) == Some(&b' ');
        if !last || !line[..3].iter().all(u8::is_ascii_digit) {
            return None;
        }
        match line[0] {
            b'2' => Some("2xx"),
            b'3' => Some("3xx"),
            b'4' => Some("4xx"),
            b'5' => Some("5xx"),
            _ => None,
        }
    })
}

/// `ok`/`err` for a POP3 reply (RFC 1939 §3 status indicators); None for a SASL continuation
/// or the end of a message body.
pub fn pop3_status(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"+OK") {
        Some("ok")
    } else if bytes.starts_with(b"-ERR") {
        Some("err")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_replies_are_counted_once_by_their_last_line() {
        let ehlo = b"250-mx.example.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n";
        assert_eq!(smtp_reply_classes(ehlo).collect::<Vec<_>>(), ["2xx"]);
        let pipelined = b"250 2.1.0 ok\r\n550 5.1.1 no\r\n354 go ahead\r\n";
        assert_eq!(
            smtp_reply_classes(pipelined).collect::<Vec<_>>(),
            ["2xx", "5xx", "3xx"]
        );
        assert_eq!(
            smtp_reply_classes(b"421\r\n452 4.3.1 later\r\n").collect::<Vec<_>>(),
            ["4xx", "4xx"]
        );
        assert_eq!(smtp_reply_classes(b"").count(), 0);
        assert_eq!(smtp_reply_classes(b"25").count(), 0);
        assert_eq!(smtp_reply_classes(b"abc def\r\n").count(), 0);
    }

    #[test]
    fn pop3_status_reads_the_indicator_only() {
        assert_eq!(pop3_status(b"+OK 2 messages\r\n"), Some("ok"));
        assert_eq!(pop3_status(b"-ERR [IN-USE] busy\r\n"), Some("err"));
        assert_eq!(pop3_status(b"+ \r\n"), None);
        assert_eq!(pop3_status(b"\r\n.\r\n"), None);
        assert_eq!(pop3_status(b".\r\n"), None);
    }

    #[test]
    fn meter_counts_into_a_recorder() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let mut m = Meter::admit(Service::Smtp);
            m.commands(3);
            m.commands(3);
            m.commands(5);
            m.smtp_sent(b"250 ok\r\n550 no\r\n");
            m.received(10);
            drop(m);
        });
        let text = handle.render();
        for line in [
            "mailroot_sessions_total{protocol=\"smtp\"} 1",
            "mailroot_active_connections{protocol=\"smtp\"} 0",
            "mailroot_commands_total{protocol=\"smtp\"} 5",
            "mailroot_smtp_replies_total{protocol=\"smtp\",class=\"2xx\"} 1",
            "mailroot_smtp_replies_total{protocol=\"smtp\",class=\"5xx\"} 1",
            "mailroot_bytes_received_total{protocol=\"smtp\"} 10",
            "mailroot_bytes_sent_total{protocol=\"smtp\"} 16",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
