//! Fetching the next batch: wait briefly for permits so that one read
//! fetches many, then reclaim stale messages or read new ones, alternating
//! so that neither starves the other.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::ConsumerOptions;
use crate::error::Result;
use crate::queue::{Delivered, Queue, Receive};

/// The longest the loop waits for handlers to free permits before a read.
const BATCH_WAIT: Duration = Duration::from_millis(1);

/// While reclaiming, and reads find nothing new, claim this many batches per
/// read: reclaiming goes at nearly the speed of reading, and a message sent
/// meanwhile waits a few batches at most. A read that finds messages makes
/// the loop alternate, one claim per read.
const RECLAIMS_PER_IDLE_READ: u32 = 8;

/// Where the loop stands between reclaiming and reading.
pub(super) struct Fetch {
    /// When to look for stale messages next (now, while a reclaim finds
    /// some).
    next_claim: Instant,
    claims_since_read: u32,
    claims_per_read: u32,
    /// Claim alone a message whose delivery count reaches this (see
    /// [`super::leases::isolate_from`]).
    alone_from: u64,
}

impl Fetch {
    pub(super) fn new(alone_from: u64) -> Self {
        Self {
            next_claim: Instant::now(),
            claims_since_read: 0,
            claims_per_read: 1,
            alone_from,
        }
    }

    /// The next batch, for the permit in hand and those free. A read in
    /// progress must not be cancelled: what it delivers is the loop's and
    /// must be handled or left pending.
    pub(super) async fn next<T: Delivered>(
        &mut self,
        queue: &Queue,
        opts: &ConsumerOptions,
        permits: &Arc<Semaphore>,
    ) -> Result<Vec<T>> {
        // Read in batches, not a message at a time: with handlers in flight
        // and few permits free, give them a moment (at most BATCH_WAIT) to
        // free half the permits, so one read fetches many. Without this,
        // fast handlers freeing permits one by one made every read (a round
        // trip, and on Redis a MULTI/EXEC) fetch one or two messages.
        let half = opts.concurrency / 2;
        if permits.available_permits() + 1 < half {
            let more = (half - 1) as u32;
            if let Ok(Ok(p)) = tokio::time::timeout(BATCH_WAIT, permits.acquire_many(more)).await {
                drop(p);
            }
        }
        // The permit the caller holds, and the free ones.
        let free = permits.available_permits() + 1;
        let mut msgs = Vec::new();
        // Reclaim a batch at a time while there is something to claim, with
        // a read between batches (see RECLAIMS_PER_IDLE_READ) so that new
        // messages keep flowing during a long reclaim.
        if Instant::now() >= self.next_claim && self.claims_since_read < self.claims_per_read {
            msgs = queue
                .claim_stale_decoded::<T>(
                    &opts.name,
                    opts.visibility_timeout,
                    free,
                    self.alone_from,
                )
                .await?;
            if msgs.is_empty() {
                self.next_claim = Instant::now() + opts.claim_interval;
            } else {
                self.claims_since_read += 1;
            }
        }
        if msgs.is_empty() {
            let reclaiming = Instant::now() >= self.next_claim;
            let recv = Receive::new().count(free).consumer(opts.name.clone());
            // Mid-reclaim the read must not wait: the next batch is ready.
            let recv = if reclaiming {
                recv
            } else {
                let wait = opts
                    .poll
                    .min(self.next_claim.saturating_duration_since(Instant::now()));
                recv.block(wait.max(Duration::from_millis(1)))
            };
            msgs = queue.receive_decoded::<T>(&recv).await?;
            if reclaiming {
                self.claims_per_read = if msgs.is_empty() {
                    RECLAIMS_PER_IDLE_READ
                } else {
                    1
                };
            }
            self.claims_since_read = 0;
        }
        Ok(msgs)
    }
}
