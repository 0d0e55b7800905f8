//! Writing a payload as an entry's `data`: serialized once, checked, and
//! the sender's own members and `_metadata` spliced in around it.

use bytes::Bytes;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::Serialize;
use serde_json::value::RawValue;

use super::RESERVED;
use crate::error::{Error, ErrorKind, Result};
use crate::json::Key;

/// A member's value that the sender writes beside the payload's own.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field<'a> {
    /// A JSON string.
    Text(&'a str),
    /// A number (a non-finite one is written as null).
    Number(f64),
    /// JSON text, as it is.
    Json(&'a RawValue),
}

/// The members a sender writes around the payload's: `lead` right after
/// the opening brace (a bus event's id, type and time, which readers look
/// for first), `tail` after the payload's members and before `_metadata`.
/// The payload may hold none of the names in `reserved` (nor the queue's
/// own, [`RESERVED`]); `reserved_by` says who writes them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Beside<'a> {
    pub(crate) lead: &'a [(&'a str, Field<'a>)],
    pub(crate) tail: &'a [(&'a str, Field<'a>)],
    pub(crate) reserved: &'a [&'a str],
    pub(crate) reserved_by: &'a str,
}

/// Serialize a payload once and write it with the members `beside` it and
/// `_metadata`, checking it is a JSON object within the size limit. The
/// payload's bytes are kept as its serializer wrote them (a `RawValue`'s as
/// written); the rest is spliced in around them.
pub(crate) fn encode<T: Serialize + ?Sized>(
    payload: &T,
    message_id: &str,
    timestamp: f64,
    ttl_secs: Option<u64>,
    max_bytes: usize,
    beside: &Beside<'_>,
) -> Result<Bytes> {
    // The lead members are written first, to learn their length: the
    // payload is serialized after room for them, so they go in without
    // moving the payload's bytes.
    let mut lead = Vec::new();
    write_members(&mut lead, beside.lead, false)?;
    let room = if lead.is_empty() { 0 } else { lead.len() + 1 };
    let mut buf = Vec::with_capacity(room + 256);
    buf.resize(room, b' ');
    serde_json::to_writer(&mut buf, payload).map_err(|e| {
        Error::new(
            ErrorKind::NotAnObject,
            format!("payload cannot be serialized as JSON: {e}"),
        )
    })?;
    let written = buf.len() - room;
    // Fail fast on a huge payload, before scanning it.
    if written > max_bytes {
        return Err(too_large(written, max_bytes));
    }
    let object = buf.get(room..).unwrap_or_default();
    if object.first() != Some(&b'{') {
        return Err(Error::new(
            ErrorKind::NotAnObject,
            "payload must be a JSON object (`{...}`), not an array, string, number, boolean or null",
        ));
    }
    check_reserved(object, beside)?;
    // Off with the closing brace; a payload written as it is (a `RawValue`)
    // may have no member, only spaces (`{ }`).
    buf.pop();
    let mut any = buf.iter().skip(room + 1).any(|b| !b.is_ascii_whitespace());
    if room > 0 {
        // `{` and the lead where the room and the payload's `{` were, and
        // a comma in the brace's place if the payload has members.
        buf[0] = b'{';
        buf[1..room].copy_from_slice(&lead);
        if any {
            buf[room] = b',';
        } else {
            buf.remove(room);
        }
        any = true;
    }
    write_members(&mut buf, beside.tail, any)?;
    any |= !beside.tail.is_empty();
    if any {
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

/// `members` as `"name":value` pairs, separated by commas (one before the
/// first too, with `comma`).
fn write_members(buf: &mut Vec<u8>, members: &[(&str, Field<'_>)], comma: bool) -> Result<()> {
    for (i, (name, value)) in members.iter().enumerate() {
        if comma || i > 0 {
            buf.push(b',');
        }
        serde_json::to_writer(&mut *buf, name)?;
        buf.push(b':');
        match value {
            Field::Text(s) => serde_json::to_writer(&mut *buf, s)?,
            Field::Number(n) => serde_json::to_writer(&mut *buf, n)?,
            Field::Json(raw) => buf.extend_from_slice(raw.get().as_bytes()),
        }
    }
    Ok(())
}

pub(crate) fn too_large(len: usize, max: usize) -> Error {
    Error::new(
        ErrorKind::PayloadTooLarge,
        format!(
            "payload is {len} bytes encoded, over the {max}-byte limit: send a reference to the data instead, or raise max_payload_bytes"
        ),
    )
}

/// Refuse a payload with a reserved top-level field: the queue's own or
/// one of `beside.reserved`. One streaming pass over the payload's keys.
fn check_reserved(buf: &[u8], beside: &Beside<'_>) -> Result<()> {
    let mut scan = KeyScan {
        names: beside.reserved,
        found: None,
    };
    let mut de = serde_json::Deserializer::from_slice(buf);
    let read = serde::Deserializer::deserialize_map(&mut de, &mut scan).and_then(|()| de.end());
    if let Some(k) = scan.found {
        let who = if RESERVED.contains(&k.as_str()) {
            "the queue's own bookkeeping"
        } else {
            beside.reserved_by
        };
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("payload field `{k}` is reserved for {who}; rename it"),
        ));
    }
    read.map_err(|_| {
        Error::new(
            ErrorKind::NotAnObject,
            "payload must be a single JSON object",
        )
    })
}

/// Reads an object's keys, stopping at the first reserved one.
struct KeyScan<'n> {
    names: &'n [&'n str],
    found: Option<String>,
}

impl<'de> Visitor<'de> for &mut KeyScan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let k = key.as_str();
            if RESERVED.contains(&k) || self.names.contains(&k) {
                self.found = Some(k.to_owned());
                return Ok(());
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn encodes_with_metadata() -> Result<()> {
        let b = encode(
            &json!({"a": 1}),
            "m1",
            1.5,
            Some(3),
            1 << 20,
            &Beside::default(),
        )?;
        let v: Value = serde_json::from_slice(&b)?;
        assert_eq!(
            v,
            json!({"a": 1, "_metadata": {"id": "m1", "timestamp": 1.5, "ttl": 3}})
        );
        let b = encode(&json!({}), "m2", 2.0, None, 1 << 20, &Beside::default())?;
        let v: Value = serde_json::from_slice(&b)?;
        assert_eq!(
            v,
            json!({"_metadata": {"id": "m2", "timestamp": 2.0, "ttl": null}})
        );
        Ok(())
    }

    #[test]
    fn the_senders_members_go_around_the_payloads_bytes() -> Result<()> {
        let text = r#"{"z": 1234567890123456789012345678901234567890, "a" : [1.50]}"#;
        let payload = RawValue::from_string(text.to_owned())?;
        let leanmq = RawValue::from_string(r#"{"webhook":{"path":"/p"}}"#.to_owned())?;
        let tail = [
            ("_reply_to", Field::Text("reply_x")),
            ("_leanmq", Field::Json(&leanmq)),
        ];
        let lead = [("id", Field::Text("e\"1")), ("t", Field::Number(1.5))];
        let beside = Beside {
            lead: &lead,
            tail: &tail,
            reserved: &["id", "t"],
            reserved_by: "the test",
        };
        let b = encode(&payload, "m", 1.5, None, 1 << 20, &beside)?;
        assert_eq!(
            std::str::from_utf8(&b).ok(),
            Some(concat!(
                r#"{"id":"e\"1","t":1.5,"z": 1234567890123456789012345678901234567890, "a" : [1.50],"#,
                r#""_reply_to":"reply_x","_leanmq":{"webhook":{"path":"/p"}},"#,
                r#""_metadata":{"id":"m","timestamp":1.5,"ttl":null}}"#
            ))
        );
        // An empty payload, spaces and all; lead or tail alone.
        for (raw, lead, tail, want) in [
            (
                "{ }",
                &lead[..],
                &tail[..1],
                r#"{"id":"e\"1","t":1.5 ,"_reply_to":"reply_x","#,
            ),
            ("{ }", &lead[..1], &[][..], r#"{"id":"e\"1" ,"_metadata""#),
            (
                "{ }",
                &[][..],
                &tail[..1],
                r#"{ "_reply_to":"reply_x","_metadata""#,
            ),
            ("{}", &[][..], &[][..], r#"{"_metadata""#),
            (
                r#"{"a":1}"#,
                &lead[..1],
                &[][..],
                r#"{"id":"e\"1","a":1,"_metadata""#,
            ),
        ] {
            let payload = RawValue::from_string(raw.to_owned())?;
            let beside = Beside {
                lead,
                tail,
                ..Beside::default()
            };
            let b = encode(&payload, "m", 1.5, None, 1 << 20, &beside)?;
            let text = String::from_utf8_lossy(&b);
            assert!(text.starts_with(want), "{text}");
            serde_json::from_slice::<Value>(&b)?;
        }
        // The payload may not write them itself.
        let own = json!({"a": 1, "t": 2});
        let refused = encode(&own, "m", 0.0, None, 100, &beside).err();
        assert_eq!(
            refused.as_ref().map(|e| e.kind()),
            Some(ErrorKind::InvalidArgument)
        );
        assert!(refused.is_some_and(|e| e.to_string().contains("reserved for the test")));
        let own = json!({"_leanmq": 1});
        let refused = encode(&own, "m", 0.0, None, 100, &Beside::default()).err();
        assert_eq!(refused.map(|e| e.kind()), Some(ErrorKind::InvalidArgument));
        Ok(())
    }

    #[test]
    fn rejects_bad_payloads() {
        let kind = |r: Result<Bytes>| r.err().map(|e| e.kind());
        assert_eq!(
            kind(encode(&json!([1]), "m", 0.0, None, 100, &Beside::default())),
            Some(ErrorKind::NotAnObject)
        );
        assert_eq!(
            kind(encode(&json!("s"), "m", 0.0, None, 100, &Beside::default())),
            Some(ErrorKind::NotAnObject)
        );
        assert_eq!(
            kind(encode(
                &json!(null),
                "m",
                0.0,
                None,
                100,
                &Beside::default()
            )),
            Some(ErrorKind::NotAnObject)
        );
        assert_eq!(
            kind(encode(
                &json!({"x": "y".repeat(200)}),
                "m",
                0.0,
                None,
                100,
                &Beside::default()
            )),
            Some(ErrorKind::PayloadTooLarge)
        );
        assert_eq!(
            kind(encode(
                &json!({"_metadata": 1}),
                "m",
                0.0,
                None,
                100,
                &Beside::default()
            )),
            Some(ErrorKind::InvalidArgument)
        );
        for field in ["_failures", "_requeues", "_leanmq"] {
            let mut p = serde_json::Map::new();
            p.insert(field.into(), json!([]));
            assert_eq!(
                kind(encode(&p, "m", 0.0, None, 100, &Beside::default())),
                Some(ErrorKind::InvalidArgument),
                "{field}"
            );
        }
        // An escaped spelling of a reserved field is still that field.
        let raw =
            serde_json::value::RawValue::from_string(r#"{"\u005ffailures":[]}"#.into()).unwrap();
        assert_eq!(
            kind(encode(&raw, "m", 0.0, None, 100, &Beside::default())),
            Some(ErrorKind::InvalidArgument)
        );
        // Other `_` fields, and values spelled like reserved keys, are fine.
        assert!(encode(
            &json!({"_x": "_failures", "y": "\"_metadata"}),
            "m",
            0.0,
            None,
            100,
            &Beside::default()
        )
        .is_ok());
        // Nested `_metadata` is the payload's own business.
        assert!(encode(
            &json!({"x": {"_metadata": 1}}),
            "m",
            0.0,
            None,
            100,
            &Beside::default()
        )
        .is_ok());
    }
}
