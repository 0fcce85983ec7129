//! Test harness for mailroot: starts the REAL binaries (`mailroot-store`, `mailroot-frontend`,
//! `mailrootctl`) as processes in a temp dir, on ports chosen by the OS (port 0), and talks to
//! them with small blocking POP3/SMTP clients or with real mail clients.
//!
//! The binaries are taken from the cargo target directory next to the test executable; the
//! test command (`tests/run.sh`) builds them first with `cargo build --workspace --bins`.
//! Nothing here sleeps to synchronise: readiness is the `MAILROOT_READY` line a binary prints
//! once it listens, and everything else is polled with a deadline (`eventually`).

pub mod clients;
pub mod http;
pub mod remote;
pub mod slapd;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use clients::{Pop3Client, SmtpClient};

pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of a workspace binary, next to the running test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash>  ->  target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir of the test executable");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (tests/run.sh does)",
        path.display()
    );
    path
}

/// Whether a real mail client is installed. Missing: SKIP loudly, or fail when
/// MAILROOT_REQUIRE_CLIENTS=1 (tests/run.sh installs the clients and sets it).
pub fn have_client(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("MAILROOT_REQUIRE_CLIENTS").as_deref() != Ok("1"),
            "{tool} is required (MAILROOT_REQUIRE_CLIENTS=1) but not installed"
        );
        eprintln!("SKIP: {tool} is not installed; run tests/run.sh to install the mail clients");
    }
    found
}

/// Debian's Python, where python3-dkim and python3-aiosmtpd put their modules (a `python3`
/// earlier in PATH may be another installation without them).
pub const PYTHON: &str = "/usr/bin/python3";

/// Whether Debian's python3 can import `module` (from Debian's `package`); SKIP or fail as
/// [`have_client`] does.
pub fn have_python_module(module: &str, package: &str) -> bool {
    let found = Command::new(PYTHON)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("MAILROOT_REQUIRE_CLIENTS").as_deref() != Ok("1"),
            "{package} is required (MAILROOT_REQUIRE_CLIENTS=1) but {PYTHON} cannot import {module}"
        );
        eprintln!("SKIP: {package} is not installed; run tests/run.sh to install it");
    }
    found
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

/// A child process that is killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout piped and stderr to `log`, and waits for its `MAILROOT_READY`
    /// line; returns the process and the `key=value` pairs of that line.
    pub fn start(mut cmd: Command, log: PathBuf) -> (Proc, Vec<(String, String)>) {
        let log_file = std::fs::File::create(&log).expect("create log file");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("MAILROOT_READY ") {
                    let _ = tx.send(rest.to_string());
                }
            }
        });
        let mut proc = Proc { child, log };
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = proc.child.kill();
                panic!(
                    "{cmd:?} did not become ready; its log:\n{}",
                    proc.log_text()
                );
            }
        };
        let pairs = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (proc, pairs)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls until the process has exited, for at most `within`; panics with its log if not.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => panic!(
                    "still running {within:?} later ({other:?}); its log:\n{}",
                    self.log_text()
                ),
            }
        }
    }

    /// kill -9, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn addr_of(pairs: &[(String, String)], key: &str) -> SocketAddr {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in the ready line {pairs:?}"))
}

/// `metrics=` of a ready line: present when the process was started with `--metrics`.
fn metrics_of(pairs: &[(String, String)]) -> Option<SocketAddr> {
    pairs
        .iter()
        .find(|(k, _)| k == "metrics")
        .and_then(|(_, v)| v.parse().ok())
}

pub struct Frontend {
    pub proc: Proc,
    pub pop3: SocketAddr,
    pub smtp: SocketAddr,
    pub submission: SocketAddr,
    pub smtps: SocketAddr,
    pub pop3s: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz` when started with `--metrics`.
    pub metrics: Option<SocketAddr>,
}

/// A store node and N front-ends, each a real process, in a private temp dir.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub auth_guid: String,
    pub admin_token: String,
    pub store: Proc,
    pub store_addr: SocketAddr,
    /// The store's `--metrics` address (a new one after `start_store` with port 0).
    pub store_metrics: Option<SocketAddr>,
    pub frontends: Vec<Frontend>,
    starts: usize,
    /// Extra options of every store / front-end / mailrootctl run (e.g. cluster TLS).
    pub options: Options,
}

/// Extra command-line options for the processes of a cluster.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub store: Vec<String>,
    pub frontend: Vec<String>,
    pub ctl: Vec<String>,
    /// `https` when the store speaks TLS.
    pub tls: bool,
    /// Extra environment variables of the store and front-end processes.
    pub env: Vec<(String, String)>,
}

impl Drop for TestCluster {
    /// A failing test shows the tail of every node's log, which is where the reason usually is.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("==== {} (last {} lines)", path.display(), tail.len());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

pub const DOMAIN: &str = "example.test";
/// Maildrop lease TTL of test clusters.
pub const LEASE_TTL: Duration = Duration::from_secs(2);

impl TestCluster {
    /// Starts a store and `frontends` front-ends; nothing is configured yet.
    pub fn start(frontends: usize) -> TestCluster {
        TestCluster::start_with(
            frontends,
            Options::default(),
            tempfile::tempdir().expect("temp dir"),
        )
    }

    /// Like `start`, with extra options, in a given temp dir (which may already hold files
    /// the options name, e.g. certificates).
    pub fn start_with(frontends: usize, options: Options, dir: tempfile::TempDir) -> TestCluster {
        let auth_guid = uuid::Uuid::new_v4().to_string();
        let admin_token = format!("test-token-{}", uuid::Uuid::new_v4().simple());
        let (store, pairs) = Self::spawn_store(
            dir.path(),
            &auth_guid,
            &admin_token,
            "127.0.0.1:0",
            0,
            &options.store,
            &options.env,
        );
        let store_addr = addr_of(&pairs, "store");
        let mut cluster = TestCluster {
            dir,
            auth_guid,
            admin_token,
            store,
            store_addr,
            store_metrics: metrics_of(&pairs),
            frontends: Vec::new(),
            starts: 1,
            options,
        };
        for _ in 0..frontends {
            let fe = cluster.start_frontend(&cluster.auth_guid.clone());
            cluster.frontends.push(fe);
        }
        cluster
    }

    /// A started cluster with `DOMAIN` and the given mailboxes (password = "pw-" + local part).
    pub fn with_mailboxes(frontends: usize, locals: &[&str]) -> TestCluster {
        let cluster = TestCluster::start(frontends);
        cluster.ctl_ok(&["domain", "add", DOMAIN], None);
        for local in locals {
            cluster.add_mailbox(&format!("{local}@{DOMAIN}"), &format!("pw-{local}"));
        }
        cluster
    }

    fn spawn_store(
        dir: &Path,
        guid: &str,
        token: &str,
        listen: &str,
        n: usize,
        extra: &[String],
        env: &[(String, String)],
    ) -> (Proc, Vec<(String, String)>) {
        let mut cmd = Command::new(bin("mailroot-store"));
        cmd.args([
            "--listen",
            listen,
            "--auth-guid",
            guid,
            "--admin-token",
            token,
        ])
        .arg("--data")
        .arg(dir.join("data"))
        // Short maildrop leases so expiry tests finish quickly; renewals run at a third.
        .args(["--lease-ttl", &LEASE_TTL.as_secs_f64().to_string()])
        // A small base for the growing delay after failed logins, so throttling tests reach
        // the refusal quickly.
        .args(["--login-delay-ms", "20"])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)));
        Proc::start(cmd, dir.join(format!("store-{n}.log")))
    }

    /// Starts one more front-end process (not added to `frontends`) with the given GUID.
    pub fn start_frontend(&self, guid: &str) -> Frontend {
        self.start_frontend_with(guid, &[])
    }

    /// Like `start_frontend`, with extra command-line arguments.
    pub fn start_frontend_with(&self, guid: &str, extra: &[&str]) -> Frontend {
        let n = self.frontends.len();
        let cmd = self.frontend_command_with(guid, extra);
        let (proc, pairs) = Proc::start(
            cmd,
            self.dir.path().join(format!(
                "frontend-{n}-{}.log",
                uuid::Uuid::new_v4().simple()
            )),
        );
        Frontend {
            proc,
            pop3: addr_of(&pairs, "pop3"),
            smtp: addr_of(&pairs, "smtp"),
            submission: addr_of(&pairs, "submission"),
            smtps: addr_of(&pairs, "smtps"),
            pop3s: addr_of(&pairs, "pop3s"),
            metrics: metrics_of(&pairs),
        }
    }

    /// The front-end command with this cluster's extra front-end options.
    pub fn frontend_command(&self, guid: &str) -> Command {
        self.frontend_command_with(guid, &[])
    }

    fn frontend_command_with(&self, guid: &str, extra: &[&str]) -> Command {
        let mut cmd = self.frontend_command_base(guid);
        cmd.args(extra);
        cmd.args(&self.options.frontend);
        cmd.envs(self.options.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The front-end command without the extra options.
    pub fn frontend_command_base(&self, guid: &str) -> Command {
        let mut cmd = Command::new(bin("mailroot-frontend"));
        cmd.args([
            "--store",
            &self.store_url(),
            "--auth-guid",
            guid,
            "--hostname",
            "mx.example.test",
            "--pop3",
            "127.0.0.1:0",
            "--smtp",
            "127.0.0.1:0",
            "--submission",
            "127.0.0.1:0",
            "--smtps",
            "127.0.0.1:0",
            "--pop3s",
            "127.0.0.1:0",
        ]);
        cmd
    }

    pub fn store_url(&self) -> String {
        let scheme = if self.options.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.store_addr)
    }

    /// kill -9 of the store process.
    pub fn kill_store(&mut self) {
        self.store.kill();
    }

    /// Starts the store again on the same address and data directory.
    pub fn start_store(&mut self) {
        self.starts += 1;
        let listen = self.store_addr.to_string();
        let (store, pairs) = Self::spawn_store(
            self.dir.path(),
            &self.auth_guid,
            &self.admin_token,
            &listen,
            self.starts,
            &self.options.store,
            &self.options.env,
        );
        self.store = store;
        self.store_metrics = metrics_of(&pairs);
    }

    pub fn ctl_command(&self) -> Command {
        let mut cmd = Command::new(bin("mailrootctl"));
        cmd.env("MAILROOT_STORE", self.store_url())
            .env("MAILROOT_ADMIN_TOKEN", &self.admin_token)
            .args(&self.options.ctl);
        cmd
    }

    /// Runs `mailrootctl ARGS` with optional stdin.
    pub fn ctl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.ctl_command();
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn mailrootctl");
        {
            let mut input = child.stdin.take().expect("piped stdin");
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).expect("write stdin");
            }
        }
        child.wait_with_output().expect("mailrootctl output")
    }

    pub fn ctl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.ctl(args, stdin);
        assert!(
            out.status.success(),
            "mailrootctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn add_mailbox(&self, address: &str, password: &str) {
        self.ctl_ok(
            &["mailbox", "add", address, "--password-stdin"],
            Some(&format!("{password}\n")),
        );
    }

    /// (messages, bytes) of one mailbox according to `mailrootctl stat`.
    pub fn stat(&self, address: &str) -> (u64, u64) {
        let out = self.ctl_ok(&["stat", address], None);
        let line = out
            .lines()
            .find(|l| l.starts_with(address))
            .unwrap_or_else(|| panic!("no stat line for {address} in {out}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        (
            cols[1].parse().expect("count"),
            cols[2].parse().expect("bytes"),
        )
    }

    /// Sends a signal by name to a process: STOP / CONT (a frozen node: alive, but silent),
    /// TERM (`docker stop`), INT (Ctrl-C).
    pub fn signal(proc: &Proc, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &proc.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} failed");
    }

    pub fn fe(&self, n: usize) -> &Frontend {
        &self.frontends[n]
    }
}
