//! Real servers on loopback for the outbound tests: dnsmasq (DNS), Postfix's smtp-sink
//! (SMTP), a Python aiosmtpd (SMTP with STARTTLS) and a recording TCP proxy. Each is started
//! by the test in its own temp dir, found ready by polling with a deadline, and killed when
//! dropped. A missing tool is a loud SKIP, or a failure with MAILROOT_REQUIRE_CLIENTS=1
//! (tests/run.sh installs them and sets it) — the same rule as `tests/src/lib.rs::have_client`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Debian's Python, where python3-dkim and python3-aiosmtpd install their modules (a
/// `python3` earlier in PATH may be another installation without them).
pub const PYTHON: &str = "/usr/bin/python3";

fn require_or_skip(what: &str, found: bool) -> bool {
    if !found {
        assert!(
            std::env::var("MAILROOT_REQUIRE_CLIENTS").as_deref() != Ok("1"),
            "{what} is required (MAILROOT_REQUIRE_CLIENTS=1) but not installed"
        );
        eprintln!("SKIP: {what} is not installed; run tests/run.sh to install it");
    }
    found
}

/// Whether `tool` (a command name or an absolute path) is installed.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    require_or_skip(tool, found)
}

/// Whether Debian's python3 can import `module`.
pub fn have_python_module(module: &str, package: &str) -> bool {
    let found = Command::new(PYTHON)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    require_or_skip(&format!("{package} ({PYTHON} -c 'import {module}')"), found)
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut wait = Duration::from_millis(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_millis(200));
    }
}

/// A port free on `ip` for TCP (and UDP when `udp`): bound to port 0 and released.
pub fn free_port(ip: IpAddr, udp: bool) -> u16 {
    eventually("a free port", Duration::from_secs(5), || {
        let tcp = TcpListener::bind((ip, 0)).ok()?;
        let port = tcp.local_addr().ok()?.port();
        if udp {
            UdpSocket::bind((ip, port)).ok()?;
        }
        Some(port)
    })
}

/// The current user's name: smtp-sink run as root must be told a user to switch to.
fn user_name() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(mut cmd: Command, log: &Path) -> Proc {
    let log_file = std::fs::File::create(log).expect("create log");
    let err_file = log_file.try_clone().expect("clone log");
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(log_file)
        .stderr(err_file)
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    Proc(child)
}

// ---- dnsmasq ----

pub struct Dnsmasq {
    pub addr: SocketAddr,
    _proc: Proc,
}

impl Dnsmasq {
    /// dnsmasq on 127.0.0.1:<free port>, authoritative for `test` (unknown names under it
    /// are NXDOMAIN through `--local=/test/`; names elsewhere are REFUSED, since it has no
    /// upstream), with `records` as extra options (`--mx-host=...`, `--host-record=...`).
    /// `probe` is a name it answers, polled until it does.
    pub fn start(dir: &Path, records: &[String], probe: &str) -> Dnsmasq {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let port = free_port(ip, true);
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--local=/test/",
            "--log-queries",
            "--log-facility=-",
            &format!("--port={port}"),
            &format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
            &format!("--user={}", user_name()),
        ]);
        cmd.args(records);
        let proc = spawn(cmd, &dir.join("dnsmasq.log"));
        let addr = SocketAddr::new(ip, port);
        eventually("dnsmasq answers", Duration::from_secs(10), || {
            dns_answers(addr, probe).then_some(())
        });
        Dnsmasq { addr, _proc: proc }
    }
}

/// One UDP query for `name` type A: true when an answer with rcode NOERROR came back.
fn dns_answers(server: SocketAddr, name: &str) -> bool {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    if sock.send_to(&q, server).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    matches!(sock.recv(&mut buf), Ok(n) if n > 12 && buf[3] & 0x0f == 0 && buf[7] > 0)
}

// ---- smtp-sink ----

pub struct SmtpSink {
    pub addr: SocketAddr,
    pub dump_dir: PathBuf,
    _proc: Proc,
}

impl SmtpSink {
    /// smtp-sink on `ip`:`port` dumping each transaction into `dir/dump/`, with `options`
    /// (e.g. `-r RCPT`, `-p`) before the address.
    pub fn start(dir: &Path, ip: IpAddr, port: u16, options: &[&str]) -> SmtpSink {
        let dump_dir = dir.join(format!("dump-{ip}-{port}"));
        std::fs::create_dir_all(&dump_dir).expect("dump dir");
        let mut cmd = Command::new("smtp-sink");
        cmd.args(["-u", &user_name(), "-d"])
            .arg(format!("{}/%H%M%S.", dump_dir.display()))
            .args(options)
            .arg(format!("{ip}:{port}"))
            .arg("16");
        let proc = spawn(cmd, &dir.join(format!("smtp-sink-{ip}-{port}.log")));
        let addr = SocketAddr::new(ip, port);
        eventually("smtp-sink listens", Duration::from_secs(10), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(|_| ())
        });
        SmtpSink {
            addr,
            dump_dir,
            _proc: proc,
        }
    }

    /// The dumped transactions whose end (the empty line smtp-sink writes after the
    /// message) has arrived; waits until there are `n`.
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

// ---- aiosmtpd with STARTTLS ----

/// A Python aiosmtpd server offering STARTTLS with the given certificate. It accepts every
/// message and writes, per message, `msg-N.json`: envelope, whether the session was TLS,
/// the AUTH login, and the content.
pub struct TlsSmtpServer {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    _proc: Proc,
}

const AIOSMTPD_SERVER: &str = r#"
import asyncio, base64, json, ssl, sys, threading, itertools
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

host, port, cert, key, out, user, password = sys.argv[1:8]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
counter = itertools.count()

class Handler:
    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.login if session.authenticated else None
        if isinstance(login, bytes):
            login = login.decode()
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "login": login,
            "content": base64.b64encode(envelope.original_content or envelope.content).decode(),
        }
        with open(f"{out}/msg-{next(counter)}.json", "w") as f:
            json.dump(record, f)
        return "250 2.0.0 Ok: stored"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login.decode() == user and auth_data.password.decode() == password
    return AuthResult(success=ok, handled=False, auth_data=auth_data)

controller = Controller(
    Handler(), hostname=host, port=int(port), tls_context=ctx, require_starttls=False,
    authenticator=authenticator, auth_require_tls=True, auth_exclude_mechanism=["LOGIN"],
    decode_data=False, ready_timeout=10,
)
controller.start()
print("READY", flush=True)
sys.stdin.read()
controller.stop()
"#;

impl TlsSmtpServer {
    pub fn start(dir: &Path, ip: IpAddr, user: &str, password: &str) -> TlsSmtpServer {
        let cert = rcgen::generate_simple_self_signed(vec!["mx.tls.test".to_string()])
            .expect("self-signed certificate");
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        let out = dir.join("aiosmtpd");
        std::fs::create_dir_all(&out).unwrap();
        let script = dir.join("server.py");
        std::fs::write(&script, AIOSMTPD_SERVER).unwrap();
        let port = free_port(ip, false);
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&script)
            .arg(ip.to_string())
            .arg(port.to_string())
            .arg(&cert_path)
            .arg(&key_path)
            .arg(&out)
            .arg(user)
            .arg(password);
        let log = dir.join("aiosmtpd.log");
        let proc = spawn(cmd, &log);
        eventually("aiosmtpd READY", Duration::from_secs(20), || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|l| l.contains("READY"))
                .map(|_| ())
        });
        TlsSmtpServer {
            addr: SocketAddr::new(ip, port),
            dir: out,
            _proc: proc,
        }
    }

    /// The stored messages once there are `n` (JSON texts).
    pub fn messages(&self, n: usize) -> Vec<String> {
        eventually(
            "aiosmtpd stored the message",
            Duration::from_secs(10),
            || {
                let mut out = Vec::new();
                for entry in std::fs::read_dir(&self.dir).ok()? {
                    out.push(std::fs::read_to_string(entry.ok()?.path()).ok()?);
                }
                (out.len() >= n).then_some(out)
            },
        )
    }
}

// ---- a recording proxy ----

/// Forwards one TCP connection at a time from a loopback port to `upstream`, recording
/// each chunk the client wrote as it was read (a pipelined command group arrives as one).
pub struct RecordingProxy {
    pub addr: SocketAddr,
    pub client_chunks: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RecordingProxy {
    pub fn start(ip: IpAddr, port: u16, upstream: SocketAddr) -> RecordingProxy {
        let listener = TcpListener::bind((ip, port)).expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let chunks = Arc::new(Mutex::new(Vec::new()));
        let recorded = chunks.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut server) = TcpStream::connect(upstream) else {
                    return;
                };
                let mut client_r = client.try_clone().unwrap();
                let mut server_w = server.try_clone().unwrap();
                let recorded = recorded.clone();
                let up = std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = client_r.read(&mut buf) {
                        if n == 0 || server_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        recorded.lock().unwrap().push(buf[..n].to_vec());
                    }
                    let _ = server_w.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut server, &mut client);
                let _ = client.shutdown(std::net::Shutdown::Write);
                let _ = up.join();
            }
        });
        RecordingProxy {
            addr,
            client_chunks: chunks,
        }
    }
}

/// A listener that accepts connections and never says a word (for timeouts).
pub fn silent_server(ip: IpAddr) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind((ip, 0)).expect("bind silent server");
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        // Holds up to 8 connections open without writing, then ends (dropping them).
        for conn in listener.incoming().take(8) {
            match conn {
                Ok(c) => held.push(c),
                Err(_) => return,
            }
        }
    });
    (addr, handle)
}
