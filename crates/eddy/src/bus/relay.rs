//! The bus on a Redis Cluster: a durable publish log and a relay.
//!
//! On one server a publish is one script that appends the event to every
//! subscription queue and to the `all` log at once. On a cluster the
//! subscription queues live in different hash slots, so no script can
//! write them together. There a publish is one append to the `all` log
//! (`events:{all}`, one slot), and `publish` returns once that append is
//! confirmed: the event is then durable at the durability the operator
//! chose, and nothing of it is partial.
//!
//! Every [`Bus`](super::Bus) on a cluster runs a relay: one consumer of the
//! log's group (`all-group`, consumer `relay-…`). It reads the log, looks up
//! each event's routes (`routes:TYPE` and `routes:*`) when it relays, and
//! appends the event, byte for byte, to each subscription queue — one append
//! per queue per batch, every queue at once. Only when every append of a
//! batch is confirmed does it acknowledge the batch in the log; an append
//! that fails for a reason that may pass (a failover, a full queue) is tried
//! again with backoff until it succeeds. A relay that dies holding entries
//! leaves them pending; any other relay claims them after [`CLAIM_IDLE`] and
//! relays them again. So once `publish` returns Ok, every subscriber gets
//! the event as long as some bus runs, and a relay that dies half-way leaves
//! no partial fan-out forever, only copies: a copy keeps the event id, and
//! the service runtime drops it (`service/dedupe.rs`).
//!
//! What differs from one server, by design:
//! - Subscribers get the event a relay hop after `publish` returns (one
//!   blocking read and one append: about two round trips), not at once.
//! - The routes are read when the event is relayed: a service that
//!   unsubscribes between the publish and the relay does not get it, one
//!   that subscribes in between does. `Published::delivered_to` lists the
//!   subscribers at publish time.
//! - A route to a queue that was deleted is skipped (with a warning) at
//!   relay time; on one server the publish itself fails with
//!   `StreamMissing`.
//! - With several relays (several processes), each relays part of the log,
//!   so a subscriber may see two events published in quick succession in
//!   either order. One relay keeps the publish order.
//! - The log is trimmed like a queue's history (`Engine::trim`), which never
//!   removes an entry the relay has not acknowledged, instead of by age
//!   alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::engine::{Append, Entry, EntryId, QueueKeys, SharedEngine};
use crate::error::{ErrorKind, Result};
use crate::queue::Eddy;

/// Events relayed per read.
const BATCH: usize = 256;

/// How long a read waits for the next event before it looks for stranded
/// entries again.
const BLOCK: Duration = Duration::from_secs(2);

/// An entry a relay holds this long without acknowledging it belongs to a
/// relay that died (or is stuck): another relay takes it over.
pub const CLAIM_IDLE: Duration = Duration::from_secs(10);

/// How often a relay looks for stranded entries.
const CLAIM_EVERY: Duration = Duration::from_secs(5);

/// Relays that ended (each process's bus joins the log's group under a new
/// name) leave the group once they hold nothing and were idle this long;
/// every relay checks every [`FORGET_EVERY`].
const FORGET_IDLE: Duration = Duration::from_secs(3600);
const FORGET_EVERY: Duration = Duration::from_secs(600);

/// The longest pause between attempts after an error.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Keeps a bus's relay running; the relay stops when the last clone of the
/// bus (and so this guard) is dropped.
#[derive(Debug)]
pub(super) struct RelayGuard {
    _stop: watch::Sender<()>,
    /// False once the relay's task is gone (stopped, or its runtime shut
    /// down): a new bus then starts a relay of its own.
    alive: Arc<std::sync::atomic::AtomicBool>,
}

/// Clears the flag when the relay's future is dropped, however it ends.
struct Alive(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The relays this process runs, by engine URL and bus prefix: buses that
/// share both share one relay (one consumer is enough per process; more
/// would only compete for the same log).
static RUNNING: std::sync::Mutex<Vec<(String, String, std::sync::Weak<RelayGuard>)>> =
    std::sync::Mutex::new(Vec::new());

/// Starts the relay of the bus over `mq`, whose log is `log`, or joins the
/// one this process already runs for the same engine and prefix. `None`
/// when there is no tokio runtime to run it on (then another bus relays).
pub(super) fn start(mq: Eddy, log: Arc<QueueKeys>) -> Option<Arc<RelayGuard>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let (url, prefix) = (mq.engine().describe(), mq.prefix().to_owned());
    let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    running.retain(|(_, _, guard)| {
        guard
            .upgrade()
            .is_some_and(|g| g.alive.load(std::sync::atomic::Ordering::SeqCst))
    });
    if let Some(guard) = running
        .iter()
        .find(|(u, p, _)| *u == url && *p == prefix)
        .and_then(|(_, _, guard)| guard.upgrade())
        .filter(|guard| guard.alive.load(std::sync::atomic::Ordering::SeqCst))
    {
        return Some(guard);
    }
    let (stop, stopped) = watch::channel(());
    let relay = Relay {
        engine: mq.engine().clone(),
        consumer: format!("relay-{:016x}", rand::random::<u64>()),
        mq,
        log,
    };
    let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = Alive(alive.clone());
    runtime.spawn(async move {
        let _flag = flag;
        relay.run(stopped).await;
    });
    let guard = Arc::new(RelayGuard { _stop: stop, alive });
    running.push((url, prefix, Arc::downgrade(&guard)));
    Some(guard)
}

struct Relay {
    mq: Eddy,
    engine: SharedEngine,
    log: Arc<QueueKeys>,
    consumer: String,
}

impl Relay {
    async fn run(self, mut stopped: watch::Receiver<()>) {
        tracing::debug!(consumer = %self.consumer, "bus relay started");
        let mut next_claim = Instant::now();
        let mut next_forget = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            if Instant::now() >= next_forget {
                next_forget = Instant::now() + FORGET_EVERY;
                if let Err(e) = self.engine.forget_consumers(&self.log, FORGET_IDLE).await {
                    tracing::debug!(error = %e, "could not remove ended relays from the log's group");
                }
            }
            let claiming = Instant::now() >= next_claim;
            let batch = tokio::select! {
                _ = stopped.changed() => break,
                batch = self.next_batch(claiming) => batch,
            };
            if claiming {
                next_claim = Instant::now() + CLAIM_EVERY;
            }
            let entries = match batch {
                Ok(entries) => entries,
                Err(e) => {
                    // One failure is often the process shutting down (its
                    // connections close before this task is dropped) or a
                    // failover's first moment: warn from the second in a row.
                    if backoff > Duration::from_millis(50) {
                        tracing::warn!(error = %e, "the bus relay cannot read the publish log; retrying");
                    } else {
                        tracing::debug!(error = %e, "the bus relay could not read the publish log; retrying");
                    }
                    tokio::select! {
                        _ = stopped.changed() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            if entries.is_empty() {
                continue;
            }
            tokio::select! {
                _ = stopped.changed() => break,
                () = self.relay(entries) => {}
            }
        }
        tracing::debug!(consumer = %self.consumer, "bus relay stopped");
    }

    /// New entries, or (when `claiming`) entries other relays left pending.
    async fn next_batch(&self, claiming: bool) -> Result<Vec<Entry>> {
        if claiming {
            let claimed = self
                .engine
                .claim(&self.log, &self.consumer, CLAIM_IDLE, BATCH, u64::MAX)
                .await?;
            if !claimed.entries.is_empty() {
                tracing::info!(
                    entries = claimed.entries.len(),
                    "the bus relay took over events another relay left unrelayed"
                );
                return Ok(claimed.entries);
            }
        }
        self.engine
            .read(&self.log, &self.consumer, BATCH, Some(BLOCK))
            .await
    }

    /// Appends every entry to each of its subscribers' queues, retrying
    /// what fails until it is confirmed, then acknowledges them all.
    async fn relay(&self, entries: Vec<Entry>) {
        let ids: Vec<EntryId> = entries.iter().map(|e| e.id).collect();
        let mut pending = match self.targets(&entries).await {
            Ok(targets) => targets,
            Err(e) => {
                // Routes unreadable (a failover): leave the batch pending;
                // a claim brings it back.
                tracing::warn!(error = %e, "the bus relay cannot read the routes; the events stay in the log");
                return;
            }
        };
        let mut backoff = Duration::from_millis(50);
        while !pending.is_empty() {
            let results = futures::future::join_all(
                pending
                    .iter()
                    .map(|(_, appends)| self.engine.append(appends)),
            )
            .await;
            let mut failed = Vec::new();
            for ((service, appends), result) in pending.into_iter().zip(results) {
                match result {
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::QueueNotFound | ErrorKind::StreamMissing
                        ) =>
                    {
                        tracing::warn!(
                            service = %service,
                            events = appends.len(),
                            "a route names a subscription queue that does not exist; the events are not relayed to it"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(service = %service, error = %e, "relaying events failed; retrying");
                        failed.push((service, appends));
                    }
                }
            }
            pending = failed;
            if !pending.is_empty() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        if let Err(e) = self.engine.ack(&self.log, &ids).await {
            // The appends happened; a claim relays the batch again (copies
            // the services drop by event id).
            tracing::warn!(error = %e, "acknowledging relayed events failed; they will be relayed again");
        }
    }

    /// The appends for each subscription queue, entries in log order.
    async fn targets(&self, entries: &[Entry]) -> Result<Vec<(String, Vec<Append>)>> {
        let prefix = self.mq.prefix();
        let everything = self.engine.members(&format!("{prefix}routes:*")).await?;
        let mut by_type: HashMap<String, Vec<String>> = HashMap::new();
        let mut out: Vec<(String, Vec<Append>)> = Vec::new();
        // Per service: its queue's keys and its place in `out`.
        let mut queues: HashMap<String, (Arc<QueueKeys>, usize)> = HashMap::new();
        for entry in entries {
            let Some(data) = &entry.data else {
                tracing::warn!(id = %entry.id, "an entry of the publish log has no data; not relayed");
                continue;
            };
            let Some(event_type) = event_type(data) else {
                tracing::warn!(id = %entry.id, "an entry of the publish log has no event_type; not relayed");
                continue;
            };
            if !by_type.contains_key(&event_type) {
                let mut services = self
                    .engine
                    .members(&format!("{prefix}routes:{event_type}"))
                    .await?;
                services.extend(everything.iter().cloned());
                services.sort();
                services.dedup();
                by_type.insert(event_type.clone(), services);
            }
            for service in by_type.get(&event_type).into_iter().flatten() {
                if !queues.contains_key(service) {
                    let Ok(keys) = self.mq.layout().queue(&format!("sub:{service}")) else {
                        tracing::warn!(service = %service, "a route names an invalid service name; skipped");
                        continue;
                    };
                    out.push((service.clone(), Vec::new()));
                    queues.insert(service.clone(), (Arc::new(keys), out.len() - 1));
                }
                if let Some((keys, index)) = queues.get(service) {
                    out[*index].1.push(Append::new(keys.clone(), data.clone()));
                }
            }
        }
        Ok(out)
    }
}

/// The `event_type` of an entry of the log (the seed's flat JSON).
fn event_type(data: &Bytes) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        event_type: String,
    }
    serde_json::from_slice::<Head>(data)
        .ok()
        .map(|h| h.event_type)
}
