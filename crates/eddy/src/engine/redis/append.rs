//! Plain appends (no TTL, no delay): XADDs and a check script in one
//! MULTI/EXEC, so the stream commands run outside Lua.

use redis::Value;

use super::{map_transaction_err, map_write_err, values, RedisEngine};
use crate::engine::{Append, Appended, QueueKeys};
use crate::error::{Error, ErrorKind, Result};

impl RedisEngine {
    /// Append entries without TTL or delay: one `XADD` per entry and
    /// append_check.lua in one MULTI/EXEC. Same checks and the same
    /// all-or-none outcome as append.lua, but Redis runs each XADD directly,
    /// not through a Lua call, which would cost more than the XADD itself.
    pub(super) async fn append_plain(&self, appends: &[Append]) -> Result<Vec<Appended>> {
        let mut queues: Vec<(&QueueKeys, usize)> = Vec::new();
        let mut pipe = redis::pipe();
        pipe.atomic().ignore_errors();
        for a in appends {
            match queues.iter_mut().find(|(q, _)| q.stream == a.keys.stream) {
                Some((_, n)) => *n += 1,
                None => queues.push((&a.keys, 1)),
            }
            // NOMKSTREAM: a stream deleted under its queue is not recreated
            // without its group; the check reports it.
            pipe.cmd("XADD")
                .arg(&a.keys.stream)
                .arg("NOMKSTREAM")
                .arg("*")
                .arg("data")
                .arg(a.data.as_ref());
        }
        let check = pipe
            .cmd("EVAL")
            .arg(APPEND_CHECK.as_str())
            .arg(queues.len() * 4);
        for (q, _) in &queues {
            check
                .arg(&q.meta)
                .arg(&q.stream)
                .arg(&q.expiry)
                .arg(&q.delayed);
        }
        for (_, n) in &queues {
            check.arg(*n);
        }
        let mut replies: Vec<Value> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(|e| map_transaction_err(e, map_write_err))?;
        let checked = replies.pop();
        if replies.len() != appends.len() {
            return Err(Error::new(
                ErrorKind::Backend,
                "Redis answered an append's MULTI/EXEC with the wrong number of replies",
            ));
        }
        match checked {
            Some(Value::Int(1)) => {}
            Some(Value::ServerError(e)) => return Err(map_write_err(e.into())),
            other => {
                return Err(values::unexpected(
                    "append_check.lua",
                    &other.unwrap_or(Value::Nil),
                ))
            }
        }
        replies
            .into_iter()
            .map(|reply| match reply {
                Value::BulkString(id) => std::str::from_utf8(&id)
                    .map_err(|_| values::unexpected("XADD", &Value::BulkString(id.clone())))?
                    .parse()
                    .map(Appended::Entry),
                Value::ServerError(e) => Err(map_write_err(e.into())),
                other => Err(values::unexpected("XADD", &other)),
            })
            .collect()
    }
}

/// The check that ends a plain append's transaction (see the script), as
/// sent: without comments or indentation, since EVAL makes Redis hash the
/// whole text on every call.
static APPEND_CHECK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("lua/append_check.lua")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
});
