//! Issue 10, point 7: SIGTERM (`docker stop`) and Ctrl-C stop nodes gracefully, with the real
//! binaries. A front-end refuses new connections at once, lets sessions in progress finish
//! until `--drain-timeout`, then tells the ones still open 421 4.3.2 / -ERR [SYS/TEMP]; a POP3
//! session gives its maildrop lease back at once and commits nothing without QUIT; the process
//! exits 0. The store ends its settings streams and exits within seconds of its last client.

use std::time::{Duration, Instant};

use mailroot_tests::{SmtpClient, TestCluster, eventually};

#[test]
fn store_exits_within_seconds_of_sigterm_with_a_frontend_watching_settings() {
    let mut c = TestCluster::start(1);
    eventually(
        "the front-end's settings stream is open",
        Duration::from_secs(10),
        || {
            c.store
                .log_text()
                .contains("front-end watches settings")
                .then_some(())
        },
    );
    TestCluster::signal(&c.store, "TERM");
    let stopped = Instant::now();
    let status = c.store.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    eprintln!("store exited {:?} after SIGTERM", stopped.elapsed());

    // The front-end follows the store again once it is back: its settings stream reconnects.
    c.start_store();
    c.ctl_ok(&["config", "set", "greeting", "Back after a stop"], None);
    eventually(
        "the front-end has the new greeting",
        Duration::from_secs(10),
        || {
            let banner = SmtpClient::connect(c.fe(0).smtp).ok()?.banner;
            banner.contains("Back after a stop").then_some(())
        },
    );
}
