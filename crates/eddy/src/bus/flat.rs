//! A typed event serialized straight into the envelope's flat JSON object
//! (`event_id`, `event_type`, `timestamp`, then the event's own fields),
//! without building a `Map` of its fields first: the publisher's hot path.
//!
//! Only an event that serializes as a struct takes this path. Anything else
//! (a map, a field named like an envelope field, a value that is not an
//! object at all) makes it fail, and the caller goes the general way
//! through [`super::Envelope::new`], which builds the map and says what is
//! wrong, if anything.

use serde::ser::{self, Impossible, Serialize, SerializeMap, SerializeStruct, Serializer};

use super::RESERVED;

/// The wire object of a typed event with its envelope.
pub(super) struct TypedWire<'a, E> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub timestamp: f64,
    pub event: &'a E,
}

impl<E: Serialize> Serialize for TypedWire<'_, E> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("event_id", self.event_id)?;
        m.serialize_entry("event_type", self.event_type)?;
        m.serialize_entry("timestamp", &self.timestamp)?;
        self.event.serialize(Fields(&mut m))?;
        m.end()
    }
}

/// Writes a struct's fields as entries of the enclosing map.
struct Fields<'m, M>(&'m mut M);

fn not_flat<E: ser::Error>() -> E {
    E::custom("not a struct of plain fields: take the general path")
}

macro_rules! refuse {
    ($($name:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $name(self, $(_: $arg),*) -> Result<(), M::Error> {
            Err(not_flat())
        })*
    };
}

impl<'m, M: SerializeMap> Serializer for Fields<'m, M> {
    type Ok = ();
    type Error = M::Error;
    type SerializeSeq = Impossible<(), M::Error>;
    type SerializeTuple = Impossible<(), M::Error>;
    type SerializeTupleStruct = Impossible<(), M::Error>;
    type SerializeTupleVariant = Impossible<(), M::Error>;
    type SerializeMap = Impossible<(), M::Error>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), M::Error>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, M::Error> {
        Ok(self)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), M::Error> {
        value.serialize(self)
    }

    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), M::Error> {
        Err(not_flat())
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), M::Error> {
        Err(not_flat())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, M::Error> {
        Err(not_flat())
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, M::Error> {
        Err(not_flat())
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, M::Error> {
        Err(not_flat())
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, M::Error> {
        Err(not_flat())
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, M::Error> {
        Err(not_flat())
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, M::Error> {
        Err(not_flat())
    }
}

impl<M: SerializeMap> SerializeStruct for Fields<'_, M> {
    type Ok = ();
    type Error = M::Error;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), M::Error> {
        if RESERVED.contains(&key) {
            return Err(not_flat());
        }
        self.0.serialize_entry(key, value)
    }

    fn end(self) -> Result<(), M::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Envelope;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Shipped {
        order_id: String,
        items: Vec<u32>,
        total: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        big: u64,
    }
    crate::event!(Shipped);

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Clash {
        source: String,
    }
    crate::event!(Clash);

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Wrapped(Shipped);
    crate::event!(Wrapped);

    fn typed<E: serde::Serialize>(env: &Envelope, event: &E) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&TypedWire {
            event_id: &env.event_id,
            event_type: &env.event_type,
            timestamp: env.timestamp,
            event,
        })
    }

    #[test]
    fn writes_the_same_bytes_as_the_envelope() -> Result<(), Box<dyn std::error::Error>> {
        let ev = Shipped {
            order_id: "o-1 \"quoted\" ü".into(),
            items: vec![1, 2],
            total: 25.5,
            note: None,
            big: u64::MAX,
        };
        let env = Envelope::new(&ev)?;
        assert_eq!(typed(&env, &ev)?, serde_json::to_vec(&env.wire())?);
        let wrapped = Wrapped(ev);
        let env = Envelope::new(&wrapped)?;
        assert_eq!(typed(&env, &wrapped)?, serde_json::to_vec(&env.wire())?);
        Ok(())
    }

    #[test]
    fn leaves_anything_else_to_the_general_path() {
        let env = Envelope::from_parts("Clash", Default::default());
        let Ok(env) = env else {
            panic!("envelope");
        };
        assert!(
            typed(&env, &Clash { source: "x".into() }).is_err(),
            "reserved field"
        );
        assert!(typed(&env, &serde_json::json!({"a": 1})).is_err(), "a map");
        assert!(typed(&env, &5).is_err(), "not an object");
        assert!(typed(&env, &()).is_err(), "unit");
    }

    #[tokio::test]
    async fn a_publish_the_fast_path_refuses_still_gets_the_general_answer() {
        let Ok(bus) = crate::bus::Bus::open("memory://").await else {
            panic!("bus");
        };
        let r = bus.publish(&Clash { source: "x".into() }).await;
        assert_eq!(
            r.as_ref().err().map(|e| e.kind()),
            Some(crate::ErrorKind::InvalidArgument),
            "{r:?}"
        );
    }
}
