//! The acker: one task that acknowledges what the handlers finished, in
//! batches (whatever has accumulated goes in one XACK), so that a handler
//! never waits for its acknowledgement's round trip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::janitor::Janitor;
use super::{ConsumerStats, Settle};
use crate::engine::EntryId;
use crate::queue::Queue;

/// What the acker is asked to do.
pub(super) enum AckRequest {
    /// Acknowledge this message (with whatever else has accumulated).
    Ack(EntryId),
    /// Acknowledge these messages (handled inline, a batch at a time).
    Many(Vec<EntryId>),
    /// Acknowledge everything received so far, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Acknowledge in batches: whatever has accumulated goes in one XACK.
/// Between batches, the janitor's trims and sweeps when they are due.
/// Ends once every sender is gone.
pub(super) async fn ack_batches(
    queue: Queue,
    mut rx: mpsc::UnboundedReceiver<AckRequest>,
    stats: Arc<ConsumerStats>,
    done: Arc<AtomicU64>,
    mut janitor: Janitor,
) {
    let mut requests = Vec::with_capacity(512);
    let mut ids = Vec::with_capacity(512);
    let mut flushed = Vec::new();
    // One timer for the janitor, moved only when its next turn changes,
    // rather than a timer registered and dropped with every batch.
    let mut armed = janitor.due();
    let timer = tokio::time::sleep_until(armed.unwrap_or_else(far_future));
    tokio::pin!(timer);
    loop {
        let due = janitor.due();
        if due != armed {
            timer.as_mut().reset(due.unwrap_or_else(far_future));
            armed = due;
        }
        let got = tokio::select! {
            biased;
            n = rx.recv_many(&mut requests, 512) => n,
            () = &mut timer, if due.is_some() => {
                janitor.run(&stats).await;
                continue;
            }
        };
        if got == 0 {
            break;
        }
        for r in requests.drain(..) {
            match r {
                AckRequest::Ack(id) => ids.push(id),
                AckRequest::Many(many) => ids.extend(many),
                AckRequest::Flush(done) => flushed.push(done),
            }
        }
        if !ids.is_empty() {
            ack_with_retries(&queue, &ids, &stats).await;
            done.fetch_add(ids.len() as u64, Ordering::Relaxed);
            ids.clear();
            janitor.acked();
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
        if janitor.is_due() {
            janitor.run(&stats).await;
        }
    }
}

/// A deadline that never comes, for a timer with nothing to wait for.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

async fn ack_with_retries(queue: &Queue, ids: &[EntryId], stats: &ConsumerStats) {
    let mut pause = Duration::from_millis(50);
    for attempt in 1..=5 {
        match queue.ack(ids).await {
            Ok(_) => {
                stats.acked.fetch_add(ids.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                ConsumerStats::bump(&stats.errors);
                tracing::warn!(error = %e, attempt, n = ids.len(), "ack failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
}

impl Settle {
    /// Hand `id` to the acker.
    pub(super) fn ack(&self, id: EntryId) {
        {
            let mut errors = Self::lock(&self.last_error);
            if !errors.is_empty() {
                errors.remove(&id);
            }
        }
        self.acks_handed.fetch_add(1, Ordering::Relaxed);
        // A lost ack means a redelivery, never a loss.
        if self.acks.send(AckRequest::Ack(id)).is_err() {
            tracing::warn!(%id, "acker stopped; the message will be redelivered");
        }
    }

    /// [`Settle::ack`] for the messages a read's handlers finished inline:
    /// one request to the acker and one lock of each map for the lot,
    /// rather than per message. Empties `ids`.
    pub(super) fn ack_inline(&self, ids: &mut Vec<EntryId>) {
        if ids.is_empty() {
            return;
        }
        {
            let mut errors = Self::lock(&self.last_error);
            if !errors.is_empty() {
                for id in ids.iter() {
                    errors.remove(id);
                }
            }
        }
        {
            let mut in_flight = Self::lock(&self.in_flight);
            for id in ids.iter() {
                in_flight.remove(id);
            }
        }
        let n = ids.len();
        self.acks_handed.fetch_add(n as u64, Ordering::Relaxed);
        // A lost ack means a redelivery, never a loss.
        if self
            .acks
            .send(AckRequest::Many(std::mem::take(ids)))
            .is_err()
        {
            tracing::warn!(n, "acker stopped; the messages will be redelivered");
        }
    }

    /// Wait until every acknowledgement handed to the acker so far is
    /// written.
    pub(super) async fn flush_acks(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.acks.send(AckRequest::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Let the acker run if it is more than a few reads behind.
    ///
    /// A loop that always finds work never waits: on the embedded engine
    /// every await of the loop is ready at once, so the tasks it wakes (its
    /// acker above all) wait until tokio's budget forces it to yield, on
    /// its worker while the other sleeps, and the acker falls far behind
    /// (acknowledging thousands of messages late, which holds back anything
    /// that waits for them). Not after every read: where the acker keeps up
    /// (on Redis) that yield only costs.
    pub(super) async fn let_acker_catch_up(&self) {
        let behind = self
            .acks_handed
            .load(Ordering::Relaxed)
            .saturating_sub(self.acks_done.load(Ordering::Relaxed));
        if behind > 4 * self.opts.concurrency as u64 {
            tokio::task::yield_now().await;
        }
    }
}
