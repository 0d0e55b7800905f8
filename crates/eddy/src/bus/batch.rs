//! Group commit for publishes: `Bus::publish` calls that overlap share one
//! engine call.
//!
//! A publish joins the bus's queue of waiting publishes. A driver task,
//! started on the caller's runtime when there is none and ending when the
//! queue is empty, takes everything waiting (up to [`MAX_BATCH`]) as one
//! [`Engine::publish_many`]: on Redis one script call fans out the whole
//! batch, looking each route set up and checking each key once, instead of
//! one call with a dozen Redis commands per event. Nothing waits to fill a
//! batch: a lone publish goes out at once, alone; batches form only while
//! earlier calls are in flight ([`IN_FLIGHT`] at a time), which is when
//! there is load. The driver issues the calls in the order the publishes
//! arrived (each call is sent before the next batch is taken), so a task
//! that pipelines its publishes still sees them applied in order. (One
//! exception: a call that meets NOSCRIPT, because Redis lost its scripts to
//! a restart or SCRIPT FLUSH, is sent again behind the calls issued after
//! it; the engine loads the publish script when it connects, so this
//! cannot happen on first use.)
//!
//! Each event's result is its own. A batch fails as a whole only when none
//! of it happened: on a wrong-type key (which may concern one event only)
//! the events are published again one by one, each getting its own answer;
//! on any other error (unreachable, timeout, out of memory, ...) every
//! event of the batch gets that error, as each would have alone.
//!
//! On a Redis Cluster (a batcher made by [`Batcher::for_log`]) a batch is
//! one append of its events to the bus's `all` log, which the relays fan
//! out (see `relay.rs`), with one call in flight at a time: the cluster
//! client may reorder calls in flight together, and one task's publishes
//! must reach the log in the order it made them.
//!
//! Like any request handed to a server, a publish whose caller stops
//! waiting (a timeout around it) may still be published once its batch is
//! on its way.
//!
//! [`Engine::publish_many`]: crate::engine::Engine::publish_many

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::{FuturesUnordered, StreamExt};
use futures::Future;
use tokio::sync::{oneshot, Notify};

use crate::engine::{Append, Publish, QueueKeys, SharedEngine};
use crate::error::{Error, ErrorKind, Result};

/// The most events one engine call carries (about 25 KB of 200-byte
/// events: well under what a script call should take at once).
const MAX_BATCH: usize = 128;

/// Engine calls in flight at once: while one runs on the server, the next
/// batch forms and is already on its way.
const IN_FLIGHT: usize = 2;

struct Job {
    publish: Publish,
    reply: oneshot::Sender<Result<Vec<String>>>,
}

#[derive(Default)]
struct Waiting {
    jobs: Vec<Job>,
    /// Whether a driver task is running (it takes `jobs` until none are left).
    driving: bool,
}

/// The publishes of one bus waiting for their engine call.
#[derive(Default)]
pub(super) struct Batcher {
    waiting: Mutex<Waiting>,
    /// Wakes the driver when a publish arrives while its calls are in flight.
    arrived: Notify,
    /// On a cluster: the log a batch is appended to, instead of a fan-out.
    log: Option<Arc<QueueKeys>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl Batcher {
    /// A batcher that appends each batch to `log` (on a Redis Cluster).
    pub(super) fn for_log(log: Arc<QueueKeys>) -> Self {
        Self {
            log: Some(log),
            ..Self::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publish `publish` in the next batch.
    pub(super) async fn publish(
        self: &Arc<Self>,
        engine: &SharedEngine,
        publish: Publish,
    ) -> Result<Vec<String>> {
        // The driver is a tokio task; without a tokio runtime, publish alone.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return match &self.log {
                Some(log) => {
                    let (reply, answer) = oneshot::channel();
                    append_to_log(engine.clone(), log.clone(), vec![Job { publish, reply }]).await;
                    answer.await.unwrap_or_else(|_| {
                        Err(Error::new(ErrorKind::Backend, "the publish was dropped"))
                    })
                }
                None => engine.publish(&publish).await,
            };
        };
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut waiting = self.lock();
            waiting.jobs.push(Job { publish, reply });
            !std::mem::replace(&mut waiting.driving, true)
        };
        if start {
            runtime.spawn(drive(self.clone(), engine.clone()));
        } else {
            self.arrived.notify_one();
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Timeout,
                "the task publishing this event stopped (its runtime shut down) while the engine call was in flight: the event may or may not have been published",
            ))
        })
    }

    /// The next batch; if nothing waits and the driver is `idle`, its turn
    /// ends here, under the lock, so that the next publish starts a driver.
    fn next_batch(&self, idle: bool) -> Next {
        let mut waiting = self.lock();
        if waiting.jobs.is_empty() {
            if idle {
                waiting.driving = false;
                return Next::Done;
            }
            return Next::Nothing;
        }
        let n = waiting.jobs.len().min(MAX_BATCH);
        let rest = waiting.jobs.split_off(n);
        Next::Batch(std::mem::replace(&mut waiting.jobs, rest))
    }
}

enum Next {
    Batch(Vec<Job>),
    /// Nothing waits; calls are in flight.
    Nothing,
    /// Nothing waits, nothing is in flight: the driver's turn is over.
    Done,
}

/// Ends the driver's turn if its task is dropped mid-turn (its runtime shut
/// down): publishes still waiting were never sent, so they fail, and a
/// later publish starts a new driver.
struct Turn {
    batcher: Arc<Batcher>,
    over: bool,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.over {
            return;
        }
        let jobs = {
            let mut waiting = self.batcher.lock();
            waiting.driving = false;
            std::mem::take(&mut waiting.jobs)
        };
        for job in jobs {
            let _ = job.reply.send(Err(Error::new(
                ErrorKind::Unavailable,
                "not published: the task publishing this bus's events stopped (its runtime shut down) before sending it",
            )));
        }
    }
}

type Call = Pin<Box<dyn Future<Output = ()> + Send>>;

async fn drive(batcher: Arc<Batcher>, engine: SharedEngine) {
    let mut turn = Turn {
        batcher,
        over: false,
    };
    let batcher = turn.batcher.clone();
    let mut in_flight: FuturesUnordered<Call> = FuturesUnordered::new();
    let limit = if batcher.log.is_some() { 1 } else { IN_FLIGHT };
    loop {
        // Fill the free slots, one batch at a time, each call sent (polled
        // once) before the next batch is taken: calls go out in order.
        while in_flight.len() < limit {
            match batcher.next_batch(in_flight.is_empty()) {
                Next::Batch(batch) => {
                    let mut call: Call = match &batcher.log {
                        Some(log) => Box::pin(append_to_log(engine.clone(), log.clone(), batch)),
                        None => Box::pin(settle(engine.clone(), batch)),
                    };
                    if futures::poll!(call.as_mut()).is_pending() {
                        in_flight.push(call);
                    }
                }
                Next::Nothing => break,
                Next::Done => {
                    turn.over = true;
                    return;
                }
            }
        }
        tokio::select! {
            _ = in_flight.next() => {}
            _ = batcher.arrived.notified(), if in_flight.len() < limit => {}
        }
    }
}

async fn settle(engine: SharedEngine, jobs: Vec<Job>) {
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

/// On a cluster: one all-or-none append of the batch to the log, and each
/// event's subscribers at this moment (its route sets, each read once per
/// batch) as its result. A failure to read the routes does not fail a
/// publish that is in the log (a retry would publish it twice): that
/// event's list is empty.
async fn append_to_log(engine: SharedEngine, log: Arc<QueueKeys>, jobs: Vec<Job>) {
    let appends: Vec<Append> = jobs
        .iter()
        .map(|j| Append::new(log.clone(), j.publish.data.clone()))
        .collect();
    let mut route_keys: Vec<String> = jobs
        .iter()
        .flat_map(|j| j.publish.routes.iter().cloned())
        .collect();
    route_keys.sort();
    route_keys.dedup();
    let (appended, members) = futures::join!(
        engine.append(&appends),
        futures::future::join_all(route_keys.iter().map(|k| engine.members(k)))
    );
    if let Err(e) = appended {
        for job in jobs {
            let _ = job.reply.send(Err(e.clone()));
        }
        return;
    }
    let members: std::collections::HashMap<String, Vec<String>> = route_keys
        .into_iter()
        .zip(members)
        .map(|(k, m)| {
            (
                k,
                m.unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "published, but listing the subscribers failed");
                    Vec::new()
                }),
            )
        })
        .collect();
    for job in jobs {
        let mut to: Vec<String> = job
            .publish
            .routes
            .iter()
            .flat_map(|k| members.get(k).into_iter().flatten().cloned())
            .collect();
        to.sort();
        to.dedup();
        let _ = job.reply.send(Ok(to));
    }
}
