//! The mailroot store node: the one owner of every mailbox in the cluster.
//!
//! # Layout
//! - `config.rs`   — command-line/env configuration (`StoreConfig`), validated at start-up.
//! - `names.rs`    — name rules for domains, mailboxes and addresses.
//! - `objects/`    — the object layout on `object_store` and the fsync/crash-safety rules
//!   (`local.rs`: the local directory write protocol).
//! - `group_commit.rs` — batched directory fsyncs and the sticky failure after a failed sync.
//! - `faults.rs`   — fault injection around the object store (tests only).
//! - `password.rs` — Argon2id hashing keyed with the cluster auth GUID.
//! - `auth.rs`     — bounded Argon2id work and the cache of verified credentials.
//! - `directory/`  — directory (LDAP) authentication for domains bound to AD or OpenLDAP:
//!   the LDAP conversation and the short cache of its answers.
//! - `store/`      — the in-memory index over the objects and every store operation, one
//!   module per responsibility (see `store/mod.rs`).
//! - `settings.rs` — cluster-wide settings (greeting, require-secure-auth, log level, the
//!   outbound queue's schedule and limit) and their push (with the DKIM keys).
//! - `nodes.rs`    — the live front-ends (`mailrootctl nodes`), listed by their settings streams.
//! - `throttle.rs` — cluster-wide brute-force throttling of logins.
//! - `grpc/`       — the gRPC services and the auth GUID / admin token checks (`admin.rs`:
//!   the administration service; `import.rs`: its import and export streams).
//! - `error.rs`    — `StoreError` and its single mapping to gRPC statuses.
//! - `metrics.rs`  — metric names and descriptions, and the `/readyz` check (the endpoints
//!   themselves are `mailroot_common::telemetry`).
//!
//! Front-ends hold no mail state; everything they show a client comes from here.

pub mod auth;
pub mod config;
pub mod directory;
pub mod error;
pub mod faults;
pub mod group_commit;
pub mod grpc;
pub mod metrics;
pub mod names;
pub mod nodes;
pub mod objects;
pub mod password;
pub mod settings;
pub mod store;
pub mod throttle;

use std::future::Future;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

pub use config::StoreConfig;
pub use error::StoreError;

/// HTTP/2 pings towards idle-looking front-end connections, and how long a ping may go
/// unanswered before the connection is closed.
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
pub const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// After the stop signal, how long calls in progress may take before the store exits anyway.
/// Front-ends stop first (compose stops dependents first); a connection that is not closed
/// by then (a client gone without a FIN, a proxy holding an idle connection) must not hold
/// the process until Docker's SIGKILL. A delivery cut here was never answered 250: its sender
/// retries, and a copy already linked is found again through its UIDL.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens the data directory, rebuilds the index and serves gRPC on `listener` until `shutdown`.
/// With `metrics` (the `--metrics` listener), `/metrics`, `/healthz` and `/readyz` are served
/// from the start: `/readyz` says 503 until the index is loaded, and again after a failed sync.
///
/// The port serves from the start: while the index loads (seconds at a million messages, cold),
/// calls are answered "unavailable, starting" — 451 / -ERR [SYS/TEMP] at the front-ends, which
/// retry — instead of queueing silently. `MAILROOT_READY` is printed once the index is loaded.
///
/// Shutdown is graceful: the listener closes at once, calls in progress finish, and the
/// never-ending `WatchSettings` streams are ended (tonic waits for every stream of a
/// connection before it closes it, so an open stream would hold the process forever).
pub async fn run(
    config: StoreConfig,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let loaded = grpc::Loaded::default();
    let metrics_addr = match metrics {
        Some(l) => {
            let ready = crate::metrics::readiness(loaded.clone());
            let addr = mailroot_common::telemetry::start(l, crate::metrics::BUCKETS, ready)
                .map_err(anyhow::Error::msg)?;
            crate::metrics::describe();
            Some(addr)
        }
        None => None,
    };
    let objects = objects::Objects::open(&config.data, objects::Durability::GroupCommit)?;
    let load = tokio::spawn({
        let loaded = loaded.clone();
        let guid = config.auth_guid.clone();
        let options = store::Options {
            lease_ttl: config.lease_ttl(),
            login_delay: std::time::Duration::from_millis(config.login_delay_ms),
            auth_cache_ttl: std::time::Duration::from_secs(config.auth_cache_ttl),
            directory_cache_ttl: std::time::Duration::from_secs(config.directory_cache_ttl),
            queue_claim_ttl: std::time::Duration::from_secs_f64(config.queue_claim_ttl),
            outbound_limit_window: std::time::Duration::from_secs(config.outbound_limit_window),
        };
        async move {
            let started = std::time::Instant::now();
            let store = store::Store::open_with(objects, &guid, options).await?;
            loaded.set(store);
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                "index loaded: serving"
            );
            Ok::<_, StoreError>(())
        }
    });
    let store_id = uuid::Uuid::now_v7().to_string();
    let stopping = tokio_util::sync::CancellationToken::new();
    let (front, admin) = grpc::services(
        loaded,
        config.auth_guid.clone(),
        config.admin_token.clone(),
        store_id,
        config.mutual_tls(),
        stopping.clone(),
    );
    let addr = listener.local_addr()?;
    tracing::info!(%addr, metrics = ?metrics_addr, data = %config.data, "store node listening; loading the index");
    // Up to 1 MiB of one delivery in flight per stream, 32 MiB over all of a front-end's
    // concurrent deliveries, before flow control makes senders wait.
    let mut server = tonic::transport::Server::builder()
        .initial_stream_window_size(1024 * 1024)
        .initial_connection_window_size(32 * 1024 * 1024)
        // A front-end that vanished without a FIN/RST (host gone, network cut) is noticed
        // within interval + timeout and its connection, with its settings stream, dropped.
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    if let Some(pem) = config.cluster_tls.read().map_err(anyhow::Error::msg)? {
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(pem.cert, pem.key))
            .client_ca_root(tonic::transport::Certificate::from_pem(pem.ca));
        server = server.tls_config(tls)?;
        tracing::info!("gRPC with mutual TLS: front-end and admin certificates required");
    } else if config.insecure_plaintext {
        tracing::warn!(listen = %config.listen, "INSECURE: plaintext gRPC off loopback (--insecure-plaintext); the admin token and passwords cross the network in clear");
    }
    // Replies are written in several small writes (headers, data, trailers): without
    // TCP_NODELAY, Nagle's algorithm holds the later ones until the front-end's delayed ACK
    // (~40 ms per RETR on loopback).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let stopping_seen = stopping.clone();
    let serve = server
        .add_service(front)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            stopping.cancel();
        });
    tokio::pin!(serve);
    tokio::select! {
        served = &mut serve => return Ok(served?),
        load = load => load??,
    }
    // Machine-readable readiness line for scripts and the test harness (stdout).
    let mut ready = format!("MAILROOT_READY store={addr}");
    if let Some(m) = metrics_addr {
        ready.push_str(&format!(" metrics={m}"));
    }
    println!("{ready}");
    let grace = async {
        stopping_seen.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = serve => served?,
        () = grace => tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "connections still open after the stop signal: exiting without them"
        ),
    }
    Ok(())
}
