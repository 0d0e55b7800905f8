//! eddy-admin-scale: how long `list_queues` and `info` take on a big
//! deployment, beside the way they worked before (a baseline in the same
//! run, on the same server). Prints the times; a benchmark, not a test.
//!
//! ```text
//! cargo run --release -p eddy-testkit --bin admin-scale -- [QUEUES] [BACKLOG]
//! ```
//!
//! It starts its own redis-server, creates QUEUES queue pairs (default
//! 10,000: 20,000 streams with their DLQs), and times:
//! - `Eddy::list_queues` (queues read 64 at a time on one pipelined
//!   connection), against reading every queue's metadata and info one
//!   after another (how it worked before);
//! - `Queue::info` on a queue with BACKLOG undelivered messages (default
//!   400,000) after one of them was deleted (Redis then cannot report the
//!   lag), against counting the undelivered entries with XRANGE pages of
//!   10,000 (how it worked before).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use eddy::{Eddy, Receive};
use eddy_testkit::RedisServer;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| {
        args.get(i)
            .map(|a| a.replace(['_', ','], "").parse::<usize>())
            .unwrap_or(Ok(default))
    };
    let (queues, backlog) = match (number(0, 10_000), number(1, 400_000)) {
        (Ok(q), Ok(b)) => (q, b),
        _ => {
            eprintln!("usage: admin-scale [QUEUES] [BACKLOG] (numbers)");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("admin-scale: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(queues, backlog)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("admin-scale: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn run(queues: usize, backlog: usize) -> Result<()> {
    let server = RedisServer::start()?;
    let mq = Eddy::open(&server.url()).await?;
    let created = Instant::now();
    let names: Vec<String> = (0..queues).map(|i| format!("queue-{i:06}")).collect();
    let made: Vec<eddy::Result<_>> = stream::iter(&names)
        .map(|n| mq.create_queue_pair(n))
        .buffer_unordered(64)
        .collect()
        .await;
    for m in made {
        m?;
    }
    eprintln!("created {queues} queue pairs in {}", ms(created.elapsed()));
    let mut conn = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;

    println!(
        "list_queues, {} streams (queues and their DLQs):",
        2 * queues
    );
    for round in 1..=3 {
        let (server_then, client_then) = (server_cpu(&mut conn).await?, client_cpu());
        let t = Instant::now();
        let listed = mq.list_queues().await?;
        let eddy = t.elapsed();
        let server_used = server_cpu_since(&mut conn, server_then).await?;
        let client_used = client_cpu().saturating_sub(client_then);
        let t = Instant::now();
        let mut one_by_one = 0;
        for name in &names {
            for q in [mq.queue(name).await?, mq.dead_letter_queue(name).await?] {
                q.info().await?;
                one_by_one += 1;
            }
        }
        let before = t.elapsed();
        if listed.len() != one_by_one {
            return Err(format!("listed {} of {one_by_one} streams", listed.len()).into());
        }
        println!(
            "  round {round}: list_queues {:>10} (CPU: redis-server {}, this process {})   one after another {:>10}   ({:.1}x)",
            ms(eddy),
            ms(server_used),
            ms(client_used),
            ms(before),
            before.as_secs_f64() / eddy.as_secs_f64().max(1e-9)
        );
    }

    if let Ok(bin) = std::env::var("EDDY_BIN") {
        let url = server.url();
        println!("`{bin} queue list --json`, the whole command:");
        for round in 1..=3 {
            let (took, out) = eddy_command(&bin, &url, &["queue", "list"])?;
            let lines = out.iter().filter(|b| **b == b'\n').count();
            if lines != 2 * queues {
                return Err(format!("`queue list` printed {lines} lines").into());
            }
            println!("  round {round}: {:>10}", ms(took));
        }
        println!("`{bin} top --once --json`, the whole command:");
        for round in 1..=3 {
            let (took, out) = eddy_command(&bin, &url, &["top", "--once"])?;
            let snapshot: Value = serde_json::from_slice(&out)?;
            println!(
                "  round {round}: {:>10} (its own read of the queues: {} ms)",
                ms(took),
                snapshot["read_ms"]
            );
        }
    }

    let (q, _) = mq.create_queue_pair("backlog").await?;
    let batch: Vec<Value> = (0..500)
        .map(|i| json!({ "n": i, "pad": "x".repeat(200) }))
        .collect();
    for _ in 0..backlog.div_ceil(500) {
        q.send_batch(&batch).await?;
    }
    q.receive(&Receive::new().count(1)).await?;
    let head = q.peek(20).await?;
    if let Some(m) = head.get(10) {
        q.delete(&[m.id]).await?;
    }
    let group_at = head.first().map(|m| m.id.to_string()).unwrap_or_default();
    println!("info on {backlog} undelivered messages after a deletion:");
    for round in 1..=3 {
        let t = Instant::now();
        let info = q.info().await?;
        let eddy = t.elapsed();
        let t = Instant::now();
        let counted = count_after(&mut conn, "mq:backlog", &group_at).await?;
        let before = t.elapsed();
        println!(
            "  round {round}: info {:>10} (lag {}{})   counting by XRANGE {:>10} (lag {counted})",
            ms(eddy),
            if info.lag_estimated { "~" } else { "" },
            info.lag,
            ms(before),
        );
    }
    Ok(())
}

/// Run `BIN --url URL --json ARGS...`: how long it took and its stdout.
fn eddy_command(bin: &str, url: &str, args: &[&str]) -> Result<(Duration, Vec<u8>)> {
    let t = Instant::now();
    let out = std::process::Command::new(bin)
        .args(["--url", url, "--json"])
        .args(args)
        .output()?;
    let took = t.elapsed();
    if !out.status.success() {
        return Err(format!("`{bin} {}` failed: {out:?}", args.join(" ")).into());
    }
    Ok((took, out.stdout))
}

/// redis-server's CPU time so far (user + system).
async fn server_cpu(conn: &mut redis::aio::MultiplexedConnection) -> Result<Duration> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    let secs: f64 = info
        .lines()
        .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum();
    Ok(Duration::from_secs_f64(secs))
}

async fn server_cpu_since(
    conn: &mut redis::aio::MultiplexedConnection,
    then: Duration,
) -> Result<Duration> {
    Ok(server_cpu(conn).await?.saturating_sub(then))
}

/// This process's CPU time so far (user + system), from /proc.
fn client_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Entries after `after`, by XRANGE pages of 10,000.
async fn count_after(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    after: &str,
) -> Result<u64> {
    let mut total = 0u64;
    let mut cursor = after.to_owned();
    loop {
        let page: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(format!("({cursor}"))
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query_async(conn)
            .await?;
        total += page.len() as u64;
        match page.last() {
            Some((id, _)) if page.len() == 10_000 => cursor = id.clone(),
            _ => return Ok(total),
        }
    }
}
