//! `mailrootctl nodes`: the live front-ends as the store sees them, one line each.
//!
//! Columns are single words (no field contains a blank), so scripts can split on whitespace:
//! NODE-ID HOSTNAME VERSION ADDRESS POP3 SMTP CONNECTED-SINCE LAST-SEEN LISTENERS. ADDRESS is
//! where the node's settings stream comes from; POP3 and SMTP are its client connections now;
//! LAST-SEEN is the time since its last report (every 5 s at most).

use proto::v1::NodeInfo;

pub fn print(nodes: &[NodeInfo]) {
    println!(
        "{:<36} {:<24} {:<8} {:<21} {:>5} {:>5} {:<20} {:>9} LISTENERS",
        "NODE-ID", "HOSTNAME", "VERSION", "ADDRESS", "POP3", "SMTP", "CONNECTED-SINCE", "LAST-SEEN"
    );
    for n in nodes {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        let listeners = if n.listeners.is_empty() {
            "-".to_string()
        } else {
            n.listeners.join(",")
        };
        let seen = format!("{}s", n.last_seen_ms / 1000);
        println!(
            "{:<36} {:<24} {:<8} {:<21} {:>5} {:>5} {:<20} {:>9} {}",
            n.node_id,
            dash(&n.hostname),
            dash(&n.version),
            dash(&n.peer),
            n.pop3_sessions,
            n.smtp_sessions,
            utc(n.connected_unix_ms / 1000),
            seen,
            listeners
        );
    }
    let noun = if nodes.len() == 1 {
        "front-end"
    } else {
        "front-ends"
    };
    println!("{} {noun}", nodes.len());
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`2026-12-02T13:23:47Z`).
fn utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_218_427), "2026-12-02T13:33:47Z");
    }
}
