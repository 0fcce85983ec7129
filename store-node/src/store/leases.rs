//! The maildrop lease table: RFC 1939 §8 exclusive access for the whole cluster, with fencing.
//!
//! # Epochs are fencing tokens
//! Every grant gets an epoch from one counter that only grows, also across store restarts.
//! A session renews, releases and commits *with the epoch it was granted*, and the table
//! accepts it only while its entry still carries that epoch. So:
//! - `mailbox unlock-session` removes the entry: the old holder's next renewal finds no entry
//!   with its epoch and the lease is lost for good (it does not take the maildrop back);
//! - a session whose renewals failed for a while can take its lease back only if nobody was
//!   granted the maildrop meanwhile (its entry is still there, expired); once another session
//!   came, even if it has left again, the epoch differs;
//! - after a store restart the table is empty: every old session is fenced, whatever it holds,
//!   and a new login gets an epoch larger than any granted before.
//!
//! The counter survives restarts without a write per login: the store persists a *high-water
//! mark* (`leases/epoch`), EPOCH_BLOCK epochs ahead of the last one handed out, before it hands
//! out any of them; at start-up it continues above the persisted mark. A crash only skips
//! epochs, it can never reuse one.
//!
//! # Commit is atomic with the check
//! `commit` checks the epoch and marks the maildrop *committing* in one critical section. Until
//! its deletions are durable, no new session is granted the maildrop (even if the lease is
//! broken or expires meanwhile), so a new session never lists a message that is being deleted.

use serde::{Deserialize, Serialize};

use crate::objects;

use super::*;

/// Epochs reserved by one durable write of the high-water mark.
pub const EPOCH_BLOCK: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub(super) struct Lease {
    pub(super) session: String,
    pub(super) node: String,
    pub(super) epoch: u64,
    pub(super) granted: Instant,
    pub(super) expires: Instant,
}

/// The epoch counter: handed out from memory, below a persisted high-water mark.
#[derive(Debug, Default)]
pub(super) struct Epochs {
    block: Mutex<EpochBlock>,
    /// Serialises the (rare) durable moves of the high-water mark.
    refill: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct EpochBlock {
    next: u64,
    /// The persisted high-water mark: epochs up to it may be handed out.
    limit: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct EpochRecord {
    reserved_upto: u64,
}

impl Epochs {
    /// Start-up: continues above the persisted mark, after persisting a new one.
    pub(super) async fn load(objects: &Objects) -> Result<Epochs> {
        let path = objects::lease_epoch_path();
        let start = match objects.get(&path).await {
            Ok(bytes) => {
                serde_json::from_slice::<EpochRecord>(&bytes)
                    .map_err(|e| StoreError::Corrupt {
                        path: path.to_string(),
                        detail: e.to_string(),
                    })?
                    .reserved_upto
            }
            Err(StoreError::Storage(object_store::Error::NotFound { .. })) => 0,
            Err(e) => return Err(e),
        };
        let limit = start + EPOCH_BLOCK;
        write_mark(objects, limit).await?;
        Ok(Epochs {
            block: Mutex::new(EpochBlock {
                next: start + 1,
                limit,
            }),
            refill: tokio::sync::Mutex::new(()),
        })
    }

    fn block(&self) -> MutexGuard<'_, EpochBlock> {
        self.block.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Option<u64> {
        let mut b = self.block();
        (b.next <= b.limit).then(|| {
            b.next += 1;
            b.next - 1
        })
    }

    async fn next(&self, objects: &Objects) -> Result<u64> {
        loop {
            if let Some(epoch) = self.take() {
                return Ok(epoch);
            }
            let _refill = self.refill.lock().await;
            let limit = {
                let b = self.block();
                if b.next <= b.limit {
                    continue;
                }
                b.limit + EPOCH_BLOCK
            };
            write_mark(objects, limit).await?;
            self.block().limit = limit;
        }
    }
}

async fn write_mark(objects: &Objects, reserved_upto: u64) -> Result<()> {
    let json = serde_json::to_vec(&EpochRecord { reserved_upto })
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    objects
        .put(&objects::lease_epoch_path(), Bytes::from(json))
        .await
}

impl State {
    pub(super) fn lease_holder(&self, addr: &Address, now: Instant) -> Option<&Lease> {
        self.leases.get(addr).filter(|l| l.expires > now)
    }

    /// The entry of `addr` if it carries `epoch` (expired or not).
    fn lease_with(&mut self, addr: &Address, epoch: u64) -> Result<&mut Lease> {
        self.leases
            .get_mut(addr)
            .filter(|l| l.epoch == epoch)
            .ok_or_else(|| StoreError::LeaseLost(addr.to_string()))
    }
}

impl State {
    /// Grants the maildrop of `addr` to `session` under `epoch` unless another live session,
    /// or a commit in progress, holds it.
    pub(super) fn grant(
        &mut self,
        addr: &Address,
        session: &str,
        node: &str,
        epoch: u64,
        ttl: Duration,
    ) -> Result<()> {
        let now = Instant::now();
        let busy = self.committing.contains(addr)
            || self
                .lease_holder(addr, now)
                .is_some_and(|holder| holder.session != session);
        if busy {
            metrics::counter!(crate::metrics::LEASE_CONFLICTS).increment(1);
            return Err(StoreError::InUse(addr.to_string()));
        }
        self.leases.insert(
            addr.clone(),
            Lease {
                session: session.to_string(),
                node: node.to_string(),
                epoch,
                granted: now,
                expires: now + ttl,
            },
        );
        Ok(())
    }
}

impl Store {
    /// A new epoch for a grant (see the module doc).
    pub(super) async fn next_epoch(&self) -> Result<u64> {
        self.inner.epochs.next(&self.inner.objects).await
    }

    /// Extends the lease granted under `epoch`. An expired lease that nobody took since is
    /// taken again; a lease broken by an administrator, granted to another session since, or
    /// from before a store restart is lost for good.
    pub fn renew(&self, mailbox: &str, epoch: u64) -> Result<()> {
        let addr = Address::parse(mailbox)?;
        let ttl = self.inner.lease_ttl;
        let mut state = self.state();
        state.lease_with(&addr, epoch)?.expires = Instant::now() + ttl;
        Ok(())
    }

    /// Gives the lease back (end of a session); a lease already lost is not an error.
    pub fn close(&self, mailbox: &str, epoch: u64) -> Result<()> {
        let addr = Address::parse(mailbox)?;
        let mut state = self.state();
        if state.lease_with(&addr, epoch).is_ok() {
            state.leases.remove(&addr);
        }
        Ok(())
    }

    /// The fence of `commit`: the epoch is still the holder's, and the maildrop is marked
    /// committing in the same critical section (see the module doc). The returned guard ends
    /// the committing state when dropped.
    pub(super) fn begin_commit(&self, addr: &Address, epoch: u64) -> Result<Committing> {
        let ttl = self.inner.lease_ttl;
        let mut state = self.state();
        let lease = state.lease_with(addr, epoch).inspect_err(|_| {
            metrics::counter!(crate::metrics::FENCED_COMMITS).increment(1);
        })?;
        lease.expires = Instant::now() + ttl;
        state.committing.insert(addr.clone());
        Ok(Committing {
            inner: self.inner.clone(),
            addr: addr.clone(),
        })
    }

    /// `mailrootctl mailbox unlock-session`: frees a maildrop held by a (possibly dead)
    /// session; the old holder cannot renew it back.
    pub fn break_session(&self, raw: &str) -> Result<bool> {
        let addr = Address::parse(raw)?;
        let mut state = self.state();
        let targets = state
            .targets(&addr)
            .ok_or_else(|| StoreError::UnknownMailbox(addr.to_string()))?;
        let mut broke = false;
        for t in targets {
            broke |= state.leases.remove(&t).is_some();
        }
        Ok(broke)
    }
}

/// A maildrop whose deletions are being made durable (see [`Store::begin_commit`]).
pub(super) struct Committing {
    inner: Arc<Inner>,
    addr: Address,
}

impl Committing {
    /// Marks nothing itself: the caller inserted `addr` into `committing` under the state
    /// lock, after checking that no session holds it (`retention.rs`).
    pub(super) fn new(inner: &Arc<Inner>, addr: Address) -> Committing {
        Committing {
            inner: inner.clone(),
            addr,
        }
    }

    pub(super) fn addr(&self) -> &Address {
        &self.addr
    }
}

impl Drop for Committing {
    fn drop(&mut self) {
        lock_state(&self.inner).committing.remove(&self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a() -> Address {
        Address::parse("a@example.test").unwrap()
    }

    const TTL: Duration = Duration::from_secs(30);

    #[test]
    fn only_the_current_epoch_renews_and_a_commit_in_flight_blocks_new_grants() {
        let mut state = State::default();
        state.grant(&a(), "s1", "n", 1, TTL).unwrap();
        assert!(state.lease_with(&a(), 1).is_ok());
        assert!(matches!(
            state.grant(&a(), "s2", "n", 2, TTL),
            Err(StoreError::InUse(_))
        ));
        // Broken by an administrator: epoch 1 is gone for good.
        state.leases.remove(&a());
        assert!(matches!(
            state.lease_with(&a(), 1),
            Err(StoreError::LeaseLost(_))
        ));
        state.grant(&a(), "s2", "n", 2, TTL).unwrap();
        assert!(matches!(
            state.lease_with(&a(), 1),
            Err(StoreError::LeaseLost(_))
        ));
        // While a commit's deletions are in flight nobody is granted the maildrop, even with
        // the lease broken.
        state.committing.insert(a());
        state.leases.remove(&a());
        assert!(matches!(
            state.grant(&a(), "s3", "n", 3, TTL),
            Err(StoreError::InUse(_))
        ));
        state.committing.remove(&a());
        state.grant(&a(), "s3", "n", 3, TTL).unwrap();
    }

    #[tokio::test]
    async fn epochs_grow_across_restarts_and_block_refills() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::open(
            dir.path().to_str().unwrap(),
            crate::objects::Durability::GroupCommit,
        )
        .unwrap();
        let first = Epochs::load(&objects).await.unwrap();
        let e1 = first.next(&objects).await.unwrap();
        // Exhaust the block: the next epoch needs a durable move of the mark.
        let limit = first.block().limit;
        first.block().next = limit + 1;
        let e2 = first.next(&objects).await.unwrap();
        assert!(e2 > e1);
        // A restart continues above everything handed out, without reuse.
        let second = Epochs::load(&objects).await.unwrap();
        let e3 = second.next(&objects).await.unwrap();
        assert!(e3 > e2, "{e3} > {e2}");
    }
}
