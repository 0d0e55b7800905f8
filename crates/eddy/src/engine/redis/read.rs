//! Reads: a non-blocking read in one MULTI/EXEC (read.lua when Redis
//! refuses transactions), and blocking reads on connections of their own.

use std::time::Duration;

use redis::Value;

use super::{map_err, map_transaction_err, redis_count, values, RedisEngine};
use crate::engine::{Entry, QueueKeys};
use crate::error::{Error, ErrorKind, Result};

impl RedisEngine {
    /// `XREADGROUP ... BLOCK` on a connection of its own.
    pub(super) async fn blocking_read(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        count: usize,
        wait: Duration,
    ) -> Result<Vec<Entry>> {
        let (generation, mut c) = self.blocking_conn().await?;
        let ms = wait.as_millis().clamp(1, u64::MAX as u128) as u64;
        let cmd = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&queue.group)
            .arg(consumer)
            .arg("COUNT")
            .arg(redis_count(count))
            .arg("BLOCK")
            .arg(ms)
            .arg("STREAMS")
            .arg(&queue.stream)
            .arg(">")
            .clone();
        let limit = wait + self.options.response_timeout;
        let reply = tokio::time::timeout(limit, cmd.query_async::<Value>(&mut c)).await;
        match reply {
            Ok(Ok(v)) => {
                self.return_blocking_conn((generation, c));
                values::read_reply(v)
            }
            // A failed or timed-out connection is dropped, not pooled; after
            // a failover (UNBLOCKED, READONLY, a dropped connection) the
            // next one goes to the new master, and the consumer's next
            // read re-checks its pending entries.
            Ok(Err(e)) => {
                self.topology.read_failed(generation).await;
                Err(map_err(e))
            }
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "Redis at {} did not answer a blocking read in time",
                    self.url
                ),
            )),
        }
    }

    /// A non-blocking read: prepare_read.lua and XREADGROUP in one
    /// MULTI/EXEC, so entries go straight from XREADGROUP to us (through Lua
    /// they would cost more than the read itself), then expired ones are
    /// dropped if the queue has a TTL index. Redis refuses every command of
    /// a MULTI while it is out of memory, where read.lua (one script whose
    /// writes are pcalled) still reads: that is the fallback. Returns the
    /// entries, the next delayed due time and whether the TTL index exists.
    pub(super) async fn read_now(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        count: usize,
    ) -> Result<(Vec<Entry>, Option<u64>, bool)> {
        let mut reloaded = false;
        loop {
            let mut pipe = redis::pipe();
            pipe.atomic()
                .ignore_errors()
                .cmd("EVALSHA")
                .arg(self.scripts.prepare_read.get_hash())
                .arg(3)
                .arg(&queue.stream)
                .arg(&queue.expiry)
                .arg(&queue.delayed)
                .arg(&queue.group)
                .arg(consumer)
                .cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&queue.group)
                .arg(consumer)
                .arg("COUNT")
                .arg(redis_count(count))
                .arg("STREAMS")
                .arg(&queue.stream)
                .arg(">");
            let replied: redis::RedisResult<Vec<Value>> = pipe.query_async(&mut self.conn()).await;
            let mut replies = match replied {
                Ok(replies) => replies,
                Err(e) => {
                    let err = map_transaction_err(e, map_err);
                    if err.kind() != ErrorKind::OutOfMemory {
                        return Err(err);
                    }
                    return self.read_in_script(queue, consumer, count).await;
                }
            };
            let (Some(read), Some(prepared)) = (replies.pop(), replies.pop()) else {
                return Err(Error::new(
                    ErrorKind::Backend,
                    "Redis answered a read's MULTI/EXEC with too few replies",
                ));
            };
            let mut entries = match read {
                Value::ServerError(e) => return Err(map_err(e.into())),
                v => values::read_reply(v)?,
            };
            let (next_due, has_expiry) = match prepared {
                Value::Array(parts) => match parts.as_slice() {
                    [Value::Int(due), Value::Int(expiry)] => {
                        (u64::try_from(*due).ok(), *expiry == 1)
                    }
                    _ => return Err(values::unexpected("prepare_read.lua", &Value::Array(parts))),
                },
                // Redis lost the script (a restart, SCRIPT FLUSH): load it.
                // This read promoted nothing and registered no consumer: if
                // it delivered nothing either, read again; else keep what it
                // delivered and check it for TTLs to be safe.
                Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::NoScript) => {
                    self.scripts
                        .prepare_read
                        .load_async(&mut self.conn())
                        .await
                        .map_err(map_err)?;
                    if entries.is_empty() && !reloaded {
                        reloaded = true;
                        continue;
                    }
                    (None, true)
                }
                Value::ServerError(e) => return Err(map_err(e.into())),
                other => return Err(values::unexpected("prepare_read.lua", &other)),
            };
            if has_expiry && !entries.is_empty() {
                entries = self.drop_expired(queue, entries).await?;
            }
            return Ok((entries, next_due, has_expiry));
        }
    }

    /// read.lua: promotion, the read and the TTL filter in one script (the
    /// entries pass through Lua, which costs), for when Redis refuses
    /// MULTI/EXEC: out of memory.
    async fn read_in_script(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        count: usize,
    ) -> Result<(Vec<Entry>, Option<u64>, bool)> {
        let mut inv = self.scripts.read.prepare_invoke();
        inv.key(&queue.stream)
            .key(&queue.expiry)
            .key(&queue.delayed)
            .arg(&queue.group)
            .arg(consumer)
            .arg(redis_count(count));
        let reply: Value = self.invoke_read(&inv).await?;
        values::read_script_reply(reply)
    }

    /// Remove delivered entries whose TTL has passed; returns the others.
    pub(super) async fn drop_expired(
        &self,
        queue: &QueueKeys,
        mut entries: Vec<Entry>,
    ) -> Result<Vec<Entry>> {
        let mut inv = self.scripts.drop_expired.prepare_invoke();
        inv.key(&queue.stream).key(&queue.expiry).arg(&queue.group);
        for e in &entries {
            inv.arg(e.id.to_string());
        }
        let dropped: Vec<String> = self.invoke_read(&inv).await?;
        if !dropped.is_empty() {
            self.expired.add(&queue.stream, dropped.len() as u64);
            entries.retain(|e| !dropped.iter().any(|d| *d == e.id.to_string()));
        }
        Ok(entries)
    }
}
