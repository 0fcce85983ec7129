//! The DATA receiver (RFC 5321 3.3, 4.1.1.4, 4.5.2).
//!
//! Strict on purpose, against SMTP smuggling (CVE-2023-51764 and friends): the ONLY end of
//! data is `<CRLF>.<CRLF>`, where the position right after the 354 reply counts as following
//! a CRLF. `<LF>.<LF>`, `<CR>.<CR>`, `<LF>.<CRLF>` and the like are ordinary content; since
//! they contain a bare CR or LF, the message is then refused as a whole once the real end
//! arrives (RFC 5321 2.3.8: CR and LF must only occur together as CRLF). NUL is refused too.
//!
//! Limits never make us stop early: the receiver always consumes up to the real end so that
//! message text can never be read as commands, but it stops buffering as soon as the message
//! is known to be refused (over size, line too long, bad bytes).

use crate::MAX_LINE;
use crate::reply::Reply;

/// Outcome of one DATA transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Dot-unstuffed content with CRLF line endings, without the final `.\r\n`.
    Message(Vec<u8>),
    /// The message was consumed but must be refused with this reply.
    Refuse(Reply),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line: right after the 354 or after a CRLF.
    LineStart,
    /// A line that began with `.`; the dot itself has been dropped.
    Dot,
    /// `.` then CR at the start of a line: one LF away from the end of data.
    DotCr,
    /// Inside a line.
    Text,
    /// Inside a line right after a CR; an LF here ends the line.
    Cr,
}

#[derive(Debug)]
pub(crate) struct Receiver {
    max_size: usize,
    state: State,
    message: Vec<u8>,
    /// Content octets so far (after unstuffing), counted even when no longer buffered.
    size: usize,
    /// Octets of the current line as received, including the line ending.
    line_len: usize,
    bare_cr_lf_nul: bool,
    line_too_long: bool,
    oversize: bool,
    /// The driver could not find memory for the rest (node-wide limit of bytes in flight).
    no_memory: bool,
}

impl Receiver {
    pub(crate) fn new(max_size: usize) -> Self {
        Receiver {
            max_size,
            state: State::LineStart,
            message: Vec::new(),
            size: 0,
            line_len: 0,
            bare_cr_lf_nul: false,
            line_too_long: false,
            oversize: false,
            no_memory: false,
        }
    }

    /// Consumes bytes up to and including the end of data. Returns how many bytes of `input`
    /// were consumed and, once the end was seen, the outcome; bytes after the end belong to
    /// the command stream and are left alone.
    pub(crate) fn ingest(&mut self, input: &[u8]) -> (usize, Option<Outcome>) {
        let mut i = 0;
        while let Some(&byte) = input.get(i) {
            match self.state {
                State::Text => {
                    // Fast path: copy the run of ordinary bytes in one go.
                    let run = input[i..]
                        .iter()
                        .position(|&b| matches!(b, b'\r' | b'\n' | 0))
                        .unwrap_or(input.len() - i);
                    if run > 0 {
                        self.line_len = self.line_len.saturating_add(run);
                        self.push(&input[i..i + run]);
                        i += run;
                    } else {
                        self.line_len = self.line_len.saturating_add(1);
                        i += 1;
                        if byte == b'\r' {
                            self.state = State::Cr;
                        } else {
                            // Bare LF or NUL.
                            self.bare_cr_lf_nul = true;
                            self.push(&[byte]);
                        }
                    }
                }
                State::LineStart => {
                    self.line_len = 1;
                    i += 1;
                    self.state = match byte {
                        b'.' => State::Dot,
                        b'\r' => State::Cr,
                        _ => {
                            if matches!(byte, b'\n' | 0) {
                                self.bare_cr_lf_nul = true;
                            }
                            self.push(&[byte]);
                            // A bare LF does not start a line: "\n.\n" must not end data.
                            State::Text
                        }
                    };
                }
                State::Dot => {
                    if byte == b'\r' {
                        self.line_len += 1;
                        i += 1;
                        self.state = State::DotCr;
                    } else {
                        // RFC 5321 4.5.2: a leading dot on any other line is deleted; the
                        // byte after it is handled as ordinary text (not consumed here).
                        self.state = State::Text;
                    }
                }
                State::DotCr => {
                    if byte == b'\n' {
                        // `<CRLF>.<CRLF>`: the one and only end of data.
                        return (i + 1, Some(self.finish()));
                    }
                    // The dot was a stuffing dot; the CR is bare. Reprocess `byte` as text.
                    self.bare_cr_lf_nul = true;
                    self.push(b"\r");
                    self.state = State::Text;
                }
                State::Cr => {
                    if byte == b'\n' {
                        self.line_len = self.line_len.saturating_add(1);
                        i += 1;
                        self.push(b"\r\n");
                        self.check_line_len();
                        self.state = State::LineStart;
                        continue;
                    }
                    // Bare CR. Reprocess `byte` as text.
                    self.bare_cr_lf_nul = true;
                    self.push(b"\r");
                    self.state = State::Text;
                }
            }
            self.check_line_len();
        }
        (i, None)
    }

    /// RFC 5321 4.5.3.1.6: at most 1000 octets per text line including CRLF.
    fn check_line_len(&mut self) {
        if self.line_len > MAX_LINE {
            self.line_too_long = true;
            self.message = Vec::new();
        }
    }

    fn refused(&self) -> bool {
        self.bare_cr_lf_nul || self.line_too_long || self.oversize || self.no_memory
    }

    /// Octets buffered so far.
    pub(crate) fn buffered(&self) -> usize {
        self.message.len()
    }

    /// Stop buffering: the message will be refused with 452 4.3.1 once its end arrives.
    pub(crate) fn refuse_for_memory(&mut self) {
        self.no_memory = true;
        self.message = Vec::new();
    }

    fn push(&mut self, bytes: &[u8]) {
        self.size = self.size.saturating_add(bytes.len());
        if self.size > self.max_size && !self.oversize {
            // RFC 1870 6.3: keep reading to the end, but stop storing.
            self.oversize = true;
            self.message = Vec::new();
        }
        if !self.refused() {
            self.message.extend_from_slice(bytes);
        }
    }

    fn finish(&mut self) -> Outcome {
        if self.bare_cr_lf_nul {
            Outcome::Refuse(Reply::BareCrLfNul)
        } else if self.line_too_long {
            Outcome::Refuse(Reply::LineTooLong)
        } else if self.oversize {
            Outcome::Refuse(Reply::SizeExceeded)
        } else if self.no_memory {
            Outcome::Refuse(Reply::InsufficientStorage)
        } else {
            Outcome::Message(std::mem::take(&mut self.message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (usize, Option<Outcome>) {
        Receiver::new(1 << 20).ingest(input)
    }

    fn message(input: &[u8]) -> Vec<u8> {
        match run(input) {
            (n, Some(Outcome::Message(m))) if n == input.len() => m,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn empty_and_dot_only_messages() {
        assert_eq!(message(b".\r\n"), b"");
        assert_eq!(message(b"..\r\n.\r\n"), b".\r\n");
        assert_eq!(message(b"\r\n.\r\n"), b"\r\n");
    }

    #[test]
    fn unstuffing_is_exact() {
        assert_eq!(
            message(b"a\r\n..b\r\n...\r\n.c\r\nd.\r\n .\r\n.\r\n"),
            b"a\r\n.b\r\n..\r\nc\r\nd.\r\n .\r\n"
        );
    }

    #[test]
    fn stops_at_the_end_and_leaves_the_rest() {
        let input = b"hi\r\n.\r\nQUIT\r\n";
        assert_eq!(run(input), (7, Some(Outcome::Message(b"hi\r\n".to_vec()))));
    }

    #[test]
    fn smuggling_endings_do_not_end_data() {
        for bad in [
            &b"a\n.\nb\r\n"[..],
            b"a\r.\rb\r\n",
            b"a\n.\r\nb\r\n",
            b"a\r\n.\nb\r\n",
            b"a\r\n.\rb\r\n",
        ] {
            let mut input = bad.to_vec();
            input.extend_from_slice(b".\r\n");
            assert_eq!(
                run(&input),
                (input.len(), Some(Outcome::Refuse(Reply::BareCrLfNul))),
                "{bad:?}"
            );
            // Without the real end, it is still waiting.
            assert_eq!(run(bad), (bad.len(), None), "{bad:?}");
        }
    }

    #[test]
    fn nul_is_refused() {
        assert_eq!(
            run(b"a\0b\r\n.\r\n").1,
            Some(Outcome::Refuse(Reply::BareCrLfNul))
        );
    }

    #[test]
    fn line_length_limit_counts_crlf() {
        let mut ok = vec![b'x'; MAX_LINE - 2];
        ok.extend_from_slice(b"\r\n.\r\n");
        assert!(matches!(run(&ok).1, Some(Outcome::Message(_))));
        let mut long = vec![b'x'; MAX_LINE - 1];
        long.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(run(&long).1, Some(Outcome::Refuse(Reply::LineTooLong)));
    }

    #[test]
    fn size_limit() {
        let mut r = Receiver::new(4);
        assert_eq!(
            r.ingest(b"ab\r\n.\r\n").1,
            Some(Outcome::Message(b"ab\r\n".to_vec()))
        );
        let mut r = Receiver::new(4);
        let (n, out) = r.ingest(b"abc\r\n");
        assert_eq!((n, out), (5, None));
        assert!(r.message.is_empty());
        assert_eq!(
            r.ingest(b".\r\n").1,
            Some(Outcome::Refuse(Reply::SizeExceeded))
        );
    }

    #[test]
    fn refused_for_memory_reads_to_the_end_and_answers_452() {
        let mut r = Receiver::new(1 << 20);
        assert_eq!(r.ingest(b"abc\r\n").1, None);
        assert_eq!(r.buffered(), 5);
        r.refuse_for_memory();
        assert_eq!(r.buffered(), 0);
        assert_eq!(r.ingest(b"more\r\n").1, None);
        assert_eq!(r.buffered(), 0);
        assert_eq!(
            r.ingest(b".\r\nQUIT\r\n"),
            (3, Some(Outcome::Refuse(Reply::InsufficientStorage)))
        );
        assert!(
            String::from_utf8_lossy(&Reply::InsufficientStorage.to_bytes())
                .starts_with("452 4.3.1 ")
        );
    }
}
