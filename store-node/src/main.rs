use clap::Parser;
use mailroot_store::StoreConfig;

fn main() {
    mailroot_common::run(serve());
}

async fn serve() {
    let config = StoreConfig::parse();
    if let Err(e) =
        mailroot_common::logging::init(config.log.log_format, &config.otlp, "mailroot-store")
    {
        eprintln!("mailroot-store: {e}");
        std::process::exit(2);
    }
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
    let result = mailroot_store::run(config, listener, metrics, shutdown).await;
    // The spans of the last calls: exported before the process ends.
    mailroot_common::tracing_otel::shutdown().await;
    if let Err(e) = result {
        eprintln!("mailroot-store: {e:#}");
        std::process::exit(1);
    }
    tracing::info!("stopped");
}
