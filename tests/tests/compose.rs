//! Issue 6: the Docker Compose cluster, built here (no registry), scaled to 3 front-ends behind
//! the HAProxy load balancer, tested by failure: a killed front-end, a stopped and restarted
//! store, a front-end cut off the network, and down/up. Issue 12: the compose file is locked
//! down by default — cluster secrets made on first start in a volume, mutual TLS on every
//! link (the store refuses plaintext and other CAs' certificates), each front-end its own host
//! name; a front-end cut off from the store is taken out by HAProxy and comes back. SKIPs
//! loudly without Docker; with REQUIRE_DOCKER=1 (CI) a missing Docker is a failure.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailroot_tests::{Pop3Client, SmtpClient, bin, eventually, have_client};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn docker_available() -> bool {
    let ok = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("REQUIRE_DOCKER").as_deref() != Ok("1"),
            "REQUIRE_DOCKER=1 but Docker is not available"
        );
        eprintln!("SKIP: Docker is not available; the compose cluster test did not run");
    }
    ok
}

/// Where compose-up.sh puts the admin's copy of the cluster secrets.
fn secrets() -> PathBuf {
    repo().join("deploy/.secrets")
}

/// The host name in the SMTP banners of `n` new connections through the balancer.
fn banner_hosts(smtp: SocketAddr, n: usize) -> Vec<String> {
    (0..n)
        .filter_map(|_| SmtpClient::connect(smtp).ok())
        .filter_map(|c| c.banner.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A compose project of its own; `down -v` on drop, also when the test fails.
struct Cluster {
    project: String,
    env: HashMap<String, String>,
    smtp: SocketAddr,
    pop3: SocketAddr,
    store: String,
}

impl Cluster {
    fn compose(&self) -> Command {
        let tool = if Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            vec!["docker", "compose"]
        } else {
            vec!["docker-compose"]
        };
        let mut c = Command::new(tool[0]);
        c.args(&tool[1..])
            .current_dir(repo())
            .args(["-p", &self.project])
            .envs(&self.env);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.compose().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "compose {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Container ids of a service (works with compose v1 and v2 naming alike).
    fn containers(&self, service: &str) -> Vec<String> {
        self.run(&["ps", "-q", service])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// mailrootctl as an admin of this cluster: the credentials compose-up.sh copied out of
    /// the secrets volume to deploy/.secrets/ (the admin token through MAILROOT_ENV_FILE).
    fn ctl(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let s = secrets();
        let tls = [
            ("MAILROOT_CLUSTER_CA", s.join("ca.pem")),
            ("MAILROOT_CLUSTER_CERT", s.join("admin.pem")),
            ("MAILROOT_CLUSTER_KEY", s.join("admin-key.pem")),
        ];
        self.ctl_as(&self.store, &tls, args, stdin)
    }

    /// mailrootctl with the admin token, against `store`, with these cluster TLS files.
    fn ctl_as(
        &self,
        store: &str,
        tls: &[(&str, PathBuf)],
        args: &[&str],
        stdin: Option<&str>,
    ) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(bin("mailrootctl"))
            .env("MAILROOT_STORE", store)
            .env("MAILROOT_ENV_FILE", secrets().join("cluster.env"))
            .env_remove("MAILROOT_ADMIN_TOKEN")
            .env_remove("MAILROOT_CLUSTER_CA")
            .env_remove("MAILROOT_CLUSTER_CERT")
            .env_remove("MAILROOT_CLUSTER_KEY")
            .envs(tls.iter().map(|(k, v)| (k, v)))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn up(&self) {
        let out = Command::new(repo().join("deploy/compose-up.sh"))
            .envs(&self.env)
            .env("COMPOSE_PROJECT_NAME", &self.project)
            // The debug binaries `cargo test` built: no second (release) build in CI.
            .env("MAILROOT_IMAGE_PROFILE", "debug")
            .args(["--scale", "frontend=3"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "compose-up: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        eventually("store answers mailrootctl", Duration::from_secs(60), || {
            self.ctl(&["domain", "list"], None)
                .status
                .success()
                .then_some(())
        });
        eventually("load balancer serves SMTP", Duration::from_secs(60), || {
            SmtpClient::connect(self.smtp)
                .ok()
                .filter(|c| c.banner.starts_with("220"))
                .map(|_| ())
        });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(out) = self.compose().args(["logs", "--tail", "30"]).output()
        {
            eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        }
        let _ = self
            .compose()
            .args(["down", "-v", "--remove-orphans"])
            .output();
    }
}

/// One delivery through the balancer, retried on connection errors and temporary failures.
/// Returns whether it was acknowledged with 250, and how many attempts ended with their
/// outcome unknown: the connection broke after the whole message was sent and before the
/// reply (a front-end killed or cut off meanwhile). Such an attempt may have been stored —
/// RFC 1047's duplicate, which the README admits — so the client's retry can make a second
/// copy; every other attempt is all or nothing.
fn deliver(addr: SocketAddr, subject: &str, temp_seen: &AtomicUsize) -> (bool, usize) {
    let msg = format!(
        "From: load@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\nload test\r\n"
    );
    let mut uncertain = 0;
    for _ in 0..240 {
        let mut sent = false;
        let reply = SmtpClient::connect(addr).and_then(|mut c| {
            for line in [
                "EHLO client.test",
                "MAIL FROM:<load@remote.test>",
                "RCPT TO:<alice@example.test>",
                "DATA",
            ] {
                let r = c.cmd(line)?;
                if !(r.starts_with('2') || r.starts_with('3')) {
                    return Ok(r);
                }
            }
            c.send_raw(&mailroot_tests::clients::dot_stuff(msg.as_bytes()))?;
            c.send_raw(b".\r\n")?;
            sent = true;
            c.read_reply()
        });
        match reply {
            Ok(r) if r.starts_with("250 ") => return (true, uncertain),
            Ok(r) if r.starts_with('4') => {
                temp_seen.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => panic!("{subject}: permanent failure {r}"),
            Err(_) if sent => uncertain += 1,
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    (false, uncertain)
}

#[test]
fn compose_cluster_survives_failures_and_keeps_every_acknowledged_message_once() {
    if !docker_available() || !have_client("swaks") {
        return;
    }
    let ports: Vec<u16> = (0..7)
        .map(|_| mailroot_tests::remote::free_port([0, 0, 0, 0].into(), false))
        .collect();
    let project = format!(
        "mailroottest{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let env: HashMap<String, String> = [
        ("MAILROOT_SMTP_PORT", ports[0]),
        ("MAILROOT_SUBMISSION_PORT", ports[1]),
        ("MAILROOT_SMTPS_PORT", ports[2]),
        ("MAILROOT_POP3_PORT", ports[3]),
        ("MAILROOT_POP3S_PORT", ports[4]),
        ("MAILROOT_STORE_PORT", ports[5]),
        ("MAILROOT_PROMETHEUS_PORT", ports[6]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([
        ("MAILROOT_SUBNET".to_string(), "172.31.251.0/24".to_string()),
        (
            "MAILROOT_CLUSTER_SUBNET".to_string(),
            "172.31.252.0/24".to_string(),
        ),
        // The optional Prometheus too (it scrapes every node).
        ("COMPOSE_PROFILES".to_string(), "monitoring".to_string()),
    ])
    .collect();
    let c = Cluster {
        project,
        env,
        smtp: SocketAddr::from(([127, 0, 0, 1], ports[0])),
        pop3: SocketAddr::from(([127, 0, 0, 1], ports[3])),
        store: format!("https://127.0.0.1:{}", ports[5]),
    };
    c.up();

    // Images: small, non-root.
    for image in [
        "mailroot-app:local",
        "mailroot-lb:local",
        "mailroot-prometheus:local",
    ] {
        let out = Command::new("docker")
            .args([
                "image",
                "inspect",
                "--format",
                "{{.Size}} {{.Config.User}}",
                image,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!(
            "image {image}: {} bytes, user {}",
            text.split(' ').next().unwrap_or(""),
            text.trim().split(' ').nth(1).unwrap_or("")
        );
        assert!(
            text.trim().ends_with("10001:10001"),
            "{image} runs as {text}"
        );
    }
    let frontends = c.containers("frontend");
    assert_eq!(frontends.len(), 3, "scaled to 3 front-ends");
    for id in frontends.iter().chain(c.containers("store").iter()) {
        let top = Command::new("docker")
            .args(["top", id, "-o", "uid"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&top.stdout);
        assert!(
            !text.lines().skip(1).any(|l| l.trim() == "0"),
            "{id} runs a process as root: {text}"
        );
    }

    // The store sees every scaled front-end as a node of its own (`mailrootctl nodes`).
    eventually(
        "mailrootctl nodes lists the 3 front-ends",
        Duration::from_secs(60),
        || {
            let out = c.ctl(&["nodes"], None);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let ids: std::collections::HashSet<String> = text
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|id| uuid::Uuid::parse_str(id).is_ok())
                .map(str::to_string)
                .collect();
            (out.status.success() && ids.len() == 3).then_some(())
        },
    );
    // The monitoring profile's Prometheus scrapes the store and all 3 front-ends: every
    // target is up (its HTTP API, on the host's loopback).
    let prometheus = SocketAddr::from(([127, 0, 0, 1], ports[6]));
    eventually(
        "Prometheus reports the store and 3 front-ends up",
        Duration::from_secs(90),
        || {
            let (status, body) = mailroot_tests::http::get(prometheus, "/api/v1/targets").ok()?;
            if status != 200 {
                return None;
            }
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let targets = v["data"]["activeTargets"].as_array()?;
            let up = |job: &str| {
                targets
                    .iter()
                    .filter(|t| t["scrapePool"] == job && t["health"] == "up")
                    .count()
            };
            eprintln!(
                "prometheus: store up {}, front-ends up {} of {} targets",
                up("mailroot-store"),
                up("mailroot-frontend"),
                targets.len()
            );
            (up("mailroot-store") == 1 && up("mailroot-frontend") == 3 && targets.len() == 4)
                .then_some(())
        },
    );
    // Each front-end names itself by its own container's host name (no shared
    // MAILROOT_HOSTNAME): 3 distinct names in `mailrootctl nodes`, the containers' ones.
    let hostname_of: HashMap<String, String> = frontends
        .iter()
        .map(|id| {
            (
                docker(&["inspect", "--format", "{{.Config.Hostname}}", id]),
                id.clone(),
            )
        })
        .collect();
    let out = c.ctl(&["nodes"], None);
    let listed: std::collections::HashSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok())
        })
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    assert_eq!(listed.len(), 3, "3 distinct host names: {listed:?}");
    for name in &listed {
        assert!(
            hostname_of.contains_key(name),
            "{name} is no front-end container's host name"
        );
    }

    // Locked down: the store takes mutual TLS with this cluster's certificates only.
    let store_port = c.store.rsplit(':').next().unwrap().to_string();
    let plaintext = c.ctl_as(
        &format!("http://127.0.0.1:{store_port}"),
        &[],
        &["domain", "list"],
        None,
    );
    let err = String::from_utf8_lossy(&plaintext.stderr);
    eprintln!("plaintext gRPC: {}", err.trim());
    assert_eq!(
        plaintext.status.code(),
        Some(3),
        "plaintext gRPC accepted: {err}"
    );
    assert!(err.contains("https://"), "{err}");
    let no_cert = c.ctl_as(&c.store, &[], &["domain", "list"], None);
    assert_eq!(
        no_cert.status.code(),
        Some(3),
        "no client certificate: {}",
        String::from_utf8_lossy(&no_cert.stderr)
    );
    let other = tempfile::tempdir().unwrap();
    let made = Command::new(bin("mailrootctl"))
        .args(["cluster", "init"])
        .arg(other.path())
        .output()
        .unwrap();
    assert!(made.status.success());
    let o = other.path();
    // Another cluster's set: its CA does not know our store, our store not its admin.
    let out = c.ctl_as(
        &c.store,
        &[
            ("MAILROOT_CLUSTER_CA", o.join("ca.pem")),
            ("MAILROOT_CLUSTER_CERT", o.join("admin.pem")),
            ("MAILROOT_CLUSTER_KEY", o.join("admin-key.pem")),
        ],
        &["domain", "list"],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("another cluster's certificates: {}", err.trim());
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("invalid peer certificate"), "{err}");
    // Our CA (so the client trusts the store) with another CA's admin certificate: the store
    // refuses the client.
    let out = c.ctl_as(
        &c.store,
        &[
            ("MAILROOT_CLUSTER_CA", secrets().join("ca.pem")),
            ("MAILROOT_CLUSTER_CERT", o.join("admin.pem")),
            ("MAILROOT_CLUSTER_KEY", o.join("admin-key.pem")),
        ],
        &["domain", "list"],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("a client certificate from another CA: {}", err.trim());
    assert_eq!(out.status.code(), Some(3), "{err}");
    // The same from inside the cluster network, next to the store (a front-end container):
    // plaintext, and another cluster's CA and admin certificate, are refused at the link.
    let inside = &frontends[0];
    docker(&[
        "cp",
        &format!("{}/.", o.display()),
        &format!("{inside}:/tmp/other"),
    ]);
    for (what, tls) in [
        ("plaintext", vec!["--store=http://store:7070"]),
        (
            "another cluster's certificates",
            vec![
                "--store=https://store:7070",
                "--cluster-ca=/tmp/other/ca.pem",
                "--cluster-cert=/tmp/other/admin.pem",
                "--cluster-key=/tmp/other/admin-key.pem",
            ],
        ),
        (
            "another CA's client certificate",
            vec![
                "--store=https://store:7070",
                "--cluster-ca=/secrets/ca.pem",
                "--cluster-cert=/tmp/other/admin.pem",
                "--cluster-key=/tmp/other/admin-key.pem",
            ],
        ),
    ] {
        let out = Command::new("docker")
            .args([
                "exec",
                "-u",
                "0",
                inside,
                "/mailrootctl",
                "--admin-token=guess",
            ])
            .args(&tls)
            .args(["domain", "list"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("inside the network, {what}: {}", err.trim());
        assert_eq!(out.status.code(), Some(3), "{what}: {err}");
    }
    let logs = c.run(&["logs", "--no-color", "store"]);
    assert!(
        !logs.contains("INSECURE"),
        "the store runs plaintext: {logs}"
    );
    assert!(
        c.ctl(&["domain", "add", "example.test"], None)
            .status
            .success()
    );
    assert!(
        c.ctl(
            &["mailbox", "add", "alice@example.test", "--password-stdin"],
            Some("pw-alice\n")
        )
        .status
        .success()
    );
    assert!(
        c.ctl(&["config", "set", "greeting", "Compose cluster"], None)
            .status
            .success()
    );

    // A front-end cut off from the store (its `cluster` network) is taken out by HAProxy —
    // its /readyz says 503 — and gets no new connections; it returns with the link. Which
    // front-end answered is in the SMTP banner: each has its own host name.
    let all: std::collections::HashSet<String> = hostname_of.keys().cloned().collect();
    eventually(
        "every front-end takes connections",
        Duration::from_secs(60),
        || {
            let seen: std::collections::HashSet<String> =
                banner_hosts(c.smtp, 9).into_iter().collect();
            (seen == all).then_some(())
        },
    );
    let cut = frontends[2].clone();
    let cut_host = docker(&["inspect", "--format", "{{.Config.Hostname}}", &cut]);
    let cluster_net = format!("{}_cluster", c.project);
    let lb_log_lines = || c.run(&["logs", "--no-color", "lb"]).lines().count();
    // The server of `backend` that HAProxy logged as going to `state` after line `after`.
    let state_in = |backend: &str, after: usize, state: &str| {
        let logs = c.run(&["logs", "--no-color", "lb"]);
        let prefix = format!("Server {backend}/");
        logs.lines().skip(after).find_map(|l| {
            let rest = &l[l.find(&prefix)? + "Server ".len()..];
            let name = rest.split_whitespace().next()?;
            rest[name.len()..]
                .starts_with(&format!(" is {state}"))
                .then(|| name.to_string())
        })
    };
    let server_state = |after: usize, state: &str| state_in("smtp", after, state);
    let mark = lb_log_lines();
    let cutting = Instant::now();
    docker(&["network", "disconnect", &cluster_net, &cut]);
    let down = eventually(
        "HAProxy: the cut front-end is DOWN",
        Duration::from_secs(90),
        || server_state(mark, "DOWN"),
    );
    eprintln!(
        "{down} ({cut_host}) marked DOWN {:?} after its store link was cut",
        cutting.elapsed()
    );
    let seen = banner_hosts(c.smtp, 12);
    assert_eq!(seen.len(), 12, "connections through the balancer: {seen:?}");
    assert!(
        !seen.contains(&cut_host),
        "the cut front-end got a new connection: {seen:?}"
    );
    let others: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(others.len(), 2, "the other two share the load: {seen:?}");
    // The same /readyz check takes it out of every backend, POP3 included.
    let pop3_down = eventually(
        "HAProxy: the cut front-end is DOWN for POP3 too",
        Duration::from_secs(30),
        || state_in("pop3", mark, "DOWN"),
    );
    let mark = lb_log_lines();
    let restoring = Instant::now();
    docker(&["network", "connect", &cluster_net, &cut]);
    let up = eventually(
        "HAProxy: the front-end is UP again",
        Duration::from_secs(90),
        || server_state(mark, "UP").filter(|name| *name == down),
    );
    eprintln!(
        "{up} UP {:?} after its store link was restored",
        restoring.elapsed()
    );
    eventually(
        "HAProxy: the front-end is UP again for POP3",
        Duration::from_secs(30),
        || state_in("pop3", mark, "UP").filter(|name| *name == pop3_down),
    );
    eventually(
        "the restored front-end takes connections",
        Duration::from_secs(30),
        || banner_hosts(c.smtp, 9).contains(&cut_host).then_some(()),
    );

    // A real client through the balancer first.
    let swaks = Command::new("swaks")
        .args([
            "--server",
            &c.smtp.to_string(),
            "--from",
            "load@remote.test",
            "--to",
            "alice@example.test",
        ])
        .args(["--header", "Subject: swaks-0"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&swaks.stdout).contains("<-  250 2.0.0"),
        "{}",
        String::from_utf8_lossy(&swaks.stdout)
    );

    // 299 more deliveries from 4 senders while things break.
    // (subject, attempts whose outcome the client never learned)
    let acked = Arc::new(Mutex::new(vec![("swaks-0".to_string(), 0)]));
    let temp_seen = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(1));
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (acked, temp_seen, next, smtp) =
                (acked.clone(), temp_seen.clone(), next.clone(), c.smtp);
            std::thread::spawn(move || {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= 300 {
                        return;
                    }
                    let subject = format!("load-{n:03}");
                    if let (true, uncertain) = deliver(smtp, &subject, &temp_seen) {
                        acked.lock().unwrap().push((subject, uncertain));
                    }
                    // A steady load (about 20 messages/s) that is still running while each
                    // failure below happens; this is pacing, not synchronisation.
                    std::thread::sleep(Duration::from_millis(150));
                }
            })
        })
        .collect();
    let progress = |at_least: usize| {
        eventually("deliveries progress", Duration::from_secs(120), || {
            (acked.lock().unwrap().len() >= at_least).then_some(())
        })
    };

    // 1. docker kill a front-end under load.
    progress(60);
    let killed = Command::new("docker")
        .args(["kill", &frontends[1]])
        .output()
        .unwrap();
    assert!(killed.status.success());
    progress(120);

    // 2. The store goes away: front-ends answer 451 / -ERR [SYS/TEMP], then recover by themselves.
    c.run(&["stop", "store"]);
    eventually(
        "451 while the store is down",
        Duration::from_secs(30),
        || {
            let mut s = SmtpClient::connect(c.smtp).ok()?;
            s.cmd("EHLO t").ok()?;
            s.cmd("MAIL FROM:<p@remote.test>").ok()?;
            let r = s.cmd("RCPT TO:<alice@example.test>").ok()?;
            r.starts_with("451 4.3.0").then_some(())
        },
    );
    eventually(
        "-ERR [SYS/TEMP] while the store is down",
        Duration::from_secs(30),
        || {
            let mut p = Pop3Client::connect(c.pop3).ok()?;
            p.login("alice@example.test", "pw-alice")
                .ok()?
                .starts_with("-ERR [SYS/TEMP]")
                .then_some(())
        },
    );
    c.run(&["start", "store"]);
    let back = Instant::now();
    let n = acked.lock().unwrap().len();
    progress((n + 20).min(300));
    eprintln!(
        "deliveries resumed {:?} after the store came back",
        back.elapsed()
    );

    // 3. Cut one front-end off the network and back.
    let network = format!("{}_mail", c.project);
    let fe1 = frontends[0].clone();
    assert!(
        Command::new("docker")
            .args(["network", "disconnect", &network, &fe1])
            .status()
            .unwrap()
            .success()
    );
    let n = acked.lock().unwrap().len();
    progress((n + 20).min(300));
    assert!(
        Command::new("docker")
            .args(["network", "connect", &network, &fe1])
            .status()
            .unwrap()
            .success()
    );

    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "{} acknowledged, {} temporary failures seen by clients",
        acked.len(),
        temp_seen.load(Ordering::Relaxed)
    );
    assert_eq!(
        acked.len(),
        300,
        "every message was eventually acknowledged"
    );

    // Every acknowledged message is stored exactly once, retrieved through the balancer.
    let retrieve = || {
        eventually("POP3 through the balancer", Duration::from_secs(60), || {
            let mut p = Pop3Client::connect(c.pop3).ok()?;
            if !p
                .login("alice@example.test", "pw-alice")
                .ok()?
                .starts_with("+OK")
            {
                return None;
            }
            let count = p.uidl().ok()?.len();
            let mut subjects = Vec::new();
            for i in 1..=count as u32 {
                let m = p.retr(i).ok()?;
                subjects.push(
                    String::from_utf8_lossy(&m)
                        .lines()
                        .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))?,
                );
            }
            let _ = p.cmd("QUIT");
            Some(subjects)
        })
    };
    let stored = retrieve();
    let mut admitted = 0;
    for (subject, uncertain) in &acked {
        let copies = stored.iter().filter(|s| *s == subject).count();
        // Exactly once, unless an attempt broke off after the whole message was sent: then
        // that attempt may have been stored as well (RFC 1047), never more.
        assert!(
            copies == 1 || (copies >= 1 && copies <= 1 + uncertain),
            "{subject}: {copies} copies, {uncertain} attempts with an unknown outcome"
        );
        admitted += copies - 1;
    }
    eprintln!("{admitted} duplicates of attempts whose outcome the client never learned");
    assert_eq!(
        stored.len(),
        acked.len() + admitted,
        "unacknowledged extras stored"
    );

    // 4. stop, down and up again: mail and settings are still there. Every container stops on
    // its SIGTERM (issue 10: the binaries are PID 1 and handle it; an idle front-end has
    // nothing to drain), not after Docker's 10 s timeout and a SIGKILL: its exit code says
    // which (137 = killed). The time is printed, not asserted (a busy machine varies).
    // Only the containers running now: one killed earlier in this test keeps its 137.
    let running = Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!("label=com.docker.compose.project={}", c.project))
        .output()
        .expect("docker ps");
    let running = String::from_utf8_lossy(&running.stdout).into_owned();
    let ids: Vec<&str> = running.split_whitespace().collect();
    assert!(ids.len() >= 3, "running containers of the project: {ids:?}");
    let stopping = Instant::now();
    c.run(&["stop"]);
    eprintln!("compose stop took {:?}", stopping.elapsed());
    let inspect = Command::new("docker")
        .args(["inspect", "--format", "{{.Name}} {{.State.ExitCode}}"])
        .args(&ids)
        .output()
        .expect("docker inspect");
    let states = String::from_utf8_lossy(&inspect.stdout).into_owned();
    for line in states.lines() {
        let code = line.split_whitespace().last().unwrap_or("");
        assert_ne!(
            code, "137",
            "a container ignored SIGTERM and was killed: {states}"
        );
    }
    let ca = std::fs::read(secrets().join("ca.pem")).unwrap();
    c.run(&["down"]);
    c.up();
    // The secrets volume outlives `down`: init found the set complete and kept it.
    assert_eq!(
        std::fs::read(secrets().join("ca.pem")).unwrap(),
        ca,
        "a new CA after down/up"
    );
    assert_eq!(retrieve().len(), 300 + admitted);
    let banner = SmtpClient::connect(c.smtp).unwrap().banner;
    assert!(banner.contains("Compose cluster"), "{banner}");
}

/// Without any MAILROOT_*_PORT, the load balancer publishes the standard mail ports (the
/// cluster test overrides every one of them, so it cannot show the defaults).
#[test]
fn compose_publishes_the_standard_mail_ports_by_default() {
    if !docker_available() {
        return;
    }
    let mut cmd = Command::new("docker-compose");
    cmd.current_dir(repo())
        .args(["-f", "docker-compose.yml", "config"]);
    for (key, _) in std::env::vars() {
        if key.starts_with("MAILROOT_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // `published: 25` then `target: 2525` (compose v1 renders long syntax).
    let published: Vec<(String, String)> = text
        .lines()
        .zip(text.lines().skip(1))
        .filter_map(|(a, b)| {
            let p = a.trim().strip_prefix("- published: ")?;
            let t = b.trim().strip_prefix("target: ")?;
            Some((
                p.trim_matches('"').to_string(),
                t.trim_matches('"').to_string(),
            ))
        })
        .collect();
    for (port, target) in [
        ("25", "2525"),
        ("587", "1587"),
        ("465", "1465"),
        ("110", "1110"),
        ("995", "1995"),
    ] {
        assert!(
            published.contains(&(port.to_string(), target.to_string())),
            "port {port} -> {target} not published by default: {published:?}"
        );
    }
}
