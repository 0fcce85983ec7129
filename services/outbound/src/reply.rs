//! SMTP replies as the client reads them (RFC 5321 §4.2): framing of the byte stream into
//! complete (possibly multi-line) replies, the reply code, the enhanced status code
//! (RFC 3463, RFC 2034) and the text. Sans-io: bytes in, replies out.
//!
//! Owns: the limits on what a server may send (line length, lines per reply), and the one
//! rule that turns a reply into a status and a DSN diagnostic. Must not know any command.

use std::collections::VecDeque;
use std::fmt;

/// Longest reply line accepted (RFC 5321 §4.5.3.1.5 says 512; real servers send longer
/// texts, so be generous, but bounded).
pub const MAX_LINE: usize = 4096;
/// Most lines in one reply (an EHLO reply has a line per extension).
pub const MAX_LINES: usize = 128;

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The enhanced status code the server gave on the first line, when it gave one whose
    /// class matches the reply code's first digit (RFC 3463 §2).
    pub esc: Option<[u16; 3]>,
    /// The text of each line, without code, separator, enhanced code and line end.
    pub lines: Vec<String>,
    /// The reply as received (for the EHLO capability parser).
    pub raw: Vec<u8>,
}

/// What a reply says about the command it answers (RFC 5321 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 2xx.
    Positive,
    /// 3xx: go on (354 to DATA, 334 to AUTH).
    Intermediate,
    /// 4xx, and anything outside 2xx–5xx: try again later.
    Transient,
    /// 5xx.
    Permanent,
}

impl Reply {
    pub fn class(&self) -> Class {
        match self.code {
            200..=299 => Class::Positive,
            300..=399 => Class::Intermediate,
            500..=599 => Class::Permanent,
            _ => Class::Transient,
        }
    }

    pub fn is_positive(&self) -> bool {
        self.class() == Class::Positive
    }

    /// The enhanced status code: the server's, else derived from the basic code
    /// (2.0.0 / 5.0.0, and 4.0.0 for 4xx and anything unexpected).
    pub fn status(&self) -> String {
        match self.esc {
            Some([a, b, c]) => format!("{a}.{b}.{c}"),
            None => match self.class() {
                Class::Positive => "2.0.0".into(),
                Class::Permanent => "5.0.0".into(),
                Class::Intermediate | Class::Transient => "4.0.0".into(),
            },
        }
    }

    /// The reply's text on one line (multi-line texts joined with a space).
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// The DSN Diagnostic-Code (RFC 3464 §2.3.6): "smtp; 550 5.1.1 text".
    pub fn diagnostic(&self) -> String {
        format!("smtp; {self}")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some([a, b, c]) = self.esc {
            write!(f, " {a}.{b}.{c}")?;
        }
        let text = self.text();
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

/// A server sent something that is not a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    LineTooLong,
    TooManyLines,
    Syntax(String),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::LineTooLong => write!(f, "reply line longer than {MAX_LINE} bytes"),
            ReplyError::TooManyLines => write!(f, "reply of more than {MAX_LINES} lines"),
            ReplyError::Syntax(line) => write!(f, "malformed reply line {line:?}"),
        }
    }
}

/// Frames the byte stream into replies. Feed any chunking; the same replies come out.
#[derive(Debug, Default)]
pub struct ReplyReader {
    /// The current, incomplete line.
    line: Vec<u8>,
    /// The lines of the reply being read, and its raw bytes.
    lines: Vec<(u16, String)>,
    raw: Vec<u8>,
    ready: VecDeque<Reply>,
    failed: Option<ReplyError>,
}

impl ReplyReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes bytes from the server. After an error every later call fails the same way.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), ReplyError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        for &b in bytes {
            if let Err(e) = self.byte(b) {
                self.failed = Some(e.clone());
                return Err(e);
            }
        }
        Ok(())
    }

    /// The next complete reply, if one has been read.
    pub fn next_reply(&mut self) -> Option<Reply> {
        self.ready.pop_front()
    }

    /// Whether bytes of an incomplete reply are buffered.
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || !self.lines.is_empty()
    }

    fn byte(&mut self, b: u8) -> Result<(), ReplyError> {
        if b != b'\n' {
            if self.line.len() >= MAX_LINE {
                return Err(ReplyError::LineTooLong);
            }
            self.line.push(b);
            return Ok(());
        }
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.raw.extend_from_slice(&line);
        self.raw.extend_from_slice(b"\r\n");
        let (code, last, text) = parse_line(&line)?;
        if let Some((first, _)) = self.lines.first()
            && *first != code
        {
            return Err(ReplyError::Syntax(
                String::from_utf8_lossy(&line).into_owned(),
            ));
        }
        if self.lines.len() >= MAX_LINES {
            return Err(ReplyError::TooManyLines);
        }
        self.lines.push((code, text));
        if last {
            let lines = std::mem::take(&mut self.lines);
            let raw = std::mem::take(&mut self.raw);
            self.ready.push_back(finish(code, lines, raw));
        }
        Ok(())
    }
}

/// "250-text", "250 text", "250" → (code, is last line, text).
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let syntax = || ReplyError::Syntax(String::from_utf8_lossy(line).into_owned());
    let digits = line.get(..3).ok_or_else(syntax)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(syntax());
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(syntax()),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

/// Takes the enhanced status code off the lines that carry it (RFC 2034 §4: every line of
/// a reply repeats it), keeping it only when its class matches the reply code.
fn finish(code: u16, lines: Vec<(u16, String)>, raw: Vec<u8>) -> Reply {
    let first = lines.first().map(|(_, t)| t.as_str()).unwrap_or("");
    let esc = parse_esc(first).filter(|e| e[0] == code / 100 && matches!(e[0], 2 | 4 | 5));
    let lines = lines
        .into_iter()
        .map(|(_, text)| match esc {
            Some(e) if parse_esc(&text) == Some(e) => text
                .split_once(' ')
                .map(|(_, rest)| rest.to_string())
                .unwrap_or_default(),
            _ => text,
        })
        .collect();
    Reply {
        code,
        esc,
        lines,
        raw,
    }
}

/// "5.1.1 text" → [5, 1, 1] (RFC 3463 §2: class.subject.detail, 1–3 digits each).
fn parse_esc(text: &str) -> Option<[u16; 3]> {
    let token = text.split(' ').next()?;
    let mut parts = token.split('.');
    let mut esc = [0u16; 3];
    for slot in &mut esc {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = p.parse().ok()?;
    }
    parts.next().is_none().then_some(esc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]]) -> Result<Vec<Reply>, ReplyError> {
        let mut r = ReplyReader::new();
        for c in chunks {
            r.feed(c)?;
        }
        Ok(std::iter::from_fn(|| r.next_reply()).collect())
    }

    const EHLO: &[u8] = b"250-mx.example.org Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n550 5.1.1 <x@y>: no such user\r\n";

    #[test]
    fn frames_multi_line_replies_in_any_chunking() {
        let whole = read_all(&[EHLO]).unwrap();
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].code, 250);
        assert_eq!(whole[0].lines.len(), 4);
        assert_eq!(whole[1].status(), "5.1.1");
        assert_eq!(whole[1].diagnostic(), "smtp; 550 5.1.1 <x@y>: no such user");
        let bytes: Vec<&[u8]> = EHLO.chunks(1).collect();
        assert_eq!(read_all(&bytes).unwrap(), whole);
        let bytes: Vec<&[u8]> = EHLO.chunks(7).collect();
        assert_eq!(read_all(&bytes).unwrap(), whole);
    }

    #[test]
    fn derives_the_status_when_the_server_gives_none() {
        let r = read_all(&[b"451 try later\n250\r\n421 4.3.2 bye\r\n"]).unwrap();
        assert_eq!(r[0].status(), "4.0.0");
        assert_eq!(r[0].diagnostic(), "smtp; 451 try later");
        assert_eq!(r[1].status(), "2.0.0");
        assert_eq!(r[2].status(), "4.3.2");
        // A class that contradicts the code is not believed.
        let r = read_all(&[b"550 2.1.5 odd\r\n"]).unwrap();
        assert_eq!(r[0].status(), "5.0.0");
        assert_eq!(r[0].text(), "2.1.5 odd");
    }

    #[test]
    fn strips_the_repeated_enhanced_code_of_continuation_lines() {
        let r = read_all(&[b"550-5.7.1 first\r\n550 5.7.1 second\r\n"]).unwrap();
        assert_eq!(r[0].diagnostic(), "smtp; 550 5.7.1 first second");
    }

    #[test]
    fn rejects_garbage_and_mixed_codes_without_panicking() {
        for bad in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"250x\r\n",
            b"250-a\r\n251 b\r\n",
            b"\r\n",
        ] {
            assert!(read_all(&[bad]).is_err(), "{bad:?}");
        }
        let long = vec![b'2'; MAX_LINE + 1];
        assert_eq!(read_all(&[&long]), Err(ReplyError::LineTooLong));
        let many = b"250-x\r\n".repeat(MAX_LINES + 1);
        assert_eq!(read_all(&[&many]), Err(ReplyError::TooManyLines));
    }

    #[test]
    fn every_byte_sequence_is_answered_without_panic() {
        // A cheap exhaustive-ish sweep: all 2-byte prefixes before a plausible reply.
        for a in 0..=255u8 {
            for b in [b'\n', b' ', b'-', b'0', b'9', 0xff] {
                let mut r = ReplyReader::new();
                let _ = r.feed(&[a, b, b'\n']);
                let _ = r.feed(b"250 ok\r\n");
                while r.next_reply().is_some() {}
            }
        }
    }
}
