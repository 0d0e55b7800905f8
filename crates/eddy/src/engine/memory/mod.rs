//! The embedded engine: streams, groups and pending lists in process memory,
//! with Redis's semantics.
//!
//! One mutex guards the whole state, so every operation is atomic the way a
//! Lua script is on Redis. Blocking reads wait on a per-stream [`Notify`]
//! (woken by appends, never by polling) and on the next delayed entry's due
//! time. The clock is `tokio::time`, so tests can pause and advance it.

mod log;
mod park;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use self::log::Log;
use super::{
    Append, Appended, Capabilities, Claimed, ConsumerInfo, Engine, Entry, EntryId, ParkedRetry,
    Publish, QueueKeys, StreamInfo, Transfer,
};
use crate::error::{Error, ErrorKind, Result};

/// The engine's maps are keyed by key names: foldhash, not SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The in-process engine, selected by `memory://`.
///
/// Like a Redis stream, a queue keeps its acknowledged entries as history
/// until something trims them ([`Queue::trim_history`], a janitor). On
/// Redis that history lives in the server; here it lives in this process,
/// so a long-running application should bound it: [`MemoryEngine::with_history`]
/// (`memory://?history=30s`) drops acknowledged entries older than the
/// window as the engine goes, on every acknowledgement, with no timer to
/// fall behind. The default keeps history until trimmed, as Redis does, so
/// that both engines answer every call the same way.
///
/// ```
/// use eddy::engine::{Engine, memory::MemoryEngine};
/// let engine = MemoryEngine::new();
/// assert_eq!(engine.describe(), "memory://");
/// let bounded = MemoryEngine::with_history(std::time::Duration::from_secs(30));
/// assert_eq!(bounded.describe(), "memory://?history=30000ms");
/// ```
///
/// [`Queue::trim_history`]: crate::Queue::trim_history
#[derive(Debug)]
pub struct MemoryEngine {
    state: Mutex<State>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    epoch_ms: u64,
    started: Instant,
    /// Acknowledged entries older than this are dropped as the engine goes;
    /// `None` keeps them until trimmed.
    history: Option<Duration>,
}

#[derive(Debug, Default)]
struct State {
    streams: HashMap<String, Stream>,
    hashes: HashMap<String, Vec<(String, String)>>,
    sets: HashMap<String, BTreeSet<String>>,
    /// TTL indexes: expiry key → stream id → expiry in float epoch seconds.
    expiry: HashMap<String, BTreeMap<EntryId, f64>>,
    /// Delayed entries: delayed key → (due ms, sequence) → entry.
    delayed: HashMap<String, BTreeMap<(u64, u64), Delayed>>,
    delayed_seq: u64,
    /// Retries parked past the visibility timeout: delayed key → markers
    /// (see [`park`]).
    parked: HashMap<String, park::Markers>,
}

#[derive(Debug)]
struct Delayed {
    data: Bytes,
    expire_at: Option<f64>,
}

/// One stream entry: its `data` and any other fields a move carried over.
#[derive(Debug, Clone)]
struct Stored {
    data: Bytes,
    fields: Vec<(Bytes, Bytes)>,
}

impl Stored {
    fn entry(&self, id: EntryId, delivery_count: u64) -> Entry {
        Entry::new(id, Some(self.data.clone()), delivery_count).with_fields(self.fields.clone())
    }
}

#[derive(Debug, Default)]
struct Stream {
    entries: Log<Stored>,
    last_id: EntryId,
    groups: HashMap<String, Group>,
}

#[derive(Debug, Default)]
struct Group {
    last_delivered: EntryId,
    pending: Log<Pending>,
    /// Consumer name → last time it read (ms). The name is shared with its
    /// pending entries.
    consumers: BTreeMap<Arc<str>, u64>,
}

impl Group {
    /// Record that `consumer` read at `now`; returns its shared name.
    fn seen(&mut self, consumer: &str, now: u64) -> Arc<str> {
        if let Some(seen) = self.consumers.get_mut(consumer) {
            *seen = now;
            if let Some((name, _)) = self.consumers.get_key_value(consumer) {
                return name.clone();
            }
        }
        let name: Arc<str> = Arc::from(consumer);
        self.consumers.insert(name.clone(), now);
        name
    }
}

#[derive(Debug)]
struct Pending {
    consumer: Arc<str>,
    delivered_ms: u64,
    count: u64,
}

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

fn no_group(keys: &QueueKeys) -> Error {
    Error::new(
        ErrorKind::NoGroup,
        format!(
            "consumer group `{}` of `{}` does not exist: the queue was deleted or purged by hand; create it again",
            keys.group, keys.stream
        ),
    )
}

fn queue_full(keys: &QueueKeys, max: u64) -> Error {
    Error::new(
        ErrorKind::QueueFull,
        format!(
            "queue `{}` holds its maximum of {max} entries; nothing was sent: retry later or raise its max length",
            keys.name
        ),
    )
}

fn not_found(keys: &QueueKeys) -> Error {
    Error::new(
        ErrorKind::QueueNotFound,
        format!("queue `{}` does not exist: create it first", keys.name),
    )
}

impl Default for MemoryEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEngine {
    /// A new, empty engine that keeps acknowledged history until it is
    /// trimmed, as Redis does.
    pub fn new() -> Self {
        let epoch_ms = wall_clock_ms();
        Self {
            state: Mutex::new(State::default()),
            wakers: Mutex::new(HashMap::default()),
            epoch_ms,
            started: Instant::now(),
            history: None,
        }
    }

    /// A new, empty engine that keeps acknowledged entries for at most
    /// `history` (zero: none at all), so its memory stays bounded by the
    /// unacknowledged backlog plus that window of traffic.
    ///
    /// Entries leave a stream oldest first once every consumer group has
    /// acknowledged them (an entry some group still has pending, and every
    /// entry after it, stays), checked on each acknowledgement, deletion
    /// and dead-lettering of the stream. The bus's `all` log keeps the same
    /// window, checked as events are published: by age alone while nobody
    /// consumes it through its group (it is then only a replay record, and
    /// [`Bus::replay`] sees just the window), as any queue once someone
    /// does.
    ///
    /// [`Bus::replay`]: crate::bus::Bus::replay
    pub fn with_history(history: Duration) -> Self {
        Self {
            history: Some(history),
            ..Self::new()
        }
    }

    /// The engine a `memory://` URL names: `memory://`, or
    /// `memory://?history=DURATION` (humantime: `0s`, `500ms`, `30s`, `1h`)
    /// for [`MemoryEngine::with_history`].
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidUrl,
                format!(
                    "invalid embedded engine URL `{}`: {why}; use memory:// or memory://?history=30s",
                    super::redact_url(url)
                ),
            )
        };
        let rest = url
            .strip_prefix("memory://")
            .ok_or_else(|| bad("it does not start with memory://"))?;
        // `memory:///` as well: an empty path is no path.
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let query = match rest.split_once('?') {
            None if rest.is_empty() => return Ok(Self::new()),
            Some(("", query)) => query,
            _ => return Err(bad("the embedded engine has no host or path")),
        };
        let mut history = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("history", value)) => {
                    let keep = humantime::parse_duration(value)
                        .map_err(|e| bad(&format!("history `{value}` is not a duration ({e})")))?;
                    history = Some(keep);
                }
                // The key only: the value could be a password meant for Redis.
                _ => {
                    let key = pair.split_once('=').map_or(pair, |(k, _)| k);
                    return Err(bad(&format!("unknown option `{key}`")));
                }
            }
        }
        Ok(match history {
            Some(keep) => Self::with_history(keep),
            None => Self::new(),
        })
    }

    /// The oldest id that history must keep, if the engine bounds it.
    fn history_cutoff(&self) -> Option<EntryId> {
        let keep = self.history?;
        if keep.is_zero() {
            return Some(EntryId::MAX);
        }
        let ms = self.clock_ms().saturating_sub(keep.as_millis() as u64);
        Some(EntryId::new(ms, 0))
    }

    /// Drop the acknowledged history of `keys`'s stream beyond the
    /// engine's window (see [`MemoryEngine::with_history`]); the removed
    /// payloads go to `out`, to be freed after the lock is released.
    fn settle(&self, st: &mut State, keys: &QueueKeys, out: &mut Vec<Stored>) {
        if let Some(cutoff) = self.history_cutoff() {
            st.trim_acknowledged(&keys.stream, Some(&keys.expiry), cutoff, out);
        }
    }

    /// The later of the wall clock and the start time plus `tokio::time`
    /// elapsed: the wall clock normally (so ids agree with `SystemTime` in
    /// other code), the virtual clock when a test pauses and advances time.
    fn clock_ms(&self) -> u64 {
        let virtual_ms = self.epoch_ms + self.started.elapsed().as_millis() as u64;
        virtual_ms.max(wall_clock_ms())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change
        // visible to callers of an async fn in a way we could repair, and every
        // mutation below completes before returning; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn waker(&self, stream: &str) -> Arc<Notify> {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = wakers.get(stream) {
            return n.clone();
        }
        wakers.entry(stream.to_owned()).or_default().clone()
    }

    /// Wake the readers blocked on each stream (once per call per stream
    /// is enough: a woken reader takes everything new).
    fn wake<S: AsRef<str>>(&self, streams: impl IntoIterator<Item = S>) {
        let wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        for s in streams {
            if let Some(n) = wakers.get(s.as_ref()) {
                n.notify_waiters();
            }
        }
    }
}

impl State {
    fn xadd(&mut self, stream: &str, now_ms: u64, data: Bytes) -> EntryId {
        self.xadd_fields(stream, now_ms, data, Vec::new())
    }

    fn xadd_fields(
        &mut self,
        stream: &str,
        now_ms: u64,
        data: Bytes,
        fields: Vec<(Bytes, Bytes)>,
    ) -> EntryId {
        let s = match self.streams.get_mut(stream) {
            Some(s) => s,
            None => self.streams.entry(stream.to_owned()).or_default(),
        };
        let id = if now_ms > s.last_id.ms {
            EntryId::new(now_ms, 0)
        } else {
            s.last_id.next()
        };
        s.last_id = id;
        s.entries.insert(id, Stored { data, fields });
        id
    }

    /// Move due delayed entries into the stream, and drop the markers of
    /// parked retries that are due. Returns the next due time. A stream
    /// that is gone is not recreated: its delayed entries wait until the
    /// queue is.
    fn promote(&mut self, keys: &QueueKeys, now_ms: u64) -> Option<u64> {
        if !self.streams.contains_key(&keys.stream) {
            return None;
        }
        self.drop_due_markers(keys, now_ms);
        let due: Vec<Delayed> = match self.delayed.get_mut(&keys.delayed) {
            Some(set) => {
                let later = set.split_off(&(now_ms + 1, 0));
                std::mem::replace(set, later).into_values().collect()
            }
            None => return None,
        };
        for d in due {
            let id = self.xadd(&keys.stream, now_ms, d.data);
            if let Some(at) = d.expire_at {
                self.expiry
                    .entry(keys.expiry.clone())
                    .or_default()
                    .insert(id, at);
            }
        }
        let next = self
            .delayed
            .get(&keys.delayed)
            .and_then(|set| set.keys().next().map(|(due, _)| *due));
        if next.is_none() {
            self.delayed.remove(&keys.delayed);
        }
        next
    }

    fn is_expired(&self, keys: &QueueKeys, id: EntryId, now_ms: u64) -> bool {
        self.expiry
            .get(&keys.expiry)
            .and_then(|z| z.get(&id))
            .is_some_and(|at| *at <= now_ms as f64 / 1000.0)
    }

    /// Remove the entries of `stream` below `cutoff` that every group has
    /// acknowledged, and their TTLs from `expiry`; the payloads go to `out`.
    fn trim_acknowledged(
        &mut self,
        stream: &str,
        expiry: Option<&str>,
        cutoff: EntryId,
        out: &mut Vec<Stored>,
    ) -> usize {
        let Some(s) = self.streams.get_mut(stream) else {
            return 0;
        };
        let limit = s.groups.values().fold(cutoff, |limit, g| {
            let below = g.last_delivered.next().min(limit);
            match g.pending.first() {
                Some((oldest, _)) => below.min(oldest),
                None => below,
            }
        });
        // Nothing to do in the common case: one comparison.
        if s.entries.first().is_none_or(|(first, _)| first >= limit) {
            return 0;
        }
        let n = s.entries.remove_before(limit, out);
        if let Some(key) = expiry {
            if let Some(z) = self.expiry.get_mut(key) {
                *z = z.split_off(&limit);
                if z.is_empty() {
                    self.expiry.remove(key);
                }
            }
        }
        n
    }

    /// The history window of the bus's `all` log: a replay record, by age
    /// alone (as `trim_log` trims it) while nobody reads it through its
    /// group; once someone has, like any queue, never an entry that group
    /// has not acknowledged.
    fn trim_log_window(&mut self, log: &str, cutoff: EntryId, out: &mut Vec<Stored>) {
        let Some(s) = self.streams.get_mut(log) else {
            return;
        };
        // Read: a consumer has read through a group (even if it got
        // nothing yet), or a group has delivered anything.
        let read = s
            .groups
            .values()
            .any(|g| !g.consumers.is_empty() || g.last_delivered > EntryId::MIN);
        if read {
            self.trim_acknowledged(log, None, cutoff, out);
        } else if s.entries.first().is_some_and(|(first, _)| first < cutoff) {
            s.entries.remove_before(cutoff, out);
        }
    }

    /// XACK + XDEL + ZREM of one entry; returns whether the entry existed.
    fn remove_entry(&mut self, keys: &QueueKeys, id: EntryId) -> bool {
        let mut existed = false;
        if let Some(s) = self.streams.get_mut(&keys.stream) {
            if let Some(g) = s.groups.get_mut(&keys.group) {
                g.pending.remove(&id);
            }
            existed = s.entries.remove(&id).is_some();
        }
        if let Some(z) = self.expiry.get_mut(&keys.expiry) {
            z.remove(&id);
            if z.is_empty() {
                self.expiry.remove(&keys.expiry);
            }
        }
        existed
    }

    fn hset_missing(&mut self, key: &str, fields: &[(&str, String)]) {
        let h = self.hashes.entry(key.to_owned()).or_default();
        for (f, v) in fields {
            if !h.iter().any(|(k, _)| k == f) {
                h.push(((*f).to_owned(), v.clone()));
            }
        }
    }
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Float epoch seconds as LeanMQ writes them (`str(time.time())`).
pub(crate) fn epoch_secs_string(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
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
                        return Err(super::stream_missing(&stream));
                    }
                }
            }
            if let Some(log) = p.log.as_ref().filter(|l| !st.streams.contains_key(*l)) {
                return Err(super::stream_missing(log));
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
                            return Err(super::stream_missing(&a.keys.stream));
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
                if st.expiry.contains_key(&queue.expiry) {
                    delivered.retain(|e| {
                        let expired = st.is_expired(queue, e.id, now);
                        if expired {
                            st.remove_entry(queue, e.id);
                        }
                        !expired
                    });
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
            expiring: st.expiry.get(&queue.expiry).map_or(0, |z| z.len() as u64),
            first_id: s.entries.first().map(|(id, _)| id),
            last_id: s.entries.last_id(),
        })
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
            } else {
                out.entries.push(e);
            }
        }
        Ok(out)
    }

    async fn trim(&self, queue: &QueueKeys, retention: Duration) -> Result<u64> {
        let cutoff = EntryId::new(
            self.clock_ms().saturating_sub(retention.as_millis() as u64),
            0,
        );
        let mut st = self.lock();
        let Some(stream) = st.streams.get_mut(&queue.stream) else {
            return Ok(0);
        };
        let Some(group) = stream.groups.get(&queue.group) else {
            return Ok(0);
        };
        let mut limit = group.last_delivered.next().min(cutoff);
        if let Some((oldest, _)) = group.pending.first() {
            limit = limit.min(oldest);
        }
        let mut removed = Vec::new();
        let n = stream.entries.remove_before(limit, &mut removed);
        // Free the payloads after unlocking: other callers need the lock.
        drop(st);
        drop(removed);
        Ok(n as u64)
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
        let Some(group) = st
            .streams
            .get_mut(&queue.stream)
            .and_then(|s| s.groups.get_mut(&queue.group))
        else {
            return Err(no_group(queue));
        };
        let mut n = 0;
        for id in ids {
            if let Some(p) = group
                .pending
                .get_mut(id)
                .filter(|p| &*p.consumer == consumer)
            {
                f(p);
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
