//! Decoding Redis replies into engine types.

use std::collections::HashMap;

use super::topology::Conn;
use bytes::Bytes;
use redis::Value;

use super::map_err;
use crate::engine::{Claimed, ConsumerInfo, Entry, EntryId, QueueKeys, StreamInfo};
use crate::error::{Error, ErrorKind, Result};

pub(super) fn unexpected(what: &str, v: &Value) -> Error {
    Error::new(
        ErrorKind::Backend,
        format!("unexpected reply from Redis for {what}: {v:?}"),
    )
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(other)?.parse().ok(),
    }
}

fn id(v: &Value) -> Result<EntryId> {
    text(v).ok_or_else(|| unexpected("an entry id", v))?.parse()
}

/// One entry `[id, [field, value, ...]]`.
fn entry(v: Value, delivery_count: u64) -> Result<Entry> {
    let Value::Array(mut parts) = v else {
        return Err(unexpected("an entry", &v));
    };
    if parts.len() != 2 {
        return Err(unexpected("an entry", &Value::Array(parts)));
    }
    let fields = parts.pop().unwrap_or(Value::Nil);
    let id = id(&parts[0])?;
    let mut data = None;
    let mut others = Vec::new();
    if let Value::Array(fields) = fields {
        let mut it = fields.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let (Value::BulkString(k), Value::BulkString(v)) = (k, v) else {
                continue;
            };
            // The first `data` is the payload (as LeanMQ reads it); anything
            // else is kept so that a move carries it along.
            if k == b"data" && data.is_none() {
                data = Some(Bytes::from(v));
            } else {
                others.push((Bytes::from(k), Bytes::from(v)));
            }
        }
    }
    Ok(Entry::new(id, data, delivery_count).with_fields(others))
}

/// A list of entries (XRANGE, or the entries of one stream of XREADGROUP).
pub(super) fn entries(v: Value, delivery_count: u64) -> Result<Vec<Entry>> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) => items
            .into_iter()
            .map(|e| entry(e, delivery_count))
            .collect(),
        other => Err(unexpected("entries", &other)),
    }
}

/// The reply of `XREADGROUP ... STREAMS s >`: nil or `[[s, entries]]`.
/// Entries read with `>` are new to the group: their delivery count is 1.
pub(super) fn read_reply(v: Value) -> Result<Vec<Entry>> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(mut streams) => match streams.pop() {
            Some(Value::Array(mut pair)) if pair.len() == 2 => {
                entries(pair.pop().unwrap_or(Value::Nil), 1)
            }
            None => Ok(Vec::new()),
            Some(other) => Err(unexpected("XREADGROUP", &other)),
        },
        Value::Map(mut streams) => match streams.pop() {
            Some((_, es)) => entries(es, 1),
            None => Ok(Vec::new()),
        },
        other => Err(unexpected("XREADGROUP", &other)),
    }
}

/// The reply of read.lua: `{entries, next_due_ms or -1, has_expiry}`.
pub(super) fn read_script_reply(v: Value) -> Result<(Vec<Entry>, Option<u64>, bool)> {
    let Value::Array(parts) = v else {
        return Err(unexpected("read.lua", &v));
    };
    let mut it = parts.into_iter();
    let es = entries(it.next().unwrap_or(Value::Nil), 1)?;
    let next_due = match it.next() {
        Some(Value::Int(n)) if n >= 0 => Some(n as u64),
        _ => None,
    };
    let has_expiry = matches!(it.next(), Some(Value::Int(1)));
    Ok((es, next_due, has_expiry))
}

/// claim.lua's answer: whether the TTL index exists, then the candidates'
/// ids and delivery counts, flat.
pub(super) fn claim_candidates(v: Value) -> Result<(bool, Vec<(EntryId, u64)>)> {
    let Value::Array(items) = v else {
        return Err(unexpected("claim.lua", &v));
    };
    let mut it = items.iter();
    let has_expiry = int(it.next()).ok_or_else(|| unexpected("claim.lua", &Value::Nil))? == 1;
    let mut out = Vec::with_capacity(items.len() / 2);
    while let Some(v) = it.next() {
        let count = int(it.next()).ok_or_else(|| unexpected("claim.lua", v))?;
        out.push((id(v)?, count));
    }
    Ok((has_expiry, out))
}

/// `[k1, v1, k2, v2, ...]` (RESP2) or a map (RESP3) as a lookup table.
fn fields(v: Value) -> HashMap<String, Value> {
    match v {
        Value::Array(items) => {
            let mut out = HashMap::new();
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let Some(k) = text(&k) {
                    out.insert(k, v);
                }
            }
            out
        }
        Value::Map(pairs) => pairs
            .into_iter()
            .filter_map(|(k, v)| Some((text(&k)?, v)))
            .collect(),
        _ => HashMap::new(),
    }
}

fn entry_id_field(f: &HashMap<String, Value>, name: &str) -> Option<EntryId> {
    match f.get(name)? {
        Value::Array(parts) => parts.first().and_then(|v| id(v).ok()),
        _ => None,
    }
}

/// How many commands [`info_commands`] adds for one queue.
const INFO_COMMANDS: usize = 5;

/// The commands whose replies [`read_info`] turns into a queue's state.
fn info_commands(pipe: &mut redis::Pipeline, q: &QueueKeys) {
    pipe.cmd("XINFO")
        .arg("STREAM")
        .arg(&q.stream)
        .cmd("XINFO")
        .arg("GROUPS")
        .arg(&q.stream)
        .cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&q.stream)
        .arg(&q.group)
        .cmd("XPENDING")
        .arg(&q.stream)
        .arg(&q.group)
        .arg("-")
        .arg("+")
        .arg(1)
        .cmd("ZCARD")
        .arg(&q.delayed);
}

/// An error from reading a queue's state: a missing stream is the queue
/// gone.
fn info_error(q: &QueueKeys, e: redis::RedisError) -> Error {
    if e.to_string().contains("no such key") {
        return Error::new(
            ErrorKind::QueueNotFound,
            format!("queue `{}` does not exist: create it first", q.name),
        );
    }
    map_err(e)
}

/// The state of a queue's stream, in one pipeline with the server's time.
pub(super) async fn info(conn: &mut Conn, q: &QueueKeys) -> Result<StreamInfo> {
    let mut pipe = redis::pipe();
    info_commands(&mut pipe, q);
    pipe.cmd("TIME");
    let mut replies: Vec<Value> = pipe.query_async(conn).await.map_err(|e| info_error(q, e))?;
    let now_ms = match replies.pop() {
        Some(Value::Array(t)) => {
            int(t.first()).unwrap_or(0) * 1000 + int(t.get(1)).unwrap_or(0) / 1000
        }
        _ => 0,
    };
    let (mut info, count_after) = read_info(q, replies, now_ms)?;
    if let Some(after) = count_after {
        let mut pipe = redis::pipe();
        count_command(&mut pipe, q, after);
        let (entries,): (Vec<Value>,) = pipe.query_async(conn).await.map_err(map_err)?;
        settle_lag(&mut info, entries.len());
    }
    Ok(info)
}

/// The states of several queues' streams in one pipeline, at the server
/// time `now_ms`; each queue's own failure (its stream gone, a key of the
/// wrong type) is its own.
pub(super) async fn info_batch(
    conn: &mut Conn,
    queues: &[QueueKeys],
    now_ms: u64,
) -> Vec<Result<StreamInfo>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for q in queues {
        info_commands(&mut pipe, q);
    }
    let replies: Vec<redis::RedisResult<Value>> = match pipe.query_async(conn).await {
        Ok(r) => r,
        Err(e) => {
            let e = map_err(e);
            return queues.iter().map(|_| Err(e.clone())).collect();
        }
    };
    let mut replies = replies.into_iter();
    let mut out: Vec<Result<(StreamInfo, Option<EntryId>)>> = queues
        .iter()
        .map(|q| {
            // All of this queue's replies taken first: collecting into a
            // `Result` would stop at an error and leave the rest for the
            // next.
            let own: Vec<redis::RedisResult<Value>> =
                replies.by_ref().take(INFO_COMMANDS).collect();
            let own: redis::RedisResult<Vec<Value>> = own.into_iter().collect();
            own.map_err(|e| info_error(q, e))
                .and_then(|own| read_info(q, own, now_ms))
        })
        .collect();
    // The queues whose lag needs counting, all in one more pipeline.
    let mut counts = redis::pipe();
    counts.ignore_errors();
    let mut counted = Vec::new();
    for (i, (q, read)) in queues.iter().zip(&out).enumerate() {
        if let Ok((_, Some(after))) = read {
            count_command(&mut counts, q, *after);
            counted.push(i);
        }
    }
    if !counted.is_empty() {
        let replies: redis::RedisResult<Vec<redis::RedisResult<Vec<Value>>>> =
            counts.query_async(conn).await;
        let replies = match replies {
            Ok(r) => r.into_iter().map(|r| r.map_err(map_err)).collect(),
            Err(e) => {
                let e = map_err(e);
                vec![Err(e); counted.len()]
            }
        };
        for (i, entries) in counted.into_iter().zip(replies) {
            let slot = &mut out[i];
            match (entries, slot.as_mut()) {
                (Ok(entries), Ok((info, _))) => settle_lag(info, entries.len()),
                (Err(e), _) => *slot = Err(e),
                (Ok(_), Err(_)) => {}
            }
        }
    }
    out.into_iter().map(|r| r.map(|(info, _)| info)).collect()
}

/// A queue's state from the replies to [`info_commands`], and the group's
/// position if its lag is still to be counted ([`count_command`], then
/// [`settle_lag`]); until then `lag` is the estimate.
fn read_info(
    q: &QueueKeys,
    replies: Vec<Value>,
    now_ms: u64,
) -> Result<(StreamInfo, Option<EntryId>)> {
    let mut it = replies.into_iter();
    let stream = fields(it.next().unwrap_or(Value::Nil));
    let groups = it.next().unwrap_or(Value::Nil);
    let consumers = it.next().unwrap_or(Value::Nil);
    let oldest = it.next().unwrap_or(Value::Nil);
    let delayed = int(it.next().as_ref()).unwrap_or(0);

    let group = match groups {
        Value::Array(gs) => gs
            .into_iter()
            .map(fields)
            .find(|g| g.get("name").and_then(text).as_deref() == Some(q.group.as_str())),
        _ => None,
    }
    .ok_or_else(|| {
        Error::new(
            ErrorKind::NoGroup,
            format!(
                "consumer group `{}` of `{}` does not exist",
                q.group, q.stream
            ),
        )
    })?;
    let last_delivered = group
        .get("last-delivered-id")
        .and_then(|v| id(v).ok())
        .unwrap_or_default();
    let last_id = entry_id_field(&stream, "last-entry");
    let (lag, count_after) = match lag(&stream, &group, last_delivered, last_id) {
        Lag::Known(lag) => (lag, None),
        Lag::Estimate(estimate) => (estimate, Some(last_delivered)),
    };
    let consumers = match consumers {
        Value::Array(cs) => cs
            .into_iter()
            .map(fields)
            .map(|c| ConsumerInfo {
                name: c.get("name").and_then(text).unwrap_or_default(),
                pending: int(c.get("pending")).unwrap_or(0),
                idle_ms: int(c.get("idle")).unwrap_or(0),
            })
            .collect(),
        _ => Vec::new(),
    };
    let (oldest_pending_idle_ms, oldest_pending_age_ms) = match oldest {
        Value::Array(rows) => match rows.first() {
            Some(Value::Array(cols)) => (
                int(cols.get(2)),
                cols.first()
                    .and_then(|v| id(v).ok())
                    .map(|id| now_ms.saturating_sub(id.ms)),
            ),
            _ => (None, None),
        },
        _ => (None, None),
    };
    let info = StreamInfo {
        length: int(stream.get("length")).unwrap_or(0),
        pending: int(group.get("pending")).unwrap_or(0),
        lag,
        consumers,
        oldest_pending_idle_ms,
        oldest_pending_age_ms,
        delayed,
        first_id: entry_id_field(&stream, "first-entry"),
        last_id,
        lag_estimated: count_after.is_some(),
        entries_added: int(stream.get("entries-added")),
        entries_read: entries_read(&group, last_delivered),
    };
    Ok((info, count_after))
}

/// The group's `entries-read`; a group that has delivered nothing yet
/// (Redis may report no counter for it) has read none.
fn entries_read(group: &HashMap<String, Value>, last_delivered: EntryId) -> Option<u64> {
    int(group.get("entries-read")).or((last_delivered == EntryId::MIN).then_some(0))
}

/// Entries the bounded count of [`lag`] reads at most.
const LAG_COUNT: usize = 100;

/// The group's lag (entries not yet delivered), as far as the stream's
/// counters tell it.
enum Lag {
    Known(u64),
    /// Only an estimate: the entries after the group's position are to be
    /// counted, up to [`LAG_COUNT`].
    Estimate(u64),
}

/// The group's lag, at a cost that does not grow with the backlog.
///
/// Redis reports the lag itself until an entry is deleted from the stream;
/// eddy deletes (dead-letter, requeue, TTL), and after a deletion Redis
/// 7.0 reports none, or a wrong one, and its read counter can be off too
/// (redis/redis#13337; the differential test caught `entries-added -
/// entries-read` one too high). So after deletions up to [`LAG_COUNT`]
/// entries after the group's position are counted, exactly; a longer
/// backlog is estimated from the stream's counters and said to be.
fn lag(
    stream: &HashMap<String, Value>,
    group: &HashMap<String, Value>,
    last_delivered: EntryId,
    last_id: Option<EntryId>,
) -> Lag {
    let deleted = stream
        .get("max-deleted-entry-id")
        .and_then(|v| id(v).ok())
        .unwrap_or_default();
    // Nothing after the group's position is no lag, whatever the counters
    // say: after a failover the promoted replica's read counter can be
    // behind (the group's moves and its counter replicate apart).
    if last_id.is_none_or(|last| last <= last_delivered) {
        return Lag::Known(0);
    }
    if let Some(lag) = int(group.get("lag")).filter(|_| deleted == EntryId::MIN) {
        return Lag::Known(lag);
    }
    // Both counters over-count (deleted entries, acknowledged history, a
    // read counter that is off): the smaller one, and at least what a
    // count would have found.
    let length = int(stream.get("length")).unwrap_or(0);
    let pending = int(group.get("pending")).unwrap_or(0);
    let mut estimate = length.saturating_sub(pending);
    if let (Some(added), Some(read)) = (
        int(stream.get("entries-added")),
        int(group.get("entries-read")),
    ) {
        estimate = estimate.min(added.saturating_sub(read));
    }
    Lag::Estimate(estimate.max(LAG_COUNT as u64))
}

/// The bounded count of the entries after `after`.
fn count_command(pipe: &mut redis::Pipeline, q: &QueueKeys, after: EntryId) {
    pipe.cmd("XRANGE")
        .arg(&q.stream)
        .arg(format!("({after}"))
        .arg("+")
        .arg("COUNT")
        .arg(LAG_COUNT);
}

/// `counted` entries followed the group's position: under [`LAG_COUNT`]
/// that is the exact lag; otherwise the estimate stands.
fn settle_lag(info: &mut StreamInfo, counted: usize) {
    if counted < LAG_COUNT {
        info.lag = counted as u64;
        info.lag_estimated = false;
    }
}

/// The reply of claim.lua: `{{id, fields, count}...}, {deleted ids...}`.
pub(super) fn claim_reply(v: Value, picked: &[(EntryId, u64)]) -> Result<Claimed> {
    let Value::Array(rows) = v else {
        return Err(unexpected("XCLAIM", &v));
    };
    let mut out = Claimed::default();
    let mut rest = picked.iter();
    for row in rows {
        // Redis before 7.0 answers nil for an id whose entry was deleted.
        if row == Value::Nil {
            continue;
        }
        let mut e = entry(row, 1)?;
        // XCLAIM answers in the order it was asked: every picked id before
        // this one was not claimed.
        let mut found = None;
        for &(id, after) in rest.by_ref() {
            if id == e.id {
                found = Some(after);
                break;
            }
            out.deleted.push(id);
        }
        let Some(after) = found else {
            return Err(Error::new(
                ErrorKind::Backend,
                format!(
                    "Redis answered XCLAIM with entry {} that was not asked for, or out of order",
                    e.id
                ),
            ));
        };
        e.delivery_count = after;
        out.entries.push(e);
    }
    out.deleted.extend(rest.map(|(id, _)| *id));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eid(ms: u64) -> EntryId {
        format!("{ms}-0").parse().unwrap()
    }

    fn xclaimed(ms: u64) -> Value {
        Value::Array(vec![
            Value::BulkString(format!("{ms}-0").into_bytes()),
            Value::Array(vec![
                Value::BulkString(b"data".to_vec()),
                Value::BulkString(b"{}".to_vec()),
            ]),
        ])
    }

    #[test]
    fn claim_reply_keeps_counts_and_reports_what_was_not_claimed() {
        let picked = [(eid(1), 2), (eid(2), 3), (eid(3), 2), (eid(4), 5)];
        // 2 was deleted (XCLAIM dropped it), 4 was taken by another consumer.
        let reply = Value::Array(vec![xclaimed(1), Value::Nil, xclaimed(3)]);
        let got = claim_reply(reply, &picked).unwrap();
        let claimed: Vec<_> = got
            .entries
            .iter()
            .map(|e| (e.id, e.delivery_count))
            .collect();
        assert_eq!(claimed, vec![(eid(1), 2), (eid(3), 2)]);
        assert_eq!(got.deleted, vec![eid(2), eid(4)]);
    }

    #[test]
    fn claim_reply_refuses_an_id_it_did_not_ask_for() {
        let picked = [(eid(1), 2)];
        let err = claim_reply(Value::Array(vec![xclaimed(9)]), &picked).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend);
    }

    #[test]
    fn claim_candidates_reads_claim_lua() {
        let reply = Value::Array(vec![
            Value::Int(1),
            Value::BulkString(b"7-0".to_vec()),
            Value::Int(4),
            Value::BulkString(b"9-1".to_vec()),
            Value::Int(1),
        ]);
        assert_eq!(
            claim_candidates(reply).unwrap(),
            (true, vec![(eid(7), 4), (EntryId::new(9, 1), 1)])
        );
        assert_eq!(
            claim_candidates(Value::Array(vec![Value::Int(0)])).unwrap(),
            (false, vec![])
        );
        assert!(claim_candidates(Value::Int(1)).is_err());
        let odd = Value::Array(vec![Value::Int(0), Value::BulkString(b"7-0".to_vec())]);
        assert!(claim_candidates(odd).is_err());
    }
}
