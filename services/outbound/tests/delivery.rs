//! `deliver` against real SMTP servers on loopback: Postfix's smtp-sink (with its options to
//! refuse chosen commands), found through a real DNS server (dnsmasq); plus a listener that
//! never greets, and a recording proxy to see PIPELINING on the wire.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{RecordingProxy, silent_server};
use mailroot_outbound::{
    ClientConfig, Envelope, Outcome, Recipient, RecipientResult, Relay, Resolver, Timeouts, deliver,
};
use mailroot_tests::have_client;
use mailroot_tests::remote::{Dns, Sink, free_port};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A message with lines that need dot-stuffing and an 8-bit byte.
const MESSAGE: &[u8] = b"From: sender@client.test\r\nTo: a@dest.test\r\nSubject: dots\r\n\r\n\
.leading dot\r\n..two dots\r\n.\r\nnot the end\r\n caf\xc3\xa9\r\nlast line\r\n";

fn have_tools() -> bool {
    have_client("dnsmasq") && have_client("smtp-sink")
}

/// dnsmasq with dest.test's MX records: `mx` = [(name, preference, address)], and a
/// resolver that asks it. Keep the `Dnsmasq` alive as long as the resolver is used.
fn dns(dir: &tempfile::TempDir, mx: &[(&str, u16, &str)]) -> (Resolver, Dns) {
    let mut records = Vec::new();
    for (name, pref, addr) in mx {
        records.push(format!("--mx-host=dest.test,{name},{pref}"));
        records.push(format!("--host-record={name},{addr}"));
    }
    records.push("--host-record=probe.test,127.0.0.1".into());
    let dnsmasq = Dns::start(dir.path(), &records);
    let resolver = Resolver::new(Some(vec![dnsmasq.addr])).unwrap();
    (resolver, dnsmasq)
}

fn config(port: u16) -> ClientConfig {
    ClientConfig {
        port,
        timeouts: Timeouts::all(Duration::from_secs(10)),
        ..ClientConfig::new("client.test")
    }
}

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope {
        mail_from: "sender@client.test".into(),
        recipients: rcpts.iter().map(|r| Recipient::new(*r)).collect(),
        ..Envelope::default()
    }
}

fn outcomes(results: &[RecipientResult]) -> Vec<(&str, Outcome, &str)> {
    results
        .iter()
        .map(|r| (r.address.as_str(), r.outcome, r.status.as_str()))
        .collect()
}

/// The message as smtp-sink dumps it: LF line ends, dots unstuffed, an empty line after.
fn as_dumped(message: &[u8]) -> String {
    String::from_utf8(message.to_vec())
        .unwrap()
        .replace("\r\n", "\n")
}

#[tokio::test]
async fn delivers_to_two_recipients_bytes_unchanged() {
    if !have_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(ip("127.0.0.2"), false);
    let sink = Sink::start(dir.path(), ip("127.0.0.2"), port, &[]);
    let (resolver, _dns) = dns(&dir, &[("mx1.dest.test", 10, "127.0.0.2")]);

    let mut env = envelope(&["a@dest.test", "b@dest.test"]);
    env.recipients[1].notify.success = true;
    env.envid = Some("ENV1".into());
    let results = deliver(&resolver, &config(port), "dest.test", &env, MESSAGE).await;
    assert_eq!(
        outcomes(&results),
        [
            ("a@dest.test", Outcome::Delivered, "2.0.0"),
            ("b@dest.test", Outcome::Delivered, "2.0.0")
        ]
    );
    assert_eq!(results[0].remote_mta.as_deref(), Some("mx1.dest.test"));
    assert!(
        results[0].diagnostic.starts_with("smtp; 250 2.0.0"),
        "{}",
        results[0].diagnostic
    );

    let dumps = sink.dumps(1, "\n\n");
    let dump = &dumps[0];
    // Envelope as the server saw it: smtp-sink offers 8BITMIME and DSN.
    assert!(dump.contains("X-Helo-Args: client.test\n"), "{dump}");
    assert!(
        dump.contains("X-Mail-Args: <sender@client.test> BODY=8BITMIME ENVID=ENV1\n"),
        "{dump}"
    );
    assert!(dump.contains("X-Rcpt-Args: <a@dest.test>\n"), "{dump}");
    assert!(
        dump.contains("X-Rcpt-Args: <b@dest.test> NOTIFY=SUCCESS\n"),
        "{dump}"
    );
    // The message after smtp-sink's own Received: field, byte for byte (dots unstuffed).
    let body_start = dump
        .find("From: sender@client.test")
        .expect("message in the dump");
    assert_eq!(&dump[body_start..], format!("{}\n", as_dumped(MESSAGE)));
}

#[tokio::test]
async fn pipelines_when_offered_and_not_otherwise() {
    if !have_tools() {
        return;
    }
    for (options, pipelined) in [(&[][..], true), (&["-p"][..], false)] {
        let dir = tempfile::tempdir().unwrap();
        let sink_port = free_port(ip("127.0.0.2"), false);
        let sink = Sink::start(dir.path(), ip("127.0.0.2"), sink_port, options);
        // The client talks to the proxy, which records each chunk the client wrote.
        let proxy_port = free_port(ip("127.0.0.3"), false);
        let proxy = RecordingProxy::start(ip("127.0.0.3"), proxy_port, sink.addr);
        let (resolver, _dns) = dns(&dir, &[("mx.dest.test", 10, "127.0.0.3")]);

        let env = envelope(&["a@dest.test", "b@dest.test", "c@dest.test"]);
        let results = deliver(&resolver, &config(proxy_port), "dest.test", &env, MESSAGE).await;
        assert!(
            results.iter().all(|r| r.outcome == Outcome::Delivered),
            "{options:?}: {results:?}"
        );
        sink.dumps(1, "\n\n");

        let chunks = proxy.client_chunks.lock().unwrap().clone();
        let texts: Vec<String> = chunks
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let group = texts.iter().any(|t| {
            t.starts_with("MAIL FROM:")
                && t.matches("RCPT TO:").count() == 3
                && t.ends_with("DATA\r\n")
        });
        assert_eq!(group, pipelined, "{options:?}: client writes {texts:?}");
        if !pipelined {
            // One command per write: MAIL, each RCPT and DATA are writes of their own.
            for cmd in [
                "MAIL FROM:<sender@client.test>",
                "RCPT TO:<a@dest.test>",
                "RCPT TO:<c@dest.test>",
                "DATA",
            ] {
                assert!(
                    texts
                        .iter()
                        .any(|t| t.starts_with(cmd) && t.matches("\r\n").count() == 1),
                    "{cmd} alone: {texts:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn refused_commands_give_deferred_and_failed() {
    if !have_tools() {
        return;
    }
    // (smtp-sink option, the command it refuses, expected outcome and status)
    let cases: [(&[&str], Outcome, &str); 4] = [
        (&["-r", "RCPT"], Outcome::Deferred, "4.3.0"),
        (&["-f", "RCPT"], Outcome::Failed, "5.3.0"),
        (&["-f", "."], Outcome::Failed, "5.3.0"),
        (&["-r", "MAIL"], Outcome::Deferred, "4.3.0"),
    ];
    for (options, outcome, status) in cases {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port(ip("127.0.0.2"), false);
        let _sink = Sink::start(dir.path(), ip("127.0.0.2"), port, options);
        let (resolver, _dns) = dns(&dir, &[("mx.dest.test", 10, "127.0.0.2")]);
        let env = envelope(&["a@dest.test", "b@dest.test"]);
        let results = deliver(&resolver, &config(port), "dest.test", &env, MESSAGE).await;
        assert_eq!(results.len(), 2, "{options:?}");
        for r in &results {
            assert_eq!(
                (r.outcome, r.status.as_str()),
                (outcome, status),
                "{options:?}: {r:?}"
            );
            assert!(r.diagnostic.starts_with("smtp; "), "{options:?}: {r:?}");
            assert_eq!(r.remote_mta.as_deref(), Some("mx.dest.test"));
        }
    }
}

#[tokio::test]
async fn a_server_that_never_greets_is_cut_by_the_timeout() {
    // No external tool: the silent server is a test socket; routed through a relay literal.
    let (addr, _server) = silent_server(ip("127.0.0.4"));
    let resolver = Resolver::new(Some(vec!["127.0.0.1:9".parse().unwrap()])).unwrap();
    let config = ClientConfig {
        timeouts: Timeouts::all(Duration::from_millis(300)),
        relay: Some(Relay {
            host: addr.ip().to_string(),
            port: addr.port(),
            username: None,
            password: None,
        }),
        ..ClientConfig::new("client.test")
    };
    let started = Instant::now();
    let results = deliver(
        &resolver,
        &config,
        "dest.test",
        &envelope(&["a@dest.test"]),
        MESSAGE,
    )
    .await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(results[0].outcome, Outcome::Deferred);
    assert_eq!(results[0].status, "4.4.1");
    assert!(
        results[0]
            .diagnostic
            .contains("timed out while waiting for the server greeting"),
        "{}",
        results[0].diagnostic
    );
    assert_eq!(results[0].remote_mta, None);
}

#[tokio::test]
async fn first_mx_refuses_connections_second_delivers() {
    if !have_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The same port on 127.0.0.5 has no listener (connection refused); on .6 the sink.
    let port = free_port(ip("127.0.0.6"), false);
    let sink = Sink::start(dir.path(), ip("127.0.0.6"), port, &[]);
    let (resolver, _dns) = dns(
        &dir,
        &[
            ("mx1.dest.test", 10, "127.0.0.5"),
            ("mx2.dest.test", 20, "127.0.0.6"),
        ],
    );
    let results = deliver(
        &resolver,
        &config(port),
        "dest.test",
        &envelope(&["a@dest.test"]),
        MESSAGE,
    )
    .await;
    assert_eq!(results[0].outcome, Outcome::Delivered, "{results:?}");
    assert_eq!(results[0].remote_mta.as_deref(), Some("mx2.dest.test"));
    sink.dumps(1, "\n\n");

    // Both refusing: Deferred, with the last host's connect error.
    let dir = tempfile::tempdir().unwrap();
    let (resolver, _dns) = dns(
        &dir,
        &[
            ("mx1.dest.test", 10, "127.0.0.5"),
            ("mx2.dest.test", 20, "127.0.0.7"),
        ],
    );
    let results = deliver(
        &resolver,
        &config(port),
        "dest.test",
        &envelope(&["a@dest.test"]),
        MESSAGE,
    )
    .await;
    assert_eq!(results[0].outcome, Outcome::Deferred);
    assert_eq!(results[0].status, "4.4.1");
    assert!(
        results[0]
            .diagnostic
            .starts_with("connect to mx2.dest.test[127.0.0.7]"),
        "{}",
        results[0].diagnostic
    );
}

#[tokio::test]
async fn a_421_greeting_moves_to_the_next_mx() {
    if !have_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(ip("127.0.0.8"), false);
    let _busy = Sink::start(dir.path(), ip("127.0.0.8"), port, &["-Q", "CONNECT"]);
    let sink = Sink::start(dir.path(), ip("127.0.0.9"), port, &[]);
    let (resolver, _dns) = dns(
        &dir,
        &[
            ("mx1.dest.test", 10, "127.0.0.8"),
            ("mx2.dest.test", 20, "127.0.0.9"),
        ],
    );
    let results = deliver(
        &resolver,
        &config(port),
        "dest.test",
        &envelope(&["a@dest.test"]),
        MESSAGE,
    )
    .await;
    assert_eq!(results[0].outcome, Outcome::Delivered, "{results:?}");
    assert_eq!(results[0].remote_mta.as_deref(), Some("mx2.dest.test"));
    sink.dumps(1, "\n\n");
}

#[tokio::test]
async fn require_tls_defers_when_starttls_is_not_offered() {
    if !have_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(ip("127.0.0.2"), false);
    let sink = Sink::start(dir.path(), ip("127.0.0.2"), port, &[]);
    let (resolver, _dns) = dns(&dir, &[("mx.dest.test", 10, "127.0.0.2")]);
    let config = ClientConfig {
        require_tls: true,
        ..config(port)
    };
    let results = deliver(
        &resolver,
        &config,
        "dest.test",
        &envelope(&["a@dest.test"]),
        MESSAGE,
    )
    .await;
    assert_eq!(results[0].outcome, Outcome::Deferred);
    assert_eq!(results[0].status, "4.7.10");
    assert!(
        std::fs::read_dir(&sink.dump_dir).unwrap().next().is_none(),
        "nothing was sent"
    );
}

#[tokio::test]
async fn a_relay_host_takes_everything_without_mx_lookups() {
    if !have_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(ip("127.0.0.10"), false);
    let sink = Sink::start(dir.path(), ip("127.0.0.10"), port, &[]);
    // dnsmasq knows the relay's name only; an MX lookup for elsewhere.example would be
    // REFUSED (Deferred), so a delivery proves the MX step was skipped.
    let (resolver, _dns) = dns(&dir, &[("relay.test", 10, "127.0.0.10")]);
    let relay = |host: &str| ClientConfig {
        relay: Some(Relay {
            host: host.into(),
            port,
            username: None,
            password: None,
        }),
        ..config(port)
    };
    let env = envelope(&["x@elsewhere.example"]);
    let results = deliver(
        &resolver,
        &relay("relay.test"),
        "elsewhere.example",
        &env,
        MESSAGE,
    )
    .await;
    assert_eq!(results[0].outcome, Outcome::Delivered, "{results:?}");
    assert_eq!(results[0].remote_mta.as_deref(), Some("relay.test"));
    assert!(sink.dumps(1, "\n\n")[0].contains("X-Rcpt-Args: <x@elsewhere.example>\n"));

    // A relay name that does not exist is our configuration's fault: Deferred, not Failed.
    let results = deliver(
        &resolver,
        &relay("norelay.test"),
        "elsewhere.example",
        &env,
        MESSAGE,
    )
    .await;
    assert_eq!(results[0].outcome, Outcome::Deferred, "{results:?}");
    assert_eq!(results[0].status, "4.4.3");
}
