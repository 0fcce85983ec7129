//! Minimal blocking SMTP and POP3 clients for tests: they send exactly the bytes a test asks
//! for and return the raw replies, so tests can check codes and byte-exact content.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const IO_TIMEOUT: Duration = Duration::from_secs(30);

fn connect(addr: SocketAddr) -> std::io::Result<(BufReader<TcpStream>, TcpStream)> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let reader = BufReader::new(stream.try_clone()?);
    Ok((reader, stream))
}

/// Connects from a chosen local address (e.g. 127.0.0.2, another client on loopback).
fn connect_from(
    addr: SocketAddr,
    source: std::net::IpAddr,
) -> std::io::Result<(BufReader<TcpStream>, TcpStream)> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let reader = BufReader::new(stream.try_clone()?);
    Ok((reader, stream))
}

fn read_line(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    Ok(line)
}

pub struct SmtpClient {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
    pub banner: String,
}

impl SmtpClient {
    pub fn connect(addr: SocketAddr) -> std::io::Result<SmtpClient> {
        let (mut reader, stream) = connect(addr)?;
        let banner = Self::read_reply_from(&mut reader)?;
        Ok(SmtpClient {
            reader,
            stream,
            banner,
        })
    }

    /// Takes over an already connected stream (e.g. after writing a PROXY header).
    pub fn from_stream(stream: TcpStream) -> std::io::Result<SmtpClient> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let banner = Self::read_reply_from(&mut reader)?;
        Ok(SmtpClient {
            reader,
            stream,
            banner,
        })
    }

    fn read_reply_from(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
        let mut all = String::new();
        loop {
            let line = read_line(r)?;
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(all);
            }
        }
    }

    pub fn read_reply(&mut self) -> std::io::Result<String> {
        Self::read_reply_from(&mut self.reader)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends one command line and returns the full reply.
    pub fn cmd(&mut self, line: &str) -> std::io::Result<String> {
        self.send_raw(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
    }

    /// EHLO, MAIL, RCPT..., DATA with `message` (dot-stuffed here), returns the final reply.
    pub fn send_mail(
        &mut self,
        from: &str,
        to: &[&str],
        message: &[u8],
    ) -> std::io::Result<String> {
        let ehlo = self.cmd("EHLO client.test")?;
        assert!(ehlo.starts_with("250"), "EHLO: {ehlo}");
        let r = self.cmd(&format!("MAIL FROM:<{from}>"))?;
        if !r.starts_with("250") {
            return Ok(r);
        }
        for rcpt in to {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>"))?;
            if !r.starts_with("250") {
                return Ok(r);
            }
        }
        let r = self.cmd("DATA")?;
        if !r.starts_with("354") {
            return Ok(r);
        }
        self.send_raw(&dot_stuff(message))?;
        self.send_raw(b".\r\n")?;
        self.read_reply()
    }
}

/// RFC 5321 §4.5.2 transparency, for a message with CRLF line endings that ends in CRLF.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out
}

pub struct Pop3Client {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
    pub banner: String,
}

impl Pop3Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Pop3Client> {
        let (mut reader, stream) = connect(addr)?;
        let banner = read_line(&mut reader)?;
        Ok(Pop3Client {
            reader,
            stream,
            banner,
        })
    }

    /// Like `connect`, from another local address.
    pub fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> std::io::Result<Pop3Client> {
        let (mut reader, stream) = connect_from(addr, source)?;
        let banner = read_line(&mut reader)?;
        Ok(Pop3Client {
            reader,
            stream,
            banner,
        })
    }

    /// Sends a command and returns the first reply line.
    pub fn cmd(&mut self, line: &str) -> std::io::Result<String> {
        self.stream.write_all(format!("{line}\r\n").as_bytes())?;
        read_line(&mut self.reader)
    }

    /// Reads a multi-line body up to ".\r\n", un-stuffed, as raw bytes.
    pub fn read_multiline(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let mut line = Vec::new();
            if self.reader.read_until(b'\n', &mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed in a multi-line reply",
                ));
            }
            if line == b".\r\n" {
                return Ok(body);
            }
            if line.starts_with(b"..") {
                line.remove(0);
            }
            body.extend_from_slice(&line);
        }
    }

    pub fn login(&mut self, user: &str, pass: &str) -> std::io::Result<String> {
        let r = self.cmd(&format!("USER {user}"))?;
        if !r.starts_with("+OK") {
            return Ok(r);
        }
        self.cmd(&format!("PASS {pass}"))
    }

    /// UIDL listing as (number, uidl) pairs.
    pub fn uidl(&mut self) -> std::io::Result<Vec<(u32, String)>> {
        let r = self.cmd("UIDL")?;
        assert!(r.starts_with("+OK"), "UIDL: {r}");
        let body = self.read_multiline()?;
        Ok(String::from_utf8_lossy(&body)
            .lines()
            .filter_map(|l| {
                let (n, u) = l.split_once(' ')?;
                Some((n.parse().ok()?, u.to_string()))
            })
            .collect())
    }

    pub fn retr(&mut self, n: u32) -> std::io::Result<Vec<u8>> {
        let r = self.cmd(&format!("RETR {n}"))?;
        assert!(r.starts_with("+OK"), "RETR {n}: {r}");
        self.read_multiline()
    }

    /// Reads whatever the server still sends until it closes (for QUIT checks).
    pub fn drain(mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
        rest
    }
}

/// The RFC 4616 PLAIN initial response (`\0user\0password`, base64) for `AUTH PLAIN`.
pub fn auth_plain(user: &str, password: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("\0{user}\0{password}").into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
