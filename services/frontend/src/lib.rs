//! mailroot front-end node: speaks POP3 and SMTP to mail clients and gRPC to the store.
//! It holds NO mail state — it can be killed and started anywhere.
//!
//! # Layout
//! - `config.rs`       — `FrontendConfig` (flags + `MAILROOT_*` env) and the `DEFAULT_*`/timeouts.
//! - `store_client.rs` — gRPC client: auth GUID stamping, reconnects, `backon` retries.
//! - `replies.rs`      — the ONE table from store answers to POP3/SMTP verdicts.
//! - `smtp_conn.rs`    — drives `smtp::Session` (services/smtp) over a socket; trace headers.
//! - `dsn.rs`          — RFC 3464 delivery status notifications for partly failed deliveries.
//! - `pop3_conn.rs`    — drives `pop3::Session` (services/pop3) over a socket.
//! - `lib.rs`          — `Node` (shared per-process state) and the accept loops.

pub mod config;
pub mod dsn;
pub mod pop3_conn;
pub mod replies;
pub mod smtp_conn;
pub mod store_client;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

pub use config::FrontendConfig;
pub use store_client::StoreClient;

/// What every connection of this node shares.
pub struct Node {
    pub config: FrontendConfig,
    pub store: StoreClient,
}

impl Node {
    pub fn smtp_config(&self) -> smtp::Config {
        smtp::Config::new(self.config.hostname.clone())
    }

    pub fn pop3_config(&self) -> pop3::Config {
        pop3::Config::default()
    }
}

/// Result of the start-up handshake with the store.
pub enum Handshake {
    Ok { store_id: String },
    /// The store answered and refused our auth GUID: this node must not start.
    GuidMismatch(String),
    /// The store did not answer in time; the node starts and recovers once it is back.
    Unreachable(String),
}

/// Says hello to the store, retrying until `patience` runs out.
pub async fn handshake(store: &StoreClient, node_name: &str, patience: Duration) -> Handshake {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match store.hello_once(node_name).await {
            Ok(reply) => {
                return Handshake::Ok {
                    store_id: reply.store_id,
                };
            }
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                return Handshake::GuidMismatch(status.message().to_string());
            }
            Err(status) => {
                if tokio::time::Instant::now() >= deadline {
                    return Handshake::Unreachable(status.message().to_string());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Serves POP3 and SMTP on the given listeners until `shutdown` resolves.
pub async fn run(
    node: Arc<Node>,
    pop3: TcpListener,
    smtp: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    println!(
        "MAILROOT_READY pop3={} smtp={}",
        pop3.local_addr()?,
        smtp.local_addr()?
    );
    tracing::info!(pop3 = %pop3.local_addr()?, smtp = %smtp.local_addr()?, store = %node.config.store, "front-end listening");
    let pop3 = tokio::spawn(accept_loop(pop3, node.clone(), "pop3", |s, p, n| {
        Box::pin(pop3_conn::serve(s, p, n))
    }));
    let smtp = tokio::spawn(accept_loop(smtp, node, "smtp", |s, p, n| {
        Box::pin(smtp_conn::serve(s, p, n))
    }));
    shutdown.await;
    pop3.abort();
    smtp.abort();
    Ok(())
}

type ConnFuture = std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

async fn accept_loop(
    listener: TcpListener,
    node: Arc<Node>,
    protocol: &'static str,
    handler: fn(TcpStream, SocketAddr, Arc<Node>) -> ConnFuture,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%protocol, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(e) = handler(stream, peer, node).await {
                tracing::debug!(%protocol, %peer, error = %e, "connection ended with an error");
            }
        });
    }
}
