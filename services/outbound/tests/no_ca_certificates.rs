//! The resolver starts on a machine without any CA certificates (the front-end's image is
//! FROM scratch): DNS is asked over UDP/TCP and never needs them. rustls-native-certs reads
//! SSL_CERT_FILE / SSL_CERT_DIR instead of the system's store when they are set, so pointing
//! them at nothing stands in for such a machine (this test is its own process).

#[test]
fn the_resolver_needs_no_ca_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let nothing = dir.path().join("none");
    // SAFETY: set before any other thread of this test process reads the environment.
    unsafe {
        std::env::set_var("SSL_CERT_FILE", &nothing);
        std::env::set_var("SSL_CERT_DIR", &nothing);
    }
    let addr: std::net::SocketAddr = "127.0.0.1:53".parse().unwrap();
    for servers in [None, Some(vec![addr])] {
        if let Err(e) = mailroot_outbound::Resolver::new(servers) {
            panic!("the resolver wants CA certificates: {e}");
        }
    }
}
