//! The engine half of the fuzz target (issue 13): arbitrary entries (sent
//! objects, raw bytes appended as they are, foreign entries with fields of
//! their own on Redis), some bigger than the reader's payload limit, go
//! through receive → DLQ → requeue → dead-letter by id → requeue → receive,
//! on the embedded engine and on a real `redis-server`. At every step each
//! entry is in the queue or its DLQ, and at the end each one still holds
//! what it was sent with: every member's value text of a JSON object, every
//! byte of anything else, every other stream field.
//!
//! The inputs of issue 13 run first, every time (`corpus`); then
//! `PROPTEST_CASES` random cases (64 by default). The library half, over
//! the bytes alone, is `crates/eddy/src/queue/history/fuzz.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use eddy::engine::{Append, Entry, SharedEngine};
use eddy::{EddyBuilder, EntryId, ErrorKind, Queue, Receive};
use eddy_testkit::RedisServer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde::de::{Deserializer as _, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

/// The reader's payload limit in the random cases: entries go up to a few
/// times it.
const SMALL_LIMIT: usize = 2048;
/// eddy's default payload limit, at which the corpus is read.
const DEFAULT_LIMIT: usize = 1 << 20;
const RESERVED: [&str; 4] = ["_metadata", "_failures", "_requeues", "_leanmq"];
const HISTORY: [&str; 2] = ["_failures", "_requeues"];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

// ---- inputs ------------------------------------------------------------------

/// One entry written to a queue.
#[derive(Debug, Clone)]
enum Input {
    /// `send` of this JSON object: as written (a `RawValue`), or parsed
    /// into a `Value` first, as the CLI does.
    Send { text: String, parsed: bool },
    /// Bytes appended as the `data` field, as they are.
    Raw(Vec<u8>),
    /// An entry a foreign producer wrote, these fields in order (Redis
    /// only: the embedded engine holds only what eddy writes).
    Foreign(Vec<(Vec<u8>, Vec<u8>)>),
}

fn ws() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        1 => prop::sample::select(vec![" ", "\n\t", "\r\n  "]).prop_map(String::from),
    ]
}

fn string_text(lone: bool) -> impl Strategy<Value = String> {
    let mut escapes = vec![r#"\""#, r"\\", r"\n", r"\u00e9", r"\u0000", r"\ud83d\ude00"];
    if lone {
        escapes.push(r"\udc00");
    }
    let piece = prop_oneof![
        3 => any::<char>()
            .prop_filter("written as it is", |c| *c != '"' && *c != '\\' && *c >= ' ')
            .prop_map(String::from),
        1 => prop::sample::select(escapes).prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|p| format!("\"{}\"", p.concat()))
}

fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        prop::collection::vec(0u8..10, 20..40).prop_map(|d| {
            let digits: String = d.iter().map(|d| char::from(b'0' + d)).collect();
            format!("9{digits}")
        }),
        prop::sample::select(vec!["1e308", "1.000", "-0", "2.5E-3", "1e400"])
            .prop_map(String::from),
    ]
}

fn value_text(lone: bool) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        number_text(),
        string_text(lone),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec((ws(), inner.clone()), 0..4).prop_map(|items| {
                let items: Vec<String> = items.into_iter().map(|(w, v)| w + &v).collect();
                format!("[{}]", items.join(","))
            }),
            prop::collection::vec((string_text(lone), ws(), inner), 0..4).prop_map(|members| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(k, w, v)| format!("{k}:{w}{v}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
    .boxed()
}

/// A JSON object as text, with a `pad` member of `pad` bytes first (to
/// reach past the reader's limit), repeated and reserved keys, odd
/// `_metadata` and history values.
fn object_text(lone: bool) -> impl Strategy<Value = String> {
    let key = prop_oneof![
        3 => string_text(false),
        1 => prop::sample::select(vec![
            r#""a""#, r#""_metadata""#, r#""_failures""#, r#""_requeues""#, r#""_raw""#,
        ])
        .prop_map(String::from),
    ];
    let value = prop_oneof![
        3 => value_text(lone),
        1 => Just(r#"{"id":"m","timestamp":1.5,"ttl":30}"#.to_owned()),
        1 => Just(r#"[{"timestamp":1,"reason":"r"},7]"#.to_owned()),
    ];
    let member = (ws(), key, ws(), value).prop_map(|(a, k, b, v)| format!("{a}{k}:{b}{v}"));
    (
        0..4 * SMALL_LIMIT,
        prop::collection::vec(member, 0..5),
        ws(),
    )
        .prop_map(|(pad, members, w)| {
            let mut all = vec![format!("\"pad\":\"{}\"", "z".repeat(pad))];
            all.extend(members);
            format!("{{{}{w}}}", all.join(","))
        })
}

fn input() -> impl Strategy<Value = Input> {
    let bytes = (
        prop::collection::vec(any::<u8>(), 0..32),
        0..4 * SMALL_LIMIT,
    )
        .prop_map(|(mut b, pad)| {
            b.extend(std::iter::repeat_n(b'z', pad));
            b
        });
    let field_name = prop::sample::select(vec![
        &b"data"[..],
        b"other",
        b"_failures",
        b"_requeues",
        b"\xff",
    ])
    .prop_map(<[u8]>::to_vec);
    let field_value = prop_oneof![
        object_text(true).prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..16),
    ];
    prop_oneof![
        3 => (object_text(true), any::<bool>())
            .prop_map(|(text, parsed)| Input::Send { text, parsed }),
        2 => object_text(true).prop_map(|t| Input::Raw(t.into_bytes())),
        2 => bytes.prop_map(Input::Raw),
        2 => prop::collection::vec((field_name, field_value), 1..4).prop_map(Input::Foreign),
    ]
}

/// What the consumers do along the way.
#[derive(Debug, Clone)]
struct Steps {
    /// Which received messages their handler dead-letters (bit i: the
    /// i-th message).
    rejected: u16,
    reason: String,
}

fn steps() -> impl Strategy<Value = Steps> {
    (any::<u16>(), any::<String>()).prop_map(|(rejected, reason)| Steps { rejected, reason })
}

// ---- the oracle ----------------------------------------------------------------

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

/// `after` is a history list that starts with what `before` held (its
/// elements, or `before` itself if it was not a list).
fn history_kept(before: &str, after: &str) -> bool {
    let Ok(new) = serde_json::from_str::<Vec<&RawValue>>(after) else {
        return false;
    };
    if !before.starts_with('[') {
        return new.first().is_some_and(|v| v.get() == before);
    }
    let Ok(old) = serde_json::from_str::<Vec<&RawValue>>(before) else {
        return false;
    };
    new.len() >= old.len() && old.iter().zip(&new).all(|(a, b)| a.get() == b.get())
}

/// `_metadata` as it was, but for its last `ttl`, now null.
fn metadata_kept(before: &str, after: &str) -> bool {
    let Some(m0) = members(before.as_bytes()) else {
        return before == after;
    };
    let Some(m1) = members(after.as_bytes()) else {
        return false;
    };
    let ttl = last(&m0, "ttl");
    m0.len() == m1.len()
        && m0.iter().zip(&m1).enumerate().all(|(j, ((a, x), (b, y)))| {
            a == b && (x.get() == y.get() || (Some(j) == ttl && y.get() == "null"))
        })
}

/// Every member of the object `before` is in `after`, in place, with the
/// same value text (the history lists grown, `_metadata.ttl` cleared);
/// anything after them is a history list the moves added.
fn object_kept(before: &Members<'_>, after: &Members<'_>) -> bool {
    if after.len() < before.len() {
        return false;
    }
    let meta = last(before, "_metadata");
    let lists: Vec<Option<usize>> = HISTORY.iter().map(|l| last(before, l)).collect();
    let kept = before
        .iter()
        .zip(after)
        .enumerate()
        .all(|(i, ((k0, v0), (k1, v1)))| {
            k0 == k1
                && if Some(i) == meta {
                    metadata_kept(v0.get(), v1.get())
                } else if lists.contains(&Some(i)) {
                    history_kept(v0.get(), v1.get())
                } else {
                    v0.get() == v1.get()
                }
        });
    kept && after[before.len()..]
        .iter()
        .all(|(k, v)| HISTORY.contains(&k.as_str()) && v.get().starts_with('['))
}

/// `after` is `before` moved around: nothing of it lost or shortened.
fn entry_kept(before: &Entry, after: &Entry) -> bool {
    let fields_kept = before.fields.iter().all(|(k, v)| {
        HISTORY.iter().any(|l| k.as_ref() == l.as_bytes())
            || after.fields.contains(&(k.clone(), v.clone()))
    });
    let history_beside =
        || after.field("_failures").is_some() && after.field("_requeues").is_some();
    fields_kept
        && match (&before.data, &after.data) {
            (None, None) => history_beside(),
            (Some(d), Some(e)) => match members(d) {
                Some(m0) => members(e).is_some_and(|m1| {
                    object_kept(&m0, &m1)
                        && last(&m1, "_failures").is_some()
                        && last(&m1, "_requeues").is_some()
                }),
                None => d == e && history_beside(),
            },
            _ => false,
        }
}

/// A pairing of every entry of `before` with its own entry of `after`
/// (Kuhn's augmenting paths), or `None`.
fn pairing(before: &[Entry], after: &[Entry]) -> Option<Vec<usize>> {
    let ok: Vec<Vec<bool>> = before
        .iter()
        .map(|b| after.iter().map(|a| entry_kept(b, a)).collect())
        .collect();
    fn augment(i: usize, ok: &[Vec<bool>], seen: &mut [bool], owner: &mut [Option<usize>]) -> bool {
        for j in 0..owner.len() {
            if ok[i][j] && !seen[j] {
                seen[j] = true;
                if owner[j].is_none_or(|k| augment(k, ok, seen, owner)) {
                    owner[j] = Some(i);
                    return true;
                }
            }
        }
        false
    }
    let mut owner = vec![None; after.len()];
    for i in 0..before.len() {
        if !augment(i, &ok, &mut vec![false; after.len()], &mut owner) {
            return None;
        }
    }
    let mut of = vec![0; before.len()];
    for (j, o) in owner.iter().enumerate() {
        if let Some(i) = o {
            of[*i] = j;
        }
    }
    Some(of)
}

fn show(e: &Entry) -> String {
    let cut = |b: &[u8]| {
        let s = String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned();
        if b.len() > 300 {
            format!("{s}… ({} bytes)", b.len())
        } else {
            s
        }
    };
    let fields: Vec<String> = e
        .fields
        .iter()
        .map(|(k, v)| format!("{}={}", cut(k), cut(v)))
        .collect();
    format!(
        "data={:?} fields=[{}]",
        e.data.as_deref().map(cut),
        fields.join(", ")
    )
}

// ---- one run -------------------------------------------------------------------

/// An engine and, on Redis, a connection that writes what eddy never would.
struct Bench {
    engine: SharedEngine,
    redis: Option<std::sync::Mutex<redis::Connection>>,
    label: &'static str,
}

static QUEUES: AtomicUsize = AtomicUsize::new(0);

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// Write `inputs` to a fresh queue, move them around with a reader at
/// `limit`, and check that nothing was lost or shortened.
async fn run(
    bench: &Bench,
    limit: usize,
    inputs: &[Input],
    steps: &Steps,
) -> Result<(), TestCaseError> {
    let writer = EddyBuilder::new("unused")
        .max_payload_bytes(64 << 20)
        .with_engine(bench.engine.clone())
        .map_err(fail)?;
    let reader = EddyBuilder::new("unused")
        .max_payload_bytes(limit)
        .with_engine(bench.engine.clone())
        .map_err(fail)?;
    let name = format!("fuzz{}", QUEUES.fetch_add(1, Ordering::Relaxed));
    let (wq, _) = writer.create_queue_pair(&name).await.map_err(fail)?;
    let (q, dlq) = (
        reader.queue(&name).await.map_err(fail)?,
        reader.dead_letter_queue(&name).await.map_err(fail)?,
    );
    let all = |q: &Queue| {
        let keys = q.keys().clone();
        let engine = bench.engine.clone();
        async move {
            engine
                .range(&keys, EntryId::MIN, EntryId::MAX, 10_000)
                .await
                .map_err(fail)
        }
    };

    for input in inputs {
        match input {
            Input::Send { text, parsed } => {
                let before = all(&q).await?.len();
                let text = text.trim();
                let reserved = members(text.as_bytes())
                    .is_some_and(|m| m.iter().any(|(k, _)| RESERVED.contains(&k.as_str())));
                let sent = match serde_json::from_str::<Value>(text) {
                    Ok(v) if *parsed => wq.send(&v).await,
                    _ => {
                        let raw = RawValue::from_string(text.to_owned()).map_err(fail)?;
                        wq.send(&raw).await
                    }
                };
                match sent {
                    Ok(_) => prop_assert!(!reserved, "sent a reserved field"),
                    Err(e) => {
                        prop_assert!(reserved, "send refused: {e}");
                        prop_assert_eq!(e.kind(), ErrorKind::InvalidArgument);
                        prop_assert_eq!(all(&q).await?.len(), before, "a refused send wrote");
                    }
                }
            }
            Input::Raw(data) => {
                bench
                    .engine
                    .append(&[Append::new(q.keys().clone(), Bytes::from(data.clone()))])
                    .await
                    .map_err(fail)?;
            }
            Input::Foreign(fields) => {
                let Some(conn) = &bench.redis else { continue };
                let mut cmd = redis::cmd("XADD");
                cmd.arg(&q.keys().stream).arg("*");
                for (k, v) in fields {
                    cmd.arg(k.as_slice()).arg(v.as_slice());
                }
                let mut conn = conn.lock().map_err(fail)?;
                let _: String = cmd.query(&mut *conn).map_err(fail)?;
            }
        }
    }
    let originals = all(&q).await?;
    let n = originals.len();
    let count = |what: &'static str| {
        let (q, dlq) = (&q, &dlq);
        async move {
            let (a, b) = (all(q).await?.len(), all(dlq).await?.len());
            if a + b == n {
                Ok((a, b))
            } else {
                Err(TestCaseError::fail(format!(
                    "after {what}: {a} in the queue and {b} in the DLQ, of {n}"
                )))
            }
        }
    };

    // A reader at its limit: what it cannot hand over goes to the DLQ whole.
    let got = q
        .receive(&Receive::new().count(n + 1))
        .await
        .map_err(fail)?;
    count("receive").await?;
    let rejected: Vec<_> = got
        .iter()
        .enumerate()
        .filter(|(i, _)| steps.rejected & (1 << (i % 16)) != 0)
        .map(|(_, m)| m.clone())
        .collect();
    let moved = q
        .dead_letter_messages(&rejected, &steps.reason)
        .await
        .map_err(fail)?;
    prop_assert_eq!(moved, rejected.len() as u64);
    count("dead_letter_messages").await?;

    let ids: Vec<EntryId> = all(&dlq).await?.iter().map(|e| e.id).collect();
    prop_assert_eq!(dlq.requeue(&ids).await.map_err(fail)?, ids.len() as u64);
    prop_assert_eq!(count("requeue by id").await?, (n, 0));

    let ids: Vec<EntryId> = all(&q).await?.iter().map(|e| e.id).collect();
    prop_assert_eq!(
        q.dead_letter(&ids, &steps.reason).await.map_err(fail)?,
        n as u64
    );
    prop_assert_eq!(count("dead_letter by id").await?, (0, n));

    prop_assert_eq!(dlq.requeue_all().await.map_err(fail)?, n as u64);
    prop_assert_eq!(count("requeue_all").await?, (n, 0));

    let delivered = q
        .receive(&Receive::new().count(n + 1))
        .await
        .map_err(fail)?;
    for m in &delivered {
        prop_assert!(m.raw_data().is_some_and(|d| d.len() <= limit));
    }
    count("the last receive").await?;

    let mut finals = all(&q).await?;
    finals.extend(all(&dlq).await?);
    if pairing(&originals, &finals).is_none() {
        let lost: Vec<String> = originals
            .iter()
            .filter(|o| !finals.iter().any(|f| entry_kept(o, f)))
            .map(show)
            .collect();
        return Err(TestCaseError::fail(format!(
            "{}: entries lost or changed:\n  {}\nwhat is left:\n  {}",
            bench.label,
            lost.join("\n  "),
            finals.iter().map(show).collect::<Vec<_>>().join("\n  ")
        )));
    }
    Ok(())
}

// ---- the corpus: issue 13's inputs ---------------------------------------------

fn send(text: &str) -> Input {
    Input::Send {
        text: text.to_owned(),
        parsed: false,
    }
}

fn send_parsed(text: &str) -> Input {
    Input::Send {
        text: text.to_owned(),
        parsed: true,
    }
}

fn raw(bytes: &[u8]) -> Input {
    Input::Raw(bytes.to_vec())
}

fn foreign(fields: &[(&[u8], &[u8])]) -> Input {
    Input::Foreign(
        fields
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect(),
    )
}

fn corpus() -> Vec<(&'static str, Vec<Input>)> {
    let two_mb = format!(
        r#"{{"blob":"{}","n":123456789012345678901234567890}}"#,
        "z".repeat(2 << 20)
    );
    let five_mb = format!(r#"{{"blob":"{}","n":1}}"#, "y".repeat(5 << 20));
    let deep = format!("{{\"x\":{}0{}}}", "[".repeat(200), "]".repeat(200));
    vec![
        (
            "a 2 MB payload read at the default limit",
            vec![send(&two_mb), send_parsed(&two_mb)],
        ),
        (
            "a 5 MB foreign entry",
            vec![
                raw(five_mb.as_bytes()),
                foreign(&[(b"data", five_mb.as_bytes()), (b"source", b"legacy")]),
            ],
        ),
        (
            "entries shaped like the DLQ's view of an undecodable one",
            vec![
                raw(br#"{"_raw": null}"#),
                send_parsed(r#"{"_raw": null}"#),
                raw(br#"{"_raw_hex":"ff","_fields":{"other":"x"}}"#),
            ],
        ),
        (
            "a foreign entry without a data field",
            vec![
                foreign(&[(b"other", b"x"), (b"blob", b"\x00\xff")]),
                foreign(&[(b"_failures", b"not a list"), (b"other", b"y")]),
            ],
        ),
        (
            "reserved fields: refused on send, nothing written",
            vec![
                send_parsed(r#"{"_failures":[],"a":1}"#),
                send(r#"{"_requeues":[]}"#),
                send(r#"{"a":1,"_leanmq":{"webhook":{"path":"/x"}}}"#),
                send_parsed(r#"{"_metadata":{"id":"mine"}}"#),
                send(r#"{"\u005ffailures":[]}"#),
                send(r#"{"_m\u0065tadata":1}"#),
            ],
        ),
        (
            "malformed history",
            vec![
                raw(br#"{"a":1,"_failures":[{"timestamp":"x"},5,null]}"#),
                raw(br#"{"_failures":"oops","_requeues":{"x":1}}"#),
                raw(br#"{"_failures":[1],"_failures":[2]}"#),
            ],
        ),
        (
            "NaN and Infinity",
            vec![raw(br#"{"x": NaN}"#), raw(br#"{"x": -Infinity}"#)],
        ),
        (
            "invalid UTF-8",
            vec![
                raw(b"\xff\xfe"),
                raw(b"{\"x\":\"\xff\"}"),
                raw(b"{\"\xc3\":1}"),
            ],
        ),
        (
            "a lone surrogate escape",
            vec![
                raw(br#"{"x":"\udc00"}"#),
                send(r#"{"x":"\udc00"}"#),
                raw(br#""\udc00""#),
                raw(br#"{"\udc00":1}"#),
            ],
        ),
        ("200-deep nesting", vec![raw(deep.as_bytes()), send(&deep)]),
        (
            "huge numbers",
            vec![
                send_parsed(r#"{"price": 1e308, "quantity": 2}"#),
                raw(br#"{"price": 1e400}"#),
                send_parsed(r#"{"n": -123456789012345678901234567890e-5}"#),
            ],
        ),
        (
            "empty objects, whitespace, TTLs",
            vec![
                raw(b"{ }"),
                send("{ }"),
                send_parsed("{}"),
                raw(br#" {"_metadata" : {"ttl" : 30, "ttl": 99999999999999999999}} "#),
                raw(b""),
            ],
        ),
        (
            "repeated stream fields",
            vec![foreign(&[
                (b"data", br#"{"a":1}"#),
                (b"other", b"1"),
                (b"other", b"2"),
            ])],
        ),
    ]
}

// ---- the tests ---------------------------------------------------------------------

/// The corpus, then the random cases, on one engine (opened on `rt`).
fn check(rt: &tokio::runtime::Runtime, bench: &Bench) {
    let fixed = Steps {
        rejected: 0b0101,
        reason: "rejected \u{1b}[31m\n\u{0}".into(),
    };
    for (name, inputs) in corpus() {
        rt.block_on(run(bench, DEFAULT_LIMIT, &inputs, &fixed))
            .unwrap_or_else(|e| panic!("{}: corpus case `{name}`: {e}", bench.label));
    }
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (prop::collection::vec(input(), 1..6), steps());
    runner
        .run(&strategy, |(inputs, steps)| {
            rt.block_on(run(bench, SMALL_LIMIT, &inputs, &steps))
        })
        .unwrap_or_else(|e| panic!("{}: {e}", bench.label));
}

#[test]
fn moves_keep_every_entry_whole_on_the_memory_engine() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let engine = rt
        .block_on(eddy::engine::open("memory://"))
        .expect("the memory engine opens");
    check(
        &rt,
        &Bench {
            engine,
            redis: None,
            label: "memory",
        },
    );
}

#[test]
fn moves_keep_every_entry_whole_on_redis() {
    let server = match RedisServer::start() {
        Ok(server) => server,
        Err(e) => panic!("cannot start redis-server: {e}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let engine = rt
        .block_on(eddy::engine::open(&server.url()))
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}\n{}", server.url(), server.log()));
    let conn = redis::Client::open(server.url())
        .and_then(|c| c.get_connection())
        .expect("a connection");
    check(
        &rt,
        &Bench {
            engine,
            redis: Some(std::sync::Mutex::new(conn)),
            label: "redis",
        },
    );
}
