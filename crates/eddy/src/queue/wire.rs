//! The LeanMQ 0.2 entry format: one field `data` holding a JSON object, the
//! payload's own fields plus `_metadata: {id, timestamp, ttl}`; dead-letter
//! entries add `_failures: [{timestamp, reason}]`, requeued ones
//! `_requeues: [{timestamp, from_dlq, to_queue}]`.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::engine::{Entry, EntryId};
use crate::error::{Error, ErrorKind, Result};

/// The reserved payload field that carries eddy's and LeanMQ's metadata.
pub const METADATA: &str = "_metadata";
/// The field listing a dead-lettered message's failures.
pub const FAILURES: &str = "_failures";
/// The field listing a message's trips from the DLQ back to its queue.
pub const REQUEUES: &str = "_requeues";
/// The field a LeanMQ webhook send adds: `{webhook: {path, timestamp}}`.
pub const LEANMQ: &str = "_leanmq";

/// Seconds since the Unix epoch on this machine, as LeanMQ's `time.time()`.
pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A random (version 4) UUID from a per-thread Xoshiro256++ generator
/// seeded from the OS: ids need to be unique, not secret, and the
/// thread-local ChaCha generator cost ~3% of a producer's CPU (perf).
pub(crate) fn random_uuid() -> uuid::Uuid {
    use rand::{Rng, SeedableRng};
    thread_local! {
        static RNG: std::cell::RefCell<rand::rngs::SmallRng> =
            std::cell::RefCell::new(rand::rngs::SmallRng::from_rng(&mut rand::rng()));
    }
    let bytes = RNG.with(|r| r.borrow_mut().random::<[u8; 16]>());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Serialize a payload and append `_metadata`, checking it is a JSON object
/// within the size limit. The payload is serialized once; the metadata is
/// spliced in before the closing brace.
pub(crate) fn encode<T: Serialize + ?Sized>(
    payload: &T,
    message_id: &str,
    timestamp: f64,
    ttl_secs: Option<u64>,
    max_bytes: usize,
    own_fields: &[&str],
) -> Result<Bytes> {
    let mut buf = Vec::with_capacity(256);
    serde_json::to_writer(&mut buf, payload).map_err(|e| {
        Error::new(
            ErrorKind::NotAnObject,
            format!("payload cannot be serialized as JSON: {e}"),
        )
    })?;
    // Fail fast on a huge payload, before scanning it.
    if buf.len() > max_bytes {
        return Err(too_large(buf.len(), max_bytes));
    }
    if buf.first() != Some(&b'{') {
        return Err(Error::new(
            ErrorKind::NotAnObject,
            "payload must be a JSON object (`{...}`), not an array, string, number, boolean or null",
        ));
    }
    check_reserved(&buf, own_fields)?;
    // Off with the closing brace; then a comma only after a member (a
    // payload written as it is, a `RawValue`, may be `{ }`).
    buf.pop();
    if buf.iter().skip(1).any(|b| !b.is_ascii_whitespace()) {
        buf.push(b',');
    }
    // `{"id": …, "timestamp": …, "ttl": …}`, written without building a Value.
    buf.extend_from_slice(b"\"_metadata\":{\"id\":");
    serde_json::to_writer(&mut buf, message_id)?;
    buf.extend_from_slice(b",\"timestamp\":");
    serde_json::to_writer(&mut buf, &timestamp)?;
    buf.extend_from_slice(b",\"ttl\":");
    serde_json::to_writer(&mut buf, &ttl_secs)?;
    buf.extend_from_slice(b"}}");
    if buf.len() > max_bytes {
        return Err(too_large(buf.len(), max_bytes));
    }
    Ok(Bytes::from(buf))
}

pub(crate) fn too_large(len: usize, max: usize) -> Error {
    Error::new(
        ErrorKind::PayloadTooLarge,
        format!(
            "payload is {len} bytes encoded, over the {max}-byte limit: send a reference to the data instead, or raise max_payload_bytes"
        ),
    )
}

/// The top-level payload fields the queue itself writes; a send that holds
/// one is refused (a dead-letter or requeue would append to it, a webhook
/// send would overwrite it, a reader would take it for the queue's own).
pub const RESERVED: [&str; 4] = [METADATA, FAILURES, REQUEUES, LEANMQ];

/// Refuse a payload with a reserved top-level field other than
/// `own_fields` (those the caller writes itself, as a webhook its
/// `_leanmq`). serde_json writes `_` unescaped, so a payload without `"_`
/// (and without a `\u` escape, which could spell one in a raw value
/// written by hand) has none, and only the rest pay for reading their keys.
fn check_reserved(buf: &[u8], own_fields: &[&str]) -> Result<()> {
    if RESERVED_HINT.find(buf).is_none() && ESCAPE_HINT.find(buf).is_none() {
        return Ok(());
    }
    let keys = super::history::top_level_keys(buf).ok_or_else(|| {
        Error::new(
            ErrorKind::NotAnObject,
            "payload must be a single JSON object",
        )
    })?;
    match keys
        .iter()
        .find(|k| RESERVED.contains(&k.as_str()) && !own_fields.contains(&k.as_str()))
    {
        Some(k) => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "payload field `{k}` is reserved for the queue's own bookkeeping (reserved: {}); rename it",
                RESERVED.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// The start of a reserved key. Built once: building a searcher per
/// message shows up in a sender's profile.
static RESERVED_HINT: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"_"));
static ESCAPE_HINT: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\\u"));

/// A message read from a queue.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Message {
    /// The stream id: what `ack`, `delete`, `dead_letter` and `requeue` take.
    pub id: EntryId,
    /// The payload, without `_metadata` (with `_failures` / `_requeues` if
    /// the message has been dead-lettered or requeued).
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
    fn of(entry: &Entry) -> Self {
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
        T::deserialize(crate::bus::ObjectRef(&self.data)).map_err(|e| {
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

    /// The message as the JSON object the CLI prints:
    /// `{"id","data","timestamp","delivery_count"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "data": self.data,
            "timestamp": self.timestamp,
            "delivery_count": self.delivery_count,
        })
    }

    /// The move of this message to another queue, `record` appended to
    /// its history list `list`; its stored bytes are otherwise kept as
    /// they are (see [`super::history`]).
    pub(crate) fn transfer(&self, list: &str, record: &Value) -> crate::engine::Transfer {
        super::history::transfer(
            self.id,
            self.stored.data.as_ref(),
            &self.stored.fields,
            list,
            record,
        )
    }
}

/// What the consumer loop reads a queue's entries as: a [`Message`], or a
/// service's event, decoded straight into its envelope.
pub(crate) trait Delivered: From<Message> + Send + 'static {
    /// Decode an entry, or say why it cannot be (it then goes to the DLQ;
    /// a DLQ's own reader gets it raw, through `From<Message>`).
    fn decode(entry: Entry, max_bytes: usize) -> Result<Self, Box<Undecodable>>;
    /// The stream id.
    fn id(&self) -> EntryId;
    /// Deliveries to the reading group so far, this one included.
    fn delivery_count(&self) -> u64;
    /// The message, where the item is one: dead-letter it without reading
    /// it back.
    fn into_message(self) -> Option<Message> {
        None
    }
}

impl Delivered for Message {
    fn decode(entry: Entry, max_bytes: usize) -> Result<Self, Box<Undecodable>> {
        decode(entry, max_bytes)
    }
    fn id(&self) -> EntryId {
        self.id
    }
    fn delivery_count(&self) -> u64 {
        self.delivery_count
    }
    fn into_message(self) -> Option<Message> {
        Some(self)
    }
}

/// Why an entry could not be decoded, with the entry, whole.
#[derive(Debug)]
pub(crate) struct Undecodable {
    pub id: EntryId,
    pub reason: String,
    pub entry: Entry,
}

impl Undecodable {
    /// Its move to the dead-letter queue, with `reason` recorded.
    pub(crate) fn transfer(&self, record: &Value) -> crate::engine::Transfer {
        super::history::transfer(
            self.id,
            self.entry.data.as_ref(),
            &self.entry.fields,
            FAILURES,
            record,
        )
    }
}

/// Decode an entry, or explain why not. An entry over `max_bytes` is not
/// decoded: the limit bounds what a consumer is handed, and the caller
/// moves such an entry, whole, to the dead-letter queue.
pub(crate) fn decode(entry: Entry, max_bytes: usize) -> Result<Message, Box<Undecodable>> {
    let fail = |reason: String, entry: Entry| {
        Box::new(Undecodable {
            id: entry.id,
            reason,
            entry,
        })
    };
    let Some(raw) = entry.data.as_deref() else {
        return Err(fail("entry has no `data` field".into(), entry));
    };
    if raw.len() > max_bytes {
        let reason = format!(
            "entry is {} bytes, over this reader's {max_bytes}-byte limit (kept whole: raise max_payload_bytes to read it)",
            raw.len()
        );
        return Err(fail(reason, entry));
    }
    // serde_json validates every string it decodes (and bytes outside
    // strings must be ASCII JSON), so the data handed out is valid UTF-8
    // without a separate pass; the check below only names the reason of a
    // failed parse. (The one string it skips unchecked is an unknown
    // subfield of `_metadata`, which nothing reads.)
    let (data, meta) = match parse::<Map<String, Value>>(raw) {
        Ok(d) => d,
        Err(e) => {
            let reason = match std::str::from_utf8(raw) {
                Err(u) => format!("entry is not UTF-8: {u}"),
                Ok(_) if e.is_data() => "entry is JSON but not an object".into(),
                Ok(_) => format!("entry is not valid JSON: {e}"),
            };
            return Err(fail(reason, entry));
        }
    };
    Ok(Message {
        id: entry.id,
        timestamp: meta.timestamp.unwrap_or(entry.id.ms as f64 / 1000.0),
        message_id: meta.id.unwrap_or_default(),
        ttl: meta.ttl,
        delivery_count: entry.delivery_count,
        stored: Stored::of(&entry),
        data,
    })
}

/// Decode an entry whatever its size, for readers that only look (peek,
/// a dead-letter queue): one that is not a message is shown as
/// [`undecodable_message`] does.
pub(crate) fn decode_any(entry: Entry) -> Message {
    let dc = entry.delivery_count;
    decode(entry, usize::MAX).unwrap_or_else(|u| undecodable_message(&u, dc))
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

/// Decode an entry straight into `T`, or `None` if that does not work (the
/// caller then decodes it the general way, which decides).
pub(crate) fn decode_as<T: serde::de::DeserializeOwned>(
    entry: &Entry,
    max_bytes: usize,
) -> Option<TypedMessage<T>> {
    let raw = entry.data.as_deref()?;
    if raw.len() > max_bytes || !skipping_checks_enough(raw) {
        return None;
    }
    let (payload, meta) = parse::<T>(raw).ok()?;
    Some(TypedMessage {
        id: entry.id,
        payload,
        timestamp: meta.timestamp.unwrap_or(entry.id.ms as f64 / 1000.0),
        delivery_count: entry.delivery_count,
        message_id: meta.id.unwrap_or_default(),
        ttl: meta.ttl,
    })
}

/// Whether reading `T` straight from `raw` checks what [`decode`] checks.
/// The fields `T` does not take are skipped, and serde_json's skipping
/// does not check a string's UTF-8 or its `\u` escapes (a lone surrogate
/// passes), nor the nesting limit; decoding does. So the bytes must be
/// UTF-8, hold no surrogate escape (a pair, too, is left to the general
/// path) and have at most 127 brackets in all (a bound on the nesting).
/// Anything else goes the general way, which decides.
fn skipping_checks_enough(raw: &[u8]) -> bool {
    if std::str::from_utf8(raw).is_err() {
        return false;
    }
    let surrogate = memchr::memmem::find_iter(raw, b"\\u").any(|at| {
        matches!(
            raw.get(at + 2..at + 4),
            Some([b'd' | b'D', b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'])
        )
    });
    !surrogate && memchr::memchr2_iter(b'[', b'{', raw).take(128).count() <= 127
}

/// An entry's JSON object in one pass: every field but `_metadata` into
/// `T` (a `Map` for [`decode`]), `_metadata` into [`Meta`]. Decoding was
/// ~20% of a consumer's CPU in `eddy bench queue`.
///
/// `_metadata` is first read strictly, as eddy and LeanMQ write it (a
/// string id, a number timestamp, a null or whole ttl): straight into
/// typed fields, with no `Value` in between (with `arbitrary_precision`
/// every number read into a `Value` is a `String`; reading `_metadata`
/// through `Value`s was ~23% of `eddy bench queue`'s CPU, perf). An entry
/// whose `_metadata` has another shape, or that does not parse at all, is
/// parsed again leniently, which decides: only bad entries pay twice.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(raw: &[u8]) -> serde_json::Result<(T, Meta)> {
    parse_with(raw, true).or_else(|_| parse_with(raw, false))
}

fn parse_with<T: serde::de::DeserializeOwned>(
    raw: &[u8],
    strict: bool,
) -> serde_json::Result<(T, Meta)> {
    let mut meta = Meta::default();
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = T::deserialize(WithoutMeta {
        de: &mut de,
        meta: &mut meta,
        strict,
    })?;
    de.end()?;
    Ok((value, meta))
}

/// A JSON object's deserializer that hands `T` every field but `_metadata`,
/// which it reads into `meta` on the way.
struct WithoutMeta<'m, D> {
    de: D,
    meta: &'m mut Meta,
    strict: bool,
}

impl<'de, D: serde::Deserializer<'de>> serde::Deserializer<'de> for WithoutMeta<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, D::Error> {
        self.de.deserialize_map(MetaSkipping {
            visitor,
            meta: self.meta,
            strict: self.strict,
        })
    }

    crate::queue::wire::as_an_object!(D::Error);
}

/// The rest of a `serde::Deserializer` for a JSON object read through an
/// adapter whose `deserialize_any` visits the object's map: as for a
/// `Value` holding the object, an option is `Some` of it, a newtype wraps
/// it, and every other request gets the map.
macro_rules! as_an_object {
    ($error:ty) => {
        fn deserialize_option<V: serde::de::Visitor<'de>>(
            self,
            visitor: V,
        ) -> std::result::Result<V::Value, $error> {
            visitor.visit_some(self)
        }

        fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> std::result::Result<V::Value, $error> {
            visitor.visit_newtype_struct(self)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum
            identifier ignored_any
        }
    };
}
pub(crate) use as_an_object;

struct MetaSkipping<'m, V> {
    visitor: V,
    meta: &'m mut Meta,
    strict: bool,
}

impl<'de, V: serde::de::Visitor<'de>> serde::de::Visitor<'de> for MetaSkipping<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        map: A,
    ) -> std::result::Result<V::Value, A::Error> {
        self.visitor.visit_map(MetaFiltered {
            map,
            meta: self.meta,
            strict: self.strict,
        })
    }
}

struct MetaFiltered<'m, A> {
    map: A,
    meta: &'m mut Meta,
    strict: bool,
}

impl<'de, A: serde::de::MapAccess<'de>> serde::de::MapAccess<'de> for MetaFiltered<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> std::result::Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key::<Key<'de>>()? {
            if key.as_str() == METADATA {
                *self.meta = if self.strict {
                    self.map.next_value::<StrictMeta>()?.into()
                } else {
                    self.map.next_value()?
                };
                continue;
            }
            return key.deserialize_with(seed).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<S: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> std::result::Result<S::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A map key as the input holds it: borrowed from the entry's bytes unless
/// it has escapes, so checking it for `_metadata`, or matching it against
/// a struct's fields, allocates nothing.
pub(crate) enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Key<'de> {
    /// Hand the key on to `seed`, as the map itself would have.
    pub(crate) fn deserialize_with<S: serde::de::DeserializeSeed<'de>, E: serde::de::Error>(
        self,
        seed: S,
    ) -> std::result::Result<S::Value, E> {
        use serde::de::IntoDeserializer;
        match self {
            Key::Borrowed(s) => seed.deserialize(serde::de::value::BorrowedStrDeserializer::new(s)),
            Key::Owned(s) => seed.deserialize(s.into_deserializer()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<Key<'de>, E> {
                Ok(Key::Borrowed(s))
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<Key<'de>, E> {
                Ok(Key::Owned(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> std::result::Result<Key<'de>, E> {
                Ok(Key::Owned(s))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// `_metadata` exactly as eddy and LeanMQ write it, or an error (see
/// [`parse`]): `id` a string, `timestamp` a number, `ttl` null or a whole
/// number, each possibly missing; other fields skipped. A duplicate field
/// is an error too: the lenient parse then decides.
#[derive(serde::Deserialize)]
struct StrictMeta {
    id: Option<String>,
    timestamp: Option<f64>,
    ttl: Option<u64>,
}

impl From<StrictMeta> for Meta {
    fn from(m: StrictMeta) -> Self {
        Meta {
            id: m.id,
            timestamp: m.timestamp,
            ttl: m.ttl,
        }
    }
}

/// `_metadata` as read: whatever is missing or mistyped is `None` (LeanMQ
/// and eddy always write all three; anything else is decoded leniently, as
/// before).
#[derive(Default)]
pub(crate) struct Meta {
    pub(crate) id: Option<String>,
    pub(crate) timestamp: Option<f64>,
    pub(crate) ttl: Option<u64>,
}

impl<'de> serde::Deserialize<'de> for Meta {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Meta;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Meta, A::Error> {
                let mut meta = Meta::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    match key.as_str() {
                        "id" => {
                            if let Value::String(s) = map.next_value()? {
                                meta.id = Some(s);
                            }
                        }
                        "timestamp" => meta.timestamp = map.next_value::<Value>()?.as_f64(),
                        "ttl" => meta.ttl = map.next_value::<Value>()?.as_u64(),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(meta)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Meta, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Meta::default())
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<Meta, E> {
                Ok(Meta::default())
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<Meta, E> {
                Ok(Meta::default())
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<Meta, E> {
                Ok(Meta::default())
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<Meta, E> {
                Ok(Meta::default())
            }
            fn visit_str<E>(self, _: &str) -> std::result::Result<Meta, E> {
                Ok(Meta::default())
            }
            fn visit_unit<E>(self) -> std::result::Result<Meta, E> {
                Ok(Meta::default())
            }
        }
        d.deserialize_any(Visit)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The message of an undecodable entry as a DLQ sees it: `_raw` holds its
/// `data` as text (`_raw_hex` if it is not UTF-8; null if it has none),
/// `_fields` its other stream fields, and `_failures` / `_requeues` the
/// history kept beside it. Only a view: the entry itself moves unchanged.
pub(crate) fn undecodable_message(u: &Undecodable, delivery_count: u64) -> Message {
    let mut data = Map::new();
    match u.entry.data.as_deref() {
        Some(raw) => match std::str::from_utf8(raw) {
            Ok(s) => data.insert("_raw".into(), Value::String(s.to_owned())),
            Err(_) => data.insert("_raw_hex".into(), Value::String(hex(raw))),
        },
        None => data.insert("_raw".into(), Value::Null),
    };
    let mut others = Map::new();
    for (k, v) in &u.entry.fields {
        let name = String::from_utf8_lossy(k).into_owned();
        if name == FAILURES || name == REQUEUES {
            if let Ok(list) = serde_json::from_slice::<Value>(v) {
                data.insert(name, list);
                continue;
            }
        }
        others.insert(name, Value::String(String::from_utf8_lossy(v).into_owned()));
    }
    if !others.is_empty() {
        data.insert("_fields".into(), Value::Object(others));
    }
    Message {
        id: u.id,
        data,
        timestamp: u.id.ms as f64 / 1000.0,
        delivery_count,
        message_id: String::new(),
        ttl: None,
        stored: Stored::of(&u.entry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_with_metadata() -> Result<()> {
        let b = encode(&json!({"a": 1}), "m1", 1.5, Some(3), 1 << 20, &[])?;
        let v: Value = serde_json::from_slice(&b)?;
        assert_eq!(
            v,
            json!({"a": 1, "_metadata": {"id": "m1", "timestamp": 1.5, "ttl": 3}})
        );
        let b = encode(&json!({}), "m2", 2.0, None, 1 << 20, &[])?;
        let v: Value = serde_json::from_slice(&b)?;
        assert_eq!(
            v,
            json!({"_metadata": {"id": "m2", "timestamp": 2.0, "ttl": null}})
        );
        Ok(())
    }

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

    #[test]
    fn rejects_bad_payloads() {
        let kind = |r: Result<Bytes>| r.err().map(|e| e.kind());
        assert_eq!(
            kind(encode(&json!([1]), "m", 0.0, None, 100, &[])),
            Some(ErrorKind::NotAnObject)
        );
        assert_eq!(
            kind(encode(&json!("s"), "m", 0.0, None, 100, &[])),
            Some(ErrorKind::NotAnObject)
        );
        assert_eq!(
            kind(encode(&json!(null), "m", 0.0, None, 100, &[])),
            Some(ErrorKind::NotAnObject)
        );
        assert_eq!(
            kind(encode(
                &json!({"x": "y".repeat(200)}),
                "m",
                0.0,
                None,
                100,
                &[]
            )),
            Some(ErrorKind::PayloadTooLarge)
        );
        assert_eq!(
            kind(encode(&json!({"_metadata": 1}), "m", 0.0, None, 100, &[])),
            Some(ErrorKind::InvalidArgument)
        );
        for field in ["_failures", "_requeues", "_leanmq"] {
            let mut p = serde_json::Map::new();
            p.insert(field.into(), json!([]));
            assert_eq!(
                kind(encode(&p, "m", 0.0, None, 100, &[])),
                Some(ErrorKind::InvalidArgument),
                "{field}"
            );
        }
        // A field the sender writes itself is allowed; an escaped spelling of
        // a reserved one is still that one.
        assert!(encode(&json!({"_leanmq": 1}), "m", 0.0, None, 100, &["_leanmq"]).is_ok());
        let raw =
            serde_json::value::RawValue::from_string(r#"{"\u005ffailures":[]}"#.into()).unwrap();
        assert_eq!(
            kind(encode(&raw, "m", 0.0, None, 100, &[])),
            Some(ErrorKind::InvalidArgument)
        );
        // Other `_` fields, and values spelled like reserved keys, are fine.
        assert!(encode(
            &json!({"_x": "_failures", "y": "\"_metadata"}),
            "m",
            0.0,
            None,
            100,
            &[]
        )
        .is_ok());
        // Nested `_metadata` is the payload's own business.
        assert!(encode(&json!({"x": {"_metadata": 1}}), "m", 0.0, None, 100, &[]).is_ok());
    }

    #[test]
    fn decodes_and_explains() {
        let e = |d: &[u8]| Entry::new(EntryId::new(1000, 0), Some(Bytes::copy_from_slice(d)), 1);
        let m = decode(
            e(br#"{"a":1,"_metadata":{"id":"x","timestamp":3.0,"ttl":null}}"#),
            1000,
        );
        assert!(
            matches!(m, Ok(ref m) if m.message_id == "x" && m.timestamp == 3.0 && m.data.len() == 1)
        );
        for (bytes, want) in [
            (&b"\xff\xfe"[..], "not UTF-8"),
            (b"{nope", "not valid JSON"),
            (b"[1]", "not an object"),
        ] {
            match decode(e(bytes), 1000) {
                Err(u) => assert!(u.reason.contains(want), "{}", u.reason),
                Ok(m) => unreachable!("decoded {m:?}"),
            }
        }
        assert!(decode(e(&[b' '; 2000]), 1000).is_err_and(|u| u.reason.contains("limit")));
        // `_metadata` of any shape decodes; what is usable is used.
        for (bytes, id, ts, ttl) in [
            (&br#"{"_metadata":7,"a":1}"#[..], "", 1.0, None),
            (br#"{"_metadata":[1,{"x":2}],"a":1}"#, "", 1.0, None),
            (br#"{"_metadata":null,"a":1}"#, "", 1.0, None),
            (br#"{"_metadata":"s","a":1}"#, "", 1.0, None),
            (
                br#"{"_metadata":{"id":5,"timestamp":"x","ttl":-1},"a":1}"#,
                "",
                1.0,
                None,
            ),
            (
                br#"{"a":1,"_metadata":{"ttl":30,"extra":{"k":[1]},"id":"m\u0031","timestamp":2}}"#,
                "m1",
                2.0,
                Some(30),
            ),
        ] {
            let m = decode(e(bytes), 1000).map_err(|u| u.reason).unwrap();
            assert_eq!((m.message_id.as_str(), m.timestamp, m.ttl), (id, ts, ttl));
            assert_eq!(m.data, *json!({"a": 1}).as_object().unwrap());
        }
        // Keys written with escapes are the same keys (they are copied, not
        // borrowed, on the way).
        let m = decode(
            e(br#"{"\u0061":1,"_met\u0061data":{"i\u0064":"y","timestamp":4.5,"ttl":null}}"#),
            1000,
        )
        .map_err(|u| u.reason)
        .unwrap();
        assert_eq!((m.message_id.as_str(), m.timestamp), ("y", 4.5));
        assert_eq!(m.data, *json!({"a": 1}).as_object().unwrap());
        // A duplicate key: the last wins, as serde_json's own maps do.
        let m = decode(e(br#"{"a":1,"a":2}"#), 1000)
            .map_err(|u| u.reason)
            .unwrap();
        assert_eq!(m.data["a"], 2);
        assert!(decode(e(b"{} x"), 1000).is_err_and(|u| u.reason.contains("not valid JSON")));
    }

    #[test]
    fn decodes_straight_into_a_type() {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct P {
            a: u64,
            b: Option<String>,
        }
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Wrapped(P);
        let e = |d: &[u8]| Entry::new(EntryId::new(1000, 0), Some(Bytes::copy_from_slice(d)), 2);
        let raw = br#"{"a":1,"_metadata":{"id":"x","timestamp":3.5,"ttl":9},"b":"y"}"#;
        let m = decode_as::<P>(&e(raw), 1000).unwrap();
        assert_eq!(
            m.payload,
            P {
                a: 1,
                b: Some("y".into())
            }
        );
        assert_eq!(
            (m.message_id.as_str(), m.timestamp, m.ttl, m.delivery_count),
            ("x", 3.5, Some(9), 2)
        );
        // A newtype and an option see the object, as from a `Value`.
        assert_eq!(decode_as::<Wrapped>(&e(raw), 1000).unwrap().payload.0.a, 1);
        assert_eq!(
            decode_as::<Option<P>>(&e(raw), 1000)
                .unwrap()
                .payload
                .unwrap()
                .a,
            1
        );
        let v = decode_as::<Value>(&e(raw), 1000).unwrap().payload;
        assert_eq!(v, json!({"a": 1, "b": "y"}));
        // Not of the type, not JSON, trailing bytes, over the limit: None.
        for bad in [
            &br#"{"a":"1"}"#[..],
            br#"{"a":1,"c":2}"#,
            b"{nope",
            br#"{"a":1} x"#,
            b"[1]",
        ] {
            assert!(decode_as::<P>(&e(bad), 1000).is_none(), "{bad:?}");
        }
        assert!(decode_as::<P>(&e(raw), 10).is_none());
        // Fields `P` does not take are skipped, unchecked by serde_json:
        // what decoding would refuse is left to it.
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Lax {
            a: u64,
        }
        let deep = format!(r#"{{"a":1,"x":{}0{}}}"#, "[".repeat(130), "]".repeat(130));
        for bad in [
            &br#"{"a":1,"x":"\udc00"}"#[..],
            b"{\"a\":1,\"x\":\"\xff\"}",
            deep.as_bytes(),
        ] {
            assert!(decode_as::<Lax>(&e(bad), 1 << 20).is_none(), "{bad:?}");
            assert!(decode(e(bad), 1 << 20).is_err(), "{bad:?}");
        }
        // A surrogate pair is fine, but left to the general path too.
        let pair = br#"{"a":1,"x":"\ud83d\ude00"}"#;
        assert!(decode_as::<Lax>(&e(pair), 1 << 20).is_none());
        assert!(decode(e(pair), 1 << 20).is_ok());
        assert_eq!(
            decode_as::<Lax>(&e(br#"{"a":1,"x":[[{}]]}"#), 1 << 20)
                .unwrap()
                .payload,
            Lax { a: 1 }
        );
    }
}
