//! The dashboard at scale: with 1,000 queues, how long the page, the queue
//! listing and `/metrics` take to answer.
//!
//! ```text
//! cargo build --release -p eddy-cli --bin eddy --example dashboard_scale
//! target/release/examples/dashboard_scale [QUEUES]
//! ```
//!
//! It starts its own redis-server (eddy-testkit), creates QUEUES queues
//! (default 1,000) with a message each and a dead-lettered one in every
//! tenth, starts `eddy dashboard` (the `eddy` binary beside this program,
//! or the one EDDY_BIN names) and prints the median of 7 requests of each
//! of `GET /`, `GET /api/queues` and `GET /metrics`, then one JSON line.
//! The requirement: each answers within 1 s.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eddy::Eddy;
use eddy_testkit::RedisServer;
use futures::StreamExt;

const ROUNDS: usize = 7;

type Failure = Box<dyn std::error::Error>;

fn main() -> Result<(), Failure> {
    let queues: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 1000,
    };
    let server = RedisServer::start()?;
    let started = Instant::now();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fill(&server.url(), queues))?;
    println!("created {queues} queues in {:.0} ms", ms(started.elapsed()));

    let bin = match std::env::var_os("EDDY_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?
            .parent()
            .and_then(|examples| examples.parent())
            .map(|dir| dir.join("eddy"))
            .ok_or("cannot find the eddy binary: set EDDY_BIN")?,
    };
    let mut child = Command::new(&bin)
        .args([
            "--url",
            &server.url(),
            "dashboard",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("dashboard on http://")
        .and_then(|a| a.strip_suffix('/'))
        .ok_or_else(|| format!("unexpected first line {line:?}"))?
        .to_owned();

    let mut figures = Vec::new();
    for path in ["/", "/api/queues", "/metrics"] {
        let mut times = Vec::with_capacity(ROUNDS);
        let mut bytes = 0;
        for _ in 0..ROUNDS {
            let t = Instant::now();
            bytes = get(&addr, path)?;
            times.push(t.elapsed());
        }
        times.sort();
        let median = times[ROUNDS / 2];
        println!(
            "GET {path:<12} median {:>7.1} ms  (min {:.1}, max {:.1}; {bytes} bytes)",
            ms(median),
            ms(times[0]),
            ms(times[ROUNDS - 1])
        );
        figures.push((path, median));
    }
    let _ = child.kill();
    let _ = child.wait();
    let verdict = figures.iter().all(|(_, t)| *t < Duration::from_secs(1));
    println!(
        "{}",
        serde_json::json!({
            "bench": "dashboard_scale",
            "queues": queues,
            "page_ms": ms(figures[0].1),
            "api_queues_ms": ms(figures[1].1),
            "metrics_ms": ms(figures[2].1),
            "within_1s": verdict,
        })
    );
    if !verdict {
        return Err("an answer took 1 s or more".into());
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `queues` queues with a message each; every tenth dead-letters one.
async fn fill(url: &str, queues: usize) -> eddy::Result<()> {
    let mq = Eddy::open(url).await?;
    let results: Vec<eddy::Result<()>> = futures::stream::iter(0..queues)
        .map(|i| {
            let mq = mq.clone();
            async move {
                let (q, _) = mq.create_queue_pair(&format!("queue-{i:04}")).await?;
                let id = q.send(&serde_json::json!({ "n": i })).await?;
                if i % 10 == 0 {
                    q.dead_letter(&[id], "Timeout: benchmark").await?;
                }
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

/// One GET on a connection of its own; the body's size. Fails unless 200.
fn get(addr: &str, path: &str) -> Result<usize, Failure> {
    let answer = eddy_testkit::http::request(addr, "GET", path, &[], "", Duration::from_secs(30))?;
    if answer.status != 200 {
        return Err(format!("GET {path}: {}", answer.head).into());
    }
    Ok(answer.body.len())
}
