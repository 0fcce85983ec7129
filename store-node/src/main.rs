use clap::Parser;
use mailroot_store::StoreConfig;
use tracing_subscriber::EnvFilter;

fn main() {
    mailroot_common::run(serve());
}

async fn serve() {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let config = StoreConfig::parse();
    if let Err(e) = config.validate() {
        eprintln!("mailroot-store: {e}");
        std::process::exit(2);
    }
    let listener = match tokio::net::TcpListener::bind(&config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mailroot-store: --listen {}: {e}", config.listen);
            std::process::exit(2);
        }
    };
    let metrics = match &config.metrics.addr {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("mailroot-store: --metrics {addr}: {e}");
                std::process::exit(2);
            }
        },
    };
    let stop = mailroot_common::stop_signal();
    let shutdown = async {
        let signal = stop.await;
        tracing::info!(%signal, "shutting down: finishing the calls in progress");
    };
    if let Err(e) = mailroot_store::run(config, listener, metrics, shutdown).await {
        eprintln!("mailroot-store: {e:#}");
        std::process::exit(1);
    }
    tracing::info!("stopped");
}
