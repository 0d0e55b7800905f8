//! Retries due later than the visibility timeout (park.lua): the entry
//! stays pending with its delivery count, and a marker for that delivery
//! in the queue's delayed set, scored by its due time, makes claims pass
//! over it until then (claim.lua).

use std::time::Duration;

use redis::Value;

use super::{map_err, RedisEngine};
use crate::engine::{EntryId, ParkedRetry, QueueKeys};
use crate::error::Result;

/// How a marker's member starts (`RETRY_TAG` in common.lua).
const MARKER_START: &str = "eddy-retry-later||";

/// [`Engine::release`](crate::engine::Engine::release) with `after` past
/// `min_idle`: one script, so that the entry is never out of the pending
/// list, whenever the process dies.
pub(super) async fn park(
    engine: &RedisEngine,
    queue: &QueueKeys,
    consumer: &str,
    ids: &[EntryId],
    after: Duration,
) -> Result<u64> {
    let mut inv = engine.scripts.park.prepare_invoke();
    inv.key(&queue.stream)
        .key(&queue.delayed)
        .arg(&queue.group)
        .arg(consumer)
        .arg(after.as_millis() as u64);
    for id in ids {
        inv.arg(id.to_string());
    }
    engine.invoke(&inv).await
}

/// What a marker says: the delivery (entry and count) it holds back, due
/// at `score` (its consumer is the entry's owner, read from the pending
/// list).
fn parse_marker(member: &str, score: &str) -> Option<ParkedRetry> {
    let (id, count) = member.strip_prefix(MARKER_START)?.split_once('|')?;
    Some(ParkedRetry {
        id: id.parse().ok()?,
        consumer: String::new(),
        delivery_count: count.parse().ok()?,
        due_ms: score.parse::<f64>().ok()? as u64,
    })
}

/// [`Engine::parked`](crate::engine::Engine::parked): the markers, found
/// with ZSCAN (a queue's delayed set may hold many delayed sends, which a
/// single command or script would walk while blocking the server), then
/// checked against the pending list in one pipeline with the server's
/// clock.
pub(super) async fn parked(engine: &RedisEngine, queue: &QueueKeys) -> Result<Vec<ParkedRetry>> {
    let mut conn = engine.conn();
    let mut markers = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("ZSCAN")
            .arg(&queue.delayed)
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{MARKER_START}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        // ZSCAN answers member, score, member, score...
        markers.extend(
            found
                .chunks_exact(2)
                .filter_map(|pair| parse_marker(&pair[0], &pair[1])),
        );
        if next == 0 {
            break;
        }
        cursor = next;
    }
    // ZSCAN may return a member twice.
    markers.sort_by_key(|m| (m.due_ms, m.id, m.delivery_count));
    markers.dedup();
    if markers.is_empty() {
        return Ok(markers);
    }
    // A queue deleted meanwhile answers NOGROUP: its markers are stale.
    let mut pipe = redis::pipe();
    pipe.ignore_errors().cmd("TIME");
    for m in &markers {
        let id = m.id.to_string();
        pipe.cmd("XPENDING")
            .arg(&queue.stream)
            .arg(&queue.group)
            .arg(&id)
            .arg(&id)
            .arg(1);
    }
    let replies: Vec<Value> = pipe.query_async(&mut conn).await.map_err(map_err)?;
    let mut replies = replies.into_iter();
    let now_ms = match replies.next() {
        Some(time) => match redis::from_redis_value::<(u64, u64)>(time) {
            Ok((s, us)) => s * 1000 + us / 1000,
            Err(_) => 0,
        },
        None => 0,
    };
    Ok(markers
        .into_iter()
        .zip(replies)
        .filter(|(m, _)| m.due_ms > now_ms)
        .filter_map(|(m, pending)| still_parked(m, pending))
        .collect())
}

/// The parked retry, with its consumer, if the XPENDING reply for its
/// entry shows the delivery it holds back still pending (a claim raises
/// the count; an acknowledgement ends it).
fn still_parked(mut m: ParkedRetry, pending: Value) -> Option<ParkedRetry> {
    let rows = redis::from_redis_value::<Vec<(String, String, u64, u64)>>(pending).ok()?;
    let (_, consumer, _, count) = rows.into_iter().next()?;
    (count == m.delivery_count).then(|| {
        m.consumer = consumer;
        m
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_back_as_parked() {
        let m = "eddy-retry-later||1700000000000-3|2";
        assert_eq!(
            parse_marker(m, "1700000600000"),
            Some(ParkedRetry {
                id: EntryId::new(1_700_000_000_000, 3),
                consumer: String::new(),
                delivery_count: 2,
                due_ms: 1_700_000_600_000,
            })
        );
        for other in [
            "0123456789abcdef||{\"n\":1}",
            "eddy-retry-later||1-0|x",
            "eddy-retry-later||1-0",
        ] {
            assert_eq!(parse_marker(other, "1"), None, "{other}");
        }
    }
}
