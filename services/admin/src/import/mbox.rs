//! mbox files (`mailrootctl import mbox`): one message after another, each opened by a
//! `From ` line (the "From_" line, not part of the message), read one message at a time.
//!
//! A `From ` line opens a message only at the start of the file or after an empty line (what
//! every writer puts between messages; that empty line belongs to the separator, not to the
//! message before it). Inside a message, writers escaped body lines that would look like a
//! separator by prefixing `>`:
//! - mboxrd: every `>*From ` line got one more `>`, so one `>` is taken off every such line;
//! - mboxo: only `From ` became `>From ` (ambiguous with a body's own `>From `), so only a
//!   line starting with exactly one `>` before `From ` loses it.
//!
//! The reader hands back the message's lines as they are (LF or CRLF); the import makes
//! bare LFs CRLF afterwards (`to_crlf`).

use std::io::BufRead;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flavour {
    Mboxrd,
    Mboxo,
}

/// One message of an mbox file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// 0-based position in the file.
    pub ordinal: u64,
    /// The `From ` line's date (asctime, UTC), Unix seconds, when it has a readable one.
    pub date: Option<u64>,
    pub bytes: Vec<u8>,
}

pub struct Reader<R> {
    input: R,
    flavour: Flavour,
    /// The `From ` line that opens the next message (already read).
    next_from: Option<Vec<u8>>,
    ordinal: u64,
    /// Octets read so far (for a progress bar).
    pub consumed: u64,
}

fn is_from_line(line: &[u8]) -> bool {
    line.starts_with(b"From ")
}

fn is_empty_line(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R, flavour: Flavour) -> Reader<R> {
        Reader {
            input,
            flavour,
            next_from: None,
            ordinal: 0,
            consumed: 0,
        }
    }

    fn read_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let n = self.input.read_until(b'\n', &mut line)?;
        self.consumed += n as u64;
        Ok((n > 0).then_some(line))
    }

    /// The next message, or None at the end of the file. Text before the first `From ` line
    /// is not a message and is an error (this is not an mbox file).
    pub fn next_message(&mut self) -> std::io::Result<Option<Message>> {
        let from = match self.next_from.take() {
            Some(f) => f,
            None => loop {
                match self.read_line()? {
                    None => return Ok(None),
                    // Empty lines before the first message are tolerated.
                    Some(l) if is_empty_line(&l) && self.ordinal == 0 => continue,
                    Some(l) if is_from_line(&l) => break l,
                    Some(_) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "not an mbox file: it does not start with a \"From \" line",
                        ));
                    }
                }
            },
        };
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut previous_empty = false;
        while let Some(line) = self.read_line()? {
            if previous_empty && is_from_line(&line) {
                self.next_from = Some(line);
                // The empty line before a separator is the separator's.
                lines.pop();
                break;
            }
            previous_empty = is_empty_line(&line);
            lines.push(self.unescape(line));
        }
        let ordinal = self.ordinal;
        self.ordinal += 1;
        Ok(Some(Message {
            ordinal,
            date: from_line_date(&from),
            bytes: lines.concat(),
        }))
    }

    fn unescape(&self, line: Vec<u8>) -> Vec<u8> {
        let quotes = line.iter().take_while(|&&b| b == b'>').count();
        let escaped = quotes > 0
            && line[quotes..].starts_with(b"From ")
            && (self.flavour == Flavour::Mboxrd || quotes == 1);
        if escaped { line[1..].to_vec() } else { line }
    }
}

/// `From sender Tue Mar  5 12:00:00 2024` (asctime, as written by every MTA): Unix seconds.
pub fn from_line_date(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    // From, sender, then the date's last five fields (weekday month day time year), perhaps
    // followed by a time zone, which some writers add.
    let at = fields
        .iter()
        .position(|f| MONTHS.contains(&f.get(..3).unwrap_or("")) && f.len() == 3)?;
    let month = MONTHS.iter().position(|m| *m == fields[at])? as u64 + 1;
    let day: u64 = fields.get(at + 1)?.parse().ok()?;
    let mut hms = fields
        .get(at + 2)?
        .split(':')
        .map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (
        hms.next()??,
        hms.next()??,
        hms.next().flatten().unwrap_or(0),
    );
    let year: u64 = fields.get(at + 3)?.parse().ok()?;
    if !(1970..=9999).contains(&year) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + s)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &[u8], flavour: Flavour) -> Vec<Message> {
        let mut r = Reader::new(text, flavour);
        let mut out = Vec::new();
        while let Some(m) = r.next_message().unwrap() {
            out.push(m);
        }
        assert_eq!(r.consumed, text.len() as u64);
        out
    }

    #[test]
    fn splits_on_from_lines_after_an_empty_line() {
        let text = b"From a@x Tue Mar  5 12:00:00 2024\nSubject: one\n\nbody\nFrom here, not a separator\n\nFrom b@x Wed Mar  6 00:00:01 2024\nSubject: two\n\n.\n..\n";
        let m = all(text, Flavour::Mboxrd);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0].bytes,
            b"Subject: one\n\nbody\nFrom here, not a separator\n".to_vec()
        );
        assert_eq!(m[1].bytes, b"Subject: two\n\n.\n..\n".to_vec());
        assert_eq!((m[0].ordinal, m[1].ordinal), (0, 1));
        assert_eq!(m[0].date, Some(1_709_640_000));
        assert_eq!(m[1].date, Some(1_709_683_201));
    }

    #[test]
    fn mboxrd_takes_one_quote_off_every_escaped_from() {
        let text =
            b"From a Tue Mar  5 12:00:00 2024\n\n>From me\n>>From you\n> From not\n>Fromage\n";
        let m = all(text, Flavour::Mboxrd);
        assert_eq!(
            m[0].bytes,
            b"\nFrom me\n>From you\n> From not\n>Fromage\n".to_vec()
        );
        let m = all(text, Flavour::Mboxo);
        assert_eq!(
            m[0].bytes,
            b"\nFrom me\n>>From you\n> From not\n>Fromage\n".to_vec()
        );
    }

    #[test]
    fn crlf_files_and_a_last_message_without_newline() {
        let text = b"From a Tue Mar  5 12:00:00 2024\r\nA: 1\r\n\r\nx\r\n\r\nFrom b Tue Mar  5 12:00:00 2024\r\nB: 2\r\n\r\nno newline";
        let m = all(text, Flavour::Mboxrd);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].bytes, b"A: 1\r\n\r\nx\r\n".to_vec());
        assert_eq!(m[1].bytes, b"B: 2\r\n\r\nno newline".to_vec());
    }

    #[test]
    fn no_from_line_is_not_an_mbox_and_empty_is_empty() {
        let mut r = Reader::new(&b"Subject: x\n\nbody\n"[..], Flavour::Mboxrd);
        assert!(r.next_message().is_err());
        assert!(all(b"", Flavour::Mboxrd).is_empty());
        assert!(all(b"\n\n", Flavour::Mboxrd).is_empty());
    }

    #[test]
    fn dates() {
        assert_eq!(
            from_line_date(b"From x Thu Jan  1 00:00:00 1970\n"),
            Some(0)
        );
        assert_eq!(
            from_line_date(b"From MAILER-DAEMON Fri Feb 29 23:59:59 2008\n"),
            Some(1_204_329_599)
        );
        assert_eq!(from_line_date(b"From x\n"), None);
        assert_eq!(from_line_date(b"From x Mon Foo 1 00:00:00 2000\n"), None);
    }
}
