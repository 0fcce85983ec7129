//! Issue 6 (front-end part): behind the load balancer, the real client address arrives by
//! PROXY protocol v2, and only the balancer's network may send it.

use std::io::Write;
use std::net::TcpStream;

use mailroot_tests::{Pop3Client, SmtpClient, TestCluster};

/// A PROXY v2 header (PROXY command, TCP over IPv4) naming `src` as the client.
fn header(src: [u8; 4], src_port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x11); // AF_INET, STREAM
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&[198, 51, 100, 1]);
    h.extend_from_slice(&src_port.to_be_bytes());
    h.extend_from_slice(&25u16.to_be_bytes());
    h
}

#[test]
fn client_address_comes_from_the_proxy_header_of_the_balancer_only() {
    let c = TestCluster::with_mailboxes(0, &["alice"]);
    let fe = c.start_frontend_with(&c.auth_guid, &["--proxy-protocol-from", "127.0.0.1/32"]);

    // From the balancer (127.0.0.1) with a header: the header's address is the client.
    let mut raw = TcpStream::connect(fe.smtp).unwrap();
    raw.write_all(&header([203, 0, 113, 7], 40000)).unwrap();
    let mut smtp = SmtpClient::from_stream(raw).unwrap();
    let r = smtp
        .send_mail(
            "bob@remote.test",
            &["alice@example.test"],
            b"Subject: proxied\r\n\r\nhi\r\n",
        )
        .unwrap();
    assert!(r.starts_with("250 "), "{r}");
    // POP3 from the balancer without a header is dropped (after the header timeout): no banner.
    assert!(
        Pop3Client::connect(fe.pop3).is_err(),
        "POP3 without PROXY header from the balancer was served"
    );

    // From elsewhere (127.0.0.2) no header is expected; one would be garbage.
    let mut pop = Pop3Client::connect_from(fe.pop3, "127.0.0.2".parse().unwrap()).unwrap();
    assert!(
        pop.login("alice@example.test", "pw-alice")
            .unwrap()
            .starts_with("+OK")
    );
    assert_eq!(pop.uidl().unwrap().len(), 1);
    let m = String::from_utf8(pop.retr(1).unwrap()).unwrap();
    assert!(
        m.contains("Received: from client.test ([203.0.113.7])"),
        "{m}"
    );
}
