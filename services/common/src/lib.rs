//! What every mailroot binary shares. Kept small on purpose: process set-up (allocator, async
//! runtime, stop signals), the flags every binary shares (`flags.rs`), logging with its live,
//! cluster-wide level (`logging.rs`), the metrics and health endpoints (`telemetry.rs`), traces
//! over OTLP (`tracing_otel.rs`) and the RFC 3464 delivery status notification builder
//! (`dsn.rs`, used by the store and the front-end); no protocol state machine and no storage
//! logic.

use std::future::Future;

pub mod dsn;
pub mod flags;
pub mod logging;
pub mod telemetry;
pub mod tracing_otel;

/// Runs `main` on the process's async runtime, after setting up the allocator.
///
/// - glibc keeps freed large blocks (Argon2id's 19 MiB, message bodies) in per-thread arenas
///   and raises its mmap threshold after each one; a fixed threshold sends them back to the OS,
///   so memory after a burst returns to what the process needs.
/// - Worker threads: half the cores (at least one). A request crosses several tasks (session,
///   gRPC client and server, storage); with fewer workers they meet on one thread instead of
///   waking each other across cores, which on a 2-core machine halves an RPC's latency.
///   `TOKIO_WORKER_THREADS` overrides.
/// - Blocking threads (file I/O, password hashing) are bounded: each may hold buffers.
pub fn run<F: Future<Output = ()>>(main: F) {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread starts.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 512 * 1024) };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().max_blocking_threads(64);
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        runtime.worker_threads((cores / 2).max(1));
    }
    runtime.build().expect("tokio runtime").block_on(main);
}

/// A future that resolves on the first SIGTERM or SIGINT (Ctrl-C), naming it.
///
/// In a `FROM scratch` image the binary is PID 1, and the kernel delivers no signal to PID 1
/// that has no handler: without this, `docker stop`'s SIGTERM is ignored and Docker SIGKILLs
/// after its stop timeout. The handlers are installed by this call, not at the first poll, so
/// a signal that arrives between start-up and the first poll is not lost (nor fatal). Must be
/// called inside the runtime.
pub fn stop_signal() -> impl Future<Output = &'static str> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let (Ok(mut term), Ok(mut int)) = (term, int) else {
            // Only when signal handling cannot be set up at all: run until killed.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}
