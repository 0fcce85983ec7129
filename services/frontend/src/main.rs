use std::time::Duration;

use clap::Parser;
use mailroot_frontend::{FrontendConfig, Handshake, Node, Service, StoreClient};

fn fail(code: i32, msg: String) -> ! {
    eprintln!("mailroot-frontend: {msg}");
    std::process::exit(code)
}

async fn bind(flag: &str, addr: &str) -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| fail(2, format!("--{flag} {addr}: {e}")))
}

fn main() {
    mailroot_common::run(serve());
}

async fn serve() {
    let config = FrontendConfig::parse();
    if let Err(e) =
        mailroot_common::logging::init(config.log.log_format, &config.otlp, "mailroot-frontend")
    {
        fail(2, e);
    }
    if let Err(e) = config.validate() {
        fail(2, e);
    }
    // SIGTERM/Ctrl-C from here on: during start-up (the handshake with the store may take
    // its 10 s) it simply ends the process; once serving, it drains (`drain.rs`).
    let mut stop = std::pin::pin!(mailroot_common::stop_signal());
    let cluster_tls = config.cluster_tls.files().unwrap_or_else(|e| fail(2, e));
    let store = StoreClient::new(&config.store.url, &config.auth_guid, cluster_tls)
        .unwrap_or_else(|e| fail(2, format!("--store {}: {e}", config.store)));
    let handshake = mailroot_frontend::handshake(&store, &config.hostname, Duration::from_secs(10));
    let handshake = tokio::select! {
        signal = &mut stop => {
            tracing::info!(%signal, "stopped during start-up");
            return;
        }
        handshake = handshake => handshake,
    };
    match handshake {
        Handshake::Ok { store_id } => tracing::info!(%store_id, "joined the store"),
        Handshake::Refused(detail) if detail.contains("GUID") => {
            tracing::error!(store = %config.store, "auth GUID mismatch");
            fail(
                1,
                format!(
                    "auth GUID mismatch: the store at {} refused this node's --auth-guid ({detail}); refusing to start",
                    config.store
                ),
            )
        }
        Handshake::Refused(detail) => {
            tracing::error!(store = %config.store, %detail, "refused by the store");
            fail(
                1,
                format!(
                    "the store at {} refused this node: {detail}; refusing to start",
                    config.store
                ),
            )
        }
        Handshake::Unreachable(detail) => tracing::warn!(
            store = %config.store, %detail,
            "store unreachable; starting anyway, clients get try-later answers until it is back"
        ),
    }
    let tls = mailroot_frontend::tls::Certificates::load(
        config.tls_cert.as_deref(),
        config.tls_key.as_deref(),
        &config.hostname,
    )
    .unwrap_or_else(|e| fail(2, e.to_string()));
    let mut listeners = vec![
        (Service::Pop3, bind("pop3", &config.pop3).await),
        (Service::Smtp, bind("smtp", &config.smtp).await),
    ];
    for (service, addr) in [
        (Service::Submission, &config.submission),
        (Service::Smtps, &config.smtps),
        (Service::Pop3s, &config.pop3s),
    ] {
        if let Some(addr) = addr {
            listeners.push((service, bind(service.name(), addr).await));
        }
    }
    let metrics = match &config.metrics.addr {
        Some(addr) => Some(bind("metrics", addr).await),
        None => None,
    };
    let addresses: Vec<_> = listeners
        .iter()
        .filter_map(|(service, l)| Some((*service, l.local_addr().ok()?)))
        .collect();
    tls.watch();
    let node = Node::new(config, store, tls, &addresses);
    let shutdown = async {
        let signal = stop.await;
        tracing::info!(%signal, "shutting down");
    };
    let result = mailroot_frontend::run(node, listeners, metrics, shutdown).await;
    // The spans of the last sessions: exported before the process ends.
    mailroot_common::tracing_otel::shutdown().await;
    if let Err(e) = result {
        fail(1, e.to_string());
    }
    tracing::info!("stopped");
}
