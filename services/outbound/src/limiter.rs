//! Per-destination concurrency: at most N connections to one destination domain (or relay
//! host) at once across this process, so that one front-end's delivery workers do not
//! hammer a single remote site (remote sites throttle or block senders that open many
//! connections at once).
//!
//! Owns one semaphore per destination while anyone holds or waits for it; the map entry is
//! removed when the last permit of a destination is dropped, so the map does not grow with
//! every domain ever delivered to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type Map = Arc<Mutex<HashMap<String, Arc<Semaphore>>>>;

/// Cheap to clone; clones share the limits.
#[derive(Debug, Clone)]
pub struct Limiter {
    per_destination: usize,
    map: Map,
}

/// A connection slot for one destination; released when dropped.
#[derive(Debug)]
pub struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    semaphore: Arc<Semaphore>,
    map: Map,
    destination: String,
}

fn lock(map: &Map) -> MutexGuard<'_, HashMap<String, Arc<Semaphore>>> {
    // The map stays consistent even if a holder panicked (every update is one insert or
    // remove), so a poisoned lock is used as it is.
    map.lock().unwrap_or_else(|p| p.into_inner())
}

impl Limiter {
    /// At most `per_destination` (at least 1) concurrent holders per destination.
    pub fn new(per_destination: usize) -> Limiter {
        Limiter {
            per_destination: per_destination.max(1),
            map: Arc::default(),
        }
    }

    /// Waits for a slot for `destination` (compared case-insensitively).
    pub async fn acquire(&self, destination: &str) -> Permit {
        let destination = destination.to_ascii_lowercase();
        let semaphore = lock(&self.map)
            .entry(destination.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_destination)))
            .clone();
        let permit = semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("a limiter semaphore is never closed");
        Permit {
            permit: Some(permit),
            semaphore,
            map: self.map.clone(),
            destination,
        }
    }

    /// How many destinations have holders or waiters now.
    pub fn destinations(&self) -> usize {
        lock(&self.map).len()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut map = lock(&self.map);
        // References: the map's and ours. More means another holder or waiter, who took
        // theirs under this same lock, so the count cannot grow behind our back.
        if Arc::strong_count(&self.semaphore) == 2 {
            map.remove(&self.destination);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn at_most_n_per_destination_and_entries_are_dropped() {
        let limiter = Limiter::new(2);
        let a1 = limiter.acquire("a.example").await;
        let a2 = limiter.acquire("A.example").await;
        // A third for the same destination waits; another destination does not.
        let third = tokio::time::timeout(Duration::from_millis(50), limiter.acquire("a.example"));
        assert!(third.await.is_err(), "a third permit was granted");
        let b = limiter.acquire("b.example").await;
        assert_eq!(limiter.destinations(), 2);

        let waiter = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire("a.example").await })
        };
        drop(a1);
        let a3 = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter got the released permit")
            .unwrap();
        drop((a2, a3, b));
        assert_eq!(limiter.destinations(), 0);
    }
}
