//! Settling a handled message: acknowledge it, retry it later, or
//! dead-letter it (rejected, out of deliveries, or never finished).

use std::time::Duration;

use super::{Backoff, ConsumerStats, Settle};
use crate::engine::EntryId;
use crate::error::Result;
use crate::handler::Fail;
use crate::queue::Message;

/// The most last errors remembered at once (for dead-letter records).
const MAX_REMEMBERED_ERRORS: usize = 10_000;

/// What settling needs of a message once its handler has consumed it.
#[derive(Clone, Copy)]
pub(super) struct Handled {
    pub(super) id: EntryId,
    pub(super) delivery_count: u64,
}

/// How long to wait before retry number `attempt`: the handler's choice,
/// else the backoff.
pub(crate) fn retry_delay(after: Option<Duration>, backoff: &Backoff, attempt: u64) -> Duration {
    after.unwrap_or_else(|| backoff.delay(attempt))
}

/// The dead-letter reason of a message whose last allowed delivery failed.
pub(crate) fn out_of_deliveries(delivery_count: u64, max_deliveries: u64, error: &str) -> String {
    format!(
        "failed {delivery_count} deliveries (max_deliveries {max_deliveries}); last error: {error}"
    )
}

impl Settle {
    /// Settle a message by its handler's result.
    pub(super) async fn settle(&self, msg: Handled, result: Result<(), Fail>) {
        let id = msg.id;
        let (after, error) = match result {
            Ok(()) => return self.ack(id),
            Err(Fail::Reject { reason }) => {
                tracing::info!(%id, %reason, "rejected; dead-lettering");
                if self.dead_letter_id(id, reason).await {
                    ConsumerStats::bump(&self.stats.rejected);
                }
                return;
            }
            Err(Fail::Retry { error, after }) => (
                retry_delay(after, &self.opts.backoff, msg.delivery_count),
                error,
            ),
        };
        if msg.delivery_count >= self.opts.max_deliveries {
            let reason = out_of_deliveries(msg.delivery_count, self.opts.max_deliveries, &error);
            self.dead_letter_id(id, reason).await;
            return;
        }
        {
            let mut errs = Self::lock(&self.last_error);
            if errs.len() < MAX_REMEMBERED_ERRORS {
                errs.insert(id, error.clone());
            }
        }
        tracing::debug!(%id, attempt = msg.delivery_count, ?after, %error, "retrying later");
        // However long `after` is: past the visibility timeout, the engine
        // parks the message until it is due, its delivery count kept.
        let released = self
            .queue
            .release(&self.opts.name, &[id], after, self.opts.visibility_timeout)
            .await;
        match released {
            Ok(_) => ConsumerStats::bump(&self.stats.retried),
            Err(e) => {
                ConsumerStats::bump(&self.stats.errors);
                tracing::warn!(%id, error = %e, "release failed; the message is retried after the visibility timeout");
            }
        }
    }

    /// The dead-letter reason of a message delivered more than the maximum
    /// times: its last handler error if this process saw one, else the
    /// likely cause.
    pub(super) fn over_max_reason(&self, id: EntryId, delivery_count: u64) -> String {
        let last = Self::lock(&self.last_error).get(&id).cloned();
        format!(
            "delivered {} times (max_deliveries {}); last error: {}",
            delivery_count,
            self.opts.max_deliveries,
            last.unwrap_or_else(|| {
                "none recorded: the handler never finished (its process died or it hung)".into()
            })
        )
    }

    /// Dead-letter a message in hand (its bytes are written as they are).
    pub(super) async fn dead_letter(&self, msg: Message, reason: String) {
        let id = msg.id;
        let moved = self.queue.dead_letter_messages(&[msg], &reason).await;
        self.dead_lettered(id, moved);
    }

    /// Dead-letter a message the handler consumed, by id: the engine reads
    /// it back (one more round trip, on the failure path only) so the hot
    /// path never clones a message for the case it fails.
    /// Returns whether it moved.
    pub(super) async fn dead_letter_id(&self, id: EntryId, reason: String) -> bool {
        let moved = self.queue.dead_letter(&[id], &reason).await;
        self.dead_lettered(id, moved)
    }

    fn dead_lettered(&self, id: EntryId, moved: Result<u64>) -> bool {
        Self::lock(&self.last_error).remove(&id);
        match moved {
            Ok(0) => {
                tracing::debug!(%id, "not dead-lettered: no longer in the queue");
                false
            }
            Ok(_) => {
                ConsumerStats::bump(&self.stats.dead_lettered);
                true
            }
            Err(e) => {
                // Still pending: it will be reclaimed and dead-lettered again.
                ConsumerStats::bump(&self.stats.errors);
                tracing::warn!(%id, error = %e, "dead-lettering failed; the message stays pending");
                false
            }
        }
    }
}
