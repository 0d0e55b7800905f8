//! Claims: the candidates from claim.lua, then XCLAIM of those a claim
//! takes.

use redis::Value;

use super::{redis_count, values, RedisEngine};
use crate::engine::{EntryId, QueueKeys};
use crate::error::Result;

impl RedisEngine {
    /// The first round trip of a claim: claim.lua (types checked, the
    /// claimer registered, whether a TTL index exists, and the oldest
    /// pending ids idle for at least `min_idle_ms`, in id order, with their
    /// delivery counts, parked retries not yet due passed over).
    pub(super) async fn claim_candidates(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        min_idle_ms: u64,
        count: usize,
    ) -> Result<(bool, Vec<(EntryId, u64)>)> {
        let mut inv = self.scripts.claim.prepare_invoke();
        inv.key(&queue.stream)
            .key(&queue.expiry)
            .key(&queue.delayed)
            .arg(&queue.group)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg(redis_count(count));
        let reply: Value = self.invoke_read(&inv).await?;
        values::claim_candidates(reply)
    }
}

/// What one claim takes of the idle pending entries (oldest first, with
/// their delivery counts): up to `count`, each with its count once claimed.
/// An entry whose count then reaches `alone_from` was redelivered before
/// and may be one that kills its process: it is taken alone, as the whole
/// batch when it is first in line, else the batch stops before it.
pub(super) fn pick_claims(
    idle: &[(EntryId, u64)],
    count: usize,
    alone_from: u64,
) -> Vec<(EntryId, u64)> {
    let mut picked = Vec::new();
    for &(id, deliveries) in idle {
        let after = deliveries.saturating_add(1);
        let alone = after >= alone_from;
        if alone && !picked.is_empty() {
            break;
        }
        picked.push((id, after));
        if alone || picked.len() >= count {
            break;
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(counts: &[u64]) -> Vec<(EntryId, u64)> {
        counts
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{}-0", i + 1).parse().unwrap(), *c))
            .collect()
    }

    fn counts(picked: &[(EntryId, u64)]) -> Vec<u64> {
        picked.iter().map(|(_, c)| *c).collect()
    }

    #[test]
    fn a_batch_stops_before_a_redelivered_entry() {
        // alone_from 3: an entry delivered twice before is claimed alone.
        assert_eq!(
            counts(&pick_claims(&idle(&[1, 1, 2, 1]), 10, 3)),
            vec![2, 2]
        );
        assert_eq!(counts(&pick_claims(&idle(&[2, 1, 1]), 10, 3)), vec![3]);
        assert_eq!(
            counts(&pick_claims(&idle(&[1, 1, 1, 1]), 3, 3)),
            vec![2, 2, 2]
        );
        assert!(pick_claims(&idle(&[]), 3, 3).is_empty());
        // "never alone" stays never, even at the top of the count range.
        assert_eq!(
            counts(&pick_claims(&idle(&[u64::MAX]), 3, 1 << 53)),
            vec![u64::MAX]
        );
    }
}
