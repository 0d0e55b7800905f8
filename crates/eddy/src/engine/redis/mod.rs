//! The Redis engine: Redis 7.0+, every multi-key operation atomic: one Lua
//! script (loaded once, called by SHA), or for the two hot paths, reads and
//! plain appends, one MULTI/EXEC whose stream commands run outside Lua.
//! Blocking reads run on their own connections so they never stall other
//! commands.
//!
//! Built with the `redis` feature (on by default); without it only
//! [`RedisOptions`] is here, and opening a Redis URL fails with
//! [`crate::ErrorKind::FeatureDisabled`].

mod options;

pub use options::RedisOptions;

#[cfg(feature = "redis")]
mod append;
#[cfg(feature = "redis")]
mod claim;
#[cfg(feature = "redis")]
mod connection;
#[cfg(feature = "redis")]
mod errors;
#[cfg(feature = "redis")]
mod park;
#[cfg(feature = "redis")]
mod read;
#[cfg(feature = "redis")]
mod scripts;
#[cfg(feature = "redis")]
mod topology;
#[cfg(feature = "redis")]
mod values;

#[cfg(feature = "redis")]
use std::sync::Mutex;
#[cfg(feature = "redis")]
use std::time::Duration;

#[cfg(feature = "redis")]
use async_trait::async_trait;
#[cfg(feature = "redis")]
use redis::Value;

#[cfg(feature = "redis")]
use super::{
    keys::hash_tag, Append, Appended, Capabilities, Claimed, Engine, Entry, EntryId, ParkedRetry,
    Publish, QueueKeys, Retention, StreamInfo, Transfer,
};
#[cfg(feature = "redis")]
use crate::error::{Error, ErrorKind, Result};
#[cfg(feature = "redis")]
use claim::pick_claims;
#[cfg(feature = "redis")]
use errors::{map_err, map_transaction_err, map_write_err};
#[cfg(feature = "redis")]
use scripts::Scripts;

/// The Redis engine, selected by `redis://`, `rediss://`, `redis+unix://`,
/// `redis+cluster://` (`rediss+cluster://`) or `redis+sentinel://`
/// (`rediss+sentinel://`).
#[cfg(feature = "redis")]
pub struct RedisEngine {
    topology: topology::Topology,
    conn: topology::Conn,
    /// A Redis Cluster: atomic steps must stay in one slot.
    clustered: bool,
    /// Idle connections for blocking reads, one per concurrent reader, with
    /// the topology generation each was made in.
    blocking: Mutex<Vec<(u64, topology::Conn)>>,
    scripts: Scripts,
    url: String,
    options: RedisOptions,
    expired: super::ExpiredCounts,
}

#[cfg(feature = "redis")]
impl std::fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEngine")
            .field("url", &self.url)
            .finish()
    }
}

/// A count as Redis reads one (a signed 64-bit integer): anything larger
/// means "all", which `i64::MAX` says too.
#[cfg(feature = "redis")]
fn redis_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(feature = "redis")]
fn ms_arg(d: Option<Duration>) -> String {
    d.map(|d| d.as_millis().to_string()).unwrap_or_default()
}

/// Queues per pipeline when listing many (`info_many`, `metadata_many`) on
/// a standalone Redis; on a cluster a pipeline holds one queue (one slot),
/// and [`CLUSTER_IN_FLIGHT`] of them are in flight.
#[cfg(feature = "redis")]
const INFO_BATCH: usize = 100;
/// Pipelines of those in flight at once.
#[cfg(feature = "redis")]
const BATCHES_IN_FLIGHT: usize = 4;
#[cfg(feature = "redis")]
const CLUSTER_IN_FLIGHT: usize = 64;

/// A transaction's appends must share a hash slot on a cluster: checked
/// before anything is sent, so that the caller learns which queues and what
/// to do rather than meeting CROSSSLOT.
#[cfg(feature = "redis")]
fn check_one_slot(appends: &[Append]) -> Result<()> {
    let Some(first) = appends.first() else {
        return Ok(());
    };
    let tag = hash_tag(&first.keys.stream);
    match appends.iter().find(|a| hash_tag(&a.keys.stream) != tag) {
        None => Ok(()),
        Some(other) => Err(Error::new(
            ErrorKind::CrossSlot,
            format!(
                "queues `{}` and `{}` are in different hash slots of the Redis Cluster, so one \
                 transaction cannot write both; nothing was sent: give the queues one hash tag \
                 (`{{shop}}orders`, `{{shop}}payments`) to keep them in one slot, or send to each \
                 on its own",
                first.keys.name, other.keys.name
            ),
        )),
    }
}

#[cfg(feature = "redis")]
impl RedisEngine {
    /// Queues per pipeline and pipelines in flight when listing many.
    fn batching(&self) -> (usize, usize) {
        if self.clustered {
            (1, CLUSTER_IN_FLIGHT)
        } else {
            (INFO_BATCH, BATCHES_IN_FLIGHT)
        }
    }

    async fn delete_queues_in_one_step(
        &self,
        queues: &[QueueKeys],
        registry: Option<&str>,
    ) -> Result<bool> {
        let mut inv = self.scripts.delete_queues.prepare_invoke();
        inv.arg(if registry.is_some() { "1" } else { "0" });
        if let Some(registry) = registry {
            inv.key(registry);
        }
        for q in queues {
            inv.key(&q.stream)
                .key(&q.meta)
                .key(&q.expiry)
                .key(&q.delayed);
        }
        let n: i64 = self.invoke(&inv).await?;
        Ok(n == 1)
    }
}

#[cfg(feature = "redis")]
#[async_trait]
impl Engine for RedisEngine {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            virtual_time: false,
            durable: true,
            shared_between_processes: true,
            clustered: self.clustered,
        }
    }

    async fn now_ms(&self) -> Result<u64> {
        let (s, us): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(s * 1000 + us / 1000)
    }

    async fn create_queue(&self, queue: &QueueKeys, dlq: &QueueKeys, registry: &str) -> Result<()> {
        let mut inv = self.scripts.create_queue.prepare_invoke();
        inv.key(&queue.stream)
            .key(&queue.meta)
            .key(&dlq.stream)
            .key(&dlq.meta);
        // On a cluster the registry lives in a slot of its own: the queue
        // pair first (one slot, one script), then its registry entries. A
        // crash in between leaves a queue that is not listed until the next
        // (idempotent) create; never a listed queue without its group.
        if !self.clustered {
            inv.key(registry);
        }
        inv.arg(&queue.group).arg(&dlq.group);
        let _: i64 = self.invoke(&inv).await?;
        if self.clustered {
            self.set_add(registry, &[queue.stream.clone(), dlq.stream.clone()])
                .await?;
        }
        Ok(())
    }

    async fn metadata(&self, meta_key: &str) -> Result<Option<Vec<(String, String)>>> {
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(meta_key)
            .query_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(if fields.is_empty() {
            None
        } else {
            Some(fields)
        })
    }

    async fn members(&self, key: &str) -> Result<Vec<String>> {
        let mut members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        members.sort();
        Ok(members)
    }

    async fn set_add(&self, key: &str, members: &[String]) -> Result<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        redis::cmd("SADD")
            .arg(key)
            .arg(members)
            .query_async(&mut self.conn())
            .await
            .map_err(map_write_err)
    }

    async fn set_remove(&self, key: &str, members: &[String]) -> Result<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        redis::cmd("SREM")
            .arg(key)
            .arg(members)
            .query_async(&mut self.conn())
            .await
            .map_err(map_write_err)
    }

    async fn publish(&self, p: &Publish) -> Result<Vec<String>> {
        // A batch of one: one script for both, so they cannot drift apart.
        let mut out = self.publish_many(std::slice::from_ref(p)).await?;
        out.pop().ok_or_else(|| {
            Error::new(
                ErrorKind::Backend,
                "Redis answered a publish with no result: the event may or may not have been published",
            )
        })
    }

    async fn publish_many(&self, batch: &[Publish]) -> Result<Vec<Vec<String>>> {
        if self.clustered {
            // The route sets, the log and the subscription queues live in
            // different slots: the bus publishes through its relay instead.
            return Err(Error::new(
                ErrorKind::CrossSlot,
                "a fan-out in one step cannot span a Redis Cluster's slots; nothing was \
                 published: publish through eddy::bus::Bus, which relays on a cluster",
            ));
        }
        // Each route set and log once in KEYS; the events refer to them by
        // index (a bus's batch shares its `all` routes and log).
        fn index<'a>(keys: &mut Vec<&'a str>, key: &'a str) -> usize {
            match keys.iter().position(|k| *k == key) {
                Some(i) => i + 1,
                None => {
                    keys.push(key);
                    keys.len()
                }
            }
        }
        let mut keys: Vec<&str> = Vec::new();
        let mut args: Vec<Vec<usize>> = Vec::with_capacity(batch.len());
        for p in batch {
            let log = p.log.as_deref().map_or(0, |l| index(&mut keys, l));
            let mut refs = vec![log];
            refs.extend(p.routes.iter().map(|r| index(&mut keys, r)));
            args.push(refs);
        }
        let mut inv = self.scripts.publish_many.prepare_invoke();
        for k in &keys {
            inv.key(*k);
        }
        for (p, refs) in batch.iter().zip(&args) {
            inv.arg(&p.target_prefix)
                .arg(p.data.as_ref())
                .arg(refs[0])
                .arg(refs.len() - 1);
            for r in &refs[1..] {
                inv.arg(*r);
            }
        }
        self.invoke(&inv).await
    }

    async fn delete_queues(&self, queues: &[QueueKeys], registry: &str) -> Result<bool> {
        if !self.clustered {
            return self.delete_queues_in_one_step(queues, Some(registry)).await;
        }
        // One step per hash slot (a queue and its DLQ share one), then the
        // registry entries, which live in a slot of their own, in one call.
        let mut existed = false;
        let mut rest: Vec<&QueueKeys> = queues.iter().collect();
        while let Some(first) = rest.first() {
            let tag = hash_tag(&first.stream).to_owned();
            let (same, other): (Vec<&QueueKeys>, Vec<&QueueKeys>) =
                rest.into_iter().partition(|q| hash_tag(&q.stream) == tag);
            let same: Vec<QueueKeys> = same.into_iter().cloned().collect();
            existed |= self.delete_queues_in_one_step(&same, None).await?;
            rest = other;
        }
        let streams: Vec<String> = queues.iter().map(|q| q.stream.clone()).collect();
        self.set_remove(registry, &streams).await?;
        Ok(existed)
    }

    async fn append(&self, appends: &[Append]) -> Result<Vec<Appended>> {
        if self.clustered {
            check_one_slot(appends)?;
        }
        if appends.iter().all(|a| a.ttl.is_none() && a.delay.is_none()) {
            return self.append_plain(appends).await;
        }
        // Keys once per queue, then per entry its queue's index and data
        // (plus TTL, delay and nonce when any entry has one).
        let mut queues: Vec<&QueueKeys> = Vec::new();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.scripts.append.get_hash());
        let mut entries = Vec::with_capacity(appends.len());
        for a in appends {
            let i = match queues.iter().position(|q| q.stream == a.keys.stream) {
                Some(i) => i,
                None => {
                    queues.push(&a.keys);
                    queues.len() - 1
                }
            };
            entries.push(i + 1);
        }
        cmd.arg(queues.len() * 4);
        for q in &queues {
            cmd.arg(&q.meta)
                .arg(&q.stream)
                .arg(&q.expiry)
                .arg(&q.delayed);
        }
        let full = appends.iter().any(|a| a.ttl.is_some() || a.delay.is_some());
        cmd.arg(if full { "1" } else { "0" });
        for (a, qi) in appends.iter().zip(entries) {
            cmd.arg(qi).arg(a.data.as_ref());
            if full {
                let nonce = if a.delay.is_some() {
                    format!("{:016x}", rand::random::<u64>())
                } else {
                    String::new()
                };
                cmd.arg(ms_arg(a.ttl)).arg(ms_arg(a.delay)).arg(nonce);
            }
        }
        let ids: Vec<String> = self.evalsha(&self.scripts.append, &cmd).await?;
        ids.iter()
            .map(|s| {
                if s.is_empty() {
                    Ok(Appended::Delayed)
                } else {
                    s.parse().map(Appended::Entry)
                }
            })
            .collect()
    }

    async fn read(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Entry>> {
        let deadline = block.map(|b| tokio::time::Instant::now() + b);
        loop {
            let (entries, next_due, has_expiry) = self.read_now(queue, consumer, count).await?;
            if !entries.is_empty() {
                return Ok(entries);
            }
            let Some(deadline) = deadline else {
                return Ok(entries);
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(entries);
            }
            let mut wait = deadline - now;
            if let Some(due) = next_due {
                let server_now = self.now_ms().await?;
                wait = wait.min(Duration::from_millis(due.saturating_sub(server_now).max(1)));
            }
            let mut entries = self.blocking_read(queue, consumer, count, wait).await?;
            if entries.is_empty() {
                continue;
            }
            if has_expiry {
                entries = self.drop_expired(queue, entries).await?;
                if entries.is_empty() {
                    continue;
                }
            }
            return Ok(entries);
        }
    }

    async fn ack(&self, queue: &QueueKeys, ids: &[EntryId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&queue.stream).arg(&queue.group);
        for id in ids {
            cmd.arg(id.to_string());
        }
        cmd.query_async(&mut self.conn())
            .await
            .map_err(map_write_err)
    }

    async fn delete(&self, queue: &QueueKeys, ids: &[EntryId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut inv = self.scripts.delete.prepare_invoke();
        inv.key(&queue.stream).key(&queue.expiry).arg(&queue.group);
        for id in ids {
            inv.arg(id.to_string());
        }
        self.invoke(&inv).await
    }

    async fn transfer(
        &self,
        from: &QueueKeys,
        to: &QueueKeys,
        moves: &[Transfer],
    ) -> Result<Vec<Option<EntryId>>> {
        if moves.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.transfer.prepare_invoke();
        inv.key(&from.stream)
            .key(&from.expiry)
            .key(&to.stream)
            .key(&to.meta)
            .arg(&from.group);
        for m in moves {
            inv.arg(m.id.to_string());
            match &m.data {
                Some(d) => inv.arg("1").arg(d.as_ref()),
                None => inv.arg("0").arg(""),
            };
            inv.arg(m.fields.len());
            for (k, v) in &m.fields {
                inv.arg(k.as_ref()).arg(v.as_ref());
            }
        }
        let ids: Vec<String> = self.invoke(&inv).await?;
        ids.iter()
            .map(|s| {
                if s.is_empty() {
                    Ok(None)
                } else {
                    s.parse().map(Some)
                }
            })
            .collect()
    }

    async fn range(
        &self,
        queue: &QueueKeys,
        start: EntryId,
        end: EntryId,
        count: usize,
    ) -> Result<Vec<Entry>> {
        if start > end {
            return Ok(Vec::new());
        }
        let reply: Value = redis::cmd("XRANGE")
            .arg(&queue.stream)
            .arg(start.to_string())
            .arg(end.to_string())
            .arg("COUNT")
            .arg(redis_count(count))
            .query_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        values::entries(reply, 0)
    }

    async fn purge(&self, queue: &QueueKeys) -> Result<u64> {
        let mut inv = self.scripts.purge.prepare_invoke();
        inv.key(&queue.stream)
            .key(&queue.expiry)
            .key(&queue.delayed)
            .key(&queue.meta)
            .arg(&queue.group);
        self.invoke(&inv).await
    }

    async fn info(&self, queue: &QueueKeys) -> Result<StreamInfo> {
        values::info(&mut self.conn(), queue).await
    }

    async fn info_many(&self, queues: &[QueueKeys]) -> Vec<Result<StreamInfo>> {
        use futures::stream::{self, StreamExt};
        let now = match self.now_ms().await {
            Ok(now) => now,
            Err(e) => return queues.iter().map(|_| Err(e.clone())).collect(),
        };
        // A pipeline per batch of queues, a few batches in flight: one
        // request and one reply per batch rather than per queue, which is
        // what listing ten thousand queues spends its time on. The futures
        // own what they read (see `Eddy::list_queues`).
        let (per_batch, in_flight) = self.batching();
        let reads: Vec<_> = queues
            .chunks(per_batch)
            .map(|batch| {
                let (mut conn, batch) = (self.conn(), batch.to_vec());
                async move { values::info_batch(&mut conn, &batch, now).await }
            })
            .collect();
        let batches: Vec<Vec<Result<StreamInfo>>> =
            stream::iter(reads).buffered(in_flight).collect().await;
        batches.into_iter().flatten().collect()
    }

    async fn metadata_many(
        &self,
        meta_keys: &[String],
    ) -> Vec<Result<Option<Vec<(String, String)>>>> {
        use futures::stream::{self, StreamExt};
        let (per_batch, in_flight) = self.batching();
        let reads: Vec<_> = meta_keys
            .chunks(per_batch)
            .map(|batch| {
                let mut conn = self.conn();
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for key in batch {
                    pipe.cmd("HGETALL").arg(key);
                }
                let n = batch.len();
                async move {
                    let replies: redis::RedisResult<
                        Vec<redis::RedisResult<Vec<(String, String)>>>,
                    > = pipe.query_async(&mut conn).await;
                    match replies {
                        Ok(replies) => replies
                            .into_iter()
                            .map(|r| {
                                r.map(|fields| (!fields.is_empty()).then_some(fields))
                                    .map_err(map_err)
                            })
                            .collect(),
                        Err(e) => {
                            let e = map_err(e);
                            (0..n).map(|_| Err(e.clone())).collect::<Vec<_>>()
                        }
                    }
                }
            })
            .collect();
        let batches: Vec<Vec<_>> = stream::iter(reads).buffered(in_flight).collect().await;
        batches.into_iter().flatten().collect()
    }

    fn expired_counts(&self) -> Vec<(String, u64)> {
        self.expired.snapshot()
    }

    async fn sweep(&self, queue: &QueueKeys) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut inv = self.scripts.sweep.prepare_invoke();
            inv.key(&queue.stream)
                .key(&queue.expiry)
                .key(&queue.delayed)
                .arg(&queue.group);
            let (n, more): (u64, u64) = self.invoke(&inv).await?;
            self.expired.add(&queue.stream, n);
            total += n;
            if more == 0 {
                return Ok(total);
            }
        }
    }

    async fn claim(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        min_idle: Duration,
        count: usize,
        alone_from: u64,
    ) -> Result<Claimed> {
        let min_idle_ms = min_idle.as_millis() as u64;
        let (has_expiry, idle) = self
            .claim_candidates(queue, consumer, min_idle_ms, count)
            .await?;
        let picked = pick_claims(&idle, count, alone_from);
        if picked.is_empty() {
            return Ok(Claimed::default());
        }
        // XCLAIM re-checks the idle time of each id: one another consumer
        // took (or its owner touched) since XPENDING is left alone, so the
        // two round trips claim nothing twice. It also drops the pending ids
        // of deleted entries and returns the rest with their fields.
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&queue.stream)
            .arg(&queue.group)
            .arg(consumer)
            .arg(min_idle_ms);
        for (id, _) in &picked {
            cmd.arg(id.to_string());
        }
        let reply: Value = cmd
            .query_async(&mut self.conn())
            .await
            .map_err(map_write_err)?;
        let mut out = values::claim_reply(reply, &picked)?;
        if has_expiry && !out.entries.is_empty() {
            out.entries = self.drop_expired(queue, out.entries).await?;
        }
        Ok(out)
    }

    async fn trim(&self, queue: &QueueKeys, retention: Retention) -> Result<u64> {
        if !retention.is_bounded() {
            return Ok(0);
        }
        let limit = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let mut inv = self.scripts.trim.prepare_invoke();
        inv.key(&queue.stream)
            .arg(&queue.group)
            .arg(limit(retention.age.map(|a| a.as_millis() as u64)))
            .arg(limit(retention.length));
        self.invoke(&inv).await
    }

    async fn forget_consumers(&self, queue: &QueueKeys, idle: Duration) -> Result<Vec<String>> {
        let mut inv = self.scripts.forget_consumers.prepare_invoke();
        inv.key(&queue.stream)
            .arg(&queue.group)
            .arg(idle.as_millis() as u64);
        self.invoke(&inv).await
    }

    async fn check_access(&self, probe_key: &str) -> Result<()> {
        let mut inv = self.scripts.check_access.prepare_invoke();
        inv.key(probe_key);
        let refused: String = self.invoke(&inv).await.map_err(|e| match e.kind() {
            ErrorKind::PermissionDenied if e.message().contains("keys") => Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "the Redis user at {} may not access keys like `{probe_key}` ({}): grant the key pattern of the prefix (see the README's least-privilege ACL)",
                    self.url,
                    e.message()
                ),
            ),
            ErrorKind::PermissionDenied => Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "the Redis user cannot run eddy's scripts ({}): grant EVAL, EVALSHA and SCRIPT LOAD (see the README's least-privilege ACL)",
                    e.message()
                ),
            ),
            _ => e,
        })?;
        if refused.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "the Redis user at {} may not run {refused}, which eddy needs: grant the command and the key pattern of the prefix (see the README's least-privilege ACL)",
                self.url
            ),
        ))
    }

    async fn trim_log(&self, stream: &str, before_ms: u64) -> Result<u64> {
        redis::cmd("XTRIM")
            .arg(stream)
            .arg("MINID")
            .arg(format!("{before_ms}-0"))
            .query_async(&mut self.conn())
            .await
            .map_err(map_write_err)
    }

    async fn set_metadata(
        &self,
        queue: &QueueKeys,
        field: &str,
        value: Option<&str>,
    ) -> Result<()> {
        let mut inv = self.scripts.set_metadata.prepare_invoke();
        inv.key(&queue.meta)
            .arg(field)
            .arg(if value.is_some() { "1" } else { "0" })
            .arg(value.unwrap_or_default());
        let _: i64 = self.invoke(&inv).await?;
        Ok(())
    }

    async fn extend(&self, queue: &QueueKeys, consumer: &str, ids: &[EntryId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut inv = self.scripts.extend.prepare_invoke();
        inv.key(&queue.stream).arg(&queue.group).arg(consumer);
        for id in ids {
            inv.arg(id.to_string());
        }
        self.invoke(&inv).await
    }

    async fn release(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        ids: &[EntryId],
        after: Duration,
        min_idle: Duration,
    ) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        if after > min_idle && !min_idle.is_zero() {
            return park::park(self, queue, consumer, ids, after).await;
        }
        let mut inv = self.scripts.release.prepare_invoke();
        inv.key(&queue.stream)
            .key(&queue.delayed)
            .arg(&queue.group)
            .arg(consumer)
            .arg(after.as_millis() as u64)
            .arg(min_idle.as_millis() as u64);
        for id in ids {
            inv.arg(id.to_string());
        }
        self.invoke(&inv).await
    }

    async fn parked(&self, queue: &QueueKeys) -> Result<Vec<ParkedRetry>> {
        park::parked(self, queue).await
    }
}
