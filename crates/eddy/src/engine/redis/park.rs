//! Retries due later than the visibility timeout (park.lua): the entry
//! stays pending with its delivery count, and a marker in the queue's
//! delayed set keeps its lease renewed until it is due (see `tend_retry` in
//! common.lua, which every read, sweep and claim runs first).

use std::time::Duration;

use redis::Value;

use super::{map_err, RedisEngine};
use crate::engine::{EntryId, ParkedRetry, QueueKeys};
use crate::error::Result;

/// How a marker's member starts (`RETRY_TAG` in common.lua, and the empty
/// field after it).
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
    min_idle: Duration,
) -> Result<u64> {
    let mut inv = engine.scripts.park.prepare_invoke();
    inv.key(&queue.stream)
        .key(&queue.delayed)
        .arg(&queue.group)
        .arg(consumer)
        .arg(after.as_millis() as u64)
        .arg(min_idle.as_millis() as u64);
    for id in ids {
        inv.arg(id.to_string());
    }
    engine.invoke(&inv).await
}

/// What a marker says: the entry, its delivery count and consumer when
/// parked, and its due time.
fn parse_marker(member: &str) -> Option<ParkedRetry> {
    let rest = member.strip_prefix(MARKER_START)?;
    let mut parts = rest.splitn(5, '|');
    let id = parts.next()?.parse().ok()?;
    let delivery_count = parts.next()?.parse().ok()?;
    let due_ms = parts.next()?.parse().ok()?;
    let _lease_ms: u64 = parts.next()?.parse().ok()?;
    let consumer = parts.next()?.to_owned();
    Some(ParkedRetry {
        id,
        consumer,
        delivery_count,
        due_ms,
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
        markers.extend(found.iter().step_by(2).filter_map(|m| parse_marker(m)));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    // ZSCAN may return a member twice: sorted on every field, copies meet.
    markers.sort_by(|a, b| {
        (a.due_ms, a.id, a.delivery_count, &a.consumer).cmp(&(
            b.due_ms,
            b.id,
            b.delivery_count,
            &b.consumer,
        ))
    });
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
        .filter_map(|(m, pending)| (m.due_ms > now_ms && still_parked(&m, pending)).then_some(m))
        .collect())
}

/// Whether the XPENDING reply for a marker's entry shows it as parked:
/// pending, for the same consumer, with the same delivery count (a claim
/// by another consumer raises the count).
fn still_parked(m: &ParkedRetry, pending: Value) -> bool {
    let Ok(rows) = redis::from_redis_value::<Vec<(String, String, u64, u64)>>(pending) else {
        return false;
    };
    rows.first().is_some_and(|(_, consumer, _, count)| {
        *consumer == m.consumer && *count == m.delivery_count
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_back_as_parked() {
        let m = "eddy-retry-later||1700000000000-3|2|1700000600000|30000|host-1-a|b";
        assert_eq!(
            parse_marker(m),
            Some(ParkedRetry {
                id: EntryId::new(1_700_000_000_000, 3),
                consumer: "host-1-a|b".into(),
                delivery_count: 2,
                due_ms: 1_700_000_600_000,
            })
        );
        for other in [
            "0123456789abcdef||{\"n\":1}",
            "eddy-retry-later||1-0|x|1|1|c",
            "eddy-retry-later||1-0|1|1|1",
        ] {
            assert_eq!(parse_marker(other), None, "{other}");
        }
    }
}
