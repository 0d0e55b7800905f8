//! eddy: event-driven microservices on Redis Streams.
//!
//! A durable message queue with dead-letter queues, speaking LeanMQ 0.2's
//! wire format, that runs embedded (`memory://`, in-process) or on Redis
//! (`redis://host:port/db`) with the same code and the same semantics.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> eddy::Result<()> {
//! use serde_json::json;
//!
//! let mq = eddy::Eddy::open("memory://").await?;
//! let (queue, dlq) = mq.create_queue_pair("emails").await?;
//! queue.send(&json!({"to": "ada@example.com"})).await?;
//!
//! for msg in queue.receive(&eddy::Receive::new().count(10)).await? {
//!     if msg.data["to"] == "ada@example.com" {
//!         queue.ack(&[msg.id]).await?;
//!     } else {
//!         queue.dead_letter_messages(&[msg], "unknown recipient").await?;
//!     }
//! }
//! assert!(dlq.peek(10).await?.is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! Layers, each calling only the one below: [`queue`] (queues, DLQs, TTL,
//! transactions) over the [`engine`] trait (embedded and Redis engines).
//! The consumer loop ([`queue::consumer`]), [`webhook`]s and the
//! [`service`] runtime share what handlers return ([`Fail`]) through
//! [`handler`], below all three.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::print_stdout
    )
)]

pub mod bus;
pub mod engine;
mod error;
pub mod handler;
mod json;
pub mod metrics;
pub mod queue;
pub mod service;
pub mod webhook;

pub use engine::EntryId;
pub use error::{Error, ErrorKind, Result};
pub use handler::Fail;
pub use queue::{
    ConsumerStatus, Eddy, EddyBuilder, Failure, Message, ParkedRetry, Queue, QueueInfo, Receive,
    SendOptions, Transaction, TypedMessage,
};

/// The README's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
