//! Leases: keeping them while handlers work, and running alone the
//! reclaimed messages whose earlier leases ran out more than once (their
//! handler may be what killed the processes that held them).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{ConsumerStats, Settle};
use crate::engine::EntryId;

/// The delivery count from which a reclaimed message is claimed and run
/// alone. A message that kills its process takes the others in flight with
/// it, and each such crash raises their delivery counts: by one when it
/// crashes on a read's batch, by one more when its first reclaim (in a
/// batch) crashes again. From the next reclaim on it runs alone, so a
/// bystander ends at delivery count 3 at most; with `max_deliveries` below
/// 3, at the count that is its last chance.
pub(super) fn isolate_from(max_deliveries: u64) -> u64 {
    max_deliveries.clamp(2, 3)
}

/// Every third of the visibility timeout, extend the leases of every
/// message still being handled.
pub(super) async fn extend_leases(settle: Arc<Settle>) {
    let every = (settle.opts.visibility_timeout / 3).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let ids: Vec<EntryId> = Settle::lock(&settle.in_flight).iter().copied().collect();
        if ids.is_empty() {
            continue;
        }
        if let Err(e) = settle.queue.extend(&settle.opts.name, &ids).await {
            ConsumerStats::bump(&settle.stats.errors);
            tracing::warn!(error = %e, n = ids.len(), "lease extension failed");
        }
    }
}

impl Settle {
    /// Whether message `id`, at `delivery_count`, is to run alone:
    /// redelivered more than once, and not by this process's own retries
    /// (no recorded error), so its handler may be what crashed the
    /// processes before. (It was claimed alone too.) A first redelivery runs
    /// in its batch: if one of the batch kills the process, the others come
    /// back once more, then alone.
    pub(super) fn is_suspect(&self, id: EntryId, delivery_count: u64, alone_from: u64) -> bool {
        delivery_count >= alone_from && !Self::lock(&self.last_error).contains_key(&id)
    }

    /// Make room for a message to run alone: hand the acker what the batch
    /// finished so far (`acked_inline`), take every other permit (waiting
    /// for the handlers in flight to finish) and wait for their
    /// acknowledgements to be written, so that if it crashes again it takes
    /// nothing else down with it. The permits are held until it is done.
    pub(super) async fn isolate(
        &self,
        permits: &Arc<Semaphore>,
        acked_inline: &mut Vec<EntryId>,
    ) -> Option<OwnedSemaphorePermit> {
        self.ack_inline(acked_inline);
        let others = permits
            .clone()
            .acquire_many_owned(self.opts.concurrency.saturating_sub(1) as u32)
            .await
            .ok();
        self.flush_acks().await;
        others
    }
}
