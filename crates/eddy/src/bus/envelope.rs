//! The event envelope: the seed's flat JSON (`event_id`, `event_type`,
//! `timestamp` and the event's own fields at top level) plus `source`,
//! `correlation_id`, `causation_id` and `traceparent`; and its mapping to
//! and from CloudEvents 1.0 JSON.

use std::time::{Duration, UNIX_EPOCH};

use serde::de::DeserializeOwned;
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
        crate::engine::validate_name(event_type).map_err(|_| invalid_type(event_type))?;
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
        E::deserialize(crate::json::ObjectRef(&self.data)).map_err(|e| {
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

    /// Read the flat JSON object of the wire format. Fields other than the
    /// envelope's (including a queue's `_failures` / `_requeues`) are the
    /// event's data, except that keys starting with `_` are left out.
    pub fn from_json(m: Map<String, Value>) -> Result<Self> {
        // One pass that moves each field where it belongs, the event's own
        // in the map's order.
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

    /// The envelope of a message read from a subscription queue (or the
    /// `all` log), read from its stored bytes as a service reads it.
    pub fn from_message(msg: &Message) -> Result<Self> {
        let Some(raw) = msg.stored_data() else {
            // A foreign entry without `data`: its view says why not.
            return Self::from_json(msg.data.clone());
        };
        let event = super::Incoming::read(raw)
            .map_err(|e| Error::new(ErrorKind::Decode, format!("not an event: {}", e.message())))?;
        event.envelope().cloned()
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

/// The error for an event type that is not a valid name.
pub(crate) fn invalid_type(event_type: &str) -> Error {
    Error::new(
        ErrorKind::InvalidName,
        format!(
            "invalid event type `{event_type}`: use 1 to 200 characters from A-Z a-z 0-9 _ - . :"
        ),
    )
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
