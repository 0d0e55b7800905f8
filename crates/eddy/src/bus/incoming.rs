//! An event as a service receives it: the entry's bytes, read once.
//!
//! First the event's id and type, from the members that lead the entry
//! (eddy writes them first: reading stops once both are found, so the
//! event's own fields are not read yet). The service picks the handler by
//! the type; then one pass over the whole entry reads the handler's event
//! straight into its type (or, for `on_any` and
//! [`crate::service::Context::envelope`], the envelope's `Map`), through the
//! key-skipping reader of [`crate::json`]: the envelope's fields go to the
//! envelope, the queue's (`_metadata`, `_failures`...) are skipped, the rest
//! are the event's. An event no handler reads is read through once only to
//! check it ([`Incoming::head`]).

use std::sync::OnceLock;

use bytes::Bytes;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::envelope::RESERVED;
use super::{Envelope, Event};
use crate::error::{Error, ErrorKind, Result};
use crate::json::{self, Key, ReadError, Takes, Text};

/// An event received by a service.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The entry's bytes.
    raw: Bytes,
    /// Its `event_id` and `event_type` as the leading members give them;
    /// every other field unset, `data` empty.
    ids: Envelope,
    /// The envelope's fields (`data` empty) as the first pass over the
    /// whole entry read them, or why that pass found it is not an event.
    head: OnceLock<std::result::Result<Envelope, String>>,
    /// The whole envelope, read on first use, or why its fields cannot be
    /// read as JSON values.
    full: OnceLock<std::result::Result<Envelope, String>>,
}

impl Incoming {
    /// Read the id and type of the event an entry's bytes hold: from its
    /// first members up to where both are found. An error says why the
    /// bytes are not an event (not a JSON object, or no string `event_id`
    /// and `event_type`).
    pub(crate) fn read(raw: &Bytes) -> Result<Self> {
        let Some((event_id, event_type)) = leading_ids(raw) else {
            // Why not, from a reading of the whole entry (this path only).
            let reason = match json::read_object::<IgnoredAny, _>(raw, &mut ()) {
                Err(e) => e.reason("JSON object"),
                Ok(_) => "`event_id` and `event_type` must be strings".to_owned(),
            };
            return Err(Error::new(ErrorKind::Decode, reason));
        };
        Ok(Self {
            raw: raw.clone(),
            ids: Envelope {
                event_id,
                event_type,
                timestamp: 0.0,
                source: None,
                correlation_id: None,
                causation_id: None,
                traceparent: None,
                data: Map::new(),
            },
            head: OnceLock::new(),
            full: OnceLock::new(),
        })
    }

    /// The event's id and type.
    pub(crate) fn id_and_type(&self) -> (&str, &str) {
        (&self.ids.event_id, &self.ids.event_type)
    }

    /// The envelope's fields, `data` empty, read with the whole entry (the
    /// handler's read of its event reads them too: then this reads
    /// nothing). An error if the entry is not an event after all: not one
    /// JSON object, or with a second `event_id` or `event_type` that says
    /// otherwise.
    pub(crate) fn checked_head(&self) -> std::result::Result<&Envelope, &str> {
        let head = self.head.get_or_init(|| {
            match self.read_whole::<IgnoredAny>() {
                Ok((_, head)) => Ok(head),
                Err(Whole::NotAnEvent(reason)) => Err(reason),
                // A type that takes anything matches.
                Err(Whole::Mismatch(e)) => Err(e.to_string()),
            }
        });
        head.as_ref().map_err(String::as_str)
    }

    /// [`Incoming::checked_head`], or the id and type alone if the entry
    /// is not an event.
    pub(crate) fn head(&self) -> &Envelope {
        self.checked_head().unwrap_or(&self.ids)
    }

    /// The whole envelope, the event's fields included; an error if they
    /// cannot be read as JSON values (a member no typed handler reads may
    /// hold a number out of range or a lone surrogate escape).
    pub(crate) fn envelope(&self) -> Result<&Envelope> {
        let full = self
            .full
            .get_or_init(|| match self.read_event::<Map<String, Value>>() {
                Ok(data) => Ok(Envelope {
                    data,
                    ..self.head().clone()
                }),
                Err(Whole::NotAnEvent(reason)) => Err(reason),
                Err(Whole::Mismatch(e)) => Err(e.to_string()),
            });
        full.as_ref().map_err(|e| {
            let (id, ty) = self.id_and_type();
            Error::new(
                ErrorKind::Decode,
                format!("event {id} ({ty}): its fields cannot be read: {e}"),
            )
        })
    }

    /// [`Incoming::envelope`], or only its head if the event's fields
    /// cannot be read.
    pub(crate) fn envelope_or_head(&self) -> &Envelope {
        self.envelope().unwrap_or(self.head())
    }

    /// The typed event, read from the entry's bytes.
    pub(crate) fn decode<E: Event>(&self) -> Result<E> {
        let (id, ty) = self.id_and_type();
        if ty != E::TYPE {
            return Err(Error::new(
                ErrorKind::Decode,
                format!("event {id} is a {ty}, not a {}", E::TYPE),
            ));
        }
        self.read_event::<E>().map_err(|e| {
            let reason = match e {
                Whole::Mismatch(e) => format!("event {id} ({ty}) has unexpected fields: {e}"),
                Whole::NotAnEvent(why) => format!("event {id} ({ty}) cannot be read: {why}"),
            };
            Error::new(ErrorKind::Decode, reason)
        })
    }

    /// One pass over the whole entry: `T` from the event's fields, and the
    /// envelope's fields.
    fn read_whole<'s, T: Deserialize<'s>>(&'s self) -> std::result::Result<(T, Envelope), Whole> {
        let mut taker = HeadTaker {
            ids: &self.ids,
            extras: Extras::default(),
            conflict: None,
        };
        let read = json::read_object::<T, _>(&self.raw, &mut taker);
        match (read, taker.conflict) {
            (_, Some(key)) => Err(Whole::NotAnEvent(format!(
                "`{key}` appears again with another value"
            ))),
            (Ok(value), None) => Ok((value, taker.extras.head(&self.ids))),
            (Err(ReadError::Mismatch(e)), None) => Err(Whole::Mismatch(e)),
            (Err(e), None) => Err(Whole::NotAnEvent(e.reason("JSON object"))),
        }
    }

    /// `T` from [`Incoming::read_whole`], which is done with the envelope's
    /// fields: they are kept for [`Incoming::checked_head`] (unless that
    /// read them first), and so is the finding that the entry is not an
    /// event.
    fn read_event<'s, T: Deserialize<'s>>(&'s self) -> std::result::Result<T, Whole> {
        let (value, head) = match self.read_whole::<T>() {
            Ok((value, head)) => (Ok(value), Ok(head)),
            Err(Whole::NotAnEvent(reason)) => (Err(Whole::NotAnEvent(reason.clone())), Err(reason)),
            // The fields of another type than this one's: nothing known.
            Err(mismatch) => return Err(mismatch),
        };
        let _ = self.head.set(head);
        value
    }

    /// The value a service's `order_by(field)` orders by (see
    /// [`Envelope::order_key`]): for an event field, its value in the
    /// entry's bytes, a string as it is and anything else as its JSON
    /// text; missing or null: no key.
    pub(crate) fn order_key(&self, field: &str) -> Option<String> {
        if RESERVED.contains(&field) {
            return self.head().order_key(field);
        }
        if field.starts_with('_') {
            return None;
        }
        let mut pick = Pick { field, value: None };
        json::read_object::<IgnoredAny, _>(&self.raw, &mut pick).ok()?;
        let text = pick.value?.get();
        match text {
            "null" => None,
            _ if text.starts_with('"') => serde_json::from_str(text).ok(),
            _ => Some(text.to_owned()),
        }
    }
}

/// Why a pass over the whole entry did not read it.
enum Whole {
    /// The entry is not an event (not one JSON object, or its id or type
    /// repeated with another value).
    NotAnEvent(String),
    /// An event, whose fields do not make the type read.
    Mismatch(serde_json::Error),
}

/// `event_id` and `event_type` from the first members of `raw`, reading no
/// further than where both are found as strings.
fn leading_ids(raw: &[u8]) -> Option<(String, String)> {
    #[derive(Default)]
    struct Ids {
        event_id: Option<String>,
        event_type: Option<String>,
    }
    impl<'de> Visitor<'de> for &mut Ids {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
            while let Some(key) = map.next_key::<Key<'de>>()? {
                let slot = match key.as_str() {
                    "event_id" => &mut self.event_id,
                    "event_type" => &mut self.event_type,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                };
                if let Some(text) = map.next_value::<Text>()?.into_string() {
                    slot.get_or_insert(text);
                }
                if self.event_id.is_some() && self.event_type.is_some() {
                    return Ok(());
                }
            }
            Ok(())
        }
    }
    let mut ids = Ids::default();
    let mut de = serde_json::Deserializer::from_slice(raw);
    // Stopping inside the object makes the map's read end in an error: the
    // rest of the entry is checked by the pass that reads it.
    let _ = serde::Deserializer::deserialize_map(&mut de, &mut ids);
    Some((ids.event_id?, ids.event_type?))
}

/// The envelope's fields besides id and type, as [`Envelope::from_json`]
/// reads them: the extras a string or absent, `timestamp` a number or 0;
/// a field met twice, the last wins.
#[derive(Default)]
struct Extras {
    timestamp: f64,
    source: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    traceparent: Option<String>,
}

impl Extras {
    fn head(self, ids: &Envelope) -> Envelope {
        Envelope {
            event_id: ids.event_id.clone(),
            event_type: ids.event_type.clone(),
            timestamp: self.timestamp,
            source: self.source,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            traceparent: self.traceparent,
            data: Map::new(),
        }
    }
}

/// Takes the envelope's fields from an event's object and skips the
/// queue's (`_...`): what is left are the event's own fields. Every copy
/// of `event_id` and `event_type` must say what the leading ones said.
struct HeadTaker<'i> {
    ids: &'i Envelope,
    extras: Extras,
    /// The first of `event_id` / `event_type` found again with another
    /// value.
    conflict: Option<&'static str>,
}

impl<'de> Takes<'de> for HeadTaker<'_> {
    fn take<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        let (name, want) = match key {
            "event_id" => ("event_id", &self.ids.event_id),
            "event_type" => ("event_type", &self.ids.event_type),
            _ if key.starts_with('_') => {
                map.next_value::<IgnoredAny>()?;
                return Ok(true);
            }
            _ => return self.take_extra(key, map),
        };
        let text = map.next_value::<Text>()?;
        if text.0.as_ref().map(Key::as_str) != Some(want.as_str()) {
            self.conflict.get_or_insert(name);
        }
        Ok(true)
    }
}

impl HeadTaker<'_> {
    fn take_extra<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        let extras = &mut self.extras;
        let text = match key {
            "timestamp" => {
                extras.timestamp = json::number(map.next_value::<&RawValue>()?).unwrap_or(0.0);
                return Ok(true);
            }
            "source" => &mut extras.source,
            "correlation_id" => &mut extras.correlation_id,
            "causation_id" => &mut extras.causation_id,
            "traceparent" => &mut extras.traceparent,
            _ => return Ok(false),
        };
        *text = map.next_value::<Text>()?.into_string();
        Ok(true)
    }
}

/// Takes one field's value (its last copy), as written.
struct Pick<'f, 'de> {
    field: &'f str,
    value: Option<&'de RawValue>,
}

impl<'de> Takes<'de> for Pick<'_, 'de> {
    fn take<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        if key != self.field {
            return Ok(false);
        }
        self.value = Some(map.next_value()?);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// An untagged enum and a flattened map: types that read through
    /// serde's buffering (with serde_json's `arbitrary_precision` on,
    /// they do not read floats).
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(untagged)]
    enum Amount {
        Num(f64),
        Text(String),
    }
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Priced {
        amount: Amount,
        #[serde(flatten)]
        rest: std::collections::BTreeMap<String, f64>,
    }
    crate::event!(Priced, "Paid");

    fn read(raw: &[u8]) -> Result<Incoming> {
        Incoming::read(&Bytes::copy_from_slice(raw))
    }

    fn event(raw: &[u8]) -> Incoming {
        read(raw).unwrap_or_else(|e| panic!("not an event: {e}"))
    }

    const PAID: &[u8] = br#"{"event_id":"e1","event_type":"Paid","timestamp":2.5,"order_id":"o1","amount":9.99,"n":3,"source":"s","correlation_id":"c","_failures":[{"reason":"r"}],"_metadata":{"id":"e1","timestamp":2.5,"ttl":null}}"#;

    #[test]
    fn reads_the_ids_then_the_event_and_the_envelope_in_one_pass() {
        let inc = event(PAID);
        assert_eq!(inc.id_and_type(), ("e1", "Paid"));
        assert!(inc.head.get().is_none(), "nothing read past the ids");
        let paid = Paid {
            order_id: "o1".into(),
            amount: 9.99,
            n: 3,
        };
        assert_eq!(inc.decode::<Paid>().unwrap(), paid);
        let head = inc.head.get().and_then(|h| h.as_ref().ok());
        let head = head.expect("the typed read read the envelope's fields");
        assert_eq!(
            (
                head.timestamp,
                head.source.as_deref(),
                head.correlation_id.as_deref(),
                head.causation_id.as_deref()
            ),
            (2.5, Some("s"), Some("c"), None)
        );
        assert!(head.data.is_empty());
        assert!(inc.full.get().is_none(), "no map built for a typed read");
        // Envelope and queue fields are not the event's: a type that
        // refuses unknown fields does not see them.
        assert!(inc.decode::<Strict>().is_err(), "amount and n are unknown");
        let env = inc.envelope().unwrap();
        assert_eq!(env.decode::<Paid>().unwrap(), paid);
        assert_eq!(env.source.as_deref(), Some("s"));
        let keys: Vec<&str> = env.data.keys().map(String::as_str).collect();
        assert_eq!(keys, ["amount", "n", "order_id"]);
    }

    #[test]
    fn an_event_no_handler_reads_is_checked_on_its_own() {
        let inc = event(PAID);
        assert_eq!(inc.checked_head().map(|h| h.timestamp), Ok(2.5));
        // Its id and type need not lead.
        let inc = event(br#"{"n":[1,{"a":2}],"event_type":"T","x":"y","event_id":"e2"}"#);
        assert_eq!(inc.id_and_type(), ("e2", "T"));
        assert_eq!(inc.checked_head().map(|h| h.event_id.as_str()), Ok("e2"));
    }

    #[test]
    fn untagged_and_flattened_floats_read_from_the_bytes() {
        let raw = br#"{"event_id":"e1","event_type":"Paid","amount":9.5,"a":1.25,"b":-3,"_metadata":{"timestamp":1}}"#;
        let got = event(raw).decode::<Priced>().unwrap();
        assert_eq!(got.amount, Amount::Num(9.5));
        assert_eq!(
            got.rest.into_iter().collect::<Vec<_>>(),
            [("a".to_owned(), 1.25), ("b".to_owned(), -3.0)]
        );
    }

    #[test]
    fn the_envelope_reads_as_from_json_reads_a_map() {
        // Fields of other types are absent, a repeated one's last copy
        // counts, an escaped key is the same key.
        let inc = event(br#"{"event_id":"e1","event_type":"T","source":null,"timestamp":"x","correlation_id":"a","correlation_id":"b","caus\u0061tion_id":"k"}"#);
        let head = inc.head();
        assert_eq!(
            (
                head.source.as_deref(),
                head.timestamp,
                head.correlation_id.as_deref(),
                head.causation_id.as_deref()
            ),
            (None, 0.0, Some("b"), Some("k"))
        );
        let inc = event(br#"{"event_id":"e1","event_type":"T","timestamp":17}"#);
        assert_eq!(inc.head().timestamp, 17.0);
        let inc = event(br#"{"event_\u0069d":"e\u0031","event_type":"T"}"#);
        assert_eq!(inc.id_and_type(), ("e1", "T"));
    }

    #[test]
    fn what_is_not_an_event_says_why() {
        for (raw, why) in [
            (&br#"{"event_type":"T"}"#[..], "event_id"),
            (br#"{"event_id":5,"event_type":"T"}"#, "event_id"),
            (br#"{"a":1}"#, "event_id"),
            (b"[1]", "not an object"),
            (b"not json", "not valid JSON"),
            (br#"{"event_id":"e1","event_type"#, "not valid JSON"),
        ] {
            match read(raw) {
                Err(e) => assert!(e.to_string().contains(why), "{e}"),
                Ok(_) => panic!("{raw:?} read as an event"),
            }
        }
        // Read by its leading id and type, then found not to be one when
        // read whole: by whichever reads it first, for every reader.
        for (raw, why) in [
            (
                &br#"{"event_id":"e1","event_type":"T","x":1} trailing"#[..],
                "not valid JSON",
            ),
            (
                b"{\"x\":\"\xff\",\"event_id\":\"e1\",\"event_type\":\"T\"}",
                "not UTF-8",
            ),
            (
                b"{\"event_id\":\"e1\",\"event_type\":\"T\",\"x\":\"\xff\"}",
                "not UTF-8",
            ),
            (
                br#"{"event_id":"e1","event_type":"T","x":[1,}"#,
                "not valid JSON",
            ),
            (
                br#"{"event_id":"e1","event_type":"T","event_type":"U"}"#,
                "`event_type` appears again",
            ),
            (
                br#"{"event_id":"e1","event_type":"T","event_id":7}"#,
                "`event_id` appears again",
            ),
        ] {
            let inc = event(raw);
            assert!(
                inc.checked_head().is_err_and(|e| e.contains(why)),
                "{raw:?}"
            );
            let inc = event(raw);
            assert!(inc.envelope().is_err(), "{raw:?}");
            assert!(
                inc.checked_head().is_err_and(|e| e.contains(why)),
                "{raw:?}"
            );
            assert_eq!(inc.head().event_id, "e1");
        }
        let again = event(br#"{"event_id":"e1","event_type":"T","event_type":"T"}"#);
        assert!(again.checked_head().is_ok(), "the same value again is fine");
    }

    #[test]
    fn a_typed_read_that_fails_says_why() {
        let inc = event(br#"{"event_id":"e1","event_type":"Paid","order_id":7}"#);
        let e = inc.decode::<Paid>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        assert!(e.to_string().contains("unexpected fields"), "{e}");
        assert!(inc.head.get().is_none(), "a mismatch stops the read");
        assert!(inc.checked_head().is_ok(), "but it is an event");
        let other = event(br#"{"event_id":"e1","event_type":"Other","order_id":"o"}"#);
        assert!(other
            .decode::<Paid>()
            .unwrap_err()
            .to_string()
            .contains("not a Paid"));
        let broken =
            event(br#"{"event_id":"e1","event_type":"Paid","order_id":"o","amount":1,"n":1} x"#);
        let e = broken.decode::<Paid>().unwrap_err();
        assert!(e.to_string().contains("cannot be read"), "{e}");
        assert!(broken.checked_head().is_err(), "found by the typed read");
        // A member nobody reads may hold what a `Map` cannot: the typed
        // read takes the event, the envelope says what is wrong.
        let odd = event(
            br#"{"event_id":"e1","event_type":"Paid","order_id":"o","amount":1,"n":1,"x":1e400}"#,
        );
        assert!(odd.decode::<Strict>().is_err());
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Narrow {
            order_id: String,
        }
        crate::event!(Narrow, "Paid");
        assert_eq!(odd.decode::<Narrow>().unwrap().order_id, "o");
        assert!(odd.envelope().is_err());
        assert_eq!(odd.envelope_or_head().event_id, "e1");
    }

    #[test]
    fn order_keys_come_from_the_event_or_its_envelope() {
        let inc = event(br#"{"event_id":"e1","event_type":"T","order_id":"o1","n":7,"f":[1, 2],"gone":null,"correlation_id":"c1","_x":"q","n":8}"#);
        let key = |f: &str| inc.order_key(f);
        assert_eq!(key("order_id").as_deref(), Some("o1"));
        assert_eq!(key("n").as_deref(), Some("8"), "the last copy");
        assert_eq!(key("f").as_deref(), Some("[1, 2]"));
        assert_eq!(key("gone"), None);
        assert_eq!(key("missing"), None);
        assert_eq!(key("_x"), None, "the queue's, not the event's");
        assert_eq!(key("correlation_id").as_deref(), Some("c1"));
        assert_eq!(key("event_type").as_deref(), Some("T"));
        assert_eq!(key("source"), None);
        assert!(inc.full.get().is_none());
    }
}
