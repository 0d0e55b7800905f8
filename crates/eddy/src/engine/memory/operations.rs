//! The [`Engine`] calls: each takes the state's one lock for its whole
//! change, which makes it atomic the way a Lua script is on Redis.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::state::{group_mut, Delayed, Group, Pending};
use super::{epoch_secs_string, no_group, not_found, queue_full, MemoryEngine};
use crate::engine::{
    Append, Appended, Capabilities, Claimed, ConsumerInfo, Engine, Entry, EntryId, ParkedRetry,
    Publish, QueueKeys, Retention, StreamInfo, Transfer,
};
use crate::error::Result;

/// One queue of an append batch.
struct Target<'a> {
    keys: &'a QueueKeys,
    len: u64,
    max: Option<u64>,
    adding: u64,
}

impl Target<'_> {
    fn is(&self, keys: &QueueKeys) -> bool {
        std::ptr::eq(self.keys, keys) || self.keys.stream == keys.stream
    }
}

#[async_trait]
impl Engine for MemoryEngine {
    fn describe(&self) -> String {
        match self.history {
            None => "memory://".to_owned(),
            Some(keep) => format!("memory://?history={}ms", keep.as_millis()),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            virtual_time: true,
            durable: false,
            shared_between_processes: false,
            clustered: false,
        }
    }

    async fn now_ms(&self) -> Result<u64> {
        Ok(self.clock_ms())
    }

    async fn create_queue(&self, queue: &QueueKeys, dlq: &QueueKeys, registry: &str) -> Result<()> {
        let now = epoch_secs_string(self.clock_ms());
        let mut st = self.lock();
        for keys in [queue, dlq] {
            let s = st.streams.entry(keys.stream.clone()).or_default();
            s.groups.entry(keys.group.clone()).or_default();
            st.sets
                .entry(registry.to_owned())
                .or_default()
                .insert(keys.stream.clone());
        }
        st.hset_missing(
            &queue.meta,
            &[
                ("created_at", now.clone()),
                ("dlq", dlq.stream.clone()),
                ("consumer_group", queue.group.clone()),
            ],
        );
        st.hset_missing(
            &dlq.meta,
            &[
                ("created_at", now),
                ("main_queue", queue.stream.clone()),
                ("consumer_group", dlq.group.clone()),
                ("is_dlq", "true".to_owned()),
            ],
        );
        Ok(())
    }

    async fn metadata(&self, meta_key: &str) -> Result<Option<Vec<(String, String)>>> {
        Ok(self.lock().hashes.get(meta_key).cloned())
    }

    async fn members(&self, key: &str) -> Result<Vec<String>> {
        Ok(self
            .lock()
            .sets
            .get(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn set_add(&self, key: &str, members: &[String]) -> Result<u64> {
        let mut st = self.lock();
        let set = st.sets.entry(key.to_owned()).or_default();
        Ok(members.iter().filter(|m| set.insert((*m).clone())).count() as u64)
    }

    async fn set_remove(&self, key: &str, members: &[String]) -> Result<u64> {
        let mut st = self.lock();
        let Some(set) = st.sets.get_mut(key) else {
            return Ok(0);
        };
        let n = members.iter().filter(|m| set.remove(*m)).count() as u64;
        if set.is_empty() {
            st.sets.remove(key);
        }
        Ok(n)
    }

    async fn publish(&self, p: &Publish) -> Result<Vec<String>> {
        let mut out = self.publish_many(std::slice::from_ref(p)).await?;
        Ok(out.pop().unwrap_or_default())
    }

    async fn publish_many(&self, batch: &[Publish]) -> Result<Vec<Vec<String>>> {
        let now = self.clock_ms();
        let cutoff = self.history_cutoff();
        let mut st = self.lock();
        // Every target and log must exist before the first write: a route
        // whose queue was deleted fails the whole batch.
        let mut stream = String::new();
        for p in batch {
            for r in &p.routes {
                for m in st.sets.get(r).into_iter().flatten() {
                    stream.clear();
                    stream.push_str(&p.target_prefix);
                    stream.push_str(m);
                    if !st.streams.contains_key(&stream) {
                        return Err(crate::engine::stream_missing(&stream));
                    }
                }
            }
            if let Some(log) = p.log.as_ref().filter(|l| !st.streams.contains_key(*l)) {
                return Err(crate::engine::stream_missing(log));
            }
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut woken: Vec<String> = Vec::new();
        let mut trimmed = Vec::new();
        for p in batch {
            // The members of every route set, sorted, each once.
            let mut members: Vec<String> = Vec::new();
            for r in &p.routes {
                if let Some(set) = st.sets.get(r) {
                    members.extend(set.iter().cloned());
                }
            }
            members.sort_unstable();
            members.dedup();
            for m in &members {
                let mut stream = String::with_capacity(p.target_prefix.len() + m.len());
                stream.push_str(&p.target_prefix);
                stream.push_str(m);
                st.xadd(&stream, now, p.data.clone());
                if !woken.contains(&stream) {
                    woken.push(stream);
                }
            }
            if let Some(log) = &p.log {
                st.xadd(log, now, p.data.clone());
                if let Some(cutoff) = cutoff {
                    st.trim_log_window(log, cutoff, &mut trimmed);
                }
                if !woken.contains(log) {
                    woken.push(log.clone());
                }
            }
            out.push(members);
        }
        drop(st);
        drop(trimmed);
        self.wake(woken.iter().map(String::as_str));
        Ok(out)
    }

    async fn delete_queues(&self, queues: &[QueueKeys], registry: &str) -> Result<bool> {
        let mut st = self.lock();
        let mut existed = false;
        for keys in queues {
            existed |= st.streams.remove(&keys.stream).is_some();
            existed |= st.hashes.remove(&keys.meta).is_some();
            existed |= st.expiry.remove(&keys.expiry).is_some();
            existed |= st.delayed.remove(&keys.delayed).is_some();
            existed |= st.parked.remove(&keys.delayed).is_some();
            if let Some(set) = st.sets.get_mut(registry) {
                set.remove(&keys.stream);
            }
        }
        drop(st);
        // Wake blocked readers so they see the group is gone.
        self.wake(queues.iter().map(|k| k.stream.clone()));
        Ok(existed)
    }

    async fn append(&self, appends: &[Append]) -> Result<Vec<Appended>> {
        let now = self.clock_ms();
        let mut st = self.lock();
        // The distinct queues of the batch (usually one), in order of first
        // appearance, with what each can still take; checked once per queue
        // rather than once per entry.
        let mut queues: Vec<Target<'_>> = Vec::new();
        let mut of_append: Vec<usize> = Vec::with_capacity(appends.len());
        for a in appends {
            let last = queues.len().wrapping_sub(1);
            let i = match queues.get(last) {
                Some(q) if q.is(&a.keys) => last,
                _ => match queues.iter().position(|q| q.is(&a.keys)) {
                    Some(i) => i,
                    None => {
                        // The first append whose metadata is missing names
                        // the error, before any length is checked.
                        let Some(meta) = st.hashes.get(&a.keys.meta) else {
                            return Err(not_found(&a.keys));
                        };
                        let max = meta
                            .iter()
                            .find(|(k, _)| k == "max_length")
                            .and_then(|(_, v)| v.parse::<u64>().ok());
                        let Some(stream) = st.streams.get(&a.keys.stream) else {
                            return Err(crate::engine::stream_missing(&a.keys.stream));
                        };
                        let len = stream.entries.len() as u64;
                        queues.push(Target {
                            keys: &a.keys,
                            len,
                            max,
                            adding: 0,
                        });
                        queues.len() - 1
                    }
                },
            };
            of_append.push(i);
        }
        // All or none: the first append (in order) over its queue's maximum
        // fails the batch.
        for &i in &of_append {
            let q = &mut queues[i];
            q.adding += 1;
            if let Some(max) = q.max.filter(|max| q.len + q.adding > *max) {
                return Err(queue_full(q.keys, max));
            }
        }
        let mut out = Vec::with_capacity(appends.len());
        for a in appends {
            let expire_at = a
                .ttl
                .map(|ttl| (now + ttl.as_millis() as u64) as f64 / 1000.0);
            match a.delay.filter(|d| !d.is_zero()) {
                Some(delay) => {
                    st.delayed_seq += 1;
                    let seq = st.delayed_seq;
                    let due = now + delay.as_millis() as u64;
                    st.delayed
                        .entry(a.keys.delayed.clone())
                        .or_default()
                        .insert(
                            (due, seq),
                            Delayed {
                                data: a.data.clone(),
                                expire_at,
                            },
                        );
                    out.push(Appended::Delayed);
                }
                None => {
                    let id = st.xadd(&a.keys.stream, now, a.data.clone());
                    if let Some(at) = expire_at {
                        st.expiry
                            .entry(a.keys.expiry.clone())
                            .or_default()
                            .insert(id, at);
                    }
                    out.push(Appended::Entry(id));
                }
            }
        }
        drop(st);
        self.wake(queues.iter().map(|q| q.keys.stream.as_str()));
        Ok(out)
    }

    async fn read(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Entry>> {
        let deadline = block.map(|b| Instant::now() + b);
        let waker = self.waker(&queue.stream);
        loop {
            let notified = waker.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let now = self.clock_ms();
            let (entries, next_due) = {
                let mut st = self.lock();
                let next_due = st.promote(queue, now);
                let stream = st
                    .streams
                    .get_mut(&queue.stream)
                    .ok_or_else(|| no_group(queue))?;
                let group = stream
                    .groups
                    .get_mut(&queue.group)
                    .ok_or_else(|| no_group(queue))?;
                let name = group.seen(consumer, now);
                let mut delivered = Vec::with_capacity(count.min(stream.entries.len()));
                for (id, data) in stream
                    .entries
                    .range_from(group.last_delivered.next())
                    .take(count)
                {
                    delivered.push(data.entry(id, 1));
                    group.pending.insert(
                        id,
                        Pending {
                            consumer: name.clone(),
                            delivered_ms: now,
                            count: 1,
                        },
                    );
                }
                if let Some(last) = delivered.last() {
                    group.last_delivered = last.id;
                }
                group.entries_read += delivered.len() as u64;
                if st.expiry.contains_key(&queue.expiry) {
                    let before = delivered.len();
                    delivered.retain(|e| {
                        let expired = st.is_expired(queue, e.id, now);
                        if expired {
                            st.remove_entry(queue, e.id);
                        }
                        !expired
                    });
                    self.expired
                        .add(&queue.stream, (before - delivered.len()) as u64);
                }
                (delivered, next_due)
            };
            if !entries.is_empty() {
                return Ok(entries);
            }
            let Some(deadline) = deadline else {
                return Ok(entries);
            };
            let now_i = Instant::now();
            if now_i >= deadline {
                return Ok(entries);
            }
            let wake_at = match next_due {
                Some(due) => deadline.min(now_i + Duration::from_millis(due.saturating_sub(now))),
                None => deadline,
            };
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    async fn ack(&self, queue: &QueueKeys, ids: &[EntryId]) -> Result<u64> {
        let mut st = self.lock();
        let Some(group) = st
            .streams
            .get_mut(&queue.stream)
            .and_then(|s| s.groups.get_mut(&queue.group))
        else {
            return Ok(0);
        };
        let acked = ids
            .iter()
            .filter(|id| group.pending.remove(id).is_some())
            .count() as u64;
        let mut trimmed = Vec::new();
        self.settle(&mut st, queue, &mut trimmed);
        // Free the payloads after unlocking: other callers need the lock.
        drop(st);
        drop(trimmed);
        Ok(acked)
    }

    async fn delete(&self, queue: &QueueKeys, ids: &[EntryId]) -> Result<u64> {
        let mut st = self.lock();
        let deleted = ids.iter().filter(|id| st.remove_entry(queue, **id)).count() as u64;
        let mut trimmed = Vec::new();
        self.settle(&mut st, queue, &mut trimmed);
        drop(st);
        drop(trimmed);
        Ok(deleted)
    }

    async fn transfer(
        &self,
        from: &QueueKeys,
        to: &QueueKeys,
        moves: &[Transfer],
    ) -> Result<Vec<Option<EntryId>>> {
        let now = self.clock_ms();
        let mut st = self.lock();
        if !st.hashes.contains_key(&to.meta) {
            return Err(not_found(to));
        }
        let mut out = Vec::with_capacity(moves.len());
        for m in moves {
            let source = st
                .streams
                .get(&from.stream)
                .and_then(|s| s.entries.get(&m.id))
                .cloned();
            if let Some(source) = source {
                let mut fields = m.apply(Some(&source.data), &source.fields).into_iter();
                // A memory entry always has `data`, and `apply` puts it first.
                let data = fields.next().map(|(_, d)| d).unwrap_or_default();
                let new_id = st.xadd_fields(&to.stream, now, data, fields.collect());
                st.remove_entry(from, m.id);
                out.push(Some(new_id));
            } else {
                out.push(None);
            }
        }
        let mut trimmed = Vec::new();
        self.settle(&mut st, from, &mut trimmed);
        drop(st);
        drop(trimmed);
        self.wake([to.stream.clone()]);
        Ok(out)
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
        let st = self.lock();
        Ok(st
            .streams
            .get(&queue.stream)
            .map(|s| {
                s.entries
                    .range(start, end)
                    .take(count)
                    .map(|(id, d)| d.entry(id, 0))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn purge(&self, queue: &QueueKeys) -> Result<u64> {
        let mut st = self.lock();
        if !st.hashes.contains_key(&queue.meta) {
            return Err(not_found(queue));
        }
        st.expiry.remove(&queue.expiry);
        st.delayed.remove(&queue.delayed);
        st.parked.remove(&queue.delayed);
        let Some(s) = st.streams.get_mut(&queue.stream) else {
            return Ok(0);
        };
        let n = s.entries.len() as u64;
        s.entries.clear();
        s.entries_added = 0;
        s.groups.clear();
        s.groups.insert(queue.group.clone(), Group::default());
        Ok(n)
    }

    async fn info(&self, queue: &QueueKeys) -> Result<StreamInfo> {
        let now = self.clock_ms();
        let st = self.lock();
        let s = st
            .streams
            .get(&queue.stream)
            .ok_or_else(|| not_found(queue))?;
        let g = s.groups.get(&queue.group).ok_or_else(|| no_group(queue))?;
        let mut per_consumer: BTreeMap<&str, u64> = BTreeMap::new();
        for p in g.pending.values() {
            *per_consumer.entry(&p.consumer).or_default() += 1;
        }
        let consumers = g
            .consumers
            .iter()
            .map(|(name, seen)| ConsumerInfo {
                name: name.to_string(),
                pending: per_consumer.get(&**name).copied().unwrap_or(0),
                idle_ms: now.saturating_sub(*seen),
            })
            .collect();
        Ok(StreamInfo {
            length: s.entries.len() as u64,
            pending: g.pending.len() as u64,
            lag: s.entries.range_from(g.last_delivered.next()).count() as u64,
            consumers,
            oldest_pending_age_ms: g.pending.first().map(|(id, _)| now.saturating_sub(id.ms)),
            oldest_pending_idle_ms: g
                .pending
                .first()
                .map(|(_, p)| now.saturating_sub(p.delivered_ms)),
            delayed: st.delayed.get(&queue.delayed).map_or(0, |d| d.len() as u64)
                + st.parked.get(&queue.delayed).map_or(0, |m| m.len() as u64),
            first_id: s.entries.first().map(|(id, _)| id),
            last_id: s.entries.last_id(),
            lag_estimated: false,
            entries_added: Some(s.entries_added),
            entries_read: Some(g.entries_read),
        })
    }

    fn expired_counts(&self) -> Vec<(String, u64)> {
        self.expired.snapshot()
    }

    async fn sweep(&self, queue: &QueueKeys) -> Result<u64> {
        let now = self.clock_ms();
        let mut st = self.lock();
        st.promote(queue, now);
        let expired: Vec<EntryId> = st
            .expiry
            .get(&queue.expiry)
            .map(|z| {
                z.iter()
                    .filter(|(_, at)| **at <= now as f64 / 1000.0)
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        let n = expired
            .into_iter()
            .filter(|id| st.remove_entry(queue, *id))
            .count();
        drop(st);
        self.expired.add(&queue.stream, n as u64);
        self.wake([queue.stream.clone()]);
        Ok(n as u64)
    }

    async fn claim(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        min_idle: Duration,
        count: usize,
        alone_from: u64,
    ) -> Result<Claimed> {
        let now = self.clock_ms();
        let min_idle = min_idle.as_millis() as u64;
        let mut guard = self.lock();
        let st = &mut *guard;
        let markers = st.parked.get(&queue.delayed);
        let stream = st
            .streams
            .get_mut(&queue.stream)
            .ok_or_else(|| no_group(queue))?;
        let group = stream
            .groups
            .get_mut(&queue.group)
            .ok_or_else(|| no_group(queue))?;
        let name = group.seen(consumer, now);
        let mut out = Claimed::default();
        let mut claimed = Vec::new();
        for (id, p) in group.pending.iter_mut() {
            if claimed.len() >= count {
                break;
            }
            if now.saturating_sub(p.delivered_ms) < min_idle {
                continue;
            }
            // A parked retry waits for its due time, however idle.
            if markers.is_some_and(|m| m.holds(id, p.count, now)) {
                continue;
            }
            match stream.entries.get(&id) {
                None => out.deleted.push(id),
                Some(data) => {
                    let alone = p.count.saturating_add(1) >= alone_from;
                    if alone && !claimed.is_empty() {
                        break;
                    }
                    p.consumer = name.clone();
                    p.delivered_ms = now;
                    p.count += 1;
                    claimed.push(data.entry(id, p.count));
                    if alone {
                        break;
                    }
                }
            }
        }
        for id in &out.deleted {
            group.pending.remove(id);
        }
        for e in claimed {
            if st.is_expired(queue, e.id, now) {
                st.remove_entry(queue, e.id);
                self.expired.add(&queue.stream, 1);
            } else {
                out.entries.push(e);
            }
        }
        Ok(out)
    }

    async fn trim(&self, queue: &QueueKeys, retention: Retention) -> Result<u64> {
        if !retention.is_bounded() {
            return Ok(0);
        }
        let cutoff = retention
            .age
            .map(|age| EntryId::new(self.clock_ms().saturating_sub(age.as_millis() as u64), 0));
        let mut st = self.lock();
        let Some(stream) = st.streams.get_mut(&queue.stream) else {
            return Ok(0);
        };
        let Some(group) = stream.groups.get(&queue.group) else {
            return Ok(0);
        };
        // Below `safe` every entry was delivered and acknowledged.
        let mut safe = group.last_delivered.next();
        if let Some((oldest, _)) = group.pending.first() {
            safe = safe.min(oldest);
        }
        // The `length`-th newest of those is the oldest one kept.
        let by_length = retention.length.map(|n| match n {
            0 => safe,
            n if stream.entries.len() as u64 <= n => EntryId::MIN,
            n => stream
                .entries
                .nth_back_before(safe, n)
                .unwrap_or(EntryId::MIN),
        });
        let target = match (cutoff, by_length) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b).unwrap_or(EntryId::MIN),
        };
        let limit = safe.min(target);
        let mut removed = Vec::new();
        let n = stream.entries.remove_before(limit, &mut removed);
        // Free the payloads after unlocking: other callers need the lock.
        drop(st);
        drop(removed);
        Ok(n as u64)
    }

    async fn forget_consumers(&self, queue: &QueueKeys, idle: Duration) -> Result<Vec<String>> {
        let now = self.clock_ms();
        let limit = idle.as_millis() as u64;
        let mut st = self.lock();
        // A queue that is gone has no consumers to forget.
        let Ok(group) = group_mut(&mut st.streams, queue) else {
            return Ok(Vec::new());
        };
        let holding: std::collections::HashSet<&str> =
            group.pending.values().map(|p| &*p.consumer).collect();
        let gone: Vec<std::sync::Arc<str>> = group
            .consumers
            .iter()
            .filter(|(name, seen)| {
                now.saturating_sub(**seen) >= limit && !holding.contains(&***name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        drop(holding);
        for name in &gone {
            group.consumers.remove(name);
        }
        Ok(gone.iter().map(|n| n.to_string()).collect())
    }

    async fn trim_log(&self, stream: &str, before_ms: u64) -> Result<u64> {
        let mut st = self.lock();
        let Some(s) = st.streams.get_mut(stream) else {
            return Ok(0);
        };
        let mut removed = Vec::new();
        let n = s
            .entries
            .remove_before(EntryId::new(before_ms, 0), &mut removed);
        drop(st);
        drop(removed);
        Ok(n as u64)
    }

    async fn set_metadata(
        &self,
        queue: &QueueKeys,
        field: &str,
        value: Option<&str>,
    ) -> Result<()> {
        let mut st = self.lock();
        let h = st
            .hashes
            .get_mut(&queue.meta)
            .ok_or_else(|| not_found(queue))?;
        h.retain(|(k, _)| k != field);
        if let Some(v) = value {
            h.push((field.to_owned(), v.to_owned()));
        }
        Ok(())
    }

    async fn extend(&self, queue: &QueueKeys, consumer: &str, ids: &[EntryId]) -> Result<u64> {
        let now = self.clock_ms();
        self.owned(queue, consumer, ids, |p| p.delivered_ms = now)
    }

    async fn release(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        ids: &[EntryId],
        after: Duration,
        min_idle: Duration,
    ) -> Result<u64> {
        let now = self.clock_ms();
        if after > min_idle && !min_idle.is_zero() && !ids.is_empty() {
            return self.lock().park(queue, consumer, ids, after, now);
        }
        let back = min_idle.saturating_sub(after).as_millis() as u64;
        let at = now.saturating_sub(back);
        if ids.is_empty() {
            return Ok(0);
        }
        self.lock().release_until(queue, consumer, ids, at)
    }

    async fn parked(&self, queue: &QueueKeys) -> Result<Vec<ParkedRetry>> {
        let now = self.clock_ms();
        Ok(self.lock().parked_retries(queue, now))
    }
}

impl MemoryEngine {
    /// Apply `f` to the pending entries among `ids` that `consumer` owns.
    fn owned(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        ids: &[EntryId],
        f: impl Fn(&mut Pending),
    ) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut st = self.lock();
        let group = group_mut(&mut st.streams, queue)?;
        Ok(group.for_owned(consumer, ids, |_, p| f(p)))
    }
}
