//! PROXY protocol v2 (HAProxy's spec, section 2.2): behind a load balancer the TCP peer is the
//! balancer, and the real client address arrives in a binary header before any protocol byte.
//! The header is required from, and only accepted from, the networks named by
//! `--proxy-protocol-from`; everyone else is a direct client whose peer address is the truth
//! (so nobody can forge a client address by sending a header of their own).

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use ppp::v2::{Addresses, Command, Header};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The 12-byte v2 signature.
const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// How long a balancer may take to send the header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest header we accept (addresses plus generous TLVs).
const MAX_HEADER: usize = 16 + 1024;

/// Parses `--proxy-protocol-from`: comma-separated CIDRs or plain addresses.
/// A comma-separated list of CIDRs or addresses; the error names `flag`.
pub fn parse_networks(flag: &str, text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("--{flag}: {s:?} is not an address or CIDR"))
        })
        .collect()
}

pub fn expected_from(networks: &[IpNet], peer: &SocketAddr) -> bool {
    networks.iter().any(|n| n.contains(&peer.ip()))
}

/// Reads exactly one PROXY v2 header from `stream` and returns the client address it names
/// (`peer` itself for a LOCAL command, e.g. a balancer's health check).
pub async fn read_header(stream: &mut TcpStream, peer: SocketAddr) -> std::io::Result<SocketAddr> {
    let bad = |what: &str| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("PROXY v2: {what}"))
    };
    let mut fixed = [0u8; 16];
    tokio::time::timeout(HEADER_TIMEOUT, stream.read_exact(&mut fixed))
        .await
        .map_err(|_| bad("timed out"))??;
    if &fixed[..12] != SIGNATURE {
        return Err(bad("missing signature"));
    }
    let len = u16::from_be_bytes([fixed[14], fixed[15]]) as usize;
    if 16 + len > MAX_HEADER {
        return Err(bad("header too long"));
    }
    let mut header = fixed.to_vec();
    header.resize(16 + len, 0);
    tokio::time::timeout(HEADER_TIMEOUT, stream.read_exact(&mut header[16..]))
        .await
        .map_err(|_| bad("timed out"))??;
    let parsed = Header::try_from(header.as_slice()).map_err(|e| bad(&e.to_string()))?;
    if parsed.command == Command::Local {
        return Ok(peer);
    }
    match parsed.addresses {
        Addresses::IPv4(a) => Ok(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::IPv6(a) => Ok(SocketAddr::from((a.source_address, a.source_port))),
        _ => Ok(peer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = parse_networks("x", "172.28.0.0/16, 10.0.0.1").unwrap();
        assert!(expected_from(&n, &"172.28.3.4:1".parse().unwrap()));
        assert!(expected_from(&n, &"10.0.0.1:1".parse().unwrap()));
        assert!(!expected_from(&n, &"10.0.0.2:1".parse().unwrap()));
        assert!(parse_networks("x", "nonsense").is_err());
    }

    #[tokio::test]
    async fn reads_the_client_address_and_leaves_the_rest() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let src: SocketAddr = "203.0.113.7:40000".parse().unwrap();
            let dst: SocketAddr = "198.51.100.1:25".parse().unwrap();
            let header = ppp::v2::Builder::with_addresses(
                ppp::v2::Version::Two | ppp::v2::Command::Proxy,
                ppp::v2::Protocol::Stream,
                (src, dst),
            )
            .build()
            .unwrap();
            s.write_all(&header).await.unwrap();
            s.write_all(b"EHLO x\r\n").await.unwrap();
            s
        });
        let (mut stream, peer) = listener.accept().await.unwrap();
        let _client = client.await.unwrap();
        let real = read_header(&mut stream, peer).await.unwrap();
        assert_eq!(real, "203.0.113.7:40000".parse::<SocketAddr>().unwrap());
        let mut rest = [0u8; 8];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"EHLO x\r\n");
    }
}
