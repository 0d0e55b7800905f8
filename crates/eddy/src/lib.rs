//! eddy: event-driven microservices on Redis Streams.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod engine;
mod error;

pub use error::{Error, ErrorKind, Result};
