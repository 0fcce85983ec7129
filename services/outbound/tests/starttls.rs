//! STARTTLS (RFC 3207) and relay AUTH against a real SMTP server that does TLS: Python's
//! aiosmtpd (Debian's python3-aiosmtpd), with a self-signed certificate made by the test —
//! opportunistic TLS (RFC 7435) must not check it. smtp-sink has no TLS, and a full Postfix
//! smtpd needs a master process and a configuration tree; aiosmtpd is a complete SMTP
//! server started in one command.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::Duration;

use base64::Engine as _;
use common::TlsSmtpServer;
use mailroot_outbound::{
    ClientConfig, Envelope, Outcome, Recipient, Relay, Resolver, Timeouts, deliver,
};
use mailroot_tests::have_python_module;

const MESSAGE: &[u8] =
    b"From: a@client.test\r\nTo: x@dest.test\r\nSubject: tls\r\n\r\n.dot\r\nbody\r\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn relay_config(addr: SocketAddr, credentials: Option<(&str, &str)>) -> ClientConfig {
    ClientConfig {
        timeouts: Timeouts::all(Duration::from_secs(10)),
        relay: Some(Relay {
            host: addr.ip().to_string(),
            port: addr.port(),
            username: credentials.map(|c| c.0.to_string()),
            password: credentials.map(|c| c.1.to_string()),
        }),
        ..ClientConfig::new("client.test")
    }
}

fn envelope() -> Envelope {
    Envelope {
        mail_from: "a@client.test".into(),
        recipients: vec![Recipient::new("x@dest.test")],
        ..Envelope::default()
    }
}

/// A resolver that is never asked (the relay is an address).
fn resolver() -> Resolver {
    Resolver::new(Some(vec!["127.0.0.1:9".parse().unwrap()])).unwrap()
}

fn have_aiosmtpd() -> bool {
    have_python_module("aiosmtpd", "python3-aiosmtpd")
}

fn field<'a>(json: &'a str, name: &str) -> &'a str {
    let start = json
        .find(&format!("\"{name}\": "))
        .unwrap_or_else(|| panic!("{name} in {json}"));
    let rest = &json[start + name.len() + 4..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim_matches('"')
}

#[tokio::test]
async fn opportunistic_starttls_and_auth_over_tls_with_a_self_signed_certificate() {
    if !have_aiosmtpd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TlsSmtpServer::start(dir.path(), ip("127.0.0.20"), "relayuser", "s3cret");

    // 1. No credentials, TLS not required: STARTTLS is used because it is offered.
    let results = deliver(
        &resolver(),
        &relay_config(server.addr, None),
        "dest.test",
        &envelope(),
        MESSAGE,
    )
    .await;
    assert_eq!(results[0].outcome, Outcome::Delivered, "{results:?}");
    assert_eq!(results[0].diagnostic, "smtp; 250 2.0.0 Ok: stored");
    let stored = server.messages(1);
    assert_eq!(field(&stored[0], "tls"), "true", "{}", stored[0]);
    assert_eq!(field(&stored[0], "login"), "null");
    let content = base64::engine::general_purpose::STANDARD
        .decode(field(&stored[0], "content"))
        .unwrap();
    assert_eq!(
        content, MESSAGE,
        "the message arrives unchanged (dot unstuffed)"
    );

    // 2. Relay credentials and require_tls: AUTH PLAIN inside TLS.
    let config = ClientConfig {
        require_tls: true,
        ..relay_config(server.addr, Some(("relayuser", "s3cret")))
    };
    let results = deliver(&resolver(), &config, "dest.test", &envelope(), MESSAGE).await;
    assert_eq!(results[0].outcome, Outcome::Delivered, "{results:?}");
    let stored = server.messages(2);
    let with_login = stored
        .iter()
        .find(|m| field(m, "login") == "relayuser")
        .unwrap_or_else(|| panic!("a message sent after AUTH as relayuser: {stored:?}"));
    assert_eq!(field(with_login, "tls"), "true");

    // 3. Wrong password: the relay refuses AUTH (535): Deferred, not Failed — the recipient
    // is fine, our configuration is not.
    let config = relay_config(server.addr, Some(("relayuser", "wrong")));
    let results = deliver(&resolver(), &config, "dest.test", &envelope(), MESSAGE).await;
    assert_eq!(results[0].outcome, Outcome::Deferred, "{results:?}");
    assert!(
        results[0].diagnostic.starts_with("smtp; 535"),
        "{results:?}"
    );
    assert_eq!(server.messages(2).len(), 2, "nothing more was stored");
}

#[tokio::test]
async fn a_failed_handshake_defers_and_nothing_is_sent_in_plaintext() {
    // A server that offers STARTTLS, says 220, then answers the ClientHello with garbage.
    // A test socket: no real server misbehaves on request.
    let listener = TcpListener::bind("127.0.0.21:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut w = conn;
        let mut line = String::new();
        w.write_all(b"220 fake ESMTP\r\n").unwrap();
        reader.read_line(&mut line).unwrap();
        w.write_all(b"250-fake\r\n250 STARTTLS\r\n").unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "STARTTLS\r\n");
        w.write_all(b"220 go ahead\r\n").unwrap();
        w.write_all(b"this is not TLS at all\r\n\r\n").unwrap();
        // Whatever comes after must not be a plaintext MAIL FROM.
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut reader, &mut rest);
        rest
    });
    let results = deliver(
        &resolver(),
        &relay_config(addr, None),
        "dest.test",
        &envelope(),
        MESSAGE,
    )
    .await;
    assert_eq!(results[0].outcome, Outcome::Deferred, "{results:?}");
    assert_eq!(results[0].status, "4.7.5");
    assert!(
        results[0].diagnostic.contains("TLS handshake"),
        "{results:?}"
    );
    let after = server.join().unwrap();
    assert!(
        !String::from_utf8_lossy(&after).contains("MAIL FROM"),
        "{after:?}"
    );
}
