//! The event envelope: the seed's flat JSON (`event_id`, `event_type`,
//! `timestamp` and the event's own fields at top level) plus `source`,
//! `correlation_id`, `causation_id` and `traceparent`; and its mapping to
//! and from CloudEvents 1.0 JSON.

use std::time::{Duration, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::queue::Message;

/// An event type: a serde type with a stable name on the wire.
///
/// Implement it in one line, or with [`event!`](crate::event):
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct OrderShippedEvent { order_id: String, tracking_number: String, carrier: String }
///
/// impl eddy::bus::Event for OrderShippedEvent { const TYPE: &'static str = "OrderShippedEvent"; }
/// // or: eddy::event!(OrderShippedEvent);
/// ```
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The `event_type` on the wire. Keep it stable: subscriptions and
    /// stored events refer to it.
    const TYPE: &'static str;
}

/// Implement [`Event`](crate::bus::Event) for a type, named after the type
/// (`eddy::event!(OrderCreatedEvent)`, as the seed's Python classes are) or
/// explicitly (`eddy::event!(OrderCreated, "order.created")`).
#[macro_export]
macro_rules! event {
    ($t:ident) => {
        impl $crate::bus::Event for $t {
            const TYPE: &'static str = stringify!($t);
        }
    };
    ($t:ty, $name:expr) => {
        impl $crate::bus::Event for $t {
            const TYPE: &'static str = $name;
        }
    };
}

/// The envelope fields; an event may not have fields of these names.
pub const RESERVED: [&str; 7] = [
    "event_id",
    "event_type",
    "timestamp",
    "source",
    "correlation_id",
    "causation_id",
    "traceparent",
];

/// An envelope as the flat JSON object of the wire format (see
/// [`Envelope::wire`]).
#[derive(Debug)]
pub(crate) struct Wire<'a>(&'a Envelope);

impl Serialize for Wire<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let e = self.0;
        // An event field named like an envelope field (only possible by
        // editing `data` by hand) merges into it: keep to_json's map for that.
        if RESERVED.iter().any(|k| e.data.contains_key(*k)) {
            return e.to_json().serialize(s);
        }
        let extras = [
            ("source", &e.source),
            ("correlation_id", &e.correlation_id),
            ("causation_id", &e.causation_id),
            ("traceparent", &e.traceparent),
        ];
        let n = 3 + e.data.len() + extras.iter().filter(|(_, v)| v.is_some()).count();
        let mut m = s.serialize_map(Some(n))?;
        m.serialize_entry("event_id", &e.event_id)?;
        m.serialize_entry("event_type", &e.event_type)?;
        // serde_json writes a non-finite f64 as null, as to_json's Value.
        m.serialize_entry("timestamp", &e.timestamp)?;
        for (k, v) in &e.data {
            m.serialize_entry(k, v)?;
        }
        for (k, v) in extras {
            if let Some(v) = v {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

/// A well-formed event as stored: envelope fields of their types, the
/// event's own fields into `data`, fields starting with `_` (a queue's
/// `_failures` / `_requeues`) read and left out, as `from_json` does. The
/// metadata is read by [`crate::queue::wire::parse`] on the way.
///
/// With `DATA` false only the envelope is read: every other value is
/// checked as parsing it would check it, but not built ([`Checked`]), and
/// `data` stays empty (see [`crate::bus::incoming`]); `plain` then says
/// whether the event's own fields hold no number but 64-bit integers.
struct WireEvent<const DATA: bool = true> {
    env: Option<Envelope>,
    plain: bool,
}

impl<'de, const DATA: bool> serde::Deserialize<'de> for WireEvent<DATA> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use crate::queue::wire::Key;
        struct Visit<const DATA: bool>;
        impl<'de, const DATA: bool> serde::de::Visitor<'de> for Visit<DATA> {
            type Value = WireEvent<DATA>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event as a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<WireEvent<DATA>, A::Error> {
                let mut data = Map::new();
                let mut plain = true;
                let mut head = HeadFields::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    match key.as_str() {
                        k if head.take(k, &mut map)? => {}
                        // Parsed, not skipped: its strings are checked as
                        // the general path checks them.
                        k if k.starts_with('_') && DATA => {
                            map.next_value::<Value>()?;
                        }
                        k if k.starts_with('_') => {
                            map.next_value_seed(Checked { plain: &mut true })?;
                        }
                        _ if !DATA => {
                            map.next_value_seed(Checked { plain: &mut plain })?;
                        }
                        _ => {
                            let k = match key {
                                Key::Borrowed(k) => k.to_owned(),
                                Key::Owned(k) => k,
                            };
                            data.insert(k, map.next_value::<Value>()?);
                        }
                    }
                }
                let env = head.finish(data);
                Ok(WireEvent { env, plain })
            }
        }
        d.deserialize_map(Visit::<DATA>)
    }
}

/// The envelope's fields of a wire object, as its visitor meets them (a
/// field met twice: the last wins, as in a `Map`).
#[derive(Default, Clone, Debug)]
pub(crate) struct HeadFields {
    /// Whether the id and the type are known already: their values are
    /// then skipped, not read again.
    known_id_and_type: bool,
    event_id: Option<String>,
    event_type: Option<String>,
    timestamp: f64,
    source: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    traceparent: Option<String>,
}

impl HeadFields {
    /// Read the value of `key` if it is an envelope field (`true`), each
    /// of its type; leave it for the caller if not (`false`).
    pub(crate) fn take<'de, A: serde::de::MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<bool, A::Error> {
        match key {
            "event_id" | "event_type" if self.known_id_and_type => {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
            "event_id" => self.event_id = Some(map.next_value()?),
            "event_type" => self.event_type = Some(map.next_value()?),
            "timestamp" => self.timestamp = map.next_value()?,
            "source" => self.source = Some(map.next_value()?),
            "correlation_id" => self.correlation_id = Some(map.next_value()?),
            "causation_id" => self.causation_id = Some(map.next_value()?),
            "traceparent" => self.traceparent = Some(map.next_value()?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// For a wire object whose id and type are known (see
    /// `known_id_and_type`).
    pub(crate) fn knowing_id_and_type() -> Self {
        Self {
            known_id_and_type: true,
            ..Self::default()
        }
    }

    /// The envelope with the id and the type known.
    pub(crate) fn finish_with(self, event_id: String, event_type: String) -> Envelope {
        Envelope {
            event_id,
            event_type,
            timestamp: self.timestamp,
            source: self.source,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            traceparent: self.traceparent,
            data: Map::new(),
        }
    }

    /// The envelope, if it had an id and a type.
    pub(crate) fn finish(self, data: Map<String, Value>) -> Option<Envelope> {
        Some(Envelope {
            event_id: self.event_id?,
            event_type: self.event_type?,
            timestamp: self.timestamp,
            source: self.source,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            traceparent: self.traceparent,
            data,
        })
    }
}

/// Only the envelope of an entry's event ([`WireEvent`] without its data),
/// and whether its own fields are plain (see [`WireEvent`]); `None` if the
/// entry is not plainly an event. The whole entry is checked as decoding it
/// into a message would check it (UTF-8, escapes, nesting, trailing bytes).
pub(crate) fn head_from_wire_bytes(raw: &[u8]) -> Option<(Envelope, bool)> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    let head = <WireEvent<false> as serde::Deserialize>::deserialize(&mut de).ok()?;
    de.end().ok()?;
    head.env.map(|env| (env, head.plain))
}

/// Checks a JSON value as parsing it into a [`Value`] would (each string's
/// escapes and UTF-8, the nesting limit: serde_json's skipping, used by
/// `IgnoredAny`, checks neither, and lets a lone surrogate escape through),
/// building nothing. Clears `plain` on a number that is not a 64-bit
/// integer: with `arbitrary_precision`, reading such a number from the
/// bytes differs from reading it from a `Value` for types that take any
/// value (an untagged enum sees serde_json's private number map rather
/// than an `f64`), so such events are read through the map.
struct Checked<'a> {
    plain: &'a mut bool,
}

/// How serde_json's private keys start (numbers with
/// `arbitrary_precision`, raw values with `raw_value`).
pub(crate) const PRIVATE_KEY: &str = "$serde_json::private::";

/// The key serde_json (with `arbitrary_precision`) presents a number under
/// when it is not a 64-bit integer.
pub(crate) const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'de> serde::de::DeserializeSeed<'de> for Checked<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Checked<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        *self.plain = false;
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<(), A::Error> {
        while seq
            .next_element_seed(Checked {
                plain: &mut *self.plain,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<(), A::Error> {
        use crate::queue::wire::Key;
        use serde::de::Error;
        let mut first = true;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            // A `Value` takes an object whose first key is serde_json's
            // private number key for a number (a number read this way is
            // one): its value must be a number's text, and nothing may
            // follow. With serde_json's `raw_value` (which any crate in a
            // build can turn on), its private raw key works alike: such an
            // object is left to the general path.
            if std::mem::take(&mut first) && key.as_str().starts_with(PRIVATE_KEY) {
                if key.as_str() != NUMBER_TOKEN {
                    return Err(A::Error::custom("serde_json's private key: not read here"));
                }
                let text = map.next_value::<String>()?;
                text.parse::<serde_json::Number>()
                    .map_err(A::Error::custom)?;
                if map.next_key::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::custom("a number object with more fields"));
                }
                *self.plain = false;
                return Ok(());
            }
            map.next_value_seed(Checked {
                plain: &mut *self.plain,
            })?;
        }
        Ok(())
    }
}

/// Deserializes like `&Value::Object(map)` without building that value (a
/// copy of the map): `&Map`'s own deserializer, except that an option or a
/// newtype struct sees the object itself, as with `&Value`.
pub(crate) struct ObjectRef<'a>(pub(crate) &'a Map<String, Value>);

impl<'de> serde::Deserializer<'de> for ObjectRef<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        self.0.deserialize_ignored_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier
    }
}

/// An event with its envelope, as it travels.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Envelope {
    /// Unique per event (a UUID); duplicates of one event share it.
    pub event_id: String,
    /// The event's type name.
    pub event_type: String,
    /// When it was created (float epoch seconds).
    pub timestamp: f64,
    /// The service that published it.
    pub source: Option<String>,
    /// The id shared by every event of one business flow (the first
    /// event's id unless set).
    pub correlation_id: Option<String>,
    /// The id of the event whose handler published this one.
    pub causation_id: Option<String>,
    /// W3C trace context of the publisher.
    pub traceparent: Option<String>,
    /// The event's own fields.
    pub data: Map<String, Value>,
}

impl Envelope {
    /// Wrap a typed event with a fresh id and the current time.
    pub fn new<E: Event>(event: &E) -> Result<Self> {
        let data = match serde_json::to_value(event)? {
            Value::Object(m) => m,
            _ => {
                return Err(Error::new(
                    ErrorKind::NotAnObject,
                    format!("event {} must serialize to a JSON object", E::TYPE),
                ))
            }
        };
        Self::from_parts(E::TYPE, data)
    }

    /// Wrap untyped fields as an event of type `event_type`.
    pub fn from_parts(event_type: &str, data: Map<String, Value>) -> Result<Self> {
        crate::engine::validate_name(event_type).map_err(|_| {
            Error::new(
                ErrorKind::InvalidName,
                format!("invalid event type `{event_type}`: use 1 to 200 characters from A-Z a-z 0-9 _ - . :"),
            )
        })?;
        if let Some(k) = RESERVED.iter().find(|k| data.contains_key(**k)) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "event {event_type} has a field `{k}`, which the envelope reserves; rename it"
                ),
            ));
        }
        Ok(Self {
            event_id: new_event_id(),
            event_type: event_type.to_owned(),
            timestamp: crate::queue::wire::now_secs(),
            source: None,
            correlation_id: None,
            causation_id: None,
            traceparent: None,
            data,
        })
    }

    /// Whether this is an event of type `E`.
    pub fn is<E: Event>(&self) -> bool {
        self.event_type == E::TYPE
    }

    /// The typed event.
    pub fn decode<E: Event>(&self) -> Result<E> {
        if !self.is::<E>() {
            return Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "event {} is a {}, not a {}",
                    self.event_id,
                    self.event_type,
                    E::TYPE
                ),
            ));
        }
        E::deserialize(ObjectRef(&self.data)).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!(
                    "event {} ({}) has unexpected fields: {e}",
                    self.event_id, self.event_type
                ),
            )
        })
    }

    /// The flat JSON object of the wire format.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::with_capacity(self.data.len() + 7);
        m.insert("event_id".into(), self.event_id.clone().into());
        m.insert("event_type".into(), self.event_type.clone().into());
        m.insert("timestamp".into(), self.timestamp.into());
        for (k, v) in &self.data {
            m.insert(k.clone(), v.clone());
        }
        for (k, v) in [
            ("source", &self.source),
            ("correlation_id", &self.correlation_id),
            ("causation_id", &self.causation_id),
            ("traceparent", &self.traceparent),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
        m
    }

    /// The flat JSON object of the wire format, serialized straight from
    /// the envelope: the same bytes as serializing [`Envelope::to_json`],
    /// without copying the event's fields into a new map.
    pub(crate) fn wire(&self) -> Wire<'_> {
        Wire(self)
    }

    /// Read the flat JSON object of the wire format. Fields other than the
    /// envelope's (including a queue's `_failures` / `_requeues`) are the
    /// event's data, except that keys starting with `_` are left out.
    pub fn from_json(m: Map<String, Value>) -> Result<Self> {
        // One pass that moves each field where it belongs, the event's own
        // in their published order (removing the envelope's keys one by one
        // shifted the map's entries once per key: ~2.4% of a service's CPU).
        let text = |v: Value| match v {
            Value::String(s) => Some(s),
            _ => None,
        };
        let mut data = Map::with_capacity(m.len());
        let (mut event_id, mut event_type, mut timestamp) = (None, None, 0.0);
        let (mut source, mut correlation_id, mut causation_id, mut traceparent) =
            (None, None, None, None);
        for (k, v) in m {
            match k.as_str() {
                "event_id" => event_id = text(v),
                "event_type" => event_type = text(v),
                "timestamp" => timestamp = v.as_f64().unwrap_or(0.0),
                "source" => source = text(v),
                "correlation_id" => correlation_id = text(v),
                "causation_id" => causation_id = text(v),
                "traceparent" => traceparent = text(v),
                _ if k.starts_with('_') => {}
                _ => {
                    data.insert(k, v);
                }
            }
        }
        let (Some(event_id), Some(event_type)) = (event_id, event_type) else {
            return Err(Error::new(
                ErrorKind::Decode,
                "not an event: `event_id` and `event_type` must be strings",
            ));
        };
        Ok(Self {
            event_id,
            event_type,
            timestamp,
            source,
            correlation_id,
            causation_id,
            traceparent,
            data,
        })
    }

    /// Read an entry's bytes straight into an envelope, in one pass: what
    /// [`crate::queue::wire::decode`] then [`Envelope::from_json`] make of
    /// a well-formed event, without the message's `Map` in between (that
    /// decode, its copy into the envelope and its drop were ~45% of a
    /// service's CPU in `eddy bench bus`, perf). `None` for anything else
    /// (an envelope field of another type, not an event, not JSON): the
    /// caller then takes the general path, which decides.
    pub(crate) fn from_wire_bytes(raw: &[u8]) -> Option<Self> {
        crate::queue::wire::parse::<WireEvent>(raw)
            .ok()
            .and_then(|(event, _)| event.env)
    }

    /// The value a service's `order_by(field)` orders by: the event's own
    /// field, or the envelope's (`correlation_id`, `source`...). Strings as
    /// they are, other values as JSON text; missing or null: no key.
    pub(crate) fn order_key(&self, field: &str) -> Option<String> {
        let text = |s: &Option<String>| s.clone();
        match self.data.get(field) {
            Some(Value::String(s)) => return Some(s.clone()),
            Some(v) if !v.is_null() => return Some(v.to_string()),
            Some(_) => return None,
            None => {}
        }
        match field {
            "event_id" => Some(self.event_id.clone()),
            "event_type" => Some(self.event_type.clone()),
            "timestamp" => Some(Value::from(self.timestamp).to_string()),
            "source" => text(&self.source),
            "correlation_id" => text(&self.correlation_id),
            "causation_id" => text(&self.causation_id),
            "traceparent" => text(&self.traceparent),
            _ => None,
        }
    }

    /// The envelope of a message read from a subscription queue.
    pub fn from_message(msg: &Message) -> Result<Self> {
        Self::from_json(msg.data.clone())
    }

    /// As a CloudEvents 1.0 JSON object (structured mode). The envelope
    /// extras travel as the extensions `correlationid`, `causationid` and
    /// `traceparent`.
    pub fn to_cloudevent(&self) -> Value {
        let mut m = Map::new();
        m.insert("specversion".into(), "1.0".into());
        m.insert("id".into(), self.event_id.clone().into());
        m.insert(
            "source".into(),
            self.source.clone().unwrap_or_else(|| "eddy".into()).into(),
        );
        m.insert("type".into(), self.event_type.clone().into());
        let time = UNIX_EPOCH + Duration::from_secs_f64(self.timestamp.max(0.0));
        m.insert(
            "time".into(),
            humantime::format_rfc3339_micros(time).to_string().into(),
        );
        m.insert("datacontenttype".into(), "application/json".into());
        m.insert("data".into(), Value::Object(self.data.clone()));
        for (k, v) in [
            ("correlationid", &self.correlation_id),
            ("causationid", &self.causation_id),
            ("traceparent", &self.traceparent),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
        Value::Object(m)
    }

    /// Read a CloudEvents 1.0 JSON object (structured mode, JSON data).
    pub fn from_cloudevent(v: &Value) -> Result<Self> {
        let bad = |what: &str| {
            Error::new(
                ErrorKind::Decode,
                format!("not a CloudEvents 1.0 JSON event: {what}"),
            )
        };
        let m = v.as_object().ok_or_else(|| bad("not an object"))?;
        let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        if s("specversion").as_deref() != Some("1.0") {
            return Err(bad("`specversion` must be \"1.0\""));
        }
        let event_type = s("type").ok_or_else(|| bad("`type` is missing"))?;
        let data = match m.get("data") {
            Some(Value::Object(d)) => d.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(bad("`data` must be a JSON object")),
        };
        let mut env = Self::from_parts(&event_type, data)?;
        env.event_id = s("id").ok_or_else(|| bad("`id` is missing"))?;
        env.source = s("source").filter(|s| s != "eddy");
        if let Some(t) = s("time") {
            let t =
                humantime::parse_rfc3339_weak(&t).map_err(|e| bad(&format!("bad `time`: {e}")))?;
            env.timestamp = t
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
        }
        env.correlation_id = s("correlationid");
        env.causation_id = s("causationid");
        env.traceparent = s("traceparent");
        Ok(env)
    }
}

/// A fresh event id: a v4 UUID, made as message ids are
/// ([`crate::queue::wire::random_uuid`]).
pub(crate) fn new_event_id() -> String {
    let mut buf = uuid::Uuid::encode_buffer();
    crate::queue::wire::random_uuid()
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
}

/// A W3C `traceparent` continuing `parent`'s trace with a new span id, or
/// starting a new trace.
pub(crate) fn new_traceparent(parent: Option<&str>) -> String {
    let trace_id = parent
        .and_then(|p| p.split('-').nth(1))
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>() | 1));
    format!("00-{trace_id}-{:016x}-01", rand::random::<u64>() | 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    /// The general path: the entry's message, then `from_json`.
    fn general(raw: &[u8]) -> Option<Envelope> {
        let entry = crate::engine::Entry::new(
            crate::EntryId::new(1, 0),
            Some(bytes::Bytes::copy_from_slice(raw)),
            1,
        );
        let msg = crate::queue::wire::decode(entry, 1 << 20).ok()?;
        Envelope::from_json(msg.data).ok()
    }

    #[test]
    fn wire_bytes_read_as_the_general_path_reads_them() {
        let meta = r#""_metadata":{"id":"e1","timestamp":1.5,"ttl":null}"#;
        // Well-formed events: the one-pass reader gives the same envelope.
        for raw in [
            format!(r#"{{"event_id":"e1","event_type":"T","timestamp":1.25,"a":1,"b":{{"c":[1,"x"]}},{meta}}}"#),
            format!(r#"{{"b":2,"event_type":"T","a":"é","event_id":"e1","source":"s","correlation_id":"c","causation_id":"k","traceparent":"t",{meta}}}"#),
            // Queue fields are read and left out; a duplicate's last wins.
            format!(r#"{{"event_id":"e1","event_type":"T","a":1,"_failures":[{{"reason":"r","timestamp":1}}],"a":3,{meta}}}"#),
            // Big integers and odd metadata (read leniently) are kept as such.
            r#"{"event_id":"e1","event_type":"T","n":123456789012345678901234567890,"_metadata":7}"#.to_owned(),
            r#"{"event_id":"e1","event_type":"T","timestamp":17}"#.to_owned(),
        ] {
            let fast = Envelope::from_wire_bytes(raw.as_bytes());
            assert!(fast.is_some(), "{raw}");
            assert_eq!(fast, general(raw.as_bytes()), "{raw}");
        }
        // Anything else is left to the general path, which decides.
        for raw in [
            &br#"{"event_id":"e1","event_type":"T","source":null}"#[..],
            br#"{"event_id":"e1","event_type":"T","timestamp":"x"}"#,
            br#"{"event_id":5,"event_type":"T"}"#,
            br#"{"event_type":"T"}"#,
            br#"{"event_id":"e1","event_type":"T"} x"#,
            b"{\"event_id\":\"e1\",\"event_type\":\"T\",\"_failures\":[\"\xff\"]}",
            b"[1]",
            b"not json",
        ] {
            assert_eq!(Envelope::from_wire_bytes(raw), None, "{raw:?}");
        }
        let lenient =
            general(br#"{"event_id":"e1","event_type":"T","source":null,"timestamp":"x"}"#)
                .unwrap();
        assert_eq!((lenient.source, lenient.timestamp), (None, 0.0));
    }

    #[test]
    fn order_keys_come_from_the_event_or_its_envelope() {
        let mut env = Envelope::from_parts(
            "T",
            json!({"order_id": "o1", "n": 7, "gone": null})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        env.correlation_id = Some("c1".into());
        let key = |f: &str| env.order_key(f);
        assert_eq!(key("order_id").as_deref(), Some("o1"));
        assert_eq!(key("n").as_deref(), Some("7"));
        assert_eq!(key("gone"), None);
        assert_eq!(key("missing"), None);
        assert_eq!(key("correlation_id").as_deref(), Some("c1"));
        assert_eq!(key("source"), None);
        assert_eq!(key("event_type").as_deref(), Some("T"));
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct OrderShippedEvent {
        order_id: String,
        tracking_number: String,
        carrier: String,
    }
    crate::event!(OrderShippedEvent);

    fn shipped() -> OrderShippedEvent {
        OrderShippedEvent {
            order_id: "o1".into(),
            tracking_number: "TRACK-ABCDEFGH".into(),
            carrier: "UPS".into(),
        }
    }

    #[test]
    fn decodes_like_a_value() -> Result<()> {
        use serde::Deserialize;
        #[derive(Debug, PartialEq, Deserialize)]
        struct Wrapped(OrderShippedEvent);
        #[derive(Debug, PartialEq, Deserialize)]
        enum Tagged {
            Shipped { order_id: String },
        }
        #[derive(Debug, PartialEq, Deserialize)]
        struct Narrow {
            order_id: String,
        }
        fn both<T: DeserializeOwned + std::fmt::Debug + PartialEq>(m: &Map<String, Value>) {
            let via_value = T::deserialize(&Value::Object(m.clone())).map_err(|e| e.to_string());
            let direct = T::deserialize(ObjectRef(m)).map_err(|e| e.to_string());
            assert_eq!(direct, via_value);
        }
        let env = Envelope::new(&shipped())?;
        both::<OrderShippedEvent>(&env.data);
        both::<Wrapped>(&env.data);
        both::<Option<OrderShippedEvent>>(&env.data);
        both::<Narrow>(&env.data);
        both::<Tagged>(&env.data);
        both::<String>(&env.data);
        both::<Vec<u8>>(&env.data);
        both::<u64>(&env.data);
        both::<()>(&env.data);
        both::<HashMap<String, String>>(&env.data);
        let one: Map<String, Value> =
            serde_json::from_value(json!({"Shipped": {"order_id": "o"}}))?;
        both::<Tagged>(&one);
        both::<Option<Tagged>>(&one);
        Ok(())
    }

    #[test]
    fn wire_bytes_match_to_json() -> Result<()> {
        let same = |env: &Envelope| -> Result<()> {
            let direct = serde_json::to_vec(&env.wire())?;
            let via_map = serde_json::to_vec(&env.to_json())?;
            assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&via_map)
            );
            Ok(())
        };
        let mut env = Envelope::new(&shipped())?;
        same(&env)?;
        env.source = Some("shipping-service".into());
        env.traceparent = Some("00-x".into());
        env.timestamp = -0.0;
        same(&env)?;
        for t in [f64::NAN, f64::INFINITY, 1e-7, 1.7e9 + 0.123_456, 1e300] {
            env.timestamp = t;
            same(&env)?;
        }
        // A field named like the envelope's merges as in the map.
        env.data.insert("event_id".into(), json!("mine"));
        env.data.insert("source".into(), json!(1));
        same(&env)?;
        Ok(())
    }

    #[test]
    fn flat_json_round_trip() -> Result<()> {
        let mut env = Envelope::new(&shipped())?;
        env.source = Some("shipping-service".into());
        let j = env.to_json();
        assert_eq!(j["event_type"], "OrderShippedEvent");
        assert_eq!(j["order_id"], "o1");
        assert!(j.get("correlation_id").is_none());
        let back = Envelope::from_json(j)?;
        assert_eq!(back, env);
        assert_eq!(back.decode::<OrderShippedEvent>()?, shipped());
        Ok(())
    }

    #[test]
    fn reading_keeps_the_events_field_order() -> Result<()> {
        let m = json!({"event_id": "e1", "z": 1, "event_type": "T", "a": 2, "m": 3,
                       "timestamp": 1.0, "source": "s", "b": 4});
        let Value::Object(m) = m else { unreachable!() };
        let env = Envelope::from_json(m)?;
        let keys: Vec<&str> = env.data.keys().map(String::as_str).collect();
        assert_eq!(keys, ["z", "a", "m", "b"]);
        Ok(())
    }

    #[test]
    fn cloudevents_round_trip() -> Result<()> {
        let mut env = Envelope::new(&shipped())?;
        env.source = Some("shipping-service".into());
        env.correlation_id = Some("c1".into());
        env.timestamp = 1_700_000_000.25;
        let ce = env.to_cloudevent();
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["type"], "OrderShippedEvent");
        assert_eq!(ce["time"], "2023-11-14T22:13:20.250000Z");
        assert_eq!(ce["data"]["carrier"], "UPS");
        assert_eq!(Envelope::from_cloudevent(&ce)?, env);
        assert!(Envelope::from_cloudevent(&json!({"specversion": "0.3"})).is_err());
        Ok(())
    }

    #[test]
    fn reserved_fields_are_refused() {
        let mut m = Map::new();
        m.insert("source".into(), json!("x"));
        let e = Envelope::from_parts("T", m).err().map(|e| e.kind());
        assert_eq!(e, Some(ErrorKind::InvalidArgument));
        assert!(Envelope::from_parts("bad type!", Map::new()).is_err());
    }
}
