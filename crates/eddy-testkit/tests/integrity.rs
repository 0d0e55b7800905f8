//! Entries written by foreign producers on Redis (other fields beside
//! `data`, no `data` at all, a payload bigger than any reader's limit) move
//! between a queue and its dead-letter queue with every field and every
//! byte they had. The embedded engine cannot hold such entries; what both
//! engines share is in the conformance suite (`dead_letter::*`).

use eddy::{EddyBuilder, Receive};
use eddy_testkit::RedisServer;
use redis::Value;
use serde_json::{json, Value as Json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn server() -> RedisServer {
    RedisServer::start().expect("redis-server must be installed (see README)")
}

/// An entry's fields, in order.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Every entry of `stream` as (id, fields).
fn entries(conn: &mut redis::Connection, stream: &str) -> Vec<(String, Fields)> {
    let reply: Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(conn)
        .expect("XRANGE");
    let Value::Array(items) = reply else {
        panic!("XRANGE reply {reply:?}")
    };
    items
        .into_iter()
        .map(|item| {
            let Value::Array(mut parts) = item else {
                panic!("entry {item:?}")
            };
            let fields = parts.pop().expect("fields");
            let id: String = redis::from_redis_value(parts[0].clone()).expect("id");
            let Value::Array(fields) = fields else {
                panic!("fields {fields:?}")
            };
            let bytes: Vec<Vec<u8>> = fields
                .iter()
                .map(|v| redis::from_redis_value(v.clone()).expect("bulk"))
                .collect();
            let pairs = bytes
                .chunks(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect();
            (id, pairs)
        })
        .collect()
}

fn field<'a>(fields: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

fn reasons(list: &[u8]) -> Vec<String> {
    let v: Json = serde_json::from_slice(list).expect("a JSON history");
    v.as_array()
        .expect("a list")
        .iter()
        .map(|r| r["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A foreign entry without `data` but with fields of its own goes to the
/// DLQ with all of them, its reason beside them; requeued, it comes back
/// with them too.
#[tokio::test]
async fn foreign_entry_keeps_every_field() -> TestResult {
    let server = server();
    let mq = EddyBuilder::new(server.url()).open().await?;
    let (q, dlq) = mq.create_queue_pair("foreign").await?;
    let mut conn = redis::Client::open(server.url())?.get_connection()?;
    let _: String = redis::cmd("XADD")
        .arg("mq:foreign")
        .arg("*")
        .arg("other")
        .arg("x")
        .arg("blob")
        .arg(&b"\x00\xff"[..])
        .query(&mut conn)?;

    assert!(q.receive(&Receive::new().count(10)).await?.is_empty());
    let dead = entries(&mut conn, "mq:foreign:dlq");
    assert_eq!(dead.len(), 1);
    let fields = &dead[0].1;
    assert_eq!(field(fields, "other"), Some(&b"x"[..]));
    assert_eq!(field(fields, "blob"), Some(&b"\x00\xff"[..]));
    assert_eq!(field(fields, "data"), None, "no data was made up");
    let why = reasons(field(fields, "_failures").expect("its history beside it"));
    assert!(why[0].contains("no `data` field"), "{why:?}");

    // What eddy shows of it.
    let shown = dlq.peek(1).await?;
    assert_eq!(shown[0].data["_fields"]["other"], json!("x"));
    assert!(shown[0].failures()[0].reason.contains("no `data`"));

    assert_eq!(dlq.requeue_all().await?, 1);
    let back = entries(&mut conn, "mq:foreign");
    assert_eq!(back.len(), 1);
    let fields = &back[0].1;
    assert_eq!(field(fields, "other"), Some(&b"x"[..]));
    assert_eq!(field(fields, "blob"), Some(&b"\x00\xff"[..]));
    assert!(field(fields, "_requeues").is_some());
    Ok(())
}

/// A foreign producer's 5 MB entry, read by a client at the default 1 MiB
/// limit, reaches the DLQ with every byte; its other fields too.
#[tokio::test]
async fn five_megabyte_foreign_entry_is_dead_lettered_whole() -> TestResult {
    let server = server();
    let mq = EddyBuilder::new(server.url()).open().await?;
    let (q, dlq) = mq.create_queue_pair("big").await?;
    let payload = format!(r#"{{"blob":"{}","n":1}}"#, "z".repeat(5 << 20));
    let mut conn = redis::Client::open(server.url())?.get_connection()?;
    let _: String = redis::cmd("XADD")
        .arg("mq:big")
        .arg("*")
        .arg("data")
        .arg(&payload)
        .arg("source")
        .arg("legacy")
        .query(&mut conn)?;

    assert!(q.receive(&Receive::new().count(10)).await?.is_empty());
    let dead = entries(&mut conn, "mq:big:dlq");
    assert_eq!(dead.len(), 1);
    let data = field(&dead[0].1, "data").expect("data");
    assert!(data.len() > payload.len(), "{} bytes", data.len());
    assert_eq!(
        &data[..payload.len() - 1],
        &payload.as_bytes()[..payload.len() - 1]
    );
    assert_eq!(field(&dead[0].1, "source"), Some(&b"legacy"[..]));
    let shown = dlq.peek(1).await?;
    assert!(shown[0].failures()[0].reason.contains("limit"));
    assert_eq!(shown[0].data["n"], json!(1));
    Ok(())
}

/// A foreign entry that has a history field twice keeps the first copy as
/// it was; the last copy, the one readers take, gets the new record.
#[tokio::test]
async fn a_repeated_history_field_keeps_its_other_copy() -> TestResult {
    let server = server();
    let mq = EddyBuilder::new(server.url()).open().await?;
    let (q, _dlq) = mq.create_queue_pair("twice").await?;
    let mut conn = redis::Client::open(server.url())?.get_connection()?;
    let _: String = redis::cmd("XADD")
        .arg("mq:twice")
        .arg("*")
        .arg("data")
        .arg("not json")
        .arg("_failures")
        .arg(r#"[{"timestamp":1.0,"reason":"first copy"}]"#)
        .arg("_failures")
        .arg(r#"[{"timestamp":2.0,"reason":"second copy"}]"#)
        .query(&mut conn)?;
    assert!(q.receive(&Receive::new().count(10)).await?.is_empty());
    let dead = entries(&mut conn, "mq:twice:dlq");
    let copies: Vec<&[u8]> = dead[0]
        .1
        .iter()
        .filter(|(k, _)| k == b"_failures")
        .map(|(_, v)| v.as_slice())
        .collect();
    assert_eq!(copies.len(), 2);
    assert_eq!(reasons(copies[0]), ["first copy"]);
    let last = reasons(copies[1]);
    assert_eq!(last[0], "second copy");
    assert!(last[1].contains("not valid JSON"), "{last:?}");
    Ok(())
}
