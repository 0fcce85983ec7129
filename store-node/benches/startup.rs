//! Store start-up time: how long `Store::open` takes to rebuild the index from the objects,
//! at 100k and 1M messages in 50 mailboxes (issue 10 asks for at most 10 s at 1M). The
//! messages are written straight into the local layout (`objects.rs`) to make the data set
//! quickly; then the page cache is dropped when the machine allows it (root:
//! /proc/sys/vm/drop_caches), so the first open is a cold start, and a second open is timed
//! warm.
//!
//! Run: `cargo bench -p mailroot-store --bench startup` (MAILROOT_BENCH_STARTUP lists the
//! sizes, default "100000,1000000"; MAILROOT_BENCH_DIR the parent of the data directory, on
//! the disk to measure; each size needs about 4 KiB of disk per message).

use std::io::Write;
use std::time::{Duration, Instant};

use mailroot_store::objects::{Durability, Objects};
use mailroot_store::store::Store;

const GUID: &str = "5f0c1a52-7a39-4f7e-9d2b-0a4c4d2e8b11";
const MAILBOXES: usize = 50;

fn drop_caches() -> bool {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/vm/drop_caches")
        .and_then(|mut f| f.write_all(b"3\n"))
        .is_ok()
}

async fn open(dir: &std::path::Path) -> (Duration, Store) {
    let start = Instant::now();
    let objects = Objects::open(dir.to_str().expect("utf-8"), Durability::GroupCommit).unwrap();
    let store = Store::open(objects, GUID, Duration::from_secs(30))
        .await
        .expect("open");
    (start.elapsed(), store)
}

async fn run(total: usize, parent: &std::path::Path) {
    let dir = tempfile::tempdir_in(parent).expect("temp dir");
    {
        let (_, store) = open(dir.path()).await;
        store.add_domain("bench.test").await.unwrap();
        for i in 0..MAILBOXES {
            store
                .add_mailbox(&format!("user{i}@bench.test"), "pw")
                .await
                .unwrap();
        }
    }
    let made = Instant::now();
    let body = format!("Subject: startup\r\n\r\n{}\r\n", "x".repeat(180));
    for i in 0..MAILBOXES {
        let messages = dir
            .path()
            .join("mailboxes/bench.test")
            .join(format!("user{i}"))
            .join("messages");
        std::fs::create_dir_all(&messages).unwrap();
        for _ in 0..total / MAILBOXES {
            std::fs::write(messages.join(uuid::Uuid::now_v7().to_string()), &body).unwrap();
        }
    }
    eprintln!(
        "  made {total} messages in {:.1} s",
        made.elapsed().as_secs_f64()
    );
    let cold = drop_caches();
    let (first, store) = open(dir.path()).await;
    let count: u64 = store.stat(None).unwrap().iter().map(|s| s.messages).sum();
    assert_eq!(count as usize, total / MAILBOXES * MAILBOXES);
    drop(store);
    let (second, _) = open(dir.path()).await;
    println!(
        "startup {total:>8} messages / {MAILBOXES} mailboxes: {} {:.2} s, warm {:.2} s",
        if cold {
            "cold"
        } else {
            "first (cache not dropped: not root)"
        },
        first.as_secs_f64(),
        second.as_secs_f64()
    );
}

fn main() {
    let sizes = std::env::var("MAILROOT_BENCH_STARTUP").unwrap_or("100000,1000000".into());
    let parent =
        std::env::var("MAILROOT_BENCH_DIR").unwrap_or(std::env::temp_dir().display().to_string());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for size in sizes.split(',') {
        let total: usize = size.trim().parse().expect("a number of messages");
        rt.block_on(run(total, std::path::Path::new(&parent)));
    }
}
