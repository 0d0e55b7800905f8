//! A separate OS process for the fault tests (`tests/faults.rs`): a consumer
//! that can be SIGKILLed, SIGTERMed or made to abort itself, and a second
//! process that subscribes and publishes on the event bus.
//!
//! ```text
//! fault-worker consume url=URL queue=NAME [prefix=rt:] [name=CONSUMER]
//!     [visibility_ms=1000] [claim_ms=100] [poll_ms=200] [concurrency=4]
//!     [handler_ms=0] [slow_ms=30000] [max_deliveries=5] [shutdown_ms=1000]
//! fault-worker subscribe   url=URL service=NAME types=A,B
//! fault-worker unsubscribe url=URL service=NAME types=A,B
//! fault-worker publish     url=URL type=TYPE data=JSON
//! ```
//!
//! `consume` runs eddy's consumer loop and prints one line per event, flushed
//! at once, so a test can follow it through a pipe:
//! `ready`, `start N DC ID`, `done N DC ID`, `abort N DC ID`, `park N DC ID`,
//! `term`, and `exit delivered=.. acked=.. errors=..` (N is the message's
//! `n` field, DC its delivery count). A message with `"slow": true` takes
//! `slow_ms`; one with `"abort": true` aborts the process (SIGABRT) every
//! time it is handled; one with `"park_ms": MS` asks, on its first
//! delivery, for a retry MS milliseconds later (`Fail::retry_after`).
//! SIGTERM or SIGINT stops the loop gracefully; the exit code is 0 when it
//! stopped cleanly.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use eddy::bus::{Bus, Envelope, Subscription};
use eddy::queue::consumer::{self, Backoff, ConsumerOptions, ConsumerStats};
use eddy::{EddyBuilder, Fail};

type Args = HashMap<String, String>;

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let mode = argv.next().unwrap_or_default();
    let args: Args = argv
        .filter_map(|a| a.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fault-worker: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match mode.as_str() {
            "consume" => consume(&args).await,
            "subscribe" => subscribe(&args, true).await,
            "unsubscribe" => subscribe(&args, false).await,
            "publish" => publish(&args).await,
            other => Err(format!("unknown mode `{other}`").into()),
        }
    });
    // Abandoned handlers (past the drain deadline) must not hold the exit.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fault-worker {mode}: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn required<'a>(args: &'a Args, key: &str) -> Result<&'a str> {
    args.get(key)
        .map(String::as_str)
        .ok_or_else(|| format!("missing {key}=...").into())
}

fn number(args: &Args, key: &str, default: u64) -> Result<u64> {
    match args.get(key) {
        Some(v) => v.parse().map_err(|e| format!("{key}={v}: {e}").into()),
        None => Ok(default),
    }
}

fn ms(args: &Args, key: &str, default: u64) -> Result<Duration> {
    number(args, key, default).map(Duration::from_millis)
}

async fn consume(args: &Args) -> Result {
    let mq = EddyBuilder::new(required(args, "url")?)
        .prefix(args.get("prefix").map_or("rt:", String::as_str))
        .open()
        .await?;
    let queue = mq.queue(required(args, "queue")?).await?;
    let mut opts = ConsumerOptions::new()
        .visibility_timeout(ms(args, "visibility_ms", 1000)?)
        .claim_interval(ms(args, "claim_ms", 100)?)
        .poll(ms(args, "poll_ms", 200)?)
        .concurrency(number(args, "concurrency", 4)? as usize)
        .max_deliveries(number(args, "max_deliveries", 5)?)
        .shutdown_timeout(ms(args, "shutdown_ms", 1000)?)
        .handler_timeout(Duration::from_secs(120))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(50),
        ));
    if let Some(name) = args.get("name") {
        opts = opts.name(name.clone());
    }
    let handler_time = ms(args, "handler_ms", 0)?;
    let slow_time = ms(args, "slow_ms", 30_000)?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        println!("term");
    };
    println!("ready");
    let stats = std::sync::Arc::new(ConsumerStats::default());
    consumer::run_with_stats(
        queue,
        opts,
        move |msg| async move {
            let n = msg.data.get("n").and_then(|v| v.as_i64()).unwrap_or(-1);
            let (dc, id) = (msg.delivery_count, msg.id);
            println!("start {n} {dc} {id}");
            if msg.data.get("abort") == Some(&serde_json::Value::Bool(true)) {
                println!("abort {n} {dc} {id}");
                std::process::abort();
            }
            if let Some(later) = msg.data.get("park_ms").and_then(|v| v.as_u64()) {
                if dc == 1 {
                    println!("park {n} {dc} {id}");
                    return Err(Fail::retry_after(
                        Duration::from_millis(later),
                        "asked to retry later",
                    ));
                }
            }
            let slow = msg.data.get("slow") == Some(&serde_json::Value::Bool(true));
            let pause = if slow { slow_time } else { handler_time };
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            println!("done {n} {dc} {id}");
            Ok(())
        },
        shutdown,
        stats.clone(),
    )
    .await?;
    println!(
        "exit delivered={} acked={} errors={}",
        stats.delivered.load(Ordering::SeqCst),
        stats.acked.load(Ordering::SeqCst),
        stats.errors.load(Ordering::SeqCst),
    );
    Ok(())
}

fn subscription(args: &Args) -> Result<Subscription> {
    let types = required(args, "types")?;
    Ok(if types == "*" {
        Subscription::All
    } else {
        Subscription::types(types.split(','))
    })
}

async fn subscribe(args: &Args, on: bool) -> Result {
    let bus = Bus::open(required(args, "url")?).await?;
    let service = required(args, "service")?;
    if on {
        bus.subscribe(service, &subscription(args)?).await?;
        println!("subscribed");
    } else {
        bus.unsubscribe(service, &subscription(args)?).await?;
        println!("unsubscribed");
    }
    Ok(())
}

async fn publish(args: &Args) -> Result {
    let bus = Bus::open(required(args, "url")?).await?;
    let data = match serde_json::from_str(required(args, "data")?)? {
        serde_json::Value::Object(m) => m,
        _ => return Err("data must be a JSON object".into()),
    };
    let env = Envelope::from_parts(required(args, "type")?, data)?;
    let sent = bus.publish_envelope(&env).await?;
    println!(
        "published {} {}",
        sent.event_id,
        sent.delivered_to.join(",")
    );
    Ok(())
}
