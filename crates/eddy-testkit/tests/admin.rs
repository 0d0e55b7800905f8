//! Admin operations on Redis when a key under the prefix is not what eddy
//! expects: every script checks every key's type before its first write, so
//! a failure is a typed error and leaves every key exactly as it was; a send
//! to a queue whose stream was deleted fails instead of recreating the
//! stream without its group; `list_queues` reports a broken queue and lists
//! the rest.
//!
//! Redis only: the embedded engine keeps each kind of value in its own map,
//! so a key there cannot hold the wrong type. Each test starts its own
//! `redis-server`.

use std::collections::BTreeMap;
use std::time::Duration;

use eddy::{Eddy, ErrorKind, Queue, Receive, SendOptions};
use eddy_testkit::RedisServer;
use redis::aio::MultiplexedConnection;
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct Env {
    server: RedisServer,
    conn: MultiplexedConnection,
    mq: Eddy,
}

async fn env() -> Result<Env, Box<dyn std::error::Error>> {
    let server = RedisServer::start()?;
    let conn = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    let mq = Eddy::open(&server.url()).await?;
    Ok(Env { server, conn, mq })
}

impl Env {
    async fn cmd(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut self.conn.clone()).await
    }

    /// Replace `key` with a string: the wrong type for every key eddy uses.
    async fn clobber(&self, key: &str) -> TestResult {
        self.cmd(&["DEL", key]).await?;
        self.cmd(&["SET", key, "not eddy's"]).await?;
        Ok(())
    }

    /// Every key under `mq:` with its type and content (entries, groups with
    /// their pending entries, fields, members, scores).
    async fn snapshot(&self) -> Result<BTreeMap<String, String>, Box<dyn std::error::Error>> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("mq:*")
            .query_async(&mut conn)
            .await?;
        let mut out = BTreeMap::new();
        for key in keys {
            let t: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await?;
            let content = match t.as_str() {
                "stream" => {
                    let entries = self.cmd(&["XRANGE", &key, "-", "+"]).await?;
                    let groups: Vec<redis::Value> = redis::cmd("XINFO")
                        .arg("GROUPS")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await?;
                    let mut gs = Vec::new();
                    for g in groups {
                        let fields: BTreeMap<String, redis::Value> = redis::from_redis_value(g)?;
                        let name: String = redis::from_redis_value(fields["name"].clone())?;
                        let last: String =
                            redis::from_redis_value(fields["last-delivered-id"].clone())?;
                        let pending = self
                            .cmd(&["XPENDING", &key, &name, "-", "+", "1000"])
                            .await?;
                        let pending: Vec<(String, String, u64, u64)> =
                            redis::from_redis_value(pending)?;
                        let pending: Vec<(String, String, u64)> = pending
                            .into_iter()
                            .map(|(id, c, _, n)| (id, c, n))
                            .collect();
                        gs.push(format!("{name} at {last} pending {pending:?}"));
                    }
                    format!("{entries:?} groups {gs:?}")
                }
                "hash" => {
                    let h: BTreeMap<String, String> = redis::cmd("HGETALL")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await?;
                    format!("{h:?}")
                }
                "set" => {
                    let mut m: Vec<String> = redis::cmd("SMEMBERS")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await?;
                    m.sort();
                    format!("{m:?}")
                }
                "zset" => format!(
                    "{:?}",
                    self.cmd(&["ZRANGE", &key, "0", "-1", "WITHSCORES"]).await?
                ),
                "string" => format!("{:?}", self.cmd(&["GET", &key]).await?),
                other => other.to_owned(),
            };
            out.insert(key, format!("{t}: {content}"));
        }
        Ok(out)
    }

    /// A queue `name` with something in every key: ready, pending, delayed
    /// and TTL'd messages, and a dead letter.
    async fn busy_queue(&self, name: &str) -> Result<Queue, Box<dyn std::error::Error>> {
        let (q, _) = self.mq.create_queue_pair(name).await?;
        for n in 0..3 {
            q.send(&json!({ "n": n })).await?;
        }
        q.send_with(
            &json!({"n": "ttl"}),
            &SendOptions::new().ttl(Duration::from_secs(600)),
        )
        .await?;
        q.send_with(
            &json!({"n": "later"}),
            &SendOptions::new().delay(Duration::from_secs(600)),
        )
        .await?;
        let got = q.receive(&Receive::new().count(2).consumer("w")).await?;
        q.dead_letter(&[got[0].id], "bad").await?;
        Ok(q)
    }
}

fn assert_wrong_type<T: std::fmt::Debug>(what: &str, r: eddy::Result<T>) {
    match r {
        Err(e) => assert_eq!(e.kind(), ErrorKind::WrongType, "{what}: {e}"),
        Ok(v) => panic!("{what}: expected WrongType, got Ok({v:?})"),
    }
}

/// `delete_queue` with any of its keys of the wrong type (the registry a
/// string, say) fails before deleting anything: the queue, its DLQ and all
/// their keys stay.
#[tokio::test]
async fn delete_queue_with_a_wrong_typed_key_deletes_nothing() -> TestResult {
    let env = env().await?;
    for key in [
        "mq:registry",
        "mq:gone:dlq",
        "mq:gone:dlq:metadata",
        "mq:gone:expiry",
        "mq:gone:delayed",
        "mq:gone:dlq:expiry",
    ] {
        env.busy_queue("gone").await?;
        env.clobber(key).await?;
        let before = env.snapshot().await?;
        assert_wrong_type(key, env.mq.delete_queue("gone", false).await);
        assert_eq!(
            env.snapshot().await?,
            before,
            "{key} wrong-typed: keys changed"
        );
        env.cmd(&["FLUSHALL"]).await?;
    }
    Ok(())
}

/// `purge` with its TTL index or delayed set of the wrong type fails before
/// removing anything (it used to delete the foreign key and every entry).
#[tokio::test]
async fn purge_with_a_wrong_typed_key_removes_nothing() -> TestResult {
    let env = env().await?;
    for key in ["mq:p:expiry", "mq:p:delayed"] {
        let q = env.busy_queue("p").await?;
        env.clobber(key).await?;
        let before = env.snapshot().await?;
        assert_wrong_type(key, q.purge().await);
        assert_eq!(
            env.snapshot().await?,
            before,
            "{key} wrong-typed: keys changed"
        );
        env.cmd(&["FLUSHALL"]).await?;
    }
    Ok(())
}

/// `create_queue_pair` with any of its keys of the wrong type creates
/// nothing, for a new queue and for an existing one.
#[tokio::test]
async fn create_queue_with_a_wrong_typed_key_creates_nothing() -> TestResult {
    let env = env().await?;
    for key in [
        "mq:registry",
        "mq:c:metadata",
        "mq:c:dlq",
        "mq:c:dlq:metadata",
    ] {
        for existing in [false, true] {
            if existing {
                env.busy_queue("c").await?;
            }
            env.clobber(key).await?;
            let before = env.snapshot().await?;
            assert_wrong_type(key, env.mq.create_queue_pair("c").await);
            assert_eq!(
                env.snapshot().await?,
                before,
                "{key} wrong-typed (existing: {existing})"
            );
            env.cmd(&["FLUSHALL"]).await?;
        }
    }
    Ok(())
}

/// `set_max_length` on a metadata key of the wrong type, and `trim_history`
/// on a stream of the wrong type: typed errors, nothing written.
#[tokio::test]
async fn set_metadata_and_trim_with_a_wrong_typed_key_change_nothing() -> TestResult {
    let env = env().await?;
    let q = env.busy_queue("m").await?;
    env.clobber("mq:m:metadata").await?;
    let before = env.snapshot().await?;
    assert_wrong_type("set_max_length", q.set_max_length(Some(5)).await);
    assert_wrong_type("set_max_length(None)", q.set_max_length(None).await);
    assert_eq!(env.snapshot().await?, before);

    let q = env.busy_queue("t").await?;
    env.clobber("mq:t").await?;
    let before = env.snapshot().await?;
    assert_wrong_type("trim_history", q.trim_history(Duration::ZERO).await);
    assert_eq!(env.snapshot().await?, before);
    Ok(())
}

/// Sends (plain, with TTL or delay, in a transaction) to a queue whose
/// metadata, TTL index or delayed set has the wrong type fail with
/// WrongType and add no entry anywhere.
#[tokio::test]
async fn send_with_a_wrong_typed_key_writes_nothing() -> TestResult {
    let env = env().await?;
    let (other, _) = env.mq.create_queue_pair("other").await?;
    for key in ["mq:s:metadata", "mq:s:expiry", "mq:s:delayed"] {
        let q = env.busy_queue("s").await?;
        env.clobber(key).await?;
        let before = env.snapshot().await?;
        assert_wrong_type(key, q.send(&json!({"x": 1})).await);
        assert_wrong_type(key, q.send_batch(&[json!({"x": 1}), json!({"x": 2})]).await);
        let ttl = SendOptions::new().ttl(Duration::from_secs(60));
        assert_wrong_type(key, q.send_with(&json!({"x": 1}), &ttl).await);
        let delay = SendOptions::new().delay(Duration::from_secs(60));
        assert_wrong_type(key, q.send_with(&json!({"x": 1}), &delay).await);
        let mut tx = env.mq.transaction();
        tx.send(&other, &json!({"x": 1}))?;
        tx.send(&q, &json!({"x": 2}))?;
        assert_wrong_type(key, tx.commit().await);
        assert_eq!(
            env.snapshot().await?,
            before,
            "{key} wrong-typed: keys changed"
        );
        for k in ["mq:s", "mq:s:metadata", "mq:s:expiry", "mq:s:delayed"] {
            env.cmd(&["DEL", k]).await?;
        }
    }
    drop(env.server);
    Ok(())
}

fn assert_stream_missing<T: std::fmt::Debug>(what: &str, r: eddy::Result<T>) {
    match r {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::StreamMissing, "{what}: {e}");
            assert!(!e.is_retryable(), "{what}");
            assert!(e.to_string().contains("eddy queue create"), "{what}: {e}");
        }
        Ok(v) => panic!("{what}: expected StreamMissing, got Ok({v:?})"),
    }
}

/// A send to a queue whose stream was deleted by hand (metadata still
/// there) fails with `StreamMissing` and writes nothing, in every form; it
/// used to recreate the stream without its group, so every reader got
/// NOGROUP. Recreating the queue makes it usable again.
#[tokio::test]
async fn send_to_a_queue_whose_stream_was_deleted_writes_nothing() -> TestResult {
    let env = env().await?;
    let (other, _) = env.mq.create_queue_pair("other").await?;
    let q = env.busy_queue("s").await?;
    env.cmd(&["DEL", "mq:s"]).await?;
    let before = env.snapshot().await?;
    assert_stream_missing("send", q.send(&json!({"x": 1})).await);
    assert_stream_missing(
        "batch",
        q.send_batch(&[json!({"x": 1}), json!({"x": 2})]).await,
    );
    let ttl = SendOptions::new().ttl(Duration::from_secs(60));
    assert_stream_missing("ttl", q.send_with(&json!({"x": 1}), &ttl).await);
    let delay = SendOptions::new().delay(Duration::from_secs(60));
    assert_stream_missing("delay", q.send_with(&json!({"x": 1}), &delay).await);
    let mut tx = env.mq.transaction();
    tx.send(&other, &json!({"x": 1}))?;
    tx.send(&q, &json!({"x": 2}))?;
    assert_stream_missing("transaction", tx.commit().await);
    assert_eq!(env.snapshot().await?, before, "a send wrote something");

    env.mq.create_queue_pair("s").await?;
    q.send(&json!({"n": "again"})).await?;
    let got = q.receive(&Receive::new().count(10).consumer("w")).await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data["n"], "again");
    Ok(())
}

/// A delayed message that comes due while its queue's stream is deleted is
/// neither dropped nor promoted into a new stream without a group: it stays
/// delayed, and is delivered once the queue is recreated.
#[tokio::test]
async fn a_due_delayed_message_waits_while_its_stream_is_deleted() -> TestResult {
    let env = env().await?;
    let (q, _) = env.mq.create_queue_pair("d").await?;
    q.send_with(
        &json!({"n": "due"}),
        &SendOptions::new().delay(Duration::from_millis(200)),
    )
    .await?;
    env.cmd(&["DEL", "mq:d"]).await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let read = q.receive(&Receive::new().consumer("w")).await;
    assert_eq!(
        read.as_ref().map_err(|e| e.kind()).err(),
        Some(ErrorKind::NoGroup),
        "{read:?}"
    );
    env.mq.sweep_expired().await?;
    q.sweep_expired().await?;
    let _ = q
        .receive(
            &Receive::new()
                .consumer("w")
                .block(Duration::from_millis(100)),
        )
        .await;
    let exists: i64 = redis::from_redis_value(env.cmd(&["EXISTS", "mq:d"]).await?)?;
    assert_eq!(exists, 0, "the stream was recreated by a promotion");
    let delayed: i64 = redis::from_redis_value(env.cmd(&["ZCARD", "mq:d:delayed"]).await?)?;
    assert_eq!(delayed, 1, "the delayed message is gone");

    env.mq.create_queue_pair("d").await?;
    let got = q.receive(&Receive::new().count(10).consumer("w")).await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data["n"], "due");
    Ok(())
}

/// One broken queue (its stream a string; another's stream deleted) does
/// not break `list_queues`: each is a row with its error, the rest are
/// listed as usual.
#[tokio::test]
async fn list_queues_reports_broken_queues_and_lists_the_rest() -> TestResult {
    let env = env().await?;
    env.busy_queue("good").await?;
    env.mq.create_queue_pair("bad").await?;
    env.mq.create_queue_pair("gone").await?;
    env.clobber("mq:bad").await?;
    env.cmd(&["DEL", "mq:gone"]).await?;
    let list = env.mq.list_queues().await?;
    let rows: Vec<(&str, bool)> = list
        .iter()
        .map(|i| (i.name.as_str(), i.error.is_some()))
        .collect();
    assert_eq!(
        rows,
        [
            ("bad", true),
            ("bad:dlq", false),
            ("gone", true),
            ("gone:dlq", false),
            ("good", false),
            ("good:dlq", false)
        ]
    );
    let bad = &list[0];
    assert_eq!(bad.stream, "mq:bad");
    assert!(
        bad.error.as_deref().is_some_and(|e| !e.is_empty()),
        "{bad:?}"
    );
    assert_eq!((bad.length, bad.created_at), (0, None));
    let gone = &list[2];
    assert!(
        gone.error
            .as_deref()
            .is_some_and(|e| e.contains("eddy queue create")),
        "{gone:?}"
    );
    let good = &list[4];
    assert_eq!((good.length, good.pending, good.delayed), (3, 1, 1));
    Ok(())
}
