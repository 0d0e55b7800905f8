//! Moving an entry to another queue without rewriting it.
//!
//! A dead-lettered or requeued message gains one record in its history list
//! (`_failures` or `_requeues`) and loses its TTL; nothing else about it may
//! change. So the record is spliced into the stored bytes: the payload's own
//! bytes (big integers, key order, escapes, whitespace) are copied as they
//! are, whatever the reader's payload limit. An entry whose `data` is not a
//! JSON object (or is missing) keeps its `data` untouched, and the record
//! goes into a stream field of the same name beside it; every other field a
//! foreign writer put on the entry moves with it.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::wire::METADATA;
use crate::engine::{EntryId, Transfer};
use crate::json::{span, Members};

/// One record of a history list, as the JSON text a move appends: its
/// fields in LeanMQ's order.
#[derive(Debug, Clone)]
pub(crate) struct Record(String);

impl Record {
    /// `{timestamp, reason}`: a dead-letter's.
    pub(crate) fn failure(reason: &str) -> Self {
        #[derive(Serialize)]
        struct Failure<'a> {
            timestamp: f64,
            reason: &'a str,
        }
        Self::of(&Failure {
            timestamp: super::wire::now_secs(),
            reason,
        })
    }

    /// `{timestamp, from_dlq, to_queue}`: a requeue's.
    pub(crate) fn requeue(from_dlq: &str, to_queue: &str) -> Self {
        #[derive(Serialize)]
        struct Requeue<'a> {
            timestamp: f64,
            from_dlq: &'a str,
            to_queue: &'a str,
        }
        Self::of(&Requeue {
            timestamp: super::wire::now_secs(),
            from_dlq,
            to_queue,
        })
    }

    fn of<T: Serialize>(record: &T) -> Self {
        // A struct of a float and strings always serializes (a non-finite
        // float as null).
        Self(serde_json::to_string(record).unwrap_or_else(|_| "{}".to_owned()))
    }

    /// The record's JSON text.
    pub(crate) fn text(&self) -> &str {
        &self.0
    }
}

/// The move of entry `id` (its stored `data` and other stream fields) with
/// `record` appended to the history list `list`.
pub(crate) fn transfer(
    id: EntryId,
    data: Option<&Bytes>,
    fields: &[(Bytes, Bytes)],
    list: &str,
    record: &Record,
) -> Transfer {
    if let Some(spliced) = data.and_then(|raw| splice(raw, list, record.text().as_bytes())) {
        return Transfer::new(id, Bytes::from(spliced));
    }
    Transfer::keep_data(id).field(
        Bytes::copy_from_slice(list.as_bytes()),
        Bytes::from(field_with(fields, list, record.text())),
    )
}

/// The stream field `list` of an entry with `record` appended: a JSON array
/// as it is kept beside a `data` that is not a JSON object. Whatever the
/// field held before stays in the list as it was written, as its first
/// element if it was not an array itself (as a JSON string if it was not
/// JSON).
fn field_with(fields: &[(Bytes, Bytes)], list: &str, record: &str) -> String {
    let old = fields
        .iter()
        .rev()
        .find(|(k, _)| k.as_ref() == list.as_bytes())
        .map(|(_, v)| v);
    let Some(old) = old else {
        return format!("[{record}]");
    };
    let text = std::str::from_utf8(old)
        .ok()
        .filter(|t| serde_json::from_str::<&RawValue>(t).is_ok())
        .map(str::trim);
    match text {
        Some(t) => match serde_json::from_str::<Vec<&RawValue>>(t) {
            // Before the closing bracket: what the list held stays as it was.
            Ok(items) => {
                let open = t.strip_suffix(']').unwrap_or(t);
                let comma = if items.is_empty() { "" } else { "," };
                format!("{open}{comma}{record}]")
            }
            Err(_) => format!("[{t},{record}]"),
        },
        None => {
            let lossy = serde_json::to_string(&String::from_utf8_lossy(old)).unwrap_or_default();
            format!("[{lossy},{record}]")
        }
    }
}

/// `raw` (a JSON object) with `record` (JSON) appended to its top-level
/// array `list` (created if missing; a value that is not an array becomes
/// the first element of one) and `_metadata.ttl` set to null. `None` if
/// `raw` is not a JSON object. Where a key repeats, the last copy is the one
/// edited, as a reader keeps the last.
pub(crate) fn splice(raw: &[u8], list: &str, record: &[u8]) -> Option<Vec<u8>> {
    let top = Members::read(raw)?;
    let mut edits: Vec<Edit> = Vec::with_capacity(2);
    if let Some(meta) = top.last(METADATA) {
        if let Some(ttl) = Members::read(meta.get().as_bytes()).and_then(|m| m.last("ttl")) {
            if ttl.get() != "null" {
                edits.push(Edit::replace(span(raw, ttl), b"null".to_vec()));
            }
        }
    }
    match top.last(list) {
        Some(old) if old.get().starts_with('[') => {
            let (_, end) = span(raw, old);
            let empty = serde_json::from_str::<Vec<&RawValue>>(old.get())
                .ok()?
                .is_empty();
            let mut text = Vec::with_capacity(record.len() + 1);
            if !empty {
                text.push(b',');
            }
            text.extend_from_slice(record);
            // Before the array's closing bracket: what it held stays as it was.
            edits.push(Edit::replace((end - 1, end - 1), text));
        }
        Some(old) => {
            let mut text = Vec::with_capacity(old.get().len() + record.len() + 3);
            text.push(b'[');
            text.extend_from_slice(old.get().as_bytes());
            text.push(b',');
            text.extend_from_slice(record);
            text.push(b']');
            edits.push(Edit::replace(span(raw, old), text));
        }
        None => {
            let close = raw.iter().rposition(|b| *b == b'}')?;
            let mut text = Vec::with_capacity(list.len() + record.len() + 6);
            if !top.members.is_empty() {
                text.push(b',');
            }
            serde_json::to_writer(&mut text, list).ok()?;
            text.extend_from_slice(b":[");
            text.extend_from_slice(record);
            text.push(b']');
            edits.push(Edit::replace((close, close), text));
        }
    }
    edits.sort_by_key(|e| e.at);
    let mut out = Vec::with_capacity(raw.len() + record.len() + 16);
    let mut pos = 0;
    for e in edits {
        out.extend_from_slice(raw.get(pos..e.at.0)?);
        out.extend_from_slice(&e.text);
        pos = e.at.1;
    }
    out.extend_from_slice(raw.get(pos..)?);
    Some(out)
}

/// Replace the bytes `at.0..at.1` with `text` (an insertion when empty).
struct Edit {
    at: (usize, usize),
    text: Vec<u8>,
}

impl Edit {
    fn replace(at: (usize, usize), text: Vec<u8>) -> Self {
        Self { at, text }
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn spliced(raw: &str) -> String {
        String::from_utf8(splice(raw.as_bytes(), "_failures", br#"{"r":1}"#).unwrap()).unwrap()
    }

    #[test]
    fn appends_without_touching_the_payload() {
        assert_eq!(spliced(r#"{"a":1}"#), r#"{"a":1,"_failures":[{"r":1}]}"#);
        assert_eq!(spliced("{}"), r#"{"_failures":[{"r":1}]}"#);
        assert_eq!(spliced(" { } "), r#" { "_failures":[{"r":1}]} "#);
        // Big integers, key order, escapes and spacing stay as written.
        let raw = r#"{"z": 123456789012345678901234567890, "a" : "\u00e9\n", "f":1.000}"#;
        assert_eq!(
            spliced(raw),
            r#"{"z": 123456789012345678901234567890, "a" : "\u00e9\n", "f":1.000,"_failures":[{"r":1}]}"#
        );
        assert_eq!(
            spliced(r#"{"_failures":[{"r":0}],"b":2}"#),
            r#"{"_failures":[{"r":0},{"r":1}],"b":2}"#
        );
        assert_eq!(
            spliced(r#"{"_failures":[ ]}"#),
            r#"{"_failures":[ {"r":1}]}"#
        );
        // A history that is not a list keeps its value as the first element.
        assert_eq!(
            spliced(r#"{"_failures":"oops"}"#),
            r#"{"_failures":["oops",{"r":1}]}"#
        );
        // The last copy of a repeated key is the one a reader sees.
        assert_eq!(
            spliced(r#"{"_failures":1,"_failures":[]}"#),
            r#"{"_failures":1,"_failures":[{"r":1}]}"#
        );
    }

    #[test]
    fn clears_the_ttl_only() {
        let raw = r#"{"a":1,"_metadata":{"id":"m","timestamp":1.5,"ttl":30,"x":[1]}}"#;
        assert_eq!(
            spliced(raw),
            r#"{"a":1,"_metadata":{"id":"m","timestamp":1.5,"ttl":null,"x":[1]},"_failures":[{"r":1}]}"#
        );
        let raw = r#"{"_metadata":{"id":"m","ttl":null}}"#;
        assert_eq!(
            spliced(raw),
            r#"{"_metadata":{"id":"m","ttl":null},"_failures":[{"r":1}]}"#
        );
    }

    #[test]
    fn refuses_what_is_not_an_object() {
        for raw in [&b"[1]"[..], b"nope", b"\xff", b"{} x", b"", b"\"s\""] {
            assert!(splice(raw, "_failures", b"{}").is_none(), "{raw:?}");
        }
    }

    #[test]
    fn keeps_data_that_is_not_json_and_every_field() {
        let fields = vec![
            (Bytes::from_static(b"other"), Bytes::from_static(b"x")),
            (
                Bytes::from_static(b"_failures"),
                Bytes::from_static(br#"[{"reason":"first"}]"#),
            ),
        ];
        let t = transfer(
            EntryId::new(1, 0),
            Some(&Bytes::from_static(b"\xff")),
            &fields,
            "_failures",
            &Record(r#"{"reason":"second"}"#.to_owned()),
        );
        assert!(t.data.is_none());
        assert_eq!(
            t.fields,
            vec![(
                Bytes::from_static(b"_failures"),
                Bytes::from_static(br#"[{"reason":"first"},{"reason":"second"}]"#)
            )]
        );
        let moved = t.apply(Some(&Bytes::from_static(b"\xff")), &fields);
        assert_eq!(moved[0].1, Bytes::from_static(b"\xff"));
        assert_eq!(moved[1], fields[0]);
        assert_eq!(moved.len(), 3);
    }

    #[test]
    fn a_history_beside_the_data_keeps_what_it_held_as_written() {
        let with = |old: &[u8]| {
            let fields = [(
                Bytes::from_static(b"_failures"),
                Bytes::copy_from_slice(old),
            )];
            field_with(&fields, "_failures", r#"{"r":1}"#)
        };
        assert_eq!(
            with(br#" [ {"n": 123456789012345678901234567890, "a":1} ] "#),
            r#"[ {"n": 123456789012345678901234567890, "a":1} ,{"r":1}]"#
        );
        assert_eq!(with(b"[ ]"), r#"[ {"r":1}]"#);
        assert_eq!(with(br#"{"b":2,"a":1}"#), r#"[{"b":2,"a":1},{"r":1}]"#);
        assert_eq!(with(b"not json \xff"), "[\"not json \u{fffd}\",{\"r\":1}]");
        assert_eq!(field_with(&[], "_failures", "{}"), "[{}]");
        let record = Record::failure("why \"quoted\"");
        let v: serde_json::Value = serde_json::from_str(record.text()).unwrap();
        assert_eq!(v["reason"], "why \"quoted\"");
        assert!(
            record.text().starts_with(r#"{"timestamp":"#),
            "LeanMQ's order"
        );
        assert!(Record::requeue("a", "b")
            .text()
            .ends_with(r#","from_dlq":"a","to_queue":"b"}"#));
    }
}
