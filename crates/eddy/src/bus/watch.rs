//! A deserializer that passes everything through and notices what would
//! make a typed event read from an entry's bytes differ from the same event
//! read from its JSON `Map` (see [`super::incoming`]):
//! - With `arbitrary_precision`, serde_json shows a number that is not a
//!   64-bit integer to a type that takes any value (an untagged enum, a
//!   flattened map, `Value`) as a map under a private key, where a `Value`
//!   shows it as an `f64` or an integer; with `raw_value`, a raw value
//!   likewise. Seeing such a key marks the read odd.
//! - A map with a key twice: the `Map` keeps the last value only, while a
//!   type reading the bytes sees both (an untagged enum, a flattened map, a
//!   visitor of its own may take the first). A repeated key, or a key not
//!   read as text (so not comparable), marks the read odd.
//! - A byte string is read without the checks a string gets (its UTF-8,
//!   its `\u` escapes), and handed to the type as bytes, where a `Value`
//!   hands it a string: it marks the read odd.
//!
//! Skipped values (`IgnoredAny`, for a field the type does not take) are
//! skipped: the caller must have checked the bytes so that skipping checks
//! what parsing would (see `incoming::leading_id_and_type`).
//!
//! An odd read is thrown away and the event read from the map, whose
//! answer stands. Typed fields (`f64`, `u64`, `String`...) read the same
//! either way: serde_json parses floats exactly (`float_roundtrip`), as
//! `str::parse` does for a `Value`'s number.

use std::cell::Cell;

use serde::de::{
    DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use super::envelope::PRIVATE_KEY;

/// A seed, deserializer, visitor or accessor `T`, watched: `odd` is set if
/// anything read through it is odd (see the module's doc).
pub(crate) struct Watch<'f, T> {
    inner: T,
    odd: &'f Cell<bool>,
    /// Where a map's key read through this is told (by its hash).
    key: Option<&'f Cell<Option<u64>>>,
}

impl<'f, T> Watch<'f, T> {
    pub(crate) fn new(inner: T, odd: &'f Cell<bool>) -> Self {
        Self {
            inner,
            odd,
            key: None,
        }
    }

    fn wrap<U>(&self, inner: U) -> Watch<'f, U> {
        Watch {
            inner,
            odd: self.odd,
            key: self.key,
        }
    }

    fn note(&self, s: &str) {
        if s.starts_with(PRIVATE_KEY) {
            self.odd.set(true);
        }
        if let Some(key) = self.key {
            key.set(Some(key_hash(s)));
        }
    }

    /// A key read as something other than text cannot be compared.
    fn not_text(&self) {
        if self.key.is_some() {
            self.odd.set(true);
        }
    }
}

/// A map key's hash, to find a key met twice (a collision only sends the
/// read the general way).
pub(crate) fn key_hash(key: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0).hash_one(key)
}

/// Map keys met so far, by hash: whether `key` was met before.
pub(crate) fn met_before(seen: &mut Vec<u64>, key: u64) -> bool {
    if seen.contains(&key) {
        return true;
    }
    seen.push(key);
    false
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Watch<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        let d = self.wrap(d);
        self.inner.deserialize(d)
    }
}

/// Deserializer methods that hand the inner deserializer a watched visitor.
macro_rules! watched {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.wrap(visitor);
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Watch<'_, D> {
    type Error = D::Error;

    watched! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.odd.set(true);
        let visitor = self.wrap(visitor);
        self.inner.deserialize_bytes(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.odd.set(true);
        let visitor = self.wrap(visitor);
        self.inner.deserialize_byte_buf(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // Not the event's: its numbers do not matter. (Skipping checks
        // what parsing would only for bytes the caller has checked: see
        // `incoming::leading_id_and_type`.)
        self.inner.deserialize_ignored_any(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Visitor methods passed straight through.
macro_rules! passed {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: serde::de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.not_text();
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Watch<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    passed! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.note(v);
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.note(v);
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<V::Value, E> {
        self.note(&v);
        self.inner.visit_string(v)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.not_text();
        self.inner.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.not_text();
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.not_text();
        let d = self.wrap(d);
        self.inner.visit_some(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.not_text();
        let d = self.wrap(d);
        self.inner.visit_newtype_struct(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.not_text();
        let seq = self.wrap(seq);
        self.inner.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.not_text();
        self.inner.visit_map(WatchMap {
            inner: map,
            odd: self.odd,
            key: Cell::new(None),
            seen: Vec::new(),
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.not_text();
        let data = self.wrap(data);
        self.inner.visit_enum(data)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Watch<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// A map read through a [`Watch`]: its keys are compared.
struct WatchMap<'f, A> {
    inner: A,
    odd: &'f Cell<bool>,
    /// The key being read, as its visitor saw it.
    key: Cell<Option<u64>>,
    seen: Vec<u64>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WatchMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.key.set(None);
        let seed = Watch {
            inner: seed,
            odd: self.odd,
            key: Some(&self.key),
        };
        let key = self.inner.next_key_seed(seed)?;
        if key.is_some() {
            match self.key.get() {
                Some(hash) if !met_before(&mut self.seen, hash) => {}
                _ => self.odd.set(true),
            }
        }
        Ok(key)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(Watch::new(seed, self.odd))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 'f, A: EnumAccess<'de>> EnumAccess<'de> for Watch<'f, A> {
    type Error = A::Error;
    type Variant = Watch<'f, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        // A variant's name is not a map key.
        let odd = self.odd;
        let (value, variant) = self.inner.variant_seed(Watch::new(seed, odd))?;
        Ok((value, Watch::new(variant, odd)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Watch<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.struct_variant(fields, visitor)
    }
}
