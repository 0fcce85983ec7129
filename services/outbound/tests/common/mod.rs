//! Servers on loopback that only the outbound crate's tests need: a Python aiosmtpd (SMTP
//! with STARTTLS), a recording TCP proxy and a silent listener. dnsmasq, smtp-sink, the
//! tool checks and `eventually` are the project's one test harness, `mailroot-tests`
//! (tests/src/lib.rs, tests/src/remote.rs).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailroot_tests::remote::free_port;
use mailroot_tests::{PYTHON, eventually};

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
