//! The Lua scripts, one file per atomic operation, each prefixed with the
//! shared helpers. `redis::Script` calls them by SHA (EVALSHA) and loads a
//! script only when the server answers NOSCRIPT; the engine runs them
//! through [`RedisEngine::invoke`] and its siblings.

use redis::Script;

use super::{map_err, map_write_err, RedisEngine};
use crate::error::Result;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        ))
    };
}

pub(super) struct Scripts {
    pub create_queue: Script,
    pub append: Script,
    pub read: Script,
    pub prepare_read: Script,
    pub drop_expired: Script,
    pub delete: Script,
    pub transfer: Script,
    pub purge: Script,
    pub sweep: Script,
    pub delete_queues: Script,
    pub claim: Script,
    pub extend: Script,
    pub release: Script,
    pub park: Script,
    pub publish_many: Script,
    pub trim: Script,
    pub forget_consumers: Script,
    pub set_metadata: Script,
    pub check_access: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            create_queue: script!("create_queue.lua"),
            append: script!("append.lua"),
            read: script!("read.lua"),
            prepare_read: script!("prepare_read.lua"),
            drop_expired: script!("drop_expired.lua"),
            delete: script!("delete.lua"),
            transfer: script!("transfer.lua"),
            purge: script!("purge.lua"),
            sweep: script!("sweep.lua"),
            delete_queues: script!("delete_queues.lua"),
            claim: script!("claim.lua"),
            extend: script!("extend.lua"),
            release: script!("release.lua"),
            park: script!("park.lua"),
            publish_many: script!("publish_many.lua"),
            trim: script!("trim.lua"),
            forget_consumers: script!("forget_consumers.lua"),
            set_metadata: script!("set_metadata.lua"),
            check_access: Script::new(include_str!("lua/check_access.lua")),
        }
    }
}

impl RedisEngine {
    /// Run an EVALSHA command built by hand (its arguments in one buffer,
    /// unlike a `ScriptInvocation`), loading the script if Redis lost it.
    pub(super) async fn evalsha<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let mut conn = self.conn();
        match cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script.load_async(&mut conn).await.map_err(map_write_err)?;
                cmd.query_async(&mut conn).await.map_err(map_write_err)
            }
            other => other.map_err(map_write_err),
        }
    }

    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        inv.invoke_async(&mut self.conn())
            .await
            .map_err(map_write_err)
    }

    /// [`Self::invoke`] for a script the caller sees as a read.
    pub(super) async fn invoke_read<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        inv.invoke_async(&mut self.conn()).await.map_err(map_err)
    }
}
