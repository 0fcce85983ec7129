//! Message bodies of RETR and TOP as streams of chunks: the TOP cut (RFC 1939 §7) and the
//! byte-stuffing of multi-line responses (RFC 1939 §3), both with their state carried across
//! chunk boundaries so that any chunking gives the same bytes as the whole message at once.

/// RFC 1939 §7 TOP: the header, the blank line after it, and the first `lines` body lines.
/// A message without a blank line, or with fewer body lines, is sent whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopCut {
    /// How much of "\r\n\r\n" (the end of the header) was seen last.
    matched: usize,
    header_done: bool,
    lines_left: usize,
    done: bool,
}

impl TopCut {
    pub fn new(lines: usize) -> TopCut {
        TopCut {
            matched: 0,
            header_done: false,
            lines_left: lines,
            done: false,
        }
    }

    /// True once everything TOP wants has been passed on.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The part of `chunk` that belongs to the TOP response.
    pub fn cut<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        if self.done {
            return &[];
        }
        for (i, &b) in chunk.iter().enumerate() {
            if !self.header_done {
                const END: &[u8] = b"\r\n\r\n";
                self.matched = if b == END[self.matched] {
                    self.matched + 1
                } else if b == b'\r' {
                    1
                } else {
                    0
                };
                if self.matched == END.len() {
                    self.header_done = true;
                    if self.lines_left == 0 {
                        self.done = true;
                        return &chunk[..=i];
                    }
                }
            } else if b == b'\n' {
                self.lines_left -= 1;
                if self.lines_left == 0 {
                    self.done = true;
                    return &chunk[..=i];
                }
            }
        }
        chunk
    }
}

/// Byte-stuffing of a multi-line response body: a line starting with '.' gets another '.';
/// the response ends with CRLF "." CRLF (a CRLF is added when the body does not end with one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuffer {
    at_line_start: bool,
    /// The last two octets passed (to know whether the body ended with CRLF).
    tail: [u8; 2],
    empty: bool,
}

impl Default for Stuffer {
    fn default() -> Self {
        Stuffer {
            at_line_start: true,
            tail: [0, 0],
            empty: true,
        }
    }
}

impl Stuffer {
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if chunk.is_empty() {
            return;
        }
        out.reserve(chunk.len() + chunk.len() / 64 + 8);
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.at_line_start && rest[0] == b'.' {
                out.push(b'.');
            }
            // Copy up to and including the next LF in one go.
            match rest.iter().position(|&b| b == b'\n') {
                Some(p) => {
                    out.extend_from_slice(&rest[..=p]);
                    rest = &rest[p + 1..];
                    self.at_line_start = true;
                }
                None => {
                    out.extend_from_slice(rest);
                    rest = &[];
                    self.at_line_start = false;
                }
            }
        }
        self.empty = false;
        match chunk {
            [.., a, b] => self.tail = [*a, *b],
            [b] => self.tail = [self.tail[1], *b],
            [] => {}
        }
    }

    /// The end of the response.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.empty && self.tail != *b"\r\n" {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top_whole(m: &[u8], n: usize) -> Vec<u8> {
        let mut cut = TopCut::new(n);
        cut.cut(m).to_vec()
    }

    fn top_bytewise(m: &[u8], n: usize) -> Vec<u8> {
        let mut cut = TopCut::new(n);
        let mut out = Vec::new();
        for b in m.chunks(1) {
            out.extend_from_slice(cut.cut(b));
        }
        out
    }

    #[test]
    fn top_cuts_after_n_body_lines_in_any_chunking() {
        let m = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
        for f in [top_whole, top_bytewise] {
            assert_eq!(f(m, 0), b"A: 1\r\nB: 2\r\n\r\n");
            assert_eq!(f(m, 2), b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n");
            assert_eq!(f(m, 9), &m[..]);
            assert_eq!(f(b"no blank line\r\n", 0), b"no blank line\r\n");
            assert_eq!(f(b"A: 1\r\r\n\r\nx\r\n", 0), b"A: 1\r\r\n\r\n");
        }
    }

    fn stuff(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = Stuffer::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn stuffing_is_the_same_in_any_chunking() {
        let m: &[u8] = b".a\r\nb\r\n..c\r\n.\r\nend";
        let want = b"..a\r\nb\r\n...c\r\n..\r\nend\r\n.\r\n".to_vec();
        assert_eq!(stuff(&[m]), want);
        let bytes: Vec<&[u8]> = m.chunks(1).collect();
        assert_eq!(stuff(&bytes), want);
        let (a, b) = m.split_at(5);
        assert_eq!(stuff(&[a, b]), want);
        assert_eq!(stuff(&[]), b".\r\n");
        assert_eq!(stuff(&[b"x\r", b"\n"]), b"x\r\n.\r\n");
    }
}
