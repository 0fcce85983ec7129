//! `Resolver::route` against a real DNS server: dnsmasq on loopback, started by the test.

mod common;

use std::net::IpAddr;

use mailroot_outbound::{
    ClientConfig, Envelope, Outcome, Recipient, Resolver, RouteError, deliver,
};
use mailroot_tests::have_client;
use mailroot_tests::remote::Dns;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn start(dir: &tempfile::TempDir) -> Dns {
    let records: Vec<String> = [
        // Two MX of preference 10 (shuffled), one of 20, one of 30, out of order.
        "--mx-host=multi.test,mx30.multi.test,30",
        "--mx-host=multi.test,mx10a.multi.test,10",
        "--mx-host=multi.test,mx20.multi.test,20",
        "--mx-host=multi.test,mx10b.multi.test,10",
        "--host-record=mx10a.multi.test,127.0.0.11",
        "--host-record=mx10b.multi.test,127.0.0.12,::1",
        "--host-record=mx20.multi.test,127.0.0.20",
        "--host-record=mx30.multi.test,127.0.0.30",
        // No MX: the A record is the implicit MX.
        "--host-record=nomx.test,127.0.0.40",
        // RFC 7505 null MX.
        "--mx-host=nullmx.test,.,0",
        "--host-record=nullmx.test,127.0.0.50",
        // An MX whose host has no address (under test: NXDOMAIN), next to a good one.
        "--mx-host=halfbroken.test,gone.halfbroken.test,5",
        "--mx-host=halfbroken.test,ok.halfbroken.test,10",
        "--host-record=ok.halfbroken.test,127.0.0.60",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    Dns::start(dir.path(), &records)
}

#[tokio::test]
async fn mx_hosts_in_preference_order_with_addresses() {
    if !have_client("dnsmasq") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dns = start(&dir);
    let resolver = Resolver::new(Some(vec![dns.addr])).unwrap();

    let mut first_seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let hosts = resolver
            .route("multi.test")
            .await
            .expect("route multi.test");
        let prefs: Vec<u16> = hosts.iter().map(|h| h.preference).collect();
        assert_eq!(prefs, [10, 10, 20, 30], "{hosts:?}");
        assert_eq!(hosts[2].name, "mx20.multi.test");
        assert_eq!(hosts[2].addrs, [ip("127.0.0.20")]);
        assert_eq!(hosts[3].name, "mx30.multi.test");
        let b = hosts.iter().find(|h| h.name == "mx10b.multi.test").unwrap();
        assert_eq!(b.addrs, [ip("127.0.0.12"), ip("::1")], "A and AAAA");
        first_seen.insert(hosts[0].name.clone());
    }
    // Equal preferences are shuffled: both preference-10 hosts came first at some point
    // (each time a fresh order; failing by chance has probability 2^-19).
    assert_eq!(first_seen.len(), 2, "{first_seen:?}");

    // An MX host without an address is left out; the others remain.
    let hosts = resolver.route("halfbroken.test").await.unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].name, "ok.halfbroken.test");
}

#[tokio::test]
async fn no_mx_means_the_domain_itself() {
    if !have_client("dnsmasq") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dns = start(&dir);
    let resolver = Resolver::new(Some(vec![dns.addr])).unwrap();
    let hosts = resolver.route("nomx.test").await.unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].name, "nomx.test");
    assert_eq!(hosts[0].preference, 0);
    assert_eq!(hosts[0].addrs, [ip("127.0.0.40")]);
    // A trailing dot is the same domain.
    assert_eq!(resolver.route("nomx.test.").await.unwrap(), hosts);
}

#[tokio::test]
async fn nxdomain_and_null_mx_are_permanent_refusal_is_temporary() {
    if !have_client("dnsmasq") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dns = start(&dir);
    let resolver = Resolver::new(Some(vec![dns.addr])).unwrap();

    match resolver.route("nosuchdomain.test").await {
        Err(RouteError::Permanent { status, message }) => {
            assert_eq!(status, "5.1.2");
            assert!(message.contains("nosuchdomain.test"), "{message}");
        }
        other => panic!("NXDOMAIN gave {other:?}"),
    }
    match resolver.route("nullmx.test").await {
        Err(RouteError::Permanent { status, .. }) => assert_eq!(status, "5.1.10"),
        other => panic!("null MX gave {other:?}"),
    }
    // dnsmasq without upstream servers answers REFUSED outside its local zone: a DNS
    // failure, which must not bounce mail.
    match resolver.route("example.org").await {
        Err(RouteError::Temporary(message)) => assert!(!message.is_empty()),
        other => panic!("REFUSED gave {other:?}"),
    }

    // deliver() turns them into per-recipient results without connecting anywhere.
    let config = ClientConfig::new("client.test");
    let envelope = Envelope {
        mail_from: "a@client.test".into(),
        recipients: vec![
            Recipient::new("x@nullmx.test"),
            Recipient::new("y@nullmx.test"),
        ],
        ..Envelope::default()
    };
    let results = deliver(
        &resolver,
        &config,
        "nullmx.test",
        &envelope,
        b"Subject: x\r\n\r\nx\r\n",
    )
    .await;
    assert_eq!(results.len(), 2);
    for (r, addr) in results.iter().zip(["x@nullmx.test", "y@nullmx.test"]) {
        assert_eq!(r.address, addr);
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.status, "5.1.10");
        assert_eq!(r.remote_mta, None);
    }
    let results = deliver(&resolver, &config, "example.org", &envelope, b"x\r\n").await;
    assert!(
        results
            .iter()
            .all(|r| r.outcome == Outcome::Deferred && r.status == "4.4.3"),
        "{results:?}"
    );
}
