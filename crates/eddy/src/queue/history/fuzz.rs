//! Property tests over what a move and a read do to an entry's bytes (the
//! library half of the fuzz target; the engine half is
//! `crates/eddy-testkit/tests/fuzz.rs`): splicing a history record never
//! panics and never changes or drops a member, decoding never panics and
//! hands a refused entry back whole, and encoding round-trips.
//!
//! `PROPTEST_CASES` sets the number of cases (256 by default).

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use serde::de::{Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{splice, Record};
use crate::engine::{Entry, EntryId};
use crate::error::ErrorKind;
use crate::queue::wire::{
    decode, decode_any, decode_as, encode, undecodable_message, Beside, FAILURES, METADATA,
    RESERVED,
};

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        // Failures found are kept as explicit cases below, not in files.
        failure_persistence: None,
        ..Config::default()
    }
}

// ---- JSON text, written token by token -------------------------------------

/// JSON whitespace between tokens, mostly none.
fn ws() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(String::new()),
        1 => prop::collection::vec(prop::sample::select(vec![' ', '\t', '\n', '\r']), 1..4)
            .prop_map(|v| v.into_iter().collect()),
    ]
}

/// A JSON string literal: any unicode, every escape, and (with `lone`) lone
/// surrogate escapes, which JSON's grammar allows and a strict reader
/// refuses.
fn string_text(lone: bool) -> impl Strategy<Value = String> {
    let mut escapes = vec![
        r#"\""#,
        r"\\",
        r"\/",
        r"\b",
        r"\f",
        r"\n",
        r"\r",
        r"\t",
        r"\u00e9",
        r"\u0000",
        r"\u001F",
        r"\ud83d\ude00",
        r"\u005f",
        r"\uffff",
    ];
    if lone {
        escapes.extend([r"\udc00", r"\uD800"]);
    }
    let piece = prop_oneof![
        3 => any::<char>()
            .prop_filter("written as it is", |c| *c != '"' && *c != '\\' && *c >= ' ')
            .prop_map(String::from),
        1 => prop::sample::select(escapes).prop_map(String::from),
        1 => prop::sample::select(vec!["a", "é", "日本", "_", "ttl", "😀", "_failures"])
            .prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|p| format!("\"{}\"", p.concat()))
}

/// A JSON number as text: big integers, exponents, trailing zeros.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (
            any::<bool>(),
            1u8..10,
            prop::collection::vec(0u8..10, 18..40)
        )
            .prop_map(|(neg, first, rest)| {
                let digits: String = rest.iter().map(|d| char::from(b'0' + d)).collect();
                format!("{}{first}{digits}", if neg { "-" } else { "" })
            }),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        prop::sample::select(vec![
            "0", "-0", "1.000", "1e308", "-1E+2", "0.5e-10", "1e400", "-0.0"
        ])
        .prop_map(String::from),
    ]
}

fn join(items: Vec<String>) -> String {
    items.join(",")
}

/// Any JSON value as text, nested a few levels.
fn value_text(lone: bool) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        number_text(),
        string_text(lone),
    ];
    leaf.prop_recursive(4, 48, 5, move |inner| {
        prop_oneof![
            prop::collection::vec((ws(), inner.clone(), ws()), 0..5).prop_map(|items| {
                format!(
                    "[{}]",
                    join(items.into_iter().map(|(a, v, b)| a + &v + &b).collect())
                )
            }),
            prop::collection::vec((ws(), string_text(lone), ws(), ws(), inner, ws()), 0..5)
                .prop_map(|members| {
                    format!(
                        "{{{}}}",
                        join(
                            members
                                .into_iter()
                                .map(|(a, k, b, c, v, d)| format!("{a}{k}{b}:{c}{v}{d}"))
                                .collect()
                        )
                    )
                }),
        ]
    })
    .boxed()
}

/// `_metadata` as eddy and LeanMQ write it, or with repeats, odd types and
/// extra members.
fn meta_text(lone: bool) -> impl Strategy<Value = String> {
    let member = prop_oneof![
        string_text(false).prop_map(|v| format!("\"id\":{v}")),
        number_text().prop_map(|v| format!("\"timestamp\" : {v}")),
        prop_oneof![
            Just("null".to_owned()),
            any::<u32>().prop_map(|n| n.to_string()),
            number_text(),
        ]
        .prop_map(|v| format!("\"ttl\":{v}")),
        value_text(lone).prop_map(|v| format!("\"x\":{v}")),
    ];
    prop::collection::vec((ws(), member, ws()), 0..5).prop_map(|members| {
        format!(
            "{{{}}}",
            join(members.into_iter().map(|(a, m, b)| a + &m + &b).collect())
        )
    })
}

/// A history list: records eddy and LeanMQ write, or anything else.
fn history_text(lone: bool) -> impl Strategy<Value = String> {
    let record = prop_oneof![
        (any::<f64>(), any::<String>())
            .prop_map(|(t, r)| { serde_json::json!({"timestamp": t, "reason": r}).to_string() }),
        value_text(lone),
    ];
    prop::collection::vec((ws(), record), 0..4).prop_map(|items| {
        format!(
            "[{}]",
            join(items.into_iter().map(|(a, r)| a + &r).collect())
        )
    })
}

/// A top-level key: anything, or one the queue reads (possibly escaped).
fn key_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => string_text(false),
        2 => prop::sample::select(vec![
            r#""a""#, r#""_metadata""#, r#""_failures""#, r#""_requeues""#,
            r#""\u005ffailures""#, r#""_m\u0065tadata""#, r#""ttl""#, r#""_raw""#,
        ])
        .prop_map(String::from),
    ]
}

/// A JSON object as text: repeated keys, whitespace anywhere between
/// tokens, and (with `lone`) lone surrogate escapes inside values.
pub(crate) fn object_text(lone: bool) -> impl Strategy<Value = String> {
    let value = prop_oneof![
        3 => value_text(lone),
        1 => meta_text(lone),
        1 => history_text(lone),
    ];
    let member = (ws(), key_text(), ws(), ws(), value, ws())
        .prop_map(|(a, k, b, c, v, d)| format!("{a}{k}{b}:{c}{v}{d}"));
    (ws(), prop::collection::vec(member, 0..7), ws(), ws())
        .prop_map(|(a, members, b, c)| format!("{a}{{{}{b}}}{c}", join(members)))
}

/// Bytes near a JSON object: an object with a few bytes changed, inserted
/// or cut off, or random bytes.
fn near_object() -> impl Strategy<Value = Vec<u8>> {
    let edit = (any::<prop::sample::Index>(), any::<u8>(), 0u8..4);
    prop_oneof![
        (object_text(true), prop::collection::vec(edit, 0..3)).prop_map(|(text, edits)| {
            let mut b = text.into_bytes();
            for (at, byte, how) in edits {
                if b.is_empty() {
                    break;
                }
                let i = at.index(b.len());
                match how {
                    0 => b[i] = byte,
                    1 => b.insert(i, byte),
                    2 => b.truncate(i),
                    _ => {
                        b.remove(i);
                    }
                }
            }
            b
        }),
        prop::collection::vec(any::<u8>(), 0..64),
        value_text(true).prop_map(String::into_bytes),
    ]
}

fn record_text() -> impl Strategy<Value = String> {
    (any::<f64>(), any::<String>(), any::<bool>()).prop_map(|(t, r, requeue)| {
        if requeue {
            serde_json::json!({"timestamp": t, "from_dlq": "mq:q:dlq", "to_queue": r}).to_string()
        } else {
            serde_json::json!({"timestamp": t, "reason": r}).to_string()
        }
    })
}

// ---- the oracle --------------------------------------------------------------

type Members<'a> = Vec<(String, &'a RawValue)>;

/// A JSON object's members as written (repeats kept), or `None` if `raw` is
/// not one JSON object.
fn members(raw: &[u8]) -> Option<Members<'_>> {
    struct Visit;
    impl<'de> Visitor<'de> for Visit {
        type Value = Members<'de>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
            let mut out = Vec::new();
            while let Some(k) = map.next_key::<String>()? {
                out.push((k, map.next_value::<&'de RawValue>()?));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(raw);
    let m = (&mut de).deserialize_map(Visit).ok()?;
    de.end().ok()?;
    Some(m)
}

fn last(m: &[(String, &RawValue)], key: &str) -> Option<usize> {
    m.iter().rposition(|(k, _)| k == key)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What `splice` must do: refuse what is not an object; for an object keep
/// every member's key and value text, clear only the last `_metadata`'s
/// last `ttl`, and add `record` at the end of the last `list` (made a list
/// if it was not one, added if missing).
pub(crate) fn check_splice(raw: &[u8], list: &str, record: &str) -> Result<(), TestCaseError> {
    let out = splice(raw, list, record.as_bytes());
    let Some(before) = members(raw) else {
        prop_assert!(out.is_none(), "spliced a non-object: {:?}", lossy(raw));
        return Ok(());
    };
    let Some(out) = out else {
        return Err(TestCaseError::fail(format!(
            "refused an object: {:?}",
            lossy(raw)
        )));
    };
    let after = members(&out).ok_or_else(|| {
        TestCaseError::fail(format!("result is not an object: {:?}", lossy(&out)))
    })?;
    let (meta_at, list_at) = (last(&before, METADATA), last(&before, list));
    prop_assert_eq!(after.len(), before.len() + usize::from(list_at.is_none()));
    // The cleared ttl's text, and what replaced it.
    let (mut ttl_len, mut null_len) = (0, 0);
    for (i, ((k0, v0), (k1, v1))) in before.iter().zip(&after).enumerate() {
        prop_assert_eq!(k0, k1);
        let (v0, v1) = (v0.get(), v1.get());
        if Some(i) == list_at {
            if v0.starts_with('[') {
                let old: Vec<&RawValue> = serde_json::from_str(v0).map_err(fail)?;
                let new: Vec<&RawValue> = serde_json::from_str(v1).map_err(fail)?;
                prop_assert_eq!(new.len(), old.len() + 1);
                for (a, b) in old.iter().zip(&new) {
                    prop_assert_eq!(a.get(), b.get());
                }
                prop_assert_eq!(new[old.len()].get(), record);
            } else {
                prop_assert_eq!(v1, format!("[{v0},{record}]"));
            }
        } else if Some(i) == meta_at {
            match members(v0.as_bytes()) {
                Some(m0) => {
                    let m1 = members(v1.as_bytes())
                        .ok_or_else(|| TestCaseError::fail("_metadata is no longer an object"))?;
                    prop_assert_eq!(m0.len(), m1.len());
                    let ttl_at = last(&m0, "ttl");
                    for (j, ((a, x), (b, y))) in m0.iter().zip(&m1).enumerate() {
                        prop_assert_eq!(a, b);
                        if Some(j) == ttl_at {
                            prop_assert_eq!(y.get(), "null");
                            (ttl_len, null_len) = (x.get().len(), "null".len());
                        } else {
                            prop_assert_eq!(x.get(), y.get());
                        }
                    }
                }
                None => prop_assert_eq!(v0, v1),
            }
        } else {
            prop_assert_eq!(v0, v1);
        }
    }
    if list_at.is_none() {
        let (k, v) = &after[before.len()];
        prop_assert_eq!(k, list);
        prop_assert_eq!(v.get(), format!("[{record}]"));
    }
    // Nothing shrinks but the cleared ttl.
    prop_assert!(out.len() + ttl_len >= raw.len() + null_len + record.len());

    // A reader that keeps the last of repeated keys sees exactly the edit.
    if let Ok(Value::Object(mut want)) = serde_json::from_slice::<Value>(raw) {
        if let Some(Value::Object(meta)) = want.get_mut(METADATA) {
            if let Some(ttl) = meta.get_mut("ttl") {
                *ttl = Value::Null;
            }
        }
        let rec: Value = serde_json::from_str(record).map_err(fail)?;
        let grown = match want.remove(list) {
            Some(Value::Array(mut items)) => {
                items.push(rec);
                items
            }
            Some(other) => vec![other, rec],
            None => vec![rec],
        };
        want.insert(list.to_owned(), Value::Array(grown));
        let got: Value = serde_json::from_slice(&out).map_err(fail)?;
        prop_assert_eq!(got, Value::Object(want));
    }
    Ok(())
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// What `decode` must do: never panic; hand a refused entry back whole;
/// accept every object serde_json accepts (within the limit), as serde_json
/// reads it; and what it moves to the DLQ keeps every byte and field.
pub(crate) fn check_decode(
    data: Option<&[u8]>,
    fields: &[(Vec<u8>, Vec<u8>)],
    max: usize,
) -> Result<(), TestCaseError> {
    let fields: Vec<(Bytes, Bytes)> = fields
        .iter()
        .map(|(k, v)| (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)))
        .collect();
    let entry = Entry::new(EntryId::new(7, 1), data.map(Bytes::copy_from_slice), 3)
        .with_fields(fields.clone());
    match decode_as::<Value>(entry.clone(), max) {
        Ok(t) => {
            prop_assert!(data.is_some_and(|d| d.len() <= max));
            prop_assert!(t.payload.is_object());
        }
        Err(u) => {
            prop_assert_eq!(&u.entry, &entry);
            prop_assert!(!u.reason.is_empty());
        }
    }
    match decode(entry.clone(), max) {
        Ok(m) => {
            prop_assert!(data.is_some_and(|d| d.len() <= max));
            prop_assert_eq!(m.raw_data(), data);
            prop_assert_eq!(&m.stored.fields, &fields);
            prop_assert_eq!((m.id, m.delivery_count), (entry.id, 3));
        }
        Err(u) => {
            prop_assert_eq!(&u.entry, &entry);
            prop_assert!(!u.reason.is_empty());
            let shown = undecodable_message(&u, 3);
            prop_assert_eq!(shown.raw_data(), data);
            let record = Record::failure(&u.reason);
            let moved = u
                .transfer(&record)
                .apply(entry.data.as_ref(), &entry.fields);
            check_moved(&entry, &moved, FAILURES, record.text())?;
        }
    }
    if let Some(d) = data.filter(|d| d.len() <= max) {
        if let Ok(mut want) = serde_json::from_slice::<Map<String, Value>>(d) {
            want.remove(METADATA);
            match decode(entry.clone(), max) {
                Ok(m) => prop_assert_eq!(m.data, want),
                Err(u) => {
                    return Err(TestCaseError::fail(format!(
                        "refused an object serde_json reads ({}): {:?}",
                        u.reason,
                        lossy(d)
                    )))
                }
            }
        }
    }
    let any = decode_any(entry.clone());
    prop_assert_eq!(any.raw_data(), data);
    Ok(())
}

/// A moved entry's fields keep the source's: `data` spliced if it is an
/// object, else as it was with the history in the field `list` beside it;
/// every other field as it was (a repeated history field: its last copy,
/// the one readers take, holds the history, the others stay as they were).
fn check_moved(
    entry: &Entry,
    moved: &[(Bytes, Bytes)],
    list: &str,
    record: &str,
) -> Result<(), TestCaseError> {
    let get = |k: &str| {
        moved
            .iter()
            .rev()
            .find(|(n, _)| n.as_ref() == k.as_bytes())
            .map(|(_, v)| v)
    };
    let spliced = entry
        .data
        .as_deref()
        .and_then(|d| splice(d, list, record.as_bytes()));
    match (&entry.data, get("data"), spliced) {
        (Some(_), Some(new), Some(want)) => prop_assert_eq!(new.as_ref(), &want[..]),
        (Some(d), Some(new), None) => {
            prop_assert_eq!(d, new);
            let history: Vec<&RawValue> =
                serde_json::from_slice(get(list).ok_or_else(|| fail("no history field"))?)
                    .map_err(fail)?;
            prop_assert_eq!(history.last().map(|r| r.get()), Some(record));
        }
        (None, None, _) => prop_assert!(get(list).is_some(), "no history field"),
        (d, n, _) => {
            return Err(TestCaseError::fail(format!("data {d:?} became {n:?}")));
        }
    }
    let last_list = entry
        .fields
        .iter()
        .rposition(|(k, _)| k.as_ref() == list.as_bytes());
    for (i, (k, v)) in entry.fields.iter().enumerate() {
        if Some(i) == last_list || k.as_ref() == b"data" {
            continue;
        }
        let kept = moved.iter().any(|(n, w)| n == k && w == v);
        prop_assert!(kept, "field {:?} lost", lossy(k));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn splice_keeps_every_member_of_an_object(
        raw in object_text(true),
        requeue in any::<bool>(),
        record in record_text(),
    ) {
        let list = if requeue { "_requeues" } else { FAILURES };
        prop_assert!(members(raw.as_bytes()).is_some(), "generated {raw:?}");
        check_splice(raw.as_bytes(), list, &record)?;
    }

    #[test]
    fn splice_never_panics_and_refuses_what_is_not_an_object(
        raw in near_object(),
        record in record_text(),
    ) {
        check_splice(&raw, FAILURES, &record)?;
    }

    #[test]
    fn decode_never_panics_and_hands_a_refused_entry_back_whole(
        data in prop::option::weighted(0.9, prop_oneof![
            near_object(),
            object_text(true).prop_map(String::into_bytes),
            object_text(false).prop_map(String::into_bytes),
        ]),
        fields in prop::collection::vec(
            (
                prop::sample::select(vec![&b"other"[..], b"_failures", b"_requeues", b"data", b"\xff"])
                    .prop_map(<[u8]>::to_vec),
                prop::collection::vec(any::<u8>(), 0..16),
            ),
            0..3,
        ),
        max in prop_oneof![Just(usize::MAX), 0usize..256],
    ) {
        // `data` among the other fields would be a second data field: the
        // engines never hand one over.
        let fields: Vec<_> = fields.into_iter().filter(|(k, _)| k != b"data").collect();
        check_decode(data.as_deref(), &fields, max)?;
    }

    #[test]
    fn encode_then_decode_round_trips(
        text in object_text(false),
        id in any::<String>(),
        timestamp in any::<f64>().prop_filter("finite", |t| t.is_finite()),
        ttl in any::<Option<u64>>(),
        record in record_text(),
    ) {
        let Ok(mut payload) = serde_json::from_str::<Map<String, Value>>(&text) else {
            // Out of range (`1e400`) or too deep: not a payload to send.
            return Ok(());
        };
        let text = text.clone();
        payload.retain(|k, _| !RESERVED.contains(&k.as_str()));
        let bytes = encode(&payload, &id, timestamp, ttl, usize::MAX, &Beside::default()).map_err(fail)?;
        let m = decode(Entry::new(EntryId::new(1, 0), Some(bytes.clone()), 1), bytes.len())
            .map_err(|u| fail(u.reason))?;
        prop_assert_eq!(&m.data, &payload);
        prop_assert_eq!((m.message_id.as_str(), m.timestamp, m.ttl), (id.as_str(), timestamp, ttl));
        let over = encode(&payload, &id, timestamp, ttl, bytes.len() - 1, &Beside::default());
        prop_assert_eq!(over.err().map(|e| e.kind()), Some(ErrorKind::PayloadTooLarge));

        // Dead-lettered: the same payload, the record added, the ttl gone.
        check_splice(&bytes, FAILURES, &record)?;
        let spliced = splice(&bytes, FAILURES, record.as_bytes())
            .ok_or_else(|| TestCaseError::fail("refused an encoded payload"))?;
        let d = decode(Entry::new(EntryId::new(1, 1), Some(Bytes::from(spliced)), 1), usize::MAX)
            .map_err(|u| fail(u.reason))?;
        prop_assert_eq!(d.failures().len(), 1);
        prop_assert_eq!((d.message_id.as_str(), d.timestamp, d.ttl), (id.as_str(), timestamp, None));
        let mut without = d.data.clone();
        without.remove(FAILURES);
        prop_assert_eq!(&without, &payload);

        // Sent as written (a `RawValue`): stored byte for byte, then the
        // metadata.
        let trimmed = text.trim();
        let has_reserved = members(trimmed.as_bytes())
            .is_some_and(|m| m.iter().any(|(k, _)| RESERVED.contains(&k.as_str())));
        let raw = RawValue::from_string(trimmed.to_owned()).map_err(fail)?;
        match encode(&raw, &id, timestamp, ttl, usize::MAX, &Beside::default()) {
            Ok(bytes) => {
                prop_assert!(!has_reserved, "sent a reserved field: {trimmed:?}");
                prop_assert_eq!(&bytes[..trimmed.len() - 1], &trimmed.as_bytes()[..trimmed.len() - 1]);
                let m = decode(Entry::new(EntryId::new(1, 0), Some(bytes.clone()), 1), usize::MAX)
                    .map_err(|u| fail(format!("{} in {:?}", u.reason, lossy(&bytes))))?;
                let mut want = serde_json::from_str::<Map<String, Value>>(trimmed).map_err(fail)?;
                want.remove(METADATA);
                prop_assert_eq!(&m.data, &want);
                prop_assert_eq!((m.message_id.as_str(), m.timestamp, m.ttl), (id.as_str(), timestamp, ttl));
            }
            Err(e) => {
                prop_assert!(has_reserved, "refused {trimmed:?}: {e}");
                prop_assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            }
        }

        // A reserved field is refused, whatever else the payload holds.
        for field in RESERVED {
            let mut bad = payload.clone();
            bad.insert(field.to_owned(), Value::Null);
            let e = encode(&bad, &id, timestamp, ttl, usize::MAX, &Beside::default());
            prop_assert_eq!(e.err().map(|e| e.kind()), Some(ErrorKind::InvalidArgument));
        }
    }
}

/// The inputs of issue 13 and those the tests above once found, run every
/// time through the same checks.
#[test]
fn corpus() {
    let deep = format!("{{\"x\":{}0{}}}", "[".repeat(200), "]".repeat(200));
    let deep_object = format!("{}{}", "{\"a\":".repeat(200), "}".repeat(200));
    let big = format!(r#"{{"blob":"{}","n":1}}"#, "z".repeat(2 << 20));
    let corpus: Vec<Vec<u8>> = vec![
        br#"{"_raw": null}"#.to_vec(),
        br#"{"_raw":"x","_raw_hex":"ff","_fields":{}}"#.to_vec(),
        br#"{"_failures":[{"timestamp":"x","reason":7},3,null],"a":1}"#.to_vec(),
        br#"{"_failures":{"reason":"not a list"}}"#.to_vec(),
        br#"{"_requeues":[],"_failures":[],"_leanmq":{"webhook":{"path":"/x"}}}"#.to_vec(),
        br#"{"_metadata":{"id":"m","timestamp":1.5,"ttl":99999999999999999999999}}"#.to_vec(),
        br#"{"_metadata":{"ttl":1,"ttl":2},"_metadata":{"ttl":3}}"#.to_vec(),
        br#"{"_metadata":7,"_failures":1,"_failures":[]}"#.to_vec(),
        br#"{"x": NaN}"#.to_vec(),
        br#"{"x": Infinity}"#.to_vec(),
        b"{\"x\":\"\xff\xfe\"}".to_vec(),
        b"\xff\xfe\xfd".to_vec(),
        br#"{"x":"\udc00"}"#.to_vec(),
        br#"{"\udc00":1}"#.to_vec(),
        br#""\udc00""#.to_vec(),
        deep.into_bytes(),
        deep_object.into_bytes(),
        br#"{"price": 1e308, "quantity": 2}"#.to_vec(),
        br#"{"price": 1e400}"#.to_vec(),
        br#"{"n": 123456789012345678901234567890, "f": 1.000}"#.to_vec(),
        b"{}".to_vec(),
        b" { } ".to_vec(),
        b"".to_vec(),
        b"[1]".to_vec(),
        b"{} x".to_vec(),
        b"{\"a\":1}\x00".to_vec(),
        big.into_bytes(),
    ];
    let record = r#"{"timestamp":1.5,"reason":"x"}"#;
    for raw in &corpus {
        let name = lossy(&raw[..raw.len().min(80)]);
        for list in [FAILURES, "_requeues"] {
            check_splice(raw, list, record).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for max in [1 << 20, usize::MAX, 0] {
            check_decode(Some(raw), &[(b"other".to_vec(), b"x".to_vec())], max)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    // An entry without `data` (a foreign writer's).
    check_decode(None, &[(b"other".to_vec(), b"\x00\xff".to_vec())], 1 << 20).unwrap();
    check_decode(None, &[], 1 << 20).unwrap();
}

/// Found by `encode_then_decode_round_trips`: an empty object written with
/// whitespace inside (a `RawValue` payload) was stored as
/// `{ ,"_metadata":…}`, which no reader could decode.
#[test]
fn an_empty_object_with_whitespace_inside_encodes_as_json() {
    for text in ["{ }", "{\n\t}", "{\r\n }"] {
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        let bytes = encode(&raw, "m", 1.5, None, usize::MAX, &Beside::default()).unwrap();
        let m = decode(
            Entry::new(EntryId::new(1, 0), Some(bytes.clone()), 1),
            usize::MAX,
        )
        .unwrap_or_else(|u| panic!("{text:?} stored as {:?}: {}", lossy(&bytes), u.reason));
        assert!(m.data.is_empty());
        assert_eq!(m.message_id, "m");
    }
}
