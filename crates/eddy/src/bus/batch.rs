//! Group commit for publishes: `Bus::publish` calls that overlap share one
//! engine call.
//!
//! A publish is queued to the bus's batcher task, which takes everything
//! queued so far (up to [`MAX_BATCH`]) as one [`Engine::publish_many`]: on
//! Redis one script call fans out the whole batch, looking each route set
//! up and checking each key once, instead of one call with a dozen Redis
//! commands per event. Nothing waits to fill a batch: a lone publish goes
//! out at once, alone, so latency at low rates is a channel hop more than
//! before; batches form only while earlier calls are in flight
//! ([`IN_FLIGHT`] at a time), which is exactly when there is load.
//!
//! Each event's result is its own. A batch fails as a whole only when
//! none of it happened: on a wrong-type key (which may concern one event
//! only) the events are published again one by one, each getting its own
//! answer; on any other error (unreachable, timeout, out of memory, ...)
//! every event of the batch gets that error, as each would have alone.
//!
//! [`Engine::publish_many`]: crate::engine::Engine::publish_many

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::engine::{Publish, SharedEngine};
use crate::error::{Error, ErrorKind, Result};

/// The most events one engine call carries (about 25 KB of 200-byte
/// events: well under what a script call should take at once).
pub(super) const MAX_BATCH: usize = 128;

/// Engine calls in flight at once: while one runs on the server, the next
/// batch forms and is already on its way.
pub(super) const IN_FLIGHT: usize = 2;

struct Job {
    publish: Publish,
    reply: oneshot::Sender<Result<Vec<String>>>,
}

/// The sending side; the task stops when every clone of the bus is gone.
#[derive(Debug)]
pub(super) struct Batcher {
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl Batcher {
    /// Start the batcher task on the current tokio runtime; `None` outside
    /// one (the bus then publishes each event with its own call).
    pub(super) fn start(engine: SharedEngine) -> Option<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (jobs, queued) = mpsc::unbounded_channel();
        runtime.spawn(run(engine, queued));
        Some(Self { jobs })
    }

    /// Publish through the batcher (or directly if its task is gone).
    pub(super) async fn publish(
        &self,
        engine: &SharedEngine,
        publish: Publish,
    ) -> Result<Vec<String>> {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = self.jobs.send(Job { publish, reply }) {
            // The task ended with its runtime: nothing was queued.
            return engine.publish(&job.publish).await;
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Timeout,
                "the publishing task stopped (its runtime shut down) before the engine answered: the event may or may not have been published",
            ))
        })
    }
}

async fn run(engine: SharedEngine, mut queued: mpsc::UnboundedReceiver<Job>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        // A permit first, so that jobs gather while calls are in flight.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        if queued.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return;
        }
        let batch = std::mem::replace(&mut jobs, Vec::with_capacity(MAX_BATCH));
        let engine = engine.clone();
        tokio::spawn(async move {
            settle(&engine, batch).await;
            drop(permit);
        });
    }
}

async fn settle(engine: &SharedEngine, jobs: Vec<Job>) {
    if jobs.len() == 1 {
        for job in jobs {
            let _ = job.reply.send(engine.publish(&job.publish).await);
        }
        return;
    }
    let (publishes, replies): (Vec<Publish>, Vec<_>) =
        jobs.into_iter().map(|j| (j.publish, j.reply)).unzip();
    match engine.publish_many(&publishes).await {
        Ok(members) if members.len() == publishes.len() => {
            for (reply, m) in replies.into_iter().zip(members) {
                let _ = reply.send(Ok(m));
            }
        }
        Ok(members) => {
            let e = Error::new(
                ErrorKind::Backend,
                format!(
                    "the engine answered a batch of {} publishes with {} results: the events may or may not have been published",
                    publishes.len(),
                    members.len()
                ),
            );
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) if e.kind() == ErrorKind::WrongType => {
            // Nothing happened; which events the bad key concerns, only
            // publishing them one by one tells.
            for (p, reply) in publishes.iter().zip(replies) {
                let _ = reply.send(engine.publish(p).await);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
