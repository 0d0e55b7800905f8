//! An event as a service receives it: the envelope's fields read first, or
//! only its id and type, the event's fields left in the entry's bytes until
//! something asks for them.
//!
//! A typed handler (`on::<E>`) deserializes `E` straight from those bytes,
//! so the event's fields never become a JSON `Map`: building that map (with
//! `preserve_order` and `arbitrary_precision`, every key and number is an
//! allocation and every key a SipHash) was the largest cost of a service in
//! `eddy bench bus` (perf). [`Incoming::envelope`] builds the whole
//! envelope on first use, for `on_any`, `order_by` and
//! [`crate::service::Context::envelope`].
//!
//! Two ways in:
//! - An entry that starts as eddy writes events (`{"event_id":"…",
//!   "event_type":"…",`) and passes the checks of `leading_id_and_type` has
//!   only its id and type read at first; a typed handler then reads the
//!   event and the rest of the envelope in one pass, watched ([`Watch`])
//!   for anything that would read differently from the map. Until then it
//!   is only probably an event, and the service asks
//!   [`Incoming::not_an_event`] before it counts it as one.
//! - Any other entry has its envelope read whole first, each of its values
//!   checked as decoding would check it (UTF-8, escapes, nesting, trailing
//!   bytes); `E` is then taken from the bytes only if the event's fields hold
//!   no number but 64-bit integers (others read differently from bytes than
//!   from a `Value` for types that take any value, such as untagged enums).
//!
//! Either way, a read that fails or is odd steps aside: `E` comes from the
//! envelope's map, whose answer (including its error) stands.

use std::cell::Cell;
use std::sync::OnceLock;

use bytes::Bytes;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::envelope::{head_from_wire_bytes, HeadFields, RESERVED};
use super::watch::{key_hash, met_before, Watch};
use super::{Envelope, Event};
use crate::error::{Error, ErrorKind, Result};

/// An event received by a service.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The envelope; its `data` is empty while `raw` holds the event. For
    /// an entry read [`Incoming::from_wire_bytes`]'s quick way, only the id
    /// and the type until the event is read.
    head: Envelope,
    /// Whether `head` is only the id and the type.
    partial: bool,
    /// The other envelope fields of a partial entry, read with its event.
    rest: OnceLock<HeadFields>,
    /// The whole head of a partial entry, built from `rest` when asked.
    read_head: OnceLock<Envelope>,
    /// The entry's bytes, when the event's fields have not been read.
    raw: Option<Bytes>,
    /// Whether `E` may be read from `raw` as it is (see the module's doc);
    /// a partial entry's read is watched instead ([`Watch`]).
    plain: bool,
    /// The whole envelope, read from `raw` on first use; an error if the
    /// entry is not an event after all (only a partial one can turn out so).
    full: OnceLock<std::result::Result<Envelope, String>>,
}

impl Incoming {
    /// An event already decoded whole (the general path).
    pub(crate) fn decoded(env: Envelope) -> Self {
        Self {
            head: env,
            partial: false,
            rest: OnceLock::new(),
            read_head: OnceLock::new(),
            raw: None,
            plain: false,
            full: OnceLock::new(),
        }
    }

    /// Read the envelope of an entry's bytes; `None` if the entry is not
    /// plainly an event (the general path then decides).
    ///
    /// An entry that starts as eddy writes one (`{"event_id":"…",
    /// "event_type":"…",`) has only those two read now: its other fields
    /// are read in one pass with the event, by [`Incoming::decode`]. Reading
    /// the envelope first and the event again was ~20% of a service's CPU in
    /// `eddy bench bus` (perf). Until then the entry is only probably an
    /// event: the service checks it (reading its event, or its envelope)
    /// before anything counts it as an event.
    pub(crate) fn from_wire_bytes(raw: &Bytes) -> Option<Self> {
        if let Some((event_id, event_type)) = leading_id_and_type(raw) {
            let head = Envelope {
                event_id: event_id.to_owned(),
                event_type: event_type.to_owned(),
                timestamp: 0.0,
                source: None,
                correlation_id: None,
                causation_id: None,
                traceparent: None,
                data: Default::default(),
            };
            return Some(Self {
                head,
                partial: true,
                rest: OnceLock::new(),
                read_head: OnceLock::new(),
                raw: Some(raw.clone()),
                plain: false,
                full: OnceLock::new(),
            });
        }
        let (head, plain) = head_from_wire_bytes(raw)?;
        Some(Self {
            head,
            partial: false,
            rest: OnceLock::new(),
            read_head: OnceLock::new(),
            raw: Some(raw.clone()),
            plain,
            full: OnceLock::new(),
        })
    }

    /// The event's id and type.
    pub(crate) fn id_and_type(&self) -> (&str, &str) {
        (&self.head.event_id, &self.head.event_type)
    }

    /// The envelope's fields (`data` possibly not read yet): id, type,
    /// source and the rest.
    pub(crate) fn head(&self) -> &Envelope {
        if !self.partial {
            return &self.head;
        }
        match self.rest.get() {
            Some(rest) => self.read_head.get_or_init(|| {
                let (id, ty) = self.id_and_type();
                rest.clone().finish_with(id.to_owned(), ty.to_owned())
            }),
            None => self.envelope(),
        }
    }

    /// Why the entry is not an event after all, once that is known (only a
    /// partial entry can turn out so: see [`Incoming::from_wire_bytes`]).
    /// Reads the envelope if the event has not been read.
    pub(crate) fn not_an_event(&self) -> Option<&str> {
        if self.partial && self.rest.get().is_none() {
            self.envelope();
        }
        match self.full.get() {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }

    /// The whole envelope, the event's fields included (for an entry that
    /// is not an event after all, see [`Incoming::not_an_event`], only its
    /// id and type).
    pub(crate) fn envelope(&self) -> &Envelope {
        let Some(raw) = &self.raw else {
            return &self.head;
        };
        let full = self.full.get_or_init(|| {
            Envelope::from_wire_bytes(raw).map(Ok).unwrap_or_else(|| {
                let entry =
                    crate::engine::Entry::new(crate::EntryId::new(0, 0), Some(raw.clone()), 0);
                let msg = crate::queue::wire::decode(entry, usize::MAX).map_err(|u| u.reason)?;
                Envelope::from_json(msg.data).map_err(|e| e.to_string())
            })
        });
        // An entry whose head was read whole cannot fail here: the head
        // was read from these bytes with the same checks (every value
        // checked as a `Value` parse checks it, envelope fields of their
        // types), and these parses accept whatever passes them.
        full.as_ref().unwrap_or(&self.head)
    }

    /// The typed event: from the bytes when they are plainly an `E`,
    /// otherwise as [`Envelope::decode`] gives it.
    pub(crate) fn decode<E: Event>(&self) -> Result<E> {
        if let (Some(raw), true) = (&self.raw, self.head.is::<E>()) {
            if self.partial {
                if self.full.get().is_none() {
                    if let Some((event, rest)) = read_event_and_head::<E>(raw) {
                        let _ = self.rest.set(rest);
                        return Ok(event);
                    }
                }
            } else if self.plain {
                if let Some(event) = read_event(raw, None) {
                    return Ok(event);
                }
            }
        }
        let env = self.envelope();
        if let Some(Err(e)) = self.full.get() {
            return Err(Error::new(ErrorKind::Decode, format!("not an event: {e}")));
        }
        env.decode::<E>()
    }
}

/// The id and the type of an entry that starts as eddy writes events, if
/// the rest of it cannot hold another id or type, and if skipping its values
/// checks what parsing them would. That is:
/// - the object's first two fields are `event_id` and `event_type`, plain
///   strings (no escapes), and neither name appears again;
/// - there is no `\u` escape (with one a later field's name could spell
///   one of them, or a string hold a lone surrogate, which skipping lets
///   through);
/// - the bytes are UTF-8 (skipping does not check a string's), with at
///   most 127 brackets in all (a bound on the nesting, which skipping does
///   not limit);
/// - nothing spells serde_json's private keys (a `Value` reads an object
///   under one as a number or a raw value, which skipping does not check).
///
/// Whether it is an event at all is checked when it is read.
fn leading_id_and_type(raw: &[u8]) -> Option<(&str, &str)> {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    static EVENT_: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"event_"));
    let rest = raw.strip_prefix(b"{\"event_id\":\"")?;
    let end = memchr::memchr(b'"', rest)?;
    let (id, rest) = rest.split_at(end);
    let rest = rest.strip_prefix(b"\",\"event_type\":\"")?;
    let end = memchr::memchr(b'"', rest)?;
    let (ty, rest) = rest.split_at(end);
    let plain = |s: &[u8]| !s.iter().any(|&b| b == b'\\' || b < 0x20);
    if !matches!(rest.get(1), Some(b',' | b'}')) || !plain(id) || !plain(ty) {
        return None;
    }
    // Past the two fields, neither name again (one search: both start so).
    let after = &rest[1..];
    let again = EVENT_.find_iter(after).any(|at| {
        let name = &after[at + 7..];
        name.starts_with(b"id\"") || name.starts_with(b"type\"")
    });
    let unicode_escape = memchr::memchr_iter(b'\\', raw).any(|at| raw.get(at + 1) == Some(&b'u'));
    // serde_json's private keys mean something to a `Value` (see `Watch`).
    let private = memchr::memchr_iter(b'$', raw)
        .any(|at| raw[at..].starts_with(super::envelope::PRIVATE_KEY.as_bytes()));
    if again
        || unicode_escape
        || private
        || memchr::memchr2_iter(b'[', b'{', raw).take(128).count() > 127
    {
        return None;
    }
    std::str::from_utf8(raw).ok()?;
    Some((std::str::from_utf8(id).ok()?, std::str::from_utf8(ty).ok()?))
}

/// The event and the rest of the envelope of a partial entry, in one pass
/// over its bytes: the envelope's fields as [`HeadFields`] reads them, the
/// queue's (`_`) skipped, the event's read into `E`, watched ([`Watch`]).
/// `None` if anything is amiss (the read fails, or is odd): the general
/// path then decides. Skipping checks enough here: see
/// [`leading_id_and_type`].
fn read_event_and_head<E: Event>(raw: &[u8]) -> Option<(E, HeadFields)> {
    let mut head = HeadFields::knowing_id_and_type();
    let event = read_event(raw, Some(&mut head))?;
    Some((event, head))
}

/// `E` from an entry's bytes, its fields read as [`Filtered`] shows them;
/// `None` if the read fails or is odd.
fn read_event<E: Event>(raw: &[u8], head: Option<&mut HeadFields>) -> Option<E> {
    let odd = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(raw);
    let event = E::deserialize(EventFields {
        de: &mut de,
        read: Reading { head, odd: &odd },
    })
    .ok()?;
    de.end().ok()?;
    (!odd.get()).then_some(event)
}

/// A wire object's deserializer that shows only the event's own fields:
/// the envelope's and those starting with `_` are skipped, as
/// [`Envelope::from_json`] leaves them out of `data`. An option or a newtype
/// sees the object itself, as with [`super::envelope::ObjectRef`].
struct EventFields<'c, D> {
    de: D,
    read: Reading<'c>,
}

/// What a read of an event's fields keeps besides the event.
struct Reading<'c> {
    /// Where the envelope's fields go (a partial entry's); `None`: they are
    /// skipped.
    head: Option<&'c mut HeadFields>,
    /// Set when the read is odd (see [`Watch`]).
    odd: &'c Cell<bool>,
}

impl<'de, D: serde::Deserializer<'de>> serde::Deserializer<'de> for EventFields<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, D::Error> {
        self.de.deserialize_map(OnlyEventFields {
            visitor,
            read: self.read,
        })
    }

    crate::queue::wire::as_an_object!(D::Error);
}

struct OnlyEventFields<'c, V> {
    visitor: V,
    read: Reading<'c>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for OnlyEventFields<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<V::Value, A::Error> {
        self.visitor.visit_map(Filtered {
            map,
            read: self.read,
            seen: Vec::new(),
        })
    }
}

/// The event's fields of a wire object, as a map: envelope fields and the
/// queue's (`_`) skipped, or the envelope's read into `read.head`; the
/// event's keys compared, and its values watched ([`Watch`]).
struct Filtered<'c, A> {
    map: A,
    read: Reading<'c>,
    /// The event's keys so far, by hash.
    seen: Vec<u64>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Filtered<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> std::result::Result<Option<K::Value>, A::Error> {
        use crate::queue::wire::Key;
        while let Some(key) = self.map.next_key::<Key<'de>>()? {
            let k = key.as_str();
            if let Some(head) = &mut self.read.head {
                if head.take(k, &mut self.map)? {
                    continue;
                }
            }
            if k.starts_with('_') || (self.read.head.is_none() && RESERVED.contains(&k)) {
                self.map.next_value::<IgnoredAny>()?;
                continue;
            }
            if met_before(&mut self.seen, key_hash(k)) {
                self.read.odd.set(true);
            }
            return key.deserialize_with(seed).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> std::result::Result<S::Value, A::Error> {
        self.map.next_value_seed(Watch::new(seed, self.read.odd))
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

    /// Takes any value for `amount`: an untagged enum sees a float as an
    /// `f64` in a `Value`, and as serde_json's private number map in the
    /// bytes.
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
    crate::event!(Priced, "Paid");

    /// Takes everything, through serde's buffering.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Loose {
        #[serde(flatten)]
        rest: std::collections::BTreeMap<String, serde_json::Value>,
    }
    crate::event!(Loose, "Paid");

    /// Sees every copy of a repeated key, where the map keeps the last.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(untagged)]
    enum Either {
        A { a: u32 },
        B(std::collections::BTreeMap<String, serde_json::Value>),
    }
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Nested {
        inner: Either,
    }
    crate::event!(Either, "Paid");
    crate::event!(Nested, "Paid");

    /// The general path: the entry's message, then `from_json`.
    fn general(raw: &[u8]) -> std::result::Result<Envelope, String> {
        let entry = crate::engine::Entry::new(
            crate::EntryId::new(1, 0),
            Some(Bytes::copy_from_slice(raw)),
            1,
        );
        let msg = crate::queue::wire::decode(entry, 1 << 20).map_err(|u| u.reason)?;
        Envelope::from_json(msg.data).map_err(|e| e.to_string())
    }

    /// The quick way first (see [`Incoming::from_wire_bytes`]).
    fn incoming(raw: &[u8]) -> Option<Incoming> {
        Incoming::from_wire_bytes(&Bytes::copy_from_slice(raw))
    }

    /// The envelope read whole first, never the quick way.
    fn whole(raw: &[u8]) -> Option<Incoming> {
        let raw = Bytes::copy_from_slice(raw);
        let (head, plain) = head_from_wire_bytes(&raw)?;
        Some(Incoming {
            head,
            partial: false,
            rest: OnceLock::new(),
            read_head: OnceLock::new(),
            raw: Some(raw),
            plain,
            full: OnceLock::new(),
        })
    }

    fn head_of(e: &Envelope) -> impl PartialEq + std::fmt::Debug + '_ {
        (
            (&e.event_id, &e.event_type, e.timestamp.to_bits()),
            (
                &e.source,
                &e.correlation_id,
                &e.causation_id,
                &e.traceparent,
            ),
        )
    }

    /// Every way in reads `raw` as the general path does, as a service
    /// uses it: the typed event first, then whether it is an event at all,
    /// the head and the envelope. Returns how many ways took it (a way may
    /// step aside).
    fn same_as_general<E: Event + PartialEq + std::fmt::Debug>(raw: &[u8]) -> usize {
        let expected = general(raw);
        let what = String::from_utf8_lossy(raw);
        let mut took = 0;
        for inc in [incoming(raw), whole(raw)].into_iter().flatten() {
            took += 1;
            let got = inc.decode::<E>().map_err(|e| e.to_string());
            match &expected {
                Ok(env) => {
                    assert_eq!(inc.not_an_event(), None, "{what}");
                    let want = env.decode::<E>().map_err(|e| e.to_string());
                    assert_eq!(got, want, "{what}");
                    assert_eq!(head_of(inc.head()), head_of(env), "{what}");
                    assert_eq!(inc.envelope(), env, "{what}");
                }
                Err(_) => {
                    assert!(inc.partial, "only a partial read can be wrong: {what}");
                    assert!(got.is_err(), "{what}");
                    assert!(inc.not_an_event().is_some(), "{what}");
                }
            }
        }
        took
    }

    fn all_types(raw: &[u8]) -> usize {
        let n = same_as_general::<Paid>(raw);
        for m in [
            same_as_general::<Strict>(raw),
            same_as_general::<Priced>(raw),
            same_as_general::<Loose>(raw),
            same_as_general::<Either>(raw),
            same_as_general::<Nested>(raw),
        ] {
            assert_eq!(m, n);
        }
        n
    }

    #[test]
    fn every_way_in_reads_events_as_the_general_path() {
        let deep = format!(
            r#"{{"event_id":"e1","event_type":"Paid","order_id":"o","amount":1,"n":1,"junk":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let cases: Vec<&[u8]> = vec![
            // As eddy writes them.
            br#"{"event_id":"e1","event_type":"Paid","timestamp":2.5,"order_id":"o1","amount":9.99,"n":3,"_metadata":{"id":"e1","timestamp":2.5,"ttl":null}}"#,
            br#"{"event_id":"e1","event_type":"Paid","timestamp":2.5,"order_id":"o1","amount":9.99,"n":3,"source":"s","correlation_id":"c","causation_id":"x","traceparent":"t","_failures":[{"reason":"r"}],"_metadata":{"id":"e1"}}"#,
            br#"{"event_id":"e1","event_type":"Paid","order_id":"o1","amount":7,"n":3}"#,
            br#"{"event_id":"e1","event_type":"Paid","order_id":"o1"}"#,
            br#"{"event_id":"e1","event_type":"Paid"}"#,
            br#"{"event_id":"e1","event_type":"Other","order_id":"o1","amount":1,"n":1}"#,
            // Numbers a `Value` and the bytes show differently.
            br#"{"event_id":"e1","event_type":"Paid","order_id":"o1","amount":1e300,"n":3}"#,
            br#"{"event_id":"e1","event_type":"Paid","order_id":"o1","amount":[1,{"x":-0.5}],"n":3}"#,
            br#"{"event_id":"e1","event_type":"Paid","order_id":"o1","amount":123456789012345678901234567890,"n":3}"#,
            br#"{"event_id":"e1","event_type":"Paid","order_id":"o1","amount":-7,"n":18446744073709551615}"#,
            // The queue's metadata, of any shape.
            br#"{"event_id":"e1","event_type":"Paid","order_id":"o1","amount":1,"n":3,"_metadata":5}"#,
            br#"{"event_id":"e1","event_type":"Paid","order_id":"o1","amount":1,"n":3,"_metadata":{"id":5,"ttl":"x"}}"#,
            br#"{"event_id":"e1","event_type":"Paid","_metadata":null,"order_id":"o1","amount":1,"n":3,"_metadata":{}}"#,
            // Duplicates: the last wins, as in the map.
            br#"{"event_id":"e1","event_type":"Paid","order_id":"a","amount":1,"n":1,"order_id":"b"}"#,
            br#"{"event_id":"e1","event_type":"Paid","source":"a","order_id":"a","amount":1,"n":1,"source":"b"}"#,
            br#"{"event_id":"e1","event_type":"Paid","order_id":"a","amount":1,"n":1,"event_id":"e2"}"#,
            br#"{"event_id":"e1","event_type":"Paid","order_id":"a","amount":1,"n":1,"event\u005fid":"e2"}"#,
            br#"{"event_id":"e1","event_type":"Paid","order_id":"event_id","amount":1,"n":1}"#,
            // Keys repeated where a type sees every copy.
            br#"{"event_id":"e1","event_type":"Paid","a":1,"a":2}"#,
            br#"{"event_id":"e1","event_type":"Paid","inner":{"a":1,"a":2}}"#,
            br#"{"a":1,"event_id":"e1","event_type":"Paid","a":2}"#,
            br#"{"event_type":"Paid","event_id":"e1","inner":{"a":1,"a":2}}"#,
            br#"{"event_id":"e1","event_type":"Paid","inner":{"a":1,"b":2}}"#,
            br#"{"event_id":"e1","event_type":"Paid","inner":{"a":7}}"#,
            // serde_json's private keys, which a `Value` reads as numbers.
            br#"{"event_id":"e1","event_type":"Paid","order_id":"o","amount":1,"n":1,"_x":{"$serde_json::private::Number":"abc"}}"#,
            br#"{"event_id":"e1","event_type":"Paid","order_id":"o","amount":1,"n":1,"junk":{"$serde_json::private::Number":"1","y":2}}"#,
            br#"{"event_type":"Paid","event_id":"e1","order_id":"o","amount":1,"n":1,"_x":{"$serde_json::private::Number":"abc"}}"#,
            br#"{"event_type":"Paid","event_id":"e1","order_id":"o","amount":1,"n":1,"junk":{"$serde_json::private::Number":"1","y":2}}"#,
            br#"{"event_type":"Paid","event_id":"e1","order_id":"o","amount":{"$serde_json::private::Number":"1.5"},"n":1}"#,
            br#"{"event_type":"Paid","event_id":"e1","order_id":"o","amount":1,"n":1,"junk":{"$serde_json::private::RawValue":"[1]"}}"#,
            br#"{"event_type":"Paid","event_id":"e1","order_id":"o","amount":1,"n":1,"junk":{"y":{"$serde_json::private::Number":"x"}}}"#,
            br#"{"event_id":"e1","event_type":"Paid","order_id":"o","amount":1,"n":1,"_metadata":{"id":{"$serde_json::private::Number":"1"}}}"#,
            // Envelope fields of the wrong type, after the id and type.
            br#"{"event_id":"e1","event_type":"Paid","order_id":"a","amount":1,"n":1,"source":null}"#,
            br#"{"event_id":"e1","event_type":"Paid","order_id":"a","amount":1,"n":1,"source":5}"#,
            br#"{"event_id":"e1","event_type":"Paid","timestamp":"now","order_id":"a","amount":1,"n":1}"#,
            // Not JSON, or not an object, after a good start.
            br#"{"event_id":"e1","event_type":"Paid","order_id":"a","amount":1,"n":1} trailing"#,
            br#"{"event_id":"e1","event_type":"Paid","order_id":"a","amount":1,"n":1"#,
            br#"{"event_id":"e1","event_type":"Paid","order_id":"a",,"amount":1,"n":1}"#,
            br#"{"event_id":"e1","event_type":"Paid"]"#,
            // What skipping would let through and parsing does not.
            b"{\"event_id\":\"e1\",\"event_type\":\"Paid\",\"order_id\":\"a\",\"amount\":1,\"n\":1,\"junk\":\"\xff\"}",
            b"{\"event_id\":\"e1\",\"event_type\":\"Paid\",\"order_id\":\"a\",\"amount\":1,\"n\":1,\"_junk\":[\"\xff\"]}",
            b"{\"event_id\":\"e1\",\"event_type\":\"Paid\",\"order_id\":\"a\",\"amount\":1,\"n\":1,\"junk\":\"\x01\"}",
            br#"{"event_id":"e1","event_type":"Paid","order_id":"a","amount":1,"n":1,"junk":"\ud800"}"#,
            deep.as_bytes(),
            // Ids and types that are not plain strings, or other starts.
            br#"{"event_id":"e\"1","event_type":"Paid","order_id":"a","amount":1,"n":1}"#,
            br#"{"event_id":1,"event_type":"Paid","order_id":"a","amount":1,"n":1}"#,
            br#"{"event_type":"Paid","event_id":"e1","order_id":"a","amount":1,"n":1}"#,
            br#"{"order_id":"a","event_id":"e1","event_type":"Paid","amount":1,"n":1}"#,
            br#"{"event_type":"Paid","order_id":"a"}"#,
            b"[1]",
        ];
        let mut quick = 0;
        for raw in cases {
            all_types(raw);
            if incoming(raw).is_some_and(|i| i.partial) {
                quick += 1;
            }
        }
        assert!(quick >= 20, "the quick way was taken {quick} times");
    }

    #[test]
    fn reads_the_envelope_now_and_the_event_when_asked() {
        let raw = br#"{"order_id":"o1","event_id":"e1","event_type":"Paid","timestamp":2.5,"amount":9,"n":3,"_failures":[{"reason":"r"}],"source":"s","_metadata":{"id":"e1","timestamp":2.5,"ttl":null}}"#;
        let inc = incoming(raw).unwrap();
        assert!(!inc.partial);
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
                amount: 9.0,
                n: 3
            }
        );
        assert!(inc.full.get().is_none(), "read from the bytes");
    }

    #[test]
    fn reads_an_eddy_event_and_its_envelope_in_one_pass() {
        let raw = br#"{"event_id":"e1","event_type":"Paid","timestamp":2.5,"order_id":"o1","amount":9.99,"n":3,"source":"s","correlation_id":"c","_metadata":{"id":"e1","timestamp":2.5,"ttl":null}}"#;
        let inc = incoming(raw).unwrap();
        assert!(inc.partial);
        assert_eq!(inc.id_and_type(), ("e1", "Paid"));
        assert_eq!(
            inc.decode::<Paid>().unwrap(),
            Paid {
                order_id: "o1".into(),
                amount: 9.99,
                n: 3
            }
        );
        assert!(inc.full.get().is_none(), "read in one pass, not twice");
        assert_eq!(inc.not_an_event(), None);
        let head = inc.head();
        assert_eq!(
            (
                head.timestamp,
                head.source.as_deref(),
                head.correlation_id.as_deref()
            ),
            (2.5, Some("s"), Some("c"))
        );
        assert!(head.data.is_empty());
        // A type that takes any value for a float: read from the map.
        let float = br#"{"event_id":"e1","event_type":"Paid","amount":9.99}"#;
        let inc = incoming(float).unwrap();
        assert_eq!(
            inc.decode::<Priced>().unwrap(),
            Priced {
                amount: Amount::Num(9.99)
            }
        );
        assert!(inc.full.get().is_some(), "the odd read was thrown away");
        // Whole integers read alike either way: from the bytes.
        let ints =
            br#"{"event_id":"e1","event_type":"Paid","amount":-7,"_metadata":{"timestamp":1.5}}"#;
        let inc = incoming(ints).unwrap();
        assert_eq!(
            inc.decode::<Priced>().unwrap(),
            Priced {
                amount: Amount::Num(-7.0)
            }
        );
        assert!(inc.full.get().is_none());
    }

    #[test]
    fn an_eddy_start_is_not_yet_an_event() {
        // (Envelope fields of other types are not an event's fault: the
        // general path reads them as absent. Only a broken entry is not
        // an event.)
        let raw =
            br#"{"event_id":"e1","event_type":"Paid","order_id":"a","amount":1,"n":1} and more"#;
        let inc = incoming(raw).unwrap();
        assert!(inc.partial && inc.decode::<Paid>().is_err());
        assert!(inc.not_an_event().unwrap().contains("trailing"));
        // Asked without reading the event (no typed handler), too.
        let inc = incoming(raw).unwrap();
        assert!(inc.not_an_event().is_some());
        assert_eq!(inc.id_and_type(), ("e1", "Paid"));
    }

    #[test]
    fn only_plain_events_take_the_fast_path() {
        for raw in [
            &br#"{"event_type":"T","source":null,"event_id":"e1"}"#[..],
            br#"{"event_id":1,"event_type":"T"}"#,
            br#"{"event_type":"T","a":1}"#,
            br#"{"a":1,"event_id":"e1","event_type":"T"} trailing"#,
            b"{\"a\":1,\"event_id\":\"e1\",\"event_type\":\"T\",\"skipped\":\"\xff\"}",
            br#"{"a":1,"event_id":"e1","event_type":"T","junk":"\ud800"}"#,
            b"[1]",
        ] {
            assert!(incoming(raw).is_none(), "{raw:?}");
        }
        let decoded =
            Incoming::decoded(general(br#"{"event_id":"e1","event_type":"T","a":1}"#).unwrap());
        assert_eq!(decoded.envelope().data["a"], json!(1));
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct T {
            a: u8,
        }
        crate::event!(T);
        assert_eq!(decoded.decode::<T>().unwrap(), T { a: 1 });
    }
}
