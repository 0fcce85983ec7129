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
/// - `MAILROOT_ENV_FILE`: a file of `MAILROOT_*=value` lines (the `cluster.env` that
///   `mailrootctl cluster init` writes: auth GUID, admin token) read into the environment,
///   where a variable is not set already, so a container reads its secrets from a volume;
///   an unreadable file ends the process (exit 2).
pub fn run<F: Future<Output = ()>>(main: F) {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread starts.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 512 * 1024) };
    // SAFETY: no other thread exists yet (the runtime starts below).
    unsafe { load_env_file() };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().max_blocking_threads(64);
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        runtime.worker_threads((cores / 2).max(1));
    }
    runtime.build().expect("tokio runtime").block_on(main);
}

/// Reads `MAILROOT_ENV_FILE` (see [`run`]) into the environment; exits (2) when the file is
/// unreadable or malformed.
///
/// # Safety
/// Sets environment variables: call it before any other thread starts.
pub unsafe fn load_env_file() {
    if let Some(path) = std::env::var_os("MAILROOT_ENV_FILE") {
        let vars = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| env_file_vars(&text));
        match vars {
            Ok(vars) => {
                for (key, value) in vars {
                    if std::env::var_os(&key).is_none() {
                        // SAFETY: the caller guarantees that no other thread runs.
                        unsafe { std::env::set_var(key, value) };
                    }
                }
            }
            Err(e) => {
                eprintln!("MAILROOT_ENV_FILE {}: {e}", path.to_string_lossy());
                std::process::exit(2);
            }
        }
    }
}

/// `KEY=value` lines of a `MAILROOT_ENV_FILE`; blank lines and `#` comments are skipped, and
/// only `MAILROOT_` variables are allowed (no quoting: the value is the rest of the line).
pub fn env_file_vars(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((key, value))
                if key.starts_with("MAILROOT_")
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
            {
                vars.push((key.to_string(), value.to_string()));
            }
            _ => return Err(format!("line {}: not a MAILROOT_NAME=value line", n + 1)),
        }
    }
    Ok(vars)
}

/// This machine's host name (gethostname(2)); in a container, the container's own.
pub fn system_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the result is NUL-terminated when it fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&buf[..end]).ok()?;
    (!name.is_empty()).then(|| name.to_string())
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

#[cfg(test)]
mod tests {
    #[test]
    fn env_file_lines() {
        let vars =
            super::env_file_vars("# cluster\nMAILROOT_AUTH_GUID=abc\n\nMAILROOT_ADMIN_TOKEN=x=y\n")
                .unwrap();
        assert_eq!(
            vars,
            vec![
                ("MAILROOT_AUTH_GUID".to_string(), "abc".to_string()),
                ("MAILROOT_ADMIN_TOKEN".to_string(), "x=y".to_string())
            ]
        );
        assert!(
            super::env_file_vars("PATH=/bin\n")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(super::env_file_vars("MAILROOT_X\n").is_err());
    }

    #[test]
    fn system_hostname_is_the_kernels() {
        let name = super::system_hostname().expect("gethostname");
        let proc = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(name, proc.trim());
    }
}
