//! An event as a service receives it: the envelope's own fields read at
//! once, the event's fields left in the entry's bytes until something asks
//! for them.
//!
//! A typed handler (`on::<E>`) deserializes `E` straight from those bytes,
//! so the event's fields never become a JSON `Map`: building that map (with
//! `preserve_order` and `arbitrary_precision`, every key and number is an
//! allocation and every key a SipHash) was the largest cost of a service in
//! `eddy bench bus` (perf). [`Incoming::envelope`] builds the whole
//! envelope on first use, for `on_any`, `order_by` and
//! [`crate::service::Context::envelope`].
//!
//! Every fast path gives what the general one would, or steps aside: an
//! entry is read this way only if its envelope fields have their types and
//! the whole entry passes the checks decoding it would make (UTF-8,
//! escapes, nesting, trailing bytes); `E` is taken from the bytes only if
//! the event's fields hold no number but 64-bit integers (others read
//! differently from bytes than from a `Value` for types that take any
//! value, such as untagged enums) and the read works; otherwise from the
//! envelope's map, whose answer (including its error) stands.

use std::sync::OnceLock;

use bytes::Bytes;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::envelope::{head_from_wire_bytes, RESERVED};
use super::{Envelope, Event};
use crate::error::Result;

/// An event received by a service.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The envelope; its `data` is empty while `raw` holds the event.
    head: Envelope,
    /// The entry's bytes, when the event's fields have not been read.
    raw: Option<Bytes>,
    /// Whether `E` may be read from `raw` (see the module's doc).
    plain: bool,
    /// The whole envelope, read from `raw` on first use.
    full: OnceLock<Envelope>,
}

impl Incoming {
    /// An event already decoded whole (the general path).
    pub(crate) fn decoded(env: Envelope) -> Self {
        Self {
            head: env,
            raw: None,
            plain: false,
            full: OnceLock::new(),
        }
    }

    /// Read only the envelope of an entry's bytes; `None` if the entry is
    /// not plainly an event (the general path then decides).
    pub(crate) fn from_wire_bytes(raw: &Bytes) -> Option<Self> {
        let (head, plain) = head_from_wire_bytes(raw)?;
        Some(Self {
            head,
            raw: Some(raw.clone()),
            plain,
            full: OnceLock::new(),
        })
    }

    /// The envelope's fields (`data` possibly not read yet): id, type,
    /// source and the rest.
    pub(crate) fn head(&self) -> &Envelope {
        &self.head
    }

    /// The whole envelope, the event's fields included.
    pub(crate) fn envelope(&self) -> &Envelope {
        let Some(raw) = &self.raw else {
            return &self.head;
        };
        self.full.get_or_init(|| {
            Envelope::from_wire_bytes(raw)
                .or_else(|| {
                    let entry =
                        crate::engine::Entry::new(crate::EntryId::new(0, 0), Some(raw.clone()), 0);
                    let msg = crate::queue::wire::decode(entry, usize::MAX).ok()?;
                    Envelope::from_json(msg.data).ok()
                })
                // Cannot happen: the head was read from these bytes with
                // the same checks (every value checked as a `Value`
                // parse checks it, envelope fields of their types), and
                // these parses accept whatever passes them. Keep the fields
                // read rather than fail.
                .unwrap_or_else(|| self.head.clone())
        })
    }

    /// The typed event: from the bytes when they are plainly an `E`,
    /// otherwise as [`Envelope::decode`] gives it.
    pub(crate) fn decode<E: Event>(&self) -> Result<E> {
        if let (Some(raw), true) = (&self.raw, self.plain && self.head.is::<E>()) {
            let mut de = serde_json::Deserializer::from_slice(raw);
            if let Ok(event) = E::deserialize(EventFields(&mut de)) {
                return Ok(event);
            }
        }
        self.envelope().decode::<E>()
    }
}

/// A wire object's deserializer that shows only the event's own fields:
/// the envelope's and those starting with `_` are skipped, as
/// [`Envelope::from_json`] leaves them out of `data`. An option or a newtype
/// sees the object itself, as with [`super::envelope::ObjectRef`].
struct EventFields<D>(D);

impl<'de, D: serde::Deserializer<'de>> serde::Deserializer<'de> for EventFields<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, D::Error> {
        self.0.deserialize_map(OnlyEventFields(visitor))
    }

    crate::queue::wire::as_an_object!(D::Error);
}

struct OnlyEventFields<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for OnlyEventFields<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.0.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<V::Value, A::Error> {
        self.0.visit_map(Filtered(map))
    }
}

struct Filtered<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Filtered<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> std::result::Result<Option<K::Value>, A::Error> {
        use crate::queue::wire::Key;
        while let Some(key) = self.0.next_key::<Key<'de>>()? {
            let k = key.as_str();
            if k.starts_with('_') || RESERVED.contains(&k) {
                self.0.next_value::<IgnoredAny>()?;
                continue;
            }
            return key.deserialize_with(seed).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> std::result::Result<S::Value, A::Error> {
        self.0.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Paid {
        order_id: String,
        amount: f64,
        n: u64,
    }
    crate::event!(Paid);

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        order_id: String,
    }
    crate::event!(Strict, "Paid");

    /// The general path: the entry's message, then `from_json`.
    fn general(raw: &[u8]) -> Envelope {
        let entry = crate::engine::Entry::new(
            crate::EntryId::new(1, 0),
            Some(Bytes::copy_from_slice(raw)),
            1,
        );
        let msg = crate::queue::wire::decode(entry, 1 << 20).unwrap();
        Envelope::from_json(msg.data).unwrap()
    }

    fn incoming(raw: &[u8]) -> Option<Incoming> {
        Incoming::from_wire_bytes(&Bytes::copy_from_slice(raw))
    }

    #[test]
    fn reads_the_envelope_now_and_the_event_when_asked() {
        let raw = br#"{"event_id":"e1","event_type":"Paid","timestamp":2.5,"order_id":"o1","amount":9.99,"n":3,"_failures":[{"reason":"r"}],"source":"s","_metadata":{"id":"e1","timestamp":2.5,"ttl":null}}"#;
        let inc = incoming(raw).unwrap();
        let head = inc.head();
        assert_eq!(
            (
                head.event_id.as_str(),
                head.event_type.as_str(),
                head.timestamp,
                head.source.as_deref()
            ),
            ("e1", "Paid", 2.5, Some("s"))
        );
        assert!(head.data.is_empty(), "the event's fields are not read yet");
        assert_eq!(
            inc.decode::<Paid>().unwrap(),
            Paid {
                order_id: "o1".into(),
                amount: 9.99,
                n: 3
            }
        );
        // Envelope fields and `_` fields are not the event's: a type that
        // refuses unknown fields reads it, as from the map; and refuses
        // the event's other fields, as from the map.
        let only = br#"{"event_id":"e2","event_type":"Paid","order_id":"o2","_requeues":[],"traceparent":"t"}"#;
        assert_eq!(
            incoming(only).unwrap().decode::<Strict>().unwrap(),
            Strict {
                order_id: "o2".into()
            }
        );
        assert!(inc.decode::<Strict>().is_err() && general(raw).decode::<Strict>().is_err());
        assert_eq!(*inc.envelope(), general(raw));
        assert_eq!(
            inc.decode::<Paid>().unwrap(),
            general(raw).decode::<Paid>().unwrap()
        );
    }

    #[test]
    fn odd_events_decode_as_the_envelope_decodes_them() {
        // A duplicate field: the last wins, as in the map (serde's derive
        // alone would refuse it).
        let raw = br#"{"event_id":"e1","event_type":"Paid","order_id":"a","amount":1,"n":1,"order_id":"b"}"#;
        let inc = incoming(raw).unwrap();
        assert_eq!(inc.decode::<Paid>().unwrap().order_id, "b");
        // Not a Paid at all: the same error as the envelope's.
        let raw = br#"{"event_id":"e1","event_type":"Paid","order_id":"a"}"#;
        let (inc, env) = (incoming(raw).unwrap(), general(raw));
        assert_eq!(
            inc.decode::<Paid>().unwrap_err().to_string(),
            env.decode::<Paid>().unwrap_err().to_string()
        );
        // Another type's event is refused for its type.
        #[derive(Debug, serde::Serialize, serde::Deserialize)]
        struct Other {}
        crate::event!(Other);
        assert!(inc.decode::<Other>().is_err());
    }

    #[test]
    fn entries_decoding_would_refuse_are_left_to_it() {
        // serde_json's skipping lets these through; parsing does not.
        let surrogate = br#"{"event_id":"e1","event_type":"Paid","order_id":"o","junk":"\ud800"}"#;
        let deep = format!(
            r#"{{"event_id":"e1","event_type":"Paid","order_id":"o","junk":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        for raw in [&surrogate[..], deep.as_bytes()] {
            assert!(incoming(raw).is_none(), "{}", String::from_utf8_lossy(raw));
            let entry = crate::engine::Entry::new(
                crate::EntryId::new(1, 0),
                Some(Bytes::copy_from_slice(raw)),
                1,
            );
            assert!(crate::queue::wire::decode(entry, 1 << 20).is_err());
        }
    }

    #[test]
    fn events_with_other_numbers_are_read_through_the_map() {
        // An untagged enum sees a float as an `f64` in a `Value`, and as
        // serde_json's private number map in the bytes.
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(untagged)]
        enum Amount {
            Num(f64),
            Raw(serde_json::Value),
        }
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Priced {
            amount: Amount,
        }
        crate::event!(Priced);
        for raw in [
            &br#"{"event_id":"e1","event_type":"Priced","amount":9.99}"#[..],
            br#"{"event_id":"e1","event_type":"Priced","amount":[1,{"x":-0}]}"#,
            br#"{"event_id":"e1","event_type":"Priced","amount":123456789012345678901234567890}"#,
        ] {
            let inc = incoming(raw).unwrap();
            assert!(!inc.plain, "{}", String::from_utf8_lossy(raw));
            // The same answer, error included (serde cannot buffer a
            // number beyond 128 bits for an untagged enum either way).
            assert_eq!(
                inc.decode::<Priced>().map_err(|e| e.to_string()),
                general(raw).decode::<Priced>().map_err(|e| e.to_string())
            );
        }
        assert_eq!(
            incoming(br#"{"event_id":"e1","event_type":"Priced","amount":9.99}"#)
                .unwrap()
                .decode::<Priced>()
                .unwrap(),
            Priced {
                amount: Amount::Num(9.99)
            }
        );
        // 64-bit integers read alike either way: the bytes are used.
        let ints =
            br#"{"event_id":"e1","event_type":"Priced","amount":-7,"_metadata":{"timestamp":1.5}}"#;
        let inc = incoming(ints).unwrap();
        assert!(inc.plain);
        assert_eq!(
            inc.decode::<Priced>().unwrap(),
            general(ints).decode::<Priced>().unwrap()
        );
    }

    #[test]
    fn only_plain_events_take_the_fast_path() {
        for raw in [
            &br#"{"event_id":"e1","event_type":"T","source":null}"#[..],
            br#"{"event_id":1,"event_type":"T"}"#,
            br#"{"event_type":"T","a":1}"#,
            br#"{"event_id":"e1","event_type":"T"} trailing"#,
            b"{\"event_id\":\"e1\",\"event_type\":\"T\",\"skipped\":\"\xff\"}",
            b"[1]",
        ] {
            assert!(incoming(raw).is_none(), "{raw:?}");
        }
        let decoded = Incoming::decoded(general(br#"{"event_id":"e1","event_type":"T","a":1}"#));
        assert_eq!(decoded.envelope().data["a"], json!(1));
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct T {
            a: u8,
        }
        crate::event!(T);
        assert_eq!(decoded.decode::<T>().unwrap(), T { a: 1 });
    }
}
