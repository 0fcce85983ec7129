//! The server's EHLO capabilities (RFC 5321 §4.1.1.1, §2.2.2): which service extensions the
//! client may use in this session. Sans-io.
//!
//! Parsed here keyword by keyword rather than with smtp-proto's `EhloResponse`: that parser
//! fails the whole reply on one line it cannot read (a `SIZE` with a non-numeric argument,
//! say), and a client must keep talking to such servers, ignoring only what it does not
//! understand.

use crate::reply::Reply;

/// What a server offered in its EHLO reply. `Capabilities::default()` is a HELO session
/// (no extensions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub pipelining: bool,
    pub starttls: bool,
    pub eight_bit_mime: bool,
    pub dsn: bool,
    /// RFC 1870: `SIZE` offered (`Some`), with its fixed maximum (0 = no fixed maximum).
    pub size: Option<u64>,
    pub auth_plain: bool,
    pub auth_login: bool,
}

impl Capabilities {
    /// Reads the lines after the first (the greeting line names the server).
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "DSN" => caps.dsn = true,
                "SIZE" => {
                    caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                // "AUTH=LOGIN PLAIN" is what pre-RFC 4954 clients needed; same meaning.
                _ if keyword == "AUTH" || keyword.starts_with("AUTH=") => {
                    let first = keyword.strip_prefix("AUTH=").filter(|m| !m.is_empty());
                    for mechanism in first
                        .into_iter()
                        .map(str::to_string)
                        .chain(words.map(|w| w.to_ascii_uppercase()))
                    {
                        match mechanism.as_str() {
                            "PLAIN" => caps.auth_plain = true,
                            "LOGIN" => caps.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ReplyReader;

    fn caps(bytes: &[u8]) -> Capabilities {
        let mut r = ReplyReader::new();
        r.feed(bytes).unwrap();
        Capabilities::from_ehlo(&r.next_reply().unwrap())
    }

    #[test]
    fn reads_the_extensions_it_uses_and_ignores_the_rest() {
        let c = caps(
            b"250-mx.example.org hi\r\n250-pipelining\r\n250-SIZE 10240000\r\n250-VRFY\r\n\
              250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n\
              250-DSN\r\n250-X-WEIRD a b c\r\n250-AUTH LOGIN plain CRAM-MD5\r\n250 SMTPUTF8\r\n",
        );
        assert_eq!(
            c,
            Capabilities {
                pipelining: true,
                starttls: true,
                eight_bit_mime: true,
                dsn: true,
                size: Some(10_240_000),
                auth_plain: true,
                auth_login: true,
            }
        );
    }

    #[test]
    fn tolerates_odd_arguments() {
        let c = caps(b"250-x\r\n250-SIZE lots\r\n250-AUTH=LOGIN\r\n250-\r\n250 PIPELINING\r\n");
        assert_eq!(c.size, Some(0));
        assert!(c.auth_login && !c.auth_plain && c.pipelining);
        // The first line is the server's name, never an extension.
        assert_eq!(caps(b"250 PIPELINING\r\n"), Capabilities::default());
    }
}
