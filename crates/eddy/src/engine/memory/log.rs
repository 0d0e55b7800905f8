//! An id-ordered log: what a stream's entries and a group's pending list
//! are in the embedded engine.
//!
//! Stream ids only grow (XADD picks an id above the last one, and a group
//! delivers entries in id order), so both are appended at the back and
//! mostly removed at the front (trimming, acknowledging the oldest first).
//! A `VecDeque` sorted by id does that without a tree node per entry:
//! appends are pushes, lookups binary searches, and a removal in the middle
//! leaves a tombstone that is dropped once it reaches either end (or when
//! tombstones outnumber live entries).

use std::collections::VecDeque;

use crate::engine::EntryId;

/// Tombstones tolerated beyond the live entries before compacting.
const SLACK: usize = 32;

#[derive(Debug)]
pub(super) struct Log<V> {
    /// Sorted by id; `None` is a removed entry.
    slots: VecDeque<(EntryId, Option<V>)>,
    live: usize,
}

impl<V> Default for Log<V> {
    fn default() -> Self {
        Self {
            slots: VecDeque::new(),
            live: 0,
        }
    }
}

impl<V> Log<V> {
    /// Live entries.
    pub(super) fn len(&self) -> usize {
        self.live
    }

    fn position(&self, id: EntryId) -> Result<usize, usize> {
        self.slots.binary_search_by(|(k, _)| k.cmp(&id))
    }

    /// Insert or replace; an id above every other is a push.
    pub(super) fn insert(&mut self, id: EntryId, value: V) {
        if self.slots.back().is_none_or(|(last, _)| *last < id) {
            self.slots.push_back((id, Some(value)));
            self.live += 1;
            return;
        }
        match self.position(id) {
            Ok(i) => {
                if self.slots[i].1.replace(value).is_none() {
                    self.live += 1;
                }
            }
            Err(i) => {
                self.slots.insert(i, (id, Some(value)));
                self.live += 1;
            }
        }
    }

    pub(super) fn get(&self, id: &EntryId) -> Option<&V> {
        let i = self.position(*id).ok()?;
        self.slots[i].1.as_ref()
    }

    pub(super) fn get_mut(&mut self, id: &EntryId) -> Option<&mut V> {
        let i = self.position(*id).ok()?;
        self.slots[i].1.as_mut()
    }

    #[cfg(test)]
    pub(super) fn contains_key(&self, id: &EntryId) -> bool {
        self.get(id).is_some()
    }

    pub(super) fn remove(&mut self, id: &EntryId) -> Option<V> {
        let i = self.position(*id).ok()?;
        let v = self.slots[i].1.take()?;
        self.live -= 1;
        self.tidy();
        Some(v)
    }

    /// Drop tombstones at both ends, and all of them once they outnumber
    /// the live entries (so removals stay amortized O(log n)).
    fn tidy(&mut self) {
        while self.slots.front().is_some_and(|(_, v)| v.is_none()) {
            self.slots.pop_front();
        }
        while self.slots.back().is_some_and(|(_, v)| v.is_none()) {
            self.slots.pop_back();
        }
        if self.slots.len() > 2 * self.live + SLACK {
            self.slots.retain(|(_, v)| v.is_some());
        }
    }

    /// Remove every entry with an id below `limit` into `out` (so that the
    /// caller can drop them after releasing its lock); returns how many.
    pub(super) fn remove_before(&mut self, limit: EntryId, out: &mut Vec<V>) -> usize {
        let before = out.len();
        let end = self.slots.partition_point(|(id, _)| *id < limit);
        out.reserve(end);
        out.extend(self.slots.drain(..end).filter_map(|(_, v)| v));
        let removed = out.len() - before;
        self.live -= removed;
        self.tidy();
        removed
    }

    /// The id of the `n`-th live entry (from 1) counting back from the
    /// last one below `limit`, if there are that many.
    pub(super) fn nth_back_before(&self, limit: EntryId, n: u64) -> Option<EntryId> {
        let end = self.slots.partition_point(|(id, _)| *id < limit);
        let skip = usize::try_from(n.checked_sub(1)?).ok()?;
        self.slots
            .range(..end)
            .rev()
            .filter(|(_, v)| v.is_some())
            .nth(skip)
            .map(|(id, _)| *id)
    }

    pub(super) fn clear(&mut self) {
        self.slots.clear();
        self.live = 0;
    }

    /// Live entries with ids at or above `start`, in id order.
    pub(super) fn range_from(&self, start: EntryId) -> impl Iterator<Item = (EntryId, &V)> {
        let i = self.slots.partition_point(|(k, _)| *k < start);
        self.slots
            .range(i..)
            .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
    }

    /// Live entries with ids in `[start, end]`, in id order.
    pub(super) fn range(
        &self,
        start: EntryId,
        end: EntryId,
    ) -> impl Iterator<Item = (EntryId, &V)> {
        self.range_from(start).take_while(move |(k, _)| *k <= end)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (EntryId, &V)> {
        self.range_from(EntryId::MIN)
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (EntryId, &mut V)> {
        self.slots
            .iter_mut()
            .filter_map(|(k, v)| v.as_mut().map(|v| (*k, v)))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    pub(super) fn first(&self) -> Option<(EntryId, &V)> {
        self.iter().next()
    }

    pub(super) fn last_id(&self) -> Option<EntryId> {
        // Trailing tombstones are always popped.
        self.slots.back().map(|(k, _)| *k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> EntryId {
        EntryId::new(n, 0)
    }

    fn ids(log: &Log<u64>) -> Vec<u64> {
        log.iter().map(|(k, _)| k.ms).collect()
    }

    #[test]
    fn behaves_like_an_ordered_map() {
        let mut log = Log::default();
        for n in [1, 2, 3, 5, 8] {
            log.insert(id(n), n);
        }
        // Out of order and replacing.
        log.insert(id(4), 4);
        log.insert(id(0), 0);
        log.insert(id(5), 50);
        assert_eq!(ids(&log), [0, 1, 2, 3, 4, 5, 8]);
        assert_eq!(log.get(&id(5)), Some(&50));
        assert_eq!(log.len(), 7);
        assert_eq!(log.remove(&id(3)), Some(3));
        assert_eq!(log.remove(&id(3)), None);
        assert!(!log.contains_key(&id(3)));
        assert_eq!(log.len(), 6);
        log.insert(id(3), 33);
        assert_eq!(log.get(&id(3)), Some(&33));
        assert_eq!(log.remove(&id(8)), Some(8));
        assert_eq!(log.last_id(), Some(id(5)));
        assert_eq!(
            log.range(id(2), id(4))
                .map(|(k, _)| k.ms)
                .collect::<Vec<_>>(),
            [2, 3, 4]
        );
        let mut out = Vec::new();
        assert_eq!(log.remove_before(id(3), &mut out), 3);
        assert_eq!(out, [0, 1, 2]);
        assert_eq!(ids(&log), [3, 4, 5]);
        assert_eq!(log.first().map(|(k, v)| (k.ms, *v)), Some((3, 33)));
        assert_eq!(log.remove_before(id(100), &mut out), 3);
        assert_eq!(out, [0, 1, 2, 33, 4, 50]);
        assert_eq!(log.len(), 0);
        assert_eq!(log.last_id(), None);
    }

    #[test]
    fn compacts_tombstones() {
        let mut log = Log::default();
        for n in 0..1000 {
            log.insert(id(n), n);
        }
        // Keep the ends, remove the middle.
        for n in 1..999 {
            log.remove(&id(n));
        }
        assert_eq!(log.len(), 2);
        assert!(log.slots.len() <= 2 * log.len() + SLACK);
        assert_eq!(ids(&log), [0, 999]);
        for (_, v) in log.iter_mut() {
            *v += 1;
        }
        assert_eq!(log.values().copied().collect::<Vec<_>>(), [1, 1000]);
    }
}
