//! Retries due later than the visibility timeout, kept as the Redis engine
//! keeps them (see its `park.lua`): the entry stays pending, owned by its
//! consumer with its delivery count, and a marker in the queue's delayed
//! map renews its lease until it is due, then dates its delivery back so
//! that claimers take it at once. Redis needs the marker because it
//! cannot date a delivery in the future; this engine could, but does the
//! same, so that both answer every call alike (the marker counts in
//! `info().delayed`, the lease idles the same way).

use std::sync::Arc;
use std::time::Duration;

use super::{no_group, Delayed, State};
use crate::engine::{EntryId, ParkedRetry, QueueKeys};
use crate::error::Result;

/// A parked retry's marker.
#[derive(Debug)]
pub(super) struct Parked {
    id: EntryId,
    /// The delivery count when parked: a marker whose entry's count moved
    /// (another consumer claimed it) is stale.
    count: u64,
    consumer: Arc<str>,
    due_ms: u64,
    /// The claimers' idle time (the visibility timeout).
    lease_ms: u64,
}

/// How often a parked retry's lease is renewed: a third of the claimers'
/// idle time, as consumers extend their own leases.
fn renew_every(lease_ms: u64) -> u64 {
    (lease_ms / 3).max(1)
}

impl State {
    /// Park the entries among `ids` that `consumer` owns until `after` from
    /// `now` (`after` longer than `min_idle`, which is not zero).
    pub(super) fn park(
        &mut self,
        keys: &QueueKeys,
        consumer: &str,
        ids: &[EntryId],
        after: Duration,
        min_idle: Duration,
        now: u64,
    ) -> Result<u64> {
        let due_ms = now + after.as_millis() as u64;
        let lease_ms = min_idle.as_millis() as u64;
        let group = self
            .streams
            .get_mut(&keys.stream)
            .and_then(|s| s.groups.get_mut(&keys.group))
            .ok_or_else(|| no_group(keys))?;
        let mut markers = Vec::new();
        for id in ids {
            let Some(p) = group
                .pending
                .get_mut(id)
                .filter(|p| &*p.consumer == consumer)
            else {
                continue;
            };
            p.delivered_ms = now;
            markers.push(Parked {
                id: *id,
                count: p.count,
                consumer: p.consumer.clone(),
                due_ms,
                lease_ms,
            });
        }
        let n = markers.len() as u64;
        for m in markers {
            let at = due_ms.min(now + renew_every(lease_ms));
            self.schedule(keys, at, Delayed::Retry(m));
        }
        Ok(n)
    }

    /// Tend a parked retry whose marker came due (see the module): renew
    /// its lease, or make it claimable once due; a stale marker is dropped.
    pub(super) fn tend_retry(&mut self, keys: &QueueKeys, m: Parked, now: u64) {
        let Some(p) = self
            .streams
            .get_mut(&keys.stream)
            .and_then(|s| s.groups.get_mut(&keys.group))
            .and_then(|g| g.pending.get_mut(&m.id))
            .filter(|p| p.consumer == m.consumer && p.count == m.count)
        else {
            return;
        };
        if m.due_ms <= now {
            p.delivered_ms = now.saturating_sub(m.lease_ms);
            return;
        }
        p.delivered_ms = now;
        let at = m.due_ms.min(now + renew_every(m.lease_ms));
        self.schedule(keys, at, Delayed::Retry(m));
    }

    /// The parked retries still waiting at `now`, soonest due first (see
    /// [`Engine::parked`](crate::engine::Engine::parked)).
    pub(super) fn parked(&self, keys: &QueueKeys, now: u64) -> Vec<ParkedRetry> {
        let (Some(delayed), Some(group)) = (
            self.delayed.get(&keys.delayed),
            self.streams
                .get(&keys.stream)
                .and_then(|s| s.groups.get(&keys.group)),
        ) else {
            return Vec::new();
        };
        let mut out: Vec<ParkedRetry> = delayed
            .values()
            .filter_map(|d| match d {
                Delayed::Retry(m) => Some(m),
                Delayed::Send { .. } => None,
            })
            .filter(|m| m.due_ms > now)
            .filter(|m| {
                group
                    .pending
                    .get(&m.id)
                    .is_some_and(|p| p.consumer == m.consumer && p.count == m.count)
            })
            .map(|m| ParkedRetry {
                id: m.id,
                consumer: m.consumer.to_string(),
                delivery_count: m.count,
                due_ms: m.due_ms,
            })
            .collect();
        out.sort_by_key(|p| (p.due_ms, p.id));
        out
    }

    /// Put `d` in the queue's delayed map, due at `at`.
    fn schedule(&mut self, keys: &QueueKeys, at: u64, d: Delayed) {
        self.delayed_seq += 1;
        let seq = self.delayed_seq;
        self.delayed
            .entry(keys.delayed.clone())
            .or_default()
            .insert((at, seq), d);
    }
}
