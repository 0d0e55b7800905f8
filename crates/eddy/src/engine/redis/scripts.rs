//! The Lua scripts, one file per atomic operation, each prefixed with the
//! shared helpers. `redis::Script` calls them by SHA (EVALSHA) and loads a
//! script only when the server answers NOSCRIPT.

use redis::Script;

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
    pub set_metadata: Script,
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
            set_metadata: script!("set_metadata.lua"),
        }
    }
}
