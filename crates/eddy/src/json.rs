//! Reading the JSON object an entry's `data` holds: the one way the queue
//! and the bus read it, shared below both.
//!
//! [`read_object`] runs serde_json once over the bytes. The members a
//! reader keeps for itself ([`Takes`]: a message's `_metadata`, an event's
//! envelope fields) are handed to it as they are met; every other member
//! goes to the value being read, which is a payload `Map` or the caller's
//! own type straight from the bytes. (A bus event's id and type are read
//! first from its leading members alone, see `bus/incoming.rs`; the pass
//! that reads the event is this one.)
//!
//! What a read checks: the bytes are UTF-8 and one JSON object with nothing
//! after it; each member read is checked by serde_json as it reads it (a
//! string's escapes, a number's range, the nesting limit); a member nobody
//! reads is checked for JSON syntax only. So an object holding, in a member
//! a reader skips, a lone surrogate escape or a number too big for an `f64`
//! is read, where a reader of the whole `Map` refuses it.
//!
//! Nothing here depends on serde_json's optional features: with
//! `arbitrary_precision` (which an application may turn on for itself)
//! serde_json shows a number to `deserialize_any` as a map, so the readers
//! below take numbers as raw text and strings through visitors that skip
//! whatever else they meet.

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Why bytes could not be read as an object.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The bytes are not UTF-8.
    NotUtf8(std::str::Utf8Error),
    /// Not one JSON value.
    NotJson(serde_json::Error),
    /// JSON, but not an object.
    NotAnObject,
    /// An object whose members do not make the type read.
    Mismatch(serde_json::Error),
}

impl ReadError {
    /// The reason, as a dead-letter record gives it; `wanted` names what
    /// was read (a type), for a mismatch.
    pub(crate) fn reason(&self, wanted: &str) -> String {
        match self {
            ReadError::NotUtf8(e) => format!("entry is not UTF-8: {e}"),
            ReadError::NotJson(e) => format!("entry is not valid JSON: {e}"),
            ReadError::NotAnObject => "entry is JSON but not an object".to_owned(),
            ReadError::Mismatch(e) => format!("not a {wanted}: {e}"),
        }
    }
}

/// The members of an object a reader keeps for itself.
pub(crate) trait Takes<'de> {
    /// Whether `key` is one of them; if so, its value is read from `map`
    /// here. Each copy of a repeated key is offered, in order.
    fn take<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error>;
}

/// A reader that keeps nothing for itself.
impl<'de> Takes<'de> for () {
    fn take<A: MapAccess<'de>>(&mut self, _: &str, _: &mut A) -> Result<bool, A::Error> {
        Ok(false)
    }
}

/// `T` from the JSON object `raw`, each member that `takes` keeps handed to
/// it instead. As for a `Value` holding the object, an `Option` is `Some`
/// of it and a newtype wraps it.
pub(crate) fn read_object<'de, T, K>(raw: &'de [u8], takes: &mut K) -> Result<T, ReadError>
where
    T: Deserialize<'de>,
    K: Takes<'de>,
{
    let text = std::str::from_utf8(raw).map_err(ReadError::NotUtf8)?;
    read_text_object(text, takes)
}

/// [`read_object`] for bytes already known to be UTF-8.
pub(crate) fn read_text_object<'de, T, K>(text: &'de str, takes: &mut K) -> Result<T, ReadError>
where
    T: Deserialize<'de>,
    K: Takes<'de>,
{
    let mut de = serde_json::Deserializer::from_str(text);
    let read = T::deserialize(Object {
        de: &mut de,
        takes: &mut *takes,
    })
    .and_then(|value| de.end().map(|()| value));
    read.map_err(|e| {
        if e.is_data() {
            let object = text.trim_start().starts_with('{');
            return if object {
                ReadError::Mismatch(e)
            } else {
                ReadError::NotAnObject
            };
        }
        ReadError::NotJson(e)
    })
}

/// Read any JSON value from `d`: each member of an object is offered to
/// `takes`, and skipped if it does not take it; any other value is skipped.
pub(crate) fn skip_taking<'de, D, K>(d: D, takes: &mut K) -> Result<(), D::Error>
where
    D: serde::Deserializer<'de>,
    K: Takes<'de>,
{
    struct Visit<'t, K>(&'t mut K);
    impl<'de, K: Takes<'de>> Visitor<'de> for Visit<'_, K> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<Key<'de>>()? {
                if !self.0.take(key.as_str(), &mut map)? {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }
    d.deserialize_any(Visit(takes))
}

/// A JSON object's deserializer that shows the value read only the members
/// its [`Takes`] leaves.
struct Object<'t, D, K> {
    de: D,
    takes: &'t mut K,
}

impl<'de, D: serde::Deserializer<'de>, K: Takes<'de>> serde::Deserializer<'de>
    for Object<'_, D, K>
{
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_map(ObjectVisitor {
            visitor,
            takes: self.takes,
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct ObjectVisitor<'t, V, K> {
    visitor: V,
    takes: &'t mut K,
}

impl<'de, V: Visitor<'de>, K: Takes<'de>> Visitor<'de> for ObjectVisitor<'_, V, K> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(Left {
            map,
            takes: self.takes,
        })
    }
}

/// The members left to the value read.
struct Left<'t, A, K> {
    map: A,
    takes: &'t mut K,
}

impl<'de, A: MapAccess<'de>, K: Takes<'de>> MapAccess<'de> for Left<'_, A, K> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        while let Some(key) = self.map.next_key::<Key<'de>>()? {
            if !self.takes.take(key.as_str(), &mut self.map)? {
                return key.deserialize_with(seed).map(Some);
            }
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A map key as the input holds it: borrowed from the bytes unless it has
/// escapes, so comparing it, or matching it against a struct's fields,
/// allocates nothing.
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
    fn deserialize_with<S: DeserializeSeed<'de>, E: serde::de::Error>(
        self,
        seed: S,
    ) -> Result<S::Value, E> {
        use serde::de::IntoDeserializer;
        match self {
            Key::Borrowed(s) => seed.deserialize(serde::de::value::BorrowedStrDeserializer::new(s)),
            Key::Owned(s) => seed.deserialize(s.into_deserializer()),
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(s))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(s))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// A JSON string's text (borrowed from the input unless it has escapes),
/// or `None` for any other value, which is skipped.
pub(crate) struct Text<'de>(pub(crate) Option<Key<'de>>);

impl Text<'_> {
    /// The text, owned.
    pub(crate) fn into_string(self) -> Option<String> {
        self.0.map(|k| match k {
            Key::Borrowed(s) => s.to_owned(),
            Key::Owned(s) => s,
        })
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Visit<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Some(Key::Borrowed(s))))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'a>, E> {
                Ok(Text(Some(Key::Owned(s.to_owned()))))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'a>, E> {
                Ok(Text(Some(Key::Owned(s))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Text<'a>, E> {
                Ok(Text(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Text<'a>, E> {
                Ok(Text(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Text<'a>, E> {
                Ok(Text(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Text<'a>, E> {
                Ok(Text(None))
            }
            fn visit_unit<E>(self) -> Result<Text<'a>, E> {
                Ok(Text(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Text<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

/// A number's value from its raw text; `None` if the value is not a number.
pub(crate) fn number<T: serde::de::DeserializeOwned>(raw: &RawValue) -> Option<T> {
    let text = raw.get();
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// Deserializes like `&Value::Object(map)` without building that value (a
/// copy of the map): `&Map`'s own deserializer, except that an option or a
/// newtype struct sees the object itself, as with `&Value`.
pub(crate) struct ObjectRef<'a>(pub(crate) &'a Map<String, Value>);

impl<'de> serde::Deserializer<'de> for ObjectRef<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.0.deserialize_ignored_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier
    }
}

/// A JSON object's members as they are written, borrowed from its text:
/// for editing stored bytes without rewriting what is not edited.
pub(crate) struct Members<'a> {
    pub(crate) members: Vec<Member<'a>>,
}

/// One member: its key (unescaped), and its key's and value's text.
pub(crate) struct Member<'a> {
    pub(crate) name: Key<'a>,
    pub(crate) key: &'a RawValue,
    pub(crate) value: &'a RawValue,
}

impl<'a> Members<'a> {
    /// The members of `raw`, or `None` if it is not one JSON object.
    pub(crate) fn read(raw: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(raw).ok()?;
        let mut de = serde_json::Deserializer::from_str(text);
        let members = Members::deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(members)
    }

    /// The value of the last copy of `key` (the one a reader keeps).
    pub(crate) fn last(&self, key: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .rev()
            .find(|m| m.name.as_str() == key)
            .map(|m| m.value)
    }

    /// The object's text (`raw`, which these members were read from)
    /// without the members named in `leave_out`; every other byte stays as
    /// it is, the separator before each member kept going with it.
    pub(crate) fn text_without(&self, raw: &str, leave_out: &[&str]) -> String {
        let bytes = raw.as_bytes();
        let (Some(first), Some(last)) = (self.members.first(), self.members.last()) else {
            return raw.trim().to_owned();
        };
        let mut out = String::with_capacity(raw.len());
        out.push_str(raw.get(..span(bytes, first.key).0).unwrap_or("{"));
        let mut previous_end = None;
        let mut wrote = false;
        for m in &self.members {
            let (start, _) = span(bytes, m.key);
            let (_, end) = span(bytes, m.value);
            let separator = previous_end.and_then(|p| raw.get(p..start));
            previous_end = Some(end);
            if leave_out.contains(&m.name.as_str()) {
                continue;
            }
            if wrote {
                out.push_str(separator.unwrap_or(","));
            }
            out.push_str(raw.get(start..end).unwrap_or_default());
            wrote = true;
        }
        out.push_str(raw.get(span(bytes, last.value).1..).unwrap_or("}"));
        out.trim().to_owned()
    }
}

/// Where a value borrowed from `raw` sits in it.
pub(crate) fn span(raw: &[u8], value: &RawValue) -> (usize, usize) {
    let start = (value.get().as_ptr() as usize).saturating_sub(raw.as_ptr() as usize);
    (start, start + value.get().len())
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                use serde::de::Error;
                let mut members = Vec::new();
                while let Some(key) = map.next_key::<&'de RawValue>()? {
                    let name =
                        serde_json::from_str::<Key<'de>>(key.get()).map_err(A::Error::custom)?;
                    let value = map.next_value::<&'de RawValue>()?;
                    members.push(Member { name, key, value });
                }
                Ok(Members { members })
            }
        }
        d.deserialize_map(Visit)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Takes `_m`, as a message's reader takes `_metadata`.
    #[derive(Default)]
    struct TakeM(Vec<String>);

    impl<'de> Takes<'de> for TakeM {
        fn take<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
            if key != "_m" {
                return Ok(false);
            }
            self.0.push(map.next_value::<&RawValue>()?.get().to_owned());
            Ok(true)
        }
    }

    #[test]
    fn a_read_hands_the_taken_members_aside_and_the_rest_to_the_value() {
        let mut taken = TakeM::default();
        let m: Map<String, Value> =
            read_object(br#"{"a":1,"_m":[2],"b":{"_m":3},"_m":4}"#, &mut taken).unwrap();
        assert_eq!(Value::Object(m), json!({"a": 1, "b": {"_m": 3}}));
        assert_eq!(taken.0, ["[2]", "4"], "every top-level copy, in order");

        #[derive(Debug, PartialEq, Deserialize)]
        struct P {
            a: u8,
        }
        #[derive(Debug, PartialEq, Deserialize)]
        struct Wrapped(P);
        let raw = br#"{"a":1,"_m":0}"#;
        assert_eq!(
            read_object::<P, _>(raw, &mut TakeM::default()).ok(),
            Some(P { a: 1 })
        );
        assert_eq!(
            read_object::<Option<P>, _>(raw, &mut TakeM::default()).ok(),
            Some(Some(P { a: 1 }))
        );
        assert_eq!(
            read_object::<Wrapped, _>(raw, &mut TakeM::default()).ok(),
            Some(Wrapped(P { a: 1 }))
        );
    }

    #[test]
    fn a_read_says_what_the_bytes_are_not() {
        let kind = |raw: &[u8]| match read_object::<Map<String, Value>, _>(raw, &mut ()) {
            Ok(_) => "read",
            Err(ReadError::NotUtf8(_)) => "not utf-8",
            Err(ReadError::NotJson(_)) => "not json",
            Err(ReadError::NotAnObject) => "not an object",
            Err(ReadError::Mismatch(_)) => "mismatch",
        };
        assert_eq!(kind(b" {} "), "read");
        assert_eq!(kind(b"\xff"), "not utf-8");
        assert_eq!(kind(b"{\"a\":\"\xff\"}"), "not utf-8");
        assert_eq!(kind(b"{nope"), "not json");
        assert_eq!(kind(b"{} {}"), "not json");
        assert_eq!(kind(b"nope"), "not json");
        assert_eq!(kind(b" [1]"), "not an object");
        assert_eq!(kind(b"\"s\""), "not an object");
        let typed =
            read_object::<std::collections::BTreeMap<String, u8>, _>(br#"{"a":"x"}"#, &mut ());
        assert!(matches!(typed, Err(ReadError::Mismatch(_))));
    }

    #[test]
    fn text_and_numbers_are_read_leniently() {
        #[derive(Deserialize)]
        struct Both<'a> {
            #[serde(borrow)]
            n: &'a RawValue,
            #[serde(borrow)]
            t: Text<'a>,
        }
        for (raw, n, t) in [
            (r#"{"n":1.5,"t":"x"}"#, Some(1.5), Some("x")),
            (r#"{"n":17,"t":"\u0078"}"#, Some(17.0), Some("x")),
            (r#"{"n":"1.5","t":5}"#, None, None),
            (r#"{"n":null,"t":[1,{"a":2}]}"#, None, None),
            (r#"{"n":{"x":1},"t":{"a":[1]}}"#, None, None),
            (r#"{"n":1e400,"t":null}"#, None, None),
        ] {
            let both: Both = serde_json::from_str(raw).unwrap();
            assert_eq!(number::<f64>(both.n), n, "{raw}");
            assert_eq!(both.t.into_string().as_deref(), t, "{raw}");
        }
        let whole = |raw: &str| number::<u64>(&serde_json::from_str::<Box<RawValue>>(raw).unwrap());
        assert_eq!(whole("30"), Some(30));
        assert_eq!(whole("30.0"), None);
        assert_eq!(whole("-1"), None);
    }

    #[test]
    fn an_object_ref_reads_as_a_value_holding_the_object() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct P {
            a: u8,
        }
        #[derive(Debug, PartialEq, Deserialize)]
        struct Wrapped(P);
        let m = json!({"a": 1}).as_object().cloned().unwrap_or_default();
        assert_eq!(P::deserialize(ObjectRef(&m)).ok(), Some(P { a: 1 }));
        assert_eq!(
            Option::<P>::deserialize(ObjectRef(&m)).ok(),
            Some(Some(P { a: 1 }))
        );
        assert_eq!(
            Wrapped::deserialize(ObjectRef(&m)).ok(),
            Some(Wrapped(P { a: 1 }))
        );
    }

    #[test]
    fn members_keep_their_text_when_others_are_left_out() {
        let without = |raw: &str, leave: &[&str]| {
            let members = Members::read(raw.as_bytes()).unwrap();
            members.text_without(raw, leave)
        };
        let raw = r#" { "z" : 1 ,  "_m":{"x":[1]}, "n": 123456789012345678901234567890,"\u0061":"é\n" } "#;
        assert_eq!(
            without(raw, &["_m"]),
            r#"{ "z" : 1, "n": 123456789012345678901234567890,"\u0061":"é\n" }"#
        );
        assert_eq!(
            without(raw, &["z"]),
            r#"{ "_m":{"x":[1]}, "n": 123456789012345678901234567890,"\u0061":"é\n" }"#
        );
        assert_eq!(
            without(raw, &["a", "n"]),
            r#"{ "z" : 1 ,  "_m":{"x":[1]} }"#
        );
        assert_eq!(without(raw, &["z", "_m", "n", "a"]), "{  }");
        assert_eq!(without(raw, &[]), raw.trim());
        assert_eq!(without("{ }", &["a"]), "{ }");
        assert_eq!(without(r#"{"a":1,"a":2}"#, &["a"]), "{}");
    }
}
