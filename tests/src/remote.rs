//! The rest of the world, on loopback, for the outbound tests: a real DNS server (Debian's
//! dnsmasq, its records given on the command line) and real receiving SMTP servers (Postfix's
//! `smtp-sink`, which can defer, reject or stall chosen commands and dumps each transaction
//! to a file). Any 127/8 address is this host on Linux, so every "remote" MX listens on its own
//! loopback address and one shared port (the front-ends' `--outbound-port`).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::eventually;

/// Debian's `dnsmasq` (package dnsmasq-base) answering only from its command line.
pub struct Dns {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on `ip` for TCP (and UDP too when `udp`), for a server another process will
/// bind (a daemon the test starts, a port Docker publishes). It is taken from below the
/// kernel's ephemeral range: a port 0 probe would hand out an ephemeral port, which any
/// outgoing connection on the machine can take between the probe and the server's bind
/// (seen in CI: Docker's "port is already allocated").
pub fn free_port(ip: IpAddr, udp: bool) -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (low.saturating_sub(12000).max(1024), low);
    // One walk per process (ports handed out earlier may not be bound yet), started at a
    // place of its own so that test processes running side by side rarely meet.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919);
    eventually("a free port", Duration::from_secs(5), || {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let candidate = from + (start.wrapping_add(step) % u32::from(to - from)) as u16;
        let _tcp = TcpListener::bind((ip, candidate)).ok()?;
        if udp {
            UdpSocket::bind((ip, candidate)).ok()?;
        }
        Some(candidate)
    })
}

impl Dns {
    /// `args`: dnsmasq record options such as `--mx-host=remote.test,mx1.remote.test,10` and
    /// `--host-record=mx1.remote.test,127.0.0.2`. Every other name under `test` gets NXDOMAIN
    /// (`--local=/test/`).
    pub fn start(dir: &Path, args: &[String]) -> Dns {
        let port = free_port(IpAddr::from([127, 0, 0, 1]), true);
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--local=/test/",
            "--log-facility=-",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("dnsmasq.log")).expect("dnsmasq log"),
        ));
        // dnsmasq drops root privileges to `nobody` unless told otherwise.
        if unsafe_is_root() {
            cmd.arg("--user=root");
        }
        let child = cmd.spawn().expect("spawn dnsmasq");
        let dns = Dns {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        eventually("dnsmasq answers", Duration::from_secs(10), || {
            dns.answers().then_some(())
        });
        dns
    }

    /// One MX query for `test.`; any answer means the server is up.
    fn answers(&self) -> bool {
        let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
            return false;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
        // Header: id 0x4d52, RD, 1 question; QNAME "test", QTYPE MX (15), QCLASS IN.
        let query = [
            0x4d, 0x52, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 4, b't', b'e', b's', b't', 0, 0, 15, 0,
            1,
        ];
        if sock.send_to(&query, self.addr).is_err() {
            return false;
        }
        let mut buf = [0u8; 512];
        matches!(sock.recv_from(&mut buf), Ok((n, _)) if n >= 12 && buf[..2] == [0x4d, 0x52])
    }

    /// `--dns-server` for the front-ends.
    pub fn flag(&self) -> String {
        format!("--dns-server={}", self.addr)
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Postfix's `smtp-sink` on `ip:port`, dumping every transaction into its own directory.
pub struct Sink {
    child: Child,
    pub addr: SocketAddr,
    /// One file per transaction (smtp-sink's `-d`).
    pub dump_dir: PathBuf,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sink {
    /// `extra`: smtp-sink options, e.g. `["-r", "RCPT"]` (4xx to RCPT), `["-f", "RCPT"]`
    /// (5xx), `["-W", "RCPT:5"]` (5 s before answering RCPT).
    pub fn start(dir: &Path, ip: IpAddr, port: u16, extra: &[&str]) -> Sink {
        let name = format!("{ip}-{port}");
        // Each start its own dumps: a sink started again on the same address sees only its own.
        let run = uuid::Uuid::new_v4().simple().to_string();
        let dumps = dir.join(format!("sink-{name}-{}", &run[..8]));
        std::fs::create_dir_all(&dumps).expect("dump dir");
        let mut cmd = Command::new("/usr/sbin/smtp-sink");
        if unsafe_is_root() {
            // smtp-sink insists on dropping root; the dumps must then be writable by nobody.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dumps, std::fs::Permissions::from_mode(0o777))
                .expect("chmod dump dir");
            cmd.args(["-u", "nobody"]);
        }
        // -h: its name in replies; -d: one file per transaction; -c off; -t: command timeout.
        cmd.args(["-t", "30"])
            .arg("-d")
            .arg(format!("{}/%H%M%S.", dumps.display()))
            .args(extra)
            .arg(format!("{ip}:{port}"))
            .arg("64")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join(format!("sink-{name}-{}.log", &run[..8])))
                    .expect("sink log"),
            ));
        let child = cmd.spawn().expect("spawn smtp-sink");
        let addr = SocketAddr::new(ip, port);
        let sink = Sink {
            child,
            addr,
            dump_dir: dumps,
        };
        eventually("smtp-sink greets", Duration::from_secs(10), || {
            let stream = TcpStream::connect_timeout(&sink.addr, Duration::from_millis(200)).ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).ok()?;
            // A sink that refuses CONNECT still answers.
            (!line.is_empty()).then_some(())
        });
        sink
    }

    /// Every complete transaction received so far: (X-Mail-Args, the message text).
    pub fn messages(&self) -> Vec<Dump> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dump_dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            if let Some(dump) = Dump::parse(&text) {
                out.push(dump);
            }
        }
        out
    }
}

impl Sink {
    /// The dump files, as smtp-sink wrote them, whose text ends with `ends_with` (the empty
    /// line after a complete message); waits until there are `n`.
    pub fn dumps(&self, n: usize, ends_with: &str) -> Vec<String> {
        eventually(
            &format!("{n} transaction(s) dumped in {}", self.dump_dir.display()),
            Duration::from_secs(10),
            || {
                let mut out = Vec::new();
                for entry in std::fs::read_dir(&self.dump_dir).ok()? {
                    let text = std::fs::read_to_string(entry.ok()?.path()).ok()?;
                    if text.ends_with(ends_with) {
                        out.push(text);
                    }
                }
                (out.len() >= n).then_some(out)
            },
        )
    }
}

/// One transaction as smtp-sink dumped it.
#[derive(Debug, Clone)]
pub struct Dump {
    /// `FROM:<...> ...` as the client sent it.
    pub mail_args: String,
    pub rcpt_args: Vec<String>,
    /// Header and body as received (LF line endings, as smtp-sink writes them).
    pub message: String,
}

impl Dump {
    /// A dump has the sink's `X-*` lines, then the message, then an empty line; a
    /// transaction that ended before its data is complete has no message yet.
    fn parse(text: &str) -> Option<Dump> {
        let mut mail_args = None;
        let mut rcpt_args = Vec::new();
        let mut rest = text;
        while let Some((line, after)) = rest.split_once('\n') {
            if let Some(v) = line.strip_prefix("X-Mail-Args: ") {
                mail_args = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("X-Rcpt-Args: ") {
                rcpt_args.push(v.to_string());
            } else if !line.starts_with("X-") {
                break;
            }
            rest = after;
        }
        let message = rest.to_string();
        (!message.trim().is_empty()).then_some(Dump {
            mail_args: mail_args?,
            rcpt_args,
            message,
        })
    }
}
