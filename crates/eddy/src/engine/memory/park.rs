//! Retries due later than the visibility timeout, kept as the Redis engine
//! keeps them (see its `park.lua`): the entry stays pending, owned by its
//! consumer with its delivery count, and a marker for that delivery (the
//! entry and its count) says when it is due. Claims pass over the entry
//! until then; a later release of the same delivery replaces the marker; a
//! claim (which raises the count) or an acknowledgement leaves it without
//! effect, and it goes once due. Redis needs the marker because it cannot
//! date a delivery in the future; this engine could, but does the same, so
//! that both answer every call alike (markers count in `info().delayed`,
//! the entry's idle time grows while it waits).

use std::collections::BTreeSet;
use std::time::Duration;

use super::state::group_mut;
use super::{HashMap, State};
use crate::engine::{EntryId, ParkedRetry, QueueKeys};
use crate::error::Result;

/// One queue's markers: by delivery (entry, count) and by due time.
#[derive(Debug, Default)]
pub(super) struct Markers {
    due: HashMap<(EntryId, u64), u64>,
    by_due: BTreeSet<(u64, EntryId, u64)>,
}

impl Markers {
    fn set(&mut self, id: EntryId, count: u64, due_ms: u64) {
        if let Some(old) = self.due.insert((id, count), due_ms) {
            self.by_due.remove(&(old, id, count));
        }
        self.by_due.insert((due_ms, id, count));
    }

    fn unset(&mut self, id: EntryId, count: u64) {
        if let Some(old) = self.due.remove(&(id, count)) {
            self.by_due.remove(&(old, id, count));
        }
    }

    /// Whether the delivery `(id, count)` is held back at `now`.
    pub(super) fn holds(&self, id: EntryId, count: u64, now: u64) -> bool {
        self.due.get(&(id, count)).is_some_and(|due| *due > now)
    }

    pub(super) fn len(&self) -> usize {
        self.due.len()
    }

    /// Drop the markers due by `now`.
    fn drop_due(&mut self, now: u64) {
        while let Some(&(due, id, count)) = self.by_due.first() {
            if due > now {
                break;
            }
            self.by_due.pop_first();
            self.due.remove(&(id, count));
        }
    }
}

impl State {
    /// Park the entries among `ids` that `consumer` owns until `after` from
    /// `now` (`after` longer than the claimers' idle time, not zero).
    pub(super) fn park(
        &mut self,
        keys: &QueueKeys,
        consumer: &str,
        ids: &[EntryId],
        after: Duration,
        now: u64,
    ) -> Result<u64> {
        let due_ms = now + after.as_millis() as u64;
        let State {
            streams, parked, ..
        } = self;
        let group = group_mut(streams, keys)?;
        let markers = parked.entry(keys.delayed.clone()).or_default();
        let n = group.for_owned(consumer, ids, |id, p| {
            p.delivered_ms = now;
            markers.set(id, p.count, due_ms);
        });
        if markers.len() == 0 {
            parked.remove(&keys.delayed);
        }
        Ok(n)
    }

    /// Date back the delivery of the entries among `ids` that `consumer`
    /// owns to `at` (a release up to the claimers' idle time), replacing a
    /// park of the same delivery.
    pub(super) fn release_until(
        &mut self,
        keys: &QueueKeys,
        consumer: &str,
        ids: &[EntryId],
        at: u64,
    ) -> Result<u64> {
        let State {
            streams, parked, ..
        } = self;
        let group = group_mut(streams, keys)?;
        let mut markers = parked.get_mut(&keys.delayed);
        let n = group.for_owned(consumer, ids, |id, p| {
            p.delivered_ms = at;
            if let Some(m) = markers.as_deref_mut() {
                m.unset(id, p.count);
            }
        });
        if markers.is_some_and(|m| m.len() == 0) {
            parked.remove(&keys.delayed);
        }
        Ok(n)
    }

    /// Drop the queue's markers due by `now` (as Redis's promote does, on
    /// reads and sweeps).
    pub(super) fn drop_due_markers(&mut self, keys: &QueueKeys, now: u64) {
        if let Some(markers) = self.parked.get_mut(&keys.delayed) {
            markers.drop_due(now);
            if markers.len() == 0 {
                self.parked.remove(&keys.delayed);
            }
        }
    }

    /// The parked retries still waiting at `now`, soonest due first (see
    /// [`Engine::parked`](crate::engine::Engine::parked)).
    pub(super) fn parked_retries(&self, keys: &QueueKeys, now: u64) -> Vec<ParkedRetry> {
        let (Some(markers), Some(group)) = (
            self.parked.get(&keys.delayed),
            self.streams
                .get(&keys.stream)
                .and_then(|s| s.groups.get(&keys.group)),
        ) else {
            return Vec::new();
        };
        markers
            .by_due
            .iter()
            .filter(|(due, _, _)| *due > now)
            .filter_map(|&(due_ms, id, count)| {
                let p = group.pending.get(&id).filter(|p| p.count == count)?;
                Some(ParkedRetry {
                    id,
                    consumer: p.consumer.to_string(),
                    delivery_count: count,
                    due_ms,
                })
            })
            .collect()
    }
}
