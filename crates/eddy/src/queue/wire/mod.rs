//! The LeanMQ 0.2 entry format: one field `data` holding a JSON object, the
//! payload's own fields plus `_metadata: {id, timestamp, ttl}`; dead-letter
//! entries add `_failures: [{timestamp, reason}]`, requeued ones
//! `_requeues: [{timestamp, from_dlq, to_queue}]`.
//!
//! One way in each direction: [`encode`] serializes a payload once and
//! splices the sender's own members (a bus event's envelope, a webhook's
//! `_leanmq`) and `_metadata` in around its bytes; [`decode`] reads an
//! entry's bytes once ([`crate::json::read_object`]), `_metadata` into the
//! message's fields on the way and the payload into a `Map` (or, for
//! [`crate::Queue::receive_as`], straight into the caller's type).

mod decode;
mod encode;
mod message;

use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(test)]
pub(crate) use decode::undecodable_message;
pub(crate) use decode::{data_of, decode, decode_any, decode_as, Delivered, Undecodable};
pub(crate) use encode::{encode, Beside, Field};
pub use message::{Failure, Message, TypedMessage};

/// The reserved payload field that carries eddy's and LeanMQ's metadata.
pub const METADATA: &str = "_metadata";
/// The field listing a dead-lettered message's failures.
pub const FAILURES: &str = "_failures";
/// The field listing a message's trips from the DLQ back to its queue.
pub const REQUEUES: &str = "_requeues";
/// The field a LeanMQ webhook send adds: `{webhook: {path, timestamp}}`.
pub const LEANMQ: &str = "_leanmq";

/// The top-level payload fields the queue itself writes; a send that holds
/// one is refused (a dead-letter or requeue would append to it, a webhook
/// send would overwrite it, a reader would take it for the queue's own).
pub const RESERVED: [&str; 4] = [METADATA, FAILURES, REQUEUES, LEANMQ];

/// Seconds since the Unix epoch on this machine, as LeanMQ's `time.time()`.
pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A random (version 4) UUID from a per-thread Xoshiro256++ generator
/// seeded from the OS: ids need to be unique, not secret, and a
/// cryptographic generator per id showed in a producer's profile.
pub(crate) fn random_uuid() -> uuid::Uuid {
    use rand::{Rng, SeedableRng};
    thread_local! {
        static RNG: std::cell::RefCell<rand::rngs::SmallRng> =
            std::cell::RefCell::new(rand::rngs::SmallRng::from_rng(&mut rand::rng()));
    }
    let bytes = RNG.with(|r| r.borrow_mut().random::<[u8; 16]>());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuids_are_v4_and_distinct() {
        let ids: std::collections::HashSet<uuid::Uuid> =
            (0..10_000).map(|_| random_uuid()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            assert_eq!(id.get_version(), Some(uuid::Version::Random));
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
        // Each thread seeds its own generator: no two threads repeat a sequence.
        let other = std::thread::spawn(random_uuid).join().unwrap();
        assert!(!ids.contains(&other));
    }
}
