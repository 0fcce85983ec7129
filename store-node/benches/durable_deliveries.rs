//! Durable deliveries per second into the store, with 1, 10 and 50 concurrent senders, for
//! group commit (`fdatasync` per file, one shared fsync per directory per batch) and for one
//! fsync of file and directory per write (object_store `with_fsync`).
//! Every delivery counted here returned only after its message was on stable storage.
//!
//! Run: `cargo bench -p mailroot-store --bench durable_deliveries` (MAILROOT_BENCH_MESSAGES
//! sets the number of deliveries per run, default 300). Compare the ratios within one run:
//! absolute numbers depend on the disk and on what else the machine is doing.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mailroot_store::objects::{Durability, Objects};
use mailroot_store::store::Store;

const GUID: &str = "5f0c1a52-7a39-4f7e-9d2b-0a4c4d2e8b11";

async fn run(durability: Durability, senders: usize, total: usize) -> (f64, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let objects =
        Objects::open(dir.path().to_str().expect("utf-8 path"), durability).expect("open");
    let store = Store::open(objects.clone(), GUID, Duration::from_secs(30))
        .await
        .expect("store");
    store.add_domain("bench.test").await.expect("domain");
    store
        .add_mailbox("bench@bench.test", "pw")
        .await
        .expect("mailbox");
    let message =
        Bytes::from(format!("Subject: bench\r\n\r\n{}\r\n", "x".repeat(4000)).into_bytes());
    let syncs_before = objects.syncs();
    let start = Instant::now();
    let per_sender = total / senders;
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let store = store.clone();
            let message = message.clone();
            tokio::spawn(async move {
                for _ in 0..per_sender {
                    let id = uuid::Uuid::now_v7().to_string();
                    store
                        .deliver(&id, &["bench@bench.test".to_string()], message.clone())
                        .await
                        .expect("deliver");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("sender");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let delivered = (per_sender * senders) as f64;
    (delivered / elapsed, objects.syncs() - syncs_before)
}

fn main() {
    let total: usize = std::env::var("MAILROOT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("durable deliveries/s, {total} deliveries of ~4 KB per run, one mailbox");
    println!(
        "{:>8} {:>16} {:>10} {:>16} {:>8}",
        "senders", "group-commit/s", "dir-fsyncs", "fsync-per-write/s", "ratio"
    );
    for senders in [1, 10, 50] {
        let (group, syncs) = rt.block_on(run(Durability::GroupCommit, senders, total));
        let (per_write, _) = rt.block_on(run(Durability::PerWrite, senders, total));
        println!(
            "{senders:>8} {group:>16.0} {syncs:>10} {per_write:>16.0} {:>8.2}",
            group / per_write
        );
    }
}
