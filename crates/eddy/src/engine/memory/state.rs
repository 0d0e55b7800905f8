//! The engine's state, as Redis would hold it: streams with their
//! consumer groups and pending lists, hashes, sets, TTL indexes and delayed
//! entries, and the operations on it that several engine calls share.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;

use super::log::Log;
use super::{no_group, park, HashMap};
use crate::engine::{Entry, EntryId, QueueKeys};
use crate::error::Result;

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) streams: HashMap<String, Stream>,
    pub(super) hashes: HashMap<String, Vec<(String, String)>>,
    pub(super) sets: HashMap<String, BTreeSet<String>>,
    /// TTL indexes: expiry key → stream id → expiry in float epoch seconds.
    pub(super) expiry: HashMap<String, BTreeMap<EntryId, f64>>,
    /// Delayed entries: delayed key → (due ms, sequence) → entry.
    pub(super) delayed: HashMap<String, BTreeMap<(u64, u64), Delayed>>,
    pub(super) delayed_seq: u64,
    /// Retries parked past the visibility timeout: delayed key → markers
    /// (see [`super::park`]).
    pub(super) parked: HashMap<String, park::Markers>,
}

#[derive(Debug)]
pub(super) struct Delayed {
    pub(super) data: Bytes,
    pub(super) expire_at: Option<f64>,
}

/// One stream entry: its `data` and any other fields a move carried over.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub(super) data: Bytes,
    pub(super) fields: Vec<(Bytes, Bytes)>,
}

impl Stored {
    pub(super) fn entry(&self, id: EntryId, delivery_count: u64) -> Entry {
        Entry::new(id, Some(self.data.clone()), delivery_count).with_fields(self.fields.clone())
    }
}

#[derive(Debug, Default)]
pub(super) struct Stream {
    pub(super) entries: Log<Stored>,
    pub(super) last_id: EntryId,
    pub(super) groups: HashMap<String, Group>,
    /// Entries ever appended (Redis `entries-added`).
    pub(super) entries_added: u64,
}

#[derive(Debug, Default)]
pub(super) struct Group {
    pub(super) last_delivered: EntryId,
    pub(super) pending: Log<Pending>,
    /// Consumer name → last time it read (ms). The name is shared with its
    /// pending entries.
    pub(super) consumers: BTreeMap<Arc<str>, u64>,
    /// Entries delivered to the group for the first time (Redis
    /// `entries-read`).
    pub(super) entries_read: u64,
}

/// The consumer group of `keys` in `streams`: a missing stream or group is
/// the queue deleted or purged by hand.
pub(super) fn group_mut<'a>(
    streams: &'a mut HashMap<String, Stream>,
    keys: &QueueKeys,
) -> Result<&'a mut Group> {
    streams
        .get_mut(&keys.stream)
        .and_then(|s| s.groups.get_mut(&keys.group))
        .ok_or_else(|| no_group(keys))
}

impl Group {
    /// Apply `f` to the pending entries among `ids` that `consumer` owns;
    /// returns how many there were.
    pub(super) fn for_owned(
        &mut self,
        consumer: &str,
        ids: &[EntryId],
        mut f: impl FnMut(EntryId, &mut Pending),
    ) -> u64 {
        let mut n = 0;
        for id in ids {
            if let Some(p) = self
                .pending
                .get_mut(id)
                .filter(|p| &*p.consumer == consumer)
            {
                f(*id, p);
                n += 1;
            }
        }
        n
    }

    /// Record that `consumer` read at `now`; returns its shared name.
    pub(super) fn seen(&mut self, consumer: &str, now: u64) -> Arc<str> {
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
pub(super) struct Pending {
    pub(super) consumer: Arc<str>,
    pub(super) delivered_ms: u64,
    pub(super) count: u64,
}

impl State {
    pub(super) fn xadd(&mut self, stream: &str, now_ms: u64, data: Bytes) -> EntryId {
        self.xadd_fields(stream, now_ms, data, Vec::new())
    }

    pub(super) fn xadd_fields(
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
        s.entries_added += 1;
        s.entries.insert(id, Stored { data, fields });
        id
    }

    /// Move due delayed entries into the stream, and drop the markers of
    /// parked retries that are due. Returns the next due time. A stream
    /// that is gone is not recreated: its delayed entries wait until the
    /// queue is.
    pub(super) fn promote(&mut self, keys: &QueueKeys, now_ms: u64) -> Option<u64> {
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

    pub(super) fn is_expired(&self, keys: &QueueKeys, id: EntryId, now_ms: u64) -> bool {
        self.expiry
            .get(&keys.expiry)
            .and_then(|z| z.get(&id))
            .is_some_and(|at| *at <= now_ms as f64 / 1000.0)
    }

    /// Remove the entries of `stream` below `cutoff` that every group has
    /// acknowledged, and their TTLs from `expiry`; the payloads go to `out`.
    pub(super) fn trim_acknowledged(
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
    pub(super) fn trim_log_window(&mut self, log: &str, cutoff: EntryId, out: &mut Vec<Stored>) {
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
    pub(super) fn remove_entry(&mut self, keys: &QueueKeys, id: EntryId) -> bool {
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

    pub(super) fn hset_missing(&mut self, key: &str, fields: &[(&str, String)]) {
        let h = self.hashes.entry(key.to_owned()).or_default();
        for (f, v) in fields {
            if !h.iter().any(|(k, _)| k == f) {
                h.push(((*f).to_owned(), v.clone()));
            }
        }
    }
}
