use clap::Parser;
use mailroot_store::StoreConfig;
use tracing_subscriber::EnvFilter;

/// glibc keeps freed large blocks (Argon2id's 19 MiB, message bodies) in per-thread arenas
/// and raises its mmap threshold after each one: a fixed threshold sends them back to the OS.
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread starts.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 512 * 1024) };
}

fn main() {
    tune_allocator();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // File I/O and hashing run on blocking threads; bound them (each may hold buffers).
        .max_blocking_threads(64)
        .build()
        .expect("tokio runtime")
        .block_on(serve());
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
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = mailroot_store::run(config, listener, shutdown).await {
        eprintln!("mailroot-store: {e:#}");
        std::process::exit(1);
    }
}
