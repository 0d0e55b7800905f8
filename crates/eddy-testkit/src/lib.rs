//! Test support for eddy: real `redis-server` processes for tests that talk
//! to Redis.
//!
//! [`RedisServer`] starts `redis-server` on a free port (or a unix socket) in
//! a temporary directory, waits until it answers, and kills it on drop,
//! printing the server log when the test is failing. It can also crash
//! ([`RedisServer::kill`]), freeze ([`RedisServer::pause`]) and restart the
//! server on the same data for fault tests.
//!
//! ```
//! use eddy_testkit::RedisServer;
//!
//! # fn main() -> std::io::Result<()> {
//! let server = RedisServer::start()?;
//! let url = server.url(); // redis://127.0.0.1:PORT/0
//! assert_eq!(server.redis_cli(["PING"])?, "PONG");
//! # let _ = url;
//! # Ok(())
//! # }
//! ```

pub mod conformance;
pub mod fault_report;
pub mod http;
pub mod proxy;
pub mod python;
pub mod redis_server;

pub use redis_server::{
    ClusterNode, RedisCluster, RedisSentinel, RedisServer, RedisServerBuilder, TlsFiles,
    CLUSTER_NODE_TIMEOUT,
};
