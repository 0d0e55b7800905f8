//! Admin operations whose cost must not grow with a queue's backlog, on
//! Redis (the embedded engine counts in memory): `info` after deletions
//! counts at most a bounded number of entries
//! and says when its lag is an estimate; `list_queues` reads many queues.
//! Each test starts its own `redis-server`.

use eddy::{Eddy, Queue, Receive};
use eddy_testkit::RedisServer;
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// How many XRANGE calls the server has answered so far.
async fn xrange_calls(conn: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<u64> {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    Ok(stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_xrange:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

async fn fill(q: &Queue, n: usize) -> eddy::Result<()> {
    let batch: Vec<Value> = (0..500).map(|i| json!({ "n": i })).collect();
    for _ in 0..n / 500 {
        q.send_batch(&batch).await?;
    }
    let rest: Vec<Value> = (0..n % 500).map(|i| json!({ "n": i })).collect();
    if !rest.is_empty() {
        q.send_batch(&rest).await?;
    }
    Ok(())
}

#[tokio::test]
async fn info_lag_is_exact_or_says_it_is_an_estimate_without_reading_the_backlog() -> TestResult {
    let server = RedisServer::start()?;
    let mut conn = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    let mq = Eddy::open(&server.url()).await?;

    // Nothing deleted: Redis's own count.
    let (q, _) = mq.create_queue_pair("plain").await?;
    fill(&q, 1000).await?;
    let got = q.receive(&Receive::new().count(10)).await?;
    let info = q.info().await?;
    assert_eq!((info.lag, info.lag_estimated), (990, false));

    // A delivered entry deleted (dead-lettered): Redis 7.0 reports no lag
    // after a deletion, and more than 100 wait, so one bounded read and an
    // estimate, flagged; here the counters happen to give the true count.
    q.dead_letter(&[got[0].id], "test").await?;
    let before = xrange_calls(&mut conn).await?;
    let info = q.info().await?;
    assert_eq!((info.lag, info.lag_estimated), (990, true));
    assert!(xrange_calls(&mut conn).await? - before <= 1, "no scan");

    // An undelivered entry deleted with a short backlog behind the group:
    // counted, exactly.
    let (short, _) = mq.create_queue_pair("short").await?;
    fill(&short, 50).await?;
    short.receive(&Receive::new().count(1)).await?;
    let undelivered = short.peek(50).await?;
    short.delete(&[undelivered[10].id]).await?;
    let info = short.info().await?;
    assert_eq!((info.lag, info.lag_estimated), (48, false));

    // The same with a long backlog: one bounded read, an estimate, said so.
    let (long, _) = mq.create_queue_pair("long").await?;
    fill(&long, 20_000).await?;
    long.receive(&Receive::new().count(1)).await?;
    let undelivered = long.peek(20).await?;
    long.delete(&[undelivered[10].id]).await?;
    let before = xrange_calls(&mut conn).await?;
    let info = long.info().await?;
    let calls = xrange_calls(&mut conn).await? - before;
    assert!(calls <= 1, "{calls} XRANGE calls for one info");
    assert!(info.lag_estimated);
    assert!(
        (19_998..=20_000).contains(&info.lag),
        "estimate {} for a true lag of 19,998",
        info.lag
    );
    assert_eq!(info.length, 19_999);

    // Once the group has read to the end, the lag is exact again.
    let rest = long.receive(&Receive::new().count(20_000)).await?;
    assert_eq!(rest.len(), 19_998);
    let info = long.info().await?;
    assert_eq!((info.lag, info.lag_estimated), (0, false));
    Ok(())
}

#[tokio::test]
async fn list_queues_reads_many_queues_at_once_and_in_order() -> TestResult {
    let server = RedisServer::start()?;
    let mq = Eddy::open(&server.url()).await?;
    let mut names: Vec<String> = (0..1500).map(|i| format!("q{i:05}")).collect();
    for name in &names {
        mq.create_queue_pair(name).await?;
    }
    let q = mq.queue("q00007").await?;
    fill(&q, 3).await?;
    // Lags to count after a deletion, short and long, in the same batch.
    for (name, n) in [("q00009", 50), ("q00011", 300)] {
        let q = mq.queue(name).await?;
        fill(&q, n).await?;
        q.receive(&Receive::new().count(1)).await?;
        let undelivered = q.peek(20).await?;
        q.delete(&[undelivered[10].id]).await?;
    }
    let listed = mq.list_queues().await?;
    let mut want: Vec<String> = names.iter().map(|n| format!("{n}:dlq")).collect();
    want.append(&mut names);
    want.sort();
    let got: Vec<&str> = listed.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(got, want);
    let seventh = listed.iter().find(|i| i.name == "q00007");
    assert_eq!(seventh.map(|i| (i.length, i.lag)), Some((3, 3)));
    let row = |name: &str| listed.iter().find(|i| i.name == name);
    assert_eq!(
        row("q00009").map(|i| (i.lag, i.lag_estimated)),
        Some((48, false)),
        "counted"
    );
    let long = row("q00011").map(|i| (i.lag, i.lag_estimated));
    assert!(
        long.is_some_and(|(lag, estimated)| estimated && (298..=300).contains(&lag)),
        "{long:?}"
    );
    assert!(listed.iter().all(|i| i.error.is_none()));
    Ok(())
}
