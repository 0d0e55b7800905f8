//! Reading an entry: its bytes once, `_metadata` into the message's fields
//! on the way, the payload into a `Map` ([`decode`]) or straight into the
//! reader's type ([`decode_as`]). An entry that cannot be read is handed
//! back whole ([`Undecodable`]) for the dead-letter queue.

use bytes::Bytes;
use serde::de::MapAccess;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::message::Stored;
use super::{Message, TypedMessage, FAILURES, METADATA, REQUEUES};
use crate::engine::{Entry, EntryId};
use crate::error::Result;
use crate::json::{self, ReadError, Takes, Text};
use crate::queue::history::Record;

/// What the consumer loop reads a queue's entries as: a [`Message`], or a
/// service's event.
pub(crate) trait Delivered: Sized + Send + 'static {
    /// Decode an entry, or say why it cannot be (it then goes to the DLQ).
    fn decode(entry: Entry, max_bytes: usize) -> Result<Self, Box<Undecodable>>;
    /// Decode an entry whatever its size or shape, for a reader with
    /// nowhere further to send it (a dead-letter queue's).
    fn decode_any(entry: Entry) -> Self;
    /// The stream id.
    fn id(&self) -> EntryId;
    /// Deliveries to the reading group so far, this one included.
    fn delivery_count(&self) -> u64;
    /// The message, where the item is one: dead-letter it without reading
    /// it back.
    fn into_message(self) -> Option<Message> {
        None
    }
    /// Fill in the delivery span's fields that the item knows (declared
    /// empty by the consumer loop), and set its parent; called before the
    /// span is first entered. A service's event records its type and ids.
    fn in_span(&mut self, _span: &tracing::Span) {}
}

impl Delivered for Message {
    fn decode(entry: Entry, max_bytes: usize) -> Result<Self, Box<Undecodable>> {
        decode(entry, max_bytes)
    }
    fn decode_any(entry: Entry) -> Self {
        decode_any(entry)
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
    pub(crate) fn new(entry: Entry, reason: String) -> Box<Self> {
        Box::new(Self {
            id: entry.id,
            reason,
            entry,
        })
    }

    /// Its move to the dead-letter queue, with `reason` recorded.
    pub(crate) fn transfer(&self, record: &Record) -> crate::engine::Transfer {
        crate::queue::history::transfer(
            self.id,
            self.entry.data.as_ref(),
            &self.entry.fields,
            FAILURES,
            record,
        )
    }
}

/// `_metadata` as read: whatever is missing or of another type is `None`
/// (LeanMQ and eddy always write all three).
#[derive(Default)]
pub(crate) struct Meta {
    pub(crate) id: Option<String>,
    pub(crate) timestamp: Option<f64>,
    pub(crate) ttl: Option<u64>,
}

/// Takes `_metadata` (its last copy counts) from an entry's object.
#[derive(Default)]
struct MetaReader(Meta);

impl<'de> Takes<'de> for MetaReader {
    fn take<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        if key != METADATA {
            return Ok(false);
        }
        self.0 = map.next_value::<Meta>()?;
        Ok(true)
    }
}

impl<'de> serde::Deserialize<'de> for Meta {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields(Meta);
        impl<'de> Takes<'de> for Fields {
            fn take<A: MapAccess<'de>>(
                &mut self,
                key: &str,
                map: &mut A,
            ) -> Result<bool, A::Error> {
                let meta = &mut self.0;
                match key {
                    "id" => meta.id = map.next_value::<Text>()?.into_string(),
                    "timestamp" => meta.timestamp = json::number(map.next_value::<&RawValue>()?),
                    "ttl" => meta.ttl = json::number(map.next_value::<&RawValue>()?),
                    _ => return Ok(false),
                }
                Ok(true)
            }
        }
        // Any value: an object's fields are read, anything else is no
        // metadata.
        let mut fields = Fields(Meta::default());
        json::skip_taking(d, &mut fields)?;
        Ok(fields.0)
    }
}

/// The entry's `data`, within the size limit, or why not: the first step
/// of every reader of an entry.
pub(crate) fn data_of(entry: &Entry, max_bytes: usize) -> std::result::Result<&Bytes, String> {
    let Some(raw) = entry.data.as_ref() else {
        return Err("entry has no `data` field".into());
    };
    if raw.len() > max_bytes {
        return Err(format!(
            "entry is {} bytes, over this reader's {max_bytes}-byte limit (kept whole: raise max_payload_bytes to read it)",
            raw.len()
        ));
    }
    Ok(raw)
}

/// Read an entry's object: the payload as `T`, and its metadata.
fn read<T: serde::de::DeserializeOwned>(raw: &[u8]) -> std::result::Result<(T, Meta), ReadError> {
    let mut meta = MetaReader::default();
    let payload = json::read_object::<T, _>(raw, &mut meta)?;
    Ok((payload, meta.0))
}

/// Decode an entry, or explain why not. An entry over `max_bytes` is not
/// decoded: the limit bounds what a consumer is handed, and the caller
/// moves such an entry, whole, to the dead-letter queue.
pub(crate) fn decode(entry: Entry, max_bytes: usize) -> Result<Message, Box<Undecodable>> {
    let read = data_of(&entry, max_bytes)
        .and_then(|raw| read::<Map<String, Value>>(raw).map_err(|e| e.reason("JSON object")));
    match read {
        Ok((data, meta)) => Ok(Message {
            id: entry.id,
            timestamp: meta.timestamp.unwrap_or(entry.id.ms as f64 / 1000.0),
            message_id: meta.id.unwrap_or_default(),
            ttl: meta.ttl,
            delivery_count: entry.delivery_count,
            stored: Stored::of(&entry),
            data,
        }),
        Err(reason) => Err(Undecodable::new(entry, reason)),
    }
}

/// Decode an entry straight into `T`, or explain why not: as [`decode`],
/// and an object that does not deserialize into `T` is refused with the
/// serde error as the reason. The members `T` does not take are skipped,
/// checked only for JSON syntax.
pub(crate) fn decode_as<T: serde::de::DeserializeOwned>(
    entry: Entry,
    max_bytes: usize,
) -> Result<TypedMessage<T>, Box<Undecodable>> {
    let read = data_of(&entry, max_bytes)
        .and_then(|raw| read::<T>(raw).map_err(|e| e.reason(std::any::type_name::<T>())));
    match read {
        Ok((payload, meta)) => Ok(TypedMessage {
            id: entry.id,
            payload,
            timestamp: meta.timestamp.unwrap_or(entry.id.ms as f64 / 1000.0),
            delivery_count: entry.delivery_count,
            message_id: meta.id.unwrap_or_default(),
            ttl: meta.ttl,
        }),
        Err(reason) => Err(Undecodable::new(entry, reason)),
    }
}

/// Decode an entry whatever its size, for readers that only look (peek,
/// a dead-letter queue): one that is not a message is shown as
/// [`undecodable_message`] does.
pub(crate) fn decode_any(entry: Entry) -> Message {
    let dc = entry.delivery_count;
    decode(entry, usize::MAX).unwrap_or_else(|u| undecodable_message(&u, dc))
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
    use serde_json::json;

    use super::*;

    fn entry(d: &[u8]) -> Entry {
        Entry::new(EntryId::new(1000, 0), Some(Bytes::copy_from_slice(d)), 2)
    }

    #[test]
    fn decodes_and_explains() {
        let m = decode(
            entry(br#"{"a":1,"_metadata":{"id":"x","timestamp":3.0,"ttl":null}}"#),
            1000,
        );
        assert!(
            matches!(m, Ok(ref m) if m.message_id == "x" && m.timestamp == 3.0 && m.data.len() == 1)
        );
        for (bytes, want) in [
            (&b"\xff\xfe"[..], "not UTF-8"),
            (b"{\"a\":\"\xff\"}", "not UTF-8"),
            (b"{nope", "not valid JSON"),
            (b"[1]", "not an object"),
            (br#"{"a":1e400}"#, "not valid JSON"),
            (br#"{"a":"\udc00"}"#, "not valid JSON"),
            (b"{} x", "not valid JSON"),
        ] {
            match decode(entry(bytes), 1000) {
                Err(u) => assert!(u.reason.contains(want), "{}", u.reason),
                Ok(m) => unreachable!("decoded {m:?}"),
            }
        }
        assert!(decode(entry(&[b' '; 2000]), 1000).is_err_and(|u| u.reason.contains("limit")));
        let none = Entry::new(EntryId::new(1, 0), None, 1);
        assert!(decode(none, 1000).is_err_and(|u| u.reason.contains("no `data`")));
    }

    #[test]
    fn metadata_of_any_shape_decodes() {
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
                br#"{"_metadata":{"id":"m","timestamp":1e400,"ttl":1.5},"a":1}"#,
                "m",
                1.0,
                None,
            ),
            (
                br#"{"a":1,"_metadata":{"ttl":30,"extra":{"k":[1]},"id":"m\u0031","timestamp":2}}"#,
                "m1",
                2.0,
                Some(30),
            ),
            // The last copy counts, of the object and of its fields.
            (
                br#"{"_metadata":{"id":"old"},"a":1,"_metadata":{"id":"new","ttl":1,"ttl":2}}"#,
                "new",
                1.0,
                Some(2),
            ),
        ] {
            let m = decode(entry(bytes), 1000).map_err(|u| u.reason).unwrap();
            assert_eq!((m.message_id.as_str(), m.timestamp, m.ttl), (id, ts, ttl));
            assert_eq!(m.data, *json!({"a": 1}).as_object().unwrap());
        }
        // Keys written with escapes are the same keys.
        let m = decode(
            entry(br#"{"\u0061":1,"_met\u0061data":{"i\u0064":"y","timestamp":4.5,"ttl":null}}"#),
            1000,
        )
        .map_err(|u| u.reason)
        .unwrap();
        assert_eq!((m.message_id.as_str(), m.timestamp), ("y", 4.5));
        assert_eq!(m.data, *json!({"a": 1}).as_object().unwrap());
        // A duplicate key: the last wins, as serde_json's own maps do.
        let m = decode(entry(br#"{"a":1,"a":2}"#), 1000)
            .map_err(|u| u.reason)
            .unwrap();
        assert_eq!(m.data["a"], 2);
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
        let raw = br#"{"a":1,"_metadata":{"id":"x","timestamp":3.5,"ttl":9},"b":"y"}"#;
        let m = decode_as::<P>(entry(raw), 1000).unwrap();
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
        assert_eq!(
            decode_as::<Wrapped>(entry(raw), 1000).unwrap().payload.0.a,
            1
        );
        let some = decode_as::<Option<P>>(entry(raw), 1000).unwrap().payload;
        assert_eq!(some.map(|p| p.a), Some(1));
        let v = decode_as::<Value>(entry(raw), 1000).unwrap().payload;
        assert_eq!(v, json!({"a": 1, "b": "y"}));
        // Not of the type, not JSON, trailing bytes, over the limit: why.
        for (bad, why) in [
            (&br#"{"a":"1"}"#[..], "not a "),
            (br#"{"a":1,"c":2}"#, "unknown field"),
            (b"{nope", "not valid JSON"),
            (br#"{"a":1} x"#, "not valid JSON"),
            (b"[1]", "not an object"),
            (b"{\"a\":1,\"x\":\"\xff\"}", "not UTF-8"),
        ] {
            match decode_as::<P>(entry(bad), 1000) {
                Err(u) => assert!(
                    u.reason.contains(why),
                    "{}: {}",
                    String::from_utf8_lossy(bad),
                    u.reason
                ),
                Ok(m) => unreachable!("decoded {m:?}"),
            }
        }
        assert!(decode_as::<P>(entry(raw), 10).is_err_and(|u| u.reason.contains("limit")));
        // Members `Lax` does not take are skipped, checked for syntax only:
        // what a reader of the whole `Map` refuses there is no concern of
        // a reader that does not read it.
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Lax {
            a: u64,
        }
        let deep = format!(r#"{{"a":1,"x":{}0{}}}"#, "[".repeat(130), "]".repeat(130));
        for odd in [
            &br#"{"a":1,"x":"\udc00"}"#[..],
            br#"{"a":1,"x":1e400}"#,
            deep.as_bytes(),
        ] {
            assert_eq!(
                decode_as::<Lax>(entry(odd), 1 << 20)
                    .map(|m| m.payload)
                    .map_err(|u| u.reason),
                Ok(Lax { a: 1 })
            );
            assert!(decode(entry(odd), 1 << 20).is_err());
        }
    }
}
