//! Stopping: the loop has stopped fetching; let the handlers in flight
//! finish up to the deadline, hand back what is still running, and let the
//! acker write the last acknowledgements.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::Settle;
use crate::engine::EntryId;

/// The loop's background tasks.
pub(super) struct Tasks {
    pub(super) acker: JoinHandle<()>,
    pub(super) extender: JoinHandle<()>,
}

/// Wait for the handlers in flight (each holds a permit) up to the shutdown
/// timeout. Messages whose handlers are still running then are released at
/// once, so another consumer retries them without waiting for the
/// visibility timeout.
pub(super) async fn drain(settle: Arc<Settle>, permits: &Semaphore, tasks: Tasks) {
    let opts = settle.opts.clone();
    let drained = tokio::time::timeout(
        opts.shutdown_timeout,
        permits.acquire_many(opts.concurrency as u32),
    )
    .await;
    tasks.extender.abort();
    if drained.is_err() {
        let left: Vec<EntryId> = Settle::lock(&settle.in_flight).iter().copied().collect();
        tracing::warn!(n = left.len(), "handlers still running at the shutdown deadline; their messages stay pending for another consumer");
        let _ = settle
            .queue
            .release(&opts.name, &left, Duration::ZERO, opts.visibility_timeout)
            .await;
    }
    drop(settle);
    // The acker ends once every sender is gone. Handlers abandoned at the
    // deadline still hold one: then only give it a moment to flush.
    let flush = if drained.is_ok() {
        Duration::from_secs(5)
    } else {
        Duration::from_millis(500)
    };
    let _ = tokio::time::timeout(flush, tasks.acker).await;
}
