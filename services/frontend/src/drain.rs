//! Graceful stop of a front-end (SIGTERM from `docker stop`, or Ctrl-C).
//!
//! The order, and why:
//! 1. The listeners close (`lib.rs`, `run`): new connections are refused by the kernel, so a
//!    load balancer's health check fails at once and clients go to another node.
//! 2. Sessions in progress go on (a DATA transfer, a RETR, a POP3 client reading its mail)
//!    until they end by themselves or `--drain-timeout` passes.
//! 3. At the deadline, [`Drain::deadline`] is cancelled: every session waiting for client
//!    input says `421 4.3.2` (SMTP) or `-ERR [SYS/TEMP]` (POP3) and closes. A POP3 session
//!    releases its maildrop lease and commits nothing (RFC 1939 §6: no UPDATE state without
//!    QUIT). A session busy with the store finishes that call first, then says goodbye.
//! 4. Sessions that still have not ended after [`CLOSE_GRACE`] (a client that does not read
//!    its goodbye) are dropped with the runtime; a POP3 lease among them expires by its TTL.
//!
//! The default drain timeout plus `CLOSE_GRACE` stays below Docker's 10 s stop timeout, so a
//! `docker stop` never ends in SIGKILL.
//!
//! This module owns the set of connection tasks and the deadline; it must not know the
//! protocols (the sessions own their goodbye texts).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// After the deadline, how long sessions get to send their goodbye and release their leases.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The node's connection tasks and the drain deadline they watch.
#[derive(Default)]
pub struct Drain {
    sessions: TaskTracker,
    deadline: CancellationToken,
}

impl Drain {
    /// Runs one client connection as a task the drain waits for.
    pub fn spawn<F>(&self, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.sessions.spawn(connection);
    }

    /// Cancelled when the drain deadline has passed: sessions must say goodbye and close.
    pub fn deadline(&self) -> &CancellationToken {
        &self.deadline
    }

    /// Connections still open.
    pub fn open(&self) -> usize {
        self.sessions.len()
    }

    /// Steps 2 to 4 above; call once the listeners are closed. Returns when every session has
    /// ended, or after the deadline and `CLOSE_GRACE`.
    pub async fn finish(&self, timeout: Duration) {
        self.sessions.close();
        if self.sessions.is_empty() {
            return;
        }
        tracing::info!(
            sessions = self.open(),
            ?timeout,
            "draining: new connections refused, sessions in progress may finish"
        );
        if tokio::time::timeout(timeout, self.sessions.wait())
            .await
            .is_ok()
        {
            tracing::info!("drained: every session has ended");
            return;
        }
        tracing::info!(
            sessions = self.open(),
            "drain deadline: closing the sessions still open"
        );
        self.deadline.cancel();
        if tokio::time::timeout(CLOSE_GRACE, self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                sessions = self.open(),
                "sessions did not close in time and are dropped; their POP3 leases expire by TTL"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn sessions_that_end_by_themselves_end_the_drain_early() {
        let drain = Drain::default();
        drain.spawn(tokio::time::sleep(Duration::from_millis(50)));
        let started = Instant::now();
        drain.finish(Duration::from_secs(30)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!drain.deadline().is_cancelled());
        assert_eq!(drain.open(), 0);
    }

    #[tokio::test]
    async fn idle_sessions_are_stopped_at_the_deadline() {
        let drain = Drain::default();
        let deadline = drain.deadline().clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        drain.spawn(async move {
            // An idle session: waits for input that never comes, or the deadline.
            deadline.cancelled().await;
            let _ = tx.send("goodbye");
        });
        let started = Instant::now();
        drain.finish(Duration::from_millis(200)).await;
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < CLOSE_GRACE);
        assert_eq!(rx.await, Ok("goodbye"));
    }

    #[tokio::test]
    async fn no_sessions_no_wait() {
        let drain = Drain::default();
        let started = Instant::now();
        drain.finish(Duration::from_secs(30)).await;
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
