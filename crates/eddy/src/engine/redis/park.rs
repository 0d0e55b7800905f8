//! Retries due later than the visibility timeout (park.lua): the entry
//! stays pending with its delivery count, and a marker in the queue's
//! delayed set keeps its lease renewed until it is due.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::RedisEngine;
use crate::engine::{EntryId, QueueKeys};
use crate::error::Result;

static PARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/common.lua"),
        "\n",
        include_str!("lua/park.lua")
    ))
});

/// [`Engine::release`](crate::engine::Engine::release) with `after` past
/// `min_idle`.
pub(super) async fn park(
    engine: &RedisEngine,
    queue: &QueueKeys,
    consumer: &str,
    ids: &[EntryId],
    after: Duration,
    min_idle: Duration,
) -> Result<u64> {
    let mut inv = PARK.prepare_invoke();
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
