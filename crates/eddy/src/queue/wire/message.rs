//! A message as a reader gets it: the decoded payload, the metadata, and the
//! entry's stored bytes, which moves and printing use as they are.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{FAILURES, METADATA};
use crate::engine::{Entry, EntryId};
use crate::error::{Error, ErrorKind, Result};
use crate::json::{Members, ObjectRef};
use crate::queue::history::Record;

/// A message read from a queue.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Message {
    /// The stream id: what `ack`, `delete`, `dead_letter` and `requeue` take.
    pub id: EntryId,
    /// The payload, without `_metadata` (with `_failures` / `_requeues` if
    /// the message has been dead-lettered or requeued), as the
    /// application's serde_json builds a `Map`: for the payload exactly as
    /// it was written (key order, integers past 64 bits), see
    /// [`Message::payload_json`].
    pub data: Map<String, Value>,
    /// When the message was sent (float epoch seconds, the sender's clock).
    pub timestamp: f64,
    /// Deliveries to the reading group so far, this one included; 0 for a
    /// peek.
    pub delivery_count: u64,
    /// The sender's message id (`_metadata.id`, a UUID unless the sender
    /// chose one); stays the same across dead-lettering and requeueing.
    pub message_id: String,
    /// The TTL the message was sent with, in seconds.
    pub ttl: Option<u64>,
    /// The entry as stored: its `data` bytes and other fields, which a move
    /// carries over unchanged.
    pub(crate) stored: Stored,
}

/// An entry's stored `data` and other stream fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Stored {
    pub(crate) data: Option<Bytes>,
    pub(crate) fields: Vec<(Bytes, Bytes)>,
}

impl Stored {
    pub(crate) fn of(entry: &Entry) -> Self {
        Self {
            data: entry.data.clone(),
            fields: entry.fields.clone(),
        }
    }
}

/// One entry of a dead-lettered message's `_failures`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[non_exhaustive]
pub struct Failure {
    /// When it failed (float epoch seconds).
    pub timestamp: f64,
    /// Why.
    pub reason: String,
}

impl Message {
    /// Deserialize the payload into a type.
    pub fn payload<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(ObjectRef(&self.data)).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!("message {} does not match the expected type: {e}", self.id),
            )
        })
    }

    /// The failures recorded when the message was dead-lettered, oldest
    /// first. A record that is not `{timestamp, reason}` is shown with its
    /// JSON as the reason, never dropped.
    pub fn failures(&self) -> Vec<Failure> {
        let read = |v: &Value| {
            serde_json::from_value::<Failure>(v.clone()).unwrap_or_else(|_| Failure {
                timestamp: v.get("timestamp").and_then(Value::as_f64).unwrap_or(0.0),
                reason: format!("unreadable failure record: {v}"),
            })
        };
        match self.data.get(FAILURES) {
            None => Vec::new(),
            Some(Value::Array(items)) => items.iter().map(read).collect(),
            Some(other) => vec![read(other)],
        }
    }

    /// The entry's stored `data` bytes, exactly as they are in the queue
    /// (`None` for a foreign entry without a `data` field).
    pub fn raw_data(&self) -> Option<&[u8]> {
        self.stored.data.as_deref()
    }

    /// The stored `data`, shared.
    pub(crate) fn stored_data(&self) -> Option<&Bytes> {
        self.stored.data.as_ref()
    }

    /// The payload as JSON text, taken from the stored bytes: `_metadata`
    /// and the top-level fields in `leave_out` left out, every other member
    /// written exactly as it is stored (key order, big integers, escapes).
    /// For an entry that is not a JSON object, its view in
    /// [`Message::data`] (`_raw` and the rest) as JSON.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eddy::Result<()> {
    /// let mq = eddy::Eddy::open("memory://").await?;
    /// let (q, _) = mq.create_queue_pair("big").await?;
    /// let payload = serde_json::value::RawValue::from_string(
    ///     r#"{"z": 1, "n": 18446744073709551617}"#.to_owned(),
    /// )?;
    /// q.send(&payload).await?;
    /// let m = &q.peek(1).await?[0];
    /// assert_eq!(m.payload_json(&[]).get(), r#"{"z": 1, "n": 18446744073709551617}"#);
    /// # Ok(())
    /// # }
    /// ```
    pub fn payload_json(&self, leave_out: &[&str]) -> Box<RawValue> {
        let stored = self.raw_data().and_then(|raw| {
            let text = std::str::from_utf8(raw).ok()?;
            let members = Members::read(raw)?;
            let mut skip = Vec::with_capacity(leave_out.len() + 1);
            skip.push(METADATA);
            skip.extend_from_slice(leave_out);
            RawValue::from_string(members.text_without(text, &skip)).ok()
        });
        stored.unwrap_or_else(|| {
            let mut data = self.data.clone();
            for k in leave_out {
                data.remove(*k);
            }
            serde_json::value::to_raw_value(&data).unwrap_or_else(|_| empty_object())
        })
    }

    /// The message as the JSON object the CLI prints:
    /// `{"id","data","timestamp","delivery_count"}`, `data` as
    /// [`Message::payload_json`] gives it.
    pub fn to_json(&self) -> Box<RawValue> {
        #[derive(Serialize)]
        struct Line<'a> {
            id: String,
            data: &'a RawValue,
            timestamp: f64,
            delivery_count: u64,
        }
        let data = self.payload_json(&[]);
        let line = Line {
            id: self.id.to_string(),
            data: &data,
            timestamp: self.timestamp,
            delivery_count: self.delivery_count,
        };
        serde_json::value::to_raw_value(&line).unwrap_or_else(|_| empty_object())
    }

    /// The move of this message to another queue, `record` appended to
    /// its history list `list`; its stored bytes are otherwise kept as
    /// they are (see [`crate::queue::history`]).
    pub(crate) fn transfer(&self, list: &str, record: &Record) -> crate::engine::Transfer {
        crate::queue::history::transfer(
            self.id,
            self.stored.data.as_ref(),
            &self.stored.fields,
            list,
            record,
        )
    }
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| Box::<RawValue>::default())
}

/// A message whose payload was decoded straight into `T`, without building
/// a JSON `Map` first (see [`crate::Queue::receive_as`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TypedMessage<T> {
    /// The stream id: what `ack`, `delete` and `dead_letter` take.
    pub id: EntryId,
    /// The payload, without `_metadata`.
    pub payload: T,
    /// When the message was sent (float epoch seconds, the sender's clock).
    pub timestamp: f64,
    /// Deliveries to the reading group so far, this one included.
    pub delivery_count: u64,
    /// The sender's message id (`_metadata.id`).
    pub message_id: String,
    /// The TTL the message was sent with, in seconds.
    pub ttl: Option<u64>,
}
